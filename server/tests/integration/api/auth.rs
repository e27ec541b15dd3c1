//! Sign-in, refresh rotation, logout, throttling, TOTP and forced password change.

use reqwest::StatusCode;
use serde_json::json;
use tsunagu_protocol::accounts::{ResetPassword, UpdatePolicy, UserRole};
use tsunagu_protocol::ErrorCode;

use tsunagu_testkit::{both_backends, each_backend};
use tsunagu_testkit::{spawn_app_with, Backend, TestApp, ADMIN_PASSWORD, USER_PASSWORD};

both_backends!(
    login_then_me_returns_the_caller_region_and_no_pending_action,
    wrong_password_unknown_user_and_deactivated_user_answer_alike,
    refresh_rotates_and_the_old_refresh_token_stops_working,
    reusing_a_refresh_token_revokes_the_whole_session,
    logout_revokes_the_access_and_refresh_tokens,
    deactivating_a_user_cuts_off_their_tokens_at_once,
    totp_required_by_policy_is_enforced_from_enrolment_to_login,
    a_reset_password_must_be_changed_before_anything_else,
    failed_and_successful_logins_are_audited_in_a_verifiable_chain,
);

async fn raw_login(app: &TestApp, login: &str, password: &str) -> (StatusCode, serde_json::Value) {
    let r = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "login": login, "password": password }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

async fn login_then_me_returns_the_caller_region_and_no_pending_action(app: TestApp) {
    let me = app.admin.me().await.unwrap();
    assert_eq!(me.user.login, "admin");
    assert_eq!(me.user.role, UserRole::RegionAdmin);
    assert_eq!(me.region.slug, "default");
    assert_eq!(me.pending_action, None);

    let r = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "login": "admin", "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(body["access_token"].as_str().unwrap().split('.').count() == 3);
    assert!(body["refresh_token"].as_str().unwrap().len() >= 43);
}

async fn wrong_password_unknown_user_and_deactivated_user_answer_alike(app: TestApp) {
    let (user, _) = app.create_user("nurse.sato", UserRole::User).await;
    app.admin.deactivate_user(user.id).await.unwrap();

    let wrong = raw_login(&app, "admin", "not the password").await;
    let unknown = raw_login(&app, "nobody.here", "not the password").await;
    let inactive = raw_login(&app, "nurse.sato", USER_PASSWORD).await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong, unknown,
        "unknown user must look like a wrong password"
    );
    assert_eq!(
        wrong, inactive,
        "a deactivated user must look like a wrong password"
    );
    assert_eq!(wrong.1["error"]["code"], "invalid_credentials");
}

async fn refresh_rotates_and_the_old_refresh_token_stops_working(app: TestApp) {
    let client = app.client();
    let first = client.login("admin", ADMIN_PASSWORD, None).await.unwrap();
    let second = client.refresh().await.unwrap();
    assert_ne!(first.refresh_token, second.refresh_token);
    assert_ne!(first.access_token, second.access_token);
    client.me().await.unwrap();
    let third = client.refresh().await.unwrap();
    assert_ne!(second.refresh_token, third.refresh_token);
    client.me().await.unwrap();
}

