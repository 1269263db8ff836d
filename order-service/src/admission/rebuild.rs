//! Rebuilding the Redis admission state from the databases, after Redis lost
//! it (restart, flush) — automatically by [`keep_ready`], or by the admin
//! endpoint — one sale at a time, each on its own.
//!
//! Seeding (when the `ready` marker is gone): every sale of the order DB is
//! marked `rebuilding` (closed: `SALE_NOT_READY`), then `ready` is set. Each
//! sale is then rebuilt concurrently, under its own lock:
//! 1. wait until stock-service has applied every committed message of the
//!    product, so the stock DB is final (never set Redis from a stock DB that
//!    overstates the stock);
//! 2. read the stock level and the NEW/PAID orders, and again the committed
//!    count: if anything committed in between, read again (a consistent snapshot);
//! 3. write stock, holdings and reservations;
//! 4. re-check what changed while it ran — an order closed since the snapshot
//!    (its release found no reservation to return) is released now, an order
//!    committed since (admitted before the sale closed) is held now — and only
//!    then reopen the sale.
//!
//! A sale that cannot catch up stays closed, is marked `blocked` with the
//! reason (log, `/metrics`, reconciliation, dashboard), and is retried on
//! every check; the others reopen at once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::domain::{ProductId, TxNo};
use redis::RedisError;
use sea_orm::{DatabaseConnection, DbErr};

use super::{AdmissionGate, Reservation};
use crate::domain::SaleRecord;
use crate::stock_client::{StockClient, StockClientError};
use crate::store::{self, Holding, ProductFigure, count_for_product};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("another rebuild is running")]
    Busy,
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("order database: {0}")]
    Database(#[from] DbErr),
    #[error(transparent)]
    Stock(#[from] StockClientError),
    #[error(
        "product {product}: stock-service has applied {applied} of {committed} orders after {waited:?}"
    )]
    NotQuiet {
        product: i64,
        applied: i64,
        committed: i64,
        waited: Duration,
    },
    #[error("following the new Redis master: {0}")]
    Failover(String),
    #[error("{} sale(s) could not be rebuilt and stay closed: {}", .0.len(), .0.join("; "))]
    Blocked(Vec<String>),
}

/// Which sales a rebuild looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every sale (the admin rebuild and repair).
    All,
    /// Only sales closed for a rebuild or blocked (the automatic keeper).
    Closed,
}

/// Seeds the state when it is missing, then rebuilds the sales of `scope`,
/// each on its own; returns how many were rebuilt. Sales that could not be
/// rebuilt are closed and named in [`RebuildError::Blocked`] — the others are
/// open regardless.
#[tracing::instrument(skip_all, fields(?scope))]
pub async fn rebuild(
    gate: &AdmissionGate,
    db: &DatabaseConnection,
    stock: &StockClient,
    quiet_timeout: Duration,
    scope: Scope,
) -> Result<usize, RebuildError> {
    let sales = store::sales(db).await?;
    if !gate.is_ready().await? {
        seed(gate, db).await?;
    }
    let targets: Vec<SaleRecord> = match scope {
        Scope::All => sales,
        Scope::Closed => {
            let products: Vec<ProductId> = sales.iter().map(|s| s.product).collect();
            let closed = gate.closed_among(&products).await?;
            sales
                .into_iter()
                .zip(closed)
                .filter_map(|(sale, closed)| closed.then_some(sale))
                .collect()
        }
    };
    let results = futures::future::join_all(targets.iter().map(|sale| async move {
        // The admin rebuild (every sale) waits for a rebuild another caller
        // is running on the same sale, then runs its own; the keeper skips it.
        let patience = match scope {
            Scope::All => quiet_timeout + Duration::from_secs(30),
            Scope::Closed => Duration::ZERO,
        };
        let started = Instant::now();
        loop {
            match rebuild_sale(gate, db, stock, sale, quiet_timeout).await {
                Err(RebuildError::Busy) if started.elapsed() < patience => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                result => return result,
            }
        }
    }))
    .await;
    let mut rebuilt = 0;
    let mut busy = 0;
    let mut blocked = Vec::new();
    for (sale, result) in targets.iter().zip(results) {
        match result {
            Ok(()) => rebuilt += 1,
            Err(RebuildError::Busy) => busy += 1,
            Err(err) => blocked.push(format!("product {}: {err}", sale.product)),
        }
    }
    if !blocked.is_empty() {
        return Err(RebuildError::Blocked(blocked));
    }
    if busy > 0 && rebuilt == 0 {
        return Err(RebuildError::Busy);
    }
    Ok(rebuilt)
}

