//! Domain errors: what went wrong in terms of the rules, not of HTTP or SQL. The api
//! layer maps each to one status and one stable code.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Unknown, or not visible to the caller: the two are deliberately the same.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    WeakPassword(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(&'static str),
    /// An app's token does not carry the scope the call needs.
    #[error("this call needs the scope {0}")]
    InsufficientScope(tsunagu_protocol::apps::Scope),
    #[error("authentication required")]
    Unauthenticated,
    #[error("login id or password is wrong")]
    InvalidCredentials,
    #[error("a TOTP code is required")]
    TotpRequired,
    #[error("the TOTP code is wrong or was already used")]
    InvalidTotp,
    #[error("the refresh token is not valid")]
    InvalidRefreshToken,
    #[error("the password must be changed first")]
    PasswordChangeRequired,
    #[error("the region requires a second factor: enrol TOTP first")]
    MfaEnrollmentRequired,
    #[error("the file is larger than the region allows ({0} bytes)")]
    TooLarge(u64),
    #[error("files of kind {0} are not allowed in this region")]
    UnsupportedKind(&'static str),
    #[error("the requested range is outside the file ({0} bytes)")]
    RangeNotSatisfiable(u64),
    #[error("stored data failed its integrity check")]
    Integrity,
    /// A webhook URL the outbound rules refuse (`webhooks::net`).
    #[error("{0}")]
    WebhookUrl(String),
    #[error("too many attempts")]
    Throttled { retry_after_secs: u64 },
    /// A failure the caller cannot fix; the cause chain is logged, never sent.
    #[error("internal error: {0}")]
    Internal(#[source] Internal),
}

/// What went wrong inside, with the error that caused it (a database or storage error,
/// a failed task), so the log shows the whole chain and not only our summary.
#[derive(Debug)]
pub struct Internal {
    context: std::borrow::Cow<'static, str>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Internal {
    /// An internal failure caused by `source`.
    pub fn caused_by(
        context: impl Into<std::borrow::Cow<'static, str>>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Internal {
            context: context.into(),
            source: Some(source.into()),
        }
    }
}

impl std::fmt::Display for Internal {
    /// The context, then every cause in turn: `commit: database error: disk I/O error`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.context)?;
        let mut cause = self.source.as_deref().map(|e| e as &dyn std::error::Error);
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

impl std::error::Error for Internal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<&'static str> for Internal {
    fn from(context: &'static str) -> Self {
        Internal {
            context: context.into(),
            source: None,
        }
    }
}

impl From<String> for Internal {
    fn from(context: String) -> Self {
        Internal {
            context: context.into(),
            source: None,
        }
    }
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => DomainError::Conflict("already exists".into()),
            other => DomainError::Internal(Internal::caused_by("store", other)),
        }
    }
}

impl From<tokio::task::JoinError> for DomainError {
    fn from(e: tokio::task::JoinError) -> Self {
        DomainError::Internal(Internal::caused_by("blocking task failed", e))
    }
}

pub type Result<T, E = DomainError> = std::result::Result<T, E>;

impl From<sqlx::Error> for DomainError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_keeps_and_shows_its_cause_chain() {
        let io = std::io::Error::other("disk I/O error");
        let e = DomainError::Internal(Internal::caused_by("commit", io));
        assert_eq!(e.to_string(), "internal error: commit: disk I/O error");
        let source = std::error::Error::source(&e).expect("the Internal");
        let cause = source.source().expect("the io error");
        assert_eq!(cause.to_string(), "disk I/O error");
    }
}
