//! Messages: gap-free `seq`, idempotent posting, validation, reply-to and mentions,
//! paging, edits with history, tombstones, reactions and read receipts (既読).

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tsunagu_protocol::accounts::Profession;
use tsunagu_protocol::ids::{MessageId, UserId};
use tsunagu_protocol::messaging::{CreateThread, Message, Reaction};

use crate::messaging::fixtures::{
    add, all_messages, conflict, forbidden, invalid, not_found, patient_group, person, post, raw,
    team,
};
use tsunagu_testkit::both_backends;
use tsunagu_testkit::TestApp;

both_backends!(
    seqs_start_at_one_and_stay_gap_free_over_fifty_posts,
    concurrent_posters_get_every_seq_exactly_once,
    a_retried_post_returns_the_original_message,
    a_concurrent_double_post_stores_one_message,
    refused_posts_in_a_busy_batch_leave_the_others_stored_and_gap_free,
    refused_bodies_store_nothing_and_consume_no_seq,
    reply_to_must_name_a_message_of_the_same_thread,
    mentions_name_members_of_the_thread,
    paging_catches_up_scrolls_back_and_defaults_to_the_latest_fifty,
    an_edit_keeps_the_earlier_versions_and_only_the_author_may_edit,
    a_deleted_message_leaves_a_tombstone_in_its_place,
    reactions_are_added_removed_and_shown_on_the_message,
    the_read_position_only_moves_forward_and_stops_at_the_last_message,
    unread_counts_are_per_thread_and_count_others_live_messages,
    read_counts_and_readers_show_who_has_read_excluding_the_author,
);

fn seqs(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

async fn seqs_start_at_one_and_stay_gap_free_over_fifty_posts(app: TestApp) {
    let t = team(&app).await;
    let mut answered = Vec::new();
    for i in 0..50 {
        // Alternate authors: the sequence is the thread's, not the author's.
        let author = if i % 2 == 0 { &t.nurse } else { &t.caremgr };
        let m = author
            .client
            .post_text(t.main(), &format!("経過記録 {i}"))
            .await
            .unwrap();
        assert_eq!(m.thread_id, t.main());
        answered.push(m.seq);
    }
    let expected: Vec<i64> = (1..=50).collect();
    assert_eq!(answered, expected);
    let stored = all_messages(&t.doctor.client, t.main()).await;
    assert_eq!(seqs(&stored), expected);
    assert_eq!(stored[0].body, "経過記録 0");
    assert_eq!(stored[49].body, "経過記録 49");
    assert_eq!(
        t.doctor.client.get_thread(t.main()).await.unwrap().last_seq,
        50
    );

    // Each thread counts on its own: a 内緒話 starts at 1 too.
    let private = t
        .nurse
        .client
        .create_thread(
            t.group.id,
            &CreateThread {
                title: "相談".into(),
                member_ids: vec![t.doctor.id()],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        t.doctor
            .client
            .post_text(private.id, "了解です")
            .await
            .unwrap()
            .seq,
        1
    );
    assert_eq!(
        t.nurse.client.post_text(t.main(), "次").await.unwrap().seq,
        51
    );
}

async fn concurrent_posters_get_every_seq_exactly_once(app: TestApp) {
    let t = team(&app).await;
    let posters = vec![
        t.nurse.clone(),
        t.caremgr.clone(),
        t.doctor.clone(),
        t.family.clone(),
    ];
    let per_poster = 25;
    let mut tasks = Vec::new();
    for (p, poster) in posters.into_iter().enumerate() {
        let thread = t.main();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..per_poster {
                let m = poster
                    .client
                    .post_text(thread, &format!("poster {p} message {i}"))
                    .await
                    .unwrap();
                mine.push((m.seq, m.body));
            }
            mine
        }));
    }
    let mut answered = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        // One poster's sequential posts are ordered in the thread as they were sent.
        assert!(
            mine.windows(2).all(|w| w[0].0 < w[1].0),
            "a poster's own posts keep their order: {mine:?}"
        );
        answered.extend(mine);
    }
    let stored = all_messages(&t.nurse.client, t.main()).await;
    let expected: Vec<i64> = (1..=100).collect();
    assert_eq!(
        seqs(&stored),
        expected,
        "exactly 1..=100: no gap, no duplicate"
    );
    // What each poster was told is what was stored.
    answered.sort();
    let stored_pairs: Vec<(i64, String)> = stored.iter().map(|m| (m.seq, m.body.clone())).collect();
    assert_eq!(answered, stored_pairs);
    let bodies: BTreeSet<&str> = stored.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies.len(), 100);
    assert_eq!(
        t.nurse.client.get_thread(t.main()).await.unwrap().last_seq,
        100
    );
}

