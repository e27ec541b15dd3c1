//! People and a care team, signed in and ready to act.

use tsunagu_client::Client;
use tsunagu_protocol::accounts::{CreateUser, Profession, User, UserRole};
use tsunagu_protocol::ids::{GroupId, ThreadId, UserId};
use tsunagu_protocol::messaging::{
    AddMember, CareLevel, CreateGroup, CreateThread, Group, GroupKind, Member, PatientProfile, Sex,
    Thread,
};

use crate::app::{TestApp, USER_PASSWORD};

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

    /// The login id, which names the person in assertion messages.
    pub fn who(&self) -> &str {
        &self.user.login
    }

    pub fn token(&self) -> String {
        self.client.tokens().expect("signed in").access_token
    }
}

fn plain_user(login: &str, display_name: &str, profession: Profession) -> CreateUser {
    CreateUser {
        login: login.into(),
        display_name: display_name.into(),
        display_name_kana: None,
        password: USER_PASSWORD.into(),
        profession,
        organization_id: None,
        role: Some(UserRole::User),
        must_change_password: Some(false),
    }
}

async fn signed_in(app: &TestApp, user: User) -> Person {
    let client = app.client();
    client
        .login(&user.login, USER_PASSWORD, None)
        .await
        .expect("user login");
    Person { user, client }
}

/// A ready-to-use user of region `default` (no forced password change), signed in.
pub async fn person(
    app: &TestApp,
    login: &str,
    display_name: &str,
    profession: Profession,
) -> Person {
    let user = app
        .admin
        .create_user(&plain_user(login, display_name, profession))
        .await
        .expect("create user");
    signed_in(app, user).await
}

/// A nurse of another region `slug` (created there by the operator), signed in.
pub async fn stranger(app: &TestApp, slug: &str, login: &str) -> Person {
    app.other_region(slug).await;
    let user = app
        .domain
        .operator()
        .operator_create_user(slug, plain_user(login, "他地域 看護師", Profession::Nurse))
        .await
        .expect("create user in the other region");
    signed_in(app, user).await
}

/// Adds `who` to `group` with the defaults (role member, patient_side from the
/// profession).
pub async fn add_member(group: &Group, owner: &Person, who: &Person) -> Member {
    owner
        .client
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

/// A patient group run by a visiting nurse (owner), with a care manager, a doctor and a
/// family member (patient-side) in it.
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

    /// A 内緒話 of the nurse and the doctor: the care manager and the family are in the
    /// group but not in it.
    pub async fn private_thread(&self) -> Thread {
        self.nurse
            .client
            .create_thread(
                self.group.id,
                &CreateThread {
                    title: "医療職のみ".into(),
                    member_ids: vec![self.doctor.id()],
                },
            )
            .await
            .expect("create 内緒話")
    }
}

pub async fn team(app: &TestApp) -> Team {
    let nurse = person(app, "nurse.sato", "佐藤 看護師", Profession::Nurse).await;
    let caremgr = person(app, "cm.suzuki", "鈴木 ケアマネ", Profession::CareManager).await;
    let doctor = person(app, "dr.tanaka", "田中 医師", Profession::Doctor).await;
    let family = person(app, "family.yamada", "山田 花子", Profession::Family).await;
    let group = patient_group(&nurse.client, "山田 太郎 様").await;
    for p in [&caremgr, &doctor, &family] {
        add_member(&group, &nurse, p).await;
    }
    Team {
        group,
        nurse,
        caremgr,
        doctor,
        family,
    }
}

/// Nurse A (`nurse.a`) owns a free group that nurse B (`nurse.b`) is a member of: the
/// smallest conversation. Their clients, the group and its main thread.
pub async fn two_nurses_in_a_group(app: &TestApp) -> (Client, Client, GroupId, ThreadId) {
    let a = person(app, "nurse.a", "看護師 nurse.a", Profession::Nurse).await;
    let b = person(app, "nurse.b", "看護師 nurse.b", Profession::Nurse).await;
    let group = a
        .client
        .create_group(&CreateGroup {
            kind: GroupKind::Free,
            name: "訪問看護 連絡".into(),
            description: None,
            patient: None,
        })
        .await
        .expect("create group");
    add_member(&group, &a, &b).await;
    (a.client, b.client, group.id, group.main_thread_id)
}
