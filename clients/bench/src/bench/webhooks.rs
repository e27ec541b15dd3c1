//! Workload `webhooks`: deliveries per second to a local receiver, and what ten
//! subscribed webhooks cost posting.
//!
//! | figure | baseline |
//! | --- | --- |
//! | webhook deliveries/s | the same number of signed POSTs sent by this process straight to the same receiver, one in flight per webhook (what any deliverer must at least do, without an outbox) |
//! | post ack p50/p99 with 10 webhooks | the same posts into the same groups, whose members include the same ten apps, before their webhooks exist |
//!
//! The receiver is an axum server in this process on loopback answering 204 at once.
//! The apps are registered through `POST /admin/api-clients`; a spawned server allows
//! `http` and loopback webhooks (a `--server` must be configured to, `[webhooks]`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{StreamExt, TryStreamExt};
use tsunagu_client::protocol::apps::{CreateApiClient, Scope};
use tsunagu_client::protocol::ids::{ApiClientId, ThreadId, UserId};
use tsunagu_client::protocol::messaging::{AddMember, CreateGroup, GroupKind};
use tsunagu_client::protocol::webhooks::{CreateWebhook, WebhookEventType};

use super::core::post_loop;
use super::report::{Better, Report};
use super::stats::{rate, Samples};
use super::target::{Target, User};
use super::Sizes;

const WEBHOOKS: usize = 10;
const POSTERS: usize = 4;

/// Counts what arrives.
#[derive(Default)]
struct Counter {
    received: AtomicU64,
    last_micros: AtomicU64,
}

