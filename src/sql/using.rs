//! `JOIN ... USING (k)` as PostgreSQL reads it.
//!
//! In PostgreSQL a join `USING (k)` has one column `k`: the left side's for an inner or left
//! join, the right side's for a right join, `COALESCE(left.k, right.k)` for a full join; an
//! unqualified `k` anywhere in the query means it, and `SELECT *` lists it first. DataFusion
//! refuses an unqualified `k` in WHERE as ambiguous and takes the left side's `k` for right and
//! full joins (NULL where only the right side has a row). This names the merged column where the
//! query says `k`, and spells out `*` for a join of two named relations.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    ExcludeSelectItem, Expr, GroupByExpr, Ident, JoinConstraint, JoinOperator, ObjectName,
    ObjectNamePart, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement,
    TableFactor, VisitMut, VisitorMut, WildcardAdditionalOptions,
};

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Word};

use super::normalize_ident;

/// Rewrites every SELECT of `statement` that joins with USING.
/// Refuses `NATURAL RIGHT JOIN` and `NATURAL FULL JOIN` (`0A000`): their common columns would
/// take the left side's value where only the right side has the row; `USING (...)` merges them.
pub fn refuse_natural_outer_joins(statement: &Statement) -> crate::error::Result<()> {
    use datafusion::sql::sqlparser::ast::{JoinConstraint, JoinOperator, Select, Visit, Visitor};
    struct Natural;
    impl Visitor for Natural {
        type Break = &'static str;
        fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<&'static str> {
            for join in select.from.iter().flat_map(|table| &table.joins) {
                match &join.join_operator {
                    JoinOperator::Right(JoinConstraint::Natural)
                    | JoinOperator::RightOuter(JoinConstraint::Natural) => {
                        return ControlFlow::Break("NATURAL RIGHT JOIN");
                    }
                    JoinOperator::FullOuter(JoinConstraint::Natural) => {
                        return ControlFlow::Break("NATURAL FULL JOIN");
                    }
                    _ => {}
                }
            }
            ControlFlow::Continue(())
        }
    }
    match statement.visit(&mut Natural) {
        ControlFlow::Break(what) => Err(crate::error::Error::coded(
            "0A000",
            format!(
                "{what} is not supported: write it with USING (columns), which merges the \
                 common columns"
            ),
        )),
        ControlFlow::Continue(()) => Ok(()),
    }
}

pub fn merge_using_columns(statement: &mut Statement) {
    let _ = statement.visit(&mut Queries);
}

struct Queries;

impl VisitorMut for Queries {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(merged) = rewrite_set_expr(&mut query.body)
            && let Some(order_by) = &mut query.order_by
            && let datafusion::sql::sqlparser::ast::OrderByKind::Expressions(exprs) =
                &mut order_by.kind
        {
            for item in exprs {
                replace(&mut item.expr, &merged);
            }
        }
        ControlFlow::Continue(())
    }
}

/// The merged columns of the SELECT that `body` is, after rewriting it; `None` when it is not a
/// SELECT that joins with USING.
fn rewrite_set_expr(body: &mut SetExpr) -> Option<HashMap<String, Expr>> {
    match body {
        SetExpr::Select(select) => rewrite_select(select),
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_set_expr(left);
            rewrite_set_expr(right);
            None
        }
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
    Both,
}

/// The name a FROM item is referred to by: its alias, or its table's name.
fn reference(factor: &TableFactor) -> Option<Ident> {
    match factor {
        TableFactor::Table { name, alias, .. } => match alias {
            Some(alias) => Some(alias.name.clone()),
            None => name.0.last().and_then(|p| p.as_ident()).cloned(),
        },
        // A column list (`(VALUES ...) v(k, x)`) names the columns `v.k`, `v.x`.
        TableFactor::Derived {
            alias: Some(alias), ..
        } => Some(alias.name.clone()),
        _ => None,
    }
}

fn qualified(relation: &Ident, column: &str) -> Expr {
    Expr::CompoundIdentifier(vec![relation.clone(), Ident::with_quote('"', column)])
}

fn coalesce(left: Expr, right: Expr) -> Expr {
    super::rewrite::call("coalesce", vec![left, right])
}

