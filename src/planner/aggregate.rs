//! GROUP BY, DISTINCT and ORDER BY … LIMIT: the operators that keep groups and the first rows.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Aggregate, Expr, ExprSchemable, LogicalPlan, SortExpr};
use datafusion::physical_expr::PhysicalExpr;

use super::{Planner, Props, no_model_calls, not_supported};
use crate::stream::aggregate::{AggCall, AggKind, AggregateOp};
use crate::stream::topn::TopNOp;
use crate::stream::watermark::Derived;
use crate::stream::{Result, StreamError};

/// The refusal of `EMIT ON WINDOW CLOSE` over `what`.
pub(super) fn no_window_close(what: &str) -> StreamError {
    not_supported(format!(
        "EMIT ON WINDOW CLOSE over {what} (it needs a GROUP BY on a column with a watermark, \
         such as the window_start or window_end of TUMBLE or HOP over a source or table with \
         WATERMARK FOR, at the top of the query)"
    ))
}

impl Planner<'_> {
    /// A GROUP BY: one row per group, kept by an [`AggregateOp`].
    pub(super) fn group_by(&mut self, aggregate: &Aggregate) -> Result<(usize, Props)> {
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

    /// DISTINCT: a GROUP BY of every column without aggregates.
    pub(super) fn distinct(&mut self, input: &LogicalPlan) -> Result<(usize, Props)> {
        let (child, props) = self.plan(input)?;
        let schema = input.schema();
        let groups = schema
            .columns()
            .iter()
            .map(|c| self.compile(&Expr::Column(c.clone()), schema))
            .collect::<Result<Vec<_>>>()?;
        let arrow = Arc::new(schema.as_arrow().clone());
        let derived = Derived::find(&groups, &arrow, &props.watermarks);
        self.aggregate(child, arrow, groups, Vec::new(), derived, false)
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

    pub(super) fn top_n(
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
            .map(|s| self.sort_key(s, input.schema()))
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
                let (expr, options) = self.sort_key(s, input_schema)?;
                Ok((expr, options, s.expr.get_type(input_schema)?))
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
