//! `SEARCH` and `CYCLE` clauses of recursive queries, as PostgreSQL rewrites them.
//!
//! ```sql
//! WITH RECURSIVE reach(f, t) AS (SELECT f, t FROM edges UNION ALL SELECT e.f, e.t FROM edges e, reach r WHERE e.f = r.t)
//!   SEARCH DEPTH FIRST BY f, t SET ordercol
//!   CYCLE f, t SET is_cycle USING path
//! SELECT * FROM reach ORDER BY ordercol;
//! ```
//!
//! sqlparser does not read the clauses, so a pass over the tokens takes them out and leaves, right
//! after the query they belong to, a marker query named [`MARKER`] that records them. The pass
//! over the syntax tree then removes each marker and gives its query the columns the clauses add,
//! as PostgreSQL does: both terms of the recursive `UNION` read the original term as a derived
//! table and compute the new columns from its columns; the recursive term also passes on the
//! new columns of the row it continues from.
//!
//! - `SEARCH DEPTH FIRST BY a, b SET s`: `s` is the array of `ROW(a, b)` of the rows on the path
//!   to this one, so ordering by `s` lists the rows depth first.
//! - `SEARCH BREADTH FIRST BY a, b SET s`: `s` is `ROW(depth, a, b)`, so ordering by `s` lists
//!   them breadth first.
//! - `CYCLE a, b SET m [TO v DEFAULT d] USING p`: `p` is the array of `ROW(a, b)` on the path,
//!   `m` is `v` (default `true`) when this row's `ROW(a, b)` was already on it and `d`
//!   (default `false`) otherwise, and a row marked `v` is not continued.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, ObjectNamePart, Query, Select, SelectItem, SetExpr, SetOperator, Statement,
    TableAliasColumnDef, TableFactor, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Word};

use super::normalize_ident;
use crate::error::{Error, Result};

/// The name of the marker query that records a query's `SEARCH` and `CYCLE` clauses.
const MARKER: &str = "augur.search_cycle";
/// Aliases of the derived tables the rewritten terms read.
const LEFT: &str = "augur.search_cycle.left";
const RIGHT: &str = "augur.search_cycle.right";

/// The tokens with every `SEARCH` / `CYCLE` clause that follows a query of a `WITH` list taken out
/// and recorded in a marker query right after it; None when there is no such clause.
pub(super) fn mark(tokens: &[TokenWithSpan]) -> Option<Vec<TokenWithSpan>> {
    let words = super::Significant::new(tokens);
    let significant = &words.at;
    let word = |k: usize, w: &str| words.is(k, w);
    let mut out = Vec::with_capacity(tokens.len());
    let mut copied = 0;
    let mut changed = false;
    for k in 0..significant.len() {
        let close = significant[k];
        if tokens[close].token != Token::RParen || !(word(k + 1, "search") || word(k + 1, "cycle"))
        {
            continue;
        }
        let Some(name) = query_name(tokens, significant, k) else {
            continue;
        };
        let Some((clauses, end)) = Clauses::read(tokens, significant, k + 1) else {
            continue;
        };
        out.extend(tokens[copied..=close].iter().cloned());
        out.extend(clauses.marker(&name, &tokens[close]));
        copied = end;
        changed = true;
    }
    out.extend(tokens[copied..].iter().cloned());
    changed.then_some(out)
}

/// The name of the `WITH` query whose parenthesized body the significant token `k` closes.
fn query_name(tokens: &[TokenWithSpan], significant: &[usize], k: usize) -> Option<String> {
    // The significant position of the parenthesis that opens the one at significant `k`.
    let opening = |k: usize| {
        let close = significant[k];
        let open = super::unmatched_bracket(tokens, (0..close).rev(), false)?;
        significant.binary_search(&open).ok()
    };
    let keyword = |m: usize| match &tokens[significant[m]].token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_lowercase()),
        _ => None,
    };
    let mut m = opening(k)?.checked_sub(1)?;
    if keyword(m).as_deref() == Some("materialized") {
        m = m.checked_sub(1)?;
        if keyword(m).as_deref() == Some("not") {
            m = m.checked_sub(1)?;
        }
    }
    if keyword(m).as_deref() != Some("as") {
        return None;
    }
    m = m.checked_sub(1)?;
    // A column list.
    if tokens[significant[m]].token == Token::RParen {
        m = opening(m)?.checked_sub(1)?;
    }
    match &tokens[significant[m]].token {
        Token::Word(w) => Some(normalize_ident(&Ident {
            value: w.value.clone(),
            quote_style: w.quote_style,
            span: tokens[significant[m]].span,
        })),
        _ => None,
    }
}

