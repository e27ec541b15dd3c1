//! Workloads 5 and 6: timeline paging over a thread of a million messages, and audit
//! reports over a million audit entries. Both seed the server's SQLite file directly
//! (bench-only shortcut, one transaction each) through the server's own store and audit
//! functions — the same rows, seqs and hash chain the server would write — and compare
//! each request with the same store function called straight on the database file.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use tsunagu_client::protocol::ids::GroupId;
use tsunagu_client::protocol::messaging::{CreateGroup, GroupKind};
use tsunagu_client::AuditFilter;
use tsunagu_server::audit::report::{self, ReportFilter};
use tsunagu_server::audit::{self, Action, Actor, Event, Outcome, RequestMeta};
use tsunagu_server::store::messages::{self, MessageRow};
use tsunagu_server::store::{threads, Store};

use super::report::{Better, Report};
use super::stats::{mib, rate, Samples};
use super::target::{Target, User};
use super::Sizes;

/// Rows built and written per step while seeding: memory stays flat however many.
const SEED_BATCH: i64 = 10_000;
/// Rows per page of the server's CSV export.
const EXPORT_PAGE: i64 = 1000;
/// An export (or its direct-SQL baseline) still running after this long is stopped
/// and its rate reported over the rows read so far.
const EXPORT_LIMIT: Duration = Duration::from_secs(300);

/// The server's own store on its SQLite file (which must exist: the server made it).
async fn connect(path: &Path) -> anyhow::Result<Store> {
    Store::connect(&format!("sqlite://{}", path.display()), 1)
        .await
        .with_context(|| format!("opening {}", path.display()))
}

fn database(target: &Target) -> anyhow::Result<&Path> {
    target.database.as_deref().context(
        "this workload seeds the SQLite database directly: use --spawn, or give --database",
    )
}

