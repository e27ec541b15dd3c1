//! Workload 3: many authenticated websocket connections held open doing nothing; the
//! server's memory per connection. Baseline: the same connections to the baseline
//! broadcast server.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::baseline::BaselineWs;
use super::report::{Better, Report};
use super::stats::rate;
use super::target::{Rss, Target, User};
use super::wsclient::{self, Sink, Source};
use super::Sizes;

const CONNECT_CONCURRENCY: usize = 64;
/// Time for the server to settle once every connection is open.
const SETTLE: Duration = Duration::from_secs(3);

struct Held {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    open_secs: f64,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
}

/// Keeps reading (so pings are answered) until told to stop, then closes.
async fn hold(mut sink: Sink, mut source: Source, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            m = source.next() => match m {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = stop.changed() => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
}

async fn open_all(
    url: &str,
    tokens: &[String],
    n: usize,
    rss: Option<Rss>,
) -> anyhow::Result<Held> {
    let rss_before = rss.and_then(|r| r.now());
    let (stop, stop_rx) = watch::channel(false);
    let none: BTreeMap<_, _> = BTreeMap::new();
    let t = Instant::now();
    let opened: Vec<(Sink, Source)> = futures_util::stream::iter(0..n)
        .map(|i| {
            let token = tokens[i % tokens.len()].clone();
            let none = none.clone();
            async move { wsclient::open(url, &token, &none).await }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .try_collect()
        .await
        .context("opening idle connections")?;
    let open_secs = t.elapsed().as_secs_f64();
    let tasks = opened
        .into_iter()
        .map(|(sink, source)| tokio::spawn(hold(sink, source, stop_rx.clone())))
        .collect();
    tokio::time::sleep(SETTLE).await;
    let rss_after = rss.and_then(|r| r.now());
    Ok(Held {
        tasks,
        stop,
        open_secs,
        rss_before,
        rss_after,
    })
}

impl Held {
    fn per_connection(&self, n: usize) -> Option<f64> {
        match (self.rss_before, self.rss_after) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / n as f64 / 1024.0),
            _ => None,
        }
    }

    async fn close(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

pub async fn run(
    target: &Target,
    users: &[User],
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let n = sizes.idle_connections;
    let tokens: Vec<String> = users.iter().map(User::token).collect();
    eprintln!("  tsunagu: {n} connections");
    let ours = open_all(&target.ws_url(), &tokens, n, target.rss()).await?;
    let ours_per = ours.per_connection(n);
    let ours_open = ours.open_secs;
    let total_rss = ours.rss_after;
    ours.close().await;

    let baseline = BaselineWs::spawn().await?;
    eprintln!("  baseline: {n} connections");
    let base = open_all(&baseline.url(), &tokens, n, baseline.rss).await?;
    let base_per = base.per_connection(n);
    let base_open = base.open_secs;
    base.close().await;
    drop(baseline);

    if let Some(per) = ours_per {
        report.figure(
            "idle",
            &format!("server RSS per connection ({n} open)"),
            "KiB",
            Better::Lower,
            per,
            base_per,
            total_rss.map(|t| format!("server RSS with all open: {:.0} MiB", t as f64 / 1048576.0)),
        );
    }
    report.figure(
        "idle",
        "connections opened and authenticated/s",
        "1/s",
        Better::Higher,
        rate(n as f64, Duration::from_secs_f64(ours_open)),
        Some(rate(n as f64, Duration::from_secs_f64(base_open))),
        Some("auth + resume handshake each".into()),
    );
    report.extra("idle_connections", serde_json::json!(n));
    Ok(())
}