/// A `CYCLE` clause as written: the columns, the mark column, the tokens of the mark and default
/// values, the path column.
type Cycle = (Vec<String>, String, Option<Vec<TokenWithSpan>>, String);

/// A query's `SEARCH` and `CYCLE` clauses as written.
#[derive(Default)]
struct Clauses {
    /// `depth` or `breadth`, the columns and the sequence column.
    search: Option<(String, Vec<String>, String)>,
    /// The columns, the mark column, the tokens of the mark and default values, the path column.
    cycle: Option<Cycle>,
}

impl Clauses {
    /// Reads the clauses starting at significant token `k`; the clauses and the position of the
    /// token after them.
    fn read(
        tokens: &[TokenWithSpan],
        significant: &[usize],
        mut k: usize,
    ) -> Option<(Self, usize)> {
        let at = |k: usize| significant.get(k).map(|&j| &tokens[j].token);
        let is = |k: usize, w: &str| {
            matches!(at(k), Some(Token::Word(word))
                if word.quote_style.is_none() && word.value.eq_ignore_ascii_case(w))
        };
        let ident = |k: usize| match at(k) {
            Some(Token::Word(w)) => Some(normalize_ident(&Ident {
                value: w.value.clone(),
                quote_style: w.quote_style,
                span: tokens[significant[k]].span,
            })),
            _ => None,
        };
        // `a, b, ...` up to a keyword; the names and the position after them.
        let names = |mut k: usize| {
            let mut names = vec![ident(k)?];
            while at(k + 1) == Some(&Token::Comma) {
                k += 2;
                names.push(ident(k)?);
            }
            Some((names, k + 1))
        };
        let mut clauses = Clauses::default();
        if is(k, "search") {
            let order = if is(k + 1, "depth") {
                "depth"
            } else if is(k + 1, "breadth") {
                "breadth"
            } else {
                return None;
            };
            if !is(k + 2, "first") || !is(k + 3, "by") {
                return None;
            }
            let (columns, next) = names(k + 4)?;
            if !is(next, "set") {
                return None;
            }
            clauses.search = Some((order.into(), columns, ident(next + 1)?));
            k = next + 2;
        }
        if is(k, "cycle") {
            let (columns, next) = names(k + 1)?;
            if !is(next, "set") {
                return None;
            }
            let mark = ident(next + 1)?;
            k = next + 2;
            let mut values = None;
            if is(k, "to") {
                let default = (k + 1..significant.len()).find(|&m| is(m, "default"))?;
                let using = (default + 1..significant.len()).find(|&m| is(m, "using"))?;
                let to: Vec<TokenWithSpan> =
                    tokens[significant[k + 1]..significant[default]].to_vec();
                let default: Vec<TokenWithSpan> =
                    tokens[significant[default + 1]..significant[using]].to_vec();
                let mut both = to;
                both.push(TokenWithSpan::wrap(Token::Comma));
                both.extend(default);
                values = Some(both);
                k = using;
            }
            if !is(k, "using") {
                return None;
            }
            clauses.cycle = Some((columns, mark, values, ident(k + 1)?));
            k += 2;
        }
        if clauses.search.is_none() && clauses.cycle.is_none() {
            return None;
        }
        let end = significant.get(k).copied().unwrap_or(tokens.len());
        Some((clauses, end))
    }

