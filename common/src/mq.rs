//! The RocketMQ client runtime both services own, and topic set-up.
//!
//! The client runs our synchronous listeners (local transaction, check-back,
//! consumption) on a blocking lane of its own runtime. That lane defaults to 4
//! running + 16 queued calls on two cores; beyond that a local transaction
//! silently never runs and the send comes back UNKNOWN. [`MqRuntime::start`]
//! sizes it from [`MqSettings`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rocketmq_client_rust::{
    ClientResult, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, DefaultMQProducer, MessageListenerConcurrently,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};
use tokio::sync::RwLock;

use crate::settings::MqSettings;

/// Topic whose route new topics are created from (the broker's auto-create key).
const CREATE_TOPIC_KEY: &str = "TBW102";

#[derive(Debug, thiserror::Error)]
pub enum MqError {
    #[error("invalid RocketMQ runtime settings: {0:?}")]
    Settings(rocketmq_runtime::RuntimeContractViolation),
    #[error("starting the RocketMQ client runtime: {0}")]
    Runtime(String),
    #[error("RocketMQ client: {0}")]
    Client(#[from] rocketmq_client_rust::ClientError),
}

/// Owns the client's runtime; every producer and consumer of a service hangs off it.
pub struct MqRuntime {
    owner: RuntimeOwner,
    client: Arc<ClientRuntime>,
}

impl MqRuntime {
    pub fn start(scope: &str, settings: &MqSettings) -> Result<Self, MqError> {
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        let lane_threads = settings.listener_concurrency.clamp(4, 256);
        let mut config = RuntimeConfig::for_parallelism(format!("rocketmq-{scope}"), parallelism)
            .with_max_blocking_threads(lane_threads * 2)
            .map_err(MqError::Settings)?;
        let lane = &mut config.blocking_lane_policies.metadata_io;
        lane.max_concurrency = lane_threads;
        lane.max_queue_depth = settings.listener_queue_depth.max(16);
        // A local transaction may wait on a row lock held by a check-back (or the
        // reverse); give it longer than InnoDB's lock wait before the lane gives up.
        lane.task_timeout = Duration::from_secs(90);
        let owner = RuntimeOwner::plan(config)
            .map_err(MqError::Settings)?
            .build()
            .map_err(|e| MqError::Runtime(e.to_string()))?;
        let client = ClientRuntime::try_new(
            owner.root_context().component("client"),
            ClientRuntimeConfig {
                shutdown_timeout: Duration::from_secs(10),
                ..ClientRuntimeConfig::default()
            },
            rocketmq_observability::TelemetryHandle::noop(),
        )?;
        Ok(Self { owner, client })
    }

    pub fn client(&self) -> Arc<ClientRuntime> {
        Arc::clone(&self.client)
    }

    /// Stops the client runtime; call after every producer/consumer was shut down.
    pub async fn shutdown(self) {
        let report = self.client.shutdown().await;
        if !report.is_healthy() {
            tracing::warn!(report = %report.to_json(), "RocketMQ client runtime shutdown");
        }
        let report = self.owner.shutdown_tasks().await;
        if !report.is_healthy() {
            tracing::warn!(report = %report.to_json(), "RocketMQ runtime tasks shutdown");
        }
        // Dropping a Tokio runtime must not happen on an async worker thread.
        let owner = self.owner;
        let _ = tokio::task::spawn_blocking(move || owner.shutdown_background()).await;
    }
}

/// Creates `topic` with `settings.topic_queues` queues when the broker lacks it,
/// so consumers find its route at once instead of after the next route refresh.
#[tracing::instrument(skip(runtime, settings))]
pub async fn ensure_topic(
    runtime: &MqRuntime,
    settings: &MqSettings,
    topic: &str,
) -> Result<(), MqError> {
    let mut admin = DefaultMQProducer::builder(runtime.client())
        .producer_group(format!("seckill_admin_{}", uuid::Uuid::now_v7().simple()))
        .name_server_addr(settings.namesrv_addr.clone())
        .build();
    admin.start().await?;
    let created = admin
        .create_topic(
            CREATE_TOPIC_KEY,
            topic,
            settings.topic_queues as i32,
            HashMap::new(),
        )
        .await;
    admin.shutdown().await;
    created?;
    Ok(())
}

/// The broker's delay levels (its default `messageDelayLevel`): level `i + 1`
/// delays a message by `DELAY_LEVELS[i]`. A message cannot ask for any other
/// delay, so a longer wait is sent on in steps (see [`delay_level_for`]).
pub const DELAY_LEVELS: [Duration; 18] = {
    const fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }
    [
        s(1),
        s(5),
        s(10),
        s(30),
        s(60),
        s(120),
        s(180),
        s(240),
        s(300),
        s(360),
        s(420),
        s(480),
        s(540),
        s(600),
        s(1200),
        s(1800),
        s(3600),
        s(7200),
    ]
};

