//! HTTP pieces both services share: the `{code, message}` error body, JSON
//! extractor errors mapped to 4xx, field-by-field parsing of request bodies,
//! and the `/healthz` + `/readyz` probes.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, error, web};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::InvalidValue;

/// The body of every error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub code: &'a str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
}

pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        code,
        message: message.into(),
        field: None,
    })
}

/// How one error answers over HTTP — status, code, message, `Retry-After`,
/// and what to log — written once per error variant, in one `match`
/// ([`ApiFailure::failure`]); [`Failure::respond`] turns it into the answer
/// and writes the log line, so status and body can never disagree.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: std::borrow::Cow<'static, str>,
    /// The field a 422 names.
    pub field: Option<&'static str>,
    /// Seconds for `Retry-After` (a 429 or a 503 worth retrying).
    pub retry_after: Option<u64>,
    /// An internal cause worth a log line (never shown to the client).
    pub log: Option<(tracing::Level, String)>,
    /// One more figure in the body (e.g. `starts_in_ms`).
    pub extra: Option<(&'static str, i64)>,
}

impl Failure {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            log: None,
            extra: None,
        }
    }

    /// Adds `"name": value` to the body.
    pub fn with(mut self, name: &'static str, value: i64) -> Self {
        self.extra = Some((name, value));
        self
    }

    /// 422 `INVALID_FIELD` naming the field.
    pub fn invalid(err: &InvalidValue) -> Self {
        Self {
            field: Some(err.field),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "INVALID_FIELD",
                err.to_string(),
            )
        }
    }

    /// Adds `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Logs `cause` at WARN when answered.
    pub fn warn(mut self, cause: impl std::fmt::Display) -> Self {
        self.log = Some((tracing::Level::WARN, cause.to_string()));
        self
    }

    /// Logs `cause` at ERROR when answered.
    pub fn error(mut self, cause: impl std::fmt::Display) -> Self {
        self.log = Some((tracing::Level::ERROR, cause.to_string()));
        self
    }

    /// The answer, after the log line (if any).
    pub fn respond(self) -> HttpResponse {
        match &self.log {
            Some((level, cause)) if *level == tracing::Level::ERROR => {
                tracing::error!(code = self.code, %cause, "request failed")
            }
            Some((_, cause)) => tracing::warn!(code = self.code, %cause, "request failed"),
            None => {}
        }
        let mut body = serde_json::to_value(ErrorBody {
            code: self.code,
            message: self.message.into_owned(),
            field: self.field,
        })
        .unwrap_or_default();
        if let Some((name, value)) = self.extra {
            body[name] = value.into();
        }
        let mut response = HttpResponse::build(self.status).json(body);
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(secs.max(1)),
            );
        }
        response
    }
}

/// An error type that knows its HTTP answer; implement [`ResponseError`]
/// through it with [`impl_response_error!`](crate::impl_response_error).
pub trait ApiFailure {
    fn failure(&self) -> Failure;
}

/// `impl ResponseError` for an [`ApiFailure`]: status and body from the one table.
#[macro_export]
macro_rules! impl_response_error {
    ($error:ty) => {
        impl actix_web::ResponseError for $error {
            fn status_code(&self) -> actix_web::http::StatusCode {
                $crate::http::ApiFailure::failure(self).status
            }

            fn error_response(&self) -> actix_web::HttpResponse {
                $crate::http::ApiFailure::failure(self).respond()
            }
        }
    };
}

/// 422 naming the field that was refused.
pub fn invalid_field(err: &InvalidValue) -> HttpResponse {
    HttpResponse::UnprocessableEntity().json(ErrorBody {
        code: "INVALID_FIELD",
        message: err.to_string(),
        field: Some(err.field),
    })
}

/// JSON extractor settings: body limit and JSON errors for malformed bodies.
pub fn json_config(limit_bytes: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit_bytes)
        .error_handler(|err, _req| {
            let response = match &err {
                error::JsonPayloadError::ContentType => error_response(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UNSUPPORTED_MEDIA_TYPE",
                    "send the body as application/json",
                ),
                error::JsonPayloadError::Overflow { limit }
                | error::JsonPayloadError::OverflowKnownLength { limit, .. } => error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    format!("the body may be at most {limit} bytes"),
                ),
                other => error_response(
                    StatusCode::BAD_REQUEST,
                    "INVALID_JSON",
                    format!("the body is not valid JSON: {other}"),
                ),
            };
            error::InternalError::from_response(err, response).into()
        })
}

/// Path segments that fail to parse become a 404 naming the segment.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| {
        let response = error_response(
            StatusCode::NOT_FOUND,
            "INVALID_PATH",
            format!("no such resource: {err}"),
        );
        error::InternalError::from_response(err, response).into()
    })
}

/// Unknown routes answer JSON too.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    error_response(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("no route for {} {}", req.method(), req.path()),
    )
}