async fn receiver() -> anyhow::Result<(String, Arc<Counter>, tokio::task::JoinHandle<()>)> {
    let counter = Arc::new(Counter::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let c = counter.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |_body: axum::body::Bytes| {
            let c = c.clone();
            async move {
                c.received.fetch_add(1, Ordering::Relaxed);
                c.last_micros
                    .store(super::wsclient::now_micros(), Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/hook"), counter, task))
}

/// An API client and its app account, registered as an administrator does it.
async fn app_account(target: &Target, i: usize) -> anyhow::Result<(ApiClientId, UserId)> {
    let created = target
        .admin
        .create_api_client(&CreateApiClient {
            name: format!("{} bench app {i}", target.run_id),
            scopes: vec![Scope::MessagesRead],
            description: None,
            jwks: None,
            requests_per_minute: None,
        })
        .await
        .context("registering an app")?;
    Ok((created.id, created.user_id))
}

/// `POSTERS` closed-loop posters, each into its own group, `per` posts each.
async fn post_round(
    target: &Target,
    users: &[User],
    threads: &[ThreadId],
    per: usize,
    tag: &str,
) -> anyhow::Result<(Samples, Duration)> {
    let started = Instant::now();
    let tasks: Vec<_> = threads
        .iter()
        .enumerate()
        .map(|(i, t)| {
            tokio::spawn(post_loop(
                target.ws_url(),
                users[i % users.len()].token(),
                *t,
                per,
                format!("{}-{tag}{i}", target.run_id),
            ))
        })
        .collect();
    let mut acks = Samples::new();
    for t in tasks {
        acks.merge(&t.await??);
    }
    Ok((acks, started.elapsed()))
}

pub async fn run(
    target: &Target,
    users: &[User],
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let per = sizes.webhook_posts / POSTERS;
    let owner = users.first().context("need a user")?;
    let threads: Vec<(tsunagu_client::protocol::ids::GroupId, ThreadId)> =
        futures_util::stream::iter(0..POSTERS)
            .map(|i| {
                let user = &users[i % users.len()];
                let name = format!("{} webhooks {i}", target.run_id);
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
                    Ok::<_, anyhow::Error>((g.id, g.main_thread_id))
                }
            })
            .buffered(4)
            .try_collect()
            .await?;
    let mut apps = Vec::new();
    for i in 0..WEBHOOKS {
        apps.push(app_account(target, i).await?);
    }
    for (i, (group, _)) in threads.iter().enumerate() {
        let poster = &users[i % users.len()];
        for (_, app_user) in &apps {
            poster
                .client
                .add_member(
                    *group,
                    &AddMember {
                        user_id: *app_user,
                        role: None,
                        patient_side: None,
                    },
                )
                .await?;
        }
    }
    let _ = owner;
    let thread_ids: Vec<ThreadId> = threads.iter().map(|(_, t)| *t).collect();

    // 1. The same posts with the apps in the groups but no webhook yet.
    eprintln!("  without webhooks: {POSTERS} posters × {per} posts");
    let (mut plain, plain_window) = post_round(target, users, &thread_ids, per, "p").await?;

    // 2. Ten webhooks to the local receiver; the same posts; then wait for every delivery.
    let (url, counter, server) = receiver().await?;
    for (client_id, _) in &apps {
        target
            .admin
            .create_webhook(
                *client_id,
                &CreateWebhook {
                    url: url.clone(),
                    events: vec![WebhookEventType::MessageCreated],
                },
            )
            .await
            .context("creating a webhook (the server must allow http and loopback webhooks)")?;
    }
    eprintln!("  with {WEBHOOKS} webhooks: {POSTERS} posters × {per} posts");
    let first = super::wsclient::now_micros();
    let (mut hooked, hooked_window) = post_round(target, users, &thread_ids, per, "h").await?;
    let expected = (POSTERS * per * WEBHOOKS) as u64;
    let mut last_progress = (Instant::now(), 0);
    loop {
        let got = counter.received.load(Ordering::Relaxed);
        if got >= expected {
            break;
        }
        if got != last_progress.1 {
            last_progress = (Instant::now(), got);
        } else if last_progress.0.elapsed() > Duration::from_secs(30) {
            bail!("deliveries stalled at {got} of {expected}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = counter.last_micros.load(Ordering::Relaxed);
    let delivered = counter.received.load(Ordering::Relaxed);
    let deliver_rate = rate(
        delivered as f64,
        Duration::from_micros(last.saturating_sub(first)),
    );

    // 3. Baseline: the same number of signed POSTs straight to the receiver, one in
    // flight per webhook.
    let before = counter.received.load(Ordering::Relaxed);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let per_hook = (expected as usize) / WEBHOOKS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..WEBHOOKS)
        .map(|w| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                for i in 0..per_hook {
                    let id = format!("b{w}-{i}");
                    let body = format!(r#"{{"id":"{id}","type":"message.created","data":{{}}}}"#);
                    let ts = (super::wsclient::now_micros() / 1_000_000) as i64;
                    let sig = tsunagu_client::webhooks::sign(secret, &id, ts, body.as_bytes())
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    let r = http
                        .post(&url)
                        .header("webhook-id", &id)
                        .header("webhook-timestamp", ts.to_string())
                        .header("webhook-signature", sig)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await?;
                    if !r.status().is_success() {
                        bail!("baseline POST answered {}", r.status());
                    }
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let base_rate = rate(
        (counter.received.load(Ordering::Relaxed) - before) as f64,
        started.elapsed(),
    );
    server.abort();

    report.figure(
        "webhooks",
        "webhook deliveries/s",
        "deliveries/s",
        Better::Higher,
        deliver_rate,
        Some(base_rate),
        Some(format!(
            "{WEBHOOKS} webhooks × {} posts, durable outbox, one in flight per webhook; baseline: the same signed POSTs sent directly",
            POSTERS * per
        )),
    );
    report.figure(
        "webhooks",
        "post ack p50, 10 webhooks",
        "ms",
        Better::Lower,
        hooked.percentile_ms(50.0),
        Some(plain.percentile_ms(50.0)),
        Some("baseline: the same posts before the webhooks existed".into()),
    );
    report.figure(
        "webhooks",
        "post ack p99, 10 webhooks",
        "ms",
        Better::Lower,
        hooked.percentile_ms(99.0),
        Some(plain.percentile_ms(99.0)),
        Some("baseline: the same posts before the webhooks existed".into()),
    );
    report.figure(
        "webhooks",
        "posts/s, 10 webhooks",
        "posts/s",
        Better::Higher,
        rate((POSTERS * per) as f64, hooked_window),
        Some(rate((POSTERS * per) as f64, plain_window)),
        None,
    );
    Ok(())
}
