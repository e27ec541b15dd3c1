//! Workloads 1 and 2: fan-out to one group of 20, and 200 groups with 20 concurrent
//! posters. Every member is on a websocket; posters post over their own socket and wait
//! for each `ack` before the next post (closed loop). Each body carries its index and
//! send time, so every receiving socket records the delivery latency, and the index
//! tells lost, duplicated and misdelivered messages apart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tsunagu_client::protocol::ids::ThreadId;
use tsunagu_client::protocol::messaging::{AddMember, CreateGroup, GroupKind};
use tsunagu_client::protocol::ws::ClientFrame;

use super::baseline::BaselineWs;
use super::report::{Better, Delivery, Report};
use super::stats::{rate, Samples};
use super::target::{Target, User};
use super::wsclient::{self, now_micros, Incoming, Sink, Source};
use super::Sizes;

/// Sockets opened at once.
const CONNECT_CONCURRENCY: usize = 32;
/// How long a post may wait for its ack.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Deliveries still missing after this long without progress are counted lost.
const SETTLE: Duration = Duration::from_secs(5);

/// Who connects, who posts what where.
struct Plan {
    /// Per connection: its token and the threads it follows.
    conns: Vec<(String, BTreeMap<ThreadId, i64>)>,
    /// Per poster: its connection and its posts as `(message index, thread)`.
    posters: Vec<(usize, Vec<(u32, ThreadId)>)>,
    /// Thread of each message index.
    thread_of: Vec<ThreadId>,
    /// Members (connection indexes) of each thread.
    audience: HashMap<ThreadId, usize>,
}

/// What one run of a plan measured.
struct Outcome {
    delivery: Delivery,
    latency: Samples,
    /// Per message: until the last member had it.
    completion: Samples,
    ack: Samples,
    post_window: Duration,
    delivery_window: Duration,
}

/// What one socket saw.
#[derive(Default)]
struct Seen {
    /// `(message index, latency µs)`.
    received: Vec<(u32, u64)>,
    out_of_order: u64,
    last_micros: u64,
    resyncs: u64,
    /// Why the socket ended before the bench closed it.
    closed: Option<String>,
}

async fn reader(
    mut source: Source,
    acks: Option<mpsc::UnboundedSender<Result<(), String>>>,
    delivered: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen::default();
    let mut last_seq: HashMap<ThreadId, i64> = HashMap::new();
    loop {
        let frame = tokio::select! {
            f = source.next() => f,
            _ = stop.changed() => break,
        };
        let text = match frame {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Close(c))) => {
                seen.closed = Some(format!("closed by the server: {c:?}"));
                break;
            }
            None => {
                seen.closed = Some("connection ended".into());
                break;
            }
            Some(Err(e)) => {
                seen.closed = Some(format!("connection error: {e}"));
                break;
            }
            Some(Ok(_)) => continue,
        };
        let now = now_micros();
        let Ok(f) = serde_json::from_str::<Incoming>(text.as_str()) else {
            continue;
        };
        match f.kind.as_str() {
            "message.created" => {
                let Some(m) = f.message else { continue };
                let last = last_seq.entry(m.thread_id).or_insert(0);
                if m.seq <= *last {
                    seen.out_of_order += 1;
                }
                *last = (*last).max(m.seq);
                if let Some((index, sent)) = wsclient::parse_body(&m.body) {
                    seen.received.push((index, now.saturating_sub(sent)));
                    seen.last_micros = now;
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            "ack" => {
                if let Some(a) = &acks {
                    let _ = a.send(Ok(()));
                }
            }
            "error" if f.reference.is_some() => {
                if let Some(a) = &acks {
                    let _ = a.send(Err(f.code.unwrap_or_default()));
                }
            }
            "resync" => {
                seen.resyncs += 1;
                eprintln!("  resync: {}", f.reason.unwrap_or_default());
            }
            _ => {}
        }
    }
    seen
}

struct PostStats {
    acked: Vec<u32>,
    failed: u64,
    /// Why a poster stopped early, if it did.
    stopped: Option<String>,
    ack: Samples,
    first_send: u64,
    last_ack: u64,
}

