//! Webhooks of API clients: what region administrators manage
//! (`/admin/api-clients/{id}/webhooks…`), the outbox every change writes into
//! (`enqueue`), and the worker that delivers it (`deliver`).
//!
//! Only administrators of the client's region reach a webhook; another region's client
//! is "not found". Every change is audited in its own transaction. A webhook's signing
//! secret is 32 random bytes shown once as `whsec_<base64>` and stored wrapped by the
//! current KEK (bound to the webhook id), like a file's data key.

pub mod deliver;
mod enqueue;

use std::sync::Arc;

use serde_json::json;
use tsunagu_protocol::ids::{ApiClientId, WebhookDeliveryId, WebhookId};
use tsunagu_protocol::webhooks::{
    CreateWebhook, CreatedWebhook, DeliveryStatus, UpdateWebhook, Webhook, WebhookDelivery,
    WebhookDeliveryList, WebhookEventType, TEST_EVENT_TYPE,
};
use uuid::Uuid;

pub use enqueue::{enqueue, Event};

use super::access::RegionAdmin;
use super::convert;
use super::error::{DomainError, Result};
use super::files::FileServices;
use super::shared::Shared;
use crate::audit::{self, Action, Event as AuditEvent, Outcome, RequestMeta};
use crate::clock::{now_ms, rfc3339};
use crate::store::webhooks::{self as store, ClientRow, DeliveryRow, NewDelivery, WebhookRow};
use crate::store::{flag, Conn};
use crate::webhooks::{sign, OutboundRules};

/// Largest page of deliveries.
pub const MAX_DELIVERY_PAGE: i64 = 200;
const DEFAULT_DELIVERY_PAGE: i64 = 50;
/// Webhooks one API client may have.
const MAX_WEBHOOKS_PER_CLIENT: usize = 10;

/// The associated data a webhook's wrapped secret is bound to (never a file id).
pub(crate) fn secret_aad(webhook_id: &str) -> String {
    format!("webhook:{webhook_id}")
}

/// Webhook administration.
#[derive(Clone)]
pub struct Webhooks {
    shared: Shared,
    files: Arc<FileServices>,
    rules: OutboundRules,
    /// The worker runs while this lives (it holds a weak reference): dropping the
    /// domain ends it, as it ends the post committers.
    alive: Arc<()>,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryQuery {
    pub status: Option<DeliveryStatus>,
    pub before_seq: Option<i64>,
    pub limit: Option<i64>,
}

impl Webhooks {
    pub(super) fn new(shared: Shared, files: Arc<FileServices>, rules: OutboundRules) -> Self {
        Webhooks {
            shared,
            files,
            rules,
            alive: Arc::new(()),
        }
    }

    pub(super) fn spawn_worker(
        &self,
        outbound: crate::webhooks::Outbound,
        settings: deliver::WorkerSettings,
    ) -> tokio::task::JoinHandle<()> {
        deliver::spawn(
            Arc::downgrade(&self.alive),
            self.shared.store().clone(),
            self.files.clone(),
            outbound,
            settings,
        )
    }

    fn check_url(&self, url: &str) -> Result<String> {
        self.rules
            .check_url(url)
            .map_err(|e| DomainError::WebhookUrl(e.to_string()))?;
        // Stored as given (the check parsed it): the receiver sees the URL it asked for.
        Ok(url.to_owned())
    }

    pub async fn create(
        &self,
        admin: &RegionAdmin,
        client_id: ApiClientId,
        req: CreateWebhook,
        meta: &RequestMeta,
    ) -> Result<CreatedWebhook> {
        let url = self.check_url(&req.url)?;
        let events = event_list(&req.events)?;
        let mut tx = self.shared.store().begin().await?;
        let client = own_client(&mut tx, admin, client_id).await?;
        if store::list_for_client(&mut tx, &client.id).await?.len() >= MAX_WEBHOOKS_PER_CLIENT {
            return Err(DomainError::Conflict(format!(
                "an API client has at most {MAX_WEBHOOKS_PER_CLIENT} webhooks"
            )));
        }
        let id = WebhookId::new().to_string();
        let key = sign::new_key();
        let (kek_id, wrapped) = self.files.keys.wrap(&secret_aad(&id), &key);
        let now = now_ms();
        let row = WebhookRow {
            id: id.clone(),
            api_client_id: client.id.clone(),
            region_id: client.region_id.clone(),
            url,
            events,
            secret_wrapped: wrapped,
            secret_kek_id: kek_id,
            active: 1,
            created_by: admin.session().user_id().to_string(),
            created_at: now,
            updated_at: now,
        };
        // Audited first: the audit head is always locked before any webhook row.
        audit::append(
            &mut tx,
            meta,
            AuditEvent::new(
                Action::WebhookCreated,
                Outcome::Success,
                &admin.session().actor(),
            )
            .target("webhook", id.clone())
            .detail(json!({ "api_client_id": client.id, "events": row.events })),
        )
        .await?;
        store::insert(&mut tx, &row).await?;
        tx.commit().await?;
        let w = wire_webhook(&row)?;
        Ok(CreatedWebhook {
            id: w.id,
            secret: sign::secret_text(key.as_ref()),
            api_client_id: w.api_client_id,
            url: w.url,
            events: w.events,
            active: w.active,
            created_at: w.created_at,
            updated_at: w.updated_at,
        })
    }

