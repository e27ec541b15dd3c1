//! What the CLI's test binaries share: a real server started in-process, and the
//! `tsunagu` binary run to completion.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use secrecy::SecretString;
use tokio::io::AsyncWriteExt;
use tsunagu_server::app::Application;
use tsunagu_server::config::Config;

/// Generous bound for "this should finish": only a hang trips it.
pub const ARRIVAL: Duration = Duration::from_secs(30);

/// A server on a random port with its data in `dir/data`; `dir` also holds the tests'
/// session files and downloads.
pub struct Server {
    pub base: String,
    pub dir: tempfile::TempDir,
}

/// Starts a server whose administrator `admin` has `admin_password`. Tests sign in
/// several users from one address and post faster than a person: the throttles and
/// post limits are raised.
pub async fn start_server(admin_password: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    config.limits = tsunagu_server::config::LimitsConfig::unlimited();
    config.bootstrap.admin_password = Some(SecretString::from(admin_password));
    config.auth.account_burst = 20;
    config.auth.ip_burst = 200;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = Application::build_with_listener(&config, listener)
        .await
        .unwrap();
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    Server { base, dir }
}

/// Runs `tsunagu` (in `cwd`, if given) with `stdin`: exit code, stdout, stderr.
pub async fn run(args: &[&str], stdin: Option<&str>, cwd: Option<&Path>) -> (i32, Vec<u8>, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tsunagu"));
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let mut child = command
        .args(args)
        .env_remove("TSUNAGU_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = tokio::time::timeout(ARRIVAL, child.wait_with_output())
        .await
        .expect("the command finishes")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`run`] in the current directory, with stdout as text.
pub async fn tsunagu(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let (code, out, err) = run(args, stdin, None).await;
    (code, String::from_utf8_lossy(&out).into_owned(), err)
}
