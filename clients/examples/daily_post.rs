//! A third-party app that posts a daily message to the main timeline of every group its
//! app account was added to: the visiting-schedule system's "tomorrow's visits" post.
//!
//! ```sh
//! TSUNAGU_SERVER=https://tsunagu.example.jp \
//! TSUNAGU_CLIENT_ID=tsa_… TSUNAGU_CLIENT_SECRET=tss_… \
//! cargo run -p tsunagu-client --example daily_post -- "明日の訪問予定を登録しました"
//! ```
//!
//! The app needs `groups:read` and `messages:write`. The `client_msg_id` is derived from
//! the date and the group, so running the job twice on one day posts once.

use tsunagu_client::protocol::messaging::PostMessage;
use tsunagu_client::{AppCredentials, Client};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = std::env::var("TSUNAGU_SERVER").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let credentials = AppCredentials::secret(
        std::env::var("TSUNAGU_CLIENT_ID")?,
        std::env::var("TSUNAGU_CLIENT_SECRET")?,
    )
    .with_scope("groups:read messages:write");
    let text = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "本日の連携処理が完了しました".into());
    let app = Client::app(&server, credentials)?;
    let day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        / 86_400;
    for group in app.list_groups().await?.groups {
        if group.archived {
            continue;
        }
        let message = app
            .post_message(
                group.main_thread_id,
                &PostMessage {
                    body: text.clone(),
                    client_msg_id: format!("daily-{day}-{}", group.id),
                    reply_to: None,
                    mentions: Vec::new(),
                    attachments: Vec::new(),
                },
            )
            .await?;
        println!("{}: #{} posted", group.id, message.seq);
    }
    Ok(())
}
