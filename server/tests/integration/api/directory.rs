//! The directory: professionals find each other by name and kana in any script and
//! width; patients, family, apps and other regions are never listed; the region's
//! organisation-only policy holds; people edit their own profile.

use reqwest::StatusCode;
use tsunagu_protocol::accounts::{
    CreateOrganization, CreateUser, DirectoryScope, OrganizationKind, Profession, UpdateMe,
    UpdatePolicy, UserRole,
};
use tsunagu_protocol::apps::{CreateApiClient, Scope};
use tsunagu_testkit::{both_backends, person, stranger, team, TestApp, USER_PASSWORD};

both_backends!(
    professionals_find_each_other_by_name_or_kana_in_any_script_or_width,
    patients_family_apps_and_other_regions_are_never_listed,
    the_organisation_policy_lists_colleagues_and_group_peers_only,
    people_edit_their_own_profile_and_it_shows_in_the_directory,
);

async fn kana_user(
    app: &TestApp,
    login: &str,
    name: &str,
    kana: &str,
    p: Profession,
) -> tsunagu_testkit::Person {
    let user = app
        .admin
        .create_user(&CreateUser {
            login: login.into(),
            display_name: name.into(),
            display_name_kana: Some(kana.into()),
            password: USER_PASSWORD.into(),
            profession: p,
            organization_id: None,
            role: Some(UserRole::User),
            must_change_password: Some(false),
        })
        .await
        .unwrap();
    let client = app.client();
    client.login(login, USER_PASSWORD, None).await.unwrap();
    tsunagu_testkit::Person { user, client }
}

fn names(page: &tsunagu_protocol::accounts::DirectoryPage) -> Vec<String> {
    page.users.iter().map(|u| u.display_name.clone()).collect()
}