fn rewrite_select(select: &mut Select) -> Option<HashMap<String, Expr>> {
    let [from] = select.from.as_slice() else {
        return None;
    };
    let first = reference(&from.relation)?;
    let mut merged: HashMap<String, Expr> = HashMap::new();
    // The relations whose column each merged name stands for (each excludes it from its `*`).
    let mut contributors: HashMap<String, Vec<Ident>> = HashMap::new();
    // The merged columns in PostgreSQL's order for `*`: the last join's first.
    let mut order: Vec<String> = Vec::new();
    // Every relation of the chain, in order, while each join of it is a USING join.
    let mut relations: Option<Vec<Ident>> = Some(vec![first.clone()]);
    // Later joins' USING written as ON (which DataFusion's `*` does not merge), by position.
    let mut ons: Vec<(usize, Expr)> = Vec::new();
    for (i, join) in from.joins.iter().enumerate() {
        let (side, columns) = match &join.join_operator {
            JoinOperator::Join(JoinConstraint::Using(c))
            | JoinOperator::Inner(JoinConstraint::Using(c))
            | JoinOperator::Left(JoinConstraint::Using(c))
            | JoinOperator::LeftOuter(JoinConstraint::Using(c)) => (Side::Left, c),
            JoinOperator::Right(JoinConstraint::Using(c))
            | JoinOperator::RightOuter(JoinConstraint::Using(c)) => (Side::Right, c),
            JoinOperator::FullOuter(JoinConstraint::Using(c)) => (Side::Both, c),
            _ => {
                relations = None;
                continue;
            }
        };
        let right = reference(&join.relation)?;
        let mut names = Vec::with_capacity(columns.len());
        let mut conditions = Vec::with_capacity(columns.len());
        for column in columns.iter() {
            let name = column
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(normalize_ident)?;
            // Which relation of the left side holds the column: known for the first join, or
            // when an earlier USING merged it.
            let (left, mut holders) = match merged.get(&name) {
                Some(expr) => (expr.clone(), contributors[&name].clone()),
                None if i == 0 => (qualified(&first, &name), vec![first.clone()]),
                None => return None,
            };
            let right_column = qualified(&right, &name);
            conditions.push(Expr::BinaryOp {
                left: Box::new(left.clone()),
                op: datafusion::sql::sqlparser::ast::BinaryOperator::Eq,
                right: Box::new(right_column.clone()),
            });
            let expr = match side {
                Side::Left => left,
                Side::Right => right_column,
                Side::Both => coalesce(left, right_column),
            };
            holders.push(right.clone());
            contributors.insert(name.clone(), holders);
            merged.insert(name.clone(), expr);
            names.push(name);
        }
        // This join's columns come first, then those earlier joins merged.
        order.retain(|n| !names.contains(n));
        order.splice(0..0, names);
        if let Some(relations) = &mut relations {
            relations.push(right);
        }
        // A later join matches the left side's merged value (`coalesce(a.k, b.k)` after a
        // FULL JOIN), where DataFusion would take the first relation's column.
        if i > 0 {
            let on = conditions.into_iter().reduce(|a, b| Expr::BinaryOp {
                left: Box::new(a),
                op: datafusion::sql::sqlparser::ast::BinaryOperator::And,
                right: Box::new(b),
            })?;
            ons.push((i, on));
        }
    }
    // `*` is spelled out for a join of named relations (DataFusion's would list the first
    // relation's key, not the merged one); it must be when a USING became ON.
    let wildcard = relations.filter(|r| r.len() > 1);
    let has_wildcard = select
        .projection
        .iter()
        .any(|item| matches!(item, SelectItem::Wildcard(options) if is_plain(options)));
    if !ons.is_empty() && wildcard.is_none() && has_wildcard {
        return None;
    }
    for (i, on) in ons {
        let join = &mut select.from[0].joins[i];
        let constraint = JoinConstraint::On(on);
        join.join_operator = match &join.join_operator {
            JoinOperator::Join(_) => JoinOperator::Join(constraint),
            JoinOperator::Inner(_) => JoinOperator::Inner(constraint),
            JoinOperator::Left(_) => JoinOperator::Left(constraint),
            JoinOperator::LeftOuter(_) => JoinOperator::LeftOuter(constraint),
            JoinOperator::Right(_) => JoinOperator::Right(constraint),
            JoinOperator::RightOuter(_) => JoinOperator::RightOuter(constraint),
            _ => JoinOperator::FullOuter(constraint),
        };
    }
    if merged.is_empty() {
        return None;
    }
    if let Some(expr) = &mut select.selection {
        replace(expr, &merged);
    }
    if let Some(expr) = &mut select.having {
        replace(expr, &merged);
    }
    if let GroupByExpr::Expressions(exprs, _) = &mut select.group_by {
        for expr in exprs {
            replace(expr, &merged);
        }
    }
    let user_aliases: Vec<String> = select
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(normalize_ident(alias)),
            _ => None,
        })
        .collect();
    let mut projection = Vec::with_capacity(select.projection.len());
    for item in std::mem::take(&mut select.projection) {
        match item {
            SelectItem::UnnamedExpr(Expr::Identifier(ident))
                if merged.contains_key(&normalize_ident(&ident)) =>
            {
                let name = normalize_ident(&ident);
                projection.push(SelectItem::ExprWithAlias {
                    expr: merged[&name].clone(),
                    alias: Ident::with_quote('"', name),
                });
            }
            SelectItem::UnnamedExpr(mut expr) => {
                replace(&mut expr, &merged);
                projection.push(SelectItem::UnnamedExpr(expr));
            }
            SelectItem::ExprWithAlias { mut expr, alias } => {
                replace(&mut expr, &merged);
                projection.push(SelectItem::ExprWithAlias { expr, alias });
            }
            SelectItem::Wildcard(options) if is_plain(&options) && wildcard.is_some() => {
                // The merged columns first, then each relation's other columns.
                let Some(relations) = &wildcard else {
                    unreachable!("checked above")
                };
                for name in &order {
                    projection.push(SelectItem::ExprWithAlias {
                        expr: merged[name].clone(),
                        alias: Ident::with_quote('"', name.clone()),
                    });
                }
                for relation in relations {
                    let excluded: Vec<ObjectName> = order
                        .iter()
                        .filter(|n| contributors[*n].contains(relation))
                        .map(|n| {
                            ObjectName(vec![ObjectNamePart::Identifier(Ident::with_quote(
                                '"',
                                n.clone(),
                            ))])
                        })
                        .collect();
                    projection.push(SelectItem::QualifiedWildcard(
                        SelectItemQualifiedWildcardKind::ObjectName(ObjectName(vec![
                            ObjectNamePart::Identifier(relation.clone()),
                        ])),
                        WildcardAdditionalOptions {
                            opt_exclude: (!excluded.is_empty())
                                .then_some(ExcludeSelectItem::Multiple(excluded)),
                            ..options.clone()
                        },
                    ));
                }
            }
            other => projection.push(other),
        }
    }
    select.projection = projection;
    // ORDER BY a name the SELECT list gives a column means that column.
    let mut for_order_by = merged;
    for alias in user_aliases {
        for_order_by.remove(&alias);
    }
    Some(for_order_by)
}

