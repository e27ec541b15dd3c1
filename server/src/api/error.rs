//! The api layer's error: every failure becomes one status and one JSON body
//! `{"error": {"code", "message"}}`. Internal causes are logged with the request id and
//! never sent.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tsunagu_protocol::{ErrorBody, ErrorCode};

use crate::domain::DomainError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    retry_after: Option<u64>,
    /// For 416: the file size, sent as `Content-Range: bytes */size`.
    content_range: Option<u64>,
    /// For 403 `insufficient_scope`: the scope the call needs.
    scope: Option<tsunagu_protocol::apps::Scope>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            content_range: None,
            scope: None,
        }
    }

    pub fn not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "not found")
    }

    pub fn unauthenticated() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            "authentication required",
        )
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        use DomainError as D;
        let (status, code) = match &e {
            D::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            D::Invalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            D::WeakPassword(_) => (StatusCode::BAD_REQUEST, ErrorCode::WeakPassword),
            D::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            D::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            D::InsufficientScope(_) => (StatusCode::FORBIDDEN, ErrorCode::InsufficientScope),
            D::Unauthenticated => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated),
            D::InvalidCredentials => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidCredentials),
            D::TotpRequired => (StatusCode::UNAUTHORIZED, ErrorCode::TotpRequired),
            D::InvalidTotp => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidTotp),
            D::InvalidRefreshToken => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidRefreshToken),
            D::PasswordChangeRequired => (StatusCode::FORBIDDEN, ErrorCode::PasswordChangeRequired),
            D::MfaEnrollmentRequired => (StatusCode::FORBIDDEN, ErrorCode::MfaEnrollmentRequired),
            D::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests),
            D::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge),
            D::UnsupportedKind(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
            ),
            D::RangeNotSatisfiable(_) => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::RangeNotSatisfiable,
            ),
            D::WebhookUrl(_) => (StatusCode::BAD_REQUEST, ErrorCode::WebhookUrlNotAllowed),
            D::Integrity => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::IntegrityError),
            D::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "internal error; the server log has the details under this request id",
                );
            }
        };
        let mut err = ApiError::new(status, code, e.to_string());
        if let D::Throttled { retry_after_secs } = e {
            err.retry_after = Some(retry_after_secs);
        }
        if let D::InsufficientScope(scope) = e {
            err.scope = Some(scope);
        }
        if let D::RangeNotSatisfiable(size) = e {
            err.content_range = Some(size);
        }
        err
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "expected Content-Type: application/json",
            ),
            JsonRejection::JsonSyntaxError(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::MalformedJson,
                "the body is not well-formed JSON",
            ),
            // The serde message names the field and what was expected; it never echoes
            // the submitted value.
            JsonRejection::JsonDataError(e) => ApiError::invalid(e.body_text()),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => payload_too_large(),
            other => ApiError::invalid(other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        // An id that does not parse names nothing that exists.
        ApiError::not_found()
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::invalid(e.body_text())
    }
}

pub fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        "the request body is too large",
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, Json(ErrorBody::new(self.code, self.message))).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if let Some(size) = self.content_range {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        if let Some(scope) = self.scope {
            // RFC 6750 §3.1: the scope the call needs, for the app's developer.
            if let Ok(v) = HeaderValue::from_str(&format!(
                "Bearer error=\"insufficient_scope\", scope=\"{scope}\""
            )) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
