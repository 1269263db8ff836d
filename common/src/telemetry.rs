//! Tracing set-up. Every line carries the fields of its enclosing spans, so the
//! `tx_no` and `order_no` put on an order's spans appear on each line of its path.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber writing to `sink`. A second call (tests that
/// start several services in one process) keeps the first subscriber.
pub fn init_subscriber<W>(settings: &LogSettings, sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(settings.level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink);
    let _already_installed = match settings.format {
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
