//! The live session against a real server started in-process: delivery in order, exactly
//! once across lost connections, revocation, wss. (The CLI's tests: `clients/cli/tests`.)
//!
//! Timeouts here are guards against hangs only; nothing waits for time to pass.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tsunagu_client::live::{Backoff, LiveEvent, Session};
use tsunagu_client::protocol::ids::ThreadId;
use tsunagu_client::protocol::messaging::{CreateGroup, GroupKind, Message, PostMessage};
use tsunagu_client::protocol::ErrorCode;
use tsunagu_client::{Client, Error};
use tsunagu_testkit::{
    spawn_app, spawn_app_with, two_nurses_in_a_group, Backend, TestApp, ADMIN_PASSWORD,
};

/// Generous bound for "this should arrive": only a hang trips it.
const ARRIVAL: Duration = Duration::from_secs(30);

/// A server on SQLite: what these tests check is the SDK, not the database.
async fn start_server() -> TestApp {
    spawn_app(Backend::Sqlite).await
}

/// Backoff for tests: quick, still exponential and jittered.
fn quick() -> Backoff {
    Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        ..Backoff::default()
    }
}

async fn next(session: &mut Session) -> LiveEvent {
    tokio::time::timeout(ARRIVAL, session.next_event())
        .await
        .expect("an event within the bound")
        .expect("the session is alive")
}

/// Messages of `thread` received until one with body `last`; panics on a duplicate
/// `seq` or a message out of order. Other events are returned separately.
async fn messages_until(
    session: &mut Session,
    thread: ThreadId,
    last: &str,
) -> (Vec<Message>, Vec<LiveEvent>) {
    let mut messages: Vec<Message> = Vec::new();
    let mut others = Vec::new();
    loop {
        match next(session).await {
            LiveEvent::Message(m) if m.thread_id == thread => {
                if let Some(prev) = messages.last() {
                    assert_eq!(m.seq, prev.seq + 1, "in order, no gap, no duplicate");
                }
                let done = m.body == last;
                messages.push(m);
                if done {
                    return (messages, others);
                }
            }
            other => others.push(other),
        }
    }
}

fn bodies(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.body.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_session_receives_another_users_posts_in_order() {
    let server = start_server().await;
    let (a, b, _, main) = two_nurses_in_a_group(&server).await;
    let mut live = b.live().connect().await.unwrap();

    let sent: Vec<String> = (1..=10).map(|i| format!("申し送り {i}")).collect();
    for body in &sent {
        a.post_text(main, body).await.unwrap();
    }
    let (received, _) = messages_until(&mut live, main, "申し送り 10").await;
    assert_eq!(bodies(&received), sent);
    assert_eq!(
        received.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(live.last_seqs()[&main], 10);

    // Posting over a session: the ack is the stored message, and a retry with the same
    // client_msg_id answers with the original instead of posting twice.
    let a_live = a
        .live()
        .follow_all(false)
        .follow(main, 10)
        .connect()
        .await
        .unwrap();
    let req = PostMessage {
        body: "ソケットから".into(),
        client_msg_id: "retry-me-1".into(),
        reply_to: None,
        mentions: Vec::new(),
        attachments: Vec::new(),
    };
    let first = a_live.post_message(main, &req).await.unwrap();
    assert_eq!(
        (first.seq, first.client_msg_id.as_str()),
        (11, "retry-me-1")
    );
    let again = a_live.post_message(main, &req).await.unwrap();
    assert_eq!(again.id, first.id);
    let (received, _) = messages_until(&mut live, main, "ソケットから").await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].id, first.id);

    // A refused post fails with the server's code and the session carries on.
    let refused = a_live.post(ThreadId::new(), "nowhere").await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::NotFound), "{refused}");
    a_live.post(main, "still fine").await.unwrap();
    let (received, _) = messages_until(&mut live, main, "still fine").await;
    assert_eq!(
        received.len(),
        1,
        "the retried post was not delivered twice"
    );
    a_live.close().await.unwrap();
    live.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_stops_reading_loses_nothing() {
    let server = start_server().await;
    let (a, b, _, main) = two_nurses_in_a_group(&server).await;
    // Room for a handful of events only: the rest is turned away and fetched again by
    // resuming once the caller reads.
    let mut live = b.live().buffer(2).backoff(quick()).connect().await.unwrap();
    for i in 1..=20 {
        a.post_text(main, &format!("burst {i}")).await.unwrap();
    }
    let (received, _) = messages_until(&mut live, main, "burst 20").await;
    assert_eq!(
        received.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
}

/// A TCP proxy the test can cut, as a network failure would: established connections
/// are dropped without a close handshake and new ones are refused until restored.
struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
}

