//! The app account in a patient group: it works in the main timeline like a member and
//! never sees, counts or finds a 内緒話; removed, it loses everything at once.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tsunagu_client::new_client_msg_id;
use tsunagu_protocol::apps::{ApiClientCreated, Scope};
use tsunagu_protocol::messaging::{AddMember, CreateThread};
use tsunagu_protocol::ws::ServerFrame;
use tsunagu_testkit::{both_backends, team, Team, TestApp, WsClient};

use super::{call, code, register, token};

both_backends!(
    an_app_in_a_patient_group_posts_uploads_and_reads_the_main_timeline_as_itself,
    no_private_thread_route_list_count_or_search_hit_reaches_an_app,
    an_app_can_never_be_put_in_a_private_thread,
    a_removed_app_loses_the_group_at_once_on_rest_and_socket,
);

async fn app_in_team(app: &TestApp, team: &Team) -> (ApiClientCreated, String) {
    let client = register(app, "電子カルテ連携", Scope::ALL).await;
    team.nurse
        .client
        .add_member(
            team.group.id,
            &AddMember {
                user_id: client.user_id,
                role: None,
                patient_side: None,
            },
        )
        .await
        .expect("owner adds the app");
    let t = token(app, &client).await;
    (client, t)
}

async fn an_app_in_a_patient_group_posts_uploads_and_reads_the_main_timeline_as_itself(
    app: TestApp,
) {
    let team = team(&app).await;
    let (client, t) = app_in_team(&app, &team).await;
    let main = team.main();
    let members = team.nurse.client.list_members(team.group.id).await.unwrap();
    let me = members
        .members
        .iter()
        .find(|m| m.user_id == client.user_id)
        .unwrap();
    assert_eq!(me.display_name, "電子カルテ連携");
    assert_eq!(me.kind, tsunagu_protocol::accounts::UserKind::App);

    team.nurse
        .client
        .post_text(main, "退院日が決まりました")
        .await
        .unwrap();
    let (status, post, _) = call(
        &app,
        &t,
        Method::POST,
        &format!("/api/v1/threads/{main}/messages"),
        Some(json!({"body": "退院サマリーを登録しました", "client_msg_id": new_client_msg_id()})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{post}");
    let response = app
        .http
        .post(app.url(&format!("/api/v1/threads/{main}/files")))
        .query(&[("name", "退院サマリー.txt")])
        .bearer_auth(&t)
        .header("content-type", "application/octet-stream")
        .body("退院時サマリー本文")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let file: Value = response.json().await.unwrap();

    // The nurse sees the app as the author.
    let page = team
        .nurse
        .client
        .list_messages(main, None, None, None)
        .await
        .unwrap();
    let by_app = page
        .messages
        .iter()
        .find(|m| m.body == "退院サマリーを登録しました")
        .unwrap();
    assert_eq!(by_app.author_id, client.user_id);
    // The app reads the timeline and downloads its file.
    let (status, page, _) = call(
        &app,
        &t,
        Method::GET,
        &format!("/api/v1/threads/{main}/messages"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    let response = app
        .http
        .get(app.url(&format!(
            "/api/v1/files/{}/content",
            file["id"].as_str().unwrap()
        )))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "退院時サマリー本文");

    // Audited with the app's account as the actor.
    let mut conn = app.store().conn().await.unwrap();
    let (actor,): (Option<String>,) = sqlx::query_as(
        "SELECT actor_user_id FROM audit_events WHERE action = 'file_uploaded' ORDER BY seq DESC",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(actor, Some(client.user_id.to_string()));
}

async fn no_private_thread_route_list_count_or_search_hit_reaches_an_app(app: TestApp) {
    let team = team(&app).await;
    let (_client, t) = app_in_team(&app, &team).await;
    let private = team.private_thread().await;
    let secret = team
        .doctor
        .client
        .post_text(private.id, "内緒の褥瘡所見について")
        .await
        .unwrap();
    let hidden_file = app
        .http
        .post(app.url(&format!("/api/v1/threads/{}/files", private.id)))
        .query(&[("name", "内緒の写真.txt")])
        .bearer_auth(team.doctor.token())
        .header("content-type", "application/octet-stream")
        .body("写真")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let pid = private.id;
    let mid = secret.id;
    let fid = hidden_file["id"].as_str().unwrap().to_owned();

    // Every route naming the 内緒話 or what is in it: the 404 of nothing.
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/threads/{pid}"), None),
        (Method::GET, format!("/api/v1/threads/{pid}/messages"), None),
        (
            Method::GET,
            format!("/api/v1/threads/{pid}/messages/{mid}/history"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/threads/{pid}/messages/{mid}/readers"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/threads/{pid}/messages"),
            Some(json!({"body": "x", "client_msg_id": new_client_msg_id()})),
        ),
        (
            Method::POST,
            format!("/api/v1/threads/{pid}/read"),
            Some(json!({"seq": 1})),
        ),
        (Method::GET, format!("/api/v1/files/{fid}"), None),
        (Method::GET, format!("/api/v1/files/{fid}/content"), None),
    ] {
        let (status, answer, _) = call(&app, &t, method.clone(), &path, body).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {path}"
        );
    }
    // Lists and counts: the main timeline only.
    let (_, threads, _) = call(
        &app,
        &t,
        Method::GET,
        &format!("/api/v1/groups/{}/threads", team.group.id),
        None,
    )
    .await;
    let threads = threads["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 1, "{threads:?}");
    assert_eq!(threads[0]["kind"], "main");
    let (_, groups, _) = call(&app, &t, Method::GET, "/api/v1/groups", None).await;
    assert!(!groups.to_string().contains("医療職のみ"));
    // Search: no hit, no file, no snippet.
    let (status, hits, _) = call(&app, &t, Method::GET, "/api/v1/search?q=褥瘡", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!hits.to_string().contains("褥瘡"), "{hits}");
    let (_, hits, _) = call(&app, &t, Method::GET, "/api/v1/search?q=内緒", None).await;
    assert!(!hits.to_string().contains("内緒"), "{hits}");
    let (_, library, _) = call(
        &app,
        &t,
        Method::GET,
        &format!("/api/v1/groups/{}/files", team.group.id),
        None,
    )
    .await;
    assert!(!library.to_string().contains(&fid));
    // Live: the 内緒話's posts never reach its socket.
    let mut ws = WsClient::connect(&app, &t).await;
    team.doctor
        .client
        .post_text(pid, "内緒の追記")
        .await
        .unwrap();
    let marker = team
        .nurse
        .client
        .post_text(team.main(), "全体への連絡")
        .await
        .unwrap();
    let frames = ws.until_message(&marker).await;
    assert!(
        frames.iter().all(
            |f| !matches!(f, ServerFrame::MessageCreated { message } if message.thread_id == pid)
        ),
        "{frames:?}"
    );
}

async fn an_app_can_never_be_put_in_a_private_thread(app: TestApp) {
    let team = team(&app).await;
    let (client, _) = app_in_team(&app, &team).await;
    let err = team
        .nurse
        .client
        .create_thread(
            team.group.id,
            &CreateThread {
                title: "連携込み".into(),
                member_ids: vec![client.user_id],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST), "{err}");
    let private = team.private_thread().await;
    let err = team
        .nurse
        .client
        .add_thread_member(private.id, client.user_id)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST), "{err}");
    let threads = team.nurse.client.list_threads(team.group.id).await.unwrap();
    assert_eq!(threads.threads.len(), 2, "nothing half written");
    // Nor made a manager, nor patient-side.
    let err = team
        .nurse
        .client
        .update_member(
            team.group.id,
            client.user_id,
            &tsunagu_protocol::messaging::UpdateMember {
                role: tsunagu_protocol::messaging::MemberRole::Admin,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST), "{err}");
}

async fn a_removed_app_loses_the_group_at_once_on_rest_and_socket(app: TestApp) {
    let team = team(&app).await;
    let (client, t) = app_in_team(&app, &team).await;
    let main = team.main();
    let mut ws = WsClient::connect(&app, &t).await;
    team.nurse
        .client
        .remove_member(team.group.id, client.user_id)
        .await
        .unwrap();
    let frames = ws
        .until(|f| matches!(f, ServerFrame::MemberRemoved { user_id, .. } if *user_id == client.user_id))
        .await;
    assert!(!frames.is_empty());
    let after = team
        .nurse
        .client
        .post_text(main, "削除後の投稿")
        .await
        .unwrap();
    // A later frame must not be the nurse's post: send a ping and read to the pong.
    ws.send(json!({"type": "ping"})).await;
    let rest = ws.until(|f| matches!(f, ServerFrame::Pong {})).await;
    assert!(
        rest.iter().all(
            |f| !matches!(f, ServerFrame::MessageCreated { message } if message.id == after.id)
        ),
        "{rest:?}"
    );
    for path in [
        format!("/api/v1/groups/{}", team.group.id),
        format!("/api/v1/threads/{main}/messages"),
        format!("/api/v1/groups/{}/files", team.group.id),
    ] {
        let (status, _, _) = call(&app, &t, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, groups, _) = call(&app, &t, Method::GET, "/api/v1/groups", None).await;
    assert_eq!(groups["groups"].as_array().unwrap().len(), 0);
}
