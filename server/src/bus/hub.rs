//! This node's subscriber registry: which live connection watches which thread, group
//! and user. An event wakes only the connections registered under its audience's keys,
//! so the cost of a post grows with its audience, not with everyone online (the same
//! idea as conduwuit's prefix watchers).
//!
//! Each connection has a bounded inbox. A full inbox is never silently skipped: the
//! connection is marked lagged and, when it next looks, asks its client to resync.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use super::{Event, Payload};

type ConnId = u64;

struct Subscriber {
    tx: mpsc::Sender<Arc<Event>>,
    lagged: Arc<AtomicBool>,
    keys: Keys,
}

#[derive(Default)]
struct Keys {
    user: Option<String>,
    threads: Vec<String>,
    groups: Vec<String>,
}

#[derive(Default)]
struct Registry {
    next_id: ConnId,
    conns: HashMap<ConnId, Subscriber>,
    by_thread: HashMap<String, HashSet<ConnId>>,
    by_group: HashMap<String, HashSet<ConnId>>,
    by_user: HashMap<String, HashSet<ConnId>>,
}

fn add(index: &mut HashMap<String, HashSet<ConnId>>, key: &str, id: ConnId) {
    index.entry(key.to_owned()).or_default().insert(id);
}

fn remove(index: &mut HashMap<String, HashSet<ConnId>>, key: &str, id: ConnId) {
    if let Some(set) = index.get_mut(key) {
        set.remove(&id);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

impl Registry {
    fn unindex(&mut self, id: ConnId) {
        let Some(sub) = self.conns.get_mut(&id) else {
            return;
        };
        let keys = std::mem::take(&mut sub.keys);
        for t in &keys.threads {
            remove(&mut self.by_thread, t, id);
        }
        for g in &keys.groups {
            remove(&mut self.by_group, g, id);
        }
        if let Some(u) = &keys.user {
            remove(&mut self.by_user, u, id);
        }
    }
}

/// The registry. Cheap to share; all operations hold its lock only briefly and never
/// across an await.
pub struct Hub {
    inbox_capacity: usize,
    registry: RwLock<Registry>,
}

impl Hub {
    pub fn new(inbox_capacity: usize) -> Self {
        Hub {
            inbox_capacity: inbox_capacity.max(16),
            registry: RwLock::new(Registry::default()),
        }
    }

    /// A new connection's inbox. It receives nothing until [`Subscription::watch`]
    /// names its keys, except node-wide catch-up events.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let (tx, rx) = mpsc::channel(self.inbox_capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        let mut reg = self.registry.write().unwrap_or_else(|e| e.into_inner());
        reg.next_id += 1;
        let id = reg.next_id;
        reg.conns.insert(
            id,
            Subscriber {
                tx,
                lagged: lagged.clone(),
                keys: Keys::default(),
            },
        );
        Subscription {
            id,
            hub: self.clone(),
            rx,
            lagged,
        }
    }

    /// Hands `event` to the connections in its audience (every connection for a
    /// catch-up). Never waits.
    pub fn deliver(&self, event: Arc<Event>) {
        let reg = self.registry.read().unwrap_or_else(|e| e.into_inner());
        let offer = |id: &ConnId| {
            if let Some(sub) = reg.conns.get(id) {
                if let Err(mpsc::error::TrySendError::Full(_)) = sub.tx.try_send(event.clone()) {
                    sub.lagged.store(true, Ordering::Release);
                }
            }
        };
        if matches!(event.payload, Payload::CatchUp) {
            reg.conns.keys().for_each(offer);
            return;
        }
        let a = &event.audience;
        let threads = a.thread_id.as_ref().and_then(|t| reg.by_thread.get(t));
        let groups = a.group_id.as_ref().and_then(|g| reg.by_group.get(g));
        let users: Vec<&HashSet<ConnId>> =
            a.users.iter().filter_map(|u| reg.by_user.get(u)).collect();
        // A connection can sit under several keys: wake it once.
        let sets = threads.into_iter().chain(groups).chain(users);
        let mut seen: Option<HashSet<ConnId>> = None;
        let several =
            usize::from(threads.is_some()) + usize::from(groups.is_some()) + a.users.len() > 1;
        for set in sets {
            for id in set {
                if several && !seen.get_or_insert_with(HashSet::new).insert(*id) {
                    continue;
                }
                offer(id);
            }
        }
        metrics::counter!("tsunagu_bus_events_total").increment(1);
    }

    /// Connections registered right now (for metrics and tests).
    pub fn connections(&self) -> usize {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .conns
            .len()
    }
}

/// One connection's place in the hub; dropping it unregisters.
pub struct Subscription {
    id: ConnId,
    hub: Arc<Hub>,
    rx: mpsc::Receiver<Arc<Event>>,
    lagged: Arc<AtomicBool>,
}

impl Subscription {
    /// Replaces the keys this connection is woken for.
    pub fn watch<'a>(
        &self,
        user_id: &str,
        threads: impl IntoIterator<Item = &'a String>,
        groups: impl IntoIterator<Item = &'a String>,
    ) {
        let keys = Keys {
            user: Some(user_id.to_owned()),
            threads: threads.into_iter().cloned().collect(),
            groups: groups.into_iter().cloned().collect(),
        };
        let mut reg = self.hub.registry.write().unwrap_or_else(|e| e.into_inner());
        reg.unindex(self.id);
        for t in &keys.threads {
            add(&mut reg.by_thread, t, self.id);
        }
        for g in &keys.groups {
            add(&mut reg.by_group, g, self.id);
        }
        add(&mut reg.by_user, user_id, self.id);
        if let Some(sub) = reg.conns.get_mut(&self.id) {
            sub.keys = keys;
        }
    }

    /// The next event, or `None` when the hub is gone.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        self.rx.recv().await
    }

    /// Whether an event was dropped because the inbox was full: the connection must
    /// resync its client, never skip silently.
    pub fn lagged(&self) -> bool {
        self.lagged.load(Ordering::Acquire)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut reg = self.hub.registry.write().unwrap_or_else(|e| e.into_inner());
        reg.unindex(self.id);
        reg.conns.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{Audience, Payload};

    fn event(thread: Option<&str>, group: Option<&str>, users: &[&str]) -> Arc<Event> {
        Arc::new(Event {
            region_id: "r".into(),
            audience: Audience {
                thread_id: thread.map(Into::into),
                group_id: group.map(Into::into),
                users: users.iter().map(|u| u.to_string()).collect(),
            },
            payload: Payload::AccessChanged {
                user_id: "x".into(),
            },
        })
    }

    #[tokio::test]
    async fn an_event_wakes_only_the_connections_in_its_audience() {
        let hub = Arc::new(Hub::new(16));
        let mut a = hub.subscribe();
        let mut b = hub.subscribe();
        a.watch("ua", &["t1".to_string()], &["g1".to_string()]);
        b.watch("ub", &["t2".to_string()], &["g2".to_string()]);
        hub.deliver(event(Some("t1"), None, &[]));
        assert!(a.rx.try_recv().is_ok());
        assert!(b.rx.try_recv().is_err());
        hub.deliver(event(None, Some("g2"), &[]));
        assert!(a.rx.try_recv().is_err());
        assert!(b.rx.try_recv().is_ok());
        hub.deliver(event(None, None, &["ua"]));
        assert!(a.rx.try_recv().is_ok());
        assert!(b.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_connection_under_several_keys_is_woken_once() {
        let hub = Arc::new(Hub::new(16));
        let mut a = hub.subscribe();
        a.watch("ua", &["t1".to_string()], &["g1".to_string()]);
        hub.deliver(event(Some("t1"), Some("g1"), &["ua"]));
        assert!(a.rx.try_recv().is_ok());
        assert!(a.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn new_keys_replace_the_old_ones_and_drop_unregisters() {
        let hub = Arc::new(Hub::new(16));
        let mut a = hub.subscribe();
        a.watch("ua", &["t1".to_string()], &[]);
        a.watch("ua", &["t2".to_string()], &[]);
        hub.deliver(event(Some("t1"), None, &[]));
        assert!(a.rx.try_recv().is_err());
        hub.deliver(event(Some("t2"), None, &[]));
        assert!(a.rx.try_recv().is_ok());
        drop(a);
        assert_eq!(hub.connections(), 0);
        assert!(hub.registry.read().unwrap().by_thread.is_empty());
        assert!(hub.registry.read().unwrap().by_user.is_empty());
    }

    #[tokio::test]
    async fn a_full_inbox_marks_the_connection_lagged() {
        let hub = Arc::new(Hub::new(16));
        let a = hub.subscribe();
        a.watch("ua", &["t1".to_string()], &[]);
        for _ in 0..17 {
            hub.deliver(event(Some("t1"), None, &[]));
        }
        assert!(a.lagged());
    }

    #[tokio::test]
    async fn catch_up_reaches_every_connection() {
        let hub = Arc::new(Hub::new(16));
        let mut a = hub.subscribe();
        let mut b = hub.subscribe();
        hub.deliver(Arc::new(Event {
            region_id: String::new(),
            audience: Audience::default(),
            payload: Payload::CatchUp,
        }));
        assert!(a.rx.try_recv().is_ok());
        assert!(b.rx.try_recv().is_ok());
    }
}
