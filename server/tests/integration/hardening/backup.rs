//! Backups that restore: `tsunagu-server backup --to DIR` against the real, running
//! server, then `restore --from DIR` into a fresh data dir, then a new server there —
//! messages, file bytes, the audit chain and sign-in all survive. A damaged backup, and a
//! data dir that is not empty, are refused before anything is written.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use tsunagu_protocol::accounts::{CreateUser, Profession};
use tsunagu_server::config::Config;
use tsunagu_testkit::{test_config, ServerProcess, ADMIN_PASSWORD, USER_PASSWORD};

use crate::files::harness::{created, data, fetch_from, free_group, upload_to};
use crate::SERVER_BIN;

/// `tsunagu-server <args>` on the installation of `config`, its configuration file kept
/// outside the data dir (which a restore needs empty): `(success, stderr)`.
fn run(config: &Config, args: &[&str], scratch: &Path) -> (bool, String) {
    let mut elsewhere = config.clone();
    elsewhere.data_dir = scratch.to_owned();
    let out = ServerProcess::command(SERVER_BIN, &elsewhere)
        .env("TSUNAGU_DATA_DIR", &config.data_dir)
        .args(args)
        .output()
        .expect("run tsunagu-server");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    if !dir.exists() {
        return vec![];
    }
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_running_server_restores_messages_files_audit_and_sign_in() {
    let root = tempfile::tempdir().unwrap();
    let original = test_config(&root.path().join("original"));
    let log = root.path().join("original.log");
    let server = ServerProcess::start(SERVER_BIN, &original, Some(&log), &[]).await;
    let admin = server.client();
    admin.login("admin", ADMIN_PASSWORD, None).await.unwrap();
    admin
        .create_user(&CreateUser {
            login: "nurse.backup".into(),
            display_name: "佐藤 看護師".into(),
            display_name_kana: None,
            password: USER_PASSWORD.into(),
            profession: Profession::Nurse,
            organization_id: None,
            role: None,
            must_change_password: Some(false),
        })
        .await
        .unwrap();
    let nurse = server.client();
    nurse
        .login("nurse.backup", USER_PASSWORD, None)
        .await
        .unwrap();
    let group = free_group(&nurse).await;
    let thread = group.main_thread_id;
    nurse
        .post_text(thread, "退院前カンファレンスは木曜 14 時")
        .await
        .unwrap();
    // Three segments and a bit: the blob is more than one segment of ciphertext.
    let bytes = data(15, 200_000);
    let token = nurse.tokens().unwrap().access_token;
    let file = created(
        upload_to(
            &server.base,
            &server.http,
            &token,
            &thread.to_string(),
            "紹介状.pdf",
            bytes.clone(),
        )
        .await,
    );

    // Online: the server keeps serving while the backup runs.
    let backup = root.path().join("backup");
    let (ok, err) = run(
        &original,
        &["backup", "--to", backup.to_str().unwrap()],
        &root.path().join("scratch1"),
    );
    assert!(ok, "backup: {err}");
    assert!(
        server
            .client()
            .login("nurse.backup", USER_PASSWORD, None)
            .await
            .is_ok(),
        "the server keeps serving during the backup"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).unwrap()).unwrap();
    let paths: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for part in ["database/tsunagu.db", "keys/jwt.pem", "keys/audit.pem"] {
        assert!(paths.contains(&part), "{part} in {paths:?}");
    }
    assert!(paths.iter().any(|p| p.starts_with("keys/kek/")));
    assert!(paths.iter().any(|p| p.starts_with("blobs/")), "{paths:?}");
    drop(server);

    // A damaged backup is refused, and nothing is written.
    let damaged = root.path().join("damaged");
    copy_tree(&backup, &damaged);
    let blob = paths.iter().find(|p| p.starts_with("blobs/")).unwrap();
    let mut b = std::fs::read(damaged.join(blob)).unwrap();
    b[100] ^= 1;
    std::fs::write(damaged.join(blob), b).unwrap();
    let target = test_config(&root.path().join("restored"));
    let (ok, err) = run(
        &target,
        &["restore", "--from", damaged.to_str().unwrap()],
        &root.path().join("scratch2"),
    );
    assert!(!ok && err.contains("does not match the manifest"), "{err}");
    assert!(listing(&target.data_dir).is_empty(), "nothing written");

    // The real restore, into the fresh data dir.
    let (ok, err) = run(
        &target,
        &["restore", "--from", backup.to_str().unwrap()],
        &root.path().join("scratch3"),
    );
    assert!(ok, "restore: {err}");
    // Not twice: the data dir is no longer empty.
    let (ok, err) = run(
        &target,
        &["restore", "--from", backup.to_str().unwrap()],
        &root.path().join("scratch4"),
    );
    assert!(!ok && err.contains("not empty"), "{err}");

    let log = root.path().join("restored.log");
    let restored = ServerProcess::start(SERVER_BIN, &target, Some(&log), &[]).await;
    let nurse = restored.client();
    nurse
        .login("nurse.backup", USER_PASSWORD, None)
        .await
        .expect("sign-in survives");
    let page = nurse.list_messages(thread, None, None, None).await.unwrap();
    assert_eq!(
        page.messages
            .iter()
            .map(|m| m.body.as_str())
            .collect::<Vec<_>>(),
        vec!["退院前カンファレンスは木曜 14 時"]
    );
    let token = nurse.tokens().unwrap().access_token;
    let fetched = fetch_from(&restored.base, &restored.http, &token, &file.id, None).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert!(fetched.body == bytes, "the file's bytes survive");
    let admin = restored.client();
    admin.login("admin", ADMIN_PASSWORD, None).await.unwrap();
    let v = admin.audit_verify().await.unwrap();
    assert!(v.intact && v.checked > 5, "{v:?}");
    // And the operator's own check of the restored chain and its checkpoints.
    let out = ServerProcess::command(SERVER_BIN, &target)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
