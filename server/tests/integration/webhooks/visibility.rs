//! Apps hear only of what their app account may see at the moment of the event: never
//! a 内緒話, and nothing more of a group once they are removed from it — not even what
//! was queued before.

use tsunagu_protocol::messaging::PostMessage;
use tsunagu_protocol::webhooks::{DeliveryStatus, WebhookEventType};
use tsunagu_testkit::{each_backend, team, Backend};

use super::{
    add_to_group, app_account, spawn_hooks, wait_for_status, webhook, Mode, Receiver, ALL_EVENTS,
};

each_backend!(
    nothing_of_a_private_thread_is_ever_queued_or_delivered,
    an_app_removed_from_the_group_hears_nothing_more_of_it,
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

async fn nothing_of_a_private_thread_is_ever_queued_or_delivered(backend: Backend) {
    let app = spawn_hooks(backend).await;
    let team = team(&app).await;
    let ehr = app_account(&app.admin, "ehr").await;
    add_to_group(&team.nurse.client, team.group.id, &ehr).await;
    let receiver = Receiver::start().await;
    let hook = webhook(&app.admin, &ehr, &receiver.url, ALL_EVENTS).await;

    let secret = team.private_thread().await;
    let nurse = &team.nurse.client;
    let m = nurse
        .post_message(secret.id, &post("ご家族には内緒で"))
        .await
        .unwrap();
    nurse
        .edit_message(secret.id, m.id, "ご家族には内緒で（訂正）")
        .await
        .unwrap();
    nurse
        .upload_reader(
            secret.id,
            "所見.pdf",
            std::io::Cursor::new(b"%PDF-1.4 secret".to_vec()),
            None,
        )
        .await
        .unwrap();
    nurse.delete_message(secret.id, m.id).await.unwrap();
    // A marker in the main timeline: once it arrives, anything queued before it has too.
    let marker = nurse
        .post_message(team.main(), &post("本日の訪問予定"))
        .await
        .unwrap();

    let events = receiver.wait_accepted(&hook.secret, 1).await;
    assert_eq!(events.len(), 1, "only the main timeline's post: {events:?}");
    assert_eq!(events[0].data["message"]["id"], marker.id.to_string());
    let queued: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM webhook_deliveries WHERE thread_id = $1 OR payload LIKE $2",
    )
    .bind(secret.id.to_string())
    .bind("%内緒%")
    .fetch_one(&mut *app.store().conn().await.unwrap())
    .await
    .unwrap();
    assert_eq!(queued, 0, "nothing of the 内緒話 is even in the outbox");
}

async fn an_app_removed_from_the_group_hears_nothing_more_of_it(backend: Backend) {
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
    let nurse = &team.nurse.client;
    for i in 0..3 {
        nurse
            .post_message(team.main(), &post(&format!("退院前 {i}")))
            .await
            .unwrap();
    }
    receiver.wait_hits(1).await;
    nurse
        .remove_member(team.group.id, ehr.user_id)
        .await
        .unwrap();
    nurse
        .post_message(team.main(), &post("退院後"))
        .await
        .unwrap();

    // What was queued while it was a member is not sent any more (an attempt already
    // under way when the removal committed may finish; the receiver still refuses it
    // here) …
    let dead = wait_for_status(&app.admin, &ehr, &hook, DeliveryStatus::Dead, 3).await;
    assert!(
        dead.iter()
            .all(|d| d.last_error.as_deref() == Some("no_longer_visible")),
        "{dead:?}"
    );
    // … and nothing new is queued.
    let all = app
        .admin
        .webhook_deliveries(ehr.client_id, hook.id, None, None, None)
        .await
        .unwrap()
        .deliveries;
    assert_eq!(all.len(), 3);
    assert!(receiver.accepted(&hook.secret).is_empty());
}
