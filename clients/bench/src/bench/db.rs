//! Workloads 5 and 6: timeline paging over a thread of a million messages, and audit
//! reports over a million audit entries. Both seed the server's SQLite file directly
//! (bench-only shortcut, one transaction each) and compare each request with the same
//! SQL issued straight to the database file.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{Connection, Row, SqliteConnection};
use tsunagu_client::protocol::ids::GroupId;
use tsunagu_client::protocol::messaging::{CreateGroup, GroupKind};
use tsunagu_client::AuditFilter;

use super::report::{Better, Report};
use super::stats::{mib, rate, Samples};
use super::target::{Target, User};
use super::Sizes;

/// The server's timeline page query (`store::messages::page`).
const PAGE_SQL: &str = "SELECT id, thread_id, seq, author_id, client_msg_id, body, reply_to, \
     mentions, attachments, created_at, edited_at, deleted_at FROM messages WHERE thread_id = $1 \
     AND seq > $2 AND seq < $3 ORDER BY seq DESC LIMIT $4";

/// The server's audit report query (`audit::report::page`), without the optional filters.
const REPORT_SQL: &str = "SELECT e.seq, e.id, e.at_ms, e.action, e.outcome, e.actor_user_id, \
     u.display_name AS actor_name, u.profession AS actor_profession, \
     e.actor_org_id, o.name AS actor_org_name, e.target_kind, e.target_id, \
     e.group_id, g.name AS group_name, e.file_id, f.name AS file_name, \
     e.ip, e.user_agent, e.request_id, e.detail \
     FROM audit_events e \
     LEFT JOIN users u ON u.id = e.actor_user_id AND u.region_id = e.region_id \
     LEFT JOIN organizations o ON o.id = e.actor_org_id AND o.region_id = e.region_id \
     LEFT JOIN groups g ON g.id = e.group_id AND g.region_id = e.region_id \
     LEFT JOIN files f ON f.id = e.file_id AND f.region_id = e.region_id \
     WHERE e.region_id = $1 AND e.seq > $2";

/// Rows per multi-row INSERT while seeding audit entries (18 parameters each).
const AUDIT_BATCH: usize = 500;
/// Rows per page of the server's CSV export.
const EXPORT_PAGE: i64 = 1000;
/// An export (or its direct-SQL baseline) still running after this long is stopped
/// and its rate reported over the rows read so far.
const EXPORT_LIMIT: Duration = Duration::from_secs(300);

async fn connect(path: &Path) -> anyhow::Result<SqliteConnection> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(120));
    SqliteConnection::connect_with(&opts)
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

/// A UUID-shaped prefix (`xxxxxxxx-xxxx-4xxx-yxxx-`) to which 12 hex digits are added.
fn id_prefix() -> String {
    uuid::Uuid::new_v4().to_string()[..24].to_owned()
}

