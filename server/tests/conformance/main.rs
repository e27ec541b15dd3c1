//! Backend conformance: the same data through the same store functions gives the same
//! answers on SQLite and on PostgreSQL — case in lookups and searches, LIKE wildcards
//! taken literally, the order of Japanese (kanji/kana/ASCII) names, times, NULL order,
//! the login id rule — and both refuse a value outside an enum's set.
//!
//! Each rule is checked on each backend against what `docs/architecture.md` says it is
//! (so agreeing on a wrong answer fails too), and a last test compares every answer of
//! one backend with the other's. The PostgreSQL database is created with an ICU ja-JP
//! default collation where the server has one: the most different from SQLite's BINARY
//! a Japanese operator could plausibly pick, so that agreement cannot come from a
//! lucky `C.UTF-8` default. The store is used directly (no HTTP): these are the store's
//! promises, and the API suites already prove the routes on top of them.
//!
//! Without `TSUNAGU_TEST_POSTGRES_URL` the PostgreSQL cases show as ignored.

use std::collections::BTreeSet;

use sqlx::{Connection, Row};
use tsunagu_protocol::accounts::{OrganizationKind, Profession, UserRole};
use tsunagu_protocol::files::FileKind;
use tsunagu_protocol::ids::{FileId, GroupId, OrganizationId, RegionId, ThreadId, UserId};
use tsunagu_protocol::messaging::{GroupKind, MemberRole, ThreadKind};
use tsunagu_server::store::files::{self, FileRow, LibraryFilter, LibrarySort};
use tsunagu_server::store::groups::{self, GroupRow};
use tsunagu_server::store::messages::{self, MessageRow};
use tsunagu_server::store::organizations::{self, OrganizationRow};
use tsunagu_server::store::regions::{self, RegionRow};
use tsunagu_server::store::scope::{GroupViewer, Viewer};
use tsunagu_server::store::threads::{self, ThreadRow};
use tsunagu_server::store::users::{self, UserFilter, UserRow};
use tsunagu_server::store::{contains_pattern, Store, StoreError};
use tsunagu_testkit::{postgres_admin_url, Backend, PgDatabase};

/// One store per backend, on a database of its own that goes away with it.
struct Db {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

async fn open(backend: Backend) -> Db {
    let db = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
            Db {
                store: Store::connect(&url, 4).await.unwrap(),
                _dir: Some(dir),
                _pg: None,
            }
        }
        Backend::Postgres => {
            let pg = japanese_postgres_database().await;
            Db {
                store: Store::connect(&pg.url, 4).await.unwrap(),
                _dir: None,
                _pg: Some(pg),
            }
        }
    };
    db.store.migrate().await.unwrap();
    db
}

/// A PostgreSQL database whose default collation is ICU ja-JP where the server has it
/// (PostgreSQL 15 and later), so that agreement with SQLite cannot come from a `C`
/// default by accident.
async fn japanese_postgres_database() -> PgDatabase {
    let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .unwrap();
    let icu: Option<(String,)> = sqlx::query_as(
        "SELECT collname::text FROM pg_collation WHERE collname = 'ja-JP-x-icu' \
         AND current_setting('server_version_num')::int >= 150000",
    )
    .fetch_optional(&mut conn)
    .await
    .unwrap();
    let _ = conn.close().await;
    let options = if icu.is_some() {
        "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'ja-JP'"
    } else {
        eprintln!(
            "NOTE: this PostgreSQL has no ICU ja-JP collation: the conformance database \
             uses the server's default collation"
        );
        ""
    };
    PgDatabase::create_with("tsunagu_conformance", options).await
}

// Each rule on each backend: `name::sqlite` and `name::postgres`, the latter ignored
// (with the reason) where no PostgreSQL is configured.
tsunagu_testkit::each_backend!(
    searches_fold_ascii_case_only_and_take_wildcards_literally,
    names_sort_by_code_point,
    login_keys_compare_exactly_and_sort_by_code_point,
    times_round_trip_to_the_millisecond,
    nulls_sort_where_the_query_says,
    values_outside_an_enum_are_refused,
    ids_and_enums_bind_and_decode_typed,
    batch_writes_extend_the_thread_and_the_audit_chain_like_single_ones,
);

