//! Region administration: scoping to one region, validation, audit.

use reqwest::StatusCode;
use serde_json::json;
use tsunagu_protocol::accounts::{
    CreateOrganization, OrganizationKind, ResetPassword, UpdateOrganization, UpdatePolicy,
    UpdateUser, UserRole,
};
use tsunagu_protocol::ErrorCode;

use tsunagu_testkit::both_backends;
use tsunagu_testkit::{new_user, TestApp, USER_PASSWORD};

both_backends!(
    a_region_admin_cannot_see_or_change_another_regions_users_or_organizations,
    a_plain_user_is_refused_every_admin_route,
    creating_users_checks_login_password_and_organization,
    organizations_and_users_round_trip_with_japanese_names,
    policy_changes_are_validated_applied_and_audited,
    an_admin_cannot_lock_themselves_out,
);

async fn a_region_admin_cannot_see_or_change_another_regions_users_or_organizations(app: TestApp) {
    let org = app.create_org("さくら訪問看護ステーション").await;
    let (user, _) = app.create_user("nurse.a", UserRole::User).await;
    let other = app.other_region("kawaguchi").await;

    // Lists show only their own region.
    let users = other.list_users().await.unwrap().users;
    assert!(users
        .iter()
        .all(|u| u.login != "nurse.a" && u.login != "admin"));
    assert!(other
        .list_organizations()
        .await
        .unwrap()
        .organizations
        .is_empty());
    let regions = other.admin_regions().await.unwrap().regions;
    assert_eq!(regions.len(), 1);
    assert_eq!(regions[0].slug, "kawaguchi");

    // Every read and write of the other region's things is 404.
    let not_found = |e: tsunagu_client::Error| {
        assert_eq!(e.status(), Some(StatusCode::NOT_FOUND), "{e}");
        assert_eq!(e.code(), Some(ErrorCode::NotFound));
    };
    not_found(other.get_user(user.id).await.unwrap_err());
    not_found(
        other
            .update_user(
                user.id,
                &UpdateUser {
                    display_name: Some("x".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err(),
    );
    not_found(other.deactivate_user(user.id).await.unwrap_err());
    not_found(other.reactivate_user(user.id).await.unwrap_err());
    not_found(
        other
            .reset_password(
                user.id,
                &ResetPassword {
                    password: "hijacked password!".into(),
                    must_change_password: Some(false),
                },
            )
            .await
            .unwrap_err(),
    );
    not_found(other.reset_totp(user.id).await.unwrap_err());
    not_found(other.get_organization(org.id).await.unwrap_err());
    not_found(
        other
            .update_organization(
                org.id,
                &UpdateOrganization {
                    name: Some("x".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err(),
    );
    // Nor can they attach their users to our organisation.
    let mut req = new_user("kawaguchi.nurse", UserRole::User);
    req.organization_id = Some(org.id);
    not_found(other.create_user(&req).await.unwrap_err());

    // Nothing changed: the user still signs in with their password and keeps their name.
    let fresh = app.client();
    fresh.login("nurse.a", USER_PASSWORD, None).await.unwrap();
    assert_eq!(
        app.admin.get_user(user.id).await.unwrap().display_name,
        user.display_name
    );
    assert_eq!(
        app.admin.get_organization(org.id).await.unwrap().name,
        org.name
    );
}

async fn a_plain_user_is_refused_every_admin_route(app: TestApp) {
    let (user, nurse) = app.create_user("nurse.b", UserRole::User).await;
    let token = nurse.tokens().unwrap().access_token;
    let id = user.id;
    let routes: Vec<(reqwest::Method, String)> = vec![
        (reqwest::Method::GET, "/api/v1/admin/regions".into()),
        (reqwest::Method::GET, "/api/v1/admin/organizations".into()),
        (reqwest::Method::POST, "/api/v1/admin/organizations".into()),
        (reqwest::Method::GET, "/api/v1/admin/users".into()),
        (reqwest::Method::POST, "/api/v1/admin/users".into()),
        (reqwest::Method::GET, format!("/api/v1/admin/users/{id}")),
        (reqwest::Method::PATCH, format!("/api/v1/admin/users/{id}")),
        (
            reqwest::Method::POST,
            format!("/api/v1/admin/users/{id}/deactivate"),
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/admin/users/{id}/reactivate"),
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/admin/users/{id}/reset-password"),
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/admin/users/{id}/reset-totp"),
        ),
        (reqwest::Method::GET, "/api/v1/admin/policy".into()),
        (reqwest::Method::PATCH, "/api/v1/admin/policy".into()),
    ];
    for (method, path) in routes {
        let r = app
            .http
            .request(method.clone(), app.url(&path))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden", "{method} {path}");
        // And without a token at all: 401.
        let r = app
            .http
            .request(method.clone(), app.url(&path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
}

async fn creating_users_checks_login_password_and_organization(app: TestApp) {
    app.admin
        .create_user(&new_user("pharm.ito", UserRole::User))
        .await
        .unwrap();
    let err = app
        .admin
        .create_user(&new_user("PHARM.ITO", UserRole::User))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(ErrorCode::Conflict),
        "login ids are case-insensitive"
    );

    let mut weak = new_user("weak.pw", UserRole::User);
    weak.password = "short".into();
    assert_eq!(
        app.admin.create_user(&weak).await.unwrap_err().code(),
        Some(ErrorCode::WeakPassword)
    );

    for bad in ["ab", "with space", "../../etc/passwd", "名前"] {
        let err = app
            .admin
            .create_user(&new_user(bad, UserRole::User))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::InvalidRequest), "{bad}");
    }
    let mut ctl = new_user("ctl.name", UserRole::User);
    ctl.display_name = "bad\u{7}name".into();
    assert_eq!(
        app.admin.create_user(&ctl).await.unwrap_err().code(),
        Some(ErrorCode::InvalidRequest)
    );

    // Unknown fields and unknown enum values are refused, not ignored.
    let token = app.admin.tokens().unwrap().access_token;
    for body in [
        json!({"login": "x.y.z", "display_name": "x", "password": USER_PASSWORD, "profession": "wizard"}),
        json!({"login": "x.y.z", "display_name": "x", "password": USER_PASSWORD, "profession": "nurse", "role": "superuser"}),
        json!({"login": "x.y.z", "display_name": "x", "password": USER_PASSWORD, "profession": "nurse", "is_admin": true}),
    ] {
        let r = app
            .http
            .post(app.url("/api/v1/admin/users"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    // Nothing half-written: none of the refused logins exists.
    let logins: Vec<String> = app
        .admin
        .list_users()
        .await
        .unwrap()
        .users
        .into_iter()
        .map(|u| u.login)
        .collect();
    assert_eq!(logins, vec!["admin".to_owned(), "pharm.ito".to_owned()]);
}

async fn organizations_and_users_round_trip_with_japanese_names(app: TestApp) {
    let org = app
        .admin
        .create_organization(&CreateOrganization {
            name: "  みどり薬局  ".into(),
            kind: OrganizationKind::Pharmacy,
        })
        .await
        .unwrap();
    assert_eq!(org.name, "みどり薬局");
    let mut req = new_user("pharm.kato", UserRole::User);
    req.organization_id = Some(org.id);
    req.display_name = "加藤 薬剤師".into();
    let user = app.admin.create_user(&req).await.unwrap();
    assert_eq!(user.organization_id, Some(org.id));
    assert!(!user.must_change_password);

    let me = {
        let c = app.client();
        c.login("pharm.kato", USER_PASSWORD, None).await.unwrap();
        c.me().await.unwrap()
    };
    assert_eq!(me.user.display_name, "加藤 薬剤師");
    assert_eq!(me.organization.unwrap().name, "みどり薬局");

    let updated = app
        .admin
        .update_user(
            user.id,
            &UpdateUser {
                clear_organization: Some(true),
                role: Some(UserRole::RegionAdmin),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.organization_id, None);
    assert_eq!(updated.role, UserRole::RegionAdmin);

    let org2 = app
        .admin
        .update_organization(
            org.id,
            &UpdateOrganization {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!org2.active);
    assert!(app
        .admin
        .list_organizations()
        .await
        .unwrap()
        .organizations
        .is_empty());

    let actions = app.audit_actions().await;
    for expected in [
        "organization_created",
        "user_created",
        "user_updated",
        "user_role_changed",
        "organization_updated",
    ] {
        assert!(
            actions.contains(&expected.to_owned()),
            "{expected} missing from {actions:?}"
        );
    }
}

async fn policy_changes_are_validated_applied_and_audited(app: TestApp) {
    let before = app.admin.get_policy().await.unwrap();
    assert_eq!(before.access_token_ttl_secs, 900);
    assert!(!before.mfa_required);

    let err = app
        .admin
        .update_policy(&UpdatePolicy {
            access_token_ttl_secs: Some(5),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidRequest));
    let err = app
        .admin
        .update_policy(&UpdatePolicy {
            password_min_length: Some(3),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidRequest));
    assert_eq!(
        app.admin.get_policy().await.unwrap(),
        before,
        "a refused change changes nothing"
    );

    let after = app
        .admin
        .update_policy(&UpdatePolicy {
            password_min_length: Some(30),
            access_token_ttl_secs: Some(300),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(after.password_min_length, 30);
    // New tokens get the new lifetime; new passwords the new minimum.
    let tokens = app
        .client()
        .login("admin", tsunagu_testkit::ADMIN_PASSWORD, None)
        .await
        .unwrap();
    assert_eq!(tokens.expires_in, 300);
    let err = app
        .admin
        .create_user(&new_user("fifteen.chars", UserRole::User))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(ErrorCode::WeakPassword),
        "the test password has 22 characters, under the new minimum of 30"
    );
    assert!(app
        .audit_actions()
        .await
        .contains(&"policy_changed".to_owned()));
}

async fn an_admin_cannot_lock_themselves_out(app: TestApp) {
    let me = app.admin.me().await.unwrap();
    let err = app.admin.deactivate_user(me.user.id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Conflict));
    let err = app
        .admin
        .update_user(
            me.user.id,
            &UpdateUser {
                role: Some(UserRole::User),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Conflict));
    app.admin.list_users().await.unwrap();
}
