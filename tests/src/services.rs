//! Starting the services for a test: in-process on port 0 (the usual way), or
//! the real `order-service` binary as a child process (to kill it mid-flight).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::Caller;
use crate::{TestEnv, eventually};

/// order-service settings for `env`; `stock_url` is the test's stock-service.
pub fn order_settings(env: &TestEnv, stock_url: &str) -> order_service::settings::Settings {
    let mut settings = order_service::settings::Settings::default();
    settings.http.port = 0;
    settings.redis.key_prefix = env.redis_prefix.clone();
    settings.admission.stock_service_url = stock_url.to_owned();
    settings.admission.ready_check_ms = 200;
    settings.database.name = env.order_db.clone();
    settings.database.max_connections = 16;
    settings.mq = env.mq_settings();
    settings.auth = crate::auth::settings();
    settings.orders.producer_group = env.producer_group.clone();
    settings.lifecycle.events_group = format!("{}_events", env.producer_group);
    settings.lifecycle.timeout_producer_group = format!("{}_timeouts", env.producer_group);
    settings.dead_letters.group = format!("{}_dead_letters", env.producer_group);
    settings.redelivery.producer_group = format!("{}_redelivery", env.producer_group);
    settings.audit.group = format!("{}_audit", env.producer_group);
    settings.dead_letters.watched_groups = vec![
        env.consumer_group.clone(),
        settings.lifecycle.events_group.clone(),
    ];
    settings
}

pub fn stock_settings(env: &TestEnv) -> stock_service::settings::Settings {
    let mut settings = stock_service::settings::Settings::default();
    settings.http.port = 0;
    settings.database.name = env.stock_db.clone();
    settings.database.max_connections = 16;
    settings.mq = env.mq_settings();
    settings.auth = crate::auth::settings();
    settings.consumer.group = env.consumer_group.clone();
    settings.consumer.events_producer_group = format!("{}_events", env.consumer_group);
    // Tests of insufficient stock want the verdict now; the retry has its own test.
    settings.consumer.insufficient_retries = 0;
    settings
}

/// A service running in this process; [`RunningService::stop`] shuts it down gracefully.
pub struct RunningService {
    pub base_url: String,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A service dropped without `stop` is told to stop (in the background), so
/// a failed test does not leave it serving.
impl Drop for RunningService {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl RunningService {
    fn run<F>(port: u16, run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(stopped));
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Runs an application's `run_until_stopped` with a future that completes
    /// when [`RunningService::stop`] is called.
    fn serve<F, Fut>(port: u16, run_until_stopped: F) -> Self
    where
        F: FnOnce(futures::future::BoxFuture<'static, ()>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self::run(port, move |stopped| {
            run_until_stopped(Box::pin(async {
                let _ = stopped.await;
            }))
        })
    }

