//! Checks on user-supplied text, shared by every rule that stores a name.

use super::error::{DomainError, Result};

/// A display name, organisation name or similar: at most `max` characters, only
/// characters a reader can see (see [`unreadable_char`]), not blank; stored trimmed.
/// Length and characters are checked before trimming, as the published schema
/// (`maxLength`, `pattern`: `tsunagu_protocol::NAME_PATTERN`) states them.
pub fn name(field: &str, value: &str, max_chars: usize) -> Result<String> {
    if value.chars().count() > max_chars {
        return Err(DomainError::Invalid(format!(
            "{field} must have at most {max_chars} characters"
        )));
    }
    readable(field, value)?;
    let value = value.trim();
    if value.is_empty() {
        return Err(DomainError::Invalid(format!("{field} must not be empty")));
    }
    Ok(value.to_owned())
}

/// Refuses a name containing a character from [`unreadable_char`], naming the code point
/// (never the name itself) so the sender can find it.
pub fn readable(field: &str, value: &str) -> Result<()> {
    match unreadable_char(value) {
        None => Ok(()),
        Some(c) if c.is_control() => Err(DomainError::Invalid(format!(
            "{field} must not contain control characters (found U+{:04X})",
            c as u32
        ))),
        Some(c) => Err(DomainError::Invalid(format!(
            "{field} must not contain invisible formatting or bidirectional control \
             characters (found U+{:04X})",
            c as u32
        ))),
    }
}

/// The first character of `value` that has no place where a person reads a name:
///
/// - control characters (Unicode Cc), which corrupt CSV exports and terminals;
/// - the invisible format characters (Unicode Cf) — above all the bidirectional
///   embeddings, overrides and isolates U+202A–U+202E and U+2066–U+2069, which make
///   `請求書\u{202E}txt.exe` read as `請求書exe.txt` — and the other invisible ones
///   (zero-width space and non-joiner, word joiner, invisible operators, BOM, Arabic
///   letter mark, Mongolian vowel separator, soft hyphen, the tag characters
///   U+E0001–U+E007F that can smuggle hidden text), which let two different names look
///   identical;
/// - a few invisible characters outside Cf used for the same tricks: the line and
///   paragraph separators U+2028/U+2029, the combining grapheme joiner U+034F and the
///   Hangul fillers U+115F, U+1160, U+3164, U+FFA0 (a "blank" name).
///
/// One exception: ZERO WIDTH JOINER (U+200D) between two emoji, as in 🧑‍⚕️ or 👨‍👩‍👧, is
/// how emoji sequences are written; anywhere else it is refused. (ZERO WIDTH NON-JOINER,
/// needed by some Persian and Indic spellings, is refused: the names this server holds
/// are Japanese, and an invisible character that changes nothing on screen is an
/// impersonation risk.) Variation selectors stay allowed: Japanese names need the
/// ideographic ones for variant kanji.
///
/// `tsunagu_protocol::NAME_PATTERN` says the same in the published schema.
pub fn unreadable_char(value: &str) -> Option<char> {
    let chars: Vec<char> = value.chars().collect();
    chars.iter().enumerate().find_map(|(i, &c)| {
        let refused = if c == '\u{200D}' {
            let before = i.checked_sub(1).map(|j| chars[j]);
            let after = chars.get(i + 1).copied();
            !(before.is_some_and(joins_emoji) && after.is_some_and(joins_emoji))
        } else {
            c.is_control() || is_invisible_format(c)
        };
        refused.then_some(c)
    })
}

/// The invisible format characters refused in names (ZWJ included; [`unreadable_char`]
/// excuses it between emoji). Keep in step with `tsunagu_protocol::NAME_PATTERN`.
pub fn is_invisible_format(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x034F
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x115F
            | 0x1160
            | 0x180E
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFEFF
            | 0xFFA0
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001..=0xE007F
    )
}

/// Characters an emoji ZWJ sequence joins: emoji and symbol blocks, and the emoji
/// presentation selector U+FE0F that often ends the part before the joiner.
fn joins_emoji(c: char) -> bool {
    matches!(
        c as u32,
        0x00A9
            | 0x00AE
            | 0x203C
            | 0x2049
            | 0x2122
            | 0x2139
            | 0x2190..=0x21FF
            | 0x2300..=0x23FF
            | 0x24C2
            | 0x25A0..=0x27BF
            | 0x2900..=0x297F
            | 0x2B00..=0x2BFF
            | 0x3030
            | 0x303D
            | 0x3297
            | 0x3299
            | 0xFE0F
            | 0x1F000..=0x1FAFF
    )
}

