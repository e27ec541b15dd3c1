//! What a query finds among messages: term lengths, folding, phrases, AND, edits and
//! deletes, ranking, snippets, filters, jump targets, bad input.

use reqwest::StatusCode;
use tsunagu_protocol::files::{SearchHitKind, SearchQuery};
use tsunagu_testkit::{both_backends, team, TestApp};

use super::{bodies, raw, results, sorted_bodies};

both_backends!(
    one_two_and_three_plus_character_japanese_terms_are_found,
    width_kana_and_case_do_not_matter,
    phrases_are_exact_and_terms_are_anded,
    edited_and_deleted_messages_are_found_by_what_they_say_now,
    hits_are_ranked_snippeted_grouped_and_carry_a_jump_target,
    filters_narrow_by_group_thread_author_time_and_files,
    query_syntax_is_matched_literally_and_bad_input_is_a_400,
    messages_stored_before_the_index_are_found_after_a_restart,
);

async fn one_two_and_three_plus_character_japanese_terms_are_found(app: TestApp) {
    let t = team(&app).await;
    for body in [
        "右足の痛みが強い",
        "仙骨部の褥瘡、処置を実施",
        "褥瘡ケアの記録を更新しました",
        "血圧 132/84 脈拍 72",
        "本日は訪問なし",
    ] {
        t.nurse
            .client
            .post_text(t.main(), body)
            .await
            .expect("post");
    }
    let nurse = &t.nurse;
    assert_eq!(bodies(nurse, "痛").await, ["右足の痛みが強い"]);
    assert_eq!(
        sorted_bodies(nurse, "褥瘡").await,
        ["仙骨部の褥瘡、処置を実施", "褥瘡ケアの記録を更新しました"]
    );
    assert_eq!(
        bodies(nurse, "褥瘡ケア").await,
        ["褥瘡ケアの記録を更新しました"]
    );
    assert_eq!(
        bodies(nurse, "ケアの記録を更新").await,
        ["褥瘡ケアの記録を更新しました"]
    );
    assert_eq!(bodies(nurse, "132/84").await, ["血圧 132/84 脈拍 72"]);
    assert_eq!(bodies(nurse, "72").await, ["血圧 132/84 脈拍 72"]);
    // A one-character term appearing in several messages finds them all.
    assert_eq!(bodies(nurse, "の").await.len(), 3);
    assert!(bodies(nurse, "熱").await.is_empty());
    assert_eq!(bodies(nurse, "褥瘡、").await, ["仙骨部の褥瘡、処置を実施"]);
    assert!(bodies(nurse, "褥瘡の").await.is_empty());
}

async fn width_kana_and_case_do_not_matter(app: TestApp) {
    let t = team(&app).await;
    for body in [
        "ｶﾝｺﾞ記録を確認",
        "PEG交換済み",
        "ばいたる安定",
        "3ヶ月後に再評価",
        "コンピュータ入力",
    ] {
        t.nurse
            .client
            .post_text(t.main(), body)
            .await
            .expect("post");
    }
    let nurse = &t.nurse;
    for q in ["カンゴ", "かんご", "ｶﾝｺﾞ", "カンゴ記録"] {
        assert_eq!(bodies(nurse, q).await, ["ｶﾝｺﾞ記録を確認"], "{q}");
    }
    for q in ["ＰＥＧ", "peg", "Peg", "ｐｅｇ交換"] {
        assert_eq!(bodies(nurse, q).await, ["PEG交換済み"], "{q}");
    }
    for q in ["バイタル", "ﾊﾞｲﾀﾙ", "ばいたる"] {
        assert_eq!(bodies(nurse, q).await, ["ばいたる安定"], "{q}");
    }
    assert_eq!(bodies(nurse, "3か月").await, ["3ヶ月後に再評価"]);
    assert_eq!(bodies(nurse, "３カ月").await, ["3ヶ月後に再評価"]);
    assert_eq!(bodies(nurse, "ｺﾝﾋﾟｭｰﾀ").await, ["コンピュータ入力"]);
    // Folding is not fuzziness: a different word is still not found.
    assert!(bodies(nurse, "カンコ記録").await.is_empty());
}

