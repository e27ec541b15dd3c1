//! The token endpoint: client credentials with a secret (Basic or in the form) and with
//! `private_key_jwt`, each refusal with the OAuth error it must carry.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tsunagu_protocol::apps::{Scope, UpdateApiClient};
use tsunagu_testkit::{both_backends, TestApp};

use super::{call, code, register, register_with, token, token_request};

both_backends!(
    a_secret_by_basic_or_in_the_form_gets_a_bearer_token_with_the_granted_scopes,
    a_wrong_secret_an_unknown_client_and_a_disabled_one_are_the_same_invalid_client,
    a_rotated_secret_keeps_working_only_for_its_grace_period,
    scopes_grant_types_and_bodies_are_checked_with_oauth_errors,
    a_signed_assertion_gets_a_token_and_every_bad_assertion_is_invalid_client,
    disabling_an_app_cuts_its_issued_tokens_and_narrowing_scopes_applies_to_them,
    registration_is_for_the_regions_admin_and_checks_what_it_stores,
    an_app_account_never_signs_in_with_a_password_nor_is_managed_as_a_person,
    the_sdk_in_app_mode_gets_its_token_itself_and_a_new_one_when_refused,
);

async fn a_secret_by_basic_or_in_the_form_gets_a_bearer_token_with_the_granted_scopes(
    app: TestApp,
) {
    let client = register(
        &app,
        "退院サマリー連携",
        &[Scope::GroupsRead, Scope::MessagesWrite],
    )
    .await;
    assert!(client.client_id.starts_with("tsa_") && client.client_secret.starts_with("tss_"));

    let (status, body, headers) = token_request(
        &app,
        Some((&client.client_id, &client.client_secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "messages:write groups:read");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    assert_eq!(headers["cache-control"], "no-store");

    // client_secret_post, asking for less than was granted.
    let (status, body, _) = token_request(
        &app,
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client.client_id),
            ("client_secret", &client.client_secret),
            ("scope", "groups:read"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "groups:read");
    let narrow = body["access_token"].as_str().unwrap().to_owned();
    let (status, body, _) = call(&app, &narrow, Method::GET, "/api/v1/groups", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The app's identity is its account.
    let (status, me, _) = call(&app, &narrow, Method::GET, "/api/v1/me", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user"]["id"], json!(client.user_id));
    assert_eq!(me["user"]["kind"], "app");
    assert_eq!(me["user"]["display_name"], "退院サマリー連携");
    assert!(app
        .audit_actions()
        .await
        .contains(&"app_token_issued".to_owned()));
}

async fn a_wrong_secret_an_unknown_client_and_a_disabled_one_are_the_same_invalid_client(
    app: TestApp,
) {
    let client = register(&app, "薬局連携", &[Scope::FilesWrite]).await;
    let other = register(&app, "停止予定", &[Scope::FilesWrite]).await;
    app.admin.disable_api_client(other.id).await.unwrap();
    let form = [("grant_type", "client_credentials")];
    let wrong = format!("{}x", client.client_secret);
    for (id, secret) in [
        (client.client_id.as_str(), wrong.as_str()),
        ("tsa_nobody", client.client_secret.as_str()),
        (other.client_id.as_str(), other.client_secret.as_str()),
    ] {
        let (status, body, headers) = token_request(&app, Some((id, secret)), &form).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{id}: {body}");
        assert_eq!(body["error"], "invalid_client");
        assert!(headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic"));
    }
    // In the form: 401 without a Basic challenge.
    let (status, body, _) = token_request(
        &app,
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client.client_id),
            ("client_secret", "tss_guess"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let refused = app
        .audit_actions()
        .await
        .iter()
        .filter(|a| *a == "app_token_refused")
        .count();
    assert_eq!(refused, 3, "wrong secret twice and the disabled client");
}

async fn a_rotated_secret_keeps_working_only_for_its_grace_period(app: TestApp) {
    let client = register(&app, "予定表連携", &[Scope::GroupsRead]).await;
    let form = [("grant_type", "client_credentials")];
    let works = |secret: String| {
        let app = &app;
        let id = client.client_id.clone();
        async move { token_request(app, Some((&id, &secret)), &form).await.0 == StatusCode::OK }
    };

    // Without a grace period the old secret stops at once.
    let second = app
        .admin
        .rotate_api_client_secret(client.id, None)
        .await
        .unwrap();
    assert!(!works(client.client_secret.clone()).await);
    assert!(works(second.client_secret.clone()).await);

    // With one, both work until it ends; then only the new one.
    let third = app
        .admin
        .rotate_api_client_secret(client.id, Some(2))
        .await
        .unwrap();
    assert!(works(second.client_secret.clone()).await);
    assert!(works(third.client_secret.clone()).await);
    let listed = app.admin.get_api_client(client.id).await.unwrap();
    assert_eq!(listed.secrets.len(), 2, "{listed:?}");
    tokio::time::sleep(std::time::Duration::from_millis(2300)).await;
    assert!(!works(second.client_secret.clone()).await);
    assert!(works(third.client_secret.clone()).await);
    assert!(app
        .audit_actions()
        .await
        .contains(&"api_client_secret_rotated".to_owned()));
}

async fn scopes_grant_types_and_bodies_are_checked_with_oauth_errors(app: TestApp) {
    let client = register(&app, "記録連携", &[Scope::MessagesRead]).await;
    let basic = Some((client.client_id.as_str(), client.client_secret.as_str()));
    type Case<'a> = (&'a [(&'a str, &'a str)], StatusCode, &'a str);
    let cases: &[Case] = &[
        (
            &[
                ("grant_type", "client_credentials"),
                ("scope", "files:read"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            &[("grant_type", "client_credentials"), ("scope", "admin")],
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            &[("grant_type", "password"), ("username", "x")],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            &[("scope", "messages:read")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (form, status, error) in cases {
        let (got, body, _) = token_request(&app, basic, form).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (*status, Some(*error)),
            "{form:?}: {body}"
        );
    }
    // Two ways of authenticating at once.
    let (got, body, _) = token_request(
        &app,
        basic,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client.client_id),
            ("client_secret", &client.client_secret),
        ],
    )
    .await;
    assert_eq!(
        (got, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    // JSON instead of a form.
    let response = app
        .http
        .post(app.url("/api/v1/oauth/token"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    // No client authentication at all.
    let (got, body, _) = token_request(&app, None, &[("grant_type", "client_credentials")]).await;
    assert_eq!(
        (got, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
}

/// An EC P-256 key pair: the PEM to sign with and the public JWK to register.
fn p256_key(kid: &str) -> (jsonwebtoken::EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = pair.public_key_raw();
    assert_eq!(raw.len(), 65, "uncompressed point");
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
    });
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    (key, jwk)
}

fn assertion(key: &jsonwebtoken::EncodingKey, kid: &str, claims: Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn a_signed_assertion_gets_a_token_and_every_bad_assertion_is_invalid_client(app: TestApp) {
    let (key, jwk) = p256_key("k1");
    let (stranger_key, _) = p256_key("k1");
    let client = register_with(
        &app,
        "地域連携アーカイブ",
        &[Scope::AuditRead],
        Some(json!({ "keys": [jwk] })),
    )
    .await;
    let aud = format!("http://{}/api/v1/oauth/token", app.addr);
    let claims = |jti: &str, aud: &str, exp: u64| json!({ "iss": client.client_id, "sub": client.client_id, "aud": aud, "exp": exp, "jti": jti });
    let ask = |jwt: String| {
        let app = &app;
        async move {
            token_request(
                app,
                None,
                &[
                    ("grant_type", "client_credentials"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &jwt),
                ],
            )
            .await
        }
    };

    let good = assertion(&key, "k1", claims("jti-1", &aud, now() + 120));
    let (status, body, _) = ask(good.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "audit:read");
    let archive = body["access_token"].as_str().unwrap().to_owned();
    let (status, body, _) = call(
        &app,
        &archive,
        Method::GET,
        "/api/v1/admin/audit/file-access",
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the archive pulls the report: {body}"
    );

    let refused = [
        ("replayed jti", good),
        (
            "wrong aud",
            assertion(
                &key,
                "k1",
                claims("jti-2", "https://elsewhere.example/token", now() + 120),
            ),
        ),
        (
            "expired",
            assertion(&key, "k1", claims("jti-3", &aud, now() - 60)),
        ),
        (
            "exp too far",
            assertion(&key, "k1", claims("jti-4", &aud, now() + 3600)),
        ),
        (
            "another key",
            assertion(&stranger_key, "k1", claims("jti-5", &aud, now() + 120)),
        ),
        (
            "unknown kid",
            assertion(&key, "k2", claims("jti-6", &aud, now() + 120)),
        ),
    ];
    for (why, jwt) in refused {
        let (status, body, _) = ask(jwt).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client")),
            "{why}: {body}"
        );
    }
    let mut conn = app.store().conn().await.unwrap();
    let reasons: Vec<(String,)> = sqlx::query_as(
        "SELECT detail FROM audit_events WHERE action = 'app_token_refused' ORDER BY seq",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let reasons: Vec<String> = reasons
        .into_iter()
        .map(|(d,)| {
            serde_json::from_str::<Value>(&d).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "replayed_jti",
            "wrong_audience",
            "expired",
            "exp_too_far",
            "bad_signature",
            "unknown_kid"
        ]
    );
}

async fn disabling_an_app_cuts_its_issued_tokens_and_narrowing_scopes_applies_to_them(
    app: TestApp,
) {
    let client = register(&app, "一時連携", &[Scope::GroupsRead, Scope::MessagesRead]).await;
    let t = token(&app, &client).await;
    assert_eq!(
        call(&app, &t, Method::GET, "/api/v1/groups", None).await.0,
        StatusCode::OK
    );

    app.admin
        .update_api_client(
            client.id,
            &UpdateApiClient {
                scopes: Some(vec![Scope::MessagesRead]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (status, body, headers) = call(&app, &t, Method::GET, "/api/v1/groups", None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "insufficient_scope")
    );
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("scope=\"groups:read\""));

    app.admin.disable_api_client(client.id).await.unwrap();
    let (status, _, _) = call(&app, &t, Method::GET, "/api/v1/me", None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a disabled app's token stops at once"
    );
    let listed = app.admin.get_api_client(client.id).await.unwrap();
    assert!(!listed.active && listed.disabled_at.is_some());

    app.admin
        .update_api_client(
            client.id,
            &UpdateApiClient {
                active: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let t = token(&app, &client).await;
    assert_eq!(
        call(&app, &t, Method::GET, "/api/v1/me", None).await.0,
        StatusCode::OK
    );
    let actions = app.audit_actions().await;
    for a in [
        "api_client_created",
        "api_client_updated",
        "api_client_disabled",
    ] {
        assert!(actions.contains(&a.to_owned()), "{a}");
    }
}

async fn registration_is_for_the_regions_admin_and_checks_what_it_stores(app: TestApp) {
    let (_, nurse) = app
        .create_user("nurse.apps", tsunagu_protocol::accounts::UserRole::User)
        .await;
    let body = json!({"name": "連携", "scopes": ["groups:read"]});
    let t = nurse.tokens().unwrap().access_token;
    let (status, _, _) = call(
        &app,
        &t,
        Method::POST,
        "/api/v1/admin/api-clients",
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let admin = app.admin.tokens().unwrap().access_token;
    for (bad, why) in [
        (json!({"name": "連携", "scopes": []}), "no scope"),
        (
            json!({"name": "連携", "scopes": ["admin"]}),
            "unknown scope",
        ),
        (
            json!({"name": " ", "scopes": ["groups:read"]}),
            "blank name",
        ),
        (
            json!({"name": "連携", "scopes": ["groups:read"], "jwks": {"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}}),
            "symmetric key",
        ),
        (
            json!({"name": "連携", "scopes": ["groups:read"], "requests_per_minute": 0}),
            "zero rate",
        ),
    ] {
        let (status, body, _) = call(
            &app,
            &admin,
            Method::POST,
            "/api/v1/admin/api-clients",
            Some(bad),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {body}");
    }
    let before: Vec<_> = app.admin.list_api_clients().await.unwrap().api_clients;
    assert!(before.is_empty(), "nothing half written");

    let client = register(&app, "連携", &[Scope::GroupsRead]).await;
    // Another region's admin: the same 404 as for nothing.
    let other = app.other_region("kawagoe").await;
    let ot = other.tokens().unwrap().access_token;
    for (method, path) in [
        (
            Method::GET,
            format!("/api/v1/admin/api-clients/{}", client.id),
        ),
        (
            Method::PATCH,
            format!("/api/v1/admin/api-clients/{}", client.id),
        ),
        (
            Method::DELETE,
            format!("/api/v1/admin/api-clients/{}", client.id),
        ),
        (
            Method::POST,
            format!("/api/v1/admin/api-clients/{}/secret", client.id),
        ),
    ] {
        let (status, body, _) = call(&app, &ot, method.clone(), &path, Some(json!({}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    assert!(other
        .list_api_clients()
        .await
        .unwrap()
        .api_clients
        .is_empty());
    // An app cannot manage apps, whatever its scopes.
    let t = token(&app, &client).await;
    let (status, body, _) = call(&app, &t, Method::GET, "/api/v1/admin/api-clients", None).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    // The secret is never shown again.
    let listed =
        serde_json::to_string(&app.admin.get_api_client(client.id).await.unwrap()).unwrap();
    assert!(!listed.contains(&client.client_secret));
}

async fn an_app_account_never_signs_in_with_a_password_nor_is_managed_as_a_person(app: TestApp) {
    let client = register(&app, "連携", &[Scope::GroupsRead]).await;
    let user = app.admin.get_user(client.user_id).await.unwrap();
    assert_eq!(user.kind, tsunagu_protocol::accounts::UserKind::App);
    let err = app
        .client()
        .login(&user.login, "!app", None)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(tsunagu_protocol::ErrorCode::InvalidCredentials)
    );
    let admin = app.admin.tokens().unwrap().access_token;
    for path in ["reset-password", "reset-totp", "deactivate"] {
        let (status, body, _) = call(
            &app,
            &admin,
            Method::POST,
            &format!("/api/v1/admin/users/{}/{path}", client.user_id),
            Some(json!({"password": "a long enough passphrase"})),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}: {body}");
    }
}

async fn the_sdk_in_app_mode_gets_its_token_itself_and_a_new_one_when_refused(app: TestApp) {
    use tsunagu_client::{AppCredentials, Client, Error};
    let client = register(&app, "SDK連携", &[Scope::GroupsRead]).await;
    let sdk = Client::app(
        &app.base,
        AppCredentials::secret(&client.client_id, &client.client_secret),
    )
    .unwrap();
    assert!(sdk.list_groups().await.unwrap().groups.is_empty());
    let first = sdk.tokens().unwrap().access_token;
    // Disabling and enabling ends the app's sessions: the old token is refused, and
    // the SDK asks for a new one by itself.
    app.admin.disable_api_client(client.id).await.unwrap();
    app.admin
        .update_api_client(
            client.id,
            &UpdateApiClient {
                active: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(sdk.list_groups().await.is_ok());
    assert_ne!(sdk.tokens().unwrap().access_token, first);

    let wrong = Client::app(
        &app.base,
        AppCredentials::secret(&client.client_id, "tss_wrong"),
    )
    .unwrap();
    match wrong.list_groups().await {
        Err(Error::OAuth { status, body }) => {
            assert_eq!(
                (status, body.error.as_str()),
                (StatusCode::UNAUTHORIZED, "invalid_client")
            )
        }
        other => panic!("expected invalid_client, got {other:?}"),
    }
}
