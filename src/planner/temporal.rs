//! `NOW()` in views: the event-time clock, and the conditions on it that become sliding
//! filters.
//!
//! In a view, `WHERE ts > NOW() - INTERVAL '1 hour'` keeps the rows of the last hour, and rows
//! leave the view as they age out. What `NOW()` is decides what the view shows, so it is defined
//! by the data, not by the server's clock: **`NOW()` in a view is the watermark of the column it is
//! compared with** — for a source or an append-only table with `WATERMARK FOR ts AS ts -
//! INTERVAL '5 seconds'`, the largest `ts` seen so far less five seconds. The view's contents are
//! then a function of its input rows in order: the same on every run, after a restart, for a
//! view created before or after the data, and the same when historical events are replayed as
//! when they arrived live (what a model trained on replayed features needs). Before the first
//! watermark the clock stands at the beginning of time. Ad-hoc queries keep PostgreSQL's `NOW()`,
//! the time the statement started.
//!
//! A view's `NOW()` calls are swapped for [`EventNow`] after DataFusion has analysed the plan
//! (so that views read by the view are covered) and before it optimises it (so that `NOW()` is
//! not folded into the creation time). The planner then takes the conditions
//! `expr OP NOW() ± interval` (`OP` one of `<`, `<=`, `>`, `>=`, `=`, and `BETWEEN`, joined by
//! AND) out of the filter and gives them to a [`TemporalFilterOp`]: each row is visible while
//! the clock is in `[from, until)`, computed from the row once. Rows wait in state keyed by the
//! time they appear or leave, so a clock that advances reads only the rows it moves past; rows
//! that have left are deleted, which keeps the state to the rows in the window.
//!
//! This half plans: it swaps the calls, reads the conditions and builds the operator; the
//! operator itself is `stream::temporal`.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ScalarValue, config::ConfigOptions};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, Operator as BinaryOp, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};

use super::{Planner, Props, not_supported};
use crate::stream::temporal::{Bound, Cmp, TemporalFilterOp};
use crate::stream::{Result, StreamError};

/// `NOW()` in a view: the event-time clock. Volatile, so that DataFusion neither folds it into
/// a constant nor moves conditions on it; never evaluated (the planner takes it out).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct EventNow {
    signature: Signature,
    return_type: DataType,
}

impl ScalarUDFImpl for EventNow {
    fn name(&self) -> &str {
        "now"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(self.return_type.clone())
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        Err(datafusion::error::DataFusionError::NotImplemented(
            NOW_PLACES.to_string(),
        ))
    }
}

/// Where `NOW()` may stand in a view.
const NOW_PLACES: &str = "NOW() in a view outside WHERE conditions such as `ts > NOW() - \
     INTERVAL '1 hour'` (<, <=, >, >=, = or BETWEEN, joined by AND) on a column with a watermark";

/// Date and time functions that would be fixed at the view's creation: refused.
const FROZEN: [&str; 3] = ["current_date", "current_time", "localtimestamp"];

/// Swaps the `NOW()` calls of an analysed view plan for [`EventNow`]; refuses the other
/// functions of the current time.
pub fn mark_now(plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
    let now = Arc::new(ScalarUDF::new_from_impl(EventNow {
        signature: Signature::nullary(Volatility::Volatile),
        return_type: DataType::Timestamp(
            TimeUnit::Nanosecond,
            config.execution.time_zone.as_deref().map(Arc::from),
        ),
    }));
    let mut frozen = None;
    let plan = plan
        .transform_up_with_subqueries(|node| {
            node.map_expressions(|expr| {
                expr.transform_up(|e| match &e {
                    Expr::ScalarFunction(f) if f.func.name() == "now" && f.args.is_empty() => {
                        Ok(Transformed::yes(Expr::ScalarFunction(
                            ScalarFunction::new_udf(now.clone(), vec![]),
                        )))
                    }
                    Expr::ScalarFunction(f) if FROZEN.contains(&f.func.name()) => {
                        frozen = Some(f.func.name().to_string());
                        Ok(Transformed::no(e))
                    }
                    _ => Ok(Transformed::no(e)),
                })
            })
        })?
        .data;
    if let Some(name) = frozen {
        return Err(StreamError::NotSupported(format!(
            "{name}() in a view (it would stay the time the view was created; compare with \
             NOW(), the view's event time, instead)"
        )));
    }
    Ok(plan)
}