async fn poster(
    mut sink: Sink,
    mut acks: mpsc::UnboundedReceiver<Result<(), String>>,
    posts: Vec<(u32, ThreadId)>,
    run: String,
) -> (Sink, PostStats) {
    let mut stats = PostStats {
        acked: Vec::with_capacity(posts.len()),
        failed: 0,
        stopped: None,
        ack: Samples::new(),
        first_send: u64::MAX,
        last_ack: 0,
    };
    for (index, thread) in posts {
        let sent = now_micros();
        stats.first_send = stats.first_send.min(sent);
        let frame = ClientFrame::Post {
            reference: Some(index.to_string()),
            thread_id: thread,
            body: wsclient::body(index, sent),
            client_msg_id: format!("{run}-{index}"),
            reply_to: None,
            mentions: Vec::new(),
            attachments: Vec::new(),
        };
        if let Err(e) = sink.send(wsclient::text(&frame)).await {
            stats.failed += 1;
            stats.stopped = Some(format!("sending failed: {e}"));
            break;
        }
        match tokio::time::timeout(ACK_TIMEOUT, acks.recv()).await {
            Ok(Some(Ok(()))) => {
                let now = now_micros();
                stats.ack.push(now - sent);
                stats.last_ack = now;
                stats.acked.push(index);
            }
            Ok(Some(Err(code))) => {
                eprintln!("  post refused: {code}");
                stats.failed += 1;
            }
            Ok(None) => {
                stats.failed += 1;
                stats.stopped = Some("the connection closed".into());
                break;
            }
            Err(_) => {
                stats.failed += 1;
                stats.stopped = Some(format!("no ack within {}s", ACK_TIMEOUT.as_secs()));
                break;
            }
        }
    }
    (sink, stats)
}

async fn execute(url: &str, plan: &Plan, system: &str, workload: &str) -> anyhow::Result<Outcome> {
    execute_on(&[url.to_owned()], plan, system, workload).await
}

