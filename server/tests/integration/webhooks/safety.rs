//! Outbound safety: `https` only and no internal addresses unless the operator allows
//! them, checked when a URL is saved and again at every attempt; redirects never
//! followed.

use tsunagu_client::Error;
use tsunagu_protocol::webhooks::{CreateWebhook, DeliveryStatus, UpdateWebhook, WebhookEventType};
use tsunagu_protocol::ErrorCode;
use tsunagu_testkit::{each_backend, spawn_app_with, Backend};

use super::{
    add_to_group, allow_loopback, app_account, quick_retries, wait_for_status, webhook, Mode,
    Receiver,
};

each_backend!(
    http_and_internal_addresses_are_refused_unless_allowed,
    an_address_allowed_when_saved_is_checked_again_at_delivery,
    redirects_are_not_followed,
);

fn refused(result: Result<impl std::fmt::Debug, Error>) {
    match result {
        Err(Error::Api { status, body }) => {
            assert_eq!(status.as_u16(), 400);
            assert_eq!(body.error.code, ErrorCode::WebhookUrlNotAllowed, "{body:?}");
        }
        other => panic!("expected webhook_url_not_allowed, got {other:?}"),
    }
}

async fn http_and_internal_addresses_are_refused_unless_allowed(backend: Backend) {
    // The defaults: https only, no internal addresses.
    let app = spawn_app_with(backend, quick_retries).await;
    let ehr = app_account(&app.admin, "ehr").await;
    let create = |url: &str| CreateWebhook {
        url: url.to_owned(),
        events: vec![WebhookEventType::MessageCreated],
    };
    for url in [
        "http://ehr.example.jp/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.8/hook",
        "https://192.168.1.20/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hook",
        "https://[::1]/hook",
        "https://[fd00:ec2::254]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://localhost/hook",
        "https://api.localhost/hook",
        "https://0x7f000001/hook",
        "https://user:password@ehr.example.jp/hook",
        "ftp://ehr.example.jp/hook",
    ] {
        refused(app.admin.create_webhook(ehr.client_id, &create(url)).await);
    }
    // A public https URL is accepted (its name is checked when it is resolved).
    let ok = app
        .admin
        .create_webhook(ehr.client_id, &create("https://ehr.example.jp/hook"))
        .await
        .unwrap();
    // Changing it to an internal one is refused the same way, and nothing changes.
    refused(
        app.admin
            .update_webhook(
                ehr.client_id,
                ok.id,
                &UpdateWebhook {
                    url: Some("https://127.0.0.1:8080/".into()),
                    ..Default::default()
                },
            )
            .await,
    );
    let kept = app.admin.get_webhook(ehr.client_id, ok.id).await.unwrap();
    assert_eq!(kept.url, "https://ehr.example.jp/hook");
}

async fn an_address_allowed_when_saved_is_checked_again_at_delivery(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        allow_loopback(c);
        c.webhooks.max_age_secs = 0;
    })
    .await;
    let team = tsunagu_testkit::team(&app).await;
    let ehr = app_account(&app.admin, "ehr").await;
    add_to_group(&team.nurse.client, team.group.id, &ehr).await;
    let receiver = Receiver::start().await;
    let hook = webhook(
        &app.admin,
        &ehr,
        &receiver.url,
        &[WebhookEventType::MessageCreated],
    )
    .await;
    // The operator turns internal addresses off: the saved loopback URL is refused at
    // its next attempt, and nothing reaches the receiver.
    let mut app = app;
    app.config.webhooks.allow_private_addresses = false;
    let app = app.restart().await;
    let post = tsunagu_protocol::messaging::PostMessage {
        body: "内部宛".into(),
        client_msg_id: "loopback-1".into(),
        reply_to: None,
        mentions: vec![],
        attachments: vec![],
    };
    // The restarted server listens elsewhere: sign in again.
    let nurse = app.client();
    nurse
        .login(team.nurse.who(), tsunagu_testkit::USER_PASSWORD, None)
        .await
        .unwrap();
    nurse.post_message(team.main(), &post).await.unwrap();
    let dead = wait_for_status(&app.admin, &ehr, &hook, DeliveryStatus::Dead, 1).await;
    assert_eq!(dead[0].last_error.as_deref(), Some("address_not_allowed"));
    assert!(receiver.hits().is_empty());
}

async fn redirects_are_not_followed(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        allow_loopback(c);
        c.webhooks.max_age_secs = 0;
    })
    .await;
    let team = tsunagu_testkit::team(&app).await;
    let ehr = app_account(&app.admin, "ehr").await;
    add_to_group(&team.nurse.client, team.group.id, &ehr).await;
    let receiver = Receiver::start().await;
    receiver.set(Mode::Redirect);
    let hook = webhook(
        &app.admin,
        &ehr,
        &receiver.url,
        &[WebhookEventType::MessageCreated],
    )
    .await;
    team.nurse
        .client
        .post_message(
            team.main(),
            &tsunagu_protocol::messaging::PostMessage {
                body: "転送先へ".into(),
                client_msg_id: "redirect-1".into(),
                reply_to: None,
                mentions: vec![],
                attachments: vec![],
            },
        )
        .await
        .unwrap();
    let dead = wait_for_status(&app.admin, &ehr, &hook, DeliveryStatus::Dead, 1).await;
    assert_eq!(dead[0].last_status, Some(307));
    assert!(dead[0]
        .last_error
        .as_deref()
        .unwrap()
        .starts_with("redirect_not_followed"));
    let hits = receiver.hits();
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|h| h.path == "/hook"),
        "the redirect target was never called"
    );
}
