//! The `tsunagu` CLI against a real server: login stores a 0600 session, `me` reads it,
//! failures map to documented exit codes.

#[allow(dead_code)]
mod kit;

use kit::{start_server, tsunagu};

const PASSWORD: &str = tsunagu_testkit::ADMIN_PASSWORD;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_stores_a_private_session_and_me_reads_it() {
    let server = start_server().await;
    let (base, dir) = (server.base.clone(), &server.dir);
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
    let server = start_server().await;
    let (base, dir) = (server.base.clone(), &server.dir);
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
