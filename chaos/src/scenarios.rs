//! The faults: what each scenario breaks mid-sale, for how long, and how it
//! is healed; and the run of one scenario (sale, fault, heal, verdict).

use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;

use crate::checks::{self, Check, Evidence, Window};
use crate::client::Client;
use crate::stack::{Action, Part, Stack};
use crate::workload::{self, Plan, Retries};

/// The slow link's fault: every chunk between the broker and its clients
/// 600 ms late each way (a send takes over 1.2 s, an end-transaction call
/// arrives after the broker's 1 s transaction timeout), and a quarter of the chunks
/// cut their connection (the request or end-transaction call in it is lost).
const SLOW_LINK: &str = "set delay_ms=600 cut_per_mille=250";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    KillOrderService,
    KillStockService,
    KillBroker,
    RestartMariaDb,
    RestartRedis,
    HungConsumer,
    RetryStorm,
    SlowBrokerLink,
    FailingCommit,
    ReplayTopic,
}

impl Scenario {
    pub const ALL: [Self; 10] = [
        Self::KillOrderService,
        Self::KillStockService,
        Self::KillBroker,
        Self::RestartMariaDb,
        Self::RestartRedis,
        Self::HungConsumer,
        Self::RetryStorm,
        Self::SlowBrokerLink,
        Self::FailingCommit,
        Self::ReplayTopic,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::KillOrderService => "kill-order-service",
            Self::KillStockService => "kill-stock-service",
            Self::KillBroker => "kill-broker",
            Self::RestartMariaDb => "restart-mariadb",
            Self::RestartRedis => "restart-redis",
            Self::HungConsumer => "hung-consumer",
            Self::RetryStorm => "retry-storm",
            Self::SlowBrokerLink => "slow-broker-link",
            Self::FailingCommit => "failing-commit",
            Self::ReplayTopic => "replay-topic",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::KillOrderService => {
                "SIGKILL order-service with transactions in flight, restart it"
            }
            Self::KillStockService => "SIGKILL stock-service mid-sale, restart it",
            Self::KillBroker => "SIGKILL the broker mid-sale, restart it on its store",
            Self::RestartMariaDb => "stop MariaDB mid-sale for 3 s, start it",
            Self::RestartRedis => "stop Redis (it keeps nothing) mid-sale, start it empty",
            Self::HungConsumer => "SIGSTOP stock-service for 15 s, SIGCONT",
            Self::RetryStorm => {
                "no fault: every order with an Idempotency-Key, 300 ms client timeouts, \
                 up to 3 more tries racing the first"
            }
            Self::SlowBrokerLink => {
                "the link between the broker and its clients (through the suite's proxy) \
                 600 ms slow each way and cutting a quarter of its chunks' connections, for 40% \
                 of the sale: end-transaction calls arrive late or never, check-backs decide"
            }
            Self::FailingCommit => {
                "the order DB refuses every third buyer's order insert (a trigger) after \
                 its half message was sent, for 40% of the sale"
            }
            Self::ReplayTopic => {
                "duplicate delivery forced: stock-service stopped, its consumer group's \
                 offsets reset to the sale's start (broker admin API), started: everything \
                 since is delivered again"
            }
        }
    }

    /// Whether the scenario can run against the containerized cluster, and
    /// why not.
    pub fn on_cluster(self) -> Result<(), &'static str> {
        match self {
            Self::SlowBrokerLink => Err("the containers have no link proxy in front of their \
                brokers (the cluster tests cut a replica off the network instead)"),
            Self::ReplayTopic => Err("its check counts one stock-service's dedupe hits, and the \
                cluster runs two replicas behind the gateway"),
            _ => Ok(()),
        }
    }

    fn retries(self) -> Retries {
        match self {
            Self::RetryStorm => Retries::Storm,
            _ => Retries::Patient,
        }
    }

    /// Breaks the part; returns once it is broken.
    async fn inject(self, stack: &Stack, plan: &Plan) -> anyhow::Result<()> {
        match self {
            Self::ReplayTopic => stack.part(Action::Stop, Part::StockService).await,
            Self::KillOrderService => stack.part(Action::Kill, Part::OrderService).await,
            Self::KillStockService => stack.part(Action::Kill, Part::StockService).await,
            Self::KillBroker => stack.part(Action::Kill, Part::Broker).await,
            Self::RestartMariaDb => stack.part(Action::Stop, Part::MariaDb).await,
            Self::RestartRedis => stack.part(Action::Stop, Part::Redis).await,
            Self::HungConsumer => stack.part(Action::Pause, Part::StockService).await,
            Self::RetryStorm => Ok(()),
            Self::SlowBrokerLink => {
                let answer = crate::link::command(stack.link_control()?, SLOW_LINK).await?;
                println!("[chaos]   link proxy: {answer}");
                Ok(())
            }
            Self::FailingCommit => {
                let db = checks::connect(&stack.order_db).await?;
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER {} BEFORE INSERT ON orders FOR EACH ROW \
                     IF NEW.product_id = {} AND MOD(NEW.user_id, 3) = 0 THEN \
                     SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'chaos: this commit fails'; \
                     END IF",
                    trigger_name(plan),
                    plan.product
                ))
                .await?;
                println!("[chaos]   trigger {} refuses inserts", trigger_name(plan));
                Ok(())
            }
        }
    }

    /// How long the fault lasts before it is healed.
    fn hold(self, plan: &Plan) -> Duration {
        match self {
            Self::KillOrderService => Duration::from_secs(1),
            Self::KillStockService | Self::KillBroker => Duration::from_secs(2),
            Self::RestartMariaDb => Duration::from_secs(3),
            Self::RestartRedis => Duration::from_millis(500),
            Self::HungConsumer => Duration::from_secs(15),
            Self::RetryStorm => Duration::ZERO,
            Self::SlowBrokerLink | Self::FailingCommit => plan.sale.mul_f64(0.4),
            Self::ReplayTopic => Duration::from_secs(1),
        }
    }

    async fn heal(self, stack: &Stack, plan: &Plan) -> anyhow::Result<()> {
        match self {
            Self::ReplayTopic => {
                // Boxed: the admin client's future is too deep to inline here.
                let moved = Box::pin(crate::stack::replay(stack, plan.opened_at_ms)).await?;
                println!(
                    "[chaos]   {moved} queues of {} moved back to the sale's start",
                    stack.order_topic
                );
                anyhow::ensure!(moved > 0, "the reset moved no queue");
                stack.part(Action::Start, Part::StockService).await
            }
            Self::KillOrderService => stack.part(Action::Start, Part::OrderService).await,
            Self::KillStockService => stack.part(Action::Start, Part::StockService).await,
            Self::KillBroker => stack.part(Action::Start, Part::Broker).await,
            Self::RestartMariaDb => stack.part(Action::Start, Part::MariaDb).await,
            Self::RestartRedis => stack.part(Action::Start, Part::Redis).await,
            Self::HungConsumer => stack.part(Action::Resume, Part::StockService).await,
            Self::RetryStorm => Ok(()),
            Self::SlowBrokerLink => {
                let answer =
                    crate::link::command(stack.link_control()?, "set delay_ms=0 cut_per_mille=0")
                        .await?;
                println!("[chaos]   link proxy healed: {answer}");
                Ok(())
            }
            Self::FailingCommit => {
                let db = checks::connect(&stack.order_db).await?;
                db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {}", trigger_name(plan)))
                    .await?;
                Ok(())
            }
        }
    }
}

