//! Groups (patient and free), membership and roles, invitations and join requests, and
//! 内緒話 thread membership.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tsunagu_protocol::accounts::Profession;
use tsunagu_protocol::ids::{ThreadId, UserId};
use tsunagu_protocol::messaging::{
    AddMember, CareLevel, CreateGroup, CreateInvitation, CreateThread, GroupKind, MemberRole,
    PatientProfile, Sex, ThreadKind, UpdateGroup, UpdateMember,
};
use tsunagu_protocol::ErrorCode;

use crate::messaging::fixtures::{
    add, conflict, forbidden, full_profile, invalid, not_found, patient_group, person, raw,
    refused, stranger, team, Person,
};
use tsunagu_testkit::both_backends;
use tsunagu_testkit::TestApp;

both_backends!(
    a_patient_group_with_a_full_japanese_profile_round_trips,
    group_kind_and_patient_profile_must_agree,
    patients_and_family_cannot_create_groups,
    the_group_list_shows_only_my_groups_with_my_role,
    owners_and_admins_update_a_group_plain_members_cannot,
    an_archived_group_stays_readable_refuses_posts_and_leaves_the_default_list,
    members_are_added_once_from_the_same_region_only,
    patient_and_family_users_join_as_patient_side_members,
    patient_and_family_users_stay_patient_side_whatever_the_request_says,
    only_owners_grant_ownership_and_the_last_owner_cannot_go,
    a_member_can_leave_and_loses_the_group_at_once,
    removal_from_the_group_removes_the_user_from_its_private_threads,
    an_invitation_code_is_shown_once_and_spent_by_its_uses,
    wrong_used_up_and_foreign_invitation_codes_get_the_same_404,
    an_invitation_requiring_approval_waits_for_a_group_admin,
    accepting_while_already_a_member_is_a_conflict_and_spends_no_use,
    a_removed_member_cannot_rejoin_by_any_code_until_an_owner_adds_them,
    owners_list_and_revoke_codes_and_a_revoked_code_admits_nobody,
    a_private_thread_always_includes_its_creator_and_is_listed_only_to_its_members,
    private_threads_refuse_patient_side_members_and_outsiders,
    thread_members_add_and_remove_group_professionals,
);

fn ids(v: &[UserId]) -> BTreeSet<UserId> {
    v.iter().copied().collect()
}

fn thread_members(t: &tsunagu_protocol::messaging::Thread) -> BTreeSet<UserId> {
    ids(t.member_ids.as_deref().expect("a 内緒話 lists its members"))
}

async fn a_patient_group_with_a_full_japanese_profile_round_trips(app: TestApp) {
    let nurse = person(&app, "nurse.sato", "佐藤 看護師", Profession::Nurse).await;
    let created = nurse
        .client
        .create_group(&CreateGroup {
            kind: GroupKind::Patient,
            name: "  山田 太郎 様  ".into(),
            description: Some("在宅酸素療法中。訪問看護は週3回。".into()),
            patient: Some(full_profile()),
        })
        .await
        .unwrap();
    assert_eq!(created.kind, GroupKind::Patient);
    assert_eq!(created.name, "山田 太郎 様", "names are trimmed");
    assert_eq!(
        created.description.as_deref(),
        Some("在宅酸素療法中。訪問看護は週3回。")
    );
    assert_eq!(created.patient, Some(full_profile()));
    assert_eq!(created.my_role, MemberRole::Owner);
    assert_eq!(created.member_count, 1);
    assert!(!created.archived);

    // The same through GET, in the list, and on the wire with the documented values.
    let fetched = nurse.client.get_group(created.id).await.unwrap();
    assert_eq!(fetched.patient, Some(full_profile()));
    assert_eq!(fetched.main_thread_id, created.main_thread_id);
    let listed = nurse.client.list_groups().await.unwrap().groups;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, created.id);
    assert_eq!(listed[0].patient, Some(full_profile()));
    let (status, body) = raw(
        &app,
        &nurse.token(),
        Method::GET,
        &format!("/api/v1/groups/{}", created.id),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["kind"], "patient");
    assert_eq!(body["my_role"], "owner");
    assert_eq!(body["patient"]["name_kana"], "ヤマダ タロウ");
    assert_eq!(body["patient"]["birth_date"], "1938-04-01");
    assert_eq!(body["patient"]["sex"], "male");
    assert_eq!(body["patient"]["care_level"], "care_3");
    assert_eq!(
        body["patient"]["primary_physician"],
        "田中 一郎 (浦和在宅クリニック)"
    );

    // The creator is its only member, an owner and not patient-side; the group has its
    // main timeline and nothing else.
    let members = nurse.client.list_members(created.id).await.unwrap().members;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].user_id, nurse.id());
    assert_eq!(members[0].role, MemberRole::Owner);
    assert!(!members[0].patient_side);
    let threads = nurse.client.list_threads(created.id).await.unwrap().threads;
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0].id, created.main_thread_id);
    assert_eq!(threads[0].kind, ThreadKind::Main);
    assert_eq!(threads[0].member_ids, None);
    assert_eq!(threads[0].last_seq, 0);

    // Every care level (要支援1–2, 要介護1–5, none) and every sex round-trips.
    let levels = [
        CareLevel::Support1,
        CareLevel::Support2,
        CareLevel::Care1,
        CareLevel::Care2,
        CareLevel::Care3,
        CareLevel::Care4,
        CareLevel::Care5,
        CareLevel::None,
    ];
    let sexes = [Sex::Male, Sex::Female, Sex::Other, Sex::Unknown];
    for (i, level) in levels.into_iter().enumerate() {
        let profile = PatientProfile {
            name: format!("患者 {i}"),
            name_kana: None,
            birth_date: None,
            sex: Some(sexes[i % sexes.len()]),
            care_level: Some(level),
            address: None,
            primary_physician: None,
            notes: None,
        };
        let g = nurse
            .client
            .create_group(&CreateGroup {
                kind: GroupKind::Patient,
                name: format!("患者 {i} 様"),
                description: None,
                patient: Some(profile.clone()),
            })
            .await
            .unwrap();
        assert_eq!(
            nurse.client.get_group(g.id).await.unwrap().patient,
            Some(profile)
        );
    }

    // A free group carries no patient data at all.
    let free = nurse
        .client
        .create_group(&CreateGroup {
            kind: GroupKind::Free,
            name: "浦和地区 多職種連絡会".into(),
            description: None,
            patient: None,
        })
        .await
        .unwrap();
    assert_eq!(free.kind, GroupKind::Free);
    let (_, body) = raw(
        &app,
        &nurse.token(),
        Method::GET,
        &format!("/api/v1/groups/{}", free.id),
        None,
    )
    .await;
    assert_eq!(body["kind"], "free");
    assert!(body.get("patient").is_none(), "{body}");
}

