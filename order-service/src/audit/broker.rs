//! The broker's own view, read with the client's admin and pull APIs — never
//! taken from the services: every message of the order topic (what it
//! carries), the transactional half messages of the order topic still
//! undecided, and each watched consumer group's lag.
//!
//! Two depths ([`Depth`]): [`read`] (the audit) pulls every message of the
//! order topic; [`glance`] (the dashboard's broker panel, polled every few
//! seconds) reads only the queues' offsets, the lags and the half messages
//! past the broker's checker checkpoint, summed up ([`BrokerGlance`]).
//!
//! Read-only: the pull consumer has a group of its own (`audit.group`) and
//! commits no offset (the classic pull sends commitOffset=false). One audit
//! starts an admin client and a pull consumer on the service's client
//! runtime and shuts both down when done; the audit is rare, and a consumer
//! kept registered between audits would only sit in the broker's tables.
//!
//! Half messages (rocketmq-rust 1.0.0's broker, as in Apache RocketMQ): a
//! prepared message sits in `RMQ_SYS_TRANS_HALF_TOPIC` queue 0; a commit or
//! rollback writes an op message to `RMQ_SYS_TRANS_OP_HALF_TOPIC` queue 0
//! whose body lists the decided half offsets (`"17,18,"`); each check-back
//! re-appends the half message as a new copy with the same `UNIQ_KEY`. The
//! broker's checker keeps its progress as the offsets of group
//! `CID_RMQ_SYS_TRANS`: below the half checkpoint every message is decided
//! or has a newer copy. So a transaction is undecided when none of its
//! copies at or above the checkpoint is named by an op message.
#![allow(deprecated)] // DefaultMQPullConsumer: the one way to read a queue between two offsets exactly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use cheetah_string::CheetahString;
use chrono::{DateTime, Utc};
use common::messages::{
    Envelope, OrderBatch, OrderCancelled, OrderCreated, TAG_ORDER_BATCH, TAG_ORDER_CANCELLED,
    TAG_ORDER_CREATED,
};
use common::stock_log::MessageKind;
use rocketmq_client_rust::{
    ClientError, ClientRuntime, ConsumerAdmin, DefaultMQAdminExt, DefaultMQPullConsumer,
    OffsetAdmin, PullStatus, TopicAdmin,
};
use rocketmq_model::common::message::MessageConst;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::topic::TopicValidator;
use serde::Serialize;

/// The group whose offsets are the broker's transaction-checker checkpoints.
const CHECKER_GROUP: &str = "CID_RMQ_SYS_TRANS";
/// Tag of the op messages that decide half messages.
const OP_REMOVE_TAG: &str = "d";
/// Messages per pull.
const PULL_BATCH: i64 = 32;
/// A `since` is moved back by this much before it becomes a queue offset:
/// the order DB and the broker may run on hosts whose clocks differ.
pub const CLOCK_SLACK: chrono::Duration = chrono::Duration::seconds(60);
/// Each admin request and each pull may take this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the pull consumer's own background polls wait at the broker.
const BACKGROUND_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum BrokerReadError {
    #[error("no name server answers at {0}")]
    Unreachable(String),
    #[error("no broker carries the topic {0}")]
    NoRoute(String),
    #[error("the broker did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("the broker ({step}): {source}")]
    Client {
        step: &'static str,
        source: ClientError,
    },
}

/// Adds which step of the read failed to a client error.
trait Step<T> {
    fn step(self, step: &'static str) -> Result<T, BrokerReadError>;
}

impl<T> Step<T> for Result<T, ClientError> {
    fn step(self, step: &'static str) -> Result<T, BrokerReadError> {
        self.map_err(|source| BrokerReadError::Client { step, source })
    }
}

/// What one read covers.
#[derive(Debug, Clone)]
pub struct BrokerScope {
    pub namesrv_addr: String,
    pub order_topic: String,
    /// The auditor's own consumer group.
    pub group: String,
    /// Consumer groups whose lag is reported.
    pub lag_groups: Vec<String>,
    /// Only messages stored from then on (less [`CLOCK_SLACK`]).
    pub since: Option<DateTime<Utc>>,
    /// Most messages read, all queues together.
    pub max_messages: u64,
}

/// One order-topic message, as the auditor counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMessage {
    /// Creation or cancellation (by tag); `None` for the other messages of
    /// the topic (the delayed payment timeouts).
    pub kind: Option<MessageKind>,
    /// From the body, or the first key when the body cannot be read.
    pub tx_no: Option<String>,
    pub product_id: Option<i64>,
    pub stored_at: DateTime<Utc>,
}

