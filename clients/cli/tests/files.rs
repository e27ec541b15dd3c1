//! Files and audit reports through the SDK and the `tsunagu` binary against a real
//! server started in-process: an upload/download round trip compares bytes, a download
//! never overwrites without `--force`, and the audit CSV opens with the UTF-8 BOM that
//! Japanese Excel needs.

use std::path::Path;

use tsunagu_client::protocol::messaging::{CreateGroup, GroupKind};
use tsunagu_client::{AuditFilter, ByteRange, Client, LibraryFilter};

#[allow(dead_code)]
mod kit;

const PASSWORD: &str = tsunagu_testkit::ADMIN_PASSWORD;

async fn start_server() -> kit::Server {
    kit::start_server().await
}

async fn tsunagu(args: &[&str], stdin: Option<&str>, cwd: &Path) -> (i32, Vec<u8>, String) {
    kit::run(args, stdin, Some(cwd)).await
}

/// Bytes that are not a multiple of anything the server segments by, and not all alike.
fn sample(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_upload_and_download_round_trip_and_audit_csv_has_a_bom() {
    let server = start_server().await;
    let work = server.dir.path();
    let session = work.join("session.json");
    let s = session.to_str().unwrap();

    // A group to upload into, made with the SDK.
    let admin = Client::new(&server.base).unwrap();
    admin.login("admin", PASSWORD, None).await.unwrap();
    let group = admin
        .create_group(&CreateGroup {
            kind: GroupKind::Free,
            name: "ファイル共有".into(),
            description: None,
            patient: None,
        })
        .await
        .unwrap();
    let thread = group.main_thread_id.to_string();

    let (code, _, err) = tsunagu(
        &[
            "login",
            "--server",
            &server.base,
            "--login",
            "admin",
            "--password-stdin",
            "--session-file",
            s,
        ],
        Some(&format!("{PASSWORD}\n")),
        work,
    )
    .await;
    assert_eq!(code, 0, "{err}");

    // 200 KiB + 7: several encryption segments and a ragged end.
    let content = sample(200 * 1024 + 7);
    let original = work.join("訪問看護報告書.bin");
    std::fs::write(&original, &content).unwrap();

    let (code, out, err) = tsunagu(
        &[
            "upload",
            "--json",
            "--session-file",
            s,
            "--thread",
            &thread,
            original.to_str().unwrap(),
        ],
        None,
        work,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let info: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(info["name"], "訪問看護報告書.bin");
    assert_eq!(info["size"], content.len() as u64);
    let file_id = info["id"].as_str().unwrap().to_owned();

    // Round trip to an explicit path.
    let copy = work.join("copy.bin");
    let (code, _, err) = tsunagu(
        &[
            "download",
            "--session-file",
            s,
            &file_id,
            "-o",
            copy.to_str().unwrap(),
        ],
        None,
        work,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(&copy).unwrap() == content, "bytes differ");

    // An existing file is never overwritten without --force, and is left intact.
    std::fs::write(&copy, b"keep me").unwrap();
    let (code, _, err) = tsunagu(
        &[
            "download",
            "--session-file",
            s,
            &file_id,
            "-o",
            copy.to_str().unwrap(),
        ],
        None,
        work,
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&copy).unwrap(), b"keep me");
    let (code, _, err) = tsunagu(
        &[
            "download",
            "--session-file",
            s,
            "--force",
            &file_id,
            "-o",
            copy.to_str().unwrap(),
        ],
        None,
        work,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(&copy).unwrap() == content, "bytes differ");

    // Without -o, the server's (Japanese) name in the current directory.
    let elsewhere = work.join("downloads");
    std::fs::create_dir(&elsewhere).unwrap();
    let (code, _, err) = tsunagu(
        &["download", "--session-file", s, &file_id],
        None,
        &elsewhere,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(elsewhere.join("訪問看護報告書.bin")).unwrap() == content);
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 1);

    // An unknown file is a server refusal (exit 1), and writes nothing.
    let (code, _, _) = tsunagu(
        &[
            "download",
            "--session-file",
            s,
            "00000000-0000-7000-8000-000000000000",
            "-o",
            work.join("none.bin").to_str().unwrap(),
        ],
        None,
        work,
    )
    .await;
    assert_eq!(code, 1);
    assert!(!work.join("none.bin").exists());

    // The audit report as CSV: BOM first, then the header, then the file's entries.
    let csv_path = work.join("audit.csv");
    let (code, _, err) = tsunagu(
        &[
            "audit",
            "file-access",
            "--session-file",
            s,
            "--file",
            &file_id,
            "--csv",
            "-o",
            csv_path.to_str().unwrap(),
        ],
        None,
        work,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let csv = std::fs::read(&csv_path).unwrap();
    assert!(
        csv.starts_with(b"\xEF\xBB\xBF"),
        "the CSV starts with the BOM"
    );
    let text = String::from_utf8(csv[3..].to_vec()).unwrap();
    assert!(text.starts_with("time_jst,"), "{text}");
    assert!(text.contains("file_uploaded"), "{text}");
    assert!(text.contains("file_downloaded"), "{text}");
    assert!(text.contains(&file_id));
    assert!(text.contains("\r\n"));

    // The same to standard output, and as JSON entries.
    let (code, out, _) = tsunagu(
        &[
            "audit",
            "file-access",
            "--session-file",
            s,
            "--file",
            &file_id,
            "--csv",
        ],
        None,
        work,
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.starts_with(b"\xEF\xBB\xBF"));
    let (code, out, _) = tsunagu(
        &[
            "audit",
            "file-access",
            "--json",
            "--session-file",
            s,
            "--file",
            &file_id,
        ],
        None,
        work,
    )
    .await;
    assert_eq!(code, 0);
    let listing: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let downloads = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "file_downloaded")
        .count();
    assert_eq!(downloads, 3, "{listing}");

    let (code, out, _) = tsunagu(
        &["audit", "verify", "--json", "--session-file", s],
        None,
        work,
    )
    .await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["intact"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_file_calls_ranges_library_search_and_delete() {
    let server = start_server().await;
    let admin = Client::new(&server.base).unwrap();
    admin.login("admin", PASSWORD, None).await.unwrap();
    let group = admin
        .create_group(&CreateGroup {
            kind: GroupKind::Free,
            name: "連絡".into(),
            description: None,
            patient: None,
        })
        .await
        .unwrap();
    let content = sample(150_001);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        content.chunks(10_000).map(|c| Ok(c.to_vec())).collect();
    let info = admin
        .upload_file(
            group.main_thread_id,
            "検査結果.dat",
            futures_util::stream::iter(chunks),
            Some(content.len() as u64),
        )
        .await
        .unwrap();
    assert_eq!(info.size, content.len() as u64);

    let whole = admin.download_file(&info.id, None).await.unwrap();
    assert_eq!(whole.total_size, Some(content.len() as u64));
    assert_eq!(whole.file_name.as_deref(), Some("検査結果.dat"));
    assert!(whole.bytes().await.unwrap() == content);

    let part = admin
        .download_file(&info.id, Some(ByteRange::Inclusive(65_530, 65_545)))
        .await
        .unwrap();
    assert_eq!(part.status.as_u16(), 206);
    assert_eq!(part.total_size, Some(content.len() as u64));
    assert_eq!(part.bytes().await.unwrap(), &content[65_530..=65_545]);
    let tail = admin
        .download_file(&info.id, Some(ByteRange::Last(5)))
        .await
        .unwrap();
    assert_eq!(tail.bytes().await.unwrap(), &content[content.len() - 5..]);

    let meta = admin.file_info(&info.id).await.unwrap();
    assert_eq!(meta, info);
    let library = admin
        .file_library(
            group.id,
            &LibraryFilter {
                q: Some("検査".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(library.files.len(), 1);
    let found = admin.search("検査結果").await.unwrap();
    assert_eq!(found.files.len(), 1);

    let page = admin
        .audit_file_access(&AuditFilter::file(&info.id))
        .await
        .unwrap();
    assert!(page.entries.iter().any(|e| e.action == "file_uploaded"));
    let csv = admin
        .audit_events_csv(&AuditFilter::default())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(csv.starts_with(b"\xEF\xBB\xBF"));

    admin.delete_file(&info.id).await.unwrap();
    let gone = admin.download_file(&info.id, None).await.unwrap_err();
    assert_eq!(gone.status().map(|s| s.as_u16()), Some(404));
    assert!(admin.audit_verify().await.unwrap().intact);
}
