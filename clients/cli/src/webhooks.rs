//! `tsunagu admin webhooks …`: an API client's webhooks, their deliveries and
//! redelivery (region administrators). Human output by default, `--json` for scripts.

use clap::Subcommand;
use tsunagu_client::protocol::ids::{ApiClientId, WebhookDeliveryId, WebhookId};
use tsunagu_client::protocol::webhooks::{
    CreateWebhook, DeliveryStatus, UpdateWebhook, Webhook, WebhookDelivery, WebhookEventType,
};
use tsunagu_client::Client;

use super::{print_json, Failure};

fn event_type(s: &str) -> Result<WebhookEventType, String> {
    WebhookEventType::parse(s).ok_or_else(|| {
        let all: Vec<&str> = WebhookEventType::ALL.iter().map(|e| e.as_str()).collect();
        format!("unknown event {s:?}; one of {}", all.join(", "))
    })
}

fn delivery_status(s: &str) -> Result<DeliveryStatus, String> {
    DeliveryStatus::parse(s).ok_or_else(|| "one of pending, delivered, dead".to_owned())
}

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// Add a webhook to an API client; prints its signing secret once.
    Create {
        /// The API client's id.
        #[arg(long)]
        client: ApiClientId,
        /// Where to send events (https://…).
        #[arg(long)]
        url: String,
        /// An event to subscribe to (repeat for several): message.created,
        /// message.edited, message.deleted, file.uploaded, member.added, member.removed,
        /// group.archived.
        #[arg(long = "event", required = true, value_parser = event_type)]
        events: Vec<WebhookEventType>,
    },
    /// List an API client's webhooks.
    List {
        #[arg(long)]
        client: ApiClientId,
    },
    /// Show one webhook.
    Show {
        #[arg(long)]
        client: ApiClientId,
        webhook: WebhookId,
    },
    /// Change a webhook's URL or events, or pause / resume it.
    Update {
        #[arg(long)]
        client: ApiClientId,
        webhook: WebhookId,
        #[arg(long)]
        url: Option<String>,
        /// Replaces the subscribed events (repeat for several).
        #[arg(long = "event", value_parser = event_type)]
        events: Vec<WebhookEventType>,
        /// Stop sending (the queue waits).
        #[arg(long, conflicts_with = "resume")]
        pause: bool,
        #[arg(long)]
        resume: bool,
    },
    /// Delete a webhook and its queue.
    Delete {
        #[arg(long)]
        client: ApiClientId,
        webhook: WebhookId,
    },
    /// Queue a `webhook.test` event.
    Test {
        #[arg(long)]
        client: ApiClientId,
        webhook: WebhookId,
    },
    /// Recent deliveries, newest first (`--status dead`: the dead letters).
    Deliveries {
        #[arg(long)]
        client: ApiClientId,
        webhook: WebhookId,
        #[arg(long, value_parser = delivery_status)]
        status: Option<DeliveryStatus>,
        #[arg(long)]
        limit: Option<i64>,
        /// Older than this queue position (the previous page's `next_before_seq`).
        #[arg(long)]
        before_seq: Option<i64>,
    },
    /// Send a delivered or dead delivery again.
    Redeliver {
        #[arg(long)]
        client: ApiClientId,
        webhook: WebhookId,
        delivery: WebhookDeliveryId,
    },
}

fn show(w: &Webhook) {
    let events: Vec<&str> = w.events.iter().map(|e| e.as_str()).collect();
    println!(
        "{}  {}  {}  [{}]",
        w.id,
        if w.active { "active" } else { "paused" },
        w.url,
        events.join(", ")
    );
}

fn show_delivery(d: &WebhookDelivery) {
    println!(
        "{:>6}  {}  {:<9}  {:<16}  attempts {:<3}  {}{}",
        d.seq,
        d.id,
        d.status.as_str(),
        d.event_type,
        d.attempts,
        d.last_status
            .map(|s| format!("HTTP {s}  "))
            .unwrap_or_default(),
        d.last_error.as_deref().unwrap_or("")
    );
}

pub async fn run(client: &Client, command: &WebhooksCommand, json: bool) -> Result<(), Failure> {
    match command {
        WebhooksCommand::Create {
            client: id,
            url,
            events,
        } => {
            let created = client
                .create_webhook(
                    *id,
                    &CreateWebhook {
                        url: url.clone(),
                        events: events.clone(),
                    },
                )
                .await?;
            if json {
                print_json(&created)?;
            } else {
                println!("Webhook {} created for {}.", created.id, created.url);
                println!(
                    "Signing secret (shown once, keep it safe): {}",
                    created.secret
                );
            }
        }
        WebhooksCommand::List { client: id } => {
            let list = client.list_webhooks(*id).await?;
            if json {
                print_json(&list)?;
            } else {
                list.webhooks.iter().for_each(show);
            }
        }
        WebhooksCommand::Show {
            client: id,
            webhook,
        } => {
            let w = client.get_webhook(*id, *webhook).await?;
            if json {
                print_json(&w)?;
            } else {
                show(&w);
            }
        }
        WebhooksCommand::Update {
            client: id,
            webhook,
            url,
            events,
            pause,
            resume,
        } => {
            let req = UpdateWebhook {
                url: url.clone(),
                events: (!events.is_empty()).then(|| events.clone()),
                active: if *pause {
                    Some(false)
                } else if *resume {
                    Some(true)
                } else {
                    None
                },
            };
            let w = client.update_webhook(*id, *webhook, &req).await?;
            if json {
                print_json(&w)?;
            } else {
                show(&w);
            }
        }
        WebhooksCommand::Delete {
            client: id,
            webhook,
        } => {
            client.delete_webhook(*id, *webhook).await?;
            if json {
                print_json(&serde_json::json!({ "deleted": webhook }))?;
            } else {
                println!("Webhook {webhook} deleted.");
            }
        }
        WebhooksCommand::Test {
            client: id,
            webhook,
        } => {
            let d = client.test_webhook(*id, *webhook).await?;
            if json {
                print_json(&d)?;
            } else {
                println!("Test event queued as delivery {}.", d.id);
            }
        }
        WebhooksCommand::Deliveries {
            client: id,
            webhook,
            status,
            limit,
            before_seq,
        } => {
            let list = client
                .webhook_deliveries(*id, *webhook, *status, *before_seq, *limit)
                .await?;
            if json {
                print_json(&list)?;
            } else {
                list.deliveries.iter().for_each(show_delivery);
                if let Some(next) = list.next_before_seq {
                    println!("(more: --before-seq {next})");
                }
            }
        }
        WebhooksCommand::Redeliver {
            client: id,
            webhook,
            delivery,
        } => {
            let d = client.redeliver(*id, *webhook, *delivery).await?;
            if json {
                print_json(&d)?;
            } else {
                println!("Queued again as delivery {}.", d.id);
            }
        }
    }
    Ok(())
}
