//! Tampering with stored blobs: a flipped bit, a truncated blob, a dropped last segment,
//! reordered segments, a blob swapped with another file's… Every download fails with an
//! integrity error — a clean `500 integrity_error` when the first segment served is bad,
//! a broken body when a later one is — never a wrong byte, and every failure is audited
//! (`file_integrity_failed`, appended asynchronously for failures mid-stream).

use reqwest::StatusCode;
use tsunagu_protocol::accounts::Profession;

use tsunagu_testkit::all_combinations;

use crate::files::harness::{
    code, data, fetch, free_group, person, try_fetch_from, upload_ok, wait_for_audit, TestApp, SEG,
    TAG,
};

all_combinations!(tampered_blobs_never_yield_wrong_bytes_and_are_audited);

/// Where the download must fail.
#[derive(Debug, Clone, Copy)]
enum Fails {
    /// Before any byte: `500 integrity_error`.
    AtStart,
    /// After the headers: the body breaks off before this segment's first byte.
    MidStream,
}

/// Plaintext size of the files under test: four segments, the last one short.
const LEN: u64 = 3 * SEG + 1000;
const SEALED_SEG: usize = (SEG + TAG) as usize;

fn segment(blob: &[u8], i: usize) -> Vec<u8> {
    let start = i * SEALED_SEG;
    blob[start..(start + SEALED_SEG).min(blob.len())].to_vec()
}

fn swap_segments(blob: &[u8], a: usize, b: usize) -> Vec<u8> {
    // Only for full-size segments.
    let mut out = blob.to_vec();
    let (sa, sb) = (segment(blob, a), segment(blob, b));
    out[a * SEALED_SEG..(a + 1) * SEALED_SEG].copy_from_slice(&sb);
    out[b * SEALED_SEG..(b + 1) * SEALED_SEG].copy_from_slice(&sa);
    out
}

type Tamper = Box<dyn Fn(&[u8], &[u8]) -> Option<Vec<u8>>>;

struct Case {
    what: &'static str,
    /// The stored blob and another file's blob of the same size → the tampered blob
    /// (`None`: remove it).
    tamper: Tamper,
    range: Option<String>,
    fails: Fails,
    /// The segment whose check fails.
    segment: u64,
}

fn case(
    what: &'static str,
    fails: Fails,
    segment: u64,
    tamper: impl Fn(&[u8], &[u8]) -> Option<Vec<u8>> + 'static,
) -> Case {
    Case {
        what,
        tamper: Box::new(tamper),
        range: None,
        fails,
        segment,
    }
}

fn flip(at: usize) -> impl Fn(&[u8], &[u8]) -> Option<Vec<u8>> {
    move |b, _| {
        let mut b = b.to_vec();
        b[at] ^= 0x01;
        Some(b)
    }
}

fn cut(to: usize) -> impl Fn(&[u8], &[u8]) -> Option<Vec<u8>> {
    move |b, _| Some(b[..to].to_vec())
}

fn cases() -> Vec<Case> {
    let last = (LEN / SEG) as usize; // index of the last segment (3)
    let sealed_len = LEN as usize + (last + 1) * TAG as usize;
    vec![
        case(
            "a bit flipped in the first segment",
            Fails::AtStart,
            0,
            flip(100),
        ),
        case(
            "a bit flipped in the first segment's tag",
            Fails::AtStart,
            0,
            flip(SEALED_SEG - 1),
        ),
        case(
            "a bit flipped in the third segment",
            Fails::MidStream,
            2,
            flip(2 * SEALED_SEG + 5),
        ),
        case(
            "a bit flipped in the last byte",
            Fails::MidStream,
            3,
            flip(sealed_len - 1),
        ),
        case(
            "truncated by one byte",
            Fails::MidStream,
            3,
            cut(sealed_len - 1),
        ),
        case(
            "truncated inside the second segment",
            Fails::MidStream,
            1,
            cut(SEALED_SEG + 500),
        ),
        case(
            "the last segment dropped",
            Fails::MidStream,
            3,
            cut(3 * SEALED_SEG),
        ),
        case(
            "the first two segments swapped",
            Fails::AtStart,
            0,
            |b, _| Some(swap_segments(b, 0, 1)),
        ),
        case(
            "the middle segments swapped",
            Fails::MidStream,
            1,
            |b, _| Some(swap_segments(b, 1, 2)),
        ),
        case(
            "the first segment replayed in place of the second",
            Fails::MidStream,
            1,
            |b, _| {
                let mut out = b.to_vec();
                out[SEALED_SEG..2 * SEALED_SEG].copy_from_slice(&segment(b, 0));
                Some(out)
            },
        ),
        case(
            "the blob swapped with another file's",
            Fails::AtStart,
            0,
            |_, other| Some(other.to_vec()),
        ),
        case(
            "the second segment spliced in from another file",
            Fails::MidStream,
            1,
            |b, other| {
                let mut out = b.to_vec();
                out[SEALED_SEG..2 * SEALED_SEG].copy_from_slice(&segment(other, 1));
                Some(out)
            },
        ),
        case("the blob removed", Fails::AtStart, 0, |_, _| None),
        case("the blob truncated to nothing", Fails::AtStart, 0, cut(0)),
        Case {
            range: Some(format!("bytes={}-", 3 * SEG)),
            ..case(
                "the last segment dropped, its range requested",
                Fails::AtStart,
                3,
                cut(3 * SEALED_SEG),
            )
        },
        Case {
            range: Some(format!("bytes={}-{}", 2 * SEG + 10, 2 * SEG + 20)),
            ..case(
                "a bit flipped in the third segment, a range inside it requested",
                Fails::AtStart,
                2,
                flip(2 * SEALED_SEG + 5),
            )
        },
        Case {
            range: Some(format!("bytes={}-", SEG - 10)),
            ..case(
                "a bit flipped in the third segment, a range from the first requested",
                Fails::MidStream,
                2,
                flip(2 * SEALED_SEG + 5),
            )
        },
    ]
}

