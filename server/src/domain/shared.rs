//! What every service shares: the database and the fan-out bus. Publishing a committed
//! change and the visibility checks (in `visibility`) live on it, so each service holds
//! one `Shared` beside only the parts that are its own.

use std::sync::Arc;

use crate::bus::{Audience, Bus, Event, Payload};
use crate::store::Store;

/// The store and the bus; cheap to clone.
#[derive(Clone)]
pub struct Shared {
    store: Store,
    bus: Arc<dyn Bus>,
}

impl Shared {
    pub(super) fn new(store: Store, bus: Arc<dyn Bus>) -> Self {
        Shared { store, bus }
    }

    /// The database. Only the domain reaches it: api handlers hold a [`super::Domain`],
    /// whose services check the rules before they read or write.
    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    pub(super) fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Publishes a committed change. Call only after the transaction commits.
    pub(super) fn publish(&self, region_id: &str, audience: Audience, payload: Payload) {
        self.bus.publish(Event {
            region_id: region_id.to_owned(),
            audience,
            payload,
        });
    }

    /// Tells `user_id`'s live connections to reload what they can see.
    pub(super) fn access_changed(&self, region_id: &str, user_id: &str) {
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
    pub(super) fn sessions_revoked(
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
}
