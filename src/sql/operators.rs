//! PostgreSQL's operators that DataFusion's planner does not have, planned while the SQL is turned
//! into a plan (DataFusion's `ExprPlanner` hook, which sees each binary operator with its operands
//! and their types): `number * interval`, `interval * number` and `interval / number`, and the
//! `json`/`jsonb` operators `->`, `->>`, `#>`, `#>>`, `@>`, `<@` and `?` (see
//! [`crate::catalog::pg_json`]).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, IntervalMonthDayNanoArray};
use datafusion::arrow::datatypes::{
    DataType, Float64Type, IntervalMonthDayNano, IntervalMonthDayNanoType, IntervalUnit,
};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::functions::utils::make_scalar_function;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    Expr, ExprSchemable, ScalarUDF, Volatility, cast, create_udf, expr::ScalarFunction, lit,
};

use crate::catalog::pg_json;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// Name of the function `interval * number` is planned as.
const INTERVAL_MUL: &str = "augur_interval_mul";
/// Name of the function `interval / number` is planned as.
const INTERVAL_DIV: &str = "augur_interval_div";

const INTERVAL: DataType = DataType::Interval(IntervalUnit::MonthDayNano);

/// Registers the operators' functions and the planner that plans the operators as them.
pub fn register(ctx: &SessionContext) -> Result<()> {
    use datafusion::execution::FunctionRegistry;
    let mul = Arc::new(interval_scale(INTERVAL_MUL, |v, factor| Ok(v * factor)));
    let div = Arc::new(interval_scale(INTERVAL_DIV, |v, divisor| {
        if divisor == 0.0 {
            Err(crate::error::Error::coded("22012", "division by zero"))
        } else {
            Ok(v / divisor)
        }
    }));
    ctx.register_udf(mul.as_ref().clone());
    ctx.register_udf(div.as_ref().clone());
    let json = |name| {
        pg_json::function(name)
            .map(Arc::new)
            .ok_or_else(|| datafusion::error::DataFusionError::Internal(format!("no {name}")))
    };
    let planner = PostgresOperators {
        mul,
        div,
        get: json(pg_json::GET)?,
        get_text: json(pg_json::GET_TEXT)?,
        get_path: json(pg_json::GET_PATH)?,
        get_path_text: json(pg_json::GET_PATH_TEXT)?,
        contains: json(pg_json::CONTAINS)?,
        contained_by: json(pg_json::CONTAINED_BY)?,
        has_key: json(pg_json::HAS_KEY)?,
        jsonb_in: json(pg_json::JSONB_IN)?,
        uuid_in: Arc::new(
            ctx.udf(crate::catalog::pg_builtins::UUID_IN)?
                .as_ref()
                .clone(),
        ),
    };
    let mut ctx = ctx.clone();
    ctx.register_expr_planner(Arc::new(planner))
}

/// Plans PostgreSQL's operators over types DataFusion's own operators do not take.
#[derive(Debug)]
struct PostgresOperators {
    mul: Arc<ScalarUDF>,
    div: Arc<ScalarUDF>,
    get: Arc<ScalarUDF>,
    get_text: Arc<ScalarUDF>,
    get_path: Arc<ScalarUDF>,
    get_path_text: Arc<ScalarUDF>,
    contains: Arc<ScalarUDF>,
    contained_by: Arc<ScalarUDF>,
    has_key: Arc<ScalarUDF>,
    jsonb_in: Arc<ScalarUDF>,
    uuid_in: Arc<ScalarUDF>,
}

impl PostgresOperators {
    /// `left OP right` for a JSON `left`, or `None` when `op` is not a JSON operator.
    fn json_operator(&self, op: &BinaryOperator, left: Expr, right: Expr) -> Option<Expr> {
        let call = |udf: &Arc<ScalarUDF>, args: Vec<Expr>| {
            Some(Expr::ScalarFunction(ScalarFunction::new_udf(
                udf.clone(),
                args,
            )))
        };
        match op {
            BinaryOperator::Arrow => call(&self.get, vec![left, right]),
            BinaryOperator::LongArrow => call(&self.get_text, vec![left, right]),
            BinaryOperator::HashArrow | BinaryOperator::HashLongArrow => {
                // The path is a text array; a literal one ('{a,1}') is its elements.
                let mut args = vec![left];
                args.extend(text_array_literal(&right)?.into_iter().map(lit));
                if matches!(op, BinaryOperator::HashArrow) {
                    call(&self.get_path, args)
                } else {
                    call(&self.get_path_text, args)
                }
            }
            BinaryOperator::AtArrow => call(&self.contains, vec![left, self.as_jsonb(right)]),
            BinaryOperator::ArrowAt => call(&self.contained_by, vec![left, self.as_jsonb(right)]),
            BinaryOperator::Question => call(&self.has_key, vec![left, right]),
            _ => None,
        }
    }

