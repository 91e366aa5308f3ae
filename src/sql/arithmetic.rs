//! Arithmetic as PostgreSQL does it, where DataFusion's differs.
//!
//! - Integer `+`, `-` and `*` raise `22003` on overflow (DataFusion wraps around: `int8` max
//!   `+ 1` gave a negative number).
//! - Division of a `double precision` by zero raises `22012` (DataFusion gives Infinity or NaN).
//! - `interval * number`, `number * interval` and `interval / number` work (DataFusion refuses
//!   them), cascading fractions of months into days and of days into time as PostgreSQL does.
//!
//! An [`ExprPlanner`] sees each binary operator as SQL is planned, with its operands' types,
//! and plans these cases as calls of the functions below; every other operator is left to
//! DataFusion.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, IntervalMonthDayNanoArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, IntervalMonthDayNano};
use datafusion::arrow::error::ArrowError;
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility, cast,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::BinaryOperator;

use crate::error::Error;

/// Registers the planner and its functions on `ctx`.
pub fn register(ctx: &mut SessionContext) -> Result<()> {
    use datafusion::execution::FunctionRegistry;

    let functions = Functions::new();
    for udf in functions.all() {
        ctx.register_udf(udf.clone())?;
    }
    ctx.register_expr_planner(Arc::new(PgArithmetic { functions }))
}

#[derive(Debug, Clone)]
struct Functions {
    add: Arc<ScalarUDF>,
    sub: Arc<ScalarUDF>,
    mul: Arc<ScalarUDF>,
    float_div: Arc<ScalarUDF>,
    interval_mul: Arc<ScalarUDF>,
    interval_div: Arc<ScalarUDF>,
}

impl Functions {
    fn new() -> Self {
        let udf = |op: Op| Arc::new(ScalarUDF::new_from_impl(Arithmetic::new(op)));
        Self {
            add: udf(Op::Add),
            sub: udf(Op::Sub),
            mul: udf(Op::Mul),
            float_div: udf(Op::FloatDiv),
            interval_mul: udf(Op::IntervalMul),
            interval_div: udf(Op::IntervalDiv),
        }
    }

    fn all(&self) -> [&Arc<ScalarUDF>; 6] {
        [
            &self.add,
            &self.sub,
            &self.mul,
            &self.float_div,
            &self.interval_mul,
            &self.interval_div,
        ]
    }
}

#[derive(Debug)]
struct PgArithmetic {
    functions: Functions,
}

fn is_int(t: &DataType) -> bool {
    matches!(t, DataType::Int16 | DataType::Int32 | DataType::Int64)
}

fn is_number(t: &DataType) -> bool {
    t.is_numeric()
}

fn is_interval(t: &DataType) -> bool {
    matches!(t, DataType::Interval(_))
}