/// Runs `plan` with its sockets spread over `urls`: posters on the first, the other
/// members round-robin over all of them (a cluster behind a load balancer).
async fn execute_on(
    urls: &[String],
    plan: &Plan,
    system: &str,
    workload: &str,
) -> anyhow::Result<Outcome> {
    let posting: HashSet<usize> = plan.posters.iter().map(|(c, _)| *c).collect();
    let opened: Vec<(Sink, Source)> = futures_util::stream::iter(plan.conns.iter().enumerate())
        .map(|(i, (token, threads))| {
            let url = if posting.contains(&i) {
                &urls[0]
            } else {
                &urls[i % urls.len()]
            };
            wsclient::open(url, token, threads)
        })
        .buffered(CONNECT_CONCURRENCY)
        .try_collect()
        .await
        .with_context(|| format!("opening {} sockets to {system}", plan.conns.len()))?;
    let poster_of: HashMap<usize, usize> = plan
        .posters
        .iter()
        .enumerate()
        .map(|(p, (c, _))| (*c, p))
        .collect();
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sinks: Vec<Option<Sink>> = Vec::with_capacity(opened.len());
    let mut ack_rxs: HashMap<usize, mpsc::UnboundedReceiver<Result<(), String>>> = HashMap::new();
    let mut readers = Vec::with_capacity(opened.len());
    for (i, (sink, source)) in opened.into_iter().enumerate() {
        let acks = if poster_of.contains_key(&i) {
            let (tx, rx) = mpsc::unbounded_channel();
            ack_rxs.insert(i, rx);
            Some(tx)
        } else {
            None
        };
        readers.push(tokio::spawn(reader(
            source,
            acks,
            delivered.clone(),
            stop_rx.clone(),
        )));
        sinks.push(Some(sink));
    }

    let run = format!("{system}-{workload}-{}", now_micros());
    let mut posting = Vec::new();
    for (conn, posts) in &plan.posters {
        let sink = sinks[*conn].take().context("one connection per poster")?;
        let acks = ack_rxs.remove(conn).context("ack channel")?;
        posting.push(tokio::spawn(poster(sink, acks, posts.clone(), run.clone())));
    }
    let mut acked: HashSet<u32> = HashSet::new();
    let mut stopped = Vec::new();
    let mut failed = 0;
    let mut ack = Samples::new();
    let (mut first_send, mut last_ack) = (u64::MAX, 0);
    for p in posting {
        let (sink, stats) = p.await?;
        if let Some(why) = &stats.stopped {
            eprintln!(
                "  a poster stopped after {} posts: {why}",
                stats.acked.len()
            );
            stopped.push(why.clone());
        }
        sinks.push(Some(sink));
        acked.extend(stats.acked);
        failed += stats.failed;
        ack.merge(&stats.ack);
        first_send = first_send.min(stats.first_send);
        last_ack = last_ack.max(stats.last_ack);
    }

    let expected: u64 = acked
        .iter()
        .map(|i| plan.audience[&plan.thread_of[*i as usize]] as u64)
        .sum();
    let mut last_count = delivered.load(Ordering::Relaxed);
    let mut last_progress = Instant::now();
    while delivered.load(Ordering::Relaxed) < expected {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = delivered.load(Ordering::Relaxed);
        if now != last_count {
            last_count = now;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > SETTLE {
            break;
        }
    }
    let _ = stop_tx.send(true);
    let mut seen = Vec::with_capacity(readers.len());
    for r in readers {
        seen.push(r.await?);
    }
    // Close politely so the server is not left with half-open sockets.
    futures_util::stream::iter(sinks.into_iter().flatten())
        .for_each_concurrent(256, |mut s| async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.close()).await;
        })
        .await;

    let mut latency = Samples::new();
    let mut worst: HashMap<u32, u64> = HashMap::new();
    let mut d = Delivery {
        workload: workload.to_owned(),
        system: system.to_owned(),
        posts: acked.len() as u64 + failed,
        failed_posts: failed,
        expected_deliveries: expected,
        ..Default::default()
    };
    let mut last_delivery = 0;
    for (conn, s) in seen.iter().enumerate() {
        let follows = &plan.conns[conn].1;
        let mut got: HashMap<u32, u32> = HashMap::new();
        for (index, lat) in &s.received {
            *got.entry(*index).or_default() += 1;
            latency.push(*lat);
            let w = worst.entry(*index).or_default();
            *w = (*w).max(*lat);
        }
        d.delivered += s.received.len() as u64;
        d.out_of_order += s.out_of_order;
        last_delivery = last_delivery.max(s.last_micros);
        for (index, n) in &got {
            let thread = plan.thread_of[*index as usize];
            if !follows.contains_key(&thread) || !acked.contains(index) {
                d.misdelivered += u64::from(*n);
            } else {
                d.duplicated += u64::from(n - 1);
            }
        }
        for index in &acked {
            let thread = plan.thread_of[*index as usize];
            if follows.contains_key(&thread) && !got.contains_key(index) {
                d.lost += 1;
            }
        }
        if let Some(why) = &s.closed {
            eprintln!("  connection {conn} ended early: {why}");
            d.connections_lost += 1;
        }
        if s.resyncs > 0 {
            eprintln!("  connection {conn} was told to resync {} times", s.resyncs);
        }
    }
    let mut completion = Samples::new();
    completion.extend(worst.values().copied());
    d.posters_stopped = stopped;
    Ok(Outcome {
        delivery: d,
        latency,
        completion,
        ack,
        post_window: Duration::from_micros(last_ack.saturating_sub(first_send)),
        delivery_window: Duration::from_micros(last_delivery.saturating_sub(first_send)),
    })
}

/// A group owned by `owner` with `members` added; returns its main thread.
async fn make_group(owner: &User, members: &[&User], name: String) -> anyhow::Result<ThreadId> {
    let group = owner
        .client
        .create_group(&CreateGroup {
            kind: GroupKind::Free,
            name,
            description: None,
            patient: None,
        })
        .await
        .context("creating a group")?;
    for m in members {
        owner
            .client
            .add_member(
                group.id,
                &AddMember {
                    user_id: m.id,
                    role: None,
                    patient_side: None,
                },
            )
            .await
            .context("adding a member")?;
    }
    Ok(group.main_thread_id)
}

