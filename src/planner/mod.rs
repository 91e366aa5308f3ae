//! From a view's (or a sink's) query to its dataflow: the one place a query becomes operators.
//!
//! [`plan`] takes the logical plan of the query (parsed and bound by DataFusion, with
//! PostgreSQL's semantics fixed in by the session) and owns every step after it: DataFusion's
//! analyser (views the query reads are inlined), the rewrite of `NOW()` into the event-time
//! clock ([`temporal`]), DataFusion's optimiser, and the operator tree built node by node from
//! the optimised plan. Anything that cannot be maintained incrementally is refused with `0A000`
//! naming it. Expressions are compiled by DataFusion, so a view runs exactly the function
//! library an ad-hoc query does. Along the way it derives what the view needs to store its
//! rows: a key (columns unique in every row) where there is one, and whether the output only
//! ever grows (append-only), which lets min and max keep a single value.
//!
//! Joins are planned in [`join`], GROUP BY, DISTINCT and ORDER BY … LIMIT in [`aggregate`],
//! window functions (OVER, SESSION) in [`window`], conditions on `NOW()` in [`temporal`].
//!
//! Depends on `stream` (the operators it builds), `catalog` (which relation a scan reads, the
//! view a root writes), `source` and `table` (their DataFusion providers), `model` (which
//! expressions call a model) and `sql` (checked arithmetic).

mod aggregate;
mod join;
pub mod temporal;
mod window;

use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::TreeNode;
use datafusion::datasource::source_as_provider;
use datafusion::execution::SessionState;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{Distinct, Expr, FetchType, LogicalPlan, SkipType, SortExpr};
use datafusion::physical_expr::PhysicalExpr;

use crate::catalog::Catalog;
use crate::catalog::view::View;
use crate::model::functions::{NAMES as MODEL_FUNCTIONS, calls_model};
use crate::source::provider::SourceScan;
use crate::stream::filter::FilterOp;
use crate::stream::graph::{Graph, ScanOp};
use crate::stream::materialize::MaterializeOp;
use crate::stream::memo::MemoProjectOp;
use crate::stream::project::ProjectOp;
use crate::stream::state::StateScope;
use crate::stream::union::UnionOp;
use crate::stream::watermark::Derived;
use crate::stream::{ExprErrors, Operator, Result, StreamError};
use crate::table::provider::RelationProvider;
use aggregate::no_window_close;

/// What the planner needs to know about a relation a view reads.
#[derive(Debug, Clone)]
struct Input {
    /// The relation's id: where its changes come from.
    id: u32,
    /// Its name.
    name: String,
    /// Positions (in the relation's columns) of a key, if its rows have one.
    key: Option<Vec<usize>>,
    /// True when rows are only ever inserted (sources).
    append_only: bool,
    /// Positions of the columns that carry a watermark.
    watermarks: Vec<usize>,
}

/// A query's dataflow without its root, and what was derived about its output.
#[derive(Debug)]
pub struct Planned {
    /// The operators; the last one produces the query's rows.
    pub graph: Graph,
    /// The columns of the query.
    pub schema: SchemaRef,
    /// Positions of columns unique in every row, if there are such.
    pub key: Option<Vec<usize>>,
    /// True when the query's rows are only ever inserted.
    pub append_only: bool,
    /// Positions of the query's columns that carry a watermark.
    pub watermarks: Vec<usize>,
}

impl Planned {
    /// Puts `root` on top of the dataflow: it receives the query's rows.
    pub fn add_root(&mut self, root: Box<dyn Operator>) -> crate::Result<()> {
        let top = self
            .graph
            .len()
            .checked_sub(1)
            .ok_or_else(|| crate::Error::Internal("an empty dataflow".into()))?;
        let root = self.graph.add(root);
        self.graph.connect(top, root, 0);
        Ok(())
    }

    /// Puts materialized view `view`'s root on top: its rows are stored in the view. A declared
    /// key is checked; `creating` makes a violation in the backfill fail the view's creation.
    pub fn materialize(
        &mut self,
        view: &View,
        catalog: &Catalog,
        creating: bool,
    ) -> crate::Result<()> {
        let storage = view
            .storage()
            .ok_or_else(|| crate::Error::Internal("a materialized view without storage".into()))?;
        let mut root = MaterializeOp::new(
            storage.clone(),
            catalog.store().clone(),
            view.rows().clone(),
            catalog.state_cache().clone(),
        )?;
        if view.def().key_checked {
            root = root.checking_key(view.errors().clone(), creating);
        }
        self.add_root(Box::new(root))
    }
}

