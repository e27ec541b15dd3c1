//! Outbound webhook calls: Standard Webhooks signatures (`sign`) and the rules for
//! which addresses the server may call, enforced where the connection is made (`net`).
//! Knows nothing of the database or the rules of visibility; the outbox and the
//! delivery worker are in `domain::webhooks`.

pub mod net;
pub mod sign;

pub use net::{Outbound, OutboundRules, SendError, UrlRefused};
