//! Long chains of `AND`, `OR` and `UNION [ALL]` regrouped into balanced trees.
//!
//! Generated SQL (an ORM's `OR` over a list of ids, a BI tool's `UNION ALL` of thousands of
//! selects) parses into a chain as deep as it is long, and DataFusion's type coercion computes
//! each level's type from the levels below it again: planning such a chain costs the square of
//! its length. These operators are associative (`AND` and `OR` in three-valued logic, a run of
//! `UNION ALL` or of `UNION`), so the same operands in the same order, grouped as a balanced
//! tree, mean the same: the tree is as deep as the logarithm of the chain's length.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Query, SetExpr, SetOperator, SetQuantifier, Statement, Value, VisitMut,
    VisitorMut,
};

/// Chains shorter than this are left as they are.
const MIN_CHAIN: usize = 32;

/// Regroups long `AND`/`OR` chains and `UNION [ALL]` runs of `statement` into balanced trees.
pub fn balance(statement: &mut Statement) {
    let _ = statement.visit(&mut Balance);
}

struct Balance;

impl VisitorMut for Balance {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::BinaryOp {
            op: op @ (BinaryOperator::And | BinaryOperator::Or),
            ..
        } = expr
        {
            let op = op.clone();
            if left_spine(expr, |e| binary_left(e, &op)) >= MIN_CHAIN {
                let mut operands = Vec::new();
                flatten(take(expr), &op, &mut operands);
                *expr = build(operands, &mut |left, right| Expr::BinaryOp {
                    left: Box::new(left),
                    op: op.clone(),
                    right: Box::new(right),
                });
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        balance_set_operations(&mut query.body);
        ControlFlow::Continue(())
    }
}

/// The left operand of `expr` when it applies `op`.
fn binary_left<'a>(expr: &'a Expr, op: &BinaryOperator) -> Option<&'a Expr> {
    match expr {
        Expr::BinaryOp { left, op: o, .. } if o == op => Some(left),
        _ => None,
    }
}

/// How many nodes the chain of `left` links from `node` down has.
fn left_spine<T>(node: &T, left: impl Fn(&T) -> Option<&T>) -> usize {
    let mut length = 0;
    let mut at = Some(node);
    while let Some(node) = at {
        length += 1;
        at = left(node);
    }
    length
}

fn take(expr: &mut Expr) -> Expr {
    std::mem::replace(expr, Expr::Value(Value::Null.into()))
}

/// The operands of a chain of `op`, left to right, without recursing.
fn flatten(expr: Expr, op: &BinaryOperator, out: &mut Vec<Expr>) {
    let mut pending = vec![expr];
    while let Some(expr) = pending.pop() {
        match expr {
            Expr::BinaryOp { left, op: o, right } if &o == op => {
                pending.push(*right);
                pending.push(*left);
            }
            operand => out.push(operand),
        }
    }
}

/// A balanced tree of `items` in their order, joined by `join`.
fn build<T>(items: Vec<T>, join: &mut impl FnMut(T, T) -> T) -> T {
    let mut items = items;
    // Join neighbours pairwise, level by level: each pass halves the count.
    while items.len() > 1 {
        let mut next = Vec::with_capacity(items.len().div_ceil(2));
        let mut it = items.into_iter();
        while let Some(left) = it.next() {
            match it.next() {
                Some(right) => next.push(join(left, right)),
                None => next.push(left),
            }
        }
        items = next;
    }
    items.pop().expect("a chain has operands")
}

