//! The transaction listener RocketMQ calls: once after each half message is
//! stored ([`OrderTxListener::run_local_transaction`]: record an order, or
//! cancel one) and whenever the broker checks back on a transaction it never
//! heard the end of ([`OrderTxListener::answer_check_back`]: from `tx_log`,
//! through [`settle`]).
//!
//! The client calls both synchronously on its own blocking lane, so each call
//! drives its async DB work on the application's runtime with `Handle::block_on`
//! (never on a runtime worker thread: these are the client's blocking threads).

use std::any::Any;
use std::sync::Arc;

use common::messages::{
    Envelope, OrderBatch, OrderCancelled, OrderCreated, TAG_ORDER_BATCH, TAG_ORDER_CANCELLED,
};
use rocketmq_client_rust::{LocalTransactionState, TransactionListener};
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::common::message::message_ext::MessageExt;
use sea_orm::DatabaseConnection;
use tokio::runtime::Handle;

use super::{LocalWork, Outcome, PendingTx, settle};
use crate::admission::AdmissionGate;
use crate::metrics::{CheckBackAnswer, OrderMetrics};
use crate::store::{self, TxOutcome};

/// The broker's answer for an outcome.
fn broker_state(outcome: &Outcome) -> LocalTransactionState {
    match outcome {
        Outcome::Committed => LocalTransactionState::CommitMessage,
        Outcome::Rejected(_) => LocalTransactionState::RollbackMessage,
        Outcome::Pending => LocalTransactionState::Unknown,
    }
}

#[derive(Clone)]
pub struct OrderTxListener {
    db: DatabaseConnection,
    metrics: Arc<OrderMetrics>,
    admission: Arc<AdmissionGate>,
    runtime: Handle,
}

impl OrderTxListener {
    /// `runtime` is the application's runtime, on which the DB pool lives.
    pub fn new(
        db: DatabaseConnection,
        admission: Arc<AdmissionGate>,
        metrics: Arc<OrderMetrics>,
        runtime: Handle,
    ) -> Self {
        Self {
            db,
            metrics,
            admission,
            runtime,
        }
    }
}

