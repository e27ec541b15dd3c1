//! The real binary as a separate process: `kill -9` in the middle of an upload leaves
//! no visible file and a restart serves everything committed before; a 200 MiB file
//! streams through in both directions while the server's resident memory stays flat.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use tsunagu_protocol::accounts::Profession;
use tsunagu_server::store::Store;

use tsunagu_testkit::all_combinations;

use crate::files::harness::{
    call, created, data, download_hashed, fetch_from, fill, free_group, generated_body, rss_kib,
    spawn, upload_to, Person, RssSampler, ServerProcess, Storage, TestApp, SEG,
};
use tsunagu_testkit::ADMIN_PASSWORD;

all_combinations!(
    kill_9_during_an_upload_leaves_no_visible_file,
    the_orphan_sweeper_removes_what_a_killed_upload_left,
    a_200_mib_transfer_keeps_server_memory_flat
);

/// Stops the in-process server (its database and storage stay) and starts the real
/// binary on the same configuration.
async fn as_process(
    app: &mut TestApp,
    extra_env: &[(&str, String)],
) -> (ServerProcess, std::path::PathBuf) {
    app.stop().await;
    let log = app.config.data_dir.join("server-process.log");
    (
        ServerProcess::start(crate::SERVER_BIN, &app.config, Some(&log), extra_env).await,
        log,
    )
}

/// A user of the process, signed in (the SDK client points at the process).
async fn sign_in(server: &ServerProcess, login: &str) -> Person {
    let admin = server.client();
    admin
        .login("admin", ADMIN_PASSWORD, None)
        .await
        .expect("admin login");
    let user = match admin
        .list_users()
        .await
        .expect("users")
        .users
        .into_iter()
        .find(|u| u.login == login)
    {
        Some(u) => u,
        None => admin
            .create_user(&tsunagu_protocol::accounts::CreateUser {
                login: login.into(),
                display_name: "佐藤 看護師".into(),
                display_name_kana: None,
                password: tsunagu_testkit::USER_PASSWORD.into(),
                profession: Profession::Nurse,
                organization_id: None,
                role: None,
                must_change_password: Some(false),
            })
            .await
            .expect("create user"),
    };
    let client = server.client();
    client
        .login(login, tsunagu_testkit::USER_PASSWORD, None)
        .await
        .expect("login");
    Person { user, client }
}

