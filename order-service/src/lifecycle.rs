//! An order's life after it is created: cancelled by its buyer or by the
//! payment timeout, failed when stock-service had no stock for it, and the
//! Redis reservation of every closed order given back exactly once.
//!
//! A cancellation is a distributed transaction of its own (see
//! [`OrderPublisher::cancel`]); the reservation goes back only once it
//! committed, and `reservation_returned_at` records that it did, so the
//! sweeper finishes what a stop interrupted.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use common::domain::{InvalidValue, ProductId, TxNo, UserId};
use common::messages::{CancelReason, OrderCancelled, StockInsufficient};
use sea_orm::{DatabaseConnection, DbErr};

use crate::admission::{AdmissionGate, Reservation, SaleState};
use crate::domain::{Order, OrderStatus};
use crate::metrics::{ClosedBy, OrderMetrics};
use crate::order_tx::{self, OrderPublisher, Outcome, PublishError, Rejection};
use crate::store::{self, Failing, TxOutcome};

/// Who cancels.
#[derive(Debug, Clone, Copy)]
pub enum CancelBy {
    /// The buyer: only their own order.
    Buyer(UserId),
    /// The payment timeout: only an order past its deadline.
    Timeout,
}

/// What a cancel request came to.
#[derive(Debug)]
pub enum CancelOutcome {
    Cancelled(Order),
    /// The broker's check-back decides shortly.
    Pending(Order),
    /// Not NEW (paid, cancelled, failed), or for a timeout not yet due.
    NotCancellable(Order),
    /// No such order (for a buyer: none of theirs).
    NotFound,
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("order database: {0}")]
    Database(#[from] DbErr),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("the cancellation was not recorded: {0}")]
    Unavailable(String),
    #[error("stored order is invalid: {0}")]
    Invalid(#[from] InvalidValue),
    #[error("admission store (Redis): {0}")]
    Admission(String),
}

fn redis_down(err: redis::RedisError) -> LifecycleError {
    LifecycleError::Admission(err.to_string())
}

/// What one sweeper pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub cancelled: usize,
    pub reservations_returned: usize,
    /// Reservations with no order behind them (their process died between
    /// admission and the half message), claimed as rolled back and returned.
    pub orphans_returned: usize,
}

pub struct Lifecycle {
    db: DatabaseConnection,
    publisher: Arc<OrderPublisher>,
    admission: Arc<AdmissionGate>,
    metrics: Arc<OrderMetrics>,
    payment_timeout: Duration,
    orphan_after: Duration,
}

impl Lifecycle {
    pub fn new(
        db: DatabaseConnection,
        publisher: Arc<OrderPublisher>,
        admission: Arc<AdmissionGate>,
        metrics: Arc<OrderMetrics>,
        payment_timeout: Duration,
        orphan_after: Duration,
    ) -> Self {
        Self {
            db,
            publisher,
            admission,
            metrics,
            payment_timeout,
            orphan_after,
        }
    }

    pub fn payment_timeout(&self) -> Duration {
        self.payment_timeout
    }

    /// Orders created at or before this are past their payment deadline.
    pub fn payment_cutoff(&self) -> NaiveDateTime {
        crate::domain::payment_cutoff(self.payment_timeout).naive_utc()
    }

    /// Cancels a NEW order: one conditional update tied to a transactional
    /// `OrderCancelled`, then its reservation goes back.
    #[tracing::instrument(skip(self))]
    pub async fn cancel(
        &self,
        order_no: &str,
        by: CancelBy,
    ) -> Result<CancelOutcome, LifecycleError> {
        let Some(order) = store::find_order(&self.db, order_no).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        if let CancelBy::Buyer(user) = by
            && order.user_id != user.get()
        {
            return Ok(CancelOutcome::NotFound);
        }
        if order.status != OrderStatus::New {
            return Ok(CancelOutcome::NotCancellable(order));
        }
        let (reason, due_if_created_before) = match by {
            CancelBy::Buyer(_) => (CancelReason::Buyer, None),
            CancelBy::Timeout => (CancelReason::Timeout, Some(self.payment_cutoff())),
        };
        let cancel = cancellation_of(&order, reason)?;
        match self
            .publisher
            .cancel(&cancel, due_if_created_before)
            .await?
        {
            Outcome::Committed => {
                self.metrics.closed.inc(match reason {
                    CancelReason::Buyer => ClosedBy::Buyer,
                    CancelReason::Timeout => ClosedBy::Timeout,
                });
                self.return_reservation(&order).await;
                Ok(CancelOutcome::Cancelled(self.reload(order).await?))
            }
            Outcome::Pending => Ok(CancelOutcome::Pending(order)),
            Outcome::Rejected(Rejection::NotCancellable) => {
                Ok(CancelOutcome::NotCancellable(self.reload(order).await?))
            }
            Outcome::Rejected(Rejection::Refused(why) | Rejection::Unavailable(why)) => {
                Err(LifecycleError::Unavailable(why))
            }
            Outcome::Rejected(Rejection::DuplicateRequest) => Err(LifecycleError::Unavailable(
                "a cancellation has no Idempotency-Key".into(),
            )),
        }
    }

