//! Tampering with the audit table directly in the database: refused while the
//! append-only triggers stand; once they are dropped, every change is named by
//! `verify` — the first modified, removed, inserted or reordered entry.

use tsunagu_protocol::audit::AuditProblemReason as R;
use tsunagu_server::audit::checkpoint::{self, CheckpointSettings, CheckpointSigner};

use crate::audit::common::*;
use tsunagu_testkit::both_backends;
use tsunagu_testkit::{Backend, TestApp};

both_backends!(
    the_database_refuses_to_change_or_remove_audit_entries,
    an_untouched_chain_verifies_with_its_signed_checkpoints,
    a_modified_entry_is_named,
    a_modified_entry_with_a_recomputed_hash_is_named,
    a_removed_entry_is_named,
    a_removed_entry_with_the_rest_renumbered_is_named,
    entries_removed_from_the_end_are_named,
    a_forged_entry_appended_after_the_head_is_named,
    a_forged_entry_inserted_in_the_middle_is_named,
    reordered_entries_are_named,
    a_consistently_rewritten_chain_is_caught_by_its_checkpoints,
    bad_checkpoints_are_named,
    the_audit_verify_command_reports_and_sets_its_exit_status,
);

async fn the_database_refuses_to_change_or_remove_audit_entries(app: TestApp) {
    let n = generate(&app).await;
    assert!(n >= 10);
    assert!(exec(
        &app,
        "UPDATE audit_events SET ip = '198.51.100.7' WHERE seq = 2"
    )
    .await
    .is_err());
    assert!(exec(&app, "UPDATE audit_events SET seq = seq + 1000")
        .await
        .is_err());
    assert!(exec(&app, "DELETE FROM audit_events WHERE seq = 3")
        .await
        .is_err());
    assert!(exec(&app, "DELETE FROM audit_events").await.is_err());
    if app.backend == Backend::Postgres {
        assert!(exec(&app, "TRUNCATE audit_events").await.is_err());
    }
    assert_eq!(entry_count(&app).await, n);
    let v = verify_api(&app.admin).await;
    assert!(v.intact, "{v:?}");
    assert_eq!(v.checked, n);
}

async fn an_untouched_chain_verifies_with_its_signed_checkpoints(app: TestApp) {
    let n = generate(&app).await;
    let signer = signer(&app);
    let store = app.store();
    // Every fifth entry is signed; a second run finds nothing new to do.
    let written = checkpoint::run_once(store, &signer, every(5))
        .await
        .unwrap();
    assert_eq!(written as i64, n / 5);
    assert_eq!(
        checkpoint::run_once(store, &signer, every(5))
            .await
            .unwrap(),
        0
    );
    // An hour later the head is signed too, when it is not a multiple already.
    let later = tsunagu_server::clock::now_ms() + 3_600_000;
    let head = checkpoint::run_once_at(store, &signer, every(5), later)
        .await
        .unwrap();
    assert_eq!(head, usize::from(n % 5 != 0));
    // Not again until another hour has passed and there are newer entries.
    assert_eq!(
        checkpoint::run_once_at(store, &signer, every(5), later + 1)
            .await
            .unwrap(),
        0
    );

    let v = verify_api(&app.admin).await;
    assert!(v.intact, "{v:?}");
    assert_eq!(v.first_problem, None);
    assert_eq!(v.checked, n);
    assert_eq!(v.checkpoints, n / 5 + i64::from(n % 5 != 0));
    // The verification is itself audited, and the chain still verifies after it.
    let actions = app.audit_actions().await;
    assert_eq!(actions.last().map(String::as_str), Some("audit_verified"));
    let v = verify_now(&app).await;
    assert!(v.intact, "{v:?}");
    assert_eq!(v.checked, n + 1);

    // The default settings: no checkpoint before 1,000 entries or an hour.
    let defaults = CheckpointSettings {
        every: 1000,
        interval_ms: 3_600_000,
    };
    assert_eq!(
        checkpoint::run_once(store, &signer, defaults)
            .await
            .unwrap(),
        0
    );
}

