//! The rules: who may see and do what. Every api path reaches the data through here,
//! and the capabilities below can only be obtained by passing the checks — so a handler
//! that forgets to check does not compile.

pub mod access;
pub mod admin;
pub mod audit_reports;
pub mod auth;
mod commit;
mod convert;
pub mod error;
pub mod files;
pub mod groups;
pub mod live;
pub mod messages;
pub mod operator;
pub mod password;
pub mod threads;
pub mod throttle;
pub mod tokens;
pub mod totp;
mod validate;
pub mod visibility;

use std::sync::Arc;

use tokio::sync::OnceCell;

pub use access::{Member, RegionAdmin, Session};
pub use error::{DomainError, Result};

use crate::bus::{Audience, Bus, Event, Payload};
use crate::store::Store;
use throttle::Throttle;
use tokens::TokenSigner;

/// Settings the rules need from configuration.
#[derive(Debug, Clone)]
pub struct DomainSettings {
    pub totp_issuer: String,
    /// Longest message body, in characters.
    pub max_message_chars: usize,
    /// Posts per user (REST and websocket together): refill per minute and burst.
    pub posts_per_minute: u32,
    pub posts_burst: u32,
}

/// The domain service: shared, cheap to clone.
#[derive(Clone)]
pub struct Domain {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    signer: TokenSigner,
    throttle: Throttle,
    settings: DomainSettings,
    bus: Arc<dyn Bus>,
    files: files::FileServices,
    /// The queue in front of the post committers (group commit).
    commit: commit::GroupCommit,
    /// Posting allowance per user, so one runaway client cannot flood a thread.
    posts: governor::DefaultKeyedRateLimiter<String>,
    /// A real argon2 hash of a random password, verified against when the login id is
    /// unknown so that both cases cost the same time.
    dummy_hash: OnceCell<String>,
}

impl Domain {
    pub fn new(
        store: Store,
        signer: TokenSigner,
        throttle: Throttle,
        settings: DomainSettings,
        bus: Arc<dyn Bus>,
        files: files::FileServices,
    ) -> Self {
        let posts = governor::RateLimiter::keyed(
            governor::Quota::per_minute(
                std::num::NonZeroU32::new(settings.posts_per_minute)
                    .unwrap_or(std::num::NonZeroU32::MIN),
            )
            .allow_burst(
                std::num::NonZeroU32::new(settings.posts_burst)
                    .unwrap_or(std::num::NonZeroU32::MIN),
            ),
        );
        Domain {
            inner: Arc::new(Inner {
                posts,
                commit: commit::GroupCommit::default(),
                store,
                signer,
                throttle,
                settings,
                bus,
                files,
                dummy_hash: OnceCell::new(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn signer(&self) -> &TokenSigner {
        &self.inner.signer
    }

    pub(crate) fn throttle(&self) -> &Throttle {
        &self.inner.throttle
    }

    /// Spends one post of `user_id`'s allowance.
    pub(crate) fn spend_post(&self, user_id: &str) -> Result<()> {
        use governor::clock::Clock;
        let posts = &self.inner.posts;
        posts
            .check_key(&user_id.to_owned())
            .map_err(|not_until| DomainError::Throttled {
                retry_after_secs: not_until
                    .wait_time_from(posts.clock().now())
                    .as_secs()
                    .max(1),
            })
    }

    pub(crate) fn settings(&self) -> &DomainSettings {
        &self.inner.settings
    }

    /// The fan-out bus, for live connections to subscribe to.
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.inner.bus
    }

    /// Publishes a committed change. Call only after the transaction commits.
    pub(crate) fn publish(&self, region_id: &str, audience: Audience, payload: Payload) {
        self.inner.bus.publish(Event {
            region_id: region_id.to_owned(),
            audience,
            payload,
        });
    }

    /// Tells `user_id`'s live connections to reload what they can see.
    pub(crate) fn access_changed(&self, region_id: &str, user_id: &str) {
        self.publish(
            region_id,
            Audience {
                users: vec![user_id.to_owned()],
                ..Default::default()
            },
            Payload::AccessChanged {
                user_id: user_id.to_owned(),
            },
        );
    }

    /// Closes the live connections of ended sessions (`None`: every session of the user).
    pub(crate) fn sessions_revoked(
        &self,
        region_id: &str,
        user_id: &str,
        session_id: Option<&str>,
    ) {
        self.publish(
            region_id,
            Audience {
                users: vec![user_id.to_owned()],
                ..Default::default()
            },
            Payload::SessionsRevoked {
                user_id: user_id.to_owned(),
                session_id: session_id.map(str::to_owned),
            },
        );
    }

    async fn dummy_hash(&self) -> Result<String> {
        self.inner
            .dummy_hash
            .get_or_try_init(|| password::hash(password::generate_one_time().into()))
            .await
            .cloned()
    }
}
