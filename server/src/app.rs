//! Start-up and shutdown: open the store, migrate, bootstrap, bind, serve, drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;

use crate::api::{self, AppState, HttpLimits};
use crate::audit::checkpoint::{self, CheckpointSettings, CheckpointSigner, CheckpointVerifier};
use crate::blob::keys::KeyRing;
use crate::blob::BlobStore;
use crate::bus::nats::NatsBus;
use crate::bus::{Bus, Hub, LocalBus};
use crate::config::Config;
use crate::domain::files::FileServices;
use crate::domain::operator::Bootstrap;
use crate::domain::throttle::Throttle;
use crate::domain::tokens::TokenSigner;
use crate::domain::{Domain, DomainSettings};
use crate::store::Store;
use crate::telemetry;

/// Opens the database (creating the data dir for SQLite), applies migrations, loads the
/// signing key and, on an empty database, creates the first region and its admin.
/// Shared by `serve`, `migrate` and `admin`, so whichever runs first bootstraps.
pub async fn open_domain(config: &Config) -> anyhow::Result<Domain> {
    Ok(open(config).await?.0)
}

/// [`open_domain`], also returning the store itself for what works below the rules:
/// the audit checkpoint writer, operator tooling and tests.
pub async fn open(config: &Config) -> anyhow::Result<(Domain, Store)> {
    // Before the bootstrap hashes the first password; checked here too for callers that
    // build a `Config` in code rather than loading it.
    crate::domain::password::set_cost(config.auth.argon2_memory_kib, config.auth.argon2_iterations)
        .map_err(anyhow::Error::msg)?;
    let url = config.database_url();
    if url.starts_with("sqlite:") {
        create_private_dir(&config.data_dir)?;
    }
    let store = Store::connect(&url, config.database.max_connections)
        .await
        .context("connecting to the database")?;
    store.migrate().await.context("applying migrations")?;
    // Generate a key only at the default location; a configured path that is missing is
    // a mistake (a cluster node would otherwise sign with its own key).
    let create = config.auth.jwt_key_file.is_none();
    let signer = TokenSigner::load_ring(
        jwt_ring_source(config),
        create,
        &config.auth.issuer,
        &config.auth.audience,
    )?;
    let throttle = Throttle::new(
        config.auth.account_burst,
        config.auth.account_refill_secs,
        config.auth.ip_burst,
        config.auth.ip_refill_secs,
    );
    let domain = Domain::new(
        store.clone(),
        signer,
        throttle,
        DomainSettings {
            totp_issuer: config.auth.totp_issuer.clone(),
            max_message_chars: config.messages.max_body_chars,
            posts_per_minute: config.limits.posts_per_minute,
            posts_burst: config.limits.posts_burst,
            apps: crate::domain::apps::AppSettings {
                token_ttl_secs: config.apps.token_ttl_secs,
                token_url: config.apps.token_url.clone(),
                requests_per_minute: config.apps.requests_per_minute,
            },
        },
        open_bus(config).await?,
        open_files(config)?,
    );
    // Plain TOTP secrets from before migration 0011 are sealed now rather than at their
    // owner's next sign-in: a dormant account's secret would otherwise stay readable in
    // the database (and its backups) indefinitely. Idempotent and row by row, so nodes
    // starting together share the work; `Accounts` still reads a plain one meanwhile.
    let sealed = domain
        .maintenance()
        .seal_totp_secrets(true)
        .await
        .context("sealing TOTP secrets")?;
    if sealed > 0 {
        tracing::info!(sealed, "sealed plain TOTP secrets under the current KEK");
    }
    match domain
        .operator()
        .bootstrap(config.bootstrap.admin_password.as_ref())
        .await
        .context("first-start bootstrap")?
    {
        Bootstrap::Created {
            one_time_password: Some(password),
        } => {
            // Printed once, to standard error only, never to the log.
            eprintln!(
                "\n  Tsunagu first start: created region 'default' and administrator 'admin'.\n  \
                 One-time password: {password}\n  It must be changed at first sign-in and is not shown again.\n"
            );
        }
        Bootstrap::Created {
            one_time_password: None,
        } => {
            tracing::info!("first start: created region 'default' and administrator 'admin'");
        }
        Bootstrap::AlreadyDone => {}
    }
    // Messages and files stored before the search index existed (migration 0010) are
    // indexed before anything is served; a no-op once done.
    domain
        .search()
        .backfill()
        .await
        .context("building the search index")?;
    Ok((domain, store))
}

