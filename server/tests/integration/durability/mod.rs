//! Durability across `kill -9`: every acknowledged post survives, seqs stay gap-free, and
//! retrying the unacknowledged ones with the same `client_msg_id` never duplicates.
//! Runs the real `tsunagu-server` binary as a separate process and kills it hard.

use std::time::Duration;

use tsunagu_client::Client;
use tsunagu_protocol::accounts::{CreateUser, Profession, UserRole};
use tsunagu_protocol::ids::ThreadId;
use tsunagu_protocol::messaging::{CreateGroup, GroupKind, PostMessage};
use tsunagu_testkit::{
    each_backend, test_config, Backend, PgDatabase, ServerProcess, ADMIN_PASSWORD,
};

use crate::SERVER_BIN;

each_backend!(acknowledged_posts_survive_kill_9);

fn post(client_msg_id: String) -> PostMessage {
    PostMessage {
        body: format!("経過記録 {client_msg_id}"),
        client_msg_id,
        reply_to: None,
        mentions: vec![],
        attachments: vec![],
    }
}

async fn acknowledged_posts_survive_kill_9(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auth.account_burst = 1000;
    // Dropped (with the database) when the test ends, whatever the outcome.
    let _pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let db = PgDatabase::create("tsunagu_kill").await;
            config.database_url = Some(db.url.clone());
            Some(db)
        }
    };
    let mut server = ServerProcess::start(SERVER_BIN, &config, None, &[]).await;
    let admin = Client::new(&server.base).unwrap();
    admin.login("admin", ADMIN_PASSWORD, None).await.unwrap();
    admin
        .create_user(&CreateUser {
            login: "kill.nurse".into(),
            display_name: "看護師".into(),
            display_name_kana: None,
            password: "a long enough password".into(),
            profession: Profession::Nurse,
            organization_id: None,
            role: Some(UserRole::User),
            must_change_password: Some(false),
        })
        .await
        .unwrap();
    let nurse = Client::new(&server.base).unwrap();
    nurse
        .login("kill.nurse", "a long enough password", None)
        .await
        .unwrap();
    let group = nurse
        .create_group(&CreateGroup {
            kind: GroupKind::Free,
            name: "kill -9".into(),
            description: None,
            patient: None,
        })
        .await
        .unwrap();
    let thread: ThreadId = group.main_thread_id;

    // Three posters hammer the thread; the server is killed while they are at it.
    let mut posters = Vec::new();
    for p in 0..3 {
        let nurse = nurse.clone();
        posters.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut unacked = Vec::new();
            for i in 0..400 {
                let id = format!("p{p}-{i}");
                match nurse.post_message(thread, &post(id.clone())).await {
                    Ok(m) => acked.push((id, m.id, m.seq)),
                    Err(_) => {
                        unacked.push(id);
                        break;
                    }
                }
            }
            (acked, unacked)
        }));
    }
    // Kill once some posts are through (bounded polling on the server's own answer).
    for _ in 0..600 {
        let page = nurse.list_messages(thread, None, None, Some(1)).await;
        if page
            .map(|p| p.messages.first().map(|m| m.seq).unwrap_or(0) >= 60)
            .unwrap_or(false)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill9();
    let mut acked = Vec::new();
    let mut unacked = Vec::new();
    for p in posters {
        let (a, u) = p.await.unwrap();
        acked.extend(a);
        unacked.extend(u);
    }
    assert!(
        acked.len() >= 60,
        "the kill happened mid-stream ({} acked)",
        acked.len()
    );

    // Restart on the same data; the tokens still work (same key, same sessions).
    let mut server = ServerProcess::start(SERVER_BIN, &config, None, &[]).await;
    let nurse2 = Client::new(&server.base).unwrap();
    nurse2.set_tokens(nurse.tokens());
    // Retry what was never acknowledged, with the same ids: at most once each.
    for id in &unacked {
        nurse2
            .post_message(thread, &post(id.clone()))
            .await
            .unwrap();
    }
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = nurse2
            .list_messages(thread, Some(after), None, Some(200))
            .await
            .unwrap();
        let Some(last) = page.messages.last() else {
            break;
        };
        after = last.seq;
        all.extend(page.messages);
    }
    let seqs: Vec<i64> = all.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=all.len() as i64).collect::<Vec<_>>(),
        "gap-free after the crash"
    );
    let mut ids: Vec<&str> = all.iter().map(|m| m.client_msg_id.as_str()).collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "no duplicates");
    for (id, message_id, seq) in &acked {
        let found = all
            .iter()
            .find(|m| &m.client_msg_id == id)
            .unwrap_or_else(|| panic!("acked {id} lost"));
        assert_eq!(
            (&found.id, found.seq),
            (message_id, *seq),
            "acked {id} changed"
        );
    }
    for id in &unacked {
        assert!(
            all.iter().any(|m| &m.client_msg_id == id),
            "retried {id} is there"
        );
    }
    server.kill9();
}
