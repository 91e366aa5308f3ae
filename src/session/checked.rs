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
        let integers = matches!(
            binary.op(),
            Operator::Plus | Operator::Minus | Operator::Multiply
        ) && matches!(
            binary.data_type(schema)?,
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