// ---- the data -------------------------------------------------------------------------

/// Times are Unix milliseconds in BIGINT columns; these are stored and read back as is.
const T0: i64 = 1_700_000_000_123;

/// Message bodies and file names the searches run over.
const TEXTS: &[&str] = &[
    "Vital 50% OK",
    "vital 50 percent",
    "path C:\\temp\\x",
    "snake_case_name",
    "snakeXcaseXname",
    "ＡＢＣ全角",
    "ａｂｃ全角",
    "Émile",
    "émile",
    "バイタル安定",
    "ばいたる",
];

/// Names whose order differs between code points and any language's rules.
const NAMES: &[&str] = &[
    "医療法人あおば",
    "あおば薬局",
    "アオバ訪問看護",
    "Aoba Clinic",
    "aoba dental",
    "ｱｵﾊﾞ",
    "_underscore",
    "Zeta",
    "ａｏｂａ",
    "青葉",
];

/// Login keys (already folded, as the domain stores them) whose order depends on
/// whether punctuation counts.
const LOGIN_KEYS: &[&str] = &["a.b", "ab", "a_b", "a-b", "a@b", "aa", "a"];

struct Seed {
    region: String,
    user: String,
    group: String,
    thread: String,
}

/// The seeded member as the listings' viewer. The domain's capabilities play this part
/// in the server; the rule the queries apply is the same either way.
impl Viewer for Seed {
    fn viewer_region(&self) -> String {
        self.region.clone()
    }
    fn viewer_id(&self) -> String {
        self.user.clone()
    }
}

impl GroupViewer for Seed {
    fn viewed_group(&self) -> &str {
        &self.group
    }
}

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