/// One queue of the order topic and what was read of it.
#[derive(Debug, Clone, Serialize)]
pub struct QueueRange {
    pub broker: String,
    pub queue_id: i32,
    pub min_offset: i64,
    pub max_offset: i64,
    /// Where the read started (`min_offset`, or the first offset at `since`);
    /// absent at [`Depth::Glance`], which reads no message of the topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_from: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct TopicScan {
    pub messages: Vec<TopicMessage>,
    pub queues: Vec<QueueRange>,
    /// Stopped at `max_messages`.
    pub truncated: bool,
    /// The oldest message still stored where the broker already deleted
    /// older ones (retention): facts before it cannot be checked in the topic.
    pub retained_since: Option<DateTime<Utc>>,
}

/// A transactional half message of the order topic that neither commit nor
/// rollback has decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UndecidedHalf {
    pub tx_no: Option<String>,
    pub kind: Option<MessageKind>,
    pub product_id: Option<i64>,
    /// When the producer sent it first.
    pub born_at: DateTime<Utc>,
    /// Check-backs the broker has sent for it so far.
    pub checks: u32,
    /// Copies in the half queue (one more per check-back).
    pub copies: u32,
    pub broker: String,
}

#[derive(Debug, Clone, Default)]
pub struct HalfScan {
    /// Half and op messages read.
    pub read: u64,
    pub undecided: Vec<UndecidedHalf>,
    pub truncated: bool,
}

/// How far behind one consumer group is on one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupLag {
    pub group: String,
    pub topic: String,
    /// Messages stored and not yet consumed (by the group's committed offsets).
    pub waiting: i64,
    /// Store time of the oldest of them.
    pub oldest_waiting_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default)]
pub struct BrokerView {
    pub topic: TopicScan,
    pub halves: HalfScan,
    pub lags: Vec<GroupLag>,
    /// Groups whose lag could not be read, and why.
    pub lag_errors: Vec<String>,
}

/// How much of the broker one read covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Every message of the order topic in the window (the audit).
    Full,
    /// The order topic's queue offsets only; halves and lags as in `Full`.
    Glance,
}

/// What the dashboard's broker panel shows: the order topic's queues, each
/// watched group's lag, and the undecided half messages summed up.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerGlance {
    pub read_at: DateTime<Utc>,
    /// How long the read took.
    pub took_ms: u64,
    pub order_topic: String,
    pub queues: Vec<QueueRange>,
    pub lags: Vec<GroupLag>,
    /// Watched groups whose lag could not be read, and why.
    pub lag_errors: Vec<String>,
    pub undecided_halves: HalfSummary,
}

/// The undecided half messages of the order topic, summed up.
#[derive(Debug, Clone, Serialize)]
pub struct HalfSummary {
    pub count: usize,
    /// When the oldest of them was first sent, and its age at `read_at`.
    pub oldest_born_at: Option<DateTime<Utc>>,
    pub oldest_age_secs: Option<i64>,
    /// Most check-backs the broker sent for one of them.
    pub most_checks: u32,
    /// Half and op messages read to find them.
    pub read: u64,
    /// The read stopped at its budget: `count` is a lower bound.
    pub truncated: bool,
}

impl HalfSummary {
    fn of(halves: &HalfScan, now: DateTime<Utc>) -> Self {
        let oldest = halves.undecided.iter().map(|h| h.born_at).min();
        Self {
            count: halves.undecided.len(),
            oldest_born_at: oldest,
            oldest_age_secs: oldest.map(|at| (now - at).num_seconds().max(0)),
            most_checks: halves.undecided.iter().map(|h| h.checks).max().unwrap_or(0),
            read: halves.read,
            truncated: halves.truncated,
        }
    }
}

