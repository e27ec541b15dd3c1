//! `tsunagu`: the command-line client. Human output by default, `--json` for scripts.
//! Exit codes: 0 ok, 1 server refused, 2 usage or local error, 3 cannot reach server.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
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
            let stored = load_session(&path)?;
            let client = Client::new(&stored.server)?;
            client.set_tokens(Some(stored.tokens));
            let result = client.me().await;
            // A refresh may have rotated the tokens: keep the new ones either way.
            if let Some(tokens) = client.tokens() {
                save_session(
                    &path,
                    &StoredSession {
                        server: stored.server.clone(),
                        tokens,
                    },
                )?;
            }
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
    }
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
                Error::Transport(_) => ExitCode::from(3),
                Error::Api { .. } => ExitCode::from(1),
                _ => ExitCode::from(2),
            }
        }
    }
}
