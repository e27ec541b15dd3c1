//! The audit log: tamper evidence (the database refuses changes; `verify` names the
//! first modified, removed, inserted or reordered entry; signed checkpoints) and the
//! region administrators' reports (JSON pages, CSV for Japanese Excel). Every test runs
//! on SQLite and, with `TSUNAGU_TEST_POSTGRES_URL`, on PostgreSQL.

mod reports;
mod tamper;

/// What the audit tests share.
pub mod common {
    use reqwest::Method;
    use tsunagu_client::Client;
    use tsunagu_protocol::accounts::{CreateOrganization, OrganizationKind, UserRole};
    use tsunagu_protocol::audit::{AuditProblemReason, AuditVerification};
    use tsunagu_server::audit::checkpoint::{CheckpointSettings, CheckpointSigner};
    use tsunagu_server::audit::EntryRow;

    use tsunagu_testkit::{Backend, TestApp};

    /// Runs one statement on the test's database.
    pub async fn exec(app: &TestApp, sql: &str) -> Result<u64, sqlx::Error> {
        let mut conn = app.store().conn().await.expect("conn");
        sqlx::query(sql)
            .execute(&mut *conn)
            .await
            .map(|r| r.rows_affected())
    }

    /// Removes the append-only triggers, as someone with direct database access would
    /// before tampering.
    pub async fn drop_triggers(app: &TestApp) {
        match app.backend {
            Backend::Sqlite => {
                exec(app, "DROP TRIGGER audit_events_no_update")
                    .await
                    .unwrap();
                exec(app, "DROP TRIGGER audit_events_no_delete")
                    .await
                    .unwrap();
                exec(app, "DROP TRIGGER audit_checkpoints_no_update")
                    .await
                    .unwrap();
                exec(app, "DROP TRIGGER audit_checkpoints_no_delete")
                    .await
                    .unwrap();
            }
            Backend::Postgres => {
                exec(
                    app,
                    "DROP TRIGGER audit_events_no_update_or_delete ON audit_events",
                )
                .await
                .unwrap();
                exec(
                    app,
                    "DROP TRIGGER audit_checkpoints_no_update_or_delete ON audit_checkpoints",
                )
                .await
                .unwrap();
            }
        }
    }

