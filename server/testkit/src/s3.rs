//! S3 on loopback: one `s3s-fs` server per test binary, a bucket per test.
//!
//! Starting `s3s-fs` costs a process and a bound port; a bucket is a directory. So the
//! server starts with the first test that asks for S3 and serves the whole binary, and
//! each test gets a bucket of its own, which keeps tests apart as separate servers did.
//! A shell stands between the test binary and `s3s-fs`: it reads its standard input,
//! which only this process holds open, so however the test binary ends (even killed)
//! the shell sees end-of-file and stops `s3s-fs` and removes its root.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use secrecy::SecretString;
use tsunagu_server::config::Config;

pub const S3_ACCESS_KEY: &str = "tsunagu-test-access";
pub const S3_SECRET_KEY: &str = "tsunagu-test-secret-key-0123456789";

/// The binary's one `s3s-fs`.
struct Shared {
    endpoint: String,
    root: PathBuf,
    // Held, never used: closing the shell's standard input (at exit) stops the server.
    _watchdog: Mutex<(Child, ChildStdin)>,
}

fn s3s_fs_binary() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("s3s-fs"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "this test needs s3s-fs on PATH: \
                 cargo install s3s-fs --version 0.14.1 --features binary --locked"
            )
        })
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let bin = s3s_fs_binary();
        // Kept past this process's end on purpose: the shell removes it.
        let root = tempfile::Builder::new()
            .prefix("tsunagu-s3-")
            .tempdir()
            .expect("s3 root")
            .keep();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(
                r#""$0" --host 127.0.0.1 --port 0 --access-key "$1" --secret-key "$2" "$3" &
                server=$!
                while read -r _; do :; done
                kill "$server" 2>/dev/null
                wait "$server" 2>/dev/null
                rm -rf "$3""#,
            )
            .arg(&bin)
            .args([S3_ACCESS_KEY, S3_SECRET_KEY])
            .arg(&root)
            .env("RUST_LOG", "s3s_fs=info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let stdin = child.stdin.take().expect("watchdog stdin");
        // It logs the address it bound; the reader keeps draining the pipe afterwards.
        let stdout = child.stdout.take().expect("s3s-fs stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                const MARK: &str = "server is running at ";
                if let Some(at) = line.find(MARK) {
                    let url = line[at + MARK.len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url);
                    }
                }
            }
        });
        // Bounded: a guard against a server that never comes up, not a wait for it.
        let endpoint = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) if url.starts_with("http://") => url,
            other => {
                drop(stdin);
                let _ = child.wait();
                panic!("s3s-fs did not report its address: {other:?}");
            }
        };
        Shared {
            endpoint,
            root,
            _watchdog: Mutex::new((child, stdin)),
        }
    })
}

/// A bucket of its own on the binary's `s3s-fs`, emptied and removed on drop.
#[derive(Debug)]
pub struct S3Bucket {
    pub endpoint: String,
    pub name: String,
    root: PathBuf,
}

impl S3Bucket {
    /// A new, empty bucket (starting the server if this is the binary's first).
    pub fn create() -> S3Bucket {
        let shared = shared();
        let name = format!("t{}", uuid::Uuid::new_v4().simple());
        // s3s-fs keeps a bucket as a directory under its root.
        std::fs::create_dir(shared.root.join(&name)).expect("bucket directory");
        S3Bucket {
            endpoint: shared.endpoint.clone(),
            name,
            root: shared.root.clone(),
        }
    }

    /// Points `config` at this bucket.
    pub fn configure(&self, config: &mut Config) {
        config.files.storage = "s3".into();
        config.files.s3_endpoint = Some(self.endpoint.clone());
        config.files.s3_bucket = Some(self.name.clone());
        config.files.s3_region = "us-east-1".into();
        config.files.s3_access_key_id = Some(S3_ACCESS_KEY.into());
        config.files.s3_secret_access_key = Some(SecretString::from(S3_SECRET_KEY));
        config.files.s3_allow_http = true;
    }

    /// Every file `s3s-fs` holds for this bucket: its objects, and from its root the
    /// objects' metadata and the records and parts of multipart uploads into it (the
    /// parts are named by upload id only; the upload's metadata names the bucket).
    pub fn stored_files(&self) -> Vec<PathBuf> {
        let mut out = crate::app::walk(&self.root.join(&self.name));
        out.extend(self.root_files());
        out.sort();
        out
    }

    fn root_files(&self) -> Vec<PathBuf> {
        let mine = format!(
            ".bucket-{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.name)
        );
        let names: Vec<String> = std::fs::read_dir(&self.root)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_file())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        let uploads: Vec<&str> = names
            .iter()
            .filter(|n| n.starts_with(&mine))
            .filter_map(|n| {
                let at = n.find(".upload-")? + ".upload-".len();
                n.get(at..at + 36)
            })
            .collect();
        names
            .iter()
            .filter(|n| {
                n.starts_with(&mine)
                    || uploads.iter().any(|u| {
                        n.starts_with(&format!(".upload-{u}"))
                            || n.starts_with(&format!(".upload_id-{u}"))
                    })
            })
            .map(|n| self.root.join(n))
            .collect()
    }
}

impl Drop for S3Bucket {
    fn drop(&mut self) {
        for file in self.root_files() {
            let _ = std::fs::remove_file(file);
        }
        let _ = std::fs::remove_dir_all(Path::new(&self.root).join(&self.name));
    }
}
