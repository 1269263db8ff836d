//! The broker's own send rates, measured with the same concurrency and a
//! message of the same size as an `OrderCreated`: the ceiling the order path
//! is compared against.

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use common::domain::{OrderNo, ProductId, Quantity, TxNo, UserId};
use common::messages::{Envelope, OrderCreated};
use common::mq::MqRuntime;
use common::settings::MqSettings;
use futures::StreamExt;
use rocketmq_client_rust::{
    DefaultMQProducer, LocalTransactionState, TransactionListener, TransactionMQProducer,
};
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;

use crate::load::Stats;

fn sample_body() -> Vec<u8> {
    OrderCreated::new(
        TxNo::generate(),
        OrderNo::generate(),
        UserId::parse(1).expect("id"),
        ProductId::parse(1).expect("id"),
        Quantity::parse(1, 1).expect("count"),
    )
    .encode()
}

fn message(topic: &str, body: &[u8]) -> Message {
    Message::builder()
        .topic(topic)
        .body(body.to_vec())
        .build()
        .expect("message")
}

async fn timed<F, Fut>(what: &str, count: usize, concurrency: usize, send: F) -> Stats
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eprintln!("[bench] {what}: {count} sends, concurrency {concurrency}");
    let started = Instant::now();
    let latencies: Vec<_> = futures::stream::iter(0..count)
        .map(|_| {
            let send = send();
            async move {
                let t = Instant::now();
                send.await.then(|| t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let failed = latencies.iter().filter(|l| l.is_none()).count();
    if failed > 0 {
        eprintln!("[bench] {what}: {failed} sends failed");
    }
    Stats::new(latencies.into_iter().flatten().collect(), started.elapsed())
}

pub async fn plain_sends(
    settings: &MqSettings,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Stats> {
    let runtime = MqRuntime::start("bench-plain", settings)?;
    let topic = "seckill_bench_plain";
    common::mq::ensure_topic(&runtime, settings, topic).await?;
    let mut producer = DefaultMQProducer::builder(runtime.client())
        .producer_group(format!(
            "seckill_bench_plain_{}",
            uuid::Uuid::now_v7().simple()
        ))
        .name_server_addr(settings.namesrv_addr.clone())
        .build();
    producer.start().await?;
    let body = sample_body();
    let stats = timed("broker plain sync send", count, concurrency, || {
        let sent = producer.send(message(topic, &body));
        async move { sent.await.is_ok() }
    })
    .await;
    producer.shutdown().await;
    runtime.shutdown().await;
    Ok(stats)
}

/// Commits at once: the broker's transactional round trip without any local work.
struct CommitAtOnce;

impl TransactionListener for CommitAtOnce {
    fn execute_local_transaction(
        &self,
        _: &dyn MessageTrait,
        _: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState {
        LocalTransactionState::CommitMessage
    }

    fn check_local_transaction(&self, _: &MessageExt) -> LocalTransactionState {
        LocalTransactionState::CommitMessage
    }
}

pub async fn transactional_sends(
    settings: &MqSettings,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Stats> {
    let runtime = MqRuntime::start("bench-tx", settings)?;
    let topic = "seckill_bench_tx";
    common::mq::ensure_topic(&runtime, settings, topic).await?;
    let mut producer = TransactionMQProducer::builder(runtime.client())
        .producer_group(format!(
            "seckill_bench_tx_{}",
            uuid::Uuid::now_v7().simple()
        ))
        .name_server_addr(settings.namesrv_addr.clone())
        .transaction_listener(CommitAtOnce)
        .build();
    producer.start().await?;
    let producer = Arc::new(producer);
    let body = sample_body();
    let stats = timed("broker transactional send", count, concurrency, || {
        let producer = Arc::clone(&producer);
        let message = message(topic, &body);
        async move {
            matches!(
                producer.send_message_in_transaction::<(), _>(message, None).await,
                Ok(r) if r.local_transaction_state == Some(LocalTransactionState::CommitMessage)
            )
        }
    })
    .await;
    if let Ok(mut producer) = Arc::try_unwrap(producer) {
        producer.shutdown().await;
    }
    runtime.shutdown().await;
    Ok(stats)
}
