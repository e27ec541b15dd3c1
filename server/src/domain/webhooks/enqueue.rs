//! Putting events into the outbox, inside the transaction of the change.
//!
//! Each site that changes something an app may hear of calls [`enqueue`] once, as the
//! **last statement before its commit**: the change and its deliveries commit together
//! or not at all (the database is the log; nothing is sent for a rolled-back change,
//! nothing is lost for a committed one). Who hears of it is decided here, in the same
//! transaction, by THE audience rule: a webhook gets the event only if its app account
//! is in the `thread_audience` of the thread concerned — for a group event, the
//! group's main timeline. Apps are never in a 内緒話's audience (migration 0008's
//! trigger), so nothing of a 内緒話 is ever queued.
//!
//! Why last: queueing takes each receiving webhook's row lock (its `last_seq`, which
//! numbers its deliveries in commit order). Taken last and in id order, after every
//! other lock of the transaction (thread rows, the audit chain head), these locks
//! cannot take part in a deadlock on PostgreSQL.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};
use tsunagu_protocol::files::FileInfo;
use tsunagu_protocol::messaging::{Member, Message};
use tsunagu_protocol::webhooks::WebhookEventType;
use uuid::Uuid;

use crate::clock::{now_ms, rfc3339};
use crate::domain::error::Result;
use crate::store::webhooks::{self as store, NewDelivery};
use crate::store::Conn;

/// Whose audience decides who hears of an event.
#[derive(Debug, Clone)]
enum Scope {
    Thread(String),
    /// The group's main timeline.
    Group(String),
}

/// One change, as webhooks describe it.
#[derive(Debug, Clone)]
pub struct Event {
    kind: WebhookEventType,
    region_id: String,
    scope: Scope,
    data: Value,
}

impl Event {
    /// `message.created`, `message.edited` or `message.deleted`, with the message as
    /// the REST API shows it.
    pub fn message(kind: WebhookEventType, region_id: &str, message: &Message) -> Event {
        Event {
            kind,
            region_id: region_id.to_owned(),
            scope: Scope::Thread(message.thread_id.to_string()),
            data: json!({ "message": message }),
        }
    }

    /// `file.uploaded`, with the file's metadata.
    pub fn file_uploaded(region_id: &str, file: &FileInfo) -> Event {
        Event {
            kind: WebhookEventType::FileUploaded,
            region_id: region_id.to_owned(),
            scope: Scope::Thread(file.thread_id.to_string()),
            data: json!({ "file": file }),
        }
    }

    /// `member.added` or `member.removed`, with the member as `GET
    /// /groups/{id}/members` lists them.
    pub fn member(
        kind: WebhookEventType,
        region_id: &str,
        group_id: &str,
        member: &Member,
    ) -> Event {
        Event {
            kind,
            region_id: region_id.to_owned(),
            scope: Scope::Group(group_id.to_owned()),
            data: json!({ "group_id": group_id, "member": member }),
        }
    }

    /// `group.archived`. Only ids and the time: the patient profile is not pushed out.
    pub fn group_archived(region_id: &str, group_id: &str, archived_at: i64) -> Event {
        Event {
            kind: WebhookEventType::GroupArchived,
            region_id: region_id.to_owned(),
            scope: Scope::Group(group_id.to_owned()),
            data: json!({ "group_id": group_id, "archived_at": rfc3339(archived_at) }),
        }
    }
}

/// The body every webhook receives; serialised once per event.
pub(super) fn body(id: &str, kind: &str, created_at: i64, region_id: &str, data: &Value) -> String {
    json!({
        "id": id,
        "type": kind,
        "created_at": rfc3339(created_at),
        "region_id": region_id,
        "data": data,
    })
    .to_string()
}

/// Queues `events` for every webhook that may hear of them, in `tx`. Call it once per
/// change, as the last statement before the commit (see the module documentation).
/// Returns how many deliveries were queued.
pub async fn enqueue(tx: &mut Conn, events: Vec<Event>) -> Result<usize> {
    if events.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    // Regions without any active webhook (most) cost one indexed probe per call.
    let mut regions: HashMap<String, bool> = HashMap::new();
    let mut audiences: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut main_threads: HashMap<String, Option<String>> = HashMap::new();
    // Per webhook, in id order (the lock order), its new rows in event order.
    let mut per_webhook: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut prepared: Vec<(String, &'static str, String, String)> = Vec::new();
    for event in &events {
        let active = match regions.get(&event.region_id) {
            Some(a) => *a,
            None => {
                let a = store::region_has_active(tx, &event.region_id).await?;
                regions.insert(event.region_id.clone(), a);
                a
            }
        };
        if !active {
            continue;
        }
        let thread = match &event.scope {
            Scope::Thread(t) => Some(t.clone()),
            Scope::Group(g) => match main_threads.get(g) {
                Some(t) => t.clone(),
                None => {
                    let t = store::main_thread(tx, g).await?;
                    main_threads.insert(g.clone(), t.clone());
                    t
                }
            },
        };
        let Some(thread) = thread else { continue };
        if !audiences.contains_key(&thread) {
            let hooks = store::in_audience(tx, &event.region_id, &thread).await?;
            audiences.insert(thread.clone(), hooks);
        }
        let kind = event.kind.as_str();
        let receivers: Vec<&String> = audiences[&thread]
            .iter()
            .filter(|(_, events)| events.split(' ').any(|e| e == kind))
            .map(|(id, _)| id)
            .collect();
        if receivers.is_empty() {
            continue;
        }
        let event_id = Uuid::now_v7().to_string();
        let payload = body(&event_id, kind, now, &event.region_id, &event.data);
        let index = prepared.len();
        prepared.push((event_id, kind, thread, payload));
        for id in receivers {
            per_webhook.entry(id.clone()).or_default().push(index);
        }
    }
    let mut rows = Vec::new();
    for (webhook_id, indexes) in per_webhook {
        let first = store::take_seqs(tx, &webhook_id, indexes.len() as i64).await?;
        for (n, i) in indexes.into_iter().enumerate() {
            let (event_id, kind, thread, payload) = &prepared[i];
            rows.push(NewDelivery {
                id: Uuid::now_v7().to_string(),
                webhook_id: webhook_id.clone(),
                seq: first + n as i64,
                event_id: event_id.clone(),
                event_type: (*kind).to_owned(),
                thread_id: Some(thread.clone()),
                payload: payload.clone(),
                redelivery_of: None,
                created_at: now,
            });
        }
    }
    store::insert_deliveries(tx, &rows).await?;
    if !rows.is_empty() {
        metrics::counter!("tsunagu_webhook_events_queued_total").increment(rows.len() as u64);
    }
    Ok(rows.len())
}
