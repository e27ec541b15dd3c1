//! The SQLite and PostgreSQL schemas agree: the same tables with the same columns, the
//! same views, the same explicitly created indexes, and the same tables guarded by
//! triggers — so that "one domain, two databases" cannot drift one migration at a time.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{Connection, Row};

use tsunagu_testkit::{postgres_only, spawn_app, Backend};

#[derive(Debug, PartialEq, Eq)]
struct Schema {
    /// Table → its columns.
    tables: BTreeMap<String, BTreeSet<String>>,
    views: BTreeSet<String>,
    indexes: BTreeSet<String>,
    /// Tables that have triggers (the append-only audit tables). Trigger names differ by
    /// dialect: SQLite needs one per event, PostgreSQL one function for both.
    guarded: BTreeSet<String>,
}

async fn sqlite_schema(path: &std::path::Path) -> Schema {
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let names = |kind: &'static str| {
        format!(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = '{kind}' \
             AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%' AND sql IS NOT NULL"
        )
    };
    let mut tables = BTreeMap::new();
    for row in sqlx::query(&names("table"))
        .fetch_all(&mut c)
        .await
        .unwrap()
    {
        let table: String = row.get(0);
        let cols = sqlx::query(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        tables.insert(table, cols);
    }
    let set = |rows: Vec<sqlx::sqlite::SqliteRow>, col: usize| {
        rows.iter()
            .map(|r| r.get::<String, _>(col))
            .collect::<BTreeSet<_>>()
    };
    Schema {
        tables,
        views: set(
            sqlx::query(&names("view")).fetch_all(&mut c).await.unwrap(),
            0,
        ),
        indexes: set(
            sqlx::query(&names("index"))
                .fetch_all(&mut c)
                .await
                .unwrap(),
            0,
        ),
        guarded: set(
            sqlx::query(&names("trigger"))
                .fetch_all(&mut c)
                .await
                .unwrap(),
            1,
        ),
    }
}

async fn postgres_schema(url: &str) -> Schema {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let strings = |rows: Vec<sqlx::postgres::PgRow>| {
        rows.iter()
            .map(|r| r.get::<String, _>(0))
            .collect::<BTreeSet<_>>()
    };
    let mut tables = BTreeMap::new();
    for row in sqlx::query(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' \
         AND table_type = 'BASE TABLE' AND table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    {
        let table: String = row.get(0);
        let cols = strings(
            sqlx::query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name = $1",
            )
            .bind(&table)
            .fetch_all(&mut c)
            .await
            .unwrap(),
        );
        tables.insert(table, cols);
    }
    Schema {
        tables,
        views: strings(
            sqlx::query(
                "SELECT table_name::text FROM information_schema.views WHERE table_schema = 'public'",
            )
            .fetch_all(&mut c)
            .await
            .unwrap(),
        ),
        // Indexes created as such, not those backing a primary key or UNIQUE constraint
        // (SQLite's equivalents are automatic and unnamed).
        indexes: strings(
            sqlx::query(
                "SELECT indexname::text FROM pg_indexes i WHERE schemaname = 'public' \
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname) \
                 AND tablename NOT LIKE '\\_sqlx%'",
            )
            .fetch_all(&mut c)
            .await
            .unwrap(),
        ),
        guarded: strings(
            sqlx::query(
                "SELECT DISTINCT event_object_table::text FROM information_schema.triggers \
                 WHERE trigger_schema = 'public'",
            )
            .fetch_all(&mut c)
            .await
            .unwrap(),
        ),
    }
}

// Needs both databases: ignored where PostgreSQL is missing.
postgres_only!(the_sqlite_and_postgresql_schemas_agree);

async fn the_sqlite_and_postgresql_schemas_agree() {
    let sqlite = spawn_app(Backend::Sqlite).await;
    let pg = spawn_app(Backend::Postgres).await;
    let mut lite = sqlite_schema(&sqlite.config.data_dir.join("tsunagu.db")).await;
    let mut post = postgres_schema(pg.config.database_url.as_deref().unwrap()).await;
    // The one intended difference: the trigram index of search (migration 0010) is an
    // FTS5 table with its shadow tables, kept by triggers on search_docs, on SQLite, and
    // a pg_trgm GIN index on PostgreSQL.
    for t in [
        "search_fts",
        "search_fts_config",
        "search_fts_data",
        "search_fts_docsize",
        "search_fts_idx",
    ] {
        assert!(lite.tables.remove(t).is_some(), "{t}");
    }
    assert!(lite.guarded.remove("search_docs"));
    assert!(post.indexes.remove("search_docs_trgm"));
    assert!(lite.tables.len() > 15 && lite.tables.contains_key("messages"));
    assert!(lite.indexes.contains("sessions_by_revoked_at"));
    assert_eq!(
        lite.tables.keys().collect::<Vec<_>>(),
        post.tables.keys().collect::<Vec<_>>(),
        "the same tables"
    );
    for (table, cols) in &lite.tables {
        assert_eq!(Some(cols), post.tables.get(table), "the columns of {table}");
    }
    assert_eq!(lite.views, post.views, "the same views");
    assert!(lite.views.contains("thread_audience"));
    assert_eq!(lite.indexes, post.indexes, "the same indexes");
    assert_eq!(
        lite.guarded, post.guarded,
        "the same tables guarded by triggers"
    );
    assert!(lite.guarded.contains("audit_events"));
}
