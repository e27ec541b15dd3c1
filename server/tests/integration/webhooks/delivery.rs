//! Delivery: every event once per attempt, signed; order kept across an outage; dead
//! letters and redelivery; nothing lost across `kill -9`; a receiver that never answers
//! delays neither posting nor other webhooks.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tsunagu_client::Client;
use tsunagu_protocol::accounts::{CreateUser, Profession, UserRole};
use tsunagu_protocol::messaging::{AddMember, CreateGroup, GroupKind, PostMessage};
use tsunagu_protocol::webhooks::{DeliveryStatus, WebhookEventType, TEST_EVENT_TYPE};
use tsunagu_testkit::{
    each_backend, person, spawn_app_with, team, test_config, Backend, PgDatabase, ServerProcess,
    TestApp, ADMIN_PASSWORD,
};

use super::{
    add_to_group, allow_loopback, app_account, spawn_hooks, wait_for_status, webhook, Mode,
    Receiver, ALL_EVENTS,
};
use crate::SERVER_BIN;

each_backend!(
    each_event_arrives_once_and_signed,
    a_receiver_down_for_a_while_gets_everything_later_in_order,
    dead_deliveries_are_listed_and_can_be_redelivered,
    deliveries_survive_kill_9_between_commit_and_delivery,
    a_receiver_that_never_answers_delays_neither_posting_nor_other_webhooks,
);

fn post(body: &str) -> PostMessage {
    PostMessage {
        body: body.into(),
        client_msg_id: uuid::Uuid::new_v4().to_string(),
        reply_to: None,
        mentions: vec![],
        attachments: vec![],
    }
}

async fn each_event_arrives_once_and_signed(backend: Backend) {
    let app = spawn_hooks(backend).await;
    let team = team(&app).await;
    let ehr = app_account(&app.admin, "ehr").await;
    add_to_group(&team.nurse.client, team.group.id, &ehr).await;
    let receiver = Receiver::start().await;
    let hook = webhook(&app.admin, &ehr, &receiver.url, ALL_EVENTS).await;

    let nurse = &team.nurse.client;
    let posted = nurse
        .post_message(team.main(), &post("本日訪問しました"))
        .await
        .unwrap();
    nurse
        .edit_message(team.main(), posted.id, "本日訪問しました（追記）")
        .await
        .unwrap();
    nurse.delete_message(team.main(), posted.id).await.unwrap();
    let file = nurse
        .upload_reader(
            team.main(),
            "報告書.pdf",
            std::io::Cursor::new(b"%PDF-1.4 report".to_vec()),
            None,
        )
        .await
        .unwrap();
    let pharmacist = person(&app, "ph.ito", "伊藤 薬剤師", Profession::Pharmacist).await;
    nurse
        .add_member(
            team.group.id,
            &AddMember {
                user_id: pharmacist.id(),
                role: None,
                patient_side: None,
            },
        )
        .await
        .unwrap();
    nurse
        .remove_member(team.group.id, pharmacist.id())
        .await
        .unwrap();
    nurse.archive_group(team.group.id).await.unwrap();

    let events = receiver.wait_accepted(&hook.secret, 7).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "message.created",
            "message.edited",
            "message.deleted",
            "file.uploaded",
            "member.added",
            "member.removed",
            "group.archived"
        ],
        "each event once, in the order of the changes"
    );
    let ids: BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 7, "every event has its own id");
    let region = app.admin.me().await.unwrap().user.region_id.to_string();
    assert!(events.iter().all(|e| e.region_id == region));
    assert_eq!(events[0].data["message"]["id"], posted.id.to_string());
    assert_eq!(events[0].data["message"]["body"], "本日訪問しました");
    assert_eq!(
        events[1].data["message"]["body"],
        "本日訪問しました（追記）"
    );
    assert_eq!(events[2].data["message"]["deleted"], true);
    assert_eq!(events[2].data["message"]["body"], "");
    assert_eq!(events[3].data["file"]["id"], file.id);
    assert_eq!(events[3].data["file"]["name"], "報告書.pdf");
    assert_eq!(
        events[4].data["member"]["user_id"],
        pharmacist.id().to_string()
    );
    assert_eq!(
        events[5].data["member"]["user_id"],
        pharmacist.id().to_string()
    );
    assert_eq!(events[6].data["group_id"], team.group.id.to_string());
    assert!(
        events[6].data.get("patient").is_none(),
        "no patient profile is pushed"
    );
    // Once per attempt: nothing was retried, so nothing arrived twice.
    assert_eq!(receiver.hits().len(), 7);

    let delivered = app
        .admin
        .webhook_deliveries(
            ehr.client_id,
            hook.id,
            Some(DeliveryStatus::Delivered),
            None,
            None,
        )
        .await
        .unwrap()
        .deliveries;
    assert_eq!(delivered.len(), 7);
    assert!(delivered.iter().all(|d| d.attempts == 1
        && d.last_status == Some(204)
        && d.latency_ms.is_some()
        && d.delivered_at.is_some()));
    assert!(
        delivered.windows(2).all(|w| w[0].seq > w[1].seq),
        "newest first"
    );
}

