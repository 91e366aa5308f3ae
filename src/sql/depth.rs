//! How deeply a statement nests, and the limit on it.
//!
//! Parsing, planning and running a statement recurse once per level of nesting: a chain of
//! 2,000 `+` or `OR` is a tree 2,000 levels deep, and so is a 2,000-way `UNION ALL`. Much of that
//! recursion (derived `Clone`, `Drop` and `Hash` of syntax trees and plans, the evaluation of
//! physical expressions) cannot grow its stack, so the server runs statements on threads with
//! large stacks ([`STATEMENT_STACK_BYTES`]) and refuses, before planning, a statement nested
//! deeper than those stacks hold ([`MAX_DEPTH`]) with PostgreSQL's `54001`. Measuring the depth
//! is safe at any depth: sqlparser's visitor grows its stack on the heap as it goes.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Query, SetExpr, Statement, Value, Values, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{Error, Result};

/// The deepest nesting of expressions, subqueries and set operations a statement may have.
/// PostgreSQL, with its default `max_stack_depth`, runs a chain of 2,000 `+` and refuses one of
/// 5,000; Augur runs both and refuses what is deeper than this.
pub const MAX_DEPTH: usize = 10_000;

/// The deepest nesting of subqueries in expressions (`(SELECT ...)`, `IN (SELECT ...)`,
/// `EXISTS`). DataFusion's plan checks visit a subquery once per enclosing subquery and again
/// for itself, so planning time doubles with every level; beyond this many it would take
/// seconds, and soon years.
pub const MAX_SUBQUERY_DEPTH: usize = 16;

/// The stack size of the threads that parse, plan and run statements: room for [`MAX_DEPTH`]
/// levels of the recursion that cannot grow its stack, with a margin.
pub const STATEMENT_STACK_BYTES: usize = 256 << 20;

/// How many nested calls sqlparser's parser may make (parenthesised expressions, subqueries,
/// prefix operators); beyond it parsing stops with `54001`.
pub const PARSER_RECURSION_LIMIT: usize = MAX_DEPTH;

/// The error of a statement nested too deeply.
pub fn too_deep(what: &str) -> Error {
    Error::coded(
        "54001",
        format!(
            "stack depth limit exceeded: {what} nests expressions, subqueries or set \
             operations more than {MAX_DEPTH} levels deep"
        ),
    )
}

/// Refuses a statement nested more than [`MAX_DEPTH`] levels deep with `54001`. One walk over
/// the statement, stopping at the first level too deep.
pub fn check(statement: &Statement) -> Result<()> {
    let mut depth = Depth::default();
    match statement.visit(&mut depth) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(Limit::Depth) => Err(too_deep("the statement")),
        ControlFlow::Break(Limit::Subqueries) => Err(Error::coded(
            "54001",
            format!(
                "stack depth limit exceeded: the statement nests subqueries in expressions \
                 more than {MAX_SUBQUERY_DEPTH} levels deep"
            ),
        )),
    }
}

/// Takes a statement apart so that dropping it does not recurse once per level: every
/// expression is replaced by NULL after its operands were, and chains of set operations are
/// unlinked one by one. For statements refused as too deep.
pub fn dismantle(mut statement: Statement) {
    let _ = VisitMut::visit(&mut statement, &mut Dismantle);
}

/// Which limit a statement passed.
enum Limit {
    Depth,
    Subqueries,
}