/// The longest delay level not beyond `remaining` (the shortest when
/// `remaining` is under a second): `(level, its delay)`. Arriving early is
/// fine, the receiver sends the message on for what is left; late never.
pub fn delay_level_for(remaining: Duration) -> (i32, Duration) {
    let index = DELAY_LEVELS
        .iter()
        .rposition(|d| *d <= remaining)
        .unwrap_or(0);
    (index as i32 + 1, DELAY_LEVELS[index])
}

/// Whether a TCP connection to `addr` opens within `timeout`.
pub async fn tcp_reachable(addr: &str, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// Which of `addrs` accept a TCP connection now, probed together.
pub async fn reachable(addrs: &[String]) -> Vec<(String, bool)> {
    let probes: Vec<_> = addrs
        .iter()
        .map(|addr| {
            let addr = addr.clone();
            tokio::spawn(async move { tcp_reachable(&addr, Duration::from_secs(1)).await })
        })
        .collect();
    let mut probed = Vec::with_capacity(addrs.len());
    for (addr, probe) in addrs.iter().zip(probes) {
        probed.push((addr.clone(), probe.await.unwrap_or(false)));
    }
    probed
}

/// Readiness of the broker side: at least one name server and at least one
/// master broker accept connections; the check's detail lists each broker
/// (`{"broker-a:10911": true, "broker-b:10911": false}`), so a cluster with
/// one master down is ready — orders go to the other — and says which.
pub async fn probe_broker(settings: &MqSettings) -> crate::http::Check {
    let namesrvs = reachable(&crate::settings::split_addrs(&settings.namesrv_addr)).await;
    let brokers = reachable(&settings.broker_addrs()).await;
    let map = |probed: &[(String, bool)]| {
        probed
            .iter()
            .map(|(addr, up)| (addr.clone(), serde_json::Value::from(*up)))
            .collect::<serde_json::Map<_, _>>()
    };
    let detail = serde_json::json!({"name_servers": map(&namesrvs), "brokers": map(&brokers)});
    let any_up = |probed: &[(String, bool)]| probed.iter().any(|(_, up)| *up);
    let result = if !any_up(&namesrvs) {
        Err(format!(
            "no name server reachable at {}",
            settings.namesrv_addr
        ))
    } else if !any_up(&brokers) {
        Err(format!("no broker reachable at {}", settings.broker_addr))
    } else {
        Ok(())
    };
    crate::http::Check::from_result("broker", result).with_detail(detail)
}

/// A consumer's per-message work: `true` when the message is done with
/// (applied now or before), `false` to have it redelivered.
pub trait ConsumeEach: Send + Sync + 'static {
    fn consume_one(&self, msg: &MessageExt) -> bool;
}

/// Adapts a [`ConsumeEach`] to the client's batch listener. A batch with any
/// message not done is redelivered whole, so `consume_one` must be idempotent.
pub struct EachMessage<T>(pub T);

impl<T: ConsumeEach> MessageListenerConcurrently for EachMessage<T> {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let all_done = msgs.iter().all(|msg| self.0.consume_one(msg));
        Ok(if all_done {
            ConsumeConcurrentlyStatus::ConsumeSuccess
        } else {
            ConsumeConcurrentlyStatus::ReconsumeLater
        })
    }
}

/// A plain (non-transactional) producer that can be shut down while shared.
pub struct PlainProducer {
    producer: RwLock<Option<DefaultMQProducer>>,
}

impl PlainProducer {
    pub async fn start(
        runtime: &MqRuntime,
        settings: &MqSettings,
        group: &str,
    ) -> Result<Self, MqError> {
        let mut producer = DefaultMQProducer::builder(runtime.client())
            .producer_group(group)
            .name_server_addr(settings.namesrv_addr.clone())
            .send_msg_timeout(settings.send_timeout_ms)
            .build();
        producer.start().await?;
        Ok(Self {
            producer: RwLock::new(Some(producer)),
        })
    }

    /// Sends and waits for the broker's acknowledgement.
    pub async fn send(&self, message: Message) -> Result<(), String> {
        let producer = self.producer.read().await;
        let producer = producer.as_ref().ok_or("the producer is shut down")?;
        producer
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Waits for in-flight sends, then stops the producer.
    pub async fn shutdown(&self) {
        if let Some(mut producer) = self.producer.write().await.take() {
            producer.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_levels_never_overshoot_and_reach_fifteen_minutes_in_two_steps() {
        let fifteen = Duration::from_secs(900);
        let (level, first) = delay_level_for(fifteen);
        assert_eq!((level, first), (14, Duration::from_secs(600)));
        assert_eq!(
            delay_level_for(fifteen - first),
            (9, Duration::from_secs(300))
        );
        assert_eq!(
            delay_level_for(Duration::from_secs(3)).1,
            Duration::from_secs(1)
        );
        assert_eq!(delay_level_for(Duration::ZERO), (1, Duration::from_secs(1)));
        assert_eq!(delay_level_for(Duration::from_secs(86_400)).0, 18);
    }
}
