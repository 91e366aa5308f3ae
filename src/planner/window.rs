//! Window functions: the bounds SESSION adds, kept by a [`SessionOp`]; sliding aggregates over
//! RANGE frames along a column with a watermark, kept by a [`SlidingOp`]; and every other OVER,
//! kept by an [`OverOp`].

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{Expr, ExprSchemable, SortExpr, WindowFunctionDefinition};

use super::{Planner, Props, not_supported, strip_aliases};
use crate::common::time;
use crate::model::functions::calls_model;
use crate::sql::windows::session_bound as bound_named;
use crate::stream::Result;
use crate::stream::over::{OverOp, Reach, bound_units};
use crate::stream::session_window::{SessionBound, SessionOp};
use crate::stream::sliding::{Slide, SlideKind, SlidingOp};

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
                i128::from(n) == i128::from(units) * i128::from(time::nanos_per(unit))
            })
        }
        _ => true,
    }
}

/// A SESSION bound `expr` over rows of `schema`: which bound, the time column's position, the
/// gap in nanoseconds and the partition expressions.
fn session_bound<'e>(
    expr: &'e Expr,
    schema: &DFSchema,
) -> Option<(SessionBound, usize, i64, &'e [Expr])> {
    let Expr::WindowFunction(function) = strip_aliases(expr) else {
        return None;
    };
    let WindowFunctionDefinition::WindowUDF(udf) = &function.fun else {
        return None;
    };
    let bound = bound_named(udf.name())?;
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

impl Planner<'_> {
    /// Window functions. Those that SESSION adds (the bounds of each row's session) are kept
    /// by a [`SessionOp`].
    pub(super) fn window(
        &mut self,
        window: &datafusion::logical_expr::Window,
    ) -> Result<(usize, Props)> {
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
                .filter(|(_, b)| **b == SessionBound::End)
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
            .map(|s| self.sort_key(s, input_schema))
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
                DataType::Timestamp(unit, _) => {
                    time::human_duration(i128::from(before) * i128::from(time::nanos_per(unit)))
                }
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
}
