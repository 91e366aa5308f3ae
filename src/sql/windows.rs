//! Window table functions in FROM: `TUMBLE(relation, ts, size [, offset])` and
//! `HOP(relation, ts, slide, size)`.
//!
//! Each becomes a subquery over the relation that adds `window_start` and `window_end`
//! (timestamps of `ts`'s type) to every row, so a query plans the same whether it is run once or
//! kept as a materialized view, and a view's rows equal its query run as a batch query. Windows
//! are aligned to the Unix epoch (plus TUMBLE's offset): a TUMBLE window starts at
//! `date_bin(size, ts, epoch + offset)`. A HOP row belongs to the `size / slide` windows whose
//! start ≤ ts < end; the subquery is a UNION ALL of one branch per window, each a projection
//! whose `window_start` rises with `ts`, which is what lets a watermark on `ts` reach the
//! windows (see `stream::watermark`).
//!
//! `SESSION(relation, ts, gap)` forms sessions per GROUP BY key of the query it is in: its
//! subquery adds the bounds with the window functions defined here, `session_window_start(ts,
//! gap) OVER (PARTITION BY keys ORDER BY ts)` and `session_window_end(...)`, partitioned by the
//! GROUP BY columns of the relation (other than the bounds) and ordered by `ts`. An ad-hoc query
//! runs them over the whole input; in a view the planner recognises them and keeps the bounds
//! with `stream::session_window`'s operator, which shares their arithmetic.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};
use datafusion::physical_expr::expressions::Literal;
use datafusion::prelude::SessionContext;

use datafusion::arrow::compute::kernels::cast_utils::parse_interval_month_day_nano;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, GroupByExpr, Ident, ObjectName, Query, Select, SelectItem,
    SetExpr, Statement, TableAlias, TableFactor, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::{Error, Result};
use crate::stream::session_window::{SessionBound, end_of, gap_in_units, sessions, unit_nanos};

/// The origin windows are aligned to.
const EPOCH: &str = "TIMESTAMP '1970-01-01 00:00:00'";

/// Replaces every TUMBLE, HOP and SESSION in `statement`'s FROM clauses by the subquery that
/// computes it.
pub fn expand(statement: &mut Statement) -> Result<()> {
    let mut expander = Expander;
    match statement.visit(&mut expander) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(e) => Err(e),
    }
}

struct Expander;

impl VisitorMut for Expander {
    type Break = Error;