async fn library_names(server: &ServerProcess, token: &str, group: &str) -> Vec<(String, String)> {
    let (status, body) = call(
        &server.base,
        &server.http,
        token,
        Method::GET,
        &format!("/api/v1/groups/{group}/files"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap_or_default().to_owned(),
                f["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// What a crashed upload leaves behind, after the restart.
struct Crashed {
    server: ServerProcess,
    nurse: Person,
    group: tsunagu_protocol::messaging::Group,
    committed: tsunagu_protocol::files::FileInfo,
    committed_bytes: Vec<u8>,
}

/// Commits a file and a message through the binary, starts a large upload, `kill -9`s
/// the server part-way through it, and starts the binary again on the same data dir,
/// database and storage.
async fn crash_during_an_upload(app: &mut TestApp) -> Crashed {
    let (mut server, log) = as_process(app, &[]).await;
    let nurse = sign_in(&server, "nurse.sato").await;
    let token = nurse.token();
    let group = free_group(&nurse.client).await;
    let thread = group.main_thread_id.to_string();

    // Committed before the crash: a file and a message.
    let committed_bytes = data(1, 3 * SEG as usize + 77);
    let committed = created(
        upload_to(
            &server.base,
            &server.http,
            &token,
            &thread,
            "確定済み_記録.bin",
            committed_bytes.clone(),
        )
        .await,
    );
    nurse
        .client
        .post_text(group.main_thread_id, "記録をアップロードしました")
        .await
        .expect("post");

    // A large upload, killed part-way: the body stream announces when 24 MiB have gone
    // out (more than the socket buffers hold, so the server has stored parts of it),
    // then never ends.
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
    let sent_tx = Arc::new(Mutex::new(Some(sent_tx)));
    let announce_at = 24u64 << 20;
    let stream = futures_util::stream::unfold(0u64, move |offset| {
        let sent_tx = sent_tx.clone();
        async move {
            if offset >= announce_at {
                if let Some(tx) = sent_tx.lock().expect("lock").take() {
                    let _ = tx.send(());
                }
                std::future::pending::<()>().await;
            }
            let mut buf = vec![0u8; 1 << 20];
            fill(2, offset, &mut buf);
            Some((
                Ok::<_, std::io::Error>(bytes::Bytes::from(buf)),
                offset + (1 << 20),
            ))
        }
    });
    let upload = {
        let (base, http, token, thread) = (
            server.base.clone(),
            server.http.clone(),
            token.clone(),
            thread.clone(),
        );
        tokio::spawn(async move {
            http.post(format!("{base}/api/v1/threads/{thread}/files"))
                .query(&[("name", "中断される大きなファイル.bin")])
                .bearer_auth(token)
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
        })
    };
    tokio::time::timeout(Duration::from_secs(120), sent_rx)
        .await
        .expect("24 MiB sent within 120 s")
        .expect("announced");
    let stored_mid_upload = app.stored_files();
    server.kill9();
    if let Ok(r) = upload.await.expect("upload task") {
        // (Usually the connection just dies with the server.)
        assert_ne!(
            r.status(),
            StatusCode::CREATED,
            "the killed upload cannot have been committed"
        );
    }
    eprintln!(
        "kill -9 ({:?}): the storage held {} file(s) when the server was killed: {stored_mid_upload:?}",
        app.storage,
        stored_mid_upload.len()
    );

    let server = ServerProcess::start(crate::SERVER_BIN, &app.config, Some(&log), &[]).await;
    let nurse = sign_in(&server, "nurse.sato").await;
    Crashed {
        server,
        nurse,
        group,
        committed,
        committed_bytes,
    }
}

async fn kill_9_during_an_upload_leaves_no_visible_file(mut app: TestApp) {
    let Crashed {
        server,
        nurse,
        group,
        committed,
        committed_bytes,
    } = crash_during_an_upload(&mut app).await;
    let token = nurse.token();
    assert_eq!(
        library_names(&server, &token, &group.id.to_string()).await,
        [(committed.id.clone(), "確定済み_記録.bin".to_owned())],
        "only the committed file is visible"
    );
    let f = fetch_from(&server.base, &server.http, &token, &committed.id, None).await;
    assert_eq!(f.status, StatusCode::OK);
    assert!(f.body == committed_bytes, "the committed file is intact");
    let messages = nurse
        .client
        .list_messages(group.main_thread_id, None, None, None)
        .await
        .expect("messages");
    assert_eq!(
        messages
            .messages
            .iter()
            .map(|m| m.body.as_str())
            .collect::<Vec<_>>(),
        ["記録をアップロードしました"]
    );
    let r = server
        .http
        .get(format!("{}/api/v1/search", server.base))
        .query(&[("q", "中断")])
        .bearer_auth(&token)
        .send()
        .await
        .expect("search");
    assert_eq!(r.status(), StatusCode::OK);
    let hits: serde_json::Value = r.json().await.expect("json");
    assert_eq!(hits["files"], serde_json::json!([]));

    // In the database: one file row and one upload audited.
    let store = Store::connect(&app.config.database_url(), 2)
        .await
        .expect("database");
    let mut conn = store.conn().await.expect("conn");
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM files")
        .fetch_one(&mut *conn)
        .await
        .expect("count");
    assert_eq!(rows, 1);
    let (uploads,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'file_uploaded'")
            .fetch_one(&mut *conn)
            .await
            .expect("count");
    assert_eq!(uploads, 1);
    drop(conn);
    store.close().await;
    // The store lists the committed blob; the interrupted upload never became one.
    assert_eq!(app.blob_names().await, std::slice::from_ref(&committed.id));
}

/// What an interrupted upload left in the storage: local staging files
/// (`files/<id>#<n>`), or the S3 server's multipart parts and upload records.
fn upload_leftovers(app: &TestApp) -> Vec<std::path::PathBuf> {
    app.stored_files()
        .into_iter()
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match app.storage {
                Storage::Local => name.contains('#'),
                Storage::S3 => name.starts_with(".upload") || name.contains(".upload-"),
            }
        })
        .collect()
}

async fn the_orphan_sweeper_removes_what_a_killed_upload_left(mut app: TestApp) {
    let crashed = crash_during_an_upload(&mut app).await;
    let leftovers = upload_leftovers(&app);
    eprintln!(
        "kill -9 ({:?}): after the restart the interrupted upload left {leftovers:?}",
        app.storage
    );
    // The sweeper (what the server runs hourly), with no grace period.
    let domain = tsunagu_server::app::open_domain(&app.config)
        .await
        .expect("domain");
    domain.maintenance().sweep_orphans(0).await.expect("sweep");
    domain.close().await;
    match app.storage {
        Storage::Local => assert_eq!(
            upload_leftovers(&app),
            Vec::<std::path::PathBuf>::new(),
            "the orphan sweeper leaves the interrupted upload's staging file for ever"
        ),
        // S3 offers no listing of incomplete multipart uploads through object_store;
        // operators set an AbortIncompleteMultipartUpload lifecycle rule on the bucket
        // (docs/operations.md). What matters here: nothing became a visible object.
        Storage::S3 => assert_eq!(
            app.blob_names().await,
            std::slice::from_ref(&crashed.committed.id)
        ),
    }
    // The committed file is untouched.
    let f = fetch_from(
        &crashed.server.base,
        &crashed.server.http,
        &crashed.nurse.token(),
        &crashed.committed.id,
        None,
    )
    .await;
    assert!(f.body == crashed.committed_bytes);
}

/// KEKs from `TSUNAGU_FILES_KEKS`, the current one from `TSUNAGU_FILES_CURRENT_KEK`: new
/// files are wrapped by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keks_from_the_environment_wrap_new_files() {
    use base64::Engine;
    let mut app = spawn(tsunagu_testkit::Backend::Sqlite, Storage::Local).await;
    let kek = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let (server, _log) = as_process(
        &mut app,
        &[
            ("TSUNAGU_FILES_KEKS", format!("env-kek-1={kek}")),
            ("TSUNAGU_FILES_CURRENT_KEK", "env-kek-1".to_owned()),
        ],
    )
    .await;
    let nurse = sign_in(&server, "nurse.sato").await;
    let group = free_group(&nurse.client).await;
    let bytes = data(5, 1000);
    let info = created(
        upload_to(
            &server.base,
            &server.http,
            &nurse.token(),
            &group.main_thread_id.to_string(),
            "env.bin",
            bytes.clone(),
        )
        .await,
    );
    let store = Store::connect(&app.config.database_url(), 1)
        .await
        .expect("database");
    let mut conn = store.conn().await.expect("conn");
    let (kek_id,): (Option<String>,) = sqlx::query_as("SELECT kek_id FROM files WHERE id = $1")
        .bind(&info.id)
        .fetch_one(&mut *conn)
        .await
        .expect("row");
    assert_eq!(kek_id.as_deref(), Some("env-kek-1"));
    let f = fetch_from(&server.base, &server.http, &nurse.token(), &info.id, None).await;
    assert!(f.body == bytes);
}

async fn a_200_mib_transfer_keeps_server_memory_flat(mut app: TestApp) {
    const LEN: u64 = 200 << 20; // 200 MiB: 3200 full segments
    const SEED: u64 = 77;
    let (server, _log) = as_process(&mut app, &[]).await;
    let nurse = sign_in(&server, "nurse.sato").await;
    let token = nurse.token();
    let group = free_group(&nurse.client).await;
    let thread = group.main_thread_id.to_string();
    let pid = server.pid();

    // Warm up every path once (pools, TLS-free HTTP, the store client) before the
    // baseline.
    let warm = data(3, 2 << 20);
    let w = created(
        upload_to(
            &server.base,
            &server.http,
            &token,
            &thread,
            "warm-up.bin",
            warm.clone(),
        )
        .await,
    );
    let (_, n, _, _) = download_hashed(&server.base, &server.http, &token, &w.id).await;
    assert_eq!(n, warm.len() as u64);
    let baseline = rss_kib(pid).expect("VmRSS");

    let sent = Arc::new(Mutex::new(Sha256::new()));
    let sampler = RssSampler::start(pid);
    let started = Instant::now();
    let answer = upload_to(
        &server.base,
        &server.http,
        &token,
        &thread,
        "大容量_200MiB.bin",
        generated_body(SEED, LEN, 256 * 1024, sent.clone()),
    )
    .await;
    let upload_secs = started.elapsed().as_secs_f64();
    let upload_peak = sampler.finish();
    let info = created(answer);
    assert_eq!(info.size, LEN);
    let sent: [u8; 32] = std::mem::take(&mut *sent.lock().expect("hasher"))
        .finalize()
        .into();

    let sampler = RssSampler::start(pid);
    let started = Instant::now();
    let (status, received, digest, error) =
        download_hashed(&server.base, &server.http, &token, &info.id).await;
    let download_secs = started.elapsed().as_secs_f64();
    let download_peak = sampler.finish();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(error, None);
    assert_eq!(received, LEN);
    assert!(digest == sent, "the 200 MiB file comes back bit for bit");

    // Ranges at the far end of the big file.
    for (a, b) in [
        (LEN - SEG - 1, LEN - SEG),
        (LEN - 1, LEN - 1),
        (100 * SEG - 3, 101 * SEG + 2),
    ] {
        let f = fetch_from(
            &server.base,
            &server.http,
            &token,
            &info.id,
            Some(&format!("bytes={a}-{b}")),
        )
        .await;
        assert_eq!(f.status, StatusCode::PARTIAL_CONTENT);
        let mut want = vec![0u8; (b - a + 1) as usize];
        fill(SEED, a, &mut want);
        assert!(f.body == want, "bytes {a}-{b}");
    }

    let mib = |kib: u64| kib as f64 / 1024.0;
    eprintln!(
        "RSS ({:?}): baseline {:.1} MiB; peak during the 200 MiB upload {:.1} MiB (+{:.1}), \
         during the download {:.1} MiB (+{:.1}); upload {:.1} s, download {:.1} s",
        app.storage,
        mib(baseline),
        mib(upload_peak),
        mib(upload_peak.saturating_sub(baseline)),
        mib(download_peak),
        mib(download_peak.saturating_sub(baseline)),
        upload_secs,
        download_secs,
    );
    // A very generous sanity bound, not a performance target: a server that buffered
    // the file would grow by at least its 200 MiB; streaming holds a segment plus a
    // few multipart parts (5 MiB each).
    assert!(
        upload_peak.saturating_sub(baseline) < 150 * 1024,
        "upload grew RSS by {:.1} MiB",
        mib(upload_peak.saturating_sub(baseline))
    );
    assert!(
        download_peak.saturating_sub(baseline) < 150 * 1024,
        "download grew RSS by {:.1} MiB",
        mib(download_peak.saturating_sub(baseline))
    );
}