/// Marks every sale closed, then the state present: from here each sale
/// opens when its own rebuild is done.
async fn seed(gate: &AdmissionGate, db: &DatabaseConnection) -> Result<(), RebuildError> {
    let sales = close_every_sale(gate, db, &mut gate.redis()).await?;
    tracing::warn!(
        sales,
        "admission state was missing: every sale closed until rebuilt"
    );
    Ok(())
}

/// Sentinel promoted a replica: it may have missed the last reservations
/// (replication is asynchronous), so before any request is served from it
/// every sale there is closed for a rebuild — as after a Redis restart — and
/// only then is it switched to; the keeper's rebuild reopens each sale from
/// the databases.
#[tracing::instrument(skip(gate, db))]
async fn follow_new_master(
    gate: &AdmissionGate,
    db: &DatabaseConnection,
    master: common::redis_link::MasterAddr,
) -> Result<(), RebuildError> {
    let link = gate.redis();
    let (client, mut connection) = link
        .connect_to(&master)
        .await
        .map_err(|err| RebuildError::Failover(format!("{err:#}")))?;
    let sales = close_every_sale(gate, db, &mut connection).await?;
    link.switch_to(master, (client, connection));
    tracing::warn!(
        sales,
        "Redis failed over to a replica: every sale closed until rebuilt from the databases"
    );
    Ok(())
}

/// Marks every sale of the order DB `rebuilding` on `connection` (closed:
/// `SALE_NOT_READY`) and the state present; the keeper's rebuild reopens each
/// from the databases. For a Redis whose content cannot be trusted: a
/// promoted replica, or a master that restarted with an old snapshot.
async fn close_every_sale(
    gate: &AdmissionGate,
    db: &DatabaseConnection,
    connection: &mut impl redis::aio::ConnectionLike,
) -> Result<usize, RebuildError> {
    let sales = store::sales(db).await?;
    let keys = gate.keys();
    let mut pipe = redis::pipe();
    pipe.atomic();
    for sale in &sales {
        pipe.hset(keys.sale(sale.product), "rebuilding", 1).ignore();
    }
    pipe.set(keys.ready(), chrono::Utc::now().to_rfc3339())
        .ignore();
    pipe.query_async::<()>(connection).await?;
    tracing::warn!(sales = sales.len(), "every sale closed until rebuilt");
    Ok(sales.len())
}

/// Rebuilds one sale under its own lock; on failure it stays closed, blocked.
#[tracing::instrument(skip_all, fields(product = %sale.product))]
pub async fn rebuild_sale(
    gate: &AdmissionGate,
    db: &DatabaseConnection,
    stock: &StockClient,
    sale: &SaleRecord,
    quiet_timeout: Duration,
) -> Result<(), RebuildError> {
    let product = sale.product;
    let lock = gate.keys().sale_rebuild_lock(product);
    let mut redis = gate.redis();
    let locked = redis::cmd("SET")
        .arg(&lock)
        .arg(1)
        .arg("NX")
        .arg("PX")
        .arg(quiet_timeout.as_millis() as u64 + 30_000)
        .query_async::<Option<String>>(&mut redis)
        .await?
        .is_some();
    if !locked {
        return Err(RebuildError::Busy);
    }
    let result = async {
        gate.close_for_rebuild(product).await?;
        let snapshot = snapshot(db, stock, product, quiet_timeout).await?;
        write(gate, product, sale.per_user_limit, &snapshot).await?;
        gate.set_window(product, sale.window).await?;
        recheck(gate, db, product, &snapshot).await?;
        gate.reopen(product).await?;
        tracing::info!(%product, stock = snapshot.stock, holdings = snapshot.holdings.len(), "sale rebuilt and open");
        Ok::<_, RebuildError>(())
    }
    .await;
    if let Err(err) = &result {
        tracing::error!(%product, %err, "sale not rebuilt: it stays closed (SALE_NOT_READY) and is retried");
        if let Err(mark) = gate.mark_blocked(product, &err.to_string()).await {
            tracing::warn!(%mark, "could not record why the sale is blocked");
        }
    }
    let _ = redis::cmd("DEL")
        .arg(&lock)
        .query_async::<()>(&mut redis)
        .await;
    result
}

/// A sale's state as the databases hold it, at one quiet moment.
#[derive(Debug)]
pub struct Snapshot {
    pub stock: i64,
    pub holdings: Vec<Holding>,
}

/// Waits for quiet, then reads stock and holdings; again if a message
/// committed in between.
pub async fn snapshot(
    db: &DatabaseConnection,
    stock: &StockClient,
    product: ProductId,
    quiet_timeout: Duration,
) -> Result<Snapshot, RebuildError> {
    let started = Instant::now();
    loop {
        let remaining = quiet_timeout.saturating_sub(started.elapsed());
        let (level, committed) = wait_until_applied(db, stock, product, remaining).await?;
        let holdings = store::holdings(db, product.get()).await?;
        if count_for_product(db, ProductFigure::CommittedMessages, product.get()).await?
            == committed
        {
            return Ok(Snapshot {
                stock: level,
                holdings,
            });
        }
    }
}