async fn a_modified_entry_is_named(app: TestApp) {
    let n = generate(&app).await;
    let k = n / 2;
    let original = entry(&app, k).await;
    drop_triggers(&app).await;
    exec(
        &app,
        &format!("UPDATE audit_events SET ip = '198.51.100.7' WHERE seq = {k}"),
    )
    .await
    .unwrap();
    assert_broken(&app, k, R::Modified).await;

    // Any field: the time, the outcome, the detail, the actor.
    overwrite_entry(&app, &original).await;
    assert!(verify_now(&app).await.intact);
    let j = k - 2;
    let before = entry(&app, j).await;
    for sql in [
        format!("UPDATE audit_events SET at_ms = at_ms + 1 WHERE seq = {j}"),
        format!("UPDATE audit_events SET outcome = 'denied' WHERE seq = {j}"),
        format!("UPDATE audit_events SET detail = '{{\"x\":1}}' WHERE seq = {j}"),
        format!("UPDATE audit_events SET actor_user_id = NULL WHERE seq = {j}"),
    ] {
        exec(&app, &sql).await.unwrap();
        let p = verify_now(&app).await.first_problem.expect("named");
        assert_eq!((p.seq, p.reason), (j, R::Modified), "{sql}");
        overwrite_entry(&app, &before).await;
        assert!(verify_now(&app).await.intact, "{sql}");
    }
}

async fn a_modified_entry_with_a_recomputed_hash_is_named(app: TestApp) {
    let n = generate(&app).await;
    let k = n / 2;
    drop_triggers(&app).await;
    let mut row = entry(&app, k).await;
    row.actor_user_id = None;
    row.ip = Some("198.51.100.7".into());
    row.hash = row.compute_hash();
    overwrite_entry(&app, &row).await;
    // Entry k is self-consistent now, but entry k+1 was chained to the original.
    assert_broken(&app, k, R::Modified).await;
}

async fn a_removed_entry_is_named(app: TestApp) {
    let n = generate(&app).await;
    let k = n / 2;
    drop_triggers(&app).await;
    exec(&app, &format!("DELETE FROM audit_events WHERE seq = {k}"))
        .await
        .unwrap();
    assert_broken(&app, k, R::Missing).await;
}

async fn a_removed_entry_with_the_rest_renumbered_is_named(app: TestApp) {
    let n = generate(&app).await;
    let k = n / 2;
    drop_triggers(&app).await;
    exec(&app, &format!("DELETE FROM audit_events WHERE seq = {k}"))
        .await
        .unwrap();
    shift(&app, k + 1, -1).await;
    // No gap in the seqs any more; the entry now at k was renumbered.
    assert_eq!(entry_count(&app).await, n - 1);
    let v = verify_now(&app).await;
    let p = v.first_problem.clone().expect("named");
    assert_eq!((p.seq, p.reason), (k, R::Missing), "{v:?}");
    // Also with the chain head moved back, as a careful forger would.
    exec(
        &app,
        &format!("UPDATE audit_chain_head SET last_seq = {}", n - 1),
    )
    .await
    .unwrap();
    assert_broken(&app, k, R::Missing).await;
}

async fn entries_removed_from_the_end_are_named(app: TestApp) {
    let n = generate(&app).await;
    drop_triggers(&app).await;
    exec(
        &app,
        &format!("DELETE FROM audit_events WHERE seq >= {}", n - 1),
    )
    .await
    .unwrap();
    let v = verify_now(&app).await;
    let p = v.first_problem.clone().expect("named");
    assert_eq!((p.seq, p.reason), (n - 1, R::Truncated), "{v:?}");
    assert_eq!(v.checked, n - 2);
}

async fn a_forged_entry_appended_after_the_head_is_named(app: TestApp) {
    let n = generate(&app).await;
    // A plausible entry: linked to the last one, with a correct hash of its own.
    let last = entry(&app, n).await;
    let mut forged = last.clone();
    forged.seq = n + 1;
    forged.id = uuid::Uuid::now_v7().to_string();
    forged.action = "login_succeeded".into();
    forged.prev_hash = last.hash.clone();
    forged.hash = forged.compute_hash();
    // Inserting needs no trigger to be dropped: append-only allows INSERT.
    insert_entry(&app, &forged).await;
    let v = verify_now(&app).await;
    let p = v.first_problem.clone().expect("named");
    assert_eq!((p.seq, p.reason), (n + 1, R::Inserted), "{v:?}");
    assert_eq!(v.checked, n);
    // The forged row blocks the seq the server would write next; verification over
    // the API still answers (its own entry cannot be recorded).
    assert_broken(&app, n + 1, R::Inserted).await;
}

