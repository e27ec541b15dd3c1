//! Snippets: a short excerpt of the original text around the first match, with every
//! match in it marked. Matching is done on the normalised text and mapped back, so a
//! query `かんご` highlights `ｶﾝｺﾞ` as it was written.

use tsunagu_protocol::files::SnippetPart;

use super::normalize::normalize_mapped;

/// Characters of context kept before the first match.
const BEFORE: usize = 24;
/// Characters of a snippet at most (context and matches).
const WIDTH: usize = 100;

/// `source` cut around the first match of any of `terms` (normalised), matches marked.
/// Without a match, the start of the text.
pub fn snippet(source: &str, terms: &[String]) -> Vec<SnippetPart> {
    let mapped = normalize_mapped(source);
    let norm: Vec<char> = mapped.text.chars().collect();
    // Matches as source byte ranges.
    let mut hits: Vec<(usize, usize)> = Vec::new();
    for term in terms {
        let t: Vec<char> = term.chars().collect();
        if t.is_empty() || t.len() > norm.len() {
            continue;
        }
        let mut i = 0;
        while i + t.len() <= norm.len() {
            if norm[i..i + t.len()] == t[..] {
                hits.push((mapped.source[i].0, mapped.source[i + t.len() - 1].1));
                i += t.len();
            } else {
                i += 1;
            }
        }
    }
    hits.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (s, e) in hits {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    // The window, in source bytes on character boundaries.
    let bounds: Vec<usize> = source
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(source.len()))
        .collect();
    let first = merged.first().map_or(0, |h| h.0);
    let first_char = bounds.partition_point(|&b| b < first);
    let start_char = first_char.saturating_sub(BEFORE);
    let end_char = (start_char + WIDTH).min(bounds.len() - 1);
    let (start, end) = (bounds[start_char], bounds[end_char]);
    let mut parts: Vec<SnippetPart> = Vec::new();
    let mut push = |text: &str, hit: bool| {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let text = if text.is_empty() {
            " ".to_owned()
        } else {
            text
        };
        parts.push(SnippetPart { text, hit });
    };
    let mut at = start;
    if start > 0 {
        push("…", false);
    }
    for (s, e) in merged {
        let (s, e) = (s.max(at), e.min(end));
        if s >= e {
            continue;
        }
        if s > at {
            push(&source[at..s], false);
        }
        push(&source[s..e], true);
        at = e;
    }
    if at < end {
        push(&source[at..end], false);
    }
    if end < source.len() {
        push("…", false);
    }
    // Adjacent plain parts from the markers join up.
    let mut out: Vec<SnippetPart> = Vec::new();
    for p in parts {
        match out.last_mut() {
            Some(last) if !last.hit && !p.hit => last.text.push_str(&p.text),
            _ => out.push(p),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(parts: &[SnippetPart]) -> String {
        parts
            .iter()
            .map(|p| {
                if p.hit {
                    format!("[{}]", p.text)
                } else {
                    p.text.clone()
                }
            })
            .collect()
    }

    #[test]
    fn the_match_is_marked_as_written_in_the_source() {
        let s = snippet("本日ｶﾝｺﾞ記録を更新", &["かんご".to_owned()]);
        assert_eq!(show(&s), "本日[ｶﾝｺﾞ]記録を更新");
    }

    #[test]
    fn every_term_is_marked_and_long_text_is_cut_around_the_first_match() {
        let long = format!("{}褥瘡の処置。{}痛みなし", "あ".repeat(60), "い".repeat(10));
        let s = show(&snippet(&long, &["褥瘡".to_owned(), "痛".to_owned()]));
        assert!(s.starts_with('…'), "{s}");
        assert!(s.contains("[褥瘡]") && s.contains("[痛]"), "{s}");
        assert!(s.chars().count() <= WIDTH + 8, "{s}");
    }

    #[test]
    fn without_a_match_the_start_is_shown() {
        let s = snippet("ファイル名のみ", &["本文".to_owned()]);
        assert_eq!(show(&s), "ファイル名のみ");
    }
}
