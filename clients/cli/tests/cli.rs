//! The `tsunagu` CLI against a real server: login stores a 0600 session, `me` reads it,
//! failures map to documented exit codes.

use std::process::Stdio;

use secrecy::SecretString;
use tokio::io::AsyncWriteExt;
use tsunagu_server::app::Application;
use tsunagu_server::config::Config;

const PASSWORD: &str = "cli test admin password";

async fn start_server(dir: &std::path::Path) -> String {
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.join("data"),
        ..Default::default()
    };
    config.limits = tsunagu_server::config::LimitsConfig::unlimited();
    config.bootstrap.admin_password = Some(SecretString::from(PASSWORD));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = Application::build_with_listener(&config, listener)
        .await
        .unwrap();
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    base
}

async fn tsunagu(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tsunagu"))
        .args(args)
        .env_remove("TSUNAGU_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_stores_a_private_session_and_me_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path()).await;
    let session = dir.path().join("session.json");
    let session_arg = session.to_str().unwrap();

    let (code, out, err) = tsunagu(
        &[
            "login",
            "--server",
            &base,
            "--login",
            "admin",
            "--password-stdin",
            "--session-file",
            session_arg,
        ],
        Some(&format!("{PASSWORD}\n")),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Signed in as Administrator"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&session).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let stored = std::fs::read_to_string(&session).unwrap();
    assert!(!stored.contains(PASSWORD), "the password is never stored");

    let (code, out, _) = tsunagu(&["me", "--json", "--session-file", session_arg], None).await;
    assert_eq!(code, 0);
    let me: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(me["user"]["login"], "admin");
    assert_eq!(me["region"]["slug"], "default");

    let (code, out, _) = tsunagu(&["me", "--session-file", session_arg], None).await;
    assert_eq!(code, 0);
    assert!(out.contains("region_admin"), "{out}");

    let (code, _, _) = tsunagu(&["logout", "--session-file", session_arg], None).await;
    assert_eq!(code, 0);
    assert!(!session.exists());
    let (code, _, err) = tsunagu(&["me", "--session-file", session_arg], None).await;
    assert_eq!(code, 2, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_map_to_exit_codes_and_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path()).await;
    let session = dir.path().join("s.json");
    let session_arg = session.to_str().unwrap();

    let (code, _, err) = tsunagu(
        &[
            "login",
            "--json",
            "--server",
            &base,
            "--login",
            "admin",
            "--password-stdin",
            "--session-file",
            session_arg,
        ],
        Some("wrong password\n"),
    )
    .await;
    assert_eq!(code, 1);
    let body: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(body["error"]["code"], "invalid_credentials");
    assert!(!session.exists());

    // Nothing listens on port 1.
    let (code, _, _) = tsunagu(
        &[
            "login",
            "--server",
            "http://127.0.0.1:1",
            "--login",
            "admin",
            "--password-stdin",
            "--session-file",
            session_arg,
        ],
        Some("x\n"),
    )
    .await;
    assert_eq!(code, 3);
}
