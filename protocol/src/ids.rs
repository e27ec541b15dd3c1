//! Typed ids. Every id is a UUID on the wire (a string); the newtypes keep a group id
//! from being passed where a user id is expected, and a malformed id in a path is
//! rejected before any handler runs.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, format = Uuid))]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUID v7) so that indexes stay append-mostly.
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }
    };
}

id_type!(
    /// A region: one city/county medical association area, the unit of tenancy.
    RegionId
);
id_type!(
    /// An organisation: clinic, nursing station, pharmacy, care office…
    OrganizationId
);
id_type!(
    /// A person (or, later, an API client's service account).
    UserId
);
id_type!(
    /// A patient group or a free (liaison) group.
    GroupId
);
id_type!(
    /// A thread: a group's main timeline or a 内緒話 thread.
    ThreadId
);
id_type!(
    /// A message in a thread.
    MessageId
);
id_type!(
    /// A group invitation.
    InvitationId
);
id_type!(
    /// An uploaded file (its metadata row, its encrypted blob and its audit trail).
    FileId
);
id_type!(
    /// A third-party app's registration (its credentials, scopes and webhooks).
    ApiClientId
);
id_type!(
    /// A sign-in session: the family of refresh tokens and the access tokens naming it.
    SessionId
);
id_type!(
    /// A webhook of an API client.
    WebhookId
);
id_type!(
    /// One event queued for one webhook (its outbox row).
    WebhookDeliveryId
);