/// True for the event-time `NOW()` of a view.
pub fn is_now(expr: &Expr) -> bool {
    matches!(expr, Expr::ScalarFunction(f) if f.func.name() == "now" && f.args.is_empty())
}

/// True when `expr` calls `NOW()`.
pub fn contains_now(expr: &Expr) -> bool {
    let mut found = false;
    let _ = expr.apply(|e| {
        found = is_now(e);
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// The refusal of `NOW()` where it stands.
pub fn misplaced() -> StreamError {
    StreamError::NotSupported(NOW_PLACES.to_string())
}

/// `row OP NOW() + offset`, the offset in nanoseconds.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The row's side.
    pub row: Expr,
    /// The comparison.
    pub op: Cmp,
    /// Added to the clock.
    pub offset: i64,
}

/// The conditions on `NOW()` of one conjunct of a view's WHERE.
pub fn conditions(expr: &Expr) -> Result<Vec<Condition>> {
    match expr {
        Expr::BinaryExpr(b) => {
            let op = Cmp::of(b.op).ok_or_else(misplaced)?;
            let (row, clock, op) = match (contains_now(&b.left), contains_now(&b.right)) {
                (false, true) => (&b.left, &b.right, op),
                (true, false) => (&b.right, &b.left, op.swap()),
                _ => return Err(misplaced()),
            };
            Ok(vec![Condition {
                row: row.as_ref().clone(),
                op,
                offset: clock_offset(clock)?,
            }])
        }
        Expr::Between(b) if !b.negated && !contains_now(&b.expr) => {
            let low = Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
                b.expr.clone(),
                BinaryOp::GtEq,
                b.low.clone(),
            ));
            let high = Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
                b.expr.clone(),
                BinaryOp::LtEq,
                b.high.clone(),
            ));
            let mut found = Vec::new();
            for side in [low, high] {
                if contains_now(&side) {
                    found.extend(conditions(&side)?);
                }
            }
            Ok(found)
        }
        Expr::Alias(a) => conditions(&a.expr),
        _ => Err(misplaced()),
    }
}

/// `NOW() ± constant intervals` (through casts): the sum of the intervals in nanoseconds.
fn clock_offset(expr: &Expr) -> Result<i64> {
    match peel_intervals(expr)? {
        (base, offset) if is_now(base) => Ok(offset),
        _ => Err(misplaced()),
    }
}

/// `expr ± constant intervals`, through casts and aliases: `expr` and the sum of the intervals
/// in nanoseconds (`expr` itself and 0 when nothing is added).
pub fn peel_intervals(expr: &Expr) -> Result<(&Expr, i64)> {
    match expr {
        Expr::Cast(c) => peel_intervals(&c.expr),
        Expr::TryCast(c) => peel_intervals(&c.expr),
        Expr::Alias(a) => peel_intervals(&a.expr),
        Expr::BinaryExpr(b) if b.op == BinaryOp::Plus => {
            if let Some(n) = interval_nanos(&b.right)? {
                let (base, offset) = peel_intervals(&b.left)?;
                Ok((base, offset.saturating_add(n)))
            } else if let Some(n) = interval_nanos(&b.left)? {
                let (base, offset) = peel_intervals(&b.right)?;
                Ok((base, offset.saturating_add(n)))
            } else {
                Ok((expr, 0))
            }
        }
        Expr::BinaryExpr(b) if b.op == BinaryOp::Minus => match interval_nanos(&b.right)? {
            Some(n) => {
                let (base, offset) = peel_intervals(&b.left)?;
                Ok((base, offset.saturating_sub(n)))
            }
            None => Ok((expr, 0)),
        },
        _ => Ok((expr, 0)),
    }
}

