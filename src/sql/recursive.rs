//! PostgreSQL's rules for `WITH RECURSIVE`, checked before planning.
//!
//! A recursive query's recursive term (what follows its `UNION [ALL]`) is run again on the rows
//! of its last round until a round gives none. PostgreSQL refuses recursive terms for which that
//! is not well defined: an aggregate (it gives a row even from no rows, so the query would never
//! end), the query's own name inside a subquery expression, or read more than once. DataFusion plans such
//! queries and runs them forever; Augur refuses them with PostgreSQL's `42P19`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, LimitClause, ObjectNamePart, Query, SetExpr, SetOperator, Statement, TableFactor, Visit,
    Visitor,
};

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace, Word};

use super::rewrite::is_aggregate;
use crate::error::{Error, Result};

/// Refuses recursive queries PostgreSQL refuses.
pub fn check(statement: &Statement) -> Result<()> {
    match statement.visit(&mut RecursiveQueries) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(e) => Err(e),
    }
}

struct RecursiveQueries;

impl Visitor for RecursiveQueries {
    type Break = Error;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Error> {
        let Some(with) = query.with.as_ref().filter(|w| w.recursive) else {
            return ControlFlow::Continue(());
        };
        for cte in &with.cte_tables {
            let name = crate::sql::normalize_ident(&cte.alias.name);
            let SetExpr::SetOperation {
                op: SetOperator::Union,
                right,
                ..
            } = cte.query.body.as_ref()
            else {
                continue;
            };
            let mut references = References::new(&name);
            let _ = right.visit(&mut references);
            if references.direct + references.nested == 0 {
                continue;
            }
            // PostgreSQL has no way to run these on a recursive UNION as a whole.
            let query = &cte.query;
            let (offset, limit) = match &query.limit_clause {
                Some(LimitClause::LimitOffset { limit, offset, .. }) => {
                    (offset.is_some(), limit.is_some())
                }
                Some(LimitClause::OffsetCommaLimit { .. }) => (true, true),
                None => (false, false),
            };
            for (present, what) in [
                (query.order_by.is_some(), "ORDER BY"),
                (offset, "OFFSET"),
                (limit || query.fetch.is_some(), "LIMIT"),
                (!query.locks.is_empty(), "FOR UPDATE/SHARE"),
            ] {
                if present {
                    return ControlFlow::Break(Error::coded(
                        "0A000",
                        format!("{what} in a recursive query is not implemented"),
                    ));
                }
            }
            if references.nested > 0 {
                return ControlFlow::Break(invalid_recursion(format!(
                    "recursive reference to query \"{name}\" must not appear within a subquery"
                )));
            }
            if references.direct > 1 {
                return ControlFlow::Break(invalid_recursion(format!(
                    "recursive reference to query \"{name}\" must not appear more than once"
                )));
            }
            if references.shared > 0 {
                return ControlFlow::Break(Error::coded(
                    "0A000",
                    format!(
                        "a CTE that reads recursive query \"{name}\" and is named more than once in its recursive term is not supported"
                    ),
                ));
            }
            if term_aggregates(right) {
                return ControlFlow::Break(invalid_recursion(
                    "aggregate functions are not allowed in a recursive query's recursive term",
                ));
            }
        }
        ControlFlow::Continue(())
    }
}

fn invalid_recursion(message: impl Into<String>) -> Error {
    Error::coded("42P19", message)
}

/// Counts the reads of a query's own name in its recursive term: those the term reads as a table
/// (directly, through a subquery in FROM or through a CTE of its own), and those inside
/// subquery expressions (`(SELECT ...)`, `EXISTS`, `IN (SELECT ...)`), which PostgreSQL refuses.
struct References<'a> {
    name: &'a str,
    direct: usize,
    nested: usize,
    /// Further reads through a CTE of the term that it names more than once (PostgreSQL
    /// computes such a CTE once; Augur would read the recursive query again for each use).
    shared: usize,
    /// Open subquery expressions in the term.
    sublinks: usize,
}

