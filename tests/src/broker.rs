//! Sending straight to the order topic, as a producer other than order-service.

use common::messages::{
    Envelope, OrderCancelled, OrderCreated, StockInsufficient, TAG_ORDER_CANCELLED,
    TAG_ORDER_CREATED, TAG_STOCK_INSUFFICIENT,
};
use common::mq::MqRuntime;
use rocketmq_client_rust::DefaultMQProducer;
use rocketmq_model::common::message::message_single::Message;

use crate::TestEnv;

/// A plain producer on the test's order topic.
pub struct TopicWriter {
    producer: DefaultMQProducer,
    runtime: Option<MqRuntime>,
    topic: String,
    stock_topic: String,
}

impl TopicWriter {
    pub async fn start(env: &TestEnv) -> Self {
        let settings = env.mq_settings();
        let runtime = MqRuntime::start("test-writer", &settings).expect("client runtime");
        for topic in [&env.topic, &env.stock_topic] {
            common::mq::ensure_topic(&runtime, &settings, topic)
                .await
                .expect("topic");
        }
        let mut producer = DefaultMQProducer::builder(runtime.client())
            .producer_group(format!("{}_writer", env.producer_group))
            .name_server_addr(env.namesrv_addr.clone())
            .build();
        producer.start().await.expect("producer start");
        Self {
            producer,
            runtime: Some(runtime),
            topic: env.topic.clone(),
            stock_topic: env.stock_topic.clone(),
        }
    }

    pub async fn send(&self, order: &OrderCreated) {
        self.send_tagged(TAG_ORDER_CREATED, order.tx_no.as_str(), order.encode())
            .await;
    }

    pub async fn send_cancel(&self, cancel: &OrderCancelled) {
        self.send_tagged(TAG_ORDER_CANCELLED, cancel.tx_no.as_str(), cancel.encode())
            .await;
    }

    /// A (repeated) StockInsufficient report, as stock-service sends it.
    pub async fn send_insufficient(&self, report: &StockInsufficient) {
        self.send_to(
            &self.stock_topic,
            TAG_STOCK_INSUFFICIENT,
            report.order_tx_no.as_str(),
            report.encode(),
        )
        .await;
    }

    /// Any body under any tag on the order topic (e.g. one no consumer can read).
    pub async fn send_tagged(&self, tag: &str, key: &str, body: Vec<u8>) {
        self.send_to(&self.topic, tag, key, body).await;
    }

    async fn send_to(&self, topic: &str, tag: &str, key: &str, body: Vec<u8>) {
        let message = Message::builder()
            .topic(topic)
            .tags(tag)
            .key(key)
            .body(body)
            .build()
            .expect("message");
        self.producer.send(message).await.expect("plain send");
    }

    pub async fn stop(mut self) {
        self.producer.shutdown().await;
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown().await;
        }
    }
}

/// A transactional producer (its own group) that never decides: every local
/// transaction and check-back answers UNKNOWN, so the broker discards its
/// half messages to `TRANS_CHECK_MAX_TIME_TOPIC` after `transactionCheckMax`
/// check-backs — as when order-service's producer could not be reached.
pub struct UndecidedProducer {
    producer: rocketmq_client_rust::TransactionMQProducer,
    runtime: MqRuntime,
}

struct NeverDecides;

impl rocketmq_client_rust::TransactionListener for NeverDecides {
    fn execute_local_transaction(
        &self,
        _msg: &dyn rocketmq_model::common::message::MessageTrait,
        _arg: Option<&(dyn std::any::Any + Send + Sync)>,
    ) -> rocketmq_client_rust::LocalTransactionState {
        rocketmq_client_rust::LocalTransactionState::Unknown
    }

    fn check_local_transaction(
        &self,
        _msg: &rocketmq_model::common::message::message_ext::MessageExt,
    ) -> rocketmq_client_rust::LocalTransactionState {
        rocketmq_client_rust::LocalTransactionState::Unknown
    }
}

impl UndecidedProducer {
    pub async fn start(env: &TestEnv) -> Self {
        let runtime = MqRuntime::start("test-undecided", &env.mq_settings()).expect("runtime");
        let mut producer = rocketmq_client_rust::TransactionMQProducer::builder(runtime.client())
            .producer_group(format!("{}_undecided", env.producer_group))
            .name_server_addr(env.namesrv_addr.clone())
            .transaction_listener(NeverDecides)
            .build();
        producer.start().await.expect("producer");
        Self { producer, runtime }
    }

    /// Sends `body` as a half message on the test's order topic.
    pub async fn send_half(&self, topic: &str, tag: &str, key: &str, body: Vec<u8>) {
        let message = Message::builder()
            .topic(topic)
            .tags(tag)
            .key(key.to_owned())
            .body(body)
            .build()
            .expect("message");
        self.producer
            .send_message_in_transaction::<(), _>(message, None)
            .await
            .expect("half message");
    }

    pub async fn stop(mut self) {
        self.producer.shutdown().await;
        self.runtime.shutdown().await;
    }
}
