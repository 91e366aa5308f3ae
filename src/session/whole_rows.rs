//! `ROW(t.*)` and other calls given a whole row (`f(t.*)`): DataFusion plans the argument as a
//! wildcard and cannot run it. Here it becomes `t`'s columns, in order, as PostgreSQL expands
//! it.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::utils::expand_qualified_wildcard;
use datafusion::logical_expr::{Expr, LogicalPlan};

use crate::error::Result;

/// `plan` with each call's `t.*` argument written out as `t`'s columns.
// `Expr::Wildcard` is deprecated in favour of resolving wildcards while planning, which
// DataFusion's SQL planner does not do for a function's arguments.
#[allow(deprecated)]
pub(crate) fn expand(plan: LogicalPlan) -> Result<LogicalPlan> {
    let mut changed = false;
    let expanded =
        plan.transform_up_with_subqueries(|node| {
            let inputs: Vec<_> = node.inputs().iter().map(|i| i.schema().clone()).collect();
            node.map_expressions(|expr| {
                expr.transform_up(|e| match e {
                Expr::ScalarFunction(mut call)
                    if call
                        .args
                        .iter()
                        .any(|a| matches!(a, Expr::Wildcard { qualifier: Some(_), .. })) =>
                {
                    let mut args = Vec::with_capacity(call.args.len());
                    for arg in std::mem::take(&mut call.args) {
                        match arg {
                            Expr::Wildcard {
                                qualifier: Some(qualifier),
                                options,
                            } => {
                                let columns = inputs.iter().find_map(|schema| {
                                    expand_qualified_wildcard(&qualifier, schema, Some(&options))
                                        .ok()
                                });
                                match columns {
                                    Some(columns) => args.extend(columns),
                                    None => {
                                        return datafusion::common::plan_err!(
                                            "missing FROM-clause entry for table \"{qualifier}\""
                                        );
                                    }
                                }
                            }
                            other => args.push(other),
                        }
                    }
                    call.args = args;
                    changed = true;
                    Ok(Transformed::yes(Expr::ScalarFunction(call)))
                }
                other => Ok(Transformed::no(other)),
            })
            })
        })?;
    if !changed {
        return Ok(expanded.data);
    }
    // The calls' types changed: every node's schema is worked out again, inputs first.
    Ok(expanded
        .data
        .transform_up_with_subqueries(|node| Ok(Transformed::yes(node.recompute_schema()?)))?
        .data)
}