impl TransactionListener for OrderTxListener {
    fn execute_local_transaction(
        &self,
        _msg: &dyn MessageTrait,
        arg: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState {
        self.run_local_transaction(arg)
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        self.answer_check_back(msg)
    }
}

impl OrderTxListener {
    /// Runs the [`LocalWork`] sent with the half message and reports its
    /// [`Outcome`] to the sender; the broker gets the matching answer.
    fn run_local_transaction(
        &self,
        arg: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState {
        let Some(pending) = arg.and_then(|arg| arg.downcast_ref::<Arc<PendingTx>>()) else {
            tracing::error!(
                "transactional send without its PendingTx; leaving it to the check-back"
            );
            return LocalTransactionState::Unknown;
        };
        let span = tracing::info_span!("local_transaction", tx_no = %pending.work.tx_no());
        let _entered = span.enter();
        let (outcome, refused) = match &pending.work {
            LocalWork::Create {
                order,
                idempotency_key,
            } => self.local_outcome(store::record_order(
                &self.db,
                order,
                idempotency_key.as_deref(),
            )),
            LocalWork::Cancel {
                cancel,
                due_if_created_before,
            } => self.local_outcome(store::record_cancel(
                &self.db,
                cancel,
                *due_if_created_before,
            )),
            LocalWork::CreateBatch {
                batch,
                idempotency_keys,
            } => {
                let recorded =
                    self.runtime
                        .block_on(store::record_batch(&self.db, batch, idempotency_keys));
                if let Err(err) = &recorded {
                    tracing::info!(%err, "the batch's local transaction did not commit");
                }
                Outcome::of_batch(recorded)
            }
        };
        let state = broker_state(&outcome);
        tracing::info!(
            ?outcome,
            ?state,
            refused = refused.len(),
            "local transaction done"
        );
        pending.report_refused(refused);
        pending.report(outcome);
        state
    }

    /// Runs one order's or cancellation's local transaction to its outcome.
    fn local_outcome(
        &self,
        record: impl std::future::Future<Output = Result<(), store::RecordError>>,
    ) -> (Outcome, Vec<(usize, Outcome)>) {
        let recorded = self.runtime.block_on(record);
        if let Err(err) = &recorded {
            tracing::info!(%err, "local transaction did not commit");
        }
        (Outcome::of_local(recorded), Vec::new())
    }

    /// The broker asks about a transaction it never heard the end of: the
    /// answer comes from [`settle`], so it is final.
    fn answer_check_back(&self, msg: &MessageExt) -> LocalTransactionState {
        let body = msg.body().unwrap_or_default();
        let answer = match msg.get_tags().as_deref() {
            Some(TAG_ORDER_CANCELLED) => self.check_cancel(msg, &body),
            Some(TAG_ORDER_BATCH) => self.check_batch(msg, &body),
            _ => self.check_creation(msg, &body),
        };
        self.metrics.check_backs.inc(match answer {
            LocalTransactionState::CommitMessage => CheckBackAnswer::Commit,
            LocalTransactionState::RollbackMessage => CheckBackAnswer::Rollback,
            _ => CheckBackAnswer::Unknown,
        });
        answer
    }

    fn check_creation(&self, msg: &MessageExt, body: &[u8]) -> LocalTransactionState {
        let order = match OrderCreated::decode(body) {
            Ok(order) => order,
            Err(err) => {
                // Not ours to judge: another (newer) instance of the group may read it.
                tracing::error!(%err, msg_id = %msg.msg_id(), "check-back on an unreadable message");
                return LocalTransactionState::Unknown;
            }
        };
        let span =
            tracing::info_span!("check_back", tx_no = %order.tx_no, order_no = %order.order_no);
        let _entered = span.enter();
        match self
            .runtime
            .block_on(settle(&self.db, order.tx_no.as_str()))
        {
            Ok(TxOutcome::Committed) => LocalTransactionState::CommitMessage,
            Ok(TxOutcome::RolledBack) => {
                // Final: the order will never exist, so its Redis reservation goes back.
                if let Err(err) = self
                    .runtime
                    .block_on(self.admission.release(order.product_id, &order.tx_no))
                {
                    tracing::error!(%err, "reservation not returned; reconciliation will");
                }
                LocalTransactionState::RollbackMessage
            }
            Err(err) => {
                tracing::warn!(%err, "check-back could not read tx_log; the broker will ask again");
                LocalTransactionState::Unknown
            }
        }
    }

    /// A batch's check-back: the batch's own tx_no decides. Rolled back, each
    /// order's reservation goes back only once that order's own tx_no is
    /// settled rolled back too: an order refused with a batch-mate went
    /// again in a later batch, and may be committed there.
    fn check_batch(&self, msg: &MessageExt, body: &[u8]) -> LocalTransactionState {
        let batch = match OrderBatch::decode(body) {
            Ok(batch) => batch,
            Err(err) => {
                tracing::error!(%err, msg_id = %msg.msg_id(), "check-back on an unreadable batch");
                return LocalTransactionState::Unknown;
            }
        };
        let span = tracing::info_span!("check_back_batch", batch_tx_no = %batch.batch_tx_no, size = batch.orders.len());
        let _entered = span.enter();
        match self
            .runtime
            .block_on(settle(&self.db, batch.batch_tx_no.as_str()))
        {
            Ok(TxOutcome::Committed) => LocalTransactionState::CommitMessage,
            Ok(TxOutcome::RolledBack) => {
                for order in &batch.orders {
                    let gone = self.runtime.block_on(async {
                        match settle(&self.db, order.tx_no.as_str()).await {
                            Ok(TxOutcome::RolledBack) => self
                                .admission
                                .release(order.product_id, &order.tx_no)
                                .await
                                .map(|_| ())
                                .map_err(|e| e.to_string()),
                            Ok(TxOutcome::Committed) => Ok(()),
                            Err(e) => Err(e.to_string()),
                        }
                    });
                    if let Err(err) = gone {
                        tracing::error!(%err, tx_no = %order.tx_no, "reservation not returned; reconciliation will");
                    }
                }
                LocalTransactionState::RollbackMessage
            }
            Err(err) => {
                tracing::warn!(%err, "check-back could not read tx_log; the broker will ask again");
                LocalTransactionState::Unknown
            }
        }
    }

    /// A cancellation's check-back: its own tx_no decides. Nothing to give
    /// back either way here: a committed cancel's reservation is returned by
    /// whoever committed it, or by the sweeper.
    fn check_cancel(&self, msg: &MessageExt, body: &[u8]) -> LocalTransactionState {
        let cancel = match OrderCancelled::decode(body) {
            Ok(cancel) => cancel,
            Err(err) => {
                tracing::error!(%err, msg_id = %msg.msg_id(), "check-back on an unreadable cancellation");
                return LocalTransactionState::Unknown;
            }
        };
        let span = tracing::info_span!("check_back_cancel", tx_no = %cancel.tx_no, order_no = %cancel.order_no);
        let _entered = span.enter();
        match self
            .runtime
            .block_on(settle(&self.db, cancel.tx_no.as_str()))
        {
            Ok(TxOutcome::Committed) => LocalTransactionState::CommitMessage,
            Ok(TxOutcome::RolledBack) => LocalTransactionState::RollbackMessage,
            Err(err) => {
                tracing::warn!(%err, "check-back could not read tx_log; the broker will ask again");
                LocalTransactionState::Unknown
            }
        }
    }
}
