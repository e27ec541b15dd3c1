//! `tsunagu`: the command-line client. Human output by default, `--json` for scripts
//! (`tail --json` prints one message object per line, and its status lines on standard
//! error as JSON too).
//! Exit codes: 0 ok, 1 server refused (or `audit verify` found the chain broken), 2 usage
//! or local error (including "the output file exists"), 3 cannot reach server.
//!
//! `upload` and `download` stream (memory does not grow with the file) and show a
//! progress bar when standard error is a terminal and `--json` is not given.

mod admin;

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Parser, Subcommand};
use serde::{Deserialize, Serialize};
use tsunagu_client::live::LiveEvent;
use tsunagu_client::protocol::ids::{GroupId, ThreadId, UserId};
use tsunagu_client::protocol::messaging::{Message, PostMessage, ThreadKind};
use tsunagu_client::protocol::ws::ServerFrame;
use tsunagu_client::{Client, Error, Tokens};

mod webhooks;

#[derive(Parser)]
#[command(name = "tsunagu", version, about = "Tsunagu command-line client")]
struct Cli {
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Where the session is stored (default: the user's config dir).
    #[arg(long, global = true, env = "TSUNAGU_SESSION_FILE")]
    session_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign in and store the session (mode 0600).
    Login {
        /// Server URL, e.g. http://127.0.0.1:8080
        #[arg(long, env = "TSUNAGU_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        #[arg(long)]
        login: String,
        /// Read the password from standard input (otherwise prompted, or taken from
        /// TSUNAGU_PASSWORD).
        #[arg(long)]
        password_stdin: bool,
        /// TOTP code, if the account has a second factor.
        #[arg(long)]
        totp: Option<String>,
    },
    /// Show who you are signed in as.
    Me,
    /// Sign out and forget the stored session.
    Logout,
    /// List the groups you belong to.
    Groups,
    /// List the threads of a group you can see (its main timeline and your 内緒話).
    Threads {
        #[arg(long)]
        group: GroupId,
    },
    /// Post a message to a thread, or to a group's main timeline.
    #[command(group(ArgGroup::new("target").required(true).args(["thread", "group"])))]
    Post {
        #[arg(long)]
        thread: Option<ThreadId>,
        /// The group whose main timeline to post to.
        #[arg(long)]
        group: Option<GroupId>,
        /// Idempotency key: running the command again with the same key returns the
        /// original message instead of posting twice (default: a fresh key).
        #[arg(long)]
        client_msg_id: Option<String>,
        /// The text; `-` reads it from standard input.
        text: String,
    },
    /// Follow a thread live, printing each message once as it arrives; Ctrl-C stops.
    Tail {
        #[arg(long)]
        thread: ThreadId,
        /// Print messages after this seq first (0: the whole thread); default: only new
        /// messages.
        #[arg(long)]
        from_seq: Option<i64>,
    },
    /// Upload a file into a thread (streamed, with a progress bar on a terminal).
    Upload {
        #[arg(long)]
        thread: ThreadId,
        /// The name to store (default: the file's own name).
        #[arg(long)]
        name: Option<String>,
        /// The file to upload.
        path: PathBuf,
    },
    /// Download a file. Never overwrites an existing file unless `--force`; the content
    /// goes to a temporary file first and is renamed into place once complete.
    Download {
        /// The file's id.
        file_id: String,
        /// Where to write it (`-` for standard output); default: the file's own name in
        /// the current directory.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Replace the output file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Audit reports and verification (region administrators).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Region administration: third-party apps (region administrators).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Who uploaded, viewed, downloaded or deleted a file, and refused attempts.
    FileAccess {
        /// The file's id.
        #[arg(long)]
        file: String,
        /// The whole report as CSV (UTF-8 with BOM, for Excel) instead of a listing.
        #[arg(long)]
        csv: bool,
        /// Write the CSV here (default: standard output).
        #[arg(short = 'o', long, requires = "csv")]
        output: Option<PathBuf>,
        /// Replace the output file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Re-hash the audit chain on the server and check its signed checkpoints. Exit
    /// status 1 when it is not intact.
    Verify,
}

#[derive(Serialize, Deserialize)]
struct StoredSession {
    server: String,
    tokens: Tokens,
}

fn session_path(cli: &Cli) -> Result<PathBuf, String> {
    if let Some(p) = &cli.session_file {
        return Ok(p.clone());
    }
    dirs::config_dir()
        .map(|d| d.join("tsunagu").join("session.json"))
        .ok_or_else(|| "no config directory; use --session-file".to_owned())
}

fn save_session(path: &PathBuf, session: &StoredSession) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = serde_json::to_vec_pretty(session).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
    }
    f.write_all(&text).map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

fn load_session(path: &PathBuf) -> Result<StoredSession, String> {
    let text =
        std::fs::read(path).map_err(|_| "not signed in: run `tsunagu login` first".to_owned())?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_password(from_stdin: bool) -> Result<String, String> {
    if !from_stdin {
        if let Ok(p) = std::env::var("TSUNAGU_PASSWORD") {
            return Ok(p);
        }
        if std::io::stdin().is_terminal() {
            return rpassword::prompt_password("Password: ").map_err(|e| e.to_string());
        }
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

enum Failure {
    Usage(String),
    Server(Error),
    /// A check ran and failed (`audit verify`): exit 1, already reported.
    Broken,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Server(e)
    }
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Usage(e)
    }
}

async fn run(cli: &Cli) -> Result<(), Failure> {
    let path = session_path(cli)?;
    match &cli.command {
        Command::Login {
            server,
            login,
            password_stdin,
            totp,
        } => {
            let password = read_password(*password_stdin)?;
            let client = Client::new(server)?;
            client.login(login, &password, totp.as_deref()).await?;
            let me = client.me().await?;
            let tokens = client
                .tokens()
                .ok_or_else(|| "no tokens after login".to_owned())?;
            save_session(
                &path,
                &StoredSession {
                    server: server.clone(),
                    tokens,
                },
            )?;
            if cli.json {
                println!("{}", serde_json::to_string(&me).unwrap_or_default());
            } else {
                println!(
                    "Signed in as {} ({}) in {}",
                    me.user.display_name, me.user.login, me.region.name
                );
                if let Some(action) = &me.pending_action {
                    println!("Action required: {action}");
                }
            }
        }
        Command::Me => {
            let mut signed = SignedIn::load(&path)?;
            let result = signed.client.me().await;
            // A refresh may have rotated the tokens: keep the new ones either way.
            signed.save_if_rotated()?;
            let me = result?;
            if cli.json {
                println!("{}", serde_json::to_string(&me).unwrap_or_default());
            } else {
                println!("{} ({})", me.user.display_name, me.user.login);
                println!("  profession:   {}", me.user.profession);
                println!("  role:         {}", me.user.role);
                println!("  region:       {} ({})", me.region.name, me.region.slug);
                if let Some(org) = &me.organization {
                    println!("  organization: {}", org.name);
                }
                if let Some(action) = &me.pending_action {
                    println!("  action required: {action}");
                }
            }
        }
        Command::Logout => {
            if let Ok(stored) = load_session(&path) {
                let client = Client::new(&stored.server)?;
                client.set_tokens(Some(stored.tokens));
                let _ = client.logout().await;
                let _ = std::fs::remove_file(&path);
            }
            if !cli.json {
                println!("Signed out");
            }
        }
        Command::Groups => {
            let mut signed = SignedIn::load(&path)?;
            let result = signed.client.list_groups().await;
            signed.save_if_rotated()?;
            let list = result?;
            if cli.json {
                print_json(&list)?;
            } else if list.groups.is_empty() {
                println!("No groups.");
            } else {
                for g in &list.groups {
                    println!(
                        "{}  {:<7}  {:>3} members  {:<6}  {}{}",
                        g.id,
                        g.kind.as_str(),
                        g.member_count,
                        g.my_role.as_str(),
                        g.name,
                        if g.archived { "  (archived)" } else { "" }
                    );
                }
            }
        }
        Command::Threads { group } => {
            let mut signed = SignedIn::load(&path)?;
            let result = signed.client.list_threads(*group).await;
            signed.save_if_rotated()?;
            let list = result?;
            if cli.json {
                print_json(&list)?;
            } else {
                for t in &list.threads {
                    let title = match t.kind {
                        ThreadKind::Main => "main timeline",
                        ThreadKind::Private => t.title.as_deref().unwrap_or("(untitled)"),
                    };
                    println!(
                        "{}  {:<7}  last #{:<5}  {:>3} unread  {}",
                        t.id,
                        t.kind.as_str(),
                        t.last_seq,
                        t.unread_count,
                        title
                    );
                }
            }
        }
        Command::Post {
            thread,
            group,
            client_msg_id,
            text,
        } => {
            let body = if text == "-" {
                let mut body = String::new();
                std::io::stdin()
                    .lock()
                    .read_to_string(&mut body)
                    .map_err(|e| format!("reading the message from standard input: {e}"))?;
                body.truncate(body.trim_end_matches(['\r', '\n']).len());
                body
            } else {
                text.clone()
            };
            let mut signed = SignedIn::load(&path)?;
            let result = post(&signed.client, *thread, *group, client_msg_id.clone(), body).await;
            signed.save_if_rotated()?;
            let message = result?;
            if cli.json {
                print_json(&message)?;
            } else {
                println!("Posted #{} in thread {}", message.seq, message.thread_id);
            }
        }
        Command::Tail { thread, from_seq } => {
            let mut signed = SignedIn::load(&path)?;
            let result = tail(&mut signed, *thread, *from_seq, cli.json).await;
            signed.save_if_rotated()?;
            result?;
        }
        Command::Upload {
            thread,
            name,
            path: file,
        } => {
            let mut signed = SignedIn::load(&path)?;
            let result =
                transfers::upload(&signed.client, *thread, name.as_deref(), file, cli.json).await;
            signed.save_if_rotated()?;
            let info = result?;
            if cli.json {
                print_json(&info)?;
            } else {
                println!(
                    "Uploaded {} ({}, {}) as {}",
                    info.name,
                    transfers::human_bytes(info.size),
                    info.kind.as_str(),
                    info.id
                );
            }
        }
        Command::Download {
            file_id,
            output,
            force,
        } => {
            let mut signed = SignedIn::load(&path)?;
            let result =
                transfers::download(&signed.client, file_id, output.as_deref(), *force, cli.json)
                    .await;
            signed.save_if_rotated()?;
            let done = result?;
            if cli.json {
                print_json(&done)?;
            } else if let Some(p) = &done.path {
                println!(
                    "Downloaded {} to {}",
                    transfers::human_bytes(done.size),
                    p.display()
                );
            }
        }
        Command::Audit(AuditCommand::FileAccess {
            file,
            csv,
            output,
            force,
        }) => {
            let mut signed = SignedIn::load(&path)?;
            let result = if *csv {
                transfers::audit_csv(&signed.client, file, output.as_deref(), *force, cli.json)
                    .await
                    .map(|_| ())
            } else {
                transfers::audit_listing(&signed.client, file, cli.json).await
            };
            signed.save_if_rotated()?;
            result?;
        }
        Command::Audit(AuditCommand::Verify) => {
            let mut signed = SignedIn::load(&path)?;
            let result = signed.client.audit_verify().await;
            signed.save_if_rotated()?;
            let v = result?;
            if cli.json {
                print_json(&v)?;
            } else if v.intact {
                println!(
                    "Audit chain intact: {} entries, {} signed checkpoints verified.",
                    v.checked, v.checkpoints
                );
            } else if let Some(p) = &v.first_problem {
                println!(
                    "Audit chain BROKEN at entry {} ({}): {}",
                    p.seq, p.reason, p.detail
                );
            }
            if !v.intact {
                return Err(Failure::Broken);
            }
        }
        Command::Admin(command) => admin::run(command, &path, cli.json).await?,
    }
    Ok(())
}

/// A stored sign-in in use; writes rotated tokens back so that the next run (and other
/// runs sharing the file) can still refresh.
struct SignedIn {
    path: PathBuf,
    server: String,
    client: Client,
    saved_access: String,
}

impl SignedIn {
    fn load(path: &PathBuf) -> Result<Self, Failure> {
        let stored = load_session(path)?;
        let client = Client::new(&stored.server)?;
        let saved_access = stored.tokens.access_token.clone();
        client.set_tokens(Some(stored.tokens));
        Ok(SignedIn {
            path: path.clone(),
            server: stored.server,
            client,
            saved_access,
        })
    }

    /// Saves the tokens if a refresh rotated them since the last save.
    fn save_if_rotated(&mut self) -> Result<(), String> {
        let Some(tokens) = self.client.tokens() else {
            return Ok(());
        };
        if tokens.access_token == self.saved_access {
            return Ok(());
        }
        let access = tokens.access_token.clone();
        save_session(
            &self.path,
            &StoredSession {
                server: self.server.clone(),
                tokens,
            },
        )?;
        self.saved_access = access;
        Ok(())
    }
}

fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

async fn post(
    client: &Client,
    thread: Option<ThreadId>,
    group: Option<GroupId>,
    client_msg_id: Option<String>,
    body: String,
) -> Result<Message, Failure> {
    let thread = match (thread, group) {
        (Some(thread), _) => thread,
        (None, Some(group)) => client.get_group(group).await?.main_thread_id,
        (None, None) => return Err(Failure::Usage("give --thread or --group".into())),
    };
    let req = PostMessage {
        body,
        client_msg_id: client_msg_id.unwrap_or_else(tsunagu_client::new_client_msg_id),
        reply_to: None,
        mentions: Vec::new(),
        attachments: Vec::new(),
    };
    Ok(client.post_message(thread, &req).await?)
}

/// Resolves when the user asks the process to stop (Ctrl-C, or SIGTERM on Unix).
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_err() { std::future::pending::<()>().await },
                _ = term.recv() => {}
            }
            return;
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        // No way to be told: run until killed.
        std::future::pending::<()>().await;
    }
}

