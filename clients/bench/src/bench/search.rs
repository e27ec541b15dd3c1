//! Workload `search` (`tsunagu-bench search`): the search index against the `LIKE`
//! scan it replaced, on the same data in the same run. It drives the server's own store
//! and search functions on a fresh SQLite database (no HTTP: the question is the
//! query, not the transport):
//!
//! 1. insert throughput without and with index maintenance (`index::add_message` in
//!    the same transaction, as posting does), on the first `--sample` messages;
//! 2. `--messages` (default 1,000,000) generated Japanese care notes — deterministic
//!    from a word list and `--seed` — in one region, across `--groups` patient groups,
//!    all visible to the viewer (the worst case for a scan: the whole region);
//! 3. p50/p99 of `search::find` (what `GET /search` runs) and of the old
//!    `messages::search` (`lower(body) LIKE '%…%'` over the viewer's threads) for
//!    one-, two-, three-plus-character and multi-term queries, alternated;
//! 4. the index's size on disk (dbstat), per million messages.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use tsunagu_server::domain::search::{find, index, query::Query};
use tsunagu_server::store::messages::{self, MessageRow};
use tsunagu_server::store::scope::Viewer;
use tsunagu_server::store::search::{size_on_disk, Filter};
use tsunagu_server::store::{contains_pattern, Backend, Store};

use super::stats::Samples;

const WORDS: &[&str] = &[
    "訪問",
    "看護",
    "褥瘡",
    "処置",
    "血圧",
    "脈拍",
    "体温",
    "服薬",
    "確認",
    "食事",
    "摂取",
    "排便",
    "排尿",
    "入浴",
    "介助",
    "更衣",
    "移乗",
    "歩行",
    "転倒",
    "リハビリ",
    "インスリン",
    "注射",
    "血糖",
    "測定",
    "酸素",
    "吸引",
    "胃ろう",
    "ＰＥＧ",
    "カテーテル",
    "交換",
    "発熱",
    "解熱",
    "咳",
    "痰",
    "痛み",
    "しびれ",
    "むくみ",
    "皮膚",
    "発赤",
    "軟膏",
    "塗布",
    "家族",
    "ケアマネ",
    "主治医",
    "薬剤師",
    "ヘルパー",
    "デイサービス",
    "ショートステイ",
    "往診",
    "次回",
    "継続",
    "観察",
    "報告",
    "相談",
    "連絡",
    "予定",
    "変更",
    "安定",
    "改善",
    "悪化",
    "様子",
    "特変",
    "なし",
    "あり",
    "本日",
    "昨日",
    "夜間",
    "日中",
    "朝",
    "夕",
    "少量",
    "良好",
    "ｶﾝｺﾞ",
    "ﾍﾙﾊﾟｰ",
    "便秘",
    "下剤",
    "睡眠",
    "不眠",
    "認知",
    "せん妄",
    "点滴",
    "採血",
];
const GLUE: &[&str] = &["の", "を", "が", "は", "に", "で", "と", "、", "。", " "];

/// Queries per class; each is run `ROUNDS` times, index and scan alternated.
const QUERIES: &[(&str, &[&str])] = &[
    ("1 character", &["痛", "熱", "咳"]),
    ("2 characters", &["褥瘡", "血圧", "服薬"]),
    (
        "3+ characters",
        &["インスリン", "カテーテル", "ショートステイ", "褥瘡の処置"],
    ),
    (
        "multi-term",
        &["血圧 安定", "褥瘡 処置 継続", "ＰＥＧ 交換"],
    ),
];
const ROUNDS: usize = 7;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// A care note of 4–14 words.
fn note(rng: &mut Rng) -> String {
    let n = 4 + (rng.next() % 11) as usize;
    let mut s = String::new();
    for _ in 0..n {
        s.push_str(rng.pick(WORDS));
        s.push_str(rng.pick(GLUE));
    }
    s
}

struct BenchViewer {
    region: String,
    user: String,
}
impl Viewer for BenchViewer {
    fn viewer_region(&self) -> String {
        self.region.clone()
    }
    fn viewer_id(&self) -> String {
        self.user.clone()
    }
}