/// A file or folder name: like [`name`], and no path separators, not `.` or `..`
/// (`tsunagu_protocol::FILE_NAME_PATTERN`). A bidirectional override here is the
/// classic disguised executable, so this is the same [`unreadable_char`] rule.
pub fn file_name(field: &str, value: &str, max_chars: usize) -> Result<String> {
    let refuse = || {
        DomainError::Invalid(format!(
            "{field} needs 1 to {max_chars} characters without control characters or path separators, not . or .."
        ))
    };
    if value.chars().count() > max_chars || value.contains(['/', '\\']) {
        return Err(refuse());
    }
    readable(field, value)?;
    let value = value.trim();
    if value.is_empty() || value == "." || value == ".." {
        return Err(refuse());
    }
    Ok(value.to_owned())
}

/// Free text (descriptions, notes, message bodies): at most `max` characters, line
/// breaks and tabs allowed, other control characters refused, not blank; stored trimmed
/// (checked before trimming, like [`name`]).
pub fn text(field: &str, value: &str, max_chars: usize) -> Result<String> {
    if value.chars().count() > max_chars {
        return Err(DomainError::Invalid(format!(
            "{field} must have at most {max_chars} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(DomainError::Invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    let value = value.trim();
    if value.is_empty() {
        return Err(DomainError::Invalid(format!("{field} must not be empty")));
    }
    Ok(value.to_owned())
}

/// A login id: 3..=64 of `a-z A-Z 0-9 . _ @ -`. Returned with its case-folded key,
/// which is what uniqueness and sign-in compare.
pub fn login(value: &str) -> Result<(String, String)> {
    let ok_len = (3..=64).contains(&value.len());
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    if !ok_len || !ok_chars {
        return Err(DomainError::Invalid(
            "login must be 3 to 64 characters of letters, digits, '.', '_', '@' or '-'".into(),
        ));
    }
    Ok((value.to_owned(), login_key(value)))
}

/// The case-folded form of a login id.
pub fn login_key(value: &str) -> String {
    value.to_ascii_lowercase()
}

/// A region slug: 2..=40 of `a-z 0-9 -`.
pub fn slug(value: &str) -> Result<String> {
    let ok = (2..=40).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(DomainError::Invalid(
            "slug must be 2 to 40 characters of a-z, 0-9 or '-'".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_control_characters_refused() {
        assert_eq!(name("n", "  佐藤 花子 ", 10).unwrap(), "佐藤 花子");
        assert!(name("n", "a\u{0}b", 10).is_err());
        assert!(name("n", "   ", 10).is_err());
        assert!(name("n", "あいうえおかきくけこさ", 10).is_err());
        // Checked as sent, before trimming: what the published pattern and maxLength say.
        assert!(name("n", "\n佐藤", 10).is_err());
        assert!(name("n", " あいうえおかきくけこ", 10).is_err());
        assert_eq!(
            text("t", " 一行目\n二行目\n", 10).unwrap(),
            "一行目\n二行目"
        );
    }

    #[test]
    fn bidi_controls_and_invisible_format_characters_are_refused_in_names() {
        // The disguised executable: reads as 請求書exe.txt.
        let err = name("name", "請求書\u{202E}txt.exe", 255).unwrap_err();
        assert!(err.to_string().contains("U+202E"), "{err}");
        for c in [
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200B}',
            '\u{200C}',
            '\u{200E}',
            '\u{200F}',
            '\u{2060}',
            '\u{2064}',
            '\u{FEFF}',
            '\u{061C}',
            '\u{180E}',
            '\u{00AD}',
            '\u{2028}',
            '\u{3164}',
            '\u{E0041}',
            '\u{1D173}',
        ] {
            assert!(name("n", &format!("佐藤{c}花子"), 20).is_err(), "{c:?}");
            assert!(name("n", &format!("{c}"), 20).is_err(), "{c:?}");
        }
        // A lone joiner, or one between letters, is refused.
        assert!(name("n", "佐\u{200D}藤", 20).is_err());
        assert!(name("n", "佐藤\u{200D}", 20).is_err());
        assert!(name("n", "\u{200D}😀", 20).is_err());
    }

    #[test]
    fn emoji_sequences_and_variant_kanji_stay_allowed_in_names() {
        // 🧑‍⚕️ health worker, 👨‍👩‍👧 family, 🏳️‍🌈: joiners between emoji.
        for ok in [
            "看護師 \u{1F9D1}\u{200D}\u{2695}\u{FE0F}",
            "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}",
            "\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}",
            "\u{1F469}\u{1F3FD}\u{200D}\u{2695}\u{FE0F} 佐藤",
            // 葛 with an ideographic variation selector.
            "\u{845B}\u{E0100}飾",
        ] {
            assert!(name("n", ok, 40).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn logins_fold_case_and_refuse_odd_characters() {
        assert_eq!(login("Nurse.Sato").unwrap().1, "nurse.sato");
        assert!(login("ab").is_err());
        assert!(login("sato hanako").is_err());
        assert!(login("../etc").is_err());
    }
}
