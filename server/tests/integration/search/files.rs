//! The text inside files: PDF, .docx, .xlsx and plain text generated here, found once
//! the background extraction has run; gone with the file; hostile files survived.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use tsunagu_protocol::files::{SearchHitKind, SearchQuery};
use tsunagu_server::domain::search::extract::sample;
use tsunagu_testkit::{both_backends, team, Person, TestApp};

use super::results;
use crate::files::harness::{call, upload_ok};

both_backends!(
    text_inside_pdf_docx_xlsx_and_text_files_is_found_and_goes_with_the_file,
    a_zip_bomb_and_a_truncated_pdf_are_survived_and_found_by_name,
);

/// The names of the files `q` finds for `who`.
async fn file_names(who: &Person, q: &str) -> Vec<String> {
    let mut v: Vec<String> = results(who, &SearchQuery::text(q))
        .await
        .files
        .into_iter()
        .map(|f| f.name)
        .collect();
    v.sort();
    v
}

/// Waits (polling, bounded) until every upload's text extraction has finished.
async fn extracted(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut conn = app.store().conn().await.expect("conn");
        let (pending,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM search_docs WHERE extract_state = 0")
                .fetch_one(&mut *conn)
                .await
                .expect("pending");
        if pending == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "text extraction did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text_inside_pdf_docx_xlsx_and_text_files_is_found_and_goes_with_the_file(app: TestApp) {
    let t = team(&app).await;
    let pdf = upload_ok(
        &app,
        &t.nurse,
        t.main(),
        "報告.pdf",
        sample::pdf("退院時サマリー 褥瘡なし"),
    )
    .await;
    let docx = upload_ok(
        &app,
        &t.nurse,
        t.main(),
        "計画.docx",
        sample::docx("訪問看護計画書", "ＰＥＧ管理 週3回"),
    )
    .await;
    let xlsx = upload_ok(
        &app,
        &t.nurse,
        t.main(),
        "服薬.xlsx",
        sample::xlsx(&["服薬一覧", "ｱﾑﾛｼﾞﾋﾟﾝ"], "2.5"),
    )
    .await;
    upload_ok(
        &app,
        &t.nurse,
        t.main(),
        "メモ.txt",
        "申し送り: 夜間の徘徊あり".as_bytes().to_vec(),
    )
    .await;
    assert_eq!(pdf.kind, tsunagu_protocol::files::FileKind::Pdf);
    assert_eq!(docx.kind, tsunagu_protocol::files::FileKind::Word);
    assert_eq!(xlsx.kind, tsunagu_protocol::files::FileKind::Excel);
    extracted(&app).await;
    let family = &t.family;
    assert_eq!(file_names(family, "退院時サマリー").await, ["報告.pdf"]);
    assert_eq!(file_names(family, "褥瘡").await, ["報告.pdf"]);
    assert_eq!(file_names(family, "訪問看護計画").await, ["計画.docx"]);
    assert_eq!(file_names(family, "peg管理").await, ["計画.docx"]);
    assert_eq!(file_names(family, "アムロジピン").await, ["服薬.xlsx"]);
    assert_eq!(file_names(family, "2.5").await, ["服薬.xlsx"]);
    assert_eq!(file_names(family, "徘徊").await, ["メモ.txt"]);
    assert_eq!(file_names(family, "服薬").await, ["服薬.xlsx"]);
    // The snippet of a content hit shows the text around it.
    let r = results(family, &SearchQuery::text("徘徊")).await;
    assert_eq!(r.hits[0].kind, SearchHitKind::File);
    assert!(r.hits[0].snippet.iter().any(|p| p.hit && p.text == "徘徊"));
    // Tags are searchable, and changing them keeps the extracted text.
    t.nurse
        .client
        .update_file(
            &pdf.id,
            &tsunagu_protocol::files::UpdateFile {
                folder: None,
                tags: Some(vec!["退院".into(), "重要書類".into()]),
            },
        )
        .await
        .expect("tag");
    assert_eq!(file_names(family, "重要書類").await, ["報告.pdf"]);
    assert_eq!(file_names(family, "褥瘡なし").await, ["報告.pdf"]);
    // Deleted (crypto-shredded): nothing of it is searchable any more.
    for f in [&pdf, &docx] {
        let (status, _) = call(
            &app.base,
            &app.http,
            &t.nurse.token(),
            Method::DELETE,
            &format!("/api/v1/files/{}", f.id),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    for q in [
        "退院時サマリー",
        "重要書類",
        "報告",
        "訪問看護計画",
        "計画.docx",
        "peg",
    ] {
        assert!(file_names(family, q).await.is_empty(), "{q}");
    }
    let mut conn = app.store().conn().await.expect("conn");
    let (left,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM search_docs WHERE source_id = $1 OR source_id = $2")
            .bind(&pdf.id)
            .bind(&docx.id)
            .fetch_one(&mut *conn)
            .await
            .expect("count");
    assert_eq!(left, 0);
    let (body_like,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM search_docs WHERE body LIKE '%退院時%'")
            .fetch_one(&mut *conn)
            .await
            .expect("count");
    assert_eq!(body_like, 0, "no extracted text left behind");
}

async fn a_zip_bomb_and_a_truncated_pdf_are_survived_and_found_by_name(app: TestApp) {
    let t = team(&app).await;
    // 256 MiB of document.xml in a few hundred KiB.
    let bomb = sample::docx_bomb(256 * 1024 * 1024);
    let before_kib = tsunagu_testkit::rss_kib(std::process::id()).unwrap_or(0);
    let rss = tsunagu_testkit::RssSampler::start(std::process::id());
    assert!(bomb.len() < 2 * 1024 * 1024);
    let bomb = upload_ok(&app, &t.nurse, t.main(), "爆弾.docx", bomb).await;
    assert_eq!(bomb.kind, tsunagu_protocol::files::FileKind::Word);
    let full = sample::pdf("途中で切れた文書");
    let cut = full[..full.len() / 2].to_vec();
    let truncated = upload_ok(&app, &t.nurse, t.main(), "途中.pdf", cut).await;
    extracted(&app).await;
    let peak_growth_kib = rss.finish().saturating_sub(before_kib);
    println!("peak RSS growth during the hostile files: {peak_growth_kib} KiB");
    assert_eq!(file_names(&t.nurse, "爆弾").await, ["爆弾.docx"]);
    assert_eq!(file_names(&t.nurse, "途中").await, ["途中.pdf"]);
    // Neither yielded text; both are marked as having none.
    let mut conn = app.store().conn().await.expect("conn");
    for (id, refused) in [(&bomb.id, true), (&truncated.id, false)] {
        let (state, body): (i64, String) =
            sqlx::query_as("SELECT extract_state, body FROM search_docs WHERE source_id = $1")
                .bind(id)
                .fetch_one(&mut *conn)
                .await
                .expect("state");
        if refused {
            assert_eq!(state, 2, "the bomb is refused, nothing inflated");
        }
        // The truncated PDF's content stream is cut: at most its name is searchable.
        assert!(!body.contains("途中で切れた文書"), "{body}");
    }
    // The server is fine. (The peak is printed, not asserted: the other tests of this
    // binary run alongside in the same process. The bomb is refused before anything is
    // inflated — its state above — and the caps are unit-tested in `extract`.)
    t.nurse
        .client
        .post_text(t.main(), "まだ動いている")
        .await
        .expect("post");
    assert_eq!(
        results(&t.nurse, &SearchQuery::text("まだ動いて"))
            .await
            .messages
            .len(),
        1
    );
}
