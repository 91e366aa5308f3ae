//! A `WITH` query read more than once that calls a volatile function (`random()`,
//! `nextval(...)`, ...). PostgreSQL computes such a query once, so every reference sees the
//! same rows; Augur plans each reference on its own, which would compute the function anew
//! for each (`WITH q AS (SELECT random()) SELECT * FROM q UNION SELECT * FROM q` has two rows
//! where PostgreSQL has one). Refused (`0A000`) rather than answered differently.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Query, Statement, TableFactor, Visit, Visitor};

use super::normalize_ident;

/// Functions whose value differs from call to call.
const VOLATILE: &[&str] = &[
    "random",
    "random_normal",
    "nextval",
    "setval",
    "gen_random_uuid",
    "uuid",
    "clock_timestamp",
    "timeofday",
];

/// Refuses `statement` when it reads a volatile `WITH` query more than once.
pub fn refuse(statement: &Statement) -> crate::error::Result<()> {
    match statement.visit(&mut Queries) {
        ControlFlow::Break((name, function)) => Err(crate::error::Error::coded(
            "0A000",
            format!(
                "WITH query \"{name}\" calls {function}() and is read more than once, which is \
                 not supported: each reading would compute it anew"
            ),
        )),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Queries;

impl Visitor for Queries {
    type Break = (String, String);

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<(String, String)> {
        let Some(with) = &query.with else {
            return ControlFlow::Continue(());
        };
        let ctes = &with.cte_tables;
        let names: Vec<String> = ctes
            .iter()
            .map(|c| normalize_ident(&c.alias.name))
            .collect();
        // The volatile function each WITH query calls, itself or through another it reads.
        let mut volatile: Vec<Option<String>> =
            ctes.iter().map(|c| volatile_call(&c.query)).collect();
        loop {
            let mut changed = false;
            for i in 0..ctes.len() {
                if volatile[i].is_some() {
                    continue;
                }
                let through = (0..ctes.len()).find_map(|j| {
                    (j != i && references(&ctes[i].query, &names[j]) > 0)
                        .then(|| volatile[j].clone())
                        .flatten()
                });
                if through.is_some() {
                    volatile[i] = through;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        for (i, function) in volatile.iter().enumerate() {
            let Some(function) = function else {
                continue;
            };
            let name = &names[i];
            // Readings in the main query and in the other WITH queries (a recursive query's
            // reading of itself is its working table, not another computation).
            let mut readings = references(&query.body, name);
            for (j, other) in ctes.iter().enumerate() {
                if j != i {
                    readings += references(&other.query, name);
                }
            }
            if let Some(order_by) = &query.order_by {
                readings += references(order_by, name);
            }
            if readings > 1 {
                return ControlFlow::Break((name.clone(), function.clone()));
            }
        }
        ControlFlow::Continue(())
    }
}

/// The first volatile function `node` calls.
fn volatile_call<V: Visit>(node: &V) -> Option<String> {
    struct Calls;
    impl Visitor for Calls {
        type Break = String;
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
            if let Expr::Function(function) = expr
                && let Some(name) = function.name.0.last().and_then(|p| p.as_ident())
            {
                let name = normalize_ident(name);
                if VOLATILE.contains(&name.as_str()) {
                    return ControlFlow::Break(name);
                }
            }
            ControlFlow::Continue(())
        }
    }
    match node.visit(&mut Calls) {
        ControlFlow::Break(name) => Some(name),
        ControlFlow::Continue(()) => None,
    }
}

/// How many times `node` reads a relation named `name` (unqualified).
fn references<V: Visit>(node: &V, name: &str) -> usize {
    struct Readings<'a> {
        name: &'a str,
        count: usize,
    }
    impl Visitor for Readings<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, .. } = factor
                && let [part] = name.0.as_slice()
                && part
                    .as_ident()
                    .is_some_and(|i| normalize_ident(i) == self.name)
            {
                self.count += 1;
            }
            ControlFlow::Continue(())
        }
    }
    let mut readings = Readings { name, count: 0 };
    let _ = node.visit(&mut readings);
    readings.count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str) -> crate::error::Result<()> {
        let statement = crate::sql::parse_raw(sql).unwrap().remove(0);
        refuse(&statement)
    }

    #[test]
    fn a_volatile_query_read_twice_is_refused() {
        assert!(
            check("WITH q AS (SELECT random() r) SELECT * FROM q UNION SELECT * FROM q").is_err()
        );
        assert!(check("WITH q AS (SELECT random() r) SELECT * FROM q").is_ok());
        assert!(check("WITH q AS (SELECT 1 r) SELECT * FROM q a, q b").is_ok());
        assert!(
            check(
                "WITH RECURSIVE q(n) AS (SELECT random() UNION ALL SELECT n + 1 FROM q WHERE n < 3) \
                 SELECT * FROM q"
            )
            .is_ok()
        );
        assert!(
            check("WITH q AS (SELECT nextval('s') v), p AS (SELECT * FROM q) SELECT * FROM p, q")
                .is_err()
        );
        // Read twice through another WITH query.
        assert!(
            check("WITH q AS (SELECT random() r), p AS (SELECT r FROM q) SELECT * FROM p a, p b")
                .is_err()
        );
        assert!(
            check("WITH q AS (SELECT random() r), p AS (SELECT r FROM q) SELECT * FROM p").is_ok()
        );
    }
}