fn record(report: &mut Report, workload: &str, ours: &mut Outcome, base: &mut Outcome) {
    let posts = ours.delivery.posts as f64;
    let base_posts = base.delivery.posts as f64;
    report.figure(
        workload,
        "posts/s",
        "1/s",
        Better::Higher,
        rate(posts, ours.post_window),
        Some(rate(base_posts, base.post_window)),
        None,
    );
    if workload != "fanout" {
        report.figure(
            workload,
            "deliveries/s",
            "1/s",
            Better::Higher,
            rate(ours.delivery.delivered as f64, ours.delivery_window),
            Some(rate(base.delivery.delivered as f64, base.delivery_window)),
            None,
        );
    }
    for p in [50.0, 95.0, 99.0] {
        report.figure(
            workload,
            &format!("delivery latency p{p:.0}"),
            "ms",
            Better::Lower,
            ours.latency.percentile_ms(p),
            Some(base.latency.percentile_ms(p)),
            None,
        );
    }
    report.figure(
        workload,
        "whole-audience delivery p99",
        "ms",
        Better::Lower,
        ours.completion.percentile_ms(99.0),
        Some(base.completion.percentile_ms(99.0)),
        Some("until the last member has it".into()),
    );
    report.figure(
        workload,
        "post ack round trip p50",
        "ms",
        Better::Lower,
        ours.ack.percentile_ms(50.0),
        Some(base.ack.percentile_ms(50.0)),
        None,
    );
    report.delivery(ours.delivery.clone());
    report.delivery(base.delivery.clone());
}

/// Workload 1: one group of 20 members on websockets, one poster, closed loop.
pub async fn fanout(
    target: &Target,
    users: &[User],
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let n = sizes.fanout_members;
    if users.len() < n {
        bail!("need {n} users");
    }
    let members: Vec<&User> = users[1..n].iter().collect();
    let thread = make_group(&users[0], &members, format!("{} fan-out", target.run_id)).await?;
    let follow: BTreeMap<ThreadId, i64> = [(thread, 0)].into();
    let m = sizes.fanout_messages as u32;
    let plan = Plan {
        conns: users[..n]
            .iter()
            .map(|u| (u.token(), follow.clone()))
            .collect(),
        posters: vec![(0, (0..m).map(|i| (i, thread)).collect())],
        thread_of: vec![thread; m as usize],
        audience: [(thread, n)].into(),
    };
    eprintln!("  tsunagu: {m} posts to a group of {n}");
    let mut ours = execute(&target.ws_url(), &plan, "tsunagu", "fanout").await?;
    let baseline = BaselineWs::spawn().await?;
    eprintln!("  baseline: {m} posts to a group of {n}");
    let mut base = execute(&baseline.url(), &plan, "baseline", "fanout").await?;
    drop(baseline);
    record(report, "fanout", &mut ours, &mut base);
    Ok(())
}

/// Workload 2: many groups of 10, several concurrent posters.
pub async fn groups(
    target: &Target,
    users: &[User],
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let plan = groups_plan(target, users, sizes).await?;
    eprintln!(
        "  tsunagu: {} posts by {} posters into {} groups ({} sockets)",
        plan.thread_of.len(),
        sizes.posters,
        sizes.groups,
        plan.conns.len()
    );
    let mut ours = execute(&target.ws_url(), &plan, "tsunagu", "groups").await?;
    let baseline = BaselineWs::spawn().await?;
    eprintln!("  baseline: the same");
    let mut base = execute(&baseline.url(), &plan, "baseline", "groups").await?;
    drop(baseline);
    record(report, "groups", &mut ours, &mut base);
    Ok(())
}