async fn seed_people(
    store: &Store,
    groups: usize,
) -> anyhow::Result<(BenchViewer, Vec<(String, String)>)> {
    let mut tx = store.begin().await?;
    let region = uuid::Uuid::now_v7().to_string();
    let user = uuid::Uuid::now_v7().to_string();
    sqlx::query("INSERT INTO regions (id, slug, name, created_at, updated_at) VALUES ($1, 'bench', 'bench', 0, 0)")
        .bind(&region)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO users (id, region_id, login, login_key, display_name, profession, role, password_hash, created_at, updated_at) \
         VALUES ($1, $2, 'bench', 'bench', 'bench', 'nurse', 'user', 'x', 0, 0)",
    )
    .bind(&user)
    .bind(&region)
    .execute(&mut *tx)
    .await?;
    let mut threads = Vec::new();
    for i in 0..groups {
        let (g, t) = (
            uuid::Uuid::now_v7().to_string(),
            uuid::Uuid::now_v7().to_string(),
        );
        sqlx::query(
            "INSERT INTO groups (id, region_id, kind, name, main_thread_id, created_by, created_at, updated_at) \
             VALUES ($1, $2, 'patient', $3, $4, $5, 0, 0)",
        )
        .bind(&g)
        .bind(&region)
        .bind(format!("患者 {i}"))
        .bind(&t)
        .bind(&user)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO threads (id, group_id, kind, created_by, created_at) VALUES ($1, $2, 'main', $3, 0)")
            .bind(&t)
            .bind(&g)
            .bind(&user)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO group_members (group_id, user_id, role, joined_at) VALUES ($1, $2, 'owner', 0)")
            .bind(&g)
            .bind(&user)
            .execute(&mut *tx)
            .await?;
        threads.push((g, t));
    }
    tx.commit().await?;
    Ok((BenchViewer { region, user }, threads))
}

/// Inserts messages `0..to` (generated from the corpus's seed), 1000 per transaction, indexed or
/// not. Returns the rate in messages per second.
struct Corpus<'a> {
    viewer: &'a BenchViewer,
    threads: &'a [(String, String)],
    seed: u64,
}

async fn insert(
    store: &Store,
    corpus: &Corpus<'_>,
    to: usize,
    indexed: bool,
    progress: bool,
) -> anyhow::Result<f64> {
    let (viewer, threads, seed, from) = (corpus.viewer, corpus.threads, corpus.seed, 0);
    let mut rng = Rng(seed | 1);
    let t0 = Instant::now();
    let base = 1_700_000_000_000i64;
    let mut i = from;
    while i < to {
        let end = (i + 1000).min(to);
        let rows: Vec<MessageRow> = (i..end)
            .map(|k| {
                let (_, thread) = &threads[k % threads.len()];
                MessageRow {
                    id: uuid::Uuid::now_v7().to_string(),
                    thread_id: thread.clone(),
                    seq: (k / threads.len()) as i64 + 1,
                    author_id: viewer.user.clone(),
                    client_msg_id: format!("b{k}"),
                    body: note(&mut rng),
                    reply_to: None,
                    mentions: "[]".into(),
                    attachments: "[]".into(),
                    // Two years of notes, oldest first.
                    created_at: base + k as i64 * 60_000,
                    edited_at: None,
                    deleted_at: None,
                }
            })
            .collect();
        let mut tx = store.begin().await?;
        messages::insert_many(&mut tx, &rows).await?;
        if indexed {
            for (k, row) in rows.iter().enumerate() {
                let (group, _) = &threads[(i + k) % threads.len()];
                index::add_message(&mut tx, &viewer.region, group, row, &[]).await?;
            }
        }
        tx.commit().await?;
        i = end;
        if progress && i % 100_000 == 0 {
            eprintln!(
                "  {i} messages ({:.0}/s)",
                (i - from) as f64 / t0.elapsed().as_secs_f64()
            );
        }
    }
    Ok((to - from) as f64 / t0.elapsed().as_secs_f64())
}

async fn open(path: &Path) -> anyhow::Result<Store> {
    let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display()), 1).await?;
    store.migrate().await?;
    Ok(store)
}

