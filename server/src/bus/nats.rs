//! The cluster bus on core NATS.
//!
//! Why core NATS and not JetStream: the database is already the log. Every event is a
//! hint that something committed; a node that misses hints (NATS away, a slow
//! subscription, a full publish queue) asks its connections to catch up from the
//! database, which gives exactly what was missed without a second durable copy to
//! keep consistent. Subjects are `{prefix}.ev.{region_id}`; every node subscribes to
//! `{prefix}.ev.>` and its hub routes each event to the few local connections in its
//! audience. `no_echo` keeps a node from hearing itself (its hub already had the event).
//!
//! Loss handling, all ending in [`Payload::CatchUp`]:
//! - on every reconnect to NATS (this node may have missed events), locally, and
//!   announced to the cluster (others may have missed ours while we were away);
//! - when the NATS client reports a slow consumer on our subscription;
//! - when our own publish queue overflowed (announced once the queue drains).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Audience, Bus, BusHealth, Event, FrameKind, Hub, LiveFrame, Payload};
use crate::config::BusConfig;

/// Not connected yet since start-up.
const STARTING: u8 = 0;
const CONNECTED: u8 = 1;
const DEGRADED: u8 = 2;

/// The event as it crosses nodes.
#[derive(Serialize, Deserialize)]
struct Wire {
    /// The publishing node, for logs and as a second guard against echoes.
    origin: String,
    region_id: String,
    audience: Audience,
    payload: WirePayload,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "p", rename_all = "snake_case")]
enum WirePayload {
    Frame {
        kind: FrameKind,
        text: String,
    },
    AccessChanged {
        user_id: String,
    },
    SessionsRevoked {
        user_id: String,
        session_id: Option<String>,
    },
    CatchUp,
}

impl Wire {
    fn from_event(origin: &str, e: &Event) -> Wire {
        let payload = match &e.payload {
            Payload::Frame(f) => WirePayload::Frame {
                kind: f.kind.clone(),
                text: f.text.as_str().to_owned(),
            },
            Payload::AccessChanged { user_id } => WirePayload::AccessChanged {
                user_id: user_id.clone(),
            },
            Payload::SessionsRevoked {
                user_id,
                session_id,
            } => WirePayload::SessionsRevoked {
                user_id: user_id.clone(),
                session_id: session_id.clone(),
            },
            Payload::CatchUp => WirePayload::CatchUp,
        };
        Wire {
            origin: origin.to_owned(),
            region_id: e.region_id.clone(),
            audience: e.audience.clone(),
            payload,
        }
    }

    fn into_event(self) -> Event {
        let payload = match self.payload {
            WirePayload::Frame { kind, text } => Payload::Frame(Arc::new(LiveFrame {
                kind,
                text: text.into(),
            })),
            WirePayload::AccessChanged { user_id } => Payload::AccessChanged { user_id },
            WirePayload::SessionsRevoked {
                user_id,
                session_id,
            } => Payload::SessionsRevoked {
                user_id,
                session_id,
            },
            WirePayload::CatchUp => Payload::CatchUp,
        };
        Event {
            region_id: self.region_id,
            audience: self.audience,
            payload,
        }
    }
}

fn catch_up() -> Event {
    Event {
        region_id: String::new(),
        audience: Audience::default(),
        payload: Payload::CatchUp,
    }
}

struct Shared {
    node_id: String,
    hub: Arc<Hub>,
    health: AtomicU8,
    /// Events were dropped on the way out: announce a cluster-wide catch-up.
    overflowed: AtomicBool,
}

/// Cross-node fan-out over NATS. See the module docs.
pub struct NatsBus {
    shared: Arc<Shared>,
    out: mpsc::Sender<Event>,
    client: async_nats::Client,
}

