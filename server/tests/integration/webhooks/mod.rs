//! Webhooks: the outbox written with each change, delivery to a receiver on loopback
//! (an axum server in the test) with Standard Webhooks signatures, ordering, retries,
//! dead letters and redelivery, `kill -9`, the outbound address rules, visibility (never
//! a 内緒話; nothing more once the app leaves the group) and who may manage webhooks.

mod admin;
mod delivery;
mod safety;
mod visibility;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tsunagu_client::webhooks::{verify_now, Headers};
use tsunagu_client::Client;
use tsunagu_protocol::apps::{CreateApiClient, Scope};
use tsunagu_protocol::ids::{ApiClientId, UserId};
use tsunagu_protocol::messaging::AddMember;
use tsunagu_protocol::webhooks::{
    CreateWebhook, CreatedWebhook, DeliveryStatus, WebhookDelivery, WebhookEvent, WebhookEventType,
};
use tsunagu_server::config::Config;
use tsunagu_testkit::{spawn_app_with, Backend, TestApp};

/// Every event type.
pub const ALL_EVENTS: &[WebhookEventType] = WebhookEventType::ALL;

/// The configuration webhook tests run with: loopback receivers over plain HTTP are
/// allowed, retries are quick.
pub fn allow_loopback(config: &mut Config) {
    config.webhooks.allow_http = true;
    config.webhooks.allow_private_addresses = true;
    quick_retries(config);
}

/// Short timeouts and backoff, frequent polls.
pub fn quick_retries(config: &mut Config) {
    config.webhooks.poll_interval_ms = 50;
    config.webhooks.backoff_base_ms = 50;
    config.webhooks.backoff_max_secs = 1;
    config.webhooks.connect_timeout_secs = 1;
    config.webhooks.timeout_secs = 2;
}

pub async fn spawn_hooks(backend: Backend) -> TestApp {
    spawn_app_with(backend, allow_loopback).await
}

/// An API client with its app account, registered as a region administrator does it
/// (`POST /api/v1/admin/api-clients`).
pub struct App {
    /// The `{id}` of the webhook routes.
    pub client_id: ApiClientId,
    pub user_id: UserId,
    /// OAuth credentials, for tests that act as the app.
    pub oauth_client_id: String,
    pub oauth_secret: String,
}

pub async fn app_account(admin: &Client, name: &str) -> App {
    let created = admin
        .create_api_client(&CreateApiClient {
            name: format!("{name} 連携"),
            scopes: vec![Scope::MessagesRead, Scope::GroupsRead],
            description: None,
            jwks: None,
            requests_per_minute: None,
        })
        .await
        .expect("register the app");
    App {
        client_id: created.id,
        user_id: created.user_id,
        oauth_client_id: created.client_id,
        oauth_secret: created.client_secret,
    }
}

/// Adds the app account to a group, as a group owner does for any member.
pub async fn add_to_group(owner: &Client, group: tsunagu_protocol::ids::GroupId, app: &App) {
    owner
        .add_member(
            group,
            &AddMember {
                user_id: app.user_id,
                role: None,
                patient_side: None,
            },
        )
        .await
        .expect("add the app to the group");
}

pub async fn webhook(
    admin: &Client,
    app: &App,
    url: &str,
    events: &[WebhookEventType],
) -> CreatedWebhook {
    admin
        .create_webhook(
            app.client_id,
            &CreateWebhook {
                url: url.to_owned(),
                events: events.to_vec(),
            },
        )
        .await
        .expect("create webhook")
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Ok = 0,
    Fail = 1,
    /// Never answers.
    Hang = 2,
    Redirect = 3,
}

/// One request the receiver got, and whether it answered 2xx.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub accepted: bool,
}

#[derive(Default)]
struct ReceiverState {
    mode: AtomicU8,
    hits: Mutex<Vec<Hit>>,
}

/// An axum receiver on 127.0.0.1.
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mode = state.mode.load(Ordering::SeqCst);
    if mode == Mode::Hang as u8 {
        std::future::pending::<()>().await;
    }
    let accepted = mode == Mode::Ok as u8;
    state.hits.lock().unwrap().push(Hit {
        path: uri.path().to_owned(),
        headers,
        body,
        accepted,
    });
    match mode {
        m if m == Mode::Ok as u8 => StatusCode::NO_CONTENT.into_response(),
        m if m == Mode::Redirect as u8 => (
            StatusCode::TEMPORARY_REDIRECT,
            [(axum::http::header::LOCATION, "/elsewhere")],
        )
            .into_response(),
        _ => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .route("/elsewhere", axum::routing::post(receive))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            state,
            server,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// The accepted requests, verified with `secret` and parsed.
    pub fn accepted(&self, secret: &str) -> Vec<WebhookEvent> {
        self.hits()
            .iter()
            .filter(|h| h.accepted)
            .map(|h| verified(secret, h))
            .collect()
    }

    /// Waits (bounded) until `n` requests were accepted; returns them, verified.
    pub async fn wait_accepted(&self, secret: &str, n: usize) -> Vec<WebhookEvent> {
        wait_until(Duration::from_secs(30), || self.accepted(secret).len() >= n).await;
        let got = self.accepted(secret);
        assert!(
            got.len() >= n,
            "the receiver accepted {} of {n} deliveries: {:?}",
            got.len(),
            got.iter().map(|e| &e.event_type).collect::<Vec<_>>()
        );
        got
    }

    /// Waits (bounded) until at least `n` requests arrived, accepted or not.
    pub async fn wait_hits(&self, n: usize) -> Vec<Hit> {
        wait_until(Duration::from_secs(30), || self.hits().len() >= n).await;
        let hits = self.hits();
        assert!(hits.len() >= n, "{} of {n} requests arrived", hits.len());
        hits
    }
}

/// A request checked as a partner's receiver checks it: the signature over the exact
/// bytes, then the body.
pub fn verified(secret: &str, hit: &Hit) -> WebhookEvent {
    let headers = Headers::from_map(&hit.headers).expect("Standard Webhooks headers");
    let event = verify_now(secret, &headers, &hit.body, Duration::from_secs(300))
        .expect("the signature verifies");
    assert_eq!(headers.id, event.id, "webhook-id is the event id");
    event
}

/// Polls `done` every 20 ms until it holds or `limit` passes.
pub async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until the webhook has a delivery in `status` and returns the list.
pub async fn wait_for_status(
    admin: &Client,
    app: &App,
    created: &CreatedWebhook,
    status: DeliveryStatus,
    n: usize,
) -> Vec<WebhookDelivery> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = admin
            .webhook_deliveries(app.client_id, created.id, Some(status), None, None)
            .await
            .expect("deliveries")
            .deliveries;
        if list.len() >= n || Instant::now() > deadline {
            assert!(
                list.len() >= n,
                "{} of {n} deliveries are {status}",
                list.len()
            );
            return list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
