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
        crate::api::audit::ReportFormat,
        crate::api::files::LibrarySortParam,
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
        (name = "webhooks", description = "Webhooks of API clients: signed (Standard Webhooks), durable, redeliverable; see docs/integrations.md"),
        (name = "websocket", description = "Live events; see docs/protocol.md"),
        (name = "apps", description = "Third-party apps: API clients, the OAuth token endpoint (see docs/integrations.md)"),
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

/// Rules the derives cannot state: a patient group carries a patient profile and a free
/// group none; a patient-side member is a plain `member`; the file-access report filters
/// by `file_*` actions only; the logout body is optional.
struct Rules;

impl Modify for Rules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AllOfBuilder, OneOfBuilder, Schema, Type};
        use utoipa::openapi::{ObjectBuilder, Ref, RefOr, Required};

        if let Some(components) = openapi.components.as_mut() {
            if let Some(derived) = components.schemas.remove("CreateGroup") {
                let kind = |k: &str| {
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([k]))
                };
                let rule = OneOfBuilder::new()
                    .item(
                        ObjectBuilder::new()
                            .property("kind", kind("patient"))
                            .property("patient", Ref::from_schema_name("PatientProfile"))
                            .required("patient"),
                    )
                    .item(
                        ObjectBuilder::new()
                            .property("kind", kind("free"))
                            .property("patient", ObjectBuilder::new().schema_type(Type::Null)),
                    );
                let combined: RefOr<Schema> = AllOfBuilder::new().item(derived).item(rule).into();
                components.schemas.insert("CreateGroup".into(), combined);
            }
            if let Some(derived) = components.schemas.remove("AddMember") {
                // Not both `patient_side: true` and a managing role (utoipa has no `not`).
                let only =
                    |values: [serde_json::Value; 2]| ObjectBuilder::new().enum_values(Some(values));
                let rule = utoipa::openapi::schema::AnyOfBuilder::new()
                    .item(ObjectBuilder::new().property(
                        "patient_side",
                        only([serde_json::Value::Bool(false), serde_json::Value::Null]),
                    ))
                    .item(
                        ObjectBuilder::new()
                            .property("role", only(["member".into(), serde_json::Value::Null])),
                    );
                let combined: RefOr<Schema> = AllOfBuilder::new().item(derived).item(rule).into();
                components.schemas.insert("AddMember".into(), combined);
            }
        }

        for (path, item) in openapi.paths.paths.iter_mut() {
            if path == "/api/v1/admin/audit/file-access" {
                let params = item.get.as_mut().and_then(|op| op.parameters.as_mut());
                for p in params.into_iter().flatten() {
                    if p.name == "action" {
                        p.schema =
                            Some(super::audit::actions_schema(|a| a.is_file_access()).into());
                    }
                }
            }
            // Optional bodies: logout works with the access token alone, and an upload
            // without a body is a file of zero bytes.
            if path == "/api/v1/auth/logout" || path == "/api/v1/threads/{id}/files" {
                if let Some(body) = item.post.as_mut().and_then(|op| op.request_body.as_mut()) {
                    body.required = Some(Required::False);
                }
            }
        }
    }
}

/// OpenAPI links: which ids an answer hands to which operations, so that generated
/// clients (and schemathesis' stateful phase) can follow them.
struct Links;

/// `(from operation, status, link name, to operation, [(parameter, expression)], body)`.
type LinkRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
);

const ID: &[(&str, &str)] = &[("id", "$response.body#/id")];
const MAIN: &[(&str, &str)] = &[("id", "$response.body#/main_thread_id")];
const MESSAGE: &[(&str, &str)] = &[
    ("id", "$response.body#/thread_id"),
    ("message_id", "$response.body#/id"),
];
const THREAD_OF: &[(&str, &str)] = &[("id", "$response.body#/thread_id")];
const GROUP_OF: &[(&str, &str)] = &[("id", "$response.body#/group_id")];
const WEBHOOK: &[(&str, &str)] = &[
    ("id", "$response.body#/api_client_id"),
    ("wid", "$response.body#/id"),
];