/// Regroups the runs of one `UNION` kind at the top of `body`.
fn balance_set_operations(body: &mut SetExpr) {
    let SetExpr::SetOperation {
        op: SetOperator::Union,
        set_quantifier,
        ..
    } = body
    else {
        return;
    };
    let quantifier = *set_quantifier;
    fn same(e: &SetExpr, quantifier: SetQuantifier) -> Option<&SetExpr> {
        match e {
            SetExpr::SetOperation {
                op: SetOperator::Union,
                set_quantifier,
                left,
                ..
            } if *set_quantifier == quantifier => Some(left.as_ref()),
            _ => None,
        }
    }
    if left_spine(body, |e| same(e, quantifier)) < MIN_CHAIN {
        return;
    }
    let mut operands = Vec::new();
    let mut pending = vec![std::mem::replace(body, SetExpr::Values(empty_values()))];
    while let Some(expr) = pending.pop() {
        match expr {
            SetExpr::SetOperation {
                op: SetOperator::Union,
                set_quantifier,
                left,
                right,
            } if set_quantifier == quantifier => {
                pending.push(*right);
                pending.push(*left);
            }
            operand => operands.push(operand),
        }
    }
    *body = build(operands, &mut |left, right| SetExpr::SetOperation {
        left: Box::new(left),
        op: SetOperator::Union,
        set_quantifier: quantifier,
        right: Box::new(right),
    });
}

fn empty_values() -> datafusion::sql::sqlparser::ast::Values {
    datafusion::sql::sqlparser::ast::Values {
        explicit_row: false,
        value_keyword: false,
        rows: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keeps_duplicates(q: SetQuantifier) -> bool {
        matches!(q, SetQuantifier::All)
    }
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
    }

    fn depth(expr: &Expr) -> usize {
        match expr {
            Expr::BinaryOp { left, right, .. } => 1 + depth(left).max(depth(right)),
            _ => 1,
        }
    }

    #[test]
    fn or_chains_become_balanced_in_the_same_order() {
        let n = 1000;
        let terms: Vec<String> = (0..n).map(|i| format!("x = {i}")).collect();
        let mut statement = parse(&format!("SELECT * FROM t WHERE {}", terms.join(" OR ")));
        balance(&mut statement);
        let Statement::Query(query) = &statement else {
            panic!()
        };
        let SetExpr::Select(select) = query.body.as_ref() else {
            panic!()
        };
        let filter = select.selection.as_ref().unwrap();
        assert!(depth(filter) <= 12, "{}", depth(filter));
        let mut operands = Vec::new();
        flatten(filter.clone(), &BinaryOperator::Or, &mut operands);
        let texts: Vec<String> = operands.iter().map(ToString::to_string).collect();
        assert_eq!(texts, terms);
        // short chains and mixed operators stay as written
        let mut short = parse("SELECT a OR b OR c AND d");
        let before = short.to_string();
        balance(&mut short);
        assert_eq!(short.to_string(), before);
    }

    #[test]
    fn union_runs_of_one_kind_become_balanced() {
        let selects: Vec<String> = (0..100).map(|i| format!("SELECT {i}")).collect();
        let mut statement = parse(&selects.join(" UNION ALL "));
        balance(&mut statement);
        let Statement::Query(query) = &statement else {
            panic!()
        };
        fn union_depth(e: &SetExpr) -> usize {
            match e {
                SetExpr::SetOperation {
                    left,
                    right,
                    set_quantifier,
                    ..
                } => {
                    assert!(keeps_duplicates(*set_quantifier));
                    1 + union_depth(left).max(union_depth(right))
                }
                _ => 0,
            }
        }
        assert_eq!(union_depth(&query.body), 7);
        // the text lists the selects in their order
        assert_eq!(
            statement.to_string().replace(['(', ')'], ""),
            selects.join(" UNION ALL ")
        );
        // a run with UNION and UNION ALL mixed is not regrouped across kinds
        let mixed = format!(
            "{} UNION SELECT 1",
            (0..40)
                .map(|i| format!("SELECT {i}"))
                .collect::<Vec<_>>()
                .join(" UNION ALL ")
        );
        let mut statement = parse(&mixed);
        balance(&mut statement);
        let Statement::Query(query) = &statement else {
            panic!()
        };
        let SetExpr::SetOperation { set_quantifier, .. } = query.body.as_ref() else {
            panic!()
        };
        assert!(!keeps_duplicates(*set_quantifier));
    }
}