    /// An untyped literal on the right of `@>` is read as a `jsonb`.
    fn as_jsonb(&self, e: Expr) -> Expr {
        match &e {
            Expr::Literal(ScalarValue::Utf8(_), _) => {
                Expr::ScalarFunction(ScalarFunction::new_udf(self.jsonb_in.clone(), vec![e]))
            }
            _ => e,
        }
    }
}

/// Whether `e` has at most `budget` binary operators down its left and right spines (counted
/// without walking the whole of a deep one).
fn shallow(e: &Expr, budget: usize) -> bool {
    let mut node = e;
    for _ in 0..budget {
        match node {
            Expr::BinaryExpr(b) => {
                // the deeper side of a generated chain is usually the left one
                if matches!(b.right.as_ref(), Expr::BinaryExpr(_)) && !shallow(&b.right, budget / 2)
                {
                    return false;
                }
                node = &b.left;
            }
            _ => return true,
        }
    }
    false
}

/// DataFusion's operator for one of SQL's comparisons.
fn sql_operator(op: &BinaryOperator) -> datafusion::logical_expr::Operator {
    use datafusion::logical_expr::Operator;
    match op {
        BinaryOperator::NotEq => Operator::NotEq,
        BinaryOperator::Lt => Operator::Lt,
        BinaryOperator::LtEq => Operator::LtEq,
        BinaryOperator::Gt => Operator::Gt,
        BinaryOperator::GtEq => Operator::GtEq,
        _ => Operator::Eq,
    }
}

/// The elements of a text-array literal (`'{a,b,1}'`), as PostgreSQL reads a path.
fn text_array_literal(e: &Expr) -> Option<Vec<String>> {
    let Expr::Literal(ScalarValue::Utf8(Some(text)), _) = e else {
        return None;
    };
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    if inner.trim().is_empty() {
        return Some(vec![]);
    }
    Some(
        inner
            .split(',')
            .map(|part| part.trim().trim_matches('"').to_string())
            .collect(),
    )
}

