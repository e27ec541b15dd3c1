//! Two `tsunagu-server` processes on one PostgreSQL database and a NATS server of the
//! test's own (so it can be stopped and started): posts cross nodes exactly once and in
//! order; a killed node's clients resume on the other with nothing lost or doubled;
//! NATS away for ten seconds loses nothing; membership changes and revocations reach
//! sockets on the other node; a shell command closes sockets on a running node.
//!
//! Needs PostgreSQL (`TSUNAGU_TEST_POSTGRES_URL`) and `nats-server` on the PATH or at
//! /usr/sbin/nats-server. Without them every test here shows as ignored, with the
//! reason; `TSUNAGU_TEST_REQUIRE_POSTGRES=1` (CI) makes them run, and fail if either is
//! missing. A binary of its own: it runs processes, not an in-process server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tsunagu_client::Client;
use tsunagu_protocol::accounts::{CreateUser, Profession, UserRole};
use tsunagu_protocol::ids::{GroupId, ThreadId, UserId};
use tsunagu_protocol::messaging::{AddMember, CreateGroup, GroupKind, PostMessage};
use tsunagu_protocol::ws::ServerFrame;
use tsunagu_server::config::Config;
use tsunagu_testkit::{
    cluster_only, free_port, test_config, PgDatabase, Received, ServerProcess, WsClient,
    ADMIN_PASSWORD, USER_PASSWORD,
};

const SERVER_BIN: &str = env!("CARGO_BIN_EXE_tsunagu-server");

cluster_only!(
    a_post_on_node_a_reaches_clients_on_node_b_exactly_once_in_order,
    clients_of_a_killed_node_resume_on_the_other_with_nothing_lost_or_doubled,
    nats_away_for_ten_seconds_loses_no_acknowledged_post,
    a_member_removed_on_node_a_loses_access_on_node_b_within_a_second,
    a_password_reset_from_a_shell_closes_the_sockets_on_a_running_node,
    a_removal_during_a_nats_outage_still_cuts_the_other_nodes_socket,
);

fn nats_binary() -> PathBuf {
    let candidates = [
        PathBuf::from("/usr/sbin/nats-server"),
        PathBuf::from("/usr/bin/nats-server"),
    ];
    if let Some(p) = candidates.iter().find(|p| p.exists()) {
        return p.clone();
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("nats-server"))
                .find(|p| p.exists())
        })
        .expect("this test needs nats-server (apt-get install nats-server)")
}

