//! Wire types shared by the Tsunagu server and its clients.
//!
//! This crate is deliberately I/O free (serde only) so that any client — the SDK, the
//! CLI, a third-party integration — can depend on it without pulling in a runtime, a
//! database driver or an HTTP stack. The `openapi` feature adds schema derives for the
//! server, which publishes the OpenAPI document; the `sqlx` feature lets the server bind
//! and decode ids and enums directly (`sqlx::Any`, stored as text), so a stored string
//! is parsed in one place. The SDK enables neither.

/// A closed set of string values on the wire: the enum, its `as_str`/`parse`, `ALL`
/// and `Display`. Defined once here so every wire enum behaves the same.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $wire:tt),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as stored and sent on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// Parses the wire form; `None` for anything else.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($wire => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

#[cfg(feature = "sqlx")]
mod db;

pub mod accounts;
pub mod apps;
pub mod audit;
pub mod auth;
pub mod error;
pub mod files;
pub mod ids;
pub mod messaging;
pub mod webhooks;
pub mod ws;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};

/// What the server takes as a name (display names, titles, tags…), as a JSON Schema
/// pattern: not blank, no control characters. The schema attributes spell it out where
/// they need a literal.
pub const NAME_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$";

/// Version of the REST/websocket protocol described by this crate. The server sends it
/// in the [`VERSION_HEADER`] so an SDK can warn when it talks to an incompatible server.
pub const PROTOCOL_VERSION: &str = "1";

/// Response header carrying [`PROTOCOL_VERSION`].
pub const VERSION_HEADER: &str = "x-tsunagu-protocol";

/// Header carrying the per-request id, echoed on every response and recorded in logs and
/// audit entries so an operator can correlate a user's report with the server's records.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