/// Reads the broker for `scope` with clients on `runtime`: every message of
/// the order topic in the window, its undecided half messages and the lags.
pub async fn read(
    runtime: Arc<ClientRuntime>,
    scope: &BrokerScope,
) -> Result<BrokerView, BrokerReadError> {
    session(runtime, scope, Depth::Full).await
}

/// The broker's figures without reading the order topic's messages; at most
/// `scope.max_messages` half and op messages are read.
pub async fn glance(
    runtime: Arc<ClientRuntime>,
    scope: &BrokerScope,
) -> Result<BrokerGlance, BrokerReadError> {
    let started = std::time::Instant::now();
    let view = session(runtime, scope, Depth::Glance).await?;
    let now = Utc::now();
    Ok(BrokerGlance {
        read_at: now,
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        order_topic: scope.order_topic.clone(),
        queues: view.topic.queues,
        undecided_halves: HalfSummary::of(&view.halves, now),
        lags: view.lags,
        lag_errors: view.lag_errors,
    })
}

#[tracing::instrument(skip_all, fields(topic = %scope.order_topic, ?depth))]
async fn session(
    runtime: Arc<ClientRuntime>,
    scope: &BrokerScope,
    depth: Depth,
) -> Result<BrokerView, BrokerReadError> {
    let namesrvs = common::settings::split_addrs(&scope.namesrv_addr);
    if !common::mq::reachable(&namesrvs)
        .await
        .iter()
        .any(|(_, up)| *up)
    {
        return Err(BrokerReadError::Unreachable(scope.namesrv_addr.clone()));
    }
    let mut admin = DefaultMQAdminExt::with_admin_ext_group_and_timeout(
        Arc::clone(&runtime),
        format!("{}_admin_{}", scope.group, uuid::Uuid::now_v7().simple()),
        CALL_TIMEOUT,
    );
    admin.set_namesrv_addr(scope.namesrv_addr.as_str());
    Box::pin(admin.start())
        .await
        .step("starting the admin client")?;
    let consumer = match DefaultMQPullConsumer::builder(runtime)
        .consumer_group(scope.group.as_str())
        .name_server_addr(scope.namesrv_addr.as_str())
        .consumer_pull_timeout(CALL_TIMEOUT)
        // 1.0.0's classic pull also starts background pull tasks for the
        // queues its rebalance assigns (whose results nobody reads); they
        // long-poll the broker, and shutdown waits for them: keep the polls short.
        .broker_suspend_max_time(BACKGROUND_POLL)
        .consumer_timeout_when_suspend(BACKGROUND_POLL * 5)
        .build()
    {
        Ok(consumer) => consumer,
        Err(err) => {
            Box::pin(admin.shutdown()).await;
            return Err(err).step("building the pull consumer");
        }
    };
    let read = match Box::pin(consumer.start())
        .await
        .step("starting the pull consumer")
    {
        Ok(()) => {
            let mut reader = Reader {
                admin: &admin,
                consumer: &consumer,
                scope,
                budget: scope.max_messages,
            };
            let read = Box::pin(reader.read_all(depth)).await;
            if let Err(err) = Box::pin(consumer.shutdown()).await {
                tracing::warn!(%err, "auditor's pull consumer shutdown");
            }
            read
        }
        Err(err) => Err(err),
    };
    Box::pin(admin.shutdown()).await;
    read
}

struct Reader<'a> {
    admin: &'a DefaultMQAdminExt,
    consumer: &'a DefaultMQPullConsumer,
    scope: &'a BrokerScope,
    /// Messages that may still be read.
    budget: u64,
}

/// A master broker: (name, address).
type Master = (CheetahString, CheetahString);

