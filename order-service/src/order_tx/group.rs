//! Group commit: orders admitted at the same moment are recorded together,
//! one local transaction and one transactional [`OrderBatch`] message for
//! all of them, instead of one of each per order.
//!
//! Adaptive, with no added wait: one task takes whatever is queued when a
//! send slot is free (at most `max_batch`), so an idle service sends each
//! order alone at once (as the single `OrderCreated` message it always
//! was), and under a flood a batch is what queued while the previous sends
//! were in flight. Every order still gets its own answer: orders the batch's
//! local transaction refused (an Idempotency-Key used before, a tx_no a
//! check-back claimed first) get theirs, and the others go again at once as
//! a batch without them, under a new batch tx_no.

use std::sync::Arc;

use common::domain::TxNo;
use common::messages::{OrderBatch, OrderCreated};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{OrderPublisher, Outcome, PublishError};
use crate::metrics::{GroupSend, OrderMetrics};
use crate::settings::GroupCommitSettings;

/// One order waiting for its group commit.
struct Queued {
    order: OrderCreated,
    idempotency_key: Option<String>,
    answer: oneshot::Sender<Result<Outcome, PublishError>>,
}

/// The queue in front of the transactional producer.
pub struct GroupCommit {
    queue: mpsc::Sender<Queued>,
    publisher: Arc<OrderPublisher>,
}

impl GroupCommit {
    /// Starts the task that forms the batches; it ends when every
    /// [`GroupCommit`] handle is dropped and the queue is drained.
    pub fn start(
        publisher: Arc<OrderPublisher>,
        settings: &GroupCommitSettings,
        metrics: Arc<OrderMetrics>,
    ) -> Self {
        let max_batch = settings.max_batch.max(1);
        let (queue, queued) = mpsc::channel(max_batch * settings.in_flight.max(1) * 4);
        tokio::spawn(form_batches(
            queued,
            Arc::clone(&publisher),
            max_batch,
            Arc::new(Semaphore::new(settings.in_flight.max(1))),
            metrics,
        ));
        Self { queue, publisher }
    }

    /// Whether the producer behind it reaches the broker (see
    /// [`OrderPublisher::broker_ready`]).
    pub fn broker_ready(&self) -> bool {
        self.publisher.broker_ready()
    }

    /// Records `order` with the next group commit; its own outcome.
    pub async fn place(
        &self,
        order: &OrderCreated,
        idempotency_key: Option<String>,
    ) -> Result<Outcome, PublishError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Queued {
                order: order.clone(),
                idempotency_key,
                answer,
            })
            .await
            .map_err(|_| PublishError::ShutDown)?;
        // Dropped unanswered only if the sending task panicked: nothing known.
        answered.await.unwrap_or(Err(PublishError::ShutDown))
    }
}

/// Takes a send slot, then everything queued (at most `max_batch`), and
/// sends it in the background; waits for an order only when none is queued.
async fn form_batches(
    mut queued: mpsc::Receiver<Queued>,
    publisher: Arc<OrderPublisher>,
    max_batch: usize,
    slots: Arc<Semaphore>,
    metrics: Arc<OrderMetrics>,
) {
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Some(first) = queued.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match queued.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let publisher = Arc::clone(&publisher);
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            commit(&publisher, batch, &metrics).await;
            drop(slot);
        });
    }
}

/// Sends `batch` until every order in it has its answer: alone as a single
/// message, else as one batch message; orders refused in it are answered
/// and the rest sent again.
async fn commit(publisher: &OrderPublisher, mut batch: Vec<Queued>, metrics: &OrderMetrics) {
    while batch.len() > 1 {
        let orders = OrderBatch::new(
            TxNo::generate_batch(),
            batch.iter().map(|q| q.order.clone()).collect(),
        );
        let keys = batch.iter().map(|q| q.idempotency_key.clone()).collect();
        metrics.group_commit.inc(GroupSend::Batch);
        let (outcome, refused) = match publisher.place_batch(&orders, keys).await {
            Ok(answer) => answer,
            Err(err) => {
                let shared = Arc::new(err);
                for queued in batch {
                    let _ = queued
                        .answer
                        .send(Err(PublishError::Batch(Arc::clone(&shared))));
                }
                return;
            }
        };
        if refused.is_empty() {
            metrics
                .group_commit
                .add(GroupSend::BatchedOrders, batch.len() as u64);
            for queued in batch {
                let _ = queued.answer.send(Ok(outcome.clone()));
            }
            return;
        }
        metrics
            .group_commit
            .add(GroupSend::Refused, refused.len() as u64);
        let mut answers: Vec<Option<Outcome>> = vec![None; batch.len()];
        for (i, answer) in refused {
            if let Some(slot) = answers.get_mut(i) {
                *slot = Some(answer);
            }
        }
        let mut rest = Vec::with_capacity(batch.len());
        for (queued, answer) in batch.into_iter().zip(answers) {
            match answer {
                Some(answer) => {
                    let _ = queued.answer.send(Ok(answer));
                }
                None => rest.push(queued),
            }
        }
        batch = rest;
    }
    if let Some(queued) = batch.pop() {
        metrics.group_commit.inc(GroupSend::Single);
        let placed = publisher.place(&queued.order, queued.idempotency_key).await;
        let _ = queued.answer.send(placed);
    }
}
