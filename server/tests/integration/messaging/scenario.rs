//! The end-to-end story, exactly as `docs/walkthrough.md` tells it with curl: the same
//! requests with the same bodies, in the same order. A nurse posts in a patient group,
//! the care manager replies and reads (既読 shows), and the nurse and the doctor talk
//! in a 内緒話 that the family member in the group never sees.
//!
//! Change the walkthrough and this test together; the `§` marks name its sections.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use tsunagu_testkit::both_backends;
use tsunagu_testkit::{TestApp, ADMIN_PASSWORD};

both_backends!(the_walkthrough_care_team_story);

/// `curl -X METHOD $API/PATH -H "authorization: Bearer TOKEN" -d BODY`: status and
/// answer.
async fn call(
    app: &TestApp,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app.http.request(method, app.url(&format!("/api/v1{path}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = &body {
        req = req.json(b);
    }
    let response = req.send().await.expect("request");
    let status = response.status();
    let bytes = response.bytes().await.expect("body");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("a JSON answer")
    };
    (status, value)
}

/// A call that must answer `expected`; returns the answer.
async fn ok(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    expected: StatusCode,
) -> Value {
    let (status, answer) = call(app, Some(token), method.clone(), path, body).await;
    assert_eq!(status, expected, "{method} {path}: {answer}");
    answer
}

async fn login(app: &TestApp, login: &str, password: &str) -> String {
    let (status, answer) = call(
        app,
        None,
        Method::POST,
        "/auth/login",
        Some(json!({"login": login, "password": password})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["token_type"], "Bearer");
    answer["access_token"].as_str().unwrap().to_owned()
}

fn s(v: &Value) -> String {
    v.as_str().expect("a string").to_owned()
}

async fn the_walkthrough_care_team_story(app: TestApp) {
    use Method as M;
    use StatusCode as S;

    // §2. The region administrator signs in with the bootstrap password.
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;

    // §2. The administrator creates the care team's accounts.
    let mut ids = Vec::new();
    for body in [
        json!({"login": "nurse.sato", "display_name": "佐藤 看護師", "password": "sato nurse passphrase",
               "profession": "nurse", "must_change_password": false}),
        json!({"login": "cm.suzuki", "display_name": "鈴木 ケアマネ", "password": "suzuki care manager passphrase",
               "profession": "care_manager", "must_change_password": false}),
        json!({"login": "dr.tanaka", "display_name": "田中 医師", "password": "tanaka doctor passphrase",
               "profession": "doctor", "must_change_password": false}),
        json!({"login": "family.yamada", "display_name": "山田 花子", "password": "yamada family passphrase",
               "profession": "family", "must_change_password": false}),
    ] {
        let user = ok(
            &app,
            &admin,
            M::POST,
            "/admin/users",
            Some(body.clone()),
            S::CREATED,
        )
        .await;
        assert_eq!(user["login"], body["login"]);
        assert_eq!(user["profession"], body["profession"]);
        assert_eq!(user["must_change_password"], false);
        ids.push(s(&user["id"]));
    }
    let [nurse_id, cm_id, dr_id, family_id] = <[String; 4]>::try_from(ids).unwrap();

    // §2. Each signs in.
    let nurse = login(&app, "nurse.sato", "sato nurse passphrase").await;
    let cm = login(&app, "cm.suzuki", "suzuki care manager passphrase").await;
    let dr = login(&app, "dr.tanaka", "tanaka doctor passphrase").await;
    let family = login(&app, "family.yamada", "yamada family passphrase").await;

    // §3. The nurse creates the patient group; she is its owner.
    let group = ok(
        &app,
        &nurse,
        M::POST,
        "/groups",
        Some(json!({
            "kind": "patient",
            "name": "山田 太郎 様",
            "patient": {
                "name": "山田 太郎",
                "name_kana": "ヤマダ タロウ",
                "birth_date": "1938-04-01",
                "sex": "male",
                "care_level": "care_3",
                "address": "埼玉県さいたま市浦和区高砂3-15-1",
                "primary_physician": "田中 医師"
            }
        })),
        S::CREATED,
    )
    .await;
    assert_eq!(group["kind"], "patient");
    assert_eq!(group["my_role"], "owner");
    assert_eq!(group["member_count"], 1);
    assert_eq!(group["patient"]["care_level"], "care_3");
    let group_id = s(&group["id"]);
    let main = s(&group["main_thread_id"]);

    // §3. She adds the care manager, the doctor and the family member. The family
    //     member is patient-side by default: main timeline only.
    for (who, patient_side) in [(&cm_id, false), (&dr_id, false), (&family_id, true)] {
        let member = ok(
            &app,
            &nurse,
            M::POST,
            &format!("/groups/{group_id}/members"),
            Some(json!({"user_id": who})),
            S::CREATED,
        )
        .await;
        assert_eq!(member["role"], "member");
        assert_eq!(member["patient_side"], patient_side);
    }

    // §4. The nurse posts in the main timeline.
    let m1 = ok(
        &app,
        &nurse,
        M::POST,
        &format!("/threads/{main}/messages"),
        Some(json!({
            "body": "本日14時に訪問しました。血圧 138/82、SpO2 97%。夜間の咳が続いています。",
            "client_msg_id": "sato-visit-1105"
        })),
        S::CREATED,
    )
    .await;
    assert_eq!(m1["seq"], 1);
    assert_eq!(m1["thread_id"], main.as_str());
    assert_eq!(m1["author_id"], nurse_id.as_str());
    let m1_id = s(&m1["id"]);

    // §5. The care manager reads the timeline, replies to it, and marks it read.
    let page = ok(
        &app,
        &cm,
        M::GET,
        &format!("/threads/{main}/messages"),
        None,
        S::OK,
    )
    .await;
    assert_eq!(page["has_more"], false);
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["id"], m1_id.as_str());
    assert_eq!(messages[0]["read_count"], 0, "no one has read it yet");
    let m2 = ok(
        &app,
        &cm,
        M::POST,
        &format!("/threads/{main}/messages"),
        Some(json!({
            "body": "ありがとうございます。田中先生に相談のうえ、来週の訪問診療で診ていただきます。",
            "client_msg_id": "suzuki-reply-1105",
            "reply_to": m1_id
        })),
        S::CREATED,
    )
    .await;
    assert_eq!(m2["seq"], 2);
    assert_eq!(m2["reply_to"], m1_id.as_str());
    let read = ok(
        &app,
        &cm,
        M::POST,
        &format!("/threads/{main}/read"),
        Some(json!({"seq": 2})),
        S::OK,
    )
    .await;
    assert_eq!(read["last_read_seq"], 2);
    assert_eq!(read["unread_count"], 0);

    // §6. The nurse sees 既読: her message has one reader, the care manager; the reply
    //     is unread for her.
    let page = ok(
        &app,
        &nurse,
        M::GET,
        &format!("/threads/{main}/messages"),
        None,
        S::OK,
    )
    .await;
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["read_count"], 1);
    assert_eq!(messages[1]["reply_to"], m1_id.as_str());
    let readers = ok(
        &app,
        &nurse,
        M::GET,
        &format!("/threads/{main}/messages/{m1_id}/readers"),
        None,
        S::OK,
    )
    .await;
    assert_eq!(readers["message_id"], m1_id.as_str());
    let readers = readers["readers"].as_array().unwrap();
    assert_eq!(readers.len(), 1);
    assert_eq!(readers[0]["user_id"], cm_id.as_str());
    assert_eq!(readers[0]["display_name"], "鈴木 ケアマネ");
    let threads = ok(
        &app,
        &nurse,
        M::GET,
        &format!("/groups/{group_id}/threads"),
        None,
        S::OK,
    )
    .await;
    let threads = threads["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0]["kind"], "main");
    assert_eq!(threads[0]["last_seq"], 2);
    assert_eq!(threads[0]["unread_count"], 1);

    // §7. The nurse opens a 内緒話 with the doctor.
    let private = ok(
        &app,
        &nurse,
        M::POST,
        &format!("/groups/{group_id}/threads"),
        Some(json!({"title": "主治医と相談", "member_ids": [dr_id]})),
        S::CREATED,
    )
    .await;
    assert_eq!(private["kind"], "private");
    let mut members: Vec<String> = private["member_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    members.sort();
    let mut expected = vec![nurse_id.clone(), dr_id.clone()];
    expected.sort();
    assert_eq!(members, expected, "the creator is always in it");
    let private_id = s(&private["id"]);

    // §7. They talk there: the doctor reads the nurse's message and answers.
    let p1 = ok(
        &app,
        &nurse,
        M::POST,
        &format!("/threads/{private_id}/messages"),
        Some(json!({
            "body": "ご家族は在宅での看取りを希望されていますが、まだ迷いもあるようです。",
            "client_msg_id": "sato-private-1"
        })),
        S::CREATED,
    )
    .await;
    assert_eq!(p1["seq"], 1);
    let read = ok(
        &app,
        &dr,
        M::POST,
        &format!("/threads/{private_id}/read"),
        Some(json!({"seq": 1})),
        S::OK,
    )
    .await;
    assert_eq!(read["last_read_seq"], 1);
    let p2 = ok(
        &app,
        &dr,
        M::POST,
        &format!("/threads/{private_id}/messages"),
        Some(json!({
            "body": "了解です。来週の訪問時に、ご家族の気持ちを確認しながらお話しします。",
            "client_msg_id": "tanaka-private-1",
            "reply_to": s(&p1["id"])
        })),
        S::CREATED,
    )
    .await;
    assert_eq!(p2["seq"], 2);

    // §8. The family member sees the main timeline — and nothing of the 内緒話.
    let threads = ok(
        &app,
        &family,
        M::GET,
        &format!("/groups/{group_id}/threads"),
        None,
        S::OK,
    )
    .await;
    let threads = threads["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 1, "only the main timeline: {threads:?}");
    assert_eq!(threads[0]["id"], main.as_str());
    assert_eq!(threads[0]["unread_count"], 2);
    let page = ok(
        &app,
        &family,
        M::GET,
        &format!("/threads/{main}/messages"),
        None,
        S::OK,
    )
    .await;
    let bodies: Vec<String> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| s(&m["body"]))
        .collect();
    assert_eq!(bodies.len(), 2);
    assert!(bodies.iter().all(|b| !b.contains("看取り")));
    let (status, hidden) = call(
        &app,
        Some(&family),
        M::GET,
        &format!("/threads/{private_id}/messages"),
        None,
    )
    .await;
    assert_eq!(status, S::NOT_FOUND);
    assert_eq!(
        hidden,
        json!({"error": {"code": "not_found", "message": "thread not found"}})
    );
    // …which is exactly what a thread that does not exist looks like.
    let (status, nowhere) = call(
        &app,
        Some(&family),
        M::GET,
        &format!("/threads/{}/messages", uuid::Uuid::now_v7()),
        None,
    )
    .await;
    assert_eq!(status, S::NOT_FOUND);
    assert_eq!(hidden, nowhere);

    // §8. Nor can anyone bring the family member into it.
    let (status, refused) = call(
        &app,
        Some(&dr),
        M::POST,
        &format!("/threads/{private_id}/members"),
        Some(json!({"user_id": family_id})),
    )
    .await;
    assert_eq!(status, S::BAD_REQUEST);
    assert_eq!(refused["error"]["code"], "invalid_request");

    // Beyond the walkthrough: the rest of what each person sees.
    // The family member cannot read, post in, or ask about the 内緒話 in any other way.
    for (method, path, body) in [
        (M::GET, format!("/threads/{private_id}"), None),
        (
            M::POST,
            format!("/threads/{private_id}/messages"),
            Some(json!({"body": "見えますか", "client_msg_id": "family-probe"})),
        ),
        (
            M::POST,
            format!("/threads/{private_id}/read"),
            Some(json!({"seq": 2})),
        ),
        (
            M::GET,
            format!("/threads/{private_id}/messages/{}/readers", s(&p1["id"])),
            None,
        ),
    ] {
        let (status, answer) = call(&app, Some(&family), method.clone(), &path, body).await;
        assert_eq!(status, S::NOT_FOUND, "{method} {path}: {answer}");
    }
    // The care manager is in the group but not in the 内緒話: it is hidden from her too.
    let threads = ok(
        &app,
        &cm,
        M::GET,
        &format!("/groups/{group_id}/threads"),
        None,
        S::OK,
    )
    .await;
    assert_eq!(threads["threads"].as_array().unwrap().len(), 1);
    // The doctor sees both threads; he has read the 内緒話.
    let threads = ok(
        &app,
        &dr,
        M::GET,
        &format!("/groups/{group_id}/threads"),
        None,
        S::OK,
    )
    .await;
    let threads = threads["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 2);
    assert_eq!(threads[0]["id"], main.as_str());
    assert_eq!(threads[0]["unread_count"], 2);
    assert_eq!(threads[1]["id"], private_id.as_str());
    assert_eq!(threads[1]["title"], "主治医と相談");
    assert_eq!(threads[1]["unread_count"], 0);
    // The nurse sees her message in the 内緒話 read by the doctor.
    let page = ok(
        &app,
        &nurse,
        M::GET,
        &format!("/threads/{private_id}/messages"),
        None,
        S::OK,
    )
    .await;
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["read_count"], 1);
    assert_eq!(messages[1]["author_id"], dr_id.as_str());
}
