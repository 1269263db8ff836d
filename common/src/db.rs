//! MariaDB access shared by both services: open a pool on the service's own
//! database, creating the database and applying its schema first. Schema files
//! live in `sql/` and are written to be applied any number of times.

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, SqlErr};

use crate::settings::DatabaseSettings;

/// Creates the database when missing, applies `schema` and returns a pool on it.
#[tracing::instrument(skip(settings, schema), fields(db = %settings.name))]
pub async fn connect_and_migrate(
    settings: &DatabaseSettings,
    schema: &str,
) -> Result<DatabaseConnection, DbErr> {
    if !settings
        .name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(DbErr::Custom(format!(
            "database name {:?} must be [A-Za-z0-9_]+",
            settings.name
        )));
    }
    let server = Database::connect(options(&settings.server_url, 1, settings)).await?;
    server
        .execute_unprepared(&format!(
            "CREATE DATABASE IF NOT EXISTS `{}` CHARACTER SET utf8mb4",
            settings.name
        ))
        .await?;
    server.close().await?;

    let pool = Database::connect(options(
        &settings.database_url(),
        settings.max_connections,
        settings,
    ))
    .await?;
    for statement in schema_statements(schema) {
        pool.execute_unprepared(&statement).await?;
    }
    tracing::info!(server = %settings.redacted_server_url(), "database ready");
    Ok(pool)
}

fn options(url: &str, max_connections: u32, settings: &DatabaseSettings) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .connect_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .sqlx_logging(false);
    options
}

/// Splits a schema file into statements: `;` ends a statement, `--` lines are comments.
pub fn schema_statements(schema: &str) -> Vec<String> {
    let without_comments: String = schema
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(str::to_owned)
        .collect()
}

/// True when `err` is a duplicate primary/unique key: a business answer, not a fault.
pub fn is_duplicate_key(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// A MySQL statement with `?` placeholders bound to `values`.
pub fn stmt(sql: &str, values: impl IntoIterator<Item = sea_orm::Value>) -> sea_orm::Statement {
    sea_orm::Statement::from_sql_and_values(sea_orm::DbBackend::MySql, sql, values)
}

/// Runs a query whose first column of the first row is a BIGINT (`COUNT(*)`,
/// `CAST(SUM(..) AS SIGNED)`); no row or NULL reads as 0.
pub async fn scalar(
    db: &impl sea_orm::ConnectionTrait,
    sql: &str,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> Result<i64, sea_orm::DbErr> {
    Ok(db
        .query_one_raw(stmt(sql, values))
        .await?
        .map(|row| row.try_get_by_index::<Option<i64>>(0))
        .transpose()?
        .flatten()
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_files_split_into_statements_without_comments() {
        let schema = "-- a table\nCREATE TABLE a (x INT);\n\n-- b\nCREATE TABLE b (y INT);\n";
        assert_eq!(
            schema_statements(schema),
            vec!["CREATE TABLE a (x INT)", "CREATE TABLE b (y INT)"]
        );
    }
}
