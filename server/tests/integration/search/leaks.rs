//! The leak tests: what is said in a 内緒話 — a message or a file's name or text — is
//! never returned, counted, grouped or snippeted for anyone outside it: the family, a
//! group member outside the 内緒話, a removed member, a user of another region, the
//! region administrator. Not even when they name the thread in a filter.

use tsunagu_protocol::accounts::Profession;
use tsunagu_protocol::files::SearchQuery;
use tsunagu_server::domain::search::extract::sample;
use tsunagu_testkit::{both_backends, person, stranger, team, Person, TestApp};

use super::results;
use crate::files::harness::upload_ok;

both_backends!(a_private_thread_term_never_reaches_anyone_outside_it);

const SECRET_QUERIES: &[&str] = &[
    "膵",
    "膵臓",
    "膵臓がん",
    "内緒の所見",
    "\"ご家族には 未告知\"",
    "未告知 膵",
];

async fn nothing_for(who: &Person, label: &str, thread: Option<tsunagu_protocol::ids::ThreadId>) {
    for q in SECRET_QUERIES {
        let mut query = SearchQuery::text(*q);
        query.thread_id = thread;
        let r = results(who, &query).await;
        assert!(
            r.hits.is_empty()
                && r.messages.is_empty()
                && r.files.is_empty()
                && r.threads.is_empty()
                && !r.more,
            "{label}: {q} → {r:?}"
        );
    }
}

async fn a_private_thread_term_never_reaches_anyone_outside_it(app: TestApp) {
    let t = team(&app).await;
    let private = t.private_thread().await;
    let removed = t.caremgr.clone();
    let outsider = person(&app, "outsider.ito", "伊藤 outsider", Profession::Nurse).await;
    let other_region = stranger(&app, "kumagaya", "kumagaya.nurse").await;
    let me = app.admin.me().await.expect("me");
    let admin = Person {
        user: me.user,
        client: app.admin.clone(),
    };
    let bystander = person(&app, "cm.kato", "加藤 ケアマネ", Profession::CareManager).await;
    tsunagu_testkit::add_member(&t.group, &t.nurse, &bystander).await;
    t.nurse
        .client
        .add_thread_member(private.id, removed.user.id)
        .await
        .expect("add to 内緒話");

    t.doctor
        .client
        .post_text(private.id, "内緒の所見: 膵臓がんの疑い。ご家族には 未告知")
        .await
        .expect("post");
    upload_ok(
        &app,
        &t.doctor,
        private.id,
        "膵臓_内緒の所見.docx",
        sample::docx("画像所見", "膵臓がん疑い ご家族には 未告知"),
    )
    .await;
    upload_ok(
        &app,
        &t.doctor,
        private.id,
        "所見.pdf",
        sample::pdf("膵臓がん 未告知"),
    )
    .await;
    t.nurse
        .client
        .post_text(t.main(), "通常の連絡です")
        .await
        .expect("post");
    // The extraction must have run, or a miss would prove nothing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = results(&t.doctor, &SearchQuery::text("画像所見")).await;
        if !r.files.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "extraction");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Before removal the care manager is inside and finds it.
    assert!(!results(&removed, &SearchQuery::text("膵臓"))
        .await
        .hits
        .is_empty());
    t.nurse
        .client
        .remove_member(t.group.id, removed.user.id)
        .await
        .expect("remove");

    // The insiders find all of it, in one thread.
    for insider in [&t.nurse, &t.doctor] {
        let r = results(insider, &SearchQuery::text("膵臓")).await;
        assert_eq!(r.messages.len(), 1, "{}", insider.who());
        assert_eq!(r.files.len(), 2, "{}", insider.who());
        assert_eq!(r.threads.len(), 1);
        assert_eq!(r.threads[0].thread_id, private.id);
        assert_eq!(r.threads[0].count, 3);
    }
    // Everyone else: nothing, not a count, not a thread, with or without naming it.
    for (label, who) in [
        ("the family", &t.family),
        ("a group member outside the 内緒話", &bystander),
        ("a removed member", &removed),
        ("a user of the region outside the group", &outsider),
        ("a user of another region", &other_region),
        ("the region administrator", &admin),
    ] {
        nothing_for(who, label, None).await;
        nothing_for(who, label, Some(private.id)).await;
    }
    // The family and the bystander do search: the main timeline is there for them.
    for who in [&t.family, &bystander] {
        assert_eq!(
            results(who, &SearchQuery::text("通常"))
                .await
                .messages
                .len(),
            1
        );
        // A query matching both threads shows only the main one.
        let r = results(who, &SearchQuery::text("の")).await;
        assert!(r.threads.iter().all(|th| th.thread_id == t.main()), "{r:?}");
        assert!(r.hits.iter().all(|h| h.thread_id == t.main()));
    }
}