/// A lower bound of how deeply the statements in `tokens` nest, found without parsing them:
/// the longest chain of one left-associative operator (`+`, `||`, `OR`, `UNION`, ...) whose
/// operands hold only operators that bind more tightly. A generated chain of a million `+` is
/// refused from its tokens, before a syntax tree a million levels deep is built.
pub fn chain_depth(tokens: &[TokenWithSpan]) -> usize {
    /// Binding strength of the operators whose order is the same in PostgreSQL and sqlparser;
    /// `||` (class 0) chains only with itself.
    fn class(token: &Token) -> Option<u8> {
        Some(match token {
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::OR => 1,
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::AND => 2,
            Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq => 3,
            Token::Plus | Token::Minus => 4,
            Token::Mul | Token::Div | Token::Mod => 5,
            Token::StringConcat => 0,
            _ => return None,
        })
    }
    fn operand(token: &Token) -> bool {
        match token {
            Token::Word(w) => {
                w.quote_style.is_some()
                    || matches!(
                        w.keyword,
                        Keyword::NoKeyword | Keyword::TRUE | Keyword::FALSE | Keyword::NULL
                    )
            }
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::Placeholder(_)
            | Token::Period
            | Token::DoubleColon => true,
            _ => false,
        }
    }
    fn is_set_operator(token: &Token) -> bool {
        matches!(token, Token::Word(w) if w.quote_style.is_none()
            && matches!(w.keyword, Keyword::UNION | Keyword::EXCEPT))
    }

    /// Per open parenthesis: the current chain of each operator class, and of set operations.
    #[derive(Default)]
    struct Level {
        chains: [usize; 6],
        set_operations: usize,
    }
    let mut levels = vec![Level::default()];
    let mut deepest = 0;
    for token in tokens.iter().map(|t| &t.token) {
        if matches!(token, Token::Whitespace(_)) || operand(token) {
            continue;
        }
        let level = match token {
            Token::LParen => {
                levels.push(Level::default());
                continue;
            }
            Token::RParen => {
                // The group is one operand of the level around it.
                if levels.len() > 1 {
                    levels.pop();
                }
                continue;
            }
            _ => levels.last_mut().expect("one level at least"),
        };
        if let Some(c) = class(token) {
            let c = usize::from(c);
            level.chains[c] += 1;
            deepest = deepest.max(level.chains[c]);
            // Chains that bind more tightly (and `||`, unless this is one) end here.
            for (other, chain) in level.chains.iter_mut().enumerate() {
                if other != c && (other > c || other == 0 || c == 0) {
                    *chain = 0;
                }
            }
        } else if is_set_operator(token) {
            level.set_operations += 1;
            deepest = deepest.max(level.set_operations);
            level.chains = Default::default();
        } else {
            level.chains = Default::default();
            if matches!(token, Token::SemiColon) {
                level.set_operations = 0;
            }
        }
    }
    deepest
}

#[derive(Default)]
struct Depth {
    depth: usize,
    /// The deepest `depth` seen.
    deepest: usize,
    /// What each open query added to `depth`.
    queries: Vec<usize>,
    /// Open subqueries in expressions.
    subqueries: usize,
}

impl Depth {
    fn enter(&mut self, levels: usize) -> ControlFlow<Limit> {
        self.depth += levels;
        self.deepest = self.deepest.max(self.depth);
        if self.depth > MAX_DEPTH {
            ControlFlow::Break(Limit::Depth)
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn is_subquery(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. }
    )
}

impl Visitor for Depth {
    type Break = Limit;

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Limit> {
        if is_subquery(expr) {
            self.subqueries += 1;
            if self.subqueries > MAX_SUBQUERY_DEPTH {
                return ControlFlow::Break(Limit::Subqueries);
            }
        }
        self.enter(1)
    }