    /// Compensation for an order stock-service could not deduct: `NEW →
    /// FAILED` and its reservation back. Repeating it changes nothing.
    #[tracing::instrument(skip_all, fields(tx_no = %insufficient.order_tx_no, order_no = %insufficient.order_no))]
    pub async fn fail(&self, insufficient: &StockInsufficient) -> Result<(), DbErr> {
        match store::fail_order(&self.db, insufficient.order_tx_no.as_str()).await? {
            Failing::Failed(order) => {
                tracing::warn!("order failed: stock-service had no stock for it");
                self.metrics.closed.inc(ClosedBy::StockInsufficient);
                self.return_reservation(&order).await;
            }
            Failing::AlreadyClosed(order) if order.status == OrderStatus::Paid => {
                // Paid before the stock was found missing: needs a refund by a person.
                if store::mark_stock_missing(&self.db, &order.order_no).await? {
                    self.metrics.closed.inc(ClosedBy::PaidWithoutStock);
                    tracing::error!(
                        "PAID order has no stock (stock-service found it insufficient); refund needed"
                    );
                }
            }
            Failing::AlreadyClosed(order) => {
                tracing::info!(status = ?order.status, "order already closed; nothing to fail");
            }
            Failing::NotFound => tracing::warn!("insufficient stock reported for an unknown order"),
        }
        Ok(())
    }

    /// One pass of the safety net: cancels overdue NEW orders (their timeout
    /// message was lost, or came before a clock said so) and returns the
    /// reservations a stop left behind on closed orders.
    pub async fn sweep(&self) -> Result<Swept, LifecycleError> {
        const BATCH: u32 = 200;
        let mut swept = Swept::default();
        for order in store::orders_past_deadline(&self.db, self.payment_cutoff(), BATCH).await? {
            if let CancelOutcome::Cancelled(_) =
                self.cancel(&order.order_no, CancelBy::Timeout).await?
            {
                swept.cancelled += 1;
            }
        }
        for order in store::closed_orders_holding_reservations(&self.db, BATCH).await? {
            if self.return_reservation(&order).await {
                swept.reservations_returned += 1;
            }
        }
        for sale in store::sales(&self.db).await? {
            swept.orphans_returned += self.return_orphans(sale.product).await?;
        }
        Ok(swept)
    }

    /// Returns the reservations of `product` older than `orphan_after` that
    /// no NEW/PAID order holds: a tx_no never decided is claimed as rolled
    /// back first (the check-back's own claim, so a half message still on the
    /// broker can no longer commit); a closed order's leftover goes back too.
    /// Sales being rebuilt are left to their rebuild.
    async fn return_orphans(&self, product: ProductId) -> Result<usize, LifecycleError> {
        if self
            .admission
            .sale_state(product)
            .await
            .map_err(redis_down)?
            != SaleState::Open
        {
            return Ok(0);
        }
        let old_before = chrono::Utc::now().timestamp_millis()
            - i64::try_from(self.orphan_after.as_millis()).unwrap_or(i64::MAX);
        let old: Vec<(String, Reservation)> = self
            .admission
            .reservations(product)
            .await
            .map_err(redis_down)?
            .into_iter()
            .filter(|(_, r)| r.reserved_at_ms.is_none_or(|at| at <= old_before))
            .collect();
        if old.is_empty() {
            return Ok(0);
        }
        let held: std::collections::HashSet<String> = store::holdings(&self.db, product.get())
            .await?
            .into_iter()
            .map(|h| h.tx_no)
            .collect();
        let mut returned = 0;
        for (tx_no, _) in old.into_iter().filter(|(tx, _)| !held.contains(tx)) {
            let Ok(tx) = TxNo::parse(&tx_no) else {
                continue;
            };
            let orphan = match order_tx::settle(&self.db, &tx_no).await? {
                TxOutcome::RolledBack => true,
                // Committed: only a closed order's leftover (re-read: it may
                // have committed just after the holdings were read).
                TxOutcome::Committed => store::find_order_by_tx(&self.db, &tx_no)
                    .await?
                    .is_some_and(|o| {
                        matches!(o.status, OrderStatus::Cancelled | OrderStatus::Failed)
                    }),
            };
            if orphan
                && self
                    .admission
                    .release(product, &tx)
                    .await
                    .map_err(redis_down)?
                    > 0
            {
                tracing::warn!(%tx_no, %product, "reservation without a live order returned");
                returned += 1;
            }
        }
        Ok(returned)
    }

    /// Gives a closed order's Redis reservation back (release.lua does it at
    /// most once per tx_no) and records that it did. `false` when Redis or the
    /// DB failed: the sweeper tries again.
    async fn return_reservation(&self, order: &Order) -> bool {
        let released = match (
            ProductId::parse(order.product_id),
            TxNo::parse(&order.tx_no),
        ) {
            (Ok(product), Ok(tx_no)) => self.admission.release(product, &tx_no).await,
            _ => return false,
        };
        if let Err(err) = released {
            tracing::warn!(%err, order_no = %order.order_no, "reservation not returned yet; the sweeper retries");
            return false;
        }
        match store::mark_reservation_returned(&self.db, &order.order_no).await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(%err, order_no = %order.order_no, "reservation returned but not recorded; the sweeper retries");
                false
            }
        }
    }

    async fn reload(&self, order: Order) -> Result<Order, DbErr> {
        Ok(store::find_order(&self.db, &order.order_no)
            .await?
            .unwrap_or(order))
    }
}

/// The cancellation message of a stored order.
fn cancellation_of(order: &Order, reason: CancelReason) -> Result<OrderCancelled, InvalidValue> {
    Ok(OrderCancelled::of(&order.created_message()?, reason))
}

/// Runs [`Lifecycle::sweep`] every `every` until aborted.
pub async fn keep_sweeping(
    lifecycle: Arc<Lifecycle>,
    every: Duration,
    mut shutdown: common::shutdown::Shutdown,
) {
    while shutdown.sleep(every).await {
        match lifecycle.sweep().await {
            Ok(swept) if swept != Swept::default() => {
                tracing::warn!(?swept, "sweeper closed what the timeout messages missed")
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "sweep failed; next pass retries"),
        }
    }
}
