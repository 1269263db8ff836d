//! Sending straight to the order topic, as a producer other than order-service.

use common::messages::{OrderCreated, TAG_ORDER_CREATED};
use common::mq::MqRuntime;
use rocketmq_client_rust::DefaultMQProducer;
use rocketmq_model::common::message::message_single::Message;

use crate::TestEnv;

/// A plain producer on the test's order topic.
pub struct TopicWriter {
    producer: DefaultMQProducer,
    runtime: Option<MqRuntime>,
    topic: String,
}

impl TopicWriter {
    pub async fn start(env: &TestEnv) -> Self {
        let settings = env.mq_settings();
        let runtime = MqRuntime::start("test-writer", &settings).expect("client runtime");
        common::mq::ensure_topic(&runtime, &settings, &env.topic)
            .await
            .expect("order topic");
        let mut producer = DefaultMQProducer::builder(runtime.client())
            .producer_group(format!("{}_writer", env.producer_group))
            .name_server_addr(env.namesrv_addr.clone())
            .build();
        producer.start().await.expect("producer start");
        Self {
            producer,
            runtime: Some(runtime),
            topic: env.topic.clone(),
        }
    }

    pub async fn send(&self, order: &OrderCreated) {
        let message = Message::builder()
            .topic(self.topic.as_str())
            .tags(TAG_ORDER_CREATED)
            .key(order.tx_no.to_string())
            .body(order.encode())
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