    fn post_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Limit> {
        if is_subquery(expr) {
            self.subqueries -= 1;
        }
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Limit> {
        let levels = 1 + set_operation_depth(&query.body);
        self.queries.push(levels);
        self.enter(levels)
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<Limit> {
        self.depth -= self.queries.pop().unwrap_or(0);
        ControlFlow::Continue(())
    }
}

/// How deeply set operations (`UNION`, `INTERSECT`, `EXCEPT`) nest in a query's body, without
/// recursing: a generated `UNION ALL` of thousands of queries is a chain that deep. Queries in
/// parentheses count on their own, when the visitor reaches them.
fn set_operation_depth(body: &SetExpr) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(body, 0usize)];
    while let Some((expr, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        if let SetExpr::SetOperation { left, right, .. } = expr {
            pending.push((left, depth + 1));
            pending.push((right, depth + 1));
        }
    }
    deepest
}

struct Dismantle;

impl VisitorMut for Dismantle {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // Its operands are NULL already: dropping it goes one level down.
        *expr = Expr::Value(Value::Null.into());
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let mut pending = vec![std::mem::replace(&mut query.body, empty_set_expr())];
        while let Some(mut expr) = pending.pop() {
            if let SetExpr::SetOperation { left, right, .. } = expr.as_mut() {
                pending.push(std::mem::replace(left, empty_set_expr()));
                pending.push(std::mem::replace(right, empty_set_expr()));
            }
        }
        ControlFlow::Continue(())
    }
}

fn empty_set_expr() -> Box<SetExpr> {
    Box::new(SetExpr::Values(Values {
        explicit_row: false,
        value_keyword: false,
        rows: vec![],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Statement {
        Parser::new(&PostgreSqlDialect {})
            .with_recursion_limit(PARSER_RECURSION_LIMIT)
            .try_with_sql(sql)
            .unwrap()
            .parse_statement()
            .unwrap()
    }

    fn chain(op: &str, n: usize) -> String {
        format!("SELECT {}", vec!["1"; n].join(op))
    }

    #[test]
    fn chains_within_the_limit_pass() {
        check(&parse(&chain("+", 2_000))).unwrap();
        check(&parse(&chain(" OR ", 2_000))).unwrap();
        let union = (0..2_000)
            .map(|i| format!("SELECT {i}"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        check(&parse(&union)).unwrap();
        // a long list is wide, not deep
        let list = (0..50_000).map(|i| i.to_string()).collect::<Vec<_>>();
        check(&parse(&format!("SELECT 1 IN ({})", list.join(",")))).unwrap();
    }

    #[test]
    fn deeper_chains_are_54001_and_drop_without_recursing() {
        for sql in [
            chain("+", MAX_DEPTH + 5),
            chain(" || ", 200_000),
            (0..MAX_DEPTH + 5)
                .map(|i| format!("SELECT {i}"))
                .collect::<Vec<_>>()
                .join(" UNION ALL "),
        ] {
            let statement = parse(&sql);
            assert_eq!(check(&statement).unwrap_err().sqlstate(), "54001");
            // on this test thread's ordinary stack
            dismantle(statement);
        }
    }

    fn tokens(sql: &str) -> Vec<TokenWithSpan> {
        datafusion::sql::sqlparser::tokenizer::Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .unwrap()
    }

    #[test]
    fn chains_found_in_tokens_are_no_deeper_than_the_tree() {
        for (sql, chain) in [
            ("SELECT 1 + 2 + 3 + 4", 3),
            ("SELECT 'a' || 'b' || 'c'", 2),
            ("SELECT * FROM t WHERE x = 1 OR x = 2 OR x = 3", 2),
            ("SELECT 1 * 2 + 3 * 4 + 5 * 6", 2),
            (
                "SELECT 1 UNION ALL SELECT 2 UNION SELECT 3 EXCEPT SELECT 4",
                3,
            ),
            ("SELECT 1; SELECT 2 UNION SELECT 3", 1),
            // a list is wide, not deep
            ("SELECT 1 IN (1, 2, 3, 4, 5)", 0),
            ("SELECT a + 1, b + 2, c + 3 FROM t", 1),
            // CASE branches are a list too
            (
                "SELECT CASE WHEN x + 1 > 0 THEN 1 WHEN x + 2 > 0 THEN 2 WHEN x + 3 > 0 THEN 3 END",
                1,
            ),
            ("SELECT f(1 + 2) + f(3 + 4) + 5", 2),
        ] {
            let found = chain_depth(&tokens(sql));
            assert_eq!(found, chain, "{sql}");
            // a lower bound of the syntax tree's depth
            let mut depth = Depth::default();
            let _ = parse(sql).visit(&mut depth);
            assert!(found <= depth.deepest, "{sql}: {found} > {}", depth.deepest);
        }
        let long = chain("+", 1_000_000);
        assert!(chain_depth(&tokens(&long)) > MAX_DEPTH);
    }

    #[test]
    fn subqueries_in_expressions_nest_a_limited_depth() {
        let nested = |n: usize| format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n));
        check(&parse(&nested(MAX_SUBQUERY_DEPTH))).unwrap();
        let err = check(&parse(&nested(MAX_SUBQUERY_DEPTH + 1))).unwrap_err();
        assert_eq!(err.sqlstate(), "54001");
        assert!(err.to_string().contains("subqueries"), "{err}");
        // derived tables are not subqueries in expressions
        let derived = format!(
            "SELECT * FROM {}(SELECT 1 AS x) AS t{}",
            "(SELECT * FROM ".repeat(40),
            ") AS t".repeat(40)
        );
        check(&parse(&derived)).unwrap();
    }
}
