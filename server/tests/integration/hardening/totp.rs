//! TOTP secrets at rest: sealed by the key-encryption key like file data keys, so a copy
//! of the database alone no longer passes anyone's second factor; secrets stored in plain
//! text by an older version are sealed at start-up.

use tsunagu_protocol::accounts::UserRole;
use tsunagu_testkit::{both_backends, TestApp, USER_PASSWORD};

both_backends!(
    an_enrolled_totp_secret_is_stored_sealed_and_still_signs_in,
    plain_secrets_from_an_older_version_are_sealed_at_start_up,
);

/// The code an authenticator app shows `offset_secs` from now.
fn totp_code(secret_b32: &str, offset_secs: u64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret_b32.to_owned())
        .to_bytes()
        .unwrap();
    let totp =
        totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes, None, "x".into()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    totp.generate(now + offset_secs)
}

async fn stored(app: &TestApp, login: &str) -> (Option<String>, Option<String>) {
    let mut conn = app.store().conn().await.unwrap();
    sqlx::query_as("SELECT totp_secret, totp_kek_id FROM users WHERE login = $1")
        .bind(login)
        .fetch_one(&mut *conn)
        .await
        .unwrap()
}

async fn enrolled(app: &TestApp, login: &str) -> String {
    let (_, nurse) = app.create_user(login, UserRole::User).await;
    let enrolment = nurse.totp_begin().await.unwrap();
    nurse
        .totp_confirm(&totp_code(&enrolment.secret, 0))
        .await
        .unwrap();
    enrolment.secret
}

async fn an_enrolled_totp_secret_is_stored_sealed_and_still_signs_in(app: TestApp) {
    let secret = enrolled(&app, "nurse.totp").await;
    let (column, kek) = stored(&app, "nurse.totp").await;
    let column = column.expect("a stored secret");
    assert_ne!(column, secret, "the secret is not stored as it is");
    assert!(!column.contains(&secret[..8]), "not even partly");
    let kek = kek.expect("sealed by a KEK");
    assert!(kek.starts_with("kek-"), "{kek}");
    // The step of the confirming code is burnt; the next one signs in.
    app.client()
        .login("nurse.totp", USER_PASSWORD, Some(&totp_code(&secret, 30)))
        .await
        .expect("sign-in with a code from the sealed secret");
}

async fn plain_secrets_from_an_older_version_are_sealed_at_start_up(app: TestApp) {
    let secret = enrolled(&app, "nurse.legacy").await;
    // What a server before migration 0011 left behind: the secret in plain text.
    {
        let mut conn = app.store().conn().await.unwrap();
        sqlx::query("UPDATE users SET totp_secret = $1, totp_kek_id = NULL WHERE login = $2")
            .bind(&secret)
            .bind("nurse.legacy")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    // Until the pass runs, a plain secret still works (a rolling upgrade).
    app.client()
        .login("nurse.legacy", USER_PASSWORD, Some(&totp_code(&secret, 30)))
        .await
        .expect("a plain secret is still read");
    let app = app.restart().await;
    let (column, kek) = stored(&app, "nurse.legacy").await;
    assert_ne!(
        column.as_deref(),
        Some(secret.as_str()),
        "sealed at start-up"
    );
    assert!(kek.is_some());
    let rotations = app
        .audit_actions()
        .await
        .into_iter()
        .filter(|a| a == "key_rotated")
        .count();
    assert_eq!(rotations, 1, "the sealing is audited once");
    // A second start finds nothing to do.
    let app = app.restart().await;
    assert_eq!(stored(&app, "nurse.legacy").await.1, kek);
    let rotations = app
        .audit_actions()
        .await
        .into_iter()
        .filter(|a| a == "key_rotated")
        .count();
    assert_eq!(rotations, 1, "idempotent");
}
