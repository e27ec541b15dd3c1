//! Keys: rotating the KEK re-wraps every data key without touching a blob (and the old
//! KEK can then go); deleting a file destroys its data key, so the blob — even kept or
//! put back — opens for no one.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tsunagu_protocol::accounts::Profession;
use tsunagu_server::blob::keys::generate_kek;

use tsunagu_testkit::all_combinations;

use crate::files::harness::{
    audit_rows, call, data, download_ok, fetch, free_group, get, person, refusals, team, upload_ok,
    TestApp, SEG,
};

all_combinations!(
    key_rotation_rewraps_every_key_without_touching_blobs,
    deleting_a_file_shreds_its_key_so_a_kept_blob_stays_unreadable
);

/// `(kek_id, wrapped_key, deleted_at)` of a file's row.
async fn key_row(app: &TestApp, file_id: &str) -> (Option<String>, Option<String>, Option<i64>) {
    let mut conn = app.store().conn().await.expect("conn");
    sqlx::query_as("SELECT kek_id, wrapped_key, deleted_at FROM files WHERE id = $1")
        .bind(file_id)
        .fetch_one(&mut *conn)
        .await
        .expect("file row")
}

async fn key_rotation_rewraps_every_key_without_touching_blobs(app: TestApp) {
    let nurse = person(&app, "nurse.sato", "利用者 nurse.sato", Profession::Nurse).await;
    let token = nurse.token();
    let group = free_group(&nurse.client).await;
    let thread = group.main_thread_id;
    let mut files = Vec::new();
    for (i, len) in [0, 1, SEG + 5, 3 * SEG].into_iter().enumerate() {
        let bytes = data(40 + i as u64, len as usize);
        let info = upload_ok(
            &app,
            &nurse,
            thread,
            &format!("rotate-{i}.bin"),
            bytes.clone(),
        )
        .await;
        let blob = app.blob(&info.id).await.expect("blob");
        files.push((info, bytes, blob));
    }
    // A deleted file has no key left to re-wrap.
    let gone = upload_ok(&app, &nurse, thread, "deleted.bin", data(49, 100)).await;
    let (status, _) = call(
        &app.base,
        &app.http,
        &token,
        Method::DELETE,
        &format!("/api/v1/files/{}", gone.id),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (old_kek, _, _) = key_row(&app, &files[0].0.id).await;
    let old_kek = old_kek.expect("wrapped by a KEK");
    let mut old_wrapped = Vec::new();
    for (info, _, _) in &files {
        let (kek, wrapped, _) = key_row(&app, &info.id).await;
        assert_eq!(kek.as_deref(), Some(old_kek.as_str()));
        old_wrapped.push(wrapped.expect("wrapped key"));
    }
    let kek_dir = app.config.kek_dir();
    let old_file = kek_dir.join(format!("{old_kek}.kek"));
    assert!(
        old_file.is_file(),
        "the generated KEK lives in {}",
        kek_dir.display()
    );

    // A new KEK; after a restart it is current.
    let new_kek = generate_kek(&kek_dir).expect("new KEK");
    assert!(new_kek > old_kek, "{new_kek} sorts after {old_kek}");
    let app = app.restart().await;
    let fresh_bytes = data(50, 2 * SEG as usize + 1);
    let fresh = upload_ok(
        &app,
        &nurse,
        thread,
        "after-new-kek.bin",
        fresh_bytes.clone(),
    )
    .await;
    assert_eq!(
        key_row(&app, &fresh.id).await.0.as_deref(),
        Some(new_kek.as_str())
    );
    // Old files still open with the old KEK until rotated.
    assert!(download_ok(&app, &token, &files[2].0.id).await == files[2].1);

    let rewrapped = app
        .domain
        .maintenance()
        .rotate_keys()
        .await
        .expect("rotate keys");
    assert_eq!(
        rewrapped,
        files.len() as u64,
        "every live file wrapped by the old KEK"
    );
    assert_eq!(
        app.domain
            .maintenance()
            .rotate_keys()
            .await
            .expect("rotate again"),
        0
    );
    assert!(
        !audit_rows(&app, "key_rotated").await.is_empty(),
        "rotation is audited"
    );
    for ((info, _, blob), old) in files.iter().zip(&old_wrapped) {
        let (kek, wrapped, _) = key_row(&app, &info.id).await;
        assert_eq!(kek.as_deref(), Some(new_kek.as_str()), "{}", info.name);
        assert_ne!(wrapped.as_ref(), Some(old), "{}: re-wrapped", info.name);
        assert!(
            app.blob(&info.id).await.as_ref() == Some(blob),
            "{}: blob untouched",
            info.name
        );
    }
    let (kek, wrapped, _) = key_row(&app, &gone.id).await;
    assert_eq!(
        (kek, wrapped),
        (None, None),
        "the deleted file stays shredded"
    );

    // The old KEK can go: everything still opens.
    std::fs::remove_file(&old_file).expect("remove the old KEK");
    let app = app.restart().await;
    for (info, bytes, _) in &files {
        assert!(
            download_ok(&app, &token, &info.id).await == *bytes,
            "{}",
            info.name
        );
        assert_eq!(
            key_row(&app, &info.id).await.0.as_deref(),
            Some(new_kek.as_str())
        );
    }
    assert!(download_ok(&app, &token, &fresh.id).await == fresh_bytes);
    let f = fetch(
        &app,
        &token,
        &files[3].0.id,
        Some(&format!("bytes={}-{}", SEG - 2, 2 * SEG + 1)),
    )
    .await;
    assert_eq!(f.status, StatusCode::PARTIAL_CONTENT);
    assert!(f.body == files[3].1[(SEG - 2) as usize..=(2 * SEG + 1) as usize]);
}

async fn deleting_a_file_shreds_its_key_so_a_kept_blob_stays_unreadable(app: TestApp) {
    let t = team(&app).await;
    let token = t.nurse.token();
    let bytes = "看護記録：ご本人の希望により延命処置は行わない。\n"
        .repeat(5000)
        .into_bytes();
    let info = upload_ok(
        &app,
        &t.nurse,
        t.main(),
        "看護記録_終末期.txt",
        bytes.clone(),
    )
    .await;
    let other = upload_ok(
        &app,
        &t.nurse,
        t.main(),
        "残るファイル.txt",
        "残る".as_bytes().to_vec(),
    )
    .await;
    let path = format!("/api/v1/files/{}", info.id);
    let kept = app.blob(&info.id).await.expect("blob");

    // Only the uploader or a group owner/admin deletes.
    let (status, body) = call(
        &app.base,
        &app.http,
        &t.doctor.token(),
        Method::DELETE,
        &path,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(download_ok(&app, &token, &info.id).await == bytes);

    let (status, _) = call(&app.base, &app.http, &token, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (kek, wrapped, deleted_at) = key_row(&app, &info.id).await;
    assert_eq!((kek, wrapped), (None, None), "the data key is destroyed");
    assert!(deleted_at.is_some(), "the row stays as a tombstone");
    assert_eq!(app.blob(&info.id).await, None, "the blob is removed too");
    let deleted = audit_rows(&app, "file_deleted").await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].file_id.as_deref(), Some(info.id.as_str()));
    assert_eq!(
        deleted[0].actor_user_id.as_deref(),
        Some(t.nurse.id().to_string().as_str())
    );

    // Even with the blob put back (a backup, a failed delete), nothing opens it.
    app.put_blob(&info.id, kept.clone()).await;
    let app = app.restart().await;
    for who in [&t.nurse, &t.doctor, &t.family] {
        let (status, body) = get(&app, &who.token(), &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        for range in [None, Some("bytes=0-15")] {
            let f = fetch(&app, &who.token(), &info.id, range).await;
            assert_eq!(f.status, StatusCode::NOT_FOUND);
            assert!(!f.body.windows(6).any(|w| w == &bytes[..6]));
        }
    }
    let (status, _) = call(
        &app.base,
        &app.http,
        &token,
        Method::PATCH,
        &path,
        Some(&json!({"tags": ["復元"]})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&app.base, &app.http, &token, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mut attempted = refusals(&app, &t.nurse.id().to_string(), &info.id).await;
    attempted.sort();
    assert_eq!(
        attempted,
        ["delete", "download", "download", "metadata", "update"]
    );
    let (_, list) = get(
        &app,
        &token,
        &format!("/api/v1/groups/{}/files", t.group.id),
    )
    .await;
    let ids: Vec<&str> = list["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert_eq!(ids, [other.id.as_str()]);
    // Nothing anywhere holds a key for it: rotation has nothing to re-wrap.
    assert_eq!(
        app.domain
            .maintenance()
            .rotate_keys()
            .await
            .expect("rotate"),
        0
    );
    let (kek, wrapped, _) = key_row(&app, &info.id).await;
    assert_eq!((kek, wrapped), (None, None));

    // The orphan sweeper removes the put-back blob and leaves live ones alone.
    assert_eq!(
        app.domain
            .maintenance()
            .sweep_orphans(0)
            .await
            .expect("sweep"),
        1
    );
    assert_eq!(app.blob(&info.id).await, None);
    assert!(app.blob(&other.id).await.is_some());
    assert!(download_ok(&app, &token, &other.id).await == "残る".as_bytes());
}
