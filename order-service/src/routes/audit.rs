//! `GET /api/admin/audit?product_id=&since=` (admins): the consistency audit
//! ([`crate::audit`]) as JSON — 200 whatever it found (`clean` says whether
//! it found nothing), 422 naming a bad parameter, 409 while another audit
//! runs on this instance, 503 with a code naming the place that could not be
//! read (`BROKER_UNAVAILABLE` for the broker).
//!
//! `GET /api/admin/broker` (admins): the broker's figures for the dashboard
//! ([`crate::audit::Auditor::broker_glance`]) — 200, or 503
//! `BROKER_UNAVAILABLE` like the audit.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use common::auth::Admin;
use common::domain::InvalidValue;
use common::http::{ApiFailure, Failure};

use crate::audit::{AuditError, AuditScope};
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum AuditApiError {
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

common::impl_response_error!(AuditApiError);

impl ApiFailure for AuditApiError {
    fn failure(&self) -> Failure {
        use StatusCode as S;
        let unavailable = |code, what| {
            Failure::new(
                S::SERVICE_UNAVAILABLE,
                code,
                format!("{what} could not be read; retry"),
            )
            .retry_after(5)
            .warn(self)
        };
        match self {
            Self::Invalid(err) => Failure::invalid(err),
            Self::Audit(AuditError::Busy) => Failure::new(
                S::CONFLICT,
                "AUDIT_RUNNING",
                "an audit is already running on this instance; retry when it is done",
            ),
            Self::Audit(AuditError::TimedOut(secs)) => Failure::new(
                S::SERVICE_UNAVAILABLE,
                "AUDIT_TIMED_OUT",
                format!(
                    "the audit took longer than {secs}s: narrow it with `since` or `product_id`"
                ),
            )
            .warn(self),
            Self::Audit(AuditError::Broker(_)) => unavailable("BROKER_UNAVAILABLE", "the broker"),
            Self::Audit(AuditError::Stock(_)) => {
                unavailable("STOCK_SERVICE_UNAVAILABLE", "stock-service")
            }
            Self::Audit(AuditError::Database(_)) => {
                unavailable("DATABASE_UNAVAILABLE", "the order database")
            }
            Self::Audit(AuditError::Redis(_)) => unavailable("ADMISSION_UNAVAILABLE", "Redis"),
            Self::Audit(AuditError::Reconcile(_)) => {
                unavailable("RECONCILE_UNAVAILABLE", "the reconciliation")
            }
        }
    }
}

/// The query parameters this route knows.
const PARAMETERS: [&str; 2] = ["product_id", "since"];

pub async fn audit(
    _admin: Admin,
    state: web::Data<AppState>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, AuditApiError> {
    if let Some(unknown) = query.keys().find(|k| !PARAMETERS.contains(&k.as_str())) {
        return Err(InvalidValue {
            field: "query",
            reason: format!("unknown parameter {unknown:?}; known: product_id, since"),
        }
        .into());
    }
    let scope = AuditScope::parse(
        query.get("product_id").map(String::as_str),
        query.get("since").map(String::as_str),
        chrono::Utc::now(),
    )?;
    Ok(HttpResponse::Ok().json(state.auditor.audit(scope).await?))
}

pub async fn broker(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AuditApiError> {
    let glance = state
        .auditor
        .broker_glance()
        .await
        .map_err(AuditError::from)?;
    Ok(HttpResponse::Ok().json(&*glance))
}
