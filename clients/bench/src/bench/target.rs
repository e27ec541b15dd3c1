//! The server under test: spawned on a temporary directory or already running; its
//! memory as `/proc` reports it; the users the workloads sign in as.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{StreamExt, TryStreamExt};
use tsunagu_client::protocol::accounts::{CreateUser, Profession, UpdatePolicy, UserRole};
use tsunagu_client::protocol::ids::UserId;
use tsunagu_client::Client;

use super::{Cli, Workload};

/// Every bench user's password.
pub const USER_PASSWORD: &str = "bench user password 0123";
/// The spawned server's administrator password.
const SPAWN_ADMIN_PASSWORD: &str = "bench admin password 0123";
/// Requests in flight while setting up.
const SETUP_CONCURRENCY: usize = 8;

/// A signed-in bench user.
#[derive(Clone)]
pub struct User {
    pub id: UserId,
    pub login: String,
    pub client: Client,
}

impl User {
    /// The current access token (for websocket `auth` frames).
    pub fn token(&self) -> String {
        self.client
            .tokens()
            .map(|t| t.access_token)
            .unwrap_or_default()
    }
}

/// The server under test.
pub struct Target {
    pub base: String,
    pub admin: Client,
    /// For memory figures.
    pub pid: Option<u32>,
    /// The SQLite file, for seeding and the direct-SQL baselines.
    pub database: Option<PathBuf>,
    /// Where baselines put their files (the same file system as the server's data).
    pub scratch: PathBuf,
    child: Option<tokio::process::Child>,
    spawned: Option<Spawned>,
    dir: Option<tempfile::TempDir>,
    /// A unique prefix for the names this run creates.
    pub run_id: String,
    pub region_id: String,
}

impl Target {
    pub async fn open(cli: &Cli) -> anyhow::Result<Target> {
        let run_id = format!(
            "b{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() % 0x100_0000)
                .unwrap_or(0)
        );
        let mut builder = tempfile::Builder::new();
        builder.prefix("tsunagu-bench-");
        let dir = match &cli.work_dir {
            Some(d) => builder.tempdir_in(d)?,
            None => builder.tempdir()?,
        };
        let scratch = dir.path().join("baseline");
        std::fs::create_dir_all(&scratch)?;
        if cli.spawn {
            Self::spawn(cli, dir, scratch, run_id).await
        } else {
            let base = cli.server.clone().context("give --server URL or --spawn")?;
            let password = cli.admin_password.clone().context(
                "--admin-password (or TSUNAGU_BENCH_ADMIN_PASSWORD) is required with --server",
            )?;
            let admin = Client::new(&base)?;
            admin
                .login("admin", &password, None)
                .await
                .context("signing in as admin")?;
            let region_id = admin.me().await?.region.id.to_string();
            Ok(Target {
                base,
                admin,
                pid: cli.server_pid,
                database: cli.database.clone(),
                scratch,
                child: None,
                spawned: None,
                dir: if cli.keep { None } else { Some(dir) },
                run_id,
                region_id,
            })
        }
    }