const LINKS: &[LinkRow] = &[
    (
        "create_api_client",
        "201",
        "CreateWebhook",
        "create_webhook",
        ID,
        None,
    ),
    (
        "create_api_client",
        "201",
        "ListWebhooks",
        "list_webhooks",
        ID,
        None,
    ),
    (
        "create_webhook",
        "201",
        "GetWebhook",
        "get_webhook",
        WEBHOOK,
        None,
    ),
    (
        "create_webhook",
        "201",
        "UpdateWebhook",
        "update_webhook",
        WEBHOOK,
        None,
    ),
    (
        "create_webhook",
        "201",
        "TestWebhook",
        "test_webhook",
        WEBHOOK,
        None,
    ),
    (
        "create_webhook",
        "201",
        "ListDeliveries",
        "list_deliveries",
        WEBHOOK,
        None,
    ),
    (
        "create_webhook",
        "201",
        "DeleteWebhook",
        "delete_webhook",
        WEBHOOK,
        None,
    ),
    (
        "create_organization",
        "201",
        "GetOrganization",
        "get_organization",
        ID,
        None,
    ),
    (
        "create_organization",
        "201",
        "UpdateOrganization",
        "update_organization",
        ID,
        None,
    ),
    ("create_user", "201", "GetUser", "get_user", ID, None),
    ("create_user", "201", "UpdateUser", "update_user", ID, None),
    (
        "create_user",
        "201",
        "DeactivateUser",
        "deactivate_user",
        ID,
        None,
    ),
    (
        "create_user",
        "201",
        "ReactivateUser",
        "reactivate_user",
        ID,
        None,
    ),
    (
        "create_user",
        "201",
        "ResetPassword",
        "reset_password",
        ID,
        None,
    ),
    ("create_user", "201", "ResetTotp", "reset_totp", ID, None),
    ("create_group", "201", "GetGroup", "get_group", ID, None),
    (
        "create_group",
        "201",
        "UpdateGroup",
        "update_group",
        ID,
        None,
    ),
    (
        "create_group",
        "201",
        "ArchiveGroup",
        "archive_group",
        ID,
        None,
    ),
    (
        "create_group",
        "201",
        "ListMembers",
        "list_members",
        ID,
        None,
    ),
    ("create_group", "201", "AddMember", "add_member", ID, None),
    (
        "create_group",
        "201",
        "CreateInvitation",
        "create_invitation",
        ID,
        None,
    ),
    (
        "create_group",
        "201",
        "ListJoinRequests",
        "list_join_requests",
        ID,
        None,
    ),
    (
        "create_group",
        "201",
        "CreateThread",
        "create_thread",
        ID,
        None,
    ),
    (
        "create_group",
        "201",
        "ListThreads",
        "list_threads",
        ID,
        None,
    ),
    ("create_group", "201", "ListFiles", "list_files", ID, None),
    (
        "create_group",
        "201",
        "GetMainThread",
        "get_thread",
        MAIN,
        None,
    ),
    (
        "create_group",
        "201",
        "ListMainMessages",
        "list_messages",
        MAIN,
        None,
    ),
    (
        "create_group",
        "201",
        "PostToMain",
        "post_message",
        MAIN,
        None,
    ),
    (
        "create_group",
        "201",
        "UploadToMain",
        "upload_file",
        MAIN,
        None,
    ),
    (
        "create_invitation",
        "201",
        "AcceptInvitation",
        "accept_invitation",
        &[],
        Some("code"),
    ),
    ("create_thread", "201", "GetThread", "get_thread", ID, None),
    (
        "create_thread",
        "201",
        "ListMessages",
        "list_messages",
        ID,
        None,
    ),
    (
        "create_thread",
        "201",
        "PostMessage",
        "post_message",
        ID,
        None,
    ),
    (
        "create_thread",
        "201",
        "UploadFile",
        "upload_file",
        ID,
        None,
    ),
    (
        "create_thread",
        "201",
        "AddThreadMember",
        "add_thread_member",
        ID,
        None,
    ),
    (
        "post_message",
        "201",
        "EditMessage",
        "edit_message",
        MESSAGE,
        None,
    ),
    (
        "post_message",
        "201",
        "DeleteMessage",
        "delete_message",
        MESSAGE,
        None,
    ),
    (
        "post_message",
        "201",
        "MessageHistory",
        "message_history",
        MESSAGE,
        None,
    ),
    ("post_message", "201", "Readers", "readers", MESSAGE, None),
    (
        "post_message",
        "201",
        "AddReaction",
        "add_reaction",
        MESSAGE,
        None,
    ),
    (
        "post_message",
        "201",
        "MarkRead",
        "mark_read",
        THREAD_OF,
        Some("seq"),
    ),
    ("upload_file", "201", "GetFile", "get_file", ID, None),
    ("upload_file", "201", "UpdateFile", "update_file", ID, None),
    (
        "upload_file",
        "201",
        "DownloadFile",
        "download_file",
        ID,
        None,
    ),
    ("upload_file", "201", "DeleteFile", "delete_file", ID, None),
    (
        "upload_file",
        "201",
        "ListGroupFiles",
        "list_files",
        GROUP_OF,
        None,
    ),
];

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use serde_json::{json, Map, Value};
        use utoipa::openapi::extensions::Extensions;
        use utoipa::openapi::RefOr;
        for (from, status, name, to, params, body_field) in LINKS {
            let operation = openapi
                .paths
                .paths
                .values_mut()
                .flat_map(|item| {
                    [
                        &mut item.get,
                        &mut item.post,
                        &mut item.put,
                        &mut item.patch,
                        &mut item.delete,
                    ]
                })
                .flatten()
                .find(|op| op.operation_id.as_deref() == Some(*from));
            let Some(RefOr::T(response)) =
                operation.and_then(|op| op.responses.responses.get_mut(*status))
            else {
                continue;
            };
            // utoipa 5 serialises its `Link` with snake_case keys (`operation_id`), which
            // no tool reads: the links go in as plain JSON with the specification's names.
            let mut link = Map::new();
            link.insert("operationId".into(), json!(to));
            if !params.is_empty() {
                let p: Map<String, Value> = params
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), json!(v)))
                    .collect();
                link.insert("parameters".into(), Value::Object(p));
            }
            if let Some(field) = body_field {
                link.insert(
                    "requestBody".into(),
                    json!({ *field: format!("$response.body#/{field}") }),
                );
            }
            let extensions = response.extensions.get_or_insert_with(Extensions::default);
            let links = extensions
                .entry("links".to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(links) = links {
                links.insert((*name).to_owned(), Value::Object(link));
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
    Rules.modify(&mut doc);
    Links.modify(&mut doc);
    AppScopes.modify(&mut doc);
    doc
}

/// What an app's token needs for each operation (`x-app-scope`), from the one table the
/// server enforces (`scopes::TABLE`); operations apps may not call say `none`.
struct AppScopes;

impl Modify for AppScopes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::extensions::ExtensionsBuilder;
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/v1/") || path == "/api/v1/openapi.json" {
                continue;
            }
            for (method, op) in [
                (axum::http::Method::GET, &mut item.get),
                (axum::http::Method::POST, &mut item.post),
                (axum::http::Method::PUT, &mut item.put),
                (axum::http::Method::PATCH, &mut item.patch),
                (axum::http::Method::DELETE, &mut item.delete),
            ] {
                let Some(op) = op else { continue };
                if op.security.as_ref().is_none_or(|s| s.is_empty()) {
                    continue;
                }
                let value = match super::scopes::needs(&method, path) {
                    Some(super::scopes::Needs::Scope(scope)) => scope.as_str(),
                    Some(super::scopes::Needs::Token) => "any",
                    None => "none",
                };
                let ext = ExtensionsBuilder::new().add("x-app-scope", value).build();
                match &mut op.extensions {
                    Some(existing) => existing.merge(ext),
                    None => op.extensions = Some(ext),
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn document() -> Value {
        serde_json::from_str(&super::document_json()).unwrap()
    }

    fn operations(doc: &Value) -> Vec<(&str, &str, &Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                out.push((path.as_str(), method.as_str(), op));
            }
        }
        out
    }

    #[test]
    fn every_reference_resolves_to_a_component() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(schemas.contains_key(name), "dangling $ref to {name}");
        }
    }

    #[test]
    fn every_link_names_an_operation_and_only_its_parameters() {
        let doc = document();
        let ops = operations(&doc);
        let mut links = 0;
        for (path, method, op) in &ops {
            for (status, response) in op["responses"].as_object().unwrap() {
                for (name, link) in response["links"].as_object().into_iter().flatten() {
                    links += 1;
                    let target = link["operationId"].as_str().unwrap();
                    let (_, _, to) = ops
                        .iter()
                        .find(|(_, _, o)| o["operationId"] == target)
                        .unwrap_or_else(|| panic!("{method} {path} {status} {name}: no {target}"));
                    let names: Vec<&str> = to["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| p["name"].as_str().unwrap())
                        .collect();
                    for param in link["parameters"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, _)| k)
                    {
                        assert!(
                            names.contains(&param.as_str()),
                            "{name}: {target} has no {param}"
                        );
                    }
                    if link.get("requestBody").is_some() {
                        assert!(
                            to.get("requestBody").is_some(),
                            "{name}: {target} takes no body"
                        );
                    }
                }
            }
        }
        assert!(links >= 30, "only {links} links");
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = document();
        let mut ids: Vec<&str> = operations(&doc)
            .iter()
            .map(|(_, _, op)| op["operationId"].as_str().unwrap())
            .collect();
        let all = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all);
    }
}
