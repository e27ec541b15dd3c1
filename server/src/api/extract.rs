//! Extractors that answer in our error shape, and the ones that authenticate.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::header::{AUTHORIZATION, USER_AGENT};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tower_http::request_id::RequestId;

use super::error::ApiError;
use super::AppState;
use crate::audit::RequestMeta;
use crate::domain::access::AuditReader;
use crate::domain::{Member, RegionAdmin, Session};

/// `Json` whose rejections (syntax, wrong content type, too large) use our error body.
///
/// Every request body of the API is a JSON object, read as JSON Schema (the published
/// contract) reads it, not as serde alone would: a body that is not an object (serde
/// would fill a struct from an array) is refused, and a number with a zero fraction
/// (`3.0`, `1e3`) is an integer, as JSON Schema's `integer` says.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state).await?;
        json_object(value).map(AppJson)
    }
}

/// A request body read as [`AppJson`] reads it: a JSON object, integers as JSON Schema
/// counts them.
pub fn json_object<T: serde::de::DeserializeOwned>(
    mut value: serde_json::Value,
) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    integral_floats_to_integers(&mut value);
    serde_path_to_error::deserialize(value)
        // The message names the field and what was expected; it never echoes the
        // submitted value.
        .map_err(|e| ApiError::invalid(format!("invalid body: {e}")))
}

/// `3.0` becomes `3`, recursively; other numbers stay as they are (out-of-range and
/// fractional values are then refused by the field's type).
fn integral_floats_to_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                // Exactly representable range: beyond 2^53 a float is no exact integer.
                if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
                    *value = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `Path` whose malformed ids answer 404.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct AppPath<T>(pub T);

/// `Query` whose rejections answer 400 in our error shape.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct AppQuery<T>(pub T);

/// Where the request came from, for audit entries.
pub struct Meta(pub RequestMeta);

impl FromRequestParts<AppState> for Meta {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Meta(request_meta(parts, state.trust_forwarded_for)))
    }
}

pub fn request_meta(parts: &Parts, trust_forwarded_for: bool) -> RequestMeta {
    let forwarded = trust_forwarded_for
        .then(|| {
            parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                // The trusted proxy appends the address it saw: the last entry. Earlier
                // entries come from the client and prove nothing.
                .and_then(|v| v.rsplit(',').next())
                .map(|v| v.trim().to_owned())
                .filter(|v| v.parse::<std::net::IpAddr>().is_ok())
        })
        .flatten();
    let ip = forwarded.or_else(|| {
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string())
    });
    RequestMeta {
        ip,
        user_agent: parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        request_id: parts
            .extensions
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .map(str::to_owned),
    }
}

/// The bearer token of the request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Any signed-in caller, even one who must change their password first.
pub struct CurrentSession(pub Session);

impl FromRequestParts<AppState> for CurrentSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(ApiError::unauthenticated)?;
        let session = state.domain.accounts().authenticate(token).await?;
        if session.is_app() {
            // What an app may call: the route's scope, from one table (`scopes`).
            super::scopes::check(parts, &session)?;
        }
        Ok(CurrentSession(session))
    }
}

/// A signed-in caller whose account is fully usable.
pub struct CurrentMember(pub Member);

impl FromRequestParts<AppState> for CurrentMember {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let CurrentSession(session) = CurrentSession::from_request_parts(parts, state).await?;
        Ok(CurrentMember(session.member()?))
    }
}

/// A region administrator.
pub struct CurrentAdmin(pub RegionAdmin);

impl FromRequestParts<AppState> for CurrentAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let CurrentMember(member) = CurrentMember::from_request_parts(parts, state).await?;
        Ok(CurrentAdmin(member.region_admin()?))
    }
}

/// A reader of the region's audit reports: a region admin, or an app with `audit:read`.
pub struct CurrentAuditReader(pub AuditReader);

impl FromRequestParts<AppState> for CurrentAuditReader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let CurrentMember(member) = CurrentMember::from_request_parts(parts, state).await?;
        Ok(CurrentAuditReader(member.audit_reader()?))
    }
}