impl<'a> References<'a> {
    fn new(name: &'a str) -> Self {
        Self {
            name,
            direct: 0,
            nested: 0,
            shared: 0,
            sublinks: 0,
        }
    }
}

fn is_sublink(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
    )
}

impl Visitor for References<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        // A CTE of the term that reads the recursive query is read as many times as the term
        // names it; its body is visited once.
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let mut inner = References::new(self.name);
                let _ = cte.query.visit(&mut inner);
                let reads = inner.direct + inner.nested;
                if reads == 0 {
                    continue;
                }
                let alias = crate::sql::normalize_ident(&cte.alias.name);
                let mut uses = References::new(&alias);
                let _ = query.body.visit(&mut uses);
                let uses = uses.direct + uses.nested;
                if uses > 1 {
                    self.shared += reads * (uses - 1);
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if is_sublink(expr) {
            self.sublinks += 1;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if is_sublink(expr) {
            self.sublinks -= 1;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, .. } = factor
            && let [ObjectNamePart::Identifier(ident)] = name.0.as_slice()
            && crate::sql::normalize_ident(ident) == self.name
        {
            if self.sublinks == 0 {
                self.direct += 1;
            } else {
                self.nested += 1;
            }
        }
        ControlFlow::Continue(())
    }
}

/// True when the recursive term aggregates at its own level (aggregates in its subqueries
/// belong to them).
fn term_aggregates(term: &SetExpr) -> bool {
    let select = match term {
        SetExpr::Select(select) => select.as_ref(),
        SetExpr::Query(query) => match query.body.as_ref() {
            SetExpr::Select(select) => select.as_ref(),
            _ => return false,
        },
        _ => return false,
    };
    let mut finder = OwnAggregates { depth: 0 };
    select.projection.visit(&mut finder).is_break() || select.having.visit(&mut finder).is_break()
}

struct OwnAggregates {
    depth: usize,
}

impl Visitor for OwnAggregates {
    type Break = ();

    fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(f) if self.depth == 0 && is_aggregate(f) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }
}

