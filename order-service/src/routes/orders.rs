//! The order endpoints: place, read, list, pay, cancel — for the signed-in
//! buyer (the token's subject), on their own orders only. Parse, call, respond.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use common::auth::{AuthError, Buyer, Caller};
use common::domain::{InvalidValue, OrderNo, ProductId, UserId};
use common::http::{ApiFailure, Failure, JsonFields};
use common::messages::OrderCreated;
use serde_json::json;

use crate::checkout::{Checkedout, CheckoutError};
use crate::domain::{IdempotencyKey, NewOrder, OrderStatus, OrderToken, PayNo};
use crate::lifecycle::{CancelBy, CancelOutcome, LifecycleError};
use crate::metrics::OrderAnswer;
use crate::order_tx::{Outcome, PublishError, Rejection};
use crate::rate_limit::Bucket;
use crate::state::AppState;
use crate::store;

#[derive(Debug, thiserror::Error)]
pub enum OrderApiError {
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    #[error("order {0} not found")]
    NotFound(String),
    #[error("the order was refused: {0}")]
    Refused(String),
    #[error("the order was not placed: {0}")]
    NotPlaced(String),
    #[error(transparent)]
    Checkout(#[from] CheckoutError),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("rate limited for {0:?}")]
    RateLimited(std::time::Duration),
    #[error("order {order_no} is {status:?}, not payable")]
    NotPayable {
        order_no: String,
        status: OrderStatus,
    },
    #[error("order {order_no} is {status:?}, not cancellable")]
    NotCancellable {
        order_no: String,
        status: OrderStatus,
    },
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("the amount does not match the order's {expected} cents")]
    AmountMismatch { expected: i64 },
}

common::impl_response_error!(OrderApiError);