fn trigger_name(plan: &Plan) -> String {
    format!("chaos_fail_commit_{}", plan.product)
}

/// One scenario's result.
#[derive(Debug)]
pub struct Outcome {
    pub checks: Vec<Check>,
    pub quiet_after: Duration,
    pub took: Duration,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }
}

/// After the services are ready again, 5xx answers still count as inside the
/// fault window for this long (requests sent before healing finish late).
const GRACE: Duration = Duration::from_secs(3);

/// Opens a sale, runs its buyers, injects the fault after 30% of the sale,
/// heals it, and judges.
pub async fn run(stack: &Stack, scenario: Scenario, plan: &Plan) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    println!(
        "\n[chaos] {} (product {}, {} items, {} buyers over {:?}): {}",
        scenario.name(),
        plan.product,
        plan.stock,
        plan.buyers,
        plan.sale,
        scenario.describe()
    );
    stack.wait_ready(Duration::from_secs(120)).await?;
    let client = Client::new(&stack.order_url, &stack.secret, Duration::from_secs(5))?;
    workload::open_sale(&client, plan).await?;
    let dead_letters_before = checks::reconcile(&client, plan.product)
        .await
        .map_or(0, |(_, n)| n);
    let stock_client = Client::new(&stack.stock_url, &stack.secret, Duration::from_secs(5))?;
    let check_backs_before = check_backs(&client).await;

    let buyers = {
        let (client, plan) = (client.clone(), plan.clone());
        tokio::spawn(async move { workload::run(&client, &plan, scenario.retries()).await })
    };
    tokio::time::sleep(plan.sale.mul_f64(0.3)).await;
    let from = Instant::now();
    let healed = async {
        scenario.inject(stack, plan).await?;
        // What a replay must deliver again at least: all applied before it.
        let applied_before = match scenario {
            Scenario::ReplayTopic => {
                Some(applied(&checks::connect(&stack.stock_db).await?, plan).await?)
            }
            _ => None,
        };
        tokio::time::sleep(scenario.hold(plan)).await;
        scenario.heal(stack, plan).await?;
        stack.wait_ready(Duration::from_secs(180)).await?;
        anyhow::Ok(applied_before)
    }
    .await;
    let healed_at = Instant::now();
    let window = match scenario {
        // The storm is not a fault of the system: no 5xx at all.
        Scenario::RetryStorm => Window { from, to: from },
        _ => Window {
            from,
            to: healed_at + GRACE,
        },
    };
    let journal = buyers.await??;
    let applied_before = healed?;
    println!(
        "[chaos]   healed and ready {:.1} s after the fault; last buyer done {:.1} s after healing; answers: {:?}",
        (healed_at - from).as_secs_f64(),
        healed_at.elapsed().as_secs_f64(),
        journal.answers
    );

    let order_db = checks::connect(&stack.order_db).await?;
    let stock_db = checks::connect(&stack.stock_db).await?;
    let (mut checks, quiet_after) = checks::judge(&Evidence {
        client: &client,
        order_db: &order_db,
        stock_db: &stock_db,
        plan,
        journal: &journal,
        window,
        dead_letters_before,
        healed_at,
        tokens_survive: scenario != Scenario::RestartRedis,
    })
    .await?;
    if let Some(applied_before) = applied_before {
        checks.push(replayed(&stock_client, applied_before).await);
    }
    if scenario == Scenario::SlowBrokerLink {
        checks.push(decided_by_check_backs(&client, check_backs_before, stack).await);
    }
    for check in &checks {
        println!(
            "[chaos]   {} {}: {}",
            if check.pass { "PASS" } else { "FAIL" },
            check.name,
            check.detail
        );
    }
    let _ = order_db.close().await;
    let _ = stock_db.close().await;
    Ok(Outcome {
        checks,
        quiet_after,
        took: started.elapsed(),
    })
}