/// Where the access-token keys live: the base key file and the ring directory.
pub fn jwt_ring_source(config: &Config) -> crate::domain::tokens::RingSource {
    crate::domain::tokens::RingSource {
        base_file: config.jwt_key_file(),
        dir: config.jwt_key_dir(),
        activation_secs: config.auth.jwt_key_activation_secs,
    }
}

/// The cluster bus the configuration names. A NATS bus that cannot reach its server
/// yet still starts: it keeps trying, and the node serves its own clients meanwhile.
async fn open_bus(config: &Config) -> anyhow::Result<Arc<dyn Bus>> {
    let inbox = config.ws.bus_capacity;
    Ok(match config.bus.kind.as_str() {
        "nats" => Arc::new(
            NatsBus::connect(&config.bus, Arc::new(Hub::new(inbox)))
                .await
                .context("connecting to the cluster bus")?,
        ),
        _ => Arc::new(LocalBus::new(inbox)),
    })
}

/// Creates the data dir owner-only (0700): it holds the database with password hashes
/// and the signing key. An existing dir keeps the permissions the operator gave it.
fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating data dir {}", dir.display()))
}

/// The blob store and the key-encryption keys. A KEK is generated on first start only
/// in the default key directory and only when no key is configured anywhere.
fn open_files(config: &Config) -> anyhow::Result<FileServices> {
    use secrecy::ExposeSecret;
    let blobs = BlobStore::open(&config.blob_backend()?).context("opening the blob store")?;
    let env_keks = config
        .files
        .env_keks
        .as_ref()
        .map(|s| s.expose_secret().to_owned());
    let create = config.files.kek_dir.is_none() && env_keks.is_none();
    let keys = KeyRing::load(
        &config.kek_dir(),
        env_keks.as_deref(),
        config.files.current_kek.as_deref(),
        create,
    )
    .context("loading key-encryption keys")?;
    Ok(FileServices {
        blobs,
        keys: Arc::new(keys),
    })
}

/// The key that signs audit checkpoints. Generated only at the default location; a
/// configured path that is missing is a mistake (a cluster node would otherwise sign
/// with a key the others cannot verify).
pub fn load_audit_signer(config: &Config) -> anyhow::Result<CheckpointSigner> {
    let create = config.audit.signing_key_file.is_none();
    Ok(CheckpointSigner::load_or_create(
        &config.audit_signing_key_file(),
        create,
    )?)
}

/// What verifies audit checkpoints: the current key's public half and those of the keys
/// it replaced (`audit.verify_keys_dir`).
pub fn load_audit_verifier(config: &Config) -> anyhow::Result<CheckpointVerifier> {
    Ok(CheckpointVerifier::load(
        &config.audit_signing_key_file(),
        &config.audit_verify_keys_dir(),
    )?)
}

/// When to sign audit checkpoints, from configuration.
pub fn checkpoint_settings(config: &Config) -> CheckpointSettings {
    CheckpointSettings {
        every: i64::try_from(config.audit.checkpoint_every).unwrap_or(i64::MAX),
        interval_ms: i64::try_from(config.audit.checkpoint_interval_secs)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000),
    }
}

/// A built server: bound, migrated, bootstrapped, not yet serving.
pub struct Application {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    router: Router,
    domain: Domain,
    store: Store,
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    grace: Duration,
    shutting_down: Arc<AtomicBool>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    orphan_grace_secs: u64,
    audit_signer: Arc<CheckpointSigner>,
    audit_key_file: std::path::PathBuf,
    checkpoint_settings: CheckpointSettings,
}

