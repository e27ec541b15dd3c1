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
    #[error("too many attempts")]
    Throttled { retry_after_secs: u64 },
    /// A failure the caller cannot fix; the cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => DomainError::Conflict("already exists".into()),
            other => DomainError::Internal(other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for DomainError {
    fn from(e: tokio::task::JoinError) -> Self {
        DomainError::Internal(format!("blocking task failed: {e}"))
    }
}

pub type Result<T, E = DomainError> = std::result::Result<T, E>;

impl From<sqlx::Error> for DomainError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}