impl ApiFailure for OrderApiError {
    fn failure(&self) -> Failure {
        use StatusCode as S;
        let unavailable = |code, message: &'static str| {
            Failure::new(S::SERVICE_UNAVAILABLE, code, message).retry_after(1)
        };
        match self {
            Self::Invalid(err) => Failure::invalid(err),
            Self::Auth(err) => err.failure(),
            Self::RateLimited(wait) | Self::Checkout(CheckoutError::RateLimited(wait)) => {
                Failure::new(
                    S::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    "too many order requests; retry after the given seconds",
                )
                .retry_after(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
            Self::NotPayable { order_no, status } => Failure::new(
                S::CONFLICT,
                "ORDER_NOT_PAYABLE",
                format!(
                    "order {order_no} is {} and cannot be paid{}",
                    status.as_db(),
                    match status {
                        OrderStatus::Paid => " again with another payment",
                        OrderStatus::New => ": its payment deadline has passed",
                        _ => "",
                    }
                ),
            ),
            Self::NotCancellable { order_no, status } => Failure::new(
                S::CONFLICT,
                "ORDER_NOT_CANCELLABLE",
                format!(
                    "order {order_no} is {} and cannot be cancelled",
                    status.as_db()
                ),
            ),
            Self::Lifecycle(err) => unavailable(
                "ORDER_NOT_CHANGED",
                "the order could not be changed right now; nothing changed, retry",
            )
            .warn(err),
            Self::NotFound(order_no) => Failure::new(
                S::NOT_FOUND,
                "ORDER_NOT_FOUND",
                format!("no order {order_no}"),
            ),
            Self::Refused(why) => Failure::new(
                S::CONFLICT,
                "ORDER_REJECTED",
                "the order could not be recorded; nothing was reserved",
            )
            .warn(why),
            Self::NotPlaced(why) => unavailable(
                "ORDER_NOT_PLACED",
                "the order was not placed; nothing was reserved, retry",
            )
            .warn(why),
            Self::Checkout(CheckoutError::SoldOut) => {
                Failure::new(S::CONFLICT, "SOLD_OUT", "this product is sold out")
            }
            Self::Checkout(CheckoutError::LimitExceeded) => Failure::new(
                S::CONFLICT,
                "LIMIT_EXCEEDED",
                "you already hold the most orders allowed for this product",
            ),
            Self::Checkout(CheckoutError::IdempotencyKeyReused) => Failure::new(
                S::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was used for a different order (product or count)",
            ),
            Self::Checkout(CheckoutError::Idempotency(err)) => unavailable(
                "IDEMPOTENCY_UNAVAILABLE",
                "the Idempotency-Key could not be checked; nothing was placed, retry",
            )
            .error(err),
            Self::Checkout(CheckoutError::NotOnSale) => Failure::new(
                S::NOT_FOUND,
                "PRODUCT_NOT_ON_SALE",
                "this product is not on sale",
            ),
            Self::Checkout(CheckoutError::NotStarted(ms)) => Failure::new(
                S::CONFLICT,
                "SALE_NOT_STARTED",
                "this sale has not started yet",
            )
            .with("starts_in_ms", *ms),
            Self::Checkout(CheckoutError::TokenInvalid) => Failure::new(
                S::FORBIDDEN,
                "ORDER_TOKEN_INVALID",
                "send a fresh Order-Token from POST /api/sales/{product_id}/order-token: \
                 each is good for one order of its buyer and product, for a short time",
            ),
            Self::Checkout(CheckoutError::Ended) => {
                Failure::new(S::CONFLICT, "SALE_ENDED", "this sale has ended")
            }
            Self::AmountMismatch { expected } => Failure::new(
                S::CONFLICT,
                "AMOUNT_MISMATCH",
                format!("this order costs {expected} cents; pay exactly that (amount_cents)"),
            )
            .with("amount_cents", *expected),
            Self::Checkout(CheckoutError::NotReady) => unavailable(
                "SALE_NOT_READY",
                "the sale is being prepared; retry in a moment",
            ),
            Self::Checkout(CheckoutError::Admission(err)) => unavailable(
                "ADMISSION_UNAVAILABLE",
                "orders cannot be admitted right now; nothing was reserved, retry",
            )
            .error(err),
            Self::Checkout(CheckoutError::Publish(err)) => unavailable(
                "BROKER_UNAVAILABLE",
                "the order was not placed: the message broker is unavailable, retry",
            )
            .error(err),
            Self::Database(err) => unavailable(
                "DATABASE_UNAVAILABLE",
                "the order database is unavailable, retry",
            )
            .error(err),
        }
    }
}

/// `1.2.3.4`, `[::1]:80` or `1.2.3.4:5678` (the peer, when no header was set).
fn parse_client_address(raw: &str) -> Option<std::net::IpAddr> {
    raw.parse::<std::net::SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| raw.parse())
        .ok()
}

fn placed_body(order: &OrderCreated, status: &str) -> serde_json::Value {
    json!({
        "order_no": order.order_no,
        "tx_no": order.tx_no,
        "user_id": order.user_id,
        "product_id": order.product_id,
        "count": order.count,
        "status": status,
        "created_at": order.created_at,
    })
}

/// The user a request acts for: the signed-in buyer. A `user_id` in the body
/// may repeat it (older clients send one); naming anyone else is 403.
fn acting_user(body: &serde_json::Value, buyer: Buyer) -> Result<UserId, OrderApiError> {
    match body.get("user_id") {
        None | Some(serde_json::Value::Null) => Ok(buyer.user),
        Some(_) => {
            let named = UserId::parse(JsonFields::of(body)?.int("user_id")?)?;
            if named == buyer.user {
                Ok(named)
            } else {
                Err(AuthError::Forbidden("user_id names another buyer than the token's").into())
            }
        }
    }
}

