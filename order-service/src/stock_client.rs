//! stock-service's HTTP API as order-service uses it: setting a sale's stock,
//! reading a product's stock with how many order messages it has applied,
//! and paging through the applied messages themselves (for the auditor).
//! Several replicas may be named (`http://a:8092;http://b:8092`): a call that
//! cannot reach one goes to the next, and the one that answered is tried first
//! next time. Every call here is safe to repeat. Each call carries a
//! short-lived admin token minted with order-service's own key (stock
//! writes and the applied/stats queries are for admins only).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::auth::Signer;
use common::domain::ProductId;
use common::stock_log::{AppliedPage, AppliedRow, PAGE_MAX};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum StockClientError {
    #[error("stock-service unreachable: {0}")]
    Unreachable(#[from] reqwest::Error),
    #[error("stock-service answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("stock-service answered something unexpected: {0}")]
    Malformed(String),
}

/// A product's stock in the stock database.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct StockLevel {
    pub product_id: i64,
    pub total_count: i64,
    /// Order messages applied for this product (deducted or insufficient).
    pub applied_orders: i64,
}

pub struct StockClient {
    http: reqwest::Client,
    base_urls: Vec<String>,
    /// The replica that answered last.
    preferred: AtomicUsize,
    /// Mints the service's token for each call.
    signer: Arc<Signer>,
}

/// The subject of order-service's own tokens.
const SERVICE_SUBJECT: &str = "service:order-service";

impl StockClient {
    /// `base_urls`: one URL, or several separated by `;`.
    pub fn new(base_urls: &str, signer: Arc<Signer>) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("HTTP client"),
            base_urls: common::settings::split_addrs(base_urls)
                .into_iter()
                .map(|url| url.trim_end_matches('/').to_owned())
                .collect(),
            preferred: AtomicUsize::new(0),
            signer,
        }
    }

    /// Sends the request `build` makes for a base URL, to each replica in
    /// turn (the last one that answered first) until one can be reached.
    async fn send(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, StockClientError> {
        let first = self.preferred.load(Ordering::Relaxed);
        let count = self.base_urls.len().max(1);
        let mut last_error = None;
        let token = self.signer.mint(SERVICE_SUBJECT, true).token;
        for i in 0..count {
            let index = (first + i) % count;
            let Some(base) = self.base_urls.get(index) else {
                break;
            };
            match build(base).bearer_auth(&token).send().await {
                Ok(response) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(response);
                }
                Err(err) if err.is_connect() || err.is_timeout() => {
                    tracing::warn!(%err, stock_service = %base, "stock-service replica unreachable; trying the next");
                    last_error = Some(err);
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(match last_error {
            Some(err) => err.into(),
            None => StockClientError::Malformed("no stock-service URL configured".into()),
        })
    }

    pub async fn set_stock(
        &self,
        product: ProductId,
        total_count: u32,
    ) -> Result<StockLevel, StockClientError> {
        let response = self
            .send(|base| {
                self.http
                    .put(format!("{base}/api/stock/{product}"))
                    .json(&serde_json::json!({"total_count": total_count}))
            })
            .await?;
        Self::read(response).await
    }

    pub async fn stock(&self, product: ProductId) -> Result<Option<StockLevel>, StockClientError> {
        let response = self
            .send(|base| self.http.get(format!("{base}/api/stock/{product}")))
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Self::read(response).await.map(Some)
    }

    /// Which of `tx_nos` stock-service has applied (asked in chunks of 1,000).
    pub async fn applied(
        &self,
        tx_nos: &[String],
    ) -> Result<std::collections::HashSet<String>, StockClientError> {
        #[derive(Deserialize)]
        struct Applied {
            applied: Vec<String>,
        }
        let mut applied = std::collections::HashSet::new();
        for chunk in tx_nos.chunks(1000) {
            let response = self
                .send(|base| {
                    self.http
                        .post(format!("{base}/api/stock/applied"))
                        .json(&serde_json::json!({ "tx_nos": chunk }))
                })
                .await?;
            applied.extend(Self::read::<Applied>(response).await?.applied);
        }
        Ok(applied)
    }

    /// The messages stock-service applied (its `tx_log`) at or after `since`,
    /// of one product or all, page by page in tx_no order, at most
    /// `max_rows`; `true` with them when there were more.
    #[tracing::instrument(skip(self))]
    pub async fn applied_rows(
        &self,
        since: Option<chrono::DateTime<chrono::Utc>>,
        product: Option<ProductId>,
        max_rows: u64,
    ) -> Result<(Vec<AppliedRow>, bool), StockClientError> {
        let mut rows = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query: Vec<(&str, String)> = vec![("limit", PAGE_MAX.to_string())];
            if let Some(since) = since {
                query.push(("since", since.to_rfc3339()));
            }
            if let Some(product) = product {
                query.push(("product_id", product.to_string()));
            }
            if let Some(after) = &after {
                query.push(("after", after.clone()));
            }
            let response = self
                .send(|base| {
                    self.http
                        .get(format!("{base}/api/stock/tx-log"))
                        .query(&query)
                })
                .await?;
            let page: AppliedPage = Self::read(response).await?;
            rows.extend(page.rows);
            if rows.len() as u64 > max_rows {
                rows.truncate(max_rows as usize);
                return Ok((rows, true));
            }
            match page.next_after {
                Some(next) => after = Some(next),
                None => return Ok((rows, false)),
            }
        }
    }

    /// Every product's stock level, in one call (for reconciliation).
    pub async fn levels(
        &self,
    ) -> Result<std::collections::HashMap<i64, StockLevel>, StockClientError> {
        let products: Vec<StockLevel> =
            serde_json::from_value(self.stats().await?["products"].take())
                .map_err(|e| StockClientError::Malformed(e.to_string()))?;
        Ok(products.into_iter().map(|l| (l.product_id, l)).collect())
    }

    /// stock-service's counters (messages by result, dedupe hits, reports) and
    /// every product's stock, as `GET /api/stock/stats` gives them.
    pub async fn stats(&self) -> Result<serde_json::Value, StockClientError> {
        let response = self
            .send(|base| self.http.get(format!("{base}/api/stock/stats")))
            .await?;
        Self::read(response).await
    }

    async fn read<T: serde::de::DeserializeOwned>(
        response: reqwest::Response,
    ) -> Result<T, StockClientError> {
        let status = response.status();
        if !status.is_success() {
            return Err(StockClientError::Refused {
                status: status.as_u16(),
                body: response.text().await.unwrap_or_default(),
            });
        }
        Ok(response.json().await?)
    }
}
