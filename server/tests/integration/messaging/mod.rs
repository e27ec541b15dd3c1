//! Messaging over REST: groups, membership, invitations, 内緒話, messages and read
//! receipts, and the end-to-end scenario that `docs/walkthrough.md` follows step by
//! step. Every test runs on SQLite and, with `TSUNAGU_TEST_POSTGRES_URL`, on PostgreSQL.

mod groups;
mod messages;
mod scenario;

/// People, groups and calls the messaging tests share.
pub mod fixtures {
    use reqwest::{Method, StatusCode};
    use serde_json::Value;
    use tsunagu_client::Client;
    use tsunagu_protocol::ids::ThreadId;
    use tsunagu_protocol::messaging::{AddMember, Group, Member, Message, PostMessage};
    use tsunagu_protocol::ErrorCode;

    use tsunagu_testkit::TestApp;

    pub use tsunagu_testkit::{full_profile, patient_group, person, stranger, team, Person};

    /// Adds `who` with the defaults (role member, patient_side from the profession).
    pub async fn add(owner: &Client, group: &Group, who: &Person) -> Member {
        owner
            .add_member(
                group.id,
                &AddMember {
                    user_id: who.id(),
                    role: None,
                    patient_side: None,
                },
            )
            .await
            .expect("add member")
    }

    pub fn post(body: &str, client_msg_id: &str) -> PostMessage {
        PostMessage {
            body: body.into(),
            client_msg_id: client_msg_id.into(),
            reply_to: None,
            mentions: Vec::new(),
            attachments: Vec::new(),
        }
    }

    /// Every message of a thread, paging forward from the start.
    pub async fn all_messages(client: &Client, thread: ThreadId) -> Vec<Message> {
        let mut out: Vec<Message> = Vec::new();
        loop {
            let after = out.last().map(|m| m.seq).unwrap_or(0);
            let page = client
                .list_messages(thread, Some(after), None, Some(200))
                .await
                .expect("page messages");
            out.extend(page.messages);
            if !page.has_more {
                return out;
            }
        }
    }

    /// A raw call with `token`: the status and the JSON body (`Null` when empty).
    pub async fn raw(
        app: &TestApp,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let response = req.send().await.expect("request");
        let status = response.status();
        let bytes = response.bytes().await.expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON body")
        };
        (status, value)
    }

    /// Asserts that a call failed with `status` and `code`; returns the error.
    #[track_caller]
    pub fn refused<T: std::fmt::Debug>(
        result: Result<T, tsunagu_client::Error>,
        status: StatusCode,
        code: ErrorCode,
    ) -> tsunagu_client::Error {
        let err = result.expect_err("the call should have been refused");
        assert_eq!(err.status(), Some(status), "{err}");
        assert_eq!(err.code(), Some(code), "{err}");
        err
    }

    #[track_caller]
    pub fn invalid<T: std::fmt::Debug>(result: Result<T, tsunagu_client::Error>) {
        refused(result, StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest);
    }

    #[track_caller]
    pub fn forbidden<T: std::fmt::Debug>(result: Result<T, tsunagu_client::Error>) {
        refused(result, StatusCode::FORBIDDEN, ErrorCode::Forbidden);
    }

    #[track_caller]
    pub fn not_found<T: std::fmt::Debug>(result: Result<T, tsunagu_client::Error>) {
        refused(result, StatusCode::NOT_FOUND, ErrorCode::NotFound);
    }

    #[track_caller]
    pub fn conflict<T: std::fmt::Debug>(result: Result<T, tsunagu_client::Error>) {
        refused(result, StatusCode::CONFLICT, ErrorCode::Conflict);
    }
}
