//! The transition and combine functions PostgreSQL's own aggregates are built from, which
//! PostgreSQL lets users call: `float8_accum` and `float8_combine` (the running count, sum and
//! sum of squared deviations behind `variance` and `stddev`), `float8_regr_accum` and
//! `float8_regr_combine` (the same for two variables, behind `regr_*`, `covar_*` and `corr`),
//! and `booland_statefunc` / `boolor_statefunc` (behind `bool_and` / `bool_or`). The
//! arithmetic is PostgreSQL's (Youngs-Cramer), so the states agree to the last digit.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Builder, ListBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// Registers the functions of this module.
pub fn register(ctx: &SessionContext) {
    for kind in [
        Kind::Accum,
        Kind::Combine,
        Kind::RegrAccum,
        Kind::RegrCombine,
        Kind::BoolAnd,
        Kind::BoolOr,
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(Transition {
            kind,
            signature: Signature::any(kind.arguments(), Volatility::Immutable),
        }));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Accum,
    Combine,
    RegrAccum,
    RegrCombine,
    BoolAnd,
    BoolOr,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Accum => "float8_accum",
            Kind::Combine => "float8_combine",
            Kind::RegrAccum => "float8_regr_accum",
            Kind::RegrCombine => "float8_regr_combine",
            Kind::BoolAnd => "booland_statefunc",
            Kind::BoolOr => "boolor_statefunc",
        }
    }

    fn arguments(self) -> usize {
        match self {
            Kind::RegrAccum => 3,
            _ => 2,
        }
    }

    /// The length of the state array.
    fn width(self) -> usize {
        match self {
            Kind::Accum | Kind::Combine => 3,
            _ => 6,
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Transition {
    kind: Kind,
    signature: Signature,
}

fn item() -> Arc<Field> {
    Arc::new(Field::new_list_field(DataType::Float64, true))
}

fn error(message: String) -> datafusion::error::DataFusionError {
    super::pg_builtins::pg_error("XX000", message)
}

impl ScalarUDFImpl for Transition {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            Kind::BoolAnd | Kind::BoolOr => DataType::Boolean,
            _ => DataType::List(item()),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        if matches!(self.kind, Kind::BoolAnd | Kind::BoolOr) {
            let a = cast(&arrays[0], &DataType::Boolean)?;
            let b = cast(&arrays[1], &DataType::Boolean)?;
            let (a, b) = (a.as_boolean(), b.as_boolean());
            // Strict: NULL in, NULL out.
            let out: BooleanArray = (0..rows)
                .map(|i| {
                    (a.is_valid(i) && b.is_valid(i)).then(|| match self.kind {
                        Kind::BoolAnd => a.value(i) && b.value(i),
                        _ => a.value(i) || b.value(i),
                    })
                })
                .collect();
            return Ok(ColumnarValue::Array(Arc::new(out)));
        }
        let list_type = DataType::List(item());
        let state = cast(&arrays[0], &list_type)?;
        let state = state.as_list::<i32>();
        let second = match self.kind {
            Kind::Accum | Kind::RegrAccum => cast(&arrays[1], &DataType::Float64)?,
            _ => cast(&arrays[1], &list_type)?,
        };
        let third = match self.kind {
            Kind::RegrAccum => Some(cast(&arrays[2], &DataType::Float64)?),
            _ => None,
        };
        let width = self.kind.width();
        let values = |list: &datafusion::arrow::array::ListArray, i: usize| -> Result<Vec<f64>> {
            let v = list.value(i);
            let v = v.as_primitive::<Float64Type>();
            if v.len() != width || v.null_count() > 0 {
                return Err(error(format!(
                    "{}: expected {width}-element float8 array",
                    self.kind.name()
                )));
            }
            Ok(v.values().to_vec())
        };
        let mut out = ListBuilder::new(Float64Builder::new()).with_field(item());
        for i in 0..rows {
            let present = state.is_valid(i)
                && second.is_valid(i)
                && third.as_ref().is_none_or(|t| t.is_valid(i));
            if !present {
                out.append_null();
                continue;
            }
            let t = values(state, i)?;
            let next = match self.kind {
                Kind::Accum => accum(&t, second.as_primitive::<Float64Type>().value(i))?,
                Kind::RegrAccum => {
                    let x = third
                        .as_ref()
                        .map(|t| t.as_primitive::<Float64Type>().value(i))
                        .unwrap_or_default();
                    regr_accum(&t, second.as_primitive::<Float64Type>().value(i), x)?
                }
                Kind::Combine => combine(&t, &values(second.as_list::<i32>(), i)?)?,
                _ => regr_combine(&t, &values(second.as_list::<i32>(), i)?)?,
            };
            out.values().append_slice(&next);
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn overflow() -> datafusion::error::DataFusionError {
    super::pg_builtins::pg_error("22003", "value out of range: overflow".to_string())
}

/// `[N, Sx, Sxx]` after one more value.
fn accum(t: &[f64], x: f64) -> Result<Vec<f64>> {
    let (n0, sx0, mut sxx) = (t[0], t[1], t[2]);
    let n = n0 + 1.0;
    let sx = sx0 + x;
    if n0 > 0.0 {
        let tmp = x * n - sx;
        sxx += tmp * tmp / (n * n0);
        if sx.is_infinite() || sxx.is_infinite() {
            if !sx0.is_infinite() && !x.is_infinite() {
                return Err(overflow());
            }
            sxx = f64::NAN;
        }
    } else if !x.is_finite() {
        sxx = f64::NAN;
    }
    Ok(vec![n, sx, sxx])
}

/// Two `[N, Sx, Sxx]` states as one.
fn combine(a: &[f64], b: &[f64]) -> Result<Vec<f64>> {
    let (n1, sx1, sxx1) = (a[0], a[1], a[2]);
    let (n2, sx2, sxx2) = (b[0], b[1], b[2]);
    if n1 == 0.0 {
        return Ok(b.to_vec());
    }
    if n2 == 0.0 {
        return Ok(a.to_vec());
    }
    let n = n1 + n2;
    let sx = sx1 + sx2;
    let tmp = sx1 / n1 - sx2 / n2;
    let sxx = sxx1 + sxx2 + n1 * n2 * tmp * tmp / n;
    check_sums(&[(sx, sx1, sx2), (sxx, sxx1, sxx2)])?;
    Ok(vec![n, sx, sxx])
}

/// `[N, Sx, Sxx, Sy, Syy, Sxy]` after one more pair.
fn regr_accum(t: &[f64], y: f64, x: f64) -> Result<Vec<f64>> {
    let (n0, sx0, mut sxx, sy0, mut syy, mut sxy) = (t[0], t[1], t[2], t[3], t[4], t[5]);
    let n = n0 + 1.0;
    let sx = sx0 + x;
    let sy = sy0 + y;
    if n0 > 0.0 {
        let tmp_x = x * n - sx;
        let tmp_y = y * n - sy;
        let scale = 1.0 / (n * n0);
        sxx += tmp_x * tmp_x * scale;
        syy += tmp_y * tmp_y * scale;
        sxy += tmp_x * tmp_y * scale;
        if sx.is_infinite() || sxx.is_infinite() || sy.is_infinite() || syy.is_infinite() {
            if (sx.is_infinite() && !sx0.is_infinite() && !x.is_infinite())
                || (sy.is_infinite() && !sy0.is_infinite() && !y.is_infinite())
                || (sxx.is_infinite() && !x.is_infinite())
                || (syy.is_infinite() && !y.is_infinite())
            {
                return Err(overflow());
            }
            if sxx.is_infinite() {
                sxx = f64::NAN;
            }
            if syy.is_infinite() {
                syy = f64::NAN;
            }
            if sxy.is_infinite() {
                sxy = f64::NAN;
            }
        }
    } else {
        if !x.is_finite() {
            sxx = f64::NAN;
            sxy = f64::NAN;
        }
        if !y.is_finite() {
            syy = f64::NAN;
            sxy = f64::NAN;
        }
    }
    Ok(vec![n, sx, sxx, sy, syy, sxy])
}

/// Two `[N, Sx, Sxx, Sy, Syy, Sxy]` states as one.
fn regr_combine(a: &[f64], b: &[f64]) -> Result<Vec<f64>> {
    let (n1, sx1, sxx1, sy1, syy1, sxy1) = (a[0], a[1], a[2], a[3], a[4], a[5]);
    let (n2, sx2, sxx2, sy2, syy2, sxy2) = (b[0], b[1], b[2], b[3], b[4], b[5]);
    if n1 == 0.0 {
        return Ok(b.to_vec());
    }
    if n2 == 0.0 {
        return Ok(a.to_vec());
    }
    let n = n1 + n2;
    let sx = sx1 + sx2;
    let tmp1 = sx1 / n1 - sx2 / n2;
    let sxx = sxx1 + sxx2 + n1 * n2 * tmp1 * tmp1 / n;
    let sy = sy1 + sy2;
    let tmp2 = sy1 / n1 - sy2 / n2;
    let syy = syy1 + syy2 + n1 * n2 * tmp2 * tmp2 / n;
    let sxy = sxy1 + sxy2 + n1 * n2 * tmp1 * tmp2 / n;
    check_sums(&[
        (sx, sx1, sx2),
        (sxx, sxx1, sxx2),
        (sy, sy1, sy2),
        (syy, syy1, syy2),
        (sxy, sxy1, sxy2),
    ])?;
    Ok(vec![n, sx, sxx, sy, syy, sxy])
}

/// Combined sums `(sum, left, right)` that overflowed: infinite from parts that are not.
fn check_sums(sums: &[(f64, f64, f64)]) -> Result<()> {
    if sums
        .iter()
        .any(|(sum, left, right)| sum.is_infinite() && !left.is_infinite() && !right.is_infinite())
    {
        return Err(overflow());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_match_postgresql() {
        // From PostgreSQL's aggregates regression script.
        assert_eq!(
            accum(&[4.0, 140.0, 2900.0], 100.0).unwrap(),
            vec![5.0, 240.0, 6280.0]
        );
        assert_eq!(
            combine(&[3.0, 60.0, 200.0], &[2.0, 180.0, 200.0]).unwrap(),
            vec![5.0, 240.0, 6280.0]
        );
        assert_eq!(
            regr_accum(
                &[4.0, 140.0, 2900.0, 1290.0, 83075.0, 15050.0],
                200.0,
                100.0
            )
            .unwrap(),
            vec![5.0, 240.0, 6280.0, 1490.0, 95080.0, 8680.0]
        );
        assert_eq!(
            regr_combine(
                &[3.0, 60.0, 200.0, 750.0, 20000.0, 2000.0],
                &[2.0, 180.0, 200.0, 740.0, 57800.0, -3400.0]
            )
            .unwrap(),
            vec![5.0, 240.0, 6280.0, 1490.0, 95080.0, 8680.0]
        );
        assert!(accum(&[1.0, f64::MAX, 0.0], f64::MAX).is_err());
    }
}