/// A status line on standard error: JSON with `--json`, prose otherwise.
fn note(json: bool, value: serde_json::Value, text: String) {
    if json {
        eprintln!("{value}");
    } else {
        eprintln!("{text}");
    }
}

/// Who wrote what: display names of the thread's group, refetched once for an author
/// not seen before (a new member).
struct Names {
    group: GroupId,
    known: std::collections::HashMap<UserId, String>,
    asked: std::collections::HashSet<UserId>,
}

impl Names {
    async fn name(&mut self, client: &Client, user: UserId) -> String {
        if !self.known.contains_key(&user) && self.asked.insert(user) {
            if let Ok(list) = client.list_members(self.group).await {
                self.known.extend(
                    list.members
                        .into_iter()
                        .map(|m| (m.user_id, m.display_name)),
                );
            }
        }
        match self.known.get(&user) {
            Some(name) => name.clone(),
            None => user.to_string().chars().take(8).collect(),
        }
    }
}

/// Writes one message; an error means standard output is gone (`| head`).
fn print_message(json: bool, message: &Message, author: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(message)?)?;
    } else {
        let body = if message.deleted {
            "(deleted)"
        } else {
            message.body.as_str()
        };
        let mut lines = body.lines();
        writeln!(
            out,
            "#{} {} {}: {}",
            message.seq,
            message.created_at,
            author,
            lines.next().unwrap_or("")
        )?;
        for line in lines {
            writeln!(out, "    {line}")?;
        }
    }
    out.flush()
}

