//! A sale over time: a sampler that runs beside a burst and every 250 ms
//! records the answers so far (by code), the committed orders, the applied
//! orders and the stock left in the stock DB and in Redis; it goes on after
//! the burst until stock-service has caught up. Then the chart of those
//! samples: requests/s by answer, committed orders/s, stock left.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::plot::{Chart, Line, Marker, Panel};
use crate::probe::SaleProbe;

pub const INTERVAL: Duration = Duration::from_millis(250);
/// How long the sampler waits after the burst for the deductions to catch up.
pub const CATCH_UP: Duration = Duration::from_secs(30);

/// Answers so far by code: the burst counts each answer as it arrives, the
/// sampler reads them.
#[derive(Debug, Default)]
pub struct AnswerCounts(Mutex<BTreeMap<String, u64>>);

impl AnswerCounts {
    pub fn add(&self, answer: &str) {
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match counts.get_mut(answer) {
            Some(n) => *n += 1,
            None => {
                counts.insert(answer.to_owned(), 1);
            }
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// The sale at one moment; every count is cumulative.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Milliseconds since the sampler started (with the burst).
    pub t_ms: u64,
    pub answers: BTreeMap<String, u64>,
    /// Orders of the product in the order DB.
    pub committed: i64,
    /// Orders stock-service has applied.
    pub applied: i64,
    pub stock_db: i64,
    /// None when order-service did not say.
    pub stock_redis: Option<i64>,
}

impl Sample {
    fn seconds(&self) -> f64 {
        self.t_ms as f64 / 1e3
    }
}

/// Samples every [`INTERVAL`] from now until `burst_over` is set and then
/// until stock-service has applied every committed order, or [`CATCH_UP`]
/// has passed. A sample that cannot be read is skipped with a warning: a slow
/// database must not end the run.
pub async fn sample(
    probe: &SaleProbe,
    counts: &AnswerCounts,
    burst_over: &AtomicBool,
) -> Vec<Sample> {
    let started = Instant::now();
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    let mut over_since: Option<Instant> = None;
    loop {
        ticks.tick().await;
        // Read before sampling, so the last sample has every answer.
        let over = burst_over.load(Ordering::Acquire);
        let caught_up = match read(probe, counts, started).await {
            Ok(sample) => {
                let caught_up = sample.applied >= sample.committed;
                samples.push(sample);
                caught_up
            }
            Err(err) => {
                eprintln!("[bench] sample skipped: {err:#}");
                false
            }
        };
        if over {
            let since = *over_since.get_or_insert_with(Instant::now);
            if caught_up || since.elapsed() >= CATCH_UP {
                return samples;
            }
        }
    }
}

async fn read(
    probe: &SaleProbe,
    counts: &AnswerCounts,
    started: Instant,
) -> anyhow::Result<Sample> {
    let t_ms = started.elapsed().as_millis() as u64;
    let answers = counts.snapshot();
    let (committed, applied, stock_db, stock_redis) = tokio::try_join!(
        probe.committed(),
        probe.applied(),
        probe.db_stock(),
        probe.redis_stock()
    )?;
    Ok(Sample {
        t_ms,
        answers,
        committed,
        applied,
        stock_db,
        stock_redis,
    })
}

/// Per-second rates from cumulative (seconds, count) points: each interval's
/// increase over its length, placed at the interval's end.
pub fn rates(cumulative: &[(f64, f64)]) -> Vec<(f64, f64)> {
    cumulative
        .windows(2)
        .filter(|pair| pair[1].0 > pair[0].0)
        .map(|pair| (pair[1].0, (pair[1].1 - pair[0].1) / (pair[1].0 - pair[0].0)))
        .collect()
}

/// The three panels of a sale: answers/s by code, orders committed and
/// applied per second, stock left in the stock DB and in Redis.
pub fn chart(title: String, subtitle: String, samples: &[Sample], markers: Vec<Marker>) -> Chart {
    Chart {
        title,
        subtitle,
        x_label: "seconds since the burst began".to_owned(),
        panels: vec![
            answers_panel(samples),
            orders_panel(samples),
            stock_panel(samples),
        ],
        markers,
    }
}

fn answers_panel(samples: &[Sample]) -> Panel {
    let codes: std::collections::BTreeSet<&String> = samples
        .iter()
        .flat_map(|sample| sample.answers.keys())
        .collect();
    Panel {
        title: "Requests answered per second, by answer".to_owned(),
        y_label: "answers/s".to_owned(),
        lines: codes
            .into_iter()
            .map(|code| {
                rate_line(code, samples, |sample| {
                    sample.answers.get(code).copied().unwrap_or(0) as f64
                })
            })
            .collect(),
    }
}

fn orders_panel(samples: &[Sample]) -> Panel {
    Panel {
        title: "Orders per second: committed (order DB), stock deducted (stock DB)".to_owned(),
        y_label: "orders/s".to_owned(),
        lines: vec![
            rate_line("committed", samples, |sample| sample.committed as f64),
            rate_line("applied by stock-service", samples, |sample| {
                sample.applied as f64
            }),
        ],
    }
}

fn stock_panel(samples: &[Sample]) -> Panel {
    let stock_db = samples
        .iter()
        .map(|sample| (sample.seconds(), sample.stock_db as f64))
        .collect();
    let stock_redis = samples
        .iter()
        .filter_map(|sample| Some((sample.seconds(), sample.stock_redis? as f64)))
        .collect();
    Panel {
        title: "Stock left".to_owned(),
        y_label: "items".to_owned(),
        lines: vec![
            Line {
                name: "stock DB".to_owned(),
                points: stock_db,
            },
            Line {
                name: "Redis (admission)".to_owned(),
                points: stock_redis,
            },
        ],
    }
}

fn rate_line(name: &str, samples: &[Sample], count: impl Fn(&Sample) -> f64) -> Line {
    let cumulative: Vec<(f64, f64)> = samples
        .iter()
        .map(|sample| (sample.seconds(), count(sample)))
        .collect();
    Line {
        name: name.to_owned(),
        points: rates(&cumulative),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A sale of 3 items over 1 s: 3 CREATED and 5 SOLD_OUT answers, the
    /// deductions trailing the commits by one sample.
    pub fn samples() -> Vec<Sample> {
        let at = |t_ms, created, sold_out, committed, applied, redis| Sample {
            t_ms,
            answers: [("CREATED", created), ("SOLD_OUT", sold_out)]
                .into_iter()
                .filter(|&(_, n)| n > 0)
                .map(|(code, n)| (code.to_owned(), n))
                .collect(),
            committed,
            applied,
            stock_db: 3 - applied,
            stock_redis: redis,
        };
        vec![
            at(0, 0, 0, 0, 0, Some(3)),
            at(250, 2, 0, 2, 0, Some(1)),
            at(500, 3, 4, 3, 2, Some(0)),
            at(750, 3, 5, 3, 3, None),
            at(1000, 3, 5, 3, 3, Some(0)),
        ]
    }

    #[test]
    fn rates_are_increases_over_each_interval() {
        let cumulative = [(0.0, 0.0), (0.25, 10.0), (0.5, 10.0), (1.0, 30.0)];

        assert_eq!(
            rates(&cumulative),
            vec![(0.25, 40.0), (0.5, 0.0), (1.0, 40.0)]
        );
    }

    #[test]
    fn rates_skip_intervals_of_no_length() {
        assert_eq!(rates(&[(1.0, 0.0), (1.0, 5.0)]), vec![]);
        assert_eq!(rates(&[(1.0, 5.0)]), vec![]);
    }

    #[test]
    fn answer_counts_add_up_by_code() {
        let counts = AnswerCounts::default();
        for answer in ["CREATED", "SOLD_OUT", "SOLD_OUT"] {
            counts.add(answer);
        }

        assert_eq!(
            counts.snapshot(),
            [("CREATED".to_owned(), 1), ("SOLD_OUT".to_owned(), 2)].into()
        );
    }

    #[test]
    fn the_chart_has_a_line_per_answer_and_rates_from_the_counts() {
        let chart = chart(String::new(), String::new(), &samples(), vec![]);

        let answers = &chart.panels[0];
        let names: Vec<&str> = answers
            .lines
            .iter()
            .map(|line| line.name.as_str())
            .collect();
        assert_eq!(names, ["CREATED", "SOLD_OUT"]);
        assert_eq!(
            answers.lines[1].points,
            vec![(0.25, 0.0), (0.5, 16.0), (0.75, 4.0), (1.0, 0.0)]
        );
        assert_eq!(chart.panels[1].lines[0].points[0], (0.25, 8.0));
        // The sample without a Redis figure leaves a gap in that line only.
        assert_eq!(chart.panels[2].lines[0].points.len(), 5);
        assert_eq!(chart.panels[2].lines[1].points.len(), 4);
    }

    #[test]
    fn the_sale_chart_renders_one_polyline_per_line_with_its_legend() {
        let svg = crate::plot::render(&chart(
            "Flash sale".to_owned(),
            String::new(),
            &samples(),
            vec![],
        ));

        // 2 answers + committed/applied + stock DB/Redis.
        assert_eq!(svg.matches("<polyline").count(), 6);
        for name in [
            "CREATED",
            "SOLD_OUT",
            "committed",
            "stock DB",
            "Redis (admission)",
        ] {
            assert!(
                svg.contains(&format!(">{name}</text>")),
                "no legend for {name}"
            );
        }
    }
}