async fn seed(store: &Store) -> Seed {
    let mut tx = store.begin().await.unwrap();
    let region = id();
    regions::insert(
        &mut tx,
        &RegionRow {
            id: region.clone(),
            slug: "conformance".into(),
            name: "適合".into(),
            mfa_required: 0,
            password_min_length: 12,
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 86_400,
            created_at: T0,
            updated_at: T0,
            max_file_bytes: 1 << 20,
            allowed_file_kinds: None,
            directory_scope: tsunagu_protocol::accounts::DirectoryScope::Region,
        },
    )
    .await
    .unwrap();
    let user = id();
    users::insert(
        &mut tx,
        &user_row(&region, &user, "owner", Some("おーなー")),
    )
    .await
    .unwrap();
    let (group, thread) = (id(), id());
    groups::insert(
        &mut tx,
        &GroupRow {
            id: group.clone(),
            region_id: region.clone(),
            kind: GroupKind::Free,
            name: "連絡".into(),
            description: None,
            patient: None,
            main_thread_id: thread.clone(),
            archived_at: None,
            created_by: user.clone(),
            created_at: T0,
            updated_at: T0,
        },
    )
    .await
    .unwrap();
    groups::add_member(&mut tx, &group, &user, "owner", false, T0)
        .await
        .unwrap();
    threads::insert(
        &mut tx,
        &ThreadRow {
            id: thread.clone(),
            group_id: group.clone(),
            kind: ThreadKind::Main,
            title: None,
            last_seq: 0,
            created_by: user.clone(),
            created_at: T0,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    Seed {
        region,
        user,
        group,
        thread,
    }
}

fn user_row(region: &str, id: &str, login_key: &str, kana: Option<&str>) -> UserRow {
    UserRow {
        id: id.into(),
        region_id: region.into(),
        login: login_key.to_ascii_uppercase(),
        login_key: login_key.into(),
        display_name: format!("利用者 {login_key}"),
        display_name_kana: kana.map(str::to_owned),
        profession: Profession::Nurse,
        organization_id: None,
        role: UserRole::User,
        kind: tsunagu_protocol::accounts::UserKind::Person,
        password_hash: "not a hash".into(),
        must_change_password: 0,
        active: 1,
        totp_secret: None,
        totp_kek_id: None,
        totp_enabled: 0,
        totp_last_step: 0,
        created_at: T0,
        updated_at: T0,
    }
}

async fn post(store: &Store, s: &Seed, body: &str, created_at: i64) -> MessageRow {
    let mut tx = store.begin().await.unwrap();
    let seq = threads::next_seq(&mut tx, &s.thread).await.unwrap();
    let row = MessageRow {
        id: id(),
        thread_id: s.thread.clone(),
        seq,
        author_id: s.user.clone(),
        client_msg_id: id(),
        body: body.into(),
        reply_to: None,
        mentions: "[]".into(),
        attachments: "[]".into(),
        created_at,
        edited_at: None,
        deleted_at: None,
    };
    assert!(messages::insert(&mut tx, &row).await.unwrap());
    tx.commit().await.unwrap();
    row
}

async fn upload(store: &Store, s: &Seed, name: &str, tags: &str, created_at: i64) -> FileRow {
    let row = FileRow {
        id: id(),
        region_id: s.region.clone(),
        group_id: s.group.clone(),
        thread_id: s.thread.clone(),
        uploader_id: s.user.clone(),
        name: name.into(),
        kind: FileKind::Other,
        content_type: "application/octet-stream".into(),
        size: 1,
        segment_size: 65_536,
        nonce_prefix: "00".into(),
        wrapped_key: Some("wrapped".into()),
        kek_id: Some("kek".into()),
        folder: None,
        tags: tags.into(),
        created_at,
        deleted_at: None,
        deleted_by: None,
    };
    let mut conn = store.conn().await.unwrap();
    files::insert(&mut conn, &row).await.unwrap();
    row
}

// ---- the rules, one backend at a time -------------------------------------------------

/// What each search query finds, as sets of texts: the same for messages (body), files
/// by name across the region, and the group's file library (name filter).
async fn search_answers(store: &Store) -> Vec<(String, [BTreeSet<String>; 4])> {
    let s = seed(store).await;
    for (i, text) in TEXTS.iter().enumerate() {
        post(store, &s, text, T0 + i as i64).await;
        let tag = format!("[\"{text}\"]");
        upload(store, &s, text, &tag, T0 + i as i64).await;
    }
    let mut conn = store.conn().await.unwrap();
    let mut out = Vec::new();
    for q in SEARCHES.iter().map(|(q, _)| *q) {
        let pattern = contains_pattern(q);
        let found_messages = messages::search(&mut conn, &s, &pattern, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        let found_files = files::search(&mut conn, &s, &pattern, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        let library = |filter: LibraryFilter| {
            let store = store.clone();
            let s = &s;
            async move {
                let mut conn = store.conn().await.unwrap();
                files::library(&mut conn, s, &filter, LibrarySort::Name, 100, 0)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|f| f.name)
                    .collect::<BTreeSet<_>>()
            }
        };
        let by_name = library(LibraryFilter {
            name_pattern: Some(pattern.clone()),
            ..Default::default()
        })
        .await;
        // A tag filter is the whole tag, quoted as in the stored JSON list.
        let by_tag = library(LibraryFilter {
            tag_pattern: Some(contains_pattern(&format!("\"{q}\""))),
            ..Default::default()
        })
        .await;
        out.push((q.to_owned(), [found_messages, found_files, by_name, by_tag]));
    }
    out
}

/// Query → what it must find (by substring; the tag filter needs the whole tag).
const SEARCHES: &[(&str, &[&str])] = &[
    // ASCII letters match in either case…
    ("vital", &["Vital 50% OK", "vital 50 percent"]),
    ("VITAL 50%", &["Vital 50% OK"]),
    // …wildcards and the escape character are literal…
    ("50%", &["Vital 50% OK"]),
    ("_case_", &["snake_case_name"]),
    ("\\temp", &["path C:\\temp\\x"]),
    ("%", &["Vital 50% OK"]),
    // …and nothing else is folded: not full-width letters, accents or kana.
    ("ａｂｃ", &["ａｂｃ全角"]),
    ("ＡＢＣ", &["ＡＢＣ全角"]),
    ("émile", &["émile"]),
    ("バイタル", &["バイタル安定"]),
    ("ばいたる", &["ばいたる"]),
    ("SNAKE_CASE_NAME", &["snake_case_name"]),
];

async fn searches_fold_ascii_case_only_and_take_wildcards_literally(backend: Backend) {
    let db = open(backend).await;
    for (q, [messages, files, by_name, by_tag]) in search_answers(&db.store).await {
        let expected: BTreeSet<String> = SEARCHES
            .iter()
            .find(|(query, _)| *query == q)
            .unwrap()
            .1
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(messages, expected, "{backend:?}: messages matching {q:?}");
        assert_eq!(files, expected, "{backend:?}: files named like {q:?}");
        assert_eq!(
            by_name, expected,
            "{backend:?}: the library's name filter {q:?}"
        );
        let whole: BTreeSet<String> = expected
            .iter()
            .filter(|t| t.eq_ignore_ascii_case(&q))
            .cloned()
            .collect();
        assert_eq!(by_tag, whole, "{backend:?}: the library's tag filter {q:?}");
    }
}

/// Organisation names as the admin list orders them, and file names as the library's
/// name sort does.
async fn order_answers(store: &Store) -> (Vec<String>, Vec<String>) {
    let s = seed(store).await;
    let mut conn = store.conn().await.unwrap();
    for (i, name) in NAMES.iter().enumerate() {
        organizations::insert(
            &mut conn,
            &OrganizationRow {
                id: id(),
                region_id: s.region.clone(),
                name: name.to_string(),
                kind: OrganizationKind::Clinic,
                active: 1,
                created_at: T0 + i as i64,
                updated_at: T0,
            },
        )
        .await
        .unwrap();
    }
    for (i, name) in NAMES.iter().enumerate() {
        upload(store, &s, name, "[]", T0 + i as i64).await;
    }
    let orgs = organizations::list_in_region(&mut conn, &s.region, true)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    let library = files::library(
        &mut conn,
        &s,
        &LibraryFilter::default(),
        LibrarySort::Name,
        100,
        0,
    )
    .await
    .unwrap()
    .into_iter()
    .map(|f| f.name)
    .collect();
    (orgs, library)
}

async fn names_sort_by_code_point(backend: Backend) {
    let db = open(backend).await;
    let (orgs, library) = order_answers(&db.store).await;
    // Rust's `str` order is UTF-8 byte order, which is code point order.
    let mut expected: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(orgs, expected, "{backend:?}: organisations by name");
    assert_eq!(library, expected, "{backend:?}: the library sorted by name");
}

/// The login rule: the domain folds a login id to its key (ASCII lowercase); the store
/// compares keys exactly — no collation, no case folding of its own — and sorts them by
/// code point. Returns (users listed, lookups that found someone, the duplicate's error).
async fn login_answers(store: &Store) -> (Vec<String>, Vec<(String, bool)>, bool) {
    let s = seed(store).await;
    let mut conn = store.conn().await.unwrap();
    for key in LOGIN_KEYS {
        users::insert(&mut conn, &user_row(&s.region, &id(), key, None))
            .await
            .unwrap();
    }
    let listed = users::list_in_region(&mut conn, &s.region, &UserFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.login_key)
        .collect();
    let mut lookups = Vec::new();
    for key in ["ab", "AB", "Ab", "a.b", "a b", "ａｂ"] {
        let found = users::find_by_login_key(&mut conn, key)
            .await
            .unwrap()
            .is_some();
        lookups.push((key.to_owned(), found));
    }
    let duplicate = users::insert(&mut conn, &user_row(&s.region, &id(), "ab", None)).await;
    (
        listed,
        lookups,
        matches!(duplicate, Err(StoreError::Conflict)),
    )
}

async fn login_keys_compare_exactly_and_sort_by_code_point(backend: Backend) {
    let db = open(backend).await;
    let (listed, lookups, duplicate_conflicts) = login_answers(&db.store).await;
    let mut expected: Vec<String> = LOGIN_KEYS.iter().map(|s| s.to_string()).collect();
    expected.push("owner".into());
    expected.sort();
    assert_eq!(listed, expected, "{backend:?}: users by login key");
    let found: Vec<&str> = lookups
        .iter()
        .filter(|(_, f)| *f)
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(found, ["ab", "a.b"], "{backend:?}: exact lookups only");
    assert!(
        duplicate_conflicts,
        "{backend:?}: a taken key is a conflict"
    );
}

/// Times the store writes, as it reads them back.
async fn time_answers(store: &Store) -> Vec<i64> {
    let s = seed(store).await;
    let now = tsunagu_server::clock::now_ms();
    let times = [T0, now, 0, -1, 253_402_300_799_999, i64::MAX - 1];
    let mut conn = store.conn().await.unwrap();
    let mut out = Vec::new();
    for t in times {
        let m = post(store, &s, "時刻", t).await;
        let back = messages::get(&mut conn, &s.thread, &m.id)
            .await
            .unwrap()
            .unwrap();
        out.push(back.created_at);
    }
    let u = id();
    let mut row = user_row(&s.region, &u, "time", None);
    row.created_at = now;
    row.updated_at = now + 1;
    users::insert(&mut conn, &row).await.unwrap();
    let back = users::get(&mut conn, &u).await.unwrap().unwrap();
    out.extend([back.created_at, back.updated_at]);
    out
}

async fn times_round_trip_to_the_millisecond(backend: Backend) {
    let db = open(backend).await;
    let out = time_answers(&db.store).await;
    let now = out[1];
    assert_eq!(
        out,
        [
            T0,
            now,
            0,
            -1,
            253_402_300_799_999,
            i64::MAX - 1,
            now,
            now + 1
        ],
        "{backend:?}"
    );
}

/// NULLs sort first on SQLite and last on PostgreSQL unless the query says: every
/// nullable ORDER BY key is written with NULLS FIRST or NULLS LAST (both accept it).
async fn null_answers(store: &Store) -> (Vec<String>, Vec<String>) {
    let s = seed(store).await;
    let mut conn = store.conn().await.unwrap();
    for (key, kana) in [("n1", Some("か")), ("n2", None), ("n3", Some("あ"))] {
        users::insert(&mut conn, &user_row(&s.region, &id(), key, kana))
            .await
            .unwrap();
    }
    let order = |nulls: &'static str| {
        let store = store.clone();
        let region = s.region.clone();
        async move {
            let mut conn = store.conn().await.unwrap();
            sqlx::query(&format!(
                "SELECT login_key FROM users WHERE region_id = $1 AND login_key LIKE 'n%' \
                 ORDER BY display_name_kana {nulls}, login_key"
            ))
            .bind(region)
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect::<Vec<_>>()
        }
    };
    (order("NULLS FIRST").await, order("NULLS LAST").await)
}

async fn nulls_sort_where_the_query_says(backend: Backend) {
    let db = open(backend).await;
    let (first, last) = null_answers(&db.store).await;
    assert_eq!(first, ["n2", "n3", "n1"], "{backend:?}: NULLS FIRST");
    assert_eq!(last, ["n3", "n1", "n2"], "{backend:?}: NULLS LAST");
}

/// Each enum-like column with a value outside its set, as a statement on the seeded
/// rows; each must fail with a CHECK violation.
fn bad_values(s: &Seed) -> Vec<(&'static str, String)> {
    let (r, u, g, t) = (&s.region, &s.user, &s.group, &s.thread);
    vec![
        (
            "organizations.kind",
            format!(
                "INSERT INTO organizations (id, region_id, name, kind, active, created_at, \
                 updated_at) VALUES ('{}', '{r}', 'x', 'Clinic', 1, 0, 0)",
                id()
            ),
        ),
        (
            "organizations.active",
            format!(
                "INSERT INTO organizations (id, region_id, name, kind, active, created_at, \
                 updated_at) VALUES ('{}', '{r}', 'x', 'clinic', 2, 0, 0)",
                id()
            ),
        ),
        (
            "users.role",
            format!("UPDATE users SET role = 'admin' WHERE id = '{u}'"),
        ),
        (
            "users.profession",
            format!("UPDATE users SET profession = 'Nurse' WHERE id = '{u}'"),
        ),
        (
            "users.active",
            format!("UPDATE users SET active = -1 WHERE id = '{u}'"),
        ),
        (
            "groups.kind",
            format!("UPDATE groups SET kind = 'private' WHERE id = '{g}'"),
        ),
        (
            "group_members.role",
            format!("UPDATE group_members SET role = 'region_admin' WHERE group_id = '{g}'"),
        ),
        (
            "group_members.patient_side",
            format!("UPDATE group_members SET patient_side = 5 WHERE group_id = '{g}'"),
        ),
        (
            "threads.kind",
            format!("UPDATE threads SET kind = 'secret' WHERE id = '{t}'"),
        ),
        (
            "files.kind",
            format!(
                "INSERT INTO files (id, region_id, group_id, thread_id, uploader_id, name, \
                 kind, content_type, size, segment_size, nonce_prefix, tags, created_at) \
                 VALUES ('{}', '{r}', '{g}', '{t}', '{u}', 'a.exe', 'exe', 'x', 1, 1, '00', \
                 '[]', 0)",
                id()
            ),
        ),
    ]
}

async fn values_outside_an_enum_are_refused(backend: Backend) {
    let db = open(backend).await;
    let s = seed(&db.store).await;
    let mut conn = db.store.conn().await.unwrap();
    for (column, sql) in bad_values(&s) {
        match sqlx::query(&sql).execute(&mut *conn).await {
            Err(sqlx::Error::Database(e)) if e.is_check_violation() => {}
            other => panic!("{backend:?}: {column}: expected a CHECK violation, got {other:?}"),
        }
    }
    // The same statements with good values pass (the refusals were about the values).
    let good = [
        format!("UPDATE users SET role = 'region_admin', profession = 'doctor', active = 0 WHERE id = '{}'", s.user),
        format!("UPDATE groups SET kind = 'patient' WHERE id = '{}'", s.group),
        format!("UPDATE group_members SET role = 'admin', patient_side = 1 WHERE group_id = '{}'", s.group),
        format!("UPDATE threads SET kind = 'private' WHERE id = '{}'", s.thread),
    ];
    for sql in good {
        sqlx::query(&sql).execute(&mut *conn).await.unwrap();
    }
}

/// The protocol's ids and enums bind and decode through `sqlx::Any` (feature `sqlx`).
async fn ids_and_enums_bind_and_decode_typed(backend: Backend) {
    let db = open(backend).await;
    let s = seed(&db.store).await;
    let mut conn = db.store.conn().await.unwrap();
    let user: UserId = s.user.parse().unwrap();
    let (id, role, profession): (UserId, UserRole, Profession) =
        sqlx::query_as("SELECT id, role, profession FROM users WHERE id = $1")
            .bind(user)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(
        (id, role, profession),
        (user, UserRole::User, Profession::Nurse)
    );
    let (group, kind, thread): (GroupId, GroupKind, ThreadId) =
        sqlx::query_as("SELECT id, kind, main_thread_id FROM groups WHERE id = $1")
            .bind(s.group.parse::<GroupId>().unwrap())
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(group.to_string(), s.group);
    assert_eq!(kind, GroupKind::Free);
    assert_eq!(thread.to_string(), s.thread);
    let (role, region): (MemberRole, RegionId) = sqlx::query_as(
        "SELECT m.role, g.region_id FROM group_members m JOIN groups g ON g.id = m.group_id \
         WHERE m.user_id = $1",
    )
    .bind(user)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(
        (role, region.to_string()),
        (MemberRole::Owner, s.region.clone())
    );
    // Writing typed values stores their wire forms.
    let org = OrganizationId::new();
    sqlx::query(
        "INSERT INTO organizations (id, region_id, name, kind, active, created_at, updated_at) \
         VALUES ($1, $2, 'x', $3, 1, 0, 0)",
    )
    .bind(org)
    .bind(region)
    .bind(OrganizationKind::VisitingNursingStation)
    .execute(&mut *conn)
    .await
    .unwrap();
    let (kind,): (String,) = sqlx::query_as("SELECT kind FROM organizations WHERE id = $1")
        .bind(org)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(kind, "visiting_nursing_station");
    let nothing: Option<(ThreadKind, Option<FileId>, Option<FileKind>)> =
        sqlx::query_as("SELECT kind, NULL, NULL FROM threads WHERE id = $1")
            .bind(ThreadId::new())
            .fetch_optional(&mut *conn)
            .await
            .unwrap();
    assert!(nothing.is_none());
    // A stored value that is not one is a decode error naming the type, not a value.
    let bad = sqlx::query_as::<_, (UserRole,)>("SELECT CAST('superuser' AS TEXT)")
        .fetch_one(&mut *conn)
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("UserRole"), "{bad}");
    let bad = sqlx::query_as::<_, (UserId,)>("SELECT CAST('not-a-uuid' AS TEXT)")
        .fetch_one(&mut *conn)
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("UserId"), "{bad}");
}

