//! Start-up, restart and shutdown.

use reqwest::StatusCode;
use tsunagu_protocol::accounts::UserRole;

use tsunagu_testkit::both_backends;
use tsunagu_testkit::{TestApp, USER_PASSWORD};

both_backends!(a_restart_keeps_accounts_sessions_and_the_signing_key);

async fn a_restart_keeps_accounts_sessions_and_the_signing_key(app: TestApp) {
    let (user, nurse) = app.create_user("nurse.restart", UserRole::User).await;
    let tokens = nurse.tokens().unwrap();
    let audit_before = app.audit_actions().await.len();

    let app = app.restart().await;
    // Bootstrap did not run twice and the data is all there.
    let users = app.admin.list_users().await.unwrap().users;
    assert_eq!(users.iter().filter(|u| u.login == "admin").count(), 1);
    assert!(users.iter().any(|u| u.id == user.id));
    // Tokens issued before the restart still work: same key, same sessions.
    let r = app
        .http
        .get(app.url("/api/v1/me"))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let c = app.client();
    c.set_tokens(Some(tokens));
    c.refresh().await.unwrap();
    c.me().await.unwrap();
    app.client()
        .login("nurse.restart", USER_PASSWORD, None)
        .await
        .unwrap();
    // The audit chain continues across the restart and still verifies.
    assert!(app.audit_actions().await.len() > audit_before);
    let mut conn = app.store().conn().await.unwrap();
    assert_eq!(
        tsunagu_server::audit::verify(&mut conn).await.unwrap().1,
        None
    );
}

#[tokio::test]
async fn graceful_shutdown_stops_the_server_and_readyz_reports_it() {
    let mut app = tsunagu_testkit::spawn_app(tsunagu_testkit::Backend::Sqlite).await;
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    tokio::time::timeout(std::time::Duration::from_secs(30), app.stop())
        .await
        .expect("server stops");
    assert!(
        app.http.get(app.url("/healthz")).send().await.is_err(),
        "no longer listening"
    );
}
