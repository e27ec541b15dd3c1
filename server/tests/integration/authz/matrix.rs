//! Who may not do what, route by route and event by event.
//!
//! One region holds a patient group owned by a nurse, with a care manager, a doctor, a
//! family member (patient-side), a pharmacist and a therapist; a 内緒話 thread of the
//! nurse, the doctor, the pharmacist and the therapist; messages in both threads; and a
//! pending join request. Against it, the callers who must be refused:
//!
//! 1. a user of the same region outside the group,
//! 2. a user of another region,
//! 3. a group member outside the 内緒話 (the care manager),
//! 4. a patient-side member (the family member),
//! 5. a removed member (the pharmacist, who was in the 内緒話),
//! 6. a deactivated user (the therapist, with their old token);
//!
//! and besides: the region administrator, a group admin outside the 内緒話, and a
//! member taken out of the 内緒話 but still in the group.
//!
//! Where the caller must not learn that a thing exists, the answer is the 404 that a
//! thing which exists nowhere gets — byte for byte. 403 only where the caller knows the
//! group anyway (a plain member calling a manager-only route). 401 for a deactivated
//! account, whatever it names. And nothing hidden shows up in lists, counts, receipts
//! or websocket events.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tsunagu_client::{new_client_msg_id, Client};
use tsunagu_protocol::accounts::{Profession, UserRole};
use tsunagu_protocol::ids::{GroupId, MessageId, ThreadId, UserId};
use tsunagu_protocol::messaging::{
    AddMember, CreateGroup, CreateInvitation, CreateThread, Group, GroupKind, MemberRole, Message,
    PatientProfile, PostMessage, ThreadKind, UpdateMember,
};
use tsunagu_protocol::ws::ServerFrame;
use tsunagu_protocol::ErrorCode;

use tsunagu_testkit::both_backends;
use tsunagu_testkit::{new_user, person, Person, TestApp, WsClient, USER_PASSWORD};

both_backends!(
    strangers_and_removed_members_get_the_404_of_something_that_does_not_exist,
    members_outside_a_private_thread_get_404_on_it_and_403_only_on_management,
    patient_side_members_never_get_into_a_private_thread,
    a_deactivated_user_gets_401_on_every_route_and_loses_their_socket,
    lists_counts_and_receipts_show_only_what_the_caller_may_see,
    private_thread_events_reach_its_members_and_nobody_else,
    a_removed_members_socket_stops_receiving_the_group_at_once,
    a_member_taken_out_of_a_private_thread_loses_it_and_keeps_the_group,
    socket_frames_naming_a_hidden_thread_are_answered_as_for_an_unknown_one,
);

const EMOJI: &str = "👍";
/// `EMOJI`, as a path segment.
const EMOJI_PATH: &str = "%F0%9F%91%8D";

// ---------------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------------

struct World {
    /// Owner of the group, in the 内緒話.
    nurse: Person,
    /// Plain member, not in the 内緒話.
    cm: Person,
    /// Plain member, in the 内緒話.
    doc: Person,
    /// Patient-side member.
    fam: Person,
    /// In the group and the 内緒話; removed from the group by some tests.
    pharm: Person,
    /// In the group and the 内緒話; deactivated by some tests.
    ther: Person,
    /// Same region, not in the group.
    outsider: Person,
    /// Another region.
    foreigner: Person,
    /// Same region, with a pending join request.
    applicant: Person,
    group: Group,
    main: ThreadId,
    private: ThreadId,
    /// Authors: nurse, doctor, nurse (seqs 1–3).
    main_msgs: Vec<Message>,
    /// Authors: nurse, doctor (seqs 1–2).
    private_msgs: Vec<Message>,
}

/// A plain user of a new region, created by that region's administrator.
async fn foreigner(app: &TestApp) -> Person {
    let admin = app.other_region("kawaguchi").await;
    let user = admin
        .create_user(&new_user("kawaguchi.nurse", UserRole::User))
        .await
        .expect("create user in the other region");
    let client = app.client();
    client
        .login("kawaguchi.nurse", USER_PASSWORD, None)
        .await
        .expect("other region user login");
    Person { user, client }
}

fn patient_group(name: &str) -> CreateGroup {
    CreateGroup {
        kind: GroupKind::Patient,
        name: name.into(),
        description: None,
        patient: Some(PatientProfile {
            name: "山田 太郎".into(),
            name_kana: Some("ヤマダ タロウ".into()),
            birth_date: Some("1938-04-01".into()),
            sex: None,
            care_level: None,
            address: Some("さいたま市浦和区".into()),
            primary_physician: None,
            notes: None,
        }),
    }
}

fn free_group(name: &str) -> CreateGroup {
    CreateGroup {
        kind: GroupKind::Free,
        name: name.into(),
        description: None,
        patient: None,
    }
}

fn member(user_id: UserId) -> AddMember {
    AddMember {
        user_id,
        role: None,
        patient_side: None,
    }
}

