//! The transaction listener RocketMQ calls: once after each half message is
//! stored (run the local transaction: record an order, or cancel one) and
//! whenever the broker checks back on a transaction it never heard the end of
//! (answer from `tx_log`).
//!
//! The client calls both synchronously on its own blocking lane, so each call
//! drives its async DB work on the application's runtime with `Handle::block_on`
//! (never on a runtime worker thread: these are the client's blocking threads).

use std::any::Any;
use std::sync::{Arc, Mutex};

use chrono::NaiveDateTime;
use common::messages::{Envelope, OrderCancelled, OrderCreated, TAG_ORDER_CANCELLED};
use rocketmq_client_rust::{LocalTransactionState, TransactionListener};
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::common::message::message_ext::MessageExt;
use sea_orm::DatabaseConnection;
use tokio::runtime::Handle;

use crate::admission::AdmissionGate;
use crate::metrics::OrderMetrics;
use crate::store::{self, RecordError, TxOutcome};

/// What the local transaction concluded, in more detail than the broker needs:
/// the HTTP handler reads it to tell the buyer why an order was not placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalResult {
    Committed,
    /// A check-back decided this tx_no before the local transaction could.
    DecidedElsewhere(TxOutcome),
    /// The same user's Idempotency-Key already has an order.
    DuplicateRequest,
    /// The order to cancel is not NEW any more (or not due yet).
    NotCancellable,
    Refused(String),
    Unavailable(String),
    CommitUncertain(String),
}

impl LocalResult {
    fn from_record(result: Result<(), RecordError>) -> Self {
        match result {
            Ok(()) => Self::Committed,
            Err(RecordError::AlreadyDecided(outcome)) => Self::DecidedElsewhere(outcome),
            Err(RecordError::DuplicateRequest) => Self::DuplicateRequest,
            Err(RecordError::NotCancellable) => Self::NotCancellable,
            Err(RecordError::Refused(e)) => Self::Refused(e.to_string()),
            Err(RecordError::Unavailable(e)) => Self::Unavailable(e.to_string()),
            Err(RecordError::CommitUncertain(e)) => Self::CommitUncertain(e.to_string()),
        }
    }

    /// The answer the broker gets. Only an uncertain commit stays UNKNOWN: every
    /// other failure happened before COMMIT, so nothing can commit later.
    fn broker_state(&self) -> LocalTransactionState {
        match self {
            Self::Committed | Self::DecidedElsewhere(TxOutcome::Committed) => {
                LocalTransactionState::CommitMessage
            }
            Self::DecidedElsewhere(TxOutcome::RolledBack)
            | Self::DuplicateRequest
            | Self::NotCancellable
            | Self::Refused(_)
            | Self::Unavailable(_) => LocalTransactionState::RollbackMessage,
            Self::CommitUncertain(_) => LocalTransactionState::Unknown,
        }
    }
}

/// The local transaction a transactional send stands for.
#[derive(Debug)]
pub enum LocalWork {
    /// Record a NEW order.
    Create {
        order: OrderCreated,
        idempotency_key: Option<String>,
    },
    /// Cancel a NEW order; a timeout passes the creation cut-off it must meet.
    Cancel {
        cancel: OrderCancelled,
        due_if_created_before: Option<NaiveDateTime>,
    },
}

impl LocalWork {
    pub fn tx_no(&self) -> &str {
        match self {
            Self::Create { order, .. } => order.tx_no.as_str(),
            Self::Cancel { cancel, .. } => cancel.tx_no.as_str(),
        }
    }
}

/// The argument passed with each transactional send: the local work to do and
/// a slot the listener fills with its [`LocalResult`].
#[derive(Debug)]
pub struct PendingTx {
    pub work: LocalWork,
    result: Mutex<Option<LocalResult>>,
}

impl PendingTx {
    pub fn new(work: LocalWork) -> Arc<Self> {
        Arc::new(Self {
            work,
            result: Mutex::new(None),
        })
    }

    /// `None` when the local transaction never ran (e.g. the client refused it).
    pub fn result(&self) -> Option<LocalResult> {
        self.result.lock().map(|slot| slot.clone()).unwrap_or(None)
    }

    fn report(&self, result: LocalResult) {
        if let Ok(mut slot) = self.result.lock() {
            *slot = Some(result);
        }
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
        let Some(pending) = arg.and_then(|arg| arg.downcast_ref::<Arc<PendingTx>>()) else {
            tracing::error!(
                "transactional send without its PendingTx; leaving it to the check-back"
            );
            return LocalTransactionState::Unknown;
        };
        let span = tracing::info_span!("local_transaction", tx_no = %pending.work.tx_no());
        let _entered = span.enter();
        let recorded = match &pending.work {
            LocalWork::Create {
                order,
                idempotency_key,
            } => self.runtime.block_on(store::record_order(
                &self.db,
                order,
                idempotency_key.as_deref(),
            )),
            LocalWork::Cancel {
                cancel,
                due_if_created_before,
            } => self.runtime.block_on(store::record_cancel(
                &self.db,
                cancel,
                *due_if_created_before,
            )),
        };
        let result = LocalResult::from_record(recorded);
        let state = result.broker_state();
        tracing::info!(?result, ?state, "local transaction done");
        pending.report(result);
        state
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        let body = msg.body().unwrap_or_default();
        let answer = if msg.get_tags().as_deref() == Some(TAG_ORDER_CANCELLED) {
            self.check_cancel(msg, &body)
        } else {
            self.check_creation(msg, &body)
        };
        self.metrics.check_backs.inc(match answer {
            LocalTransactionState::CommitMessage => "commit",
            LocalTransactionState::RollbackMessage => "rollback",
            _ => "unknown",
        });
        answer
    }
}

impl OrderTxListener {
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
            .block_on(store::resolve_tx(&self.db, order.tx_no.as_str()))
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
            .block_on(store::resolve_tx(&self.db, cancel.tx_no.as_str()))
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