/// Plans the dataflow (without its root) of the query `plan` of view or sink `id`: analyses,
/// rewrites `NOW()` into the event-time clock, optimises, and builds the operators. Its state
/// lives in `catalog`'s store within its state cache; rows whose expressions fail are counted in
/// `errors`. With `emit_on_close` (`EMIT ON WINDOW CLOSE`), the query's outermost GROUP BY
/// emits each group once, when the watermark closes it.
pub fn plan(
    state: &SessionState,
    catalog: &Catalog,
    plan: &LogicalPlan,
    id: u32,
    errors: Arc<ExprErrors>,
    emit_on_close: bool,
) -> crate::Result<Planned> {
    // NOW() becomes the event-time clock after the analyser has inlined the views read, and
    // before the optimiser would fold it into a constant.
    let analyzed =
        state
            .analyzer()
            .execute_and_check(plan.clone(), state.config_options(), |_, _| {})?;
    let marked = temporal::mark_now(analyzed, state.config_options())?;
    let optimized = state.optimizer().optimize(marked, state, |_, _| {})?;
    let mut planner = Planner {
        state,
        catalog,
        view: id,
        graph: Graph::default(),
        errors,
        emit_on_close,
    };
    let (_, props) = planner.plan(&optimized)?;
    Ok(Planned {
        graph: planner.graph,
        schema: Arc::new(optimized.schema().as_arrow().clone()),
        key: props.key,
        append_only: props.append_only,
        watermarks: props.watermarks,
    })
}

/// Which relation a scan in a query reads.
fn resolve(scan: &datafusion::logical_expr::TableScan, catalog: &Catalog) -> Result<Input> {
    let provider = source_as_provider(&scan.source)?;
    if let Some(source) = provider.as_ref().downcast_ref::<SourceScan>() {
        return Ok(Input {
            id: source.id,
            name: source.name.clone(),
            key: None,
            append_only: true,
            watermarks: source
                .watermark
                .iter()
                .map(|w| w.watermark.column())
                .collect(),
        });
    }
    let Some(relation) = provider.as_ref().downcast_ref::<RelationProvider>() else {
        return Err(StreamError::NotSupported(format!(
            "reading {} (a system table)",
            scan.table_name
        )));
    };
    let (table, _) = relation.parts();
    let def = table.def();
    let key = def.unique_key().map(<[usize]>::to_vec);
    let watermarks = match table.watermark() {
        Some(w) => vec![w.column()],
        // A materialized view's columns that carry a watermark.
        None => catalog
            .view(&def.name)
            .filter(|v| v.def().id == def.id)
            .map(|v| v.def().watermarks.clone())
            .unwrap_or_default(),
    };
    Ok(Input {
        id: def.id,
        name: def.name.clone(),
        key,
        append_only: def.append_only,
        watermarks,
    })
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
    catalog: &'a Catalog,
    view: u32,
    graph: Graph,
    errors: Arc<ExprErrors>,
    /// `EMIT ON WINDOW CLOSE` was asked for and its aggregate not planned yet.
    emit_on_close: bool,
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

/// `expr` without the aliases around it.
fn strip_aliases(mut expr: &Expr) -> &Expr {
    while let Expr::Alias(alias) = expr {
        expr = &alias.expr;
    }
    expr
}

impl Planner<'_> {
    fn scope(&self, node: usize) -> Result<StateScope> {
        let op = u16::try_from(node).map_err(|_| not_supported("a query with 65536 operators"))?;
        Ok(StateScope::new(self.catalog.store().clone(), self.view, op)
            .with_budget(self.catalog.state_cache().clone()))
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
        Ok(crate::sql::checked::checked_expr(compiled, schema.inner())?)
    }

    /// An ORDER BY expression compiled over `schema`, with its direction and NULLs' place.
    fn sort_key(
        &self,
        sort: &SortExpr,
        schema: &DFSchema,
    ) -> Result<(Arc<dyn PhysicalExpr>, SortOptions)> {
        Ok((
            self.compile(&sort.expr, schema)?,
            SortOptions {
                descending: !sort.asc,
                nulls_first: sort.nulls_first,
            },
        ))
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
                let input = resolve(scan, self.catalog)?;
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
            LogicalPlan::Aggregate(aggregate) => self.group_by(aggregate),
            LogicalPlan::Distinct(Distinct::All(input)) => self.distinct(input),
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
            LogicalPlan::Join(join) => self.join(join),
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
}