/// `POST /api/orders` `{"product_id","count"}` as the signed-in buyer → 201
/// NEW, 202 PENDING, or an error naming why nothing was placed (sold out,
/// limit, not on sale, …).
pub async fn place_order(
    request: actix_web::HttpRequest,
    state: web::Data<AppState>,
    buyer: Buyer,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, OrderApiError> {
    let answer = place(request, &state, buyer, body).await;
    state.metrics.orders.inc(match &answer {
        Ok((answer, _)) => *answer,
        Err(err) => err.answer(),
    });
    answer.map(|(_, response)| response)
}

impl OrderApiError {
    /// The `outcome` label of an order request refused with this error.
    fn answer(&self) -> OrderAnswer {
        match self {
            Self::Checkout(CheckoutError::SoldOut) => OrderAnswer::SoldOut,
            Self::Checkout(CheckoutError::LimitExceeded) => OrderAnswer::LimitExceeded,
            Self::Checkout(CheckoutError::NotOnSale) => OrderAnswer::NotOnSale,
            Self::Checkout(CheckoutError::NotReady) => OrderAnswer::NotReady,
            Self::Checkout(CheckoutError::NotStarted(_)) => OrderAnswer::NotStarted,
            Self::Checkout(CheckoutError::Ended) => OrderAnswer::Ended,
            Self::Checkout(CheckoutError::TokenInvalid) => OrderAnswer::TokenInvalid,
            Self::Refused(_) => OrderAnswer::Rejected,
            Self::RateLimited(_) | Self::Checkout(CheckoutError::RateLimited(_)) => {
                OrderAnswer::RateLimited
            }
            Self::Invalid(_) | Self::Checkout(CheckoutError::IdempotencyKeyReused) => {
                OrderAnswer::Invalid
            }
            Self::Auth(_) => OrderAnswer::Forbidden,
            Self::Checkout(
                CheckoutError::Admission(_)
                | CheckoutError::Idempotency(_)
                | CheckoutError::Publish(_),
            )
            | Self::NotPlaced(_)
            | Self::Database(_)
            | Self::NotFound(_)
            | Self::NotPayable { .. }
            | Self::NotCancellable { .. }
            | Self::AmountMismatch { .. }
            | Self::Lifecycle(_) => OrderAnswer::Unavailable,
        }
    }
}

/// The client's address (from `X-Forwarded-For` behind a trusted gateway).
fn client_address(request: &actix_web::HttpRequest, state: &AppState) -> Option<std::net::IpAddr> {
    if state.rate_limits.trust_forwarded_for {
        request
            .connection_info()
            .realip_remote_addr()
            .and_then(parse_client_address)
    } else {
        request.peer_addr().map(|a| a.ip())
    }
}

/// This instance's per-address limit (checked before anything is parsed).
fn check_address_limit(
    state: &AppState,
    address: Option<std::net::IpAddr>,
) -> Result<(), OrderApiError> {
    match address {
        Some(address) => state
            .rate_limits
            .check_address(address)
            .map_err(OrderApiError::RateLimited),
        None => Ok(()),
    }
}

/// Where a request meets the shared (Redis) rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SharedLimits {
    /// Not at all: it is answered from memory.
    Skipped,
    /// Alone, before anything else reaches Redis (a keyed order, before its
    /// Idempotency-Key is claimed): a round trip of its own.
    Alone,
    /// In the script that decides the request (token or admission), which
    /// counts it first, in the same round trip.
    InScript,
}

/// This instance's per-user limit; then the shared buckets: checked here
/// ([`SharedLimits::Alone`]), or returned for the deciding script to count.
async fn check_user_limits(
    state: &AppState,
    address: Option<std::net::IpAddr>,
    user: UserId,
    shared: SharedLimits,
) -> Result<Vec<Bucket>, OrderApiError> {
    let limits = &state.rate_limits;
    limits
        .check_user(user.get())
        .map_err(OrderApiError::RateLimited)?;
    match shared {
        SharedLimits::Skipped => Ok(Vec::new()),
        SharedLimits::Alone => {
            limits
                .check_shared(user.get(), address)
                .await
                .map_err(OrderApiError::RateLimited)?;
            Ok(Vec::new())
        }
        SharedLimits::InScript => Ok(limits.shared_buckets(user.get(), address)),
    }
}