/// `CREATE [OR REPLACE] [TEMP] RECURSIVE VIEW name (columns) AS query`, which sqlparser does not
/// read, written as PostgreSQL defines it: `CREATE ... VIEW name AS WITH RECURSIVE name (columns)
/// AS (query) SELECT columns FROM name`. None when `tokens` hold no such statement.
pub(super) fn views(tokens: &[TokenWithSpan]) -> Option<Vec<TokenWithSpan>> {
    let words = super::Significant::new(tokens);
    let significant = &words.at;
    let word = |k: usize, w: &str| words.is(k, w);
    let mut out = Vec::with_capacity(tokens.len() + 16);
    let mut copied = 0;
    let mut changed = false;
    let mut k = 0;
    while k < significant.len() {
        if !(word(k, "recursive") && word(k + 1, "view")) {
            k += 1;
            continue;
        }
        // CREATE [OR REPLACE] [TEMP | TEMPORARY] before it.
        let mut m = k;
        while m > 0
            && ["temp", "temporary", "replace", "or"]
                .iter()
                .any(|w| word(m - 1, w))
        {
            m -= 1;
        }
        if m == 0 || !word(m - 1, "create") {
            k += 1;
            continue;
        }
        // The name, up to the column list.
        let name_start = k + 2;
        let mut n = name_start;
        while n < significant.len() && tokens[significant[n]].token != Token::LParen {
            n += 1;
        }
        let Some(name) = (name_start..n)
            .rev()
            .map(|n| &tokens[significant[n]].token)
            .find(|t| matches!(t, Token::Word(_)))
            .cloned()
        else {
            k += 1;
            continue;
        };
        let Some(open) = significant.get(n).copied() else {
            k += 1;
            continue;
        };
        let Some(close) = super::unmatched_bracket(tokens, open + 1..tokens.len(), true) else {
            k += 1;
            continue;
        };
        let Ok(after) = significant.binary_search(&close) else {
            k += 1;
            continue;
        };
        if !word(after + 1, "as") {
            k += 1;
            continue;
        }
        let body_start = significant[after + 1] + 1;
        let body_end = (body_start..tokens.len())
            .scan(0i32, |depth, j| {
                match tokens[j].token {
                    Token::LParen => *depth += 1,
                    Token::RParen => *depth -= 1,
                    _ => {}
                }
                Some((j, *depth))
            })
            .find(|&(j, depth)| depth == 0 && tokens[j].token == Token::SemiColon)
            .map_or(tokens.len(), |(j, _)| j);
        let at = tokens[significant[k]].span;
        let token = |t: Token| TokenWithSpan::new(t, at);
        let keyword = |text: &str, keyword: Keyword| {
            token(Token::Word(Word {
                value: text.into(),
                quote_style: None,
                keyword,
            }))
        };
        let columns: Vec<TokenWithSpan> = tokens[open..=close].to_vec();
        let space = || token(Token::Whitespace(Whitespace::Space));
        // Everything before RECURSIVE, then `VIEW name`.
        out.extend(tokens[copied..significant[k]].iter().cloned());
        out.extend(tokens[significant[k + 1]..open].iter().cloned());
        out.extend([
            space(),
            keyword("AS", Keyword::AS),
            space(),
            keyword("WITH", Keyword::WITH),
            space(),
            keyword("RECURSIVE", Keyword::RECURSIVE),
            space(),
            token(name.clone()),
        ]);
        out.extend(columns.iter().cloned());
        out.extend([
            space(),
            keyword("AS", Keyword::AS),
            space(),
            token(Token::LParen),
        ]);
        out.extend(tokens[body_start..body_end].iter().cloned());
        out.extend([
            token(Token::RParen),
            space(),
            keyword("SELECT", Keyword::SELECT),
            space(),
        ]);
        out.extend(columns[1..columns.len() - 1].iter().cloned());
        out.extend([
            space(),
            keyword("FROM", Keyword::FROM),
            space(),
            token(name),
        ]);
        copied = body_end;
        changed = true;
        k = significant.partition_point(|&j| j < body_end);
    }
    out.extend(tokens[copied..].iter().cloned());
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn check_sql(sql: &str) -> Result<()> {
        check(&Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap()[0])
    }

    #[test]
    fn postgresql_refusals() {
        for (sql, message) in [
            (
                "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT count(*) FROM t) SELECT * FROM t",
                "aggregate functions",
            ),
            (
                "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < (SELECT max(n) FROM t)) SELECT * FROM t",
                "within a subquery",
            ),
            (
                "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT t.n + 1 FROM t, t AS u) SELECT * FROM t",
                "more than once",
            ),
        ] {
            let err = check_sql(sql).unwrap_err();
            assert_eq!(err.sqlstate(), "42P19", "{sql}");
            assert!(err.to_string().contains(message), "{err}");
        }
    }

    #[test]
    fn clauses_on_the_recursive_union_are_refused() {
        for (sql, what) in [
            (
                "WITH RECURSIVE x(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM x ORDER BY 1) SELECT * FROM x",
                "ORDER BY",
            ),
            (
                "WITH RECURSIVE x(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM x LIMIT 10 OFFSET 1) SELECT * FROM x",
                "OFFSET",
            ),
            (
                "WITH RECURSIVE x(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM x LIMIT 10) SELECT * FROM x",
                "LIMIT",
            ),
            (
                "WITH RECURSIVE x(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM x FOR UPDATE) SELECT * FROM x",
                "FOR UPDATE",
            ),
        ] {
            let err = check_sql(sql).unwrap_err();
            assert_eq!(err.sqlstate(), "0A000", "{sql}");
            assert!(err.to_string().starts_with(what), "{err}");
        }
    }

    #[test]
    fn what_postgresql_runs_passes() {
        for sql in [
            "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 10) SELECT sum(n) FROM t",
            "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t GROUP BY n) SELECT * FROM t LIMIT 3",
            "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT sum(n) OVER () FROM t) SELECT * FROM t LIMIT 3",
            "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT (SELECT count(*) FROM u) FROM t) SELECT 1",
            "WITH RECURSIVE u(x) AS (SELECT count(*) FROM v) SELECT * FROM u",
        ] {
            check_sql(sql).unwrap();
        }
    }
}
