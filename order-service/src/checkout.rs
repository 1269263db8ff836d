//! The order path as one call: admit in Redis, then send the transactional
//! message whose local transaction records the order. Whenever the order ends
//! up not placed, its reservation goes back (at most once, keyed by tx_no).

use std::sync::Arc;

use common::messages::OrderCreated;
use redis::RedisError;
use sea_orm::DatabaseConnection;

use crate::admission::{Admission, AdmissionGate};
use crate::domain::NewOrder;
use crate::publisher::{OrderPublisher, Placement, PublishError};
use crate::store::{self, TxOutcome};

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("sold out")]
    SoldOut,
    #[error("per-user limit reached")]
    LimitExceeded,
    #[error("product not on sale")]
    NotOnSale,
    #[error("the sale's admission state is being rebuilt")]
    NotReady,
    #[error("admission store (Redis) unavailable: {0}")]
    Admission(#[from] RedisError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

pub struct Checkout {
    pub admission: Arc<AdmissionGate>,
    pub publisher: Arc<OrderPublisher>,
    pub db: DatabaseConnection,
}

impl Checkout {
    pub async fn place(&self, new_order: NewOrder) -> Result<Placement, CheckoutError> {
        let order = new_order.into_message();
        match self.admission.admit(&order).await? {
            Admission::Admitted { .. } => {}
            Admission::SoldOut => return Err(CheckoutError::SoldOut),
            Admission::LimitExceeded => return Err(CheckoutError::LimitExceeded),
            Admission::NotOnSale => return Err(CheckoutError::NotOnSale),
            Admission::NotReady => return Err(CheckoutError::NotReady),
        }
        match self.publisher.place(order.clone()).await {
            Ok(Placement::NotPlaced { order, reason }) => {
                self.give_back(&order).await;
                Ok(Placement::NotPlaced { order, reason })
            }
            Ok(placement) => Ok(placement),
            Err(err) => {
                // The local transaction never ran; a half message may still sit
                // on the broker, so settle the tx_no as rolled back first.
                if let Ok(TxOutcome::RolledBack) =
                    store::resolve_tx(&self.db, order.tx_no.as_str()).await
                {
                    self.give_back(&order).await;
                }
                Err(err.into())
            }
        }
    }

    async fn give_back(&self, order: &OrderCreated) {
        if let Err(err) = self.admission.release(order.product_id, &order.tx_no).await {
            tracing::error!(%err, tx_no = %order.tx_no, "reservation not returned; reconciliation will");
        }
    }
}