    /// SESSION needs its query's GROUP BY: it is expanded here, before the visitor reaches the
    /// query's FROM.
    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Error> {
        match sessions_in(&mut query.body) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Error> {
        let TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let Some(function) = window_function(name) else {
            return ControlFlow::Continue(());
        };
        if function == Function::Session {
            // Every FROM list of a SELECT was expanded by `pre_visit_query`.
            return ControlFlow::Break(Error::coded(
                "0A000",
                "SESSION must be an item of a FROM list, not inside parenthesized joins",
            ));
        }
        let expanded = expand_call(function, &args.args, &[]).and_then(|(relation, subquery)| {
            let (_, alias) = alias_of(alias.as_ref(), &relation);
            derived(&format!("({subquery}) {alias}"))
        });
        match expanded {
            Ok(derived) => {
                *factor = derived;
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Function {
    Tumble,
    Hop,
    Session,
}

/// Expands the SESSIONs of every SELECT in `body`.
fn sessions_in(body: &mut SetExpr) -> Result<()> {
    match body {
        SetExpr::Select(select) => expand_sessions(select),
        SetExpr::SetOperation { left, right, .. } => {
            sessions_in(left)?;
            sessions_in(right)
        }
        _ => Ok(()),
    }
}

fn expand_sessions(select: &mut Select) -> Result<()> {
    let relations: usize = select.from.iter().map(|t| 1 + t.joins.len()).sum();
    let group_by = select.group_by.clone();
    let projection = select.projection.clone();
    let factors = select.from.iter_mut().flat_map(|t| {
        std::iter::once(&mut t.relation).chain(t.joins.iter_mut().map(|j| &mut j.relation))
    });
    for factor in factors {
        let TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } = factor
        else {
            continue;
        };
        if window_function(name) != Some(Function::Session) {
            continue;
        }
        let default_alias = match positional("SESSION", &args.args)?.first() {
            Some(first) => relation_of("SESSION", first)?.0,
            // Refused for its arity.
            None => expand_call(Function::Session, &args.args, &[])?.0,
        };
        let (name, alias) = alias_of(alias.as_ref(), &default_alias);
        let keys = session_keys(&group_by, &projection, &name, relations == 1)?;
        let (_, subquery) = expand_call(Function::Session, &args.args, &keys)?;
        *factor = derived(&format!("({subquery}) {alias}"))?;
    }
    Ok(())
}

/// The name a window function's subquery goes by in its query (its alias, else the relation's
/// name) and the `AS ...` text that gives it.
fn alias_of(alias: Option<&TableAlias>, relation: &str) -> (Ident, String) {
    match alias {
        Some(alias) => {
            let mut alias = alias.clone();
            alias.explicit = true;
            (alias.name.clone(), alias.to_string())
        }
        None => (Ident::new(relation), format!("AS {relation}")),
    }
}

/// The columns of SESSION's relation (named `alias` in the query) that the query groups by,
/// other than the window bounds: a session is formed per value of them. With `only`, SESSION
/// is the query's one relation and unqualified names are its columns.
fn session_keys(
    group_by: &GroupByExpr,
    projection: &[SelectItem],
    alias: &Ident,
    only: bool,
) -> Result<Vec<String>> {
    let exprs = match group_by {
        GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => exprs,
        other => {
            return Err(Error::coded(
                "0A000",
                format!("SESSION forms sessions per GROUP BY column; {other} has none"),
            ));
        }
    };
    let mut keys = Vec::new();
    for expr in exprs {
        if let Some(key) = session_key(expr, projection, alias, only)? {
            keys.push(key);
        }
    }
    Ok(keys)
}

fn session_key(
    expr: &Expr,
    projection: &[SelectItem],
    alias: &Ident,
    only: bool,
) -> Result<Option<String>> {
    let normal = |ident: &Ident| match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    };
    let column = |ident: &Ident| {
        let name = normal(ident);
        (name != "window_start" && name != "window_end").then(|| ident.to_string())
    };
    let refused = || {
        Error::coded(
            "0A000",
            format!(
                "SESSION forms sessions per GROUP BY column of its relation {alias}; \
                 GROUP BY {expr} is not one"
            ),
        )
    };
    match expr {
        Expr::Identifier(ident) if only => Ok(column(ident)),
        Expr::CompoundIdentifier(parts)
            if parts.len() == 2 && normal(&parts[0]) == normal(alias) =>
        {
            Ok(column(&parts[1]))
        }
        Expr::Nested(inner) => session_key(inner, projection, alias, only),
        Expr::Value(value) => {
            let Value::Number(n, _) = &value.value else {
                return Err(refused());
            };
            let item = n
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| projection.get(i));
            match item {
                Some(SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) => {
                    session_key(e, projection, alias, only)
                }
                _ => Err(refused()),
            }
        }
        _ => Err(refused()),
    }
}

fn window_function(name: &ObjectName) -> Option<Function> {
    if name.0.len() != 1 {
        return None;
    }
    let ident = name.0[0].as_ident()?;
    match ident.value.to_ascii_lowercase().as_str() {
        "tumble" => Some(Function::Tumble),
        "hop" => Some(Function::Hop),
        "session" => Some(Function::Session),
        _ => None,
    }
}

/// The relation's name (the subquery's default alias) and the subquery's text. A SESSION is
/// partitioned by `keys`.
fn expand_call(
    function: Function,
    args: &[FunctionArg],
    keys: &[String],
) -> Result<(String, String)> {
    let (name, arity) = match function {
        Function::Tumble => ("TUMBLE", "TUMBLE(relation, time column, size [, offset])"),
        Function::Hop => ("HOP", "HOP(relation, time column, slide, size)"),
        Function::Session => ("SESSION", "SESSION(relation, time column, gap)"),
    };
    let args = positional(name, args)?;
    let fits = match function {
        Function::Tumble => (3..=4).contains(&args.len()),
        Function::Hop => args.len() == 4,
        Function::Session => args.len() == 3,
    };
    if !fits {
        return Err(Error::coded(
            "42883",
            format!(
                "{name} takes {arity}; it was given {} arguments",
                args.len()
            ),
        ));
    }
    let (alias, relation) = relation_of(name, args[0])?;
    let ts = args[1];
    let subquery = match function {
        Function::Tumble => {
            duration(name, "size", args[2])?;
            let offset = match args.get(3) {
                Some(offset) => interval_nanos(name, "offset", offset)?,
                None => 0,
            };
            let origin = format!("{EPOCH} + INTERVAL '{offset} nanoseconds'");
            let start = format!("date_bin({}, {ts}, {origin})", args[2]);
            format!(
                "SELECT *, {start} AS window_start, {start} + {} AS window_end FROM {relation}",
                args[2]
            )
        }
        Function::Hop => {
            let slide = duration(name, "slide", args[2])?;
            let size = duration(name, "size", args[3])?;
            if size % slide != 0 {
                return Err(Error::coded(
                    "22023",
                    format!(
                        "{name}'s size ({}) must be a whole multiple of its slide ({})",
                        args[3], args[2]
                    ),
                ));
            }
            let latest = format!("date_bin({}, {ts}, {EPOCH})", args[2]);
            let branches: Vec<String> = (0..size / slide)
                .map(|i| {
                    let start = format!("{latest} - INTERVAL '{} nanoseconds'", i * slide);
                    format!(
                        "SELECT *, {start} AS window_start, {start} + {} AS window_end \
                         FROM {relation}",
                        args[3]
                    )
                })
                .collect();
            branches.join(" UNION ALL ")
        }
        Function::Session => {
            let gap = duration(name, "gap", args[2])?;
            let partition = if keys.is_empty() {
                String::new()
            } else {
                format!("PARTITION BY {} ", keys.join(", "))
            };
            let over = format!("OVER ({partition}ORDER BY {ts})");
            format!(
                "SELECT *, {}({ts}, {gap}) {over} AS window_start, \
                 {}({ts}, {gap}) {over} AS window_end FROM {relation}",
                START, END
            )
        }
    };
    Ok((alias, subquery))
}

/// The arguments of a window table function, which are all positional.
fn positional<'a>(name: &str, args: &'a [FunctionArg]) -> Result<Vec<&'a Expr>> {
    args.iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            other => Err(Error::coded(
                "42601",
                format!("{name} takes positional arguments, not {other}"),
            )),
        })
        .collect()
}

