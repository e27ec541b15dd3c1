//! Scopes on every route family, REST and websocket, and the per-app rate limit.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tsunagu_client::new_client_msg_id;
use tsunagu_protocol::apps::{CreateApiClient, Scope};
use tsunagu_protocol::ws::ServerFrame;
use tsunagu_testkit::{both_backends, team, TestApp, WsClient};

use super::{call, code, register, token};

both_backends!(
    each_route_family_refuses_an_app_token_without_its_scope,
    routes_outside_the_scope_table_refuse_every_app,
    an_app_socket_needs_messages_read_and_its_frames_need_messages_write,
    an_app_over_its_request_rate_gets_429_with_retry_after,
);

/// Every scope but `without`.
fn all_but(without: Scope) -> Vec<Scope> {
    Scope::ALL
        .iter()
        .copied()
        .filter(|s| *s != without)
        .collect()
}

async fn each_route_family_refuses_an_app_token_without_its_scope(app: TestApp) {
    let team = team(&app).await;
    let everything = register(&app, "全権限", Scope::ALL).await;
    team.nurse
        .client
        .add_member(
            team.group.id,
            &tsunagu_protocol::messaging::AddMember {
                user_id: everything.user_id,
                role: None,
                patient_side: None,
            },
        )
        .await
        .unwrap();
    let main = team.main();
    let group = team.group.id;
    let post = team
        .nurse
        .client
        .post_text(main, "本日の訪問記録")
        .await
        .unwrap();
    let families: Vec<(Scope, Method, String, Option<Value>)> = vec![
        (
            Scope::GroupsRead,
            Method::GET,
            "/api/v1/groups".into(),
            None,
        ),
        (
            Scope::GroupsRead,
            Method::GET,
            format!("/api/v1/groups/{group}/members"),
            None,
        ),
        (
            Scope::MessagesRead,
            Method::GET,
            format!("/api/v1/threads/{main}/messages"),
            None,
        ),
        (
            Scope::MessagesRead,
            Method::GET,
            "/api/v1/search?q=訪問".into(),
            None,
        ),
        (
            Scope::MessagesWrite,
            Method::POST,
            format!("/api/v1/threads/{main}/messages"),
            Some(json!({"body": "連携からの投稿", "client_msg_id": new_client_msg_id()})),
        ),
        (
            Scope::MessagesWrite,
            Method::POST,
            format!("/api/v1/threads/{main}/read"),
            Some(json!({"seq": post.seq})),
        ),
        (
            Scope::FilesRead,
            Method::GET,
            format!("/api/v1/groups/{group}/files"),
            None,
        ),
        (
            Scope::AuditRead,
            Method::GET,
            "/api/v1/admin/audit/file-access".into(),
            None,
        ),
        (
            Scope::AuditRead,
            Method::GET,
            "/api/v1/admin/audit/events".into(),
            None,
        ),
        (
            Scope::UsersRead,
            Method::GET,
            "/api/v1/users?q=さとう".into(),
            None,
        ),
        (
            Scope::UsersRead,
            Method::GET,
            "/api/v1/organizations".into(),
            None,
        ),
    ];
    let full = token(&app, &everything).await;
    for (scope, method, path, body) in &families {
        // With every scope (the app is in the group): allowed.
        let (status, answer, _) = call(&app, &full, method.clone(), path, body.clone()).await;
        assert!(
            status.is_success(),
            "{method} {path} with {scope}: {status} {answer}"
        );
        // With every scope but this one: 403 insufficient_scope naming it.
        let narrow = register(&app, &format!("{scope}なし"), &all_but(*scope)).await;
        team.nurse
            .client
            .add_member(
                group,
                &tsunagu_protocol::messaging::AddMember {
                    user_id: narrow.user_id,
                    role: None,
                    patient_side: None,
                },
            )
            .await
            .unwrap();
        let t = token(&app, &narrow).await;
        let (status, answer, headers) = call(&app, &t, method.clone(), path, body.clone()).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::FORBIDDEN, "insufficient_scope"),
            "{method} {path} without {scope}: {answer}"
        );
        assert!(headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains(&format!("scope=\"{scope}\"")));
    }
    // Uploads need files:write.
    let narrow = register(&app, "書き込み不可", &all_but(Scope::FilesWrite)).await;
    let t = token(&app, &narrow).await;
    let response = app
        .http
        .post(app.url(&format!("/api/v1/threads/{main}/files")))
        .query(&[("name", "報告書.txt")])
        .bearer_auth(&t)
        .header("content-type", "application/octet-stream")
        .body("本文")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), "insufficient_scope");
}