/// `POST /api/sales/{product_id}/order-token` as a signed-in buyer → 200
/// `{"order_token","expires_in_ms"}`: good for one `POST /api/orders` of this
/// buyer and product (header `Order-Token`), for `orders.order_token_ttl_ms`;
/// only while the sale is started, not ended, not sold out (answered from
/// memory once seen) and the buyer under its limit — else the same 409/404/503
/// an order would get.
pub async fn order_token(
    request: actix_web::HttpRequest,
    state: web::Data<AppState>,
    buyer: Buyer,
    path: web::Path<String>,
) -> Result<HttpResponse, OrderApiError> {
    let answer = issue(&request, &state, buyer, &path).await;
    // A refusal here is the order attempt's answer: counted with the orders.
    state.metrics.orders.inc(match &answer {
        Ok(_) => OrderAnswer::Issued,
        Err(err) => err.answer(),
    });
    answer
}

async fn issue(
    request: &actix_web::HttpRequest,
    state: &AppState,
    buyer: Buyer,
    raw_product: &str,
) -> Result<HttpResponse, OrderApiError> {
    let address = client_address(request, state);
    check_address_limit(state, address)?;
    let product = ProductId::parse_text(raw_product)?;
    // A product seen sold out is answered before the per-user limit: the
    // flood's answer costs less than counting it (each buyer would add a
    // bucket), and "sold out" is true whatever the buyer's rate.
    if state.checkout.admission.sold_out_locally(product) {
        return Err(CheckoutError::SoldOut.into());
    }
    let buckets = check_user_limits(state, address, buyer.user, SharedLimits::InScript).await?;
    let token = state
        .checkout
        .issue_token(buyer.user, product, &buckets)
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "order_token": token.as_str(),
        "expires_in_ms": state.checkout.order_token_ttl.as_millis() as u64,
    })))
}

async fn place(
    request: actix_web::HttpRequest,
    state: &web::Data<AppState>,
    buyer: Buyer,
    body: web::Json<serde_json::Value>,
) -> Result<(OrderAnswer, HttpResponse), OrderApiError> {
    let address = client_address(&request, state);
    check_address_limit(state, address)?;
    let user = acting_user(&body, buyer)?;
    let order = NewOrder::parse(&body, state.rules.max_count_per_order, user)?;
    let key = match request.headers().get("Idempotency-Key") {
        None => None,
        Some(raw) => Some(IdempotencyKey::parse(raw.to_str().unwrap_or_default())?),
    };
    let from_memory = state.checkout.answers_from_memory(&order, key.as_ref());
    let shared = match (from_memory, &key) {
        (true, _) => SharedLimits::Skipped,
        (false, Some(_)) => SharedLimits::Alone,
        (false, None) => SharedLimits::InScript,
    };
    let buckets = check_user_limits(state, address, order.user_id, shared).await?;
    let token = match request.headers().get("Order-Token") {
        Some(raw) => Some(
            OrderToken::parse(raw.to_str().unwrap_or_default())
                .map_err(|_| CheckoutError::TokenInvalid)?,
        ),
        None if state.rules.require_order_token => return Err(CheckoutError::TokenInvalid.into()),
        None => None,
    };
    let placed = if from_memory {
        state.checkout.place(order, key, token, &buckets).await
    } else {
        place_to_the_end(state.clone(), order, key, token, buckets).await
    };
    let (order, outcome) = match placed? {
        Checkedout::Replayed(order) => {
            let response = HttpResponse::Created()
                .insert_header(("Idempotent-Replayed", "true"))
                .json(order);
            return Ok((OrderAnswer::Replayed, response));
        }
        Checkedout::ReplayPending { order_no, tx_no } => {
            let response = HttpResponse::Accepted()
                .insert_header(("Idempotent-Replayed", "true"))
                .json(json!({"order_no": order_no, "tx_no": tx_no, "status": "PENDING"}));
            return Ok((OrderAnswer::Replayed, response));
        }
        Checkedout::Placed { order, outcome } => (order, outcome),
    };
    match outcome {
        Outcome::Committed => Ok((
            OrderAnswer::Created,
            HttpResponse::Created().json(placed_body(&order, OrderStatus::New.as_db())),
        )),
        Outcome::Pending => Ok((
            OrderAnswer::Pending,
            HttpResponse::Accepted().json(placed_body(&order, "PENDING")),
        )),
        Outcome::Rejected(Rejection::Refused(why)) => Err(OrderApiError::Refused(why)),
        Outcome::Rejected(Rejection::Unavailable(why)) => Err(OrderApiError::NotPlaced(why)),
        Outcome::Rejected(Rejection::DuplicateRequest | Rejection::NotCancellable) => {
            Err(OrderApiError::NotPlaced(
                "an order for this Idempotency-Key exists but could not be read".into(),
            ))
        }
    }
}