async fn phrases_are_exact_and_terms_are_anded(app: TestApp) {
    let t = team(&app).await;
    for body in [
        "血圧 安定、食欲あり",
        "血圧は高め、安定剤を処方",
        "食欲なし",
    ] {
        t.nurse
            .client
            .post_text(t.main(), body)
            .await
            .expect("post");
    }
    let nurse = &t.nurse;
    assert_eq!(
        sorted_bodies(nurse, "血圧 安定").await,
        ["血圧 安定、食欲あり", "血圧は高め、安定剤を処方"]
    );
    assert_eq!(
        bodies(nurse, "\"血圧 安定\"").await,
        ["血圧 安定、食欲あり"]
    );
    // Full-width space inside the phrase is a space too.
    assert_eq!(
        bodies(nurse, "\"血圧\u{3000}安定\"").await,
        ["血圧 安定、食欲あり"]
    );
    assert_eq!(bodies(nurse, "血圧 食欲").await, ["血圧 安定、食欲あり"]);
    assert_eq!(bodies(nurse, "食欲 処方").await, Vec::<String>::new());
    // Mixed lengths: a one-character term with a longer one.
    assert_eq!(bodies(nurse, "処方 高").await, ["血圧は高め、安定剤を処方"]);
}

async fn edited_and_deleted_messages_are_found_by_what_they_say_now(app: TestApp) {
    let t = team(&app).await;
    let c = &t.nurse.client;
    let m = c.post_text(t.main(), "発熱 38.5度").await.expect("post");
    let gone = c.post_text(t.main(), "誤送信 褥瘡").await.expect("post");
    assert_eq!(bodies(&t.nurse, "発熱").await, ["発熱 38.5度"]);
    c.edit_message(t.main(), m.id, "解熱 36.8度")
        .await
        .expect("edit");
    assert!(bodies(&t.nurse, "発熱").await.is_empty(), "the old text");
    assert!(bodies(&t.nurse, "38.5").await.is_empty(), "the old text");
    assert_eq!(bodies(&t.nurse, "解熱").await, ["解熱 36.8度"]);
    assert_eq!(bodies(&t.nurse, "36.8度").await, ["解熱 36.8度"]);
    c.delete_message(t.main(), gone.id).await.expect("delete");
    for q in ["誤送信", "褥瘡", "誤"] {
        assert!(bodies(&t.nurse, q).await.is_empty(), "{q}: a tombstone");
    }
    // Nothing of it left in the index either.
    let mut conn = app.store().conn().await.expect("conn");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM search_docs WHERE source_id = $1")
        .bind(gone.id.to_string())
        .fetch_one(&mut *conn)
        .await
        .expect("count");
    assert_eq!(n, 0);
}

async fn hits_are_ranked_snippeted_grouped_and_carry_a_jump_target(app: TestApp) {
    let t = team(&app).await;
    let c = &t.nurse.client;
    c.post_text(t.main(), "褥瘡").await.expect("post");
    let long = format!(
        "{}仙骨部の褥瘡は改善傾向。{}",
        "本日の訪問では全身状態を確認した。".repeat(3),
        "次回も継続して観察する。".repeat(8)
    );
    let m = c.post_text(t.main(), &long).await.expect("post");
    c.post_text(t.main(), "褥瘡 褥瘡 褥瘡の再発なし")
        .await
        .expect("post");
    let r = results(&t.nurse, &SearchQuery::text("ｼﾞｮｸｿｳ 褥瘡")).await;
    assert!(r.hits.is_empty(), "ｼﾞｮｸｿｳ is a reading, not in the text");
    let r = results(&t.nurse, &SearchQuery::text("褥瘡")).await;
    assert_eq!(r.hits.len(), 3);
    // Best first: the message that is the term, then the one repeating it, then the
    // long one that mentions it once.
    assert!(
        r.hits.windows(2).all(|w| w[0].score >= w[1].score),
        "{:?}",
        r.hits
    );
    let order: Vec<&str> = r.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(order[..2], ["褥瘡", "褥瘡 褥瘡 褥瘡の再発なし"]);
    let hit = r
        .hits
        .iter()
        .find(|h| h.message_id == Some(m.id))
        .expect("the long message");
    assert_eq!(hit.kind, SearchHitKind::Message);
    assert_eq!(hit.jump.thread_id, t.main());
    assert_eq!(hit.jump.seq, Some(m.seq));
    let marked: Vec<&str> = hit
        .snippet
        .iter()
        .filter(|p| p.hit)
        .map(|p| p.text.as_str())
        .collect();
    assert_eq!(marked, ["褥瘡"]);
    let shown: String = hit.snippet.iter().map(|p| p.text.as_str()).collect();
    assert!(shown.starts_with('…') && shown.ends_with('…'), "{shown}");
    assert!(shown.chars().count() < long.chars().count());
    // Grouped by thread.
    assert_eq!(r.threads.len(), 1);
    assert_eq!(r.threads[0].thread_id, t.main());
    assert_eq!(r.threads[0].count, 3);
    assert!(!r.more);
    // The jump target opens the timeline around the hit.
    let page = c.messages_around(&hit.jump, 1).await.expect("context");
    let seqs: Vec<i64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [m.seq - 1, m.seq, m.seq + 1]);
    // A snippet marks what was written, whatever the width of the query.
    c.post_text(t.main(), "ｶﾝｺﾞ記録").await.expect("post");
    let r = results(&t.nurse, &SearchQuery::text("カンゴ")).await;
    let marked: Vec<&str> = r.hits[0]
        .snippet
        .iter()
        .filter(|p| p.hit)
        .map(|p| p.text.as_str())
        .collect();
    assert_eq!(marked, ["ｶﾝｺﾞ"]);
}

