//! Two `tsunagu-server` processes on one PostgreSQL database and a NATS server of the
//! test's own (so it can be stopped and started): posts cross nodes exactly once and in
//! order; a killed node's clients resume on the other with nothing lost or doubled;
//! NATS away for ten seconds loses nothing; membership changes and revocations reach
//! sockets on the other node; a shell command closes sockets on a running node.
//!
//! Needs PostgreSQL (`TSUNAGU_TEST_POSTGRES_URL`) and `nats-server` on the PATH or at
//! /usr/sbin/nats-server. Without them every test here prints a NOTE and returns;
//! `TSUNAGU_TEST_REQUIRE_POSTGRES=1` (CI) turns that into a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tsunagu_client::Client;
use tsunagu_protocol::accounts::{CreateUser, Profession, UserRole};
use tsunagu_protocol::ids::{GroupId, ThreadId, UserId};
use tsunagu_protocol::messaging::{AddMember, CreateGroup, GroupKind, PostMessage};
use tsunagu_protocol::ws::ServerFrame;

const ADMIN_PASSWORD: &str = "cluster admin password";
const PASSWORD: &str = "a long enough password";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn require() -> bool {
    std::env::var("TSUNAGU_TEST_REQUIRE_POSTGRES").as_deref() == Ok("1")
}

fn nats_binary() -> Option<PathBuf> {
    let candidates = [
        PathBuf::from("/usr/sbin/nats-server"),
        PathBuf::from("/usr/bin/nats-server"),
    ];
    if let Some(p) = candidates.iter().find(|p| p.exists()) {
        return Some(p.clone());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.exists())
    })
}