/// `tsunagu-bench search`.
pub async fn run(
    dir: &Path,
    n: usize,
    sample: usize,
    groups: usize,
    seed: u64,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    eprintln!("search: insert throughput on {sample} messages, without and with the index");
    let mut rates = Vec::new();
    for indexed in [false, true] {
        let path = dir.join(format!("insert-{indexed}.db"));
        let _ = std::fs::remove_file(&path);
        let store = open(&path).await?;
        let (viewer, threads) = seed_people(&store, groups).await?;
        let corpus = Corpus {
            viewer: &viewer,
            threads: &threads,
            seed,
        };
        rates.push(insert(&store, &corpus, sample, indexed, false).await?);
        store.close().await;
        let _ = std::fs::remove_file(&path);
    }
    println!(
        "insert: {:.0} msg/s without the index, {:.0} msg/s with it (x{:.2})",
        rates[0],
        rates[1],
        rates[1] / rates[0]
    );

    eprintln!("search: {n} messages in {groups} groups, indexed as they are stored");
    let path = dir.join("search.db");
    let _ = std::fs::remove_file(&path);
    let store = open(&path).await?;
    let (viewer, threads) = seed_people(&store, groups).await?;
    let corpus = Corpus {
        viewer: &viewer,
        threads: &threads,
        seed,
    };
    let rate = insert(&store, &corpus, n, true, true).await?;
    println!("built: {n} messages at {rate:.0} msg/s with the index");
    let mut conn = store.conn().await?;
    sqlx::query("ANALYZE").execute(&mut *conn).await?;
    let (docs, grams) = size_on_disk(&mut conn, Backend::Sqlite).await?;
    let (messages_bytes,): (i64,) = sqlx::query_as(
        "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name = 'messages' OR name LIKE 'sqlite_autoindex_messages%'",
    )
    .fetch_one(&mut *conn)
    .await?;
    let per_million = 1_000_000.0 / n as f64 / 1024.0 / 1024.0;
    println!(
        "size per million messages: messages table {:.0} MiB; index: documents + FTS5 trigram {:.0} MiB, gram table {:.0} MiB",
        messages_bytes as f64 * per_million,
        docs as f64 * per_million,
        grams as f64 * per_million
    );
    println!("| query class | query | index p50 | index p99 | LIKE p50 | LIKE p99 | index/LIKE (p50) | hits |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (class, queries) in QUERIES {
        let (mut idx_all, mut like_all) = (Samples::new(), Samples::new());
        for q in *queries {
            let parsed = Query::parse(q).context("query")?;
            let (mut idx, mut like) = (Samples::new(), Samples::new());
            let mut hits = 0;
            for _ in 0..ROUNDS {
                let t = Instant::now();
                let found = find(
                    &mut conn,
                    Backend::Sqlite,
                    &viewer,
                    &parsed,
                    &Filter::default(),
                )
                .await?;
                idx.push_duration(t.elapsed());
                hits = found.ranked.len();
                let t = Instant::now();
                // The old search: one substring, as typed, LIKE over the viewer's messages.
                let first = q.split_whitespace().next().unwrap_or(q);
                let rows =
                    messages::search(&mut conn, &viewer, &contains_pattern(first), 50).await?;
                like.push_duration(t.elapsed());
                std::hint::black_box(rows);
            }
            println!(
                "| {class} | {q} | {:.2} ms | {:.2} ms | {:.1} ms | {:.1} ms | 1/{:.0} | {hits} |",
                idx.percentile_ms(50.0),
                idx.percentile_ms(99.0),
                like.percentile_ms(50.0),
                like.percentile_ms(99.0),
                like.percentile_ms(50.0) / idx.percentile_ms(50.0).max(0.001),
            );
            idx_all.merge(&idx);
            like_all.merge(&like);
        }
        println!(
            "| {class} | (all) | {:.2} ms | {:.2} ms | {:.1} ms | {:.1} ms | 1/{:.0} | |",
            idx_all.percentile_ms(50.0),
            idx_all.percentile_ms(99.0),
            like_all.percentile_ms(50.0),
            like_all.percentile_ms(99.0),
            like_all.percentile_ms(50.0) / idx_all.percentile_ms(50.0).max(0.001),
        );
    }
    drop(conn);
    store.close().await;
    Ok(())
}
