//! The OpenAPI 3.1 document, generated from the handlers' annotations so it cannot
//! drift from the code; `docs/openapi.json` is a committed copy checked by a test.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tsunagu API",
        description = "Secure care-team messaging. Errors are always `{\"error\": {\"code\", \"message\"}}`; \
                       404 means unknown *or not visible to you*.",
        license(name = "MIT OR Apache-2.0"),
    ),
    components(schemas(
        tsunagu_protocol::ErrorBody,
        tsunagu_protocol::ErrorCode,
        crate::api::audit::ReportFormat
    )),
    tags(
        (name = "auth", description = "Sign-in and tokens"),
        (name = "me", description = "The caller's own account"),
        (name = "admin", description = "Region administration"),
        (name = "audit", description = "Audit reports (JSON, CSV for Excel) and chain verification"),
        (name = "groups", description = "Patient and free groups, membership, invitations"),
        (name = "threads", description = "Main timelines and 内緒話 threads"),
        (name = "messages", description = "Messages, reactions, read receipts (既読)"),
        (name = "files", description = "Encrypted files, the file library, search"),
        (name = "websocket", description = "Live events; see docs/protocol.md"),
        (name = "operations", description = "Probes and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The answers every route can give besides its own, documented on every operation
/// that can give them (one place, so no route can forget them): 401 and 403 where a
/// token is needed (no, expired or revoked token; an account action pending), 404 where
/// the path names something, 400/413/415 where a body is read, 429 and 503 anywhere
/// under `/api/v1` (throttling, an unreachable database). All carry the error shape.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let error = |description: &str| -> RefOr<utoipa::openapi::Response> {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/v1/") || path == "/api/v1/ws" {
                continue;
            }
            let names_something = path.contains('{');
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let body = op.request_body.is_some();
                let mut add = |code: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(code.to_owned())
                        .or_insert_with(|| error(description));
                };
                add("400", "Bad input: a malformed parameter or body");
                if secured {
                    add("401", "No, an expired or a revoked access token");
                    add("403", "Not allowed, or an account action (password change, TOTP enrolment) is pending");
                }
                if names_something {
                    add(
                        "404",
                        "Unknown, or not visible to the caller (the two are indistinguishable)",
                    );
                }
                if body {
                    add("413", "The body is larger than allowed");
                    add("415", "The body has the wrong content type");
                }
                add("429", "Too many requests: wait for `Retry-After` seconds");
                add(
                    "503",
                    "Temporarily unavailable (the database cannot be reached)",
                );
            }
        }
    }
}

/// The published document: the operations of every route the router serves (they
/// are declared together, in `api::routes`), then what every operation shares.
pub fn document() -> utoipa::openapi::OpenApi {
    let super::Routes {
        json,
        transfers,
        probes,
    } = super::routes();
    let mut doc = ApiDoc::openapi();
    for part in [json, transfers, probes] {
        doc.merge(part.into_openapi());
    }
    // After the paths are in: these modifiers work on every operation.
    BearerAuth.modify(&mut doc);
    CommonResponses.modify(&mut doc);
    doc
}

/// The document as pretty JSON, as served and committed.
pub fn document_json() -> String {
    document().to_pretty_json().unwrap_or_else(|_| "{}".into())
}

/// This document, for client generators and contract tests.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json"))
)]
pub(super) async fn openapi_json() -> impl axum::response::IntoResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get_or_init(document_json).as_str(),
    )
}
