//! The websocket: fan-out order and completeness, resume, idempotent posts over the
//! socket, backpressure, hostile frames.

use std::collections::BTreeMap;

use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tsunagu_client::Client;
use tsunagu_protocol::accounts::UserRole;
use tsunagu_protocol::ids::ThreadId;
use tsunagu_protocol::messaging::{AddMember, CreateGroup, Group, GroupKind, PatientProfile};
use tsunagu_protocol::ws::ServerFrame;

use tsunagu_testkit::both_backends;
use tsunagu_testkit::{spawn_app_with, Backend, TestApp};
use tsunagu_testkit::{Received, WsClient};

both_backends!(
    twenty_clients_receive_every_message_in_seq_order_without_gaps_or_duplicates,
    a_reconnecting_client_resumes_with_exactly_the_missed_messages,
    a_retried_post_over_the_socket_returns_the_original_message,
    hostile_frames_get_error_answers_and_other_clients_keep_being_served,
    edits_deletes_reactions_receipts_and_typing_reach_the_members,
    messages_posted_between_ready_and_resume_arrive_once_and_in_order,
);

async fn messages_posted_between_ready_and_resume_arrive_once_and_in_order(app: TestApp) {
    let (group, owner, members) = group_with_members(&app, 1).await;
    let thread = group.main_thread_id;
    for i in 0..3 {
        owner.post_text(thread, &format!("old {i}")).await.unwrap();
    }
    // Connected, but the resume has not been sent yet when new messages arrive.
    let mut ws = WsClient::connect_quiet(&app, &token(&members[0])).await;
    for i in 0..3 {
        owner.post_text(thread, &format!("new {i}")).await.unwrap();
    }
    ws.send(json!({ "type": "resume", "threads": { thread.to_string(): 1 } }))
        .await;
    owner.post_text(thread, "after resume").await.unwrap();
    let seqs = collect_seqs(&mut ws, thread, 6).await;
    assert_eq!(seqs, vec![2, 3, 4, 5, 6, 7], "each once, in order");
    // A claim beyond what exists is capped: nothing later is swallowed.
    let mut ws2 = WsClient::connect_quiet(&app, &token(&members[0])).await;
    ws2.send(json!({ "type": "resume", "threads": { thread.to_string(): 1000 } }))
        .await;
    match ws2.frame().await {
        ServerFrame::Resumed { threads } => assert_eq!(threads.get(&thread), Some(&7)),
        other => panic!("{other:?}"),
    }
    owner.post_text(thread, "still delivered").await.unwrap();
    assert_eq!(collect_seqs(&mut ws2, thread, 1).await, vec![8]);
}

/// A patient group owned by a new nurse, with `n` more members; all signed in.
async fn group_with_members(app: &TestApp, n: usize) -> (Group, Client, Vec<Client>) {
    let (_, owner) = app.create_user("owner.nurse", UserRole::User).await;
    let group = owner
        .create_group(&CreateGroup {
            kind: GroupKind::Patient,
            name: "山田 太郎 様".into(),
            description: None,
            patient: Some(PatientProfile {
                name: "山田 太郎".into(),
                name_kana: Some("ヤマダ タロウ".into()),
                birth_date: Some("1938-04-01".into()),
                sex: None,
                care_level: None,
                address: None,
                primary_physician: None,
                notes: None,
            }),
        })
        .await
        .unwrap();
    let mut members = Vec::new();
    for i in 0..n {
        let (user, client) = app
            .create_user(&format!("member{i:02}"), UserRole::User)
            .await;
        owner
            .add_member(
                group.id,
                &AddMember {
                    user_id: user.id,
                    role: None,
                    patient_side: None,
                },
            )
            .await
            .unwrap();
        members.push(client);
    }
    (group, owner, members)
}

fn token(c: &Client) -> String {
    c.tokens().unwrap().access_token
}

/// Reads `client` until it has `count` messages of `thread`; returns their seqs in
/// arrival order.
async fn collect_seqs(ws: &mut WsClient, thread: ThreadId, count: usize) -> Vec<i64> {
    let mut seqs = Vec::new();
    while seqs.len() < count {
        if let ServerFrame::MessageCreated { message } = ws.frame().await {
            if message.thread_id == thread {
                seqs.push(message.seq);
            }
        }
    }
    seqs
}