async fn a_receiver_down_for_a_while_gets_everything_later_in_order(backend: Backend) {
    let app = spawn_hooks(backend).await;
    let team = team(&app).await;
    let ehr = app_account(&app.admin, "ehr").await;
    add_to_group(&team.nurse.client, team.group.id, &ehr).await;
    let receiver = Receiver::start().await;
    receiver.set(Mode::Fail);
    let hook = webhook(
        &app.admin,
        &ehr,
        &receiver.url,
        &[WebhookEventType::MessageCreated],
    )
    .await;

    let mut seqs = Vec::new();
    for i in 0..20 {
        let m = team
            .nurse
            .client
            .post_message(team.main(), &post(&format!("経過 {i}")))
            .await
            .unwrap();
        seqs.push(m.seq);
    }
    // Several failed attempts (of the head only: one in flight per webhook) …
    let failed = receiver.wait_hits(3).await;
    assert!(failed.iter().all(|h| !h.accepted));
    let first_id = failed[0].headers["webhook-id"].clone();
    assert!(
        failed.iter().all(|h| h.headers["webhook-id"] == first_id),
        "while the head fails, nothing behind it is sent"
    );
    // … then the receiver comes back and gets all of them, in order.
    receiver.set(Mode::Ok);
    let events = receiver.wait_accepted(&hook.secret, 20).await;
    let got: Vec<i64> = events
        .iter()
        .map(|e| e.data["message"]["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(got, seqs, "delivered once each, in the order posted");
    let pending = app
        .admin
        .webhook_deliveries(
            ehr.client_id,
            hook.id,
            Some(DeliveryStatus::Pending),
            None,
            None,
        )
        .await
        .unwrap();
    assert!(pending.deliveries.is_empty());
    let first = app
        .admin
        .webhook_deliveries(ehr.client_id, hook.id, None, None, Some(200))
        .await
        .unwrap()
        .deliveries
        .pop()
        .unwrap();
    assert!(first.attempts >= 3, "the head was retried: {first:?}");
    assert_eq!(first.status, DeliveryStatus::Delivered);
}

async fn dead_deliveries_are_listed_and_can_be_redelivered(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        allow_loopback(c);
        // Dead at the first failure.
        c.webhooks.max_age_secs = 0;
    })
    .await;
    let team = team(&app).await;
    let ehr = app_account(&app.admin, "ehr").await;
    add_to_group(&team.nurse.client, team.group.id, &ehr).await;
    let receiver = Receiver::start().await;
    receiver.set(Mode::Fail);
    let hook = webhook(
        &app.admin,
        &ehr,
        &receiver.url,
        &[WebhookEventType::MessageCreated],
    )
    .await;
    let posted = team
        .nurse
        .client
        .post_message(team.main(), &post("退院サマリ"))
        .await
        .unwrap();

    let dead = wait_for_status(&app.admin, &ehr, &hook, DeliveryStatus::Dead, 1).await;
    let dead = &dead[0];
    assert_eq!(dead.event_type, "message.created");
    assert_eq!(dead.last_status, Some(503));
    assert!(
        dead.last_error.as_deref().unwrap().contains("503"),
        "{dead:?}"
    );
    assert!(dead.attempts >= 1);
    let before = receiver.hits().len();

    receiver.set(Mode::Ok);
    let again = app
        .admin
        .redeliver(ehr.client_id, hook.id, dead.id)
        .await
        .unwrap();
    assert_eq!(again.redelivery_of, Some(dead.id));
    assert_eq!(
        again.event_id, dead.event_id,
        "the same webhook-id: receivers deduplicate"
    );
    let events = receiver.wait_accepted(&hook.secret, 1).await;
    assert_eq!(events[0].id, dead.event_id);
    assert_eq!(events[0].data["message"]["id"], posted.id.to_string());
    assert!(receiver.hits().len() > before);
    // A pending delivery cannot be redelivered (it is being tried); the dead one stays
    // in the dead-letter list, the new one is delivered.
    let delivered = wait_for_status(&app.admin, &ehr, &hook, DeliveryStatus::Delivered, 1).await;
    assert_eq!(delivered[0].id, again.id);

    // The test event goes to the same receiver, whatever the subscription.
    let test = app
        .admin
        .test_webhook(ehr.client_id, hook.id)
        .await
        .unwrap();
    assert_eq!(test.event_type, TEST_EVENT_TYPE);
    let events = receiver.wait_accepted(&hook.secret, 2).await;
    assert_eq!(events[1].event_type, TEST_EVENT_TYPE);
    assert_eq!(events[1].data["webhook_id"], hook.id.to_string());

    let actions = app.audit_actions().await;
    for a in ["webhook_created", "webhook_redelivered", "webhook_tested"] {
        assert!(actions.iter().any(|x| x == a), "{a} audited: {actions:?}");
    }
}