async fn routes_outside_the_scope_table_refuse_every_app(app: TestApp) {
    let team = team(&app).await;
    let client = register(&app, "全権限", Scope::ALL).await;
    let t = token(&app, &client).await;
    let group = team.group.id;
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/groups".to_owned(),
            json!({"kind": "free", "name": "連携"}),
        ),
        (
            Method::POST,
            "/api/v1/me/password".into(),
            json!({"current_password": "x", "new_password": "y"}),
        ),
        (Method::POST, "/api/v1/me/totp".into(), json!({})),
        (Method::GET, "/api/v1/admin/users".into(), json!({})),
        (Method::GET, "/api/v1/admin/audit/verify".into(), json!({})),
        (
            Method::POST,
            "/api/v1/invitations/accept".into(),
            json!({"code": "ABCD-EFGH"}),
        ),
        (
            Method::POST,
            format!("/api/v1/groups/{group}/threads"),
            json!({"title": "x", "member_ids": []}),
        ),
        (
            Method::POST,
            format!("/api/v1/groups/{group}/members"),
            json!({"user_id": team.doctor.id()}),
        ),
    ] {
        let (status, answer, _) = call(&app, &t, method.clone(), &path, Some(body)).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{method} {path}: {answer}"
        );
    }
}

async fn an_app_socket_needs_messages_read_and_its_frames_need_messages_write(app: TestApp) {
    let team = team(&app).await;
    let add =
        |c: &tsunagu_protocol::apps::ApiClientCreated| tsunagu_protocol::messaging::AddMember {
            user_id: c.user_id,
            role: None,
            patient_side: None,
        };
    // Without messages:read the socket is refused.
    let blind = register(&app, "読めない", &[Scope::GroupsRead]).await;
    let t = token(&app, &blind).await;
    let mut ws = WsClient::raw(&app).await;
    ws.send(json!({"type": "auth", "token": t})).await;
    match ws.frame().await {
        ServerFrame::Error { code, .. } => {
            assert_eq!(code, "insufficient_scope")
        }
        other => panic!("expected an error frame, got {other:?}"),
    }
    // Read-only: events arrive, posts are refused.
    let reader = register(&app, "読むだけ", &[Scope::MessagesRead]).await;
    team.nurse
        .client
        .add_member(team.group.id, &add(&reader))
        .await
        .unwrap();
    let t = token(&app, &reader).await;
    let mut ws = WsClient::connect(&app, &t).await;
    let posted = team
        .nurse
        .client
        .post_text(team.main(), "申し送り")
        .await
        .unwrap();
    let frames = ws.until_message(&posted).await;
    assert!(!frames.is_empty());
    ws.send(
        json!({"type": "post", "ref": "p1", "thread_id": team.main(),
        "body": "連携", "client_msg_id": new_client_msg_id()}),
    )
    .await;
    let refused = ws.until(|f| matches!(f, ServerFrame::Error { .. })).await;
    match refused.last() {
        Some(ServerFrame::Error { code, .. }) => {
            assert_eq!(code, "insufficient_scope")
        }
        other => panic!("{other:?}"),
    }
    // Read and write: the post is acknowledged.
    let writer = register(
        &app,
        "読み書き",
        &[Scope::MessagesRead, Scope::MessagesWrite],
    )
    .await;
    team.nurse
        .client
        .add_member(team.group.id, &add(&writer))
        .await
        .unwrap();
    let t = token(&app, &writer).await;
    let mut ws = WsClient::connect(&app, &t).await;
    ws.send(
        json!({"type": "post", "ref": "p2", "thread_id": team.main(),
        "body": "連携からの投稿", "client_msg_id": new_client_msg_id()}),
    )
    .await;
    let acked = ws
        .until(|f| matches!(f, ServerFrame::Ack { .. } | ServerFrame::Error { .. }))
        .await;
    match acked.last() {
        Some(ServerFrame::Ack { message, .. }) => assert_eq!(message.author_id, writer.user_id),
        other => panic!("expected an ack, got {other:?}"),
    }
}

async fn an_app_over_its_request_rate_gets_429_with_retry_after(app: TestApp) {
    let client = app
        .admin
        .create_api_client(&CreateApiClient {
            name: "連投".into(),
            scopes: vec![Scope::GroupsRead],
            description: None,
            jwks: None,
            requests_per_minute: Some(3),
        })
        .await
        .unwrap();
    let t = token(&app, &client).await;
    for _ in 0..3 {
        assert_eq!(
            call(&app, &t, Method::GET, "/api/v1/groups", None).await.0,
            StatusCode::OK
        );
    }
    let (status, body, headers) = call(&app, &t, Method::GET, "/api/v1/groups", None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
    );
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // Other apps and people are not slowed by it.
    let other = register(&app, "別の連携", &[Scope::GroupsRead]).await;
    let t = token(&app, &other).await;
    assert_eq!(
        call(&app, &t, Method::GET, "/api/v1/groups", None).await.0,
        StatusCode::OK
    );
    assert!(app.admin.list_groups().await.is_ok());
}

#[test]
fn every_route_of_the_scope_table_exists_with_its_method() {
    let doc: Value = serde_json::from_str(&tsunagu_server::api::openapi::document_json()).unwrap();
    for (method, path, _) in tsunagu_server::api::scopes::TABLE {
        let op = &doc["paths"][*path][method.to_ascii_lowercase()];
        assert!(
            op.is_object(),
            "{method} {path} is in the scope table but not a route"
        );
        assert_ne!(op["x-app-scope"], "none", "{method} {path}");
    }
}
