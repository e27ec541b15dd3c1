//! Workloads of the real-time core: durable posts with group commit, and sign-in
//! storms (memory and throughput).
//!
//! | workload | baseline |
//! | --- | --- |
//! | commit | the same rows inserted straight into a SQLite file (WAL, `synchronous=FULL`, as the server runs it) in transactions of as many rows as there are concurrent posters: the best any group commit could do |
//! | signins | argon2id verifications (the server's parameters) on as many threads as the machine has cores, in this process: the ceiling of password sign-ins |

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tsunagu_client::protocol::ids::ThreadId;
use tsunagu_client::protocol::messaging::{CreateGroup, GroupKind};
use tsunagu_client::protocol::ws::ClientFrame;
use tsunagu_client::Client;

use super::report::{Better, Report};
use super::stats::{mib, rate, Samples};
use super::target::{Target, User, USER_PASSWORD};
use super::wsclient::{self, Incoming};
use super::Sizes;

/// One poster: posts `n` messages into `thread` over its own socket, each after the
/// previous ack (closed loop). Returns the ack latencies.
pub(super) async fn post_loop(
    url: String,
    token: String,
    thread: ThreadId,
    n: usize,
    tag: String,
) -> anyhow::Result<Samples> {
    let (mut sink, mut source) = wsclient::open(&url, &token, &BTreeMap::new()).await?;
    let mut acks = Samples::new();
    for i in 0..n {
        let sent = Instant::now();
        let frame = ClientFrame::Post {
            reference: Some(i.to_string()),
            thread_id: thread,
            body: wsclient::body(i as u32, 0),
            client_msg_id: format!("{tag}-{i}"),
            reply_to: None,
            mentions: Vec::new(),
            attachments: Vec::new(),
        };
        sink.send(wsclient::text(&frame)).await?;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), source.next())
                .await
                .context("no ack within 30 s")?;
            let Some(Ok(WsMessage::Text(text))) = msg else {
                if matches!(msg, Some(Ok(_))) {
                    continue;
                }
                bail!("the connection closed");
            };
            let f: Incoming = serde_json::from_str(text.as_str())?;
            match f.kind.as_str() {
                "ack" if f.reference.as_deref() == Some(&i.to_string()) => break,
                "error" => bail!("post refused: {:?}", f.code),
                _ => {}
            }
        }
        acks.push_duration(sent.elapsed());
    }
    let _ = sink.close().await;
    Ok(acks)
}