/// The groups workload across two nodes of a cluster (PostgreSQL + NATS): posters on
/// node A, the other members spread over A and B. Beside it, in the same run, the same
/// plan with every socket on node A: the difference is what crossing nodes adds.
pub async fn cluster(
    a: &Target,
    b: &Target,
    users: &[User],
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let plan = groups_plan(a, users, sizes).await?;
    eprintln!(
        "  one node (PostgreSQL): {} posts, {} sockets",
        plan.thread_of.len(),
        plan.conns.len()
    );
    let mut single = execute_on(&[a.ws_url()], &plan, "tsunagu-1-node", "cluster").await?;
    // The same groups again, with fresh posts (new client_msg_ids per run).
    eprintln!("  two nodes over NATS: the same, half the members on node B");
    let mut two = execute_on(
        &[a.ws_url(), b.ws_url()],
        &plan,
        "tsunagu-2-nodes",
        "cluster",
    )
    .await?;
    record(report, "cluster", &mut two, &mut single);
    let added50 = two.latency.percentile_ms(50.0) - single.latency.percentile_ms(50.0);
    let added99 = two.latency.percentile_ms(99.0) - single.latency.percentile_ms(99.0);
    report.figure(
        "cluster",
        "added delivery latency p50 (two nodes − one)",
        "ms",
        Better::Lower,
        added50,
        None,
        Some("baseline column of this workload: the same plan on one node".into()),
    );
    report.figure(
        "cluster",
        "added delivery latency p99 (two nodes − one)",
        "ms",
        Better::Lower,
        added99,
        None,
        None,
    );
    Ok(())
}

/// The groups plan: groups created on `target`, posts assigned round-robin.
async fn groups_plan(target: &Target, users: &[User], sizes: &Sizes) -> anyhow::Result<Plan> {
    let (g_count, posters_n, others_n) = (sizes.groups, sizes.posters, sizes.group_others);
    let per_group_others = sizes.group_members - 1;
    if users.len() < posters_n + others_n || others_n < per_group_others {
        bail!("need {} users", posters_n + others_n);
    }
    let posters = &users[..posters_n];
    let others = &users[posters_n..posters_n + others_n];
    let setup = Instant::now();
    let threads: Vec<ThreadId> = futures_util::stream::iter(0..g_count)
        .map(|g| {
            let owner = &posters[g % posters_n];
            let members: Vec<&User> = (0..per_group_others)
                .map(|j| &others[(g * per_group_others + j) % others_n])
                .collect();
            let name = format!("{} group {g}", target.run_id);
            async move { make_group(owner, &members, name).await }
        })
        .buffered(8)
        .try_collect()
        .await?;
    eprintln!(
        "  setup: {g_count} groups of {} ({:.1}s)",
        sizes.group_members,
        setup.elapsed().as_secs_f64()
    );
    // Connections: posters first, then the others; each follows its groups.
    let mut follows: Vec<BTreeMap<ThreadId, i64>> = vec![BTreeMap::new(); posters_n + others_n];
    for (g, t) in threads.iter().enumerate() {
        follows[g % posters_n].insert(*t, 0);
        for j in 0..per_group_others {
            follows[posters_n + (g * per_group_others + j) % others_n].insert(*t, 0);
        }
    }
    let total = sizes.group_posts as u32;
    let mut thread_of = Vec::with_capacity(total as usize);
    let mut per_poster: Vec<Vec<(u32, ThreadId)>> = vec![Vec::new(); posters_n];
    let mut round = vec![0_usize; posters_n];
    for i in 0..total {
        let p = i as usize % posters_n;
        let mine: Vec<ThreadId> = follows[p].keys().copied().collect();
        let t = mine[round[p] % mine.len()];
        round[p] += 1;
        per_poster[p].push((i, t));
        thread_of.push(t);
    }
    let plan = Plan {
        conns: users[..posters_n + others_n]
            .iter()
            .zip(follows)
            .map(|(u, f)| (u.token(), f))
            .collect(),
        posters: per_poster.into_iter().enumerate().collect(),
        thread_of,
        audience: threads.iter().map(|t| (*t, sizes.group_members)).collect(),
    };
    Ok(plan)
}
