//! `EXCEPT ALL` and `INTERSECT ALL` as multisets, as PostgreSQL computes them: a row that
//! appears m times on the left and n times on the right appears max(m - n, 0) times in
//! `EXCEPT ALL` and min(m, n) times in `INTERSECT ALL`.
//!
//! DataFusion plans both as an anti or semi join of the left rows against the right ones on
//! every column (NULLs equal), which removes every copy of a row the right side has at all
//! (`EXCEPT ALL`) or keeps every copy the left side has (`INTERSECT ALL`). Numbering the copies
//! of each row on both sides and joining on the number as well gives the multiset answer: the
//! k-th copy on the left matches the k-th copy on the right. The plain `EXCEPT` and `INTERSECT`
//! (their left side made distinct first) are left as they are.

use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, NullEquality, Result as DfResult};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{Expr, ExprFunctionExt, JoinType, LogicalPlan, LogicalPlanBuilder};

use crate::error::Result;

const LEFT_COPY: &str = "__augur_left_copy";
const RIGHT_COPY: &str = "__augur_right_copy";

/// Rewrites every `EXCEPT ALL` and `INTERSECT ALL` in `plan`, subqueries included.
pub(crate) fn multiset_semantics(plan: LogicalPlan) -> Result<LogicalPlan> {
    Ok(plan
        .transform_up_with_subqueries(|node| {
            let LogicalPlan::Join(join) = &node else {
                return Ok(Transformed::no(node));
            };
            let left_fields = join.left.schema().fields().len();
            let all_columns = join.on.len() == left_fields
                && join.right.schema().fields().len() == left_fields
                && join
                    .on
                    .iter()
                    .all(|(l, r)| matches!((l, r), (Expr::Column(_), Expr::Column(_))));
            if !matches!(join.join_type, JoinType::LeftAnti | JoinType::LeftSemi)
                || join.null_equality != NullEquality::NullEqualsNull
                || join.filter.is_some()
                || !all_columns
                || matches!(join.left.as_ref(), LogicalPlan::Distinct(_))
            {
                return Ok(Transformed::no(node));
            }
            let numbered = |plan: &Arc<LogicalPlan>, name: &str| -> DfResult<LogicalPlan> {
                let columns: Vec<Expr> = plan
                    .schema()
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .collect();
                let copy = row_number().partition_by(columns).build()?.alias(name);
                LogicalPlanBuilder::from(plan.as_ref().clone())
                    .window(vec![copy])?
                    .build()
            };
            let (mut left_keys, mut right_keys): (Vec<Column>, Vec<Column>) = join
                .on
                .iter()
                .filter_map(|(l, r)| match (l, r) {
                    (Expr::Column(l), Expr::Column(r)) => Some((l.clone(), r.clone())),
                    _ => None,
                })
                .unzip();
            left_keys.push(Column::from_name(LEFT_COPY));
            right_keys.push(Column::from_name(RIGHT_COPY));
            let output: Vec<Expr> = join
                .left
                .schema()
                .columns()
                .into_iter()
                .map(Expr::Column)
                .collect();
            let rewritten = LogicalPlanBuilder::from(numbered(&join.left, LEFT_COPY)?)
                .join_detailed(
                    numbered(&join.right, RIGHT_COPY)?,
                    join.join_type,
                    (left_keys, right_keys),
                    None,
                    NullEquality::NullEqualsNull,
                )?
                .project(output)?
                .build()?;
            Ok(Transformed::yes(rewritten))
        })?
        .data)
}