/// A NATS server of this test's own on a fixed port, so it can come back where it was.
struct Nats {
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Nats {
    async fn start() -> Nats {
        let mut nats = Nats {
            bin: nats_binary(),
            port: free_port(),
            child: None,
        };
        nats.up().await;
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn up(&mut self) {
        let child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nats-server did not start");
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.down();
    }
}

/// Everything one scenario needs: two nodes, one database, one NATS.
struct Cluster {
    nats: Nats,
    a: ServerProcess,
    b: ServerProcess,
    /// The nodes' configuration, for one-off commands against the same cluster.
    config: Config,
    _pg: PgDatabase,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let pg = PgDatabase::create("tsunagu_cluster").await;
        let nats = Nats::start().await;
        // The nodes share the data dir: the same signing keys and KEKs (as a cluster
        // must), and the local blob directory stands in for shared object storage.
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.database_url = Some(pg.url.clone());
        config.database.max_connections = 8;
        config.bus.kind = "nats".into();
        config.bus.url = nats.url();
        config.auth.account_burst = 1000;
        config.auth.ip_burst = 100_000;
        let a = ServerProcess::start(SERVER_BIN, &config, None, &[]).await;
        let b = ServerProcess::start(SERVER_BIN, &config, None, &[]).await;
        Cluster {
            nats,
            a,
            b,
            config,
            _pg: pg,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        self.a.kill9();
        self.b.kill9();
        self.nats.down();
    }
}

/// An owner and `n` members of one free group, signed in on node `base` (the kit's
/// care team lives in one in-process server; this one spans the nodes).
struct Crew {
    owner: Client,
    members: Vec<(UserId, Client, String)>,
    group: GroupId,
    thread: ThreadId,
}

async fn crew(base: &str, n: usize) -> Crew {
    let admin = Client::new(base).unwrap();
    admin.login("admin", ADMIN_PASSWORD, None).await.unwrap();
    let mut users = Vec::new();
    for i in 0..=n {
        let login = format!("c{}.{i}", uuid::Uuid::new_v4().simple());
        let u = admin
            .create_user(&CreateUser {
                login: login.clone(),
                display_name: format!("看護師{i}"),
                display_name_kana: None,
                password: USER_PASSWORD.into(),
                profession: Profession::Nurse,
                organization_id: None,
                role: Some(UserRole::User),
                must_change_password: Some(false),
            })
            .await
            .unwrap();
        let c = Client::new(base).unwrap();
        c.login(&login, USER_PASSWORD, None).await.unwrap();
        users.push((u.id, c, login));
    }
    let (_, owner, _) = users.remove(0);
    let group = owner
        .create_group(&CreateGroup {
            kind: GroupKind::Free,
            name: "クラスタ".into(),
            description: None,
            patient: None,
        })
        .await
        .unwrap();
    for (id, _, _) in &users {
        owner
            .add_member(
                group.id,
                &AddMember {
                    user_id: *id,
                    role: None,
                    patient_side: None,
                },
            )
            .await
            .unwrap();
    }
    Crew {
        owner,
        members: users,
        group: group.id,
        thread: group.main_thread_id,
    }
}

impl Crew {
    /// One live socket per member on `node`, from the start of the thread.
    async fn sockets_on(&self, node: &ServerProcess) -> Vec<WsClient> {
        let mut sockets = Vec::new();
        for (_, c, _) in &self.members {
            sockets.push(WsClient::resuming(&node.ws_url(), &token(c), &BTreeMap::new()).await);
        }
        sockets
    }
}

fn token(c: &Client) -> String {
    c.tokens().expect("signed in").access_token
}

fn post(id: String) -> PostMessage {
    PostMessage {
        body: format!("訪問記録 {id}"),
        client_msg_id: id,
        reply_to: None,
        mentions: vec![],
        attachments: vec![],
    }
}

async fn a_post_on_node_a_reaches_clients_on_node_b_exactly_once_in_order() {
    let cluster = Cluster::start().await;
    let t = crew(&cluster.a.base, 3).await;
    let mut sockets = t.sockets_on(&cluster.b).await;
    let count = 60;
    for i in 0..count {
        t.owner
            .post_message(t.thread, &post(format!("x{i}")))
            .await
            .unwrap();
    }
    for ws in &mut sockets {
        let mut seqs = Vec::new();
        assert!(ws.collect_seqs(t.thread, count, &mut seqs).await);
        assert_eq!(seqs, (1..=count as i64).collect::<Vec<_>>());
    }
    cluster.stop().await;
}

async fn clients_of_a_killed_node_resume_on_the_other_with_nothing_lost_or_doubled() {
    let mut cluster = Cluster::start().await;
    let t = crew(&cluster.a.base, 3).await;
    let mut sockets = t.sockets_on(&cluster.b).await;
    // A poster on node A keeps going while node B is killed.
    let total = 300usize;
    let poster = {
        let owner = t.owner.clone();
        let thread = t.thread;
        tokio::spawn(async move {
            for i in 0..total {
                owner
                    .post_message(thread, &post(format!("k{i}")))
                    .await
                    .unwrap();
            }
        })
    };
    // Kill B once the clients have seen some of it.
    let mut seen: Vec<Vec<i64>> = vec![Vec::new(); sockets.len()];
    for (ws, seqs) in sockets.iter_mut().zip(seen.iter_mut()) {
        assert!(ws.collect_seqs(t.thread, 20, seqs).await);
    }
    cluster.b.kill9();
    // Each client reconnects to A and resumes from the last seq it holds.
    for (i, (ws, seqs)) in sockets.iter_mut().zip(seen.iter_mut()).enumerate() {
        // Until node B dies under it (or everything arrived first).
        let _ = ws.collect_seqs(t.thread, total, seqs).await;
        if seqs.len() < total {
            let last = *seqs.last().unwrap_or(&0);
            let resume = BTreeMap::from([(t.thread, last)]);
            *ws = WsClient::resuming(&cluster.a.ws_url(), &token(&t.members[i].1), &resume).await;
            assert!(ws.collect_seqs(t.thread, total, seqs).await);
        }
    }
    poster.await.unwrap();
    for seqs in &seen {
        assert_eq!(
            seqs,
            &(1..=total as i64).collect::<Vec<_>>(),
            "0 lost, 0 duplicated, order kept"
        );
    }
    cluster.stop().await;
}

async fn nats_away_for_ten_seconds_loses_no_acknowledged_post() {
    let mut cluster = Cluster::start().await;
    let t = crew(&cluster.a.base, 2).await;
    let mut sockets = t.sockets_on(&cluster.b).await;
    let mut posted = 0usize;
    for _ in 0..10 {
        t.owner
            .post_message(t.thread, &post(format!("n{posted}")))
            .await
            .unwrap();
        posted += 1;
    }
    cluster.nats.down();
    // Ten seconds without the bus: node A keeps acknowledging posts.
    let outage = Instant::now();
    let mut degraded_seen = false;
    while outage.elapsed() < Duration::from_secs(10) {
        t.owner
            .post_message(t.thread, &post(format!("n{posted}")))
            .await
            .unwrap();
        posted += 1;
        if !degraded_seen && cluster.b.readyz().await["bus"] == "degraded" {
            degraded_seen = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        degraded_seen,
        "/readyz reports the bus as degraded while NATS is away"
    );
    cluster.nats.up().await;
    for ws in &mut sockets {
        let mut seqs = Vec::new();
        assert!(ws.collect_seqs(t.thread, posted, &mut seqs).await);
        assert_eq!(seqs, (1..=posted as i64).collect::<Vec<_>>());
    }
    assert_eq!(cluster.b.readyz().await["bus"], "connected");
    cluster.stop().await;
}

async fn a_member_removed_on_node_a_loses_access_on_node_b_within_a_second() {
    let cluster = Cluster::start().await;
    let t = crew(&cluster.a.base, 2).await;
    let none = BTreeMap::new();
    let (removed_id, removed, _) = &t.members[0];
    let mut gone = WsClient::resuming(&cluster.b.ws_url(), &token(removed), &none).await;
    let mut stays = WsClient::resuming(&cluster.b.ws_url(), &token(&t.members[1].1), &none).await;
    // Both are live (a message reaches both).
    t.owner.post_text(t.thread, "before").await.unwrap();
    for ws in [&mut gone, &mut stays] {
        let mut seqs = Vec::new();
        assert!(ws.collect_seqs(t.thread, 1, &mut seqs).await);
    }
    let started = Instant::now();
    t.owner.remove_member(t.group, *removed_id).await.unwrap();
    loop {
        match gone.next().await {
            Received::Frame(ServerFrame::MemberRemoved { user_id, .. })
                if user_id == *removed_id =>
            {
                break
            }
            Received::Frame(ServerFrame::MessageCreated { .. }) => {
                panic!("no message after removal")
            }
            Received::Frame(_) => {}
            Received::Closed(_) => break,
        }
    }
    let took = started.elapsed();
    eprintln!("removal reached the socket on the other node in {took:?}");
    assert!(took < Duration::from_secs(1), "within a second ({took:?})");
    // From now on nothing of the group reaches the removed member; the other member
    // still gets everything.
    t.owner.post_text(t.thread, "after").await.unwrap();
    let mut seqs = Vec::new();
    assert!(stays.collect_seqs(t.thread, 1, &mut seqs).await);
    assert_eq!(seqs, vec![2]);
    gone.send(json!({ "type": "ping" })).await;
    loop {
        match gone.next().await {
            Received::Frame(ServerFrame::Pong {}) | Received::Closed(_) => break,
            Received::Frame(ServerFrame::MessageCreated { .. }) => panic!("leaked after removal"),
            Received::Frame(_) => {}
        }
    }
    cluster.stop().await;
}

async fn a_password_reset_from_a_shell_closes_the_sockets_on_a_running_node() {
    let cluster = Cluster::start().await;
    let t = crew(&cluster.a.base, 1).await;
    let (_, member, login) = &t.members[0];
    let none = BTreeMap::new();
    let mut on_a = WsClient::resuming(&cluster.a.ws_url(), &token(member), &none).await;
    let mut on_b = WsClient::resuming(&cluster.b.ws_url(), &token(member), &none).await;
    let status = ServerProcess::command(SERVER_BIN, &cluster.config)
        .args(["admin", "reset-password", "--login", login])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run admin reset-password");
    assert!(status.success());
    let started = Instant::now();
    for ws in [&mut on_a, &mut on_b] {
        let mut ended = false;
        loop {
            match ws.next().await {
                Received::Frame(ServerFrame::Error { code, .. }) if code == "unauthenticated" => {
                    ended = true
                }
                Received::Frame(_) => {}
                Received::Closed(_) => break,
            }
        }
        assert!(ended, "told the session has ended, then closed");
    }
    eprintln!("shell reset closed both sockets in {:?}", started.elapsed());
    cluster.stop().await;
}

async fn a_removal_during_a_nats_outage_still_cuts_the_other_nodes_socket() {
    let mut cluster = Cluster::start().await;
    let t = crew(&cluster.a.base, 2).await;
    let none = BTreeMap::new();
    let (removed_id, removed, _) = &t.members[0];
    let mut gone = WsClient::resuming(&cluster.b.ws_url(), &token(removed), &none).await;
    // The other member posts through node B, where the removed member's socket is.
    let (_, _, stays_login) = &t.members[1];
    let on_b = Client::new(&cluster.b.base).unwrap();
    on_b.login(stays_login, USER_PASSWORD, None).await.unwrap();
    on_b.post_text(t.thread, "before").await.unwrap();
    let mut seqs = Vec::new();
    assert!(gone.collect_seqs(t.thread, 1, &mut seqs).await);

    cluster.nats.down();
    t.owner.remove_member(t.group, *removed_id).await.unwrap();
    // The database is the log: node B reads the removal from it within a second (its
    // poll interval), with no bus to tell it. Waiting out that interval is the point.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    on_b.post_text(t.thread, "after the removal").await.unwrap();
    gone.send(json!({ "type": "ping" })).await;
    loop {
        match gone.next().await {
            Received::Frame(ServerFrame::Pong {}) | Received::Closed(_) => break,
            Received::Frame(ServerFrame::MessageCreated { message }) => {
                panic!("seq {} reached a removed member", message.seq)
            }
            Received::Frame(_) => {}
        }
    }
    cluster.nats.up().await;
    cluster.stop().await;
}
