//! From a view's query to its dataflow.
//!
//! DataFusion parses, analyses and optimises the query into a `LogicalPlan`; this module turns
//! each node of that plan into an incremental operator and refuses, with `0A000` naming it,
//! anything it cannot maintain. Expressions are compiled by DataFusion, so a view runs exactly
//! the function library an ad-hoc query does. Along the way it derives what the view needs to
//! store its rows: a key (columns unique in every row) where there is one, and whether the
//! output only ever grows (append-only), which lets min and max keep a single value.

use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{DFSchema, NullEquality};
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Distinct, Expr, ExprSchemable, FetchType, LogicalPlan, SkipType, SortExpr,
    WindowFunctionDefinition,
};
use datafusion::physical_expr::PhysicalExpr;

use super::aggregate::{AggCall, AggKind, AggregateOp};
use super::filter::FilterOp;
use super::graph::{Graph, ScanOp};
use super::join::{Interval, JoinOp};
use super::memo::MemoProjectOp;
use super::over::{OverOp, Reach, bound_units};
use super::project::ProjectOp;
use super::session::{Bound, SessionOp};
use super::sliding::{Slide, SlideKind, SlidingOp};
use super::state::StateScope;
use super::temporal::{self, TemporalFilterOp};
use super::topn::TopNOp;
use super::union::UnionOp;
use super::watermark::Derived;
use super::{ExprErrors, Operator, Result, StreamError};
use crate::model::functions::{NAMES as MODEL_FUNCTIONS, calls_model};
use crate::storage::Store;
use crate::stream::state::CacheBudget;

/// What the planner needs to know about a relation a view reads.
#[derive(Debug, Clone)]
pub struct Input {
    /// The relation's id: where its changes come from.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Positions (in the relation's columns) of a key, if its rows have one.
    pub key: Option<Vec<usize>>,
    /// True when rows are only ever inserted (sources).
    pub append_only: bool,
    /// Positions of the columns that carry a watermark.
    pub watermarks: Vec<usize>,
}

/// Tells the planner which relation a `TableScan` reads.
pub type Resolve<'a> = &'a dyn Fn(&datafusion::logical_expr::TableScan) -> Result<Input>;

/// A view's dataflow without its root, and what was derived about its output.
#[derive(Debug)]
pub struct Planned {
    /// The operators; the last one produces the view's rows.
    pub graph: Graph,
    /// The columns of the view.
    pub schema: SchemaRef,
    /// Positions of columns unique in every row, if there are such.
    pub key: Option<Vec<usize>>,
    /// True when the view's rows are only ever inserted.
    pub append_only: bool,
    /// Positions of the view's columns that carry a watermark.
    pub watermarks: Vec<usize>,
}

/// Properties of a node's output.
#[derive(Debug, Clone)]
struct Props {
    key: Option<Vec<usize>>,
    append_only: bool,
    /// Columns that carry a watermark, in order.
    watermarks: Vec<usize>,
}

struct Planner<'a> {
    state: &'a SessionState,
    store: Store,
    cache: Arc<CacheBudget>,
    view: u32,
    resolve: Resolve<'a>,
    graph: Graph,
    errors: Arc<ExprErrors>,
    /// `EMIT ON WINDOW CLOSE` was asked for and its aggregate not planned yet.
    emit_on_close: bool,
}

/// Plans the dataflow of view `view` from its optimised logical plan, its state in `store`
/// with its cache within `cache`; rows whose expressions fail are counted in `errors`. With `emit_on_close` (`EMIT ON WINDOW CLOSE`), the query's
/// outermost GROUP BY emits each group once, when the watermark closes it.
pub fn plan_view(
    plan: &LogicalPlan,
    state: &SessionState,
    (store, cache): (Store, Arc<CacheBudget>),
    view: u32,
    resolve: Resolve<'_>,
    errors: Arc<ExprErrors>,
    emit_on_close: bool,
) -> Result<Planned> {
    let mut planner = Planner {
        state,
        store,
        cache,
        view,
        resolve,
        graph: Graph::default(),
        errors,
        emit_on_close,
    };
    let (_, props) = planner.plan(plan)?;
    Ok(Planned {
        graph: planner.graph,
        schema: Arc::new(plan.schema().as_arrow().clone()),
        key: props.key,
        append_only: props.append_only,
        watermarks: props.watermarks,
    })
}

/// Whether `units` of the timestamp (or integer) type `order_type` are exactly the interval
/// `value` (`bound_units` rounds a timestamp interval up to whole units).
fn exact_units(value: &ScalarValue, order_type: &DataType, units: i64) -> bool {
    match order_type {
        DataType::Timestamp(unit, _) => {
            let nanos = bound_units(
                value,
                &DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None),
            );
            nanos.is_some_and(|n| {
                i128::from(n) == i128::from(units) * i128::from(super::time::nanos_per(unit))
            })
        }
        _ => true,
    }
}