async fn twenty_clients_receive_every_message_in_seq_order_without_gaps_or_duplicates(
    app: TestApp,
) {
    let (group, owner, members) = group_with_members(&app, 19).await;
    let thread = group.main_thread_id;
    let mut sockets = Vec::new();
    for c in std::iter::once(&owner).chain(members.iter()) {
        sockets.push(WsClient::connect(&app, &token(c)).await);
    }
    assert_eq!(sockets.len(), 20);

    // Three concurrent posters: commits interleave, so bus order and seq order can
    // differ — delivery must still be in seq order.
    let posters: Vec<Client> = vec![owner.clone(), members[0].clone(), members[1].clone()];
    let per_poster = 40;
    let mut tasks = Vec::new();
    for (p, client) in posters.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..per_poster {
                client
                    .post_text(thread, &format!("poster {p} message {i}"))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = 3 * per_poster;
    let expected: Vec<i64> = (1..=total as i64).collect();
    for (i, ws) in sockets.iter_mut().enumerate() {
        let seqs = collect_seqs(ws, thread, total).await;
        assert_eq!(
            seqs, expected,
            "client {i}: every message once, in seq order"
        );
    }
    // And nothing extra arrives after the last one (no duplicates trailing behind).
    owner.post_text(thread, "sentinel").await.unwrap();
    for ws in sockets.iter_mut() {
        assert_eq!(collect_seqs(ws, thread, 1).await, vec![total as i64 + 1]);
    }
}

async fn a_reconnecting_client_resumes_with_exactly_the_missed_messages(app: TestApp) {
    let (group, owner, members) = group_with_members(&app, 1).await;
    let thread = group.main_thread_id;
    let reader = &members[0];
    let mut ws = WsClient::connect(&app, &token(reader)).await;
    for i in 0..10 {
        owner
            .post_text(thread, &format!("before drop {i}"))
            .await
            .unwrap();
    }
    let seen = collect_seqs(&mut ws, thread, 10).await;
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());

    // The connection drops mid-stream (no close handshake); messages keep coming.
    drop(ws);
    for i in 0..25 {
        owner
            .post_text(thread, &format!("while away {i}"))
            .await
            .unwrap();
    }

    let mut ws = WsClient::connect(&app, &token(reader)).await;
    ws.send(json!({ "type": "resume", "threads": { thread.to_string(): 10 } }))
        .await;
    let frames = ws.until(|f| matches!(f, ServerFrame::Resumed { .. })).await;
    let replayed: Vec<i64> = frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::MessageCreated { message } => Some(message.seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        replayed,
        (11..=35).collect::<Vec<_>>(),
        "exactly what was missed"
    );
    match frames.last() {
        Some(ServerFrame::Resumed { threads }) => {
            assert_eq!(threads, &BTreeMap::from([(thread, 35)]));
        }
        other => panic!("{other:?}"),
    }
    // Then live events, with no duplicate of anything replayed.
    owner.post_text(thread, "live again").await.unwrap();
    assert_eq!(collect_seqs(&mut ws, thread, 1).await, vec![36]);

    // Resuming an invisible or unknown thread is ignored, indistinguishably.
    let mut ws2 = WsClient::connect_quiet(&app, &token(reader)).await;
    ws2.send(json!({ "type": "resume", "threads": { ThreadId::new().to_string(): 0 } }))
        .await;
    match ws2.frame().await {
        ServerFrame::Resumed { threads } => assert!(threads.is_empty()),
        other => panic!("{other:?}"),
    }
}