impl NatsBus {
    /// Connects (or keeps trying in the background: a node starts and serves its own
    /// clients even while NATS is away).
    pub async fn connect(config: &BusConfig, hub: Arc<Hub>) -> anyhow::Result<NatsBus> {
        let node_id = uuid::Uuid::new_v4().to_string();
        let shared = Arc::new(Shared {
            node_id: node_id.clone(),
            hub,
            health: AtomicU8::new(STARTING),
            overflowed: AtomicBool::new(false),
        });
        let mut options = match &config.creds_file {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path).await?,
            None => async_nats::ConnectOptions::new(),
        };
        if let Some(token) = &config.token {
            use secrecy::ExposeSecret;
            options = options.token(token.expose_secret().to_owned());
        }
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            use secrecy::ExposeSecret;
            options = options.user_and_password(user.clone(), password.expose_secret().to_owned());
        }
        if let Some(ca) = &config.tls_ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let events = shared.clone();
        let (catch_tx, mut catch_rx) = mpsc::channel::<()>(4);
        options = options
            .require_tls(config.tls_required)
            .name(format!("tsunagu-{node_id}"))
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .ping_interval(Duration::from_secs(5))
            .connection_timeout(Duration::from_secs(3))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100 * attempts as u64).min(2_000))
            })
            .subscription_capacity(config.subscription_capacity.max(1024))
            .event_callback(move |event| {
                let shared = events.clone();
                let catch_tx = catch_tx.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            let was = shared.health.swap(CONNECTED, Ordering::AcqRel);
                            tracing::info!("cluster bus: connected");
                            metrics::gauge!("tsunagu_bus_connected").set(1.0);
                            // After an outage, or when clients connected before the
                            // bus did: they may have missed other nodes' events.
                            if was == DEGRADED
                                || (was == STARTING && shared.hub.connections() > 0)
                            {
                                let _ = catch_tx.try_send(());
                            }
                        }
                        async_nats::Event::Disconnected => {
                            shared.health.store(DEGRADED, Ordering::Release);
                            metrics::gauge!("tsunagu_bus_connected").set(0.0);
                            tracing::warn!("cluster bus: disconnected; serving local clients, catching up when it returns");
                        }
                        async_nats::Event::SlowConsumer(_) => {
                            tracing::warn!("cluster bus: events dropped on our subscription; catching up");
                            shared.hub.deliver(Arc::new(catch_up()));
                        }
                        other => tracing::info!(event = %other, "cluster bus"),
                    }
                }
            });
        let client = options.connect(config.url.as_str()).await?;
        let subject_root = format!("{}.ev", config.subject_prefix);

        // Inbound: every event of every region, routed by the local hub.
        let mut subscription = client.subscribe(format!("{subject_root}.>")).await?;
        let inbound = shared.clone();
        tokio::spawn(async move {
            while let Some(msg) = subscription.next().await {
                match serde_json::from_slice::<Wire>(&msg.payload) {
                    Ok(wire) if wire.origin != inbound.node_id => {
                        metrics::counter!("tsunagu_bus_received_total").increment(1);
                        inbound.hub.deliver(Arc::new(wire.into_event()));
                    }
                    Ok(_) => {}
                    Err(_) => tracing::warn!("cluster bus: unreadable event ignored"),
                }
            }
        });

        // Outbound: a bounded queue, so publishing never waits on the network.
        let (out, mut out_rx) = mpsc::channel::<Event>(config.publish_queue.max(64));
        let outbound = shared.clone();
        let publisher = client.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    biased;
                    Some(()) = catch_rx.recv() => {
                        // We were away: our clients may have missed others' events, and
                        // others may have missed ours.
                        outbound.hub.deliver(Arc::new(catch_up()));
                        catch_up()
                    }
                    e = out_rx.recv() => match e { Some(e) => e, None => break },
                };
                let subject = if event.region_id.is_empty() {
                    format!("{subject_root}._cluster")
                } else {
                    format!("{subject_root}.{}", event.region_id)
                };
                let body = match serde_json::to_vec(&Wire::from_event(&outbound.node_id, &event)) {
                    Ok(b) => b,
                    Err(_) => continue,
                };
                if publisher.publish(subject, body.into()).await.is_err() {
                    outbound.overflowed.store(true, Ordering::Release);
                }
                if out_rx.is_empty() && outbound.overflowed.swap(false, Ordering::AcqRel) {
                    let body =
                        serde_json::to_vec(&Wire::from_event(&outbound.node_id, &catch_up()))
                            .unwrap_or_default();
                    let _ = publisher
                        .publish(format!("{subject_root}._cluster"), body.into())
                        .await;
                }
            }
        });
        Ok(NatsBus {
            shared,
            out,
            client,
        })
    }
}

impl Bus for NatsBus {
    fn publish(&self, event: Event) {
        let event = Arc::new(event);
        self.shared.hub.deliver(event.clone());
        let owned = Event::clone(&event);
        if self.out.try_send(owned).is_err() {
            metrics::counter!("tsunagu_bus_publish_dropped_total").increment(1);
            self.shared.overflowed.store(true, Ordering::Release);
        }
    }

    fn hub(&self) -> &Arc<Hub> {
        &self.shared.hub
    }

    fn health(&self) -> BusHealth {
        match self.shared.health.load(Ordering::Acquire) {
            CONNECTED => BusHealth::Connected,
            _ => BusHealth::Degraded,
        }
    }

    fn flush(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            // Let the publisher take what is queued, then flush the client.
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while self.out.capacity() < self.out.max_capacity() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let _ = self.client.flush().await;
            })
            .await;
        })
    }
}