/// A NATS server of this test's own on a fixed port, so it can come back where it was.
struct Nats {
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Nats {
    async fn start() -> Option<Nats> {
        let bin = nats_binary()?;
        let mut nats = Nats {
            bin,
            port: free_port(),
            child: None,
        };
        nats.up().await;
        Some(nats)
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

/// A PostgreSQL database of this test's own, dropped at the end.
struct Pg {
    admin_url: String,
    name: String,
    url: String,
}

impl Pg {
    async fn create() -> Option<Pg> {
        let Ok(admin_url) = std::env::var("TSUNAGU_TEST_POSTGRES_URL") else {
            return None;
        };
        use sqlx::{Connection, Executor};
        let name = format!("tsunagu_cluster_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&format!("/{name}"));
        Some(Pg {
            admin_url,
            name,
            url: url.to_string(),
        })
    }

    async fn drop_db(self) {
        use sqlx::{Connection, Executor};
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name).as_str())
                .await;
        }
    }
}

/// One server process.
struct Node {
    child: Option<Child>,
    base: String,
    port: u16,
}

fn node_command(data_dir: &Path, db: &str, nats: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsunagu-server"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TSUNAGU_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("TSUNAGU_DATA_DIR", data_dir)
        .env("TSUNAGU_DATABASE_URL", db)
        .env("TSUNAGU_BUS_KIND", "nats")
        .env("TSUNAGU_BUS_URL", nats)
        .env("TSUNAGU_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("TSUNAGU_AUTH_ACCOUNT_BURST", "1000")
        .env("TSUNAGU_AUTH_IP_BURST", "100000")
        .env("TSUNAGU_LIMITS_POSTS_BURST", "1000000")
        .env("TSUNAGU_DATABASE_MAX_CONNECTIONS", "8")
        .env("TSUNAGU_LOG_LEVEL", "warn");
    cmd
}

impl Node {
    async fn start(data_dir: &Path, db: &str, nats: &str) -> Node {
        let port = free_port();
        let child = node_command(data_dir, db, nats)
            .env("TSUNAGU_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tsunagu-server");
        let node = Node {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            port,
        };
        let http = reqwest::Client::new();
        // Bounded wait for readiness (a guard against a hang, not a synchronisation).
        for _ in 0..600 {
            if let Ok(r) = http.get(format!("{}/readyz", node.base)).send().await {
                if r.status().is_success() {
                    return node;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node did not become ready");
    }

    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/api/v1/ws", self.port)
    }

    fn kill_9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn readyz(&self) -> serde_json::Value {
        reqwest::get(format!("{}/readyz", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// Everything one scenario needs: two nodes, one database, one NATS.
struct Cluster {
    nats: Nats,
    a: Node,
    b: Node,
    pg: Option<Pg>,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(test: &str) -> Option<Cluster> {
        let Some(pg) = Pg::create().await else {
            if require() {
                panic!("TSUNAGU_TEST_REQUIRE_POSTGRES=1 but TSUNAGU_TEST_POSTGRES_URL is not set");
            }
            eprintln!("NOTE: TSUNAGU_TEST_POSTGRES_URL is not set: skipping cluster test {test}");
            return None;
        };
        let Some(nats) = Nats::start().await else {
            if require() {
                panic!("nats-server is not installed");
            }
            eprintln!("NOTE: nats-server not found: skipping cluster test {test}");
            pg.drop_db().await;
            return None;
        };
        // The nodes share the data dir: the same signing keys and KEKs (as a cluster
        // must), and the local blob directory stands in for shared object storage.
        let dir = tempfile::tempdir().unwrap();
        let a = Node::start(dir.path(), &pg.url, &nats.url()).await;
        let b = Node::start(dir.path(), &pg.url, &nats.url()).await;
        Some(Cluster {
            nats,
            a,
            b,
            pg: Some(pg),
            dir,
        })
    }

    async fn stop(mut self) {
        self.a.kill_9();
        self.b.kill_9();
        self.nats.down();
        if let Some(pg) = self.pg.take() {
            pg.drop_db().await;
        }
    }
}

/// An owner and `n` members of one group, signed in on node `base`.
struct Team {
    owner: Client,
    members: Vec<(UserId, Client, String)>,
    group: GroupId,
    thread: ThreadId,
}

async fn team(base: &str, n: usize) -> Team {
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
                password: PASSWORD.into(),
                profession: Profession::Nurse,
                organization_id: None,
                role: Some(UserRole::User),
                must_change_password: Some(false),
            })
            .await
            .unwrap();
        let c = Client::new(base).unwrap();
        c.login(&login, PASSWORD, None).await.unwrap();
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
    Team {
        owner,
        members: users,
        group: group.id,
        thread: group.main_thread_id,
    }
}

impl Team {
    /// One live socket per member on `node`, from the start of the thread.
    async fn sockets_on(&self, node: &Node) -> Vec<Ws> {
        let mut sockets = Vec::new();
        for (_, c, _) in &self.members {
            sockets.push(Ws::open(&node.ws_url(), &token(c), &BTreeMap::new()).await);
        }
        sockets
    }
}

fn token(c: &Client) -> String {
    c.tokens().expect("signed in").access_token
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw websocket client: authenticates, resumes, and reads frames.
struct Ws {
    socket: Socket,
}

// A test helper: matched on directly, so not boxed.
#[allow(clippy::large_enum_variant)]
enum Got {
    Frame(ServerFrame),
    Closed,
}

impl Ws {
    async fn open(url: &str, token: &str, resume: &BTreeMap<ThreadId, i64>) -> Ws {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        let mut ws = Ws { socket };
        ws.send(json!({ "type": "auth", "token": token })).await;
        match ws.next().await {
            Got::Frame(ServerFrame::Ready { .. }) => {}
            _ => panic!("expected ready"),
        }
        ws.send(json!({ "type": "resume", "threads": resume }))
            .await;
        ws
    }

    async fn send(&mut self, v: serde_json::Value) {
        self.socket
            .send(WsMessage::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    /// The next frame, bounded by a generous timeout (a guard against hangs).
    async fn next(&mut self) -> Got {
        loop {
            match tokio::time::timeout(Duration::from_secs(30), self.socket.next()).await {
                Ok(Some(Ok(WsMessage::Text(t)))) => {
                    return Got::Frame(serde_json::from_str(t.as_str()).expect("frame"))
                }
                Ok(Some(Ok(WsMessage::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                    return Got::Closed
                }
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!("no frame within 30 s"),
            }
        }
    }
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

/// Reads message seqs of `thread` until `want` have arrived (or the socket closes).
async fn collect(ws: &mut Ws, thread: ThreadId, want: usize, seqs: &mut Vec<i64>) -> bool {
    while seqs.len() < want {
        match ws.next().await {
            Got::Frame(ServerFrame::MessageCreated { message }) if message.thread_id == thread => {
                seqs.push(message.seq)
            }
            Got::Frame(_) => {}
            Got::Closed => return false,
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    tsunagu_no_postgres,
    ignore = "cluster: set TSUNAGU_TEST_POSTGRES_URL to run it (needs nats-server too)"
)]
async fn a_post_on_node_a_reaches_clients_on_node_b_exactly_once_in_order() {
    let Some(cluster) = Cluster::start("cross-node delivery").await else {
        return;
    };
    let t = team(&cluster.a.base, 3).await;
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
        assert!(collect(ws, t.thread, count, &mut seqs).await);
        assert_eq!(seqs, (1..=count as i64).collect::<Vec<_>>());
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    tsunagu_no_postgres,
    ignore = "cluster: set TSUNAGU_TEST_POSTGRES_URL to run it (needs nats-server too)"
)]
async fn clients_of_a_killed_node_resume_on_the_other_with_nothing_lost_or_doubled() {
    let Some(mut cluster) = Cluster::start("kill -9 of a node").await else {
        return;
    };
    let t = team(&cluster.a.base, 3).await;
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
        assert!(collect(ws, t.thread, 20, seqs).await);
    }
    cluster.b.kill_9();
    // Each client reconnects to A and resumes from the last seq it holds.
    for (i, (ws, seqs)) in sockets.iter_mut().zip(seen.iter_mut()).enumerate() {
        // Until node B dies under it (or everything arrived first).
        let _ = collect(ws, t.thread, total, seqs).await;
        if seqs.len() < total {
            let last = *seqs.last().unwrap_or(&0);
            let resume = BTreeMap::from([(t.thread, last)]);
            *ws = Ws::open(&cluster.a.ws_url(), &token(&t.members[i].1), &resume).await;
            assert!(collect(ws, t.thread, total, seqs).await);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    tsunagu_no_postgres,
    ignore = "cluster: set TSUNAGU_TEST_POSTGRES_URL to run it (needs nats-server too)"
)]
async fn nats_away_for_ten_seconds_loses_no_acknowledged_post() {
    let Some(mut cluster) = Cluster::start("NATS outage").await else {
        return;
    };
    let t = team(&cluster.a.base, 2).await;
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
        assert!(collect(ws, t.thread, posted, &mut seqs).await);
        assert_eq!(seqs, (1..=posted as i64).collect::<Vec<_>>());
    }
    assert_eq!(cluster.b.readyz().await["bus"], "connected");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    tsunagu_no_postgres,
    ignore = "cluster: set TSUNAGU_TEST_POSTGRES_URL to run it (needs nats-server too)"
)]
async fn a_member_removed_on_node_a_loses_access_on_node_b_within_a_second() {
    let Some(cluster) = Cluster::start("removal across nodes").await else {
        return;
    };
    let t = team(&cluster.a.base, 2).await;
    let none = BTreeMap::new();
    let (removed_id, removed, _) = &t.members[0];
    let mut gone = Ws::open(&cluster.b.ws_url(), &token(removed), &none).await;
    let mut stays = Ws::open(&cluster.b.ws_url(), &token(&t.members[1].1), &none).await;
    // Both are live (a message reaches both).
    t.owner.post_text(t.thread, "before").await.unwrap();
    for ws in [&mut gone, &mut stays] {
        let mut seqs = Vec::new();
        assert!(collect(ws, t.thread, 1, &mut seqs).await);
    }
    let started = Instant::now();
    t.owner.remove_member(t.group, *removed_id).await.unwrap();
    loop {
        match gone.next().await {
            Got::Frame(ServerFrame::MemberRemoved { user_id, .. }) if user_id == *removed_id => {
                break
            }
            Got::Frame(ServerFrame::MessageCreated { .. }) => panic!("no message after removal"),
            Got::Frame(_) => {}
            Got::Closed => break,
        }
    }
    let took = started.elapsed();
    eprintln!("removal reached the socket on the other node in {took:?}");
    assert!(took < Duration::from_secs(1), "within a second ({took:?})");
    // From now on nothing of the group reaches the removed member; the other member
    // still gets everything.
    t.owner.post_text(t.thread, "after").await.unwrap();
    let mut seqs = Vec::new();
    assert!(collect(&mut stays, t.thread, 1, &mut seqs).await);
    assert_eq!(seqs, vec![2]);
    gone.send(json!({ "type": "ping" })).await;
    loop {
        match gone.next().await {
            Got::Frame(ServerFrame::Pong {}) | Got::Closed => break,
            Got::Frame(ServerFrame::MessageCreated { .. }) => panic!("leaked after removal"),
            Got::Frame(_) => {}
        }
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    tsunagu_no_postgres,
    ignore = "cluster: set TSUNAGU_TEST_POSTGRES_URL to run it (needs nats-server too)"
)]
async fn a_password_reset_from_a_shell_closes_the_sockets_on_a_running_node() {
    let Some(cluster) = Cluster::start("shell reset-password").await else {
        return;
    };
    let t = team(&cluster.a.base, 1).await;
    let (_, member, login) = &t.members[0];
    let none = BTreeMap::new();
    let mut on_a = Ws::open(&cluster.a.ws_url(), &token(member), &none).await;
    let mut on_b = Ws::open(&cluster.b.ws_url(), &token(member), &none).await;
    let nats = cluster.nats.url();
    let db = cluster.pg.as_ref().unwrap().url.clone();
    let status = node_command(cluster.dir.path(), &db, &nats)
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
                Got::Frame(ServerFrame::Error { code, .. }) if code == "unauthenticated" => {
                    ended = true
                }
                Got::Frame(_) => {}
                Got::Closed => break,
            }
        }
        assert!(ended, "told the session has ended, then closed");
    }
    eprintln!("shell reset closed both sockets in {:?}", started.elapsed());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    tsunagu_no_postgres,
    ignore = "cluster: set TSUNAGU_TEST_POSTGRES_URL to run it (needs nats-server too)"
)]
async fn a_removal_during_a_nats_outage_still_cuts_the_other_nodes_socket() {
    let Some(mut cluster) = Cluster::start("removal while NATS is away").await else {
        return;
    };
    let t = team(&cluster.a.base, 2).await;
    let none = BTreeMap::new();
    let (removed_id, removed, _) = &t.members[0];
    let mut gone = Ws::open(&cluster.b.ws_url(), &token(removed), &none).await;
    // The other member posts through node B, where the removed member's socket is.
    let (_, _, stays_login) = &t.members[1];
    let on_b = Client::new(&cluster.b.base).unwrap();
    on_b.login(stays_login, PASSWORD, None).await.unwrap();
    on_b.post_text(t.thread, "before").await.unwrap();
    let mut seqs = Vec::new();
    assert!(collect(&mut gone, t.thread, 1, &mut seqs).await);

    cluster.nats.down();
    t.owner.remove_member(t.group, *removed_id).await.unwrap();
    // The database is the log: node B reads the removal from it within a second (its
    // poll interval), with no bus to tell it. Waiting out that interval is the point.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    on_b.post_text(t.thread, "after the removal").await.unwrap();
    gone.send(json!({ "type": "ping" })).await;
    loop {
        match gone.next().await {
            Got::Frame(ServerFrame::Pong {}) | Got::Closed => break,
            Got::Frame(ServerFrame::MessageCreated { message }) => {
                panic!("seq {} reached a removed member", message.seq)
            }
            Got::Frame(_) => {}
        }
    }
    cluster.nats.up().await;
    cluster.stop().await;
}
