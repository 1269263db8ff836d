//! The buyers of one scenario's sale: each arrives at its time (spread over
//! the sale), asks for an order token, orders with an Idempotency-Key
//! (retrying as a client would), then — by a seeded coin — pays, cancels or
//! keeps the order, and a few try to buy a second item over the limit. The
//! journal keeps what every buyer was told, and when.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::client::{Answer, Client, Who};

/// The sale price of every chaos sale, in cents.
pub const PRICE_CENTS: i64 = 4_900;

/// One scenario's sale.
#[derive(Debug, Clone)]
pub struct Plan {
    pub product: i64,
    pub stock: i64,
    pub buyers: u64,
    /// How long buyers keep arriving.
    pub sale: Duration,
    pub concurrency: usize,
    pub seed: u64,
    pub quiet_limit: Duration,
    /// When the sale was opened (ms since the epoch).
    pub opened_at_ms: u64,
}

/// How buyers retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// Again after an unanswered request or a 503, up to 3 tries, 300 ms apart.
    Patient,
    /// A short timeout and up to 3 more tries racing the first, 100 ms apart,
    /// with the same Idempotency-Key (and order token).
    Storm,
}

/// An order a buyer was told was placed (201).
#[derive(Debug, Clone)]
pub struct Placed {
    pub order_no: String,
    pub user: i64,
    pub key: String,
}

/// What the buyers were told.
#[derive(Debug, Default)]
pub struct Journal {
    /// Answers by step and label: `"order 201"`, `"token 409 SOLD_OUT"`.
    pub answers: BTreeMap<String, i64>,
    pub placed: Vec<Placed>,
    /// Every order number any answer gave for one (user, Idempotency-Key).
    pub orders_by_key: HashMap<(i64, String), HashSet<String>>,
    pub paid: Vec<String>,
    pub cancelled: Vec<String>,
    /// Every 5xx: when, and its label.
    pub fives: Vec<(Instant, String)>,
}

impl Journal {
    fn note(&mut self, step: &str, answer: &Answer) {
        *self
            .answers
            .entry(format!("{step} {}", answer.label()))
            .or_default() += 1;
        if answer.is_5xx() {
            self.fives
                .push((Instant::now(), format!("{step} {}", answer.label())));
        }
    }
}

/// SplitMix64: the buyers' seeded choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in 0..100.
    pub fn percent(&mut self) -> u64 {
        self.next_u64() % 100
    }
}

/// Opens the plan's sale (retrying while the service is away).
pub async fn open_sale(client: &Client, plan: &Plan) -> anyhow::Result<()> {
    let body = json!({
        "stock": plan.stock,
        "per_user_limit": 1,
        "name": format!("Chaos item {}", plan.product),
        "list_price_cents": PRICE_CENTS * 2,
        "sale_price_cents": PRICE_CENTS,
    });
    let path = format!("/api/sales/{}", plan.product);
    for _ in 0..60 {
        let answer = client.admin(Method::PUT, &path, Some(&body)).await;
        if answer.is(200) {
            return Ok(());
        }
        anyhow::ensure!(
            answer.retryable(),
            "opening sale {}: {}",
            plan.product,
            answer.label()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("sale {} could not be opened for 30 s", plan.product)
}

/// Runs the buyers to the end; the journal of what they were told.
pub async fn run(client: &Client, plan: &Plan, retries: Retries) -> anyhow::Result<Journal> {
    let journal = Arc::new(Mutex::new(Journal::default()));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let client = match retries {
        Retries::Patient => client.clone(),
        Retries::Storm => client.with_timeout(Duration::from_millis(300))?,
    };
    let workers = (0..plan.concurrency).map(|_| {
        let (journal, next, client, plan) = (
            Arc::clone(&journal),
            Arc::clone(&next),
            client.clone(),
            plan.clone(),
        );
        tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.buyers {
                    return;
                }
                let due = started + plan.sale.mul_f64(i as f64 / plan.buyers as f64);
                tokio::time::sleep_until(due.into()).await;
                let buyer = Buyer {
                    user: 1_000 + i as i64,
                    product: plan.product,
                    rng: Rng::new(plan.seed ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03)),
                    retries,
                };
                buyer.shop(&client, &journal).await;
            }
        })
    });
    for worker in futures::future::join_all(workers).await {
        worker?;
    }
    let journal = std::mem::take(&mut *journal.lock().expect("journal"));
    Ok(journal)
}

struct Buyer {
    user: i64,
    product: i64,
    rng: Rng,
    retries: Retries,
}