/// A SESSION bound `expr` over rows of `schema`: which bound, the time column's position, the
/// gap in nanoseconds and the partition expressions.
fn session_bound<'e>(expr: &'e Expr, schema: &DFSchema) -> Option<(Bound, usize, i64, &'e [Expr])> {
    let Expr::WindowFunction(function) = strip_aliases(expr) else {
        return None;
    };
    let WindowFunctionDefinition::WindowUDF(udf) = &function.fun else {
        return None;
    };
    let bound = Bound::of(udf.name())?;
    let params = &function.params;
    let [
        Expr::Column(time),
        Expr::Literal(ScalarValue::Int64(Some(gap)), _),
    ] = params.args.as_slice()
    else {
        return None;
    };
    let [order] = params.order_by.as_slice() else {
        return None;
    };
    if !order.asc || !matches!(&order.expr, Expr::Column(c) if c == time) || params.filter.is_some()
    {
        return None;
    }
    let time = schema.index_of_column(time).ok()?;
    Some((bound, time, *gap, &params.partition_by))
}

/// The refusal of `EMIT ON WINDOW CLOSE` over `what`.
fn no_window_close(what: &str) -> StreamError {
    not_supported(format!(
        "EMIT ON WINDOW CLOSE over {what} (it needs a GROUP BY on a column with a watermark, \
         such as the window_start or window_end of TUMBLE or HOP over a source or table with \
         WATERMARK FOR, at the top of the query)"
    ))
}

fn not_supported(what: impl Into<String>) -> StreamError {
    StreamError::NotSupported(what.into())
}

/// Refuses model calls in `place` over rows that change. A model can be replaced while its
/// scores are in a view; taking back a row must take back the score it was given, which only
/// a projection remembers (see [`MemoProjectOp`]).
fn no_model_calls<'e>(
    exprs: impl IntoIterator<Item = &'e Expr>,
    append_only: bool,
    place: &str,
) -> Result<()> {
    if !append_only && exprs.into_iter().any(calls_model) {
        return Err(not_supported(format!(
            "PREDICT in {place} over rows that change (score the rows in the SELECT list of a \
             subquery, and use its column)"
        )));
    }
    Ok(())
}

/// `column ± constant intervals` (through casts): the column and the sum in nanoseconds.
fn column_offset(expr: &Expr) -> Option<(&datafusion::common::Column, i64)> {
    match temporal::peel_intervals(expr).ok()? {
        (Expr::Column(c), offset) => Some((c, offset)),
        _ => None,
    }
}

