//! Joins: equality joins kept by a [`JoinOp`], with the rows the watermarks have passed deleted
//! when the join is on a column with a watermark on both sides or has an interval condition.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, NullEquality};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, ExprSchemable, Join};

use super::temporal::peel_intervals;
use super::{Planner, Props, no_model_calls, not_supported};
use crate::stream::Result;
use crate::stream::join::{Interval, JoinOp};

impl Planner<'_> {
    /// An equality join of two inputs.
    pub(super) fn join(&mut self, join: &Join) -> Result<(usize, Props)> {
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
            datafusion::common::JoinType::LeftSemi | datafusion::common::JoinType::LeftAnti => {
                left_props.key.clone()
            }
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
}

/// `column ± constant intervals` (through casts): the column and the sum in nanoseconds.
fn column_offset(expr: &Expr) -> Option<(&datafusion::common::Column, i64)> {
    match peel_intervals(expr).ok()? {
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

/// The type both sides of a join key are compared in.
fn common_type(left: &DataType, right: &DataType) -> DataType {
    if left == right {
        return left.clone();
    }
    datafusion::logical_expr::type_coercion::binary::comparison_coercion(left, right)
        .unwrap_or_else(|| left.clone())
}
