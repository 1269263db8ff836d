//! The sold-out flood's answer, in front of everything else: a token request
//! (`POST /api/sales/{id}/order-token`) for a product this instance saw sold
//! out is answered `409 SOLD_OUT` before routing, authentication and the
//! rate limits. Sold out is public (the sale's view shows it), it is the
//! cheapest answer there is, and the flood after a sell-out is nearly all of
//! a flash sale's requests: routing (a regex per dynamic route), verifying a
//! signed token and the per-address limit cost more than the answer. Every
//! other request goes on unchanged.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};
use common::domain::ProductId;

use crate::checkout::CheckoutError;
use crate::metrics::OrderAnswer;
use crate::routes::orders::OrderApiError;
use crate::state::AppState;

/// The product of an order-token request, if `request` is one.
fn token_request_product(request: &ServiceRequest) -> Option<ProductId> {
    if request.method() != Method::POST {
        return None;
    }
    let id = request
        .path()
        .strip_prefix("/api/sales/")?
        .strip_suffix("/order-token")?;
    ProductId::parse_text(id).ok()
}

/// Answers a sold-out product's token request from memory; passes the rest on.
pub async fn sold_out_gate(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(product) = token_request_product(&request)
        && let Some(state) = request.app_data::<web::Data<AppState>>()
        && state.checkout.admission.sold_out_locally(product)
    {
        state.metrics.orders.inc(OrderAnswer::SoldOut);
        let answer = OrderApiError::from(CheckoutError::SoldOut).error_response();
        return Ok(request.into_response(answer).map_into_right_body());
    }
    Ok(next.call(request).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn only_a_token_request_names_a_product() {
        let product = |method: Method, path: &str| {
            token_request_product(
                &TestRequest::default()
                    .method(method)
                    .uri(path)
                    .to_srv_request(),
            )
            .map(ProductId::get)
        };
        assert_eq!(product(Method::POST, "/api/sales/42/order-token"), Some(42));
        assert_eq!(product(Method::GET, "/api/sales/42/order-token"), None);
        assert_eq!(product(Method::POST, "/api/sales/42"), None);
        assert_eq!(product(Method::POST, "/api/sales/x/order-token"), None);
        assert_eq!(product(Method::POST, "/api/sales/-1/order-token"), None);
        assert_eq!(product(Method::POST, "/api/orders"), None);
        assert_eq!(product(Method::POST, "/api/sales//order-token"), None);
    }
}