/// order-service's check-backs answered so far (its `/metrics` counter).
async fn check_backs(order: &Client) -> Option<u64> {
    let answer = order
        .admin(reqwest::Method::GET, "/api/admin/metrics", None)
        .await;
    let text = answer.body().as_str()?;
    Some(
        text.lines()
            .filter(|line| line.starts_with("seckill_check_backs_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64,
    )
}

/// The slow link did what it is for: connections were cut and the broker's
/// check-backs decided transactions (their end-transaction calls late or lost).
async fn decided_by_check_backs(order: &Client, before: Option<u64>, stack: &Stack) -> Check {
    let after = check_backs(order).await;
    let cuts = match stack.link_control() {
        Ok(control) => crate::link::command(control, "get")
            .await
            .ok()
            .and_then(|answer| crate::link::field(&answer, "cuts")),
        Err(_) => None,
    };
    let decided = before.zip(after).map(|(b, a)| a.saturating_sub(b));
    Check {
        name: "check-backs decided what the slow link left open",
        pass: decided.is_some_and(|n| n > 0) && cuts.is_some_and(|n| n > 0),
        detail: format!(
            "{decided:?} check-backs answered during the scenario; the proxy cut {cuts:?} connections in all"
        ),
    }
}

/// stock-service's count of messages it found applied already.
async fn dedupe_hits(stock: &Client) -> Option<i64> {
    stock
        .admin(reqwest::Method::GET, "/api/stock/stats", None)
        .await
        .body()["dedupe_hits"]
        .as_i64()
}

/// Messages of the plan's sale stock-service has applied.
async fn applied(stock_db: &sea_orm::DatabaseConnection, plan: &Plan) -> anyhow::Result<i64> {
    Ok(common::db::scalar(
        stock_db,
        "SELECT COUNT(*) FROM tx_log WHERE product_id = ?",
        [plan.product.into()],
    )
    .await?)
}

/// The replay happened: the restarted stock-service (its count starts at 0)
/// found at least every message applied before the reset applied already.
async fn replayed(stock: &Client, applied_before: i64) -> Check {
    // The consumer catches up with the replayed part in its own time.
    let started = Instant::now();
    let mut seen_again = None;
    while started.elapsed() < Duration::from_secs(90) {
        seen_again = dedupe_hits(stock).await;
        if seen_again.is_some_and(|n| n >= applied_before) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Check {
        name: "the sale was delivered again",
        pass: seen_again.is_some_and(|n| n >= applied_before),
        detail: format!(
            "{seen_again:?} messages found applied already (dedupe hits) within {:.1} s; \
             {applied_before} were applied before the reset",
            started.elapsed().as_secs_f64()
        ),
    }
}