impl Application {
    /// Binds `config.listen` and builds.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Self::build_with_listener(config, listener).await
    }

    /// Builds on an already-bound listener (tests bind port 0).
    pub async fn build_with_listener(
        config: &Config,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<Self> {
        // Both rustls providers may be linked (reqwest brings ring); pin ours.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let (domain, store) = open(config).await?;
        let audit_signer = Arc::new(load_audit_signer(config)?);
        let shutting_down = Arc::new(AtomicBool::new(false));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let state = AppState {
            domain: domain.clone(),
            metrics: telemetry::metrics_handle(),
            trust_forwarded_for: config.http.trust_forwarded_for,
            shutting_down: shutting_down.clone(),
            shutdown: stop_rx,
            ws: config.ws.clone(),
            audit_verifier: load_audit_verifier(config)?,
            verify_wait: Duration::from_secs(config.http.request_timeout_secs) * 2 / 3,
            live: config.limits.clone(),
        };
        let router = api::router(
            state,
            HttpLimits {
                max_body_bytes: config.http.max_body_bytes,
                request_timeout: Duration::from_secs(config.http.request_timeout_secs),
            },
        );
        let tls = match (&config.tls.cert_file, &config.tls.key_file) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            _ => None,
        };
        let addr = listener.local_addr()?;
        Ok(Application {
            listener,
            addr,
            router,
            domain,
            store,
            tls,
            grace: Duration::from_secs(config.http.shutdown_grace_secs),
            shutting_down,
            stop_tx,
            orphan_grace_secs: config.files.orphan_grace_secs,
            audit_signer,
            audit_key_file: config.audit_signing_key_file(),
            checkpoint_settings: checkpoint_settings(config),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The domain service, for operator tooling and test set-up.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The database itself, past every rule: for operator tooling and tests that
    /// inspect or damage what is stored. The api layer never gets it (its state holds
    /// only the [`Domain`]).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests
    /// finish for up to the grace period, and closes the database pool.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            listener,
            addr,
            router,
            domain,
            store,
            tls,
            grace,
            shutting_down,
            stop_tx,
            orphan_grace_secs,
            audit_signer,
            audit_key_file,
            checkpoint_settings,
        } = self;
        let stop_rx = stop_tx.subscribe();
        let flag = shutting_down.clone();
        tokio::spawn(async move {
            shutdown.await;
            flag.store(true, Ordering::Relaxed);
            let _ = stop_tx.send(true);
        });
        let pruner = {
            let domain = domain.clone();
            let orphan_grace = orphan_grace_secs;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                let mut minutes = 0u64;
                loop {
                    tick.tick().await;
                    domain.accounts().prune_throttle();
                    // Interrupted uploads leave blobs without metadata: sweep hourly
                    // (and at start), never touching anything younger than the grace.
                    if minutes == 0 {
                        // Text extractions a stopped node left unfinished.
                        if let Err(e) = domain.files().resume_extractions().await {
                            tracing::warn!(error = %e, "could not resume text extractions");
                        }
                    }
                    if minutes.is_multiple_of(60) {
                        match domain.maintenance().sweep_orphans(orphan_grace).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(removed = n, "swept orphan blobs"),
                            Err(e) => tracing::warn!(error = %e, "orphan sweep failed"),
                        }
                    }
                    minutes += 1;
                }
            })
        };
        let revocations = domain.spawn_live_watch();
        // Keys added by `keys jwt-rotate` (on any node's shared key directory) are picked
        // up without a restart.
        let key_reloader = {
            let domain = domain.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(crate::domain::tokens::RELOAD_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(e) = domain.accounts().reload_keys() {
                        tracing::warn!(error = %e, "reloading the access-token key ring failed");
                    }
                }
            })
        };
        let checkpointer = checkpoint::spawn(
            store.clone(),
            audit_signer,
            checkpoint_settings,
            Some(audit_key_file),
        );
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let mut hard_stop_rx = stop_rx.clone();
        let hard_stop = async move {
            let _ = hard_stop_rx.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        };
        match tls {
            None => {
                tracing::info!(%addr, "serving HTTP");
                let mut rx = stop_rx;
                let serve = axum::serve(
                    // Small frames (acks, events) must not wait for Nagle's algorithm.
                    axum::serve::ListenerExt::tap_io(listener, |tcp| {
                        let _ = tcp.set_nodelay(true);
                    }),
                    service,
                )
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                    tracing::info!("shutting down: draining connections");
                });
                tokio::select! {
                    result = std::future::IntoFuture::into_future(serve) => result.context("serving")?,
                    _ = hard_stop => tracing::warn!("grace period over; closing remaining connections"),
                }
            }
            Some((cert, key)) => {
                let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                    .await
                    .context("loading TLS certificate and key")?;
                let handle = axum_server::Handle::new();
                let mut rx = stop_rx;
                let h = handle.clone();
                tokio::spawn(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                    tracing::info!("shutting down: draining connections");
                    h.graceful_shutdown(Some(grace));
                });
                tracing::info!(%addr, "serving HTTPS");
                let std_listener = listener.into_std()?;
                axum_server::from_tcp_rustls(std_listener, config)
                    .handle(handle)
                    .serve(service)
                    .await
                    .context("serving TLS")?;
            }
        }
        pruner.abort();
        key_reloader.abort();
        checkpointer.abort();
        revocations.abort();
        domain.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
