//! Admin subcommands of the `order-service` binary:
//! `order-service reconcile [--repair]` prints the reconciliation of Redis
//! against the databases and the unresolved dead letters (exit 1 on
//! differences or dead letters); `--repair` rebuilds Redis from the databases first.
//! `order-service token --user 42 [--admin]` prints a signed token for that
//! user, minted with the configured key (`auth.hs256_secret` or
//! `auth.signing_key_file`), for scripts, the load tool and operators.

use std::sync::Arc;
use std::time::Duration;

use crate::admission::rebuild::Scope;
use crate::admission::{AdmissionGate, Keys};
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
        Some("token") => Some(run_token(settings, &args[1..])),
        Some(other) => Some(Err(anyhow::anyhow!(
            "unknown subcommand {other:?}; usage: order-service [reconcile [--repair] | token --user N [--admin]]"
        ))),
        None => None,
    }
}

async fn run_reconcile(settings: &Settings, repair: bool) -> anyhow::Result<i32> {
    let db = common::db::connect_and_migrate(&settings.database, crate::SCHEMA).await?;
    let gate = Arc::new(AdmissionGate::new(
        common::redis_link::RedisLink::connect(&settings.redis).await?,
        Keys::new(&settings.redis.key_prefix),
        Duration::from_millis(settings.admission.sold_out_ttl_ms),
    ));
    let sales = Sales::new(
        gate,
        db,
        Arc::new(StockClient::new(
            &settings.admission.stock_service_url,
            Arc::new(common::auth::Signer::from_settings(&settings.auth)?),
        )),
        Duration::from_secs(settings.admission.rebuild_quiet_timeout_secs),
        settings.redelivery.after(),
    );
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