    /// `, "augur.search_cycle" AS (SELECT 'name', 'depth', ARRAY['a'], 's', ARRAY['b'], 'm',
    /// v, d, 'p')`, with empty names and arrays for a clause that is not there.
    fn marker(&self, name: &str, at: &TokenWithSpan) -> Vec<TokenWithSpan> {
        let token = |t: Token| TokenWithSpan::new(t, at.span);
        let word = |text: &str, keyword: Keyword| {
            token(Token::Word(Word {
                value: text.into(),
                quote_style: None,
                keyword,
            }))
        };
        let text = |s: &str| token(Token::SingleQuotedString(s.into()));
        let array = |names: &[String]| {
            let mut out = vec![word("ARRAY", Keyword::ARRAY), token(Token::LBracket)];
            for (n, name) in names.iter().enumerate() {
                if n > 0 {
                    out.push(token(Token::Comma));
                }
                out.push(text(name));
            }
            out.push(token(Token::RBracket));
            out
        };
        let mut out = vec![
            token(Token::Comma),
            token(Token::Word(Word {
                value: MARKER.into(),
                quote_style: Some('"'),
                keyword: Keyword::NoKeyword,
            })),
            word("AS", Keyword::AS),
            token(Token::LParen),
            word("SELECT", Keyword::SELECT),
            text(name),
        ];
        let (order, by, set) = self.search.clone().unwrap_or_default();
        out.push(token(Token::Comma));
        out.push(text(&order));
        out.push(token(Token::Comma));
        out.extend(array(&by));
        out.push(token(Token::Comma));
        out.push(text(&set));
        let (by, mark, values, path) = self.cycle.clone().unwrap_or_default();
        out.push(token(Token::Comma));
        out.extend(array(&by));
        out.push(token(Token::Comma));
        out.push(text(&mark));
        out.push(token(Token::Comma));
        match values {
            Some(values) => out.extend(values),
            None => out.extend([
                word("TRUE", Keyword::TRUE),
                token(Token::Comma),
                word("FALSE", Keyword::FALSE),
            ]),
        }
        out.push(token(Token::Comma));
        out.push(text(&path));
        out.push(token(Token::RParen));
        out
    }
}

/// The clauses a marker query records.
struct Recorded {
    query: String,
    /// `depth` or `breadth`, the columns and the sequence column.
    search: Option<(bool, Vec<String>, String)>,
    /// The columns, the mark column, the mark and default values, the path column.
    cycle: Option<(Vec<String>, String, Expr, Expr, String)>,
}

impl Recorded {
    fn from_marker(query: &Query) -> Option<Self> {
        let SetExpr::Select(select) = query.body.as_ref() else {
            return None;
        };
        let items: Vec<&Expr> = select
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::UnnamedExpr(e) => Some(e),
                _ => None,
            })
            .collect::<Option<_>>()?;
        let text = |e: &Expr| match e {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        };
        let names = |e: &Expr| match e {
            Expr::Array(a) => a.elem.iter().map(text).collect::<Option<Vec<_>>>(),
            _ => None,
        };
        let [
            name,
            order,
            search_by,
            set,
            cycle_by,
            mark,
            to,
            default,
            path,
        ] = items.as_slice()
        else {
            return None;
        };
        let order = text(order)?;
        let cycle_by = names(cycle_by)?;
        Some(Self {
            query: text(name)?,
            search: if order.is_empty() {
                None
            } else {
                Some((order == "depth", names(search_by)?, text(set)?))
            },
            cycle: if cycle_by.is_empty() {
                None
            } else {
                Some((
                    cycle_by,
                    text(mark)?,
                    (*to).clone(),
                    (*default).clone(),
                    text(path)?,
                ))
            },
        })
    }
}

/// Gives every query with `SEARCH` or `CYCLE` clauses the columns they add.
pub fn apply(statement: &mut Statement) -> Result<()> {
    match statement.visit(&mut Rewriter) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(e) => Err(e),
    }
}

struct Rewriter;

