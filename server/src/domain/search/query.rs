//! What a user typed, as terms the index can answer. Every term is a literal substring
//! of the normalised text: nothing typed reaches a query language (no FTS operators, no
//! LIKE wildcards), so `"`, `*`, `%`, `_`, `NEAR` and `AND` are matched as themselves.
//!
//! - Terms are separated by white space and ANDed.
//! - `"…"` is an exact phrase: its spaces are part of the term. An unclosed quote runs
//!   to the end of the query; an empty pair is ignored. A `"` inside a word is literal.
//! - Each term is normalised ([`super::normalize`]), so the query's width, case and kana
//!   do not matter.

use super::normalize::normalize;

/// Longest query, in characters as sent.
pub const MAX_QUERY_CHARS: usize = 256;
/// Most terms in one query.
pub const MAX_TERMS: usize = 8;

/// Why a query is refused (each is a 400 with its own message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("q must not be empty or blank")]
    Empty,
    #[error("q must have at most 256 characters")]
    TooLong,
    #[error("q must not contain control characters")]
    Control,
    #[error("q may have at most 8 terms")]
    TooManyTerms,
}

/// A parsed query: normalised, distinct terms, longest first (the longest is the most
/// selective, so it drives the index look-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub terms: Vec<String>,
}

impl Query {
    pub fn parse(raw: &str) -> Result<Query, QueryError> {
        if raw.chars().count() > MAX_QUERY_CHARS {
            return Err(QueryError::TooLong);
        }
        if raw.chars().any(char::is_control) {
            return Err(QueryError::Control);
        }
        let mut pieces: Vec<String> = Vec::new();
        let mut current = String::new();
        let mut in_phrase = false;
        let mut at_word_start = true;
        for c in raw.chars() {
            if c == '"' && (in_phrase || at_word_start) {
                if !current.is_empty() {
                    pieces.push(std::mem::take(&mut current));
                }
                in_phrase = !in_phrase;
                at_word_start = true;
                continue;
            }
            if c.is_whitespace() && !in_phrase {
                if !current.is_empty() {
                    pieces.push(std::mem::take(&mut current));
                }
                at_word_start = true;
                continue;
            }
            current.push(c);
            at_word_start = false;
        }
        if !current.is_empty() {
            pieces.push(current);
        }
        let mut terms: Vec<String> = Vec::new();
        for piece in pieces {
            let term = normalize(&piece);
            if !term.is_empty() && !terms.contains(&term) {
                terms.push(term);
            }
        }
        // A term contained in another adds nothing to an AND of substrings.
        let all = terms.clone();
        terms.retain(|t| !all.iter().any(|o| o != t && o.contains(t.as_str())));
        if terms.is_empty() {
            return Err(QueryError::Empty);
        }
        if terms.len() > MAX_TERMS {
            return Err(QueryError::TooManyTerms);
        }
        terms.sort_by_key(|t| std::cmp::Reverse(t.chars().count()));
        Ok(Query { terms })
    }

    /// The term that drives the index look-up: the longest.
    pub fn driver(&self) -> &str {
        &self.terms[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(q: &str) -> Vec<String> {
        Query::parse(q).expect("valid").terms
    }

    #[test]
    fn terms_are_normalised_deduplicated_and_longest_first() {
        assert_eq!(terms("ｶﾝｺﾞ 褥瘡ケア"), ["褥瘡けあ", "かんご"]);
        assert_eq!(terms("PEG ＰＥＧ peg"), ["peg"]);
        assert_eq!(terms("痛"), ["痛"]);
        // Contained in another term: dropped.
        assert_eq!(terms("褥瘡 褥瘡ケア"), ["褥瘡けあ"]);
    }

    #[test]
    fn quotes_make_a_phrase_with_its_spaces() {
        assert_eq!(terms("\"血圧 安定\" 看護"), ["血圧 安定", "看護"]);
        assert_eq!(terms("\"未完の句"), ["未完の句"]);
        assert_eq!(terms("\"\" 痛み"), ["痛み"]);
        // A quote inside a word is a literal character.
        assert_eq!(terms("5\"inch"), ["5\"inch"]);
    }

    #[test]
    fn query_syntax_of_other_engines_is_literal() {
        assert_eq!(terms("NEAR AND"), ["near", "and"]);
        assert_eq!(terms("50% a_b *"), ["50%", "a_b", "*"]);
    }

    #[test]
    fn bad_queries_are_refused_with_their_reason() {
        assert_eq!(Query::parse(""), Err(QueryError::Empty));
        assert_eq!(Query::parse(" \u{3000} "), Err(QueryError::Empty));
        assert_eq!(Query::parse("\"\""), Err(QueryError::Empty));
        assert_eq!(Query::parse(&"あ".repeat(257)), Err(QueryError::TooLong));
        assert!(Query::parse(&"あ".repeat(256)).is_ok());
        assert_eq!(Query::parse("a\u{0}b"), Err(QueryError::Control));
        assert_eq!(Query::parse("a\tb"), Err(QueryError::Control));
        assert_eq!(
            Query::parse("a b c d e f g h i"),
            Err(QueryError::TooManyTerms)
        );
    }
}