impl ExprPlanner for PgArithmetic {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let (Ok(left), Ok(right)) = (expr.left.get_type(schema), expr.right.get_type(schema))
        else {
            return Ok(PlannerResult::Original(expr));
        };
        let f = &self.functions;
        let call =
            |udf: &Arc<ScalarUDF>, args: Vec<Expr>| Ok(PlannerResult::Planned(udf.call(args)));
        let float = |e: Expr| cast(e, DataType::Float64);
        match expr.op {
            BinaryOperator::Plus if is_int(&left) && is_int(&right) => {
                call(&f.add, vec![expr.left, expr.right])
            }
            BinaryOperator::Minus if is_int(&left) && is_int(&right) => {
                call(&f.sub, vec![expr.left, expr.right])
            }
            BinaryOperator::Multiply if is_int(&left) && is_int(&right) => {
                call(&f.mul, vec![expr.left, expr.right])
            }
            BinaryOperator::Divide
                if (left == DataType::Float64 && is_number(&right))
                    || (right == DataType::Float64 && is_number(&left)) =>
            {
                call(&f.float_div, vec![float(expr.left), float(expr.right)])
            }
            BinaryOperator::Multiply if is_interval(&left) && is_number(&right) => {
                call(&f.interval_mul, vec![expr.left, float(expr.right)])
            }
            BinaryOperator::Multiply if is_number(&left) && is_interval(&right) => {
                call(&f.interval_mul, vec![expr.right, float(expr.left)])
            }
            BinaryOperator::Divide if is_interval(&left) && is_number(&right) => {
                call(&f.interval_div, vec![expr.left, float(expr.right)])
            }
            _ => Ok(PlannerResult::Original(expr)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Sub,
    Mul,
    FloatDiv,
    IntervalMul,
    IntervalDiv,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Arithmetic {
    op: Op,
    signature: Signature,
}

impl Arithmetic {
    fn new(op: Op) -> Self {
        let signature = match op {
            Op::Add | Op::Sub | Op::Mul => Signature::user_defined(Volatility::Immutable),
            Op::FloatDiv => Signature::exact(
                vec![DataType::Float64, DataType::Float64],
                Volatility::Immutable,
            ),
            Op::IntervalMul | Op::IntervalDiv => Signature::exact(
                vec![
                    DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano),
                    DataType::Float64,
                ],
                Volatility::Immutable,
            ),
        };
        Self { op, signature }
    }
}

fn error(code: &'static str, message: &str) -> DataFusionError {
    DataFusionError::External(Box::new(Error::coded(code, message.to_string())))
}

/// The widest of two integer types: both operands are cast to it.
fn common_int(types: &[DataType]) -> Result<DataType> {
    let width = |t: &DataType| match t {
        DataType::Int16 => Ok(2),
        DataType::Int32 => Ok(4),
        DataType::Int64 => Ok(8),
        other => datafusion::common::plan_err!("not an integer type: {other}"),
    };
    let [a, b] = types else {
        return datafusion::common::plan_err!("two operands expected");
    };
    Ok(if width(a)? >= width(b)? {
        a.clone()
    } else {
        b.clone()
    })
}

fn out_of_range(t: &DataType) -> DataFusionError {
    let name = match t {
        DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        _ => "bigint",
    };
    error("22003", &format!("{name} out of range"))
}

impl ScalarUDFImpl for Arithmetic {
    fn name(&self) -> &str {
        match self.op {
            Op::Add => "augur_int_add",
            Op::Sub => "augur_int_sub",
            Op::Mul => "augur_int_mul",
            Op::FloatDiv => "augur_float_div",
            Op::IntervalMul => "augur_interval_mul",
            Op::IntervalDiv => "augur_interval_div",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let common = common_int(types)?;
        Ok(vec![common.clone(), common])
    }

    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        match self.op {
            Op::Add | Op::Sub | Op::Mul => common_int(types),
            Op::FloatDiv => Ok(DataType::Float64),
            Op::IntervalMul | Op::IntervalDiv => Ok(DataType::Interval(
                datafusion::arrow::datatypes::IntervalUnit::MonthDayNano,
            )),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let left = args.args[0].to_array(rows)?;
        let right = args.args[1].to_array(rows)?;
        let result: ArrayRef = match self.op {
            Op::Add | Op::Sub | Op::Mul => {
                let kernel = match self.op {
                    Op::Add => datafusion::arrow::compute::kernels::numeric::add,
                    Op::Sub => datafusion::arrow::compute::kernels::numeric::sub,
                    _ => datafusion::arrow::compute::kernels::numeric::mul,
                };
                kernel(&left, &right).map_err(|e| match e {
                    ArrowError::ArithmeticOverflow(_) => out_of_range(left.data_type()),
                    other => other.into(),
                })?
            }
            Op::FloatDiv => {
                let (l, r) = (
                    left.as_primitive::<Float64Type>(),
                    right.as_primitive::<Float64Type>(),
                );
                if (0..rows).any(|i| r.is_valid(i) && r.value(i) == 0.0 && l.is_valid(i)) {
                    return Err(error("22012", "division by zero"));
                }
                let out: Float64Array =
                    l.iter().zip(r.iter()).map(|(a, b)| Some(a? / b?)).collect();
                Arc::new(out)
            }
            Op::IntervalMul | Op::IntervalDiv => {
                let spans =
                    left.as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>();
                let factors = right.as_primitive::<Float64Type>();
                let mut out = Vec::with_capacity(rows);
                for i in 0..rows {
                    if spans.is_null(i) || factors.is_null(i) {
                        out.push(None);
                        continue;
                    }
                    let factor = factors.value(i);
                    let factor = if self.op == Op::IntervalDiv {
                        if factor == 0.0 {
                            return Err(error("22012", "division by zero"));
                        }
                        1.0 / factor
                    } else {
                        factor
                    };
                    out.push(Some(interval_mul(spans.value(i), factor)?));
                }
                Arc::new(IntervalMonthDayNanoArray::from(out))
            }
        };
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?)
        } else {
            ColumnarValue::Array(result)
        })
    }
}

/// `span * factor` as PostgreSQL's `interval_mul` computes it: whole months, then the fraction
/// of a month as 30 days, then the fraction of a day as 24 hours, rounded to microseconds.
fn interval_mul(span: IntervalMonthDayNano, factor: f64) -> Result<IntervalMonthDayNano> {
    const DAYS_PER_MONTH: f64 = 30.0;
    const SECS_PER_DAY: f64 = 86_400.0;
    let round = |x: f64| (x * 1e6).round() / 1e6;
    let range = || error("22008", "interval out of range");
    let months = f64::from(span.months) * factor;
    let days = f64::from(span.days) * factor;
    if !months.is_finite()
        || months.abs() > f64::from(i32::MAX)
        || !days.is_finite()
        || days.abs() > f64::from(i32::MAX)
    {
        return Err(range());
    }
    let whole_months = months.trunc();
    let mut whole_days = days.trunc();
    let month_remainder_days = round((months - whole_months) * DAYS_PER_MONTH);
    let mut sec_remainder = round(
        (days - whole_days + month_remainder_days - month_remainder_days.trunc()) * SECS_PER_DAY,
    );
    if sec_remainder.abs() >= SECS_PER_DAY {
        let carried = (sec_remainder / SECS_PER_DAY).trunc();
        whole_days += carried;
        sec_remainder -= carried * SECS_PER_DAY;
    }
    whole_days += month_remainder_days.trunc();
    let micros = ((span.nanoseconds as f64 / 1_000.0) * factor + sec_remainder * 1e6).round();
    if !micros.is_finite()
        || micros.abs() > i64::MAX as f64 / 1_000.0
        || whole_days.abs() > f64::from(i32::MAX)
    {
        return Err(range());
    }
    Ok(IntervalMonthDayNano {
        months: whole_months as i32,
        days: whole_days as i32,
        nanoseconds: micros as i64 * 1_000,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(months: i32, days: i32, hours: i64) -> IntervalMonthDayNano {
        IntervalMonthDayNano {
            months,
            days,
            nanoseconds: hours * 3_600_000_000_000,
        }
    }

    #[test]
    fn intervals_multiply_as_in_postgresql() {
        // 2 * '13 hours' = '26:00:00'
        assert_eq!(interval_mul(span(0, 0, 13), 2.0).unwrap(), span(0, 0, 26));
        // '1 month' * 1.5 = '1 mon 15 days'
        assert_eq!(interval_mul(span(1, 0, 0), 1.5).unwrap(), span(1, 15, 0));
        // '1 day' / 2 = '12:00:00'
        assert_eq!(interval_mul(span(0, 1, 0), 0.5).unwrap(), span(0, 0, 12));
    }
}
