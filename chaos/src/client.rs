//! The calls a buyer's and an admin's client make, as a real client makes
//! them: bearer tokens signed with the stack's key, a timeout, and every
//! failure kept as an answer (a refused connection, a timeout) — never a
//! panic.

use std::time::Duration;

use common::auth::{AuthSettings, Secret, Signer};
use reqwest::Method;
use serde_json::Value;

/// How a request was answered.
#[derive(Debug, Clone)]
pub enum Answer {
    Http {
        status: u16,
        body: Value,
    },
    Timeout,
    /// No connection, or it broke before an answer.
    Transport,
}

impl Answer {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn body(&self) -> &Value {
        match self {
            Self::Http { body, .. } => body,
            _ => &Value::Null,
        }
    }

    pub fn code(&self) -> &str {
        self.body()["code"].as_str().unwrap_or("")
    }

    /// `"201"`, `"409 SOLD_OUT"`, `"transport timeout"`.
    pub fn label(&self) -> String {
        match self {
            Self::Http { status, .. } if self.code().is_empty() => status.to_string(),
            Self::Http { status, .. } => format!("{status} {}", self.code()),
            Self::Timeout => "transport timeout".into(),
            Self::Transport => "transport error".into(),
        }
    }

    pub fn is(&self, wanted: u16) -> bool {
        self.status() == Some(wanted)
    }

    /// A 5xx (documented or not).
    pub fn is_5xx(&self) -> bool {
        self.status().is_some_and(|s| s >= 500)
    }

    /// Worth trying again: no answer, or a 503 (the service said so).
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Timeout | Self::Transport) || self.is(503)
    }
}

/// Who a request is sent as.
#[derive(Debug, Clone, Copy)]
pub enum Who {
    Buyer(i64),
    Admin,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    signer: std::sync::Arc<Signer>,
}

impl Client {
    pub fn new(base: &str, secret: &str, timeout: Duration) -> anyhow::Result<Self> {
        let signer = Signer::from_settings(&AuthSettings {
            hs256_secret: Secret::new(secret.to_owned()),
            ..AuthSettings::default()
        })?;
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .pool_max_idle_per_host(64)
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
            signer: std::sync::Arc::new(signer),
        })
    }

    /// The same client with another timeout.
    pub fn with_timeout(&self, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder().timeout(timeout).build()?,
            ..self.clone()
        })
    }

    pub async fn call(
        &self,
        who: Who,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let token = match who {
            Who::Buyer(user) => self.signer.mint(&user.to_string(), false).token,
            Who::Admin => self.signer.mint("chaos-admin", true).token,
        };
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.text().await {
                    Ok(text) => Answer::Http {
                        status,
                        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
                    },
                    Err(err) if err.is_timeout() => Answer::Timeout,
                    Err(_) => Answer::Transport,
                }
            }
            Err(err) if err.is_timeout() => Answer::Timeout,
            Err(_) => Answer::Transport,
        }
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        self.call(Who::Admin, method, path, body, &[]).await
    }
}
