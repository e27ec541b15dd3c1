//! `tsunagu admin …`: region administration from the shell (third-party apps).

use std::path::PathBuf;

use clap::Subcommand;
use tsunagu_client::protocol::apps::{ApiClient, CreateApiClient, Scope, UpdateApiClient};
use tsunagu_client::protocol::ids::ApiClientId;

use super::{print_json, Failure, SignedIn};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Third-party apps: register, list, change, disable, rotate secrets.
    #[command(subcommand, name = "api-clients")]
    ApiClients(ApiClientsCommand),
    /// Webhooks of an API client: create, list, show, update, delete, test,
    /// deliveries, redeliver.
    #[command(subcommand)]
    Webhooks(super::webhooks::WebhooksCommand),
}

#[derive(Subcommand)]
pub enum ApiClientsCommand {
    /// The apps of your region.
    List,
    /// One app.
    Show { id: ApiClientId },
    /// Register an app; prints its client id and secret (shown only this once).
    Create {
        #[arg(long)]
        name: String,
        /// A scope to grant (repeat): messages:read, messages:write, files:read,
        /// files:write, groups:read, audit:read, users:read.
        #[arg(long = "scope", required = true, value_parser = parse_scope)]
        scopes: Vec<Scope>,
        #[arg(long)]
        description: Option<String>,
        /// A JWK Set (JSON file) of public keys, for private_key_jwt.
        #[arg(long)]
        jwks_file: Option<PathBuf>,
        /// Requests per minute (default: the server's).
        #[arg(long)]
        requests_per_minute: Option<u32>,
    },
    /// Change an app; `--enable` turns a disabled one back on.
    Update {
        id: ApiClientId,
        #[arg(long)]
        name: Option<String>,
        /// Replaces the granted scopes (repeat).
        #[arg(long = "scope", value_parser = parse_scope)]
        scopes: Vec<Scope>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        jwks_file: Option<PathBuf>,
        #[arg(long)]
        requests_per_minute: Option<u32>,
        #[arg(long)]
        enable: bool,
    },
    /// Disable an app: its tokens stop at once; nothing is deleted.
    Disable { id: ApiClientId },
    /// A new secret (printed once); the old one keeps working for `--grace-secs`.
    RotateSecret {
        id: ApiClientId,
        #[arg(long, default_value_t = 0)]
        grace_secs: u64,
    },
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::parse(s).ok_or_else(|| format!("unknown scope {s}"))
}

fn read_jwks(path: &Option<PathBuf>) -> Result<Option<serde_json::Value>, Failure> {
    match path {
        None => Ok(None),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| Failure::Usage(format!("{}: {e}", p.display())))?;
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| Failure::Usage(format!("{}: not JSON: {e}", p.display())))
        }
    }
}

fn print_client(c: &ApiClient) {
    println!(
        "{}  {}  {:<8}  {}  [{}]",
        c.id,
        c.client_id,
        if c.active { "active" } else { "disabled" },
        c.name,
        Scope::join(&c.scopes)
    );
}

pub async fn run(command: &AdminCommand, path: &PathBuf, json: bool) -> Result<(), Failure> {
    let command = match command {
        AdminCommand::ApiClients(command) => command,
        AdminCommand::Webhooks(command) => {
            let mut signed = SignedIn::load(path)?;
            let result = super::webhooks::run(&signed.client, command, json).await;
            signed.save_if_rotated()?;
            return result;
        }
    };
    let mut signed = SignedIn::load(path)?;
    let client = signed.client.clone();
    let result: Result<(), Failure> = async {
        match command {
            ApiClientsCommand::List => {
                let list = client.list_api_clients().await?;
                if json {
                    print_json(&list)?;
                } else if list.api_clients.is_empty() {
                    println!("No apps.");
                } else {
                    list.api_clients.iter().for_each(print_client);
                }
            }
            ApiClientsCommand::Show { id } => {
                let c = client.get_api_client(*id).await?;
                if json {
                    print_json(&c)?;
                } else {
                    print_client(&c);
                    println!("  app account: {}", c.user_id);
                    for s in &c.secrets {
                        match &s.expires_at {
                            Some(at) => println!("  secret of {} (works until {at})", s.created_at),
                            None => println!("  secret of {} (current)", s.created_at),
                        }
                    }
                }
            }
            ApiClientsCommand::Create {
                name,
                scopes,
                description,
                jwks_file,
                requests_per_minute,
            } => {
                let created = client
                    .create_api_client(&CreateApiClient {
                        name: name.clone(),
                        scopes: scopes.clone(),
                        description: description.clone(),
                        jwks: read_jwks(jwks_file)?,
                        requests_per_minute: *requests_per_minute,
                    })
                    .await?;
                if json {
                    print_json(&created)?;
                } else {
                    println!(
                        "Registered {} (app account {})",
                        created.id, created.user_id
                    );
                    println!("client_id:     {}", created.client_id);
                    println!("client_secret: {}", created.client_secret);
                    println!("The secret is shown only now: store it in the app's secret store.");
                }
            }
            ApiClientsCommand::Update {
                id,
                name,
                scopes,
                description,
                jwks_file,
                requests_per_minute,
                enable,
            } => {
                let c = client
                    .update_api_client(
                        *id,
                        &UpdateApiClient {
                            name: name.clone(),
                            description: description.clone(),
                            scopes: (!scopes.is_empty()).then(|| scopes.clone()),
                            jwks: read_jwks(jwks_file)?,
                            clear_jwks: None,
                            requests_per_minute: *requests_per_minute,
                            active: enable.then_some(true),
                        },
                    )
                    .await?;
                if json {
                    print_json(&c)?;
                } else {
                    print_client(&c);
                }
            }
            ApiClientsCommand::Disable { id } => {
                let c = client.disable_api_client(*id).await?;
                if json {
                    print_json(&c)?;
                } else {
                    print_client(&c);
                }
            }
            ApiClientsCommand::RotateSecret { id, grace_secs } => {
                let r = client
                    .rotate_api_client_secret(*id, Some(*grace_secs))
                    .await?;
                if json {
                    print_json(&r)?;
                } else {
                    println!("client_secret: {}", r.client_secret);
                    println!("The previous secret works until {}.", r.previous_expires_at);
                }
            }
        }
        Ok(())
    }
    .await;
    signed.save_if_rotated()?;
    result
}
