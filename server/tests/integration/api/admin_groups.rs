//! Region admins manage groups without reading them: a list without content, handing
//! ownership over, archive and restore, removing a member — and still 404 on every
//! timeline and 内緒話 route.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tsunagu_protocol::accounts::Profession;
use tsunagu_testkit::{both_backends, person, team, TestApp};

both_backends!(
    the_admin_list_shows_who_runs_each_group_and_nothing_said_in_it,
    an_admin_hands_a_leaving_nurses_group_over_and_never_reads_it,
    admins_archive_restore_and_remove_members_with_the_usual_rules,
);

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let token = app.admin.tokens().unwrap().access_token;
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let response = req.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn the_admin_list_shows_who_runs_each_group_and_nothing_said_in_it(app: TestApp) {
    let t = team(&app).await;
    let private = t.private_thread().await;
    t.doctor
        .client
        .post_text(private.id, "内緒の所見")
        .await
        .unwrap();
    t.nurse
        .client
        .post_text(t.main(), "本日の訪問")
        .await
        .unwrap();
    let (status, list) = call(&app, Method::GET, "/api/v1/admin/groups", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let groups = list["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    assert_eq!(g["name"], "山田 太郎 様");
    assert_eq!(g["member_count"], 4);
    assert_eq!(g["owners"][0]["user_id"], json!(t.nurse.id()));
    assert!(g["last_activity_at"].is_string());
    let text = list.to_string();
    for hidden in ["内緒", "本日の訪問", "医療職のみ"] {
        assert!(!text.contains(hidden), "{hidden} leaked: {text}");
    }
    // Another region's admin sees none of it.
    let other = app.other_region("kawagoe").await;
    let ot = other.tokens().unwrap().access_token;
    let response = app
        .http
        .get(app.url("/api/v1/admin/groups"))
        .bearer_auth(&ot)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["groups"].as_array().unwrap().len(), 0);
    let response = app
        .http
        .post(app.url(&format!("/api/v1/admin/groups/{}/archive", t.group.id)))
        .bearer_auth(&ot)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // A nurse is no region admin.
    let (status, _) = {
        let response = app
            .http
            .get(app.url("/api/v1/admin/groups"))
            .bearer_auth(t.nurse.token())
            .send()
            .await
            .unwrap();
        (response.status(), ())
    };
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn an_admin_hands_a_leaving_nurses_group_over_and_never_reads_it(app: TestApp) {
    let t = team(&app).await;
    let private = t.private_thread().await;
    let colleague = person(&app, "nurse.kimura", "木村 看護師", Profession::Nurse).await;
    let gid = t.group.id;
    // The admin cannot make themselves an owner, nor a family member or an app.
    let me = app.admin.me().await.unwrap().user.id;
    let (status, _) = call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/groups/{gid}/owners"),
        Some(json!({"user_id": me})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/groups/{gid}/owners"),
        Some(json!({"user_id": t.family.id()})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, g) = call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/groups/{gid}/owners"),
        Some(json!({"user_id": colleague.id()})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{g}");
    assert_eq!(g["owners"].as_array().unwrap().len(), 2);
    assert!(
        colleague.client.get_group(gid).await.is_ok(),
        "the colleague is in"
    );
    // The leaving nurse is demoted, then removed; the colleague runs the group.
    let (status, g) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/admin/groups/{gid}/owners/{}", t.nurse.id()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{g}");
    assert_eq!(g["owners"][0]["user_id"], json!(colleague.id()));
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/admin/groups/{gid}/owners/{}", colleague.id()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "the last owner stays");
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/admin/groups/{gid}/members/{}", t.nurse.id()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        t.nurse.client.get_group(gid).await.unwrap_err().status(),
        Some(StatusCode::NOT_FOUND)
    );

    // The admin still reads nothing.
    for path in [
        format!("/api/v1/groups/{gid}"),
        format!("/api/v1/threads/{}/messages", t.main()),
        format!("/api/v1/threads/{}", private.id),
        format!("/api/v1/threads/{}/messages", private.id),
    ] {
        let (status, _) = call(&app, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let actions = app.audit_actions().await;
    assert!(
        actions
            .iter()
            .filter(|a| *a == "member_role_changed")
            .count()
            >= 1
    );
    assert!(actions.contains(&"member_removed".to_owned()));
}

async fn admins_archive_restore_and_remove_members_with_the_usual_rules(app: TestApp) {
    let t = team(&app).await;
    let gid = t.group.id;
    let (status, g) = call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/groups/{gid}/archive"),
        None,
    )
    .await;
    assert_eq!(
        (status, g["archived"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    assert!(
        t.nurse.client.post_text(t.main(), "投稿").await.is_err(),
        "archived: no posts"
    );
    let (_, list) = call(&app, Method::GET, "/api/v1/admin/groups", None).await;
    assert_eq!(
        list["groups"].as_array().unwrap().len(),
        0,
        "archived are hidden by default"
    );
    let (_, list) = call(
        &app,
        Method::GET,
        "/api/v1/admin/groups?include_archived=true",
        None,
    )
    .await;
    assert_eq!(list["groups"].as_array().unwrap().len(), 1);
    let (status, g) = call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/groups/{gid}/restore"),
        None,
    )
    .await;
    assert_eq!(
        (status, g["archived"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    t.nurse.client.post_text(t.main(), "再開").await.unwrap();
    // Removed by the admin: out at once, and no code brings them back.
    let code = t
        .nurse
        .client
        .create_invitation(gid, &Default::default())
        .await
        .unwrap()
        .code
        .unwrap();
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/admin/groups/{gid}/members/{}", t.caremgr.id()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        t.caremgr
            .client
            .accept_invitation(&code)
            .await
            .unwrap_err()
            .status(),
        Some(StatusCode::FORBIDDEN)
    );
    let actions = app.audit_actions().await;
    assert!(
        actions.contains(&"group_archived".to_owned())
            && actions.contains(&"group_restored".to_owned())
    );
}