/// Replaces the sale's Redis state with the snapshot (the sale stays closed).
pub async fn write(
    gate: &AdmissionGate,
    product: ProductId,
    limit: u32,
    snapshot: &Snapshot,
) -> Result<(), RebuildError> {
    let keys = gate.keys();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut pipe = redis::pipe();
    pipe.atomic()
        .del(&[keys.users(product), keys.reservations(product)])
        .ignore()
        .hset_multiple(
            keys.sale(product),
            &[
                ("stock", snapshot.stock),
                ("limit", i64::from(limit)),
                ("rebuilding", 1),
            ],
        )
        .ignore();
    for holding in &snapshot.holdings {
        let reservation = Reservation {
            user_id: holding.user_id,
            count: holding.count,
            reserved_at_ms: Some(now_ms),
        };
        pipe.hincr(keys.users(product), holding.user_id, 1)
            .ignore()
            .hset(
                keys.reservations(product),
                &holding.tx_no,
                reservation.encode(),
            )
            .ignore();
    }
    pipe.query_async::<()>(&mut gate.redis()).await?;
    Ok(())
}

/// Applies what changed in the order DB since the snapshot: orders closed
/// since give their reservation back, orders committed since take theirs.
pub async fn recheck(
    gate: &AdmissionGate,
    db: &DatabaseConnection,
    product: ProductId,
    snapshot: &Snapshot,
) -> Result<(), RebuildError> {
    let now: Vec<Holding> = store::holdings(db, product.get()).await?;
    let now_held: HashSet<&str> = now.iter().map(|h| h.tx_no.as_str()).collect();
    let then_held: HashSet<&str> = snapshot.holdings.iter().map(|h| h.tx_no.as_str()).collect();
    for gone in snapshot
        .holdings
        .iter()
        .filter(|h| !now_held.contains(h.tx_no.as_str()))
    {
        if let Ok(tx_no) = TxNo::parse(&gone.tx_no) {
            gate.release(product, &tx_no).await?;
            tracing::info!(tx_no = %gone.tx_no, "closed while the sale was rebuilt: reservation returned");
        }
    }
    for new in now.iter().filter(|h| !then_held.contains(h.tx_no.as_str())) {
        let held = Reservation {
            user_id: new.user_id,
            count: new.count,
            reserved_at_ms: None,
        };
        if gate.hold(product, &new.tx_no, held).await? {
            tracing::info!(tx_no = %new.tx_no, "committed while the sale was rebuilt: reservation added");
        }
    }
    Ok(())
}

/// Waits until stock-service has applied every committed message of
/// `product` (creations and cancellations); returns the then-final stock and
/// the committed count it was measured at.
pub(crate) async fn wait_until_applied(
    db: &DatabaseConnection,
    stock: &StockClient,
    product: ProductId,
    timeout: Duration,
) -> Result<(i64, i64), RebuildError> {
    let started = Instant::now();
    loop {
        let committed =
            count_for_product(db, ProductFigure::CommittedMessages, product.get()).await?;
        let level = stock.stock(product).await?;
        let (applied, total) = level.map_or((0, 0), |l| (l.applied_orders, l.total_count));
        if applied >= committed {
            return Ok((total, committed));
        }
        if started.elapsed() > timeout {
            return Err(RebuildError::NotQuiet {
                product: product.get(),
                applied,
                committed,
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Seeds the state when Redis lost it and rebuilds every closed or blocked
/// sale, every `every`, until the stop signal.
pub async fn keep_ready(
    gate: std::sync::Arc<AdmissionGate>,
    db: DatabaseConnection,
    stock: std::sync::Arc<StockClient>,
    every: Duration,
    quiet_timeout: Duration,
    mut shutdown: common::shutdown::Shutdown,
) {
    loop {
        if let Some(master) = gate.redis().master_moved().await
            && let Err(err) = follow_new_master(&gate, &db, master).await
        {
            tracing::error!(%err, "the new Redis master cannot be used yet; retrying");
        }
        if gate.redis().restarted().await
            && let Err(err) = close_every_sale(&gate, &db, &mut gate.redis()).await
        {
            tracing::error!(%err, "could not close the sales of a restarted Redis; it is retried");
        }
        match rebuild(&gate, &db, &stock, quiet_timeout, Scope::Closed).await {
            Ok(0) | Err(RebuildError::Busy) => {}
            Ok(sales) => tracing::warn!(sales, "sales rebuilt from the databases and reopened"),
            Err(err) => {
                tracing::error!(%err, "admission rebuild incomplete; the closed sales stay refused")
            }
        }
        if !shutdown.sleep(every).await {
            return;
        }
    }
}
