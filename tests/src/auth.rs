//! Tokens for the tests. Every service a test starts checks tokens with the
//! same HS256 secret (`SECKILL_AUTH_SECRET`, the cluster's, when set — else a
//! fixed test secret), so the harness can sign in as anyone:
//! [`Caller::of_request`] picks who a request is from the way a real client
//! would be signed in — the buyer a body or query names by `user_id` (buyer 1
//! for an order request naming nobody), else an admin.

use std::sync::OnceLock;

use common::auth::{AuthSettings, Secret, Signer};
use serde_json::Value;

/// The secret of services started by the tests (never used outside them).
const TEST_SECRET: &str = "seckill-tests-only-hs256-secret-0123456789";

/// The secret the services under test check tokens with.
pub fn secret() -> String {
    std::env::var("SECKILL_AUTH_SECRET").unwrap_or_else(|_| TEST_SECRET.to_owned())
}

/// The auth settings of services the tests start (dev tokens on).
pub fn settings() -> AuthSettings {
    AuthSettings {
        hs256_secret: Secret::new(secret()),
        dev_tokens: true,
        ..AuthSettings::default()
    }
}

fn signer() -> &'static Signer {
    static SIGNER: OnceLock<Signer> = OnceLock::new();
    SIGNER.get_or_init(|| Signer::from_settings(&settings()).expect("test signer"))
}

/// Who a test request is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Buyer(i64),
    Admin,
    Anonymous,
}

impl Caller {
    /// The buyer a request names (`user_id` in the JSON body or the query);
    /// a request naming a malformed user id is sent by buyer 1 (and refused
    /// for its `user_id`), and so is a `POST /api/orders…` naming nobody;
    /// any other request naming nobody by an admin.
    pub fn of_request(method: &reqwest::Method, path: &str, body: Option<&Value>) -> Self {
        let from_body = body.and_then(|b| b.get("user_id"));
        let from_query = path
            .split_once('?')
            .and_then(|(_, query)| query.split('&').find_map(|kv| kv.strip_prefix("user_id=")));
        match (from_body, from_query) {
            (Some(named), _) => Self::Buyer(named.as_i64().filter(|n| *n > 0).unwrap_or(1)),
            (None, Some(named)) => Self::Buyer(named.parse().ok().filter(|n| *n > 0).unwrap_or(1)),
            (None, None) if method == reqwest::Method::POST && path.starts_with("/api/orders") => {
                Self::Buyer(1)
            }
            (None, None) => Self::Admin,
        }
    }

    /// The bearer token, or none for an anonymous caller.
    pub fn token(self) -> Option<String> {
        match self {
            Self::Buyer(user) => Some(buyer_token(user)),
            Self::Admin => Some(admin_token()),
            Self::Anonymous => None,
        }
    }
}

pub fn buyer_token(user: i64) -> String {
    signer().mint(&user.to_string(), false).token
}

pub fn admin_token() -> String {
    signer().mint("test-admin", true).token
}

/// An order token of buyer `user` for `product` from the order-service at
/// `base_url` (for tests that send their own order requests); panics when
/// it is refused.
pub async fn order_token(base_url: &str, user: i64, product: i64) -> String {
    let response = reqwest::Client::new()
        .post(format!("{base_url}/api/sales/{product}/order-token"))
        .bearer_auth(buyer_token(user))
        .send()
        .await
        .expect("order-token request");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, reqwest::StatusCode::OK, "order token: {body}");
    body["order_token"]
        .as_str()
        .expect("order_token")
        .to_owned()
}