/// The batch writers the bench seeds with (`threads::take_seqs`, `messages::insert_many`,
/// `audit::append_many`) leave what single writes would: gap-free seqs after the last
/// post, idempotent client ids, and an audit chain that verifies.
async fn batch_writes_extend_the_thread_and_the_audit_chain_like_single_ones(backend: Backend) {
    use tsunagu_server::audit::{self, Action, Actor, Event, Outcome, RequestMeta};
    let db = open(backend).await;
    let s = seed(&db.store).await;
    post(&db.store, &s, "一件目", T0).await;
    let mut tx = db.store.begin().await.unwrap();
    let last = threads::take_seqs(&mut tx, &s.thread, 1200).await.unwrap();
    assert_eq!(last, 1201);
    let rows: Vec<MessageRow> = (2..=last)
        .map(|seq| MessageRow {
            id: id(),
            thread_id: s.thread.clone(),
            seq,
            author_id: s.user.clone(),
            client_msg_id: format!("batch-{seq}"),
            body: format!("まとめて {seq}"),
            reply_to: None,
            mentions: "[]".into(),
            attachments: "[]".into(),
            created_at: T0 + seq,
            edited_at: None,
            deleted_at: None,
        })
        .collect();
    assert_eq!(messages::insert_many(&mut tx, &rows).await.unwrap(), 1200);
    let actor = Actor {
        user_id: Some(s.user.clone()),
        organization_id: None,
        region_id: Some(s.region.clone()),
    };
    let events = (0..1200).map(|i| {
        let event = Event::new(Action::FileDownloaded, Outcome::Success, &actor)
            .target("file", format!("f{i}"))
            .file(format!("f{i}"));
        (RequestMeta::default(), event)
    });
    let audit_last = audit::append_many(&mut tx, events).await.unwrap();
    audit::append(
        &mut tx,
        &RequestMeta::default(),
        Event::new(Action::LoginSucceeded, Outcome::Success, &actor),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let mut conn = db.store.conn().await.unwrap();
    // A retried batch inserts nothing.
    assert_eq!(
        messages::insert_many(&mut conn, &rows[..10]).await.unwrap(),
        0
    );
    let page = messages::page(&mut conn, &s.thread, None, None, 5000)
        .await
        .unwrap();
    let seqs: Vec<i64> = page.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=1201).collect::<Vec<_>>(), "{backend:?}");
    assert_eq!(threads::next_seq(&mut conn, &s.thread).await.unwrap(), 1202);
    let (checked, problem) = audit::verify(&mut conn).await.unwrap();
    assert!(problem.is_none(), "{backend:?}: {problem:?}");
    assert_eq!(checked, audit_last + 1, "{backend:?}");
}