impl ExprPlanner for PostgresOperators {
    fn plan_binary_op(
        &self,
        mut expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        // Types are looked at only for the operators planned here, and only of operands that
        // are not deep chains of operators (a generated `a * b * c * ...` thousands long would
        // otherwise have its types worked out again at every level).
        let typed = |e: &Expr| shallow(e, 32);
        let is_interval = |e: &Expr| typed(e) && e.get_type(schema).is_ok_and(|t| t == INTERVAL);
        let is_number = |e: &Expr| typed(e) && e.get_type(schema).is_ok_and(|t| t.is_numeric());
        let call = |udf: &Arc<ScalarUDF>, interval: Expr, number: Expr| {
            Expr::ScalarFunction(ScalarFunction::new_udf(
                udf.clone(),
                vec![interval, cast(number, DataType::Float64)],
            ))
        };
        let is_json = |e: &Expr| {
            typed(e)
                && e.to_field(schema)
                    .is_ok_and(|(_, field)| pg_json::JsonKind::of_field(&field).is_some())
        };
        let json_operator = matches!(
            expr.op,
            BinaryOperator::Arrow
                | BinaryOperator::LongArrow
                | BinaryOperator::HashArrow
                | BinaryOperator::HashLongArrow
                | BinaryOperator::AtArrow
                | BinaryOperator::ArrowAt
                | BinaryOperator::Question
        );
        // A text literal compared with a uuid or jsonb is read as one (`id = 'A0EE...'`).
        if matches!(
            expr.op,
            BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq
        ) {
            let reader = |e: &Expr| {
                if !typed(e) {
                    return None;
                }
                let (_, field) = e.to_field(schema).ok()?;
                match field
                    .metadata()
                    .get(crate::common::names::PG_TYPE_KEY)
                    .map(String::as_str)
                {
                    Some("uuid") => Some(self.uuid_in.clone()),
                    Some("jsonb") => Some(self.jsonb_in.clone()),
                    _ => None,
                }
            };
            let literal = |e: &Expr| matches!(e, Expr::Literal(ScalarValue::Utf8(Some(_)), _));
            // A text literal compared with a `character(n)` value is one: its trailing spaces
            // do not count.
            let bpchar = |e: &Expr| {
                // A column: a cast of one has the cast's type, whatever metadata DataFusion's
                // cast carries over.
                matches!(e, Expr::Column(_))
                    && e.to_field(schema).is_ok_and(|(_, field)| {
                        matches!(
                            crate::catalog::pg_char::of_field(&field),
                            Some((crate::catalog::pg_char::CharKind::Bpchar, _))
                        )
                    })
            };
            let trim = |e: &mut Expr| {
                if let Expr::Literal(ScalarValue::Utf8(Some(text)), _) = e {
                    text.truncate(text.trim_end_matches(' ').len());
                }
            };
            if literal(&expr.right) && bpchar(&expr.left) {
                trim(&mut expr.right);
            } else if literal(&expr.left) && bpchar(&expr.right) {
                trim(&mut expr.left);
            }
            // So is a parameter (a value read back padded finds its row again).
            let rtrim = |e: Expr| {
                Expr::ScalarFunction(ScalarFunction::new_udf(
                    datafusion::functions::string::rtrim(),
                    vec![e, datafusion::logical_expr::lit(" ")],
                ))
            };
            if matches!(expr.right, Expr::Placeholder(_)) && bpchar(&expr.left) {
                expr.right = rtrim(expr.right);
            } else if matches!(expr.left, Expr::Placeholder(_)) && bpchar(&expr.right) {
                expr.left = rtrim(expr.left);
            }
            let read = |udf: Arc<ScalarUDF>, e: Expr| {
                Expr::ScalarFunction(ScalarFunction::new_udf(udf, vec![e]))
            };
            if literal(&expr.right)
                && let Some(udf) = reader(&expr.left)
            {
                let right = read(udf, expr.right.clone());
                return Ok(PlannerResult::Planned(Expr::BinaryExpr(
                    datafusion::logical_expr::BinaryExpr::new(
                        Box::new(expr.left),
                        sql_operator(&expr.op),
                        Box::new(right),
                    ),
                )));
            }
            if literal(&expr.left)
                && let Some(udf) = reader(&expr.right)
            {
                let left = read(udf, expr.left.clone());
                return Ok(PlannerResult::Planned(Expr::BinaryExpr(
                    datafusion::logical_expr::BinaryExpr::new(
                        Box::new(left),
                        sql_operator(&expr.op),
                        Box::new(expr.right),
                    ),
                )));
            }
        }
        if json_operator && is_json(&expr.left) {
            let (op, left, right) = (expr.op.clone(), expr.left.clone(), expr.right.clone());
            if let Some(planned) = self.json_operator(&op, left, right) {
                return Ok(PlannerResult::Planned(planned));
            }
        }
        let planned = match expr.op {
            BinaryOperator::Multiply if is_interval(&expr.left) && is_number(&expr.right) => {
                call(&self.mul, expr.left, expr.right)
            }
            BinaryOperator::Multiply if is_number(&expr.left) && is_interval(&expr.right) => {
                call(&self.mul, expr.right, expr.left)
            }
            BinaryOperator::Divide if is_interval(&expr.left) && is_number(&expr.right) => {
                call(&self.div, expr.left, expr.right)
            }
            _ => return Ok(PlannerResult::Original(expr)),
        };
        Ok(PlannerResult::Planned(planned))
    }
}

