//! `tsunagu`: the command-line client. Human output by default, `--json` for scripts
//! (`tail --json` prints one message object per line, and its status lines on standard
//! error as JSON too).
//! Exit codes: 0 ok, 1 server refused, 2 usage or local error, 3 cannot reach server.

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
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
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