impl VisitorMut for Rewriter {
    type Break = Error;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Error> {
        let Some(with) = query.with.as_mut() else {
            return ControlFlow::Continue(());
        };
        let is_marker = |name: &Ident| name.quote_style.is_some() && name.value == MARKER;
        if !with.cte_tables.iter().any(|cte| is_marker(&cte.alias.name)) {
            return ControlFlow::Continue(());
        }
        let recursive = with.recursive;
        let mut kept: Vec<datafusion::sql::sqlparser::ast::Cte> = Vec::new();
        for cte in std::mem::take(&mut with.cte_tables) {
            if !is_marker(&cte.alias.name) {
                kept.push(cte);
                continue;
            }
            let Some(recorded) = Recorded::from_marker(&cte.query) else {
                return ControlFlow::Break(Error::Internal("malformed SEARCH/CYCLE marker".into()));
            };
            let Some(target) = kept
                .last_mut()
                .filter(|t| normalize_ident(&t.alias.name) == recorded.query)
            else {
                return ControlFlow::Break(Error::Internal("misplaced SEARCH/CYCLE marker".into()));
            };
            if let Err(e) = rewrite(target, &recorded, recursive) {
                return ControlFlow::Break(e);
            }
        }
        with.cte_tables = kept;
        ControlFlow::Continue(())
    }
}

fn syntax(message: impl Into<String>) -> Error {
    Error::coded("42601", message)
}

fn quoted(name: &str) -> String {
    Ident::with_quote('"', name).to_string()
}

fn parse_select(sql: &str) -> Result<Box<Query>> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_query())
        .map_err(|e| Error::Internal(format!("SEARCH/CYCLE rewrite: {e}: {sql}")))
}

/// Puts `body` where the placeholder `(SELECT 1)` derived table of `query` is.
fn fill_derived(query: &mut Query, body: SetExpr) {
    if let SetExpr::Select(select) = query.body.as_mut()
        && let Some(from) = select.from.first_mut()
        && let TableFactor::Derived { subquery, .. } = &mut from.relation
    {
        *subquery.body = body;
    }
}

