//! The order path as one call: (replay an earlier attempt with the same
//! Idempotency-Key, or) admit in Redis, then send the transactional message
//! whose local transaction records the order (with the orders admitted at the
//! same moment: [`GroupCommit`]); a committed order's payment
//! timeout is scheduled. Before that, a buyer gets a one-time order token
//! ([`Checkout::issue_token`]), which admission uses up. Whenever the order ends up not
//! placed, its reservation goes back (at most once, keyed by tx_no) and its
//! idempotency claim is dropped.

use std::sync::Arc;

use common::domain::{ProductId, TxNo, UserId};
use common::messages::OrderCreated;
use redis::RedisError;
use sea_orm::DatabaseConnection;

use crate::admission::{Admission, AdmissionGate, Issued};
use crate::domain::{IdempotencyKey, NewOrder, Order, OrderToken};
use crate::idempotency::{Earlier, IdempotencyClaims, IdempotencyError};
use crate::order_tx::{self, GroupCommit, Outcome, PublishError, Rejection};
use crate::rate_limit::Bucket;
use crate::store::{self, TxOutcome};
use crate::timeouts::TimeoutScheduler;

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
    #[error("the sale starts in {0} ms")]
    NotStarted(i64),
    #[error("the sale has ended")]
    Ended,
    #[error("the order token is missing, expired, used or another's")]
    TokenInvalid,
    #[error("the Idempotency-Key was used for a different order")]
    IdempotencyKeyReused,
    #[error("over a shared rate limit; retry after {0:?}")]
    RateLimited(std::time::Duration),
    #[error("admission store (Redis) unavailable: {0}")]
    Admission(#[from] RedisError),
    #[error("idempotency: {0}")]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// What a checkout produced.
#[derive(Debug)]
pub enum Checkedout {
    /// The order was sent; where it ended up.
    Placed {
        order: OrderCreated,
        outcome: Outcome,
    },
    /// An earlier attempt with the same Idempotency-Key created this order.
    Replayed(Order),
    /// An earlier attempt with the same Idempotency-Key is still undecided.
    ReplayPending { order_no: String, tx_no: String },
}

pub struct Checkout {
    pub admission: Arc<AdmissionGate>,
    /// Records admitted orders together (see [`GroupCommit`]).
    pub group_commit: Arc<GroupCommit>,
    pub timeouts: Arc<TimeoutScheduler>,
    pub idempotency: IdempotencyClaims,
    pub db: DatabaseConnection,
    /// How long an issued order token stays valid.
    pub order_token_ttl: std::time::Duration,
}

impl Checkout {
    /// Whether [`Self::place`] would answer this request from memory (a
    /// product this instance saw sold out, no Idempotency-Key to replay):
    /// then nothing is worth a shared rate-limit check.
    pub fn answers_from_memory(&self, order: &NewOrder, key: Option<&IdempotencyKey>) -> bool {
        key.is_none() && self.admission.sold_out_locally(order.product_id)
    }

    /// A one-time order token for `user` and `product` (see
    /// [`AdmissionGate::issue_token`]), or why none was issued; the request
    /// is counted against `buckets` first.
    pub async fn issue_token(
        &self,
        user: UserId,
        product: ProductId,
        buckets: &[Bucket],
    ) -> Result<OrderToken, CheckoutError> {
        match self
            .admission
            .issue_token(user, product, self.order_token_ttl, buckets)
            .await?
        {
            Issued::Token(token) => Ok(token),
            Issued::Refused(why) => Err(match why {
                Admission::SoldOut => CheckoutError::SoldOut,
                Admission::LimitExceeded => CheckoutError::LimitExceeded,
                Admission::NotReady => CheckoutError::NotReady,
                Admission::NotStarted { starts_in_ms } => CheckoutError::NotStarted(starts_in_ms),
                Admission::Ended => CheckoutError::Ended,
                Admission::RateLimited(wait) => CheckoutError::RateLimited(wait),
                Admission::NotOnSale | Admission::Admitted { .. } | Admission::TokenInvalid => {
                    CheckoutError::NotOnSale
                }
            }),
        }
    }

    /// Places an order: replayed for a known Idempotency-Key, else admitted
    /// (using up `token`, when given) and sent. Admission counts it against
    /// `buckets` (the shared rate limits) first, in the same round trip.
    pub async fn place(
        &self,
        new_order: NewOrder,
        key: Option<IdempotencyKey>,
        token: Option<OrderToken>,
        buckets: &[Bucket],
    ) -> Result<Checkedout, CheckoutError> {
        if self.admission.sold_out_locally(new_order.product_id) {
            // The flood is answered from memory; a request with a key first
            // learns whether that key already has an attempt, and replays it.
            let replayable = match &key {
                Some(key) => {
                    self.idempotency
                        .has_attempt(&self.db, new_order.user_id, key)
                        .await?
                }
                None => false,
            };
            if !replayable {
                return Err(CheckoutError::SoldOut);
            }
        }
        let order = new_order.into_message();
        let mut replaced = None;
        if let Some(key) = &key {
            match self
                .idempotency
                .claim_or_find(&self.db, &order, key)
                .await?
            {
                Earlier::None { replaced: earlier } => replaced = earlier,
                Earlier::Order(found) => return Ok(Checkedout::Replayed(found)),
                Earlier::Mismatch => return Err(CheckoutError::IdempotencyKeyReused),
                Earlier::Pending { order_no, tx_no } => {
                    return Ok(Checkedout::ReplayPending { order_no, tx_no });
                }
            }
        }
        let placed = self
            .admit_and_send(
                &order,
                key.as_ref(),
                token.as_ref(),
                replaced.as_ref(),
                buckets,
            )
            .await;
        // A keyed retry of a placed order may carry its first attempt's
        // token, used up by then (or lost with Redis): it gets that order.
        if let (Err(CheckoutError::TokenInvalid), Some(key)) = (&placed, &key)
            && let Some(found) =
                store::find_order_by_idempotency_key(&self.db, order.user_id.get(), key.as_str())
                    .await
                    .map_err(IdempotencyError::from)?
        {
            if let Err(err) = self.idempotency.release(&order, key).await {
                tracing::warn!(%err, "idempotency claim not dropped; it expires");
            }
            return Ok(Checkedout::Replayed(found));
        }
        if let Some(key) = &key {
            let placed_nothing = matches!(placed, Err(_) | Ok(Outcome::Rejected(_)));
            if placed_nothing && let Err(err) = self.idempotency.release(&order, key).await {
                tracing::warn!(%err, "idempotency claim not dropped; it expires");
            }
            if let Ok(Outcome::Rejected(Rejection::DuplicateRequest)) = &placed
                && let Some(found) = store::find_order_by_idempotency_key(
                    &self.db,
                    order.user_id.get(),
                    key.as_str(),
                )
                .await
                .map_err(IdempotencyError::from)?
            {
                return Ok(Checkedout::Replayed(found));
            }
        }
        let outcome = placed?;
        Ok(Checkedout::Placed { order, outcome })
    }

    /// `replaced`: the rolled-back attempt of the same key this order
    /// replaces, whose used-up token is good for it (see
    /// [`crate::admission::AdmissionGate::admit_replacing`]).
    async fn admit_and_send(
        &self,
        order: &OrderCreated,
        key: Option<&IdempotencyKey>,
        token: Option<&OrderToken>,
        replaced: Option<&TxNo>,
        buckets: &[Bucket],
    ) -> Result<Outcome, CheckoutError> {
        match self
            .admission
            .admit_replacing(order, token, replaced, buckets)
            .await?
        {
            Admission::Admitted { .. } => {}
            Admission::SoldOut => return Err(CheckoutError::SoldOut),
            Admission::LimitExceeded => return Err(CheckoutError::LimitExceeded),
            Admission::NotOnSale => return Err(CheckoutError::NotOnSale),
            Admission::NotReady => return Err(CheckoutError::NotReady),
            Admission::NotStarted { starts_in_ms } => {
                return Err(CheckoutError::NotStarted(starts_in_ms));
            }
            Admission::Ended => return Err(CheckoutError::Ended),
            Admission::TokenInvalid => return Err(CheckoutError::TokenInvalid),
            Admission::RateLimited(wait) => return Err(CheckoutError::RateLimited(wait)),
        }
        let key = key.map(|k| k.as_str().to_owned());
        match self.group_commit.place(order, key).await {
            Ok(Outcome::Rejected(why)) => {
                self.give_back(order).await;
                // "Retrying may succeed" (a 503): the retry keeps its token.
                if let (Rejection::Unavailable(_), Some(token)) = (&why, token) {
                    self.restore_token(order, token).await;
                }
                Ok(Outcome::Rejected(why))
            }
            Ok(Outcome::Committed) => {
                self.timeouts.schedule_for(order);
                Ok(Outcome::Committed)
            }
            Ok(Outcome::Pending) => Ok(Outcome::Pending),
            Err(err) => {
                // The local transaction never ran; a half message may still sit
                // on the broker, so settle the tx_no as rolled back first.
                if let Ok(TxOutcome::RolledBack) =
                    order_tx::settle(&self.db, order.tx_no.as_str()).await
                {
                    self.give_back(order).await;
                    // Nothing was placed and the answer says "retry": the
                    // retry's token must still be good (found by the chaos
                    // suite: retries after BROKER_UNAVAILABLE were 403).
                    if let Some(token) = token {
                        self.restore_token(order, token).await;
                    }
                }
                Err(err.into())
            }
        }
    }

    async fn restore_token(&self, order: &OrderCreated, token: &OrderToken) {
        if let Err(err) = self
            .admission
            .restore_token(
                token,
                order.user_id,
                order.product_id,
                &order.tx_no,
                self.order_token_ttl,
            )
            .await
        {
            tracing::warn!(%err, tx_no = %order.tx_no, "order token not restored; the retry needs a new one");
        }
    }

    async fn give_back(&self, order: &OrderCreated) {
        if let Err(err) = self.admission.release(order.product_id, &order.tx_no).await {
            tracing::error!(%err, tx_no = %order.tx_no, "reservation not returned; reconciliation will");
        }
    }
}