impl Reader<'_> {
    async fn read_all(&mut self, depth: Depth) -> Result<BrokerView, BrokerReadError> {
        let masters = self.masters(&self.scope.order_topic).await?;
        let topic = match depth {
            Depth::Full => self.scan_topic(&masters).await?,
            Depth::Glance => self.topic_queues(&masters).await?,
        };
        let mut halves = HalfScan::default();
        for master in &masters {
            self.scan_halves(master, &mut halves).await?;
        }
        let (lags, lag_errors) = self.lags(&masters).await;
        Ok(BrokerView {
            topic,
            halves,
            lags,
            lag_errors,
        })
    }

    /// The master brokers carrying `topic`.
    async fn masters(&self, topic: &str) -> Result<Vec<Master>, BrokerReadError> {
        let route = TopicAdmin::examine_topic_route_info(self.admin, topic.into())
            .await
            .step("the topic's route")?;
        let masters: Vec<Master> = route
            .map(|r| {
                r.broker_datas
                    .iter()
                    .filter_map(|b| {
                        b.broker_addrs()
                            .get(&0u64)
                            .map(|addr| (b.broker_name().clone(), addr.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if masters.is_empty() {
            return Err(BrokerReadError::NoRoute(topic.to_owned()));
        }
        Ok(masters)
    }

    /// `(queue, min, max)` of each queue of `topic` on one master, by queue id.
    async fn ranges(
        &self,
        (_, addr): &Master,
        topic: &str,
    ) -> Result<Vec<(MessageQueue, i64, i64)>, BrokerReadError> {
        let stats = TopicAdmin::get_topic_stats_info(self.admin, addr.clone(), topic.into())
            .await
            .step("queue offsets")?;
        let mut ranges: Vec<_> = stats
            .get_offset_table()
            .iter()
            .map(|(mq, offsets)| {
                (
                    mq.clone(),
                    offsets.get_min_offset(),
                    offsets.get_max_offset(),
                )
            })
            .collect();
        ranges.sort_by_key(|(mq, _, _)| mq.queue_id());
        Ok(ranges)
    }

    /// The first offset of `mq` stored at or after `since` (less the clock
    /// slack), never below `min`; `min` without a `since`.
    async fn start_offset(
        &self,
        (_, addr): &Master,
        mq: &MessageQueue,
        min: i64,
    ) -> Result<i64, BrokerReadError> {
        let Some(since) = self.scope.since else {
            return Ok(min);
        };
        let at = u64::try_from((since - CLOCK_SLACK).timestamp_millis()).unwrap_or(0);
        let found = OffsetAdmin::search_offset(
            self.admin,
            addr.clone(),
            mq.topic().clone(),
            mq.queue_id(),
            at,
            CALL_TIMEOUT.as_millis() as u64,
        )
        .await
        .step("the offset at `since`")?;
        Ok(i64::try_from(found).unwrap_or(i64::MAX).max(min))
    }

    /// The order topic's queues and their offsets, no message read.
    async fn topic_queues(&self, masters: &[Master]) -> Result<TopicScan, BrokerReadError> {
        let mut scan = TopicScan::default();
        for master in masters {
            for (mq, min, max) in self.ranges(master, &self.scope.order_topic).await? {
                scan.queues.push(QueueRange {
                    broker: master.0.to_string(),
                    queue_id: mq.queue_id(),
                    min_offset: min,
                    max_offset: max,
                    read_from: None,
                });
            }
        }
        Ok(scan)
    }

    async fn scan_topic(&mut self, masters: &[Master]) -> Result<TopicScan, BrokerReadError> {
        let mut scan = TopicScan::default();
        for master in masters {
            for (mq, min, max) in self.ranges(master, &self.scope.order_topic).await? {
                let from = self.start_offset(master, &mq, min).await?;
                if min > 0
                    && let Some(oldest) = self.first_stored_at(&mq, min, max).await?
                {
                    scan.retained_since = scan.retained_since.max(Some(oldest));
                }
                let messages = &mut scan.messages;
                let complete = self
                    .pull_range(&mq, from, max, |m| messages.extend(topic_messages(m)))
                    .await?;
                scan.truncated |= !complete;
                scan.queues.push(QueueRange {
                    broker: master.0.to_string(),
                    queue_id: mq.queue_id(),
                    min_offset: min,
                    max_offset: max,
                    read_from: Some(from),
                });
            }
        }
        Ok(scan)
    }

    /// Store time of the message at `offset` of `mq` (below `max`).
    async fn first_stored_at(
        &mut self,
        mq: &MessageQueue,
        offset: i64,
        max: i64,
    ) -> Result<Option<DateTime<Utc>>, BrokerReadError> {
        let mut stored = None;
        self.pull_range(mq, offset, max.min(offset + 1), |m| {
            stored = Some(millis(m.store_timestamp()))
        })
        .await?;
        Ok(stored)
    }

    /// Pulls `[from, to)` of `mq` and hands each message to `each`; `false`
    /// when the budget ran out first.
    async fn pull_range(
        &mut self,
        mq: &MessageQueue,
        from: i64,
        to: i64,
        mut each: impl FnMut(&MessageExt),
    ) -> Result<bool, BrokerReadError> {
        let mut offset = from;
        while offset < to {
            if self.budget == 0 {
                return Ok(false);
            }
            let batch = PULL_BATCH
                .min(to - offset)
                .min(i64::try_from(self.budget).unwrap_or(PULL_BATCH));
            let pulled = Box::pin(self.consumer.pull(mq, "*", offset, batch as i32))
                .await
                .step("pulling messages")?;
            match pulled.pull_status() {
                PullStatus::Found => {
                    for message in pulled.msg_found_list().unwrap_or_default() {
                        if message.queue_offset() >= to {
                            break;
                        }
                        each(message);
                        self.budget = self.budget.saturating_sub(1);
                    }
                }
                PullStatus::OffsetIllegal => {
                    // Below the minimum (deleted meanwhile): go on from there.
                    let min = i64::try_from(pulled.min_offset()).unwrap_or(i64::MAX);
                    if min > offset {
                        offset = min;
                        continue;
                    }
                    break;
                }
                PullStatus::NoNewMsg | PullStatus::NoMatchedMsg => {}
            }
            let next = i64::try_from(pulled.next_begin_offset()).unwrap_or(i64::MAX);
            if next <= offset {
                break;
            }
            offset = next;
        }
        Ok(true)
    }

    /// The broker's transaction-checker checkpoint on `topic` (its queue 0),
    /// or 0 when it has none yet.
    async fn checkpoint(&self, (_, addr): &Master, topic: &str) -> Result<i64, BrokerReadError> {
        let stats = ConsumerAdmin::examine_consume_stats(
            self.admin,
            CHECKER_GROUP.into(),
            Some(topic.into()),
            None,
            Some(addr.clone()),
            None,
        )
        .await
        .step("the transaction checker's checkpoint")?;
        Ok(stats
            .get_offset_table()
            .iter()
            .filter(|(mq, _)| mq.queue_id() == 0)
            .map(|(_, offsets)| offsets.get_consumer_offset())
            .max()
            .unwrap_or(0))
    }

    /// Adds the undecided half messages of the order topic on one master.
    async fn scan_halves(
        &mut self,
        master: &Master,
        scan: &mut HalfScan,
    ) -> Result<(), BrokerReadError> {
        let half_topic = TopicValidator::RMQ_SYS_TRANS_HALF_TOPIC;
        let op_topic = TopicValidator::RMQ_SYS_TRANS_OP_HALF_TOPIC;
        let before = self.budget;
        // Halves first, then the ops: a decision made while reading is seen.
        let mut copies: BTreeMap<String, Vec<HalfCopy>> = BTreeMap::new();
        let real_topic = CheetahString::from(self.scope.order_topic.as_str());
        let checkpoint = self.checkpoint(master, half_topic).await?;
        for (mq, min, max) in self.ranges(master, half_topic).await? {
            let from = self.start_offset(master, &mq, min).await?.max(checkpoint);
            let complete = self
                .pull_range(&mq, from, max, |m| {
                    if m.property(&MessageConst::PROPERTY_REAL_TOPIC.into())
                        .as_ref()
                        == Some(&real_topic)
                    {
                        let copy = HalfCopy::of(m);
                        copies.entry(copy.uniq_key.clone()).or_default().push(copy);
                    }
                })
                .await?;
            scan.truncated |= !complete;
        }
        let mut decided: HashSet<i64> = HashSet::new();
        let op_checkpoint = self.checkpoint(master, op_topic).await?;
        for (mq, min, max) in self.ranges(master, op_topic).await? {
            let complete = self
                .pull_range(&mq, min.max(op_checkpoint), max, |m| {
                    if m.get_tags().as_deref() == Some(OP_REMOVE_TAG) {
                        decided.extend(decided_offsets(&m.body().unwrap_or_default()));
                    }
                })
                .await?;
            scan.truncated |= !complete;
        }
        scan.read += before - self.budget;
        for group in copies.into_values() {
            if group.iter().any(|c| decided.contains(&c.queue_offset)) {
                continue;
            }
            let first = &group[0];
            scan.undecided.push(UndecidedHalf {
                tx_no: first.message.tx_no.clone(),
                kind: first.message.kind,
                product_id: first.message.product_id,
                born_at: group
                    .iter()
                    .map(|c| c.born_at)
                    .min()
                    .unwrap_or(first.born_at),
                checks: group.iter().map(|c| c.checks).max().unwrap_or(0),
                copies: group.len() as u32,
                broker: master.0.to_string(),
            });
        }
        Ok(())
    }

    /// Lag of each watched group on the order topic and on each other topic
    /// it has committed offsets for, on every master; a group that cannot be
    /// read is named in the second list.
    async fn lags(&mut self, masters: &[Master]) -> (Vec<GroupLag>, Vec<String>) {
        let mut lags: BTreeMap<(String, String), GroupLag> = BTreeMap::new();
        let mut errors = Vec::new();
        let scope = self.scope;
        for group in &scope.lag_groups {
            for (name, addr) in masters {
                // `(broker offset, committed offset)` per queue. Asked for the
                // order topic by name too: the broker lists only the topics a
                // group has committed offsets for, so a group that never
                // committed one would otherwise look idle.
                let mut queues: BTreeMap<MessageQueue, (i64, i64)> = BTreeMap::new();
                for topic in [None, Some(scope.order_topic.as_str())] {
                    match ConsumerAdmin::examine_consume_stats(
                        self.admin,
                        group.as_str().into(),
                        topic.map(CheetahString::from),
                        None,
                        Some(addr.clone()),
                        None,
                    )
                    .await
                    {
                        Ok(stats) => {
                            for (mq, offsets) in stats.get_offset_table() {
                                queues.entry(mq.clone()).or_insert((
                                    offsets.get_broker_offset(),
                                    offsets.get_consumer_offset(),
                                ));
                            }
                        }
                        Err(err) => errors.push(format!("{group} on {name}: {err}")),
                    }
                }
                for (mq, (stored, committed)) in queues {
                    let waiting = (stored - committed).max(0);
                    let oldest = if waiting > 0 {
                        self.first_stored_at(&mq, committed, stored)
                            .await
                            .unwrap_or(None)
                    } else {
                        None
                    };
                    let entry = lags
                        .entry((group.clone(), mq.topic().to_string()))
                        .or_insert_with(|| GroupLag {
                            group: group.clone(),
                            topic: mq.topic().to_string(),
                            waiting: 0,
                            oldest_waiting_since: None,
                        });
                    entry.waiting += waiting;
                    entry.oldest_waiting_since = match (entry.oldest_waiting_since, oldest) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
        }
        (lags.into_values().collect(), errors)
    }
}

/// One copy of a half message.
struct HalfCopy {
    uniq_key: String,
    queue_offset: i64,
    born_at: DateTime<Utc>,
    checks: u32,
    message: TopicMessage,
}

impl HalfCopy {
    fn of(m: &MessageExt) -> Self {
        let property = |name: &'static str| m.property(&CheetahString::from_static_str(name));
        Self {
            uniq_key: property(MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
                .map_or_else(|| m.msg_id().to_string(), |k| k.to_string()),
            queue_offset: m.queue_offset(),
            born_at: millis(m.born_timestamp()),
            checks: property(MessageConst::PROPERTY_TRANSACTION_CHECK_TIMES)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            message: half_message(m),
        }
    }
}

/// The batch a message of the group commit carries, if it is one.
fn batch_of(m: &MessageExt) -> Option<Result<OrderBatch, ()>> {
    (m.get_tags().as_deref() == Some(TAG_ORDER_BATCH))
        .then(|| OrderBatch::decode(&m.body().unwrap_or_default()).map_err(|_| ()))
}

/// What an order-topic message carries, one per business fact: a group
/// commit's [`OrderBatch`] counts as the creation of each of its orders.
fn topic_messages(m: &MessageExt) -> Vec<TopicMessage> {
    match batch_of(m) {
        Some(Ok(batch)) => batch
            .orders
            .iter()
            .map(|order| TopicMessage {
                kind: Some(MessageKind::Creation),
                tx_no: Some(order.tx_no.to_string()),
                product_id: Some(order.product_id.get()),
                stored_at: millis(m.store_timestamp()),
            })
            .collect(),
        _ => vec![topic_message(m)],
    }
}

/// What a half message stands for: one transaction, so a batch's half is
/// named by its batch tx_no (and its first order's product).
fn half_message(m: &MessageExt) -> TopicMessage {
    match batch_of(m) {
        Some(Ok(batch)) => TopicMessage {
            kind: Some(MessageKind::Creation),
            tx_no: Some(batch.batch_tx_no.to_string()),
            product_id: batch.orders.first().map(|o| o.product_id.get()),
            stored_at: millis(m.store_timestamp()),
        },
        _ => topic_message(m),
    }
}

/// What an order-topic message (or its half copy) carries.
fn topic_message(m: &MessageExt) -> TopicMessage {
    let kind = match m.get_tags().as_deref() {
        Some(TAG_ORDER_CREATED | TAG_ORDER_BATCH) => Some(MessageKind::Creation),
        Some(TAG_ORDER_CANCELLED) => Some(MessageKind::Cancellation),
        _ => None,
    };
    let body = m.body().unwrap_or_default();
    let decoded = match kind {
        Some(MessageKind::Creation) => OrderCreated::decode(&body)
            .ok()
            .map(|o| (o.tx_no.to_string(), o.product_id.get())),
        Some(MessageKind::Cancellation) => OrderCancelled::decode(&body)
            .ok()
            .map(|o| (o.tx_no.to_string(), o.product_id.get())),
        None => None,
    };
    let first_key = || {
        m.get_keys()
            .and_then(|keys| keys.split_whitespace().next().map(str::to_owned))
    };
    TopicMessage {
        kind,
        tx_no: match (&kind, &decoded) {
            (_, Some((tx_no, _))) => Some(tx_no.clone()),
            (Some(_), None) => first_key(),
            (None, None) => None,
        },
        product_id: decoded.map(|(_, product)| product),
        stored_at: millis(m.store_timestamp()),
    }
}

/// The half-queue offsets an op message's body decides (`"17,18,"`).
fn decided_offsets(body: &[u8]) -> impl Iterator<Item = i64> + '_ {
    std::str::from_utf8(body)
        .unwrap_or_default()
        .split(',')
        .filter_map(|o| o.trim().parse().ok())
}

fn millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Counts per tx_no of the creation and cancellation messages read.
pub fn copies_by_tx(messages: &[TopicMessage]) -> HashMap<&str, u32> {
    let mut copies = HashMap::new();
    for message in messages {
        if let (Some(_), Some(tx_no)) = (message.kind, message.tx_no.as_deref()) {
            *copies.entry(tx_no).or_insert(0) += 1;
        }
    }
    copies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_bodies_list_offsets_each_followed_by_a_comma() {
        assert_eq!(
            decided_offsets(b"17,18,21,").collect::<Vec<_>>(),
            [17, 18, 21]
        );
        assert_eq!(decided_offsets(b"").count(), 0);
        assert_eq!(decided_offsets(b"x,5").collect::<Vec<_>>(), [5]);
    }
}
