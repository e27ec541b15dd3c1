//! `tsunagu-server`: `serve` (default), `migrate`, `admin`, `audit`, `keys`, `backup`,
//! `restore`.

use std::io::Read;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use secrecy::SecretString;
use tsunagu_protocol::accounts::{CreateUser, Profession, UserRole};
use tsunagu_server::app::{open_domain, shutdown_signal, Application};
use tsunagu_server::config::Config;
use tsunagu_server::telemetry;

#[derive(Parser)]
#[command(
    name = "tsunagu-server",
    version,
    about = "Tsunagu care-team messaging server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Account administration from the shell.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// File encryption keys (KEKs).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Back up a single-machine installation (SQLite, local blobs) into a new directory:
    /// the keys, an online snapshot of the database, the blobs and a manifest of SHA-256
    /// checksums. The server may keep running. (PostgreSQL/S3: see docs/operations.md.)
    Backup {
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Restore a backup into an empty data directory (and empty key and blob locations),
    /// after checking every file against the manifest. Run it with the configuration the
    /// restored server will use, before starting it.
    Restore {
        #[arg(long)]
        from: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a new key-encryption key in the key directory and print its id. New
    /// files are wrapped with it once the servers restart (the newest id is current
    /// unless `files.current_kek` says otherwise).
    New,
    /// Re-wrap every file's data key and every TOTP secret under the current KEK.
    /// Blobs are not rewritten. Afterwards older KEK files can be removed.
    Rotate,
    /// List the configured KEK ids and which one is current.
    List,
    /// Every key the server uses: KEKs, access-token signing keys (and what each does
    /// now: Signing, Next, Verifying, Retired) and audit checkpoint keys.
    Status,
    /// Add a new access-token signing key to the key ring (`auth.jwt_key_dir`). Running
    /// servers load it within 10 s, accept it at once and sign with it after
    /// `auth.jwt_key_activation_secs`; the key it replaces keeps verifying the tokens it
    /// signed until they have expired (an hour at most). Nobody is signed out. Audited.
    JwtRotate,
    /// Remove the ring files of access-token keys retired longer than a token lives.
    JwtPrune,
    /// Replace the audit checkpoint signing key (`audit.signing_key_file`), keeping the
    /// old public key in `audit.verify_keys_dir` so older checkpoints still verify.
    /// Running servers sign with the new key from their next checkpoint run. Audited.
    AuditRotate,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Re-hash the whole audit chain and check its signed checkpoints; report the first
    /// entry that was modified, removed, inserted or reordered. Exit status: 0 intact,
    /// 1 broken, 2 could not verify.
    Verify,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a region (tenant).
    CreateRegion {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
    },
    /// Create a user. The password is read from standard input, or generated and
    /// printed (then it must be changed at first sign-in).
    CreateUser {
        #[arg(long, default_value = "default")]
        region: String,
        #[arg(long)]
        login: String,
        #[arg(long)]
        display_name: String,
        /// doctor, nurse, pharmacist, dentist, care_manager, therapist, care_worker,
        /// medical_social_worker, clerk, patient, family, other
        #[arg(long)]
        profession: String,
        /// user or region_admin
        #[arg(long, default_value = "user")]
        role: String,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Reset a user's password and sign them out everywhere.
    ResetPassword {
        #[arg(long)]
        login: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user's TOTP second factor.
    ResetTotp {
        #[arg(long)]
        login: String,
    },
}

fn read_password_stdin() -> anyhow::Result<SecretString> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s)?;
    let s = s.trim_end_matches(['\r', '\n']).to_owned();
    if s.is_empty() {
        bail!("no password on standard input");
    }
    Ok(SecretString::from(s))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load()?;
    telemetry::init_logging(&config.log);
    for var in Config::unknown_env_vars() {
        tracing::warn!(variable = %var, "unknown TSUNAGU_ environment variable ignored");
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            // Every websocket is a descriptor: take the hard limit the system allows.
            let _ = rlimit::increase_nofile_limit(u64::MAX);
            let app = Application::build(&config).await?;
            app.run_until_stopped(shutdown_signal()).await?;
        }
        Command::Migrate => {
            open_domain(&config).await?;
            eprintln!("migrations applied");
        }
        Command::Admin(cmd) => admin(&config, cmd).await?,
        Command::Backup { to } => {
            let manifest = tsunagu_server::backup::backup(&config, &to).await?;
            let bytes: u64 = manifest.files.iter().map(|f| f.size).sum();
            eprintln!(
                "backed up {} files ({bytes} bytes) to {}; manifest.json lists their SHA-256",
                manifest.files.len(),
                to.display()
            );
            if manifest.env_keks_not_included {
                eprintln!(
                    "warning: KEKs from TSUNAGU_FILES_KEKS are not in the backup; keep them with it"
                );
            }
        }
        Command::Restore { from } => {
            let manifest = tsunagu_server::backup::restore(&config, &from)?;
            eprintln!(
                "restored {} files from {} (backup of {}) into {}; start the server, then run `audit verify`",
                manifest.files.len(),
                from.display(),
                manifest.created_at,
                config.data_dir.display()
            );
        }
        Command::Keys(KeysCommand::New) => {
            let dir = config.kek_dir();
            let id = tsunagu_server::blob::keys::generate_kek(&dir)?;
            println!("{id}");
            eprintln!(
                "written to {}; restart the servers, then run `keys rotate`",
                dir.display()
            );
        }
        Command::Keys(KeysCommand::List) => {
            let domain = open_domain(&config).await?;
            let (ids, current) = domain.maintenance().kek_ids();
            for id in ids {
                let mark = if id == current { " (current)" } else { "" };
                println!("{id}{mark}");
            }
            domain.close().await;
        }
        Command::Keys(KeysCommand::Status) => {
            let domain = open_domain(&config).await?;
            let (ids, current) = domain.maintenance().kek_ids();
            println!("key-encryption keys:");
            for id in ids {
                let mark = if id == current { " (current)" } else { "" };
                println!("  {id}{mark}");
            }
            println!("access-token signing keys:");
            for (kid, added, path, state) in domain.accounts().signing_keys() {
                println!("  {kid} {state:?} added_ms={added} {}", path.display());
            }
            let verifier = tsunagu_server::app::load_audit_verifier(&config)?;
            let current = verifier.key_id();
            println!("audit checkpoint keys:");
            for id in verifier.key_ids() {
                let mark = if id == current {
                    " (signing)"
                } else {
                    " (verifying)"
                };
                println!("  {id}{mark}");
            }
            domain.close().await;
        }
        Command::Keys(KeysCommand::JwtRotate) => {
            let domain = open_domain(&config).await?;
            let dir = config.jwt_key_dir();
            let (kid, path) = tsunagu_server::domain::tokens::add_ring_key(&dir)?;
            let previous = domain
                .accounts()
                .signing_keys()
                .into_iter()
                .find(|k| k.3 == tsunagu_server::domain::tokens::KeyState::Signing);
            let activation = config.auth.jwt_key_activation_secs;
            domain
                .maintenance()
                .record_key_rotation(
                    "keys jwt-rotate",
                    serde_json::json!({
                        "key": "access_token",
                        "kid": kid,
                        "replaces": previous.map(|k| k.0),
                        "activation_secs": activation,
                    }),
                )
                .await?;
            domain.close().await;
            println!("{kid}");
            eprintln!(
                "written to {}; servers sign with it in {activation} s and accept the old key's \
                 tokens until they expire",
                path.display()
            );
        }
        Command::Keys(KeysCommand::JwtPrune) => {
            let domain = open_domain(&config).await?;
            let dir = config.jwt_key_dir();
            let mut removed = 0;
            for (kid, _, path, state) in domain.accounts().signing_keys() {
                if state == tsunagu_server::domain::tokens::KeyState::Retired
                    && path.starts_with(&dir)
                {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                    eprintln!("removed retired key {kid}");
                    removed += 1;
                }
            }
            domain.close().await;
            eprintln!("{removed} retired keys removed");
        }
        Command::Keys(KeysCommand::AuditRotate) => {
            let domain = open_domain(&config).await?;
            let (old, new) = tsunagu_server::audit::checkpoint::rotate_signing_key(
                &config.audit_signing_key_file(),
                &config.audit_verify_keys_dir(),
            )?;
            domain
                .maintenance()
                .record_key_rotation(
                    "keys audit-rotate",
                    serde_json::json!({ "key": "audit_checkpoint", "key_id": new, "replaces": old }),
                )
                .await?;
            domain.close().await;
            println!("{new}");
            eprintln!(
                "the old key {old} verifies the checkpoints it signed (public key kept in {})",
                config.audit_verify_keys_dir().display()
            );
        }
        Command::Keys(KeysCommand::Rotate) => {
            let domain = open_domain(&config).await?;
            let n = domain.maintenance().rotate_keys().await?;
            let t = domain.maintenance().seal_totp_secrets(false).await?;
            let (_, current) = domain.maintenance().kek_ids();
            eprintln!(
                "re-wrapped {n} data keys and {t} TOTP secrets under {current}; older KEKs can now be removed"
            );
            domain.close().await;
        }
        Command::Audit(AuditCommand::Verify) => match audit_verify(&config).await {
            Ok(true) => {}
            Ok(false) => std::process::exit(1),
            Err(e) => {
                eprintln!("audit verify: {e:#}");
                std::process::exit(2);
            }
        },
    }
    Ok(())
}

