//! The batch purchase the `/batch` page starts: a fresh sale of `stock`
//! items, `buyers` buyers ordering one item each through the real HTTP order
//! path (this instance's own `POST /api/orders`) at `concurrency`, then — once
//! stock-service has applied every committed message — the invariant checks:
//! nothing oversold, every unit accounted for, Redis == DB, one order per buyer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::domain::{InvalidValue, ProductId};
use futures::StreamExt;
use sea_orm::DatabaseConnection;
use serde::Serialize;

use crate::sales::Sales;
use crate::store::{ProductFigure, count_for_product};

/// What the page asks for.
#[derive(Debug, Clone, Copy)]
pub struct BatchPlan {
    pub buyers: u32,
    pub concurrency: u32,
    pub stock: u32,
}

impl BatchPlan {
    pub const MAX_BUYERS: i64 = 20_000;
    pub const MAX_CONCURRENCY: i64 = 256;

    pub fn parse(buyers: i64, concurrency: i64, stock: i64) -> Result<Self, InvalidValue> {
        let within = |field: &'static str, value: i64, min: i64, max: i64| {
            if (min..=max).contains(&value) {
                Ok(value as u32)
            } else {
                Err(InvalidValue {
                    field,
                    reason: format!("must be {min} to {max}, got {value}"),
                })
            }
        };
        Ok(Self {
            buyers: within("buyers", buyers, 1, Self::MAX_BUYERS)?,
            concurrency: within("concurrency", concurrency, 1, Self::MAX_CONCURRENCY)?,
            stock: within("stock", stock, 0, 1_000_000)?,
        })
    }
}

/// The invariants checked once the run is quiet.
#[derive(Debug, Clone, Serialize)]
pub struct BatchChecks {
    pub orders_held: i64,
    pub items_sold: i64,
    pub db_stock: i64,
    pub redis_stock: Option<i64>,
    pub oversold: i64,
    pub stock_accounted: bool,
    pub redis_equals_db: bool,
    pub one_order_per_buyer: bool,
    pub passed: bool,
}

/// Where a batch is: `running`, `settling` (waiting for stock-service to
/// apply every message), `done` (checks made) or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchState {
    Running,
    Settling,
    Done,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchStatus {
    pub id: String,
    pub product_id: i64,
    pub buyers: u32,
    pub concurrency: u32,
    pub stock: u32,
    pub state: BatchState,
    pub answered: u32,
    pub created: u32,
    /// Answers other than 201, by code (`SOLD_OUT`, `PENDING`, …).
    pub rejections: BTreeMap<String, u32>,
    pub started_at: DateTime<Utc>,
    pub elapsed_ms: u64,
    pub requests_per_sec: f64,
    pub checks: Option<BatchChecks>,
    pub error: Option<String>,
}

/// The batches this instance ran (the last 20), and what running one takes.
pub struct Batches {
    jobs: Mutex<Vec<Arc<Mutex<BatchStatus>>>>,
    runner: Arc<Runner>,
}

/// What a batch uses: the sales service, the order DB for its checks, and
/// this instance's own base URL (its buyers order through it).
struct Runner {
    sales: Arc<Sales>,
    db: DatabaseConnection,
    self_url: String,
    /// Mints each simulated buyer's token.
    signer: Arc<common::auth::Signer>,
}

impl Batches {
    pub fn new(
        sales: Arc<Sales>,
        db: DatabaseConnection,
        self_url: String,
        signer: Arc<common::auth::Signer>,
    ) -> Self {
        Self {
            jobs: Mutex::new(Vec::new()),
            runner: Arc::new(Runner {
                sales,
                db,
                self_url,
                signer,
            }),
        }
    }

    pub fn get(&self, id: &str) -> Option<BatchStatus> {
        let jobs = self.jobs.lock().ok()?;
        jobs.iter()
            .filter_map(|job| job.lock().ok().map(|s| s.clone()))
            .find(|s| s.id == id)
    }

    /// Starts a batch in the background; its first status.
    pub fn start(&self, plan: BatchPlan) -> BatchStatus {
        let started_at = Utc::now();
        let product_id = 1_000_000_000_000 + started_at.timestamp_millis() % 1_000_000_000_000;
        let status = BatchStatus {
            id: format!("b{}", uuid::Uuid::now_v7().simple()),
            product_id,
            buyers: plan.buyers,
            concurrency: plan.concurrency,
            stock: plan.stock,
            state: BatchState::Running,
            answered: 0,
            created: 0,
            rejections: BTreeMap::new(),
            started_at,
            elapsed_ms: 0,
            requests_per_sec: 0.0,
            checks: None,
            error: None,
        };
        let job = Arc::new(Mutex::new(status.clone()));
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.push(Arc::clone(&job));
            let excess = jobs.len().saturating_sub(20);
            jobs.drain(..excess);
        }
        let runner = Arc::clone(&self.runner);
        tokio::spawn(async move {
            if let Err(err) = runner.run(plan, product_id, &job).await {
                tracing::warn!(%err, "batch failed");
                update(&job, |s| {
                    s.state = BatchState::Failed;
                    s.error = Some(err.to_string());
                });
            }
        });
        status
    }
}