async fn professionals_find_each_other_by_name_or_kana_in_any_script_or_width(app: TestApp) {
    let nurse = kana_user(
        &app,
        "nurse.sato",
        "佐藤 花子",
        "サトウ ハナコ",
        Profession::Nurse,
    )
    .await;
    kana_user(
        &app,
        "cm.suzuki",
        "鈴木 一郎",
        "スズキ イチロウ",
        Profession::CareManager,
    )
    .await;
    kana_user(
        &app,
        "dr.saito",
        "斉藤 健",
        "サイトウ ケン",
        Profession::Doctor,
    )
    .await;
    for q in ["さとう", "サトウ", "ｻﾄｳ", "佐藤", "さとうはなこ", "ハナコ"] {
        let page = nurse.client.directory(Some(q), None).await.unwrap();
        assert_eq!(names(&page), ["佐藤 花子"], "{q}");
    }
    let page = nurse
        .client
        .directory(Some("いちろう"), None)
        .await
        .unwrap();
    assert_eq!(names(&page), ["鈴木 一郎"]);
    // Everyone, in kana order (the bootstrap admin has no kana: by name).
    let all = nurse.client.directory(None, None).await.unwrap();
    let listed = names(&all);
    let pos = |n: &str| listed.iter().position(|x| x == n).unwrap();
    assert!(
        pos("斉藤 健") < pos("佐藤 花子") && pos("佐藤 花子") < pos("鈴木 一郎"),
        "{listed:?}"
    );
    // Pages follow each other without gaps or repeats.
    let response = app
        .http
        .get(app.url("/api/v1/users?limit=1"))
        .bearer_auth(nurse.token())
        .send()
        .await
        .unwrap();
    let first: tsunagu_protocol::accounts::DirectoryPage = response.json().await.unwrap();
    let second = nurse
        .client
        .directory(
            None,
            first.next_cursor.as_deref().map(|c| c.parse().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(first.users.len(), 1);
    assert_eq!(second.users[0].id, all.users[1].id);
    // Bad input is a clear 400.
    let long = "あ".repeat(101);
    let err = nurse.client.directory(Some(&long), None).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
}

async fn patients_family_apps_and_other_regions_are_never_listed(app: TestApp) {
    let t = team(&app).await;
    let foreign = stranger(&app, "kawagoe", "nurse.kawagoe").await;
    let patient = person(&app, "patient.yamada", "山田 太郎", Profession::Patient).await;
    app.admin
        .create_api_client(&CreateApiClient {
            name: "連携アプリ".into(),
            scopes: vec![Scope::UsersRead],
            description: None,
            jwks: None,
            requests_per_minute: None,
        })
        .await
        .unwrap();
    let listed = names(&t.nurse.client.directory(None, None).await.unwrap());
    for hidden in ["山田 花子", "山田 太郎", "連携アプリ", "他地域 看護師"] {
        assert!(
            !listed.iter().any(|n| n == hidden),
            "{hidden} listed: {listed:?}"
        );
    }
    assert!(listed.iter().any(|n| n == "鈴木 ケアマネ"));
    // Patients and family do not browse the directory.
    for p in [&t.family, &patient] {
        let err = p.client.directory(None, None).await.unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
    }
    // The other region's nurse sees only their own region.
    let theirs = names(&foreign.client.directory(None, None).await.unwrap());
    assert!(!theirs.iter().any(|n| n == "佐藤 看護師"), "{theirs:?}");
}

async fn the_organisation_policy_lists_colleagues_and_group_peers_only(app: TestApp) {
    let org = |name: &str| CreateOrganization {
        name: name.into(),
        kind: OrganizationKind::VisitingNursingStation,
    };
    let station = app
        .admin
        .create_organization(&org("浦和訪問看護"))
        .await
        .unwrap();
    let t = team(&app).await;
    let colleague = person(&app, "nurse.kimura", "木村 看護師", Profession::Nurse).await;
    let outsider = person(&app, "nurse.mori", "森 看護師", Profession::Nurse).await;
    for p in [&t.nurse, &colleague] {
        app.admin
            .update_user(
                p.id(),
                &tsunagu_protocol::accounts::UpdateUser {
                    organization_id: Some(station.id),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    app.admin
        .update_policy(&UpdatePolicy {
            directory_scope: Some(DirectoryScope::Organization),
            ..Default::default()
        })
        .await
        .unwrap();
    let listed = names(&t.nurse.client.directory(None, None).await.unwrap());
    assert!(
        listed.contains(&"木村 看護師".to_owned()),
        "same organisation: {listed:?}"
    );
    assert!(
        listed.contains(&"田中 医師".to_owned()),
        "shares a group: {listed:?}"
    );
    assert!(
        !listed.contains(&"森 看護師".to_owned()),
        "neither: {listed:?}"
    );
    let theirs = names(&outsider.client.directory(None, None).await.unwrap());
    assert!(!theirs.contains(&"佐藤 看護師".to_owned()), "{theirs:?}");
    // Organisations are listed for the filter.
    let orgs = t.nurse.client.organizations().await.unwrap();
    assert!(orgs.organizations.iter().any(|o| o.id == station.id));
}

async fn people_edit_their_own_profile_and_it_shows_in_the_directory(app: TestApp) {
    let nurse = person(&app, "nurse.sato", "佐藤 看護師", Profession::Nurse).await;
    let doctor = person(&app, "dr.tanaka", "田中 医師", Profession::Doctor).await;
    let me = nurse
        .client
        .update_me(&UpdateMe {
            display_name: Some("佐藤 花子".into()),
            display_name_kana: Some("サトウ ハナコ".into()),
            about: Some("褥瘡ケア担当".into()),
        })
        .await
        .unwrap();
    assert_eq!(me.user.display_name, "佐藤 花子");
    assert_eq!(me.about.as_deref(), Some("褥瘡ケア担当"));
    let page = doctor.client.directory(Some("はなこ"), None).await.unwrap();
    assert_eq!(page.users[0].about.as_deref(), Some("褥瘡ケア担当"));
    // Bad input leaves nothing half written.
    let err = nurse
        .client
        .update_me(&UpdateMe {
            display_name: Some("新しい名前".into()),
            about: Some("a\u{7}b".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(
        nurse.client.me().await.unwrap().user.display_name,
        "佐藤 花子"
    );
    // An empty line removes it.
    let me = nurse
        .client
        .update_me(&UpdateMe {
            about: Some(String::new()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(me.about.is_none());
}