/// Durable posts per second with group commit, beside a raw batched insert.
pub async fn commit(
    target: &Target,
    users: &[User],
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let writers = sizes.commit_posters;
    let per = sizes.commit_posts / writers;
    let threads: Vec<ThreadId> = futures_util::stream::iter(0..writers)
        .map(|i| {
            let user = &users[i % users.len()];
            let name = format!("{} commit {i}", target.run_id);
            async move {
                let g = user
                    .client
                    .create_group(&CreateGroup {
                        kind: GroupKind::Free,
                        name,
                        description: None,
                        patient: None,
                    })
                    .await?;
                Ok::<_, anyhow::Error>(g.main_thread_id)
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    eprintln!("  tsunagu: {writers} posters × {per} posts, each into its own thread");
    let started = Instant::now();
    let tasks: Vec<_> = threads
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let user = &users[i % users.len()];
            tokio::spawn(post_loop(
                target.ws_url(),
                user.token(),
                *t,
                per,
                format!("{}-c{i}", target.run_id),
            ))
        })
        .collect();
    let mut acks = Samples::new();
    for t in tasks {
        acks.merge(&t.await??);
    }
    let ours = rate((writers * per) as f64, started.elapsed());

    // Baseline: the same rows, straight into SQLite, `writers` rows per transaction.
    let path = target.scratch.join("commit-baseline.db");
    let _ = std::fs::remove_file(&path);
    let opts = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let mut db = SqliteConnection::connect_with(&opts).await?;
    sqlx::query(
        "CREATE TABLE messages (id TEXT PRIMARY KEY, thread_id TEXT NOT NULL, seq BIGINT NOT NULL, \
         author_id TEXT NOT NULL, client_msg_id TEXT NOT NULL, body TEXT NOT NULL, created_at BIGINT NOT NULL, \
         UNIQUE (thread_id, seq), UNIQUE (thread_id, author_id, client_msg_id))",
    )
    .execute(&mut db)
    .await?;
    let started = Instant::now();
    let total = writers * per;
    let mut seq = vec![0i64; writers];
    let mut done = 0;
    while done < total {
        let mut tx = db.begin().await?;
        for w in 0..writers.min(total - done) {
            seq[w] += 1;
            sqlx::query("INSERT INTO messages VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(threads[w].to_string())
                .bind(seq[w])
                .bind("author")
                .bind(format!("c{w}-{}", seq[w]))
                .bind(wsclient::body(done as u32, 0))
                .bind(0i64)
                .execute(&mut *tx)
                .await?;
            done += 1;
        }
        tx.commit().await?;
    }
    let base = rate(total as f64, started.elapsed());
    drop(db);
    report.figure(
        "commit",
        "durable posts/s",
        "posts/s",
        Better::Higher,
        ours,
        Some(base),
        Some(format!(
            "{writers} concurrent posters; baseline: {writers} rows per transaction"
        )),
    );
    report.figure(
        "commit",
        "post ack p50",
        "ms",
        Better::Lower,
        acks.percentile_ms(50.0),
        None,
        None,
    );
    report.figure(
        "commit",
        "post ack p99",
        "ms",
        Better::Lower,
        acks.percentile_ms(99.0),
        None,
        None,
    );
    Ok(())
}

/// Resident memory and throughput of a sign-in storm.
pub async fn signins(
    target: &Target,
    users: &[User],
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let n = sizes.signins;
    let rss = target.rss();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss.and_then(|r| r.now());
    let logins: Vec<String> = users.iter().map(|u| u.login.clone()).collect();
    eprintln!("  tsunagu: {n} sign-ins, 32 at a time");
    let started = Instant::now();
    let base_url = target.base.clone();
    futures_util::stream::iter(0..n)
        .map(|i| {
            let login = logins[i % logins.len()].clone();
            let base_url = base_url.clone();
            async move {
                let c = Client::new(&base_url)?;
                c.login(&login, USER_PASSWORD, None).await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let ours = rate(n as f64, started.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss.and_then(|r| r.now());

    // Baseline: argon2id verifications on every core, in this process.
    let cores = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1);
    let phc = {
        use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
        argon2::Argon2::default()
            .hash_password(USER_PASSWORD.as_bytes(), &SaltString::generate(&mut OsRng))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .to_string()
    };
    let per_thread = (n / cores).clamp(20, 500);
    let started = Instant::now();
    let handles: Vec<_> = (0..cores)
        .map(|_| {
            let phc = phc.clone();
            std::thread::spawn(move || {
                use argon2::password_hash::{PasswordHash, PasswordVerifier};
                let parsed = PasswordHash::new(&phc).expect("hash");
                for _ in 0..per_thread {
                    let _ = argon2::Argon2::default()
                        .verify_password(USER_PASSWORD.as_bytes(), &parsed);
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let base = rate((per_thread * cores) as f64, started.elapsed());
    report.figure(
        "signins",
        "sign-ins/s",
        "1/s",
        Better::Higher,
        ours,
        Some(base),
        Some(format!(
            "{n} sign-ins; baseline: argon2id verifications on {cores} threads"
        )),
    );
    if let (Some(idle), Some(after)) = (idle, after) {
        report.figure(
            "signins",
            "server RSS idle",
            "MiB",
            Better::Lower,
            mib(idle),
            None,
            None,
        );
        report.figure(
            "signins",
            "server RSS growth after the storm",
            "MiB",
            Better::Lower,
            mib(after.saturating_sub(idle)),
            None,
            Some("goal ≤ 64 MiB".into()),
        );
    }
    Ok(())
}