    /// A service this process did not start (the cluster's gateway): calls
    /// only; `stop` does nothing.
    pub fn remote(base_url: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(40))
                .build()
                .expect("HTTP client"),
            stop: None,
            task: None,
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("service task")
                .expect("service stopped cleanly");
        }
    }

    /// Sends a request and returns the status and the JSON body (`Null` when
    /// empty), signed in as the caller the request names
    /// ([`Caller::of_request`]: the buyer of its `user_id`, else an admin).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        self.call_as(Caller::of_request(&method, path, body), method, path, body)
            .await
    }

    /// [`RunningService::call`] as the given caller. An order
    /// (`POST /api/orders` for a product) first asks for its one-time order
    /// token, as a buyer's client does; when that is refused, the refusal is
    /// the answer. Only when the product is unknown (404) is the order sent
    /// anyway, so a malformed body is still refused for what it is (422).
    pub async fn call_as(
        &self,
        caller: Caller,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let product = body
            .and_then(|b| b.get("product_id"))
            .and_then(Value::as_i64)
            .filter(|p| *p > 0);
        let order_token = match (caller, product) {
            (Caller::Buyer(user), Some(product))
                if method == reqwest::Method::POST && path == "/api/orders" =>
            {
                Some(self.order_token(user, product).await)
            }
            _ => None,
        };
        if let Some(Err(refused)) = &order_token
            && !Self::sends_anyway(refused)
        {
            return refused.clone();
        }
        let answer = self
            .send_as(
                caller,
                method,
                path,
                body,
                order_token.as_ref().and_then(|t| t.as_ref().ok()),
            )
            .await;
        match order_token {
            Some(Err(refused)) if answer.1["code"] == "ORDER_TOKEN_INVALID" => refused,
            _ => answer,
        }
    }

    /// Sends an order after its token request was refused only when that
    /// named an unknown product (see [`RunningService::call_as`]).
    fn sends_anyway(refused: &(StatusCode, Value)) -> bool {
        refused.0 == StatusCode::NOT_FOUND
    }

    /// `POST /api/sales/{product}/order-token` as buyer `user`: the token, or
    /// the refusal.
    pub async fn order_token(
        &self,
        user: i64,
        product: i64,
    ) -> Result<String, (StatusCode, Value)> {
        let (status, body) = self
            .send_as(
                Caller::Buyer(user),
                reqwest::Method::POST,
                &format!("/api/sales/{product}/order-token"),
                None,
                None,
            )
            .await;
        match body["order_token"].as_str() {
            Some(token) if status == StatusCode::OK => Ok(token.to_owned()),
            _ => Err((status, body)),
        }
    }

    async fn send_as(
        &self,
        caller: Caller,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        order_token: Option<&String>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        if let Some(token) = caller.token() {
            request = request.bearer_auth(token);
        }
        if let Some(token) = order_token {
            request = request.header("Order-Token", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status();
        let text = response.text().await.expect("HTTP body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{status} with a non-JSON body: {text}"))
        };
        (status, body)
    }

    /// Sends a raw body with a content type (for malformed-input tests), as buyer 1.
    pub async fn call_raw(
        &self,
        path: &str,
        content_type: &str,
        body: &'static str,
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(crate::auth::buyer_token(1))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("HTTP request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

pub async fn spawn_order_service_with(
    settings: order_service::settings::Settings,
) -> RunningService {
    // Boxed: the start-up future is deep, and callers nest it further.
    let app = Box::pin(order_service::startup::Application::build(settings))
        .await
        .expect("order-service starts");
    RunningService::serve(app.port(), move |stopped| app.run_until_stopped(stopped))
}

pub async fn spawn_stock_service_with(
    settings: stock_service::settings::Settings,
) -> RunningService {
    let app = Box::pin(stock_service::startup::Application::build(settings))
        .await
        .expect("stock-service starts");
    RunningService::serve(app.port(), move |stopped| app.run_until_stopped(stopped))
}

/// The order API as the buyer sees it.
pub async fn place_order(
    order_service: &RunningService,
    user_id: i64,
    product_id: i64,
    count: i64,
) -> (StatusCode, Value) {
    order_service
        .call(
            reqwest::Method::POST,
            "/api/orders",
            Some(&json!({"user_id": user_id, "product_id": product_id, "count": count})),
        )
        .await
}

/// `POST /api/orders` with an `Idempotency-Key`; also says whether it was a
/// replay. A retry is the same request again: the first call with a key asks
/// for an order token, and every call with that key sends that token.
pub async fn place_order_with_key(
    order_service: &RunningService,
    user_id: i64,
    product_id: i64,
    count: i64,
    key: &str,
) -> (StatusCode, Value, bool) {
    type Tokens = std::sync::Mutex<std::collections::HashMap<(String, i64, String), String>>;
    static TOKENS: std::sync::OnceLock<Tokens> = std::sync::OnceLock::new();
    let tokens = TOKENS.get_or_init(Default::default);
    let id = (order_service.base_url.clone(), user_id, key.to_owned());
    let known = tokens.lock().expect("tokens").get(&id).cloned();
    let token = match known {
        Some(token) => token,
        None => match order_service.order_token(user_id, product_id).await {
            Ok(token) => tokens
                .lock()
                .expect("tokens")
                .entry(id)
                .or_insert(token)
                .clone(),
            Err((status, body)) => return (status, body, false),
        },
    };
    let response = order_service
        .http
        .post(format!("{}/api/orders", order_service.base_url))
        .bearer_auth(crate::auth::buyer_token(user_id))
        .header("Order-Token", token)
        .header("Idempotency-Key", key)
        .json(&json!({"user_id": user_id, "product_id": product_id, "count": count}))
        .send()
        .await
        .expect("HTTP request");
    let status = response.status();
    let replayed = response.headers().get("Idempotent-Replayed").is_some();
    (status, response.json().await.expect("JSON body"), replayed)
}

/// `POST /api/orders/{order_no}/pay` as the buyer `user_id`.
pub async fn pay_order(
    order_service: &RunningService,
    order_no: &str,
    user_id: i64,
    pay_no: &str,
) -> (StatusCode, Value) {
    order_service
        .call(
            reqwest::Method::POST,
            &format!("/api/orders/{order_no}/pay"),
            Some(&json!({"user_id": user_id, "pay_no": pay_no})),
        )
        .await
}

/// `POST /api/orders/{order_no}/cancel` as the buyer `user_id`.
pub async fn cancel_order(
    order_service: &RunningService,
    order_no: &str,
    user_id: i64,
) -> (StatusCode, Value) {
    order_service
        .call(
            reqwest::Method::POST,
            &format!("/api/orders/{order_no}/cancel"),
            Some(&json!({"user_id": user_id})),
        )
        .await
}

/// `GET /api/orders/{order_no}`'s body (panics unless 200).
pub async fn order_of(order_service: &RunningService, order_no: &str) -> Value {
    let (status, body) = order_service
        .call(
            reqwest::Method::GET,
            &format!("/api/orders/{order_no}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Opens a sale with a per-user limit of `limit` orders.
pub async fn open_sale_with_limit(
    order_service: &RunningService,
    product_id: i64,
    stock: i64,
    limit: i64,
) {
    let (status, body) = order_service
        .call(
            reqwest::Method::PUT,
            &format!("/api/sales/{product_id}"),
            Some(&json!({"stock": stock, "per_user_limit": limit})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Opens a sale of `stock` items through order-service (stock DB + Redis), one order per user.
pub async fn open_sale(order_service: &RunningService, product_id: i64, stock: i64) {
    let (status, body) = order_service
        .call(
            reqwest::Method::PUT,
            &format!("/api/sales/{product_id}"),
            Some(&json!({"stock": stock})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Redis's admissible stock and reserved orders for a product on sale.
pub async fn sale_view(order_service: &RunningService, product_id: i64) -> (i64, i64) {
    let (status, body) = order_service
        .call(
            reqwest::Method::GET,
            &format!("/api/sales/{product_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (
        body["stock"].as_i64().unwrap(),
        body["reserved_orders"].as_i64().unwrap(),
    )
}

pub async fn set_stock(stock_service: &RunningService, product_id: i64, total_count: i64) {
    let (status, body) = stock_service
        .call(
            reqwest::Method::PUT,
            &format!("/api/stock/{product_id}"),
            Some(&json!({"total_count": total_count})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

pub async fn stock_of(stock_service: &RunningService, product_id: i64) -> i64 {
    let (status, body) = stock_service
        .call(
            reqwest::Method::GET,
            &format!("/api/stock/{product_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["total_count"].as_i64().expect("total_count")
}

/// The real `order-service` executable, run as a child process.
pub struct OrderServiceProcess {
    child: Child,
    pub base_url: String,
}

impl OrderServiceProcess {
    pub async fn start(env: &TestEnv, stock: &RunningService) -> Self {
        Self::start_with(env, stock, &[]).await
    }

    /// [`Self::start`] with `extra` `APP_...` variables.
    pub async fn start_with(env: &TestEnv, stock: &RunningService, extra: &[(&str, &str)]) -> Self {
        let binary = built_binary("order-service");
        let port = free_port();
        let log = std::fs::File::create(
            std::env::temp_dir().join(format!("order-service-{}.log", env.id)),
        )
        .expect("log file");
        let child = Command::new(&binary)
            .envs(settings_env(env, stock))
            .env("APP_HTTP__PORT", port.to_string())
            .env("APP_AUTH__DEV_TOKENS", "true")
            .envs(extra.iter().copied())
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let process = Self {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let url = format!("{}/healthz", process.base_url);
        eventually(
            "order-service process to answer /healthz",
            Duration::from_secs(60),
            || {
                let request = http.get(&url).send();
                async move {
                    request
                        .await
                        .ok()
                        .filter(|r| r.status().is_success())
                        .map(drop)
                }
            },
        )
        .await;
        process
    }

    /// SIGKILL: no shutdown, no end-transaction, connections dropped mid-flight.
    pub fn kill(mut self) {
        self.child.kill().expect("kill order-service");
        self.child.wait().expect("reap order-service");
    }
}

/// The `APP_...` variables that give an `order-service` process the same
/// settings as an in-process instance of this test (its databases, Redis
/// prefix, topics, groups, stock-service and key).
fn settings_env(env: &TestEnv, stock: &RunningService) -> Vec<(&'static str, String)> {
    let settings = order_settings(env, &stock.base_url);
    vec![
        ("APP_DATABASE__NAME", env.order_db.clone()),
        ("APP_MQ__NAMESRV_ADDR", env.namesrv_addr.clone()),
        ("APP_MQ__BROKER_ADDR", env.broker_addr.clone()),
        ("APP_MQ__ORDER_TOPIC", env.topic.clone()),
        ("APP_MQ__STOCK_TOPIC", env.stock_topic.clone()),
        ("APP_ORDERS__PRODUCER_GROUP", env.producer_group.clone()),
        (
            "APP_LIFECYCLE__EVENTS_GROUP",
            settings.lifecycle.events_group.clone(),
        ),
        (
            "APP_LIFECYCLE__TIMEOUT_PRODUCER_GROUP",
            settings.lifecycle.timeout_producer_group,
        ),
        ("APP_DEAD_LETTERS__GROUP", settings.dead_letters.group),
        (
            "APP_REDELIVERY__PRODUCER_GROUP",
            settings.redelivery.producer_group,
        ),
        (
            "APP_DEAD_LETTERS__WATCHED_GROUPS",
            settings.dead_letters.watched_groups.join(","),
        ),
        ("APP_AUDIT__GROUP", settings.audit.group),
        ("APP_REDIS__KEY_PREFIX", env.redis_prefix.clone()),
        ("APP_ADMISSION__STOCK_SERVICE_URL", stock.base_url.clone()),
        ("APP_AUTH__HS256_SECRET", crate::auth::secret()),
    ]
}

/// Runs `order-service <args>` (an admin subcommand) for `env`, with the
/// test's settings and `extra` `APP_...` variables.
fn run_order_service(
    env: &TestEnv,
    stock: &RunningService,
    args: &[&str],
    extra: &[(&str, &str)],
) -> std::process::Output {
    Command::new(built_binary("order-service"))
        .args(args)
        .envs(settings_env(env, stock))
        .env("APP_LOG__LEVEL", "warn")
        .envs(extra.iter().copied())
        .output()
        .expect("run order-service")
}

/// [`order_service_command`] with `extra` `APP_...` variables; returns exit
/// code and stdout (and stderr after it).
pub fn order_service_command_with(
    env: &TestEnv,
    stock: &RunningService,
    args: &[&str],
    extra: &[(&str, &str)],
) -> (i32, String) {
    let output = run_order_service(env, stock, args, extra);
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// Runs `order-service <args>` (an admin subcommand) for `env`; returns exit code and stdout.
pub fn order_service_command(
    env: &TestEnv,
    stock: &RunningService,
    args: &[&str],
) -> (i32, String) {
    let output = run_order_service(env, stock, args, &[]);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

impl Drop for OrderServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/<profile>/<name>`, next to this test executable's `deps/` folder.
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join(name);
    assert!(
        binary.exists(),
        "{} is missing: build it first (`cargo build -p {name}`; deploy/test.sh does)",
        binary.display()
    );
    binary
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}
