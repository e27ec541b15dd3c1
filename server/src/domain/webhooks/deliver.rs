//! The delivery worker: sends the outbox, at least once, in order per webhook.
//!
//! - **One in flight per webhook, in order.** Only the head of a webhook's queue (its
//!   lowest pending `seq`) can be claimed, and a claimed head is skipped by everyone
//!   until its claim ends; the next row becomes the head only when this one is
//!   delivered or dead.
//! - **Several nodes, one code path.** A claim is a conditional `UPDATE` of the row's
//!   `lease_until`, which exactly one worker wins on either database. The lease is
//!   longer than the longest attempt (the total timeout plus a margin).
//! - **At least once.** The row is marked only after the receiver answered; a node
//!   that dies mid-attempt (`kill -9`) leaves an expiring lease, and the row is sent
//!   again. Receivers deduplicate by `webhook-id`, the same on every attempt.
//! - **Bounded.** At most `concurrency` attempts at once across all webhooks; due heads
//!   are read a page at a time (no more than there are free slots), so the backlog
//!   stays on disk. Posting never waits for any of this: it only inserts rows.
//! - **Retries.** Exponential backoff with jitter, until the delivery is older than the
//!   maximum age; then it is dead (an admin can redeliver it).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tsunagu_protocol::webhooks::{
    WEBHOOK_ID_HEADER, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER,
};

use super::secret_aad;
use crate::clock::now_ms;
use crate::domain::files::FileServices;
use crate::store::webhooks::{self as store, Claimed, Outcome};
use crate::store::Store;
use crate::webhooks::{sign, Outbound, SendError};

/// How the worker runs (`[webhooks]` in the configuration).
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Attempts in flight at once, across all webhooks.
    pub concurrency: usize,
    /// How often the outbox is looked at when nothing finished meanwhile.
    pub poll_interval: Duration,
    /// Longest attempt (the HTTP client's total timeout); the lease is longer.
    pub attempt_timeout: Duration,
    /// A delivery older than this is dead after its next failure.
    pub max_age: Duration,
    /// First retry delay; doubled per attempt, up to `backoff_max`, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Delivered and dead rows are removed this long after they were queued.
    pub retention: Duration,
}

/// What a claim adds to the longest attempt, so that a lease cannot run out while its
/// attempt is still going (which would let another node send the same row at once).
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// How often finished deliveries past their retention are removed.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Starts the worker; aborting the handle stops it and its attempts, and so does
/// dropping the domain (`alive`).
pub fn spawn(
    alive: Weak<()>,
    store: Store,
    files: Arc<FileServices>,
    outbound: Outbound,
    settings: WorkerSettings,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(alive, store, files, outbound, settings))
}

