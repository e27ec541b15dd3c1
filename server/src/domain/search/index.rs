//! Keeping the index in step with the data, always inside the caller's transaction:
//! a committed message or file is findable, a deleted one is not, an edited one is found
//! by its new text only.

use tsunagu_protocol::files::FileKind;

use super::normalize::normalize;
use crate::store::files::FileRow;
use crate::store::messages::MessageRow;
use crate::store::search::{self, NewDoc};
use crate::store::{Conn, Result};

/// The separator between a file's name and tags and its extracted text in the stored
/// body. A control character: normalisation removes every one from text and queries
/// refuse them, so no term can match across it.
pub const CONTENT_SEPARATOR: char = '\u{1F}';

/// Grams are taken from this many characters of a document at most (a long file's
/// text); three-character and longer queries still search all of it.
const MAX_GRAM_CHARS: usize = 200_000;

/// One gram as an integer: the first character's code point in the high bits, the
/// second's (0 for a one-character gram) in the low 21.
pub fn pack(a: char, b: Option<char>) -> i64 {
    (i64::from(u32::from(a)) << 21) | b.map_or(0, |b| i64::from(u32::from(b)))
}

/// The distinct 1- and 2-character grams of normalised text, sorted. Spaces and the
/// content separator never start or end a term, so no gram contains them.
pub fn grams(text: &str) -> Vec<i64> {
    let mut out = Vec::new();
    let mut prev: Option<char> = None;
    for c in text.chars().take(MAX_GRAM_CHARS) {
        if c == ' ' || c == CONTENT_SEPARATOR {
            prev = None;
            continue;
        }
        out.push(pack(c, None));
        if let Some(p) = prev {
            out.push(pack(p, Some(c)));
        }
        prev = Some(c);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The gram a one- or two-character term is looked up by.
pub fn term_gram(term: &str) -> Option<i64> {
    let mut chars = term.chars();
    let a = chars.next()?;
    let b = chars.next();
    if chars.next().is_some() {
        return None;
    }
    Some(pack(a, b))
}

/// The searchable text of a file: name and tags, then (after the separator) its text.
pub fn file_body(row: &FileRow, content: &str) -> String {
    let tags: Vec<String> = serde_json::from_str(&row.tags).unwrap_or_default();
    let mut meta = normalize(&row.name);
    for t in tags {
        meta.push(' ');
        meta.push_str(&normalize(&t));
    }
    if content.is_empty() {
        meta
    } else {
        format!("{meta}{CONTENT_SEPARATOR}{content}")
    }
}

/// Whether the text of a file of this kind is extracted after upload.
pub fn extractable(kind: FileKind) -> bool {
    matches!(
        kind,
        FileKind::Pdf | FileKind::Word | FileKind::Excel | FileKind::Text
    )
}

/// Indexes a message just stored; `kinds` are the kinds of its attachments.
pub async fn add_message(
    tx: &mut Conn,
    region_id: &str,
    group_id: &str,
    row: &MessageRow,
    kinds: &[FileKind],
) -> Result<()> {
    let body = normalize(&row.body);
    let doc = NewDoc {
        source: "message",
        source_id: &row.id,
        region_id,
        group_id,
        thread_id: &row.thread_id,
        author_id: &row.author_id,
        seq: Some(row.seq),
        created_at: row.created_at,
        file_kinds: kinds,
        extract_state: 1,
        body: &body,
    };
    search::insert(tx, &doc, &grams(&body)).await?;
    Ok(())
}

/// Indexes a file just stored (name and tags; its text follows from the extraction job).
pub async fn add_file(tx: &mut Conn, row: &FileRow) -> Result<()> {
    let body = file_body(row, "");
    let doc = NewDoc {
        source: "file",
        source_id: &row.id,
        region_id: &row.region_id,
        group_id: &row.group_id,
        thread_id: &row.thread_id,
        author_id: &row.uploader_id,
        seq: None,
        created_at: row.created_at,
        file_kinds: std::slice::from_ref(&row.kind),
        extract_state: if extractable(row.kind) { 0 } else { 2 },
        body: &body,
    };
    search::insert(tx, &doc, &grams(&body)).await?;
    Ok(())
}

/// Replaces the text of an indexed document (a message edit, a file's new tags or its
/// extracted text). A document that is not indexed is left alone.
pub async fn set_text(
    tx: &mut Conn,
    source_id: &str,
    body: &str,
    extract_state: Option<i64>,
) -> Result<()> {
    let Some(doc) = search::get(tx, source_id).await? else {
        return Ok(());
    };
    if doc.body == body && extract_state.is_none() {
        return Ok(());
    }
    search::update_body(
        tx,
        doc.doc_no,
        body,
        &grams(&doc.body),
        &grams(body),
        extract_state,
    )
    .await
}

/// The extracted text of a file as stored (after the separator), or empty.
pub async fn file_content(tx: &mut Conn, source_id: &str) -> Result<Option<String>> {
    Ok(search::get(tx, source_id).await?.map(|d| {
        d.body
            .split_once(CONTENT_SEPARATOR)
            .map(|(_, c)| c.to_owned())
            .unwrap_or_default()
    }))
}

/// Removes a document: a deleted message or a deleted (crypto-shredded) file leaves
/// nothing searchable.
pub async fn remove(tx: &mut Conn, source_id: &str) -> Result<()> {
    if let Some(doc) = search::get(tx, source_id).await? {
        search::delete(tx, doc.doc_no, &grams(&doc.body)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grams_are_the_distinct_unigrams_and_bigrams_without_spaces() {
        let g = grams("褥瘡 褥瘡");
        let want = {
            let mut w = vec![pack('褥', None), pack('瘡', None), pack('褥', Some('瘡'))];
            w.sort_unstable();
            w
        };
        assert_eq!(g, want);
        assert_eq!(term_gram("痛"), Some(pack('痛', None)));
        assert_eq!(term_gram("褥瘡"), Some(pack('褥', Some('瘡'))));
        assert_eq!(term_gram("褥瘡け"), None);
    }

    #[test]
    fn no_gram_spans_the_content_separator() {
        let g = grams(&format!("ab{CONTENT_SEPARATOR}cd"));
        assert!(!g.contains(&pack('b', Some('c'))));
        assert!(g.contains(&pack('c', Some('d'))));
    }

    #[test]
    fn packed_grams_do_not_collide() {
        assert_ne!(pack('a', None), pack('a', Some('\u{1}')));
        assert_ne!(pack('\u{10FFFF}', Some('a')), pack('a', Some('\u{10FFFF}')));
    }
}
