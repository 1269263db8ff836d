//! The containerized cluster (`deploy/cluster`) as its tests see it from
//! outside: the gateway (the only HTTP door), the two databases on their
//! published ports, and `docker-compose` to kill and restart its parts.
//!
//! Addresses come from `SECKILL_CLUSTER_GATEWAY`, `SECKILL_CLUSTER_ORDER_DB`,
//! `SECKILL_CLUSTER_STOCK_DB` (defaults: what `deploy/up.sh --cluster`
//! publishes).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::{Database, DatabaseConnection};
use serde_json::{Value, json};

use crate::invariants::assert_accounted_in;
use crate::services::RunningService;

pub const PROJECT: &str = "seckill-cluster";

pub struct Cluster {
    pub gateway: RunningService,
    pub order_db: DatabaseConnection,
    pub stock_db: DatabaseConnection,
    compose_file: String,
}

/// How a run of buyers was answered.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub created: i64,
    pub pending: i64,
    /// Answers by status and code (`"409 SOLD_OUT"`).
    pub answers: BTreeMap<String, i64>,
}

impl Tally {
    /// 5xx answers other than the documented 503s (each names its code).
    pub fn undocumented_5xx(&self) -> i64 {
        self.answers
            .iter()
            .filter(|(answer, _)| {
                answer.starts_with('5')
                    && (!answer.starts_with("503 ") || answer.as_str() == "503 ")
            })
            .map(|(_, n)| n)
            .sum()
    }
}

fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

impl Cluster {
    pub async fn connect() -> Self {
        crate::init_logs();
        let connect = |url: String| async move {
            Database::connect(url.as_str())
                .await
                .unwrap_or_else(|e| panic!("connecting to {url}: {e} (is the cluster up?)"))
        };
        Self {
            gateway: RunningService::remote(&env_or(
                "SECKILL_CLUSTER_GATEWAY",
                "http://127.0.0.1:8088",
            )),
            order_db: connect(env_or(
                "SECKILL_CLUSTER_ORDER_DB",
                "mysql://root:seckill-dev@127.0.0.1:13306/seckill_order",
            ))
            .await,
            stock_db: connect(env_or(
                "SECKILL_CLUSTER_STOCK_DB",
                "mysql://root:seckill-dev@127.0.0.1:13307/seckill_stock",
            ))
            .await,
            compose_file: format!(
                "{}/../deploy/cluster/compose.yaml",
                env!("CARGO_MANIFEST_DIR")
            ),
        }
    }

    /// A product id no earlier run used (the cluster's volumes outlive runs).
    pub fn fresh_product(scenario: i64) -> i64 {
        let secs = chrono::Utc::now().timestamp() % 100_000_000;
        secs * 100 + scenario
    }