struct ProxyState {
    up: bool,
    links: Vec<tokio::task::AbortHandle>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProxyState {
            up: true,
            links: Vec::new(),
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut state = shared.lock().unwrap();
                if !state.up {
                    continue; // dropped: the client sees the connection close at once
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                state.links.push(link.abort_handle());
            }
        });
        Proxy { addr, state }
    }

    fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.up = false;
        for link in state.links.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.state.lock().unwrap().up = true;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_resumes_with_exactly_the_missed_messages() {
    let server = start_server().await;
    let (a, b, _, main) = two_nurses_in_a_group(&server).await;
    let proxy = Proxy::start(server.addr).await;
    // B talks to the server only through the proxy, REST included.
    let b_via_proxy = Client::new(&format!("http://{}", proxy.addr)).unwrap();
    b_via_proxy.set_tokens(b.tokens());
    let mut live = b_via_proxy.live().backoff(quick()).connect().await.unwrap();

    for i in 1..=3 {
        a.post_text(main, &format!("before {i}")).await.unwrap();
    }
    let (before, _) = messages_until(&mut live, main, "before 3").await;
    assert_eq!(before.len(), 3);

    proxy.cut();
    // The loss is noticed, and at least one reconnect attempt fails while cut off.
    let mut losses = 0;
    while losses < 2 {
        match next(&mut live).await {
            LiveEvent::Disconnected { .. } => losses += 1,
            LiveEvent::Message(m) => panic!("nothing new was posted, got #{}", m.seq),
            _ => {}
        }
    }
    let missed: Vec<String> = (1..=5).map(|i| format!("while away {i}")).collect();
    for body in &missed {
        a.post_text(main, body).await.unwrap();
    }
    proxy.restore();

    // Exactly the missed messages, in order, then the caught-up signal.
    let mut caught_up = Vec::new();
    loop {
        match next(&mut live).await {
            LiveEvent::Message(m) => caught_up.push(m),
            LiveEvent::Connected {
                threads,
                reconnected,
            } => {
                assert!(reconnected);
                assert_eq!(threads[&main], 8);
                break;
            }
            LiveEvent::Disconnected { .. } | LiveEvent::Update(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(bodies(&caught_up), missed);
    assert_eq!(
        caught_up.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![4, 5, 6, 7, 8]
    );
    // Nothing comes twice: the next message is the next one posted.
    a.post_text(main, "after").await.unwrap();
    let (after, _) = messages_until(&mut live, main, "after").await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].seq, 9);

    // A drop forced from the client side, racing with posts: still each exactly once.
    live.force_reconnect().await.unwrap();
    for i in 1..=3 {
        a.post_text(main, &format!("racing {i}")).await.unwrap();
    }
    let mut seen_reconnect = false;
    let mut racing = Vec::new();
    while !(seen_reconnect && racing.len() == 3) {
        match next(&mut live).await {
            LiveEvent::Message(m) => racing.push(m),
            LiveEvent::Connected { reconnected, .. } => seen_reconnect = reconnected,
            _ => {}
        }
    }
    assert_eq!(
        racing.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    a.post_text(main, "last").await.unwrap();
    let (last, _) = messages_until(&mut live, main, "last").await;
    assert_eq!(last.len(), 1);
    assert_eq!(live.last_seqs()[&main], 13);

    // A later session resumes exactly where this one stopped.
    let saved = live.last_seqs().clone();
    live.close().await.unwrap();
    a.post_text(main, "between sessions").await.unwrap();
    let mut again = Session::connect(&b, saved).await.unwrap();
    let (resumed, _) = messages_until(&mut again, main, "between sessions").await;
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].seq, 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_with_an_error_when_its_sign_in_is_revoked() {
    let server = start_server().await;
    let (_, b, _, _) = two_nurses_in_a_group(&server).await;
    let mut live = b.live().backoff(quick()).connect().await.unwrap();
    // The same sign-in ended from elsewhere (another device running `logout`).
    let elsewhere = Client::new(&server.base).unwrap();
    elsewhere.set_tokens(b.tokens());
    elsewhere.logout().await.unwrap();
    let error = loop {
        match tokio::time::timeout(ARRIVAL, live.next_event())
            .await
            .expect("the session ends within the bound")
        {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            error.code(),
            Some(ErrorCode::InvalidRefreshToken | ErrorCode::Unauthenticated)
        ),
        "{error:?}"
    );
    assert!(matches!(live.next_event().await, Err(Error::SessionClosed)));
    assert!(matches!(
        live.post(ThreadId::new(), "x").await,
        Err(Error::SessionClosed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_works_with_a_private_ca_and_is_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.tls.cert_file = Some(cert_path);
        c.tls.key_file = Some(key_path);
    })
    .await;
    let base = app.base.clone();
    assert!(base.starts_with("https://"));

    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let client = Client::with_http(&base, http).unwrap();
    client.login("admin", ADMIN_PASSWORD, None).await.unwrap();
    assert_eq!(client.websocket_url().unwrap().scheme(), "wss");

    // Trusting the private CA: a working session.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut live = client
        .live()
        .tls_config(Arc::new(tls))
        .connect()
        .await
        .unwrap();
    let group = client
        .create_group(&CreateGroup {
            kind: GroupKind::Free,
            name: "TLS".into(),
            description: None,
            patient: None,
        })
        .await
        .unwrap();
    let posted = live.post(group.main_thread_id, "over wss").await.unwrap();
    let (received, _) = messages_until(&mut live, group.main_thread_id, "over wss").await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].id, posted.id);
    live.close().await.unwrap();

    // With the public roots only, the handshake is refused (and nothing panics over
    // which crypto provider to use).
    let refused = client.live().connect().await.unwrap_err();
    assert!(matches!(refused, Error::WebSocket(_)), "{refused:?}");
}
