//! The `tsunagu-server` binary's operator subcommands, run as an operator would.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use tsunagu_testkit::{spawn_app_with, Backend};

async fn server_cmd(
    data_dir: &std::path::Path,
    args: &[&str],
    stdin: &str,
) -> (i32, String, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tsunagu-server"))
        .args(args)
        .env("TSUNAGU_DATA_DIR", data_dir)
        .env(
            "TSUNAGU_BOOTSTRAP_ADMIN_PASSWORD",
            tsunagu_testkit::ADMIN_PASSWORD,
        )
        .env("TSUNAGU_LOG_LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_and_admin_subcommands_prepare_accounts_the_server_then_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let (code, _, err) = server_cmd(&data, &["migrate"], "").await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = server_cmd(
        &data,
        &[
            "admin",
            "create-region",
            "--slug",
            "soka",
            "--name",
            "草加市医師会",
        ],
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = server_cmd(
        &data,
        &[
            "admin",
            "create-user",
            "--region",
            "soka",
            "--login",
            "soka.admin",
            "--display-name",
            "草加 管理者",
            "--profession",
            "clerk",
            "--role",
            "region_admin",
            "--password-stdin",
        ],
        "soka admin password\n",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        uuid::Uuid::parse_str(out.trim()).is_ok(),
        "prints the new user id: {out}"
    );
    // Generated one-time password for a second user.
    let (code, _, err) = server_cmd(
        &data,
        &[
            "admin",
            "create-user",
            "--region",
            "soka",
            "--login",
            "soka.nurse",
            "--display-name",
            "看護師",
            "--profession",
            "nurse",
        ],
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let one_time = err.rsplit(": ").next().unwrap().trim().to_owned();
    // Unknown values are refused with a message, not a panic.
    let (code, _, err) = server_cmd(
        &data,
        &[
            "admin",
            "create-user",
            "--login",
            "x.y.z",
            "--display-name",
            "x",
            "--profession",
            "wizard",
        ],
        "",
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("unknown profession"), "{err}");

    // The server started on the same data dir accepts them.
    let app = spawn_app_with(Backend::Sqlite, |c| c.data_dir = data.clone()).await;
    let admin = app.client();
    admin
        .login("soka.admin", "soka admin password", None)
        .await
        .unwrap();
    let me = admin.me().await.unwrap();
    assert_eq!(me.region.slug, "soka");
    assert_eq!(me.pending_action, None);
    let nurse = app.client();
    nurse.login("soka.nurse", &one_time, None).await.unwrap();
    assert_eq!(
        nurse.me().await.unwrap().pending_action.as_deref(),
        Some("password_change_required")
    );

    // reset-password signs the user out everywhere and hands out a new one-time password.
    let (code, _, err) = server_cmd(
        &data,
        &["admin", "reset-password", "--login", "soka.nurse"],
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(nurse.me().await.is_err(), "old session revoked");
    let fresh = err.rsplit(": ").next().unwrap().trim().to_owned();
    app.client()
        .login("soka.nurse", &fresh, None)
        .await
        .unwrap();
    let (code, _, err) =
        server_cmd(&data, &["admin", "reset-totp", "--login", "soka.nurse"], "").await;
    assert_eq!(code, 0, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_the_environment_are_accepted_and_listed() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tsunagu-server"))
        .args(["keys", "list"])
        .env("TSUNAGU_DATA_DIR", dir.path().join("data"))
        .env(
            "TSUNAGU_BOOTSTRAP_ADMIN_PASSWORD",
            tsunagu_testkit::ADMIN_PASSWORD,
        )
        .env("TSUNAGU_FILES_KEKS", format!("envkek={key}"))
        .env("TSUNAGU_FILES_CURRENT_KEK", "envkek")
        .env(
            "TSUNAGU_FILES_S3_SECRET_ACCESS_KEY",
            "not used with local storage",
        )
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "envkek (current)");
    // With keys in the environment none is generated on disk.
    assert!(!dir.path().join("data/keys/kek").exists());
}
