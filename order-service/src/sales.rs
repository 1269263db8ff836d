//! Sales as a service: opening one (its stock in stock-service, its row in
//! the order DB, its admission state in Redis — all three, or an error to
//! retry), reading them, and rebuilding / reconciling the admission state.
//! Routes, the batch runner and the dashboard call it; it calls the store,
//! the admission gate and the stock client.

use std::sync::Arc;
use std::time::Duration;

use common::domain::ProductId;
use redis::RedisError;
use sea_orm::{DatabaseConnection, DbErr};

use crate::admission::AdmissionGate;
use crate::admission::rebuild::{self, RebuildError, Scope};
use crate::admission::reconcile::{self, Report};
use crate::domain::{SaleRecord, SaleTerms};
use crate::stock_client::{StockClient, StockClientError};
use crate::store;

#[derive(Debug, thiserror::Error)]
pub enum SaleError {
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
    #[error(transparent)]
    Stock(#[from] StockClientError),
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("database: {0}")]
    Database(#[from] DbErr),
}

/// Redis's view of one sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaleView {
    pub stock: i64,
    pub per_user_limit: i64,
    pub reserved_orders: i64,
}

pub struct Sales {
    admission: Arc<AdmissionGate>,
    db: DatabaseConnection,
    stock: Arc<StockClient>,
    quiet_timeout: Duration,
    unapplied_after: Duration,
}

impl Sales {
    pub fn new(
        admission: Arc<AdmissionGate>,
        db: DatabaseConnection,
        stock: Arc<StockClient>,
        quiet_timeout: Duration,
        unapplied_after: Duration,
    ) -> Self {
        Self {
            admission,
            db,
            stock,
            quiet_timeout,
            unapplied_after,
        }
    }

    /// Puts `product` on sale on `terms` (stock, per-user limit, product,
    /// prices, window). Repeating it is safe; do it while the product's
    /// pipeline is quiet.
    pub async fn open(&self, product: ProductId, terms: &SaleTerms) -> Result<(), SaleError> {
        if !self.admission.is_ready().await? {
            // Seeds the state; a sale that cannot be rebuilt stays closed on
            // its own and does not stop this one from opening.
            match self.rebuild(Scope::Closed).await {
                Ok(_) | Err(SaleError::Rebuild(RebuildError::Blocked(_))) => {}
                Err(err) => return Err(err),
            }
        }
        self.stock.set_stock(product, terms.stock).await?;
        store::record_sale(&self.db, product, terms).await?;
        self.admission
            .open_sale(product, terms.stock, terms.per_user_limit, terms.window)
            .await?;
        tracing::info!(%product, stock = terms.stock, limit = terms.per_user_limit, "sale opened");
        Ok(())
    }

    /// Redis's view of one sale; `None` when it is not on sale.
    pub async fn view(&self, product: ProductId) -> Result<Option<SaleView>, SaleError> {
        Ok(self.admission.sale_view(product).await?.map(
            |(stock, per_user_limit, reserved_orders)| SaleView {
                stock,
                per_user_limit,
                reserved_orders,
            },
        ))
    }

    /// The newest 100 sales as recorded, with Redis's view (sales not in
    /// Redis — being rebuilt — are left out).
    pub async fn list(&self) -> Result<Vec<(SaleRecord, SaleView)>, SaleError> {
        let mut listed = Vec::new();
        for sale in store::newest_sales(&self.db, 100).await? {
            if let Some(view) = self.view(sale.product).await? {
                listed.push((sale, view));
            }
        }
        Ok(listed)
    }

    /// One sale as recorded, with Redis's view; `None` when not on sale.
    pub async fn find(
        &self,
        product: ProductId,
    ) -> Result<Option<(SaleRecord, SaleView)>, SaleError> {
        let Some(view) = self.view(product).await? else {
            return Ok(None);
        };
        Ok(store::find_sale(&self.db, product)
            .await?
            .map(|sale| (sale, view)))
    }

    /// Rebuilds the admission state of the sales in `scope` from the databases.
    pub async fn rebuild(&self, scope: Scope) -> Result<usize, SaleError> {
        Ok(rebuild::rebuild(
            &self.admission,
            &self.db,
            &self.stock,
            self.quiet_timeout,
            scope,
        )
        .await?)
    }

    /// Redis against both databases, with dead letters.
    pub async fn reconcile(&self) -> Result<Report, SaleError> {
        Ok(
            reconcile::reconcile(&self.admission, &self.db, &self.stock, self.unapplied_after)
                .await?,
        )
    }

    /// Rebuilds every sale (a blocked one is named by the report), then reconciles.
    pub async fn repair(&self) -> Result<Report, SaleError> {
        match self.rebuild(Scope::All).await {
            Ok(_) | Err(SaleError::Rebuild(RebuildError::Blocked(_))) => {}
            Err(err) => return Err(err),
        }
        self.reconcile().await
    }

    /// Waits until stock-service applied every committed message of the
    /// product; the then-final stock.
    pub async fn wait_until_applied(
        &self,
        product: ProductId,
        timeout: Duration,
    ) -> Result<i64, SaleError> {
        Ok(
            rebuild::wait_until_applied(&self.db, &self.stock, product, timeout)
                .await?
                .0,
        )
    }

    /// stock-service's own counters (for the dashboard page).
    pub async fn stock_service_stats(&self) -> Result<serde_json::Value, SaleError> {
        Ok(self.stock.stats().await?)
    }
}