async fn filters_narrow_by_group_thread_author_time_and_files(app: TestApp) {
    let t = team(&app).await;
    let private = t.private_thread().await;
    t.nurse
        .client
        .post_text(t.main(), "服薬確認 看護")
        .await
        .expect("post");
    t.doctor
        .client
        .post_text(t.main(), "服薬確認 医師")
        .await
        .expect("post");
    t.doctor
        .client
        .post_text(private.id, "服薬確認 内緒")
        .await
        .expect("post");
    let q = |f: &dyn Fn(&mut SearchQuery)| {
        let mut query = SearchQuery::text("服薬確認");
        f(&mut query);
        query
    };
    let found = |r: tsunagu_protocol::files::SearchResults| {
        let mut v: Vec<String> = r.messages.into_iter().map(|m| m.body).collect();
        v.sort();
        v
    };
    let doctor = &t.doctor;
    assert_eq!(found(results(doctor, &q(&|_| {})).await).len(), 3);
    assert_eq!(
        found(results(doctor, &q(&|q| q.thread_id = Some(private.id))).await),
        ["服薬確認 内緒"]
    );
    assert_eq!(
        found(results(doctor, &q(&|q| q.author_id = Some(t.nurse.id()))).await),
        ["服薬確認 看護"]
    );
    assert_eq!(
        found(results(doctor, &q(&|q| q.group_id = Some(t.group.id))).await).len(),
        3
    );
    assert!(found(
        results(
            doctor,
            &q(&|q| q.group_id = Some(tsunagu_protocol::ids::GroupId::new()))
        )
        .await
    )
    .is_empty());
    assert!(found(
        results(
            doctor,
            &q(&|q| q.from = Some("2999-01-01T00:00:00Z".into()))
        )
        .await
    )
    .is_empty());
    assert_eq!(
        found(results(doctor, &q(&|q| q.to = Some("2999-01-01T00:00:00Z".into()))).await).len(),
        3
    );
    // Files: a message with an attachment, and the file itself.
    let pdf = tsunagu_server::domain::search::extract::sample::pdf("服薬確認表");
    let file =
        crate::files::harness::upload_ok(&app, &t.nurse, t.main(), "服薬確認表.pdf", pdf).await;
    t.nurse
        .client
        .post_message(
            t.main(),
            &tsunagu_protocol::messaging::PostMessage {
                body: "服薬確認 添付あり".into(),
                client_msg_id: "filters-attach".into(),
                reply_to: None,
                mentions: Vec::new(),
                attachments: vec![file.id.clone()],
            },
        )
        .await
        .expect("post with file");
    let r = results(doctor, &q(&|q| q.has_file = Some(true))).await;
    assert_eq!(found(r.clone()), ["服薬確認 添付あり"]);
    assert_eq!(r.files.len(), 1);
    assert_eq!(r.files[0].id, file.id);
    let r = results(
        doctor,
        &q(&|q| q.file_kind = Some(tsunagu_protocol::files::FileKind::Pdf)),
    )
    .await;
    assert_eq!(found(r.clone()), ["服薬確認 添付あり"]);
    assert_eq!(r.files.len(), 1);
    assert!(results(
        doctor,
        &q(&|q| q.file_kind = Some(tsunagu_protocol::files::FileKind::Excel))
    )
    .await
    .hits
    .is_empty());
    let r = results(doctor, &q(&|q| q.kind = Some(SearchHitKind::File))).await;
    assert!(r.messages.is_empty() && r.files.len() == 1);
    assert_eq!(r.hits[0].kind, SearchHitKind::File);
    assert_eq!(r.hits[0].file_id.as_deref(), Some(file.id.as_str()));
    assert_eq!(
        found(results(doctor, &q(&|q| q.has_file = Some(false))).await).len(),
        3
    );
    let r = results(doctor, &q(&|q| q.limit = Some(2))).await;
    assert_eq!(r.hits.len(), 2);
}

