//! `POST /api/v1/oauth/token`: the OAuth 2.0 client credentials grant for third-party
//! apps (RFC 6749 §4.4), client authentication by HTTP Basic, `client_secret_post` or
//! `private_key_jwt` (RFC 7523). Answers and errors use OAuth's shapes, not ours, so
//! any OAuth client library works unchanged.

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tsunagu_protocol::apps::{OAuthError, TokenRequest, TokenResponse};

use super::extract::Meta;
use super::AppState;
use crate::domain::apps::assertion::JWT_BEARER;
use crate::domain::apps::{ClientAuth, OAuthFailure, TokenGrant};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(token))
}

/// The token endpoint's path, which an assertion's `aud` names with the server's origin.
pub const TOKEN_PATH: &str = "/api/v1/oauth/token";

/// Get an app's access token (client credentials). Authenticate with HTTP Basic
/// (`client_id:client_secret`), with `client_id` + `client_secret` in the form, or
/// with a signed `client_assertion` (`private_key_jwt`).
#[utoipa::path(
    post, path = "/api/v1/oauth/token", tag = "apps",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "An access token for the app's account", body = TokenResponse),
        (status = 400, description = "`invalid_request`, `invalid_scope` or `unsupported_grant_type`", body = OAuthError),
        (status = 401, description = "`invalid_client`: unknown, disabled, wrong secret or a refused assertion", body = OAuthError),
        (status = 429, description = "Too many requests", body = tsunagu_protocol::ErrorBody),
    )
)]
pub async fn token(
    State(state): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Response {
    let Ok(Form(req)) = form else {
        return failure(OAuthFailure::InvalidRequest(
            "the body must be application/x-www-form-urlencoded with each parameter once".into(),
        ));
    };
    let client = match client_auth(&headers, &req) {
        Ok(client) => client,
        Err(f) => return failure(f),
    };
    let grant = TokenGrant {
        grant_type: req.grant_type,
        scope: req.scope,
        client,
        endpoint_urls: endpoint_urls(&headers),
    };
    match state.domain.apps().token(grant, &meta).await {
        Ok(token) => no_store((StatusCode::OK, Json(token)).into_response()),
        Err(f) => failure(f),
    }
}

/// How the request authenticates the client. More than one method is an
/// `invalid_request` (RFC 6749 §2.3).
fn client_auth(headers: &HeaderMap, req: &TokenRequest) -> Result<ClientAuth, OAuthFailure> {
    let basic = basic_credentials(headers)?;
    let assertion = match (&req.client_assertion_type, &req.client_assertion) {
        (Some(kind), Some(jwt)) if kind == JWT_BEARER => Some(jwt.clone()),
        (None, None) => None,
        _ => {
            return Err(OAuthFailure::InvalidRequest(format!(
                "client_assertion needs client_assertion_type {JWT_BEARER}"
            )))
        }
    };
    let methods = usize::from(basic.is_some())
        + usize::from(req.client_secret.is_some())
        + usize::from(assertion.is_some());
    if methods > 1 {
        return Err(OAuthFailure::InvalidRequest(
            "use one client authentication method".into(),
        ));
    }
    Ok(match (basic, &req.client_secret, assertion) {
        (Some((client_id, secret)), _, _) => {
            if req.client_id.as_ref().is_some_and(|c| *c != client_id) {
                return Err(OAuthFailure::InvalidRequest(
                    "client_id differs from the Authorization header".into(),
                ));
            }
            ClientAuth::Secret {
                client_id,
                secret,
                basic: true,
            }
        }
        (None, Some(secret), None) => ClientAuth::Secret {
            client_id: req.client_id.clone().ok_or_else(|| {
                OAuthFailure::InvalidRequest("client_secret needs client_id".into())
            })?,
            secret: secret.clone(),
            basic: false,
        },
        (None, None, Some(assertion)) => ClientAuth::Assertion {
            client_id: req.client_id.clone(),
            assertion,
        },
        _ => ClientAuth::Missing,
    })
}

/// `Authorization: Basic base64(urlencoded(client_id) ":" urlencoded(secret))`.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthFailure> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthFailure::InvalidClient { basic: true };
    let value = value.to_str().map_err(|_| bad())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(bad());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Ok(Some((
        unescape(id).ok_or_else(bad)?,
        unescape(secret).ok_or_else(bad)?,
    )))
}

/// The URLs this request reached the endpoint by, from its `Host`: what an assertion's
/// `aud` may name when the operator did not configure `apps.token_url`.
fn endpoint_urls(headers: &HeaderMap) -> Vec<String> {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return Vec::new();
    };
    ["https", "http"]
        .iter()
        .map(|scheme| format!("{scheme}://{host}{TOKEN_PATH}"))
        .collect()
}

fn failure(f: OAuthFailure) -> Response {
    let (status, error, description) = match f {
        OAuthFailure::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", Some(d)),
        OAuthFailure::InvalidClient { basic } => {
            let mut response = (
                StatusCode::UNAUTHORIZED,
                Json(OAuthError {
                    error: "invalid_client".into(),
                    error_description: Some("client authentication failed".into()),
                }),
            )
                .into_response();
            // RFC 6749 §5.2: a client that tried Basic is told the scheme.
            let challenge = if basic {
                "Basic realm=\"tsunagu\""
            } else {
                "Bearer"
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
            return no_store(response);
        }
        OAuthFailure::InvalidScope(d) => (StatusCode::BAD_REQUEST, "invalid_scope", Some(d)),
        OAuthFailure::UnsupportedGrantType => (
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            Some("only client_credentials is supported".into()),
        ),
        OAuthFailure::Internal(e) => return super::error::ApiError::from(e).into_response(),
    };
    no_store(
        (
            status,
            Json(OAuthError {
                error: error.into(),
                error_description: description,
            }),
        )
            .into_response(),
    )
}

/// RFC 6749 §5.1: token answers must not be cached.
fn no_store(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
