//! Bearer tokens for the load tool's buyers and its admin calls, minted with
//! the services' HS256 secret: `--auth-secret-file` (default the local
//! stack's `.run/auth.secret`, written by `deploy/up.sh`), or
//! `APP_AUTH__HS256_SECRET` when set. Minted before a timed run, so the
//! client spends no time on them while measuring.

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