async fn a_retried_post_over_the_socket_returns_the_original_message(app: TestApp) {
    let (group, owner, _) = group_with_members(&app, 0).await;
    let thread = group.main_thread_id;
    let mut ws = WsClient::connect(&app, &token(&owner)).await;
    let post = json!({
        "type": "post", "ref": "r1", "thread_id": thread.to_string(),
        "body": "バイタル安定しています", "client_msg_id": "tablet-42"
    });
    ws.send(post.clone()).await;
    let first = ws
        .until(|f| matches!(f, ServerFrame::Ack { .. }))
        .await
        .pop()
        .unwrap();
    let mut retry = post.clone();
    retry["ref"] = json!("r2");
    ws.send(retry).await;
    let second = ws
        .until(|f| matches!(f, ServerFrame::Ack { .. }))
        .await
        .pop()
        .unwrap();
    let (
        ServerFrame::Ack {
            reference: r1,
            message: m1,
        },
        ServerFrame::Ack {
            reference: r2,
            message: m2,
        },
    ) = (first, second)
    else {
        unreachable!()
    };
    assert_eq!((r1.as_deref(), r2.as_deref()), (Some("r1"), Some("r2")));
    assert_eq!(m1.id, m2.id);
    assert_eq!(m1.seq, 1);
    assert_eq!(m2.seq, 1);
    // The same client_msg_id over REST is the same message too.
    let rest = owner
        .post_message(
            thread,
            &tsunagu_protocol::messaging::PostMessage {
                body: "バイタル安定しています".into(),
                client_msg_id: "tablet-42".into(),
                reply_to: None,
                mentions: vec![],
                attachments: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.id, m1.id);
    let page = owner.list_messages(thread, None, None, None).await.unwrap();
    assert_eq!(page.messages.len(), 1);

    // An error answer carries the ref too.
    ws.send(json!({ "type": "post", "ref": "r3", "thread_id": ThreadId::new().to_string(), "body": "x", "client_msg_id": "y" }))
        .await;
    let err = ws
        .until(|f| matches!(f, ServerFrame::Error { .. }))
        .await
        .pop()
        .unwrap();
    assert_eq!(
        err,
        ServerFrame::Error {
            reference: Some("r3".into()),
            code: "not_found".into(),
            message: "thread not found".into(),
            retry_after_ms: None,
        }
    );
}

async fn hostile_frames_get_error_answers_and_other_clients_keep_being_served(app: TestApp) {
    let (group, owner, members) = group_with_members(&app, 1).await;
    let thread = group.main_thread_id;
    let mut bystander = WsClient::connect(&app, &token(&members[0])).await;
    let mut ws = WsClient::connect(&app, &token(&owner)).await;

    let expect_error = |f: ServerFrame, code: &str| match f {
        ServerFrame::Error { code: c, .. } => assert_eq!(c, code),
        other => panic!("expected error {code}, got {other:?}"),
    };
    ws.send_raw(WsMessage::text("this is not json")).await;
    expect_error(ws.frame().await, "malformed_frame");
    ws.send_raw(WsMessage::text(r#"{"type": "launch_missiles"}"#))
        .await;
    expect_error(ws.frame().await, "malformed_frame");
    ws.send_raw(WsMessage::text(r#"{"type": "post", "thread_id": 5}"#))
        .await;
    expect_error(ws.frame().await, "malformed_frame");
    ws.send_raw(WsMessage::binary(vec![0u8, 1, 2, 3])).await;
    expect_error(ws.frame().await, "malformed_frame");
    // Over our 64 KiB limit but under the transport's hard limit: an error, connection kept.
    let big = json!({ "type": "post", "thread_id": thread.to_string(), "body": "あ".repeat(30_000), "client_msg_id": "big" });
    ws.send_raw(WsMessage::text(big.to_string())).await;
    expect_error(ws.frame().await, "frame_too_large");
    // Still serving this client.
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.frame().await, ServerFrame::Pong {});
    // Nothing was posted by any of that.
    assert!(owner
        .list_messages(thread, None, None, None)
        .await
        .unwrap()
        .messages
        .is_empty());

    // Invalid UTF-8 in a text frame: an error, then the connection closes (1007).
    let mut bad = WsClient::connect(&app, &token(&owner)).await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    let _ = futures_util::SinkExt::send(&mut bad.stream, WsMessage::Frame(frame)).await;
    let mut closed_with = None;
    for _ in 0..3 {
        match bad.next().await {
            Received::Frame(ServerFrame::Error { code, .. }) => assert_eq!(code, "malformed_frame"),
            Received::Frame(other) => panic!("{other:?}"),
            Received::Closed(code) => {
                closed_with = Some(code);
                break;
            }
        }
    }
    assert!(
        matches!(closed_with, Some(Some(1007)) | Some(None)),
        "{closed_with:?}"
    );

    // Far beyond the hard limit: the transport refuses it and the connection closes.
    let mut huge = WsClient::connect(&app, &token(&owner)).await;
    let _ = futures_util::SinkExt::send(&mut huge.stream, WsMessage::text("x".repeat(1024 * 1024)))
        .await;
    let mut ended = false;
    for _ in 0..3 {
        if let Received::Closed(_) = huge.next().await {
            ended = true;
            break;
        }
    }
    assert!(ended);

    // The bystander never noticed and still receives.
    owner.post_text(thread, "after the noise").await.unwrap();
    assert_eq!(collect_seqs(&mut bystander, thread, 1).await, vec![1]);
    assert_eq!(collect_seqs(&mut ws, thread, 1).await, vec![1]);
}

async fn edits_deletes_reactions_receipts_and_typing_reach_the_members(app: TestApp) {
    let (group, owner, members) = group_with_members(&app, 1).await;
    let thread = group.main_thread_id;
    let member = &members[0];
    let mut ws = WsClient::connect(&app, &token(member)).await;
    let msg = owner.post_text(thread, "朝の訪問終了").await.unwrap();
    owner
        .edit_message(thread, msg.id, "朝の訪問終了。血圧 132/80")
        .await
        .unwrap();
    owner.add_reaction(thread, msg.id, "👍").await.unwrap();
    owner.mark_read(thread, 1).await.unwrap(); // already read as author: no receipt event
    member.mark_read(thread, 1).await.unwrap();
    let mut typing = WsClient::connect(&app, &token(&owner)).await;
    typing
        .send(json!({ "type": "typing", "thread_id": thread.to_string() }))
        .await;
    // Frames on one socket are handled in order: once the pong is back, the typing
    // event has been published, before the delete below.
    typing.send(json!({ "type": "ping" })).await;
    typing.until(|f| matches!(f, ServerFrame::Pong {})).await;
    owner.delete_message(thread, msg.id).await.unwrap();

    let frames = ws
        .until(|f| matches!(f, ServerFrame::MessageDeleted { .. }))
        .await;
    let kinds: Vec<&str> = frames
        .iter()
        .map(|f| match f {
            ServerFrame::MessageCreated { .. } => "created",
            ServerFrame::MessageEdited { .. } => "edited",
            ServerFrame::ReactionAdded { .. } => "reaction",
            ServerFrame::Receipt { .. } => "receipt",
            ServerFrame::Typing { .. } => "typing",
            ServerFrame::MessageDeleted { .. } => "deleted",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["created", "edited", "reaction", "receipt", "typing", "deleted"]
    );
    match &frames[1] {
        ServerFrame::MessageEdited { message } => {
            assert_eq!(message.body, "朝の訪問終了。血圧 132/80")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_told_to_resync_and_closed_while_others_keep_receiving() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.ws.outbound_queue = 8;
    })
    .await;
    let (group, owner, members) = group_with_members(&app, 2).await;
    let thread = group.main_thread_id;
    let mut fast = WsClient::connect(&app, &token(&members[0])).await;
    let mut slow = WsClient::connect(&app, &token(&members[1])).await;

    // The slow client stops reading. Large messages fill the socket buffers, then its
    // queue; the fast client reads everything as it comes.
    let count = 400;
    let body = "経過記録。".repeat(1500);
    let poster = {
        let owner = owner.clone();
        let body = body.clone();
        tokio::spawn(async move {
            for _ in 0..count {
                owner.post_text(thread, &body).await.unwrap();
            }
        })
    };
    let seqs = collect_seqs(&mut fast, thread, count).await;
    poster.await.unwrap();
    assert_eq!(
        seqs,
        (1..=count as i64).collect::<Vec<_>>(),
        "the fast client lost nothing"
    );

    // Now the slow client reads: some messages, then the resync notice, then the close.
    let mut delivered = 0;
    let mut resync = None;
    loop {
        match slow.next().await {
            Received::Frame(ServerFrame::MessageCreated { .. }) => delivered += 1,
            Received::Frame(ServerFrame::Resync { reason }) => resync = Some(reason),
            Received::Frame(other) => panic!("{other:?}"),
            Received::Closed(_) => break,
        }
    }
    assert_eq!(resync.as_deref(), Some("slow_consumer"));
    assert!(
        delivered < count,
        "the slow client was cut off ({delivered} of {count})"
    );

    // It reconnects and resumes from what it had: exactly the rest.
    let mut again = WsClient::connect(&app, &token(&members[1])).await;
    again
        .send(json!({ "type": "resume", "threads": { thread.to_string(): delivered } }))
        .await;
    let frames = again
        .until(|f| matches!(f, ServerFrame::Resumed { .. }))
        .await;
    let replayed = frames
        .iter()
        .filter(|f| matches!(f, ServerFrame::MessageCreated { .. }))
        .count();
    assert_eq!(replayed, count - delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_must_authenticate_in_its_first_frame() {
    let app = tsunagu_testkit::spawn_app(Backend::Sqlite).await;
    // Something else first: refused and closed.
    let mut ws = WsClient::raw(&app).await;
    ws.send(json!({ "type": "ping" })).await;
    match ws.next().await {
        Received::Frame(ServerFrame::Error { code, .. }) => assert_eq!(code, "unauthenticated"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ws.next().await,
        Received::Closed(Some(1008)) | Received::Closed(None)
    ));
    // A forged token: refused.
    let mut ws = WsClient::raw(&app).await;
    ws.send(json!({ "type": "auth", "token": "eyJhbGciOiJub25lIn0.e30." }))
        .await;
    assert!(matches!(ws.frame().await, ServerFrame::Error { .. }));
    // A token in the URL is not a credential.
    let good = app.admin.tokens().unwrap().access_token;
    let url = format!("ws://{}/api/v1/ws?token={good}", app.addr);
    let (mut stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    futures_util::SinkExt::send(&mut stream, WsMessage::text(r#"{"type":"ping"}"#))
        .await
        .unwrap();
    let mut ws = WsClient { stream };
    assert!(matches!(ws.frame().await, ServerFrame::Error { .. }));
    // Logging out closes the socket of that session.
    let mut live = WsClient::connect(&app, &good).await;
    app.admin.logout().await.unwrap();
    let mut closed = false;
    for _ in 0..3 {
        match live.next().await {
            Received::Frame(ServerFrame::Error { code, .. }) => assert_eq!(code, "unauthenticated"),
            Received::Frame(other) => panic!("{other:?}"),
            Received::Closed(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_client_is_slowed_with_a_retry_time_on_rest_and_on_the_socket() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.limits.posts_burst = 3;
        c.limits.posts_per_minute = 1;
        c.limits.typing_burst = 2;
        c.limits.typing_per_minute = 1;
    })
    .await;
    let (group, owner, members) = group_with_members(&app, 1).await;
    let thread = group.main_thread_id;
    // REST and the socket share one allowance per user: two REST posts, one socket post.
    owner.post_text(thread, "1").await.unwrap();
    owner.post_text(thread, "2").await.unwrap();
    let mut ws = WsClient::connect(&app, &token(&owner)).await;
    ws.send(json!({ "type": "post", "ref": "p3", "thread_id": thread, "body": "3", "client_msg_id": "c3" }))
        .await;
    assert!(matches!(
        ws.until(|f| matches!(f, ServerFrame::Ack { .. }))
            .await
            .pop(),
        Some(ServerFrame::Ack { .. })
    ));
    // The fourth is refused on the socket, with the time to wait...
    ws.send(json!({ "type": "post", "ref": "p4", "thread_id": thread, "body": "4", "client_msg_id": "c4" }))
        .await;
    match ws
        .until(|f| matches!(f, ServerFrame::Error { .. }))
        .await
        .pop()
    {
        Some(ServerFrame::Error {
            reference,
            code,
            retry_after_ms,
            ..
        }) => {
            assert_eq!(reference.as_deref(), Some("p4"));
            assert_eq!(code, "too_many_requests");
            assert!(retry_after_ms.is_some_and(|ms| ms >= 1000));
        }
        other => panic!("{other:?}"),
    }
    // ...and over REST: 429 with Retry-After, nothing stored.
    let r = app
        .http
        .post(app.url(&format!("/api/v1/threads/{thread}/messages")))
        .bearer_auth(token(&owner))
        .json(&json!({ "body": "5", "client_msg_id": "c5" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
    let stored = members[0]
        .list_messages(thread, Some(0), None, Some(50))
        .await
        .unwrap();
    assert_eq!(stored.messages.len(), 3);
    // Typing is limited per connection: the third in a row is refused, the socket stays.
    for _ in 0..3 {
        ws.send(json!({ "type": "typing", "thread_id": thread }))
            .await;
    }
    match ws
        .until(|f| matches!(f, ServerFrame::Error { .. }))
        .await
        .pop()
    {
        Some(ServerFrame::Error {
            code,
            retry_after_ms,
            ..
        }) => {
            assert_eq!(code, "too_many_requests");
            assert!(retry_after_ms.is_some());
        }
        other => panic!("{other:?}"),
    }
    ws.send(json!({ "type": "ping" })).await;
    assert!(matches!(
        ws.until(|f| matches!(f, ServerFrame::Pong {})).await.pop(),
        Some(ServerFrame::Pong {})
    ));
}

/// The websocket driver over in-memory channels instead of a socket (`ws::serve` is
/// generic over `Sink`/`Stream`, as in axum's websocket-testing example): the same
/// authentication, resume, live delivery and acks, with no network in between.
mod over_channels {
    use std::pin::Pin;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use axum::extract::ws::Message as AxumMessage;
    use futures_util::{Sink, Stream};
    use tokio::sync::mpsc;
    use tsunagu_protocol::ws::ServerFrame;
    use tsunagu_server::api::AppState;
    use tsunagu_server::audit::RequestMeta;

    use super::{group_with_members, token};
    use tsunagu_testkit::{spawn_app, Backend};

    /// The server's end of an in-memory "socket".
    struct ChannelSocket {
        to_client: mpsc::UnboundedSender<AxumMessage>,
        from_client: mpsc::UnboundedReceiver<AxumMessage>,
    }

    impl Stream for ChannelSocket {
        type Item = Result<AxumMessage, axum::Error>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.from_client.poll_recv(cx).map(|m| m.map(Ok))
        }
    }

    impl Sink<AxumMessage> for ChannelSocket {
        type Error = axum::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(self: Pin<&mut Self>, item: AxumMessage) -> Result<(), Self::Error> {
            self.to_client
                .send(item)
                .map_err(|_| axum::Error::new("the client is gone"))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    async fn frame(rx: &mut mpsc::UnboundedReceiver<AxumMessage>) -> ServerFrame {
        loop {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv())
                .await
                .expect("a frame within 30 s (a guard against hangs)")
                .expect("the driver closed");
            if let AxumMessage::Text(t) = msg {
                return serde_json::from_str(t.as_str()).expect("a server frame");
            }
        }
    }

    fn text(v: serde_json::Value) -> AxumMessage {
        AxumMessage::Text(v.to_string().into())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_driver_runs_over_channels_as_over_a_socket() {
        let app = spawn_app(Backend::Sqlite).await;
        let (group, owner, members) = group_with_members(&app, 1).await;
        let thread = group.main_thread_id;
        owner.post_text(thread, "before").await.unwrap();
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let state = AppState {
            domain: app.domain.clone(),
            metrics: tsunagu_server::telemetry::metrics_handle(),
            trust_forwarded_for: false,
            shutting_down: Arc::new(AtomicBool::new(false)),
            shutdown,
            ws: app.config.ws.clone(),
            live: app.config.limits.clone(),
            audit_verifier: tsunagu_server::app::load_audit_signer(&app.config)
                .unwrap()
                .verifier(),
            verify_wait: std::time::Duration::from_secs(20),
        };
        let (to_client, mut client_rx) = mpsc::unbounded_channel();
        let (client_tx, from_client) = mpsc::unbounded_channel();
        let driver = tokio::spawn(tsunagu_server::api::ws::serve(
            state,
            ChannelSocket {
                to_client,
                from_client,
            },
            RequestMeta::default(),
        ));
        client_tx
            .send(text(
                serde_json::json!({"type": "auth", "token": token(&members[0])}),
            ))
            .unwrap();
        assert!(matches!(
            frame(&mut client_rx).await,
            ServerFrame::Ready { .. }
        ));
        client_tx
            .send(text(
                serde_json::json!({"type": "resume", "threads": {thread.to_string(): 0}}),
            ))
            .unwrap();
        match frame(&mut client_rx).await {
            ServerFrame::MessageCreated { message } => assert_eq!(message.body, "before"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            frame(&mut client_rx).await,
            ServerFrame::Resumed { .. }
        ));
        // Live: another member's post arrives; our own post is acknowledged.
        owner.post_text(thread, "live").await.unwrap();
        match frame(&mut client_rx).await {
            ServerFrame::MessageCreated { message } => {
                assert_eq!((message.seq, message.body.as_str()), (2, "live"))
            }
            other => panic!("{other:?}"),
        }
        client_tx
            .send(text(serde_json::json!({"type": "post", "ref": "r1", "thread_id": thread, "body": "mine", "client_msg_id": "m1"})))
            .unwrap();
        loop {
            match frame(&mut client_rx).await {
                ServerFrame::Ack { reference, message } => {
                    assert_eq!(reference.as_deref(), Some("r1"));
                    assert_eq!(message.seq, 3);
                    break;
                }
                ServerFrame::MessageCreated { .. } => {}
                other => panic!("{other:?}"),
            }
        }
        // The client hangs up: the driver ends.
        drop(client_tx);
        tokio::time::timeout(std::time::Duration::from_secs(30), driver)
            .await
            .expect("the driver ends when its client is gone")
            .unwrap();
    }
}
