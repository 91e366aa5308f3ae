//! PostgreSQL's trigonometric functions in degrees: `sind`, `cosd`, `tand`, `cotd`, `asind`,
//! `acosd`, `atand`, `atan2d`. Computed as PostgreSQL computes them (each reduced to the first
//! quadrant and scaled by the function's value at a known angle), so the exact values at
//! multiples of 30° and 45° (`sind(30)` is 0.5, not 0.49999999999999994) agree with it.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

const RADIANS_PER_DEGREE: f64 = 0.017_453_292_519_943_295;

/// Registers the functions of this module.
pub fn register(ctx: &SessionContext) {
    for name in [
        "sind", "cosd", "tand", "cotd", "asind", "acosd", "atand", "atan2d",
    ] {
        let arguments = if name == "atan2d" { 2 } else { 1 };
        ctx.register_udf(ScalarUDF::new_from_impl(Degrees {
            name,
            signature: Signature::uniform(
                arguments,
                vec![DataType::Float64],
                Volatility::Immutable,
            ),
        }));
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Degrees {
    name: &'static str,
    signature: Signature,
}

fn out_of_range() -> datafusion::error::DataFusionError {
    super::pg_builtins::pg_error("22003", "input is out of range".to_string())
}

/// The values at known angles the functions are scaled by, computed once at run time (as
/// PostgreSQL does, so that they carry the same rounding as the values they divide).
struct Constants {
    sin_30: f64,
    one_minus_cos_60: f64,
    asin_0_5: f64,
    acos_0_5: f64,
    atan_1_0: f64,
    tan_45: f64,
    cot_45: f64,
}

static CONSTANTS: std::sync::LazyLock<Constants> = std::sync::LazyLock::new(|| {
    let mut c = Constants {
        sin_30: (30.0 * RADIANS_PER_DEGREE).sin(),
        one_minus_cos_60: 1.0 - (60.0 * RADIANS_PER_DEGREE).cos(),
        asin_0_5: 0.5f64.asin(),
        acos_0_5: 0.5f64.acos(),
        atan_1_0: 1.0f64.atan(),
        tan_45: 1.0,
        cot_45: 1.0,
    };
    let (sin_45, cos_45) = (sind_q1_with(&c, 45.0), cosd_q1_with(&c, 45.0));
    c.tan_45 = sin_45 / cos_45;
    c.cot_45 = cos_45 / sin_45;
    c
});

fn sind_0_to_30(c: &Constants, x: f64) -> f64 {
    let sin_x = (x * RADIANS_PER_DEGREE).sin();
    (sin_x / c.sin_30) / 2.0
}

fn cosd_0_to_60(c: &Constants, x: f64) -> f64 {
    let one_minus_cos_x = 1.0 - (x * RADIANS_PER_DEGREE).cos();
    1.0 - (one_minus_cos_x / c.one_minus_cos_60) / 2.0
}

fn sind_q1_with(c: &Constants, x: f64) -> f64 {
    if x <= 30.0 {
        sind_0_to_30(c, x)
    } else {
        cosd_0_to_60(c, 90.0 - x)
    }
}

fn cosd_q1_with(c: &Constants, x: f64) -> f64 {
    if x <= 60.0 {
        cosd_0_to_60(c, x)
    } else {
        sind_0_to_30(c, 90.0 - x)
    }
}

fn sind_q1(x: f64) -> f64 {
    sind_q1_with(&CONSTANTS, x)
}

fn cosd_q1(x: f64) -> f64 {
    cosd_q1_with(&CONSTANTS, x)
}

fn asind_q1(x: f64) -> f64 {
    let c = &*CONSTANTS;
    if x <= 0.5 {
        (x.asin() / c.asin_0_5) * 30.0
    } else {
        90.0 - (x.acos() / c.acos_0_5) * 60.0
    }
}

fn acosd_q1(x: f64) -> f64 {
    let c = &*CONSTANTS;
    if x <= 0.5 {
        90.0 - (x.asin() / c.asin_0_5) * 30.0
    } else {
        (x.acos() / c.acos_0_5) * 60.0
    }
}

/// `x` reduced to [0, 90] degrees, with the signs the reduction gives `sin` and `cos`.
fn first_quadrant(x: f64) -> (f64, f64, f64) {
    let mut x = x % 360.0;
    let (mut sin_sign, mut cos_sign) = (1.0, 1.0);
    if x < 0.0 {
        x = -x;
        sin_sign = -sin_sign;
    }
    if x > 180.0 {
        x = 360.0 - x;
        sin_sign = -sin_sign;
    }
    if x > 90.0 {
        x = 180.0 - x;
        cos_sign = -cos_sign;
    }
    (x, sin_sign, cos_sign)
}

/// The function `name` of `x` (and `y`, for `atan2d(x, y)`).
fn degrees(name: &str, x: f64, y: f64) -> Result<f64> {
    if x.is_nan() || y.is_nan() {
        return Ok(f64::NAN);
    }
    let result = match name {
        "sind" | "cosd" | "tand" | "cotd" => {
            if x.is_infinite() {
                return Err(out_of_range());
            }
            let (q, sin_sign, cos_sign) = first_quadrant(x);
            match name {
                "sind" => sin_sign * sind_q1(q),
                "cosd" => cos_sign * cosd_q1(q),
                "tand" => {
                    let r = sin_sign * cos_sign * ((sind_q1(q) / cosd_q1(q)) / CONSTANTS.tan_45);
                    if r == 0.0 { 0.0 } else { r }
                }
                _ => {
                    let r = sin_sign * cos_sign * ((cosd_q1(q) / sind_q1(q)) / CONSTANTS.cot_45);
                    if r == 0.0 { 0.0 } else { r }
                }
            }
        }
        "asind" | "acosd" => {
            if !(-1.0..=1.0).contains(&x) {
                return Err(out_of_range());
            }
            match (name, x >= 0.0) {
                ("asind", true) => asind_q1(x),
                ("asind", false) => -asind_q1(-x),
                (_, true) => acosd_q1(x),
                (_, false) => 90.0 + asind_q1(-x),
            }
        }
        "atand" => (x.atan() / CONSTANTS.atan_1_0) * 45.0,
        _ => (x.atan2(y) / CONSTANTS.atan_1_0) * 45.0,
    };
    if result.is_infinite() && !matches!(name, "tand" | "cotd") {
        return Err(super::pg_builtins::pg_error(
            "22003",
            "value out of range: overflow".to_string(),
        ));
    }
    Ok(result)
}

impl ScalarUDFImpl for Degrees {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| {
                a.to_array(rows)
                    .and_then(|a| Ok(cast(&a, &DataType::Float64)?))
            })
            .collect::<Result<_>>()?;
        let x = arrays[0].as_primitive::<Float64Type>();
        let y = arrays.get(1).map(|a| a.as_primitive::<Float64Type>());
        let out = (0..rows)
            .map(|i| {
                let yv = match y {
                    Some(y) if y.is_null(i) => return Ok(None),
                    Some(y) => y.value(i),
                    None => 0.0,
                };
                if x.is_null(i) {
                    return Ok(None);
                }
                degrees(self.name, x.value(i), yv).map(Some)
            })
            .collect::<Result<Float64Array>>()?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_at_known_angles() {
        assert_eq!(degrees("sind", 30.0, 0.0).unwrap(), 0.5);
        assert_eq!(degrees("sind", -210.0, 0.0).unwrap(), 0.5);
        assert_eq!(degrees("cosd", 60.0, 0.0).unwrap(), 0.5);
        assert_eq!(degrees("cosd", 120.0, 0.0).unwrap(), -0.5);
        assert_eq!(degrees("tand", 45.0, 0.0).unwrap(), 1.0);
        assert_eq!(degrees("tand", 90.0, 0.0).unwrap(), f64::INFINITY);
        assert_eq!(degrees("cotd", 135.0, 0.0).unwrap(), -1.0);
        assert_eq!(degrees("asind", 0.5, 0.0).unwrap(), 30.0);
        assert_eq!(degrees("acosd", -0.5, 0.0).unwrap(), 120.0);
        assert_eq!(degrees("atand", 1.0, 0.0).unwrap(), 45.0);
        assert_eq!(degrees("atan2d", 1.0, -1.0).unwrap(), 135.0);
        assert!(degrees("asind", 2.0, 0.0).is_err());
        assert!(degrees("sind", f64::INFINITY, 0.0).is_err());
    }
}
