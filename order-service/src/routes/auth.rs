//! `POST /api/auth/dev-token` `{"user_id": int, "admin": bool}` →
//! `{"token","expires_at"}`: a token minted with the service's own key, for
//! local use and tests only — when `auth.dev_tokens` is off (the default, and
//! in the container deployment) the endpoint does not exist (404).

use actix_web::{HttpResponse, web};
use common::domain::{InvalidValue, UserId};
use common::http::{JsonFields, error_response};

use crate::state::AppState;

pub async fn dev_token(
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> HttpResponse {
    if !state.dev_tokens {
        return error_response(
            actix_web::http::StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "dev tokens are off (auth.dev_tokens)",
        );
    }
    let parsed = JsonFields::of(&body).and_then(|fields| {
        let user = UserId::parse(fields.int("user_id")?)?;
        let admin = match body.get("admin") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(admin)) => *admin,
            Some(_) => {
                return Err(InvalidValue {
                    field: "admin",
                    reason: "must be true or false".into(),
                });
            }
        };
        Ok((user, admin))
    });
    match parsed {
        Ok((user, admin)) => {
            HttpResponse::Ok().json(state.signer.mint(&user.get().to_string(), admin))
        }
        Err(err) => common::http::invalid_field(&err),
    }
}
