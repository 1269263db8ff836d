//! What the load tool reads of one product's sale from outside the services:
//! committed orders (order DB), applied and deducted orders and the stock
//! left (stock DB), the admission stock (Redis, through order-service), and
//! how long each order waited from its commit to its deduction. The one place
//! these queries live, for the sampler and the invariant checks alike.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::load::{DatabaseArgs, Latencies, scalar};

pub struct SaleProbe {
    http: reqwest::Client,
    sale_url: String,
    product: i64,
    order_db: DatabaseConnection,
    stock_db: DatabaseConnection,
    /// (order DB, stock DB) names, checked to be plain identifiers: the
    /// commit→deduction query joins both on one server.
    names: (String, String),
}

impl SaleProbe {
    pub async fn connect(
        http: &reqwest::Client,
        order_url: &str,
        product: i64,
        databases: &DatabaseArgs,
    ) -> anyhow::Result<Self> {
        let (order_db, stock_db) = databases.connect().await?;
        Ok(Self {
            http: http.clone(),
            sale_url: format!("{order_url}/api/sales/{product}"),
            product,
            order_db,
            stock_db,
            names: (
                identifier(&databases.order_db)?,
                identifier(&databases.stock_db)?,
            ),
        })
    }

    /// Orders of the product in the order DB (every status).
    pub async fn committed(&self) -> anyhow::Result<i64> {
        self.order_count("SELECT COUNT(*) FROM orders WHERE product_id = ?")
            .await
    }

    /// Buyers holding more than one order of the product.
    pub async fn double_holders(&self) -> anyhow::Result<i64> {
        self.order_count(
            "SELECT COUNT(*) FROM (SELECT user_id FROM orders WHERE product_id = ? GROUP BY user_id HAVING COUNT(*) > 1) t",
        )
        .await
    }

    /// Orders stock-service has recorded an outcome for (`tx_log` rows).
    pub async fn applied(&self) -> anyhow::Result<i64> {
        self.stock_count("SELECT COUNT(*) FROM tx_log WHERE product_id = ?")
            .await
    }

    /// Orders whose stock was deducted.
    pub async fn deducted_orders(&self) -> anyhow::Result<i64> {
        self.stock_count(
            "SELECT COUNT(*) FROM tx_log WHERE product_id = ? AND outcome = 'DEDUCTED'",
        )
        .await
    }

    /// Items deducted.
    pub async fn deducted(&self) -> anyhow::Result<i64> {
        self.stock_count(
            "SELECT CAST(COALESCE(SUM(count), 0) AS SIGNED) FROM tx_log WHERE product_id = ? AND outcome = 'DEDUCTED'",
        )
        .await
    }

    /// Stock left in the stock DB.
    pub async fn db_stock(&self) -> anyhow::Result<i64> {
        self.stock_count("SELECT total_count FROM stock WHERE product_id = ?")
            .await
    }

    /// Stock left for admission (Redis), as `GET /api/sales/{product}` shows
    /// it; None when the answer has no stock.
    pub async fn redis_stock(&self) -> anyhow::Result<Option<i64>> {
        let sale: serde_json::Value = self.http.get(&self.sale_url).send().await?.json().await?;
        Ok(sale["stock"].as_i64())
    }

    /// Waits until stock-service has applied every committed order, or
    /// `deadline`; true when it has.
    pub async fn wait_until_applied(&self, deadline: Instant) -> anyhow::Result<bool> {
        let committed = self.committed().await?;
        loop {
            if self.applied().await? >= committed {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            eprintln!("[bench] waiting for stock-service to apply {committed} orders");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// For each deducted order, from its `tx_log` row in the order DB to its
    /// `tx_log` row in the stock DB. Each row is the first write of the local
    /// transaction that commits the order or deducts its stock, stamped by
    /// the same server's clock, so this is commit → deduction to within one
    /// local transaction.
    pub async fn commit_to_deduction(&self) -> anyhow::Result<Latencies> {
        let (order_db, stock_db) = &self.names;
        let sql = format!(
            "SELECT TIMESTAMPDIFF(MICROSECOND, o.create_time, s.create_time) \
             FROM `{order_db}`.tx_log o JOIN `{stock_db}`.tx_log s ON s.tx_no = o.tx_no \
             WHERE s.product_id = ? AND s.outcome = 'DEDUCTED'"
        );
        let rows = self
            .order_db
            .query_all_raw(common::db::stmt(&sql, [self.product.into()]))
            .await?;
        let delays = rows
            .iter()
            .map(|row| row.try_get_by_index::<i64>(0))
            .map(|micros| Ok(Duration::from_micros(u64::try_from(micros?).unwrap_or(0))))
            .collect::<Result<Vec<_>, sea_orm::DbErr>>()?;
        Ok(Latencies::new(delays))
    }

    async fn order_count(&self, sql: &str) -> anyhow::Result<i64> {
        scalar(&self.order_db, sql, self.product).await
    }

    async fn stock_count(&self, sql: &str) -> anyhow::Result<i64> {
        scalar(&self.stock_db, sql, self.product).await
    }
}

/// A database name that can go into SQL between backquotes as it is.
fn identifier(name: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "database name {name:?} must be [A-Za-z0-9_]+"
    );
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_plain_identifiers() {
        assert_eq!(identifier("seckill_order").unwrap(), "seckill_order");
        assert!(identifier("x`; DROP DATABASE y; --").is_err());
        assert!(identifier("").is_err());
    }
}