/// The relation a window table function reads: its default alias and its name.
fn relation_of(name: &str, first: &Expr) -> Result<(String, String)> {
    let relation = match first {
        Expr::Identifier(ident) => ident.to_string(),
        Expr::CompoundIdentifier(parts) => parts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("."),
        other => {
            return Err(Error::coded(
                "42601",
                format!(
                    "the first argument of {name} is a table, view or source name, not {other}"
                ),
            ));
        }
    };
    let alias = match first {
        Expr::CompoundIdentifier(parts) => parts.last().map(ToString::to_string),
        _ => None,
    }
    .unwrap_or_else(|| relation.clone());
    Ok((alias, relation))
}

/// A window's length in nanoseconds: a positive interval of fixed length.
fn duration(function: &str, what: &str, expr: &Expr) -> Result<i64> {
    let nanos = interval_nanos(function, what, expr)?;
    if nanos <= 0 {
        return Err(Error::coded(
            "22023",
            format!("{function}'s {what} must be a positive interval, not {expr}"),
        ));
    }
    Ok(nanos)
}

/// The length of an interval literal in nanoseconds; days count 24 hours.
fn interval_nanos(function: &str, what: &str, expr: &Expr) -> Result<i64> {
    let Expr::Interval(interval) = expr else {
        return Err(Error::coded(
            "42804",
            format!(
                "{function}'s {what} must be an interval literal such as INTERVAL '10 seconds', not {expr}"
            ),
        ));
    };
    let value = match interval.value.as_ref() {
        Expr::Value(v) => match &v.value {
            datafusion::sql::sqlparser::ast::Value::SingleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    };
    let text = match &interval.leading_field {
        Some(field) => format!("{value} {field}"),
        None => value,
    };
    let parsed = parse_interval_month_day_nano(&text).map_err(|e| {
        Error::coded(
            "22007",
            format!("{function}'s {what} {expr} is not a valid interval: {e}"),
        )
    })?;
    if parsed.months != 0 {
        return Err(Error::coded(
            "0A000",
            format!("{function}'s {what} must have a fixed length; months and years do not"),
        ));
    }
    (parsed.days as i64)
        .checked_mul(86_400_000_000_000)
        .and_then(|d| d.checked_add(parsed.nanoseconds))
        .ok_or_else(|| Error::coded("22008", format!("{function}'s {what} is too long")))
}

/// The table factor of `FROM <text>`.
fn derived(text: &str) -> Result<TableFactor> {
    let sql = format!("SELECT * FROM {text}");
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, &sql)
        .map_err(|e| Error::Internal(format!("window subquery does not parse: {e}: {sql}")))?;
    if let Some(Statement::Query(query)) = statements.pop()
        && let datafusion::sql::sqlparser::ast::SetExpr::Select(select) = *query.body
        && let Some(from) = select.from.into_iter().next()
    {
        return Ok(from.relation);
    }
    Err(Error::Internal(format!(
        "window subquery has no FROM: {sql}"
    )))
}