fn now_ms() -> i64 {
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
    let mut conn = connect(path).await?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let (last,): (i64,) = sqlx::query_as("SELECT last_seq FROM threads WHERE id = $1")
        .bind(&thread)
        .fetch_one(&mut *tx)
        .await?;
    if last != 0 {
        bail!("the new thread already has messages");
    }
    sqlx::query(
        "INSERT INTO messages (id, thread_id, seq, author_id, client_msg_id, body, reply_to, \
         mentions, attachments, created_at, edited_at, deleted_at) \
         WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < $1) \
         SELECT $2 || printf('%012x', n), $3, n, $4, 'seed-' || n, $5 || n, NULL, '[]', '[]', \
         $6 + n, NULL, NULL FROM c",
    )
    .bind(n)
    .bind(id_prefix())
    .bind(&thread)
    .bind(user.id.to_string())
    .bind("訪問時バイタル安定。食事摂取良好、服薬確認済み。次回訪問で褥瘡の経過を確認します。#")
    .bind(now_ms() - n - 1000)
    .execute(&mut *tx)
    .await
    .context("seeding messages")?;
    sqlx::query("UPDATE threads SET last_seq = $1 WHERE id = $2")
        .bind(n)
        .bind(&thread)
        .execute(&mut *tx)
        .await?;
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
    type MessageRow = (
        String,
        String,
        i64,
        String,
        String,
        String,
        Option<String>,
        String,
        String,
        i64,
        Option<i64>,
        Option<i64>,
    );
    for _ in 0..sizes.paging_repeats {
        for (before, samples) in [(i64::MAX, &mut latest_sql), (deep_before, &mut deep_sql)] {
            let t = Instant::now();
            let rows: Vec<MessageRow> = sqlx::query_as(PAGE_SQL)
                .bind(&thread)
                .bind(0_i64)
                .bind(before)
                .bind(51_i64)
                .fetch_all(&mut conn)
                .await?;
            samples.push_duration(t.elapsed());
            if rows.len() != 51 {
                bail!("direct SQL returned {} rows", rows.len());
            }
        }
    }
    conn.close().await?;
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

/// One audit entry as the server stores and hashes it (`audit::EntryRow`).
struct Entry {
    seq: i64,
    id: String,
    at_ms: i64,
    region_id: Option<String>,
    actor_user_id: Option<String>,
    actor_org_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    action: String,
    target_kind: Option<String>,
    target_id: Option<String>,
    group_id: Option<String>,
    file_id: Option<String>,
    outcome: String,
    request_id: Option<String>,
    detail: String,
    prev_hash: String,
    hash: String,
}

impl Entry {
    /// The server's canonical encoding, version 1 (`EntryRow::compute_hash`): SHA-256
    /// of a JSON array of every field in a fixed order, the previous hash included.
    fn compute_hash(&self) -> String {
        let canonical = serde_json::json!([
            1,
            self.seq,
            self.id,
            self.at_ms,
            self.region_id,
            self.actor_user_id,
            self.actor_org_id,
            self.ip,
            self.user_agent,
            self.action,
            self.target_kind,
            self.target_id,
            self.group_id,
            self.file_id,
            self.outcome,
            self.request_id,
            self.detail,
            self.prev_hash,
        ]);
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// Appends `rows` entries to the audit chain in one transaction: about one in a
/// thousand concerns `file_id`, the rest other files' access and sign-ins.
#[allow(clippy::too_many_arguments)]
async fn seed_audit(
    conn: &mut SqliteConnection,
    rows: i64,
    region_id: &str,
    actors: &[String],
    file_id: &str,
    group_id: &str,
) -> anyhow::Result<()> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let (head, mut prev): (i64, String) =
        sqlx::query_as("SELECT last_seq, last_hash FROM audit_chain_head WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
    let prefix = id_prefix();
    let others: Vec<String> = (0..2000)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let start_ms = now_ms() - rows - 1000;
    let mut i = 0_i64;
    while i < rows {
        let n = (rows - i).min(AUDIT_BATCH as i64);
        let mut batch = Vec::with_capacity(n as usize);
        for k in i..i + n {
            let seq = head + 1 + k;
            let actor = actors[k as usize % actors.len()].clone();
            let (action, file) = if k % 1000 == 500 {
                (
                    if k % 3000 == 500 {
                        "file_metadata_viewed"
                    } else {
                        "file_downloaded"
                    },
                    Some(file_id.to_owned()),
                )
            } else {
                match k % 10 {
                    0..=3 => (
                        "file_downloaded",
                        Some(others[k as usize % others.len()].clone()),
                    ),
                    4 | 5 => (
                        "file_metadata_viewed",
                        Some(others[k as usize % others.len()].clone()),
                    ),
                    6..=8 => ("login_succeeded", None),
                    _ => ("token_refreshed", None),
                }
            };
            let mut e = Entry {
                seq,
                id: format!("{prefix}{k:012x}"),
                at_ms: start_ms + k,
                region_id: Some(region_id.to_owned()),
                actor_user_id: Some(actor.clone()),
                actor_org_id: None,
                ip: Some("127.0.0.1".into()),
                user_agent: Some("tsunagu-bench".into()),
                action: action.into(),
                target_kind: Some(if file.is_some() { "file" } else { "user" }.into()),
                target_id: Some(file.clone().unwrap_or(actor)),
                group_id: file.as_ref().map(|_| group_id.to_owned()),
                file_id: file,
                outcome: "success".into(),
                request_id: Some(format!("00000000-0000-4000-8000-{seq:012x}")),
                detail: "{}".into(),
                prev_hash: std::mem::take(&mut prev),
                hash: String::new(),
            };
            e.hash = e.compute_hash();
            prev = e.hash.clone();
            batch.push(e);
        }
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO audit_events (seq, id, at_ms, region_id, actor_user_id, actor_org_id, \
             ip, user_agent, action, target_kind, target_id, group_id, file_id, outcome, \
             request_id, detail, prev_hash, hash) ",
        );
        q.push_values(batch, |mut b, e| {
            b.push_bind(e.seq)
                .push_bind(e.id)
                .push_bind(e.at_ms)
                .push_bind(e.region_id)
                .push_bind(e.actor_user_id)
                .push_bind(e.actor_org_id)
                .push_bind(e.ip)
                .push_bind(e.user_agent)
                .push_bind(e.action)
                .push_bind(e.target_kind)
                .push_bind(e.target_id)
                .push_bind(e.group_id)
                .push_bind(e.file_id)
                .push_bind(e.outcome)
                .push_bind(e.request_id)
                .push_bind(e.detail)
                .push_bind(e.prev_hash)
                .push_bind(e.hash);
        });
        q.build().execute(&mut *tx).await?;
        i += n;
    }
    sqlx::query("UPDATE audit_chain_head SET last_seq = $1, last_hash = $2 WHERE id = 1")
        .bind(head + rows)
        .bind(&prev)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Reads every column of a report row, as the server does before formatting it.
fn touch(rows: &[SqliteRow]) -> anyhow::Result<()> {
    for r in rows {
        for i in 0..20 {
            if i == 0 || i == 2 {
                let _: i64 = r.try_get(i)?;
            } else {
                let _: Option<String> = r.try_get(i)?;
            }
        }
    }
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
    let mut conn = connect(path).await?;
    let actors: Vec<String> = users.iter().map(|u| u.id.to_string()).collect();
    seed_audit(
        &mut conn,
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
    let file_sql = format!(
        "{REPORT_SQL} AND substr(e.action, 1, 5) = 'file_' AND e.file_id = $3 ORDER BY e.seq LIMIT $4"
    );
    let mut base = Samples::new();
    for _ in 0..sizes.audit_repeats {
        let t = Instant::now();
        let found = sqlx::query(&file_sql)
            .bind(&target.region_id)
            .bind(0_i64)
            .bind(&file.id)
            .bind(1001_i64)
            .fetch_all(&mut conn)
            .await?;
        touch(&found)?;
        base.push_duration(t.elapsed());
        if found.len() < entries {
            bail!("direct SQL found {} entries", found.len());
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
    let (max_seq,): (i64,) = sqlx::query_as("SELECT last_seq FROM audit_chain_head WHERE id = 1")
        .fetch_one(&mut conn)
        .await?;
    let export_sql = format!("{REPORT_SQL} AND e.seq <= $3 ORDER BY e.seq LIMIT $4");
    let t = Instant::now();
    let mut after = 0_i64;
    let mut direct = 0_u64;
    loop {
        let page = sqlx::query(&export_sql)
            .bind(&target.region_id)
            .bind(after)
            .bind(max_seq)
            .bind(EXPORT_PAGE)
            .fetch_all(&mut conn)
            .await?;
        touch(&page)?;
        direct += page.len() as u64;
        match page.last() {
            Some(r) if page.len() as i64 == EXPORT_PAGE => after = r.try_get(0)?,
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
             {direct} by direct SQL); rates are over those rows",
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
    conn.close().await?;

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
