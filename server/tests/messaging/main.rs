//! Messaging over REST: groups, membership, invitations, 内緒話, messages and read
//! receipts, and the end-to-end scenario that `docs/walkthrough.md` follows step by
//! step. Every test runs on SQLite and, with `TSUNAGU_TEST_POSTGRES_URL`, on PostgreSQL.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod groups;
mod messages;
mod scenario;

/// People, groups and calls the messaging tests share.
pub mod fixtures {
    use reqwest::{Method, StatusCode};
    use serde_json::Value;
    use tsunagu_client::Client;
    use tsunagu_protocol::accounts::{CreateUser, Profession, User, UserRole};
    use tsunagu_protocol::ids::{ThreadId, UserId};
    use tsunagu_protocol::messaging::{
        AddMember, CareLevel, CreateGroup, Group, GroupKind, Member, Message, PatientProfile,
        PostMessage, Sex,
    };
    use tsunagu_protocol::ErrorCode;

    use crate::helpers::{TestApp, USER_PASSWORD};

    /// A signed-in user and their client.
    #[derive(Clone)]
    pub struct Person {
        pub user: User,
        pub client: Client,
    }

    impl Person {
        pub fn id(&self) -> UserId {
            self.user.id
        }

        pub fn token(&self) -> String {
            self.client.tokens().expect("signed in").access_token
        }
    }

    /// Creates a ready-to-use user of region `default` (no forced password change) and
    /// signs them in.
    pub async fn person(
        app: &TestApp,
        login: &str,
        display_name: &str,
        profession: Profession,
    ) -> Person {
        let user = app
            .admin
            .create_user(&CreateUser {
                login: login.into(),
                display_name: display_name.into(),
                display_name_kana: None,
                password: USER_PASSWORD.into(),
                profession,
                organization_id: None,
                role: Some(UserRole::User),
                must_change_password: Some(false),
            })
            .await
            .expect("create user");
        let client = app.client();
        client
            .login(login, USER_PASSWORD, None)
            .await
            .expect("user login");
        Person { user, client }
    }

    /// A user of another region (created there by the operator), signed in.
    pub async fn stranger(app: &TestApp, slug: &str, login: &str) -> Person {
        app.other_region(slug).await;
        let user = app
            .domain
            .operator()
            .operator_create_user(
                slug,
                CreateUser {
                    login: login.into(),
                    display_name: "他地域 看護師".into(),
                    display_name_kana: None,
                    password: USER_PASSWORD.into(),
                    profession: Profession::Nurse,
                    organization_id: None,
                    role: Some(UserRole::User),
                    must_change_password: Some(false),
                },
            )
            .await
            .expect("create user in the other region");
        let client = app.client();
        client
            .login(login, USER_PASSWORD, None)
            .await
            .expect("stranger login");
        Person { user, client }
    }

    /// A complete patient profile, every field set, in Japanese.
    pub fn full_profile() -> PatientProfile {
        PatientProfile {
            name: "山田 太郎".into(),
            name_kana: Some("ヤマダ タロウ".into()),
            birth_date: Some("1938-04-01".into()),
            sex: Some(Sex::Male),
            care_level: Some(CareLevel::Care3),
            address: Some("埼玉県さいたま市浦和区高砂3-15-1".into()),
            primary_physician: Some("田中 一郎 (浦和在宅クリニック)".into()),
            notes: Some("独居。長女が週末に来訪。\n嚥下機能低下あり、とろみ剤使用。".into()),
        }
    }

    /// A patient group owned by `owner`, with the full profile.
    pub async fn patient_group(owner: &Client, name: &str) -> Group {
        owner
            .create_group(&CreateGroup {
                kind: GroupKind::Patient,
                name: name.into(),
                description: None,
                patient: Some(full_profile()),
            })
            .await
            .expect("create patient group")
    }

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

    /// A patient group run by a visiting nurse (owner), with a care manager, a doctor
    /// and a family member (patient-side) in it.
    pub struct Team {
        pub group: Group,
        pub nurse: Person,
        pub caremgr: Person,
        pub doctor: Person,
        pub family: Person,
    }

    impl Team {
        pub fn main(&self) -> ThreadId {
            self.group.main_thread_id
        }
    }

    pub async fn team(app: &TestApp) -> Team {
        let nurse = person(app, "nurse.sato", "佐藤 看護師", Profession::Nurse).await;
        let caremgr = person(app, "cm.suzuki", "鈴木 ケアマネ", Profession::CareManager).await;
        let doctor = person(app, "dr.tanaka", "田中 医師", Profession::Doctor).await;
        let family = person(app, "family.yamada", "山田 花子", Profession::Family).await;
        let group = patient_group(&nurse.client, "山田 太郎 様").await;
        for p in [&caremgr, &doctor, &family] {
            add(&nurse.client, &group, p).await;
        }
        Team {
            group,
            nurse,
            caremgr,
            doctor,
            family,
        }
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
