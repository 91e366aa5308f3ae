//! Correlated subqueries that DataFusion's optimizer cannot turn into joins, run as PostgreSQL
//! runs them: once per distinct set of outer values.
//!
//! DataFusion decorrelates the common shapes (`EXISTS`/`IN` in a `WHERE` conjunction, scalar
//! subqueries over an aggregate, simple `LATERAL` joins) into joins; what it leaves — a
//! `LATERAL` subquery with a `UNION ALL` or a `LIMIT`, a scalar subquery in the select list
//! that returns a row rather than an aggregate, `EXISTS` under `OR` — would otherwise fail at
//! physical planning. [`CorrelatedApply`] runs after DataFusion's decorrelation rules and
//! turns each such subquery into an [`Apply`] node: for every input row, the subquery with the
//! row's outer values bound as constants. [`ApplyExec`] plans and runs the bound subquery once per distinct
//! set of outer values and reuses the answer for every row that has them.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array, new_null_array};
use datafusion::arrow::compute::{cast, concat_batches, interleave, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DFSchemaRef, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::functions_aggregate::expr_fn::{bool_or, count};
use datafusion::logical_expr::expr::{Exists, InSubquery, SetComparison, SetQuantifier};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, Extension, Filter, LogicalPlan, LogicalPlanBuilder, Operator, Projection, Subquery,
    UserDefinedLogicalNode, UserDefinedLogicalNodeCore, binary_expr, lit, when,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties,
    collect,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::{StreamExt, TryStreamExt};

/// What an [`Apply`] adds to each input row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
enum Kind {
    /// `LATERAL`: the row joined to every row its subquery returns; with `outer`, a row whose
    /// subquery returns nothing is kept, NULL-extended (`LEFT JOIN LATERAL`).
    Join {
        subquery: Arc<LogicalPlan>,
        outer: bool,
    },
    /// Scalar subqueries, each adding one column: its value, NULL when it returns no row, an
    /// error when it returns more than one.
    Scalar { subqueries: Vec<Arc<LogicalPlan>> },
}

/// Each input row with what its correlated subqueries return (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Apply {
    input: Arc<LogicalPlan>,
    kind: Kind,
    /// The input's columns the subqueries read: the outer values bound per row.
    keys: Vec<Column>,
    schema: DFSchemaRef,
}

impl PartialOrd for Apply {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        match self.input.partial_cmp(&other.input) {
            Some(std::cmp::Ordering::Equal) => self.kind.partial_cmp(&other.kind),
            order => order,
        }
    }
}

impl UserDefinedLogicalNodeCore for Apply {
    fn name(&self) -> &str {
        "Apply"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![self.input.as_ref()]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    /// Filters above may move below only where they read the input's own columns.
    fn prevent_predicate_push_down_columns(&self) -> HashSet<String> {
        let input = self.input.schema();
        self.schema
            .iter()
            .skip(input.fields().len())
            .map(|(_, field)| field.name().clone())
            .collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self.keys.iter().map(|c| c.flat_name()).collect();
        match &self.kind {
            Kind::Join { outer, .. } => write!(
                f,
                "Apply: {} lateral subquery per ({})",
                if *outer { "left" } else { "inner" },
                keys.join(", ")
            ),
            Kind::Scalar { subqueries } => write!(
                f,
                "Apply: {} scalar subquer{} per ({})",
                subqueries.len(),
                if subqueries.len() == 1 { "y" } else { "ies" },
                keys.join(", ")
            ),
        }
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        let input = inputs
            .pop()
            .ok_or_else(|| DataFusionError::Internal("Apply takes one input".into()))?;
        Apply::new(Arc::new(input), self.kind.clone(), self.keys.clone())
    }
}

impl Apply {
    fn new(input: Arc<LogicalPlan>, kind: Kind, keys: Vec<Column>) -> Result<Self> {
        let schema = match &kind {
            Kind::Join { subquery, outer } => {
                let right = subquery.schema().as_ref().clone();
                let right = if *outer {
                    let fields = right
                        .iter()
                        .map(|(q, f)| {
                            (q.cloned(), Arc::new(f.as_ref().clone().with_nullable(true)))
                        })
                        .collect();
                    DFSchema::new_with_metadata(fields, right.metadata().clone())?
                } else {
                    right
                };
                input.schema().join(&right)?
            }
            Kind::Scalar { subqueries } => {
                let fields = subqueries
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let field = s.schema().field(0).as_ref().clone();
                        (
                            None,
                            Arc::new(field.with_name(scalar_column(i)).with_nullable(true)),
                        )
                    })
                    .collect();
                input
                    .schema()
                    .join(&DFSchema::new_with_metadata(fields, Default::default())?)?
            }
        };
        Ok(Self {
            input,
            kind,
            keys,
            schema: Arc::new(schema),
        })
    }

    fn subqueries(&self) -> Vec<&Arc<LogicalPlan>> {
        match &self.kind {
            Kind::Join { subquery, .. } => vec![subquery],
            Kind::Scalar { subqueries } => subqueries.iter().collect(),
        }
    }

    fn with_subqueries(
        &self,
        input: Arc<LogicalPlan>,
        mut bound: Vec<LogicalPlan>,
    ) -> Result<Self> {
        let kind = match &self.kind {
            Kind::Join { outer, .. } => Kind::Join {
                subquery: Arc::new(bound.remove(0)),
                outer: *outer,
            },
            Kind::Scalar { .. } => Kind::Scalar {
                subqueries: bound.into_iter().map(Arc::new).collect(),
            },
        };
        Apply::new(input, kind, self.keys.clone())
    }
}

