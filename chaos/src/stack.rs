//! The stack under test: where its services and databases are (asked of
//! `deploy/part.sh describe`, which knows the stack's names and ports) and
//! how one of its parts is killed, stopped, started, paused or resumed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A part of the local stack (`deploy/part.sh`'s names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    OrderService,
    StockService,
    Broker,
    MariaDb,
    Redis,
}

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Self::OrderService => "order-service",
            Self::StockService => "stock-service",
            Self::Broker => "broker",
            Self::MariaDb => "mariadb",
            Self::Redis => "redis",
        }
    }
}

/// What is done to a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Kill,
    Stop,
    Start,
    Pause,
    Resume,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Stop => "stop",
            Self::Start => "start",
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Stack {
    repo: PathBuf,
    pub order_url: String,
    pub stock_url: String,
    pub order_db: String,
    pub stock_db: String,
    /// The HS256 secret the services check tokens with (never printed).
    pub secret: String,
}

impl Stack {
    /// Asks `deploy/part.sh describe` of the repository at `repo`.
    pub async fn describe(repo: &Path) -> anyhow::Result<Self> {
        let repo = repo
            .canonicalize()
            .with_context(|| format!("the repository {}", repo.display()))?;
        let output = part_sh(&repo, &["describe"]).await?;
        let fields: HashMap<&str, &str> = output
            .lines()
            .filter_map(|line| line.split_once('='))
            .collect();
        let field = |name: &str| {
            fields
                .get(name)
                .map(|v| (*v).to_owned())
                .with_context(|| format!("deploy/part.sh describe printed no {name}"))
        };
        let secret_file = field("secret_file")?;
        let secret = std::fs::read_to_string(&secret_file)
            .with_context(|| format!("reading the token secret {secret_file}"))?
            .trim()
            .to_owned();
        Ok(Self {
            repo,
            order_url: field("order_url")?,
            stock_url: field("stock_url")?,
            order_db: field("order_db")?,
            stock_db: field("stock_db")?,
            secret,
        })
    }

    /// Does `action` to `part` (returns once done: a killed process is gone,
    /// a started one answers).
    pub async fn part(&self, action: Action, part: Part) -> anyhow::Result<()> {
        println!("[chaos]   {} {}", action.name(), part.name());
        part_sh(&self.repo, &[action.name(), part.name()])
            .await
            .map(|_| ())
    }

    /// Waits until both services say they are ready (`/readyz` 200); how long
    /// that took.
    pub async fn wait_ready(&self, limit: Duration) -> anyhow::Result<Duration> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let started = Instant::now();
        loop {
            let mut ready = true;
            for base in [&self.order_url, &self.stock_url] {
                ready &= http
                    .get(format!("{base}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
            }
            if ready {
                return Ok(started.elapsed());
            }
            anyhow::ensure!(
                started.elapsed() < limit,
                "the services were not ready {limit:?} after healing"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn part_sh(repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = tokio::process::Command::new("bash")
        .arg(repo.join("deploy/part.sh"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("running deploy/part.sh")?;
    anyhow::ensure!(
        output.status.success(),
        "deploy/part.sh {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
