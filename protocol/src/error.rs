//! The one error body every endpoint answers with.

use serde::{Deserialize, Serialize};

/// Machine-readable error codes. They are part of the public contract: scripts and
/// third-party apps branch on them, so a code is never renamed once published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body or a parameter is not acceptable (see the message).
    InvalidRequest,
    /// The body is not well-formed JSON (or not UTF-8).
    MalformedJson,
    /// The request needs a `Content-Type` the server understands.
    UnsupportedMediaType,
    /// The body is larger than the server accepts.
    PayloadTooLarge,
    /// No credentials, or credentials that are expired, forged or revoked.
    Unauthenticated,
    /// Login id and password do not match (deliberately the same for unknown users).
    InvalidCredentials,
    /// The account needs a TOTP code to sign in.
    TotpRequired,
    /// The TOTP code is wrong or was already used.
    InvalidTotp,
    /// The refresh token is unknown, expired, used or revoked.
    InvalidRefreshToken,
    /// The caller must change their password before doing anything else.
    PasswordChangeRequired,
    /// The region requires a second factor and the caller has not enrolled one yet.
    MfaEnrollmentRequired,
    /// The caller is known but may not do this.
    Forbidden,
    /// An app's token lacks the scope this call needs (the message names it).
    InsufficientScope,
    /// Nothing is there — or the caller may not know that it is.
    NotFound,
    /// The method is not supported on this path.
    MethodNotAllowed,
    /// The request conflicts with existing state (duplicate login id, …).
    Conflict,
    /// The password does not satisfy the region's policy.
    WeakPassword,
    /// Too many attempts; retry after the `Retry-After` header.
    TooManyRequests,
    /// The request took longer than the server allows.
    Timeout,
    /// The server is not ready (database unreachable, shutting down).
    Unavailable,
    /// A websocket frame that is not a valid JSON frame of the protocol.
    MalformedFrame,
    /// A websocket frame over the server's size limit.
    FrameTooLarge,
    /// The requested byte range is outside the file.
    RangeNotSatisfiable,
    /// Stored data failed its integrity check: it was corrupted or tampered with. The
    /// event is audited; no unauthenticated byte is ever served.
    IntegrityError,
    /// A webhook URL the server will not call: not `https` (unless the operator allows
    /// `http`), credentials in it, or a loopback/private/link-local address (unless
    /// allowed). See docs/integrations.md.
    WebhookUrlNotAllowed,
    /// Something failed on the server; the cause is logged under the request id.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::TotpRequired => "totp_required",
            ErrorCode::InvalidTotp => "invalid_totp",
            ErrorCode::InvalidRefreshToken => "invalid_refresh_token",
            ErrorCode::PasswordChangeRequired => "password_change_required",
            ErrorCode::MfaEnrollmentRequired => "mfa_enrollment_required",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::WeakPassword => "weak_password",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::MalformedFrame => "malformed_frame",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
            ErrorCode::IntegrityError => "integrity_error",
            ErrorCode::WebhookUrlNotAllowed => "webhook_url_not_allowed",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"error": {"code": "...", "message": "..."}}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The code is for programs, the message for people; the message may change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_serialize_as_their_published_names() {
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::MalformedJson,
            ErrorCode::PayloadTooLarge,
            ErrorCode::TooManyRequests,
            ErrorCode::MfaEnrollmentRequired,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn error_body_has_the_documented_shape() {
        let body = ErrorBody::new(ErrorCode::NotFound, "no such group");
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(v["error"]["message"], "no such group");
    }
}
