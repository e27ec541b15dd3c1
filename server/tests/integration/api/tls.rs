//! TLS with rustls when a certificate and key are configured.

use tsunagu_testkit::{spawn_app_with, Backend, ADMIN_PASSWORD};

#[tokio::test]
async fn a_tls_handshake_with_a_generated_certificate_serves_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();

    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.tls.cert_file = Some(cert_path.clone());
        c.tls.key_file = Some(key_path.clone());
    })
    .await;
    assert!(app.base.starts_with("https://"));

    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", app.addr)
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", app.addr.port());
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let client = tsunagu_client::Client::with_http(&base, http.clone()).unwrap();
    client.login("admin", ADMIN_PASSWORD, None).await.unwrap();
    assert_eq!(client.me().await.unwrap().user.login, "admin");

    // Plain HTTP to the TLS port does not get an answer.
    let plain = reqwest::get(format!("http://{}/healthz", app.addr)).await;
    assert!(!plain.map(|r| r.status().is_success()).unwrap_or(false));
    // A client that does not trust the certificate refuses the handshake.
    assert!(reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err());
}