impl Buyer {
    async fn shop(mut self, client: &Client, journal: &Mutex<Journal>) {
        let Some(order_no) = self.order(client, journal, "order").await else {
            return;
        };
        let choice = self.rng.percent();
        if choice < 40 {
            self.settle(client, journal, &order_no, "pay").await;
        } else if choice < 60 {
            self.settle(client, journal, &order_no, "cancel").await;
        }
        if self.rng.percent() < 10 {
            // Over the limit of one: must be refused.
            self.order(client, journal, "second order").await;
        }
    }

    /// An order token, then the order; the order number of a 201.
    async fn order(
        &mut self,
        client: &Client,
        journal: &Mutex<Journal>,
        step: &str,
    ) -> Option<String> {
        let user = self.user;
        let token_path = format!("/api/sales/{}/order-token", self.product);
        let token = self
            .patiently(client, journal, &format!("{step} token"), |c| {
                let path = token_path.clone();
                async move {
                    c.call(Who::Buyer(user), Method::POST, &path, None, &[])
                        .await
                }
            })
            .await;
        let token = token.body()["order_token"].as_str()?.to_owned();
        let key = format!(
            "chaos-{}-{}-{}",
            self.product,
            self.user,
            self.rng.next_u64()
        );
        let body = json!({"product_id": self.product, "count": 1});
        let answers = match self.retries {
            Retries::Patient => {
                vec![
                    self.patiently(client, journal, step, |c| {
                        let (body, token, key) = (body.clone(), token.clone(), key.clone());
                        async move { place(&c, user, &body, &token, &key).await }
                    })
                    .await,
                ]
            }
            Retries::Storm => {
                let tries = 1 + self.rng.next_u64() % 4;
                let racing = (0..tries).map(|n| {
                    let (client, body, token, key) =
                        (client.clone(), body.clone(), token.clone(), key.clone());
                    async move {
                        tokio::time::sleep(Duration::from_millis(100 * n)).await;
                        place(&client, user, &body, &token, &key).await
                    }
                });
                futures::future::join_all(racing).await
            }
        };
        let mut journal = journal.lock().expect("journal");
        let mut placed = None;
        for answer in &answers {
            journal.note(step, answer);
            if let Some(order_no) = answer.body()["order_no"].as_str() {
                journal
                    .orders_by_key
                    .entry((self.user, key.clone()))
                    .or_default()
                    .insert(order_no.to_owned());
                if answer.is(201) && placed.is_none() {
                    placed = Some(order_no.to_owned());
                }
            }
        }
        if let Some(order_no) = &placed {
            journal.placed.push(Placed {
                order_no: order_no.clone(),
                user: self.user,
                key,
            });
        }
        placed
    }

    /// Pays (`"pay"`) or cancels (`"cancel"`) the order, retrying patiently;
    /// an acknowledged (200) one goes in the journal.
    async fn settle(&self, client: &Client, journal: &Mutex<Journal>, order_no: &str, step: &str) {
        let user = self.user;
        let path = format!("/api/orders/{order_no}/{step}");
        let body = (step == "pay")
            .then(|| json!({"pay_no": format!("pay-{order_no}"), "amount_cents": PRICE_CENTS}));
        let answer = self
            .patiently(client, journal, step, |c| {
                let (path, body) = (path.clone(), body.clone());
                async move {
                    c.call(Who::Buyer(user), Method::POST, &path, body.as_ref(), &[])
                        .await
                }
            })
            .await;
        if answer.is(200) {
            let mut journal = journal.lock().expect("journal");
            let acknowledged = if step == "pay" {
                &mut journal.paid
            } else {
                &mut journal.cancelled
            };
            acknowledged.push(order_no.to_owned());
        }
    }

    /// Sends until answered with something other than a retryable failure,
    /// up to 3 tries 300 ms apart; every answer goes in the journal (the
    /// order step's final answer is noted by its caller).
    async fn patiently<F, Fut>(
        &self,
        client: &Client,
        journal: &Mutex<Journal>,
        step: &str,
        send: F,
    ) -> Answer
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Answer>,
    {
        let mut answer = send(client.clone()).await;
        for _ in 1..3 {
            if !answer.retryable() {
                break;
            }
            journal
                .lock()
                .expect("journal")
                .note(&format!("{step} (retried)"), &answer);
            tokio::time::sleep(Duration::from_millis(300)).await;
            answer = send(client.clone()).await;
        }
        if step != "order" && step != "second order" {
            journal.lock().expect("journal").note(step, &answer);
        }
        answer
    }
}

async fn place(
    client: &Client,
    user: i64,
    body: &serde_json::Value,
    token: &str,
    key: &str,
) -> Answer {
    client
        .call(
            Who::Buyer(user),
            Method::POST,
            "/api/orders",
            Some(body),
            &[("Order-Token", token), ("Idempotency-Key", key)],
        )
        .await
}
