//! Bearer tokens for the load tool's buyers and its admin calls, minted with
//! the services' HS256 secret: `--auth-secret-file` (default the local
//! stack's `.run/auth.secret`, written by `deploy/up.sh`), or
//! `APP_AUTH__HS256_SECRET` when set. Minted before a timed run, so the
//! client spends no time on them while measuring. Also the one-time order
//! token a buyer asks for before each order.

use std::path::PathBuf;

use clap::Args;
use common::auth::{AuthSettings, Secret, Signer};

#[derive(Debug, Args)]
pub struct AuthArgs {
    /// File holding the services' HS256 token secret.
    #[arg(long, default_value = ".run/auth.secret")]
    pub auth_secret_file: PathBuf,
}

pub struct Tokens {
    signer: Signer,
}

impl AuthArgs {
    pub fn tokens(&self) -> anyhow::Result<Tokens> {
        let secret = match std::env::var("APP_AUTH__HS256_SECRET") {
            Ok(secret) => secret,
            Err(_) => std::fs::read_to_string(&self.auth_secret_file)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "reading the token secret {}: {e} (run deploy/up.sh, or set APP_AUTH__HS256_SECRET)",
                        self.auth_secret_file.display()
                    )
                })?
                .trim()
                .to_owned(),
        };
        let settings = AuthSettings {
            hs256_secret: Secret::new(secret),
            ..AuthSettings::default()
        };
        Ok(Tokens {
            signer: Signer::from_settings(&settings)?,
        })
    }
}

impl Tokens {
    pub fn admin(&self) -> String {
        self.signer.mint("seckill-bench", true).token
    }

    /// Tokens of buyers `first`, `first + 1`, … (`count` of them).
    pub fn buyers(&self, first: usize, count: usize) -> Vec<String> {
        (first..first + count)
            .map(|user| self.signer.mint(&user.to_string(), false).token)
            .collect()
    }
}

/// A one-time order token (`POST /api/sales/{product}/order-token`) for the
/// buyer of `bearer`, or the code it was refused with.
pub async fn order_token(
    http: &reqwest::Client,
    order_url: &str,
    bearer: &str,
    product: i64,
) -> Result<String, String> {
    let response = http
        .post(format!("{order_url}/api/sales/{product}/order-token"))
        .bearer_auth(bearer)
        .send()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    match body["order_token"].as_str() {
        Some(token) if status.is_success() => Ok(token.to_owned()),
        _ => Err(body["code"]
            .as_str()
            .map_or_else(|| status.to_string(), str::to_owned)),
    }
}
