//! Watermarks inside the dataflow.
//!
//! A [`Watermark`] on column `c` of an operator's output with value `w` promises that every
//! later change on that edge, insertion or retraction, has `c ≥ w`. Sources and append-only
//! tables with `WATERMARK FOR` start them (the worker sends one after the rows that raised it);
//! operators carry them to their output where they can keep the promise:
//!
//! - scans and filters pass them on; projections map them through expressions that never
//!   decrease as the column grows (`ts`, `ts + INTERVAL '1 hour'`, `date_bin(…, ts)`),
//!   evaluated at the watermark ([`Derived`]);
//! - a union, and a join on both sides' watermark columns, pass on the least of their inputs'
//!   ([`Meet`]);
//! - an aggregate grouped by such a column holds it until the barrier has emitted the groups
//!   below it, then closes those groups: their state is deleted, and under
//!   `EMIT ON WINDOW CLOSE` their rows are emitted then, once.
//!
//! The planner works out statically which output columns carry a watermark, so that what needs
//! one (`EMIT ON WINDOW CLOSE`) is refused at CREATE when none can arrive.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, new_null_array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Column, Literal};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};

use super::Result;

/// Every later change has `column ≥ value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Watermark {
    /// The column's position in the operator's output.
    pub column: usize,
    /// The bound.
    pub value: ScalarValue,
}

/// An output column that is a non-decreasing function of one input column: a watermark on the
/// input column gives one on the output column.
#[derive(Debug, Clone)]
pub struct Derived {
    /// The input column.
    pub input: usize,
    /// The output column.
    pub output: usize,
    expr: Arc<dyn PhysicalExpr>,
    /// The input's schema with every column nullable: the watermark is evaluated on a row that
    /// holds only it.
    schema: SchemaRef,
}

impl Derived {
    /// The output columns of `exprs` (over rows of `schema`) that rise with one of the input
    /// columns `watermarked`.
    pub fn find(
        exprs: &[Arc<dyn PhysicalExpr>],
        schema: &SchemaRef,
        watermarked: &[usize],
    ) -> Vec<Derived> {
        let nullable: SchemaRef = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), f.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let mut derived = Vec::new();
        if watermarked.is_empty() {
            return derived;
        }
        for (output, expr) in exprs.iter().enumerate() {
            if let Some(&input) = watermarked.iter().find(|&&c| rises_with(expr, c, schema)) {
                derived.push(Derived {
                    input,
                    output,
                    expr: expr.clone(),
                    schema: nullable.clone(),
                });
            }
        }
        derived
    }

    /// The watermarks `derived` gives the output for `watermark` on the input.
    pub fn carry(derived: &[Derived], watermark: &Watermark) -> Result<Vec<Watermark>> {
        let mut out = Vec::new();
        for d in derived.iter().filter(|d| d.input == watermark.column) {
            if let Some(value) = d.apply(&watermark.value)? {
                out.push(Watermark {
                    column: d.output,
                    value,
                });
            }
        }
        Ok(out)
    }

    /// The output's watermark when the input's is `value`; `None` where the expression gives
    /// NULL or fails there.
    pub fn apply(&self, value: &ScalarValue) -> Result<Option<ScalarValue>> {
        let columns = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if i == self.input {
                    value.to_array_of_size(1)
                } else {
                    Ok(new_null_array(f.data_type(), 1))
                }
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let row = RecordBatch::try_new(self.schema.clone(), columns)?;
        let Ok(result) = self.expr.evaluate(&row) else {
            return Ok(None);
        };
        let value = ScalarValue::try_from_array(&result.into_array(1)?, 0)?;
        Ok((!value.is_null()).then_some(value))
    }
}

/// Whether `expr` never decreases as input column `column` grows, and depends on nothing else.
///
/// The rules are Augur's own, narrower than DataFusion's order properties (which treat a
/// timestamp plus an interval as unordered): the column itself; plus or minus a constant;
/// `date_bin` and `date_trunc` with constant strides and origins; casts between timestamp
/// types.
fn rises_with(expr: &Arc<dyn PhysicalExpr>, column: usize, schema: &SchemaRef) -> bool {
    order(expr, column, schema) == Order::Rising
}

#[derive(Debug, PartialEq)]
enum Order {
    Constant,
    Rising,
    Other,
}

