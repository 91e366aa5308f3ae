//! Sequence options in any order.
//!
//! PostgreSQL takes the options of `CREATE SEQUENCE` and of an identity column
//! (`GENERATED ... AS IDENTITY (START WITH 10 INCREMENT BY 5)`) in any order; sqlparser reads
//! them in one fixed order (INCREMENT, MINVALUE, MAXVALUE, START, CACHE, CYCLE, OWNED BY). Text
//! that does not parse is given a second chance with each such option list put in that order.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// `sql` with every sequence option list in sqlparser's order, or `None` when every list is in
/// that order already (or there is none).
pub fn in_parser_order(sql: &str) -> Option<String> {
    let tokens: Vec<TokenWithSpan> = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        .collect();
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut changed = false;
    let mut i = 0;
    while i < tokens.len() {
        let Some(list) = option_list(&tokens, i) else {
            i += 1;
            continue;
        };
        let clauses = clauses(&tokens[list.clone()]);
        let mut ordered = clauses.clone();
        ordered.sort_by_key(|c| c.rank);
        if ordered != clauses {
            let start = super::byte_offset(sql, tokens[list.start].span.start)?;
            let end = super::byte_offset(sql, tokens[list.end - 1].span.end)?;
            out.push_str(&sql[copied..start]);
            let texts: Option<Vec<&str>> = ordered
                .iter()
                .map(|c| {
                    let from =
                        super::byte_offset(sql, tokens[list.start + c.tokens.start].span.start)?;
                    let to =
                        super::byte_offset(sql, tokens[list.start + c.tokens.end - 1].span.end)?;
                    Some(&sql[from..to])
                })
                .collect();
            out.push_str(&texts?.join(" "));
            copied = end;
            changed = true;
        }
        i = list.end.max(i + 1);
    }
    out.push_str(&sql[copied..]);
    changed.then_some(out)
}

fn word(token: &TokenWithSpan) -> Option<String> {
    match &token.token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_lowercase()),
        _ => None,
    }
}

fn is(tokens: &[TokenWithSpan], i: usize, text: &str) -> bool {
    tokens.get(i).and_then(word).is_some_and(|w| w == text)
}

/// The token range of the option list that starts a sequence definition at `i`: after
/// `IDENTITY (` up to the closing parenthesis, or after `CREATE [TEMP] SEQUENCE [IF NOT EXISTS]
/// name [AS type]` up to the end of the statement.
fn option_list(tokens: &[TokenWithSpan], i: usize) -> Option<std::ops::Range<usize>> {
    if is(tokens, i, "identity") && tokens.get(i + 1)?.token == Token::LParen {
        let start = i + 2;
        let mut depth = 1;
        for (j, token) in tokens.iter().enumerate().skip(start) {
            match token.token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        return (j > start).then_some(start..j);
                    }
                }
                _ => {}
            }
        }
        return None;
    }
    if !is(tokens, i, "create") {
        return None;
    }
    let mut j = i + 1;
    if is(tokens, j, "temp") || is(tokens, j, "temporary") {
        j += 1;
    }
    if !is(tokens, j, "sequence") {
        return None;
    }
    j += 1;
    if is(tokens, j, "if") {
        j += 3;
    }
    // The name: words joined by dots.
    j += 1;
    while tokens.get(j).is_some_and(|t| t.token == Token::Period) {
        j += 2;
    }
    if is(tokens, j, "as") {
        j += 2;
    }
    let end = (j..tokens.len())
        .find(|&k| tokens[k].token == Token::SemiColon)
        .unwrap_or(tokens.len());
    (end > j).then_some(j..end)
}

/// One option: its tokens within the list and its place in sqlparser's order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    tokens: std::ops::Range<usize>,
    rank: u8,
}

/// The place in sqlparser's order of the option that starts at `i`, if one does.
fn rank(tokens: &[TokenWithSpan], i: usize) -> Option<u8> {
    let option = |w: &str| match w {
        "increment" => Some(0),
        "minvalue" => Some(1),
        "maxvalue" => Some(2),
        "start" => Some(3),
        "cache" => Some(4),
        "cycle" => Some(5),
        "owned" => Some(6),
        _ => None,
    };
    match word(&tokens[i])?.as_str() {
        "no" => tokens.get(i + 1).and_then(word).as_deref().and_then(option),
        other => option(other),
    }
}

fn clauses(tokens: &[TokenWithSpan]) -> Vec<Clause> {
    let mut clauses: Vec<Clause> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let place = rank(tokens, i).unwrap_or(u8::MAX);
        let mut end = i + 1;
        if is(tokens, i, "no") {
            end += 1;
        }
        while end < tokens.len() && rank(tokens, end).is_none() {
            end += 1;
        }
        clauses.push(Clause {
            tokens: i..end.min(tokens.len()),
            rank: place,
        });
        i = end;
    }
    clauses
}

#[cfg(test)]
mod tests {
    use super::in_parser_order;

    #[test]
    fn options_are_put_in_parser_order() {
        assert_eq!(
            in_parser_order("CREATE SEQUENCE s START 10 INCREMENT 5 NO CYCLE").as_deref(),
            Some("CREATE SEQUENCE s INCREMENT 5 START 10 NO CYCLE")
        );
        assert_eq!(
            in_parser_order(
                "create table t (id bigint generated always as identity (start with 10 increment by 5) primary key)"
            )
            .as_deref(),
            Some(
                "create table t (id bigint generated always as identity (increment by 5 start with 10) primary key)"
            )
        );
        assert_eq!(
            in_parser_order("CREATE TEMP SEQUENCE IF NOT EXISTS public.s AS integer MAXVALUE 9 MINVALUE -1;\nSELECT 1").as_deref(),
            Some("CREATE TEMP SEQUENCE IF NOT EXISTS public.s AS integer MINVALUE -1 MAXVALUE 9;\nSELECT 1")
        );
        assert_eq!(
            in_parser_order("CREATE SEQUENCE s INCREMENT 5 START 10"),
            None
        );
        assert_eq!(in_parser_order("SELECT 1"), None);
    }
}