/// A `*` without EXCLUDE, EXCEPT, REPLACE or RENAME.
fn is_plain(options: &WildcardAdditionalOptions) -> bool {
    options.opt_exclude.is_none()
        && options.opt_except.is_none()
        && options.opt_replace.is_none()
        && options.opt_rename.is_none()
        && options.opt_ilike.is_none()
}

/// Replaces unqualified references to merged columns in `expr`, outside subqueries.
fn replace(expr: &mut Expr, merged: &HashMap<String, Expr>) {
    let _ = expr.visit(&mut Replace { merged, depth: 0 });
}

struct Replace<'a> {
    merged: &'a HashMap<String, Expr>,
    /// Subqueries entered: their columns are their own.
    depth: usize,
}

impl VisitorMut for Replace<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if self.depth == 0
            && let Expr::Identifier(ident) = expr
            && let Some(merged) = self.merged.get(&normalize_ident(ident))
        {
            *expr = merged.clone();
        }
        ControlFlow::Continue(())
    }
}
/// `JOIN ... USING (k) AS x`, which sqlparser does not read: the alias names the join's merged
/// columns, so `x.k` is the merged `k` and `x.*` lists them. The alias is taken out and its
/// references written as the columns they mean. None when `tokens` hold no such alias.
pub(super) fn join_aliases(tokens: &[TokenWithSpan]) -> Option<Vec<TokenWithSpan>> {
    let words = super::Significant::new(tokens);
    let significant = &words.at;
    let word = |k: usize| words.word(k).cloned();
    let is = |k: usize, w: &str| words.is(k, w);
    let name = |w: &Word| {
        if w.quote_style.is_some() {
            w.value.clone()
        } else {
            w.value.to_ascii_lowercase()
        }
    };
    // The aliases, their columns, and the tokens `AS alias` to drop.
    let mut aliases: HashMap<String, Vec<Word>> = HashMap::new();
    let mut dropped: Vec<usize> = Vec::new();
    for k in 0..significant.len() {
        if !is(k, "using") || words.token(k + 1) != Some(&Token::LParen) {
            continue;
        }
        let mut columns = Vec::new();
        let mut m = k + 2;
        while let Some(column) = word(m) {
            columns.push(column);
            match words.token(m + 1) {
                Some(Token::Comma) => m += 2,
                _ => break,
            }
        }
        if words.token(m + 1) != Some(&Token::RParen) || !is(m + 2, "as") {
            continue;
        }
        let Some(alias) = word(m + 3) else {
            continue;
        };
        // Left for PostgreSQL's errors (the statement then does not parse): an alias hidden
        // by the alias of a parenthesized join around it, an alias another relation has too,
        // and row locks, which do not apply to a join.
        let hidden = words.token(m + 4) == Some(&Token::RParen)
            && (is(m + 5, "as")
                || word(m + 5).is_some_and(|w| {
                    w.quote_style.is_some()
                        || w.keyword == datafusion::sql::sqlparser::keywords::Keyword::NoKeyword
                }));
        let taken = (0..significant.len()).any(|n| {
            n != m + 3
                && word(n).is_some_and(|w| name(&w) == name(&alias))
                && words.token(n + 1) != Some(&Token::Period)
        });
        let locks = (0..significant.len())
            .any(|n| is(n, "for") && (is(n + 1, "update") || is(n + 1, "share")));
        if hidden || taken || locks {
            continue;
        }
        aliases.insert(name(&alias), columns);
        dropped.extend([significant[m + 2], significant[m + 3]]);
    }
    if aliases.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut skip_to = 0;
    for (k, &j) in significant.iter().enumerate() {
        if j < skip_to {
            continue;
        }
        // Whitespace before this token.
        let previous = if k == 0 { 0 } else { significant[k - 1] + 1 };
        out.extend(tokens[previous.max(skip_to)..j].iter().cloned());
        skip_to = j + 1;
        if dropped.contains(&j) {
            continue;
        }
        if let Some(alias) = word(k).filter(|w| aliases.contains_key(&name(w)))
            && words.token(k + 1) == Some(&Token::Period)
            && let Some(&after) = significant.get(k + 2)
        {
            let columns = &aliases[&name(&alias)];
            let replacement: Option<Vec<Token>> = match &tokens[after].token {
                Token::Mul => Some(
                    columns
                        .iter()
                        .enumerate()
                        .flat_map(|(n, c)| {
                            let mut t = Vec::new();
                            if n > 0 {
                                t.push(Token::Comma);
                            }
                            t.push(Token::Word(c.clone()));
                            t
                        })
                        .collect(),
                ),
                Token::Word(column) if columns.iter().any(|c| name(c) == name(column)) => {
                    Some(vec![Token::Word(column.clone())])
                }
                _ => None,
            };
            if let Some(replacement) = replacement {
                out.extend(
                    replacement
                        .into_iter()
                        .map(|t| TokenWithSpan::new(t, tokens[j].span)),
                );
                skip_to = after + 1;
                continue;
            }
        }
        out.push(tokens[j].clone());
    }
    out.extend(tokens[skip_to..].iter().cloned());
    Some(out)
}
