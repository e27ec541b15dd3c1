//! The one normalisation of searchable text. Documents are indexed and queries are
//! matched in this form, so `ｶﾝｺﾞ`, `カンゴ` and `かんご` are the same word, `ＰＥＧ` is `peg`,
//! and `３ヶ月` is `3か月`. It must be applied identically on both sides: the index stores
//! only normalised text and a query is normalised before it reaches the store.
//!
//! Steps, per base character together with the combining marks that follow it (so that
//! `か` + `゛` and half-width `ｶﾞ` compose, and every output character can be traced back
//! to the source characters it came from, which is what snippets highlight):
//!
//! 1. Unicode NFKC: full-width ASCII and half-width kana become their ordinary forms,
//!    compatibility characters (`①`, `㎎`, `㍿`) their plain spelling.
//! 2. Lower case (Unicode's mapping).
//! 3. Katakana → hiragana (`ア`–`ヶ`, `ヽ`, `ヾ`).
//! 4. The small kana that only ever stand for a large one: `ヵ`/`ヶ` (as in `3ヶ月`) → `か`,
//!    `ゎ` → `わ`. The other small kana (`ゃ`, `っ`, `ぁ`…) are kept: `びょういん` (hospital)
//!    and `びよういん` (beauty salon) are different words.
//! 5. Long-vowel look-alikes right after a kana (`-`, `‐`, `—`, `―`, `−`, `～`, `〜`)
//!    become `ー`: the same sound mark typed with whatever the keyboard offered.
//! 6. Control characters are dropped; every run of white space becomes one space;
//!    leading and trailing space is removed.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Normalised text, with the byte range of the source each character came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapped {
    pub text: String,
    /// One entry per `char` of `text`: the source bytes `start..end` it came from.
    pub source: Vec<(usize, usize)>,
}

/// The normalised form of `s`: what the index stores and what a query term becomes.
pub fn normalize(s: &str) -> String {
    let mut out = Out::default();
    run(s, &mut out);
    out.finish().text
}

/// [`normalize`], keeping where each output character came from (for snippets).
pub fn normalize_mapped(s: &str) -> Mapped {
    let mut out = Out {
        map: true,
        ..Out::default()
    };
    run(s, &mut out);
    out.finish()
}

#[derive(Default)]
struct Out {
    map: bool,
    text: String,
    source: Vec<(usize, usize)>,
    pending_space: Option<(usize, usize)>,
    last: Option<char>,
}

impl Out {
    fn push(&mut self, c: char, from: (usize, usize)) {
        if c.is_whitespace() {
            if self.last.is_some() && self.pending_space.is_none() {
                self.pending_space = Some(from);
            }
            return;
        }
        if c.is_control() {
            return;
        }
        if let Some(space) = self.pending_space.take() {
            self.text.push(' ');
            if self.map {
                self.source.push(space);
            }
        }
        let c = if is_long_vowel_variant(c) && self.last.is_some_and(is_kana) {
            'ー'
        } else {
            c
        };
        self.text.push(c);
        if self.map {
            self.source.push(from);
        }
        self.last = Some(c);
    }

    fn finish(self) -> Mapped {
        Mapped {
            text: self.text,
            source: self.source,
        }
    }
}

/// A base character and the marks that attach to it: a unit that NFKC may compose.
fn starts_unit(c: char) -> bool {
    !(is_combining_mark(c) || matches!(c, '\u{FF9E}' | '\u{FF9F}'))
}

fn run(s: &str, out: &mut Out) {
    let mut start = 0;
    let mut buf = String::new();
    for (i, c) in s.char_indices() {
        if i > start && starts_unit(c) {
            unit(&s[start..i], (start, i), out, &mut buf);
            start = i;
        }
    }
    if start < s.len() {
        unit(&s[start..], (start, s.len()), out, &mut buf);
    }
}

fn unit(piece: &str, from: (usize, usize), out: &mut Out, buf: &mut String) {
    buf.clear();
    buf.extend(piece.nfkc());
    for c in buf.chars() {
        for lower in c.to_lowercase() {
            out.push(fold_kana(lower), from);
        }
    }
}