async fn tail(
    signed: &mut SignedIn,
    thread: ThreadId,
    from_seq: Option<i64>,
    json: bool,
) -> Result<(), Failure> {
    let stop = stop_requested();
    tokio::pin!(stop);
    // Checks the thread is visible (404 otherwise) and fixes "new" as of now.
    let info = signed.client.get_thread(thread).await?;
    let after = from_seq.unwrap_or(info.last_seq);
    let mut names = Names {
        group: info.group_id,
        known: Default::default(),
        asked: Default::default(),
    };
    let connect = signed
        .client
        .live()
        .follow_all(false)
        .follow(thread, after)
        .connect();
    let mut session = tokio::select! {
        session = connect => session?,
        _ = &mut stop => return Ok(()),
    };
    let me = session.user_id();
    loop {
        let event = tokio::select! {
            event = session.next_event() => event,
            _ = &mut stop => break,
        };
        signed.save_if_rotated()?;
        match event? {
            LiveEvent::Message(message) if message.thread_id == thread => {
                let author = if json {
                    String::new()
                } else {
                    names.name(&signed.client, message.author_id).await
                };
                if print_message(json, &message, &author).is_err() {
                    break;
                }
            }
            LiveEvent::Connected {
                threads,
                reconnected,
            } => {
                let Some(&seq) = threads.get(&thread) else {
                    let _ = session.close().await;
                    return Err(Failure::Server(Error::Refused {
                        code: tsunagu_client::protocol::ErrorCode::NotFound,
                        message: "the thread is no longer visible to you".into(),
                    }));
                };
                let text = if reconnected {
                    "Reconnected.".to_owned()
                } else {
                    format!("Following thread {thread}, caught up to #{seq}. Press Ctrl-C to stop.")
                };
                note(
                    json,
                    serde_json::json!({
                        "status": "connected",
                        "thread_id": thread,
                        "last_seq": seq,
                        "reconnected": reconnected,
                    }),
                    text,
                );
            }
            LiveEvent::Disconnected {
                reason,
                attempt,
                retry_in,
            } => note(
                json,
                serde_json::json!({
                    "status": "disconnected",
                    "reason": reason,
                    "attempt": attempt,
                    "retry_in_ms": retry_in.as_millis() as u64,
                }),
                format!(
                    "Connection lost ({reason}); retrying in {:.1}s (attempt {attempt}).",
                    retry_in.as_secs_f64()
                ),
            ),
            LiveEvent::Update(ServerFrame::MemberRemoved { group_id, user_id })
                if group_id == info.group_id && user_id == me =>
            {
                let _ = session.close().await;
                return Err(Failure::Server(Error::Refused {
                    code: tsunagu_client::protocol::ErrorCode::NotFound,
                    message: "you were removed from the group".into(),
                }));
            }
            LiveEvent::Update(ServerFrame::ThreadMemberRemoved {
                thread_id, user_id, ..
            }) if thread_id == thread && user_id == me => {
                let _ = session.close().await;
                return Err(Failure::Server(Error::Refused {
                    code: tsunagu_client::protocol::ErrorCode::NotFound,
                    message: "you were removed from the thread".into(),
                }));
            }
            _ => {}
        }
    }
    session.close().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            if cli.json {
                eprintln!(
                    "{}",
                    serde_json::json!({ "error": { "code": "client_error", "message": msg } })
                );
            } else {
                eprintln!("error: {msg}");
            }
            ExitCode::from(2)
        }
        Err(Failure::Broken) => ExitCode::from(1),
        Err(Failure::Server(e)) => {
            if cli.json {
                let code = e.code().map(|c| c.as_str()).unwrap_or("client_error");
                eprintln!(
                    "{}",
                    serde_json::json!({ "error": { "code": code, "message": e.to_string() } })
                );
            } else {
                eprintln!("error: {e}");
            }
            match e {
                Error::Transport(_) | Error::WebSocket(_) => ExitCode::from(3),
                Error::Api { .. } | Error::Refused { .. } => ExitCode::from(1),
                _ => ExitCode::from(2),
            }
        }
    }
}

