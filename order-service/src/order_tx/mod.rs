//! The transactional-message protocol: an order (or a cancellation) and its
//! message commit together or not at all.
//!
//! 1. [`send`]: the half message goes to the broker with the [`LocalWork`] it
//!    stands for;
//! 2. [`local`]: once the broker stored it, the client runs the local
//!    transaction (`store::record_order` / `record_cancel`) and tells the
//!    broker COMMIT, ROLLBACK, or nothing when the commit's fate is unknown;
//! 3. [`local`] again, later: when the broker never heard the end, it checks
//!    back, and the answer comes from [`settle`] — the claim on the tx_no that
//!    makes every answer final (never "rolled back" while it may still commit).
//!
//! One [`Outcome`] is carried from the local transaction to the caller: the
//! broker's answer is derived from it, and whoever must know a tx_no's fate
//! now (the sender after an UNKNOWN, checkout after a failed send, the
//! sweeper, the redelivery) asks [`settle`], the same claim the check-back makes.

mod group;
mod local;
mod send;

use std::sync::{Arc, Mutex};

use chrono::NaiveDateTime;
use common::messages::{OrderBatch, OrderCancelled, OrderCreated};
use sea_orm::{DatabaseConnection, DbErr};

use crate::store::{self, BatchRecordError, RecordError, TxOutcome};

pub use group::GroupCommit;
pub use local::OrderTxListener;
pub use send::{OrderPublisher, PublishError, broker_unreachable, keep_connected};

/// Where one transactional send ended up, as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored and committed: stock-service will apply it.
    Committed,
    /// Not decided yet; the broker's check-back will decide it.
    Pending,
    /// Nothing was stored and nothing will be delivered.
    Rejected(Rejection),
}

/// Why nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The user's Idempotency-Key already has an order.
    DuplicateRequest,
    /// The order to cancel is not NEW any more (or not due yet).
    NotCancellable,
    /// The database refused it (constraint, trigger).
    Refused(String),
    /// The database or the broker could not be used (or a check-back rolled
    /// the tx_no back first); retrying may succeed.
    Unavailable(String),
}

impl Outcome {
    /// What the local transaction's result means. Only an uncertain commit
    /// stays pending: every other failure happened before COMMIT, so nothing
    /// can commit later.
    fn of_local(recorded: Result<(), RecordError>) -> Self {
        match recorded {
            Ok(()) | Err(RecordError::AlreadyDecided(TxOutcome::Committed)) => Self::Committed,
            Err(RecordError::AlreadyDecided(TxOutcome::RolledBack)) => Self::Rejected(
                Rejection::Unavailable("it could not be recorded in time".into()),
            ),
            Err(RecordError::DuplicateRequest) => Self::Rejected(Rejection::DuplicateRequest),
            Err(RecordError::NotCancellable) => Self::Rejected(Rejection::NotCancellable),
            Err(RecordError::Refused(e)) => Self::Rejected(Rejection::Refused(e.to_string())),
            Err(RecordError::Unavailable(e)) => {
                Self::Rejected(Rejection::Unavailable(e.to_string()))
            }
            Err(RecordError::CommitUncertain(_)) => Self::Pending,
        }
    }

    /// What a group commit's local transaction means for the batch, and
    /// for each order it refused (index, outcome). With any refused, the
    /// batch is rejected whole (its half message lists them all) and the
    /// others go again without them.
    fn of_batch(recorded: Result<(), BatchRecordError>) -> (Self, Vec<(usize, Self)>) {
        match recorded {
            Ok(()) => (Self::Committed, Vec::new()),
            Err(BatchRecordError::Whole(err)) => (Self::of_local(Err(err)), Vec::new()),
            Err(BatchRecordError::Some(refused)) => (
                Self::Rejected(Rejection::Unavailable(
                    "orders of its batch were refused; it goes again without them".into(),
                )),
                refused
                    .into_iter()
                    .map(|(i, err)| (i, Self::of_local(Err(err))))
                    .collect(),
            ),
        }
    }

    /// A decided tx_no's outcome.
    fn of_settled(settled: TxOutcome) -> Self {
        match settled {
            TxOutcome::Committed => Self::Committed,
            TxOutcome::RolledBack => Self::Rejected(Rejection::Unavailable(
                "it could not be recorded in time".into(),
            )),
        }
    }
}

/// Decides a tx_no now, finally: the check-back's claim (see
/// [`store::resolve_tx`]). Every place that must know whether an order or a
/// cancellation committed asks this, so they all agree with the broker.
pub async fn settle(db: &DatabaseConnection, tx_no: &str) -> Result<TxOutcome, DbErr> {
    store::resolve_tx(db, tx_no).await
}

/// The local transaction a transactional send stands for.
#[derive(Debug)]
pub enum LocalWork {
    /// Record a NEW order.
    Create {
        order: OrderCreated,
        idempotency_key: Option<String>,
    },
    /// Record the NEW orders of a group commit (with each one's
    /// Idempotency-Key, by index), all or none.
    CreateBatch {
        batch: OrderBatch,
        idempotency_keys: Vec<Option<String>>,
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
            Self::CreateBatch { batch, .. } => batch.batch_tx_no.as_str(),
            Self::Cancel { cancel, .. } => cancel.tx_no.as_str(),
        }
    }
}

/// The argument passed with each transactional send: the local work to do and
/// a slot the local transaction fills with its [`Outcome`] (and, for a
/// batch, the outcomes of the orders it refused).
#[derive(Debug)]
pub struct PendingTx {
    pub work: LocalWork,
    outcome: Mutex<Option<Outcome>>,
    refused: Mutex<Vec<(usize, Outcome)>>,
}

impl PendingTx {
    pub fn new(work: LocalWork) -> Arc<Self> {
        Arc::new(Self {
            work,
            outcome: Mutex::new(None),
            refused: Mutex::new(Vec::new()),
        })
    }

    /// `None` when the local transaction never ran (e.g. the client refused it).
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome.lock().map(|slot| slot.clone()).unwrap_or(None)
    }

    /// The orders of a batch its local transaction refused (index, outcome).
    pub fn refused(&self) -> Vec<(usize, Outcome)> {
        self.refused
            .lock()
            .map(|refused| refused.clone())
            .unwrap_or_default()
    }

    fn report(&self, outcome: Outcome) {
        if let Ok(mut slot) = self.outcome.lock() {
            *slot = Some(outcome);
        }
    }

    fn report_refused(&self, refused: Vec<(usize, Outcome)>) {
        if let Ok(mut slot) = self.refused.lock() {
            *slot = refused;
        }
    }
}
