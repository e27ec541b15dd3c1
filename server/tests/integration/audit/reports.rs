//! Region administrators' audit reports: filters, cursor paging, CSV that Japanese
//! Excel opens correctly (checked byte by byte), region isolation, and the pull itself
//! being audited.

use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tsunagu_client::Client;
use tsunagu_protocol::accounts::{CreateUser, Profession, User, UserRole};
use tsunagu_protocol::audit::AuditPage;
use tsunagu_protocol::ids::OrganizationId;
use tsunagu_protocol::messaging::{CreateGroup, GroupKind, PatientProfile};
use tsunagu_server::audit::{self, Action, Actor, Event, Outcome, RequestMeta};

use tsunagu_testkit::both_backends;
use tsunagu_testkit::{TestApp, USER_PASSWORD};

both_backends!(
    a_csv_report_of_a_files_accesses_opens_in_japanese_excel,
    reports_cover_the_admins_region_only_and_admins_only,
    report_pulls_are_audited_with_their_filters_as_ids_only,
    json_reports_filter_by_user_action_outcome_and_time_and_page_by_cursor,
    a_csv_export_streams_every_matching_entry_across_pages,
    names_that_look_like_formulas_are_defused_in_csv,
    malformed_report_parameters_are_refused,
);

const CSV_HEADER: &str = "time_jst,time_utc,user,organization,profession,group,file,action,\
                          outcome,ip,request_id,user_agent,target_kind,target_id,user_id,\
                          organization_id,file_id,group_id,seq";

/// Creates a ready-to-use user and signs them in.
async fn person(
    app: &TestApp,
    login: &str,
    display_name: &str,
    organization_id: Option<OrganizationId>,
) -> (User, Client) {
    let user = app
        .admin
        .create_user(&CreateUser {
            login: login.into(),
            display_name: display_name.into(),
            display_name_kana: None,
            password: USER_PASSWORD.into(),
            profession: Profession::Nurse,
            organization_id,
            role: Some(UserRole::User),
            must_change_password: Some(false),
        })
        .await
        .expect("create user");
    let client = app.client();
    client.login(login, USER_PASSWORD, None).await.unwrap();
    (user, client)
}

fn token(client: &Client) -> String {
    client.tokens().expect("signed in").access_token
}

/// `GET path` with the client's token; the raw response.
async fn get(app: &TestApp, client: &Client, path: &str) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .bearer_auth(token(client))
        .send()
        .await
        .unwrap()
}

async fn page(client: &Client, query: &str) -> AuditPage {
    client
        .authed(
            Method::GET,
            &format!("api/v1/admin/audit/events?{query}"),
            None::<&()>,
        )
        .await
        .expect("report page")
}

/// Splits a CSV body (after the BOM) into CRLF-terminated lines, asserting that no
/// line ends any other way.
fn crlf_lines(text: &str) -> Vec<&str> {
    assert!(text.ends_with("\r\n"), "the last line ends with CRLF");
    assert_eq!(
        text.matches('\n').count(),
        text.matches("\r\n").count(),
        "every line feed is part of a CRLF"
    );
    let mut lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines.pop(), Some(""));
    lines
}