fn rewrite(
    cte: &mut datafusion::sql::sqlparser::ast::Cte,
    clauses: &Recorded,
    recursive: bool,
) -> Result<()> {
    let name = normalize_ident(&cte.alias.name);
    let body = cte.query.body.as_mut();
    let recursive_union = match body {
        SetExpr::SetOperation {
            op: SetOperator::Union,
            right,
            ..
        } => recursive && reads(right, &name),
        _ => false,
    };
    if !recursive_union {
        return Err(syntax("WITH query is not recursive"));
    }
    let SetExpr::SetOperation { left, right, .. } = body else {
        unreachable!("checked above");
    };
    if matches!(left.as_ref(), SetExpr::SetOperation { .. }) {
        return Err(Error::coded(
            "0A000",
            "with a SEARCH or CYCLE clause, the left side of the UNION must be a SELECT",
        ));
    }
    let SetExpr::Select(recursive_term) = right.as_mut() else {
        return Err(syntax(
            "with a SEARCH or CYCLE clause, the right side of the UNION must be a SELECT",
        ));
    };
    let columns = query_columns(cte.alias.columns.as_slice(), left)?;
    // The checks PostgreSQL makes, in its order.
    let check_columns = |listed: &[String], what: &str| -> Result<()> {
        for (n, column) in listed.iter().enumerate() {
            if !columns.contains(column) {
                return Err(syntax(format!(
                    "{what} column \"{column}\" not in WITH query column list"
                )));
            }
            if listed[..n].contains(column) {
                return Err(Error::coded(
                    "42701",
                    format!("{what} column \"{column}\" specified more than once"),
                ));
            }
        }
        Ok(())
    };
    if let Some((_, by, set)) = &clauses.search {
        check_columns(by, "search")?;
        if columns.contains(set) {
            return Err(syntax(format!(
                "search sequence column name \"{set}\" already used in WITH query column list"
            )));
        }
    }
    if let Some((by, mark, _, _, path)) = &clauses.cycle {
        check_columns(by, "cycle")?;
        if columns.contains(mark) {
            return Err(syntax(format!(
                "cycle mark column name \"{mark}\" already used in WITH query column list"
            )));
        }
        if columns.contains(path) {
            return Err(syntax(format!(
                "cycle path column name \"{path}\" already used in WITH query column list"
            )));
        }
        if mark == path {
            return Err(syntax(
                "cycle mark column name and cycle path column name are the same",
            ));
        }
        if let Some((_, _, set)) = &clauses.search {
            if set == mark {
                return Err(syntax(
                    "search sequence column name and cycle mark column name are the same",
                ));
            }
            if set == path {
                return Err(syntax(
                    "search sequence column name and cycle path column name are the same",
                ));
            }
        }
    }
    let Some(reference) = references(recursive_term, &name) else {
        return Err(Error::coded(
            "0A000",
            format!(
                "with a SEARCH or CYCLE clause, the recursive term must read \"{name}\" in its FROM list"
            ),
        ));
    };

    // The columns added, in PostgreSQL's order, with their first and next values.
    let row = |table: &str, by: &[String]| {
        let fields: Vec<String> = by
            .iter()
            .map(|c| format!("{}.{}", quoted(table), quoted(c)))
            .collect();
        format!("ROW({})", fields.join(", "))
    };
    let mut added: Vec<(String, String, String)> = Vec::new();
    if let Some((depth_first, by, set)) = &clauses.search {
        let previous = format!("{}.{}", quoted(RIGHT), quoted(set));
        if *depth_first {
            added.push((
                set.clone(),
                format!("ARRAY[{}]", row(LEFT, by)),
                format!("{previous} || {}", row(RIGHT, by)),
            ));
        } else {
            let fields = |table: &str| {
                by.iter()
                    .map(|c| format!(", {}.{}", quoted(table), quoted(c)))
                    .collect::<String>()
            };
            added.push((
                set.clone(),
                format!("ROW(CAST(0 AS BIGINT){})", fields(LEFT)),
                format!("ROW(get_field({previous}, 'c0') + 1{})", fields(RIGHT)),
            ));
        }
    }
    let mut condition = None;
    if let Some((by, mark, to, default, path)) = &clauses.cycle {
        let previous = format!("{}.{}", quoted(RIGHT), quoted(path));
        added.push((
            mark.clone(),
            // Nullable, as the recursive term's CASE is.
            format!("CASE WHEN {} IS NOT NULL THEN {default} END", row(LEFT, by)),
            format!(
                "CASE WHEN {} = ANY({previous}) THEN {to} ELSE {default} END",
                row(RIGHT, by)
            ),
        ));
        added.push((
            path.clone(),
            format!("ARRAY[{}]", row(LEFT, by)),
            format!("{previous} || {}", row(RIGHT, by)),
        ));
        condition = Some(format!("{}.{} <> {to}", quoted(RIGHT), quoted(mark)));
    }

    // The recursive term passes on the added columns of the row it continues, after its own.
    expand_own_wildcards(recursive_term, &reference, &columns)?;
    for (column, _, _) in &added {
        recursive_term
            .projection
            .push(SelectItem::UnnamedExpr(Expr::CompoundIdentifier(vec![
                reference.clone(),
                Ident::with_quote('"', column),
            ])));
    }

    let listed = |table: &str| -> String {
        columns
            .iter()
            .map(|c| format!("{}.{}", quoted(table), quoted(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let names = |extra: &[&String]| -> String {
        columns
            .iter()
            .chain(extra.iter().copied())
            .map(|c| quoted(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut first = parse_select(&format!(
        "SELECT {}, {} FROM (SELECT 1) AS {}({})",
        listed(LEFT),
        added
            .iter()
            .map(|(column, first, _)| format!("{first} AS {}", quoted(column)))
            .collect::<Vec<_>>()
            .join(", "),
        quoted(LEFT),
        names(&[]),
    ))?;
    let mut next = parse_select(&format!(
        "SELECT {}, {} FROM (SELECT 1) AS {}({}){}",
        listed(RIGHT),
        added
            .iter()
            .map(|(column, _, next)| format!("{next} AS {}", quoted(column)))
            .collect::<Vec<_>>()
            .join(", "),
        quoted(RIGHT),
        names(&added.iter().map(|(c, _, _)| c).collect::<Vec<_>>()),
        condition.map(|c| format!(" WHERE {c}")).unwrap_or_default(),
    ))?;
    let placeholder = SetExpr::Values(datafusion::sql::sqlparser::ast::Values {
        explicit_row: false,
        value_keyword: false,
        rows: vec![],
    });
    fill_derived(
        &mut first,
        std::mem::replace(left.as_mut(), placeholder.clone()),
    );
    fill_derived(&mut next, std::mem::replace(right.as_mut(), placeholder));
    **left = *first.body;
    **right = *next.body;
    cte.alias.columns = columns
        .iter()
        .chain(added.iter().map(|(c, _, _)| c))
        .map(|c| TableAliasColumnDef {
            name: Ident::with_quote('"', c),
            data_type: None,
        })
        .collect();
    Ok(())
}

/// The names of a `WITH` query's columns: its column list, or the names its first term gives.
fn query_columns(listed: &[TableAliasColumnDef], first: &SetExpr) -> Result<Vec<String>> {
    if !listed.is_empty() {
        return Ok(listed.iter().map(|c| normalize_ident(&c.name)).collect());
    }
    let SetExpr::Select(select) = first else {
        return Err(Error::coded(
            "0A000",
            "SEARCH and CYCLE need the names of the query's columns: list them after its name",
        ));
    };
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Ok(normalize_ident(alias)),
            SelectItem::UnnamedExpr(Expr::Identifier(ident)) => Ok(normalize_ident(ident)),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                Ok(normalize_ident(parts.last().expect("a part")))
            }
            _ => Err(Error::coded(
                "0A000",
                "SEARCH and CYCLE need the names of the query's columns: list them after its name",
            )),
        })
        .collect()
}

/// Whether `term` reads the relation `name` anywhere.
fn reads(term: &SetExpr, name: &str) -> bool {
    datafusion::sql::sqlparser::ast::visit_relations(term, |relation| match relation.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] if normalize_ident(ident) == name => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// The name the recursive term reads the query under (its alias, or the query's name), when the
/// term reads it in its own FROM list.
fn references(select: &Select, name: &str) -> Option<Ident> {
    select
        .from
        .iter()
        .flat_map(|from| {
            std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation))
        })
        .find_map(|factor| match factor {
            TableFactor::Table {
                name: table, alias, ..
            } => match table.0.as_slice() {
                [ObjectNamePart::Identifier(ident)] if normalize_ident(ident) == name => Some(
                    alias
                        .as_ref()
                        .map_or_else(|| ident.clone(), |a| a.name.clone()),
                ),
                _ => None,
            },
            _ => None,
        })
}

/// `*` and `reference.*` in the recursive term stand for the query's own columns, not the ones
/// the clauses add: they are written out.
fn expand_own_wildcards(term: &mut Select, reference: &Ident, columns: &[String]) -> Result<()> {
    let reference_name = normalize_ident(reference);
    let only_the_query = term.from.len() == 1 && term.from[0].joins.is_empty();
    let own = || {
        columns.iter().map(|c| {
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(vec![
                reference.clone(),
                Ident::with_quote('"', c),
            ]))
        })
    };
    let mut projection = Vec::with_capacity(term.projection.len());
    for item in std::mem::take(&mut term.projection) {
        match &item {
            SelectItem::Wildcard(_) if only_the_query => projection.extend(own()),
            SelectItem::Wildcard(_) => {
                return Err(Error::coded(
                    "0A000",
                    "with a SEARCH or CYCLE clause, the recursive term must name its columns instead of *",
                ));
            }
            SelectItem::QualifiedWildcard(
                datafusion::sql::sqlparser::ast::SelectItemQualifiedWildcardKind::ObjectName(n),
                _,
            ) if matches!(n.0.as_slice(), [ObjectNamePart::Identifier(i)] if normalize_ident(i) == reference_name) => {
                projection.extend(own())
            }
            _ => projection.push(item),
        }
    }
    term.projection = projection;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> Result<String> {
        let tokens =
            datafusion::sql::sqlparser::tokenizer::Tokenizer::new(&PostgreSqlDialect {}, sql)
                .with_unescape(true)
                .tokenize_with_location()
                .unwrap();
        let marked = mark(&tokens).expect("clauses found");
        let mut statement = Parser::new(&PostgreSqlDialect {})
            .with_tokens_with_locations(marked)
            .parse_statement()
            .unwrap();
        apply(&mut statement)?;
        Ok(statement.to_string())
    }

    #[test]
    fn depth_first_adds_the_path_of_rows() {
        let sql = rewritten(
            "WITH RECURSIVE g(f, t) AS (SELECT * FROM e UNION ALL SELECT e.* FROM e, g s WHERE e.f = s.t) \
             SEARCH DEPTH FIRST BY f, t SET seq SELECT * FROM g ORDER BY seq",
        )
        .unwrap();
        assert!(sql.contains("g (\"f\", \"t\", \"seq\")"), "{sql}");
        assert!(
            sql.contains("ARRAY[ROW(\"augur.search_cycle.left\".\"f\""),
            "{sql}"
        );
        assert!(sql.contains("e.*, s.\"seq\""), "{sql}");
        assert!(!sql.contains(&format!("\"{MARKER}\" AS")), "{sql}");
    }

    #[test]
    fn cycle_stops_at_marked_rows() {
        let sql = rewritten(
            "WITH RECURSIVE a AS (SELECT 1 AS b UNION ALL SELECT * FROM a) CYCLE b SET c TO 'Y' DEFAULT 'N' USING p SELECT * FROM a",
        )
        .unwrap();
        assert!(sql.contains("a.\"b\", a.\"c\", a.\"p\""), "{sql}");
        assert!(
            sql.contains("WHERE \"augur.search_cycle.right\".\"c\" <> 'Y'"),
            "{sql}"
        );
    }

    #[test]
    fn postgresql_refusals() {
        for (sql, code, message) in [
            (
                "WITH RECURSIVE g(f, t) AS (SELECT * FROM e UNION ALL SELECT e.* FROM e, g WHERE e.f = g.t) SEARCH DEPTH FIRST BY foo SET seq SELECT 1",
                "42601",
                "search column \"foo\" not in WITH query column list",
            ),
            (
                "WITH RECURSIVE g(f, t) AS (SELECT * FROM e UNION ALL SELECT e.* FROM e, g WHERE e.f = g.t) SEARCH DEPTH FIRST BY f, f SET seq SELECT 1",
                "42701",
                "search column \"f\" specified more than once",
            ),
            (
                "WITH RECURSIVE g(f, t) AS (SELECT * FROM e UNION ALL SELECT e.* FROM e, g WHERE e.f = g.t) CYCLE f SET t USING p SELECT 1",
                "42601",
                "cycle mark column name \"t\" already used",
            ),
            (
                "WITH RECURSIVE g(f, t) AS (SELECT * FROM e UNION ALL SELECT e.* FROM e, g WHERE e.f = g.t) CYCLE f SET p USING p SELECT 1",
                "42601",
                "cycle mark column name and cycle path column name are the same",
            ),
            (
                "WITH g(f, t) AS (SELECT * FROM e UNION ALL SELECT * FROM e) SEARCH DEPTH FIRST BY f SET seq SELECT 1",
                "42601",
                "WITH query is not recursive",
            ),
            (
                "WITH RECURSIVE g(f, t) AS (SELECT * FROM e UNION ALL SELECT * FROM e UNION ALL SELECT e.* FROM e, g WHERE e.f = g.t) SEARCH DEPTH FIRST BY f SET seq SELECT 1",
                "0A000",
                "the left side of the UNION must be a SELECT",
            ),
        ] {
            let err = rewritten(sql).unwrap_err();
            assert_eq!(err.sqlstate(), code, "{sql}: {err}");
            assert!(err.to_string().contains(message), "{err}");
        }
    }
}
