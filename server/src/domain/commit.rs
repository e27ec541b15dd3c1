//! Group commit for posts. Posts that arrive while a transaction is committing wait in
//! a queue; the next transaction takes all of them (up to a bound), each inside its
//! own savepoint, and commits once. A commit — the fsync on SQLite, the WAL flush on
//! PostgreSQL — is the expensive part of a post, so a busy thread or region pays it
//! once per batch instead of once per message.
//!
//! What does not change: each post is acknowledged only after the commit that holds
//! it; each gets its gap-free `seq` from the same transaction; a retried
//! `client_msg_id` returns the original (also within one batch); a post that fails its
//! checks is refused alone, the others stand: every check reads before anything is
//! written (`Shared::post_in_tx`), so a refusal leaves nothing to undo. A database
//! error fails the whole batch (nothing of it was acknowledged; posters retry with
//! their `client_msg_id`s).

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot, Mutex};
use tsunagu_protocol::ids::ThreadId;
use tsunagu_protocol::messaging::{Message, PostMessage};
use tsunagu_protocol::webhooks::WebhookEventType;

use super::access::Member;
use super::error::{DomainError, Result};
use super::messages::{Messages, Posted};
use super::shared::Shared;
use super::webhooks;
use crate::store::Backend;

/// Most posts one transaction takes.
const MAX_BATCH: usize = 128;
/// Posts waiting for a transaction; beyond it posters wait for room.
const QUEUE: usize = 4096;

pub(super) struct PostJob {
    member: Member,
    thread_id: ThreadId,
    req: PostMessage,
    reply: oneshot::Sender<Result<(Message, bool)>>,
}

/// The queue in front of the committers. Started on first use, inside the runtime.
#[derive(Default)]
pub(super) struct GroupCommit {
    queue: OnceLock<mpsc::Sender<PostJob>>,
}

impl Messages {
    /// Queues a post for the next batch and waits for its commit.
    pub(super) async fn commit_post(
        &self,
        member: Member,
        thread_id: ThreadId,
        req: PostMessage,
    ) -> Result<(Message, bool)> {
        let queue = self.commit.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            let rx = Arc::new(Mutex::new(rx));
            // SQLite has one writer at a time: one committer. PostgreSQL takes several
            // transactions at once; posts to one thread still serialise on its row.
            let committers = match self.shared.store().backend() {
                Backend::Sqlite => 1,
                Backend::Postgres => 4,
            };
            for _ in 0..committers {
                tokio::spawn(run(self.shared.clone(), rx.clone()));
            }
            tx
        });
        let (reply, answer) = oneshot::channel();
        queue
            .send(PostJob {
                member,
                thread_id,
                req,
                reply,
            })
            .await
            .map_err(|_| DomainError::Internal("post queue closed".into()))?;
        answer
            .await
            .map_err(|_| DomainError::Internal("post dropped before commit".into()))?
    }
}

impl Shared {
    /// One transaction for `jobs`; answers each after the commit.
    async fn commit_batch(&self, jobs: Vec<PostJob>) {
        metrics::histogram!("tsunagu_post_batch_size").record(jobs.len() as f64);
        let mut tx = match self.store().begin().await {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(error = %e, "group commit: begin failed");
                fail_all(jobs, &format!("begin: {e}"));
                return;
            }
        };
        let mut results: Vec<(PostJob, Result<Posted>)> = Vec::with_capacity(jobs.len());
        let mut pending = jobs.into_iter();
        while let Some(job) = pending.next() {
            let outcome = self
                .post_in_tx(&mut tx, &job.member, &job.thread_id, &job.req)
                .await;
            // A database error leaves the transaction unusable (PostgreSQL aborts it):
            // the batch fails as a whole and its posters retry with their ids.
            if let Err(DomainError::Internal(cause)) = &outcome {
                tracing::error!(error = %cause, "group commit: a post failed; rolling the batch back");
                let cause = format!("batch rolled back: {cause}");
                let _ = tx.rollback().await;
                let done = results.into_iter().map(|(job, _)| job);
                fail_all(done.chain(std::iter::once(job)).chain(pending), &cause);
                return;
            }
            results.push((job, outcome));
        }
        // Each author has read their thread up to their own (last) post of the batch.
        let mut positions: std::collections::BTreeMap<(String, String), i64> = Default::default();
        for (_, r) in &results {
            if let Some((thread, author, seq)) = r.as_ref().ok().and_then(Posted::read_position) {
                let e = positions.entry((thread, author)).or_insert(seq);
                *e = (*e).max(seq);
            }
        }
        let stored = !positions.is_empty();
        if stored {
            let positions: Vec<(String, String, i64)> =
                positions.into_iter().map(|((t, a), s)| (t, a, s)).collect();
            if let Err(e) =
                crate::store::threads::advance_reads(&mut tx, &positions, crate::clock::now_ms())
                    .await
            {
                tracing::error!(error = %e, "group commit: read positions failed; rolling the batch back");
                let _ = tx.rollback().await;
                fail_all(
                    results.into_iter().map(|(job, _)| job),
                    &format!("batch rolled back: {e}"),
                );
                return;
            }
        }
        if stored {
            // Webhooks hear of the batch's posts in the same transaction (last, so their
            // locks come after every thread's).
            let events = results
                .iter()
                .filter_map(|(_, r)| match r {
                    Ok(Posted::New(message, reader)) => Some(webhooks::Event::message(
                        WebhookEventType::MessageCreated,
                        &reader.member.session().region_id().to_string(),
                        message,
                    )),
                    _ => None,
                })
                .collect();
            if let Err(e) = webhooks::enqueue(&mut tx, events).await {
                tracing::error!(error = %e, "group commit: webhook outbox failed; rolling the batch back");
                let _ = tx.rollback().await;
                fail_all(
                    results.into_iter().map(|(job, _)| job),
                    &format!("batch rolled back: {e}"),
                );
                return;
            }
        }
        let committed = if stored {
            tx.commit().await.map_err(|e| e.to_string())
        } else {
            // Nothing written (retries, refusals): no commit to wait for.
            tx.rollback().await.map_err(|e| e.to_string())
        };
        for (job, outcome) in results {
            let answer = match (outcome, &committed) {
                (Ok(Posted::New(message, reader)), Ok(())) => {
                    self.publish_post(&reader, &message);
                    Ok((message, true))
                }
                (Ok(Posted::Existing(message)), _) => Ok((message, false)),
                (Ok(Posted::New(..)), Err(e)) => {
                    tracing::error!(error = %e, "group commit: commit failed");
                    Err(DomainError::Internal(format!("commit: {e}").into()))
                }
                (Err(e), _) => Err(e),
            };
            let _ = job.reply.send(answer);
        }
    }
}

/// Answers every post of a batch that cannot commit: nothing of it was stored, and each
/// poster retries with its `client_msg_id`.
fn fail_all(jobs: impl IntoIterator<Item = PostJob>, cause: &str) {
    for job in jobs {
        let _ = job
            .reply
            .send(Err(DomainError::Internal(cause.to_owned().into())));
    }
}

/// A committer: takes what is waiting, commits it, repeats. Ends when the queue's
/// sender (held by [`Messages`]) is dropped with the domain; it holds the store and
/// bus only, never the queue, so nothing keeps the domain alive.
async fn run(shared: Shared, rx: Arc<Mutex<mpsc::Receiver<PostJob>>>) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        shared.commit_batch(batch).await;
    }
}
