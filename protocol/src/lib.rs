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

/// What the server takes as a name (display names, titles, tags, organisation and
/// group names…), as a JSON Schema pattern (ECMA-262 in Unicode mode, as JSON Schema
/// 2020-12 reads it; Python's `re` reads it the same): not blank, no control characters,
/// no invisible format characters (bidirectional embeddings, overrides and isolates
/// U+202A–U+202E and U+2066–U+2069, zero-width characters, BOM, tag characters…), and
/// ZERO WIDTH JOINER only between two emoji. The server's rule is
/// `server/src/domain/validate.rs` (`unreadable_char`); the schema attributes spell the
/// same pattern out where they need a literal.
pub const NAME_PATTERN: &str = "^(?!\\s*$)(?:[\\u00a9\\u00ae\\u203c\\u2049\\u2122\\u2139\\u2190-\\u21ff\\u2300-\\u23ff\\u24c2\\u25a0-\\u27bf\\u2900-\\u297f\\u2b00-\\u2bff\\u3030\\u303d\\u3297\\u3299\\ufe0f\u{1F000}-\u{1FAFF}]\\u200d(?=[\\u00a9\\u00ae\\u203c\\u2049\\u2122\\u2139\\u2190-\\u21ff\\u2300-\\u23ff\\u24c2\\u25a0-\\u27bf\\u2900-\\u297f\\u2b00-\\u2bff\\u3030\\u303d\\u3297\\u3299\\ufe0f\u{1F000}-\u{1FAFF}])|[^\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u034f\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891\\u08e2\\u115f\\u1160\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u206f\\u3164\\ufeff\\uffa0\\ufff9-\\ufffb\u{110BD}\u{110CD}\u{13430}-\u{1343F}\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0001}-\u{E007F}])*$";

/// A file name ([`NAME_PATTERN`], no `/` or `\`, not `.` or `..`).
pub const FILE_NAME_PATTERN: &str = "^(?![^\\S\\u001c-\\u001f]*\\.\\.?[^\\S\\u001c-\\u001f]*$)(?!\\s*$)(?:[\\u00a9\\u00ae\\u203c\\u2049\\u2122\\u2139\\u2190-\\u21ff\\u2300-\\u23ff\\u24c2\\u25a0-\\u27bf\\u2900-\\u297f\\u2b00-\\u2bff\\u3030\\u303d\\u3297\\u3299\\ufe0f\u{1F000}-\u{1FAFF}]\\u200d(?=[\\u00a9\\u00ae\\u203c\\u2049\\u2122\\u2139\\u2190-\\u21ff\\u2300-\\u23ff\\u24c2\\u25a0-\\u27bf\\u2900-\\u297f\\u2b00-\\u2bff\\u3030\\u303d\\u3297\\u3299\\ufe0f\u{1F000}-\u{1FAFF}])|[^\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u034f\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891\\u08e2\\u115f\\u1160\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u206f\\u3164\\ufeff\\uffa0\\ufff9-\\ufffb\u{110BD}\u{110CD}\u{13430}-\u{1343F}\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0001}-\u{E007F}/\\\\])*$";

/// A folder name: a file name, or blank (which takes the file out of its folder).
pub const FOLDER_PATTERN: &str = "^(?:[^\\S\\u001c-\\u001f]*|(?![^\\S\\u001c-\\u001f]*\\.\\.?[^\\S\\u001c-\\u001f]*$)(?!\\s*$)(?:[\\u00a9\\u00ae\\u203c\\u2049\\u2122\\u2139\\u2190-\\u21ff\\u2300-\\u23ff\\u24c2\\u25a0-\\u27bf\\u2900-\\u297f\\u2b00-\\u2bff\\u3030\\u303d\\u3297\\u3299\\ufe0f\u{1F000}-\u{1FAFF}]\\u200d(?=[\\u00a9\\u00ae\\u203c\\u2049\\u2122\\u2139\\u2190-\\u21ff\\u2300-\\u23ff\\u24c2\\u25a0-\\u27bf\\u2900-\\u297f\\u2b00-\\u2bff\\u3030\\u303d\\u3297\\u3299\\ufe0f\u{1F000}-\u{1FAFF}])|[^\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u034f\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891\\u08e2\\u115f\\u1160\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u206f\\u3164\\ufeff\\uffa0\\ufff9-\\ufffb\u{110BD}\u{110CD}\u{13430}-\u{1343F}\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0001}-\u{E007F}/\\\\])*)$";

/// Version of the REST/websocket protocol described by this crate. The server sends it
/// in the [`VERSION_HEADER`] so an SDK can warn when it talks to an incompatible server.
pub const PROTOCOL_VERSION: &str = "1";

/// Response header carrying [`PROTOCOL_VERSION`].
pub const VERSION_HEADER: &str = "x-tsunagu-protocol";

/// Header carrying the per-request id, echoed on every response and recorded in logs and
/// audit entries so an operator can correlate a user's report with the server's records.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