async fn a_retried_post_returns_the_original_message(app: TestApp) {
    let t = team(&app).await;
    let path = format!("/api/v1/threads/{}/messages", t.main());
    let body = json!({"body": "血圧 132/80、体温 36.5℃。", "client_msg_id": "visit-2024-11-05-1"});

    let (first_status, first) = raw(&app, &t.nurse.token(), Method::POST, &path, Some(&body)).await;
    assert_eq!(first_status, StatusCode::CREATED, "{first}");
    assert_eq!(first["seq"], 1);
    for _ in 0..3 {
        let (status, again) = raw(&app, &t.nurse.token(), Method::POST, &path, Some(&body)).await;
        assert_eq!(status, StatusCode::OK, "a retry is answered 200, not 201");
        assert_eq!(again["id"], first["id"]);
        assert_eq!(again["seq"], first["seq"]);
        assert_eq!(again["body"], first["body"]);
        assert_eq!(again["created_at"], first["created_at"]);
    }
    // The retry did not take a seq: the next post is 2.
    let next = t
        .nurse
        .client
        .post_text(t.main(), "次の記録")
        .await
        .unwrap();
    assert_eq!(next.seq, 2);
    let stored = all_messages(&t.caremgr.client, t.main()).await;
    assert_eq!(seqs(&stored), vec![1, 2]);

    // The key is the author's own: another member using the same string posts anew.
    let (status, theirs) = raw(
        &app,
        &t.caremgr.token(),
        Method::POST,
        &path,
        Some(&json!({"body": "別の投稿", "client_msg_id": "visit-2024-11-05-1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{theirs}");
    assert_eq!(theirs["seq"], 3);
    assert_ne!(theirs["id"], first["id"]);
    // And per thread: the same key in a 内緒話 is a different message.
    let private = t
        .nurse
        .client
        .create_thread(
            t.group.id,
            &CreateThread {
                title: "相談".into(),
                member_ids: vec![t.doctor.id()],
            },
        )
        .await
        .unwrap();
    let (status, elsewhere) = raw(
        &app,
        &t.nurse.token(),
        Method::POST,
        &format!("/api/v1/threads/{}/messages", private.id),
        Some(&body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(elsewhere["seq"], 1);
    assert_ne!(elsewhere["id"], first["id"]);
}

async fn a_concurrent_double_post_stores_one_message(app: TestApp) {
    let t = team(&app).await;
    // Something to be behind, so the double post is not the thread's first.
    t.caremgr
        .client
        .post_text(t.main(), "おはようございます")
        .await
        .unwrap();
    let path = format!("/api/v1/threads/{}/messages", t.main());
    let body = json!({"body": "褥瘡の処置を変更しました。", "client_msg_id": "double-tap-1"});
    let token = t.nurse.token();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let http = app.http.clone();
        let url = app.url(&path);
        let token = token.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let replayed = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(
        (created, replayed),
        (1, 5),
        "exactly one post is new: {answers:?}"
    );
    let id = &answers[0].1["id"];
    for (_, a) in &answers {
        assert_eq!(&a["id"], id);
        assert_eq!(a["seq"], 2);
    }
    let stored = all_messages(&t.doctor.client, t.main()).await;
    assert_eq!(seqs(&stored), vec![1, 2]);
    // No seq was burnt by the losers.
    assert_eq!(
        t.nurse.client.post_text(t.main(), "次").await.unwrap().seq,
        3
    );
}

async fn refused_bodies_store_nothing_and_consume_no_seq(app: TestApp) {
    let t = team(&app).await;
    assert_eq!(
        t.nurse
            .client
            .post_text(t.main(), "一件目")
            .await
            .unwrap()
            .seq,
        1
    );
    let too_long: String = "あ".repeat(10_001);
    for bad in [
        "",
        "   ",
        " \n\t\r\n ",
        too_long.as_str(),
        "ベル\u{7}文字",
        "ヌル\u{0}文字",
        "エスケープ\u{1b}[31m",
        "削除\u{7f}",
    ] {
        invalid(t.nurse.client.post_text(t.main(), bad).await);
    }
    // A bad client_msg_id is refused the same way.
    for key in ["", &"k".repeat(65), "tab\there"] {
        invalid(
            t.nurse
                .client
                .post_message(t.main(), &post("本文", key))
                .await,
        );
    }
    // Unknown attachments are refused too.
    let mut with_file = post("添付あり", "with-file");
    with_file.attachments = vec!["no-such-file".into()];
    invalid(t.nurse.client.post_message(t.main(), &with_file).await);

    // Exactly the limit is fine (characters, not bytes: this is 30,000 bytes), and so
    // are line breaks and tabs inside the text.
    let at_limit: String = "あ".repeat(10_000);
    let long = t.nurse.client.post_text(t.main(), &at_limit).await.unwrap();
    assert_eq!(long.seq, 2, "no refused post consumed a seq");
    assert_eq!(long.body.chars().count(), 10_000);
    let multiline = t
        .nurse
        .client
        .post_text(t.main(), "申し送り:\n\t・食事量 8割\n\t・排便あり")
        .await
        .unwrap();
    assert_eq!(multiline.seq, 3);
    assert_eq!(multiline.body, "申し送り:\n\t・食事量 8割\n\t・排便あり");

    let stored = all_messages(&t.caremgr.client, t.main()).await;
    assert_eq!(seqs(&stored), vec![1, 2, 3]);
    // Refused edits are refused the same way and change nothing.
    for bad in ["", "  ", too_long.as_str(), "ベル\u{7}"] {
        invalid(
            t.nurse
                .client
                .edit_message(t.main(), multiline.id, bad)
                .await,
        );
    }
    let history = t
        .nurse
        .client
        .message_history(t.main(), multiline.id)
        .await
        .unwrap();
    assert!(history.edits.is_empty());
}

async fn reply_to_must_name_a_message_of_the_same_thread(app: TestApp) {
    let t = team(&app).await;
    let question = t
        .nurse
        .client
        .post_text(t.main(), "来週のショートステイ、空きはありますか?")
        .await
        .unwrap();
    let mut reply = post("水曜から3泊で確保できました。", "reply-1");
    reply.reply_to = Some(question.id);
    let answer = t
        .caremgr
        .client
        .post_message(t.main(), &reply)
        .await
        .unwrap();
    assert_eq!(answer.reply_to, Some(question.id));
    assert_eq!(answer.seq, 2);
    let listed = all_messages(&t.family.client, t.main()).await;
    assert_eq!(listed[1].reply_to, Some(question.id));
    assert_eq!(listed[0].reply_to, None);

    // A message of another thread of the same group, or no message at all: refused.
    let private = t
        .nurse
        .client
        .create_thread(
            t.group.id,
            &CreateThread {
                title: "相談".into(),
                member_ids: vec![t.caremgr.id()],
            },
        )
        .await
        .unwrap();
    let hidden = t
        .nurse
        .client
        .post_text(private.id, "内緒の件")
        .await
        .unwrap();
    for target in [hidden.id, MessageId::new()] {
        let mut bad = post("返信", &format!("bad-reply-{target}"));
        bad.reply_to = Some(target);
        invalid(t.caremgr.client.post_message(t.main(), &bad).await);
    }
    // And the other way round: a 内緒話 cannot reply into the main timeline.
    let mut inward = post("返信", "inward");
    inward.reply_to = Some(question.id);
    invalid(t.caremgr.client.post_message(private.id, &inward).await);

    assert_eq!(
        seqs(&all_messages(&t.nurse.client, t.main()).await),
        vec![1, 2]
    );
    assert_eq!(
        t.caremgr
            .client
            .post_text(t.main(), "以上です")
            .await
            .unwrap()
            .seq,
        3
    );
}

async fn mentions_name_members_of_the_thread(app: TestApp) {
    let t = team(&app).await;
    let outsider = person(&app, "pharm.kato", "加藤 薬剤師", Profession::Pharmacist).await;
    let mut m = post(
        "@田中先生 @鈴木さん 処方変更の確認をお願いします。",
        "mention-1",
    );
    m.mentions = vec![t.doctor.id(), t.caremgr.id(), t.doctor.id()];
    let sent = t.nurse.client.post_message(t.main(), &m).await.unwrap();
    let want: BTreeSet<UserId> = [t.doctor.id(), t.caremgr.id()].into_iter().collect();
    assert_eq!(sent.mentions.len(), 2, "duplicates collapse");
    assert_eq!(sent.mentions.iter().copied().collect::<BTreeSet<_>>(), want);
    let listed = all_messages(&t.doctor.client, t.main()).await;
    assert_eq!(
        listed[0].mentions.iter().copied().collect::<BTreeSet<_>>(),
        want
    );
    // The family is in the main timeline, so may be mentioned there.
    let mut fam = post("ご家族様へ: 次回は金曜です。", "mention-family");
    fam.mentions = vec![t.family.id()];
    assert_eq!(
        t.nurse
            .client
            .post_message(t.main(), &fam)
            .await
            .unwrap()
            .mentions,
        vec![t.family.id()]
    );

    // Someone outside the group, or no one: refused, nothing stored.
    for who in [outsider.id(), UserId::new()] {
        let mut bad = post("@誰か", &format!("mention-{who}"));
        bad.mentions = vec![who];
        invalid(t.nurse.client.post_message(t.main(), &bad).await);
    }
    // In a 内緒話, only its members: not the family, not a group member left out.
    let private = t
        .nurse
        .client
        .create_thread(
            t.group.id,
            &CreateThread {
                title: "主治医と相談".into(),
                member_ids: vec![t.doctor.id()],
            },
        )
        .await
        .unwrap();
    for who in [t.family.id(), t.caremgr.id()] {
        let mut bad = post("@誰か", &format!("private-mention-{who}"));
        bad.mentions = vec![who];
        invalid(t.nurse.client.post_message(private.id, &bad).await);
    }
    let mut ok = post("@田中先生", "private-mention-ok");
    ok.mentions = vec![t.doctor.id()];
    let sent = t.nurse.client.post_message(private.id, &ok).await.unwrap();
    assert_eq!(sent.mentions, vec![t.doctor.id()]);
    assert_eq!(sent.seq, 1);
    assert_eq!(
        seqs(&all_messages(&t.nurse.client, t.main()).await),
        vec![1, 2]
    );
}

async fn paging_catches_up_scrolls_back_and_defaults_to_the_latest_fifty(app: TestApp) {
    let t = team(&app).await;
    for i in 1..=120 {
        t.nurse
            .client
            .post_text(t.main(), &format!("記録 {i}"))
            .await
            .unwrap();
    }
    let c = &t.caremgr.client;
    let main = t.main();
    let page = |after: Option<i64>, before: Option<i64>, limit: Option<i64>| async move {
        let p = c.list_messages(main, after, before, limit).await.unwrap();
        (seqs(&p.messages), p.has_more)
    };
    let range = |a: i64, b: i64| (a..=b).collect::<Vec<i64>>();

    // Without bounds: the latest 50, oldest first, and more exist before them.
    assert_eq!(page(None, None, None).await, (range(71, 120), true));
    // Scrolling back from the oldest one seen.
    assert_eq!(page(None, Some(71), None).await, (range(21, 70), true));
    assert_eq!(page(None, Some(21), None).await, (range(1, 20), false));
    assert_eq!(page(None, Some(1), None).await, (vec![], false));
    assert_eq!(page(None, Some(51), Some(50)).await, (range(1, 50), false));
    // Catching up, ascending.
    assert_eq!(page(Some(0), None, None).await, (range(1, 50), true));
    assert_eq!(page(Some(50), None, Some(10)).await, (range(51, 60), true));
    assert_eq!(page(Some(100), None, None).await, (range(101, 120), false));
    assert_eq!(
        page(Some(70), None, Some(50)).await,
        (range(71, 120), false)
    );
    assert_eq!(page(Some(120), None, None).await, (vec![], false));
    assert_eq!(page(Some(500), None, None).await, (vec![], false));
    assert_eq!(page(Some(0), None, Some(200)).await, (range(1, 120), false));
    assert_eq!(page(None, None, Some(1)).await, (vec![120], true));
    // The page content is the messages themselves.
    let p = c
        .list_messages(t.main(), Some(4), None, Some(1))
        .await
        .unwrap();
    assert_eq!(p.messages[0].body, "記録 5");
    assert_eq!(p.messages[0].author_id, t.nurse.id());

    // Out-of-range or malformed paging parameters are refused.
    for query in [
        "limit=0",
        "limit=201",
        "limit=-1",
        "after_seq=-1",
        "before_seq=-5",
        "after_seq=abc",
        "limit=ten",
    ] {
        let (status, body) = raw(
            &app,
            &t.caremgr.token(),
            Method::GET,
            &format!("/api/v1/threads/{}/messages?{query}", t.main()),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{query}");
    }
    let (status, _) = raw(
        &app,
        &t.caremgr.token(),
        Method::GET,
        &format!("/api/v1/threads/{}/messages?limit=200", t.main()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

async fn an_edit_keeps_the_earlier_versions_and_only_the_author_may_edit(app: TestApp) {
    let t = team(&app).await;
    let m = t
        .nurse
        .client
        .post_text(t.main(), "明日は9時に訪問します。")
        .await
        .unwrap();
    assert_eq!(m.edited_at, None);
    let v2 = t
        .nurse
        .client
        .edit_message(t.main(), m.id, "明日は10時に訪問します。")
        .await
        .unwrap();
    assert_eq!(v2.id, m.id);
    assert_eq!(v2.seq, m.seq, "an edit keeps the message's place");
    assert_eq!(v2.body, "明日は10時に訪問します。");
    assert!(v2.edited_at.is_some());
    let v3 = t
        .nurse
        .client
        .edit_message(t.main(), m.id, "明日は10時半に訪問します。")
        .await
        .unwrap();
    assert_eq!(v3.body, "明日は10時半に訪問します。");

    // Every member of the thread sees the current text and the earlier ones, oldest
    // first.
    for p in [&t.nurse, &t.caremgr, &t.family] {
        let listed = all_messages(&p.client, t.main()).await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].body, "明日は10時半に訪問します。");
        assert!(listed[0].edited_at.is_some());
        let history = p.client.message_history(t.main(), m.id).await.unwrap();
        let versions: Vec<(i64, &str)> = history
            .edits
            .iter()
            .map(|e| (e.version, e.body.as_str()))
            .collect();
        assert_eq!(
            versions,
            vec![
                (1, "明日は9時に訪問します。"),
                (2, "明日は10時に訪問します。")
            ]
        );
        assert_eq!(history.edits[0].edited_at, m.created_at);
        assert_eq!(Some(&history.edits[1].edited_at), v2.edited_at.as_ref());
    }
    // An edit that changes nothing adds no version.
    t.nurse
        .client
        .edit_message(t.main(), m.id, "明日は10時半に訪問します。")
        .await
        .unwrap();
    assert_eq!(
        t.nurse
            .client
            .message_history(t.main(), m.id)
            .await
            .unwrap()
            .edits
            .len(),
        2
    );

    // Someone else's message is not theirs to edit, owner of the group or not.
    let theirs = t
        .caremgr
        .client
        .post_text(t.main(), "承知しました。")
        .await
        .unwrap();
    forbidden(
        t.nurse
            .client
            .edit_message(t.main(), theirs.id, "改ざん")
            .await,
    );
    forbidden(t.family.client.edit_message(t.main(), m.id, "改ざん").await);
    // Through another thread's path, or unknown: not found.
    let private = t
        .nurse
        .client
        .create_thread(
            t.group.id,
            &CreateThread {
                title: "相談".into(),
                member_ids: vec![],
            },
        )
        .await
        .unwrap();
    not_found(
        t.nurse
            .client
            .edit_message(private.id, m.id, "別スレッド経由")
            .await,
    );
    not_found(
        t.nurse
            .client
            .edit_message(t.main(), MessageId::new(), "存在しない")
            .await,
    );
    not_found(t.nurse.client.message_history(private.id, m.id).await);
    assert_eq!(
        all_messages(&t.caremgr.client, t.main()).await[1].body,
        "承知しました。"
    );

    // A deleted message cannot be edited.
    t.caremgr
        .client
        .delete_message(t.main(), theirs.id)
        .await
        .unwrap();
    conflict(
        t.caremgr
            .client
            .edit_message(t.main(), theirs.id, "復活")
            .await,
    );
}

async fn a_deleted_message_leaves_a_tombstone_in_its_place(app: TestApp) {
    let t = team(&app).await;
    let first = t.nurse.client.post_text(t.main(), "一件目").await.unwrap();
    let mut m = post("誤って投稿しました @田中先生", "to-delete");
    m.mentions = vec![t.doctor.id()];
    let doomed = t.nurse.client.post_message(t.main(), &m).await.unwrap();
    t.nurse
        .client
        .edit_message(t.main(), doomed.id, "誤って投稿しました (修正)")
        .await
        .unwrap();
    t.doctor
        .client
        .add_reaction(t.main(), doomed.id, "👀")
        .await
        .unwrap();
    let last = t
        .caremgr
        .client
        .post_text(t.main(), "三件目")
        .await
        .unwrap();

    // Only the author deletes.
    forbidden(t.caremgr.client.delete_message(t.main(), doomed.id).await);
    t.nurse
        .client
        .delete_message(t.main(), doomed.id)
        .await
        .unwrap();

    for p in [&t.nurse, &t.doctor, &t.family] {
        let listed = all_messages(&p.client, t.main()).await;
        assert_eq!(seqs(&listed), vec![1, 2, 3], "the tombstone keeps its seq");
        let tomb = &listed[1];
        assert_eq!(tomb.id, doomed.id);
        assert!(tomb.deleted);
        assert_eq!(tomb.body, "", "no text survives");
        assert!(tomb.mentions.is_empty());
        assert_eq!(tomb.author_id, t.nurse.id());
        assert!(!listed[0].deleted);
        assert_eq!(listed[0].id, first.id);
        assert_eq!(listed[2].id, last.id);
        // Nor does its history.
        assert!(p
            .client
            .message_history(t.main(), doomed.id)
            .await
            .unwrap()
            .edits
            .is_empty());
    }
    // Gone is gone: no second delete, no edit, no reaction.
    conflict(t.nurse.client.delete_message(t.main(), doomed.id).await);
    conflict(
        t.nurse
            .client
            .edit_message(t.main(), doomed.id, "復元")
            .await,
    );
    not_found(
        t.doctor
            .client
            .add_reaction(t.main(), doomed.id, "👍")
            .await,
    );
    // The next post goes after it.
    assert_eq!(
        t.nurse
            .client
            .post_text(t.main(), "四件目")
            .await
            .unwrap()
            .seq,
        4
    );
}

async fn reactions_are_added_removed_and_shown_on_the_message(app: TestApp) {
    let t = team(&app).await;
    let m = t
        .nurse
        .client
        .post_text(t.main(), "本日の訪問、無事に終了しました。")
        .await
        .unwrap();
    let bow = "🙇\u{200d}♀\u{fe0f}"; // a ZWJ sequence: several code points, one emoji
    t.caremgr
        .client
        .add_reaction(t.main(), m.id, "👍")
        .await
        .unwrap();
    t.family
        .client
        .add_reaction(t.main(), m.id, "👍")
        .await
        .unwrap();
    t.family
        .client
        .add_reaction(t.main(), m.id, bow)
        .await
        .unwrap();
    // Adding the same reaction twice is one reaction.
    t.caremgr
        .client
        .add_reaction(t.main(), m.id, "👍")
        .await
        .unwrap();

    let reactions = |listed: Vec<Message>| -> Vec<(String, BTreeSet<UserId>)> {
        let mut r: Vec<(String, BTreeSet<UserId>)> = listed[0]
            .reactions
            .iter()
            .map(|Reaction { emoji, user_ids }| {
                assert_eq!(
                    user_ids.len(),
                    user_ids.iter().collect::<BTreeSet<_>>().len(),
                    "no one twice"
                );
                (emoji.clone(), user_ids.iter().copied().collect())
            })
            .collect();
        r.sort();
        r
    };
    let mut expected = vec![
        (
            "👍".to_owned(),
            [t.caremgr.id(), t.family.id()].into_iter().collect(),
        ),
        (bow.to_owned(), [t.family.id()].into_iter().collect()),
    ];
    expected.sort();
    assert_eq!(
        reactions(all_messages(&t.doctor.client, t.main()).await),
        expected
    );

    // Removing: through the SDK (which URL-encodes the path segment)…
    t.family
        .client
        .remove_reaction(t.main(), m.id, bow)
        .await
        .unwrap();
    // …and by hand, percent-encoded UTF-8.
    let (status, body) = raw(
        &app,
        &t.caremgr.token(),
        Method::DELETE,
        &format!(
            "/api/v1/threads/{}/messages/{}/reactions/%F0%9F%91%8D",
            t.main(),
            m.id
        ),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        reactions(all_messages(&t.doctor.client, t.main()).await),
        vec![("👍".to_owned(), [t.family.id()].into_iter().collect())]
    );
    t.family
        .client
        .remove_reaction(t.main(), m.id, "👍")
        .await
        .unwrap();
    assert!(all_messages(&t.doctor.client, t.main()).await[0]
        .reactions
        .is_empty());

    // What is not an emoji-sized token is refused.
    for bad in ["", "   ", "👍 👍", "a\u{7}", &"x".repeat(17)] {
        invalid(t.caremgr.client.add_reaction(t.main(), m.id, bad).await);
    }
    // Someone outside the thread cannot react: to them the message does not exist.
    let outsider = person(&app, "pharm.kato", "加藤 薬剤師", Profession::Pharmacist).await;
    not_found(outsider.client.add_reaction(t.main(), m.id, "👍").await);
    not_found(
        t.caremgr
            .client
            .add_reaction(t.main(), MessageId::new(), "👍")
            .await,
    );
}

async fn the_read_position_only_moves_forward_and_stops_at_the_last_message(app: TestApp) {
    let t = team(&app).await;
    for i in 1..=5 {
        t.nurse
            .client
            .post_text(t.main(), &format!("記録 {i}"))
            .await
            .unwrap();
    }
    let cm = &t.caremgr.client;
    let fresh = cm.get_thread(t.main()).await.unwrap();
    assert_eq!((fresh.last_read_seq, fresh.unread_count), (0, 5));

    let r = cm.mark_read(t.main(), 3).await.unwrap();
    assert_eq!(r.thread_id, t.main());
    assert_eq!((r.last_read_seq, r.unread_count), (3, 2));
    // Backwards is ignored.
    let r = cm.mark_read(t.main(), 1).await.unwrap();
    assert_eq!((r.last_read_seq, r.unread_count), (3, 2));
    let r = cm.mark_read(t.main(), 0).await.unwrap();
    assert_eq!(r.last_read_seq, 3);
    // Past the end clamps to the last message.
    let r = cm.mark_read(t.main(), 999).await.unwrap();
    assert_eq!((r.last_read_seq, r.unread_count), (5, 0));
    let th = cm.get_thread(t.main()).await.unwrap();
    assert_eq!((th.last_seq, th.last_read_seq, th.unread_count), (5, 5, 0));
    // So the next message is unread, not pre-read.
    t.nurse.client.post_text(t.main(), "記録 6").await.unwrap();
    let th = cm.get_thread(t.main()).await.unwrap();
    assert_eq!((th.last_read_seq, th.unread_count), (5, 1));

    invalid(cm.mark_read(t.main(), -1).await);
    let (status, _) = raw(
        &app,
        &t.caremgr.token(),
        Method::POST,
        &format!("/api/v1/threads/{}/read", t.main()),
        Some(&json!({"seq": "five"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Not a member: not found, for reading and for marking.
    let outsider = person(&app, "pharm.kato", "加藤 薬剤師", Profession::Pharmacist).await;
    not_found(outsider.client.mark_read(t.main(), 1).await);
    // Reading one thread does not touch another.
    let other = patient_group(&t.nurse.client, "佐々木 様").await;
    add(&t.nurse.client, &other, &t.caremgr).await;
    t.nurse
        .client
        .post_text(other.main_thread_id, "別の患者")
        .await
        .unwrap();
    let th = cm.get_thread(other.main_thread_id).await.unwrap();
    assert_eq!((th.last_read_seq, th.unread_count), (0, 1));
}

async fn unread_counts_are_per_thread_and_count_others_live_messages(app: TestApp) {
    let t = team(&app).await;
    let private = t
        .nurse
        .client
        .create_thread(
            t.group.id,
            &CreateThread {
                title: "主治医と相談".into(),
                member_ids: vec![t.doctor.id()],
            },
        )
        .await
        .unwrap();
    let mut nurse_posts = Vec::new();
    for i in 0..3 {
        nurse_posts.push(
            t.nurse
                .client
                .post_text(t.main(), &format!("看護記録 {i}"))
                .await
                .unwrap(),
        );
    }
    t.doctor
        .client
        .post_text(t.main(), "確認しました")
        .await
        .unwrap();
    t.doctor
        .client
        .post_text(t.main(), "処方を変更します")
        .await
        .unwrap();
    t.doctor
        .client
        .post_text(private.id, "内緒: 予後について")
        .await
        .unwrap();

    let unread = |p: &crate::messaging::fixtures::Person| {
        let client = p.client.clone();
        let group = t.group.id;
        async move {
            let mut v: Vec<(String, u64)> = client
                .list_threads(group)
                .await
                .unwrap()
                .threads
                .into_iter()
                .map(|th| (th.title.unwrap_or_else(|| "main".into()), th.unread_count))
                .collect();
            v.sort();
            v
        }
    };
    // One's own posts are never unread; others' are, per thread, and a 内緒話 counts
    // only for its members.
    assert_eq!(
        unread(&t.nurse).await,
        vec![("main".into(), 2), ("主治医と相談".into(), 1)]
    );
    assert_eq!(unread(&t.caremgr).await, vec![("main".into(), 5)]);
    assert_eq!(unread(&t.family).await, vec![("main".into(), 5)]);
    let doctor_private = t.doctor.client.get_thread(private.id).await.unwrap();
    assert_eq!(
        doctor_private.unread_count, 0,
        "only the doctor's own message"
    );

    // A deleted message no longer counts as unread.
    t.nurse
        .client
        .delete_message(t.main(), nurse_posts[1].id)
        .await
        .unwrap();
    assert_eq!(unread(&t.family).await, vec![("main".into(), 4)]);
    assert_eq!(unread(&t.caremgr).await, vec![("main".into(), 4)]);
    // Reading up to seq 3 leaves the doctor's two after it for the family.
    let r = t.family.client.mark_read(t.main(), 3).await.unwrap();
    assert_eq!(r.unread_count, 2);
    assert_eq!(unread(&t.family).await, vec![("main".into(), 2)]);
    // Reading the 内緒話 clears only that thread.
    let r = t.nurse.client.mark_read(private.id, 1).await.unwrap();
    assert_eq!(r.unread_count, 0);
    assert_eq!(
        unread(&t.nurse).await,
        vec![("main".into(), 2), ("主治医と相談".into(), 0)]
    );
}

async fn read_counts_and_readers_show_who_has_read_excluding_the_author(app: TestApp) {
    let t = team(&app).await;
    let m1 = t
        .nurse
        .client
        .post_text(t.main(), "本日、熱 37.8℃。経過観察します。")
        .await
        .unwrap();
    let m2 = t
        .nurse
        .client
        .post_text(t.main(), "解熱しました。")
        .await
        .unwrap();
    assert_eq!(m1.read_count, 0, "the author does not count as a reader");

    t.caremgr.client.mark_read(t.main(), m1.seq).await.unwrap();
    t.family.client.mark_read(t.main(), m2.seq).await.unwrap();

    let listed = all_messages(&t.nurse.client, t.main()).await;
    assert_eq!(listed[0].read_count, 2);
    assert_eq!(listed[1].read_count, 1);

    let readers = |message: MessageId| {
        let client = t.doctor.client.clone();
        let thread = t.main();
        async move {
            let r = client.readers(thread, message).await.unwrap();
            assert_eq!(r.message_id, message);
            r.readers
                .into_iter()
                .map(|r| {
                    assert!(!r.read_at.is_empty());
                    (r.user_id, r.display_name)
                })
                .collect::<BTreeSet<_>>()
        }
    };
    assert_eq!(
        readers(m1.id).await,
        [
            (t.caremgr.id(), "鈴木 ケアマネ".to_owned()),
            (t.family.id(), "山田 花子".to_owned()),
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(
        readers(m2.id).await,
        [(t.family.id(), "山田 花子".to_owned())]
            .into_iter()
            .collect()
    );

    // A reply by the care manager: the nurse has not read it yet, the care manager
    // (its author) is not listed for it, and the nurse becomes a reader after reading.
    let reply = t
        .caremgr
        .client
        .post_text(t.main(), "承知しました。")
        .await
        .unwrap();
    assert!(readers(reply.id).await.is_empty());
    t.nurse.client.mark_read(t.main(), reply.seq).await.unwrap();
    assert_eq!(
        readers(reply.id).await,
        [(t.nurse.id(), "佐藤 看護師".to_owned())]
            .into_iter()
            .collect()
    );

    // Someone who leaves the group stops counting.
    t.family
        .client
        .remove_member(t.group.id, t.family.id())
        .await
        .unwrap();
    let listed = all_messages(&t.nurse.client, t.main()).await;
    assert_eq!(listed[0].read_count, 1);
    assert_eq!(listed[1].read_count, 1);
    assert_eq!(
        readers(m1.id).await,
        [(t.caremgr.id(), "鈴木 ケアマネ".to_owned())]
            .into_iter()
            .collect()
    );

    // In a 内緒話, only its members read; outsiders cannot ask who has.
    let private = t
        .nurse
        .client
        .create_thread(
            t.group.id,
            &CreateThread {
                title: "主治医と相談".into(),
                member_ids: vec![t.doctor.id()],
            },
        )
        .await
        .unwrap();
    let secret = t
        .nurse
        .client
        .post_text(private.id, "ご家族への説明の仕方について")
        .await
        .unwrap();
    // The care manager is in the group, not in the thread: marking it is not found.
    not_found(t.caremgr.client.mark_read(private.id, 1).await);
    not_found(t.caremgr.client.readers(private.id, secret.id).await);
    t.doctor.client.mark_read(private.id, 1).await.unwrap();
    let r = t.nurse.client.readers(private.id, secret.id).await.unwrap();
    assert_eq!(
        r.readers.iter().map(|r| r.user_id).collect::<Vec<_>>(),
        vec![t.doctor.id()]
    );
    assert_eq!(
        all_messages(&t.nurse.client, private.id).await[0].read_count,
        1
    );
}

/// Posts that arrive together share one transaction (group commit). Refused ones among
/// them (a `reply_to` of another thread), retries of each other and plain posts must
/// each get their own answer, and the stored thread must stay gap-free.
async fn refused_posts_in_a_busy_batch_leave_the_others_stored_and_gap_free(app: TestApp) {
    let t = team(&app).await;
    let other = t
        .nurse
        .client
        .create_thread(
            t.group.id,
            &CreateThread {
                title: "別件".into(),
                member_ids: vec![t.doctor.id()],
            },
        )
        .await
        .unwrap();
    let foreign = t
        .nurse
        .client
        .post_text(other.id, "別スレッド")
        .await
        .unwrap();
    let path = format!("/api/v1/threads/{}/messages", t.main());
    let token = t.nurse.token();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let http = app.http.clone();
        let url = app.url(&path);
        let token = token.clone();
        // Every fifth refers to a message of another thread (refused); some others
        // reuse the id of their (plain) predecessor: a retry racing the original.
        let refused = i % 5 == 4;
        let retry = i % 7 == 6 && !refused && (i - 1) % 5 != 4;
        let id = if retry {
            format!("batch-{}", i - 1)
        } else {
            format!("batch-{i}")
        };
        let mut body = json!({"body": format!("記録 {i}"), "client_msg_id": id});
        if refused {
            body["reply_to"] = json!(foreign.id);
        }
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (i, status, r.json::<serde_json::Value>().await.unwrap())
        }));
    }
    let mut stored_ids = BTreeSet::new();
    for task in tasks {
        let (i, status, answer) = task.await.unwrap();
        if i % 5 == 4 {
            assert_eq!(status, StatusCode::BAD_REQUEST, "post {i}: {answer}");
        } else {
            assert!(status.is_success(), "post {i}: {status} {answer}");
            stored_ids.insert(answer["id"].as_str().unwrap().to_owned());
        }
    }
    let stored = all_messages(&t.nurse.client, t.main()).await;
    assert_eq!(seqs(&stored), (1..=stored.len() as i64).collect::<Vec<_>>());
    assert_eq!(
        stored.len(),
        stored_ids.len(),
        "retries answered with the original"
    );
    let ids: BTreeSet<String> = stored.iter().map(|m| m.id.to_string()).collect();
    assert_eq!(ids, stored_ids);
}