/// The window function giving a row's session start.
pub const START: &str = "session_window_start";
/// The window function giving a row's session end.
pub const END: &str = "session_window_end";

/// The session bound computed by the window function `name`.
pub fn session_bound(name: &str) -> Option<SessionBound> {
    match name {
        START => Some(SessionBound::Start),
        END => Some(SessionBound::End),
        _ => None,
    }
}

/// The window function computing `bound`.
fn function_name(bound: SessionBound) -> &'static str {
    match bound {
        SessionBound::Start => START,
        SessionBound::End => END,
    }
}

/// Registers the window functions that compute session bounds in ad-hoc queries.
pub fn register_session_functions(ctx: &SessionContext) {
    for bound in [SessionBound::Start, SessionBound::End] {
        ctx.register_udwf(WindowUDF::new_from_impl(SessionBoundFn {
            bound,
            signature: Signature::any(2, Volatility::Immutable),
        }));
    }
}

/// `session_window_start(ts, gap_ns)` / `session_window_end(ts, gap_ns)` over a partition.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SessionBoundFn {
    bound: SessionBound,
    signature: Signature,
}

impl WindowUDFImpl for SessionBoundFn {
    fn name(&self) -> &str {
        function_name(self.bound)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn field(&self, args: WindowUDFFieldArgs) -> datafusion::error::Result<FieldRef> {
        let time = args.get_input_field(0).ok_or_else(|| {
            DataFusionError::from(crate::Error::coded(
                "42883",
                format!("{} takes a time column and a gap", self.name()),
            ))
        })?;
        unit_nanos(time.data_type())?;
        Ok(Arc::new(Field::new(
            args.name(),
            time.data_type().clone(),
            true,
        )))
    }

    fn partition_evaluator(
        &self,
        args: PartitionEvaluatorArgs,
    ) -> datafusion::error::Result<Box<dyn PartitionEvaluator>> {
        let time_type = args
            .input_fields()
            .first()
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        let gap = args
            .input_exprs()
            .get(1)
            .and_then(|e| e.downcast_ref::<Literal>())
            .and_then(|l| match l.value() {
                ScalarValue::Int64(gap) => *gap,
                _ => None,
            })
            .ok_or_else(|| {
                DataFusionError::from(crate::Error::coded(
                    "42804",
                    format!(
                        "{}'s gap must be a constant BIGINT of nanoseconds",
                        self.name()
                    ),
                ))
            })?;
        let gap = gap_in_units(gap, &time_type)?;
        Ok(Box::new(SessionEvaluator {
            bound: self.bound,
            gap,
            time_type,
        }))
    }
}

#[derive(Debug)]
struct SessionEvaluator {
    bound: SessionBound,
    /// In the time column's units.
    gap: i64,
    time_type: DataType,
}

impl PartitionEvaluator for SessionEvaluator {
    fn evaluate_all(
        &mut self,
        values: &[ArrayRef],
        num_rows: usize,
    ) -> datafusion::error::Result<ArrayRef> {
        let raw = cast(&values[0], &DataType::Int64)?;
        let raw = raw.as_primitive::<Int64Type>();
        let mut order: Vec<usize> = (0..num_rows).filter(|&i| raw.is_valid(i)).collect();
        order.sort_by_key(|&i| raw.value(i));
        let times: Vec<i64> = order.iter().map(|&i| raw.value(i)).collect();
        let mut out: Vec<Option<i64>> = vec![None; num_rows];
        for session in sessions(&times, self.gap) {
            let value = match self.bound {
                SessionBound::Start => times[session.start],
                SessionBound::End => end_of(times[session.end - 1], self.gap)?,
            };
            for &i in &order[session] {
                out[i] = Some(value);
            }
        }
        Ok(cast(&Int64Array::from(out), &self.time_type)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(sql: &str) -> Result<String> {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .pop()
            .unwrap();
        expand(&mut statement)?;
        Ok(statement.to_string())
    }

    #[test]
    fn tumble_adds_the_window_of_each_row() {
        let sql = expanded(
            "SELECT window_start, count(*) FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) \
             GROUP BY window_start",
        )
        .unwrap();
        assert!(
            sql.contains("date_bin(INTERVAL '10' SECOND, date_time"),
            "{sql}"
        );
        assert!(sql.contains(") AS bid GROUP BY"), "{sql}");
    }

    #[test]
    fn hop_has_one_branch_per_window_a_row_is_in() {
        let sql = expanded(
            "SELECT * FROM HOP(bid, date_time, INTERVAL '2 seconds', INTERVAL '10 seconds') AS h",
        )
        .unwrap();
        assert_eq!(sql.matches("UNION ALL").count(), 4, "{sql}");
        assert!(sql.contains("INTERVAL '8000000000 nanoseconds'"), "{sql}");
        assert!(sql.ends_with(") AS h"), "{sql}");
    }

    #[test]
    fn bad_arguments_are_refused() {
        let code = |sql: &str| match expanded(sql) {
            Err(e) => e.sqlstate().to_string(),
            Ok(s) => panic!("accepted: {s}"),
        };
        assert_eq!(code("SELECT * FROM TUMBLE(t, ts)"), "42883");
        assert_eq!(code("SELECT * FROM TUMBLE(t, ts, 5)"), "42804");
        assert_eq!(
            code("SELECT * FROM TUMBLE(t, ts, INTERVAL '0 seconds')"),
            "22023"
        );
        assert_eq!(
            code("SELECT * FROM TUMBLE(t, ts, INTERVAL '1 month')"),
            "0A000"
        );
        assert_eq!(
            code("SELECT * FROM HOP(t, ts, INTERVAL '3 seconds', INTERVAL '10 seconds')"),
            "22023"
        );
        assert_eq!(
            code("SELECT * FROM TUMBLE((SELECT 1), ts, INTERVAL '1 second')"),
            "42601"
        );
    }
}