/// A JSON object body, seen field by field so every error can name its field.
pub struct JsonFields<'a>(&'a Map<String, Value>);

impl<'a> JsonFields<'a> {
    pub fn of(body: &'a Value) -> Result<Self, InvalidValue> {
        body.as_object().map(Self).ok_or(InvalidValue {
            field: "body",
            reason: "must be a JSON object".into(),
        })
    }

    /// A required integer field.
    pub fn int(&self, field: &'static str) -> Result<i64, InvalidValue> {
        match self.0.get(field) {
            None | Some(Value::Null) => Err(InvalidValue {
                field,
                reason: "is required".into(),
            }),
            Some(Value::Number(n)) => n.as_i64().ok_or(InvalidValue {
                field,
                reason: format!("must be an integer, got {n}"),
            }),
            Some(other) => Err(InvalidValue {
                field,
                reason: format!("must be an integer, got {other}"),
            }),
        }
    }
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// One dependency's readiness, as `/readyz` reports it.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the check saw in detail (e.g. each broker's reachability).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl Check {
    pub fn from_result<E: std::fmt::Display>(name: &'static str, result: Result<(), E>) -> Self {
        match result {
            Ok(()) => Self {
                name,
                ok: true,
                error: None,
                detail: None,
            },
            Err(e) => Self {
                name,
                ok: false,
                error: Some(e.to_string()),
                detail: None,
            },
        }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// 200 when every check passed, 503 otherwise; the body lists them all.
pub fn readiness_response(checks: Vec<Check>) -> HttpResponse {
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(status).json(serde_json::json!({"ready": ready, "checks": checks}))
}

/// How long one readiness check may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `probe` with [`PROBE_TIMEOUT`].
pub async fn probe<F, E>(name: &'static str, probe: F) -> Check
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(result) => Check::from_result(name, result),
        Err(_) => Check::from_result(name, Err("timed out")),
    }
}

/// The per-request span (method, route, status, request id) at DEBUG level:
/// at INFO, formatting its fields for every request of a sold-out flood cost
/// a third of the throughput. Lines of an order's path carry their own INFO
/// spans with `tx_no` and `order_no`; set `log.level=debug` to see requests too.
/// Below DEBUG the middleware is left out altogether (see [`start_server`]):
/// `root_span!` works its fields out before it knows the span is off.
pub struct QuietRootSpan;

impl tracing_actix_web::RootSpanBuilder for QuietRootSpan {
    fn on_request_start(request: &actix_web::dev::ServiceRequest) -> tracing::Span {
        tracing_actix_web::root_span!(level = tracing::Level::DEBUG, request)
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        span: tracing::Span,
        outcome: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
        tracing_actix_web::DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// Starts an HTTP server on `tcp` with the shared middleware (request span,
/// JSON errors for bodies, paths and unknown routes) around `routes`. It does
/// not watch signals itself: [`serve_until`] stops it.
pub fn start_server<F>(
    tcp: std::net::TcpListener,
    routes: F,
    shutdown_timeout_secs: u64,
) -> std::io::Result<actix_web::dev::Server>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    // The request spans only when they are logged: tracing-actix-web's
    // `root_span!` looks up the matched route again, parses the connection
    // info and makes a request id for every request before it creates the
    // span, enabled or not: a sold-out flood paid that on every request.
    let request_spans = tracing::enabled!(tracing::Level::DEBUG);
    Ok(actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(actix_web::middleware::Condition::new(
                request_spans,
                tracing_actix_web::TracingLogger::<QuietRootSpan>::new(),
            ))
            .app_data(json_config(16 * 1024))
            .app_data(path_config())
            .configure(routes.clone())
            .default_service(web::to(not_found))
    })
    .listen(tcp)?
    .disable_signals()
    .shutdown_timeout(shutdown_timeout_secs)
    .run())
}

/// Serves until the server fails or `shutdown` completes; then stops it
/// gracefully, letting in-flight requests finish.
pub async fn serve_until(
    server: actix_web::dev::Server,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let handle = server.handle();
    let mut running = tokio::spawn(server);
    tokio::select! {
        result = &mut running => {
            result.context("HTTP server task")?.context("HTTP server")?;
        }
        () = shutdown => {
            handle.stop(true).await;
            let _ = tokio::time::timeout(Duration::from_secs(60), running).await;
        }
    }
    Ok(())
}

/// Binds `host:port` (port 0 picks a free one) and returns the listener and its port.
pub fn bind(host: &str, port: u16) -> anyhow::Result<(std::net::TcpListener, u16)> {
    use anyhow::Context;
    let tcp = std::net::TcpListener::bind((host, port))
        .with_context(|| format!("binding {host}:{port}"))?;
    let port = tcp.local_addr()?.port();
    Ok((tcp, port))
}
