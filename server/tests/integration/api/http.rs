//! The HTTP surface: error shape for bad input, request ids, probes, OpenAPI.

use reqwest::StatusCode;
use serde_json::Value;

use tsunagu_testkit::both_backends;
use tsunagu_testkit::{spawn_app_with, Backend, TestApp};

both_backends!(
    bad_input_gets_a_4xx_with_a_stable_code_and_changes_nothing,
    probes_answer_and_metrics_count_requests,
);

async fn error_of(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.expect("error bodies are JSON");
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or("<none>")
            .to_owned(),
    )
}

async fn bad_input_gets_a_4xx_with_a_stable_code_and_changes_nothing(app: TestApp) {
    let token = app.admin.tokens().unwrap().access_token;
    let users_before = app.admin.list_users().await.unwrap().users.len();
    let post = |body: Vec<u8>, content_type: Option<&str>| {
        let mut req = app
            .http
            .post(app.url("/api/v1/admin/users"))
            .bearer_auth(&token)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    let json_ct = Some("application/json");

    type Case = (
        &'static str,
        Vec<u8>,
        Option<&'static str>,
        StatusCode,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed json",
            b"{\"login\": ".to_vec(),
            json_ct,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "bad utf-8",
            b"{\"login\": \"\xff\xfe\"}".to_vec(),
            json_ct,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "wrong content type",
            b"{}".to_vec(),
            Some("text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "no content type",
            b"{}".to_vec(),
            None,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "wrong shape",
            b"[1, 2, 3]".to_vec(),
            json_ct,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "wrong types",
            br#"{"login": 5, "display_name": [], "password": null, "profession": "nurse"}"#
                .to_vec(),
            json_ct,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (name, body, ct, status, code) in cases {
        let r = post(body, ct).await.unwrap();
        assert_eq!(error_of(r).await, (status, code.to_owned()), "{name}");
    }

    // Oversize body: 256 KiB is the default limit.
    let huge = format!(
        r#"{{"login": "big.body", "display_name": "{}", "password": "a long enough password", "profession": "nurse"}}"#,
        "あ".repeat(100_000)
    );
    let r = post(huge.into_bytes(), json_ct).await.unwrap();
    assert_eq!(
        error_of(r).await,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large".to_owned()
        )
    );

    // Login is guarded the same way.
    let r = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(r).await,
        (StatusCode::BAD_REQUEST, "malformed_json".to_owned())
    );

    // Unknown routes, wrong methods and malformed ids answer in the same shape.
    let r = app
        .http
        .get(app.url("/api/v1/no-such-thing"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(r).await,
        (StatusCode::NOT_FOUND, "not_found".to_owned())
    );
    let r = app
        .http
        .delete(app.url("/api/v1/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(r).await,
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed".to_owned()
        )
    );
    let r = app
        .http
        .get(app.url("/api/v1/admin/users/not-a-uuid"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(r).await,
        (StatusCode::NOT_FOUND, "not_found".to_owned())
    );
    let r = app
        .http
        .get(app.url("/api/v1/admin/users?include_inactive=maybe"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(r).await,
        (StatusCode::BAD_REQUEST, "invalid_request".to_owned())
    );

    assert_eq!(
        app.admin.list_users().await.unwrap().users.len(),
        users_before,
        "nothing half-written"
    );
}

async fn probes_answer_and_metrics_count_requests(app: TestApp) {
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("tsunagu_http_requests_total"), "{text}");
    // Metrics name route templates, never concrete ids or query strings.
    assert!(text.contains("route=\"/readyz\""));
    assert!(!text.contains("not-a-uuid"));
}

#[tokio::test]
async fn every_response_carries_a_server_minted_request_id_and_the_protocol_version() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let r = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "attacker-chosen")
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "attacker-chosen");
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(r.headers()["x-tsunagu-protocol"], "1");
    let r2 = app.http.get(app.url("/api/v1/nope")).send().await.unwrap();
    assert_ne!(r2.headers()["x-request-id"].to_str().unwrap(), id);
}

#[tokio::test]
async fn the_openapi_document_is_served_covers_every_route_and_matches_the_committed_copy() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let r = app
        .http
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let served: Value = r.json().await.unwrap();
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = served["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/me/password", "post"),
        ("/api/v1/me/totp", "post"),
        ("/api/v1/me/totp/confirm", "post"),
        ("/api/v1/admin/regions", "get"),
        ("/api/v1/admin/audit/events", "get"),
        ("/api/v1/admin/audit/file-access", "get"),
        ("/api/v1/admin/audit/verify", "get"),
        ("/api/v1/admin/organizations", "get"),
        ("/api/v1/admin/organizations", "post"),
        ("/api/v1/admin/organizations/{id}", "get"),
        ("/api/v1/admin/organizations/{id}", "patch"),
        ("/api/v1/admin/users", "get"),
        ("/api/v1/admin/users", "post"),
        ("/api/v1/admin/users/{id}", "get"),
        ("/api/v1/admin/users/{id}", "patch"),
        ("/api/v1/admin/users/{id}/deactivate", "post"),
        ("/api/v1/admin/users/{id}/reactivate", "post"),
        ("/api/v1/admin/users/{id}/reset-password", "post"),
        ("/api/v1/admin/users/{id}/reset-totp", "post"),
        ("/api/v1/admin/policy", "get"),
        ("/api/v1/admin/policy", "patch"),
        ("/api/v1/groups", "get"),
        ("/api/v1/groups", "post"),
        ("/api/v1/groups/{id}", "get"),
        ("/api/v1/groups/{id}", "patch"),
        ("/api/v1/groups/{id}/archive", "post"),
        ("/api/v1/groups/{id}/members", "get"),
        ("/api/v1/groups/{id}/members", "post"),
        ("/api/v1/groups/{id}/members/{user_id}", "patch"),
        ("/api/v1/groups/{id}/members/{user_id}", "delete"),
        ("/api/v1/groups/{id}/invitations", "post"),
        ("/api/v1/invitations/accept", "post"),
        ("/api/v1/groups/{id}/join-requests", "get"),
        (
            "/api/v1/groups/{id}/join-requests/{user_id}/approve",
            "post",
        ),
        ("/api/v1/groups/{id}/join-requests/{user_id}/reject", "post"),
        ("/api/v1/groups/{id}/threads", "get"),
        ("/api/v1/groups/{id}/threads", "post"),
        ("/api/v1/threads/{id}", "get"),
        ("/api/v1/threads/{id}/members", "post"),
        ("/api/v1/threads/{id}/members/{user_id}", "delete"),
        ("/api/v1/threads/{id}/messages", "get"),
        ("/api/v1/threads/{id}/messages", "post"),
        ("/api/v1/threads/{id}/messages/{message_id}", "patch"),
        ("/api/v1/threads/{id}/messages/{message_id}", "delete"),
        ("/api/v1/threads/{id}/messages/{message_id}/history", "get"),
        ("/api/v1/threads/{id}/messages/{message_id}/readers", "get"),
        (
            "/api/v1/threads/{id}/messages/{message_id}/reactions",
            "post",
        ),
        (
            "/api/v1/threads/{id}/messages/{message_id}/reactions/{emoji}",
            "delete",
        ),
        ("/api/v1/threads/{id}/read", "post"),
        ("/api/v1/ws", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from OpenAPI"
        );
    }

    let committed_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let generated = tsunagu_server::api::openapi::document_json();
    if std::env::var("TSUNAGU_UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::write(&committed_path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date: run `TSUNAGU_UPDATE_OPENAPI=1 cargo test` and commit it"
    );
}
