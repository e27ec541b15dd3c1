//! Audit verification as a job the administrator polls, so a chain too long to verify
//! within the request timeout can still be verified over REST: start → job id → progress
//! → result; one job per region; a job whose server stopped is reported `interrupted`.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tsunagu_protocol::audit::{AuditVerifyJob, AuditVerifyJobState};
use tsunagu_testkit::{each_backend, spawn_app_with, Backend, TestApp};

each_backend!(
    a_verification_job_is_started_polled_and_recorded_once,
    one_job_per_region_and_a_slow_one_answers_202_with_its_location,
    a_job_whose_server_stopped_is_reported_interrupted_and_frees_the_region,
);

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
) -> (StatusCode, Option<String>, Value) {
    let r = app
        .http
        .request(method, app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, location, r.json().await.unwrap_or(Value::Null))
}

fn admin_token(app: &TestApp) -> String {
    app.admin.tokens().unwrap().access_token
}

async fn region_id(app: &TestApp) -> String {
    app.admin.me().await.unwrap().region.id.to_string()
}

/// A running job as another node would have left it, heartbeat `age_ms` ago.
async fn foreign_running_job(app: &TestApp, age_ms: i64) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let now = chrono::Utc::now().timestamp_millis();
    let mut conn = app.store().conn().await.unwrap();
    sqlx::query(
        "INSERT INTO audit_verify_jobs (id, region_id, state, checked, total, created_at, updated_at) \
         VALUES ($1, $2, 'running', 5, 1000, $3, $3)",
    )
    .bind(&id)
    .bind(region_id(app).await)
    .bind(now - age_ms)
    .execute(&mut *conn)
    .await
    .unwrap();
    id
}

async fn a_verification_job_is_started_polled_and_recorded_once(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let token = admin_token(&app);
    let (status, location, body) =
        call(&app, &token, Method::POST, "/api/v1/admin/audit/verify").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job: AuditVerifyJob = serde_json::from_value(body).unwrap();
    assert_eq!(
        location.as_deref(),
        Some(format!("/api/v1/admin/audit/verify/{}", job.id).as_str())
    );
    assert!(job.total > 0);
    let mut polled = job.clone();
    for _ in 0..200 {
        if polled.state != AuditVerifyJobState::Running {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let (status, _, body) = call(&app, &token, Method::GET, location.as_deref().unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        polled = serde_json::from_value(body).unwrap();
    }
    assert_eq!(polled.state, AuditVerifyJobState::Done, "{polled:?}");
    let result = polled.result.expect("the verification");
    assert!(result.intact, "{result:?}");
    assert!(result.checked >= job.total);
    assert!(polled.finished_at.is_some());
    // Exactly one audit_verified, naming the admin and the job.
    let mut conn = app.store().conn().await.unwrap();
    let rows: Vec<(Option<String>, Option<String>, String)> = sqlx::query_as(
        "SELECT actor_user_id, target_id, outcome FROM audit_events WHERE action = 'audit_verified'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let me = app.admin.me().await.unwrap();
    assert_eq!(
        rows,
        vec![(
            Some(me.user.id.to_string()),
            Some(job.id.clone()),
            "success".into()
        )]
    );
    drop(conn);
    // The SDK's audit_verify goes through a job too and gets the verification.
    assert!(app.admin.audit_verify().await.unwrap().intact);
    // Another region's admin does not see the job.
    let other = app.other_region("soka").await;
    let other_token = other.tokens().unwrap().access_token;
    let (status, _, _) = call(
        &app,
        &other_token,
        Method::GET,
        location.as_deref().unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn one_job_per_region_and_a_slow_one_answers_202_with_its_location(backend: Backend) {
    // A 3 s request timeout: GET /verify waits 2 s for its job.
    let app = spawn_app_with(backend, |c| c.http.request_timeout_secs = 3).await;
    let token = admin_token(&app);
    let running = foreign_running_job(&app, 0).await;
    // Starting joins the running job instead of a second one.
    let (status, _, body) = call(&app, &token, Method::POST, "/api/v1/admin/audit/verify").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["id"], running.as_str(), "{body}");
    assert_eq!(body["checked"], 5);
    // The design's GET route: the job has not finished within the wait, so 202 + Location.
    let started = std::time::Instant::now();
    let (status, location, body) =
        call(&app, &token, Method::GET, "/api/v1/admin/audit/verify").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "inside the timeout"
    );
    assert_eq!(
        location.as_deref(),
        Some(format!("/api/v1/admin/audit/verify/{running}").as_str())
    );
    let mut conn = app.store().conn().await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_verify_jobs")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(n, 1, "no second job");
}

async fn a_job_whose_server_stopped_is_reported_interrupted_and_frees_the_region(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let token = admin_token(&app);
    let stale = foreign_running_job(&app, 60_000).await;
    let (status, _, body) = call(
        &app,
        &token,
        Method::GET,
        &format!("/api/v1/admin/audit/verify/{stale}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "failed", "{body}");
    assert_eq!(body["error"], "interrupted");
    // The region is free again: a new start is a new job, and the design's GET route
    // answers with the verification itself (a short chain finishes within the wait).
    let (_, _, body) = call(&app, &token, Method::POST, "/api/v1/admin/audit/verify").await;
    assert_ne!(body["id"], stale.as_str());
    let (status, _, body) = call(&app, &token, Method::GET, "/api/v1/admin/audit/verify").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["intact"], true, "{body}");
}
