//! String helpers that reproduce Python's `str` semantics, which the official evaluation scripts rely on:
//! `str.split()` / `str.strip()` whitespace, the `\w` / `\b` of Python's `re` module, and Unicode
//! general categories. Metrics must match the official scripts character for character, so these
//! differ (slightly) from Rust's `split_whitespace` and `char::is_alphanumeric`.

use unicode_general_category::{get_general_category, GeneralCategory as Gc};

/// Python's `str.isspace()` for one character: Rust's `White_Space` plus the four information
/// separators U+001C..U+001F (bidi class B/S), which Python also splits on.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` with no argument: runs of whitespace separate tokens, no empty tokens.
pub fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

/// Python's `' '.join(s.split())`.
pub fn py_squash_whitespace(s: &str) -> String {
    py_split(s).collect::<Vec<_>>().join(" ")
}

/// Python's `str.strip()`.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Python's `str.rstrip()`.
pub fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_space)
}

/// Python's `str.lower()` (full Unicode lower-casing, final sigma included).
pub fn py_lower(s: &str) -> String {
    s.to_lowercase()
}

/// `c in string.punctuation`: the 32 ASCII punctuation characters.
pub fn is_ascii_punct(c: char) -> bool {
    c.is_ascii_punctuation()
}

/// Unicode general category P* (Pc, Pd, Ps, Pe, Pi, Pf, Po).
pub fn is_unicode_punct(c: char) -> bool {
    matches!(
        get_general_category(c),
        Gc::ConnectorPunctuation
            | Gc::DashPunctuation
            | Gc::OpenPunctuation
            | Gc::ClosePunctuation
            | Gc::InitialPunctuation
            | Gc::FinalPunctuation
            | Gc::OtherPunctuation
    )
}

/// A word character for Python's `re` (`\w` on `str` patterns): `str.isalnum()` or `_`, which is
/// exactly the general categories L* and N* (checked over all code points of Python 3.11).
pub fn is_py_word(c: char) -> bool {
    c == '_'
        || matches!(
            get_general_category(c),
            Gc::UppercaseLetter
                | Gc::LowercaseLetter
                | Gc::TitlecaseLetter
                | Gc::ModifierLetter
                | Gc::OtherLetter
                | Gc::DecimalNumber
                | Gc::LetterNumber
                | Gc::OtherNumber
        )
}

/// Python's `re.sub(r"\b(w1|w2|...)\b", " ", text)`: every whole-word occurrence of one of `words`
/// (tried in order, as the regex alternation does) becomes a single space. Word boundaries use
/// [`is_py_word`]; matching is case-sensitive and left to right without overlap.
pub fn replace_whole_words(text: &str, words: &[&str]) -> String {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let word_at = |k: usize| chars.get(k).is_some_and(|&(_, c)| is_py_word(c));
    // `\b` at char position k: the word-ness of the characters on either side differs.
    let boundary = |k: usize| (k > 0 && word_at(k - 1)) != word_at(k);
    let mut out = String::with_capacity(text.len());
    let mut k = 0;
    'scan: while k < chars.len() {
        if boundary(k) {
            let rest = &text[chars[k].0..];
            for w in words {
                if rest.starts_with(w) {
                    let end = k + w.chars().count();
                    if boundary(end) {
                        out.push(' ');
                        k = end;
                        continue 'scan;
                    }
                }
            }
        }
        out.push(chars[k].1);
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace_includes_information_separators() {
        assert_eq!(py_split(" a\u{1c}b\u{3000}c\u{a0} ").collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(py_strip("\u{1f} x \n"), "x");
    }

    #[test]
    fn whole_words_follow_python_boundaries() {
        let en = ["a", "an", "the"];
        assert_eq!(replace_whole_words("the cat and an apple", &en), "  cat and   apple");
        assert_eq!(replace_whole_words("theater a_b a1 a", &en), "theater a_b a1  ");
        // Combining marks are not `\w` in Python, so "a" before U+0301 is a whole word.
        assert_eq!(replace_whole_words("a\u{301}", &en), " \u{301}");
    }
}