async fn run(
    alive: Weak<()>,
    store: Store,
    files: Arc<FileServices>,
    outbound: Outbound,
    settings: WorkerSettings,
) {
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    // Dropped with this task: aborting the worker aborts its attempts.
    let mut attempts: JoinSet<()> = JoinSet::new();
    let mut last_purge: Option<Instant> = None;
    while alive.strong_count() > 0 {
        if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            last_purge = Some(Instant::now());
            purge(&store, &settings).await;
        }
        let free = slots.available_permits();
        if free > 0 {
            match next_due(&store, free).await {
                Ok(ids) => {
                    for id in ids {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            break;
                        };
                        let now = now_ms();
                        let lease =
                            now + (settings.attempt_timeout + LEASE_MARGIN).as_millis() as i64;
                        let claimed = match store.conn().await {
                            Ok(mut conn) => store::claim(&mut conn, &id, now, lease).await,
                            Err(e) => Err(e),
                        };
                        match claimed {
                            Ok(Some(claimed)) => {
                                let attempt = Attempt {
                                    store: store.clone(),
                                    files: files.clone(),
                                    outbound: outbound.clone(),
                                    settings: settings.clone(),
                                };
                                attempts.spawn(async move {
                                    attempt.run(claimed).await;
                                    drop(permit);
                                });
                            }
                            // Another node took it first.
                            Ok(None) => {}
                            Err(e) => tracing::warn!(error = %e, "webhooks: claiming failed"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhooks: reading the outbox failed"),
            }
        }
        // Wake when an attempt ends (its webhook may have a next row) or to poll.
        tokio::select! {
            Some(_) = attempts.join_next(), if !attempts.is_empty() => {
                while attempts.try_join_next().is_some() {}
            }
            _ = tokio::time::sleep(settings.poll_interval) => {}
        }
    }
}

async fn next_due(store: &Store, free: usize) -> crate::store::Result<Vec<String>> {
    let mut conn = store.conn().await?;
    store::due_heads(&mut conn, now_ms(), free as i64).await
}

async fn purge(store: &Store, settings: &WorkerSettings) {
    let before = now_ms() - settings.retention.as_millis() as i64;
    loop {
        let removed = match store.conn().await {
            Ok(mut conn) => store::purge_finished(&mut conn, before, 1000).await,
            Err(e) => Err(e),
        };
        match removed {
            Ok(1000) => continue,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: purging finished deliveries failed");
                return;
            }
        }
    }
}

struct Attempt {
    store: Store,
    files: Arc<FileServices>,
    outbound: Outbound,
    settings: WorkerSettings,
}

/// Why an attempt is not made at all.
enum Skip {
    /// Given up on for good.
    Dead(&'static str),
    /// Tried again later.
    Later(&'static str),
}

impl Attempt {
    async fn run(self, claimed: Claimed) {
        let started = Instant::now();
        let result = match self.prepare(&claimed).await {
            Ok(Ok((url, key))) => {
                let timestamp = now_ms() / 1000;
                let signature = sign::signature(
                    key.as_ref(),
                    &claimed.event_id,
                    timestamp,
                    claimed.payload.as_bytes(),
                );
                let headers = [
                    (WEBHOOK_ID_HEADER, claimed.event_id.clone()),
                    (WEBHOOK_TIMESTAMP_HEADER, timestamp.to_string()),
                    (WEBHOOK_SIGNATURE_HEADER, signature),
                ];
                self.outbound
                    .post(&url, &headers, claimed.payload.clone())
                    .await
                    .map_err(Failure::Send)
            }
            Ok(Err(skip)) => Err(Failure::Skip(skip)),
            Err(e) => {
                tracing::warn!(error = %e, delivery_id = %claimed.id, "webhooks: loading the webhook failed");
                Err(Failure::Skip(Skip::Later("internal_error")))
            }
        };
        let latency = started.elapsed().as_millis() as i64;
        let now = now_ms();
        let age = Duration::from_millis((now - claimed.created_at).max(0) as u64);
        let described;
        let outcome = match &result {
            Ok(status) => Outcome::Delivered {
                status: i64::from(*status),
            },
            Err(Failure::Skip(Skip::Dead(why))) => Outcome::Dead {
                status: None,
                error: why,
            },
            Err(failure) => {
                let (status, error) = match failure {
                    Failure::Send(e) => {
                        described = e.describe();
                        (e.status().map(i64::from), described.as_str())
                    }
                    Failure::Skip(Skip::Later(why)) => (None, *why),
                    Failure::Skip(Skip::Dead(_)) => unreachable!("handled above"),
                };
                if age >= self.settings.max_age {
                    Outcome::Dead { status, error }
                } else {
                    Outcome::Retry {
                        next_attempt_at: now + self.backoff(claimed.attempts).as_millis() as i64,
                        status,
                        error,
                    }
                }
            }
        };
        let label = match &outcome {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead { .. } => "dead",
        };
        metrics::counter!("tsunagu_webhook_attempts_total", "outcome" => label).increment(1);
        metrics::histogram!("tsunagu_webhook_attempt_seconds").record(latency as f64 / 1000.0);
        let saved = match self.store.conn().await {
            Ok(mut conn) => store::finish(&mut conn, &claimed.id, now, latency, outcome).await,
            Err(e) => Err(e),
        };
        if let Err(e) = saved {
            // The lease runs out and the row is sent again: at least once.
            tracing::warn!(error = %e, delivery_id = %claimed.id, "webhooks: recording an attempt failed");
        } else if label != "delivered" {
            tracing::debug!(delivery_id = %claimed.id, webhook_id = %claimed.webhook_id, outcome = label, "webhook attempt failed");
        }
    }

    /// The URL and signing key, after checking the delivery may still go out: the
    /// webhook and its app are on, and the app can still see the thread (an app removed
    /// from a group hears nothing more of it, even of what was queued before).
    async fn prepare(
        &self,
        claimed: &Claimed,
    ) -> crate::store::Result<Result<(String, zeroize::Zeroizing<[u8; 32]>), Skip>> {
        let mut conn = self.store.conn().await?;
        let Some((hook, app_user, app_active)) =
            store::for_delivery(&mut conn, &claimed.webhook_id).await?
        else {
            return Ok(Err(Skip::Dead("webhook_deleted")));
        };
        if app_active == 0 {
            return Ok(Err(Skip::Dead("app_disabled")));
        }
        if hook.active == 0 {
            return Ok(Err(Skip::Later("webhook_paused")));
        }
        if let Some(thread) = &claimed.thread_id {
            if !store::sees_thread(&mut conn, thread, &app_user).await? {
                return Ok(Err(Skip::Dead("no_longer_visible")));
            }
        }
        drop(conn);
        let key = match self.files.keys.unwrap(
            &hook.secret_kek_id,
            &secret_aad(&hook.id),
            &hook.secret_wrapped,
        ) {
            Ok(key) => key,
            Err(e) => {
                tracing::error!(error = %e, webhook_id = %hook.id, "webhooks: the signing secret does not unwrap");
                return Ok(Err(Skip::Later("secret_unavailable")));
            }
        };
        Ok(Ok((hook.url, key)))
    }

    /// Exponential with "equal jitter": half the delay fixed, half random, so retries
    /// of many deliveries spread out instead of arriving together.
    fn backoff(&self, attempts: i64) -> Duration {
        let base = self.settings.backoff_base.as_millis() as u64;
        let max = self.settings.backoff_max.as_millis() as u64;
        let exp = attempts.clamp(1, 32) as u32 - 1;
        let delay = base.saturating_mul(1u64 << exp.min(30)).min(max).max(1);
        let half = delay / 2;
        Duration::from_millis(half + rand::thread_rng().gen_range(0..=delay - half))
    }
}

enum Failure {
    Send(SendError),
    Skip(Skip),
}
