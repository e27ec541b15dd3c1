//! `/api/v1/threads/*`: a thread, its 内緒話 members, messages, reactions and receipts.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use tsunagu_protocol::ids::{MessageId, ThreadId, UserId};
use tsunagu_protocol::messaging::{
    AddReaction, AddThreadMember, EditMessage, MarkRead, Message, MessageHistory, MessagePage,
    PostMessage, ReadState, Readers, Thread,
};
use tsunagu_protocol::ErrorBody;

use super::error::ApiResult;
use super::extract::{AppJson, AppPath, AppQuery, CurrentMember, Meta};
use super::AppState;
use crate::domain::messages::PageQuery;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Threads, their members and messages: each route with the `#[utoipa::path]` that documents it.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_thread))
        .routes(routes!(add_thread_member))
        .routes(routes!(remove_thread_member))
        .routes(routes!(post_message, list_messages))
        .routes(routes!(edit_message, delete_message))
        .routes(routes!(message_history))
        .routes(routes!(readers))
        .routes(routes!(add_reaction))
        .routes(routes!(remove_reaction))
        .routes(routes!(mark_read))
}

#[utoipa::path(
    get, path = "/api/v1/threads/{id}", tag = "threads",
    params(("id" = uuid::Uuid, Path, description = "Thread id")),
    responses((status = 200, body = Thread), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get_thread(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppPath(id): AppPath<ThreadId>,
) -> ApiResult<AppJson<Thread>> {
    Ok(AppJson(
        state.domain.threads().get_thread(&member, id).await?,
    ))
}

/// Add a professional member of the group to a 内緒話 thread (any thread member may).
#[utoipa::path(
    post, path = "/api/v1/threads/{id}/members", tag = "threads",
    params(("id" = uuid::Uuid, Path, description = "Thread id")),
    request_body = AddThreadMember,
    responses(
        (status = 200, body = Thread),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Already a member of the thread, or the group is archived", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn add_thread_member(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath(id): AppPath<ThreadId>,
    AppJson(req): AppJson<AddThreadMember>,
) -> ApiResult<AppJson<Thread>> {
    Ok(AppJson(
        state
            .domain
            .threads()
            .add_thread_member(&member, id, req.user_id, &meta)
            .await?,
    ))
}

/// Remove someone (or yourself) from a 内緒話 thread.
#[utoipa::path(
    delete, path = "/api/v1/threads/{id}/members/{user_id}", tag = "threads",
    params(("id" = uuid::Uuid, Path, description = "Thread id"), ("user_id" = uuid::Uuid, Path, description = "User id")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn remove_thread_member(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath((id, user_id)): AppPath<(ThreadId, UserId)>,
) -> ApiResult<StatusCode> {
    state
        .domain
        .threads()
        .remove_thread_member(&member, id, user_id, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Post a message. Answered only after it is committed; a retry with the same
/// `client_msg_id` returns the original (200) instead of posting again (201).
#[utoipa::path(
    post, path = "/api/v1/threads/{id}/messages", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Thread id")),
    request_body = PostMessage,
    responses(
        (status = 201, description = "Posted", body = Message),
        (status = 200, description = "Already posted with this client_msg_id", body = Message),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Group archived", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn post_message(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Meta(meta): Meta,
    AppPath(id): AppPath<ThreadId>,
    AppJson(req): AppJson<PostMessage>,
) -> ApiResult<(StatusCode, AppJson<Message>)> {
    let (message, created) = state
        .domain
        .messages()
        .post_message(&member, id, req, &meta)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, AppJson(message)))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Messages with a greater `seq`, ascending (catching up).
    #[param(minimum = 0)]
    pub after_seq: Option<i64>,
    /// Messages with a smaller `seq` (scrolling back); without either bound, the latest.
    #[param(minimum = 0)]
    pub before_seq: Option<i64>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// Page the timeline.
#[utoipa::path(
    get, path = "/api/v1/threads/{id}/messages", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Thread id"), MessagesQuery),
    responses((status = 200, body = MessagePage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_messages(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppPath(id): AppPath<ThreadId>,
    AppQuery(q): AppQuery<MessagesQuery>,
) -> ApiResult<AppJson<MessagePage>> {
    let page = PageQuery {
        after_seq: q.after_seq,
        before_seq: q.before_seq,
        limit: q.limit,
    };
    Ok(AppJson(
        state
            .domain
            .messages()
            .list_messages(&member, id, page)
            .await?,
    ))
}

/// Edit your own message; earlier versions stay in its history.
#[utoipa::path(
    patch, path = "/api/v1/threads/{id}/messages/{message_id}", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Thread id"), ("message_id" = uuid::Uuid, Path, description = "Message id")),
    request_body = EditMessage,
    responses((status = 200, body = Message), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn edit_message(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppPath((id, message_id)): AppPath<(ThreadId, MessageId)>,
    AppJson(req): AppJson<EditMessage>,
) -> ApiResult<AppJson<Message>> {
    Ok(AppJson(
        state
            .domain
            .messages()
            .edit_message(&member, id, message_id, req)
            .await?,
    ))
}

/// Delete your own message, leaving a tombstone in its place.
#[utoipa::path(
    delete, path = "/api/v1/threads/{id}/messages/{message_id}", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Thread id"), ("message_id" = uuid::Uuid, Path, description = "Message id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn delete_message(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppPath((id, message_id)): AppPath<(ThreadId, MessageId)>,
) -> ApiResult<StatusCode> {
    state
        .domain
        .messages()
        .delete_message(&member, id, message_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Earlier versions of a message.
#[utoipa::path(
    get, path = "/api/v1/threads/{id}/messages/{message_id}/history", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Thread id"), ("message_id" = uuid::Uuid, Path, description = "Message id")),
    responses((status = 200, body = MessageHistory), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn message_history(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppPath((id, message_id)): AppPath<(ThreadId, MessageId)>,
) -> ApiResult<AppJson<MessageHistory>> {
    Ok(AppJson(
        state
            .domain
            .messages()
            .message_history(&member, id, message_id)
            .await?,
    ))
}

/// Who has read a message (既読一覧).
#[utoipa::path(
    get, path = "/api/v1/threads/{id}/messages/{message_id}/readers", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Thread id"), ("message_id" = uuid::Uuid, Path, description = "Message id")),
    responses((status = 200, body = Readers), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn readers(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppPath((id, message_id)): AppPath<(ThreadId, MessageId)>,
) -> ApiResult<AppJson<Readers>> {
    Ok(AppJson(
        state
            .domain
            .messages()
            .readers(&member, id, message_id)
            .await?,
    ))
}

#[utoipa::path(
    post, path = "/api/v1/threads/{id}/messages/{message_id}/reactions", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Thread id"), ("message_id" = uuid::Uuid, Path, description = "Message id")),
    request_body = AddReaction,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn add_reaction(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppPath((id, message_id)): AppPath<(ThreadId, MessageId)>,
    AppJson(req): AppJson<AddReaction>,
) -> ApiResult<StatusCode> {
    state
        .domain
        .messages()
        .react(&member, id, message_id, &req.emoji, true)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete, path = "/api/v1/threads/{id}/messages/{message_id}/reactions/{emoji}", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Thread id"), ("message_id" = uuid::Uuid, Path, description = "Message id"), ("emoji" = String, Path, description = "URL-encoded emoji: 1–16 characters, no spaces or control characters", min_length = 1, max_length = 16, pattern = r"^[^\s\u0000-\u001f\u007f-\u009f]*$")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn remove_reaction(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppPath((id, message_id, emoji)): AppPath<(ThreadId, MessageId, String)>,
) -> ApiResult<StatusCode> {
    state
        .domain
        .messages()
        .react(&member, id, message_id, &emoji, false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mark everything up to `seq` as read (既読). Never moves backwards.
#[utoipa::path(
    post, path = "/api/v1/threads/{id}/read", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Thread id")),
    request_body = MarkRead,
    responses((status = 200, body = ReadState), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn mark_read(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    AppPath(id): AppPath<ThreadId>,
    AppJson(req): AppJson<MarkRead>,
) -> ApiResult<AppJson<ReadState>> {
    Ok(AppJson(
        state
            .domain
            .messages()
            .mark_read(&member, id, req.seq)
            .await?,
    ))
}