fn update(job: &Mutex<BatchStatus>, change: impl FnOnce(&mut BatchStatus)) {
    if let Ok(mut status) = job.lock() {
        change(&mut status);
    }
}

impl Runner {
    async fn run(
        &self,
        plan: BatchPlan,
        product_id: i64,
        job: &Mutex<BatchStatus>,
    ) -> anyhow::Result<()> {
        let product = ProductId::parse(product_id)?;
        let terms = crate::domain::SaleTerms {
            stock: plan.stock,
            per_user_limit: 1,
            name: Some(format!("Batch purchase {product}")),
            list_price_cents: None,
            sale_price_cents: None,
            window: crate::domain::SaleWindow::default(),
        };
        self.sales
            .open(product, &terms)
            .await
            .map_err(|e| anyhow::anyhow!("opening the sale: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let started = Instant::now();
        let mut answers = futures::stream::iter(1..=i64::from(plan.buyers))
            .map(|user| self.buy(&http, user, product_id))
            .buffer_unordered(plan.concurrency as usize);
        while let Some(rejection) = answers.next().await {
            let elapsed = started.elapsed();
            update(job, |s| {
                s.answered += 1;
                match rejection {
                    None => s.created += 1,
                    Some(code) => *s.rejections.entry(code).or_default() += 1,
                }
                s.elapsed_ms = elapsed.as_millis() as u64;
                s.requests_per_sec = f64::from(s.answered) / elapsed.as_secs_f64().max(1e-3);
            });
        }
        update(job, |s| s.state = BatchState::Settling);
        let checks = self.check(product, plan.stock).await?;
        update(job, |s| {
            s.checks = Some(checks);
            s.state = BatchState::Done;
        });
        Ok(())
    }

    /// One simulated buyer, as a client: an order token, then the order.
    /// `None` when placed, else the code that refused it (`PENDING` for a 202).
    async fn buy(&self, http: &reqwest::Client, user: i64, product_id: i64) -> Option<String> {
        let bearer = self.signer.mint(&user.to_string(), false).token;
        let refusal = |status: u16, body: &serde_json::Value| {
            Some(
                body["code"]
                    .as_str()
                    .map_or_else(|| format!("HTTP_{status}"), str::to_owned),
            )
        };
        let token_url = format!("{}/api/sales/{product_id}/order-token", self.self_url);
        let token = match http.post(&token_url).bearer_auth(&bearer).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                match body["order_token"].as_str() {
                    Some(token) if status == 200 => token.to_owned(),
                    _ => return refusal(status, &body),
                }
            }
            Err(_) => return Some("NO_ANSWER".to_owned()),
        };
        let order = serde_json::json!({"user_id": user, "product_id": product_id, "count": 1});
        match http
            .post(format!("{}/api/orders", self.self_url))
            .bearer_auth(&bearer)
            .header("Order-Token", token)
            .json(&order)
            .send()
            .await
        {
            Ok(response) if response.status() == reqwest::StatusCode::CREATED => None,
            Ok(response) if response.status() == reqwest::StatusCode::ACCEPTED => {
                Some("PENDING".to_owned())
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                refusal(status, &body)
            }
            Err(_) => Some("NO_ANSWER".to_owned()),
        }
    }

    /// Waits (up to 60 s) until stock-service applied every committed message of
    /// the product, then checks the invariants.
    async fn check(&self, product: ProductId, stock: u32) -> anyhow::Result<BatchChecks> {
        let db_stock = self
            .sales
            .wait_until_applied(product, Duration::from_secs(60))
            .await?;
        let count = |sql| count_for_product(&self.db, sql, product.get());
        let orders_held = count(ProductFigure::HeldOrders).await?;
        let items_sold = count(ProductFigure::HeldItems).await?;
        let most_per_buyer = count(ProductFigure::MostPerBuyer).await?;
        let redis_stock = self.sales.view(product).await?.map(|view| view.stock);
        let ledger = common::ledger::StockLedger {
            opened: i64::from(stock),
            db_stock,
            sold: items_sold,
        };
        let oversold = ledger.oversold();
        let stock_accounted = ledger.accounted();
        let redis_equals_db = redis_stock == Some(db_stock);
        let one_order_per_buyer = most_per_buyer <= 1;
        Ok(BatchChecks {
            orders_held,
            items_sold,
            db_stock,
            redis_stock,
            oversold,
            stock_accounted,
            redis_equals_db,
            one_order_per_buyer,
            passed: oversold == 0 && stock_accounted && redis_equals_db && one_order_per_buyer,
        })
    }
}
