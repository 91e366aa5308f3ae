//! PostgreSQL's Unicode escapes: string constants `U&'d\0061t'` and identifiers `U&"d\0061t"`,
//! each with an optional `UESCAPE 'c'` naming another escape character, and `unistr(text)`.
//!
//! sqlparser reads `U&'...'` with `\` as the escape only, refuses what it cannot decode and
//! does not read `U&"..."` or `UESCAPE`; the text is rewritten before it is tokenized, each
//! escaped constant or identifier becoming a plain one.

use std::borrow::Cow;

/// Why a Unicode escape is refused, in PostgreSQL's words (all `42601`).
pub type Refusal = String;

/// `sql` with every `U&'...'` and `U&"..."` (and its `UESCAPE` clause) written as a plain
/// constant or identifier.
pub fn rewrite(sql: &str) -> Result<Cow<'_, str>, Refusal> {
    if !sql.contains('&') {
        return Ok(Cow::Borrowed(sql));
    }
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut i = 0;
    let mut changed = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => i = skip_quoted(bytes, i, b'\'', false),
            b'"' => i = skip_quoted(bytes, i, b'"', false),
            b'e' | b'E' if bytes.get(i + 1) == Some(&b'\'') && !continues_word(bytes, i) => {
                i = skip_quoted(bytes, i + 1, b'\'', true)
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1)
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_comment(bytes, i),
            b'$' => i = skip_dollar_quoted(sql, i),
            b'u' | b'U'
                if bytes.get(i + 1) == Some(&b'&')
                    && matches!(bytes.get(i + 2), Some(b'\'' | b'"'))
                    && !continues_word(bytes, i) =>
            {
                let quote = bytes[i + 2];
                let end = skip_quoted(bytes, i + 2, quote, false);
                if end > bytes.len() || bytes[end - 1] != quote {
                    // Unterminated: left for the tokenizer to report.
                    break;
                }
                let body = sql[i + 3..end - 1].replace(
                    if quote == b'\'' { "''" } else { "\"\"" },
                    &(quote as char).to_string(),
                );
                let (escape, next) = uescape(sql, end)?;
                let decoded = decode(&body, escape)?;
                out.push_str(&sql[copied..i]);
                let q = quote as char;
                out.push(q);
                out.push_str(&decoded.replace(q, &format!("{q}{q}")));
                out.push(q);
                copied = next;
                i = next;
                changed = true;
            }
            _ => i += 1,
        }
    }
    if !changed {
        return Ok(Cow::Borrowed(sql));
    }
    out.push_str(&sql[copied..]);
    Ok(Cow::Owned(out))
}

/// True when the character at `i` continues an identifier or number (so `U&` there is not the
/// start of an escaped constant).
fn continues_word(bytes: &[u8], i: usize) -> bool {
    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || matches!(bytes[i - 1], b'_' | b'$'))
}

/// The position after the quoted text opening at `open` (a doubled quote stands for itself;
/// with `backslash`, a backslash escapes the next character). Past the end when unterminated.
fn skip_quoted(bytes: &[u8], open: usize, quote: u8, backslash: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if backslash && bytes[i] == b'\\' {
            i += 2;
        } else if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    bytes.len() + 1
}

