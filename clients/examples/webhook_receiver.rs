//! A tiny webhook receiver: verifies each request's Standard Webhooks signature,
//! ignores repeats (delivery is at least once), and prints what happened — ids and
//! types only, as a receiver's log should.
//!
//! ```sh
//! TSUNAGU_WEBHOOK_SECRET=whsec_… cargo run -p tsunagu-client --example webhook_receiver
//! # listens on 127.0.0.1:9000/webhook; put it behind HTTPS (a reverse proxy) and give
//! # its public https:// URL to `tsunagu admin webhooks create`.
//! ```

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use tsunagu_client::webhooks::{verify_now, Headers};

/// Event ids already handled, the most recent first out (a real app keeps them in its
/// database, in the same transaction as what it does with the event).
#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    const KEEP: usize = 10_000;

    /// `true` the first time an id is seen.
    fn first_time(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > Self::KEEP {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }
}

struct Receiver {
    secret: String,
    seen: Mutex<Seen>,
}

async fn webhook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    // Verify first, on the exact bytes received, before parsing anything.
    let Ok(h) = Headers::from_map(&headers) else {
        return StatusCode::BAD_REQUEST;
    };
    let event = match verify_now(&r.secret, &h, &body, Duration::from_secs(5 * 60)) {
        Ok(event) => event,
        Err(e) => {
            eprintln!("refused: {e}");
            return StatusCode::UNAUTHORIZED;
        }
    };
    if !r.seen.lock().unwrap().first_time(&event.id) {
        // Already handled: answer 2xx so that it is not sent again.
        return StatusCode::NO_CONTENT;
    }
    match event.event_type.as_str() {
        "message.created" | "message.edited" | "message.deleted" => println!(
            "{} {} thread {} seq {}",
            event.id,
            event.event_type,
            event.data["message"]["thread_id"],
            event.data["message"]["seq"]
        ),
        "file.uploaded" => println!("{} file.uploaded {}", event.id, event.data["file"]["id"]),
        other => println!("{} {other}", event.id),
    }
    // Answer quickly (within the server's timeout): do slow work after answering.
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let secret = std::env::var("TSUNAGU_WEBHOOK_SECRET")
        .expect("set TSUNAGU_WEBHOOK_SECRET to the webhook's whsec_… secret");
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:9000".into());
    let state = Arc::new(Receiver {
        secret,
        seen: Mutex::default(),
    });
    let app = Router::new()
        .route("/webhook", post(webhook))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("listening on http://{listen}/webhook");
    axum::serve(listener, app).await
}
