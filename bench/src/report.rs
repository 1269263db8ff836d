//! The record of one `sale` run: its parameters, summary figures, invariant
//! checks and timeline samples, written to the output folder as
//! `sale-<unix time>.json` beside the plot `sale-<unix time>.svg`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::Serialize;

use crate::load::{Latencies, Percentiles};
use crate::plot::{self, Marker};
use crate::sale::{Burst, CREATED, SaleArgs};
use crate::timeline::{self, Sample};

#[derive(Debug, Serialize)]
pub struct SaleRun {
    pub parameters: Parameters,
    pub summary: Summary,
    pub checks: Vec<Check>,
    pub samples: Vec<Sample>,
}

/// What the run was asked to do (the database URL is left out: it may hold a password).
#[derive(Debug, Serialize)]
pub struct Parameters {
    /// When the burst began, in seconds since the Unix epoch; names the files.
    pub started_unix: u64,
    pub order_url: String,
    pub product_id: i64,
    pub stock: u32,
    pub requests: usize,
    pub users: usize,
    pub concurrency: usize,
    pub order_db: String,
    pub stock_db: String,
}

impl Parameters {
    pub fn of(args: &SaleArgs, product_id: i64, began: SystemTime) -> Self {
        Self {
            started_unix: began
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            order_url: args.order_url.clone(),
            product_id,
            stock: args.stock,
            requests: args.requests,
            users: args.users,
            concurrency: args.concurrency,
            order_db: args.databases.order_db.clone(),
            stock_db: args.databases.stock_db.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub answers: BTreeMap<String, usize>,
    pub burst_ms: f64,
    pub requests_per_s: f64,
    /// Every request, whatever its answer.
    pub latency: Percentiles,
    /// The requests answered 201 (an order) only.
    pub winners_latency: Percentiles,
    /// From an order's commit (order DB) to its stock deduction (stock DB).
    pub commit_to_deduction: Percentiles,
    /// Since the burst began, until every item was taken; None when some were left.
    pub sold_out_after_ms: Option<f64>,
}

impl Summary {
    pub fn of(
        stock: u32,
        sale: &Burst,
        samples: &[Sample],
        commit_to_deduction: Latencies,
    ) -> Self {
        let winners = sale.answers.get(CREATED);
        Self {
            answers: sale
                .counts()
                .into_iter()
                .map(|(answer, n)| (answer.to_owned(), n))
                .collect(),
            burst_ms: ms(sale.stats.elapsed()),
            requests_per_s: sale.stats.rate(),
            latency: sale.stats.latencies().percentiles(),
            winners_latency: winners.map_or_else(
                || Latencies::default().percentiles(),
                |winners| winners.latencies.percentiles(),
            ),
            commit_to_deduction: commit_to_deduction.percentiles(),
            sold_out_after_ms: sold_out_after(stock, sale, samples).map(ms),
        }
    }

    pub fn print(&self) {
        println!();
        let sold_out = self
            .sold_out_after_ms
            .map_or_else(|| "not sold out".to_owned(), |t| format!("{t:.0} ms"));
        println!("{:<22} {sold_out}", "sold out after");
        println!("{:<22} {}", "winners' latency", self.winners_latency);
        println!("{:<22} {}", "commit → deduction", self.commit_to_deduction);
    }
}

/// When the last item was taken: the last 201 answer once there were as many
/// as items, else the first sample with as many committed orders (a winner
/// whose answer was lost still took an item).
fn sold_out_after(stock: u32, sale: &Burst, samples: &[Sample]) -> Option<Duration> {
    let stock = stock as usize;
    let by_answers = sale
        .answers
        .get(CREATED)
        .filter(|winners| winners.latencies.len() >= stock)
        .map(|winners| winners.last_at);
    by_answers.or_else(|| {
        samples
            .iter()
            .find(|sample| sample.committed >= stock as i64)
            .map(|sample| Duration::from_millis(sample.t_ms))
    })
}

/// One invariant and whether the run kept it.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
}

impl Check {
    pub fn new(name: impl Into<String>, ok: bool) -> Self {
        Self {
            name: name.into(),
            ok,
        }
    }
}

impl SaleRun {
    /// The timeline with the run's parameters and headline figures on top.
    pub fn chart(&self) -> plot::Chart {
        let (p, s) = (&self.parameters, &self.summary);
        let title = format!(
            "Flash sale: {} items, {} requests from {} buyers, concurrency {}",
            p.stock, p.requests, p.users, p.concurrency
        );
        let sold_out = s.sold_out_after_ms.map_or_else(
            || "not sold out".to_owned(),
            |t| format!("sold out after {:.2} s", t / 1e3),
        );
        let subtitle = format!(
            "product {} · {sold_out} · {:.0} req/s · winners p50/p95/p99 {:.0}/{:.0}/{:.0} ms · commit→deduction p50/p95/p99 {:.0}/{:.0}/{:.0} ms",
            p.product_id,
            s.requests_per_s,
            s.winners_latency.p50_ms,
            s.winners_latency.p95_ms,
            s.winners_latency.p99_ms,
            s.commit_to_deduction.p50_ms,
            s.commit_to_deduction.p95_ms,
            s.commit_to_deduction.p99_ms,
        );
        let mut markers = vec![Marker {
            at: s.burst_ms / 1e3,
            label: "last answer".to_owned(),
        }];
        markers.extend(s.sold_out_after_ms.map(|t| Marker {
            at: t / 1e3,
            label: "sold out".to_owned(),
        }));
        timeline::chart(title, subtitle, &self.samples, markers)
    }
}

/// Writes `dir/sale-<unix time>.json` and `.svg`; returns both paths.
pub fn write(dir: &Path, run: &SaleRun) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = dir.join(format!("sale-{}", run.parameters.started_unix));
    let (json, svg) = (stem.with_extension("json"), stem.with_extension("svg"));
    std::fs::write(&json, serde_json::to_string_pretty(run)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    std::fs::write(&svg, plot::render(&run.chart()))
        .with_context(|| format!("writing {}", svg.display()))?;
    Ok((json, svg))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Stats;
    use crate::sale::Answered;

    /// 2000 requests over 3 s, `created` of them answered 201.
    fn burst(created: usize, last_created_ms: u64) -> Burst {
        let answered = |n, last_ms| Answered {
            latencies: Latencies::new(vec![Duration::from_millis(5); n]),
            last_at: Duration::from_millis(last_ms),
        };
        Burst {
            stats: Stats::new(vec![Duration::from_millis(5); 2000], Duration::from_secs(3)),
            answers: [
                (CREATED.to_owned(), answered(created, last_created_ms)),
                ("SOLD_OUT".to_owned(), answered(2000 - created, 3000)),
            ]
            .into(),
        }
    }

    #[test]
    fn sold_out_at_the_last_winning_answer() {
        let samples = timeline::tests::samples();

        assert_eq!(
            sold_out_after(3, &burst(3, 420), &samples),
            Some(Duration::from_millis(420))
        );
    }

    #[test]
    fn sold_out_from_the_committed_orders_when_a_winner_got_no_201() {
        let samples = timeline::tests::samples();

        assert_eq!(
            sold_out_after(3, &burst(2, 200), &samples),
            Some(Duration::from_millis(500))
        );
        assert_eq!(sold_out_after(4, &burst(3, 420), &samples), None);
    }

    #[test]
    fn a_run_is_written_as_json_and_svg() {
        let run = synthetic_run();
        let dir = std::env::temp_dir().join(format!("seckill-bench-report-{}", std::process::id()));

        let (json, svg) = write(&dir, &run).unwrap();

        assert_eq!(json, dir.join("sale-1700000000.json"));
        assert_eq!(svg, dir.join("sale-1700000000.svg"));
        let figures: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(figures["parameters"]["stock"], 100);
        assert_eq!(figures["summary"]["winners_latency"]["count"], 100);
        assert!(figures["summary"]["sold_out_after_ms"].as_f64().is_some());
        assert_eq!(
            figures["samples"].as_array().unwrap().len(),
            run.samples.len()
        );
        let plot = std::fs::read_to_string(&svg).unwrap();
        assert!(plot.contains("Flash sale: 100 items, 2000 requests from 500 buyers"));
        // Left for a person to look at (README, or a check that it renders).
        std::fs::copy(&svg, std::env::temp_dir().join("sample-sale.svg")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A sale of 100 items: 2000 requests over 3 s, sold out at 0.8 s, the
    /// stock DB trailing the commits by about half a second.
    fn synthetic_run() -> SaleRun {
        let samples: Vec<Sample> = (0..=18u64)
            .map(|i| {
                let t_ms = i * 250;
                let t = t_ms as f64 / 1e3;
                let answered = (t * 667.0).min(2000.0) as u64;
                let created = (t * 125.0).min(100.0) as u64;
                let pending = ((t - 0.4).clamp(0.0, 0.4) * 10.0) as u64;
                let applied = ((t - 0.5).max(0.0) * 125.0).min(created as f64) as i64;
                let answers = [
                    ("CREATED", created),
                    ("PENDING", pending),
                    ("SOLD_OUT", answered.saturating_sub(created + pending)),
                ];
                Sample {
                    t_ms,
                    answers: answers
                        .into_iter()
                        .filter(|&(_, n)| n > 0)
                        .map(|(code, n)| (code.to_owned(), n))
                        .collect(),
                    committed: created as i64,
                    applied,
                    stock_db: 100 - applied,
                    stock_redis: Some(100 - created as i64),
                }
            })
            .collect();
        let sale = burst(100, 800);
        let delays = (1..=100)
            .map(|ms| Duration::from_millis(400 + ms))
            .collect();
        SaleRun {
            parameters: Parameters {
                started_unix: 1_700_000_000,
                order_url: "http://127.0.0.1:8091".to_owned(),
                product_id: 1_000_042,
                stock: 100,
                requests: 2000,
                users: 500,
                concurrency: 64,
                order_db: "seckill_order".to_owned(),
                stock_db: "seckill_stock".to_owned(),
            },
            summary: Summary::of(100, &sale, &samples, Latencies::new(delays)),
            checks: vec![Check::new("oversold = 0", true)],
            samples,
        }
    }
}