    /// Writes entries through real API calls: organisations, users, sign-ins (good and
    /// bad), an organisation change. Returns the number of entries in the chain.
    pub async fn generate(app: &TestApp) -> i64 {
        for i in 0..3 {
            let org = app
                .admin
                .create_organization(&CreateOrganization {
                    name: format!("さくら訪問看護ステーション {i}"),
                    kind: OrganizationKind::VisitingNursingStation,
                })
                .await
                .unwrap();
            app.admin
                .update_organization(
                    org.id,
                    &tsunagu_protocol::accounts::UpdateOrganization {
                        name: Some(format!("さくら訪問看護 {i}")),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        }
        for login in ["nurse.a", "nurse.b"] {
            app.create_user(login, UserRole::User).await;
            let _ = app.client().login(login, "wrong password!!", None).await;
        }
        entry_count(app).await
    }

    pub async fn entry_count(app: &TestApp) -> i64 {
        let mut conn = app.store().conn().await.unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        n
    }

    pub async fn entry(app: &TestApp, seq: i64) -> EntryRow {
        let mut conn = app.store().conn().await.unwrap();
        sqlx::query_as(
            "SELECT seq, id, at_ms, region_id, actor_user_id, actor_org_id, ip, user_agent, \
             action, target_kind, target_id, group_id, file_id, outcome, request_id, detail, \
             prev_hash, hash FROM audit_events WHERE seq = $1",
        )
        .bind(seq)
        .fetch_one(&mut *conn)
        .await
        .unwrap()
    }

    pub async fn insert_entry(app: &TestApp, row: &EntryRow) {
        let mut conn = app.store().conn().await.unwrap();
        sqlx::query(
            "INSERT INTO audit_events (seq, id, at_ms, region_id, actor_user_id, actor_org_id, \
             ip, user_agent, action, target_kind, target_id, group_id, file_id, outcome, \
             request_id, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .bind(row.seq)
        .bind(&row.id)
        .bind(row.at_ms)
        .bind(&row.region_id)
        .bind(&row.actor_user_id)
        .bind(&row.actor_org_id)
        .bind(&row.ip)
        .bind(&row.user_agent)
        .bind(&row.action)
        .bind(&row.target_kind)
        .bind(&row.target_id)
        .bind(&row.group_id)
        .bind(&row.file_id)
        .bind(&row.outcome)
        .bind(&row.request_id)
        .bind(&row.detail)
        .bind(&row.prev_hash)
        .bind(&row.hash)
        .execute(&mut *conn)
        .await
        .unwrap();
    }

    /// Replaces the stored row at `row.seq` with `row` (the triggers must be gone).
    pub async fn overwrite_entry(app: &TestApp, row: &EntryRow) {
        exec(
            app,
            &format!("DELETE FROM audit_events WHERE seq = {}", row.seq),
        )
        .await
        .unwrap();
        insert_entry(app, row).await;
    }

    /// Moves every entry from `from` on by `delta` positions (the triggers must be gone).
    /// Goes through negative seqs so no step collides with the primary key.
    pub async fn shift(app: &TestApp, from: i64, delta: i64) {
        exec(
            app,
            &format!("UPDATE audit_events SET seq = -(seq + ({delta})) WHERE seq >= {from}"),
        )
        .await
        .unwrap();
        exec(app, "UPDATE audit_events SET seq = -seq WHERE seq < 0")
            .await
            .unwrap();
    }

    /// Swaps the positions of two entries (the triggers must be gone).
    pub async fn swap(app: &TestApp, a: i64, b: i64) {
        exec(
            app,
            &format!("UPDATE audit_events SET seq = -1 WHERE seq = {a}"),
        )
        .await
        .unwrap();
        exec(
            app,
            &format!("UPDATE audit_events SET seq = {a} WHERE seq = {b}"),
        )
        .await
        .unwrap();
        exec(
            app,
            &format!("UPDATE audit_events SET seq = {b} WHERE seq = -1"),
        )
        .await
        .unwrap();
    }

    /// `GET /api/v1/admin/audit/verify` as the region administrator.
    pub async fn verify_api(client: &Client) -> AuditVerification {
        client
            .authed(Method::GET, "api/v1/admin/audit/verify", None::<&()>)
            .await
            .expect("verify")
    }

    /// Verifies in-process, without recording anything: tampering tests compare
    /// several verifications of one state.
    pub async fn verify_now(app: &TestApp) -> AuditVerification {
        let report = tsunagu_server::audit::verify_store(app.store(), &signer(app).verifier())
            .await
            .unwrap();
        tsunagu_server::domain::audit_reports::verification(&report)
    }

    /// Asserts that verification names `seq` with `reason`, over the API.
    pub async fn assert_broken(app: &TestApp, seq: i64, reason: AuditProblemReason) {
        let v = verify_api(&app.admin).await;
        assert!(!v.intact, "expected a problem at {seq}: {v:?}");
        let p = v.first_problem.clone().unwrap();
        assert_eq!((p.seq, p.reason), (seq, reason), "{v:?}");
        assert_eq!(v.checked, seq - 1, "{v:?}");
    }

    /// The server's checkpoint signing key (created at the default location on start).
    pub fn signer(app: &TestApp) -> CheckpointSigner {
        CheckpointSigner::load_or_create(&app.config.audit_signing_key_file(), false)
            .expect("audit signing key")
    }

    pub fn every(n: i64) -> CheckpointSettings {
        CheckpointSettings {
            every: n,
            interval_ms: 3_600_000,
        }
    }
}