/// The name of the column the `i`th scalar subquery of an [`Apply`] adds.
fn scalar_column(i: usize) -> String {
    format!("__augur_subquery_{i}")
}

/// DataFusion's optimizer rules with Augur's: [`LateralApply`] first, before projections are
/// pruned of the columns a `LATERAL` subquery reads, and [`CorrelatedApply`] right after
/// DataFusion's own decorrelation rules. Later rules do not know outer references: filter
/// push-down moves a filter below a `SubqueryAlias` and renames its columns but not the outer
/// references inside its subquery, and projection pruning drops the columns those read.
pub(crate) fn optimizer_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let mut rules = datafusion::optimizer::Optimizer::new().rules;
    rules.insert(0, Arc::new(LateralApply));
    let after = rules
        .iter()
        .position(|r| r.name() == "decorrelate_lateral_join")
        .map_or(rules.len(), |i| i + 1);
    rules.insert(after, Arc::new(CorrelatedApply));
    rules
}

/// `JOIN LATERAL` that DataFusion's own rule cannot decorrelate becomes an [`Apply`]. It runs
/// before the other rules: DataFusion prunes the outer columns a lateral subquery reads from
/// the join's left side as if nothing read them.
#[derive(Debug, Default)]
pub(crate) struct LateralApply;

impl OptimizerRule for LateralApply {
    fn name(&self) -> &str {
        "augur_lateral_apply"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Join(mut join) = plan else {
            return Ok(Transformed::no(plan));
        };
        if !keys_in(&join.right, join.left.schema()).is_empty() {
            join.right = Arc::new(values_as_projections(join.right.as_ref().clone())?);
        }
        let decorrelated =
            datafusion::optimizer::decorrelate_lateral_join::DecorrelateLateralJoin::new()
                .rewrite(LogicalPlan::Join(join.clone()), config);
        match decorrelated {
            Ok(t) if t.transformed => Ok(t),
            _ => lateral_join(join),
        }
    }
}

