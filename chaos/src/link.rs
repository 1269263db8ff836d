//! The slow or lossy link of scenario 8: a TCP proxy between the broker and
//! its clients, with faults switched on and off at runtime.
//!
//! The broker listens on one address and advertises another (its
//! `brokerIp1`), where this proxy listens: every client that asks the name
//! server for the broker — order-service's producer, whose connection also
//! carries the broker's check-backs, and stock-service's consumer — goes
//! through it. The name server is reached directly.
//!
//! Faults, per chunk of bytes read from either side:
//! - `delay_ms`: the chunk is written that much later (order kept), a slow
//!   link: requests and end-transaction calls arrive late, answers later;
//! - `cut_per_mille`: the chance the connection is cut instead (both sides
//!   closed, the chunk lost), a lossy link: a request or an end-transaction
//!   call in it never arrives, and its sender finds out only by a timeout or
//!   a broken connection.
//!
//! Controlled over a line protocol on its control address:
//! `set delay_ms=N cut_per_mille=M` and `get` answer `ok delay_ms=… cut_per_mille=…
//! connections=… chunks=… cuts=…`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The fault now in force and what the proxy has done.
#[derive(Debug, Default)]
pub struct Link {
    delay_ms: AtomicU64,
    cut_per_mille: AtomicU64,
    connections: AtomicU64,
    chunks: AtomicU64,
    cuts: AtomicU64,
    rng: AtomicU64,
}

impl Link {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: AtomicU64::new(seed | 1),
            ..Self::default()
        }
    }

    /// Applies one control line; the answer to send back.
    pub fn control(&self, line: &str) -> String {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("get") => self.state(),
            Some("set") => {
                for word in words {
                    let Some((key, value)) = word.split_once('=') else {
                        return format!("error: {word:?} is not key=value");
                    };
                    let Ok(value) = value.parse::<u64>() else {
                        return format!("error: {key}: {value:?} is not a whole number");
                    };
                    match key {
                        "delay_ms" if value <= 60_000 => {
                            self.delay_ms.store(value, Ordering::SeqCst)
                        }
                        "cut_per_mille" if value <= 1_000 => {
                            self.cut_per_mille.store(value, Ordering::SeqCst)
                        }
                        "delay_ms" | "cut_per_mille" => {
                            return format!("error: {key}={value} is out of range");
                        }
                        _ => return format!("error: no setting {key:?}"),
                    }
                }
                self.state()
            }
            _ => "error: say `get` or `set delay_ms=N cut_per_mille=M`".to_owned(),
        }
    }

    fn state(&self) -> String {
        format!(
            "ok delay_ms={} cut_per_mille={} connections={} chunks={} cuts={}",
            self.delay_ms.load(Ordering::SeqCst),
            self.cut_per_mille.load(Ordering::SeqCst),
            self.connections.load(Ordering::SeqCst),
            self.chunks.load(Ordering::SeqCst),
            self.cuts.load(Ordering::SeqCst)
        )
    }

    /// What happens to the next chunk.
    fn next_chunk(&self) -> Fate {
        self.chunks.fetch_add(1, Ordering::Relaxed);
        let cut = self.cut_per_mille.load(Ordering::Relaxed);
        if cut > 0 && self.roll() % 1_000 < cut {
            self.cuts.fetch_add(1, Ordering::Relaxed);
            return Fate::Cut;
        }
        Fate::After(Duration::from_millis(self.delay_ms.load(Ordering::Relaxed)))
    }

    /// xorshift64 over one shared word: good enough to spread cuts.
    fn roll(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }
}

enum Fate {
    After(Duration),
    Cut,
}

/// Proxies `listen` to `upstream` and answers control lines on `control`,
/// until the process ends.
pub async fn serve(link: Arc<Link>, listen: TcpListener, upstream: String, control: TcpListener) {
    tokio::spawn(serve_control(link.clone(), control));
    loop {
        let Ok((client, _)) = listen.accept().await else {
            continue;
        };
        let (link, upstream) = (link.clone(), upstream.clone());
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return; // the broker is down: the client sees its connection closed
            };
            link.connections.fetch_add(1, Ordering::Relaxed);
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            // Whichever direction is cut or closed ends both.
            tokio::select! {
                () = pipe(&link, client_read, server_write) => {}
                () = pipe(&link, server_read, client_write) => {}
            }
        });
    }
}