async fn a_forged_entry_inserted_in_the_middle_is_named(app: TestApp) {
    let n = generate(&app).await;
    let k = n / 2;
    drop_triggers(&app).await;
    let before = entry(&app, k - 1).await;
    shift(&app, k, 1).await;
    let mut forged = entry(&app, k + 1).await;
    forged.seq = k;
    forged.id = uuid::Uuid::now_v7().to_string();
    forged.action = "file_downloaded".into();
    forged.prev_hash = before.hash.clone();
    forged.hash = forged.compute_hash();
    insert_entry(&app, &forged).await;
    exec(
        &app,
        &format!("UPDATE audit_chain_head SET last_seq = {}", n + 1),
    )
    .await
    .unwrap();
    let v = verify_now(&app).await;
    let p = v.first_problem.clone().expect("named");
    assert_eq!((p.seq, p.reason), (k, R::Inserted), "{v:?}");
    assert_eq!(v.checked, k - 1);

    // A forged entry that does not even link to its predecessor is named too.
    exec(&app, &format!("DELETE FROM audit_events WHERE seq = {k}"))
        .await
        .unwrap();
    forged.prev_hash = "ab".repeat(32);
    forged.hash = forged.compute_hash();
    insert_entry(&app, &forged).await;
    let v = verify_now(&app).await;
    let p = v.first_problem.clone().expect("named");
    assert_eq!((p.seq, p.reason), (k, R::Inserted), "{v:?}");
}

async fn reordered_entries_are_named(app: TestApp) {
    let n = generate(&app).await;
    let (k, m) = (3, n - 2);
    drop_triggers(&app).await;
    swap(&app, k, m).await;
    let v = verify_now(&app).await;
    let p = v.first_problem.clone().expect("named");
    assert_eq!((p.seq, p.reason), (k, R::Reordered), "{v:?}");
    swap(&app, k, m).await;
    assert!(verify_now(&app).await.intact);
    // Neighbours.
    swap(&app, k + 1, k + 2).await;
    assert_broken(&app, k + 1, R::Reordered).await;
}

async fn a_consistently_rewritten_chain_is_caught_by_its_checkpoints(app: TestApp) {
    let n = generate(&app).await;
    let signer = signer(&app);
    checkpoint::run_once(app.store(), &signer, every(5))
        .await
        .unwrap();
    drop_triggers(&app).await;
    // Change entry 3 and recompute every hash after it, chain head included: the
    // chain itself is consistent again...
    let mut prev = entry(&app, 2).await.hash;
    for seq in 3..=n {
        let mut row = entry(&app, seq).await;
        if seq == 3 {
            row.ip = Some("198.51.100.7".into());
        }
        row.prev_hash = prev;
        row.hash = row.compute_hash();
        prev = row.hash.clone();
        overwrite_entry(&app, &row).await;
    }
    exec(
        &app,
        &format!("UPDATE audit_chain_head SET last_hash = '{prev}'"),
    )
    .await
    .unwrap();
    let mut conn = app.store().conn().await.unwrap();
    let (_, chain_break) = tsunagu_server::audit::verify(&mut conn).await.unwrap();
    drop(conn);
    assert_eq!(chain_break, None);
    // ...but the first signed checkpoint after the change no longer matches.
    let v = verify_api(&app.admin).await;
    let p = v.first_problem.clone().expect("named");
    assert_eq!((p.seq, p.reason), (5, R::Modified), "{v:?}");
    assert!(p.detail.contains("1 to 5"), "{}", p.detail);
    // And no new checkpoint vouches for the rewritten chain: the task refuses to sign.
    let later = tsunagu_server::clock::now_ms() + 7_200_000;
    assert_eq!(
        checkpoint::run_once_at(app.store(), &signer, every(5), later)
            .await
            .unwrap(),
        0
    );
}

