//! Background duties that keep live connections honest across processes: the database
//! is the log, so what another process changed is found there even without the bus.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::shared::Shared;
use crate::audit;
use crate::bus::{Audience, Event, Payload};
use crate::clock::now_ms;
use crate::store::sessions;

/// How far back each poll looks. Wider than any sane clock skew between nodes; the
/// `seen` set keeps a revocation from being announced twice.
const WINDOW_MS: i64 = 60_000;

impl Shared {
    /// Polls the sessions table once a second and closes this node's sockets of every
    /// session revoked anywhere — by another node, or by a shell command such as
    /// `tsunagu-server admin reset-password` on a single-node install without a cluster
    /// bus. With NATS the same news usually arrives first on the bus; this poll is the
    /// floor that does not depend on it.
    ///
    /// The same poll reads membership changes from the audit log (written in the same
    /// transaction as the change) and tells the affected users' sockets here to reload
    /// what they see: a member removed on another node stops receiving this node's
    /// posts within a second even while the cluster bus is away.
    pub(super) fn spawn_live_watch(&self) -> tokio::task::JoinHandle<()> {
        let shared = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut seen: HashMap<String, i64> = HashMap::new();
            let mut audit_cursor: Option<i64> = None;
            loop {
                tick.tick().await;
                shared.poll_access_changes(&mut audit_cursor).await;
                let now = now_ms();
                let rows = match shared.store().conn().await {
                    Ok(mut conn) => sessions::revoked_since(&mut conn, now - WINDOW_MS).await,
                    Err(e) => Err(e),
                };
                match rows {
                    Ok(rows) => {
                        for (session_id, user_id, region_id) in rows {
                            if seen.insert(session_id.clone(), now).is_some() {
                                continue;
                            }
                            shared.bus().hub().deliver(Arc::new(Event {
                                region_id,
                                audience: Audience {
                                    users: vec![user_id.clone()],
                                    ..Default::default()
                                },
                                payload: Payload::SessionsRevoked {
                                    user_id,
                                    session_id: Some(session_id),
                                },
                            }));
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "revocation watch: poll failed"),
                }
                seen.retain(|_, at| *at > now - 2 * WINDOW_MS);
            }
        })
    }

    /// Reloads the visibility of local sockets whose users' memberships changed since
    /// `cursor` (the audit seq seen last; `None` starts from now).
    async fn poll_access_changes(&self, cursor: &mut Option<i64>) {
        let Ok(mut conn) = self.store().conn().await else {
            return;
        };
        let Some(after) = *cursor else {
            if let Ok(seq) = audit::last_seq(&mut conn).await {
                *cursor = Some(seq);
            }
            return;
        };
        match audit::access_changes_after(&mut conn, after).await {
            Ok(rows) => {
                for (seq, region_id, user_id) in rows {
                    *cursor = Some(seq);
                    self.bus().hub().deliver(Arc::new(Event {
                        region_id: region_id.unwrap_or_default(),
                        audience: Audience {
                            users: vec![user_id.clone()],
                            ..Default::default()
                        },
                        payload: Payload::AccessChanged { user_id },
                    }));
                }
            }
            Err(e) => tracing::debug!(error = %e, "access watch: poll failed"),
        }
    }
}