/// Copies one direction, chunk by chunk, each after its delay; returns when
/// either end closes or the link cuts the connection.
async fn pipe(
    link: &Link,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((at, bytes)) = due.recv().await {
            tokio::time::sleep_until(at.into()).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => n,
            };
            match link.next_chunk() {
                Fate::Cut => return false,
                Fate::After(delay) => {
                    if queue
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        return false;
                    }
                }
            }
        }
    };
    tokio::pin!(writer);
    tokio::select! {
        closed = reader => {
            // A clean close delivers what is still due; a cut drops it.
            if closed {
                writer.await;
            }
        }
        () = &mut writer => {}
    }
}

async fn serve_control(link: Arc<Link>, control: TcpListener) {
    loop {
        let Ok((stream, _)) = control.accept().await else {
            continue;
        };
        let link = link.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer = link.control(&line);
                if write
                    .write_all(format!("{answer}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

/// Sends one control line to the proxy at `control`; its answer, which must
/// start with `ok`.
pub async fn command(control: &str, line: &str) -> anyhow::Result<String> {
    let stream = TcpStream::connect(control)
        .await
        .with_context(|| format!("the link proxy's control address {control}"))?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{line}\n").as_bytes()).await?;
    let answer = BufReader::new(read)
        .lines()
        .next_line()
        .await?
        .context("the link proxy closed without answering")?;
    anyhow::ensure!(
        answer.starts_with("ok"),
        "the link proxy said {answer:?} to {line:?}"
    );
    Ok(answer)
}

/// A number from an `ok … key=N …` answer.
pub fn field(answer: &str, key: &str) -> Option<u64> {
    answer
        .split_whitespace()
        .filter_map(|word| word.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_set_and_report_the_fault() {
        let link = Link::new(7);
        let answer = link.control("set delay_ms=250 cut_per_mille=30");
        assert_eq!(field(&answer, "delay_ms"), Some(250));
        assert_eq!(field(&answer, "cut_per_mille"), Some(30));
        assert!(link.control("set cut_per_mille=1001").starts_with("error"));
        assert!(link.control("set speed=3").starts_with("error"));
        assert!(link.control("set delay_ms=x").starts_with("error"));
        assert!(link.control("reboot").starts_with("error"));
        assert_eq!(
            field(&link.control("set delay_ms=0 cut_per_mille=0"), "delay_ms"),
            Some(0)
        );
    }

    #[test]
    fn cuts_come_at_about_the_chance_set() {
        let link = Link::new(42);
        link.control("set cut_per_mille=100");
        let cuts = (0..10_000)
            .filter(|_| matches!(link.next_chunk(), Fate::Cut))
            .count();
        assert!(
            (700..1_300).contains(&cuts),
            "{cuts} cuts in 10,000 chunks at 10%"
        );
        link.control("set cut_per_mille=0");
        assert!((0..1_000).all(|_| !matches!(link.next_chunk(), Fate::Cut)));
    }

    /// Bytes go through both ways, late by the delay set, and a cut closes
    /// the client's connection.
    #[tokio::test]
    async fn bytes_go_through_late_and_a_cut_closes_the_connection() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = echo.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let listen = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (proxy, control_addr) = (
            listen.local_addr().unwrap(),
            control.local_addr().unwrap().to_string(),
        );
        tokio::spawn(serve(Arc::new(Link::new(1)), listen, upstream, control));

        command(&control_addr, "set delay_ms=150").await.unwrap();
        let mut client = TcpStream::connect(proxy).await.unwrap();
        let started = Instant::now();
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300),
            "an echo through a 150 ms link took {took:?}"
        );

        command(&control_addr, "set delay_ms=0 cut_per_mille=1000")
            .await
            .unwrap();
        client.write_all(b"lost").await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut got))
            .await
            .expect("the cut connection was closed")
            .unwrap_or(0);
        assert_eq!(n, 0, "nothing comes back through a cut link");
        let answer = command(&control_addr, "get").await.unwrap();
        assert_eq!(field(&answer, "cuts"), Some(1));
        assert_eq!(field(&answer, "connections"), Some(1));
    }
}
