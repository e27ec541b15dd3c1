//! Who manages webhooks: region administrators of the API client's region only
//! (another region's client is 404, a member without the role 403), every change
//! audited; the secret is shown once and stored wrapped, never in clear.

use base64::Engine;
use tsunagu_client::Error;
use tsunagu_protocol::accounts::Profession;
use tsunagu_protocol::ids::WebhookId;
use tsunagu_protocol::webhooks::{CreateWebhook, UpdateWebhook, WebhookEventType};
use tsunagu_testkit::{each_backend, person, Backend};

use super::{add_to_group, app_account, spawn_hooks, webhook, Receiver};

each_backend!(
    only_admins_of_the_clients_region_manage_its_webhooks,
    webhooks_are_created_listed_changed_and_deleted_with_audit,
    a_secret_survives_key_rotation_and_the_old_keks_removal,
);

fn status(result: Result<impl std::fmt::Debug, Error>) -> u16 {
    match result {
        Err(Error::Api { status, .. }) => status.as_u16(),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn create() -> CreateWebhook {
    CreateWebhook {
        url: "https://ehr.example.jp/hook".into(),
        events: vec![WebhookEventType::MessageCreated],
    }
}

async fn only_admins_of_the_clients_region_manage_its_webhooks(backend: Backend) {
    let app = spawn_hooks(backend).await;
    let ehr = app_account(&app.admin, "ehr").await;
    let hook = app
        .admin
        .create_webhook(ehr.client_id, &create())
        .await
        .unwrap();

    let nurse = person(&app, "nurse.sato", "佐藤 看護師", Profession::Nurse).await;
    assert_eq!(status(nurse.client.list_webhooks(ehr.client_id).await), 403);
    assert_eq!(
        status(nurse.client.create_webhook(ehr.client_id, &create()).await),
        403
    );
    assert_eq!(
        status(nurse.client.test_webhook(ehr.client_id, hook.id).await),
        403
    );

    // The app itself, with its own token, manages nothing.
    let as_app = tsunagu_client::Client::app(
        &app.base,
        tsunagu_client::apps::AppCredentials::secret(
            ehr.oauth_client_id.clone(),
            ehr.oauth_secret.clone(),
        ),
    )
    .unwrap();
    assert_eq!(status(as_app.list_webhooks(ehr.client_id).await), 403);
    assert_eq!(
        status(as_app.create_webhook(ehr.client_id, &create()).await),
        403
    );
    assert_eq!(
        status(as_app.delete_webhook(ehr.client_id, hook.id).await),
        403
    );

    let other = app.other_region("kawagoe").await;
    assert_eq!(status(other.list_webhooks(ehr.client_id).await), 404);
    assert_eq!(
        status(other.create_webhook(ehr.client_id, &create()).await),
        404
    );
    assert_eq!(status(other.get_webhook(ehr.client_id, hook.id).await), 404);
    assert_eq!(
        status(other.delete_webhook(ehr.client_id, hook.id).await),
        404
    );
    assert_eq!(
        status(
            other
                .webhook_deliveries(ehr.client_id, hook.id, None, None, None)
                .await
        ),
        404
    );
    // Unknown ids are the same 404; a webhook under another client is not found either.
    let other_client = app_account(&app.admin, "pharmacy").await;
    assert_eq!(
        status(app.admin.get_webhook(other_client.client_id, hook.id).await),
        404
    );
    assert_eq!(
        status(app.admin.get_webhook(ehr.client_id, WebhookId::new()).await),
        404
    );
    assert_eq!(
        status(
            app.admin
                .list_webhooks(tsunagu_protocol::ids::ApiClientId::new())
                .await
        ),
        404
    );
    // Still there, unchanged.
    assert_eq!(
        app.admin
            .list_webhooks(ehr.client_id)
            .await
            .unwrap()
            .webhooks
            .len(),
        1
    );
}

async fn webhooks_are_created_listed_changed_and_deleted_with_audit(backend: Backend) {
    let app = spawn_hooks(backend).await;
    let ehr = app_account(&app.admin, "ehr").await;
    let created = app
        .admin
        .create_webhook(ehr.client_id, &create())
        .await
        .unwrap();
    let key = created
        .secret
        .strip_prefix("whsec_")
        .expect("whsec_ prefix");
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap();
    assert_eq!(key.len(), 32);
    let stored: (String, String) =
        sqlx::query_as("SELECT secret_wrapped, secret_kek_id FROM webhooks WHERE id = $1")
            .bind(created.id.to_string())
            .fetch_one(&mut *app.store().conn().await.unwrap())
            .await
            .unwrap();
    let wrapped = base64::engine::general_purpose::STANDARD
        .decode(&stored.0)
        .unwrap();
    assert!(
        !wrapped.windows(key.len()).any(|w| w == key.as_slice()),
        "stored wrapped"
    );
    assert!(!stored.0.contains(&created.secret[6..]));

    let list = app.admin.list_webhooks(ehr.client_id).await.unwrap();
    assert_eq!(list.webhooks.len(), 1);
    let listed = serde_json::to_value(&list).unwrap();
    assert!(
        !listed.to_string().contains(&created.secret),
        "the secret is shown once"
    );

    let changed = app
        .admin
        .update_webhook(
            ehr.client_id,
            created.id,
            &UpdateWebhook {
                events: Some(vec![
                    WebhookEventType::FileUploaded,
                    WebhookEventType::MessageCreated,
                    WebhookEventType::FileUploaded,
                ]),
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!changed.active);
    assert_eq!(
        changed.events,
        [
            WebhookEventType::FileUploaded,
            WebhookEventType::MessageCreated
        ]
    );
    // Bad input is refused and changes nothing.
    let empty = UpdateWebhook {
        events: Some(vec![]),
        ..Default::default()
    };
    assert_eq!(
        status(
            app.admin
                .update_webhook(ehr.client_id, created.id, &empty)
                .await
        ),
        400
    );
    let bad = serde_json::json!({"url": "https://ehr.example.jp/", "events": ["message.read"]});
    let answer = app
        .http
        .post(app.url(&format!(
            "/api/v1/admin/api-clients/{}/webhooks",
            ehr.client_id
        )))
        .bearer_auth(app.admin.tokens().unwrap().access_token)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);

    app.admin
        .delete_webhook(ehr.client_id, created.id)
        .await
        .unwrap();
    assert_eq!(
        status(app.admin.get_webhook(ehr.client_id, created.id).await),
        404
    );
    let actions = app.audit_actions().await;
    for a in ["webhook_created", "webhook_updated", "webhook_deleted"] {
        assert_eq!(
            actions.iter().filter(|x| *x == a).count(),
            1,
            "{a}: {actions:?}"
        );
    }
}

async fn a_secret_survives_key_rotation_and_the_old_keks_removal(backend: Backend) {
    let app = spawn_hooks(backend).await;
    let ehr = app_account(&app.admin, "ehr").await;
    let receiver = Receiver::start().await;
    let hook = webhook(
        &app.admin,
        &ehr,
        &receiver.url,
        &[WebhookEventType::MessageCreated],
    )
    .await;
    let kek_of = |app: &tsunagu_testkit::TestApp| {
        let store = app.store().clone();
        let id = hook.id.to_string();
        async move {
            sqlx::query_scalar::<_, String>("SELECT secret_kek_id FROM webhooks WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *store.conn().await.unwrap())
                .await
                .unwrap()
        }
    };
    let old = kek_of(&app).await;
    let kek_dir = app.config.kek_dir();
    let new = tsunagu_server::blob::keys::generate_kek(&kek_dir).unwrap();
    let app = app.restart().await;
    let rewrapped = app.domain.maintenance().rotate_keys().await.unwrap();
    assert_eq!(rewrapped, 1, "the webhook secret is re-wrapped");
    assert_eq!(kek_of(&app).await, new);
    std::fs::remove_file(kek_dir.join(format!("{old}.kek"))).unwrap();
    let app = app.restart().await;

    // Signed with the same secret the admin was shown before the rotation.
    let nurse = person(&app, "nurse.sato", "佐藤 看護師", Profession::Nurse).await;
    let group = tsunagu_testkit::patient_group(&nurse.client, "山田 太郎 様").await;
    add_to_group(&nurse.client, group.id, &ehr).await;
    let posted = nurse
        .client
        .post_message(
            group.main_thread_id,
            &tsunagu_protocol::messaging::PostMessage {
                body: "鍵の更新後".into(),
                client_msg_id: "after-rotation".into(),
                reply_to: None,
                mentions: vec![],
                attachments: vec![],
            },
        )
        .await
        .unwrap();
    let events = receiver.wait_accepted(&hook.secret, 1).await;
    assert_eq!(events[0].data["message"]["id"], posted.id.to_string());
}