/// Prints a report for people; `Ok(true)` when the chain is intact.
async fn audit_verify(config: &Config) -> anyhow::Result<bool> {
    let domain = open_domain(config).await?;
    let signer = tsunagu_server::app::load_audit_signer(config)?;
    let verifier = tsunagu_server::app::load_audit_verifier(config)?;
    let result = domain
        .audit_reports()
        .operator_verify_audit(&verifier)
        .await;
    domain.close().await;
    let v = result?;
    match &v.first_problem {
        None => {
            println!(
                "audit log intact: {} entries and {} signed checkpoints verified (key {})",
                v.checked,
                v.checkpoints,
                signer.key_id()
            );
        }
        Some(p) => {
            println!("audit log BROKEN at seq {}: {}", p.seq, p.reason);
            println!("  {}", p.detail);
            println!(
                "  {} entries and {} signed checkpoints verified before it (key {})",
                v.checked,
                v.checkpoints,
                signer.key_id()
            );
        }
    }
    Ok(v.intact)
}

async fn admin(config: &Config, cmd: AdminCommand) -> anyhow::Result<()> {
    let domain = open_domain(config).await?;
    match cmd {
        AdminCommand::CreateRegion { slug, name } => {
            let region = domain.operator().create_region(&slug, &name).await?;
            println!("{}", region.id);
        }
        AdminCommand::CreateUser {
            region,
            login,
            display_name,
            profession,
            role,
            password_stdin,
        } => {
            let profession = Profession::parse(&profession).context("unknown profession")?;
            let role = UserRole::parse(&role).context("role must be user or region_admin")?;
            let (password, generated) = if password_stdin {
                (read_password_stdin()?, None)
            } else {
                let p = tsunagu_server::domain::password::generate_one_time();
                (SecretString::from(p.clone()), Some(p))
            };
            use secrecy::ExposeSecret;
            let user = domain
                .operator()
                .operator_create_user(
                    &region,
                    CreateUser {
                        login,
                        display_name,
                        display_name_kana: None,
                        password: password.expose_secret().to_owned(),
                        profession,
                        organization_id: None,
                        role: Some(role),
                        must_change_password: Some(generated.is_some()),
                    },
                )
                .await?;
            println!("{}", user.id);
            if let Some(p) = generated {
                eprintln!("one-time password (must be changed at first sign-in): {p}");
            }
        }
        AdminCommand::ResetPassword {
            login,
            password_stdin,
        } => {
            let password = if password_stdin {
                Some(read_password_stdin()?)
            } else {
                None
            };
            if let Some(p) = domain
                .operator()
                .operator_reset_password(&login, password)
                .await?
            {
                eprintln!("one-time password (must be changed at first sign-in): {p}");
            } else {
                eprintln!("password set; all sessions signed out");
            }
        }
        AdminCommand::ResetTotp { login } => {
            domain.operator().operator_reset_totp(&login).await?;
            eprintln!("second factor removed");
        }
    }
    // Running nodes on the cluster bus hear of it now (and the others within a second,
    // from the sessions table): sockets of revoked sessions close.
    domain.bus().flush().await;
    domain.close().await;
    Ok(())
}
