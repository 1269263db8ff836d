//! Admin subcommands of the `order-service` binary:
//! `order-service reconcile [--repair]` prints the reconciliation of Redis
//! against the databases and the unresolved dead letters (exit 1 on
//! differences or dead letters); `--repair` rebuilds Redis from the databases first.
//! `order-service audit [--product N] [--since T]` prints the consistency
//! audit (see [`crate::audit`]; `T` an RFC 3339 time or a span such as `15m`,
//! `2h`, `7d`): exit 0 when clean, 1 on differences or an incomplete audit,
//! 2 when it could not be done (a place unreachable, a bad argument).
//! `order-service token --user 42 [--admin]` prints a signed token for that
//! user, minted with the configured key (`auth.hs256_secret` or
//! `auth.signing_key_file`), for scripts, the load tool and operators.

use std::sync::Arc;
use std::time::Duration;

use common::mq::MqRuntime;
use sea_orm::DatabaseConnection;

use crate::admission::rebuild::Scope;
use crate::admission::{AdmissionGate, Keys};
use crate::audit::report::AuditReport;
use crate::audit::{AuditScope, Auditor};
use crate::sales::Sales;
use crate::settings::Settings;
use crate::stock_client::StockClient;

/// Runs `args` (without the program name) when it names a subcommand;
/// `None` means: no subcommand, run the service.
pub async fn run(settings: &Settings, args: &[String]) -> Option<anyhow::Result<i32>> {
    match args.first().map(String::as_str) {
        Some("reconcile") => {
            Some(run_reconcile(settings, args[1..].iter().any(|a| a == "--repair")).await)
        }
        Some("audit") => Some(Ok(Box::pin(run_audit(settings, &args[1..])).await)),
        Some("token") => Some(run_token(settings, &args[1..])),
        Some(other) => Some(Err(anyhow::anyhow!(
            "unknown subcommand {other:?}; usage: order-service [reconcile [--repair] | audit [--product N] [--since T] | token --user N [--admin]]"
        ))),
        None => None,
    }
}

/// What the admin subcommands use: the order DB, and Redis and
/// stock-service through [`Sales`].
async fn connect(
    settings: &Settings,
) -> anyhow::Result<(DatabaseConnection, Sales, Arc<StockClient>)> {
    let db = common::db::connect_and_migrate(&settings.database, crate::SCHEMA).await?;
    let gate = Arc::new(AdmissionGate::new(
        common::redis_link::RedisLink::connect(&settings.redis).await?,
        Keys::new(&settings.redis.key_prefix),
        Duration::from_millis(settings.admission.sold_out_ttl_ms),
    ));
    let stock = Arc::new(StockClient::new(
        &settings.admission.stock_service_url,
        Arc::new(common::auth::Signer::from_settings(&settings.auth)?),
    ));
    let sales = Sales::new(
        gate,
        db.clone(),
        Arc::clone(&stock),
        Duration::from_secs(settings.admission.rebuild_quiet_timeout_secs),
        settings.redelivery.after(),
    );
    Ok((db, sales, stock))
}

async fn run_reconcile(settings: &Settings, repair: bool) -> anyhow::Result<i32> {
    let (_, sales, _) = connect(settings).await?;
    if repair {
        match sales.rebuild(Scope::All).await {
            Ok(rebuilt) => {
                println!("rebuilt the admission state of {rebuilt} sales from the databases")
            }
            Err(err) => println!("rebuild incomplete: {err}"),
        }
    }
    let report = sales.reconcile().await?;
    println!("{report}");
    Ok(if report.all_clear() { 0 } else { 1 })
}

/// `token --user N [--admin]`: prints one token on stdout.
fn run_token(settings: &Settings, args: &[String]) -> anyhow::Result<i32> {
    let usage = "usage: order-service token --user N [--admin]";
    let mut user = None;
    let mut admin = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--admin" => admin = true,
            "--user" => {
                let raw = rest
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--user needs a value; {usage}"))?;
                user = Some(
                    common::domain::UserId::parse_text(raw)
                        .map_err(|e| anyhow::anyhow!("{e}; {usage}"))?,
                );
            }
            other => anyhow::bail!("unknown argument {other:?}; {usage}"),
        }
    }
    let user = user.ok_or_else(|| anyhow::anyhow!("--user is required; {usage}"))?;
    let signer = common::auth::Signer::from_settings(&settings.auth)?;
    println!("{}", signer.mint(&user.get().to_string(), admin).token);
    Ok(0)
}

/// `audit [--product N] [--since T]`: prints the audit; the exit code says
/// clean (0), differences or incomplete (1), or not done (2, with why).
async fn run_audit(settings: &Settings, args: &[String]) -> i32 {
    match audit(settings, args).await {
        Ok(report) => {
            println!("{report}");
            i32::from(!report.clean)
        }
        Err(err) => {
            eprintln!("audit not done: {err:#}");
            2
        }
    }
}

async fn audit(settings: &Settings, args: &[String]) -> anyhow::Result<AuditReport> {
    let usage = "usage: order-service audit [--product N] [--since T]";
    let (mut product, mut since) = (None, None);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let slot = match arg.as_str() {
            "--product" => &mut product,
            "--since" => &mut since,
            other => anyhow::bail!("unknown argument {other:?}; {usage}"),
        };
        *slot = Some(
            rest.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value; {usage}"))?
                .as_str(),
        );
    }
    let scope = AuditScope::parse(product, since, chrono::Utc::now())
        .map_err(|e| anyhow::anyhow!("{e}; {usage}"))?;
    let (db, sales, stock) = connect(settings).await?;
    let mq = MqRuntime::start("audit", &settings.mq)?;
    let auditor = Auditor::new(settings, db, stock, Arc::new(sales), mq.client());
    let report = auditor.audit(scope).await;
    drop(auditor);
    mq.shutdown().await;
    Ok(report?)
}