/// The failure is in the audit log: who, which file, which segment.
async fn check_audited(app: &TestApp, file_id: &str, actor: &str, c: &Case) {
    let rows = wait_for_audit(app, "file_integrity_failed", 1, |r| {
        r.file_id.as_deref() == Some(file_id)
    })
    .await;
    let row = &rows[0];
    assert_eq!(row.outcome, "failure", "{}", c.what);
    assert_eq!(row.actor_user_id.as_deref(), Some(actor), "{}", c.what);
    assert_eq!(
        row.detail["segment"].as_u64(),
        Some(c.segment),
        "{}: {row:?}",
        c.what
    );
}

async fn tampered_blobs_never_yield_wrong_bytes_and_are_audited(app: TestApp) {
    let nurse = person(&app, "nurse.sato", "利用者 nurse.sato", Profession::Nurse).await;
    let token = nurse.token();
    let group = free_group(&nurse.client).await;
    let thread = group.main_thread_id;
    let other = upload_ok(&app, &nurse, thread, "other.bin", data(999, LEN as usize)).await;
    let other_blob = app.blob(&other.id).await.expect("other blob");
    assert_eq!(
        other_blob.len(),
        LEN as usize + 4 * TAG as usize,
        "segment layout"
    );

    let mut failures = Vec::new();
    let mut no_response = Vec::new();
    for (i, c) in cases().into_iter().enumerate() {
        let plain = data(i as u64 + 1, LEN as usize);
        let file = upload_ok(
            &app,
            &nurse,
            thread,
            &format!("case-{i}.bin"),
            plain.clone(),
        )
        .await;
        let blob = app.blob(&file.id).await.expect("blob");
        match (c.tamper)(&blob, &other_blob) {
            Some(bad) => app.put_blob(&file.id, bad).await,
            None => app.remove_blob(&file.id).await,
        }

        let f = match try_fetch_from(&app.base, &app.http, &token, &file.id, c.range.as_deref())
            .await
        {
            Ok(f) => f,
            // The failure came right after the first segment, and the server dropped
            // the connection before its headers were flushed: the client got nothing —
            // which is also never a wrong byte.
            Err(e) if matches!(c.fails, Fails::MidStream) => {
                no_response.push(format!("{}: {e}", c.what));
                check_audited(&app, &file.id, &nurse.id().to_string(), &c).await;
                continue;
            }
            Err(e) => panic!("{}: download request: {e}", c.what),
        };
        let range_start = c
            .range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split('-').next())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        // Never a wrong byte, whatever else happens.
        let served = &plain[range_start as usize..];
        assert!(
            served.starts_with(&f.body) || f.status == StatusCode::INTERNAL_SERVER_ERROR,
            "{}: wrong bytes served",
            c.what
        );
        let ok = match c.fails {
            Fails::AtStart => {
                f.status == StatusCode::INTERNAL_SERVER_ERROR
                    && code(&f.json()) == "integrity_error"
            }
            Fails::MidStream => {
                f.status.is_success()
                    && served.starts_with(&f.body)
                    && range_start + (f.body.len() as u64) <= c.segment * SEG
                    && f.body_error.is_some()
            }
        };
        if !ok {
            failures.push(format!(
                "{}: expected {:?} at segment {}, got {} {:?} with {} body bytes (body error: {:?})",
                c.what,
                c.fails,
                c.segment,
                f.status,
                f.json(),
                f.body.len(),
                f.body_error
            ));
            continue;
        }
        check_audited(&app, &file.id, &nurse.id().to_string(), &c).await;
    }
    if !no_response.is_empty() {
        eprintln!(
            "note: the connection closed before any response for:\n{}",
            no_response.join("\n")
        );
    }
    assert!(
        failures.is_empty(),
        "tampering not reported as an integrity failure:\n{}",
        failures.join("\n")
    );

    // The untouched file still reads, and a range that avoids a bad segment is served:
    // only the segments a range needs are read and checked.
    assert_eq!(
        crate::files::harness::download_ok(&app, &token, &other.id).await,
        data(999, LEN as usize)
    );
    let plain = data(500, LEN as usize);
    let file = upload_ok(&app, &nurse, thread, "partly-bad.bin", plain.clone()).await;
    let blob = app.blob(&file.id).await.expect("blob");
    app.put_blob(
        &file.id,
        flip(2 * SEALED_SEG + 5)(&blob, &[]).expect("tampered"),
    )
    .await;
    let f = fetch(
        &app,
        &token,
        &file.id,
        Some(&format!("bytes=0-{}", 2 * SEG - 1)),
    )
    .await;
    assert_eq!(f.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(f.body, &plain[..2 * SEG as usize]);
}
