//! Direct reads of the services' databases, for assertions.

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, Value,
};

const SERVER: &str = "mysql://root@127.0.0.1:3306";

pub async fn connect(db_name: &str) -> DatabaseConnection {
    Database::connect(format!("{SERVER}/{db_name}"))
        .await
        .unwrap_or_else(|e| panic!("connecting to {db_name}: {e}"))
}

/// A pool of exactly one connection, for session state such as `LOCK TABLES`.
pub async fn connect_session(db_name: &str) -> DatabaseConnection {
    let mut options = ConnectOptions::new(format!("{SERVER}/{db_name}"));
    options
        .max_connections(1)
        .min_connections(1)
        .sqlx_logging(false);
    Database::connect(options)
        .await
        .unwrap_or_else(|e| panic!("connecting to {db_name}: {e}"))
}

/// How many statements starting with `prefix` are running on `db_name` right now.
pub async fn running_statements(observer: &DatabaseConnection, db_name: &str, prefix: &str) -> i64 {
    scalar(
        observer,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = ? AND INFO LIKE CONCAT(?, '%')",
        [db_name.into(), prefix.into()],
    )
    .await
}

/// Runs a query whose first column of the first row is a BIGINT (`COUNT(*)`,
/// `CAST(SUM(..) AS SIGNED)`); NULL reads as 0.
pub async fn scalar(
    db: &DatabaseConnection,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> i64 {
    common::db::scalar(db, sql, values)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e} (CAST sums AS SIGNED)"))
}

/// Runs a statement and returns rows affected.
pub async fn exec(db: &DatabaseConnection, sql: &str) -> u64 {
    db.execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .rows_affected()
}

/// A text column of the first row, if any row.
pub async fn text(
    db: &DatabaseConnection,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Option<String> {
    db.query_one_raw(Statement::from_sql_and_values(
        DbBackend::MySql,
        sql,
        values,
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
    .map(|row| row.try_get_by_index::<String>(0).unwrap())
}

/// The order database of `env`, created and migrated as order-service does
/// at start-up (for tests that drive `order_service::store` directly).
pub async fn migrated_order_db(env: &crate::TestEnv) -> DatabaseConnection {
    common::db::connect_and_migrate(
        &crate::services::order_settings(env, "http://127.0.0.1:1").database,
        order_service::SCHEMA,
    )
    .await
    .expect("order database")
}

/// Waits (up to 30 s) until a statement starting with `prefix` runs
/// (blocked) on the database `db_name`.
pub async fn wait_for_statement(db_name: &str, prefix: &str) {
    let observer = connect("information_schema").await;
    crate::eventually(
        &format!("`{prefix}…` to block"),
        std::time::Duration::from_secs(30),
        || {
            let observer = observer.clone();
            async move { (running_statements(&observer, db_name, prefix).await > 0).then_some(()) }
        },
    )
    .await;
    let _ = observer.close().await;
}

/// A committed order whose message was never sent: its local transaction
/// (tx_log COMMITTED and the NEW order, both `age_secs` old) written into
/// the order database `db_name` as order-service writes it.
pub async fn insert_committed_order(
    db_name: &str,
    user: i64,
    product: i64,
    age_secs: u32,
) -> common::messages::OrderCreated {
    let order = crate::order_message(user, product, 1);
    let order_db = connect(db_name).await;
    exec(
        &order_db,
        &format!(
            "INSERT INTO tx_log (tx_no, outcome, create_time) \
             VALUES ('{}', 'COMMITTED', NOW(3) - INTERVAL {age_secs} SECOND)",
            order.tx_no
        ),
    )
    .await;
    exec(
        &order_db,
        &format!(
            "INSERT INTO orders (order_no, tx_no, user_id, product_id, pay_count, status, create_time) \
             VALUES ('{}', '{}', {user}, {product}, 1, 'NEW', NOW(3) - INTERVAL {age_secs} SECOND)",
            order.order_no, order.tx_no
        ),
    )
    .await;
    let _ = order_db.close().await;
    order
}

/// A row of stock-service's tx_log in the database `db_name`, written
/// straight (as a fault would leave it).
pub async fn insert_stock_row(
    db_name: &str,
    tx_no: &str,
    order_no: &str,
    product: i64,
    count: i64,
    outcome: &str,
) {
    let stock_db = connect(db_name).await;
    exec(
        &stock_db,
        &format!(
            "INSERT INTO tx_log (tx_no, order_no, product_id, count, outcome) \
             VALUES ('{tx_no}', '{order_no}', {product}, {count}, '{outcome}')"
        ),
    )
    .await;
    let _ = stock_db.close().await;
}
