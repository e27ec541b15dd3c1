//! Key rotation that signs nobody out and keeps old evidence verifiable: the access-token
//! key ring (`keys jwt-rotate`) and the audit checkpoint key (`keys audit-rotate`), both
//! run as the operator would, through the real binary, and both audited.

use std::process::Output;

use reqwest::StatusCode;
use tsunagu_server::config::Config;
use tsunagu_testkit::{each_backend, spawn_app_with, Backend, ServerProcess, TestApp};

use crate::SERVER_BIN;

each_backend!(
    a_signing_key_rotation_keeps_everyone_signed_in,
    checkpoints_signed_before_an_audit_key_rotation_still_verify,
);

fn keys(config: &Config, what: &str) -> Output {
    let out = ServerProcess::command(SERVER_BIN, config)
        .args(["keys", what])
        .output()
        .expect("run tsunagu-server keys");
    assert!(
        out.status.success(),
        "keys {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn me_status(app: &TestApp, token: &str) -> StatusCode {
    app.http
        .get(app.url("/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

async fn rotations(app: &TestApp, key: &str) -> usize {
    let mut conn = app.store().conn().await.unwrap();
    let rows: Vec<(Option<String>,)> =
        sqlx::query_as("SELECT detail FROM audit_events WHERE action = 'key_rotated'")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    rows.iter()
        .filter(|(d,)| d.as_deref().unwrap_or("").contains(key))
        .count()
}

async fn a_signing_key_rotation_keeps_everyone_signed_in(backend: Backend) {
    // Activation 0 here, so the new key signs at once; servers default to 60 s.
    let app = spawn_app_with(backend, |c| c.auth.jwt_key_activation_secs = 0).await;
    let before = app.admin.tokens().unwrap().access_token;
    let old_kid = kid_of(&before);
    let out = keys(&app.config, "jwt-rotate");
    let new_kid = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_ne!(new_kid, old_kid);
    // The running server picks the ring up (every 10 s; here at once).
    assert!(app.domain.accounts().reload_keys().unwrap());
    assert_eq!(
        me_status(&app, &before).await,
        StatusCode::OK,
        "a token of the old key still works"
    );
    let fresh = app.client();
    fresh
        .login("admin", tsunagu_testkit::ADMIN_PASSWORD, None)
        .await
        .unwrap();
    let after = fresh.tokens().unwrap().access_token;
    assert_eq!(
        kid_of(&after),
        new_kid,
        "new tokens are signed by the new key"
    );
    assert_eq!(rotations(&app, "access_token").await, 1, "audited");
    // A restarted node (or another node) reads the same ring: both tokens verify.
    let app = app.restart().await;
    assert_eq!(me_status(&app, &before).await, StatusCode::OK);
    assert_eq!(me_status(&app, &after).await, StatusCode::OK);
    // `keys status` shows both; nothing is retired yet, so prune removes nothing.
    let listed = String::from_utf8(keys(&app.config, "status").stdout).unwrap();
    assert!(listed.contains(&format!("{old_kid} Verifying")), "{listed}");
    assert!(listed.contains(&format!("{new_kid} Signing")), "{listed}");
    let pruned = keys(&app.config, "jwt-prune");
    assert!(String::from_utf8_lossy(&pruned.stderr).contains("0 retired keys removed"));
}

async fn checkpoints_signed_before_an_audit_key_rotation_still_verify(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.audit.checkpoint_every = 1).await;
    let signer = tsunagu_server::app::load_audit_signer(&app.config).unwrap();
    let store = app.store().clone();
    let settings = tsunagu_server::app::checkpoint_settings(&app.config);
    tsunagu_server::audit::checkpoint::run_once(&store, &signer, settings)
        .await
        .unwrap();
    keys(&app.config, "audit-rotate");
    // More entries, checkpointed by the new key (as a running server does after
    // re-reading the key file).
    app.client()
        .login("admin", "wrong password!", None)
        .await
        .ok();
    let signer = tsunagu_server::app::load_audit_signer(&app.config).unwrap();
    assert!(
        tsunagu_server::audit::checkpoint::run_once(&store, &signer, settings)
            .await
            .unwrap()
            > 0
    );
    let report = app
        .admin
        .audit_verify()
        .await
        .expect("verification over REST");
    assert!(report.intact, "{report:?}");
    let mut conn = store.conn().await.unwrap();
    let key_ids: Vec<(String,)> = sqlx::query_as("SELECT DISTINCT key_id FROM audit_checkpoints")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(key_ids.len(), 2, "checkpoints by both keys: {key_ids:?}");
    drop(conn);
    // The shell's verification says the same (exit 0).
    let status = String::from_utf8(keys(&app.config, "status").stdout).unwrap();
    assert!(
        status.contains("(verifying)") && status.contains("(signing)"),
        "{status}"
    );
    let out = ServerProcess::command(SERVER_BIN, &app.config)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(rotations(&app, "audit_checkpoint").await, 1, "audited");
}