async fn deliveries_survive_kill_9_between_commit_and_delivery(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    allow_loopback(&mut config);
    let _pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let db = PgDatabase::create("tsunagu_hooks_kill").await;
            config.database_url = Some(db.url.clone());
            Some(db)
        }
    };
    let mut server = ServerProcess::start(SERVER_BIN, &config, None, &[]).await;
    let admin = Client::new(&server.base).unwrap();
    admin.login("admin", ADMIN_PASSWORD, None).await.unwrap();
    admin
        .create_user(&CreateUser {
            login: "kill.nurse".into(),
            display_name: "看護師".into(),
            display_name_kana: None,
            password: "a long enough password".into(),
            profession: Profession::Nurse,
            organization_id: None,
            role: Some(UserRole::User),
            must_change_password: Some(false),
        })
        .await
        .unwrap();
    let nurse = Client::new(&server.base).unwrap();
    nurse
        .login("kill.nurse", "a long enough password", None)
        .await
        .unwrap();
    let group = nurse
        .create_group(&CreateGroup {
            kind: GroupKind::Free,
            name: "連絡".into(),
            description: None,
            patient: None,
        })
        .await
        .unwrap();
    let ehr = app_account(&admin, "ehr").await;
    add_to_group(&nurse, group.id, &ehr).await;
    let receiver = Receiver::start().await;
    receiver.set(Mode::Fail);
    let hook = webhook(
        &admin,
        &ehr,
        &receiver.url,
        &[WebhookEventType::MessageCreated],
    )
    .await;

    let mut posted = BTreeSet::new();
    for i in 0..5 {
        let m = nurse
            .post_message(group.main_thread_id, &post(&format!("kill {i}")))
            .await
            .unwrap();
        posted.insert(m.id.to_string());
    }
    // Committed and queued, the first being tried: the server dies.
    receiver.wait_hits(1).await;
    server.kill9();
    receiver.set(Mode::Ok);

    let server = ServerProcess::start(SERVER_BIN, &config, None, &[]).await;
    let events = receiver.wait_accepted(&hook.secret, 5).await;
    let got: BTreeSet<String> = events
        .iter()
        .map(|e| e.data["message"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        got, posted,
        "every committed event delivered after the restart"
    );
    // At least once: a retry may repeat one, and the receiver deduplicates by id.
    let distinct: BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(distinct.len(), 5);
    drop(server);
}

async fn a_receiver_that_never_answers_delays_neither_posting_nor_other_webhooks(backend: Backend) {
    let app: TestApp = spawn_hooks(backend).await;
    let team = team(&app).await;
    let slow_app = app_account(&app.admin, "slow").await;
    let fine_app = app_account(&app.admin, "fine").await;
    add_to_group(&team.nurse.client, team.group.id, &slow_app).await;
    add_to_group(&team.nurse.client, team.group.id, &fine_app).await;
    let stuck = Receiver::start().await;
    stuck.set(Mode::Hang);
    let fine = Receiver::start().await;
    webhook(
        &app.admin,
        &slow_app,
        &stuck.url,
        &[WebhookEventType::MessageCreated],
    )
    .await;
    let fine_hook = webhook(
        &app.admin,
        &fine_app,
        &fine.url,
        &[WebhookEventType::MessageCreated],
    )
    .await;

    let mut latencies = Vec::new();
    for i in 0..30 {
        let started = Instant::now();
        team.nurse
            .client
            .post_message(team.main(), &post(&format!("stuck {i}")))
            .await
            .unwrap();
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "post latency while a receiver never answers ({backend:?}): p50 {:?}, p90 {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 9 / 10],
        latencies[latencies.len() - 1]
    );
    let events = fine.wait_accepted(&fine_hook.secret, 30).await;
    assert_eq!(
        events.len(),
        30,
        "the other webhook got everything meanwhile"
    );
    assert!(
        stuck.hits().is_empty(),
        "the stuck receiver never completed a request"
    );
    let _ = Duration::ZERO;
}