async fn query_syntax_is_matched_literally_and_bad_input_is_a_400(app: TestApp) {
    let t = team(&app).await;
    for body in [
        "達成率50%",
        "snake_case の名前",
        "NEAR AND OR NOT",
        "\"引用\" と *印",
        "C:\\temp\\x",
        "普通の文",
    ] {
        t.nurse
            .client
            .post_text(t.main(), body)
            .await
            .expect("post");
    }
    let nurse = &t.nurse;
    assert_eq!(bodies(nurse, "%").await, ["達成率50%"]);
    assert_eq!(bodies(nurse, "50%").await, ["達成率50%"]);
    assert_eq!(bodies(nurse, "_").await, ["snake_case の名前"]);
    assert_eq!(bodies(nurse, "e_c").await, ["snake_case の名前"]);
    assert_eq!(bodies(nurse, "NEAR").await, ["NEAR AND OR NOT"]);
    assert_eq!(bodies(nurse, "AND").await, ["NEAR AND OR NOT"]);
    assert_eq!(bodies(nurse, "\"OR NOT\"").await, ["NEAR AND OR NOT"]);
    assert_eq!(bodies(nurse, "NEAR(普通 文)").await, Vec::<String>::new());
    assert_eq!(bodies(nurse, "*").await, ["\"引用\" と *印"]);
    assert_eq!(bodies(nurse, "*印").await, ["\"引用\" と *印"]);
    assert_eq!(bodies(nurse, "引用\"").await, ["\"引用\" と *印"]);
    assert_eq!(bodies(nurse, "\\temp\\").await, ["C:\\temp\\x"]);
    assert_eq!(bodies(nurse, "body:普通").await, Vec::<String>::new());
    assert_eq!(
        bodies(nurse, "普通 OR 存在しない").await,
        Vec::<String>::new()
    );
    for q in [
        "",
        "   ",
        "\u{3000}",
        "\"\"",
        "a\u{0}b",
        "改行\nあり",
        "\u{7f}",
        &"あ".repeat(257),
        "a b c d e f g h i",
    ] {
        let (status, body) = raw(&app, nurse, &[("q", q)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "q={q:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "q={q:?}");
    }
    let (status, _) = raw(&app, nurse, &[("q", &"あ".repeat(256))]).await;
    assert_eq!(status, StatusCode::OK);
    for params in [
        [("q", "普通"), ("limit", "0")],
        [("q", "普通"), ("limit", "51")],
        [("q", "普通"), ("from", "yesterday")],
        [("q", "普通"), ("file_kind", "exe")],
        [("q", "普通"), ("group_id", "not-a-uuid")],
        [("q", "普通"), ("kind", "people")],
        [("q", "普通"), ("has_file", "maybe")],
    ] {
        let (status, body) = raw(&app, nurse, &params).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{params:?}: {body}");
    }
    let (status, _) = raw(
        &app,
        nurse,
        &[
            ("q", "普通"),
            ("from", "2030-01-01T00:00:00Z"),
            ("to", "2020-01-01T00:00:00Z"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn messages_stored_before_the_index_are_found_after_a_restart(app: TestApp) {
    let t = team(&app).await;
    t.nurse
        .client
        .post_text(t.main(), "導入前の褥瘡記録")
        .await
        .expect("post");
    t.nurse
        .client
        .post_text(t.main(), "導入前の服薬メモ")
        .await
        .expect("post");
    // As if they had been stored before migration 0010: no index, no backfill yet.
    {
        let mut conn = app.store().conn().await.expect("conn");
        for sql in [
            "DELETE FROM search_grams",
            "DELETE FROM search_docs",
            "DELETE FROM search_state",
        ] {
            sqlx::query(sql).execute(&mut *conn).await.expect(sql);
        }
    }
    assert!(bodies(&t.nurse, "褥瘡").await.is_empty());
    let app = app.restart().await;
    let nurse = tsunagu_testkit::Person {
        user: t.nurse.user.clone(),
        client: {
            let c = app.client();
            c.login(&t.nurse.user.login, tsunagu_testkit::USER_PASSWORD, None)
                .await
                .expect("login");
            c
        },
    };
    assert_eq!(bodies(&nurse, "褥瘡").await, ["導入前の褥瘡記録"]);
    assert_eq!(sorted_bodies(&nurse, "導入前").await.len(), 2);
    assert_eq!(bodies(&nurse, "服薬メモ").await, ["導入前の服薬メモ"]);
}