/// An interval as PostgreSQL's `interval_mul` scales one: months, days and microseconds each
/// scaled, the fraction of a month carried into days (a month is 30 days) and the fraction of a
/// day into the time (a day is 24 hours), rounded to the microsecond.
fn interval_scale(
    name: &str,
    scale: impl Fn(f64, f64) -> std::result::Result<f64, crate::error::Error> + Send + Sync + 'static,
) -> ScalarUDF {
    create_udf(
        name,
        vec![INTERVAL, DataType::Float64],
        INTERVAL,
        Volatility::Immutable,
        Arc::new(make_scalar_function(
            move |args: &[ArrayRef]| {
                let intervals = args[0].as_primitive::<IntervalMonthDayNanoType>();
                let factors = args[1].as_primitive::<Float64Type>();
                let scaled: IntervalMonthDayNanoArray = intervals
                    .iter()
                    .zip(factors.iter())
                    .map(|(interval, factor)| match (interval, factor) {
                        (Some(v), Some(f)) => scaled_interval(v, f, &scale).map(Some),
                        _ => Ok(None),
                    })
                    .collect::<Result<_>>()?;
                Ok(Arc::new(scaled) as ArrayRef)
            },
            vec![],
        )),
    )
}

fn scaled_interval(
    v: IntervalMonthDayNano,
    factor: f64,
    scale: &impl Fn(f64, f64) -> std::result::Result<f64, crate::error::Error>,
) -> Result<IntervalMonthDayNano> {
    const DAYS_PER_MONTH: f64 = 30.0;
    const SECS_PER_DAY: f64 = 86_400.0;
    let round_micros = |x: f64| (x * 1e6).round_ties_even() / 1e6;
    let out_of_range = || crate::error::Error::coded("22008", "interval out of range");
    let external = |e: crate::error::Error| datafusion::error::DataFusionError::External(e.into());
    let to_i32 = |x: f64| {
        if x.is_finite() && x >= f64::from(i32::MIN) && x <= f64::from(i32::MAX) {
            Ok(x.trunc() as i32)
        } else {
            Err(external(out_of_range()))
        }
    };

    let months_exact = scale(f64::from(v.months), factor).map_err(external)?;
    let days_exact = scale(f64::from(v.days), factor).map_err(external)?;
    let months = to_i32(months_exact)?;
    let mut days = to_i32(days_exact)?;
    let month_remainder_days = round_micros((months_exact - f64::from(months)) * DAYS_PER_MONTH);
    let mut sec_remainder = round_micros(
        (days_exact - f64::from(days) + month_remainder_days - month_remainder_days.trunc())
            * SECS_PER_DAY,
    );
    if sec_remainder.abs() >= SECS_PER_DAY {
        let whole_days = (sec_remainder / SECS_PER_DAY).trunc();
        days = days
            .checked_add(whole_days as i32)
            .ok_or_else(|| external(out_of_range()))?;
        sec_remainder -= whole_days * SECS_PER_DAY;
    }
    days = days
        .checked_add(month_remainder_days.trunc() as i32)
        .ok_or_else(|| external(out_of_range()))?;
    let micros =
        scale((v.nanoseconds / 1000) as f64, factor).map_err(external)? + sec_remainder * 1e6;
    let micros = micros.round_ties_even();
    if !micros.is_finite() || micros.abs() >= 9.2e18 {
        return Err(external(out_of_range()));
    }
    Ok(IntervalMonthDayNano::new(
        months,
        days,
        (micros as i64)
            .checked_mul(1000)
            .ok_or_else(|| external(out_of_range()))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mul(months: i32, days: i32, micros: i64, factor: f64) -> (i32, i32, i64) {
        let v = scaled_interval(
            IntervalMonthDayNano::new(months, days, micros * 1000),
            factor,
            &|v, f| Ok(v * f),
        )
        .unwrap();
        (v.months, v.days, v.nanoseconds / 1000)
    }

    #[test]
    fn scales_as_postgresql_does() {
        const HOUR: i64 = 3_600_000_000;
        // 2 * '13 hours' = '26:00:00' (hours are not carried into days).
        assert_eq!(mul(0, 0, 13 * HOUR, 2.0), (0, 0, 26 * HOUR));
        // '1 month' * 1.5 = '1 mon 15 days'.
        assert_eq!(mul(1, 0, 0, 1.5), (1, 15, 0));
        // '1 day' / 2 = '12:00:00'.
        assert_eq!(mul(0, 1, 0, 0.5), (0, 0, 12 * HOUR));
        // '1 mon 1 day' * 0.3 = '9 days 07:12:00'.
        assert_eq!(mul(1, 1, 0, 0.3), (0, 9, 7 * HOUR + 12 * 60_000_000));
    }
}
