//! Names a person reads refuse bidirectional controls and invisible format characters
//! with a 400, everywhere a name is taken: `請求書\u{202E}txt.exe` would otherwise be
//! offered for download as what looks like `請求書exe.txt`.

use crate::files::harness::{get, upload, upload_ok};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tsunagu_testkit::{both_backends, team, TestApp};

both_backends!(
    a_file_name_with_a_right_to_left_override_is_refused_and_nothing_is_stored,
    every_name_field_refuses_bidi_controls_and_invisible_characters,
    emoji_joiner_sequences_stay_allowed_in_display_names,
);

/// The disguised executable and a few of its cousins.
const HIDDEN: [&str; 6] = [
    "請求書\u{202E}txt.exe",
    "\u{2067}報告書.pdf",
    "佐藤\u{200B}花子",
    "\u{FEFF}訪問看護",
    "山田\u{2060}",
    "名前\u{E0041}\u{E0042}",
];

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = app
        .http
        .request(method, app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[track_caller]
fn assert_refused(what: &str, (status, body): (StatusCode, Value)) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    assert_eq!(body["error"]["code"], "invalid_request", "{what}: {body}");
}

async fn a_file_name_with_a_right_to_left_override_is_refused_and_nothing_is_stored(app: TestApp) {
    let t = team(&app).await;
    for name in HIDDEN {
        let (status, body) = upload(&app, &t.nurse.token(), t.main(), name, b"MZ".to_vec()).await;
        assert_refused(&format!("upload {name:?}"), (status, body.clone()));
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("U+"),
            "the message names the code point: {message}"
        );
        assert!(
            !message.contains("請求書"),
            "the message does not echo the name"
        );
    }
    let (_, library) = get(
        &app,
        &t.nurse.token(),
        &format!("/api/v1/groups/{}/files", t.group.id),
    )
    .await;
    assert_eq!(library["files"], json!([]), "nothing was stored");
    assert!(app.blob_names().await.is_empty(), "no blob was written");
}

async fn every_name_field_refuses_bidi_controls_and_invisible_characters(app: TestApp) {
    let t = team(&app).await;
    let nurse = t.nurse.token();
    let admin = app.admin.tokens().unwrap().access_token;
    let file = upload_ok(&app, &t.nurse, t.main(), "記録.txt", b"hello".to_vec()).await;
    let g = t.group.id;
    for bad in HIDDEN {
        let cases: Vec<(&str, Method, String, Value, &str)> = vec![
            (
                "group name",
                Method::POST,
                "/api/v1/groups".into(),
                json!({"kind": "free", "name": bad}),
                &nurse,
            ),
            (
                "group rename",
                Method::PATCH,
                format!("/api/v1/groups/{g}"),
                json!({"name": bad}),
                &nurse,
            ),
            (
                "patient name",
                Method::POST,
                "/api/v1/groups".into(),
                json!({"kind": "patient", "name": "患者", "patient": {"name": bad}}),
                &nurse,
            ),
            (
                "thread title",
                Method::POST,
                format!("/api/v1/groups/{g}/threads"),
                json!({"title": bad, "member_ids": [t.doctor.id()]}),
                &nurse,
            ),
            (
                "folder",
                Method::PATCH,
                format!("/api/v1/files/{}", file.id),
                json!({"folder": bad}),
                &nurse,
            ),
            (
                "tag",
                Method::PATCH,
                format!("/api/v1/files/{}", file.id),
                json!({"tags": [bad]}),
                &nurse,
            ),
            (
                "organisation",
                Method::POST,
                "/api/v1/admin/organizations".into(),
                json!({"name": bad, "kind": "clinic"}),
                &admin,
            ),
            (
                "display name",
                Method::POST,
                "/api/v1/admin/users".into(),
                json!({"login": "new.user", "display_name": bad, "password": "a long enough password 1",
                       "profession": "nurse"}),
                &admin,
            ),
            (
                "display name change",
                Method::PATCH,
                format!("/api/v1/admin/users/{}", t.caremgr.id()),
                json!({"display_name": bad}),
                &admin,
            ),
        ];
        for (what, method, path, body, token) in cases {
            assert_refused(
                &format!("{what} {bad:?}"),
                call(&app, token, method, &path, body).await,
            );
        }
    }
    // Nothing half-written: the group kept its name, the file its folder and tags.
    let group = t.nurse.client.get_group(g).await.unwrap();
    assert_eq!(group.name, t.group.name);
    let info = t.nurse.client.file_info(&file.id).await.unwrap();
    assert!(info.folder.is_none() && info.tags.is_empty());
}

async fn emoji_joiner_sequences_stay_allowed_in_display_names(app: TestApp) {
    let t = team(&app).await;
    let admin = app.admin.tokens().unwrap().access_token;
    // 🧑‍⚕️ (health worker): ZWJ between two emoji is how the sequence is written.
    let name = "佐藤 \u{1F9D1}\u{200D}\u{2695}\u{FE0F}";
    let (status, body) = call(
        &app,
        &admin,
        Method::PATCH,
        &format!("/api/v1/admin/users/{}", t.caremgr.id()),
        json!({"display_name": name}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["display_name"], name);
}

/// Every pattern the published schema gives a name, file name or folder is one of the
/// three the server's rule is written after: none still lets bidirectional controls
/// through (the old name pattern refused control characters only).
#[test]
fn the_published_name_patterns_refuse_what_the_server_refuses() {
    use tsunagu_protocol::{FILE_NAME_PATTERN, FOLDER_PATTERN, NAME_PATTERN};
    fn patterns(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("pattern", Value::String(p)) => out.push(p.clone()),
                        _ => patterns(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| patterns(v, out)),
            _ => {}
        }
    }
    let doc: Value = serde_json::from_str(&tsunagu_server::api::openapi::document_json()).unwrap();
    let mut all = Vec::new();
    patterns(&doc, &mut all);
    // The old name and file-name patterns (control characters only).
    let old = [
        r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f]",
        r"[^\u0000-\u001f\u007f-\u009f/\\]*",
    ];
    for p in &all {
        assert!(
            !old.iter().any(|o| p.contains(o)),
            "a name pattern that lets U+202E through: {p}"
        );
    }
    for wanted in [NAME_PATTERN, FILE_NAME_PATTERN, FOLDER_PATTERN] {
        assert!(all.iter().any(|p| p == wanted), "not published: {wanted}");
        assert!(wanted.contains(r"\u2028-\u202e") && wanted.contains(r"\u2060-\u206f"));
    }
}