    /// Runs `docker-compose -p seckill-cluster -f compose.yaml <args>`; panics
    /// when it fails.
    pub fn compose(&self, args: &[&str]) -> String {
        let output = Command::new("docker-compose")
            .args(["-p", PROJECT, "-f", &self.compose_file])
            .args(args)
            .output()
            .expect("running docker-compose");
        assert!(
            output.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// SIGKILLs a service's container.
    pub fn kill(&self, service: &str) {
        tracing::warn!(service, "killing");
        println!("[cluster] kill {service}");
        self.compose(&["kill", "-s", "SIGKILL", service]);
    }

    /// Starts a stopped service's container again and waits until it is healthy.
    pub async fn restart(&self, service: &str, limit: Duration) {
        println!("[cluster] start {service}");
        self.compose(&["start", service]);
        self.wait_healthy(service, limit).await;
    }

    /// Waits until the service's container reports healthy.
    pub async fn wait_healthy(&self, service: &str, limit: Duration) {
        let started = Instant::now();
        loop {
            let id = self.compose(&["ps", "-q", service]).trim().to_owned();
            let health = Command::new("docker")
                .args(["inspect", "-f", "{{.State.Health.Status}}", &id])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default();
            if health == "healthy" {
                println!("[cluster] {service} healthy after {:?}", started.elapsed());
                return;
            }
            assert!(
                started.elapsed() < limit,
                "{service} not healthy after {limit:?} (health: {health})"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The container's name (`seckill-cluster_<service>_1`).
    pub fn container(&self, service: &str) -> String {
        let id = self.compose(&["ps", "-q", service]).trim().to_owned();
        let output = Command::new("docker")
            .args(["inspect", "-f", "{{.Name}}", &id])
            .output()
            .expect("docker inspect");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .trim_start_matches('/')
            .to_owned()
    }

    /// Cuts a service's container off the cluster's network, or joins it
    /// again under its service name.
    pub fn network(&self, service: &str, connected: bool) {
        let container = self.container(service);
        let network = format!("{}_default", PROJECT.replace('-', ""));
        let network = if docker_ok(&["network", "inspect", &network]) {
            network
        } else {
            format!("{PROJECT}_default")
        };
        println!("[cluster] network {network}: {service} connected={connected}");
        let ok = if connected {
            docker_ok(&[
                "network", "connect", "--alias", service, &network, &container,
            ])
        } else {
            docker_ok(&["network", "disconnect", &network, &container])
        };
        assert!(ok, "docker network (dis)connect {service}");
    }

    /// Stops every container (volumes kept) and starts them again; waits
    /// until the gateway answers ready sales.
    pub async fn stop_and_start_everything(&self, limit: Duration) {
        println!("[cluster] stopping every container");
        self.compose(&["stop", "-t", "20"]);
        println!("[cluster] starting every container");
        self.compose(&["up", "-d"]);
        for service in [
            "gateway",
            "order-service-1",
            "order-service-2",
            "stock-service-1",
            "stock-service-2",
        ] {
            self.wait_healthy(service, limit).await;
        }
    }

    /// A command's output inside a service's container.
    pub fn exec(&self, service: &str, command: &[&str]) -> String {
        let mut args = vec!["exec", "-T", service];
        args.extend_from_slice(command);
        self.compose(&args)
    }

    /// Half messages stored per broker name, summed over both order-service
    /// replicas (read inside each container: only the gateway is published).
    pub fn transactions_by_broker(&self) -> BTreeMap<String, i64> {
        let mut by_broker = BTreeMap::new();
        for replica in ["order-service-1", "order-service-2"] {
            let metrics = self.metrics_of(replica);
            for line in metrics.lines() {
                if let Some(rest) =
                    line.strip_prefix("seckill_transactions_by_broker_total{broker=\"")
                    && let Some((broker, count)) = rest.split_once("\"} ")
                {
                    *by_broker.entry(broker.to_owned()).or_default() +=
                        count.trim().parse::<f64>().unwrap_or(0.0) as i64;
                }
            }
        }
        by_broker
    }

    /// One order-service replica's `/metrics`, read inside its container.
    fn metrics_of(&self, replica: &str) -> String {
        self.exec(replica, &["curl", "-fsS", "http://127.0.0.1:8091/metrics"])
    }

    /// Order requests answered by one order-service replica (all outcomes).
    pub fn requests_answered_by(&self, replica: &str) -> i64 {
        self.metrics_of(replica)
            .lines()
            .filter(|l| l.starts_with("seckill_order_requests_total{"))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(_, n)| n.parse::<f64>().unwrap_or(0.0) as i64)
            .sum()
    }

    /// Opens a sale through the gateway; retried while the cluster answers 503
    /// (e.g. a sale being rebuilt after a failover).
    pub async fn open_sale(&self, product: i64, stock: i64, limit: i64) {
        let body = json!({"stock": stock, "per_user_limit": limit});
        let path = format!("/api/sales/{product}");
        let started = Instant::now();
        loop {
            let (status, answer) = self
                .gateway
                .call(reqwest::Method::PUT, &path, Some(&body))
                .await;
            if status == StatusCode::OK {
                return;
            }
            assert!(
                status == StatusCode::SERVICE_UNAVAILABLE
                    && started.elapsed() < Duration::from_secs(60),
                "opening sale {product}: {status} {answer}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until reconciliation says the sale's admission is open (e.g.
    /// rebuilt from the databases after Redis lost it).
    pub async fn wait_sale_open(&self, product: i64, limit: Duration) {
        let started = Instant::now();
        loop {
            let (status, report) = self
                .gateway
                .call(reqwest::Method::GET, "/api/admin/reconcile", None)
                .await;
            let admission = report["products"]
                .as_array()
                .and_then(|all| all.iter().find(|p| p["product_id"] == product))
                .map(|p| p["admission"].clone())
                .unwrap_or(Value::Null);
            if status.is_success() && admission == "open" {
                println!(
                    "[cluster] sale {product} open after {:?}",
                    started.elapsed()
                );
                return;
            }
            assert!(
                started.elapsed() < limit,
                "sale {product} not open after {limit:?}: {status} {admission}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// `buyers` distinct users (ids from `first_user`) each ask for one item
    /// through the gateway, `concurrency` at a time. `during` runs once
    /// `fault_after` requests were answered (the fault mid-sale).
    pub async fn sell(
        &self,
        product: i64,
        first_user: i64,
        buyers: i64,
        concurrency: usize,
        fault_after: i64,
        during: impl FnOnce() + Send + 'static,
    ) -> Tally {
        let next = Arc::new(AtomicI64::new(0));
        let answered = Arc::new(AtomicI64::new(0));
        let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
        let fault = Arc::new(std::sync::Mutex::new(Some(during)));
        let workers = (0..concurrency).map(|_| {
            let (next, answered, tally, fault) = (
                Arc::clone(&next),
                Arc::clone(&answered),
                Arc::clone(&tally),
                Arc::clone(&fault),
            );
            let http = self.gateway.http.clone();
            let base = self.gateway.base_url.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= buyers {
                        return;
                    }
                    let answer = buy(&http, &base, first_user + i, product).await;
                    {
                        let mut tally = tally.lock().unwrap();
                        match answer.as_str() {
                            "201 " => tally.created += 1,
                            "202 " => tally.pending += 1,
                            _ => {}
                        }
                        *tally.answers.entry(answer).or_default() += 1;
                    }
                    if answered.fetch_add(1, Ordering::Relaxed) + 1 == fault_after {
                        let during = fault.lock().unwrap().take();
                        if let Some(during) = during {
                            tokio::task::spawn_blocking(during);
                        }
                    }
                }
            })
        });
        for worker in futures::future::join_all(workers).await {
            worker.expect("buyer task");
        }
        let tally = tally.lock().unwrap().clone();
        println!("[cluster] product {product}: {tally:?}");
        tally
    }

    /// The invariants once quiet (up to `limit`): initial stock = stock DB +
    /// NEW/PAID items, every committed message applied once, Redis agrees,
    /// nothing oversold; and no undocumented 5xx in `tally`.
    pub async fn assert_invariants(
        &self,
        product: i64,
        initial: i64,
        tally: &Tally,
        limit: Duration,
    ) {
        let started = Instant::now();
        assert_accounted_in(
            &self.order_db,
            &self.stock_db,
            &self.gateway,
            product,
            initial,
            limit,
        )
        .await;
        let accounts =
            crate::invariants::accounts_in(&self.order_db, &self.stock_db, product).await;
        let deducted_twice = crate::db::scalar(
            &self.stock_db,
            "SELECT COUNT(*) FROM (SELECT tx_no FROM tx_log WHERE product_id = ? \
             GROUP BY tx_no HAVING COUNT(*) > 1) twice",
            [product.into()],
        )
        .await;
        let over_limit = crate::db::scalar(
            &self.order_db,
            "SELECT COUNT(*) FROM (SELECT user_id FROM orders WHERE product_id = ? \
             AND status IN ('NEW', 'PAID') GROUP BY user_id HAVING SUM(pay_count) > 1) over_limit",
            [product.into()],
        )
        .await;
        println!(
            "[cluster] product {product}: quiet and accounted after {:?}: {accounts:?}; \
             PASS no oversell ({} held of {initial}), PASS exactly-once ({deducted_twice} doubled), \
             PASS per-user limit ({over_limit} over), 5xx other than documented 503s: {}",
            started.elapsed(),
            accounts.held_items,
            tally.undocumented_5xx()
        );
        assert!(accounts.held_items <= initial, "oversold: {accounts:?}");
        assert!(
            accounts.held_items >= tally.created,
            "{} buyers got a 201 but only {} items are held: a confirmed order was lost",
            tally.created,
            accounts.held_items
        );
        assert_eq!(deducted_twice, 0, "a tx_no applied twice");
        assert_eq!(over_limit, 0, "a user holds more than the limit");
        assert_eq!(tally.undocumented_5xx(), 0, "undocumented 5xx: {tally:?}");
        assert!(
            tally.created <= initial,
            "more 201s ({}) than items ({initial})",
            tally.created
        );
    }
}

/// One buyer's order through the gateway, as its client makes it: an order
/// token, then the order. The answer as `"<status> <code>"` (`"201 "` for a
/// placed order) of the first step that did not succeed, or of the order.
async fn buy(http: &reqwest::Client, base: &str, user: i64, product: i64) -> String {
    let bearer = crate::auth::buyer_token(user);
    let answer = |status: reqwest::StatusCode, body: &Value| {
        format!(
            "{} {}",
            status.as_u16(),
            body["code"].as_str().unwrap_or("")
        )
    };
    let transport = |err: reqwest::Error| {
        format!(
            "transport {}",
            if err.is_timeout() { "timeout" } else { "error" }
        )
    };
    let token = match http
        .post(format!("{base}/api/sales/{product}/order-token"))
        .bearer_auth(&bearer)
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            match body["order_token"].as_str() {
                Some(token) if status.is_success() => token.to_owned(),
                _ => return answer(status, &body),
            }
        }
        Err(err) => return transport(err),
    };
    let body = json!({"user_id": user, "product_id": product, "count": 1});
    match http
        .post(format!("{base}/api/orders"))
        .bearer_auth(&bearer)
        .header("Order-Token", token)
        .json(&body)
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            answer(status, &body)
        }
        Err(err) => transport(err),
    }
}