/// The interval condition `lo ≤ left.a - right.b ≤ hi` in a join's `filter`, between columns
/// with watermarks on each side (`a + x OP b + y` conjuncts, and BETWEEN), if there is one.
fn interval_of(
    filter: &Expr,
    left: &DFSchema,
    right: &DFSchema,
    left_watermarks: &[usize],
    right_watermarks: &[usize],
) -> Option<Interval> {
    use datafusion::logical_expr::Operator as Op;
    let mut comparisons: Vec<(Expr, Op, Expr)> = Vec::new();
    for conjunct in split_conjunction(filter) {
        match conjunct {
            Expr::BinaryExpr(b) => {
                comparisons.push((b.left.as_ref().clone(), b.op, b.right.as_ref().clone()))
            }
            Expr::Between(b) if !b.negated => {
                comparisons.push((b.expr.as_ref().clone(), Op::GtEq, b.low.as_ref().clone()));
                comparisons.push((b.expr.as_ref().clone(), Op::LtEq, b.high.as_ref().clone()));
            }
            _ => {}
        }
    }
    let mut found: Option<Interval> = None;
    for (x, op, y) in comparisons {
        if !matches!(op, Op::Lt | Op::LtEq | Op::Gt | Op::GtEq) {
            continue;
        }
        let (Some((cx, ox)), Some((cy, oy))) = (column_offset(&x), column_offset(&y)) else {
            continue;
        };
        let on_left = |c| {
            left.index_of_column(c)
                .ok()
                .filter(|i| left_watermarks.contains(i))
        };
        let on_right = |c| {
            right
                .index_of_column(c)
                .ok()
                .filter(|i| right_watermarks.contains(i))
        };
        // a + oa OP b + ob  ⇔  a - b OP ob - oa.
        let (a, b, op, c) = match (on_left(cx), on_right(cy), on_left(cy), on_right(cx)) {
            (Some(a), Some(b), _, _) => (a, b, op, oy.checked_sub(ox)?),
            (_, _, Some(a), Some(b)) => (a, b, op.swap()?, ox.checked_sub(oy)?),
            _ => continue,
        };
        let interval = found.get_or_insert(Interval {
            left: a,
            right: b,
            lo: None,
            hi: None,
        });
        if (interval.left, interval.right) != (a, b) {
            continue;
        }
        // Strict bounds are taken as inclusive: a row kept a moment longer is harmless.
        if matches!(op, Op::Gt | Op::GtEq) {
            interval.lo = Some(interval.lo.map_or(c, |lo| lo.max(c)));
        } else {
            interval.hi = Some(interval.hi.map_or(c, |hi| hi.min(c)));
        }
    }
    found
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
    fn temporal_filter(
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
            for condition in temporal::conditions(conjunct)? {
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
                bounds.push(temporal::Bound {
                    row: self.compile(&condition.row, input)?,
                    op: condition.op,
                    offset: condition.offset,
                    text: row_text(&condition.row),
                });
            }
        }
        let clock = clock.ok_or_else(temporal::misplaced)?;
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

    fn scope(&self, node: usize) -> Result<StateScope> {
        let op = u16::try_from(node).map_err(|_| not_supported("a query with 65536 operators"))?;
        Ok(StateScope::new(self.store.clone(), self.view, op).with_budget(self.cache.clone()))
    }

    fn compile(&self, expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        if temporal::contains_now(expr) {
            return Err(temporal::misplaced());
        }
        let mut unsupported = None;
        expr.apply(|e| {
            use datafusion::common::tree_node::TreeNodeRecursion;
            let what = match e {
                Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => {
                    Some("a subquery in an expression".to_string())
                }
                Expr::WindowFunction(_) => Some("window functions (OVER)".to_string()),
                // Model calls are volatile to DataFusion (a model can be replaced between two
                // runs of a plan) but give one row one score: views remember it.
                Expr::ScalarFunction(f)
                    if e.is_volatile_node() && !MODEL_FUNCTIONS.contains(&f.func.name()) =>
                {
                    Some(format!("the volatile function {}()", f.func.name()))
                }
                _ => None,
            };
            if let Some(what) = what {
                unsupported = Some(what);
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        if let Some(what) = unsupported {
            return Err(not_supported(what));
        }
        let compiled = self.state.create_physical_expr(expr.clone(), schema)?;
        Ok(crate::session::checked::checked_expr(
            compiled,
            schema.inner(),
        )?)
    }

    /// Plans `plan`; returns the node producing its rows.
    fn plan(&mut self, plan: &LogicalPlan) -> Result<(usize, Props)> {
        if self.emit_on_close {
            let passes = match plan {
                LogicalPlan::Projection(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::SubqueryAlias(_)
                | LogicalPlan::Aggregate(_) => true,
                LogicalPlan::Sort(sort) => sort.fetch.is_none(),
                _ => false,
            };
            if !passes {
                return Err(no_window_close(&format!("{}", plan.display())));
            }
        }
        match plan {
            LogicalPlan::TableScan(scan) => {
                if scan.fetch.is_some() {
                    return Err(not_supported("LIMIT without ORDER BY"));
                }
                let input = (self.resolve)(scan)?;
                let width = scan.source.schema().fields().len();
                let columns = scan
                    .projection
                    .clone()
                    .unwrap_or_else(|| (0..width).collect());
                let key = input.key.as_ref().and_then(|key| {
                    key.iter()
                        .map(|k| columns.iter().position(|c| c == k))
                        .collect::<Option<Vec<_>>>()
                });
                let schema = Arc::new(scan.projected_schema.as_arrow().clone());
                let watermarks = columns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| input.watermarks.contains(c))
                    .map(|(i, _)| i)
                    .collect();
                let node =
                    self.graph
                        .add(Box::new(ScanOp::new(input.name.clone(), columns, schema)));
                self.graph.add_leaf(input.id, node);
                Ok((
                    node,
                    Props {
                        key,
                        append_only: input.append_only,
                        watermarks,
                    },
                ))
            }
            LogicalPlan::SubqueryAlias(alias) => self.plan(&alias.input),
            LogicalPlan::Projection(projection) => {
                let (child, props) = self.plan(&projection.input)?;
                let input_schema = projection.input.schema();
                let exprs = projection
                    .expr
                    .iter()
                    .map(|e| self.compile(e, input_schema))
                    .collect::<Result<Vec<_>>>()?;
                let key = props.key.as_ref().and_then(|key| {
                    key.iter()
                        .map(|&k| {
                            projection.expr.iter().position(|e| match strip_aliases(e) {
                                Expr::Column(c) => input_schema.index_of_column(c).ok() == Some(k),
                                _ => false,
                            })
                        })
                        .collect::<Option<Vec<_>>>()
                });
                let schema = Arc::new(projection.schema.as_arrow().clone());
                // Columns passed through in order under new names need no operator.
                let identity =
                    exprs.len() == input_schema.fields().len()
                        && projection.expr.iter().enumerate().all(|(i, e)| {
                            match strip_aliases(e) {
                                Expr::Column(c) => input_schema.index_of_column(c).ok() == Some(i),
                                _ => false,
                            }
                        })
                        && schema
                            .fields()
                            .iter()
                            .zip(input_schema.fields())
                            .all(|(a, b)| a.data_type() == b.data_type());
                if identity {
                    return Ok((child, Props { key, ..props }));
                }
                let input_arrow = Arc::new(input_schema.as_arrow().clone());
                let node = self.graph.len();
                // A memoising projection carries no watermark.
                let (op, watermarks): (Box<dyn Operator>, _) =
                    if !props.append_only && projection.expr.iter().any(calls_model) {
                        let op = MemoProjectOp::new(
                            exprs,
                            &input_arrow,
                            schema,
                            self.scope(node)?,
                            self.errors.clone(),
                        )?;
                        (Box::new(op), Vec::new())
                    } else {
                        let derived = Derived::find(&exprs, &input_arrow, &props.watermarks);
                        let watermarks = derived.iter().map(|d| d.output).collect();
                        let op = ProjectOp::new(exprs, schema, self.errors.clone())
                            .with_watermarks(derived);
                        (Box::new(op), watermarks)
                    };
                let node = self.graph.add(op);
                self.graph.connect(child, node, 0);
                Ok((
                    node,
                    Props {
                        key,
                        watermarks,
                        ..props
                    },
                ))
            }
            LogicalPlan::Filter(filter) => {
                let (child, props) = self.plan(&filter.input)?;
                no_model_calls([&filter.predicate], props.append_only, "WHERE")?;
                let (temporal, plain): (Vec<&Expr>, Vec<&Expr>) =
                    split_conjunction(&filter.predicate)
                        .into_iter()
                        .partition(|e| temporal::contains_now(e));
                let schema = Arc::new(filter.input.schema().as_arrow().clone());
                let mut node = child;
                if let Some(predicate) = conjunction(plain.into_iter().cloned()) {
                    let predicate = self.compile(&predicate, filter.input.schema())?;
                    let op =
                        FilterOp::new(predicate, schema.clone()).with_errors(self.errors.clone());
                    let filtered = self.graph.add(Box::new(op));
                    self.graph.connect(node, filtered, 0);
                    node = filtered;
                }
                if temporal.is_empty() {
                    return Ok((node, props));
                }
                self.temporal_filter(node, &temporal, filter.input.schema(), schema, props)
            }
            LogicalPlan::Aggregate(aggregate) => {
                let emit_on_close = std::mem::take(&mut self.emit_on_close);
                let (child, props) = self.plan(&aggregate.input)?;
                no_model_calls(
                    aggregate.group_expr.iter().chain(&aggregate.aggr_expr),
                    props.append_only,
                    "GROUP BY or an aggregate",
                )?;
                let input_schema = aggregate.input.schema();
                let mut groups = Vec::new();
                for expr in &aggregate.group_expr {
                    if matches!(expr, Expr::GroupingSet(_)) {
                        return Err(not_supported("GROUPING SETS, CUBE and ROLLUP"));
                    }
                    groups.push(self.compile(expr, input_schema)?);
                }
                let group_count = groups.len();
                let mut calls = Vec::new();
                for (index, expr) in aggregate.aggr_expr.iter().enumerate() {
                    let output_type = aggregate.schema.field(group_count + index).data_type();
                    calls.push(self.agg_call(
                        expr,
                        input_schema,
                        output_type.clone(),
                        props.append_only,
                    )?);
                }
                let schema = Arc::new(aggregate.schema.as_arrow().clone());
                let derived = Derived::find(
                    &groups,
                    &Arc::new(input_schema.as_arrow().clone()),
                    &props.watermarks,
                );
                if emit_on_close && derived.is_empty() {
                    return Err(no_window_close("a GROUP BY without a watermark column"));
                }
                self.aggregate(child, schema, groups, calls, derived, emit_on_close)
            }
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let (child, props) = self.plan(input)?;
                let schema = input.schema();
                let groups = schema
                    .columns()
                    .iter()
                    .map(|c| self.compile(&Expr::Column(c.clone()), schema))
                    .collect::<Result<Vec<_>>>()?;
                // DISTINCT is a GROUP BY of every column without aggregates.
                let arrow = Arc::new(schema.as_arrow().clone());
                let derived = Derived::find(&groups, &arrow, &props.watermarks);
                self.aggregate(child, arrow, groups, Vec::new(), derived, false)
            }
            LogicalPlan::Distinct(Distinct::On(_)) => Err(not_supported("DISTINCT ON")),
            LogicalPlan::Sort(sort) => match sort.fetch {
                Some(limit) => self.top_n(&sort.expr, &sort.input, 0, limit),
                // Rows of a view have no order: ORDER BY alone changes nothing.
                None => self.plan(&sort.input),
            },
            LogicalPlan::Limit(limit) => {
                let skip = match limit.get_skip_type()? {
                    SkipType::Literal(n) => n,
                    SkipType::UnsupportedExpr => {
                        return Err(not_supported("a non-constant OFFSET"));
                    }
                };
                let fetch = match limit.get_fetch_type()? {
                    FetchType::Literal(n) => n,
                    FetchType::UnsupportedExpr => {
                        return Err(not_supported("a non-constant LIMIT"));
                    }
                };
                let LogicalPlan::Sort(sort) = limit.input.as_ref() else {
                    return Err(not_supported("LIMIT or OFFSET without ORDER BY"));
                };
                let count = match (fetch, sort.fetch) {
                    (Some(f), _) => f,
                    (None, Some(f)) => f.saturating_sub(skip),
                    (None, None) => usize::MAX,
                };
                self.top_n(&sort.expr, &sort.input, skip, count)
            }
            LogicalPlan::Join(join) => {
                if join.null_aware {
                    return Err(not_supported("NOT IN over a subquery"));
                }
                if join.on.is_empty() {
                    return Err(not_supported("a join without an equality condition"));
                }
                let (left, left_props) = self.plan(&join.left)?;
                let (right, right_props) = self.plan(&join.right)?;
                no_model_calls(
                    join.on.iter().flat_map(|(l, r)| [l, r]).chain(&join.filter),
                    left_props.append_only && right_props.append_only,
                    "a join condition",
                )?;
                let (left_schema, right_schema) = (join.left.schema(), join.right.schema());
                // Equality keys that are columns with a watermark on both sides.
                let watermarked = |(l, r): &(Expr, Expr)| -> Option<(usize, usize)> {
                    match (l, r) {
                        (Expr::Column(l), Expr::Column(r)) => {
                            let pair = (
                                left_schema.index_of_column(l).ok()?,
                                right_schema.index_of_column(r).ok()?,
                            );
                            (left_props.watermarks.contains(&pair.0)
                                && right_props.watermarks.contains(&pair.1))
                            .then_some(pair)
                        }
                        _ => None,
                    }
                };
                // Such a key goes first: the rows the watermark has passed are then one range
                // of each side's state, deleted at once.
                let mut keys: Vec<&(Expr, Expr)> = join.on.iter().collect();
                keys.sort_by_key(|pair| watermarked(pair).is_none());
                let watermarks: Vec<(usize, usize)> =
                    keys.iter().filter_map(|pair| watermarked(pair)).collect();
                let mut on = Vec::new();
                let mut key_types = Vec::new();
                for (l, r) in keys {
                    let lt = l.get_type(left_schema)?;
                    let rt = r.get_type(right_schema)?;
                    key_types.push(common_type(&lt, &rt));
                    on.push((
                        self.compile(l, left_schema)?,
                        self.compile(r, right_schema)?,
                    ));
                }
                let pair_schema = left_schema.join(right_schema)?;
                let filter = join
                    .filter
                    .as_ref()
                    .map(|f| self.compile(f, &pair_schema))
                    .transpose()?;
                let node = self.graph.len();
                let op = JoinOp::new(
                    join.join_type,
                    Arc::new(left_schema.as_arrow().clone()),
                    Arc::new(right_schema.as_arrow().clone()),
                    on,
                    key_types,
                    join.null_equality == NullEquality::NullEqualsNull,
                    filter,
                    Arc::new(join.schema.as_arrow().clone()),
                    self.scope(node)?,
                )?
                .with_errors(self.errors.clone())
                .with_watermarks(&watermarks)
                .with_interval(join.filter.as_ref().and_then(|f| {
                    interval_of(
                        f,
                        left_schema,
                        right_schema,
                        &left_props.watermarks,
                        &right_props.watermarks,
                    )
                }));
                let node = self.graph.add(Box::new(op));
                self.graph.connect(left, node, 0);
                self.graph.connect(right, node, 1);
                let width = left_schema.fields().len();
                let semi = matches!(
                    join.join_type,
                    datafusion::common::JoinType::LeftSemi | datafusion::common::JoinType::LeftAnti
                );
                let mut out_watermarks: Vec<usize> = watermarks
                    .iter()
                    .flat_map(|&(l, r)| [Some(l), (!semi).then_some(width + r)])
                    .flatten()
                    .collect();
                out_watermarks.sort_unstable();
                out_watermarks.dedup();
                let key = match join.join_type {
                    datafusion::common::JoinType::LeftSemi
                    | datafusion::common::JoinType::LeftAnti => left_props.key.clone(),
                    _ => match (&left_props.key, &right_props.key) {
                        (Some(l), Some(r)) => Some(
                            l.iter()
                                .copied()
                                .chain(r.iter().map(|k| k + width))
                                .collect(),
                        ),
                        _ => None,
                    },
                };
                let append_only = join.join_type == datafusion::common::JoinType::Inner
                    && left_props.append_only
                    && right_props.append_only;
                Ok((
                    node,
                    Props {
                        key,
                        append_only,
                        watermarks: out_watermarks,
                    },
                ))
            }
            LogicalPlan::Union(union) => {
                let mut children = Vec::new();
                let mut append_only = true;
                let mut watermarks: Option<Vec<usize>> = None;
                for input in &union.inputs {
                    let (child, props) = self.plan(input)?;
                    append_only &= props.append_only;
                    watermarks = Some(match watermarks {
                        None => props.watermarks,
                        Some(w) => w
                            .into_iter()
                            .filter(|c| props.watermarks.contains(c))
                            .collect(),
                    });
                    children.push(child);
                }
                let watermarks = watermarks.unwrap_or_default();
                let schema = Arc::new(union.schema.as_arrow().clone());
                let node = self.graph.add(Box::new(
                    UnionOp::new(schema, children.len()).with_watermarks(&watermarks),
                ));
                for (side, child) in children.into_iter().enumerate() {
                    self.graph.connect(child, node, side);
                }
                Ok((
                    node,
                    Props {
                        key: None,
                        append_only,
                        watermarks,
                    },
                ))
            }
            LogicalPlan::Window(window) => self.window(window),
            LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => {
                Err(not_supported("a query that reads no table, view or source"))
            }
            LogicalPlan::RecursiveQuery(_) => Err(not_supported("WITH RECURSIVE")),
            LogicalPlan::Unnest(_) => Err(not_supported("UNNEST")),
            other => Err(not_supported(format!("{} in a query", other.display()))),
        }
    }

    /// Window functions. Those that SESSION adds (the bounds of each row's session) are kept
    /// by a [`SessionOp`].
    fn window(&mut self, window: &datafusion::logical_expr::Window) -> Result<(usize, Props)> {
        let input_schema = window.input.schema();
        if !window
            .window_expr
            .iter()
            .any(|e| session_bound(e, input_schema).is_some())
        {
            return self.over(window);
        }
        let mut shape = None;
        let mut bounds = Vec::new();
        for expr in &window.window_expr {
            let Some((bound, time, gap, partition)) = session_bound(expr, input_schema) else {
                return Err(not_supported(
                    "SESSION with other window functions at one level",
                ));
            };
            if shape.get_or_insert((time, gap, partition)) != &(time, gap, partition) {
                return Err(not_supported(
                    "SESSION bounds of different sessions in one query",
                ));
            }
            bounds.push(bound);
        }
        let Some((time, gap, partition)) = shape else {
            return Err(not_supported("window functions (OVER)"));
        };
        let (child, props) = self.plan(&window.input)?;
        let partition = partition
            .iter()
            .map(|e| self.compile(e, input_schema))
            .collect::<Result<Vec<_>>>()?;
        let input_arrow = Arc::new(input_schema.as_arrow().clone());
        let schema = Arc::new(window.schema.as_arrow().clone());
        let width = input_arrow.fields().len();
        let watermarked = props.watermarks.contains(&time);
        let node = self.graph.len();
        let op = SessionOp::new(
            &input_arrow,
            schema,
            partition,
            time,
            gap,
            bounds.clone(),
            self.scope(node)?,
            self.errors.clone(),
        )?
        .with_watermark(watermarked);
        let node = self.graph.add(Box::new(op));
        self.graph.connect(child, node, 0);
        // Merges retract rows with their old times: only window_end keeps a watermark.
        let watermarks = if watermarked {
            bounds
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == Bound::End)
                .map(|(i, _)| width + i)
                .collect()
        } else {
            Vec::new()
        };
        Ok((
            node,
            Props {
                key: props.key,
                append_only: false,
                watermarks,
            },
        ))
    }

    /// Window functions with one PARTITION BY and ORDER BY, kept by an [`OverOp`].
    fn over(&mut self, window: &datafusion::logical_expr::Window) -> Result<(usize, Props)> {
        use datafusion::logical_expr::{WindowFrameBound, WindowFrameUnits};
        let input_schema = window.input.schema();
        let mut shape: Option<(&[Expr], &[SortExpr])> = None;
        let mut functions = Vec::new();
        let mut frames = Vec::new();
        let mut causal = true;
        for expr in &window.window_expr {
            let Expr::WindowFunction(function) = strip_aliases(expr) else {
                return Err(not_supported(format!("{expr} as a window function")));
            };
            let params = &function.params;
            let this = (params.partition_by.as_slice(), params.order_by.as_slice());
            if *shape.get_or_insert(this) != this {
                return Err(not_supported(
                    "window functions with different PARTITION BY or ORDER BY at one level",
                ));
            }
            let aggregate = matches!(function.fun, WindowFunctionDefinition::AggregateUDF(_));
            let name = function.fun.name().to_ascii_lowercase();
            causal &= match name.as_str() {
                "row_number" | "rank" | "dense_rank" | "lag" => true,
                "first_value" | "last_value" | "nth_value" => params.window_frame.is_causal(),
                _ => aggregate && params.window_frame.is_causal(),
            };
            frames.push((aggregate, params.window_frame.clone()));
            functions.push(
                datafusion::physical_planner::create_window_expr(
                    expr,
                    &window.schema,
                    self.state.execution_props(),
                    &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default(),
                )?,
            );
        }
        let Some((partition, order)) = shape else {
            return Err(not_supported("a window without functions"));
        };
        let (child, props) = self.plan(&window.input)?;
        let partition = partition
            .iter()
            .map(|e| self.compile(e, input_schema))
            .collect::<Result<Vec<_>>>()?;
        let order_exprs = order
            .iter()
            .map(|s| {
                Ok((
                    self.compile(&s.expr, input_schema)?,
                    SortOptions {
                        descending: !s.asc,
                        nulls_first: s.nulls_first,
                    },
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        // Bounded recompute: aggregates over RANGE frames of fixed reach along one ascending
        // number or timestamp.
        let reach = match order {
            [only] if only.asc => {
                let order_type = only.expr.get_type(input_schema)?;
                frames
                    .iter()
                    .map(|(aggregate, frame)| {
                        if !aggregate || frame.units != WindowFrameUnits::Range {
                            return None;
                        }
                        let side = |bound: &WindowFrameBound, preceding: bool| match bound {
                            WindowFrameBound::CurrentRow => Some(0),
                            WindowFrameBound::Preceding(v) if preceding => {
                                bound_units(v, &order_type)
                            }
                            WindowFrameBound::Following(v) if !preceding => {
                                bound_units(v, &order_type)
                            }
                            WindowFrameBound::Preceding(v) | WindowFrameBound::Following(v) => {
                                (!v.is_null()).then_some(0)
                            }
                        };
                        Some(Reach {
                            before: side(&frame.start_bound, true)?,
                            after: side(&frame.end_bound, false)?,
                        })
                    })
                    .try_fold(
                        Reach {
                            before: 0,
                            after: 0,
                        },
                        |acc, r| {
                            let r = r?;
                            Some(Reach {
                                before: acc.before.max(r.before),
                                after: acc.after.max(r.after),
                            })
                        },
                    )
            }
            _ => None,
        };
        // The ascending ORDER BY column, when it has a watermark: rows out of reach of it are
        // deleted, and it passes on when no value depends on later rows.
        let ordered = match order.first() {
            Some(first) if first.asc => match &first.expr {
                Expr::Column(c) => input_schema
                    .index_of_column(c)
                    .ok()
                    .filter(|i| props.watermarks.contains(i)),
                _ => None,
            },
            _ => None,
        };
        let watermark = ordered.filter(|_| causal);
        let node = self.graph.len();
        if let Some(order_column) = ordered
            && let Some(slides) = self.slides(window)?
        {
            let op = SlidingOp::new(
                Arc::new(input_schema.as_arrow().clone()),
                Arc::new(window.schema.as_arrow().clone()),
                partition,
                order_column,
                slides,
                self.scope(node)?,
                self.errors.clone(),
            )?
            .with_watermark(watermark.is_some());
            let node = self.graph.add(Box::new(op));
            self.graph.connect(child, node, 0);
            return Ok((
                node,
                Props {
                    key: props.key,
                    append_only: false,
                    watermarks: watermark.into_iter().collect(),
                },
            ));
        }
        let op = OverOp::new(
            Arc::new(input_schema.as_arrow().clone()),
            Arc::new(window.schema.as_arrow().clone()),
            functions,
            partition,
            order_exprs,
            reach,
            self.scope(node)?,
            self.errors.clone(),
        )?
        .with_watermark(watermark)
        .with_cleanup(ordered);
        let node = self.graph.add(Box::new(op));
        self.graph.connect(child, node, 0);
        Ok((
            node,
            Props {
                key: props.key,
                append_only: false,
                watermarks: watermark.into_iter().collect(),
            },
        ))
    }

    /// The window's functions as sliding aggregates, when every one is `count`, `sum`, `avg`,
    /// `min` or `max` of an integer or float over `RANGE BETWEEN x PRECEDING AND CURRENT ROW`
    /// along one ascending integer or timestamp column (the caller checks that it carries a
    /// watermark): kept by a [`SlidingOp`] in memory, each appended row in O(1).
    fn slides(&self, window: &datafusion::logical_expr::Window) -> Result<Option<Vec<Slide>>> {
        use datafusion::logical_expr::{WindowFrameBound, WindowFrameUnits};
        let input_schema = window.input.schema();
        let mut slides = Vec::new();
        for expr in &window.window_expr {
            let Expr::WindowFunction(function) = strip_aliases(expr) else {
                return Ok(None);
            };
            let params = &function.params;
            if !matches!(function.fun, WindowFunctionDefinition::AggregateUDF(_))
                || params.distinct
                || params.filter.is_some()
                || params.args.len() != 1
                || params.window_frame.units != WindowFrameUnits::Range
                || params.window_frame.end_bound != WindowFrameBound::CurrentRow
            {
                return Ok(None);
            }
            let Some(kind) = SlideKind::named(&function.fun.name().to_ascii_lowercase()) else {
                return Ok(None);
            };
            let [order] = params.order_by.as_slice() else {
                return Ok(None);
            };
            let order_type = order.expr.get_type(input_schema)?;
            if !(order_type.is_integer() || matches!(order_type, DataType::Timestamp(..)))
                || order_type == DataType::UInt64
            {
                return Ok(None);
            }
            let before = match &params.window_frame.start_bound {
                WindowFrameBound::CurrentRow => 0,
                WindowFrameBound::Preceding(v) => match bound_units(v, &order_type) {
                    // The frame's own length, not rounded: a whole number of the column's units.
                    Some(x) if exact_units(v, &order_type, x) => x,
                    _ => return Ok(None),
                },
                WindowFrameBound::Following(_) => return Ok(None),
            };
            let arg = &params.args[0];
            // Arguments are evaluated again from the rows when the state is read back: a model
            // replaced in between would give other values than those emitted.
            if calls_model(arg) {
                return Ok(None);
            }
            let arg_type = arg.get_type(input_schema)?;
            let numeric = (arg_type.is_integer() && arg_type != DataType::UInt64)
                || matches!(arg_type, DataType::Float32 | DataType::Float64);
            if kind != SlideKind::Count && !numeric {
                return Ok(None);
            }
            let span = match &order_type {
                DataType::Timestamp(unit, _) => super::time::human_duration(
                    i128::from(before) * i128::from(super::time::nanos_per(unit)),
                ),
                _ => before.to_string(),
            };
            slides.push(Slide {
                kind,
                text: format!("{}({arg}) over {span}", function.fun.name()),
                arg: self.compile(arg, input_schema)?,
                before,
            });
        }
        Ok(Some(slides))
    }

    /// An aggregate over `child`, grouped by `groups`: its rows are keyed by the group columns.
    fn aggregate(
        &mut self,
        child: usize,
        schema: SchemaRef,
        groups: Vec<Arc<dyn PhysicalExpr>>,
        calls: Vec<AggCall>,
        watermarks: Vec<Derived>,
        emit_on_close: bool,
    ) -> Result<(usize, Props)> {
        let width = groups.len();
        let node = self.graph.len();
        let outputs = watermarks.iter().map(|d| d.output).collect();
        let op = AggregateOp::new(schema, groups, calls, self.scope(node)?)?
            .with_errors(self.errors.clone())
            .with_watermarks(watermarks, emit_on_close)?;
        let node = self.graph.add(Box::new(op));
        self.graph.connect(child, node, 0);
        Ok((
            node,
            Props {
                key: Some((0..width).collect()),
                append_only: emit_on_close,
                watermarks: outputs,
            },
        ))
    }

    fn top_n(
        &mut self,
        order: &[SortExpr],
        input: &LogicalPlan,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Props)> {
        let (child, props) = self.plan(input)?;
        no_model_calls(order.iter().map(|s| &s.expr), props.append_only, "ORDER BY")?;
        let order = order
            .iter()
            .map(|s| {
                Ok((
                    self.compile(&s.expr, input.schema())?,
                    SortOptions {
                        descending: !s.asc,
                        nulls_first: s.nulls_first,
                    },
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let node = self.graph.len();
        let op = TopNOp::new(
            Arc::new(input.schema().as_arrow().clone()),
            order,
            offset,
            limit,
            self.scope(node)?,
        )?
        .with_errors(self.errors.clone());
        let node = self.graph.add(Box::new(op));
        self.graph.connect(child, node, 0);
        Ok((
            node,
            Props {
                key: props.key,
                append_only: false,
                watermarks: Vec::new(),
            },
        ))
    }

    fn agg_call(
        &self,
        expr: &Expr,
        input_schema: &DFSchema,
        output_type: DataType,
        append_only: bool,
    ) -> Result<AggCall> {
        let text = expr.schema_name().to_string();
        let Expr::AggregateFunction(AggregateFunction { func, params }) = expr.clone().unalias()
        else {
            return Err(not_supported(format!("the aggregate expression {text}")));
        };
        let Some(mut kind) = AggKind::from_name(func.name()) else {
            // A scalar subquery correlated with the outer query (see
            // `catalog::single_value`).
            if func.name() == crate::catalog::single_value::SINGLE_VALUE {
                return Err(not_supported(
                    "a correlated scalar subquery that is not an aggregate".to_string(),
                ));
            }
            return Err(not_supported(format!(
                "the aggregate function {}",
                func.name()
            )));
        };
        if params.null_treatment.is_some() {
            return Err(not_supported(format!("IGNORE/RESPECT NULLS in {text}")));
        }
        if let AggKind::StringAgg { delimiter } = &mut kind {
            match params.args.get(1) {
                Some(Expr::Literal(value, _)) => {
                    *delimiter = if value.is_null() {
                        String::new()
                    } else {
                        value.to_string()
                    }
                }
                _ => {
                    return Err(not_supported(format!(
                        "{text} with a non-constant delimiter"
                    )));
                }
            }
        }
        let arg = params.args.first();
        let input_type = match arg {
            Some(arg) => arg.get_type(input_schema)?,
            None => DataType::Null,
        };
        let order_by = params
            .order_by
            .iter()
            .map(|s| {
                Ok((
                    self.compile(&s.expr, input_schema)?,
                    SortOptions {
                        descending: !s.asc,
                        nulls_first: s.nulls_first,
                    },
                    s.expr.get_type(input_schema)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        AggCall::new(
            kind,
            arg.map(|a| self.compile(a, input_schema)).transpose()?,
            params
                .filter
                .as_ref()
                .map(|f| self.compile(f, input_schema))
                .transpose()?,
            order_by,
            params.distinct,
            input_type,
            output_type,
            append_only,
            text,
        )
    }
}

/// The type both sides of a join key are compared in.
fn common_type(left: &DataType, right: &DataType) -> DataType {
    if left == right {
        return left.clone();
    }
    datafusion::logical_expr::type_coercion::binary::comparison_coercion(left, right)
        .unwrap_or_else(|| left.clone())
}

/// `expr` without the aliases around it.
fn strip_aliases(mut expr: &Expr) -> &Expr {
    while let Expr::Alias(alias) = expr {
        expr = &alias.expr;
    }
    expr
}