async fn a_csv_report_of_a_files_accesses_opens_in_japanese_excel(app: TestApp) {
    let org_name = "さくら訪問看護ステーション, \"本店\"";
    let org = app.create_org(org_name).await;
    let (nurse, nurse_client) = person(&app, "nurse.sato", "佐藤 花子", Some(org.id)).await;
    let (_, outsider) = person(&app, "nurse.kato", "加藤 看護師", None).await;
    let group = nurse_client
        .create_group(&CreateGroup {
            kind: GroupKind::Patient,
            name: "山田 太郎 様".into(),
            description: None,
            patient: Some(PatientProfile {
                name: "山田 太郎".into(),
                name_kana: None,
                birth_date: None,
                sex: None,
                care_level: None,
                address: None,
                primary_physician: None,
                notes: None,
            }),
        })
        .await
        .unwrap();

    // Upload, view, download, and a refused attempt by someone outside the group: all
    // through the real file API.
    let file_name = "訪問看護記録 11月.pdf";
    let r = app
        .http
        .post(app.url(&format!("/api/v1/threads/{}/files", group.main_thread_id)))
        .query(&[("name", file_name)])
        .bearer_auth(token(&nurse_client))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(b"%PDF-1.4\n% visit record\n".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let info: Value = r.json().await.unwrap();
    let file_id = info["id"].as_str().unwrap().to_owned();
    let r = get(&app, &nurse_client, &format!("/api/v1/files/{file_id}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = get(
        &app,
        &nurse_client,
        &format!("/api/v1/files/{file_id}/content"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = get(&app, &outsider, &format!("/api/v1/files/{file_id}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let r = get(
        &app,
        &app.admin,
        &format!("/api/v1/admin/audit/file-access?file_id={file_id}&format=csv"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/csv; charset=utf-8");
    let disposition = r.headers()[CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"audit-file-access-")
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    let bytes = r.bytes().await.unwrap();

    // The bytes: a UTF-8 BOM, then valid UTF-8, CRLF line ends.
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF");
    let text = std::str::from_utf8(&bytes[3..]).expect("UTF-8");
    let lines = crlf_lines(text);
    assert_eq!(lines[0], CSV_HEADER);
    // Upload, metadata view, download, refusal: oldest first.
    assert_eq!(lines.len(), 1 + 4, "{text}");
    let actions: Vec<&str> = lines[1..]
        .iter()
        .map(|l| {
            if l.contains("file_uploaded") {
                "file_uploaded"
            } else if l.contains("file_metadata_viewed") {
                "file_metadata_viewed"
            } else if l.contains("file_downloaded") {
                "file_downloaded"
            } else if l.contains("file_access_denied") {
                "file_access_denied"
            } else {
                "?"
            }
        })
        .collect();
    assert_eq!(
        actions,
        [
            "file_uploaded",
            "file_metadata_viewed",
            "file_downloaded",
            "file_access_denied"
        ]
    );

    // The upload row, byte for byte where it matters: the organisation's comma and
    // quotes are quoted RFC 4180 style (quotes doubled); Japanese text is verbatim.
    let upload = lines[1];
    let quoted_org = "\"さくら訪問看護ステーション, \"\"本店\"\"\"";
    assert!(
        upload.contains(&format!(",佐藤 花子,{quoted_org},nurse,山田 太郎 様,{file_name},file_uploaded,success,127.0.0.1,")),
        "{upload}"
    );
    assert!(upload.ends_with(&format!(
        ",{},{},{file_id},{},{}",
        nurse.id,
        org.id,
        group.id,
        upload.rsplit(',').next().unwrap()
    )));

    // A CSV reader gets the original values back.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 4);
    let first = &records[0];
    assert_eq!(&first[col("user")], "佐藤 花子");
    assert_eq!(&first[col("organization")], org_name);
    assert_eq!(&first[col("profession")], "nurse");
    assert_eq!(&first[col("group")], "山田 太郎 様");
    assert_eq!(&first[col("file")], file_name);
    assert_eq!(&first[col("outcome")], "success");
    assert_eq!(&records[3][col("outcome")], "denied");
    assert_eq!(&records[3][col("user")], "加藤 看護師");
    for record in &records {
        assert!(!record[col("request_id")].is_empty());
        // The JST column is the UTC column plus nine hours.
        let utc = chrono::DateTime::parse_from_rfc3339(&record[col("time_utc")]).unwrap();
        let jst = chrono::NaiveDateTime::parse_from_str(
            record[col("time_jst")].strip_suffix(" JST").unwrap(),
            "%Y-%m-%d %H:%M:%S",
        )
        .unwrap();
        assert_eq!(
            jst,
            (utc.naive_utc() + chrono::Duration::hours(9)).with_nanosecond_zero()
        );
        assert_eq!(&record[col("file_id")], file_id);
    }

    // The same report as JSON has the same entries, with names.
    let json_page: AuditPage = app
        .admin
        .authed(
            Method::GET,
            &format!("api/v1/admin/audit/file-access?file_id={file_id}"),
            None::<&()>,
        )
        .await
        .unwrap();
    assert_eq!(json_page.entries.len(), 4);
    assert_eq!(json_page.next_cursor, None);
    let e = &json_page.entries[0];
    assert_eq!(e.action, "file_uploaded");
    assert_eq!(e.actor_name.as_deref(), Some("佐藤 花子"));
    assert_eq!(e.actor_organization_name.as_deref(), Some(org_name));
    assert_eq!(e.file_name.as_deref(), Some(file_name));
    assert_eq!(e.group_name.as_deref(), Some("山田 太郎 様"));
}

trait ZeroNanos {
    fn with_nanosecond_zero(self) -> Self;
}

impl ZeroNanos for chrono::NaiveDateTime {
    fn with_nanosecond_zero(self) -> Self {
        use chrono::Timelike;
        self.with_nanosecond(0).unwrap()
    }
}

async fn reports_cover_the_admins_region_only_and_admins_only(app: TestApp) {
    let (user, client) = person(&app, "nurse.a", "看護師 A", None).await;
    let _ = app
        .client()
        .login("nurse.a", "wrong password!!", None)
        .await;
    let other = app.other_region("kawaguchi").await;

    // The other region's administrator sees none of this region's entries, however
    // they filter.
    for query in [
        String::new(),
        format!("user_id={}", user.id),
        "action=login_failed".into(),
    ] {
        let p = page(&other, &query).await;
        assert!(
            p.entries
                .iter()
                .all(|e| e.actor_user_id.as_deref() != Some(&user.id.to_string())
                    && e.target_id.as_deref() != Some(&user.id.to_string())),
            "{query}: {p:?}"
        );
    }
    let p = page(&other, &format!("user_id={}", user.id)).await;
    assert!(p.entries.is_empty());
    let r = get(
        &app,
        &other,
        &format!("/api/v1/admin/audit/events?user_id={}&format=csv", user.id),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let bytes = r.bytes().await.unwrap();
    assert_eq!(
        std::str::from_utf8(&bytes[3..]).unwrap(),
        format!("{CSV_HEADER}\r\n")
    );
    // Their own region's entries they do see (their sign-in, their pulls).
    let own = page(&other, "").await;
    assert!(own.entries.iter().any(|e| e.action == "login_succeeded"));
    // And ours sees ours.
    let ours = page(&app.admin, &format!("user_id={}", user.id)).await;
    assert!(ours.entries.iter().any(|e| e.action == "login_succeeded"));

    // A member who is not an administrator is refused every audit route.
    for path in [
        "/api/v1/admin/audit/events",
        "/api/v1/admin/audit/events?format=csv",
        "/api/v1/admin/audit/file-access",
        "/api/v1/admin/audit/verify",
    ] {
        let r = get(&app, &client, path).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

async fn report_pulls_are_audited_with_their_filters_as_ids_only(app: TestApp) {
    let (user, _) = person(&app, "nurse.a", "看護師 A", None).await;
    let file_id = uuid::Uuid::now_v7().to_string();
    let r = get(
        &app,
        &app.admin,
        &format!(
            "/api/v1/admin/audit/file-access?format=csv&file_id={file_id}&user_id={}&outcome=denied&from=2026-01-01T00:00:00%2B09:00",
            user.id
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let _ = r.bytes().await.unwrap();
    page(&app.admin, "action=login_failed&limit=5").await;

    let pulls = page(&app.admin, "action=audit_report_exported").await;
    // Two earlier pulls, and this one (recorded before it reads).
    assert_eq!(pulls.entries.len(), 3, "{pulls:?}");
    let csv = &pulls.entries[0];
    assert_eq!(csv.outcome, "success");
    assert_eq!(
        csv.actor_user_id.as_deref(),
        Some(app.admin.me().await.unwrap().user.id.to_string().as_str())
    );
    assert!(csv.request_id.is_some());
    assert_eq!(
        csv.detail,
        json!({
            "report": "file_access",
            "format": "csv",
            "filters": {
                "file_id": file_id,
                "user_id": user.id.to_string(),
                "outcome": "denied",
                "from_ms": 1_767_193_200_000_i64,
            },
        })
    );
    assert_eq!(
        pulls.entries[1].detail,
        json!({"report": "events", "format": "json", "filters": {"action": "login_failed"}})
    );
    // The pull entry does not show up as file access itself.
    assert!(csv.file_id.is_none());
    // Verification is recorded too.
    let v: Value = app
        .admin
        .authed(Method::GET, "api/v1/admin/audit/verify", None::<&()>)
        .await
        .unwrap();
    assert_eq!(v["intact"], true);
    assert_eq!(v["first_problem"], Value::Null);
    let verified = page(&app.admin, "action=audit_verified").await;
    assert_eq!(verified.entries.len(), 1);
    assert_eq!(verified.entries[0].detail["intact"], true);
}

async fn json_reports_filter_by_user_action_outcome_and_time_and_page_by_cursor(app: TestApp) {
    let (a, _) = person(&app, "nurse.a", "看護師 A", None).await;
    let (b, _) = person(&app, "nurse.b", "看護師 B", None).await;
    for _ in 0..4 {
        let _ = app
            .client()
            .login("nurse.a", "wrong password!!", None)
            .await;
        let _ = app
            .client()
            .login("nurse.b", "wrong password!!", None)
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let failed = page(&app.admin, "action=login_failed&outcome=failure").await;
    assert_eq!(failed.entries.len(), 8);
    assert!(failed.entries.windows(2).all(|w| w[0].seq < w[1].seq));
    let by_a = page(&app.admin, &format!("user_id={}", a.id)).await;
    assert!(!by_a.entries.is_empty());
    assert!(by_a
        .entries
        .iter()
        .all(|e| e.actor_user_id.as_deref() == Some(&a.id.to_string())));
    // A failed sign-in of a known account is recorded with that account as the actor.
    let b_failed = page(&app.admin, &format!("user_id={}&action=login_failed", b.id)).await;
    assert_eq!(b_failed.entries.len(), 4);
    assert!(b_failed
        .entries
        .iter()
        .all(|e| e.actor_user_id.as_deref() == Some(&b.id.to_string())));
    assert!(page(&app.admin, "action=login_failed&outcome=success")
        .await
        .entries
        .is_empty());

    // Cursor paging: three at a time, every entry once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("action=login_failed&limit=3&cursor={c}"),
            None => "action=login_failed&limit=3".into(),
        };
        let p = page(&app.admin, &q).await;
        assert!(p.entries.len() <= 3);
        seen.extend(p.entries.iter().map(|e| e.seq));
        pages += 1;
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        failed.entries.iter().map(|e| e.seq).collect::<Vec<_>>()
    );

    // Time range: `from` inclusive, `to` exclusive, RFC 3339 or milliseconds.
    let times: Vec<i64> = failed
        .entries
        .iter()
        .map(|e| {
            chrono::DateTime::parse_from_rfc3339(&e.at)
                .unwrap()
                .timestamp_millis()
        })
        .collect();
    let (from, to) = (times[2], times[6]);
    let expected: Vec<i64> = failed
        .entries
        .iter()
        .zip(&times)
        .filter(|(_, t)| **t >= from && **t < to)
        .map(|(e, _)| e.seq)
        .collect();
    assert!(expected.contains(&failed.entries[2].seq));
    assert!(!expected.contains(&failed.entries[6].seq));
    let ranged = page(
        &app.admin,
        &format!("action=login_failed&from={from}&to={to}"),
    )
    .await;
    assert_eq!(
        ranged.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        expected
    );
    let rfc = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .with_timezone(&chrono::FixedOffset::east_opt(9 * 3600).unwrap())
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
            .replace('+', "%2B")
    };
    let ranged = page(
        &app.admin,
        &format!("action=login_failed&from={}&to={}", rfc(from), rfc(to)),
    )
    .await;
    assert_eq!(
        ranged.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        expected
    );
}

async fn a_csv_export_streams_every_matching_entry_across_pages(app: TestApp) {
    let (user, _) = person(&app, "nurse.a", "看護師 A", None).await;
    let region = app.admin.me().await.unwrap().region.id.to_string();
    let actor = Actor {
        user_id: Some(user.id.to_string()),
        organization_id: None,
        region_id: Some(region),
    };
    // 2,500 file-access entries (more than two export pages), written as the files
    // module writes them.
    let file_id = uuid::Uuid::now_v7().to_string();
    let mut tx = app.store().begin().await.unwrap();
    for i in 0..2500 {
        let action = if i % 2 == 0 {
            Action::FileDownloaded
        } else {
            Action::FileMetadataViewed
        };
        audit::append(
            &mut tx,
            &RequestMeta {
                ip: Some("192.0.2.10".into()),
                user_agent: Some("test".into()),
                request_id: Some(format!("req-{i}")),
            },
            Event::new(action, Outcome::Success, &actor)
                .file(file_id.clone())
                .target("file", file_id.clone()),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let r = get(
        &app,
        &app.admin,
        &format!("/api/v1/admin/audit/file-access?file_id={file_id}&format=csv"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let bytes = r.bytes().await.unwrap();
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF");
    let text = std::str::from_utf8(&bytes[3..]).unwrap();
    let lines = crlf_lines(text);
    assert_eq!(lines.len(), 1 + 2500);
    assert!(lines[1].contains(",req-0,"));
    assert!(lines[2500].contains(",req-2499,"));
    let seqs: Vec<i64> = lines[1..]
        .iter()
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    // Only downloads.
    let r = get(
        &app,
        &app.admin,
        &format!(
            "/api/v1/admin/audit/file-access?file_id={file_id}&action=file_downloaded&format=csv"
        ),
    )
    .await;
    let bytes = r.bytes().await.unwrap();
    let lines = crlf_lines(std::str::from_utf8(&bytes[3..]).unwrap()).len();
    assert_eq!(lines, 1 + 1250);
    // The chain is intact after all that.
    let v = crate::audit::common::verify_now(&app).await;
    assert!(v.intact, "{v:?}");
}

async fn names_that_look_like_formulas_are_defused_in_csv(app: TestApp) {
    let org = app
        .create_org("=HYPERLINK(\"http://example.invalid\",\"開く\")")
        .await;
    let (user, _) = person(&app, "nurse.f", "@SUM(1+1)", Some(org.id)).await;
    let r = get(
        &app,
        &app.admin,
        &format!("/api/v1/admin/audit/events?user_id={}&format=csv", user.id),
    )
    .await;
    let bytes = r.bytes().await.unwrap();
    let text = std::str::from_utf8(&bytes[3..]).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(&r[2], "'@SUM(1+1)");
        assert_eq!(&r[3], "'=HYPERLINK(\"http://example.invalid\",\"開く\")");
    }
}

async fn malformed_report_parameters_are_refused(app: TestApp) {
    for query in [
        "limit=0",
        "limit=1001",
        "cursor=not-a-cursor",
        "action=no_such_action",
        "outcome=maybe",
        "from=yesterday",
        "to=2026-13-01T00:00:00Z",
        "format=xml",
        "user_id=not-a-uuid",
        "file_id=not-a-uuid",
        "format=csv&limit=10",
    ] {
        let r = get(
            &app,
            &app.admin,
            &format!("/api/v1/admin/audit/events?{query}"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request", "{query}");
    }
    // The file-access report takes file actions only.
    let r = get(
        &app,
        &app.admin,
        "/api/v1/admin/audit/file-access?action=login_failed",
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Refused queries record no pull.
    let pulls = page(&app.admin, "action=audit_report_exported").await;
    assert_eq!(pulls.entries.len(), 1, "only this very pull");
}