async fn world(app: &TestApp) -> World {
    let nurse = person(app, "nurse", "訪問看護師 佐藤", Profession::Nurse).await;
    let cm = person(app, "caremanager", "ケアマネ 鈴木", Profession::CareManager).await;
    let doc = person(app, "doctor", "医師 高橋", Profession::Doctor).await;
    let fam = person(app, "family", "家族 山田 花子", Profession::Family).await;
    let pharm = person(app, "pharmacist", "薬剤師 田中", Profession::Pharmacist).await;
    let ther = person(app, "therapist", "理学療法士 伊藤", Profession::Therapist).await;
    let outsider = person(app, "outsider", "他事業所 渡辺", Profession::Nurse).await;
    let applicant = person(app, "applicant", "ヘルパー 小林", Profession::CareWorker).await;
    let foreigner = foreigner(app).await;

    let group = nurse
        .client
        .create_group(&patient_group("山田 太郎 様"))
        .await
        .expect("create group");
    for a in [&cm, &doc, &fam, &pharm, &ther] {
        let m = nurse
            .client
            .add_member(group.id, &member(a.id()))
            .await
            .expect("add member");
        assert_eq!(
            m.patient_side,
            a.id() == fam.id(),
            "family members are patient-side by default, professionals are not"
        );
    }
    let private = nurse
        .client
        .create_thread(
            group.id,
            &CreateThread {
                title: "内緒話: 告知について".into(),
                member_ids: vec![doc.id(), pharm.id(), ther.id()],
            },
        )
        .await
        .expect("create 内緒話");
    assert_eq!(private.kind, ThreadKind::Private);
    let main = group.main_thread_id;

    let mut main_msgs = Vec::new();
    for (who, body) in [
        (&nurse, "本日 14 時に訪問しました。血圧 128/76"),
        (&doc, "処方を変更します"),
        (&nurse, "承知しました"),
    ] {
        main_msgs.push(who.client.post_text(main, body).await.expect("post"));
    }
    let mut private_msgs = Vec::new();
    for (who, body) in [
        (&nurse, "検査結果はご家族にまだ伝えていません"),
        (&doc, "次回の往診で私から説明します"),
    ] {
        private_msgs.push(
            who.client
                .post_text(private.id, body)
                .await
                .expect("post in 内緒話"),
        );
    }
    assert_eq!(
        main_msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        private_msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2]
    );
    // The pharmacist has read everything (a receipt that must stop counting once they
    // are removed).
    pharm.client.mark_read(main, 3).await.expect("read");
    pharm.client.mark_read(private.id, 2).await.expect("read");

    // A pending join request, so that approve/reject name something real.
    let invitation = nurse
        .client
        .create_invitation(
            group.id,
            &CreateInvitation {
                requires_approval: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("invitation");
    let accepted = applicant
        .client
        .accept_invitation(invitation.code.as_deref().expect("code"))
        .await
        .expect("accept");
    assert_eq!(accepted.status, "pending");

    World {
        nurse,
        cm,
        doc,
        fam,
        pharm,
        ther,
        outsider,
        foreigner,
        applicant,
        group,
        main,
        private: private.id,
        main_msgs,
        private_msgs,
    }
}

impl World {
    /// The group's routes, aimed at real things; `newcomer` is whom add-member calls add.
    fn group_target(&self, newcomer: UserId) -> Target {
        Target {
            group: self.group.id,
            thread: self.main,
            message: self.main_msgs[0].id,
            member: self.doc.id(),
            applicant: self.applicant.id(),
            newcomer,
        }
    }

    /// The main timeline, at the nurse's first message.
    fn main_target(&self, newcomer: UserId) -> Target {
        Target {
            thread: self.main,
            message: self.main_msgs[0].id,
            ..self.group_target(newcomer)
        }
    }

    /// The 内緒話, at the nurse's first message.
    fn private_target(&self, newcomer: UserId) -> Target {
        Target {
            thread: self.private,
            message: self.private_msgs[0].id,
            ..self.group_target(newcomer)
        }
    }

    /// Every route of the group and both its threads, and the same calls naming ids
    /// that exist nowhere.
    fn everything(&self, newcomer: UserId) -> (Vec<Call>, Vec<Call>) {
        let real = [
            group_routes(&self.group_target(newcomer)),
            thread_routes(&self.main_target(newcomer)),
            thread_routes(&self.private_target(newcomer)),
        ]
        .concat();
        let unknown = [
            group_routes(&Target::unknown()),
            thread_routes(&Target::unknown()),
            thread_routes(&Target::unknown()),
        ]
        .concat();
        (real, unknown)
    }
}

/// Everything a group's members can observe, as the owner and as a 内緒話 member see it:
/// refused calls must leave all of it as it was.
async fn snapshot(w: &World) -> Value {
    let g = w.group.id;
    let nurse = &w.nurse.client;
    let doc = &w.doc.client;
    let mut readers = Vec::new();
    let mut messages = Vec::new();
    for t in [w.main, w.private] {
        let page = doc.list_messages(t, None, None, Some(200)).await.unwrap();
        for m in &page.messages {
            readers.push(serde_json::to_value(doc.readers(t, m.id).await.unwrap()).unwrap());
            if !m.deleted {
                let history = doc.message_history(t, m.id).await.unwrap();
                readers.push(serde_json::to_value(history).unwrap());
            }
        }
        messages.push(serde_json::to_value(page).unwrap());
    }
    json!({
        "group": nurse.get_group(g).await.unwrap(),
        "groups": nurse.list_groups().await.unwrap(),
        "members": nurse.list_members(g).await.unwrap(),
        "join_requests": nurse.list_join_requests(g).await.unwrap(),
        "threads_nurse": nurse.list_threads(g).await.unwrap(),
        "threads_doc": doc.list_threads(g).await.unwrap(),
        "private": doc.get_thread(w.private).await.unwrap(),
        "messages": messages,
        "readers_and_history": readers,
    })
}

// ---------------------------------------------------------------------------------
// The route table
// ---------------------------------------------------------------------------------

/// One HTTP call of the matrix; `route` is its row in the route table.
#[derive(Debug, Clone)]
struct Call {
    route: &'static str,
    method: Method,
    path: String,
    body: Option<Value>,
}

fn call(route: &'static str, method: Method, path: String, body: Option<Value>) -> Call {
    Call {
        route,
        method,
        path,
        body,
    }
}

/// What a table's rows name.
#[derive(Debug, Clone, Copy)]
struct Target {
    group: GroupId,
    thread: ThreadId,
    message: MessageId,
    /// An existing (group or thread) member, whom PATCH/DELETE member calls aim at.
    member: UserId,
    /// The user with a pending join request.
    applicant: UserId,
    /// Whom add-member calls try to add (usually the caller: "let me in").
    newcomer: UserId,
}

impl Target {
    /// Ids that exist nowhere.
    fn unknown() -> Target {
        Target {
            group: GroupId::new(),
            thread: ThreadId::new(),
            message: MessageId::new(),
            member: UserId::new(),
            applicant: UserId::new(),
            newcomer: UserId::new(),
        }
    }
}

/// What every group member may read.
fn group_read_routes(t: &Target) -> Vec<Call> {
    let g = t.group;
    vec![
        call(
            "GET /groups/{id}",
            Method::GET,
            format!("/groups/{g}"),
            None,
        ),
        call(
            "GET /groups/{id}/members",
            Method::GET,
            format!("/groups/{g}/members"),
            None,
        ),
        call(
            "GET /groups/{id}/threads",
            Method::GET,
            format!("/groups/{g}/threads"),
            None,
        ),
    ]
}

/// Group owners and admins only.
fn group_manage_routes(t: &Target) -> Vec<Call> {
    let g = t.group;
    vec![
        call(
            "PATCH /groups/{id}",
            Method::PATCH,
            format!("/groups/{g}"),
            Some(json!({ "name": "乗っ取り" })),
        ),
        call(
            "POST /groups/{id}/archive",
            Method::POST,
            format!("/groups/{g}/archive"),
            None,
        ),
        call(
            "POST /groups/{id}/members",
            Method::POST,
            format!("/groups/{g}/members"),
            Some(json!({ "user_id": t.newcomer })),
        ),
        call(
            "PATCH /groups/{id}/members/{user_id}",
            Method::PATCH,
            format!("/groups/{g}/members/{}", t.member),
            Some(json!({ "role": "admin" })),
        ),
        call(
            "DELETE /groups/{id}/members/{user_id}",
            Method::DELETE,
            format!("/groups/{g}/members/{}", t.member),
            None,
        ),
        call(
            "POST /groups/{id}/invitations",
            Method::POST,
            format!("/groups/{g}/invitations"),
            Some(json!({ "max_uses": 5 })),
        ),
        call(
            "GET /groups/{id}/join-requests",
            Method::GET,
            format!("/groups/{g}/join-requests"),
            None,
        ),
        call(
            "POST /groups/{id}/join-requests/{user_id}/approve",
            Method::POST,
            format!("/groups/{g}/join-requests/{}/approve", t.applicant),
            None,
        ),
        call(
            "POST /groups/{id}/join-requests/{user_id}/reject",
            Method::POST,
            format!("/groups/{g}/join-requests/{}/reject", t.applicant),
            None,
        ),
    ]
}

/// Professionals of the group only.
fn create_private_route(t: &Target) -> Call {
    call(
        "POST /groups/{id}/threads",
        Method::POST,
        format!("/groups/{}/threads", t.group),
        Some(json!({ "title": "内緒の相談", "member_ids": [] })),
    )
}

fn group_routes(t: &Target) -> Vec<Call> {
    let mut calls = group_read_routes(t);
    calls.extend(group_manage_routes(t));
    calls.push(create_private_route(t));
    calls
}

fn thread_routes(t: &Target) -> Vec<Call> {
    let th = t.thread;
    let m = t.message;
    vec![
        call(
            "GET /threads/{id}",
            Method::GET,
            format!("/threads/{th}"),
            None,
        ),
        call(
            "POST /threads/{id}/members",
            Method::POST,
            format!("/threads/{th}/members"),
            Some(json!({ "user_id": t.newcomer })),
        ),
        call(
            "DELETE /threads/{id}/members/{user_id}",
            Method::DELETE,
            format!("/threads/{th}/members/{}", t.member),
            None,
        ),
        call(
            "GET /threads/{id}/messages",
            Method::GET,
            format!("/threads/{th}/messages?after_seq=0&limit=200"),
            None,
        ),
        call(
            "POST /threads/{id}/messages",
            Method::POST,
            format!("/threads/{th}/messages"),
            Some(json!({ "body": "見えないはずの投稿", "client_msg_id": new_client_msg_id() })),
        ),
        call(
            "PATCH /threads/{id}/messages/{message_id}",
            Method::PATCH,
            format!("/threads/{th}/messages/{m}"),
            Some(json!({ "body": "書き換え" })),
        ),
        call(
            "DELETE /threads/{id}/messages/{message_id}",
            Method::DELETE,
            format!("/threads/{th}/messages/{m}"),
            None,
        ),
        call(
            "GET /threads/{id}/messages/{message_id}/history",
            Method::GET,
            format!("/threads/{th}/messages/{m}/history"),
            None,
        ),
        call(
            "GET /threads/{id}/messages/{message_id}/readers",
            Method::GET,
            format!("/threads/{th}/messages/{m}/readers"),
            None,
        ),
        call(
            "POST /threads/{id}/messages/{message_id}/reactions",
            Method::POST,
            format!("/threads/{th}/messages/{m}/reactions"),
            Some(json!({ "emoji": EMOJI })),
        ),
        call(
            "DELETE /threads/{id}/messages/{message_id}/reactions/{emoji}",
            Method::DELETE,
            format!("/threads/{th}/messages/{m}/reactions/{EMOJI_PATH}"),
            None,
        ),
        call(
            "POST /threads/{id}/read",
            Method::POST,
            format!("/threads/{th}/read"),
            Some(json!({ "seq": 1 })),
        ),
    ]
}

/// The rows of `calls` named in `routes`, which must all exist.
fn pick(calls: Vec<Call>, routes: &[&str]) -> Vec<Call> {
    for r in routes {
        assert!(calls.iter().any(|c| c.route == *r), "no route {r}");
    }
    calls
        .into_iter()
        .filter(|c| routes.contains(&c.route))
        .collect()
}

/// Changing a message: its author only.
fn message_change_routes(t: &Target) -> Vec<Call> {
    pick(
        thread_routes(t),
        &[
            "PATCH /threads/{id}/messages/{message_id}",
            "DELETE /threads/{id}/messages/{message_id}",
        ],
    )
}

/// Every route that names a message.
fn message_routes(t: &Target) -> Vec<Call> {
    pick(
        thread_routes(t),
        &[
            "PATCH /threads/{id}/messages/{message_id}",
            "DELETE /threads/{id}/messages/{message_id}",
            "GET /threads/{id}/messages/{message_id}/history",
            "GET /threads/{id}/messages/{message_id}/readers",
            "POST /threads/{id}/messages/{message_id}/reactions",
            "DELETE /threads/{id}/messages/{message_id}/reactions/{emoji}",
        ],
    )
}

/// What any member of a thread may do with someone else's message.
fn thread_member_routes(t: &Target) -> Vec<Call> {
    pick(
        thread_routes(t),
        &[
            "GET /threads/{id}",
            "GET /threads/{id}/messages",
            "POST /threads/{id}/messages",
            "GET /threads/{id}/messages/{message_id}/history",
            "GET /threads/{id}/messages/{message_id}/readers",
            "POST /threads/{id}/messages/{message_id}/reactions",
            "DELETE /threads/{id}/messages/{message_id}/reactions/{emoji}",
            "POST /threads/{id}/read",
        ],
    )
}

struct Answer {
    status: StatusCode,
    body: String,
}

impl Answer {
    fn code(&self) -> Option<String> {
        let v: Value = serde_json::from_str(&self.body).ok()?;
        v.get("error")?.get("code")?.as_str().map(str::to_owned)
    }
}

async fn send(app: &TestApp, token: &str, c: &Call) -> Answer {
    let mut req = app
        .http
        .request(c.method.clone(), app.url(&format!("/api/v1{}", c.path)))
        .bearer_auth(token);
    if let Some(body) = &c.body {
        req = req.json(body);
    }
    let res = req.send().await.expect("request");
    Answer {
        status: res.status(),
        body: res.text().await.expect("body"),
    }
}

/// Sends every call as `who` and checks that each is refused with `status` and `code`.
/// With `unknown` (the same calls naming ids that exist nowhere), every answer must also
/// be byte-identical to its counterpart's: hidden and absent cannot be told apart.
/// Reports every wrong row at once.
async fn assert_refused(
    app: &TestApp,
    who: &str,
    token: &str,
    calls: &[Call],
    unknown: Option<&[Call]>,
    status: StatusCode,
    code: ErrorCode,
) {
    if let Some(unknown) = unknown {
        assert_eq!(calls.len(), unknown.len());
    }
    let mut wrong = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        let got = send(app, token, c).await;
        if got.status != status || got.code().as_deref() != Some(code.as_str()) {
            wrong.push(format!(
                "{who}: {} answered {} {} (expected {status} {})",
                c.route,
                got.status,
                got.body,
                code.as_str()
            ));
            continue;
        }
        if let Some(unknown) = unknown {
            let u = &unknown[i];
            assert_eq!(u.route, c.route);
            let absent = send(app, token, u).await;
            if absent.status != got.status || absent.body != got.body {
                wrong.push(format!(
                    "{who}: {} tells hidden from absent: {} {:?} for the hidden one, {} {:?} for a missing one",
                    c.route, got.status, got.body, absent.status, absent.body
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} rows wrong:\n{}",
        wrong.len(),
        calls.len(),
        wrong.join("\n")
    );
}

/// Every call succeeds for `who`.
async fn assert_allowed(app: &TestApp, who: &str, token: &str, calls: &[Call]) {
    let mut wrong = Vec::new();
    for c in calls {
        let got = send(app, token, c).await;
        if !got.status.is_success() {
            wrong.push(format!(
                "{who}: {} answered {} {}",
                c.route, got.status, got.body
            ));
        }
    }
    assert!(wrong.is_empty(), "refused:\n{}", wrong.join("\n"));
}

fn assert_api_error(e: tsunagu_client::Error, status: StatusCode, code: ErrorCode) {
    assert_eq!(e.status(), Some(status), "{e}");
    assert_eq!(e.code(), Some(code), "{e}");
}

// ---------------------------------------------------------------------------------
// A websocket client
// ---------------------------------------------------------------------------------

/// Connects and authenticates, then settles the socket: its first frame (the ping of a
/// barrier) ends the server's hold on live events after `ready`, so from here on events
/// arrive in the order they were published.
async fn open(app: &TestApp, token: &str) -> WsClient {
    let mut s = WsClient::connect_quiet(app, token).await;
    let early = s.barrier().await;
    assert!(early.is_empty(), "before anything happened: {early:?}");
    s
}

fn frame_type(f: &ServerFrame) -> String {
    serde_json::to_value(f).unwrap()["type"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Whether a frame names any of `ids`.
fn names_any(f: &ServerFrame, ids: &[String]) -> bool {
    let text = serde_json::to_string(f).unwrap();
    ids.iter().any(|id| text.contains(id.as_str()))
}

/// An error frame's `(ref, code, message)`.
fn error_of(f: ServerFrame) -> (Option<String>, String, String) {
    match f {
        ServerFrame::Error {
            reference,
            code,
            message,
            ..
        } => (reference, code, message),
        other => panic!("expected an error frame, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------

async fn strangers_and_removed_members_get_the_404_of_something_that_does_not_exist(app: TestApp) {
    let w = world(&app).await;
    // The pharmacist was in the group and its 内緒話, had read everything, posted in
    // both threads and reacted to their own posts.
    let pharm = &w.pharm.client;
    let own_main = pharm.post_text(w.main, "薬を届けました").await.unwrap();
    let own_private = pharm.post_text(w.private, "残薬が多いです").await.unwrap();
    pharm
        .add_reaction(w.main, own_main.id, EMOJI)
        .await
        .unwrap();
    pharm
        .add_reaction(w.private, own_private.id, EMOJI)
        .await
        .unwrap();
    w.nurse
        .client
        .remove_member(w.group.id, w.pharm.id())
        .await
        .unwrap();
    // The region's administrator manages accounts, not conversations.
    let region_admin = Person {
        user: app.admin.me().await.unwrap().user,
        client: app.admin.clone(),
    };
    let before = snapshot(&w).await;

    for actor in [&w.outsider, &w.foreigner, &w.pharm, &region_admin] {
        // Every route of the group, its main timeline and its 内緒話 — adding themselves
        // included — is the 404 of a group that does not exist.
        let (calls, unknown) = w.everything(actor.id());
        assert_refused(
            &app,
            actor.who(),
            &actor.token(),
            &calls,
            Some(&unknown),
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        )
        .await;
        // And their group list does not have it.
        let groups = actor.client.list_groups().await.unwrap().groups;
        assert!(
            groups.iter().all(|g| g.id != w.group.id),
            "{}: the group is listed",
            actor.who()
        );
    }
    // Their own messages are no exception for a removed member: editing, deleting,
    // un-reacting, reading their history or readers is the same 404.
    for (thread, message) in [(w.main, own_main.id), (w.private, own_private.id)] {
        let own = Target {
            thread,
            message,
            ..w.group_target(w.pharm.id())
        };
        assert_refused(
            &app,
            w.pharm.who(),
            &w.pharm.token(),
            &thread_routes(&own),
            Some(&thread_routes(&Target::unknown())),
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        )
        .await;
    }
    assert_eq!(
        snapshot(&w).await,
        before,
        "a refused call changed something"
    );

    // An invitation code is no way in across regions: the same 404 as a wrong code...
    let invitation = w
        .nurse
        .client
        .create_invitation(
            w.group.id,
            &CreateInvitation {
                max_uses: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let code = invitation.code.unwrap();
    let accept = |code: &str| {
        call(
            "POST /invitations/accept",
            Method::POST,
            "/invitations/accept".into(),
            Some(json!({ "code": code })),
        )
    };
    let real = accept(&code);
    let wrong = accept("not-a-code-at-all");
    assert_refused(
        &app,
        w.foreigner.who(),
        &w.foreigner.token(),
        &[real],
        Some(&[wrong][..]),
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    )
    .await;
    // ...which did not use the single-use code up.
    let joined = w.outsider.client.accept_invitation(&code).await.unwrap();
    assert_eq!(joined.status, "joined");
    // A new member gets the main timeline, never the 内緒話.
    w.outsider.client.get_thread(w.main).await.unwrap();
    assert_api_error(
        w.outsider.client.get_thread(w.private).await.unwrap_err(),
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    // Nor does a removed member get the 内緒話 back by being added to the group again.
    w.nurse
        .client
        .add_member(w.group.id, &member(w.pharm.id()))
        .await
        .unwrap();
    w.pharm.client.get_thread(w.main).await.unwrap();
    assert_api_error(
        w.pharm.client.get_thread(w.private).await.unwrap_err(),
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    let private = w.doc.client.get_thread(w.private).await.unwrap();
    assert!(!private.member_ids.unwrap().contains(&w.pharm.id()));
}

async fn members_outside_a_private_thread_get_404_on_it_and_403_only_on_management(app: TestApp) {
    let w = world(&app).await;
    let before = snapshot(&w).await;

    for actor in [&w.cm, &w.fam] {
        // The 内緒話 does not exist for them — not even to add themselves to it.
        assert_refused(
            &app,
            actor.who(),
            &actor.token(),
            &thread_routes(&w.private_target(actor.id())),
            Some(&thread_routes(&Target::unknown())),
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        )
        .await;
        // Nor can a 内緒話 message be reached through the timeline they do see: it is the
        // 404 of a message that does not exist.
        let through_main = Target {
            message: w.private_msgs[0].id,
            ..w.main_target(actor.id())
        };
        let nowhere = Target {
            message: MessageId::new(),
            ..w.main_target(actor.id())
        };
        assert_refused(
            &app,
            actor.who(),
            &actor.token(),
            &message_routes(&through_main),
            Some(&message_routes(&nowhere)),
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        )
        .await;
        // Nor replied to from there.
        let reply = |to: MessageId| {
            call(
                "POST /threads/{id}/messages (reply_to)",
                Method::POST,
                format!("/threads/{}/messages", w.main),
                Some(json!({
                    "body": "返信", "client_msg_id": new_client_msg_id(), "reply_to": to,
                })),
            )
        };
        assert_refused(
            &app,
            actor.who(),
            &actor.token(),
            &[reply(w.private_msgs[0].id)],
            Some(&[reply(MessageId::new())][..]),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
        )
        .await;
        // They know the group: managing it is forbidden, not hidden.
        assert_refused(
            &app,
            actor.who(),
            &actor.token(),
            &group_manage_routes(&w.group_target(w.outsider.id())),
            None,
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
        )
        .await;
        // So is changing someone else's message in the timeline they share.
        assert_refused(
            &app,
            actor.who(),
            &actor.token(),
            &message_change_routes(&w.main_target(actor.id())),
            None,
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
        )
        .await;
    }
    // Patients and family cannot open a 内緒話 of their own.
    assert_refused(
        &app,
        w.fam.who(),
        &w.fam.token(),
        &[create_private_route(&w.group_target(w.fam.id()))],
        None,
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
    )
    .await;
    assert_eq!(
        snapshot(&w).await,
        before,
        "a refused call changed something"
    );

    // What they may do, they can: the group, its members, the main timeline.
    for actor in [&w.cm, &w.fam] {
        let target = Target {
            // The doctor's message, so the reactions are on someone else's.
            message: w.main_msgs[1].id,
            ..w.main_target(actor.id())
        };
        let calls = [
            group_read_routes(&w.group_target(actor.id())),
            thread_member_routes(&target),
        ]
        .concat();
        assert_allowed(&app, actor.who(), &actor.token(), &calls).await;
    }

    // Managing the group does not open its 内緒話 either: the care manager, made a group
    // admin, still gets the 404 of a thread that does not exist.
    w.nurse
        .client
        .update_member(
            w.group.id,
            w.cm.id(),
            &UpdateMember {
                role: MemberRole::Admin,
            },
        )
        .await
        .unwrap();
    assert_refused(
        &app,
        "caremanager as group admin",
        &w.cm.token(),
        &thread_routes(&w.private_target(w.cm.id())),
        Some(&thread_routes(&Target::unknown())),
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    )
    .await;
    let threads = w.cm.client.list_threads(w.group.id).await.unwrap().threads;
    assert_eq!(
        threads.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![w.main]
    );
}

async fn patient_side_members_never_get_into_a_private_thread(app: TestApp) {
    let w = world(&app).await;
    let members = w.nurse.client.list_members(w.group.id).await.unwrap();
    let fam = members
        .members
        .iter()
        .find(|m| m.user_id == w.fam.id())
        .unwrap();
    assert!(fam.patient_side);

    // Not when a 内緒話 is created...
    let e = w
        .nurse
        .client
        .create_thread(
            w.group.id,
            &CreateThread {
                title: "ご家族も交えて".into(),
                member_ids: vec![w.doc.id(), w.fam.id()],
            },
        )
        .await
        .unwrap_err();
    assert_api_error(e, StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest);
    // ...nor added later, by the owner or by another member of the thread...
    for adder in [&w.nurse, &w.doc] {
        let e = adder
            .client
            .add_thread_member(w.private, w.fam.id())
            .await
            .unwrap_err();
        assert_api_error(e, StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest);
    }
    // ...nor by being made a manager of the group...
    let e = w
        .nurse
        .client
        .update_member(
            w.group.id,
            w.fam.id(),
            &UpdateMember {
                role: MemberRole::Admin,
            },
        )
        .await
        .unwrap_err();
    assert_api_error(e, StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest);
    // ...nor by opening one themselves.
    let e = w
        .fam
        .client
        .create_thread(
            w.group.id,
            &CreateThread {
                title: "家族の相談".into(),
                member_ids: vec![w.nurse.id()],
            },
        )
        .await
        .unwrap_err();
    assert_api_error(e, StatusCode::FORBIDDEN, ErrorCode::Forbidden);

    // Nothing came of it: the doctor still sees the main timeline and the one 内緒話,
    // with the members it had.
    let threads = w.doc.client.list_threads(w.group.id).await.unwrap().threads;
    assert_eq!(threads.len(), 2);
    let private = w.doc.client.get_thread(w.private).await.unwrap();
    let mut ids = private.member_ids.unwrap();
    ids.sort();
    let mut expected = vec![w.nurse.id(), w.doc.id(), w.pharm.id(), w.ther.id()];
    expected.sort();
    assert_eq!(ids, expected);
    let fam_threads = w.fam.client.list_threads(w.group.id).await.unwrap().threads;
    assert_eq!(fam_threads.len(), 1);
    assert_eq!(fam_threads[0].id, w.main);
    let fam_role = w.nurse.client.list_members(w.group.id).await.unwrap();
    let fam_now = fam_role
        .members
        .iter()
        .find(|m| m.user_id == w.fam.id())
        .unwrap();
    assert_eq!(fam_now.role, MemberRole::Member);
    assert!(fam_now.patient_side);

    // The main timeline is theirs as much as anyone's.
    let posted = w
        .fam
        .client
        .post_text(w.main, "いつもありがとうございます")
        .await
        .unwrap();
    let page = w
        .nurse
        .client
        .list_messages(w.main, Some(3), None, None)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].id, posted.id);
}

async fn a_deactivated_user_gets_401_on_every_route_and_loses_their_socket(app: TestApp) {
    let w = world(&app).await;
    let token = w.ther.token();
    let mut ws = open(&app, &token).await;

    app.admin.deactivate_user(w.ther.id()).await.unwrap();

    // The open socket is told, then closed.
    let (_, code, _) = error_of(ws.frame().await);
    assert_eq!(code, ErrorCode::Unauthenticated.as_str());
    assert!(ws.next().await.is_closed(), "the socket is closed");
    // A new socket with the old token is refused.
    let mut again = WsClient::raw(&app).await;
    again.send(json!({ "type": "auth", "token": token })).await;
    let (_, code, _) = error_of(again.frame().await);
    assert_eq!(code, ErrorCode::Unauthenticated.as_str());
    assert!(again.next().await.is_closed(), "the socket is closed");

    // Every route, whatever it names: 401 — the same 401 for real and for unknown ids.
    let (mut calls, mut unknown) = w.everything(w.ther.id());
    calls.push(call("GET /groups", Method::GET, "/groups".into(), None));
    unknown.push(call("GET /groups", Method::GET, "/groups".into(), None));
    assert_refused(
        &app,
        w.ther.who(),
        &token,
        &calls,
        Some(&unknown),
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthenticated,
    )
    .await;
    // And the refresh token does not bring the account back.
    let e = w.ther.client.refresh().await.unwrap_err();
    assert_eq!(e.status(), Some(StatusCode::UNAUTHORIZED), "{e}");
}

async fn lists_counts_and_receipts_show_only_what_the_caller_may_see(app: TestApp) {
    let w = world(&app).await;
    let g = w.group.id;

    // Group lists.
    for a in [&w.outsider, &w.foreigner] {
        let groups = a.client.list_groups().await.unwrap().groups;
        assert!(groups.is_empty(), "{}: {groups:?}", a.who());
    }
    for a in [&w.cm, &w.fam, &w.pharm] {
        let groups = a.client.list_groups().await.unwrap().groups;
        assert_eq!(groups.len(), 1, "{}", a.who());
        assert_eq!(groups[0].id, g);
    }

    // Thread lists: outside the 内緒話, the main timeline alone, with its own numbers.
    let outside_view = |w: &World, a: &Person, unread: u64| {
        let client = a.client.clone();
        let who = a.who().to_owned();
        let main = w.main;
        async move {
            let threads = client.list_threads(g).await.unwrap().threads;
            assert_eq!(threads.len(), 1, "{who}: {threads:?}");
            let t = &threads[0];
            assert_eq!((t.id, t.kind), (main, ThreadKind::Main), "{who}");
            assert_eq!(t.member_ids, None);
            assert_eq!(t.last_seq, 3, "{who}: the main timeline's seq");
            assert_eq!(t.unread_count, unread, "{who}: main-timeline messages only");
            assert_eq!(client.get_thread(main).await.unwrap(), *t, "{who}");
        }
    };
    outside_view(&w, &w.cm, 3).await;
    outside_view(&w, &w.fam, 3).await;
    let threads = w.doc.client.list_threads(g).await.unwrap().threads;
    assert_eq!(threads.len(), 2);
    assert_eq!(
        (threads[0].id, threads[0].last_seq, threads[0].unread_count),
        (w.main, 3, 1),
        "the doctor has read up to his own post (seq 2)"
    );
    assert_eq!(
        (threads[1].id, threads[1].last_seq, threads[1].unread_count),
        (w.private, 2, 0)
    );

    // More 内緒話 traffic moves nothing in what the others see.
    for i in 0..3 {
        w.doc
            .client
            .post_text(w.private, &format!("内緒の続き {i}"))
            .await
            .unwrap();
    }
    outside_view(&w, &w.cm, 3).await;
    outside_view(&w, &w.fam, 3).await;
    // Reading "everything" reads the main timeline up to its own end.
    let read = w.cm.client.mark_read(w.main, 1000).await.unwrap();
    assert_eq!((read.last_read_seq, read.unread_count), (3, 0));
    w.doc.client.post_text(w.private, "まだ内緒").await.unwrap();
    outside_view(&w, &w.cm, 0).await;

    // 既読: only current members of the thread are readers.
    let counts = |page: &[Message], id: MessageId| {
        page.iter()
            .find(|m| m.id == id)
            .map(|m| m.read_count)
            .unwrap()
    };
    let main_msg = w.main_msgs[0].id;
    let private_msg = w.private_msgs[0].id;
    let readers = |t: ThreadId, m: MessageId| {
        let doc = w.doc.client.clone();
        async move {
            let mut ids: Vec<UserId> = doc
                .readers(t, m)
                .await
                .unwrap()
                .readers
                .into_iter()
                .map(|r| r.user_id)
                .collect();
            ids.sort();
            ids
        }
    };
    let sorted = |mut v: Vec<UserId>| {
        v.sort();
        v
    };
    assert_eq!(
        readers(w.main, main_msg).await,
        sorted(vec![w.doc.id(), w.pharm.id(), w.cm.id()])
    );
    assert_eq!(
        readers(w.private, private_msg).await,
        sorted(vec![w.doc.id(), w.pharm.id()]),
        "the care manager read the main timeline, not the 内緒話"
    );
    let page = |t: ThreadId| {
        let doc = w.doc.client.clone();
        async move {
            doc.list_messages(t, Some(0), None, Some(200))
                .await
                .unwrap()
                .messages
        }
    };
    assert_eq!(counts(&page(w.main).await, main_msg), 3);
    assert_eq!(counts(&page(w.private).await, private_msg), 2);

    // The pharmacist, who had read everything, is removed: their receipts stop counting.
    w.nurse.client.remove_member(g, w.pharm.id()).await.unwrap();
    assert_eq!(
        readers(w.main, main_msg).await,
        sorted(vec![w.doc.id(), w.cm.id()])
    );
    assert_eq!(readers(w.private, private_msg).await, vec![w.doc.id()]);
    assert_eq!(counts(&page(w.main).await, main_msg), 2);
    assert_eq!(counts(&page(w.private).await, private_msg), 1);
    let groups = w.pharm.client.list_groups().await.unwrap().groups;
    assert!(groups.is_empty(), "{groups:?}");

    // Mentions must name members of the thread; anyone else is refused alike, whether
    // they exist or not.
    let mention = |client: &Client, thread: ThreadId, who: UserId| {
        let client = client.clone();
        async move {
            client
                .post_message(
                    thread,
                    &PostMessage {
                        body: "ご確認ください".into(),
                        client_msg_id: new_client_msg_id(),
                        reply_to: None,
                        mentions: vec![who],
                        attachments: Vec::new(),
                    },
                )
                .await
        }
    };
    let last = |t: ThreadId| {
        let doc = w.doc.client.clone();
        async move { doc.get_thread(t).await.unwrap().last_seq }
    };
    let (main_last, private_last) = (last(w.main).await, last(w.private).await);
    let nobody = mention(&w.doc.client, w.private, UserId::new())
        .await
        .unwrap_err();
    assert_eq!(nobody.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(nobody.code(), Some(ErrorCode::InvalidRequest));
    let nobody = nobody.to_string();
    let cases = [
        (&w.doc, w.private, &w.cm, "a member outside the 内緒話"),
        (&w.doc, w.private, &w.fam, "a patient-side member"),
        (&w.doc, w.private, &w.pharm, "a removed member"),
        (&w.doc, w.private, &w.outsider, "a user outside the group"),
        (&w.doc, w.private, &w.foreigner, "a user of another region"),
        (&w.nurse, w.main, &w.pharm, "a removed member"),
        (&w.nurse, w.main, &w.outsider, "a user outside the group"),
        (&w.nurse, w.main, &w.foreigner, "a user of another region"),
    ];
    for (poster, thread, mentioned, what) in cases {
        let e = mention(&poster.client, thread, mentioned.id())
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(StatusCode::BAD_REQUEST), "{what}: {e}");
        assert_eq!(e.code(), Some(ErrorCode::InvalidRequest), "{what}");
        assert_eq!(e.to_string(), nobody, "{what}: told apart from nobody");
    }
    assert_eq!(last(w.main).await, main_last, "nothing was posted");
    assert_eq!(last(w.private).await, private_last, "nothing was posted");
    // Members can be mentioned.
    mention(&w.doc.client, w.private, w.nurse.id())
        .await
        .unwrap();
    mention(&w.nurse.client, w.main, w.fam.id()).await.unwrap();
}

async fn private_thread_events_reach_its_members_and_nobody_else(app: TestApp) {
    let w = world(&app).await;
    // Groups of their own, so that the outsiders' sockets have an event of their own
    // to wait for.
    let own = w
        .outsider
        .client
        .create_group(&free_group("渡辺 連絡用"))
        .await
        .unwrap();
    let foreign_own = w
        .foreigner
        .client
        .create_group(&free_group("川口 連絡用"))
        .await
        .unwrap();

    let mut nurse_ws = open(&app, &w.nurse.token()).await;
    let mut doc_ws = open(&app, &w.doc.token()).await;
    let mut cm_ws = open(&app, &w.cm.token()).await;
    let mut fam_ws = open(&app, &w.fam.token()).await;
    let mut out_ws = open(&app, &w.outsider.token()).await;
    let mut for_ws = open(&app, &w.foreigner.token()).await;

    // Everything that can happen in a 内緒話.
    let nurse = &w.nurse.client;
    let doc = &w.doc.client;
    let posted = doc
        .post_text(w.private, "ご家族にはまだ伝えないでください")
        .await
        .unwrap();
    nurse
        .edit_message(w.private, w.private_msgs[0].id, "検査結果は未告知です")
        .await
        .unwrap();
    doc.add_reaction(w.private, posted.id, EMOJI).await.unwrap();
    doc.remove_reaction(w.private, posted.id, EMOJI)
        .await
        .unwrap();
    nurse.mark_read(w.private, posted.seq).await.unwrap();
    nurse_ws
        .send(json!({ "type": "typing", "thread_id": w.private }))
        .await;
    nurse_ws.barrier().await;
    nurse
        .delete_message(w.private, w.private_msgs[0].id)
        .await
        .unwrap();
    let second = nurse
        .create_thread(
            w.group.id,
            &CreateThread {
                title: "内緒話 その 2".into(),
                member_ids: vec![w.doc.id()],
            },
        )
        .await
        .unwrap();
    nurse
        .add_thread_member(second.id, w.ther.id())
        .await
        .unwrap();
    nurse
        .remove_thread_member(second.id, w.ther.id())
        .await
        .unwrap();
    // Then the main timeline and the group, which everyone in it sees (and nobody
    // outside it).
    w.cm.client
        .add_reaction(w.main, w.main_msgs[0].id, EMOJI)
        .await
        .unwrap();
    w.cm.client.mark_read(w.main, 3).await.unwrap();
    nurse
        .edit_message(w.main, w.main_msgs[2].id, "承知しました。金曜に伺います")
        .await
        .unwrap();
    let mut cm_seen = Vec::new();
    let mut fam_seen = Vec::new();
    for (ws, seen) in [(&mut cm_ws, &mut cm_seen), (&mut fam_ws, &mut fam_seen)] {
        ws.send(json!({ "type": "typing", "thread_id": w.main }))
            .await;
        seen.extend(ws.barrier().await);
    }
    nurse
        .decide_join_request(w.group.id, w.applicant.id(), true)
        .await
        .unwrap();
    let sentinel = nurse
        .post_text(w.main, "次回訪問は金曜日です")
        .await
        .unwrap();

    let hidden: Vec<String> = [
        w.private.to_string(),
        second.id.to_string(),
        posted.id.to_string(),
        w.private_msgs[0].id.to_string(),
        w.private_msgs[1].id.to_string(),
    ]
    .into();

    // The control: a member of the 内緒話 got all of it, so there was something to leak.
    let doc_seen = doc_ws.until_message(&sentinel).await;
    for ty in [
        "message.created",
        "message.edited",
        "reaction.added",
        "reaction.removed",
        "receipt",
        "typing",
        "message.deleted",
        "thread.created",
        "thread.member_added",
        "thread.member_removed",
    ] {
        assert!(
            doc_seen
                .iter()
                .any(|f| frame_type(f) == ty && names_any(f, &hidden)),
            "the doctor should have had a {ty} of the 内緒話: {doc_seen:#?}"
        );
    }

    // Members outside the 内緒話: everything of the main timeline and the group, nothing
    // of the 内緒話.
    cm_seen.extend(cm_ws.until_message(&sentinel).await);
    fam_seen.extend(fam_ws.until_message(&sentinel).await);
    for (who, seen) in [("care manager", &cm_seen), ("family", &fam_seen)] {
        let leaked: Vec<_> = seen.iter().filter(|f| names_any(f, &hidden)).collect();
        assert!(leaked.is_empty(), "{who} got 内緒話 events: {leaked:#?}");
        let types: Vec<String> = seen.iter().map(frame_type).collect();
        for ty in [
            "reaction.added",
            "receipt",
            "message.edited",
            "typing",
            "member.added",
            "message.created",
        ] {
            assert!(
                types.iter().any(|t| t == ty),
                "{who} should have had the main timeline's {ty}: {seen:#?}"
            );
        }
    }

    // Outsiders: the first and only thing they get is from their own group — published
    // after everything above, so all of that was withheld from them.
    for (actor, ws, own) in [
        (&w.outsider, &mut out_ws, &own),
        (&w.foreigner, &mut for_ws, &foreign_own),
    ] {
        let mine = actor
            .client
            .post_text(own.main_thread_id, "自分のグループ")
            .await
            .unwrap();
        let seen = ws.until_message(&mine).await;
        assert_eq!(seen.len(), 1, "{} got: {seen:#?}", actor.who());
    }
}

async fn a_removed_members_socket_stops_receiving_the_group_at_once(app: TestApp) {
    let w = world(&app).await;
    // Another group the pharmacist stays in, for a last event of their own.
    let side = w
        .nurse
        .client
        .create_group(&free_group("薬局との連絡"))
        .await
        .unwrap();
    w.nurse
        .client
        .add_member(side.id, &member(w.pharm.id()))
        .await
        .unwrap();
    let mut ws = open(&app, &w.pharm.token()).await;

    w.nurse
        .client
        .remove_member(w.group.id, w.pharm.id())
        .await
        .unwrap();
    // They are told: out of the 内緒話, then out of the group.
    let seen = ws
        .until(|f| matches!(f, ServerFrame::MemberRemoved { .. }))
        .await;
    assert_eq!(
        seen,
        vec![
            ServerFrame::ThreadMemberRemoved {
                thread_id: w.private,
                group_id: w.group.id,
                user_id: w.pharm.id(),
            },
            ServerFrame::MemberRemoved {
                group_id: w.group.id,
                user_id: w.pharm.id(),
            },
        ]
    );

    // The group carries on without them.
    let nurse = &w.nurse.client;
    nurse
        .post_text(w.main, "薬局さんは今月で終了")
        .await
        .unwrap();
    w.doc
        .client
        .post_text(w.private, "後任の薬局は来週決めます")
        .await
        .unwrap();
    w.cm.client
        .add_reaction(w.main, w.main_msgs[0].id, EMOJI)
        .await
        .unwrap();
    w.doc.client.mark_read(w.main, 4).await.unwrap();
    w.doc.client.mark_read(w.private, 3).await.unwrap();
    nurse
        .edit_message(w.main, w.main_msgs[0].id, "本日 14 時に訪問。血圧 130/78")
        .await
        .unwrap();
    nurse
        .add_member(w.group.id, &member(w.outsider.id()))
        .await
        .unwrap();
    let mut cm_ws = open(&app, &w.cm.token()).await;
    cm_ws
        .send(json!({ "type": "typing", "thread_id": w.main }))
        .await;
    cm_ws.barrier().await;
    let sentinel = nurse
        .post_text(side.main_thread_id, "処方箋の件、別途連絡します")
        .await
        .unwrap();
    let seen = ws.until_message(&sentinel).await;
    assert_eq!(seen.len(), 1, "the removed member still got: {seen:#?}");

    // Asking for the group's threads back gets nothing; posting to them, a 404.
    ws.send(
        json!({ "type": "resume", "threads": { w.main.to_string(): 0, w.private.to_string(): 0 } }),
    )
    .await;
    let frames = ws.until(|f| matches!(f, ServerFrame::Resumed { .. })).await;
    assert_eq!(
        frames,
        vec![ServerFrame::Resumed {
            threads: Default::default()
        }]
    );
    ws.send(json!({
        "type": "post", "ref": "still-here", "thread_id": w.main,
        "body": "まだ見えますか", "client_msg_id": new_client_msg_id(),
    }))
    .await;
    let (reference, code, _) = error_of(ws.frame().await);
    assert_eq!(reference.as_deref(), Some("still-here"));
    assert_eq!(code, ErrorCode::NotFound.as_str());
}

async fn a_member_taken_out_of_a_private_thread_loses_it_and_keeps_the_group(app: TestApp) {
    let w = world(&app).await;
    let ther = &w.ther;
    ther.client.mark_read(w.private, 2).await.unwrap();
    let mut ws = open(&app, &ther.token()).await;

    // Any member of the 内緒話 may take another out of it.
    w.doc
        .client
        .remove_thread_member(w.private, ther.id())
        .await
        .unwrap();
    let seen = ws
        .until(|f| matches!(f, ServerFrame::ThreadMemberRemoved { .. }))
        .await;
    assert_eq!(
        seen,
        vec![ServerFrame::ThreadMemberRemoved {
            thread_id: w.private,
            group_id: w.group.id,
            user_id: ther.id(),
        }]
    );

    // The 内緒話 goes on without them; the main timeline still reaches them.
    let posted = w
        .doc
        .client
        .post_text(w.private, "リハビリの件は別途")
        .await
        .unwrap();
    w.nurse
        .client
        .add_reaction(w.private, posted.id, EMOJI)
        .await
        .unwrap();
    w.nurse
        .client
        .mark_read(w.private, posted.seq)
        .await
        .unwrap();
    w.nurse
        .client
        .edit_message(w.private, w.private_msgs[0].id, "検査結果: 未告知")
        .await
        .unwrap();
    let sentinel = w
        .nurse
        .client
        .post_text(w.main, "リハビリは火曜と金曜です")
        .await
        .unwrap();
    let seen = ws.until_message(&sentinel).await;
    assert_eq!(seen.len(), 1, "the former 内緒話 member got: {seen:#?}");

    // Every route of the 内緒話 is now the 404 of a thread that does not exist —
    // putting themselves back included.
    assert_refused(
        &app,
        ther.who(),
        &ther.token(),
        &thread_routes(&w.private_target(ther.id())),
        Some(&thread_routes(&Target::unknown())),
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    )
    .await;
    // The group and its main timeline are still theirs.
    let threads = ther.client.list_threads(w.group.id).await.unwrap().threads;
    assert_eq!(
        threads.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![w.main]
    );
    assert_allowed(
        &app,
        ther.who(),
        &ther.token(),
        &thread_member_routes(&Target {
            message: w.main_msgs[1].id,
            ..w.main_target(ther.id())
        }),
    )
    .await;
    // And their old receipt no longer counts in the 内緒話.
    let readers = w
        .doc
        .client
        .readers(w.private, w.private_msgs[0].id)
        .await
        .unwrap();
    assert!(
        readers.readers.iter().all(|r| r.user_id != ther.id()),
        "{readers:?}"
    );
    let private = w.doc.client.get_thread(w.private).await.unwrap();
    assert!(!private.member_ids.unwrap().contains(&ther.id()));
}

async fn socket_frames_naming_a_hidden_thread_are_answered_as_for_an_unknown_one(app: TestApp) {
    let w = world(&app).await;
    let mut doc_ws = open(&app, &w.doc.token()).await;
    let unknown = ThreadId::new();

    for (actor, hidden) in [
        (&w.cm, w.private),
        (&w.fam, w.private),
        (&w.outsider, w.main),
        (&w.outsider, w.private),
        (&w.foreigner, w.main),
        (&w.foreigner, w.private),
    ] {
        let who = actor.who();
        let mut ws = open(&app, &actor.token()).await;
        // post: an error with the same code and message as for a thread that does not
        // exist.
        for (reference, thread) in [("hidden", hidden), ("unknown", unknown)] {
            ws.send(json!({
                "type": "post", "ref": reference, "thread_id": thread,
                "body": "見えないはずの投稿", "client_msg_id": new_client_msg_id(),
            }))
            .await;
        }
        let (r1, c1, m1) = error_of(ws.frame().await);
        let (r2, c2, m2) = error_of(ws.frame().await);
        assert_eq!(r1.as_deref(), Some("hidden"), "{who}");
        assert_eq!(r2.as_deref(), Some("unknown"), "{who}");
        assert_eq!(c1, ErrorCode::NotFound.as_str(), "{who}: post");
        assert_eq!((c1, m1), (c2, m2), "{who}: post tells hidden from absent");
        // read and typing: likewise.
        for frame in [
            json!({ "type": "read", "seq": 1 }),
            json!({ "type": "typing" }),
        ] {
            let ty = frame["type"].as_str().unwrap().to_owned();
            for thread in [hidden, unknown] {
                let mut f = frame.clone();
                f["thread_id"] = json!(thread);
                ws.send(f).await;
            }
            let (r1, c1, m1) = error_of(ws.frame().await);
            let (r2, c2, m2) = error_of(ws.frame().await);
            assert_eq!((r1, r2), (None, None));
            assert_eq!(c1, ErrorCode::NotFound.as_str(), "{who}: {ty}");
            assert_eq!((c1, m1), (c2, m2), "{who}: {ty} tells hidden from absent");
        }
        // resume: skipped like an unknown thread, nothing replayed.
        ws.send(json!({ "type": "resume", "threads": { hidden.to_string(): 0, unknown.to_string(): 0 } }))
            .await;
        let frames = ws.until(|f| matches!(f, ServerFrame::Resumed { .. })).await;
        assert_eq!(
            frames,
            vec![ServerFrame::Resumed {
                threads: Default::default()
            }],
            "{who}: resume"
        );
    }

    // A member outside the 内緒話 resuming both threads gets the main timeline only.
    let mut ws = open(&app, &w.cm.token()).await;
    ws.send(
        json!({ "type": "resume", "threads": { w.main.to_string(): 0, w.private.to_string(): 0 } }),
    )
    .await;
    let frames = ws.until(|f| matches!(f, ServerFrame::Resumed { .. })).await;
    let got: Vec<(String, Option<(ThreadId, i64)>)> = frames
        .iter()
        .map(|f| match f {
            ServerFrame::MessageCreated { message } => {
                (frame_type(f), Some((message.thread_id, message.seq)))
            }
            other => (frame_type(other), None),
        })
        .collect();
    let mut want: Vec<(String, Option<(ThreadId, i64)>)> = (1..=3)
        .map(|seq| ("message.created".to_owned(), Some((w.main, seq))))
        .collect();
    want.push(("resumed".to_owned(), None));
    assert_eq!(got, want);
    assert_eq!(
        frames.last(),
        Some(&ServerFrame::Resumed {
            threads: [(w.main, 3)].into()
        })
    );

    // None of the refused frames did anything: no message, no receipt, no typing reached
    // the doctor, who sees both threads.
    let sentinel = w.nurse.client.post_text(w.main, "確認用").await.unwrap();
    let seen = doc_ws.until_message(&sentinel).await;
    assert_eq!(seen.len(), 1, "the doctor got: {seen:#?}");
    let private = w
        .doc
        .client
        .list_messages(w.private, Some(0), None, None)
        .await
        .unwrap();
    assert_eq!(
        private.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        w.private_msgs.iter().map(|m| m.id).collect::<Vec<_>>()
    );
    let readers = w
        .doc
        .client
        .readers(w.private, w.private_msgs[1].id)
        .await
        .unwrap();
    assert!(readers.readers.iter().all(|r| r.user_id != w.cm.id()
        && r.user_id != w.fam.id()
        && r.user_id != w.outsider.id()
        && r.user_id != w.foreigner.id()));
}