/// `VALUES` rows that read outer columns as one-row projections: DataFusion computes `VALUES`
/// as it plans them, and decorrelates a projection.
fn values_as_projections(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up(|node| match node {
        LogicalPlan::Values(values)
            if !outer_columns(&LogicalPlan::Values(values.clone())).is_empty() =>
        {
            let mut rows = values.values.iter().map(|row| {
                let exprs: Vec<Expr> = row
                    .iter()
                    .zip(values.schema.fields())
                    .map(|(e, f)| e.clone().alias(f.name()))
                    .collect();
                LogicalPlanBuilder::empty(true).project(exprs)?.build()
            });
            let mut plan = match rows.next() {
                Some(first) => LogicalPlanBuilder::from(first?),
                None => return Ok(Transformed::no(LogicalPlan::Values(values))),
            };
            for row in rows {
                plan = plan.union(row?)?;
            }
            Ok(Transformed::yes(plan.build()?))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// The optimizer rule that turns correlated subqueries DataFusion left in place into [`Apply`]
/// nodes. It runs after DataFusion's decorrelation rules, so whatever they decorrelate stays a
/// join.
#[derive(Debug, Default)]
pub(crate) struct CorrelatedApply;

impl OptimizerRule for CorrelatedApply {
    fn name(&self) -> &str {
        "augur_correlated_apply"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        match plan {
            LogicalPlan::Filter(filter) => {
                let input = filter.input.clone();
                let (mut exprs, subqueries) =
                    take_correlated(vec![filter.predicate.clone()], &input)?;
                if subqueries.is_empty() {
                    return Ok(Transformed::no(LogicalPlan::Filter(filter)));
                }
                let apply = scalar_apply(input.clone(), subqueries)?;
                let kept = Filter::try_new(exprs.remove(0), Arc::new(apply))?;
                let columns = input
                    .schema()
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .collect();
                Ok(Transformed::yes(LogicalPlan::Projection(
                    Projection::try_new_with_schema(
                        columns,
                        Arc::new(LogicalPlan::Filter(kept)),
                        input.schema().clone(),
                    )?,
                )))
            }
            LogicalPlan::Projection(projection) => {
                let input = projection.input.clone();
                let (exprs, subqueries) = take_correlated(projection.expr.clone(), &input)?;
                if subqueries.is_empty() {
                    return Ok(Transformed::no(LogicalPlan::Projection(projection)));
                }
                let apply = scalar_apply(input, subqueries)?;
                Ok(Transformed::yes(LogicalPlan::Projection(
                    Projection::try_new_with_schema(
                        exprs,
                        Arc::new(apply),
                        projection.schema.clone(),
                    )?,
                )))
            }
            other => Ok(Transformed::no(other)),
        }
    }
}

/// Every outer column referenced anywhere in `plan`, nested subqueries included.
fn outer_columns(plan: &LogicalPlan) -> Vec<Column> {
    let mut found: Vec<Column> = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        let mut visit = |e: &Expr| {
            e.apply(|e| {
                if let Expr::OuterReferenceColumn(_, c) = e
                    && !found.contains(c)
                {
                    found.push(c.clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        };
        node.apply_expressions(&mut visit)?;
        if let LogicalPlan::Extension(ext) = node
            && let Some(apply) = ext.node.as_any().downcast_ref::<Apply>()
        {
            for subquery in apply.subqueries() {
                for c in outer_columns(subquery) {
                    if !found.contains(&c) {
                        found.push(c);
                    }
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Whether `plan` aggregates only outer values, as in `(SELECT max(outer.x) FROM inner)`: in
/// PostgreSQL such an aggregate belongs to the outer query, which is not what running the
/// subquery per outer row computes. Left as it is, the subquery is refused.
fn outer_aggregate(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Aggregate(aggregate) = node {
            found |= aggregate.aggr_expr.iter().any(|e| {
                // The scalar-subquery wrapper is Augur's, not the user's aggregate: a
                // subquery it wraps belongs where it is written.
                let wrapper = matches!(e, Expr::AggregateFunction(f)
                    if f.func.name() == crate::catalog::single_value::SINGLE_VALUE);
                let mut outer = false;
                let mut local = false;
                let _ = e.apply(|e| {
                    match e {
                        Expr::OuterReferenceColumn(..) => outer = true,
                        Expr::Column(_) => local = true,
                        Expr::ScalarSubquery(Subquery { subquery, .. })
                        | Expr::Exists(Exists {
                            subquery: Subquery { subquery, .. },
                            ..
                        })
                        | Expr::InSubquery(InSubquery {
                            subquery: Subquery { subquery, .. },
                            ..
                        }) if !wrapper => {
                            // A subquery in the argument reads the aggregate's input or
                            // a level further out.
                            for c in outer_columns(subquery) {
                                if aggregate.input.schema().has_column(&c) {
                                    local = true;
                                } else {
                                    outer = true;
                                }
                            }
                        }
                        _ => {}
                    }
                    Ok(TreeNodeRecursion::Continue)
                });
                outer && !local
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// A subquery expression still in `plan` after optimization: one no rule could run.
fn left_subquery(plan: &LogicalPlan) -> Option<Arc<LogicalPlan>> {
    let mut found = None;
    let _ = plan.apply(|node| {
        let _ = node.apply_expressions(|e| {
            e.apply(|e| {
                match e {
                    Expr::ScalarSubquery(Subquery { subquery, .. })
                    | Expr::Exists(Exists {
                        subquery: Subquery { subquery, .. },
                        ..
                    })
                    | Expr::InSubquery(InSubquery {
                        subquery: Subquery { subquery, .. },
                        ..
                    })
                    | Expr::SetComparison(SetComparison {
                        subquery: Subquery { subquery, .. },
                        ..
                    }) => found = Some(subquery.clone()),
                    _ => return Ok(TreeNodeRecursion::Continue),
                }
                Ok(TreeNodeRecursion::Stop)
            })
        });
        Ok(if found.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// The outer columns of `plan` that `schema` provides.
fn keys_in(plan: &LogicalPlan, schema: &DFSchema) -> Vec<Column> {
    outer_columns(plan)
        .into_iter()
        .filter(|c| schema.has_column(c))
        .collect()
}

/// The plan without `Subquery` wrappers on its input path (they mark correlation; the bound
/// plan is an ordinary query).
fn unwrap_subqueries(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up(|node| match node {
        LogicalPlan::Subquery(sq) => Ok(Transformed::yes(sq.subquery.as_ref().clone())),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// `left JOIN LATERAL (...)` that DataFusion could not decorrelate.
fn lateral_join(join: datafusion::logical_expr::Join) -> Result<Transformed<LogicalPlan>> {
    use datafusion::logical_expr::JoinType;
    let outer = match join.join_type {
        JoinType::Inner => false,
        JoinType::Left => true,
        _ => return Ok(Transformed::no(LogicalPlan::Join(join))),
    };
    let left_schema = join.left.schema().clone();
    if keys_in(&join.right, &left_schema).is_empty() || outer_aggregate(&join.right) {
        return Ok(Transformed::no(LogicalPlan::Join(join)));
    }
    let right = unwrap_subqueries(join.right.as_ref().clone())?;
    // The join condition, evaluated per left row inside the subquery.
    let mut predicates: Vec<Expr> = join
        .on
        .iter()
        .map(|(l, r)| l.clone().eq(r.clone()))
        .collect();
    predicates.extend(join.filter.clone());
    let subquery = match datafusion::logical_expr::utils::conjunction(predicates) {
        Some(predicate) => {
            let predicate = outer_references(predicate, &left_schema, right.schema())?;
            LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(right))?)
        }
        None => right,
    };
    let keys = keys_in(&subquery, &left_schema);
    let apply = Apply::new(
        join.left.clone(),
        Kind::Join {
            subquery: Arc::new(subquery),
            outer,
        },
        keys,
    )?;
    if apply.schema.fields().len() != join.schema.fields().len() {
        return Err(DataFusionError::Internal(
            "lateral subquery changed its columns".into(),
        ));
    }
    Ok(Transformed::yes(LogicalPlan::Projection(
        Projection::try_new_with_schema(
            apply
                .schema
                .columns()
                .into_iter()
                .map(Expr::Column)
                .collect(),
            Arc::new(LogicalPlan::Extension(Extension {
                node: Arc::new(apply),
            })),
            join.schema.clone(),
        )?,
    )))
}

/// `expr` with the columns of `outer` (and not of `inner`) as outer references.
fn outer_references(expr: Expr, outer: &DFSchema, inner: &DFSchema) -> Result<Expr> {
    expr.transform_up(|e| match e {
        Expr::Column(c) if outer.has_column(&c) && !inner.has_column(&c) => {
            let (_, field) = outer.qualified_field_from_column(&c)?;
            Ok(Transformed::yes(Expr::OuterReferenceColumn(
                Arc::new(field.as_ref().clone()),
                c,
            )))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// A subquery expression in `exprs` correlated with `input`, replaced by the column an
/// [`Apply`] adds for it; returns the rewritten expressions and, per such subquery, a plan that
/// returns its one value.
fn take_correlated(exprs: Vec<Expr>, input: &LogicalPlan) -> Result<(Vec<Expr>, Vec<LogicalPlan>)> {
    let schema = input.schema().clone();
    let mut subqueries: Vec<LogicalPlan> = Vec::new();
    let correlated = |sq: &Subquery| {
        !keys_in(&sq.subquery, &schema).is_empty() && !outer_aggregate(&sq.subquery)
    };
    let mut rewritten = Vec::with_capacity(exprs.len());
    for expr in exprs {
        let name = expr.name_for_alias()?;
        let out = expr.transform_down(|e| {
            let plan = match &e {
                Expr::ScalarSubquery(sq) if correlated(sq) => {
                    Some(unwrap_subqueries(sq.subquery.as_ref().clone())?)
                }
                Expr::Exists(Exists { subquery, negated }) if correlated(subquery) => {
                    Some(exists_plan(subquery, *negated)?)
                }
                Expr::InSubquery(InSubquery {
                    expr,
                    subquery,
                    negated,
                }) if correlated(subquery) => Some(any_all_plan(
                    expr,
                    Operator::Eq,
                    false,
                    *negated,
                    subquery,
                    &schema,
                )?),
                Expr::SetComparison(SetComparison {
                    expr,
                    subquery,
                    op,
                    quantifier,
                }) if correlated(subquery) => Some(any_all_plan(
                    expr,
                    *op,
                    matches!(quantifier, SetQuantifier::All),
                    false,
                    subquery,
                    &schema,
                )?),
                _ => None,
            };
            match plan {
                Some(plan) => {
                    let column =
                        Expr::Column(Column::new_unqualified(scalar_column(subqueries.len())));
                    subqueries.push(plan);
                    Ok(Transformed::new(column, true, TreeNodeRecursion::Jump))
                }
                None => Ok(Transformed::no(e)),
            }
        })?;
        rewritten.push(if out.transformed {
            out.data.alias_if_changed(name)?
        } else {
            out.data
        });
    }
    Ok((rewritten, subqueries))
}

/// `EXISTS (subquery)` as a plan returning one boolean.
fn exists_plan(subquery: &Subquery, negated: bool) -> Result<LogicalPlan> {
    let found = Expr::Column(Column::new_unqualified("n")).gt(lit(0i64));
    LogicalPlanBuilder::from(unwrap_subqueries(subquery.subquery.as_ref().clone())?)
        .limit(0, Some(1))?
        .aggregate(Vec::<Expr>::new(), vec![count(lit(1)).alias("n")])?
        .project(vec![
            if negated {
                Expr::Not(Box::new(found))
            } else {
                found
            }
            .alias("exists"),
        ])?
        .build()
}

/// `expr op ANY (subquery)` (`IN` is `= ANY`) or `expr op ALL (subquery)` as a plan returning
/// one boolean, with SQL's three-valued answer: true or false where the comparisons decide it,
/// NULL where only the NULL comparisons could.
fn any_all_plan(
    expr: &Expr,
    op: Operator,
    all: bool,
    negated: bool,
    subquery: &Subquery,
    outer: &DFSchema,
) -> Result<LogicalPlan> {
    let plan = unwrap_subqueries(subquery.subquery.as_ref().clone())?;
    let value = Expr::Column(Column::from(plan.schema().qualified_field(0)));
    let left = outer_references(expr.clone(), outer, plan.schema())?;
    let compared = binary_expr(left, op, value);
    let c = |name: &str| Expr::Column(Column::new_unqualified(name));
    let null = lit(ScalarValue::Boolean(None));
    let decided = if all {
        when(c("f"), lit(false))
            .when(c("n").gt(c("m")), null)
            .otherwise(lit(true))?
    } else {
        when(c("t"), lit(true))
            .when(c("n").gt(c("m")), null)
            .otherwise(lit(false))?
    };
    let decided = if negated {
        Expr::Not(Box::new(decided))
    } else {
        decided
    };
    LogicalPlanBuilder::from(plan)
        .aggregate(
            Vec::<Expr>::new(),
            vec![
                count(lit(1)).alias("n"),
                count(compared.clone()).alias("m"),
                bool_or(compared.clone()).alias("t"),
                bool_or(Expr::Not(Box::new(compared))).alias("f"),
            ],
        )?
        .project(vec![decided.alias("answer")])?
        .build()
}

fn scalar_apply(input: Arc<LogicalPlan>, subqueries: Vec<LogicalPlan>) -> Result<LogicalPlan> {
    let mut keys: Vec<Column> = Vec::new();
    for subquery in &subqueries {
        for c in keys_in(subquery, input.schema()) {
            if !keys.contains(&c) {
                keys.push(c);
            }
        }
    }
    let apply = Apply::new(
        input,
        Kind::Scalar {
            subqueries: subqueries.into_iter().map(Arc::new).collect(),
        },
        keys,
    )?;
    Ok(LogicalPlan::Extension(Extension {
        node: Arc::new(apply),
    }))
}

/// `plan` with each expression `replace` gives a replacement for replaced, in nested subqueries
/// and [`Apply`] nodes too.
fn bind(plan: &LogicalPlan, replace: &dyn Fn(&Expr) -> Option<Expr>) -> Result<LogicalPlan> {
    plan.clone()
        .transform_up_with_subqueries(|node| {
            let node = match node {
                LogicalPlan::Extension(ext) => match ext.node.as_any().downcast_ref::<Apply>() {
                    Some(apply) => {
                        let input = Arc::new(ext.node.inputs()[0].clone());
                        let bound = apply
                            .subqueries()
                            .into_iter()
                            .map(|s| bind(s, replace))
                            .collect::<Result<Vec<_>>>()?;
                        LogicalPlan::Extension(Extension {
                            node: Arc::new(apply.with_subqueries(input, bound)?),
                        })
                    }
                    None => LogicalPlan::Extension(ext),
                },
                other => other,
            };
            let node = node.map_expressions(|e| {
                e.transform_up(|e| match replace(&e) {
                    Some(replacement) => Ok(Transformed::yes(replacement)),
                    None => Ok(Transformed::no(e)),
                })
            })?;
            // A subquery's outer references are what is left of them.
            node.map_data(|node| match node {
                LogicalPlan::Subquery(sq) => Ok(LogicalPlan::Subquery(Subquery {
                    outer_ref_columns: sq.subquery.all_out_ref_exprs(),
                    subquery: sq.subquery,
                    spans: sq.spans,
                })),
                other => Ok(other),
            })
        })
        .map(|t| t.data)
}

/// An outer value while a prepared subquery runs: the `index`th of the values in `slot`.
#[derive(Debug)]
struct OuterValue {
    slot: Arc<std::sync::Mutex<Vec<ScalarValue>>>,
    index: usize,
    field: datafusion::arrow::datatypes::FieldRef,
    signature: datafusion::logical_expr::Signature,
}

impl PartialEq for OuterValue {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.slot, &other.slot) && self.index == other.index
    }
}

impl Eq for OuterValue {}

impl std::hash::Hash for OuterValue {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.slot) as usize).hash(state);
        self.index.hash(state);
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for OuterValue {
    fn name(&self) -> &str {
        "augur_outer_value"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(
        &self,
        _: &[datafusion::arrow::datatypes::DataType],
    ) -> Result<datafusion::arrow::datatypes::DataType> {
        Ok(self.field.data_type().clone())
    }

    fn invoke_with_args(
        &self,
        _: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> Result<datafusion::logical_expr::ColumnarValue> {
        let values = self.slot.lock().expect("outer values");
        let value = values.get(self.index).cloned().ok_or_else(|| {
            DataFusionError::Internal("an outer value read before it was set".into())
        })?;
        Ok(datafusion::logical_expr::ColumnarValue::Scalar(value))
    }
}

/// Plans [`Apply`] nodes as [`ApplyExec`]; everything else as DataFusion plans it.
#[derive(Debug, Default)]
pub(crate) struct AugurQueryPlanner;

#[async_trait::async_trait]
impl QueryPlanner for AugurQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(ApplyPlanner)])
            .create_physical_plan(logical_plan, session_state)
            .await
            .map_err(|e| match left_subquery(logical_plan) {
                Some(subquery) if outer_aggregate(&subquery) => DataFusionError::NotImplemented(
                    "an aggregate of only outer-query columns inside a subquery (PostgreSQL \
                     computes it in the outer query); aggregate in the outer query instead"
                        .into(),
                ),
                Some(_) => DataFusionError::NotImplemented(format!(
                    "this form of correlated subquery: {e}"
                )),
                None => e,
            })
    }
}

struct ApplyPlanner;

#[async_trait::async_trait]
impl ExtensionPlanner for ApplyPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(apply) = node.as_any().downcast_ref::<Apply>() else {
            return Ok(None);
        };
        let Some(state) = session.as_any().downcast_ref::<SessionState>() else {
            return Err(DataFusionError::Internal(
                "correlated subqueries run in a session".into(),
            ));
        };
        let input_schema = apply.input.schema();
        let keys = apply
            .keys
            .iter()
            .map(|c| Ok((input_schema.index_of_column(c)?, c.clone())))
            .collect::<Result<Vec<_>>>()?;
        let schema: SchemaRef = Arc::new(apply.schema.as_arrow().clone());
        let properties = PlanProperties::new(
            datafusion::physical_expr::EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Some(Arc::new(ApplyExec {
            input: physical_inputs[0].clone(),
            work: Arc::new(Work {
                kind: apply.kind.clone(),
                keys,
                state: state.clone(),
                schema,
                input_width: input_schema.fields().len(),
            }),
            properties: Arc::new(properties),
        })))
    }
}

/// What an [`ApplyExec`] does per batch, shared with its stream.
#[derive(Debug)]
struct Work {
    kind: Kind,
    /// Index in the input and name of each outer column.
    keys: Vec<(usize, Column)>,
    state: SessionState,
    schema: SchemaRef,
    input_width: usize,
}

/// Runs an [`Apply`]: the subqueries per distinct set of outer values, remembered for the rows
/// that repeat them.
#[derive(Debug)]
pub(crate) struct ApplyExec {
    input: Arc<dyn ExecutionPlan>,
    work: Arc<Work>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for ApplyExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self.work.keys.iter().map(|(_, c)| c.flat_name()).collect();
        write!(f, "ApplyExec: per ({})", keys.join(", "))
    }
}

impl ExecutionPlan for ApplyExec {
    fn name(&self) -> &str {
        "ApplyExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("ApplyExec takes one input".into()))?;
        Ok(Arc::new(ApplyExec {
            input,
            work: self.work.clone(),
            properties: self.properties.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        ctx: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, ctx.clone())?;
        let work = self.work.clone();
        let converter = RowConverter::new(
            self.work
                .keys
                .iter()
                .map(|(i, _)| SortField::new(self.input.schema().field(*i).data_type().clone()))
                .collect(),
        )?;
        let memo = Arc::new(tokio::sync::Mutex::new(Memo {
            converter,
            sides: HashMap::new(),
            plans: None,
            slot: Arc::default(),
        }));
        let schema = work.schema.clone();
        let stream = input.and_then(move |batch| {
            let (work, memo, ctx) = (work.clone(), memo.clone(), ctx.clone());
            async move {
                let mut memo = memo.lock().await;
                work.process(&batch, &mut memo, &ctx).await
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.boxed(),
        )))
    }
}

/// What each set of outer values gave, by the values in Arrow's row format: the subquery's rows
/// (a join) or one row of one value per subquery.
struct Memo {
    /// Encodes the outer values of a row.
    converter: RowConverter,
    sides: HashMap<OwnedRow, RecordBatch>,
    /// The subqueries, planned once.
    plans: Option<Vec<Prepared>>,
    /// The outer values the plans read while they run.
    slot: Arc<std::sync::Mutex<Vec<ScalarValue>>>,
}

/// One subquery, planned.
enum Prepared {
    /// Planned with calls that read the outer values from the memo's slot: it runs again for
    /// each set of values.
    Reused(Arc<dyn ExecutionPlan>),
    /// A plan that cannot run twice (a recursive query): planned per set of values, with the
    /// values bound as constants.
    PerValues(LogicalPlan),
}

impl Work {
    /// The `i`th subquery for the outer values `key`.
    async fn run(
        &self,
        memo: &mut Memo,
        i: usize,
        key: &[ScalarValue],
        ctx: &Arc<TaskContext>,
    ) -> Result<Vec<RecordBatch>> {
        if memo.plans.is_none() {
            memo.plans = Some(self.prepare(&memo.slot, ctx).await?);
        }
        match &memo.plans.as_ref().expect("prepared above")[i] {
            Prepared::Reused(plan) => {
                *memo.slot.lock().expect("outer values") = key.to_vec();
                let plan =
                    datafusion::physical_plan::execution_plan::reset_plan_states(plan.clone())?;
                collect(plan, ctx.clone()).await
            }
            Prepared::PerValues(plan) => {
                let bound = bind(plan, &|e| match e {
                    Expr::OuterReferenceColumn(_, c) => self
                        .keys
                        .iter()
                        .position(|(_, k)| k == c)
                        .map(|k| lit(key[k].clone())),
                    _ => None,
                })?;
                let physical = self.state.create_physical_plan(&bound).await?;
                collect(physical, ctx.clone()).await
            }
        }
    }

    /// Plans each subquery once, its table scans read into memory and its outer values read
    /// from `slot`.
    async fn prepare(
        &self,
        slot: &Arc<std::sync::Mutex<Vec<ScalarValue>>>,
        ctx: &Arc<TaskContext>,
    ) -> Result<Vec<Prepared>> {
        let plans = match &self.kind {
            Kind::Join { subquery, .. } => vec![subquery.clone()],
            Kind::Scalar { subqueries } => subqueries.clone(),
        };
        // One partition and no filters shared between operators: a plan that runs again must
        // start from nothing each time.
        let mut state = self.state.clone();
        let options = state.config_mut().options_mut();
        options.execution.target_partitions = 1;
        options.optimizer.enable_dynamic_filter_pushdown = false;
        options.optimizer.enable_topk_dynamic_filter_pushdown = false;
        options.optimizer.enable_join_dynamic_filter_pushdown = false;
        options.optimizer.enable_aggregate_dynamic_filter_pushdown = false;
        let mut prepared = Vec::with_capacity(plans.len());
        for plan in plans {
            let plan = self.scans_in_memory(plan.as_ref().clone(), ctx).await?;
            let reading = bind(&plan, &|e| match e {
                Expr::OuterReferenceColumn(field, c) => {
                    self.keys.iter().position(|(_, k)| k == c).map(|k| {
                        datafusion::logical_expr::ScalarUDF::new_from_impl(OuterValue {
                            slot: slot.clone(),
                            index: k,
                            field: field.clone(),
                            signature: datafusion::logical_expr::Signature::nullary(
                                datafusion::logical_expr::Volatility::Volatile,
                            ),
                        })
                        .call(vec![])
                    })
                }
                _ => None,
            })?;
            // VALUES are computed as they are planned.
            let mut once = false;
            plan.apply_with_subqueries(|node| {
                once |= matches!(node, LogicalPlan::Values(_)) && !outer_columns(node).is_empty();
                Ok(TreeNodeRecursion::Continue)
            })?;
            if once {
                prepared.push(Prepared::PerValues(plan));
                continue;
            }
            let physical = state.create_physical_plan(&reading).await?;
            datafusion::common::tree_node::TreeNode::apply(&physical, |p| {
                once |= p.name() == "RecursiveQueryExec";
                Ok(TreeNodeRecursion::Continue)
            })?;
            prepared.push(if once {
                Prepared::PerValues(plan)
            } else {
                Prepared::Reused(physical)
            });
        }
        Ok(prepared)
    }

    /// `plan` with each table scan replaced by the rows it reads, read now: every set of outer
    /// values scans the same tables, and reads them once.
    async fn scans_in_memory(
        &self,
        plan: LogicalPlan,
        ctx: &Arc<TaskContext>,
    ) -> Result<LogicalPlan> {
        let mut scans = Vec::new();
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && !scans.contains(scan)
                && outer_columns(node).is_empty()
            {
                scans.push(scan.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let mut read = Vec::with_capacity(scans.len());
        for scan in &scans {
            let physical = self
                .state
                .create_physical_plan(&LogicalPlan::TableScan(scan.clone()))
                .await?;
            let schema: SchemaRef = Arc::new(scan.projected_schema.as_arrow().clone());
            let batches = collect(physical, ctx.clone())
                .await?
                .iter()
                .map(|b| conform(b, &schema))
                .collect::<Result<Vec<_>>>()?;
            let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])?;
            read.push(LogicalPlan::TableScan(
                datafusion::logical_expr::TableScanBuilder::new(
                    scan.table_name.clone(),
                    datafusion::datasource::provider_as_source(Arc::new(table)),
                )
                .build()?,
            ));
        }
        plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::TableScan(scan) => match scans.iter().position(|s| *s == scan) {
                Some(i) => Ok(Transformed::yes(read[i].clone())),
                None => Ok(Transformed::no(LogicalPlan::TableScan(scan))),
            },
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }

    /// What the subqueries give for the outer values `key`: the subquery's rows (a join), or
    /// one row of each scalar subquery's value.
    async fn side(
        &self,
        memo: &mut Memo,
        key: &[ScalarValue],
        right: &SchemaRef,
        ctx: &Arc<TaskContext>,
    ) -> Result<RecordBatch> {
        match &self.kind {
            Kind::Join { .. } => {
                let batches = self
                    .run(memo, 0, key, ctx)
                    .await?
                    .iter()
                    .map(|b| conform(b, right))
                    .collect::<Result<Vec<_>>>()?;
                Ok(concat_batches(right, &batches)?)
            }
            Kind::Scalar { subqueries } => {
                let mut values = Vec::with_capacity(subqueries.len());
                for (i, field) in right.fields().iter().enumerate() {
                    let batches = self.run(memo, i, key, ctx).await?;
                    let count: usize = batches.iter().map(|b| b.num_rows()).sum();
                    if count > 1 {
                        return Err(DataFusionError::External(Box::new(
                            crate::error::Error::coded(
                                "21000",
                                "more than one row returned by a subquery used as an expression",
                            ),
                        )));
                    }
                    values.push(match batches.iter().find(|b| b.num_rows() == 1) {
                        Some(b) => cast(b.column(0), field.data_type())?,
                        None => new_null_array(field.data_type(), 1),
                    });
                }
                with_rows(right, values, 1)
            }
        }
    }

    async fn process(
        &self,
        batch: &RecordBatch,
        memo: &mut Memo,
        ctx: &Arc<TaskContext>,
    ) -> Result<RecordBatch> {
        let right: SchemaRef = Arc::new(datafusion::arrow::datatypes::Schema::new(
            self.schema.fields()[self.input_width..]
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let key_columns: Vec<ArrayRef> = self
            .keys
            .iter()
            .map(|(i, _)| batch.column(*i).clone())
            .collect();
        let encoded = memo.converter.convert_columns(&key_columns)?;
        // The distinct outer values of this batch, each with the first row that has them.
        let mut distinct: HashMap<datafusion::arrow::row::Row<'_>, usize> = HashMap::new();
        let mut slot_of_row = Vec::with_capacity(batch.num_rows());
        let mut firsts = Vec::new();
        for row in 0..batch.num_rows() {
            let slot = *distinct.entry(encoded.row(row)).or_insert_with(|| {
                firsts.push(row);
                firsts.len() - 1
            });
            slot_of_row.push(slot);
        }
        let mut owned = Vec::with_capacity(firsts.len());
        for &row in &firsts {
            let key = encoded.row(row).owned();
            if !memo.sides.contains_key(&key) {
                let values = key_columns
                    .iter()
                    .map(|c| ScalarValue::try_from_array(c, row))
                    .collect::<Result<Vec<_>>>()?;
                let side = self.side(memo, &values, &right, ctx).await?;
                memo.sides.insert(key.clone(), side);
            }
            owned.push(key);
        }
        // Each distinct key's rows, then one all-NULL row for a LEFT JOIN LATERAL's unmatched.
        let mut sides: Vec<&RecordBatch> = owned.iter().map(|k| &memo.sides[k]).collect();
        let nulls = with_rows(
            &right,
            right
                .fields()
                .iter()
                .map(|f| new_null_array(f.data_type(), 1))
                .collect(),
            1,
        )?;
        let outer = matches!(self.kind, Kind::Join { outer: true, .. });
        let null_side = sides.len();
        sides.push(&nulls);
        let mut left = Vec::with_capacity(batch.num_rows());
        let mut picks = Vec::with_capacity(batch.num_rows());
        for (row, &slot) in slot_of_row.iter().enumerate() {
            let n = sides[slot].num_rows();
            if n == 0 && outer {
                left.push(row as u32);
                picks.push((null_side, 0));
            }
            for r in 0..n {
                left.push(row as u32);
                picks.push((slot, r));
            }
        }
        let left = UInt32Array::from(left);
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &left, None))
            .collect::<std::result::Result<_, _>>()?;
        for (c, field) in self.schema.fields()[self.input_width..].iter().enumerate() {
            let arrays: Vec<&dyn Array> = sides.iter().map(|b| b.column(c).as_ref()).collect();
            columns.push(cast(&interleave(&arrays, &picks)?, field.data_type())?);
        }
        with_rows(&self.schema, columns, left.len())
    }
}

/// `batch` with `schema`'s column types (the bound subquery's plan may type a column more
/// narrowly than the unbound one did).
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| cast(c, f.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    with_rows(schema, columns, batch.num_rows())
}

/// A batch of `rows` rows (also when it has no columns).
fn with_rows(schema: &SchemaRef, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )?)
}