async fn fresh_group(user: &User, name: String) -> anyhow::Result<(GroupId, String)> {
    let g = user
        .client
        .create_group(&CreateGroup {
            kind: GroupKind::Free,
            name,
            description: None,
            patient: None,
        })
        .await?;
    Ok((g.id, g.main_thread_id.to_string()))
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Workload 5.
pub async fn paging(
    target: &Target,
    users: &[User],
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let path = database(target)?;
    let user = users.first().context("need a user")?;
    let (_, thread) = fresh_group(user, format!("{} timeline", target.run_id)).await?;
    let n = sizes.paging_messages;

    eprintln!("  seeding {n} messages into one thread (one transaction)");
    let t = Instant::now();
    let store = connect(path).await?;
    let mut tx = store.begin().await?;
    let last = threads::take_seqs(&mut tx, &thread, n).await?;
    if last != n {
        bail!("the new thread already has messages");
    }
    let (author, start_ms) = (user.id.to_string(), now_ms() - n - 1000);
    let mut seq = 1;
    while seq <= n {
        let rows: Vec<MessageRow> = (seq..=n.min(seq + SEED_BATCH - 1))
            .map(|k| MessageRow {
                id: uuid::Uuid::now_v7().to_string(),
                thread_id: thread.clone(),
                seq: k,
                author_id: author.clone(),
                client_msg_id: format!("seed-{k}"),
                body: format!(
                    "訪問時バイタル安定。食事摂取良好、服薬確認済み。次回訪問で褥瘡の経過を確認します。#{k}"
                ),
                reply_to: None,
                mentions: "[]".into(),
                attachments: "[]".into(),
                created_at: start_ms + k,
                edited_at: None,
                deleted_at: None,
            })
            .collect();
        seq += rows.len() as i64;
        messages::insert_many(&mut tx, &rows)
            .await
            .context("seeding messages")?;
    }
    tx.commit().await?;
    let seed_secs = t.elapsed().as_secs_f64();
    eprintln!("  seeded in {seed_secs:.1}s");
    report.extra("paging_seed_secs", serde_json::json!(seed_secs));

    let thread_id = thread.parse().context("thread id")?;
    let deep_before = n / 2 + 1;
    let (mut latest, mut deep) = (Samples::new(), Samples::new());
    let (mut latest_sql, mut deep_sql) = (Samples::new(), Samples::new());
    // Warm both paths once.
    user.client
        .list_messages(thread_id, None, None, Some(50))
        .await?;
    for _ in 0..sizes.paging_repeats {
        let t = Instant::now();
        let page = user
            .client
            .list_messages(thread_id, None, None, Some(50))
            .await?;
        latest.push_duration(t.elapsed());
        if page.messages.len() != 50 || page.messages.last().map(|m| m.seq) != Some(n) {
            bail!("the latest page is not the last 50 messages");
        }
        let t = Instant::now();
        let page = user
            .client
            .list_messages(thread_id, None, Some(deep_before), Some(50))
            .await?;
        deep.push_duration(t.elapsed());
        if page.messages.len() != 50 || page.messages.last().map(|m| m.seq) != Some(n / 2) {
            bail!("the deep page is not the 50 messages before {deep_before}");
        }
    }
    let mut conn = store.conn().await?;
    for _ in 0..sizes.paging_repeats {
        for (before, samples) in [(None, &mut latest_sql), (Some(deep_before), &mut deep_sql)] {
            let t = Instant::now();
            let rows = messages::page(&mut conn, &thread, None, before, 51).await?;
            samples.push_duration(t.elapsed());
            if rows.len() != 51 {
                bail!("the store returned {} rows", rows.len());
            }
        }
    }
    drop(conn);
    store.close().await;
    for (what, ours, base) in [
        ("latest 50", &mut latest, &mut latest_sql),
        ("deep page (middle)", &mut deep, &mut deep_sql),
    ] {
        for p in [50.0, 99.0] {
            report.figure(
                "paging",
                &format!("{what} p{p:.0}"),
                "ms",
                Better::Lower,
                ours.percentile_ms(p),
                Some(base.percentile_ms(p)),
                None,
            );
        }
    }
    Ok(())
}

/// Appends `rows` entries to the audit chain in one transaction, through the server's
/// own `audit::append_many`: about one in a thousand concerns `file_id`, the rest other
/// files' access and sign-ins.
async fn seed_audit(
    store: &Store,
    rows: i64,
    region_id: &str,
    actors: &[String],
    file_id: &str,
    group_id: &str,
) -> anyhow::Result<()> {
    let mut tx = store.begin().await?;
    let others: Vec<String> = (0..2000)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let mut k = 0_i64;
    while k < rows {
        let end = rows.min(k + SEED_BATCH);
        let batch = (k..end).map(|k| {
            let actor = Actor {
                user_id: Some(actors[k as usize % actors.len()].clone()),
                organization_id: None,
                region_id: Some(region_id.to_owned()),
            };
            let other = || others[k as usize % others.len()].clone();
            let (action, file) = if k % 1000 == 500 {
                let action = if k % 3000 == 500 {
                    Action::FileMetadataViewed
                } else {
                    Action::FileDownloaded
                };
                (action, Some(file_id.to_owned()))
            } else {
                match k % 10 {
                    0..=3 => (Action::FileDownloaded, Some(other())),
                    4 | 5 => (Action::FileMetadataViewed, Some(other())),
                    6..=8 => (Action::LoginSucceeded, None),
                    _ => (Action::TokenRefreshed, None),
                }
            };
            let event = Event::new(action, Outcome::Success, &actor);
            let event = match file {
                Some(file) => event
                    .target("file", file.clone())
                    .file(file)
                    .group(group_id),
                None => event.target("user", actor.user_id.clone().unwrap_or_default()),
            };
            let meta = RequestMeta {
                ip: Some("127.0.0.1".into()),
                user_agent: Some("tsunagu-bench".into()),
                request_id: Some(format!("00000000-0000-4000-8000-{k:012x}")),
            };
            (meta, event)
        });
        audit::append_many(&mut tx, batch).await?;
        k = end;
    }
    tx.commit().await?;
    Ok(())
}

/// Workload 6.
pub async fn audit(
    target: &Target,
    users: &[User],
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let path = database(target)?;
    let user = users.first().context("need a user")?;
    let (group, thread) = fresh_group(user, format!("{} audit", target.run_id)).await?;
    let file = user
        .client
        .upload_file(
            thread.parse().context("thread id")?,
            "訪問看護計画書.pdf",
            futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                b"%PDF-1.4 bench",
            ))]),
            None,
        )
        .await?;
    let rows = sizes.audit_rows;
    eprintln!("  seeding {rows} audit entries, hash-chained (one transaction)");
    let t = Instant::now();
    let store = connect(path).await?;
    let actors: Vec<String> = users.iter().map(|u| u.id.to_string()).collect();
    seed_audit(
        &store,
        rows,
        &target.region_id,
        &actors,
        &file.id,
        &group.to_string(),
    )
    .await
    .context("seeding the audit log")?;
    let seed_secs = t.elapsed().as_secs_f64();
    eprintln!("  seeded in {seed_secs:.1}s");
    report.extra("audit_seed_secs", serde_json::json!(seed_secs));

    let admin = &target.admin;
    // (a) One file's access report (a JSON page holding all of it).
    let filter = AuditFilter {
        file_id: Some(file.id.clone()),
        limit: Some(1000),
        ..Default::default()
    };
    let first = admin.audit_file_access(&filter).await?;
    let entries = first.entries.len();
    if entries < (rows / 1000) as usize {
        bail!("the file's report has {entries} entries");
    }
    let mut ours = Samples::new();
    for _ in 0..sizes.audit_repeats {
        let t = Instant::now();
        let page = admin.audit_file_access(&filter).await?;
        ours.push_duration(t.elapsed());
        if page.entries.len() < entries {
            bail!("the file's report shrank");
        }
    }
    let mut conn = store.conn().await?;
    let file_filter = ReportFilter {
        region_id: target.region_id.clone(),
        file_access_only: true,
        file_id: Some(file.id.clone()),
        ..Default::default()
    };
    let mut base = Samples::new();
    for _ in 0..sizes.audit_repeats {
        let t = Instant::now();
        let found = report::page(&mut conn, &file_filter, 0, 1001).await?;
        base.push_duration(t.elapsed());
        if found.len() < entries {
            bail!("the store found {} entries", found.len());
        }
    }
    for p in [50.0, 99.0] {
        report.figure(
            "audit",
            &format!("one file's access report ({entries} of {rows}) p{p:.0}"),
            "ms",
            Better::Lower,
            ours.percentile_ms(p),
            Some(base.percentile_ms(p)),
            None,
        );
    }

    // (b) The full CSV export of every entry.
    let rss = target.rss();
    let idle = rss.and_then(|r| r.now());
    let watch = rss.map(|r| r.watch());
    let t = Instant::now();
    let mut export = admin
        .audit_events_csv(&AuditFilter::default())
        .await
        .context("exporting")?;
    let (mut lines, mut bytes) = (0_u64, 0_u64);
    let mut cut = false;
    while let Some(chunk) = export.body.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        if t.elapsed() > EXPORT_LIMIT {
            cut = true;
            break;
        }
    }
    drop(export);
    let export_time = t.elapsed();
    let peak = watch.map(|w| w.finish());
    let exported = lines.saturating_sub(1);
    if !cut && exported < rows as u64 {
        bail!("the export has {exported} rows, fewer than the {rows} seeded");
    }
    let export_filter = ReportFilter {
        region_id: target.region_id.clone(),
        max_seq: Some(report::head_seq(&mut conn).await?),
        ..Default::default()
    };
    let t = Instant::now();
    let mut after = 0_i64;
    let mut direct = 0_u64;
    loop {
        let page = report::page(&mut conn, &export_filter, after, EXPORT_PAGE).await?;
        direct += page.len() as u64;
        match page.last() {
            Some(r) if page.len() as i64 == EXPORT_PAGE => after = r.seq,
            _ => break,
        }
        if t.elapsed() > EXPORT_LIMIT {
            cut = true;
            break;
        }
    }
    let direct_time = t.elapsed();
    if cut {
        report.note(format!(
            "audit: the full export was stopped after {}s ({exported} rows by the server, \
             {direct} by the store directly); rates are over those rows",
            EXPORT_LIMIT.as_secs()
        ));
    } else {
        report.figure(
            "audit",
            &format!("full CSV export ({exported} rows)"),
            "s",
            Better::Lower,
            export_time.as_secs_f64(),
            Some(direct_time.as_secs_f64()),
            Some(format!("{:.0} MiB of CSV", mib(bytes))),
        );
    }
    report.figure(
        "audit",
        "full CSV export rows/s",
        "1/s",
        Better::Higher,
        rate(exported as f64, export_time),
        Some(rate(direct as f64, direct_time)),
        None,
    );
    if let Some(peak) = peak {
        report.figure(
            "audit",
            "peak server RSS during the export",
            "MiB",
            Better::Lower,
            mib(peak),
            idle.map(mib),
            Some("baseline: the server's RSS just before (growth = ratio)".into()),
        );
    }
    drop(conn);
    store.close().await;

    // The seeded chain verifies like any other (and how long that takes).
    let t = Instant::now();
    let v = admin.audit_verify().await?;
    let verify_time = t.elapsed();
    if !v.intact {
        bail!(
            "the audit chain does not verify after seeding: {:?}",
            v.first_problem
        );
    }
    report.figure(
        "audit",
        &format!("verify the whole chain ({} entries)", v.checked),
        "s",
        Better::Lower,
        verify_time.as_secs_f64(),
        None,
        Some("intact".into()),
    );
    Ok(())
}
