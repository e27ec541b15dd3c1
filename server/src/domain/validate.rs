//! Checks on user-supplied text, shared by every rule that stores a name.

use super::error::{DomainError, Result};

/// A display name, organisation name or similar: at most `max` characters, no control
/// characters (which would corrupt CSV exports and terminals), not blank; stored
/// trimmed. Length and characters are checked before trimming, as the published schema
/// (`maxLength`, `pattern`) states them.
pub fn name(field: &str, value: &str, max_chars: usize) -> Result<String> {
    if value.chars().count() > max_chars {
        return Err(DomainError::Invalid(format!(
            "{field} must have at most {max_chars} characters"
        )));
    }
    if value.chars().any(char::is_control) {
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
    fn logins_fold_case_and_refuse_odd_characters() {
        assert_eq!(login("Nurse.Sato").unwrap().1, "nurse.sato");
        assert!(login("ab").is_err());
        assert!(login("sato hanako").is_err());
        assert!(login("../etc").is_err());
    }
}
