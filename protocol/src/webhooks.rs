//! Webhooks of third-party apps (`/api/v1/admin/api-clients/{id}/webhooks…`) and the
//! body every webhook receives. Signed as the Standard Webhooks specification says; the
//! SDK's verifier checks the headers named here.

use crate::ids::{ApiClientId, WebhookDeliveryId, WebhookId};
use serde::{Deserialize, Serialize};

wire_enum!(
    /// What a webhook can subscribe to. An app hears of an event only if its app
    /// account may see it at that moment (the main timelines of its groups; never a
    /// 内緒話).
    WebhookEventType {
        /// A message was posted (`data.message`).
        MessageCreated = "message.created",
        /// A message was edited (`data.message`, with the new text).
        MessageEdited = "message.edited",
        /// A message was deleted (`data.message`, the tombstone).
        MessageDeleted = "message.deleted",
        /// A file was uploaded (`data.file`, its metadata).
        FileUploaded = "file.uploaded",
        /// Someone joined or was added to a group (`data.group_id`, `data.member`).
        MemberAdded = "member.added",
        /// Someone left or was removed (`data.group_id`, `data.member`).
        MemberRemoved = "member.removed",
        /// A group was archived (`data.group_id`, `data.archived_at`).
        GroupArchived = "group.archived",
    }
);

/// The `type` of the event `POST …/webhooks/{wid}/test` sends; it is sent whatever the
/// webhook subscribes to.
pub const TEST_EVENT_TYPE: &str = "webhook.test";

/// Header with the event id (the same on every attempt: receivers deduplicate on it).
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
/// Header with the attempt's Unix time in seconds.
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Header with `v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "webhook-signature";
/// Prefix of a webhook secret; the rest is the base64 of the key bytes.
pub const WEBHOOK_SECRET_PREFIX: &str = "whsec_";

/// `POST /api/v1/admin/api-clients/{id}/webhooks`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"url": "https://ehr.example.jp/tsunagu/webhook", "events": ["message.created", "file.uploaded"]})))]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `https://` (plain `http://` and private addresses only where the operator allows
    /// them); no user name or password in it.
    #[cfg_attr(
        feature = "openapi",
        schema(
            format = "uri",
            min_length = 8,
            max_length = 2048,
            pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s]+$"
        )
    )]
    pub url: String,
    /// One or more event types.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 7))]
    pub events: Vec<WebhookEventType>,
}

/// `PATCH …/webhooks/{wid}`: absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            format = "uri",
            min_length = 8,
            max_length = 2048,
            pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s]+$"
        )
    )]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 7))]
    pub events: Option<Vec<WebhookEventType>>,
    /// A paused webhook queues nothing new and sends nothing; its backlog waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

/// A webhook as admins see it. The secret is shown once, when it is created.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Webhook {
    pub id: WebhookId,
    pub api_client_id: ApiClientId,
    pub url: String,
    pub events: Vec<WebhookEventType>,
    pub active: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// The answer to creating a webhook: the webhook and, this once, its signing secret
/// (`whsec_<base64>`, as Standard Webhooks libraries take it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedWebhook {
    pub id: WebhookId,
    pub secret: String,
    pub api_client_id: ApiClientId,
    pub url: String,
    pub events: Vec<WebhookEventType>,
    pub active: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

wire_enum!(
    /// Where a delivery stands.
    DeliveryStatus {
        /// Queued or being retried.
        Pending = "pending",
        /// The receiver answered 2xx.
        Delivered = "delivered",
        /// Given up on: the retry period ran out (or the app can no longer see it).
        /// An admin can redeliver it.
        Dead = "dead",
    }
);

/// One event queued for one webhook, with how its delivery went.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookDelivery {
    pub id: WebhookDeliveryId,
    pub webhook_id: WebhookId,
    /// Position in the webhook's queue: deliveries are sent in this order.
    pub seq: i64,
    /// The event id (`webhook-id` header, body `id`).
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    /// When the next attempt is due (pending deliveries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// HTTP status of the last attempt, if the receiver answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// Why the last attempt failed (short; never the receiver's body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Duration of the last attempt, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// The delivery this one redelivers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redelivery_of: Option<WebhookDeliveryId>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookDeliveryList {
    /// Newest first.
    pub deliveries: Vec<WebhookDelivery>,
    /// Pass as `before_seq` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before_seq: Option<i64>,
}

/// The body every webhook receives: `data` holds the same wire objects the REST API
/// answers with (`message`, `file`, `member`…).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookEvent {
    /// The event id; the same as the `webhook-id` header.
    pub id: String,
    /// `message.created`, … or `webhook.test`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub created_at: String,
    pub region_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
}