/// Katakana → hiragana, and the small kana that always mean a large one.
pub fn fold_kana(c: char) -> char {
    let c = match c {
        '\u{30A1}'..='\u{30F6}' | '\u{30FD}' | '\u{30FE}' => {
            char::from_u32(c as u32 - 0x60).unwrap_or(c)
        }
        _ => c,
    };
    match c {
        'ゕ' | 'ゖ' => 'か',
        'ゎ' => 'わ',
        _ => c,
    }
}

fn is_kana(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{309F}' | '\u{30A0}'..='\u{30FF}')
}

fn is_long_vowel_variant(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '~' | '\u{301C}' | '\u{FF5E}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_width_katakana_and_hiragana_are_the_same_word() {
        assert_eq!(normalize("ｶﾝｺﾞ"), "かんご");
        assert_eq!(normalize("カンゴ"), "かんご");
        assert_eq!(normalize("かんご"), "かんご");
        assert_eq!(normalize("ﾊﾞｲﾀﾙ"), normalize("バイタル"));
        assert_eq!(normalize("ﾊﾟｯﾄﾞ"), "ぱっど");
    }

    #[test]
    fn full_width_letters_and_digits_fold_to_ascii_lower_case() {
        assert_eq!(normalize("ＰＥＧ"), "peg");
        assert_eq!(normalize("PEG交換"), "peg交換");
        assert_eq!(normalize("ＢＰ１２０／８０"), "bp120/80");
        assert_eq!(normalize("Émile"), "émile");
    }

    #[test]
    fn compatibility_characters_take_their_plain_spelling() {
        assert_eq!(normalize("①"), "1");
        assert_eq!(normalize("５㎎"), "5mg");
        assert_eq!(normalize("㈱"), "(株)");
    }

    #[test]
    fn combining_voiced_marks_compose_with_their_kana() {
        assert_eq!(normalize("か\u{3099}"), "が");
        assert_eq!(normalize("カ\u{3099}ン"), "がん");
    }

    #[test]
    fn small_ka_and_ke_are_ka_but_meaningful_small_kana_stay() {
        assert_eq!(normalize("3ヶ月"), normalize("3か月"));
        assert_eq!(normalize("３ヵ月"), "3か月");
        assert_ne!(normalize("びょういん"), normalize("びよういん"));
        assert_ne!(normalize("かった"), normalize("かつた"));
    }

    #[test]
    fn long_vowel_look_alikes_after_kana_become_the_long_vowel_mark() {
        assert_eq!(
            normalize("コンピュ－タ"),
            normalize("コンピューター").trim_end_matches('ー')
        );
        assert_eq!(normalize("ｺﾝﾋﾟｭｰﾀｰ"), "こんぴゅーたー");
        assert_eq!(normalize("ケア‐プラン"), "けあーぷらん");
        // Not after a kana: an ordinary hyphen or minus stays.
        assert_eq!(normalize("BP-120"), "bp-120");
        assert_eq!(normalize("3-2"), "3-2");
    }

    #[test]
    fn white_space_collapses_and_control_characters_vanish() {
        assert_eq!(
            normalize("  褥瘡\u{3000}\u{3000}ケア \n\t 実施 "),
            "褥瘡 けあ 実施"
        );
        assert_eq!(normalize("a\u{0}b\u{7}c"), "abc");
        assert_eq!(normalize(" \u{3000} "), "");
    }

    #[test]
    fn every_output_character_maps_back_to_its_source() {
        let src = "ﾊﾞｲﾀﾙ　安定";
        let m = normalize_mapped(src);
        assert_eq!(m.text, "ばいたる 安定");
        assert_eq!(m.text.chars().count(), m.source.len());
        // "ば" came from "ﾊﾞ" (two half-width characters, six bytes).
        assert_eq!(&src[m.source[0].0..m.source[0].1], "ﾊﾞ");
        let last = m.source[m.source.len() - 1];
        assert_eq!(&src[last.0..last.1], "定");
        // One source character may give several (㍿ → 株式会社): all point at it.
        let m = normalize_mapped("㍿");
        assert_eq!(m.text, "株式会社");
        assert!(m.source.iter().all(|r| *r == (0, 3)));
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for s in [
            "ｶﾝｺﾞ ＰＥＧ ３ヶ月",
            "コンピュ－タ",
            "㍿ ① Émile",
            "ゔぁ ヴァ",
        ] {
            let once = normalize(s);
            assert_eq!(normalize(&once), once, "{s}");
        }
    }
}