// ---- both at once ---------------------------------------------------------------------

// Needs both databases: ignored (with the reason) where PostgreSQL is not configured.
tsunagu_testkit::__gate_postgres! {
/// Every answer above, on SQLite and on PostgreSQL, compared with each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgresql_give_the_same_answers() {
    // Fresh databases for each kind of answer, as in the tests above.
    let both = || async { (open(Backend::Sqlite).await, open(Backend::Postgres).await) };
    let (a, b) = both().await;
    assert_eq!(
        search_answers(&a.store).await,
        search_answers(&b.store).await,
        "searches"
    );
    let (a, b) = both().await;
    assert_eq!(
        order_answers(&a.store).await,
        order_answers(&b.store).await,
        "orders"
    );
    let (a, b) = both().await;
    assert_eq!(
        login_answers(&a.store).await,
        login_answers(&b.store).await,
        "logins"
    );
    let (a, b) = both().await;
    let (ta, tb) = (time_answers(&a.store).await, time_answers(&b.store).await);
    // `now` differs between the two runs; nothing else may.
    assert_eq!(
        (ta.len(), ta[0], &ta[2..6]),
        (tb.len(), tb[0], &tb[2..6]),
        "times"
    );
    let (a, b) = both().await;
    assert_eq!(
        null_answers(&a.store).await,
        null_answers(&b.store).await,
        "NULL order"
    );
}
}

