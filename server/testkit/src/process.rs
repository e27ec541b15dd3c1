//! The real binaries as child processes: the server started from a test configuration
//! (and `kill -9`ed), its resident memory, and a command-line tool run to completion.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use tokio::io::AsyncWriteExt;
use tsunagu_client::Client;
use tsunagu_server::config::Config;

/// A free loopback port. Another process may take it before it is bound again, so a
/// caller that binds it later retries on failure ([`ServerProcess::start`] does).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The `tsunagu-server` binary (`bin`: the caller's `env!("CARGO_BIN_EXE_tsunagu-server")`)
/// serving `config`. Killed (SIGKILL) on drop if still running.
pub struct ServerProcess {
    child: Child,
    pub base: String,
    pub port: u16,
    pub http: reqwest::Client,
}

impl ServerProcess {
    /// A command running `bin` on exactly `config`: written to a TOML file in the data
    /// dir (secrets, which a file never holds, go in the environment), with every
    /// `TSUNAGU_*` variable of the test's own environment removed. For the `serve`
    /// process and for one-off subcommands (`admin …`) alike.
    pub fn command(bin: &str, config: &Config) -> Command {
        std::fs::create_dir_all(&config.data_dir).expect("data dir");
        let file = config.data_dir.join("tsunagu-test.toml");
        std::fs::write(
            &file,
            toml::to_string(config).expect("the configuration as TOML"),
        )
        .expect("write the test configuration");
        let mut cmd = Command::new(bin);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TSUNAGU_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env_remove("RUST_LOG").env("TSUNAGU_CONFIG", &file);
        if let Some(p) = &config.bootstrap.admin_password {
            cmd.env("TSUNAGU_BOOTSTRAP_ADMIN_PASSWORD", p.expose_secret());
        }
        if let Some(s) = &config.files.s3_secret_access_key {
            cmd.env("TSUNAGU_FILES_S3_SECRET_ACCESS_KEY", s.expose_secret());
        }
        cmd
    }

    /// Starts the server (with `extra_env` on top of `config`) on a free port and waits
    /// (bounded) until `/readyz` answers 200. Its standard output and error go to `log`,
    /// or nowhere.
    pub async fn start(
        bin: &str,
        config: &Config,
        log: Option<&Path>,
        extra_env: &[(&str, String)],
    ) -> ServerProcess {
        // A port picked and released here could be taken in between: retry a few times.
        for _ in 0..5 {
            let port = free_port();
            let (out, err) = match log {
                Some(log) => {
                    let out = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(log)
                        .expect("server log");
                    (Stdio::from(out.try_clone().expect("log")), Stdio::from(out))
                }
                None => (Stdio::null(), Stdio::null()),
            };
            let mut cmd = Self::command(bin, config);
            cmd.env("TSUNAGU_LISTEN", format!("127.0.0.1:{port}"));
            for (k, v) in extra_env {
                cmd.env(k, v);
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("start tsunagu-server");
            let mut server = ServerProcess {
                child,
                base: format!("http://127.0.0.1:{port}"),
                port,
                http: reqwest::Client::new(),
            };
            if server.wait_ready().await {
                return server;
            }
        }
        panic!(
            "tsunagu-server did not become ready{}",
            log.map(|l| format!(
                "; its log:\n{}",
                std::fs::read_to_string(l).unwrap_or_default()
            ))
            .unwrap_or_default()
        );
    }

    /// Polls `/readyz` until 200 (true), or until the process exits or 60 s pass
    /// (false). The bound guards against a hang; readiness is the server's own answer.
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait().expect("try_wait").is_some() {
                return false;
            }
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await {
                if r.status() == reqwest::StatusCode::OK {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill9();
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/api/v1/ws", self.port)
    }

    /// `kill -9`, then reap it. Idempotent.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new, signed-out SDK client of this server.
    pub fn client(&self) -> Client {
        Client::new(&self.base).expect("client")
    }

    /// `/readyz` as JSON.
    pub async fn readyz(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("readyz json")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's resident memory every few milliseconds and keeps the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kib) = rss_kib(pid) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    // A sampling period, not a wait for anything.
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the peak seen, in KiB.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Runs `bin` with `args` (in `cwd`, if given; `env` set, each `env_remove` removed),
/// feeding it `stdin`, and waits (bounded by `bound`, a guard against a hang) for it
/// to finish: exit code, standard output, standard error.
pub async fn run_to_completion(
    bin: &str,
    args: &[&str],
    stdin: Option<&str>,
    cwd: Option<&Path>,
    env_remove: &[&str],
    bound: Duration,
) -> (i32, Vec<u8>, String) {
    let mut command = tokio::process::Command::new(bin);
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    for var in env_remove {
        command.env_remove(var);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("write stdin");
    }
    drop(input);
    let out = tokio::time::timeout(bound, child.wait_with_output())
        .await
        .expect("the command finishes")
        .expect("wait for the command");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_process_reads_back_the_configuration_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::test_config(dir.path());
        config.database_url = Some("postgres://postgres@127.0.0.1:5432/x".into());
        config.bus.kind = "nats".into();
        config.files.storage = "s3".into();
        ServerProcess::command("true", &config);
        let read = Config::load_from(Some(&dir.path().join("tsunagu-test.toml"))).unwrap();
        assert_eq!(read.data_dir, config.data_dir);
        assert_eq!(read.database_url, config.database_url);
        assert_eq!(read.bus.kind, "nats");
        assert_eq!(read.files.storage, "s3");
        assert_eq!(read.limits.posts_burst, config.limits.posts_burst);
        assert_eq!(
            (read.auth.argon2_memory_kib, read.auth.argon2_iterations),
            (config.auth.argon2_memory_kib, config.auth.argon2_iterations)
        );
        // Secrets never go into the file.
        let text = std::fs::read_to_string(dir.path().join("tsunagu-test.toml")).unwrap();
        assert!(!text.contains(crate::ADMIN_PASSWORD));
    }
}
