//! Integer `+`, `-` and `*` that raise `22003` on overflow, as PostgreSQL's do: DataFusion's
//! kernels wrap around (`9223372036854775807 + 1` was `-9223372036854775808`). Its binary
//! expressions have a checked mode; this physical optimizer rule turns it on for the integer
//! arithmetic of every projection and filter.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::BinaryExpr;
use datafusion::physical_expr::{PhysicalExpr, projection::ProjectionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::ProjectionExec;

/// The rule; added after DataFusion's own.
#[derive(Debug)]
pub(crate) struct CheckedArithmetic;

impl PhysicalOptimizerRule for CheckedArithmetic {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(plan
            .transform_up(|node| {
                if let Some(filter) = node.downcast_ref::<FilterExec>() {
                    let predicate = checked(filter.predicate().clone(), &filter.input().schema())?;
                    if !predicate.transformed {
                        return Ok(Transformed::no(node));
                    }
                    let rebuilt: Arc<dyn ExecutionPlan> = Arc::new(
                        FilterExecBuilder::from(filter)
                            .with_predicate(predicate.data)
                            .build()?,
                    );
                    return Ok(Transformed::yes(rebuilt));
                }
                let Some(projection) = node.downcast_ref::<ProjectionExec>() else {
                    return Ok(Transformed::no(node));
                };
                let schema = projection.input().schema();
                let mut changed = false;
                let mut exprs = Vec::with_capacity(projection.expr().len());
                for item in projection.expr() {
                    let checked = checked(item.expr.clone(), &schema)?;
                    changed |= checked.transformed;
                    exprs.push(ProjectionExpr {
                        expr: checked.data,
                        alias: item.alias.clone(),
                    });
                }
                if !changed {
                    return Ok(Transformed::no(node));
                }
                let rebuilt: Arc<dyn ExecutionPlan> =
                    Arc::new(ProjectionExec::try_new(exprs, projection.input().clone())?);
                Ok(Transformed::yes(rebuilt))
            })?
            .data)
    }

    fn name(&self) -> &str {
        "augur_checked_arithmetic"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `expr` with checked integer arithmetic, for expressions compiled outside a physical plan
/// (materialized views' operators).
pub(crate) fn checked_expr(
    expr: Arc<dyn PhysicalExpr>,
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Result<Arc<dyn PhysicalExpr>> {
    Ok(checked(expr, schema)?.data)
}

fn checked(
    expr: Arc<dyn PhysicalExpr>,
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Result<Transformed<Arc<dyn PhysicalExpr>>> {
    expr.transform_up(|e| {
        let Some(binary) = e.downcast_ref::<BinaryExpr>() else {
            return Ok(Transformed::no(e));
        };
        let arithmetic = matches!(
            binary.op(),
            Operator::Plus | Operator::Minus | Operator::Multiply
        );
        let data_type = binary.data_type(schema)?;
        if arithmetic && matches!(data_type, DataType::Float32 | DataType::Float64) {
            let checked: Arc<dyn PhysicalExpr> = Arc::new(FloatChecked {
                op: *binary.op(),
                left: binary.left().clone(),
                right: binary.right().clone(),
                data_type,
            });
            return Ok(Transformed::yes(checked));
        }
        let integers = arithmetic
            && matches!(
                data_type,
                DataType::Int16 | DataType::Int32 | DataType::Int64
            );
        if !integers {
            return Ok(Transformed::no(e));
        }
        let checked: Arc<dyn PhysicalExpr> = Arc::new(
            BinaryExpr::new(binary.left().clone(), *binary.op(), binary.right().clone())
                .with_fail_on_overflow(true),
        );
        Ok(Transformed::yes(checked))
    })
}

/// Floating point `+`, `-` and `*` that raise `22003` where PostgreSQL's do: a result that is
/// infinite from finite operands (overflow), or a product that is zero from operands that are
/// not (underflow). DataFusion's kernels give the infinity or the zero.
#[derive(Debug, Clone)]
struct FloatChecked {
    op: Operator,
    left: Arc<dyn PhysicalExpr>,
    right: Arc<dyn PhysicalExpr>,
    data_type: DataType,
}

impl PartialEq for FloatChecked {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op
            && self.data_type == other.data_type
            && self.left.eq(&other.left)
            && self.right.eq(&other.right)
    }
}

impl Eq for FloatChecked {}

impl std::hash::Hash for FloatChecked {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.op.hash(state);
        self.left.hash(state);
        self.right.hash(state);
    }
}

impl std::fmt::Display for FloatChecked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.left, self.op, self.right)
    }
}

fn out_of_range(what: &str) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(crate::error::Error::coded(
        "22003",
        format!("value out of range: {what}"),
    )))
}

impl PhysicalExpr for FloatChecked {
    fn data_type(&self, _input_schema: &datafusion::arrow::datatypes::Schema) -> Result<DataType> {
        Ok(self.data_type.clone())
    }

    fn nullable(&self, input_schema: &datafusion::arrow::datatypes::Schema) -> Result<bool> {
        Ok(self.left.nullable(input_schema)? || self.right.nullable(input_schema)?)
    }

    fn evaluate(
        &self,
        batch: &datafusion::arrow::record_batch::RecordBatch,
    ) -> Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray};
        use datafusion::arrow::compute::cast;
        use datafusion::arrow::compute::kernels::numeric;
        use datafusion::arrow::datatypes::Float64Type;

        let rows = batch.num_rows();
        let left = self.left.evaluate(batch)?.into_array(rows)?;
        let right = self.right.evaluate(batch)?.into_array(rows)?;
        let left = cast(&left, &self.data_type)?;
        let right = cast(&right, &self.data_type)?;
        let result = match self.op {
            Operator::Plus => numeric::add(&left, &right)?,
            Operator::Minus => numeric::sub(&left, &right)?,
            _ => numeric::mul(&left, &right)?,
        };
        let wide = |a: &Arc<dyn Array>| cast(a, &DataType::Float64);
        let (l, r, out) = (wide(&left)?, wide(&right)?, wide(&result)?);
        let (l, r, out) = (
            l.as_primitive::<Float64Type>(),
            r.as_primitive::<Float64Type>(),
            out.as_primitive::<Float64Type>(),
        );
        for i in 0..out.len() {
            if out.is_null(i) {
                continue;
            }
            let (a, b, v) = (l.value(i), r.value(i), out.value(i));
            if v.is_infinite() && a.is_finite() && b.is_finite() {
                return Err(out_of_range("overflow"));
            }
            if self.op == Operator::Multiply && v == 0.0 && a != 0.0 && b != 0.0 {
                return Err(out_of_range("underflow"));
            }
        }
        Ok(datafusion::logical_expr::ColumnarValue::Array(result))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.left, &self.right]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let [left, right]: [Arc<dyn PhysicalExpr>; 2] = children.try_into().map_err(|_| {
            datafusion::error::DataFusionError::Internal("two operands expected".into())
        })?;
        Ok(Arc::new(FloatChecked {
            op: self.op,
            left,
            right,
            data_type: self.data_type.clone(),
        }))
    }

    fn fmt_sql(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.left.fmt_sql(f)?;
        write!(f, " {} ", self.op)?;
        self.right.fmt_sql(f)
    }
}