async fn reusing_a_refresh_token_revokes_the_whole_session(app: TestApp) {
    let client = app.client();
    let stolen = client.login("admin", ADMIN_PASSWORD, None).await.unwrap();
    let rotated = client.refresh().await.unwrap();

    // The thief replays the old refresh token.
    let r = app
        .http
        .post(app.url("/api/v1/auth/refresh"))
        .json(&json!({ "refresh_token": stolen.refresh_token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_refresh_token");

    // The whole family is gone: the legitimate newer refresh token and the access
    // token issued with it fail too.
    let r = app
        .http
        .post(app.url("/api/v1/auth/refresh"))
        .json(&json!({ "refresh_token": rotated.refresh_token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .http
        .get(app.url("/api/v1/me"))
        .bearer_auth(&rotated.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Other sessions of the same user are untouched.
    app.admin.me().await.unwrap();
    assert!(app
        .audit_actions()
        .await
        .contains(&"refresh_reuse_detected".to_owned()));
}

async fn logout_revokes_the_access_and_refresh_tokens(app: TestApp) {
    let client = app.client();
    let tokens = client.login("admin", ADMIN_PASSWORD, None).await.unwrap();
    client.logout().await.unwrap();
    let r = app
        .http
        .get(app.url("/api/v1/me"))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = app
        .http
        .post(app.url("/api/v1/auth/refresh"))
        .json(&json!({ "refresh_token": tokens.refresh_token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Logging out again, or with garbage, is not an error and reveals nothing.
    let r = app
        .http
        .post(app.url("/api/v1/auth/logout"))
        .json(&json!({ "refresh_token": "garbage" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

async fn deactivating_a_user_cuts_off_their_tokens_at_once(app: TestApp) {
    let (user, client) = app.create_user("care.manager", UserRole::User).await;
    client.me().await.unwrap();
    let tokens = client.tokens().unwrap();
    app.admin.deactivate_user(user.id).await.unwrap();

    let r = app
        .http
        .get(app.url("/api/v1/me"))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let err = client.refresh().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidRefreshToken));

    // Reactivation lets them sign in again, with a new session.
    app.admin.reactivate_user(user.id).await.unwrap();
    let again = app.client();
    again
        .login("care.manager", USER_PASSWORD, None)
        .await
        .unwrap();
    again.me().await.unwrap();
}

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

async fn totp_required_by_policy_is_enforced_from_enrolment_to_login(app: TestApp) {
    let (_, nurse) = app.create_user("nurse.tanaka", UserRole::User).await;
    app.admin
        .update_policy(&UpdatePolicy {
            mfa_required: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();

    // Signed in without a second factor: only the account endpoints are open.
    let me = nurse.me().await.unwrap();
    assert_eq!(
        me.pending_action.as_deref(),
        Some("mfa_enrollment_required")
    );
    let err = app.admin.list_users().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::MfaEnrollmentRequired));
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));

    let enrolment = nurse.totp_begin().await.unwrap();
    assert!(enrolment.otpauth_url.starts_with("otpauth://totp/"));
    let err = nurse.totp_confirm("000000").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidTotp));
    let confirming = totp_code(&enrolment.secret, 0);
    nurse.totp_confirm(&confirming).await.unwrap();
    assert_eq!(nurse.me().await.unwrap().pending_action, None);

    // From now on sign-in needs a fresh code.
    let fresh = app.client();
    let err = fresh
        .login("nurse.tanaka", USER_PASSWORD, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TotpRequired));
    let err = fresh
        .login("nurse.tanaka", USER_PASSWORD, Some("123456"))
        .await
        .unwrap_err();
    assert!(matches!(err.code(), Some(ErrorCode::InvalidTotp)));
    // The confirming code's time step was burnt: replaying it fails…
    let err = fresh
        .login("nurse.tanaka", USER_PASSWORD, Some(&confirming))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidTotp));
    // …while the next step's code (inside the one-step window) works once.
    let code = totp_code(&enrolment.secret, 30);
    fresh
        .login("nurse.tanaka", USER_PASSWORD, Some(&code))
        .await
        .unwrap();
    fresh.me().await.unwrap();
    // Replaying the same code is refused.
    let err = app
        .client()
        .login("nurse.tanaka", USER_PASSWORD, Some(&code))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidTotp));
    // A wrong password with TOTP on still says only "invalid credentials".
    let err = app
        .client()
        .login("nurse.tanaka", "wrong password!", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidCredentials));
}

async fn a_reset_password_must_be_changed_before_anything_else(app: TestApp) {
    let (user, _) = app.create_user("admin2", UserRole::RegionAdmin).await;
    app.admin
        .reset_password(
            user.id,
            &ResetPassword {
                password: "temporary password 1".into(),
                must_change_password: None,
            },
        )
        .await
        .unwrap();
    let client = app.client();
    client
        .login("admin2", "temporary password 1", None)
        .await
        .unwrap();
    assert_eq!(
        client.me().await.unwrap().pending_action.as_deref(),
        Some("password_change_required")
    );
    let err = client.list_users().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PasswordChangeRequired));
    let err = client
        .change_password("temporary password 1", "short")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::WeakPassword));
    let err = client
        .change_password("wrong current pw", "a brand new password")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidCredentials));
    client
        .change_password("temporary password 1", "a brand new password")
        .await
        .unwrap();
    client.list_users().await.unwrap();
}

async fn failed_and_successful_logins_are_audited_in_a_verifiable_chain(app: TestApp) {
    let _ = raw_login(&app, "admin", "wrong password").await;
    let actions = app.audit_actions().await;
    assert!(actions.contains(&"login_succeeded".to_owned()));
    assert!(actions.contains(&"login_failed".to_owned()));
    let mut conn = app.store().conn().await.unwrap();
    let (checked, broken) = tsunagu_server::audit::verify(&mut conn).await.unwrap();
    assert_eq!(broken, None);
    assert_eq!(checked as usize, actions.len());
}

// A throttle of its own (3 attempts), so a server of its own on each backend.
each_backend!(too_many_attempts_for_one_account_are_throttled_with_429);

async fn too_many_attempts_for_one_account_are_throttled_with_429(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.auth.account_burst = 3;
        c.auth.account_refill_secs = 3600;
    })
    .await;
    // The harness's own admin login spent one attempt.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(raw_login(&app, "admin", "wrong password").await.0);
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let r = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "login": "admin", "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert!(r.headers().get("retry-after").is_some());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");
    // Another account from the same address is not affected.
    let other = raw_login(&app, "someone.else", "wrong password").await;
    assert_eq!(other.0, StatusCode::UNAUTHORIZED);
    assert!(app
        .audit_actions()
        .await
        .contains(&"login_throttled".to_owned()));
}

#[tokio::test]
async fn too_many_attempts_from_one_address_are_throttled_with_429() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.auth.ip_burst = 4;
        c.auth.ip_refill_secs = 3600;
    })
    .await;
    let mut last = StatusCode::OK;
    for i in 0..5 {
        last = raw_login(&app, &format!("user{i}"), "wrong password")
            .await
            .0;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_whole_ward_signs_in_through_one_address_while_guessing_from_it_is_throttled() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.auth.ip_burst = 4;
        c.auth.ip_refill_secs = 3600;
    })
    .await;
    // Thirty nurses behind one NAT address at the start of a shift: successes do not
    // spend the address's allowance.
    for i in 0..30 {
        let login = format!("ward.nurse{i}");
        app.admin
            .create_user(&tsunagu_testkit::new_user(&login, UserRole::User))
            .await
            .unwrap();
        let (status, body) = raw_login(&app, &login, USER_PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "{login}: {body}");
    }
    // Four wrong passwords are answered; then the address waits, for every account.
    for i in 0..4 {
        let (status, _) = raw_login(&app, &format!("ward.nurse{i}"), "wrong password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = raw_login(&app, "ward.nurse20", USER_PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}
