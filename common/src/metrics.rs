//! Prometheus text exposition without a metrics framework: counters the
//! services bump as things happen, plus gauges each `/metrics` scrape reads
//! from the databases and Redis. The dashboard reads the same figures as JSON.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use actix_web::HttpResponse;

/// The values of one metric label, as an enum: a typo does not compile.
/// Declare one with [`metric_label!`](crate::metric_label).
pub trait Label: Copy + 'static {
    /// Every value, in the order they are rendered.
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;
    /// This value's position in [`Label::ALL`].
    fn index(self) -> usize;
}

/// Declares a label enum: `metric_label!(pub enum Answer { Commit = "commit", … })`.
#[macro_export]
macro_rules! metric_label {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name { $($variant),+ }

        impl $crate::metrics::Label for $name {
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

/// A counter with one label whose values are the variants of `L`.
pub struct LabeledCounter<L: Label> {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    counts: Box<[AtomicU64]>,
    _values: std::marker::PhantomData<L>,
}

impl<L: Label> LabeledCounter<L> {
    pub fn new(name: &'static str, help: &'static str, label: &'static str) -> Self {
        Self {
            name,
            help,
            label,
            counts: L::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            _values: std::marker::PhantomData,
        }
    }

    pub fn inc(&self, value: L) {
        self.add(value, 1);
    }

    pub fn add(&self, value: L, n: u64) {
        self.counts[value.index()].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, value: L) -> u64 {
        self.counts[value.index()].load(Ordering::Relaxed)
    }

    /// `{value: count}` for the dashboard.
    pub fn to_json(&self) -> serde_json::Value {
        L::ALL
            .iter()
            .map(|v| (v.as_str().to_owned(), serde_json::Value::from(self.get(*v))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    pub fn render(&self, out: &mut Exposition) {
        out.family(self.name, self.help, "counter");
        for value in L::ALL {
            out.sample(
                self.name,
                &[(self.label, value.as_str())],
                self.get(*value) as f64,
            );
        }
    }
}

/// A counter whose label values are only known at run time (e.g. broker
/// names learnt from the name server).
pub struct DynamicCounter {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    counts: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl DynamicCounter {
    pub fn new(name: &'static str, help: &'static str, label: &'static str) -> Self {
        Self {
            name,
            help,
            label,
            counts: Default::default(),
        }
    }

    pub fn inc(&self, value: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(value.to_owned()).or_default() += 1;
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        self.counts
            .lock()
            .map(|counts| serde_json::json!(*counts))
            .unwrap_or_default()
    }

    pub fn render(&self, out: &mut Exposition) {
        out.family(self.name, self.help, "counter");
        if let Ok(counts) = self.counts.lock() {
            for (value, count) in counts.iter() {
                out.sample(self.name, &[(self.label, value)], *count as f64);
            }
        }
    }
}

/// A gauge moved up and down as work starts and ends.
pub struct Gauge {
    name: &'static str,
    help: &'static str,
    value: AtomicI64,
}

impl Gauge {
    pub fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            value: AtomicI64::new(0),
        }
    }

    /// Counts one unit of work in progress until the guard is dropped.
    pub fn track(&self) -> GaugeGuard<'_> {
        self.value.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(self)
    }

    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }

    pub fn render(&self, out: &mut Exposition) {
        out.family(self.name, self.help, "gauge");
        out.sample(self.name, &[], self.get() as f64);
    }
}

pub struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.value.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A Prometheus text exposition being written.
#[derive(Default)]
pub struct Exposition(String);

impl Exposition {
    pub fn family(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = write!(self.0, "{label}=\"{escaped}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A gauge family read at scrape time.
    pub fn gauge<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'a str, String)>, f64)>,
    ) {
        self.family(name, help, "gauge");
        for (labels, value) in samples {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            self.sample(name, &labels, value);
        }
    }

    pub fn into_response(self) -> HttpResponse {
        HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_the_prometheus_text_format() {
        crate::metric_label!(
            enum Kind {
                A = "a",
                Other = "other",
            }
        );
        let counter = LabeledCounter::<Kind>::new("x_total", "Xs.", "kind");
        counter.inc(Kind::A);
        counter.inc(Kind::A);
        counter.inc(Kind::Other);
        let gauge = Gauge::new("y", "Ys.");
        let guard = gauge.track();
        let mut out = Exposition::default();
        counter.render(&mut out);
        gauge.render(&mut out);
        out.gauge("z", "Zs.", [(vec![("product", "7\"".to_owned())], 3.0)]);
        drop(guard);
        assert_eq!(
            out.as_str(),
            "# HELP x_total Xs.\n# TYPE x_total counter\nx_total{kind=\"a\"} 2\nx_total{kind=\"other\"} 1\n\
             # HELP y Ys.\n# TYPE y gauge\ny 1\n\
             # HELP z Zs.\n# TYPE z gauge\nz{product=\"7\\\"\"} 3\n"
        );
        assert_eq!(gauge.get(), 0);
        assert_eq!(counter.to_json(), serde_json::json!({"a": 2, "other": 1}));
    }
}