    pub async fn list(&self, admin: &RegionAdmin, client_id: ApiClientId) -> Result<Vec<Webhook>> {
        let mut conn = self.shared.store().conn().await?;
        let client = own_client(&mut conn, admin, client_id).await?;
        store::list_for_client(&mut conn, &client.id)
            .await?
            .iter()
            .map(wire_webhook)
            .collect()
    }

    pub async fn get(
        &self,
        admin: &RegionAdmin,
        client_id: ApiClientId,
        id: WebhookId,
    ) -> Result<Webhook> {
        let mut conn = self.shared.store().conn().await?;
        wire_webhook(&own_webhook(&mut conn, admin, client_id, id).await?)
    }

    pub async fn update(
        &self,
        admin: &RegionAdmin,
        client_id: ApiClientId,
        id: WebhookId,
        req: UpdateWebhook,
        meta: &RequestMeta,
    ) -> Result<Webhook> {
        let url = req.url.as_deref().map(|u| self.check_url(u)).transpose()?;
        let events = req.events.as_deref().map(event_list).transpose()?;
        let mut tx = self.shared.store().begin().await?;
        let mut row = own_webhook(&mut tx, admin, client_id, id).await?;
        let mut changed = Vec::new();
        if let Some(url) = url {
            row.url = url;
            changed.push("url");
        }
        if let Some(events) = events {
            row.events = events;
            changed.push("events");
        }
        if let Some(active) = req.active {
            row.active = flag(active);
            changed.push("active");
        }
        row.updated_at = now_ms();
        audit::append(
            &mut tx,
            meta,
            AuditEvent::new(
                Action::WebhookUpdated,
                Outcome::Success,
                &admin.session().actor(),
            )
            .target("webhook", row.id.clone())
            .detail(json!({ "fields": changed, "active": row.active == 1 })),
        )
        .await?;
        if !store::update(&mut tx, &row).await? {
            return Err(DomainError::NotFound("webhook"));
        }
        tx.commit().await?;
        wire_webhook(&row)
    }

