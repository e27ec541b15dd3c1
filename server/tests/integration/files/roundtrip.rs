//! Round trips of empty, one-byte and segment-boundary files, ranges at segment edges,
//! Japanese names (and `Content-Disposition`), kinds from content, and what an upload
//! refuses: bad names, forms, and the region's size and kind policy — storing nothing.

use reqwest::StatusCode;
use serde_json::Value;
use tsunagu_protocol::accounts::{Profession, UpdatePolicy};
use tsunagu_protocol::files::FileKind;
use tsunagu_server::blob::segment::sealed_size;

use tsunagu_testkit::all_combinations;

use crate::files::harness::{
    audit_rows, code, data, fetch, free_group, get, person, upload, upload_ok, TestApp, SEG,
};

all_combinations!(
    files_of_awkward_sizes_round_trip,
    ranges_cut_at_segment_edges,
    japanese_names_round_trip_and_come_back_in_content_disposition,
    the_kind_comes_from_the_content_not_the_name,
    bad_names_forms_and_json_are_refused_and_store_nothing,
    the_region_policy_limits_size_and_kind_and_stores_nothing
);

const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";
const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0, 0,
    1, 0, 0, 0, 1, 8, 2, 0, 0, 0,
];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn files_of_awkward_sizes_round_trip(app: TestApp) {
    let nurse = person(&app, "nurse.sato", "利用者 nurse.sato", Profession::Nurse).await;
    let token = nurse.token();
    let group = free_group(&nurse.client).await;
    let sizes = [0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG, 3 * SEG + 17];
    let mut ids = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        let bytes = data(100 + i as u64, len as usize);
        let info = upload_ok(
            &app,
            &nurse,
            group.main_thread_id,
            &format!("size-{len}.bin"),
            bytes.clone(),
        )
        .await;
        assert_eq!(info.size, len);
        assert_eq!(info.name, format!("size-{len}.bin"));
        assert_eq!(info.thread_id, group.main_thread_id);
        assert_eq!(info.uploader_id, nurse.user.id);
        if len == 0 {
            assert_eq!(info.kind, FileKind::Other);
        }

        let (status, meta) = get(&app, &token, &format!("/api/v1/files/{}", info.id)).await;
        assert_eq!(status, StatusCode::OK, "{meta}");
        assert_eq!(meta["size"], len);
        assert_eq!(meta["id"], info.id.as_str());

        let f = fetch(&app, &token, &info.id, None).await;
        assert_eq!(f.status, StatusCode::OK, "{len} bytes: {}", f.json());
        assert_eq!(f.body_error, None);
        assert_eq!(f.header("content-length"), Some(len.to_string().as_str()));
        assert!(f.body == bytes, "{len} bytes come back as uploaded");
        assert_eq!(f.header("accept-ranges"), Some("bytes"));
        assert_eq!(f.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(f.header("cache-control"), Some("private, no-store"));

        // Stored sealed: one tag per segment, and no plaintext in the clear.
        let blob = app.blob(&info.id).await.expect("the blob is stored");
        assert_eq!(blob.len() as u64, sealed_size(len), "{len} bytes sealed");
        if len >= 64 {
            assert!(
                !contains(&blob, &bytes[1..64]),
                "{len} bytes: plaintext in the blob"
            );
        }
        ids.push(info.id);
    }
    // An empty file has no range to ask for.
    let f = fetch(&app, &token, &ids[0], Some("bytes=0-0")).await;
    assert_eq!(f.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(f.header("content-range"), Some("bytes */0"));

    let uploaded = audit_rows(&app, "file_uploaded").await;
    let downloaded = audit_rows(&app, "file_downloaded").await;
    for id in &ids {
        assert_eq!(
            uploaded
                .iter()
                .filter(|r| r.file_id.as_ref() == Some(id))
                .count(),
            1
        );
        assert_eq!(
            downloaded
                .iter()
                .filter(|r| r.file_id.as_ref() == Some(id))
                .count(),
            1
        );
    }
    let (_, list) = get(
        &app,
        &token,
        &format!("/api/v1/groups/{}/files?sort=largest", group.id),
    )
    .await;
    let listed: Vec<u64> = list["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["size"].as_u64().expect("size"))
        .collect();
    let mut want = sizes.to_vec();
    want.sort_by(|a, b| b.cmp(a));
    assert_eq!(listed, want);
}

async fn ranges_cut_at_segment_edges(app: TestApp) {
    let nurse = person(&app, "nurse.sato", "利用者 nurse.sato", Profession::Nurse).await;
    let token = nurse.token();
    let group = free_group(&nurse.client).await;
    let len = 3 * SEG + 17;
    let bytes = data(7, len as usize);
    let info = upload_ok(
        &app,
        &nurse,
        group.main_thread_id,
        "ranges.bin",
        bytes.clone(),
    )
    .await;

    let cases: Vec<(String, u64, u64)> = vec![
        ("bytes=0-0".into(), 0, 0),
        (format!("bytes=0-{}", SEG - 1), 0, SEG - 1),
        (format!("bytes={}-{}", SEG - 1, SEG - 1), SEG - 1, SEG - 1),
        (format!("bytes={}-{}", SEG - 1, SEG), SEG - 1, SEG),
        (format!("bytes={}-{}", SEG, SEG), SEG, SEG),
        (format!("bytes={}-{}", SEG, 2 * SEG - 1), SEG, 2 * SEG - 1),
        (format!("bytes={}-{}", SEG - 1, 2 * SEG), SEG - 1, 2 * SEG),
        (format!("bytes={}-{}", 10, 3 * SEG + 5), 10, 3 * SEG + 5),
        (format!("bytes={}-", 2 * SEG - 1), 2 * SEG - 1, len - 1),
        (format!("bytes={}-", 3 * SEG), 3 * SEG, len - 1),
        (
            format!("bytes={}-{}", 3 * SEG - 1, 3 * SEG),
            3 * SEG - 1,
            3 * SEG,
        ),
        ("bytes=-17".into(), len - 17, len - 1),
        (format!("bytes=-{}", SEG + 17), len - SEG - 17, len - 1),
        (
            format!("bytes={}-{}", len - 1, len + 1000),
            len - 1,
            len - 1,
        ),
        (format!("bytes=-{}", len + 5), 0, len - 1),
        ("bytes=0-".into(), 0, len - 1),
    ];
    for (range, a, b) in cases {
        let f = fetch(&app, &token, &info.id, Some(&range)).await;
        assert_eq!(
            f.status,
            StatusCode::PARTIAL_CONTENT,
            "{range}: {}",
            f.json()
        );
        assert_eq!(f.body_error, None, "{range}");
        assert_eq!(
            f.header("content-range"),
            Some(format!("bytes {a}-{b}/{len}").as_str()),
            "{range}"
        );
        assert_eq!(
            f.header("content-length"),
            Some((b - a + 1).to_string().as_str()),
            "{range}"
        );
        assert!(
            f.body == bytes[a as usize..=b as usize],
            "{range}: the bytes of the range"
        );
    }
    // The audit entry records the range served.
    let rows = audit_rows(&app, "file_downloaded").await;
    assert!(
        rows.iter()
            .any(|r| r.detail["start"] == SEG - 1 && r.detail["end"] == SEG + 1),
        "{rows:?}"
    );

    for range in [
        format!("bytes={len}-"),
        format!("bytes={}-{}", len + 10, len + 20),
        "bytes=-0".into(),
    ] {
        let f = fetch(&app, &token, &info.id, Some(&range)).await;
        assert_eq!(f.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(code(&f.json()), "range_not_satisfiable");
        assert_eq!(
            f.header("content-range"),
            Some(format!("bytes */{len}").as_str()),
            "{range}"
        );
    }
    // Several ranges, or another unit: the whole file, as HTTP allows.
    for range in ["bytes=0-1,5-6", "items=0-1"] {
        let f = fetch(&app, &token, &info.id, Some(range)).await;
        assert_eq!(f.status, StatusCode::OK, "{range}");
        assert!(f.body == bytes, "{range}");
    }
    for range in ["bytes=abc", "bytes=1", "bytes=x-5"] {
        let f = fetch(&app, &token, &info.id, Some(range)).await;
        assert_eq!(f.status, StatusCode::BAD_REQUEST, "{range}");
    }
}

/// The name `filename*=UTF-8''…` carries, decoded.
fn extended_filename(disposition: &str) -> String {
    let encoded = disposition
        .split("filename*=UTF-8''")
        .nth(1)
        .unwrap_or_else(|| panic!("no filename* in {disposition:?}"));
    percent_encoding::percent_decode_str(encoded.split(';').next().unwrap_or_default())
        .decode_utf8()
        .expect("UTF-8")
        .into_owned()
}

async fn japanese_names_round_trip_and_come_back_in_content_disposition(app: TestApp) {
    let nurse = person(&app, "nurse.sato", "利用者 nurse.sato", Profession::Nurse).await;
    let token = nurse.token();
    let group = free_group(&nurse.client).await;
    let names = [
        (
            "訪問看護報告書 2024年4月（山田様）.pdf",
            "訪問看護報告書 2024年4月（山田様）.pdf",
        ),
        ("お薬手帳_ｵｸｽﾘ_①.txt", "お薬手帳_ｵｸｽﾘ_①.txt"),
        (
            "100% 確認済み+メモ&控え=1.txt",
            "100% 確認済み+メモ&控え=1.txt",
        ),
        (
            "報告\"書\"; filename=evil.exe",
            "報告\"書\"; filename=evil.exe",
        ),
        ("  前後に空白.txt  ", "前後に空白.txt"),
        ("絵文字🏥.txt", "絵文字🏥.txt"),
    ];
    for (sent, kept) in names {
        let info = upload_ok(
            &app,
            &nurse,
            group.main_thread_id,
            sent,
            "本文".as_bytes().to_vec(),
        )
        .await;
        assert_eq!(info.name, kept);
        let (_, meta) = get(&app, &token, &format!("/api/v1/files/{}", info.id)).await;
        assert_eq!(meta["name"], kept);
        let f = fetch(&app, &token, &info.id, None).await;
        assert_eq!(f.status, StatusCode::OK);
        let cd = f
            .header("content-disposition")
            .expect("Content-Disposition");
        assert!(cd.is_ascii(), "{cd}");
        assert!(cd.starts_with("attachment; filename=\""), "{cd}");
        assert_eq!(extended_filename(cd), kept, "{cd}");
        // The ASCII fallback cannot end the quoted string or add a parameter.
        let fallback = cd.trim_start_matches("attachment; filename=\"");
        let fallback = &fallback[..fallback.find('"').expect("closing quote")];
        assert!(
            fallback
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "{cd}"
        );
        assert_eq!(cd.matches("filename=\"").count(), 1, "{cd}");
        assert_eq!(cd.matches("filename*=").count(), 1, "{cd}");
    }
    // The name may come in a header instead (percent-encoded UTF-8).
    let response = app
        .http
        .post(app.url(&format!("/api/v1/threads/{}/files", group.main_thread_id)))
        .bearer_auth(&token)
        .header("x-file-name", "%E4%BB%8B%E8%AD%B7%E8%A8%88%E7%94%BB.pdf")
        .body(PDF.to_vec())
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::CREATED);
    let v: Value = response.json().await.expect("json");
    assert_eq!(v["name"], "介護計画.pdf");
    // And the library finds them by a Japanese substring.
    let (_, list) = get(
        &app,
        &token,
        &format!(
            "/api/v1/groups/{}/files?q=%E5%B1%B1%E7%94%B0%E6%A7%98",
            group.id
        ),
    )
    .await;
    let found: Vec<&str> = list["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(found, ["訪問看護報告書 2024年4月（山田様）.pdf"]);
}

async fn the_kind_comes_from_the_content_not_the_name(app: TestApp) {
    let nurse = person(&app, "nurse.sato", "利用者 nurse.sato", Profession::Nurse).await;
    let token = nurse.token();
    let group = free_group(&nurse.client).await;
    // A long text whose 64 KiB sniffing window ends inside a character (65536 = 3 ×
    // 21845 + 1: the window keeps one byte of a three-byte あ).
    let long_text = "あ".repeat(30_000).into_bytes();
    let cases: Vec<(&str, Vec<u8>, FileKind, &str)> = vec![
        ("紹介状.txt", PDF.to_vec(), FileKind::Pdf, "application/pdf"),
        ("写真.pdf", PNG.to_vec(), FileKind::Image, "image/png"),
        (
            "バイタル.png",
            "体温 36.8℃、血圧 128/76\n".as_bytes().to_vec(),
            FileKind::Text,
            "text/plain; charset=utf-8",
        ),
        (
            "長文.xlsx",
            long_text,
            FileKind::Text,
            "text/plain; charset=utf-8",
        ),
        (
            "検査結果.pdf",
            vec![0, 1, 2, 3, 4, 5, 6, 7],
            FileKind::Other,
            "application/octet-stream",
        ),
        // Active content is never served under its own type.
        (
            "script.txt",
            b"<html><script>alert(1)</script></html>".to_vec(),
            FileKind::Other,
            "application/octet-stream",
        ),
    ];
    for (name, bytes, kind, content_type) in cases {
        let info = upload_ok(&app, &nurse, group.main_thread_id, name, bytes.clone()).await;
        assert_eq!(info.kind, kind, "{name}");
        assert_eq!(info.content_type, content_type, "{name}");
        let f = fetch(&app, &token, &info.id, None).await;
        assert_eq!(f.header("content-type"), Some(content_type), "{name}");
        assert!(f.body == bytes, "{name}");
    }
    let (_, list) = get(
        &app,
        &token,
        &format!("/api/v1/groups/{}/files?kind=pdf", group.id),
    )
    .await;
    let found: Vec<&str> = list["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(found, ["紹介状.txt"]);
}

/// Nothing of any upload is left: no blob, no staging file, no multipart part, no row.
async fn nothing_stored(app: &TestApp, group: &str, token: &str, what: &str) {
    assert_eq!(
        app.blob_names().await,
        Vec::<String>::new(),
        "{what}: blobs"
    );
    assert_eq!(
        app.stored_files(),
        Vec::<std::path::PathBuf>::new(),
        "{what}: files in the storage"
    );
    let (_, list) = get(app, token, &format!("/api/v1/groups/{group}/files")).await;
    assert_eq!(list["files"], serde_json::json!([]), "{what}: library");
    assert!(
        audit_rows(app, "file_uploaded").await.is_empty(),
        "{what}: audit"
    );
    let mut conn = app.store().conn().await.expect("conn");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM files")
        .fetch_one(&mut *conn)
        .await
        .expect("count");
    assert_eq!(n, 0, "{what}: file rows");
}

async fn bad_names_forms_and_json_are_refused_and_store_nothing(app: TestApp) {
    let nurse = person(&app, "nurse.sato", "利用者 nurse.sato", Profession::Nurse).await;
    let token = nurse.token();
    let group = free_group(&nurse.client).await;
    let thread = group.main_thread_id;
    let long = "長".repeat(256);
    for name in [
        "../../etc/passwd",
        "a/b.pdf",
        "/absolute.pdf",
        "a\\b.pdf",
        "..\\..\\boot.ini",
        "bell\u{7}.txt",
        "line\nbreak.txt",
        "cr\rlf.txt",
        "tab\there.txt",
        "nul\u{0}.txt",
        "del\u{7f}.txt",
        "c1\u{85}.txt",
        "",
        "   ",
        ".",
        "..",
        long.as_str(),
    ] {
        // (A small body: the name is refused before the body is read.)
        let (status, body) = upload(&app, &token, thread, name, data(1, 100)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}: {body}");
        assert_eq!(code(&body), "invalid_request", "{name:?}");
    }
    // No name at all.
    let response = app
        .http
        .post(app.url(&format!("/api/v1/threads/{thread}/files")))
        .bearer_auth(&token)
        .body(PDF.to_vec())
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // A form or JSON instead of the raw bytes.
    for (content_type, body) in [
        (
            "multipart/form-data; boundary=XyZ",
            "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\r\n%PDF-1.7\r\n--XyZ--\r\n",
        ),
        ("Multipart/Form-Data; boundary=q", "--q--\r\n"),
        ("application/json", "{\"name\": \"a.pdf\"}"),
    ] {
        let response = app
            .http
            .post(app.url(&format!("/api/v1/threads/{thread}/files")))
            .query(&[("name", "a.pdf")])
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("upload");
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
        let v: Value = response.json().await.expect("json");
        assert_eq!(code(&v), "unsupported_media_type");
    }
    nothing_stored(
        &app,
        &group.id.to_string(),
        &token,
        "refused names and forms",
    )
    .await;
}

async fn the_region_policy_limits_size_and_kind_and_stores_nothing(app: TestApp) {
    let nurse = person(&app, "nurse.sato", "利用者 nurse.sato", Profession::Nurse).await;
    let token = nurse.token();
    let group = free_group(&nurse.client).await;
    let thread = group.main_thread_id;
    let gid = group.id.to_string();

    // Size: checked while streaming; several segments are sealed before the limit trips.
    let max = 200_000u64;
    let policy = app
        .admin
        .update_policy(&UpdatePolicy {
            max_file_bytes: Some(max),
            ..Default::default()
        })
        .await
        .expect("policy");
    assert_eq!(policy.max_file_bytes, max);
    let (status, body) = upload(
        &app,
        &token,
        thread,
        "大きすぎる.bin",
        data(1, max as usize + 1),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(code(&body), "payload_too_large");
    // The same through a chunked (streamed) body.
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(
        data(2, max as usize + 1)
            .chunks(40_000)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    ));
    let (status, body) = upload(&app, &token, thread, "大きすぎる2.bin", body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    nothing_stored(&app, &gid, &token, "over the size limit").await;

    // Kinds: from the content, whatever the name says.
    app.admin
        .update_policy(&UpdatePolicy {
            allowed_file_kinds: Some(vec!["pdf".into(), "image".into()]),
            ..Default::default()
        })
        .await
        .expect("policy");
    for (name, bytes) in [
        ("偽装.pdf", "ただのテキスト".as_bytes().to_vec()),
        ("バイナリ.png", data(3, 1000)),
        ("長いテキスト.pdf", "い".repeat(50_000).into_bytes()),
        ("空.pdf", Vec::new()),
    ] {
        let (status, body) = upload(&app, &token, thread, name, bytes).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{name}: {body}");
        assert_eq!(code(&body), "unsupported_media_type", "{name}");
    }
    nothing_stored(&app, &gid, &token, "kinds not allowed").await;

    // What the policy allows goes through, up to the byte.
    let mut exact = PDF.to_vec();
    exact.resize(max as usize, b'\n');
    let info = upload_ok(&app, &nurse, thread, "ちょうど.txt", exact.clone()).await;
    assert_eq!((info.kind, info.size), (FileKind::Pdf, max));
    let png = upload_ok(&app, &nurse, thread, "写真.bin", PNG.to_vec()).await;
    assert_eq!(png.kind, FileKind::Image);
    assert_eq!(app.blob_names().await.len(), 2);
}