/// `upload`, `download` and audit exports: streamed transfers with progress bars.
mod transfers {
    use std::io::IsTerminal;
    use std::path::{Path, PathBuf};

    use futures_util::StreamExt;
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use serde::Serialize;
    use tokio::io::AsyncWriteExt;
    use tsunagu_client::protocol::files::FileInfo;
    use tsunagu_client::protocol::ids::ThreadId;
    use tsunagu_client::{AuditFilter, Client, Download};

    use super::Failure;

    /// `1.5 MiB`.
    pub fn human_bytes(n: u64) -> String {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = n as f64;
        let mut unit = 0;
        while v >= 1024.0 && unit < UNITS.len() - 1 {
            v /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            format!("{n} B")
        } else {
            format!("{v:.1} {}", UNITS[unit])
        }
    }

    /// A bar on standard error for a terminal; hidden for scripts and `--json`.
    fn progress(len: Option<u64>, json: bool, verb: &str) -> ProgressBar {
        let visible = !json && std::io::stderr().is_terminal();
        let bar = ProgressBar::with_draw_target(
            len,
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        let template = if len.is_some() {
            format!(
                "{verb} {{bar:32.cyan/blue}} {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} eta {{eta}}"
            )
        } else {
            format!("{verb} {{spinner}} {{bytes}} {{binary_bytes_per_sec}}")
        };
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    }

    fn local(what: &str, path: &Path, e: std::io::Error) -> Failure {
        Failure::Usage(format!("{what} {}: {e}", path.display()))
    }

    pub async fn upload(
        client: &Client,
        thread: ThreadId,
        name: Option<&str>,
        path: &Path,
        json: bool,
    ) -> Result<FileInfo, Failure> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| local("cannot open", path, e))?;
        let meta = file
            .metadata()
            .await
            .map_err(|e| local("cannot read", path, e))?;
        if !meta.is_file() {
            return Err(Failure::Usage(format!("{} is not a file", path.display())));
        }
        let name = match name {
            Some(n) => n.to_owned(),
            None => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| Failure::Usage(format!("{} has no file name", path.display())))?,
        };
        let len = meta.len();
        let bar = progress(Some(len), json, "uploading");
        let counter = bar.clone();
        let body =
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |chunk| {
                if let Ok(c) = chunk {
                    counter.inc(c.len() as u64);
                }
            });
        let result = client.upload_file(thread, &name, body, Some(len)).await;
        bar.finish_and_clear();
        Ok(result?)
    }

    /// What `download` did (its `--json` answer).
    #[derive(Serialize)]
    pub struct Downloaded {
        pub file_id: String,
        /// `None` when written to standard output.
        pub path: Option<PathBuf>,
        pub size: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub content_type: Option<String>,
    }

    /// A name from the server made safe to create in the current directory.
    fn safe_name(name: &str) -> Option<String> {
        let base = name.rsplit(['/', '\\']).next().unwrap_or("").trim();
        let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
        if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
            None
        } else {
            Some(cleaned)
        }
    }

    fn refuse_existing(path: &Path) -> Failure {
        Failure::Usage(format!(
            "{} exists; use --force to replace it",
            path.display()
        ))
    }

    pub async fn download(
        client: &Client,
        file_id: &str,
        output: Option<&Path>,
        force: bool,
        json: bool,
    ) -> Result<Downloaded, Failure> {
        let to_stdout = output.is_some_and(|p| p.as_os_str() == "-");
        if let Some(p) = output.filter(|_| !to_stdout) {
            if !force && p.exists() {
                return Err(refuse_existing(p));
            }
        }
        let download = client.download_file(file_id, None).await?;
        let content_type = download.content_type.clone();
        if to_stdout {
            let mut out = tokio::io::stdout();
            let size = copy_body(download, &mut out, json).await?;
            out.flush()
                .await
                .map_err(|e| Failure::Usage(format!("standard output: {e}")))?;
            return Ok(Downloaded {
                file_id: file_id.to_owned(),
                path: None,
                size,
                content_type,
            });
        }
        let target = match output {
            Some(p) => p.to_path_buf(),
            None => PathBuf::from(
                download
                    .file_name
                    .as_deref()
                    .and_then(safe_name)
                    .unwrap_or_else(|| file_id.to_owned()),
            ),
        };
        let size = write_atomically(download, &target, force, json).await?;
        Ok(Downloaded {
            file_id: file_id.to_owned(),
            path: Some(target),
            size,
            content_type,
        })
    }

    /// Streams the body into `out`, checking the length the server announced.
    async fn copy_body<W: tokio::io::AsyncWrite + Unpin>(
        mut download: Download,
        out: &mut W,
        json: bool,
    ) -> Result<u64, Failure> {
        let bar = progress(download.content_length, json, "downloading");
        let mut written = 0_u64;
        let result = async {
            while let Some(chunk) = download.body.next().await {
                let chunk = chunk?;
                out.write_all(&chunk)
                    .await
                    .map_err(|e| Failure::Usage(format!("writing: {e}")))?;
                written += chunk.len() as u64;
                bar.inc(chunk.len() as u64);
            }
            Ok::<_, Failure>(())
        }
        .await;
        bar.finish_and_clear();
        result?;
        if let Some(expected) = download.content_length {
            if expected != written {
                return Err(Failure::Server(tsunagu_client::Error::Protocol(format!(
                    "the server announced {expected} bytes but sent {written}"
                ))));
            }
        }
        Ok(written)
    }

    /// Writes to a temporary file beside `target`, then moves it into place: the target
    /// never holds a partial file, and without `force` an existing one is never replaced
    /// (not even one created meanwhile: the final step is a hard link, which fails if
    /// the name is taken).
    async fn write_atomically(
        download: Download,
        target: &Path,
        force: bool,
        json: bool,
    ) -> Result<u64, Failure> {
        if !force && target.exists() {
            return Err(refuse_existing(target));
        }
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Failure::Usage(format!("{} is not a file path", target.display())))?;
        let tmp = dir.join(format!(".{base}.{}.part", std::process::id()));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .await
            .map_err(|e| local("cannot create", &tmp, e))?;
        let result = async {
            let size = copy_body(download, &mut file, json).await?;
            file.flush().await.map_err(|e| local("writing", &tmp, e))?;
            file.sync_all()
                .await
                .map_err(|e| local("writing", &tmp, e))?;
            drop(file);
            if force {
                tokio::fs::rename(&tmp, target)
                    .await
                    .map_err(|e| local("cannot write", target, e))?;
            } else {
                match tokio::fs::hard_link(&tmp, target).await {
                    Ok(()) => {
                        let _ = tokio::fs::remove_file(&tmp).await;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Err(refuse_existing(target));
                    }
                    // No hard links here (some network or FAT file systems).
                    Err(_) => {
                        if target.exists() {
                            return Err(refuse_existing(target));
                        }
                        tokio::fs::rename(&tmp, target)
                            .await
                            .map_err(|e| local("cannot write", target, e))?;
                    }
                }
            }
            Ok(size)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// `audit file-access --csv`: the whole report, to a file (atomically) or stdout.
    pub async fn audit_csv(
        client: &Client,
        file_id: &str,
        output: Option<&Path>,
        force: bool,
        json: bool,
    ) -> Result<u64, Failure> {
        let to_stdout = output.is_none_or(|p| p.as_os_str() == "-");
        if let Some(p) = output.filter(|_| !to_stdout) {
            if !force && p.exists() {
                return Err(refuse_existing(p));
            }
        }
        let export = client
            .audit_file_access_csv(&AuditFilter::file(file_id))
            .await?;
        match output.filter(|_| !to_stdout) {
            Some(p) => write_atomically(export, p, force, json).await,
            None => {
                let mut out = tokio::io::stdout();
                let n = copy_body(export, &mut out, true).await?;
                out.flush()
                    .await
                    .map_err(|e| Failure::Usage(format!("standard output: {e}")))?;
                Ok(n)
            }
        }
    }

    /// `audit file-access` without `--csv`: every entry, as lines or as JSON.
    pub async fn audit_listing(client: &Client, file_id: &str, json: bool) -> Result<(), Failure> {
        let mut filter = AuditFilter::file(file_id);
        filter.limit = Some(1000);
        let mut entries = Vec::new();
        loop {
            let page = client.audit_file_access(&filter).await?;
            entries.extend(page.entries);
            match page.next_cursor {
                Some(c) => filter.cursor = Some(c),
                None => break,
            }
        }
        if json {
            super::print_json(&serde_json::json!({ "entries": entries }))?;
            return Ok(());
        }
        if entries.is_empty() {
            println!("No file access recorded for {file_id}.");
        }
        for e in &entries {
            let who = e
                .actor_name
                .as_deref()
                .or(e.actor_user_id.as_deref())
                .unwrap_or("-");
            let org = e.actor_organization_name.as_deref().unwrap_or("");
            println!(
                "{}  {:<22} {:<8} {}{}{}  {}",
                e.at,
                e.action,
                e.outcome,
                who,
                if org.is_empty() { "" } else { " / " },
                org,
                e.ip.as_deref().unwrap_or("-")
            );
        }
        Ok(())
    }
}