// Needs both databases: ignored (with the reason) where PostgreSQL is not configured.
tsunagu_testkit::__gate_postgres! {
/// The CHECK constraints of both schemas, by name (`<table>_<column>_check`, as both
/// migrations spell them and as PostgreSQL names an unnamed column CHECK); and every
/// PostgreSQL text column is `COLLATE "C"` — the rule a new migration must follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_schemas_have_the_same_checks_and_postgresql_text_is_collate_c() {
    let (lite, post) = (open(Backend::Sqlite).await, open(Backend::Postgres).await);
    let mut conn = lite.store.conn().await.unwrap();
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name NOT LIKE '_sqlx%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut sqlite_checks = BTreeSet::new();
    for (table, sql) in &tables {
        for line in sql.lines().map(str::trim) {
            if !line.contains("CHECK (") {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let name = if words[0] == "CONSTRAINT" {
                words[1].to_owned()
            } else {
                format!("{table}_{}_check", words[0])
            };
            sqlite_checks.insert(format!("{table}.{name}"));
        }
    }
    let mut conn = post.store.conn().await.unwrap();
    let pg_checks: BTreeSet<String> = sqlx::query_as::<_, (String,)>(
        "SELECT CAST(c.conrelid::regclass AS TEXT) || '.' || CAST(c.conname AS TEXT) \
         FROM pg_constraint c WHERE c.contype = 'c' AND c.conrelid <> 0 \
         AND c.connamespace = CAST(current_schema() AS regnamespace)",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
    .into_iter()
    .map(|(n,)| n)
    .collect();
    assert!(
        sqlite_checks.contains("users.users_role_check"),
        "{sqlite_checks:?}"
    );
    assert!(sqlite_checks.contains("audit_chain_head.audit_chain_head_id_check"));
    assert_eq!(sqlite_checks, pg_checks, "the same CHECK constraints");
    let not_c: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(c.table_name AS TEXT), CAST(c.column_name AS TEXT) \
         FROM information_schema.columns c JOIN information_schema.tables t \
         ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' \
         AND c.table_name NOT LIKE '\\_sqlx%' AND c.data_type = 'text' \
         AND c.collation_name IS DISTINCT FROM 'C'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert!(
        not_c.is_empty(),
        "text columns without COLLATE \"C\" on PostgreSQL: {not_c:?}"
    );
}
}