async fn group_kind_and_patient_profile_must_agree(app: TestApp) {
    let nurse = person(&app, "nurse.sato", "佐藤 看護師", Profession::Nurse).await;

    invalid(
        nurse
            .client
            .create_group(&CreateGroup {
                kind: GroupKind::Free,
                name: "連絡会".into(),
                description: None,
                patient: Some(full_profile()),
            })
            .await,
    );
    invalid(
        nurse
            .client
            .create_group(&CreateGroup {
                kind: GroupKind::Patient,
                name: "山田 太郎 様".into(),
                description: None,
                patient: None,
            })
            .await,
    );
    for bad_date in [
        "1938/04/01",
        "1938-02-30",
        "昭和13年4月1日",
        "1938-04-01T00:00",
        "",
    ] {
        let mut profile = full_profile();
        profile.birth_date = Some(bad_date.into());
        invalid(
            nurse
                .client
                .create_group(&CreateGroup {
                    kind: GroupKind::Patient,
                    name: "山田 太郎 様".into(),
                    description: None,
                    patient: Some(profile),
                })
                .await,
        );
    }
    let mut unnamed = full_profile();
    unnamed.name = "   ".into();
    invalid(
        nurse
            .client
            .create_group(&CreateGroup {
                kind: GroupKind::Patient,
                name: "山田 太郎 様".into(),
                description: None,
                patient: Some(unnamed),
            })
            .await,
    );

    // Unknown enum values and unknown fields are refused, not ignored.
    for body in [
        json!({"kind": "secret", "name": "x"}),
        json!({"kind": "patient", "name": "x", "patient": {"name": "山田", "care_level": "care_6"}}),
        json!({"kind": "patient", "name": "x", "patient": {"name": "山田", "sex": "x"}}),
        json!({"kind": "patient", "name": "x", "patient": {"name": "山田", "insurance_no": "123"}}),
    ] {
        let (status, answer) = raw(
            &app,
            &nurse.token(),
            Method::POST,
            "/api/v1/groups",
            Some(&body),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        assert_eq!(answer["error"]["code"], "invalid_request", "{body}");
    }
    assert!(
        nurse.client.list_groups().await.unwrap().groups.is_empty(),
        "nothing refused was created"
    );

    // Nor can a free group be given patient data afterwards.
    let free = nurse
        .client
        .create_group(&CreateGroup {
            kind: GroupKind::Free,
            name: "連絡会".into(),
            description: None,
            patient: None,
        })
        .await
        .unwrap();
    invalid(
        nurse
            .client
            .update_group(
                free.id,
                &UpdateGroup {
                    patient: Some(full_profile()),
                    ..Default::default()
                },
            )
            .await,
    );
    assert_eq!(nurse.client.get_group(free.id).await.unwrap().patient, None);

    // `birth_date` is documented as YYYY-MM-DD: a two-digit year or unpadded month and
    // day is not that format (and "38" would be the year 38).
    for loose in ["38-04-01", "1938-4-1"] {
        let mut profile = full_profile();
        profile.birth_date = Some(loose.into());
        let result = nurse
            .client
            .create_group(&CreateGroup {
                kind: GroupKind::Patient,
                name: "山田 太郎 様".into(),
                description: None,
                patient: Some(profile),
            })
            .await;
        assert!(
            matches!(&result, Err(e) if e.code() == Some(ErrorCode::InvalidRequest)),
            "birth_date {loose:?} must be refused, got {result:?}"
        );
    }
}

async fn patients_and_family_cannot_create_groups(app: TestApp) {
    let patient = person(&app, "patient.yamada", "山田 太郎", Profession::Patient).await;
    let family = person(&app, "family.yamada", "山田 花子", Profession::Family).await;
    for p in [&patient, &family] {
        for (kind, profile) in [
            (GroupKind::Patient, Some(full_profile())),
            (GroupKind::Free, None),
        ] {
            refused(
                p.client
                    .create_group(&CreateGroup {
                        kind,
                        name: "家族のグループ".into(),
                        description: None,
                        patient: profile,
                    })
                    .await,
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
            );
        }
        assert!(p.client.list_groups().await.unwrap().groups.is_empty());
    }
}

async fn the_group_list_shows_only_my_groups_with_my_role(app: TestApp) {
    let a = person(&app, "nurse.a", "看護師 A", Profession::Nurse).await;
    let b = person(&app, "nurse.b", "看護師 B", Profession::Nurse).await;
    let c = person(&app, "pharm.c", "薬剤師 C", Profession::Pharmacist).await;
    let g1 = patient_group(&a.client, "患者一 様").await;
    let g2 = patient_group(&b.client, "患者二 様").await;
    let _g3 = patient_group(&b.client, "患者三 様").await;
    b.client
        .add_member(
            g2.id,
            &AddMember {
                user_id: a.id(),
                role: Some(MemberRole::Admin),
                patient_side: None,
            },
        )
        .await
        .unwrap();

    let mut mine: Vec<_> = a
        .client
        .list_groups()
        .await
        .unwrap()
        .groups
        .into_iter()
        .map(|g| (g.id, g.my_role, g.member_count))
        .collect();
    mine.sort_by_key(|m| m.0);
    let mut expected = vec![(g1.id, MemberRole::Owner, 1), (g2.id, MemberRole::Admin, 2)];
    expected.sort_by_key(|m| m.0);
    assert_eq!(mine, expected);
    assert_eq!(b.client.list_groups().await.unwrap().groups.len(), 2);

    // Someone in none of them sees none of them: not in lists, not by id.
    assert!(c.client.list_groups().await.unwrap().groups.is_empty());
    for g in [&g1, &g2] {
        refused(
            c.client.get_group(g.id).await,
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        );
        refused(
            c.client.list_members(g.id).await,
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        );
        refused(
            c.client.list_threads(g.id).await,
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        );
    }
    // Nor does the region administrator, who manages accounts, not conversations.
    assert!(app.admin.list_groups().await.unwrap().groups.is_empty());
    not_found(app.admin.get_group(g1.id).await);
    not_found(
        app.admin
            .list_messages(g1.main_thread_id, None, None, None)
            .await,
    );
    // Nor does another region.
    let far = stranger(&app, "kawaguchi", "kawaguchi.nurse").await;
    assert!(far.client.list_groups().await.unwrap().groups.is_empty());
    refused(
        far.client.get_group(g1.id).await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
}

async fn owners_and_admins_update_a_group_plain_members_cannot(app: TestApp) {
    let t = team(&app).await;
    let mut profile = full_profile();
    profile.care_level = Some(CareLevel::Care4);
    profile.address = Some("埼玉県さいたま市南区別所7-20-1".into());
    let updated = t
        .nurse
        .client
        .update_group(
            t.group.id,
            &UpdateGroup {
                name: Some("山田 太郎 様 (退院後)".into()),
                patient: Some(profile.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "山田 太郎 様 (退院後)");
    assert_eq!(updated.patient, Some(profile.clone()));
    assert_eq!(updated.my_role, MemberRole::Owner);
    assert_eq!(updated.member_count, 4);

    // An admin may; the fields left out stay as they were.
    t.nurse
        .client
        .update_member(
            t.group.id,
            t.caremgr.id(),
            &UpdateMember {
                role: MemberRole::Admin,
            },
        )
        .await
        .unwrap();
    let by_admin = t
        .caremgr
        .client
        .update_group(
            t.group.id,
            &UpdateGroup {
                description: Some("ケアプラン更新 11月".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(by_admin.description.as_deref(), Some("ケアプラン更新 11月"));
    assert_eq!(by_admin.name, "山田 太郎 様 (退院後)");
    assert_eq!(by_admin.patient, Some(profile.clone()));
    assert_eq!(by_admin.my_role, MemberRole::Admin);

    // A plain member and a family member may not, and nothing changes.
    for p in [&t.doctor, &t.family] {
        refused(
            p.client
                .update_group(
                    t.group.id,
                    &UpdateGroup {
                        name: Some("乗っ取り".into()),
                        ..Default::default()
                    },
                )
                .await,
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
        );
    }
    let now = t.doctor.client.get_group(t.group.id).await.unwrap();
    assert_eq!(now.name, "山田 太郎 様 (退院後)");
    assert_eq!(now.my_role, MemberRole::Member);
}

async fn an_archived_group_stays_readable_refuses_posts_and_leaves_the_default_list(app: TestApp) {
    let t = team(&app).await;
    let before = t
        .nurse
        .client
        .post_text(t.main(), "退院前カンファレンスの記録です。")
        .await
        .unwrap();

    refused(
        t.caremgr.client.archive_group(t.group.id).await,
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
    );
    let archived = t.nurse.client.archive_group(t.group.id).await.unwrap();
    assert!(archived.archived);

    // No new posts, edits or 内緒話, for anyone.
    for p in [&t.nurse, &t.caremgr, &t.family] {
        refused(
            p.client.post_text(t.main(), "追記").await,
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
        );
    }
    refused(
        t.nurse
            .client
            .edit_message(t.main(), before.id, "書き換え")
            .await,
        StatusCode::CONFLICT,
        ErrorCode::Conflict,
    );
    refused(
        t.nurse
            .client
            .create_thread(
                t.group.id,
                &CreateThread {
                    title: "相談".into(),
                    member_ids: vec![t.doctor.id()],
                },
            )
            .await,
        StatusCode::CONFLICT,
        ErrorCode::Conflict,
    );

    // Reading still works for every member.
    for p in [&t.nurse, &t.caremgr, &t.family] {
        let page = p
            .client
            .list_messages(t.main(), None, None, None)
            .await
            .unwrap();
        assert_eq!(page.messages.len(), 1);
        assert_eq!(page.messages[0].id, before.id);
        assert_eq!(page.messages[0].body, "退院前カンファレンスの記録です。");
        assert!(p.client.get_group(t.group.id).await.unwrap().archived);
        assert_eq!(
            p.client
                .list_members(t.group.id)
                .await
                .unwrap()
                .members
                .len(),
            4
        );
    }

    // The list leaves it out unless asked for archived groups too.
    assert!(t
        .caremgr
        .client
        .list_groups()
        .await
        .unwrap()
        .groups
        .is_empty());
    let (status, body) = raw(
        &app,
        &t.caremgr.token(),
        Method::GET,
        "/api/v1/groups?include_archived=true",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let groups = body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{body}");
    assert_eq!(groups[0]["id"], t.group.id.to_string());
    assert_eq!(groups[0]["archived"], true);
    let (status, body) = raw(
        &app,
        &t.caremgr.token(),
        Method::GET,
        "/api/v1/groups?include_archived=false",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["groups"].as_array().unwrap().is_empty());
}

async fn members_are_added_once_from_the_same_region_only(app: TestApp) {
    let nurse = person(&app, "nurse.sato", "佐藤 看護師", Profession::Nurse).await;
    let pharm = person(&app, "pharm.kato", "加藤 薬剤師", Profession::Pharmacist).await;
    let group = patient_group(&nurse.client, "山田 太郎 様").await;

    let added = add(&nurse.client, &group, &pharm).await;
    assert_eq!(added.user_id, pharm.id());
    assert_eq!(added.display_name, "加藤 薬剤師");
    assert_eq!(added.profession, Profession::Pharmacist);
    assert_eq!(added.role, MemberRole::Member);
    assert!(!added.patient_side);
    let members: Vec<_> = nurse
        .client
        .list_members(group.id)
        .await
        .unwrap()
        .members
        .into_iter()
        .map(|m| (m.user_id, m.role))
        .collect();
    assert_eq!(
        members,
        vec![
            (nurse.id(), MemberRole::Owner),
            (pharm.id(), MemberRole::Member)
        ]
    );
    // The new member sees the group now, with their role.
    let seen = pharm.client.get_group(group.id).await.unwrap();
    assert_eq!(seen.my_role, MemberRole::Member);
    assert_eq!(seen.member_count, 2);

    // Twice is a conflict.
    refused(
        nurse
            .client
            .add_member(
                group.id,
                &AddMember {
                    user_id: pharm.id(),
                    role: None,
                    patient_side: None,
                },
            )
            .await,
        StatusCode::CONFLICT,
        ErrorCode::Conflict,
    );
    // Another region's user, or no user at all, is not found.
    let far = stranger(&app, "kawaguchi", "kawaguchi.nurse").await;
    for user_id in [far.id(), UserId::new()] {
        refused(
            nurse
                .client
                .add_member(
                    group.id,
                    &AddMember {
                        user_id,
                        role: None,
                        patient_side: None,
                    },
                )
                .await,
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        );
    }
    assert!(far.client.list_groups().await.unwrap().groups.is_empty());
    // A plain member cannot add anyone.
    let dr = person(&app, "dr.tanaka", "田中 医師", Profession::Doctor).await;
    refused(
        pharm
            .client
            .add_member(
                group.id,
                &AddMember {
                    user_id: dr.id(),
                    role: None,
                    patient_side: None,
                },
            )
            .await,
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
    );
    assert_eq!(
        nurse
            .client
            .list_members(group.id)
            .await
            .unwrap()
            .members
            .len(),
        2
    );
}

async fn patient_and_family_users_join_as_patient_side_members(app: TestApp) {
    let nurse = person(&app, "nurse.sato", "佐藤 看護師", Profession::Nurse).await;
    let patient = person(&app, "patient.yamada", "山田 太郎", Profession::Patient).await;
    let family = person(&app, "family.yamada", "山田 花子", Profession::Family).await;
    let helper = person(&app, "helper.ito", "伊藤 ヘルパー", Profession::CareWorker).await;
    let group = patient_group(&nurse.client, "山田 太郎 様").await;

    assert!(add(&nurse.client, &group, &patient).await.patient_side);
    assert!(add(&nurse.client, &group, &family).await.patient_side);
    // A professional is not patient-side unless told so.
    let h = nurse
        .client
        .add_member(
            group.id,
            &AddMember {
                user_id: helper.id(),
                role: None,
                patient_side: Some(true),
            },
        )
        .await
        .unwrap();
    assert!(h.patient_side);
    let listed: Vec<_> = nurse
        .client
        .list_members(group.id)
        .await
        .unwrap()
        .members
        .into_iter()
        .map(|m| (m.user_id, m.patient_side))
        .collect();
    assert_eq!(
        listed,
        vec![
            (nurse.id(), false),
            (patient.id(), true),
            (family.id(), true),
            (helper.id(), true),
        ]
    );
    // Patient-side members read and post in the main timeline.
    let m = family
        .client
        .post_text(group.main_thread_id, "いつもありがとうございます。")
        .await
        .unwrap();
    assert_eq!(m.seq, 1);
    assert_eq!(
        patient
            .client
            .list_messages(group.main_thread_id, None, None, None)
            .await
            .unwrap()
            .messages
            .len(),
        1
    );
    // They cannot manage the group.
    refused(
        nurse
            .client
            .update_member(
                group.id,
                family.id(),
                &UpdateMember {
                    role: MemberRole::Admin,
                },
            )
            .await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidRequest,
    );
}

/// DESIGN: patients and family "never see 内緒話". A request (or an invitation) that
/// says `patient_side: false` must not turn a family member into someone who can be put
/// into a 内緒話 or open one: either it is refused, or the membership is patient-side
/// anyway.
async fn patient_and_family_users_stay_patient_side_whatever_the_request_says(app: TestApp) {
    let t = team(&app).await;
    let daughter = person(&app, "family.hanako2", "山田 春子", Profession::Family).await;
    let patient = person(&app, "patient.yamada", "山田 太郎", Profession::Patient).await;
    // Every way the rule is broken, reported together.
    let mut broken: Vec<String> = Vec::new();

    let direct = t
        .nurse
        .client
        .add_member(
            t.group.id,
            &AddMember {
                user_id: daughter.id(),
                role: None,
                patient_side: Some(false),
            },
        )
        .await;
    match &direct {
        Ok(m) if !m.patient_side => {
            broken.push("POST /groups/{id}/members made a family user not patient-side".into())
        }
        Ok(_) => {}
        Err(e) => assert_eq!(e.code(), Some(ErrorCode::InvalidRequest), "{e}"),
    }

    let code = t
        .nurse
        .client
        .create_invitation(
            t.group.id,
            &CreateInvitation {
                patient_side: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .code
        .unwrap();
    let joined = patient.client.accept_invitation(&code).await;
    if joined.is_ok() {
        let members = t
            .nurse
            .client
            .list_members(t.group.id)
            .await
            .unwrap()
            .members;
        let m = members.iter().find(|m| m.user_id == patient.id()).unwrap();
        if !m.patient_side {
            broken.push(
                "an invitation with patient_side=false made a patient not patient-side".into(),
            );
        }
    }

    // Whatever happened above, neither can be in, or open, a 内緒話.
    for who in [&daughter, &patient] {
        let result = t
            .nurse
            .client
            .create_thread(
                t.group.id,
                &CreateThread {
                    title: "専門職のみ".into(),
                    member_ids: vec![t.doctor.id(), who.id()],
                },
            )
            .await;
        if result.is_ok() {
            broken.push(format!("{} was put into a 内緒話", who.user.login));
        }
        let opened = who
            .client
            .create_thread(
                t.group.id,
                &CreateThread {
                    title: "家族だけ".into(),
                    member_ids: vec![],
                },
            )
            .await;
        if opened.is_ok() {
            broken.push(format!("{} opened a 内緒話", who.user.login));
        }
    }
    assert!(
        broken.is_empty(),
        "patients and family must never reach a 内緒話: {broken:#?}"
    );
}

async fn only_owners_grant_ownership_and_the_last_owner_cannot_go(app: TestApp) {
    let t = team(&app).await;
    let g = t.group.id;
    let role = |r| UpdateMember { role: r };
    let promoted = t
        .nurse
        .client
        .update_member(g, t.caremgr.id(), &role(MemberRole::Admin))
        .await
        .unwrap();
    assert_eq!(promoted.role, MemberRole::Admin);

    // An admin manages members but never ownership.
    forbidden(
        t.caremgr
            .client
            .update_member(g, t.doctor.id(), &role(MemberRole::Owner))
            .await,
    );
    forbidden(
        t.caremgr
            .client
            .update_member(g, t.nurse.id(), &role(MemberRole::Member))
            .await,
    );
    forbidden(t.caremgr.client.remove_member(g, t.nurse.id()).await);
    let pharm = person(&app, "pharm.kato", "加藤 薬剤師", Profession::Pharmacist).await;
    forbidden(
        t.caremgr
            .client
            .add_member(
                g,
                &AddMember {
                    user_id: pharm.id(),
                    role: Some(MemberRole::Owner),
                    patient_side: None,
                },
            )
            .await,
    );
    // Plain members manage nothing.
    forbidden(
        t.doctor
            .client
            .update_member(g, t.family.id(), &role(MemberRole::Member))
            .await,
    );
    forbidden(t.doctor.client.remove_member(g, t.family.id()).await);

    // The last owner can neither step down nor leave.
    conflict(
        t.nurse
            .client
            .update_member(g, t.nurse.id(), &role(MemberRole::Admin))
            .await,
    );
    conflict(t.nurse.client.remove_member(g, t.nurse.id()).await);

    // Hand ownership over first; then the former owner may step down.
    t.nurse
        .client
        .update_member(g, t.doctor.id(), &role(MemberRole::Owner))
        .await
        .unwrap();
    t.nurse
        .client
        .update_member(g, t.nurse.id(), &role(MemberRole::Admin))
        .await
        .unwrap();
    // Now the doctor is the last owner.
    conflict(t.doctor.client.remove_member(g, t.doctor.id()).await);
    conflict(
        t.doctor
            .client
            .update_member(g, t.doctor.id(), &role(MemberRole::Member))
            .await,
    );
    forbidden(t.nurse.client.remove_member(g, t.doctor.id()).await);
    // Admins still remove ordinary members.
    t.caremgr
        .client
        .remove_member(g, t.family.id())
        .await
        .unwrap();

    let roles: Vec<_> = t
        .doctor
        .client
        .list_members(g)
        .await
        .unwrap()
        .members
        .into_iter()
        .map(|m| (m.user_id, m.role))
        .collect();
    assert_eq!(
        roles,
        vec![
            (t.nurse.id(), MemberRole::Admin),
            (t.caremgr.id(), MemberRole::Admin),
            (t.doctor.id(), MemberRole::Owner),
        ]
    );
    assert_eq!(
        t.nurse.client.get_group(g).await.unwrap().my_role,
        MemberRole::Admin
    );
}

async fn a_member_can_leave_and_loses_the_group_at_once(app: TestApp) {
    let t = team(&app).await;
    t.nurse
        .client
        .post_text(t.main(), "明日の訪問は10時です。")
        .await
        .unwrap();
    t.caremgr
        .client
        .remove_member(t.group.id, t.caremgr.id())
        .await
        .unwrap();
    assert!(t
        .caremgr
        .client
        .list_groups()
        .await
        .unwrap()
        .groups
        .is_empty());
    not_found(t.caremgr.client.get_group(t.group.id).await);
    not_found(
        t.caremgr
            .client
            .list_messages(t.main(), None, None, None)
            .await,
    );
    not_found(t.caremgr.client.post_text(t.main(), "まだ見えますか").await);
    not_found(t.caremgr.client.get_thread(t.main()).await);
    let members: Vec<UserId> = t
        .nurse
        .client
        .list_members(t.group.id)
        .await
        .unwrap()
        .members
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(members, vec![t.nurse.id(), t.doctor.id(), t.family.id()]);
    // The family member leaves too.
    t.family
        .client
        .remove_member(t.group.id, t.family.id())
        .await
        .unwrap();
    not_found(t.family.client.get_group(t.group.id).await);
    assert_eq!(
        t.nurse
            .client
            .get_group(t.group.id)
            .await
            .unwrap()
            .member_count,
        2
    );
}

async fn removal_from_the_group_removes_the_user_from_its_private_threads(app: TestApp) {
    let t = team(&app).await;
    let thread = t
        .nurse
        .client
        .create_thread(
            t.group.id,
            &CreateThread {
                title: "専門職のみ".into(),
                member_ids: vec![t.caremgr.id(), t.doctor.id()],
            },
        )
        .await
        .unwrap();
    t.doctor
        .client
        .post_text(thread.id, "服薬の件で相談です。")
        .await
        .unwrap();

    // Removed by the owner: out of the 内緒話 too, and not back when re-added.
    t.nurse
        .client
        .remove_member(t.group.id, t.doctor.id())
        .await
        .unwrap();
    assert_eq!(
        thread_members(&t.nurse.client.get_thread(thread.id).await.unwrap()),
        ids(&[t.nurse.id(), t.caremgr.id()])
    );
    add(&t.nurse.client, &t.group, &t.doctor).await;
    let back = t.nurse.client.get_thread(thread.id).await.unwrap();
    assert!(!thread_members(&back).contains(&t.doctor.id()));
    refused(
        t.doctor.client.get_thread(thread.id).await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    refused(
        t.doctor
            .client
            .list_messages(thread.id, None, None, None)
            .await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    let listed: Vec<ThreadId> = t
        .doctor
        .client
        .list_threads(t.group.id)
        .await
        .unwrap()
        .threads
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed, vec![t.main()]);

    // Leaving does the same.
    t.caremgr
        .client
        .remove_member(t.group.id, t.caremgr.id())
        .await
        .unwrap();
    assert_eq!(
        thread_members(&t.nurse.client.get_thread(thread.id).await.unwrap()),
        ids(&[t.nurse.id()])
    );
}

async fn an_invitation_code_is_shown_once_and_spent_by_its_uses(app: TestApp) {
    let t = team(&app).await;
    let pharm = person(&app, "pharm.kato", "加藤 薬剤師", Profession::Pharmacist).await;
    let helper = person(&app, "helper.ito", "伊藤 ヘルパー", Profession::CareWorker).await;
    let son = person(&app, "family.ichiro", "山田 一郎", Profession::Family).await;

    // Expiry between a minute and 30 days, uses between 1 and 1000.
    for bad in [
        CreateInvitation {
            expires_in_secs: Some(59),
            ..Default::default()
        },
        CreateInvitation {
            expires_in_secs: Some(30 * 24 * 3600 + 1),
            ..Default::default()
        },
        CreateInvitation {
            max_uses: Some(0),
            ..Default::default()
        },
        CreateInvitation {
            max_uses: Some(1001),
            ..Default::default()
        },
    ] {
        invalid(t.nurse.client.create_invitation(t.group.id, &bad).await);
    }
    // Plain members cannot invite.
    refused(
        t.doctor
            .client
            .create_invitation(t.group.id, &CreateInvitation::default())
            .await,
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
    );
    let inv = t
        .nurse
        .client
        .create_invitation(
            t.group.id,
            &CreateInvitation {
                max_uses: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let code = inv
        .code
        .clone()
        .expect("the code is in the creating answer");
    assert!(!code.is_empty());
    assert_eq!(inv.group_id, t.group.id);
    assert_eq!(inv.max_uses, 2);
    assert_eq!(inv.uses, 0);
    assert!(!inv.requires_approval);
    // Default expiry is in the future (RFC 3339, later than creation).
    assert!(!inv.expires_at.is_empty());

    let joined = pharm.client.accept_invitation(&code).await.unwrap();
    assert_eq!(joined.group_id, t.group.id);
    assert_eq!(joined.status, "joined");
    let g = pharm.client.get_group(t.group.id).await.unwrap();
    assert_eq!(g.my_role, MemberRole::Member);
    // The family member joins patient-side, from their profession.
    assert_eq!(
        son.client.accept_invitation(&code).await.unwrap().status,
        "joined"
    );
    let members = t
        .nurse
        .client
        .list_members(t.group.id)
        .await
        .unwrap()
        .members;
    let by_id = |id| members.iter().find(|m| m.user_id == id).unwrap();
    assert!(!by_id(pharm.id()).patient_side);
    assert!(by_id(son.id()).patient_side);
    assert_eq!(by_id(son.id()).role, MemberRole::Member);

    // Two uses spent: the third person gets 404.
    refused(
        helper.client.accept_invitation(&code).await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    refused(
        helper.client.get_group(t.group.id).await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
}

async fn wrong_used_up_and_foreign_invitation_codes_get_the_same_404(app: TestApp) {
    let t = team(&app).await;
    let pharm = person(&app, "pharm.kato", "加藤 薬剤師", Profession::Pharmacist).await;
    let helper = person(&app, "helper.ito", "伊藤 ヘルパー", Profession::CareWorker).await;
    let far = stranger(&app, "kawaguchi", "kawaguchi.nurse").await;

    let code = t
        .nurse
        .client
        .create_invitation(t.group.id, &CreateInvitation::default())
        .await
        .unwrap()
        .code
        .unwrap();
    let accept = |token: String, code: String| {
        let app = &app;
        async move {
            raw(
                app,
                &token,
                Method::POST,
                "/api/v1/invitations/accept",
                Some(&json!({ "code": code })),
            )
            .await
        }
    };

    // A user of another region holding a valid code: not found, and the use not spent.
    let (status, foreign) = accept(far.token(), code.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{foreign}");
    assert!(far.client.list_groups().await.unwrap().groups.is_empty());

    let (status, body) = accept(pharm.token(), code.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "joined");

    let (status, used_up) = accept(helper.token(), code.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, wrong) = accept(helper.token(), "NOT-A-REAL-CODE".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, near_miss) = accept(helper.token(), format!("{code}x")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(used_up["error"]["code"], "not_found");
    assert_eq!(
        used_up, wrong,
        "used-up and wrong codes are indistinguishable"
    );
    assert_eq!(used_up, near_miss);
    assert_eq!(
        used_up, foreign,
        "another region's code looks like a wrong one"
    );
    refused(
        helper.client.get_group(t.group.id).await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
}

async fn an_invitation_requiring_approval_waits_for_a_group_admin(app: TestApp) {
    let t = team(&app).await;
    let pharm = person(&app, "pharm.kato", "加藤 薬剤師", Profession::Pharmacist).await;
    let helper = person(&app, "helper.ito", "伊藤 ヘルパー", Profession::CareWorker).await;
    let inv = t
        .nurse
        .client
        .create_invitation(
            t.group.id,
            &CreateInvitation {
                max_uses: Some(5),
                requires_approval: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(inv.requires_approval);
    let code = inv.code.unwrap();

    for p in [&pharm, &helper] {
        let answer = p.client.accept_invitation(&code).await.unwrap();
        assert_eq!(answer.status, "pending");
        assert_eq!(answer.group_id, t.group.id);
        // Pending is not a member: nothing of the group is visible yet.
        refused(
            p.client.get_group(t.group.id).await,
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        );
        refused(
            p.client.list_messages(t.main(), None, None, None).await,
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        );
    }
    let requests = t
        .nurse
        .client
        .list_join_requests(t.group.id)
        .await
        .unwrap()
        .requests;
    let mut pending: Vec<_> = requests
        .iter()
        .map(|r| (r.user_id, r.display_name.clone(), r.profession))
        .collect();
    pending.sort_by_key(|r| r.0);
    assert_eq!(
        pending,
        vec![
            (pharm.id(), "加藤 薬剤師".to_owned(), Profession::Pharmacist),
            (
                helper.id(),
                "伊藤 ヘルパー".to_owned(),
                Profession::CareWorker
            ),
        ]
    );
    // Plain members neither see nor decide requests.
    refused(
        t.doctor.client.list_join_requests(t.group.id).await,
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
    );
    refused(
        t.doctor
            .client
            .decide_join_request(t.group.id, pharm.id(), true)
            .await,
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
    );

    t.nurse
        .client
        .decide_join_request(t.group.id, pharm.id(), true)
        .await
        .unwrap();
    t.nurse
        .client
        .decide_join_request(t.group.id, helper.id(), false)
        .await
        .unwrap();
    assert_eq!(
        pharm.client.get_group(t.group.id).await.unwrap().my_role,
        MemberRole::Member
    );
    refused(
        helper.client.get_group(t.group.id).await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    let members: BTreeSet<UserId> = t
        .nurse
        .client
        .list_members(t.group.id)
        .await
        .unwrap()
        .members
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    assert!(members.contains(&pharm.id()));
    assert!(!members.contains(&helper.id()));
    assert!(t
        .nurse
        .client
        .list_join_requests(t.group.id)
        .await
        .unwrap()
        .requests
        .is_empty());
    // A decided request is gone: deciding again is not found.
    refused(
        t.nurse
            .client
            .decide_join_request(t.group.id, helper.id(), true)
            .await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
}

async fn accepting_while_already_a_member_is_a_conflict_and_spends_no_use(app: TestApp) {
    let t = team(&app).await;
    let pharm = person(&app, "pharm.kato", "加藤 薬剤師", Profession::Pharmacist).await;
    let code = t
        .nurse
        .client
        .create_invitation(t.group.id, &CreateInvitation::default())
        .await
        .unwrap()
        .code
        .unwrap();
    refused(
        t.doctor.client.accept_invitation(&code).await,
        StatusCode::CONFLICT,
        ErrorCode::Conflict,
    );
    // The single use is still there for the person it was meant for.
    assert_eq!(
        pharm.client.accept_invitation(&code).await.unwrap().status,
        "joined"
    );
}

async fn a_private_thread_always_includes_its_creator_and_is_listed_only_to_its_members(
    app: TestApp,
) {
    let t = team(&app).await;
    let thread = t
        .nurse
        .client
        .create_thread(
            t.group.id,
            &CreateThread {
                title: "  主治医と相談  ".into(),
                member_ids: vec![t.doctor.id()],
            },
        )
        .await
        .unwrap();
    assert_eq!(thread.kind, ThreadKind::Private);
    assert_eq!(thread.group_id, t.group.id);
    assert_eq!(thread.title.as_deref(), Some("主治医と相談"));
    assert_eq!(thread_members(&thread), ids(&[t.nurse.id(), t.doctor.id()]));
    assert_eq!(thread.last_seq, 0);

    // Listing the creator twice changes nothing.
    let again = t
        .doctor
        .client
        .create_thread(
            t.group.id,
            &CreateThread {
                title: "二人だけ".into(),
                member_ids: vec![t.doctor.id(), t.nurse.id(), t.nurse.id()],
            },
        )
        .await
        .unwrap();
    assert_eq!(thread_members(&again), ids(&[t.nurse.id(), t.doctor.id()]));
    // No one else at all: a thread of one.
    let solo = t
        .caremgr
        .client
        .create_thread(
            t.group.id,
            &CreateThread {
                title: "メモ".into(),
                member_ids: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(thread_members(&solo), ids(&[t.caremgr.id()]));

    // Each sees the main timeline first, then the 内緒話 they are in — and no other.
    let listed = |p: &Person| {
        let client = p.client.clone();
        let group = t.group.id;
        async move {
            let ids: Vec<ThreadId> = client
                .list_threads(group)
                .await
                .unwrap()
                .threads
                .into_iter()
                .map(|t| t.id)
                .collect();
            (ids[0], ids[1..].iter().copied().collect::<BTreeSet<_>>())
        }
    };
    let set = |v: &[ThreadId]| v.iter().copied().collect::<BTreeSet<_>>();
    assert_eq!(
        listed(&t.nurse).await,
        (t.main(), set(&[thread.id, again.id]))
    );
    assert_eq!(
        listed(&t.doctor).await,
        (t.main(), set(&[thread.id, again.id]))
    );
    assert_eq!(listed(&t.caremgr).await, (t.main(), set(&[solo.id])));
    assert_eq!(listed(&t.family).await, (t.main(), set(&[])));
    // The group's owner is not in the care manager's 内緒話 and cannot open it.
    not_found(t.nurse.client.get_thread(solo.id).await);
    not_found(
        t.nurse
            .client
            .list_messages(solo.id, None, None, None)
            .await,
    );
    for p in [&t.caremgr, &t.family] {
        refused(
            p.client.get_thread(thread.id).await,
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        );
    }
}

async fn private_threads_refuse_patient_side_members_and_outsiders(app: TestApp) {
    let t = team(&app).await;
    let outsider = person(&app, "pharm.kato", "加藤 薬剤師", Profession::Pharmacist).await;
    let far = stranger(&app, "kawaguchi", "kawaguchi.nurse").await;
    for member_ids in [
        vec![t.doctor.id(), t.family.id()],
        vec![outsider.id()],
        vec![far.id()],
        vec![UserId::new()],
    ] {
        refused(
            t.nurse
                .client
                .create_thread(
                    t.group.id,
                    &CreateThread {
                        title: "相談".into(),
                        member_ids,
                    },
                )
                .await,
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
        );
    }
    // Patient-side members cannot open one either.
    refused(
        t.family
            .client
            .create_thread(
                t.group.id,
                &CreateThread {
                    title: "家族だけ".into(),
                    member_ids: vec![],
                },
            )
            .await,
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
    );
    // Someone outside the group cannot open one in it.
    refused(
        outsider
            .client
            .create_thread(
                t.group.id,
                &CreateThread {
                    title: "外から".into(),
                    member_ids: vec![],
                },
            )
            .await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    // Nothing half-made.
    assert_eq!(
        t.nurse
            .client
            .list_threads(t.group.id)
            .await
            .unwrap()
            .threads
            .len(),
        1
    );
}

async fn thread_members_add_and_remove_group_professionals(app: TestApp) {
    let t = team(&app).await;
    let outsider = person(&app, "pharm.kato", "加藤 薬剤師", Profession::Pharmacist).await;
    let thread = t
        .nurse
        .client
        .create_thread(
            t.group.id,
            &CreateThread {
                title: "専門職のみ".into(),
                member_ids: vec![t.doctor.id()],
            },
        )
        .await
        .unwrap();

    // The doctor (a plain group member, but in the thread) brings the care manager in.
    let with_cm = t
        .doctor
        .client
        .add_thread_member(thread.id, t.caremgr.id())
        .await
        .unwrap();
    assert_eq!(
        thread_members(&with_cm),
        ids(&[t.nurse.id(), t.doctor.id(), t.caremgr.id()])
    );
    assert_eq!(
        t.caremgr.client.get_thread(thread.id).await.unwrap().id,
        thread.id
    );
    refused(
        t.doctor
            .client
            .add_thread_member(thread.id, t.caremgr.id())
            .await,
        StatusCode::CONFLICT,
        ErrorCode::Conflict,
    );
    // Never the family, never someone outside the group.
    for who in [t.family.id(), outsider.id()] {
        refused(
            t.doctor.client.add_thread_member(thread.id, who).await,
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
        );
    }
    refused(
        t.family.client.get_thread(thread.id).await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );

    // A group member outside the thread cannot change it: to them it does not exist.
    let pharm_in_group = person(&app, "pharm.ito", "伊藤 薬剤師", Profession::Pharmacist).await;
    add(&t.nurse.client, &t.group, &pharm_in_group).await;
    refused(
        pharm_in_group
            .client
            .add_thread_member(thread.id, pharm_in_group.id())
            .await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    refused(
        pharm_in_group
            .client
            .remove_thread_member(thread.id, t.doctor.id())
            .await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );

    // A thread member removes another, and the removed one loses it at once.
    t.caremgr
        .client
        .remove_thread_member(thread.id, t.nurse.id())
        .await
        .unwrap();
    refused(
        t.nurse.client.get_thread(thread.id).await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    refused(
        t.nurse.client.post_text(thread.id, "まだいます").await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    // Leaving a thread yourself.
    t.caremgr
        .client
        .remove_thread_member(thread.id, t.caremgr.id())
        .await
        .unwrap();
    assert_eq!(
        thread_members(&t.doctor.client.get_thread(thread.id).await.unwrap()),
        ids(&[t.doctor.id()])
    );
    // Removing someone not in it is not found.
    refused(
        t.doctor
            .client
            .remove_thread_member(thread.id, t.family.id())
            .await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );

    // The main timeline's members are the group's: no adding or removing there.
    refused(
        t.nurse
            .client
            .add_thread_member(t.main(), outsider.id())
            .await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidRequest,
    );
    refused(
        t.nurse
            .client
            .remove_thread_member(t.main(), t.doctor.id())
            .await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidRequest,
    );
    assert!(t
        .doctor
        .client
        .get_thread(t.main())
        .await
        .unwrap()
        .member_ids
        .is_none());
}

async fn a_removed_member_cannot_rejoin_by_any_code_until_an_owner_adds_them(app: TestApp) {
    let t = team(&app).await;
    let pharm = person(&app, "ph.ito", "伊藤 薬剤師", Profession::Pharmacist).await;
    let code_of = |inv: tsunagu_protocol::messaging::Invitation| inv.code.expect("code");
    let reusable = code_of(
        t.nurse
            .client
            .create_invitation(
                t.group.id,
                &CreateInvitation {
                    max_uses: Some(10),
                    ..Default::default()
                },
            )
            .await
            .unwrap(),
    );
    pharm.client.accept_invitation(&reusable).await.unwrap();
    t.nurse
        .client
        .remove_member(t.group.id, pharm.id())
        .await
        .unwrap();

    // Neither the code they used nor one made after the removal lets them back.
    let later = code_of(
        t.nurse
            .client
            .create_invitation(t.group.id, &CreateInvitation::default())
            .await
            .unwrap(),
    );
    for code in [&reusable, &later] {
        refused(
            pharm.client.accept_invitation(code).await,
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
        );
    }
    assert_eq!(
        pharm
            .client
            .get_group(t.group.id)
            .await
            .unwrap_err()
            .status(),
        Some(StatusCode::NOT_FOUND)
    );
    // The refusals spent no use: the one-use code still admits someone else.
    let other = person(&app, "ph.kato", "加藤 薬剤師", Profession::Pharmacist).await;
    assert_eq!(
        other.client.accept_invitation(&later).await.unwrap().status,
        "joined"
    );

    // Leaving of one's own accord is no removal: the care manager may come back.
    t.caremgr
        .client
        .remove_member(t.group.id, t.caremgr.id())
        .await
        .unwrap();
    assert_eq!(
        t.caremgr
            .client
            .accept_invitation(&reusable)
            .await
            .unwrap()
            .status,
        "joined"
    );

    // An owner adding them again lifts it; removed again, the codes stop again.
    add(&t.nurse.client, &t.group, &pharm).await;
    t.nurse
        .client
        .remove_member(t.group.id, pharm.id())
        .await
        .unwrap();
    refused(
        pharm.client.accept_invitation(&reusable).await,
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
    );
    add(&t.nurse.client, &t.group, &pharm).await;
    assert!(pharm.client.get_group(t.group.id).await.is_ok());
}

async fn owners_list_and_revoke_codes_and_a_revoked_code_admits_nobody(app: TestApp) {
    let t = team(&app).await;
    let pharm = person(&app, "ph.ito", "伊藤 薬剤師", Profession::Pharmacist).await;
    let inv = t
        .nurse
        .client
        .create_invitation(t.group.id, &CreateInvitation::default())
        .await
        .unwrap();
    let code = inv.code.clone().unwrap();
    let listed = t.nurse.client.list_invitations(t.group.id).await.unwrap();
    assert_eq!(listed.invitations.len(), 1);
    assert!(
        listed.invitations[0].code.is_none(),
        "the code is never shown again"
    );
    assert!(!serde_json::to_string(&listed).unwrap().contains(&code));
    // Plain members neither list nor revoke; other groups' ids are not found.
    forbidden(t.doctor.client.list_invitations(t.group.id).await);
    forbidden(t.doctor.client.revoke_invitation(t.group.id, inv.id).await);
    let other = patient_group(&pharm.client, "別の患者 様").await;
    not_found(pharm.client.revoke_invitation(other.id, inv.id).await);

    t.nurse
        .client
        .revoke_invitation(t.group.id, inv.id)
        .await
        .unwrap();
    not_found(pharm.client.accept_invitation(&code).await);
    not_found(t.nurse.client.revoke_invitation(t.group.id, inv.id).await);
    let listed = t.nurse.client.list_invitations(t.group.id).await.unwrap();
    assert!(listed.invitations[0].revoked_at.is_some());
    assert!(app
        .audit_actions()
        .await
        .contains(&"invitation_revoked".to_owned()));
}
