//! The group's file library (filters, folders and tags, Japanese name search, sorting,
//! cursor paging), search across messages and files, and attachments.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tsunagu_protocol::files::FileInfo;

use tsunagu_testkit::all_combinations;

use crate::files::harness::{call, code, get, team, upload_ok, Person, TestApp};

all_combinations!(
    the_library_filters_sorts_and_pages,
    search_finds_files_and_messages_only_where_visible,
    attachments_come_from_the_same_thread
);

const PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";
const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0, 0,
    1, 0, 0, 0, 1, 8, 2, 0, 0, 0,
];

/// `content` padded to `len` bytes so that sizes differ; the padding keeps the kind.
fn sized(content: &[u8], len: usize, pad: u8) -> Vec<u8> {
    let mut v = content.to_vec();
    v.resize(len.max(content.len()), pad);
    v
}

fn names(body: &Value) -> Vec<String> {
    body["files"]
        .as_array()
        .unwrap_or_else(|| panic!("a file list: {body}"))
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn library(app: &TestApp, who: &Person, group: &str, query: &str) -> Value {
    let (status, body) = get(
        app,
        &who.token(),
        &format!("/api/v1/groups/{group}/files{query}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "library{query}: {body}");
    body
}

/// The names the library lists for `query` (a pre-encoded query string), as a set.
async fn listed(app: &TestApp, who: &Person, group: &str, query: &str) -> Vec<String> {
    let mut n = names(&library(app, who, group, query).await);
    n.sort();
    n
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn the_library_filters_sorts_and_pages(app: TestApp) {
    let t = team(&app).await;
    let private_thread = t.private_thread().await;
    let group = t.group.id.to_string();
    let private = private_thread.id;
    // Uploaded in this order, with distinct sizes.
    let report = upload_ok(
        &app,
        &t.nurse,
        t.main(),
        "2024年4月_訪問看護報告書.pdf",
        sized(PDF, 3000, b'\n'),
    )
    .await;
    let rx = upload_ok(
        &app,
        &t.doctor,
        t.main(),
        "処方箋_4月.png",
        sized(PNG, 5000, 0),
    )
    .await;
    let plan = upload_ok(
        &app,
        &t.nurse,
        t.main(),
        "ケアプラン.txt",
        sized("介護計画書\n".as_bytes(), 1000, b' '),
    )
    .await;
    let memo = upload_ok(
        &app,
        &t.nurse,
        private,
        "内緒_家族関係メモ.txt",
        sized("家族関係の所見\n".as_bytes(), 2000, b' '),
    )
    .await;
    let labs = upload_ok(
        &app,
        &t.doctor,
        private,
        "検査結果 血液.pdf",
        sized(PDF, 4000, b'\n'),
    )
    .await;
    let all = [&report, &rx, &plan, &memo, &labs];
    let sorted = |v: &[&FileInfo]| {
        let mut n: Vec<String> = v.iter().map(|f| f.name.clone()).collect();
        n.sort();
        n
    };

    // Folders and tags, by the uploader and by the group owner (nurse).
    for (file, who, body) in [
        (
            &report,
            &t.nurse,
            json!({"folder": "報告書", "tags": ["看護", "4月"]}),
        ),
        (
            &plan,
            &t.nurse,
            json!({"folder": "報告書", "tags": ["ケア"]}),
        ),
        (&rx, &t.nurse, json!({"tags": ["4月", "処方"]})),
        (&labs, &t.doctor, json!({"folder": "検査"})),
    ] {
        let (status, body) = call(
            &app.base,
            &app.http,
            &who.token(),
            Method::PATCH,
            &format!("/api/v1/files/{}", file.id),
            Some(&body),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Only the uploader or a group owner/admin organises a file.
    let (status, body) = call(
        &app.base,
        &app.http,
        &t.doctor.token(),
        Method::PATCH,
        &format!("/api/v1/files/{}", report.id),
        Some(&json!({"folder": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, info) = get(
        &app,
        &t.nurse.token(),
        &format!("/api/v1/files/{}", report.id),
    )
    .await;
    assert_eq!(info["folder"], "報告書");
    assert_eq!(info["tags"], json!(["4月", "看護"]));

    let nurse = &t.nurse;
    assert_eq!(listed(&app, nurse, &group, "").await, sorted(&all));
    assert_eq!(
        listed(&app, nurse, &group, "?kind=pdf").await,
        sorted(&[&report, &labs])
    );
    assert_eq!(
        listed(&app, nurse, &group, "?kind=text").await,
        sorted(&[&plan, &memo])
    );
    assert_eq!(
        listed(&app, nurse, &group, "?kind=image").await,
        sorted(&[&rx])
    );
    assert!(listed(&app, nurse, &group, "?kind=excel").await.is_empty());
    assert_eq!(
        listed(
            &app,
            nurse,
            &group,
            &format!("?uploader_id={}", t.doctor.id())
        )
        .await,
        sorted(&[&rx, &labs])
    );
    assert_eq!(
        listed(&app, nurse, &group, &format!("?thread_id={private}")).await,
        sorted(&[&memo, &labs])
    );
    assert_eq!(
        listed(&app, nurse, &group, &format!("?folder={}", enc("報告書"))).await,
        sorted(&[&report, &plan])
    );
    assert_eq!(
        listed(&app, nurse, &group, &format!("?tag={}", enc("4月"))).await,
        sorted(&[&report, &rx])
    );
    assert_eq!(
        listed(&app, nurse, &group, &format!("?tag={}", enc("看護"))).await,
        sorted(&[&report])
    );
    // Name search: Japanese substrings, LIKE wildcards taken literally.
    assert_eq!(
        listed(&app, nurse, &group, &format!("?q={}", enc("報告"))).await,
        sorted(&[&report])
    );
    assert_eq!(
        listed(&app, nurse, &group, &format!("?q={}", enc("4月"))).await,
        sorted(&[&report, &rx])
    );
    assert_eq!(
        listed(&app, nurse, &group, &format!("?q={}", enc("メモ"))).await,
        sorted(&[&memo])
    );
    assert_eq!(
        listed(&app, nurse, &group, &format!("?q={}", enc("血液"))).await,
        sorted(&[&labs])
    );
    assert!(listed(&app, nurse, &group, &format!("?q={}", enc("%")))
        .await
        .is_empty());
    assert!(
        listed(&app, nurse, &group, &format!("?q={}", enc("_")))
            .await
            .len()
            == 3
    );
    // Filters combine.
    assert_eq!(
        listed(
            &app,
            nurse,
            &group,
            &format!("?kind=pdf&thread_id={private}&q={}", enc("検査"))
        )
        .await,
        sorted(&[&labs])
    );

    // Sorting. Upload order is creation order; names compare by their first character,
    // on which every collation agrees (digit < katakana < 内 < 処 < 検).
    let order = |body: Value| names(&body);
    let by = |v: &[&FileInfo]| v.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        order(library(&app, nurse, &group, "?sort=oldest").await),
        by(&all)
    );
    let mut newest = by(&all);
    newest.reverse();
    assert_eq!(order(library(&app, nurse, &group, "").await), newest);
    assert_eq!(
        order(library(&app, nurse, &group, "?sort=newest").await),
        newest
    );
    assert_eq!(
        order(library(&app, nurse, &group, "?sort=name").await),
        by(&[&report, &plan, &memo, &rx, &labs])
    );
    assert_eq!(
        order(library(&app, nurse, &group, "?sort=largest").await),
        by(&[&rx, &labs, &report, &memo, &plan])
    );

    // Cursor paging walks the same order without gaps or repeats.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("?sort=name&limit=2&cursor={}", enc(c)),
            None => "?sort=name&limit=2".to_owned(),
        };
        let body = library(&app, nurse, &group, &q).await;
        paged.extend(names(&body));
        pages += 1;
        assert!(pages <= 5, "paging does not end");
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(paged, by(&[&report, &plan, &memo, &rx, &labs]));

    // The family sees the main timeline's files only, whatever the filter.
    let family = &t.family;
    assert_eq!(
        listed(&app, family, &group, "").await,
        sorted(&[&report, &rx, &plan])
    );
    assert_eq!(
        listed(&app, family, &group, "?kind=text").await,
        sorted(&[&plan])
    );
    assert_eq!(
        listed(&app, family, &group, "?kind=pdf").await,
        sorted(&[&report])
    );
    assert!(
        listed(&app, family, &group, &format!("?folder={}", enc("検査")))
            .await
            .is_empty()
    );
    assert!(listed(&app, family, &group, &format!("?q={}", enc("メモ")))
        .await
        .is_empty());
    let body = library(&app, family, &group, "?sort=largest&limit=1").await;
    assert_eq!(names(&body), std::slice::from_ref(&rx.name));

    // Bad parameters.
    for q in [
        "?sort=biggest",
        "?limit=0",
        "?limit=201",
        "?cursor=abc",
        "?cursor=-1",
        "?kind=movie",
        "?from=yesterday",
    ] {
        let (status, body) = get(
            &app,
            &nurse.token(),
            &format!("/api/v1/groups/{group}/files{q}"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert_eq!(code(&body), "invalid_request", "{q}");
    }

    // A deleted file leaves the library.
    let (status, _) = call(
        &app.base,
        &app.http,
        &nurse.token(),
        Method::DELETE,
        &format!("/api/v1/files/{}", plan.id),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        listed(&app, family, &group, "").await,
        sorted(&[&report, &rx])
    );
}

async fn search(app: &TestApp, who: &Person, q: &str) -> (StatusCode, Value) {
    let response = app
        .http
        .get(app.url("/api/v1/search"))
        .query(&[("q", q)])
        .bearer_auth(who.token())
        .send()
        .await
        .expect("search");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn hits(app: &TestApp, who: &Person, q: &str) -> (Vec<String>, Vec<String>) {
    let (status, v) = search(app, who, q).await;
    assert_eq!(status, StatusCode::OK, "search {q}: {v}");
    let mut files: Vec<String> = v["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    let mut messages: Vec<String> = v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().unwrap_or_default().to_owned())
        .collect();
    files.sort();
    messages.sort();
    (files, messages)
}

async fn search_finds_files_and_messages_only_where_visible(app: TestApp) {
    let t = team(&app).await;
    let private_thread = t.private_thread().await;
    let main_file = upload_ok(
        &app,
        &t.nurse,
        t.main(),
        "褥瘡の写真_経過.png",
        PNG.to_vec(),
    )
    .await;
    let private_file = upload_ok(
        &app,
        &t.doctor,
        private_thread.id,
        "褥瘡_処置方針_内緒.pdf",
        PDF.to_vec(),
    )
    .await;
    t.nurse
        .client
        .post_text(t.main(), "仙骨部の褥瘡、改善傾向です")
        .await
        .expect("post");
    t.doctor
        .client
        .post_text(private_thread.id, "褥瘡の処置方針はご家族に伝える前に相談")
        .await
        .expect("post");

    let all_files = {
        let mut v = vec![main_file.name.clone(), private_file.name.clone()];
        v.sort();
        v
    };
    let all_messages = {
        let mut v = vec![
            "仙骨部の褥瘡、改善傾向です".to_owned(),
            "褥瘡の処置方針はご家族に伝える前に相談".to_owned(),
        ];
        v.sort();
        v
    };
    for insider in [&t.nurse, &t.doctor] {
        assert_eq!(
            hits(&app, insider, "褥瘡").await,
            (all_files.clone(), all_messages.clone())
        );
        assert_eq!(
            hits(&app, insider, "処置方針").await,
            (
                vec![private_file.name.clone()],
                vec!["褥瘡の処置方針はご家族に伝える前に相談".to_owned()]
            )
        );
    }
    assert_eq!(
        hits(&app, &t.family, "褥瘡").await,
        (
            vec![main_file.name.clone()],
            vec!["仙骨部の褥瘡、改善傾向です".to_owned()]
        )
    );
    assert_eq!(hits(&app, &t.family, "処置方針").await, (vec![], vec![]));
    assert_eq!(hits(&app, &t.family, "内緒").await, (vec![], vec![]));
    // Wildcards are literal.
    assert_eq!(hits(&app, &t.nurse, "%").await, (vec![], vec![]));

    // A deleted file is no longer found; nor is anything after leaving the group.
    let (status, _) = call(
        &app.base,
        &app.http,
        &t.doctor.token(),
        Method::DELETE,
        &format!("/api/v1/files/{}", private_file.id),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        hits(&app, &t.doctor, "処置方針").await.0,
        Vec::<String>::new()
    );
    t.nurse
        .client
        .remove_member(t.group.id, t.doctor.user.id)
        .await
        .expect("remove");
    assert_eq!(hits(&app, &t.doctor, "褥瘡").await, (vec![], vec![]));

    for q in ["", "   ", &"あ".repeat(257)] {
        let (status, body) = search(&app, &t.nurse, q).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "q={q:?}: {body}");
        assert_eq!(code(&body), "invalid_request");
    }
}

async fn post(
    app: &TestApp,
    who: &Person,
    thread: impl std::fmt::Display,
    body: &str,
    attachments: &[&str],
) -> (StatusCode, Value) {
    call(
        &app.base,
        &app.http,
        &who.token(),
        Method::POST,
        &format!("/api/v1/threads/{thread}/messages"),
        Some(&json!({
            "body": body,
            "client_msg_id": uuid::Uuid::new_v4().to_string(),
            "attachments": attachments,
        })),
    )
    .await
}

async fn attachments_come_from_the_same_thread(app: TestApp) {
    let t = team(&app).await;
    let private_thread = t.private_thread().await;
    let main_file = upload_ok(&app, &t.nurse, t.main(), "訪問記録.pdf", PDF.to_vec()).await;
    let private_file =
        upload_ok(&app, &t.doctor, private_thread.id, "所見.pdf", PDF.to_vec()).await;

    let (status, body) = post(
        &app,
        &t.nurse,
        t.main(),
        "記録を添付します",
        &[&main_file.id],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["attachments"], json!([main_file.id]));
    let (status, body) = post(
        &app,
        &t.doctor,
        private_thread.id,
        "所見を添付",
        &[&private_file.id],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["attachments"], json!([private_file.id]));

    // Another thread's file — above all a 内緒話 file into the main timeline — or one
    // that does not exist is refused.
    let missing = uuid::Uuid::now_v7().to_string();
    for (who, thread, ids) in [
        (&t.doctor, t.main(), vec![private_file.id.as_str()]),
        (
            &t.doctor,
            t.main(),
            vec![main_file.id.as_str(), private_file.id.as_str()],
        ),
        (&t.nurse, private_thread.id, vec![main_file.id.as_str()]),
        (&t.nurse, t.main(), vec![missing.as_str()]),
    ] {
        let (status, body) = post(&app, who, thread, "添付できないはず", &ids).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{ids:?} into {thread}: {body}"
        );
        assert_eq!(code(&body), "invalid_request");
    }
    // A deleted file can no longer be attached.
    let (status, _) = call(
        &app.base,
        &app.http,
        &t.nurse.token(),
        Method::DELETE,
        &format!("/api/v1/files/{}", main_file.id),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = post(&app, &t.nurse, t.main(), "削除済みを添付", &[&main_file.id]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The family never sees the refused message, and the timeline has only the two.
    let (status, body) = get(
        &app,
        &t.family.token(),
        &format!("/api/v1/threads/{}/messages", t.main()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let bodies: Vec<&str> = body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(bodies, ["記録を添付します"]);
}