/// [`crate::checkout::Checkout::place`] on a task of its own, so it runs to
/// its end when the client goes away: actix drops the handler of a
/// connection reset by its client (a client or load balancer giving up; a
/// plain close lets it run on), and a checkout stopped between two steps (its
/// Idempotency-Key claimed but nothing admitted, or its reservation made but
/// nothing sent) left its key answering `202 PENDING` for a day.
async fn place_to_the_end(
    state: web::Data<AppState>,
    order: NewOrder,
    key: Option<IdempotencyKey>,
    token: Option<OrderToken>,
    buckets: Vec<Bucket>,
) -> Result<Checkedout, CheckoutError> {
    actix_web::rt::spawn(async move { state.checkout.place(order, key, token, &buckets).await })
        .await
        // Only if the checkout panicked: nothing is known of the order.
        .unwrap_or(Err(PublishError::ShutDown.into()))
}

/// `GET /api/orders/{order_no}` → 200 with the order, or 404 `ORDER_NOT_FOUND`
/// (unknown, rolled-back and other buyers' orders alike; an admin sees any).
pub async fn get_order(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, OrderApiError> {
    let order_no = order_no_in(path)?;
    match store::find_order(&state.db, order_no.as_str()).await? {
        Some(order) if UserId::parse(order.user_id).is_ok_and(|u| caller.may_see(u)) => {
            Ok(HttpResponse::Ok().json(state.shown(order)))
        }
        _ => Err(OrderApiError::NotFound(order_no.to_string())),
    }
}

/// The `{order_no}` path segment; a malformed one names no order: 404.
fn order_no_in(path: web::Path<String>) -> Result<OrderNo, OrderApiError> {
    let raw = path.into_inner();
    OrderNo::parse(&raw).map_err(|_| OrderApiError::NotFound(raw))
}

/// `POST /api/orders/{order_no}/pay` `{"pay_no": string, "amount_cents":
/// int}` as its buyer → 200 PAID (again with the same pay_no: 200, nothing
/// changes); 409 AMOUNT_MISMATCH when the amount is not count × unit price
/// (it may be left out only for an order without a price); 409
/// ORDER_NOT_PAYABLE when cancelled, failed or paid with another pay_no; 404
/// when the order is unknown or another user's.
pub async fn pay_order(
    state: web::Data<AppState>,
    buyer: Buyer,
    path: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, OrderApiError> {
    let order_no = order_no_in(path)?;
    let user_id = acting_user(&body, buyer)?;
    let pay_no = match body.get("pay_no") {
        Some(serde_json::Value::String(s)) => PayNo::parse(s)?,
        _ => {
            return Err(InvalidValue {
                field: "pay_no",
                reason: "is required and must be a string".into(),
            }
            .into());
        }
    };
    let amount_cents = match body.get("amount_cents") {
        None | Some(serde_json::Value::Null) => None,
        Some(_) => {
            let cents = JsonFields::of(&body)?.int("amount_cents")?;
            if !(0..=i64::MAX / 2).contains(&cents) {
                return Err(InvalidValue {
                    field: "amount_cents",
                    reason: format!("must be 0 or more, got {cents}"),
                }
                .into());
            }
            Some(cents)
        }
    };
    let paid = store::pay_order(
        &state.db,
        order_no.as_str(),
        user_id.get(),
        pay_no.as_str(),
        amount_cents,
        state.lifecycle.payment_cutoff(),
    )
    .await?;
    match paid {
        store::Payment::Paid(order) => Ok(HttpResponse::Ok().json(state.shown(order))),
        store::Payment::NotPayable(order) => Err(OrderApiError::NotPayable {
            order_no: order.order_no,
            status: order.status,
        }),
        store::Payment::AmountMismatch(order) => Err(OrderApiError::AmountMismatch {
            expected: order.amount_cents.unwrap_or(0),
        }),
        store::Payment::NotFound => Err(OrderApiError::NotFound(order_no.to_string())),
    }
}

/// `POST /api/orders/{order_no}/cancel` as its buyer → 200 CANCELLED
/// (stock and reservation go back); 202 `CANCEL_PENDING` while the broker's
/// check-back decides; 409 ORDER_NOT_CANCELLABLE when not NEW; 404 when the
/// order is unknown or another user's.
pub async fn cancel_order(
    state: web::Data<AppState>,
    buyer: Buyer,
    path: web::Path<String>,
    body: Option<web::Json<serde_json::Value>>,
) -> Result<HttpResponse, OrderApiError> {
    let order_no = order_no_in(path)?;
    let body = body.map_or(serde_json::Value::Null, web::Json::into_inner);
    let user_id = acting_user(&body, buyer)?;
    match state
        .lifecycle
        .cancel(order_no.as_str(), CancelBy::Buyer(user_id))
        .await?
    {
        CancelOutcome::Cancelled(order) => Ok(HttpResponse::Ok().json(state.shown(order))),
        CancelOutcome::Pending(order) => Ok(HttpResponse::Accepted()
            .json(json!({"order_no": order.order_no, "status": "CANCEL_PENDING"}))),
        CancelOutcome::NotCancellable(order) => Err(OrderApiError::NotCancellable {
            order_no: order.order_no,
            status: order.status,
        }),
        CancelOutcome::NotFound => Err(OrderApiError::NotFound(order_no.to_string())),
    }
}

/// `GET /api/orders?page=1&page_size=20` → the signed-in buyer's orders,
/// newest first (`user_id=` may repeat the buyer; an admin names any user).
pub async fn list_orders(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, OrderApiError> {
    let number = |field: &'static str, default: Option<i64>| -> Result<i64, InvalidValue> {
        match query.get(field) {
            None => default.ok_or(InvalidValue {
                field,
                reason: "is required".into(),
            }),
            Some(raw) => raw.parse::<i64>().map_err(|_| InvalidValue {
                field,
                reason: format!("must be an integer, got {raw:?}"),
            }),
        }
    };
    let user_id = match (query.get("user_id"), caller.buyer()) {
        (None, Ok(me)) => me,
        (None, Err(_)) => UserId::parse(number("user_id", None)?)?,
        (Some(_), _) => UserId::parse(number("user_id", None)?)?,
    };
    if !caller.may_see(user_id) {
        return Err(AuthError::Forbidden("these are another buyer's orders").into());
    }
    let page = number("page", Some(1))?;
    let page_size = number("page_size", Some(20))?;
    if !(1..=1_000_000).contains(&page) {
        return Err(InvalidValue {
            field: "page",
            reason: format!("must be 1 or more, got {page}"),
        }
        .into());
    }
    if !(1..=100).contains(&page_size) {
        return Err(InvalidValue {
            field: "page_size",
            reason: format!("must be 1 to 100, got {page_size}"),
        }
        .into());
    }
    let (orders, total) =
        store::orders_of_user(&state.db, user_id.get(), page as u32, page_size as u32).await?;
    let orders: Vec<_> = orders.into_iter().map(|o| state.shown(o)).collect();
    Ok(HttpResponse::Ok().json(json!({
        "user_id": user_id, "page": page, "page_size": page_size, "total": total, "orders": orders,
    })))
}
