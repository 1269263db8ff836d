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
    topic: String,
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
        Self {
            producer,
            runtime,
            topic: env.topic.clone(),
        }
    }

    /// Sends `order` as an `OrderCreated` half message on the test's order topic.
    pub async fn send_half(&self, order: &OrderCreated) {
        let message = Message::builder()
            .topic(self.topic.as_str())
            .tags(common::messages::TAG_ORDER_CREATED)
            .key(order.tx_no.to_string())
            .body(common::messages::Envelope::encode(order))
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

/// A name server and broker of a test's own (the cached rocketmq-rust
/// binaries, fast check-backs as in `deploy/rocketmq/broker.toml`), so a test
/// can kill and restart the broker without disturbing the others.
pub struct PrivateBroker {
    pub namesrv_addr: String,
    pub broker_addr: String,
    dir: std::path::PathBuf,
    namesrv: std::process::Child,
    broker: Option<std::process::Child>,
}

impl PrivateBroker {
    /// On free ports: the name server on `base`, the broker on `base + 35`
    /// (it also binds `base + 33`, and `base + 36` for HA).
    pub async fn start() -> Self {
        let base = free_base_port();
        let bin = rocketmq_bin();
        let dir =
            std::env::temp_dir().join(format!("seckill-broker-{base}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("store")).expect("broker dir");
        let (namesrv_port, broker_port) = (base, base + 35);
        std::fs::write(
            dir.join("namesrv.toml"),
            format!(
                "rocketmqHome = \"{d}\"\nkvConfigPath = \"{d}/kvConfig.json\"\nconfigStorePath = \"{d}/namesrv.properties\"\n",
                d = dir.display()
            ),
        )
        .expect("namesrv.toml");
        std::fs::write(
            dir.join("broker.toml"),
            format!(
                r#"[broker]
namesrvAddr = "127.0.0.1:{namesrv_port}"
brokerIp1 = "127.0.0.1"
listenPort = {broker_port}
storePathRootDir = "{d}/store"
autoCreateTopicEnable = true
autoCreateSubscriptionGroup = true
transactionCheckInterval = 1000
transactionTimeout = 1000
transactionCheckMax = 30
transactionOpBatchInterval = 100

[broker.brokerServerConfig]
bindAddress = "127.0.0.1"

[broker.brokerIdentity]
brokerName = "seckill-test-broker-{base}"
brokerClusterName = "SeckillTestCluster"
brokerId = 0

[store]
storeType = "LocalFile"
brokerRole = "ASYNC_MASTER"
storePathRootDir = "{d}/store"
haListenAddress = "127.0.0.1"
haListenPort = {ha}

[logging]
filter = "warn"
"#,
                d = dir.display(),
                ha = broker_port + 1
            ),
        )
        .expect("broker.toml");
        let namesrv = Self::spawn(
            &dir,
            &format!("{bin}/rocketmq-namesrv-rust"),
            &[
                "-c",
                &dir.join("namesrv.toml").display().to_string(),
                "--bindAddress",
                "127.0.0.1",
                "--listenPort",
                &namesrv_port.to_string(),
            ],
            "namesrv",
        );
        let namesrv_addr = format!("127.0.0.1:{namesrv_port}");
        wait_for_port(&namesrv_addr).await;
        let mut private = Self {
            namesrv_addr,
            broker_addr: format!("127.0.0.1:{broker_port}"),
            dir,
            namesrv,
            broker: None,
        };
        private.start_broker(&bin).await;
        private
    }

    fn spawn(
        dir: &std::path::Path,
        program: &str,
        args: &[&str],
        log: &str,
    ) -> std::process::Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{log}.log")))
            .expect("log");
        std::process::Command::new(program)
            .args(args)
            .env("ROCKETMQ_HOME", dir)
            .env("ROCKETMQ_SECURITY_PROFILE", "development-insecure-loopback")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e} (build it with deploy/test.sh)"))
    }

    async fn start_broker(&mut self, bin: &str) {
        let config = self.dir.join("broker.toml").display().to_string();
        self.broker = Some(Self::spawn(
            &self.dir,
            &format!("{bin}/rocketmq-broker-rust"),
            &["-c", &config],
            "broker",
        ));
        wait_for_port(&self.broker_addr).await;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await; // registers with the name server
    }

    /// SIGKILL of the broker: no flush, no goodbye to clients.
    pub fn kill_broker(&mut self) {
        if let Some(mut broker) = self.broker.take() {
            let _ = broker.kill();
            let _ = broker.wait();
        }
    }

    /// Starts the broker again on the same store.
    pub async fn restart_broker(&mut self) {
        let bin = rocketmq_bin();
        self.start_broker(&bin).await;
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill_broker();
        let _ = self.namesrv.kill();
        let _ = self.namesrv.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn wait_for_port(addr: &str) {
    let started = std::time::Instant::now();
    while !common::mq::tcp_reachable(addr, std::time::Duration::from_millis(200)).await {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{addr} did not open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Where the rocketmq-rust servers were built (`$SECKILL_ROCKETMQ_BIN`, or
/// the cache `deploy/lib.sh` builds them into).
fn rocketmq_bin() -> String {
    std::env::var("SECKILL_ROCKETMQ_BIN").unwrap_or_else(|_| {
        format!(
            "{}/.cache/seckill-rs/rocketmq-1.0.0/bin",
            std::env::var("HOME").unwrap_or_default()
        )
    })
}

/// A port `p` with `p`, `p + 33`, `p + 35` and `p + 36` free on loopback.
fn free_base_port() -> u16 {
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    // Test processes started together have neighbouring pids: 40 ports
    // apart, their port sets (base..=base + 36) cannot overlap. All below
    // 32768, where Linux's ephemeral ports start: a port found free here
    // could otherwise be taken by an outgoing connection before the broker
    // binds it (suspected in one 30 s "did not open" failure).
    let seed = (std::process::id() % 300) as u16 * 40;
    (0..2000u16)
        .map(|i| 20_000 + (seed.wrapping_add(i.wrapping_mul(37)) % 12_000))
        .find(|&p| [p, p + 33, p + 35, p + 36].into_iter().all(free))
        .expect("free ports for a private broker")
}