async fn bad_checkpoints_are_named(app: TestApp) {
    let n = generate(&app).await;
    assert!(n >= 10);
    let signer = signer(&app);
    checkpoint::run_once(app.store(), &signer, every(5))
        .await
        .unwrap();
    let good = verify_now(&app).await;
    assert!(good.intact);
    assert_eq!(good.checkpoints, n / 5);
    let mut conn = app.store().conn().await.unwrap();
    let (hash, key_id, signature): (String, String, String) =
        sqlx::query_as("SELECT hash, key_id, signature FROM audit_checkpoints WHERE seq = 10")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    drop(conn);
    let restore = format!(
        "UPDATE audit_checkpoints SET hash = '{hash}', key_id = '{key_id}', \
         signature = '{signature}' WHERE seq = 10"
    );

    // Checkpoints are append-only in the database too: an attacker removes that first.
    drop_triggers(&app).await;
    // A signature that is not over this checkpoint.
    let sig5 = signer.sign(5, &entry(&app, 5).await.hash);
    exec(
        &app,
        &format!("UPDATE audit_checkpoints SET signature = '{sig5}' WHERE seq = 10"),
    )
    .await
    .unwrap();
    let p = verify_now(&app).await.first_problem.expect("named");
    assert_eq!((p.seq, p.reason), (10, R::BadCheckpoint));
    exec(&app, &restore).await.unwrap();
    assert!(verify_now(&app).await.intact);

    // A checkpoint moved to another hash (its signature no longer covers it).
    exec(
        &app,
        &format!(
            "UPDATE audit_checkpoints SET hash = '{}' WHERE seq = 10",
            "ab".repeat(32)
        ),
    )
    .await
    .unwrap();
    let p = verify_now(&app).await.first_problem.expect("named");
    assert_eq!((p.seq, p.reason), (10, R::BadCheckpoint));
    exec(&app, &restore).await.unwrap();

    // Signed, correctly, by a key that is not the configured one.
    let intruder = CheckpointSigner::from_key(ed25519_dalek::SigningKey::from_bytes(&[7; 32]));
    exec(
        &app,
        &format!(
            "UPDATE audit_checkpoints SET key_id = '{}', signature = '{}' WHERE seq = 10",
            intruder.key_id(),
            intruder.sign(10, &hash)
        ),
    )
    .await
    .unwrap();
    let v = verify_api(&app.admin).await;
    let p = v.first_problem.clone().expect("named");
    assert_eq!((p.seq, p.reason), (10, R::BadCheckpoint), "{v:?}");
    assert!(p.detail.contains(intruder.key_id()), "{}", p.detail);
    assert_eq!(v.checkpoints, 1);
    exec(&app, &restore).await.unwrap();
    assert!(verify_now(&app).await.intact);

    // A forged checkpoint row that vouches for entries that are not there.
    exec(
        &app,
        &format!(
            "INSERT INTO audit_checkpoints (seq, hash, key_id, signature, created_at) \
             VALUES (100000, '{hash}', '{}', '{}', 0)",
            signer.key_id(),
            signer.sign(100000, &hash)
        ),
    )
    .await
    .unwrap();
    let v = verify_now(&app).await;
    let p = v.first_problem.clone().expect("named");
    assert_eq!(p.reason, R::Truncated, "{p:?}");
}

async fn the_audit_verify_command_reports_and_sets_its_exit_status(app: TestApp) {
    let n = generate(&app).await;
    let run = || async {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tsunagu-server"));
        cmd.args(["audit", "verify"])
            .env("TSUNAGU_DATA_DIR", &app.config.data_dir)
            .env("TSUNAGU_LOG_LEVEL", "warn");
        if let Some(url) = &app.config.database_url {
            cmd.env("TSUNAGU_DATABASE_URL", url);
        }
        let out = cmd.output().await.unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run().await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("intact"), "{out}");
    assert!(out.contains(&format!("{n} entries")), "{out}");
    // The command records its verification too (as the operator: no actor).
    assert_eq!(
        app.audit_actions().await.last().map(String::as_str),
        Some("audit_verified")
    );

    drop_triggers(&app).await;
    exec(
        &app,
        "UPDATE audit_events SET request_id = 'forged' WHERE seq = 4",
    )
    .await
    .unwrap();
    let (code, out, err) = run().await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("BROKEN at seq 4: modified"), "{out}");

    // A configured key that does not exist is an error, not a verdict.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tsunagu-server"));
    cmd.args(["audit", "verify"])
        .env("TSUNAGU_DATA_DIR", &app.config.data_dir)
        .env(
            "TSUNAGU_AUDIT_SIGNING_KEY_FILE",
            app.config.data_dir.join("nope.pem"),
        )
        .env("TSUNAGU_LOG_LEVEL", "warn");
    if let Some(url) = &app.config.database_url {
        cmd.env("TSUNAGU_DATABASE_URL", url);
    }
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
}
