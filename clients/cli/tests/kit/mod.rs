//! What the CLI's test binaries share beyond `tsunagu_testkit`: a server with a working
//! directory for session files and downloads, and the `tsunagu` binary run to
//! completion.

use std::path::Path;
use std::time::Duration;

/// Generous bound for "this should finish": only a hang trips it.
pub const ARRIVAL: Duration = Duration::from_secs(30);

/// A server (SQLite: the CLI is under test, not the database) and a directory of the
/// test's own for what the CLI writes.
pub struct Server {
    pub app: tsunagu_testkit::TestApp,
    pub base: String,
    pub dir: tempfile::TempDir,
}

/// A server whose administrator `admin` has `tsunagu_testkit::ADMIN_PASSWORD`.
pub async fn start_server() -> Server {
    let app = tsunagu_testkit::spawn_app(tsunagu_testkit::Backend::Sqlite).await;
    Server {
        base: app.base.clone(),
        app,
        dir: tempfile::tempdir().expect("work dir"),
    }
}

/// Runs `tsunagu` (in `cwd`, if given) with `stdin`: exit code, stdout, stderr. A
/// password in the test's own environment never reaches it.
pub async fn run(args: &[&str], stdin: Option<&str>, cwd: Option<&Path>) -> (i32, Vec<u8>, String) {
    tsunagu_testkit::run_to_completion(
        env!("CARGO_BIN_EXE_tsunagu"),
        args,
        stdin,
        cwd,
        &["TSUNAGU_PASSWORD"],
        ARRIVAL,
    )
    .await
}

/// [`run`] in the current directory, with stdout as text.
pub async fn tsunagu(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let (code, out, err) = run(args, stdin, None).await;
    (code, String::from_utf8_lossy(&out).into_owned(), err)
}