    /// Deletes a webhook and its queue (what was not delivered is not sent).
    pub async fn delete(
        &self,
        admin: &RegionAdmin,
        client_id: ApiClientId,
        id: WebhookId,
        meta: &RequestMeta,
    ) -> Result<()> {
        let mut tx = self.shared.store().begin().await?;
        let row = own_webhook(&mut tx, admin, client_id, id).await?;
        audit::append(
            &mut tx,
            meta,
            AuditEvent::new(
                Action::WebhookDeleted,
                Outcome::Success,
                &admin.session().actor(),
            )
            .target("webhook", row.id.clone())
            .detail(json!({ "api_client_id": row.api_client_id })),
        )
        .await?;
        if !store::delete(&mut tx, &row.id).await? {
            return Err(DomainError::NotFound("webhook"));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Queues a `webhook.test` event (whatever the webhook subscribes to) behind what
    /// is already queued; its delivery shows in the list like any other.
    pub async fn test(
        &self,
        admin: &RegionAdmin,
        client_id: ApiClientId,
        id: WebhookId,
        meta: &RequestMeta,
    ) -> Result<WebhookDelivery> {
        let mut tx = self.shared.store().begin().await?;
        let row = own_webhook(&mut tx, admin, client_id, id).await?;
        let event_id = Uuid::now_v7().to_string();
        let now = now_ms();
        let payload = enqueue::body(
            &event_id,
            TEST_EVENT_TYPE,
            now,
            &row.region_id,
            &json!({ "webhook_id": row.id }),
        );
        let delivery = NewDelivery {
            id: WebhookDeliveryId::new().to_string(),
            webhook_id: row.id.clone(),
            seq: 0,
            event_id,
            event_type: TEST_EVENT_TYPE.to_owned(),
            thread_id: None,
            payload,
            redelivery_of: None,
            created_at: now,
        };
        self.queue_alone(tx, Action::WebhookTested, admin, meta, delivery)
            .await
    }

    /// Queues a delivery again (a dead one, usually) at the end of the webhook's queue,
    /// with the same event id and body, and a fresh retry period.
    pub async fn redeliver(
        &self,
        admin: &RegionAdmin,
        client_id: ApiClientId,
        id: WebhookId,
        delivery_id: WebhookDeliveryId,
        meta: &RequestMeta,
    ) -> Result<WebhookDelivery> {
        let mut tx = self.shared.store().begin().await?;
        let row = own_webhook(&mut tx, admin, client_id, id).await?;
        let original = store::get_delivery(&mut tx, &row.id, &delivery_id.to_string())
            .await?
            .ok_or(DomainError::NotFound("delivery"))?;
        if original.status == DeliveryStatus::Pending.as_str() {
            return Err(DomainError::Conflict(
                "the delivery is still pending: it is being tried".into(),
            ));
        }
        let delivery = NewDelivery {
            id: WebhookDeliveryId::new().to_string(),
            webhook_id: row.id.clone(),
            seq: 0,
            event_id: original.event_id.clone(),
            event_type: original.event_type.clone(),
            thread_id: original.thread_id.clone(),
            payload: original.payload.clone(),
            redelivery_of: Some(original.id.clone()),
            created_at: now_ms(),
        };
        self.queue_alone(tx, Action::WebhookRedelivered, admin, meta, delivery)
            .await
    }

    /// Audits, then appends one delivery to a webhook's queue, and commits.
    async fn queue_alone(
        &self,
        mut tx: crate::store::Tx,
        action: Action,
        admin: &RegionAdmin,
        meta: &RequestMeta,
        mut delivery: NewDelivery,
    ) -> Result<WebhookDelivery> {
        audit::append(
            &mut tx,
            meta,
            AuditEvent::new(action, Outcome::Success, &admin.session().actor())
                .target("webhook", delivery.webhook_id.clone())
                .detail(json!({
                    "delivery_id": delivery.id,
                    "redelivery_of": delivery.redelivery_of,
                })),
        )
        .await?;
        delivery.seq = store::take_seqs(&mut tx, &delivery.webhook_id, 1).await?;
        store::insert_deliveries(&mut tx, std::slice::from_ref(&delivery)).await?;
        let stored = store::get_delivery(&mut tx, &delivery.webhook_id, &delivery.id)
            .await?
            .ok_or_else(|| DomainError::Internal("delivery vanished".into()))?;
        tx.commit().await?;
        wire_delivery(&stored)
    }

    /// A webhook's deliveries, newest first (`status` narrows to, say, the dead ones).
    pub async fn deliveries(
        &self,
        admin: &RegionAdmin,
        client_id: ApiClientId,
        id: WebhookId,
        q: DeliveryQuery,
    ) -> Result<WebhookDeliveryList> {
        let limit = q.limit.unwrap_or(DEFAULT_DELIVERY_PAGE);
        if !(1..=MAX_DELIVERY_PAGE).contains(&limit) {
            return Err(DomainError::Invalid(format!(
                "limit must be between 1 and {MAX_DELIVERY_PAGE}"
            )));
        }
        if q.before_seq.is_some_and(|s| s < 1) {
            return Err(DomainError::Invalid("before_seq must be at least 1".into()));
        }
        let mut conn = self.shared.store().conn().await?;
        let row = own_webhook(&mut conn, admin, client_id, id).await?;
        let mut rows = store::list_deliveries(
            &mut conn,
            &row.id,
            q.status.map(DeliveryStatus::as_str),
            q.before_seq,
            limit + 1,
        )
        .await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_before_seq = if more {
            rows.last().map(|r| r.seq)
        } else {
            None
        };
        Ok(WebhookDeliveryList {
            deliveries: rows.iter().map(wire_delivery).collect::<Result<_>>()?,
            next_before_seq,
        })
    }
}

/// Re-wraps every webhook signing secret not wrapped by the current KEK (part of
/// `keys rotate`, so that older KEKs can then be removed); returns how many.
pub(super) async fn rewrap_secrets(shared: &Shared, files: &FileServices) -> Result<u64> {
    let current = files.keys.current_id().to_owned();
    let mut done = 0;
    loop {
        let batch = {
            let mut conn = shared.store().conn().await?;
            store::secrets_not_wrapped_by(&mut conn, &current, 500).await?
        };
        if batch.is_empty() {
            return Ok(done);
        }
        let mut tx = shared.store().begin().await?;
        // Audited first: the audit head is always locked before any webhook row.
        audit::append(
            &mut tx,
            &RequestMeta {
                user_agent: Some("tsunagu-server keys rotate".into()),
                ..Default::default()
            },
            AuditEvent::new(Action::KeyRotated, Outcome::Success, &Default::default())
                .detail(json!({ "kek_id": current, "webhook_secrets": batch.len() })),
        )
        .await?;
        let mut changed = 0u64;
        for (id, old, wrapped) in &batch {
            let key = files
                .keys
                .unwrap(old, &secret_aad(id), wrapped)
                .map_err(|e| {
                    DomainError::Internal(super::error::Internal::caused_by(
                        format!("webhook {id}"),
                        e,
                    ))
                })?;
            let (kek, rewrapped) = files.keys.wrap(&secret_aad(id), &key);
            if store::rewrap_secret(&mut tx, id, old, &kek, &rewrapped).await? {
                changed += 1;
            }
        }
        tx.commit().await?;
        done += changed;
        if changed == 0 {
            // Every row of the batch changed under us (deleted meanwhile): stop rather
            // than loop on rows that are not rewrapped.
            return Ok(done);
        }
    }
}

/// The API client, if it is in the admin's region; otherwise "not found".
async fn own_client(
    conn: &mut Conn,
    admin: &RegionAdmin,
    client_id: ApiClientId,
) -> Result<ClientRow> {
    store::client_in_region(conn, &admin.region_id().to_string(), &client_id.to_string())
        .await?
        .ok_or(DomainError::NotFound("api client"))
}

async fn own_webhook(
    conn: &mut Conn,
    admin: &RegionAdmin,
    client_id: ApiClientId,
    id: WebhookId,
) -> Result<WebhookRow> {
    store::get_in_region(
        conn,
        &admin.region_id().to_string(),
        &client_id.to_string(),
        &id.to_string(),
    )
    .await?
    .ok_or(DomainError::NotFound("webhook"))
}

/// Subscribed events as stored: sorted, without duplicates, space-separated.
fn event_list(events: &[WebhookEventType]) -> Result<String> {
    if events.is_empty() {
        return Err(DomainError::Invalid(
            "events must name at least one event type".into(),
        ));
    }
    let mut names: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    Ok(names.join(" "))
}

fn wire_webhook(row: &WebhookRow) -> Result<Webhook> {
    let events = row
        .events
        .split(' ')
        .map(|e| {
            WebhookEventType::parse(e)
                .ok_or_else(|| DomainError::Internal("corrupt event list".into()))
        })
        .collect::<Result<_>>()?;
    Ok(Webhook {
        id: convert::id(&row.id)?,
        api_client_id: convert::id(&row.api_client_id)?,
        url: row.url.clone(),
        events,
        active: row.active != 0,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    })
}

fn wire_delivery(row: &DeliveryRow) -> Result<WebhookDelivery> {
    let status = DeliveryStatus::parse(&row.status)
        .ok_or_else(|| DomainError::Internal("corrupt delivery status".into()))?;
    Ok(WebhookDelivery {
        id: convert::id(&row.id)?,
        webhook_id: convert::id(&row.webhook_id)?,
        seq: row.seq,
        event_id: row.event_id.clone(),
        event_type: row.event_type.clone(),
        status,
        attempts: row.attempts,
        next_attempt_at: (status == DeliveryStatus::Pending).then(|| rfc3339(row.next_attempt_at)),
        last_status: row.last_status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.last_error.clone(),
        latency_ms: row.latency_ms,
        redelivery_of: row.redelivery_of.as_deref().map(convert::id).transpose()?,
        created_at: rfc3339(row.created_at),
        delivered_at: row.delivered_at.map(rfc3339),
    })
}
