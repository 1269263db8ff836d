//! The stack under test: where its services and databases are (asked of
//! `deploy/part.sh describe`, which knows the stack's names and ports, or of
//! `deploy/cluster/part.sh describe` for the containers) and how one of its
//! parts is killed, stopped, started, paused or resumed.

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
    /// The script that controls the parts (`deploy/part.sh` or
    /// `deploy/cluster/part.sh`).
    script: PathBuf,
    /// Readiness is the script's `ready` (the containers' health checks)
    /// rather than each service's `/readyz`.
    ready_by_script: bool,
    pub order_url: String,
    pub stock_url: String,
    pub order_db: String,
    pub stock_db: String,
    /// The HS256 secret the services check tokens with (never printed).
    pub secret: String,
    pub namesrv: String,
    /// The order topic and stock-service's consumer group.
    pub order_topic: String,
    pub stock_group: String,
    /// The control address of the link proxy in front of the broker, when the
    /// stack has one (`deploy/chaos-test.sh` starts it).
    pub link_control: Option<String>,
}

impl Stack {
    /// Asks `deploy/part.sh describe` (`deploy/cluster/part.sh` for the
    /// cluster) of the repository at `repo`.
    pub async fn describe(repo: &Path, cluster: bool) -> anyhow::Result<Self> {
        let repo = repo
            .canonicalize()
            .with_context(|| format!("the repository {}", repo.display()))?;
        let script = repo.join(if cluster {
            "deploy/cluster/part.sh"
        } else {
            "deploy/part.sh"
        });
        let output = part_sh(&script, &["describe"]).await?;
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
            script,
            ready_by_script: fields.get("ready") == Some(&"script"),
            order_url: field("order_url")?,
            stock_url: field("stock_url")?,
            order_db: field("order_db")?,
            stock_db: field("stock_db")?,
            secret,
            namesrv: field("namesrv")?,
            order_topic: Some(field("order_topic")?)
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| common::messages::ORDER_TOPIC.to_owned()),
            stock_group: Some(field("stock_group")?)
                .filter(|g| !g.is_empty())
                .unwrap_or_else(|| common::messages::STOCK_CONSUMER_GROUP.to_owned()),
            link_control: fields
                .get("link_control")
                .filter(|v| !v.is_empty())
                .map(|v| (*v).to_owned()),
        })
    }

    /// The link proxy's control address, or why the slow link cannot be made.
    pub fn link_control(&self) -> anyhow::Result<&str> {
        self.link_control.as_deref().context(
            "this stack's broker has no link proxy in front of it: run the suite with \
             deploy/chaos-test.sh, which starts one and has the broker advertise it",
        )
    }

    /// Does `action` to `part` (returns once done: a killed process is gone,
    /// a started one answers).
    pub async fn part(&self, action: Action, part: Part) -> anyhow::Result<()> {
        println!("[chaos]   {} {}", action.name(), part.name());
        part_sh(&self.script, &[action.name(), part.name()])
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
            let mut ready =
                !self.ready_by_script || part_sh(&self.script, &["ready"]).await.is_ok();
            for base in [&self.order_url, &self.stock_url]
                .into_iter()
                .filter(|_| !self.ready_by_script)
            {
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

/// Moves `group`'s offsets on `topic` back to `since_ms` with the broker's
/// admin API (server-side reset: the running consumer is told its offset
/// moved and is sent every message since then again). How many queues moved.
pub async fn replay(stack: &Stack, since_ms: u64) -> anyhow::Result<usize> {
    use rocketmq_client_rust::{DefaultMQAdminExt, OffsetAdmin};
    let settings = common::settings::MqSettings {
        namesrv_addr: stack.namesrv.clone(),
        ..Default::default()
    };
    let runtime = common::mq::MqRuntime::start("seckill-chaos", &settings)?;
    let mut admin = DefaultMQAdminExt::with_admin_ext_group_and_timeout(
        runtime.client(),
        format!("seckill_chaos_admin_{}", std::process::id()),
        Duration::from_secs(5),
    );
    admin.set_namesrv_addr(stack.namesrv.as_str());
    admin.start().await?;
    let moved = OffsetAdmin::reset_offset_by_timestamp(
        &admin,
        None,
        stack.order_topic.as_str().into(),
        stack.stock_group.as_str().into(),
        since_ms,
        true,
    )
    .await;
    admin.shutdown().await;
    runtime.shutdown().await;
    Ok(moved?.len())
}

async fn part_sh(script: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = tokio::process::Command::new("bash")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} {}: {}",
        script.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
