//! `/api/v1/admin/api-clients/{id}/webhooks…`: an API client's webhooks, their
//! deliveries and redelivery. Region administrators only, for clients of their own
//! region (another region's client is 404); the domain audits every change.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use tsunagu_protocol::ids::{ApiClientId, WebhookDeliveryId, WebhookId};
use tsunagu_protocol::webhooks::{
    CreateWebhook, CreatedWebhook, DeliveryStatus, UpdateWebhook, Webhook, WebhookDelivery,
    WebhookDeliveryList, WebhookList,
};
use tsunagu_protocol::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiResult;
use super::extract::{AppJson, AppPath, AppQuery, CurrentAdmin, Meta};
use super::AppState;
use crate::domain::webhooks::DeliveryQuery;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(test_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(redeliver))
}

/// Add a webhook to an API client. The answer carries its signing secret
/// (`whsec_<base64>`), shown this once.
#[utoipa::path(
    post, path = "/api/v1/admin/api-clients/{id}/webhooks", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "API client id")),
    request_body = CreateWebhook,
    responses(
        (status = 201, body = CreatedWebhook),
        (status = 400, description = "Bad input, or `webhook_url_not_allowed`: the URL is not https, carries credentials, or names a loopback/private address the operator does not allow", body = ErrorBody),
        (status = 409, description = "The client has the most webhooks it may have", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_webhook(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath(id): AppPath<ApiClientId>,
    AppJson(req): AppJson<CreateWebhook>,
) -> ApiResult<(StatusCode, AppJson<CreatedWebhook>)> {
    let created = state
        .domain
        .webhooks()
        .create(&admin, id, req, &meta)
        .await?;
    Ok((StatusCode::CREATED, AppJson(created)))
}

/// An API client's webhooks (without their secrets).
#[utoipa::path(
    get, path = "/api/v1/admin/api-clients/{id}/webhooks", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "API client id")),
    responses((status = 200, body = WebhookList)),
    security(("bearer" = []))
)]
pub async fn list_webhooks(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    AppPath(id): AppPath<ApiClientId>,
) -> ApiResult<AppJson<WebhookList>> {
    Ok(AppJson(WebhookList {
        webhooks: state.domain.webhooks().list(&admin, id).await?,
    }))
}

#[utoipa::path(
    get, path = "/api/v1/admin/api-clients/{id}/webhooks/{wid}", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "API client id"), ("wid" = uuid::Uuid, Path, description = "Webhook id")),
    responses((status = 200, body = Webhook)),
    security(("bearer" = []))
)]
pub async fn get_webhook(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    AppPath((id, wid)): AppPath<(ApiClientId, WebhookId)>,
) -> ApiResult<AppJson<Webhook>> {
    Ok(AppJson(state.domain.webhooks().get(&admin, id, wid).await?))
}

/// Change a webhook's URL or events, or pause (`"active": false`) and resume it.
#[utoipa::path(
    patch, path = "/api/v1/admin/api-clients/{id}/webhooks/{wid}", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "API client id"), ("wid" = uuid::Uuid, Path, description = "Webhook id")),
    request_body = UpdateWebhook,
    responses(
        (status = 200, body = Webhook),
        (status = 400, description = "Bad input, or `webhook_url_not_allowed`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn update_webhook(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath((id, wid)): AppPath<(ApiClientId, WebhookId)>,
    AppJson(req): AppJson<UpdateWebhook>,
) -> ApiResult<AppJson<Webhook>> {
    Ok(AppJson(
        state
            .domain
            .webhooks()
            .update(&admin, id, wid, req, &meta)
            .await?,
    ))
}

/// Delete a webhook with its queue: what was not delivered is not sent.
#[utoipa::path(
    delete, path = "/api/v1/admin/api-clients/{id}/webhooks/{wid}", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "API client id"), ("wid" = uuid::Uuid, Path, description = "Webhook id")),
    responses((status = 204)),
    security(("bearer" = []))
)]
pub async fn delete_webhook(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath((id, wid)): AppPath<(ApiClientId, WebhookId)>,
) -> ApiResult<StatusCode> {
    state
        .domain
        .webhooks()
        .delete(&admin, id, wid, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Queue a `webhook.test` event for the webhook (behind what is already queued); the
/// answer is its delivery, which the deliveries list then follows.
#[utoipa::path(
    post, path = "/api/v1/admin/api-clients/{id}/webhooks/{wid}/test", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "API client id"), ("wid" = uuid::Uuid, Path, description = "Webhook id")),
    responses((status = 202, body = WebhookDelivery)),
    security(("bearer" = []))
)]
pub async fn test_webhook(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath((id, wid)): AppPath<(ApiClientId, WebhookId)>,
) -> ApiResult<(StatusCode, AppJson<WebhookDelivery>)> {
    let delivery = state.domain.webhooks().test(&admin, id, wid, &meta).await?;
    Ok((StatusCode::ACCEPTED, AppJson(delivery)))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only deliveries in this state (`dead`: the dead-letter list).
    pub status: Option<DeliveryStatus>,
    /// Older than this queue position (the previous page's `next_before_seq`).
    #[param(minimum = 1)]
    pub before_seq: Option<i64>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// A webhook's deliveries, newest first: status, attempts, last error and latency.
#[utoipa::path(
    get, path = "/api/v1/admin/api-clients/{id}/webhooks/{wid}/deliveries", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "API client id"), ("wid" = uuid::Uuid, Path, description = "Webhook id"), DeliveriesQuery),
    responses((status = 200, body = WebhookDeliveryList)),
    security(("bearer" = []))
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    AppPath((id, wid)): AppPath<(ApiClientId, WebhookId)>,
    AppQuery(q): AppQuery<DeliveriesQuery>,
) -> ApiResult<AppJson<WebhookDeliveryList>> {
    let query = DeliveryQuery {
        status: q.status,
        before_seq: q.before_seq,
        limit: q.limit,
    };
    Ok(AppJson(
        state
            .domain
            .webhooks()
            .deliveries(&admin, id, wid, query)
            .await?,
    ))
}

/// Send a delivered or dead delivery again: a new delivery at the end of the queue,
/// with the same event id (`webhook-id`) and body and a fresh retry period.
#[utoipa::path(
    post, path = "/api/v1/admin/api-clients/{id}/webhooks/{wid}/deliveries/{did}/redeliver", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "API client id"), ("wid" = uuid::Uuid, Path, description = "Webhook id"), ("did" = uuid::Uuid, Path, description = "Delivery id")),
    responses(
        (status = 202, body = WebhookDelivery),
        (status = 409, description = "The delivery is still pending", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn redeliver(
    State(state): State<AppState>,
    CurrentAdmin(admin): CurrentAdmin,
    Meta(meta): Meta,
    AppPath((id, wid, did)): AppPath<(ApiClientId, WebhookId, WebhookDeliveryId)>,
) -> ApiResult<(StatusCode, AppJson<WebhookDelivery>)> {
    let delivery = state
        .domain
        .webhooks()
        .redeliver(&admin, id, wid, did, &meta)
        .await?;
    Ok((StatusCode::ACCEPTED, AppJson(delivery)))
}
