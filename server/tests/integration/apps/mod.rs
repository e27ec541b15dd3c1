//! Third-party apps: registration, the OAuth token endpoint, scopes, and the app
//! account as a group member (docs/integrations.md).

mod oauth;
mod scopes;
mod visibility;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tsunagu_protocol::apps::{ApiClientCreated, CreateApiClient, Scope};
use tsunagu_testkit::TestApp;

/// Registers an app with `scopes` as the region's bootstrap admin.
pub async fn register(app: &TestApp, name: &str, scopes: &[Scope]) -> ApiClientCreated {
    register_with(app, name, scopes, None).await
}

pub async fn register_with(
    app: &TestApp,
    name: &str,
    scopes: &[Scope],
    jwks: Option<Value>,
) -> ApiClientCreated {
    app.admin
        .create_api_client(&CreateApiClient {
            name: name.into(),
            scopes: scopes.to_vec(),
            description: None,
            jwks,
            requests_per_minute: None,
        })
        .await
        .expect("register app")
}

/// `POST /oauth/token` with `form` and an optional Basic `(id, secret)`.
pub async fn token_request(
    app: &TestApp,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (StatusCode, Value, HeaderMap) {
    let mut req = app.http.post(app.url("/api/v1/oauth/token")).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let response = req.send().await.expect("token request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

/// An access token for `client` with all its granted scopes.
pub async fn token(app: &TestApp, client: &ApiClientCreated) -> String {
    let (status, body, _) = token_request(
        app,
        Some((&client.client_id, &client.client_secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "token: {body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// An authenticated JSON call: status, body (or null) and headers.
pub async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value, HeaderMap) {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let response = req.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

/// The error code of one of our error bodies.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}
