//! The transaction listener RocketMQ calls: once after each half message is
//! stored (run the local transaction) and whenever the broker checks back on a
//! transaction it never heard the end of (answer from `tx_log`).
//!
//! The client calls both synchronously on its own blocking lane, so each call
//! drives its async DB work on the application's runtime with `Handle::block_on`
//! (never on a runtime worker thread: these are the client's blocking threads).

use std::any::Any;
use std::sync::{Arc, Mutex};

use common::messages::OrderCreated;
use rocketmq_client_rust::{LocalTransactionState, TransactionListener};
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::common::message::message_ext::MessageExt;
use sea_orm::DatabaseConnection;
use tokio::runtime::Handle;

use crate::admission::AdmissionGate;
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
            | Self::Refused(_)
            | Self::Unavailable(_) => LocalTransactionState::RollbackMessage,
            Self::CommitUncertain(_) => LocalTransactionState::Unknown,
        }
    }
}

/// The argument passed with each transactional send: the order to record and a
/// slot the listener fills with its [`LocalResult`].
#[derive(Debug)]
pub struct PendingOrder {
    pub order: OrderCreated,
    pub idempotency_key: Option<String>,
    result: Mutex<Option<LocalResult>>,
}

impl PendingOrder {
    pub fn new(order: OrderCreated, idempotency_key: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            order,
            idempotency_key,
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

pub struct OrderTxListener {
    db: DatabaseConnection,
    admission: Arc<AdmissionGate>,
    runtime: Handle,
}

impl OrderTxListener {
    /// `runtime` is the application's runtime, on which the DB pool lives.
    pub fn new(db: DatabaseConnection, admission: Arc<AdmissionGate>, runtime: Handle) -> Self {
        Self {
            db,
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
        let Some(pending) = arg.and_then(|arg| arg.downcast_ref::<Arc<PendingOrder>>()) else {
            tracing::error!(
                "transactional send without its PendingOrder; leaving it to the check-back"
            );
            return LocalTransactionState::Unknown;
        };
        let order = &pending.order;
        let span = tracing::info_span!("local_transaction", tx_no = %order.tx_no, order_no = %order.order_no);
        let _entered = span.enter();
        let result = LocalResult::from_record(self.runtime.block_on(store::record_order(
            &self.db,
            order,
            pending.idempotency_key.as_deref(),
        )));
        let state = result.broker_state();
        tracing::info!(?result, ?state, "local transaction done");
        pending.report(result);
        state
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        let body = msg.body().unwrap_or_default();
        let order = match OrderCreated::decode(&body) {
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
}