/// A constant interval of fixed length in nanoseconds (a day is 24 hours); `None` for anything
/// but an interval constant, an error for months.
fn interval_nanos(expr: &Expr) -> Result<Option<i64>> {
    const DAY: i64 = 86_400_000_000_000;
    let value = match expr {
        Expr::Literal(value, _) => value,
        Expr::Cast(c) => return interval_nanos(&c.expr),
        _ => return Ok(None),
    };
    let months = || {
        StreamError::NotSupported(
            "NOW() plus or minus months or years in a view (months differ in length; use days)"
                .into(),
        )
    };
    Ok(Some(match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            if v.months != 0 {
                return Err(months());
            }
            i64::from(v.days)
                .saturating_mul(DAY)
                .saturating_add(v.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(v)) => i64::from(v.days)
            .saturating_mul(DAY)
            .saturating_add(i64::from(v.milliseconds) * 1_000_000),
        ScalarValue::IntervalYearMonth(Some(0)) => 0,
        ScalarValue::IntervalYearMonth(Some(_)) => return Err(months()),
        ScalarValue::DurationSecond(Some(v)) => v.saturating_mul(1_000_000_000),
        ScalarValue::DurationMillisecond(Some(v)) => v.saturating_mul(1_000_000),
        ScalarValue::DurationMicrosecond(Some(v)) => v.saturating_mul(1_000),
        ScalarValue::DurationNanosecond(Some(v)) => *v,
        _ => return Ok(None),
    }))
}

/// The text of a row's side of a condition on `NOW()`, without the casts DataFusion added.
fn row_text(expr: &Expr) -> String {
    match expr {
        Expr::Cast(c) => row_text(&c.expr),
        Expr::TryCast(c) => row_text(&c.expr),
        Expr::Column(c) => c.name.clone(),
        other => other.to_string(),
    }
}

impl Planner<'_> {
    /// A [`TemporalFilterOp`] after `node` for the conjuncts of a WHERE that compare with
    /// `NOW()`: the clock is the watermark of the one column they compare with.
    pub(super) fn temporal_filter(
        &mut self,
        node: usize,
        conjuncts: &[&Expr],
        input: &DFSchema,
        schema: SchemaRef,
        props: Props,
    ) -> Result<(usize, Props)> {
        let mut clock = None;
        let mut bounds = Vec::new();
        for conjunct in conjuncts {
            for condition in conditions(conjunct)? {
                let mut columns: Vec<usize> = condition
                    .row
                    .column_refs()
                    .into_iter()
                    .filter_map(|c| input.index_of_column(c).ok())
                    .collect();
                columns.sort_unstable();
                columns.dedup();
                let watermarked: Vec<usize> = columns
                    .iter()
                    .copied()
                    .filter(|c| props.watermarks.contains(c))
                    .collect();
                let column = match watermarked.as_slice() {
                    [one] => *one,
                    [] => {
                        return Err(not_supported(format!(
                            "NOW() compared with {} (NOW() in a view is event time: the \
                             watermark of the column it is compared with, and that has none; \
                             declare WATERMARK FOR on the source or APPEND ONLY table)",
                            row_text(&condition.row)
                        )));
                    }
                    _ => {
                        return Err(not_supported(format!(
                            "NOW() compared with {}, which reads more than one column with a \
                             watermark",
                            row_text(&condition.row)
                        )));
                    }
                };
                if clock.is_some_and(|c| c != column) {
                    return Err(not_supported(
                        "NOW() compared with two columns with different watermarks",
                    ));
                }
                clock = Some(column);
                bounds.push(Bound {
                    row: self.compile(&condition.row, input)?,
                    op: condition.op,
                    offset: condition.offset,
                    text: row_text(&condition.row),
                });
            }
        }
        let clock = clock.ok_or_else(misplaced)?;
        let index = self.graph.len();
        let op = TemporalFilterOp::new(
            schema,
            bounds,
            clock,
            self.scope(index)?,
            self.errors.clone(),
        )?;
        let filtered = self.graph.add(Box::new(op));
        self.graph.connect(node, filtered, 0);
        // Rows leave below the watermark: no watermark passes, and the output changes.
        Ok((
            filtered,
            Props {
                key: props.key,
                append_only: false,
                watermarks: Vec::new(),
            },
        ))
    }
}