    /// Two nodes of a cluster on the PostgreSQL database `database_url` and the NATS
    /// server `nats_url`, sharing one data directory (the same keys, as a cluster must;
    /// the local blob directory stands in for shared object storage).
    pub async fn spawn_cluster(
        cli: &Cli,
        database_url: &str,
        nats_url: &str,
        run_id: String,
    ) -> anyhow::Result<(Target, Target)> {
        let bin = server_bin(cli)?;
        let dir = tempfile::Builder::new()
            .prefix("tsunagu-bench-cluster-")
            .tempdir()?;
        let scratch = dir.path().join("baseline");
        std::fs::create_dir_all(&scratch)?;
        let env = vec![
            ("TSUNAGU_DATABASE_URL".to_owned(), database_url.to_owned()),
            (
                "TSUNAGU_DATABASE_MAX_CONNECTIONS".to_owned(),
                "16".to_owned(),
            ),
            ("TSUNAGU_BUS_KIND".to_owned(), "nats".to_owned()),
            ("TSUNAGU_BUS_URL".to_owned(), nats_url.to_owned()),
        ];
        let mut nodes = Vec::new();
        for name in ["a", "b"] {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0")?;
                l.local_addr()?.port()
            };
            let spawned = Spawned {
                bin: bin.clone(),
                port,
                data: dir.path().join("data"),
                log: dir.path().join(format!("node-{name}.log")),
                env: env.clone(),
            };
            // One after the other: the first creates the keys the second reads.
            let child = spawned.launch().await?;
            let base = format!("http://127.0.0.1:{port}");
            let admin = Client::new(&base)?;
            admin
                .login("admin", SPAWN_ADMIN_PASSWORD, None)
                .await
                .context("signing in as admin")?;
            let region_id = admin.me().await?.region.id.to_string();
            nodes.push(Target {
                base,
                admin,
                pid: child.id(),
                database: None,
                scratch: scratch.clone(),
                child: Some(child),
                spawned: Some(spawned),
                dir: None,
                run_id: run_id.clone(),
                region_id,
            });
        }
        let mut b = nodes.pop().context("node b")?;
        let mut a = nodes.pop().context("node a")?;
        a.dir = Some(dir);
        b.dir = None;
        Ok((a, b))
    }

    async fn spawn(
        cli: &Cli,
        dir: tempfile::TempDir,
        scratch: PathBuf,
        run_id: String,
    ) -> anyhow::Result<Target> {
        let bin = server_bin(cli)?;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let spawned = Spawned {
            bin,
            port,
            data: dir.path().join("data"),
            log: dir.path().join("server.log"),
            env: Vec::new(),
        };
        let child = spawned.launch().await?;
        let pid = child.id();
        let base = format!("http://127.0.0.1:{port}");
        let admin = Client::new(&base)?;
        admin
            .login("admin", SPAWN_ADMIN_PASSWORD, None)
            .await
            .context("signing in as admin")?;
        let region_id = admin.me().await?.region.id.to_string();
        if cli.keep {
            eprintln!("keeping {}", dir.path().display());
        }
        Ok(Target {
            base,
            admin,
            pid,
            database: Some(spawned.data.join("tsunagu.db")),
            scratch,
            child: Some(child),
            spawned: Some(spawned),
            dir: if cli.keep {
                let _ = dir.keep();
                None
            } else {
                Some(dir)
            },
            run_id,
            region_id,
        })
    }

    /// The websocket URL.
    pub fn ws_url(&self) -> String {
        self.admin
            .websocket_url()
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// Region policy for the run, then `n` users created and signed in.
    pub async fn prepare(&self, n: usize, workloads: &[Workload]) -> anyhow::Result<Vec<User>> {
        let mut policy = UpdatePolicy {
            // Long enough that no token expires mid-run.
            access_token_ttl_secs: Some(3600),
            ..Default::default()
        };
        if workloads.contains(&Workload::Files) {
            policy.max_file_bytes = Some(4 * 1024 * 1024 * 1024);
        }
        self.admin
            .update_policy(&policy)
            .await
            .context("updating the region policy")?;
        let base = self.base.clone();
        let run = self.run_id.clone();
        let admin = self.admin.clone();
        let users: Vec<User> = futures_util::stream::iter(0..n)
            .map(|i| {
                let (base, run, admin) = (base.clone(), run.clone(), admin.clone());
                async move {
                    let login = format!("{run}.u{i}");
                    let created = admin
                        .create_user(&CreateUser {
                            login: login.clone(),
                            display_name: format!("ベンチ 看護師 {i}"),
                            display_name_kana: None,
                            password: USER_PASSWORD.into(),
                            profession: Profession::Nurse,
                            organization_id: None,
                            role: Some(UserRole::User),
                            must_change_password: Some(false),
                        })
                        .await
                        .with_context(|| format!("creating {login}"))?;
                    let client = Client::new(&base)?;
                    client
                        .login(&login, USER_PASSWORD, None)
                        .await
                        .with_context(|| format!("signing in as {login}"))?;
                    Ok::<_, anyhow::Error>(User {
                        id: created.id,
                        login,
                        client,
                    })
                }
            })
            .buffered(SETUP_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(users)
    }

    /// The server's memory, when its process is known.
    pub fn rss(&self) -> Option<Rss> {
        self.pid.map(Rss::new)
    }

    /// Restarts a spawned server on the same data (users, sessions and tokens stay
    /// valid), so that a workload's memory is measured from a fresh process rather than
    /// on top of what earlier workloads left behind. Does nothing for `--server`.
    pub async fn restart(&mut self) -> anyhow::Result<bool> {
        let Some(spawned) = self.spawned.take() else {
            return Ok(false);
        };
        self.stop_child().await;
        let child = spawned.launch().await?;
        self.pid = child.id();
        self.child = Some(child);
        self.spawned = Some(spawned);
        Ok(true)
    }

    async fn stop_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                // SIGTERM: a graceful stop, like an operator's.
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status();
                if tokio::time::timeout(Duration::from_secs(20), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
            }
        }
    }

    pub async fn stop(&mut self) {
        self.stop_child().await;
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// The server binary for `--spawn`: `--server-bin`, or `tsunagu-server` next to us.
fn server_bin(cli: &Cli) -> anyhow::Result<PathBuf> {
    let bin = match &cli.server_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary has no directory")?
            .join("tsunagu-server"),
    };
    if !bin.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release -p tsunagu-server -p tsunagu-bench`, or give --server-bin",
            bin.display()
        );
    }
    Ok(bin)
}

/// How to (re)start the spawned server.
struct Spawned {
    bin: PathBuf,
    port: u16,
    data: PathBuf,
    log: PathBuf,
    /// More environment (a cluster node's database and bus).
    env: Vec<(String, String)>,
}

impl Spawned {
    /// Starts the server and waits until it is ready.
    async fn launch(&self) -> anyhow::Result<tokio::process::Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = tokio::process::Command::new(&self.bin);
        // Start from a clean slate: no configuration of the caller's leaks in.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("TSUNAGU_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .env("TSUNAGU_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("TSUNAGU_DATA_DIR", &self.data)
            .env("TSUNAGU_BOOTSTRAP_ADMIN_PASSWORD", SPAWN_ADMIN_PASSWORD)
            .env("TSUNAGU_LOG_LEVEL", "warn")
            // Thousands of sign-ins from one address are the point here.
            .env("TSUNAGU_AUTH_IP_BURST", "1000000")
            .env("TSUNAGU_AUTH_ACCOUNT_BURST", "1000")
            // The load generator posts far faster than a person: lift the per-user limits.
            .env("TSUNAGU_LIMITS_POSTS_PER_MINUTE", "100000000")
            .env("TSUNAGU_LIMITS_POSTS_BURST", "1000000")
            // Bulk-seeded audit entries would otherwise be re-hashed by the checkpoint
            // task while the audit workload is measured (in production entries arrive
            // one by one and checkpoints are amortised).
            .env("TSUNAGU_AUDIT_CHECKPOINT_EVERY", "1000000000000")
            .env("TSUNAGU_AUDIT_CHECKPOINT_INTERVAL_SECS", "1000000000")
            // The webhooks workload's receiver is on loopback, over plain HTTP.
            .env("TSUNAGU_WEBHOOKS_ALLOW_HTTP", "true")
            .env("TSUNAGU_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES", "true")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let base = format!("http://127.0.0.1:{}", self.port);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
                if r.status().is_success() {
                    return Ok(child);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not become ready; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Resident memory of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy)]
pub struct Rss {
    pid: u32,
}

impl Rss {
    pub fn new(pid: u32) -> Self {
        Rss { pid }
    }

    fn field(&self, name: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    }

    /// Resident set size now, in bytes.
    pub fn now(&self) -> Option<u64> {
        self.field("VmRSS:")
    }

    /// Starts watching the peak: resets the kernel's high-water mark when allowed, and
    /// samples every 10 ms besides.
    pub fn watch(&self) -> PeakWatch {
        let reset = std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok();
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(self.now().unwrap_or(0)));
        let (s, m, me) = (stop.clone(), max.clone(), *self);
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(v) = me.now() {
                    m.fetch_max(v, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        PeakWatch {
            rss: *self,
            reset,
            stop,
            max,
            handle: Some(handle),
        }
    }
}

/// A running peak-memory watch; see [`Rss::watch`].
pub struct PeakWatch {
    rss: Rss,
    reset: bool,
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl PeakWatch {
    /// The peak resident set size since the watch started, in bytes.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let sampled = self.max.load(Ordering::Relaxed);
        let hwm = if self.reset {
            self.rss.field("VmHWM:").unwrap_or(0)
        } else {
            0
        };
        sampled.max(hwm)
    }
}

/// The peak RSS of this process (for the baseline children).
pub fn own_peak_rss() -> u64 {
    Rss::new(std::process::id()).field("VmHWM:").unwrap_or(0)
}