fn order(expr: &Arc<dyn PhysicalExpr>, column: usize, schema: &SchemaRef) -> Order {
    if let Some(c) = expr.downcast_ref::<Column>() {
        return if c.index() == column {
            Order::Rising
        } else {
            Order::Other
        };
    }
    if expr.downcast_ref::<Literal>().is_some() {
        return Order::Constant;
    }
    let children: Vec<Order> = expr
        .children()
        .into_iter()
        .map(|child| order(child, column, schema))
        .collect();
    if children.iter().all(|c| *c == Order::Constant) {
        return Order::Constant;
    }
    if let Some(binary) = expr.downcast_ref::<BinaryExpr>() {
        return match (binary.op(), &children[..]) {
            (
                Operator::Plus,
                [Order::Rising, Order::Constant] | [Order::Constant, Order::Rising],
            )
            | (Operator::Minus, [Order::Rising, Order::Constant]) => Order::Rising,
            _ => Order::Other,
        };
    }
    if let Some(function) = expr.downcast_ref::<ScalarFunctionExpr>() {
        // The time is the second argument; the others are constant.
        let rising_second = children.len() >= 2
            && children[1] == Order::Rising
            && children
                .iter()
                .enumerate()
                .all(|(i, c)| i == 1 || *c == Order::Constant);
        return match function.name() {
            "date_bin" | "date_trunc" | "datetrunc" if rising_second => Order::Rising,
            _ => Order::Other,
        };
    }
    let is_time = |t: &DataType| matches!(t, DataType::Timestamp(..));
    if let Some(cast) = expr.downcast_ref::<CastExpr>()
        && children[..] == [Order::Rising]
        && cast.expr().data_type(schema).is_ok_and(|t| is_time(&t))
        && is_time(cast.cast_type())
    {
        return Order::Rising;
    }
    Order::Other
}

/// Holds `watermark` back until the barrier: only the latest of each column is worth giving.
pub fn hold(held: &mut Vec<Watermark>, watermark: Watermark) {
    match held.iter_mut().find(|h| h.column == watermark.column) {
        Some(h) => *h = watermark,
        None => held.push(watermark),
    }
}

/// The least watermark over several inputs of one column: known once every input has given
/// one, and then only rising.
#[derive(Debug, Clone)]
pub struct Meet {
    sides: Vec<Option<ScalarValue>>,
    current: Option<ScalarValue>,
}

impl Meet {
    /// Over `inputs` inputs.
    pub fn new(inputs: usize) -> Self {
        Self {
            sides: vec![None; inputs],
            current: None,
        }
    }

    /// Input `side` rose to `value`; returns the new least watermark when it rose.
    pub fn raise(&mut self, side: usize, value: ScalarValue) -> Option<ScalarValue> {
        let slot = self.sides.get_mut(side)?;
        if slot.as_ref().is_some_and(|v| v >= &value) {
            return None;
        }
        *slot = Some(value);
        let mut least: Option<&ScalarValue> = None;
        for side in &self.sides {
            let side = side.as_ref()?;
            if least.is_none_or(|l| side < l) {
                least = Some(side);
            }
        }
        let least = least?.clone();
        if self.current.as_ref().is_some_and(|c| c >= &least) {
            return None;
        }
        self.current = Some(least.clone());
        Some(least)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::TimeUnit;
    use datafusion::prelude::SessionContext;

    use super::*;

    fn ts(micros: i64) -> ScalarValue {
        ScalarValue::TimestampMicrosecond(Some(micros), None)
    }

    fn compile(sql: &[&str], schema: &SchemaRef) -> Vec<Arc<dyn PhysicalExpr>> {
        let ctx = SessionContext::new();
        let df_schema = datafusion::common::DFSchema::try_from(schema.as_ref().clone()).unwrap();
        sql.iter()
            .map(|s| {
                let expr = ctx.parse_sql_expr(s, &df_schema).unwrap();
                ctx.create_physical_expr(expr, &df_schema).unwrap()
            })
            .collect()
    }

    #[test]
    fn rising_expressions_carry_the_watermark() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
        ]));
        let exprs = compile(
            &[
                "ts",
                "k",
                "ts + INTERVAL '1 second'",
                "date_bin(INTERVAL '10 seconds', ts, TIMESTAMP '1970-01-01 00:00:00')",
                "CASE WHEN k > 0 THEN ts END",
                "date_bin(INTERVAL '10 seconds', ts, TIMESTAMP '1970-01-01 00:00:00') \
                 - INTERVAL '10 seconds'",
            ],
            &schema,
        );
        let derived = Derived::find(&exprs, &schema, &[1]);
        let outputs: Vec<usize> = derived.iter().map(|d| d.output).collect();
        assert_eq!(outputs, vec![0, 2, 3, 5]);
        let at: Vec<ScalarValue> = derived
            .iter()
            .map(|d| d.apply(&ts(25_500_000)).unwrap().unwrap())
            .collect();
        assert_eq!(
            at,
            vec![
                ts(25_500_000),
                ts(26_500_000),
                ts(20_000_000),
                ts(10_000_000)
            ]
        );
    }

    #[test]
    fn the_meet_is_the_least_once_every_input_has_one() {
        let mut meet = Meet::new(2);
        assert_eq!(meet.raise(0, ts(5)), None);
        assert_eq!(meet.raise(1, ts(3)), Some(ts(3)));
        assert_eq!(meet.raise(1, ts(9)), Some(ts(5)));
        assert_eq!(meet.raise(1, ts(8)), None);
        assert_eq!(meet.raise(0, ts(7)), Some(ts(7)));
    }
}
