//! Who may see a file: a non-member, another region's user, a group member outside the
//! 内緒話, a removed member and the region administrator (not a member) are refused its
//! metadata, content, organising, deletion, the group's library and search hits — with
//! the same 404 as a file that does not exist — and every refusal is audited.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tsunagu_protocol::accounts::Profession;
use tsunagu_protocol::files::FileInfo;

use tsunagu_testkit::all_combinations;

use crate::files::harness::{
    call, code, fetch, get, person, refusals, stranger, team, upload, upload_ok, Person, TestApp,
};

all_combinations!(outsiders_are_refused_everything_and_every_refusal_is_audited);

const PDF: &[u8] =
    b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";

async fn search(app: &TestApp, who: &Person, q: &str) -> (Vec<String>, Vec<String>) {
    let response = app
        .http
        .get(app.url("/api/v1/search"))
        .query(&[("q", q)])
        .bearer_auth(who.token())
        .send()
        .await
        .expect("search");
    assert_eq!(response.status(), StatusCode::OK);
    let v: Value = response.json().await.expect("search results");
    let files = v["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let messages = v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().unwrap_or_default().to_owned())
        .collect();
    (files, messages)
}

async fn library_ids(app: &TestApp, who: &Person, group: &str, query: &str) -> Vec<String> {
    let (status, body) = get(
        app,
        &who.token(),
        &format!("/api/v1/groups/{group}/files{query}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "library: {body}");
    body["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Everything a caller might try on a file, each refused with the 404 of a file that
/// does not exist, and each refusal audited.
async fn refused_file(app: &TestApp, who: &Person, label: &str, file: &FileInfo, unknown: &Value) {
    let token = who.token();
    let path = format!("/api/v1/files/{}", file.id);
    let (status, body) = get(app, &token, &path).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "{label}: metadata of {}",
        file.name
    );
    assert_eq!(
        &body, unknown,
        "{label}: a hidden file answers like a missing one"
    );
    for range in [None, Some("bytes=0-0")] {
        let f = fetch(app, &token, &file.id, range).await;
        assert_eq!(
            f.status,
            StatusCode::NOT_FOUND,
            "{label}: content of {}",
            file.name
        );
        assert_eq!(&f.json(), unknown, "{label}: content of {}", file.name);
    }
    let (status, body) = call(
        &app.base,
        &app.http,
        &token,
        Method::PATCH,
        &path,
        Some(&json!({"folder": "盗み見", "tags": ["x"]})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "{label}: organise {}",
        file.name
    );
    assert_eq!(&body, unknown);
    let (status, body) = call(&app.base, &app.http, &token, Method::DELETE, &path, None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "{label}: delete {}",
        file.name
    );
    assert_eq!(&body, unknown);

    let mut attempted = refusals(app, &who.id().to_string(), &file.id).await;
    attempted.sort();
    assert_eq!(
        attempted,
        ["delete", "download", "download", "metadata", "update"],
        "{label}: every refused access to {} is audited",
        file.name
    );
}

async fn library_refused(app: &TestApp, who: &Person, label: &str, group: &str) {
    let (status, body) = get(app, &who.token(), &format!("/api/v1/groups/{group}/files")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{label}: library");
    assert_eq!(code(&body), "not_found");
    let rows = crate::files::harness::audit_rows(app, "file_access_denied").await;
    assert!(
        rows.iter().any(
            |r| r.actor_user_id.as_deref() == Some(who.id().to_string().as_str())
                && r.target_kind.as_deref() == Some("group")
                && r.target_id.as_deref() == Some(group)
                && r.detail["attempted"] == "library"
                && r.outcome == "denied"
        ),
        "{label}: the refused library is audited: {rows:?}"
    );
}

async fn upload_refused(app: &TestApp, who: &Person, label: &str, thread: &str) {
    let (status, body) = upload(app, &who.token(), thread, "侵入.txt", b"x".to_vec()).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "{label}: upload into {thread}"
    );
    assert_eq!(code(&body), "not_found");
    let rows = crate::files::harness::audit_rows(app, "file_access_denied").await;
    assert!(
        rows.iter().any(
            |r| r.actor_user_id.as_deref() == Some(who.id().to_string().as_str())
                && r.target_kind.as_deref() == Some("thread")
                && r.target_id.as_deref() == Some(thread)
                && r.detail["attempted"] == "upload"
        ),
        "{label}: the refused upload is audited"
    );
}

async fn outsiders_are_refused_everything_and_every_refusal_is_audited(app: TestApp) {
    let t = team(&app).await;
    let private_thread = t.private_thread().await;
    let group = t.group.id.to_string();
    let (main, private) = (t.main().to_string(), private_thread.id.to_string());
    let outsider = person(
        &app,
        "outsider.ito",
        "利用者 outsider.ito",
        Profession::Nurse,
    )
    .await;
    let other_region = stranger(&app, "kumagaya", "kumagaya.nurse").await;
    // The care manager is in the group; put into the 内緒話 too, then removed below.
    let removed = t.caremgr.clone();
    t.nurse
        .client
        .add_thread_member(private_thread.id, removed.user.id)
        .await
        .expect("add to 内緒話");
    let me = app.admin.me().await.expect("me");
    let admin = Person {
        user: me.user,
        client: app.admin.clone(),
    };

    let shared = upload_ok(
        &app,
        &t.nurse,
        &main,
        "退院時サマリー_共有.pdf",
        PDF.to_vec(),
    )
    .await;
    let secret = upload_ok(
        &app,
        &t.doctor,
        &private,
        "所見メモ_内緒.txt",
        "ご家族には未告知の所見。".as_bytes().to_vec(),
    )
    .await;
    t.nurse
        .client
        .post_text(t.main(), "退院時サマリーを共有します")
        .await
        .expect("post main");
    t.doctor
        .client
        .post_text(private_thread.id, "所見について内緒で相談したい")
        .await
        .expect("post 内緒話");

    // Before removal the care manager sees both; after it, nothing.
    for f in [&shared, &secret] {
        let (status, _) = get(&app, &removed.token(), &format!("/api/v1/files/{}", f.id)).await;
        assert_eq!(status, StatusCode::OK, "before removal: {}", f.name);
    }
    t.nurse
        .client
        .remove_member(t.group.id, removed.user.id)
        .await
        .expect("remove member");

    // The members of the 内緒話 see everything.
    for insider in [&t.nurse, &t.doctor] {
        for f in [&shared, &secret] {
            let (status, body) =
                get(&app, &insider.token(), &format!("/api/v1/files/{}", f.id)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["name"], f.name.as_str());
            assert_eq!(
                crate::files::harness::download_ok(&app, &insider.token(), &f.id)
                    .await
                    .len() as u64,
                f.size
            );
        }
        let mut ids = library_ids(&app, insider, &group, "").await;
        ids.sort();
        let mut want = vec![shared.id.clone(), secret.id.clone()];
        want.sort();
        assert_eq!(ids, want);
        let (files, messages) = search(&app, insider, "内緒").await;
        assert_eq!(files, std::slice::from_ref(&secret.id));
        assert_eq!(messages, ["所見について内緒で相談したい"]);
    }

    // A missing file: what every refusal must look like.
    let (status, unknown) = get(
        &app,
        &t.doctor.token(),
        &format!("/api/v1/files/{}", uuid::Uuid::now_v7()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&unknown), "not_found");

    // A group member outside the 内緒話 (the family): the shared file only.
    refused_file(
        &app,
        &t.family,
        "family outside the 内緒話",
        &secret,
        &unknown,
    )
    .await;
    assert_eq!(
        library_ids(&app, &t.family, &group, "").await,
        std::slice::from_ref(&shared.id)
    );
    assert!(
        library_ids(&app, &t.family, &group, &format!("?thread_id={private}"))
            .await
            .is_empty()
    );
    assert!(
        library_ids(&app, &t.family, &group, "?q=%E5%86%85%E7%B7%92")
            .await
            .is_empty()
    );
    assert_eq!(search(&app, &t.family, "内緒").await, (vec![], vec![]));
    let (files, messages) = search(&app, &t.family, "退院時サマリー").await;
    assert_eq!(files, std::slice::from_ref(&shared.id));
    assert_eq!(messages, ["退院時サマリーを共有します"]);
    upload_refused(&app, &t.family, "family outside the 内緒話", &private).await;

    // Everyone outside the group: nothing at all.
    for (label, who) in [
        ("a non-member of the region", &outsider),
        ("a user of another region", &other_region),
        ("a removed member", &removed),
        ("the region administrator (not a member)", &admin),
    ] {
        for f in [&shared, &secret] {
            refused_file(&app, who, label, f, &unknown).await;
        }
        library_refused(&app, who, label, &group).await;
        for q in ["内緒", "退院時サマリー", "所見", "共有"] {
            assert_eq!(
                search(&app, who, q).await,
                (vec![], vec![]),
                "{label}: search {q}"
            );
        }
        upload_refused(&app, who, label, &main).await;
    }

    // None of it changed anything.
    for f in [&shared, &secret] {
        let (status, body) = get(&app, &t.nurse.token(), &format!("/api/v1/files/{}", f.id)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["tags"], json!([]));
        assert!(body.get("folder").is_none() || body["folder"].is_null());
    }
}
