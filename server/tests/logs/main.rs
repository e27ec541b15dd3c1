//! Logs carry ids, never message text, patient data, file names or tokens. A binary of
//! its own, because it installs the process-wide log subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::fmt::MakeWriter;
use tsunagu_protocol::accounts::UserRole;
use tsunagu_protocol::messaging::{CreateGroup, GroupKind, PatientProfile};
use tsunagu_testkit::{each_backend, spawn_app, Backend, ADMIN_PASSWORD, USER_PASSWORD};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Everything logged in this process, as JSON lines. Installed once, before the first
/// server starts, and shared by both halves: each checks the whole capture, which only
/// makes its check stricter.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(
                "debug,hyper=info,h2=info,rustls=info,tungstenite=info,tokio_tungstenite=info",
            )
            .with_writer(capture.clone())
            .init();
        capture
    })
}

each_backend!(logs_name_ids_but_never_text_names_files_or_tokens);

async fn logs_name_ids_but_never_text_names_files_or_tokens(backend: Backend) {
    let capture = capture();
    let mut secrets = Vec::new();
    // The server is stopped (dropped) before its logs are read.
    {
        let app = spawn_app(backend).await;
        let (_, nurse) = app.create_user("log.nurse", UserRole::User).await;
        let group = nurse
            .create_group(&CreateGroup {
                kind: GroupKind::Patient,
                name: "GROUPNAME-MARKER".into(),
                description: None,
                patient: Some(PatientProfile {
                    name: "PATIENT-MARKER 山田".into(),
                    name_kana: None,
                    birth_date: Some("1940-01-02".into()),
                    sex: None,
                    care_level: None,
                    address: Some("ADDRESS-MARKER".into()),
                    primary_physician: None,
                    notes: None,
                }),
            })
            .await
            .unwrap();
        nurse
            .post_text(group.main_thread_id, "BODY-MARKER 血圧 120/80")
            .await
            .unwrap();
        let token = nurse.tokens().unwrap().access_token;
        secrets.push(token.clone());
        secrets.push(nurse.tokens().unwrap().refresh_token);
        let r = app
            .http
            .post(app.url(&format!(
                "/api/v1/threads/{}/files?name=FILENAME-MARKER.txt",
                group.main_thread_id
            )))
            .bearer_auth(&token)
            .body("FILE-CONTENT-MARKER")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        // A failed login with a password-looking login id, and a forged token.
        let _ = app
            .client()
            .login("PASSWORD-MARKER", "PASSWORD-MARKER", None)
            .await;
        let _ = app
            .http
            .get(app.url("/api/v1/me"))
            .bearer_auth("TOKEN-MARKER")
            .send()
            .await;
        let _ = app
            .http
            .get(app.url("/api/v1/me"))
            .bearer_auth(&token)
            .send()
            .await;
    }

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("request_id"),
        "the capture works and spans carry request ids"
    );
    for marker in [
        "GROUPNAME-MARKER",
        "PATIENT-MARKER",
        "山田",
        "ADDRESS-MARKER",
        "BODY-MARKER",
        "FILENAME-MARKER",
        "FILE-CONTENT-MARKER",
        "PASSWORD-MARKER",
        "TOKEN-MARKER",
        ADMIN_PASSWORD,
        USER_PASSWORD,
    ] {
        assert!(!logs.contains(marker), "{marker} leaked into the logs");
    }
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a token leaked into the logs"
        );
    }
}