/// The position after the (nesting) block comment opening at `open`.
fn skip_comment(bytes: &[u8], open: usize) -> usize {
    let mut depth = 0;
    let mut i = open;
    while i + 1 < bytes.len() {
        if bytes[i] == b'/' && bytes[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// The position after the dollar-quoted constant opening at `open` (`$tag$...$tag$`), or after
/// the `$` when none opens there (a parameter like `$1`).
fn skip_dollar_quoted(sql: &str, open: usize) -> usize {
    let rest = &sql[open + 1..];
    let tag_len = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let tag = &rest[..tag_len];
    if !rest[tag_len..].starts_with('$') || tag.starts_with(|c: char| c.is_ascii_digit()) {
        return open + 1;
    }
    let delimiter = format!("${tag}$");
    let body = open + delimiter.len();
    sql[body..]
        .find(&delimiter)
        .map_or(sql.len(), |n| body + n + delimiter.len())
}

/// The escape character named by a `UESCAPE 'c'` clause after position `at`, and the position
/// after the clause; `\` and `at` when there is none.
fn uescape(sql: &str, at: usize) -> Result<(char, usize), Refusal> {
    let rest = &sql[at..];
    let trimmed = rest.trim_start();
    let Some(word) = trimmed
        .get(..7)
        .filter(|w| w.eq_ignore_ascii_case("uescape"))
    else {
        return Ok(('\\', at));
    };
    if trimmed[7..]
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '_')
    {
        return Ok(('\\', at));
    }
    let after_word = at + (rest.len() - trimmed.len()) + word.len();
    let clause = sql[after_word..].trim_start();
    let start = sql.len() - clause.len();
    let mut chars = clause.chars();
    let (Some('\''), Some(c), Some('\'')) = (chars.next(), chars.next(), chars.next()) else {
        return Err("UESCAPE must be followed by a simple string literal".into());
    };
    if c.is_ascii_hexdigit() || matches!(c, '+' | '\'' | '"') || c.is_whitespace() {
        return Err("invalid Unicode escape character".into());
    }
    Ok((c, start + 2 + c.len_utf8()))
}

/// `text` with its Unicode escapes decoded: `<escape>XXXX`, `<escape>+XXXXXX`, and the escape
/// character doubled for itself, UTF-16 surrogate pairs combined.
pub fn decode(text: &str, escape: char) -> Result<String, Refusal> {
    decode_with(text, escape, false)
}

/// `unistr(text)`: `decode` with `\`, also taking `\uXXXX` and `\UXXXXXXXX`.
pub fn unistr(text: &str) -> Result<String, Refusal> {
    decode_with(text, '\\', true)
}

fn decode_with(text: &str, escape: char, long_forms: bool) -> Result<String, Refusal> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut pending_high: Option<u32> = None;
    let mut i = 0;
    let invalid = || -> Refusal { "invalid Unicode escape".into() };
    let surrogate = || -> Refusal { "invalid Unicode surrogate pair".into() };
    while i < chars.len() {
        let c = chars[i];
        if c != escape {
            if pending_high.is_some() {
                return Err(surrogate());
            }
            out.push(c);
            i += 1;
            continue;
        }
        let hex = |from: usize, n: usize| -> Option<u32> {
            let digits: String = chars.get(from..from + n)?.iter().collect();
            if digits.chars().all(|d| d.is_ascii_hexdigit()) {
                u32::from_str_radix(&digits, 16).ok()
            } else {
                None
            }
        };
        let (code, width) = match chars.get(i + 1) {
            Some(&next) if next == escape => {
                if pending_high.is_some() {
                    return Err(surrogate());
                }
                out.push(escape);
                i += 2;
                continue;
            }
            Some('+') => (hex(i + 2, 6).ok_or_else(invalid)?, 8),
            Some('u') if long_forms => (hex(i + 2, 4).ok_or_else(invalid)?, 6),
            Some('U') if long_forms => (hex(i + 2, 8).ok_or_else(invalid)?, 10),
            _ => (hex(i + 1, 4).ok_or_else(invalid)?, 5),
        };
        i += width;
        if code == 0 || code > 0x10FFFF {
            return Err("invalid Unicode escape value".into());
        }
        match (pending_high.take(), code) {
            (None, 0xD800..=0xDBFF) => pending_high = Some(code),
            (None, 0xDC00..=0xDFFF) => return Err(surrogate()),
            (None, code) => out.push(char::from_u32(code).ok_or_else(invalid)?),
            (Some(high), 0xDC00..=0xDFFF) => {
                let combined = 0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00);
                out.push(char::from_u32(combined).ok_or_else(invalid)?);
            }
            (Some(_), _) => return Err(surrogate()),
        }
    }
    if pending_high.is_some() {
        return Err(surrogate());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_and_identifiers() {
        assert_eq!(
            rewrite(r#"SELECT U&'d\0061t\+000061' AS U&"d\0061t\+000061""#).unwrap(),
            r#"SELECT 'data' AS "data""#
        );
        assert_eq!(
            rewrite(r#"SELECT U&'d!0061t\+000061' UESCAPE '!' AS U&"d*0061t\+000061" UESCAPE '*'"#)
                .unwrap(),
            r#"SELECT 'dat\+000061' AS "dat\+000061""#
        );
        assert_eq!(rewrite(r"SELECT U&'a\\b'").unwrap(), r"SELECT 'a\b'");
        assert_eq!(
            rewrite(r"SELECT U&' \' UESCAPE '!' AS x").unwrap(),
            r"SELECT ' \' AS x"
        );
        assert_eq!(
            rewrite(r"SELECT U&'\D83D\DE00'").unwrap(),
            "SELECT '\u{1F600}'"
        );
        // Inside other constants, comments and words nothing changes.
        for sql in [
            r"SELECT 'U&''x'''",
            r"SELECT 1 -- U&'\zz'",
            r"SELECT $$U&'\zz'$$",
            r"SELECT au&'x'",
        ] {
            assert_eq!(rewrite(sql).unwrap(), sql);
        }
    }

    #[test]
    fn refusals() {
        for (sql, message) in [
            (r"SELECT U&'wrong: \061'", "invalid Unicode escape"),
            (r"SELECT U&'wrong: \db99'", "invalid Unicode surrogate pair"),
            (
                r"SELECT U&'wrong: \db99\0061'",
                "invalid Unicode surrogate pair",
            ),
            (
                r"SELECT U&'wrong: \+2FFFFF'",
                "invalid Unicode escape value",
            ),
            (
                r"SELECT U&'wrong: +0061' UESCAPE '+'",
                "invalid Unicode escape character",
            ),
            (
                r"SELECT U&'wrong: +0061' UESCAPE +",
                "UESCAPE must be followed by a simple string literal",
            ),
        ] {
            assert_eq!(rewrite(sql).unwrap_err(), message, "{sql}");
        }
    }

    #[test]
    fn unistr_forms() {
        assert_eq!(unistr(r"\0064at\+0000610").unwrap(), "data0");
        assert_eq!(unistr(r"d\u0061t\U000000610").unwrap(), "data0");
        assert_eq!(unistr(r"a\\b").unwrap(), r"a\b");
        assert!(unistr(r"wrong: \db99").is_err());
    }
}
