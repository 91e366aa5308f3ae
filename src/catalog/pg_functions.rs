//! PostgreSQL catalog functions clients call on connect that `datafusion-pg-catalog` lacks.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::ScalarValue;
use datafusion::functions::utils::make_scalar_function;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use datafusion::prelude::SessionContext;

/// Implements DataFusion's configuration-extension traits for a value a session hands to the
/// functions of its queries (read through `ScalarFunctionArgs::config_options`); it cannot be
/// `SET`. A copy shares what the value shares (its `Arc`s).
macro_rules! session_extension {
    ($type:ty, $prefix:literal) => {
        impl datafusion::common::config::ExtensionOptions for $type {
            fn as_any(&self) -> &dyn std::any::Any {
                self
            }

            fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
                self
            }

            fn cloned(&self) -> Box<dyn datafusion::common::config::ExtensionOptions> {
                Box::new(self.clone())
            }

            fn set(&mut self, key: &str, _value: &str) -> datafusion::common::Result<()> {
                datafusion::common::plan_err!("{key} cannot be set")
            }

            fn entries(&self) -> Vec<datafusion::common::config::ConfigEntry> {
                vec![]
            }
        }

        impl datafusion::common::config::ConfigExtension for $type {
            const PREFIX: &'static str = $prefix;
        }
    };
}
pub(crate) use session_extension;

/// The user a connection logged in as, among a query's configuration extensions: what
/// `current_user`, `session_user`, `user` and `current_role` return.
#[derive(Debug, Clone, Default)]
pub struct SessionUser(pub String);

session_extension!(SessionUser, "augur_user");

/// The session's settings (lower-case names), among a query's configuration extensions: what
/// `current_setting` reads.
#[derive(Debug, Clone, Default)]
pub struct SessionSettings(pub Arc<std::collections::HashMap<String, String>>);

session_extension!(SessionSettings, "augur_settings");

/// Setting `name` (lower case) of the session whose settings are among a query's `config`.
pub fn session_setting<'a>(
    config: &'a datafusion::config::ConfigOptions,
    name: &str,
) -> Option<&'a str> {
    config
        .extensions
        .get::<SessionSettings>()
        .and_then(|s| s.0.get(name))
        .map(String::as_str)
}

/// `current_setting(name [, missing_ok])`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let rows = args.number_rows;
        let settings = args.config_options.extensions.get::<SessionSettings>();
        let names = args.args[0].to_array(rows)?;
        let names = names.as_string::<i32>();
        let missing_ok = args.args.get(1).map(|a| a.to_array(rows)).transpose()?;
        let mut out = datafusion::arrow::array::StringBuilder::new();
        for i in 0..rows {
            if names.is_null(i) {
                out.append_null();
                continue;
            }
            let name = names.value(i).to_ascii_lowercase();
            match settings.and_then(|s| s.0.get(&name)) {
                Some(value) => out.append_value(value),
                None if missing_ok
                    .as_ref()
                    .is_some_and(|m| m.as_boolean().is_valid(i) && m.as_boolean().value(i)) =>
                {
                    out.append_null()
                }
                None => {
                    return Err(datafusion::error::DataFusionError::External(Box::new(
                        crate::error::Error::coded(
                            "42704",
                            format!("unrecognized configuration parameter \"{name}\""),
                        ),
                    )));
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `augur_like_escape(pattern, escape)`: a LIKE pattern written with `escape` as its escape
/// character (none when empty), rewritten with the backslash as its escape, which is what
/// DataFusion's LIKE takes.
fn like_escape() -> ScalarUDF {
    create_udf(
        crate::sql::rewrite::LIKE_ESCAPE_FUNCTION,
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = args
                .iter()
                .find_map(|a| match a {
                    ColumnarValue::Array(a) => Some(a.len()),
                    ColumnarValue::Scalar(_) => None,
                })
                .unwrap_or(1);
            let patterns = args[0].to_array(rows)?;
            let escapes = args[1].to_array(rows)?;
            let (patterns, escapes) = (patterns.as_string::<i32>(), escapes.as_string::<i32>());
            let mut out = datafusion::arrow::array::StringBuilder::new();
            for i in 0..rows {
                if patterns.is_null(i) || escapes.is_null(i) {
                    out.append_null();
                    continue;
                }
                let escape = escapes.value(i);
                let mut chars = escape.chars();
                let escape = match (chars.next(), chars.next()) {
                    (None, _) => None,
                    (Some(c), None) => Some(c),
                    _ => {
                        return Err(pg_error(
                            "22025",
                            "invalid escape string: escape string must be empty or one character",
                        ));
                    }
                };
                let mut rewritten = String::new();
                let mut pattern = patterns.value(i).chars();
                while let Some(c) = pattern.next() {
                    if Some(c) == escape {
                        let Some(next) = pattern.next() else {
                            return Err(pg_error(
                                "22025",
                                "LIKE pattern must not end with escape character",
                            ));
                        };
                        rewritten.push('\\');
                        rewritten.push(next);
                    } else if c == '\\' {
                        rewritten.push_str("\\\\");
                    } else {
                        rewritten.push(c);
                    }
                }
                out.append_value(rewritten);
            }
            let array = out.finish();
            Ok(
                if rows == 1 && args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
                    ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
                } else {
                    ColumnarValue::Array(Arc::new(array))
                },
            )
        }),
    )
}

fn pg_error(code: &'static str, message: &str) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(crate::error::Error::coded(
        code,
        message.to_string(),
    )))
}

/// `session_user` and its synonyms.
#[derive(Debug, PartialEq, Eq, Hash)]
struct UserFunction {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for UserFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let user = args
            .config_options
            .extensions
            .get::<SessionUser>()
            .map(|u| u.0.clone())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "augur".into());
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(user))))
    }
}

/// PostgreSQL's `encode(bytes, format)`: `hex`, `base64` (padded, a line break after every 76
/// characters) or `escape`. Text given for the bytes is read as a `bytea` literal
/// (`'\x0102'` is two bytes), as PostgreSQL reads an untyped literal there.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Encode {
    signature: Signature,
}

impl ScalarUDFImpl for Encode {
    fn name(&self) -> &str {
        "encode"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let rows = args.number_rows;
        let bytes = args.args[0].to_array(rows)?;
        let formats = args.args[1].to_array(rows)?;
        let bytes = datafusion::arrow::compute::cast(&bytes, &DataType::Binary)?;
        let texts = args.args[0].to_array(rows)?;
        let formats = formats.as_string::<i32>();
        let from_text = matches!(
            texts.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        );
        let texts = datafusion::arrow::compute::cast(&texts, &DataType::Utf8)?;
        let (bytes, texts) = (bytes.as_binary::<i32>(), texts.as_string::<i32>());
        let mut out = datafusion::arrow::array::StringBuilder::new();
        for i in 0..rows {
            if bytes.is_null(i) || formats.is_null(i) {
                out.append_null();
                continue;
            }
            let parsed;
            let value: &[u8] = if from_text {
                parsed = crate::common::types::parse_bytea(texts.value(i))
                    .ok_or_else(|| pg_error("22P02", "invalid input syntax for type bytea"))?;
                &parsed
            } else {
                bytes.value(i)
            };
            let text = match formats.value(i).to_ascii_lowercase().as_str() {
                "hex" => value.iter().map(|b| format!("{b:02x}")).collect(),
                "base64" => base64_lines(value),
                "escape" => value
                    .iter()
                    .map(|&b| match b {
                        b'\\' => "\\\\".to_string(),
                        0 | 0x80..=0xff => format!("\\{b:03o}"),
                        other => (other as char).to_string(),
                    })
                    .collect(),
                other => {
                    return Err(pg_error(
                        "22023",
                        &format!("unrecognized encoding: \"{other}\""),
                    ));
                }
            };
            out.append_value(text);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// Base64 as PostgreSQL writes it: padded, with a line break after every 76 characters.
fn base64_lines(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    let mut line = 0;
    for chunk in bytes.chunks(3) {
        if line == 76 {
            out.push('\n');
            line = 0;
        }
        let n = chunk.len();
        let word = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= n {
                out.push(ALPHABET[((word >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
        line += 4;
    }
    out
}

/// PostgreSQL's `decode(text, format)`, the inverse of [`Encode`]: `hex` and `base64` skip
/// whitespace (so encode's line breaks read back), base64 takes its padding.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Decode {
    signature: Signature,
}

impl ScalarUDFImpl for Decode {
    fn name(&self) -> &str {
        "decode"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Binary)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let rows = args.number_rows;
        let texts = args.args[0].to_array(rows)?;
        let formats = args.args[1].to_array(rows)?;
        let (texts, formats) = (texts.as_string::<i32>(), formats.as_string::<i32>());
        let mut out = datafusion::arrow::array::BinaryBuilder::new();
        for i in 0..rows {
            if texts.is_null(i) || formats.is_null(i) {
                out.append_null();
                continue;
            }
            let text = texts.value(i);
            let bytes = match formats.value(i).to_ascii_lowercase().as_str() {
                "hex" => decode_hex(text)?,
                "base64" => decode_base64(text)?,
                "escape" => decode_escape(text)?,
                other => {
                    return Err(pg_error(
                        "22023",
                        &format!("unrecognized encoding: \"{other}\""),
                    ));
                }
            };
            out.append_value(bytes);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn decode_hex(text: &str) -> datafusion::error::Result<Vec<u8>> {
    let digits: Vec<u32> = text
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .map(|c| {
            c.to_digit(16)
                .ok_or_else(|| pg_error("22023", &format!("invalid hexadecimal digit: \"{c}\"")))
        })
        .collect::<datafusion::error::Result<_>>()?;
    if digits.len() % 2 == 1 {
        return Err(pg_error(
            "22023",
            "invalid hexadecimal data: odd number of digits",
        ));
    }
    Ok(digits
        .chunks(2)
        .map(|pair| (pair[0] * 16 + pair[1]) as u8)
        .collect())
}

fn decode_base64(text: &str) -> datafusion::error::Result<Vec<u8>> {
    let mut out = Vec::new();
    let (mut word, mut bits) = (0u32, 0);
    let mut padding = 0;
    for c in text.chars().filter(|c| !c.is_ascii_whitespace()) {
        let value = match c {
            'A'..='Z' => c as u32 - 'A' as u32,
            'a'..='z' => c as u32 - 'a' as u32 + 26,
            '0'..='9' => c as u32 - '0' as u32 + 52,
            '+' => 62,
            '/' => 63,
            '=' => {
                padding += 1;
                continue;
            }
            other => {
                return Err(pg_error(
                    "22023",
                    &format!("invalid symbol \"{other}\" found while decoding base64 sequence"),
                ));
            }
        };
        if padding > 0 {
            return Err(pg_error(
                "22023",
                "unexpected \"=\" while decoding base64 sequence",
            ));
        }
        word = (word << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((word >> bits) as u8);
            word &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

fn decode_escape(text: &str) -> datafusion::error::Result<Vec<u8>> {
    crate::common::types::parse_bytea_escape(text)
        .ok_or_else(|| pg_error("22P02", "invalid input syntax for type bytea"))
}

/// Name of the function that divides doubles as PostgreSQL does.
pub const FLOAT_DIVIDE: &str = "augur_float_divide";

/// `augur_float_divide(a, b)`: `a / b` for doubles, raising `22012` when `b` is zero and `a` is
/// not NaN, as PostgreSQL does (IEEE division gives an infinity or NaN).
fn float_divide() -> ScalarUDF {
    create_udf(
        FLOAT_DIVIDE,
        vec![DataType::Float64, DataType::Float64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(make_scalar_function(
            |args: &[ArrayRef]| {
                let (dividends, divisors) = (
                    args[0].as_primitive::<Float64Type>(),
                    args[1].as_primitive::<Float64Type>(),
                );
                // NaN divided by zero is NaN, as in PostgreSQL.
                if (0..dividends.len()).any(|i| {
                    dividends.is_valid(i)
                        && divisors.is_valid(i)
                        && divisors.value(i) == 0.0
                        && !dividends.value(i).is_nan()
                }) {
                    return Err(pg_error("22012", "division by zero"));
                }
                Ok(datafusion::arrow::compute::kernels::numeric::div(
                    &args[0], &args[1],
                )?)
            },
            vec![],
        )),
    )
}

/// Name of the function that gives a `real` as the decimal PostgreSQL casts it to `numeric`.
pub const FLOAT4_DECIMAL: &str = "augur_float4_decimal";

/// `augur_float4_decimal(real)`: the value to 6 significant digits (as a double), which is what
/// PostgreSQL casts a `real` to `numeric` as (`7.8::real::numeric` is 7.8, not the binary
/// value's 7.80000019073486).
fn float4_decimal() -> ScalarUDF {
    create_udf(
        FLOAT4_DECIMAL,
        vec![DataType::Float32],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = match &args[0] {
                ColumnarValue::Array(a) => a.len(),
                ColumnarValue::Scalar(_) => 1,
            };
            let values = args[0].to_array(rows)?;
            let out: datafusion::arrow::array::Float64Array = values
                .as_primitive::<datafusion::arrow::datatypes::Float32Type>()
                .iter()
                .map(|v| v.map(significant_digits))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// `v` to 6 significant digits, as C's `%.6g` writes it.
fn significant_digits(v: f32) -> f64 {
    if !v.is_finite() {
        return f64::from(v);
    }
    format!("{v:.5e}").parse().unwrap_or(f64::from(v))
}

/// Name of the function that reads text as a double as PostgreSQL does.
pub const FLOAT8_IN: &str = "augur_float8_in";

/// `augur_float8_in(text)`: PostgreSQL's reading of a `double precision`: surrounding blanks
/// allowed, `Infinity`/`inf`/`NaN` in any case, and a number too large or too small for a double
/// refused with `22003` (DataFusion's cast gives an infinity or zero).
fn float8_in() -> ScalarUDF {
    create_udf(
        FLOAT8_IN,
        vec![DataType::Utf8],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(make_scalar_function(
            |args: &[ArrayRef]| {
                let values: datafusion::arrow::array::Float64Array = args[0]
                    .as_string::<i32>()
                    .iter()
                    .map(|text| text.map(parse_float8).transpose())
                    .collect::<datafusion::error::Result<_>>()?;
                Ok(Arc::new(values) as ArrayRef)
            },
            vec![],
        )),
    )
}

fn parse_float8(text: &str) -> datafusion::error::Result<f64> {
    let trimmed = text.trim();
    let invalid = || {
        pg_error(
            "22P02",
            &format!("invalid input syntax for type double precision: \"{text}\""),
        )
    };
    let value: f64 = trimmed.parse().map_err(|_| invalid())?;
    let unsigned = trimmed.trim_start_matches(['+', '-']).to_ascii_lowercase();
    let spelled_special = matches!(unsigned.as_str(), "inf" | "infinity" | "nan");
    let mantissa = unsigned.split('e').next().unwrap_or("");
    let out_of_range = (value.is_infinite() && !spelled_special)
        || (value == 0.0 && mantissa.chars().any(|c| ('1'..='9').contains(&c)));
    if out_of_range {
        return Err(pg_error(
            "22003",
            &format!("\"{text}\" is out of range for type double precision"),
        ));
    }
    Ok(value)
}

/// An interval function of one argument: `f` maps each interval, `finish` makes the result
/// array of the values.
fn interval_function<T, A>(
    name: &str,
    return_type: DataType,
    f: impl Fn(datafusion::arrow::datatypes::IntervalMonthDayNano) -> T + Send + Sync + 'static,
    finish: impl Fn(A) -> datafusion::error::Result<ArrayRef> + Send + Sync + 'static,
) -> ScalarUDF
where
    A: FromIterator<Option<T>>,
{
    create_udf(
        name,
        vec![DataType::Interval(
            datafusion::arrow::datatypes::IntervalUnit::MonthDayNano,
        )],
        return_type,
        Volatility::Immutable,
        Arc::new(make_scalar_function(
            move |args: &[ArrayRef]| {
                finish(
                    args[0]
                        .as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>()
                        .iter()
                        .map(|v| v.map(&f))
                        .collect(),
                )
            },
            vec![],
        )),
    )
}

/// An interval function of one interval that may fail (`interval out of range`).
fn interval_map(
    name: &str,
    f: impl Fn(IntervalParts) -> Option<IntervalParts> + Send + Sync + 'static,
) -> ScalarUDF {
    use datafusion::arrow::datatypes::{IntervalMonthDayNano, IntervalMonthDayNanoType};
    let interval = DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano);
    create_udf(
        name,
        vec![interval.clone()],
        interval,
        Volatility::Immutable,
        Arc::new(make_scalar_function(
            move |args: &[ArrayRef]| {
                let out = args[0]
                    .as_primitive::<IntervalMonthDayNanoType>()
                    .iter()
                    .map(|v| {
                        v.map(|v| {
                            f(IntervalParts {
                                months: i64::from(v.months),
                                days: i64::from(v.days),
                                nanos: v.nanoseconds,
                            })
                            .and_then(|p| {
                                Some(IntervalMonthDayNano::new(
                                    i32::try_from(p.months).ok()?,
                                    i32::try_from(p.days).ok()?,
                                    p.nanos,
                                ))
                            })
                            .ok_or_else(|| pg_error("22008", "interval out of range"))
                        })
                        .transpose()
                    })
                    .collect::<datafusion::error::Result<
                        datafusion::arrow::array::IntervalMonthDayNanoArray,
                    >>()?;
                Ok(Arc::new(out) as ArrayRef)
            },
            vec![],
        )),
    )
}

/// An interval's fields, wide enough to carry between them before they are checked.
#[derive(Debug, Clone, Copy, PartialEq)]
struct IntervalParts {
    months: i64,
    days: i64,
    nanos: i64,
}

const DAY_NANOS: i64 = 86_400_000_000_000;
const DAYS_PER_MONTH: i64 = 30;

/// `justify_hours`: whole 24-hour periods of the time moved into days, the time then of the
/// days' sign.
fn justify_hours(mut v: IntervalParts) -> Option<IntervalParts> {
    v.days = v.days.checked_add(v.nanos / DAY_NANOS)?;
    v.nanos %= DAY_NANOS;
    if v.days > 0 && v.nanos < 0 {
        v.nanos += DAY_NANOS;
        v.days -= 1;
    } else if v.days < 0 && v.nanos > 0 {
        v.nanos -= DAY_NANOS;
        v.days += 1;
    }
    Some(v)
}

/// `justify_days`: whole 30-day periods moved into months, the days then of the months' sign.
fn justify_days(mut v: IntervalParts) -> Option<IntervalParts> {
    v.months = v.months.checked_add(v.days / DAYS_PER_MONTH)?;
    v.days %= DAYS_PER_MONTH;
    if v.months > 0 && v.days < 0 {
        v.days += DAYS_PER_MONTH;
        v.months -= 1;
    } else if v.months < 0 && v.days > 0 {
        v.days -= DAYS_PER_MONTH;
        v.months += 1;
    }
    Some(v)
}

/// `justify_interval`: both, with every field of one sign.
fn justify_interval(mut v: IntervalParts) -> Option<IntervalParts> {
    // Days of the time's sign first, which keeps the day count in range.
    if (v.days > 0 && v.nanos > 0) || (v.days < 0 && v.nanos < 0) {
        v.months = v.months.checked_add(v.days / DAYS_PER_MONTH)?;
        v.days %= DAYS_PER_MONTH;
    }
    v.days = v.days.checked_add(v.nanos / DAY_NANOS)?;
    v.nanos %= DAY_NANOS;
    v.months = v.months.checked_add(v.days / DAYS_PER_MONTH)?;
    v.days %= DAYS_PER_MONTH;
    if v.months > 0 && (v.days < 0 || (v.days == 0 && v.nanos < 0)) {
        v.days += DAYS_PER_MONTH;
        v.months -= 1;
    } else if v.months < 0 && (v.days > 0 || (v.days == 0 && v.nanos > 0)) {
        v.days -= DAYS_PER_MONTH;
        v.months += 1;
    }
    if v.days > 0 && v.nanos < 0 {
        v.nanos += DAY_NANOS;
        v.days -= 1;
    } else if v.days < 0 && v.nanos > 0 {
        v.nanos -= DAY_NANOS;
        v.days += 1;
    }
    Some(v)
}

/// Name of the function that writes an interval as text as PostgreSQL does.
pub const INTERVAL_TEXT: &str = "augur_interval_text";

/// `augur_interval_text(interval)`: the interval's text in the session's `IntervalStyle`
/// (`1 day 02:00:00` in the default `postgres` style), what `CAST(interval AS text)` gives there
/// and what the wire carries.
#[derive(Debug, PartialEq, Eq, Hash)]
struct IntervalText {
    signature: Signature,
}

impl ScalarUDFImpl for IntervalText {
    fn name(&self) -> &str {
        INTERVAL_TEXT
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        use pgwire::types::format::interval_style::IntervalStyle;
        let style = session_setting(&args.config_options, "intervalstyle")
            .and_then(|s| IntervalStyle::try_from(s).ok())
            .unwrap_or_default();
        let intervals = args.args[0].to_array(args.number_rows)?;
        let texts: datafusion::arrow::array::StringArray = intervals
            .as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>()
            .iter()
            .map(|v| {
                v.map(|v| {
                    crate::server::text::styled_interval_text(
                        style,
                        v.months,
                        v.days,
                        v.nanoseconds / 1000,
                    )
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(texts)))
    }
}

/// Name of the function that reads interval text in the session's `IntervalStyle`.
pub const INTERVAL_IN: &str = "augur_interval_in";

/// `augur_interval_in(text)`: interval text read as PostgreSQL reads it under the session's
/// `IntervalStyle` (see [`crate::sql::interval::parse_in_style`]). Literals whose reading
/// depends on the style are planned as a call of it; others are read when they are parsed.
#[derive(Debug, PartialEq, Eq, Hash)]
struct IntervalIn {
    signature: Signature,
}

impl ScalarUDFImpl for IntervalIn {
    fn name(&self) -> &str {
        INTERVAL_IN
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Interval(
            datafusion::arrow::datatypes::IntervalUnit::MonthDayNano,
        ))
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let sql_standard = session_setting(&args.config_options, "intervalstyle")
            .is_some_and(|s| s.eq_ignore_ascii_case("sql_standard"));
        let texts = args.args[0].to_array(args.number_rows)?;
        let texts = datafusion::arrow::compute::cast(&texts, &DataType::Utf8)?;
        let intervals = texts
            .as_string::<i32>()
            .iter()
            .map(|text| {
                text.map(|text| {
                    crate::sql::interval::parse_in_style(text, sql_standard).ok_or_else(|| {
                        datafusion::error::DataFusionError::External(Box::new(
                            crate::sql::interval::invalid_text(text),
                        ))
                    })
                })
                .transpose()
            })
            .collect::<datafusion::error::Result<
                datafusion::arrow::array::IntervalMonthDayNanoArray,
            >>()?;
        Ok(ColumnarValue::Array(Arc::new(intervals)))
    }
}

/// Name of the function that orders intervals as PostgreSQL compares them.
pub const INTERVAL_KEY: &str = "augur_interval_key";

/// An interval's length in nanoseconds as PostgreSQL compares intervals: a month of 30 days, a
/// day of 24 hours.
pub fn interval_length(v: datafusion::arrow::datatypes::IntervalMonthDayNano) -> i128 {
    const DAY: i128 = 86_400_000_000_000;
    i128::from(v.months) * 30 * DAY + i128::from(v.days) * DAY + i128::from(v.nanoseconds)
}

/// `augur_interval_key(interval)`: the interval as nanoseconds with a month counted as 30 days
/// and a day as 24 hours, which is how PostgreSQL compares intervals (`'30 days' = '1 month'`
/// and `'24 hours' = '1 day'` are true there); comparisons of two intervals are planned on it.
fn interval_key() -> ScalarUDF {
    interval_function(
        INTERVAL_KEY,
        DataType::Decimal128(38, 0),
        interval_length,
        |keys: datafusion::arrow::array::Decimal128Array| {
            Ok(Arc::new(keys.with_precision_and_scale(38, 0)?) as ArrayRef)
        },
    )
}

/// Registers the functions of this module.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(like_escape());
    ctx.register_udf(interval_key());
    ctx.register_udf(float4_decimal());
    ctx.register_udf(ScalarUDF::new_from_impl(IntervalIn {
        signature: Signature::exact(vec![DataType::Utf8], Volatility::Stable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(IntervalText {
        signature: Signature::exact(
            vec![DataType::Interval(
                datafusion::arrow::datatypes::IntervalUnit::MonthDayNano,
            )],
            Volatility::Stable,
        ),
    }));
    ctx.register_udf(interval_map("justify_hours", justify_hours));
    ctx.register_udf(interval_map("justify_days", justify_days));
    ctx.register_udf(interval_map("justify_interval", justify_interval));
    ctx.register_udf(float_divide());
    ctx.register_udf(float8_in());
    ctx.register_udf(ScalarUDF::new_from_impl(Decode {
        signature: Signature::exact(vec![DataType::Utf8, DataType::Utf8], Volatility::Immutable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(Encode {
        signature: Signature::one_of(
            vec![
                datafusion::logical_expr::TypeSignature::Exact(vec![
                    DataType::Binary,
                    DataType::Utf8,
                ]),
                datafusion::logical_expr::TypeSignature::Exact(vec![
                    DataType::Utf8,
                    DataType::Utf8,
                ]),
            ],
            Volatility::Immutable,
        ),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(CurrentSetting {
        signature: Signature::one_of(
            vec![
                datafusion::logical_expr::TypeSignature::Exact(vec![DataType::Utf8]),
                datafusion::logical_expr::TypeSignature::Exact(vec![
                    DataType::Utf8,
                    DataType::Boolean,
                ]),
            ],
            Volatility::Stable,
        ),
    }));
    for name in ["session_user", "current_user", "user", "current_role"] {
        ctx.register_udf(ScalarUDF::new_from_impl(UserFunction {
            name,
            signature: Signature::nullary(Volatility::Stable),
        }));
    }
    ctx.register_udf(to_regtype());
    ctx.register_udaf(datafusion::logical_expr::AggregateUDF::new_from_impl(
        ArraySubquery::default(),
    ));
    ctx.register_udaf(datafusion::logical_expr::AggregateUDF::new_from_impl(
        super::single_value::SingleValue::default(),
    ));
    ctx.register_udf(ScalarUDF::new_from_impl(
        super::single_value::SingleUnwrap::default(),
    ));
    ctx.register_udf(super::pg_extract::function());
    ctx.register_udf(super::pg_series::function());
    for function in super::window_exclude::functions() {
        ctx.register_udwf(function);
    }
    for function in super::ordered_set::functions() {
        ctx.register_udaf(function);
    }
    ctx.register_udf(ScalarUDF::new_from_impl(TypeOf {
        signature: Signature::any(1, Volatility::Stable),
    }));
    ctx.register_udf(quote_literal());
    ctx.register_udf(size_pretty());
    ctx.register_udf(owner_name());
    ctx.register_udf(function_signature(FUNCTION_ARGUMENTS, false));
    ctx.register_udf(function_signature(FUNCTION_IDENTITY_ARGUMENTS, true));
    ctx.register_udf(function_result());
    ctx.register_udf(ScalarUDF::new_from_impl(ExpressionText {
        signature: Signature::variadic_any(Volatility::Stable),
    }));
    ctx.register_udf(bytea_in());
    ctx.register_udf(ScalarUDF::new_from_impl(JsonBuildObject::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(NotPublishable {
        signature: Signature::any(1, Volatility::Stable),
    }));
    for name in [
        "pg_type_is_visible",
        "pg_function_is_visible",
        "pg_operator_is_visible",
        "pg_opclass_is_visible",
        "pg_opfamily_is_visible",
        "pg_collation_is_visible",
        "pg_conversion_is_visible",
        "pg_statistics_obj_is_visible",
        "pg_ts_config_is_visible",
        "pg_ts_dict_is_visible",
        "pg_ts_parser_is_visible",
        "pg_ts_template_is_visible",
    ] {
        ctx.register_udf(is_visible(name));
    }
}

/// `pg_*_is_visible(oid)`: every object is in the search path (Augur has one schema).
fn is_visible(name: &str) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = ColumnarValue::values_to_arrays(args)?[0].len();
            let array: ArrayRef = Arc::new(datafusion::arrow::array::BooleanArray::from(vec![
                true;
                rows
            ]));
            Ok(ColumnarValue::Array(array))
        }),
    )
}

/// `json_build_object(key, value, ...)`: a JSON object (as text) from alternating keys and
/// values.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl JsonBuildObject {
    fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return datafusion::common::plan_err!(
                "json_build_object needs an even number of arguments (key, value, ...)"
            );
        }
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = datafusion::arrow::array::StringBuilder::with_capacity(rows, rows * 16);
        for row in 0..rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?.to_string();
                let value = json_value(&ScalarValue::try_from_array(&pair[1], row)?);
                object.insert(key, value);
            }
            out.append_value(serde_json::Value::Object(object).to_string());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn json_value(value: &ScalarValue) -> serde_json::Value {
    use serde_json::Value as J;
    if value.is_null() {
        return J::Null;
    }
    match value {
        ScalarValue::Boolean(Some(b)) => J::Bool(*b),
        ScalarValue::Int8(Some(v)) => J::from(*v),
        ScalarValue::Int16(Some(v)) => J::from(*v),
        ScalarValue::Int32(Some(v)) => J::from(*v),
        ScalarValue::Int64(Some(v)) => J::from(*v),
        ScalarValue::UInt8(Some(v)) => J::from(*v),
        ScalarValue::UInt16(Some(v)) => J::from(*v),
        ScalarValue::UInt32(Some(v)) => J::from(*v),
        ScalarValue::UInt64(Some(v)) => J::from(*v),
        ScalarValue::Float32(Some(v)) => J::from(*v),
        ScalarValue::Float64(Some(v)) => J::from(*v),
        other => J::String(other.to_string()),
    }
}

/// OIDs of built-in types by every name PostgreSQL accepts for them.
const TYPES: &[(&str, i32)] = &[
    ("bool", 16),
    ("boolean", 16),
    ("bytea", 17),
    ("char", 18),
    ("name", 19),
    ("int8", 20),
    ("bigint", 20),
    ("int2", 21),
    ("smallint", 21),
    ("int4", 23),
    ("int", 23),
    ("integer", 23),
    ("regproc", 24),
    ("text", 25),
    ("oid", 26),
    ("json", 114),
    ("float4", 700),
    ("real", 700),
    ("float8", 701),
    ("double precision", 701),
    ("bpchar", 1042),
    ("character", 1042),
    ("varchar", 1043),
    ("character varying", 1043),
    ("date", 1082),
    ("time", 1083),
    ("time without time zone", 1083),
    ("timestamp", 1114),
    ("timestamp without time zone", 1114),
    ("timestamptz", 1184),
    ("timestamp with time zone", 1184),
    ("interval", 1186),
    ("numeric", 1700),
    ("decimal", 1700),
    ("uuid", 2950),
    ("jsonb", 3802),
];

/// `to_regtype(name)`: the OID of the named type, or NULL when there is no such type (it never
/// fails, unlike a `::regtype` cast).
fn to_regtype() -> ScalarUDF {
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = arrays[0].as_string::<i32>();
            let oids: Int32Array = (0..names.len())
                .map(|i| {
                    if names.is_null(i) {
                        return None;
                    }
                    let name = names.value(i).trim().to_ascii_lowercase();
                    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
                    TYPES.iter().find(|(n, _)| *n == name).map(|(_, oid)| *oid)
                })
                .collect();
            let array: ArrayRef = Arc::new(oids);
            Ok(ColumnarValue::Array(array))
        }),
    )
}

/// `augur_array(x [ORDER BY ...])`, what `ARRAY(subquery)` becomes: `array_agg`, but an empty
/// array (not NULL) over no rows, also for a correlated subquery that matches none.
#[derive(Debug)]
struct ArraySubquery {
    /// `array_agg`, as DataFusion makes it (also for input it has ordered).
    inner: Arc<dyn datafusion::logical_expr::AggregateUDFImpl>,
}

impl Default for ArraySubquery {
    fn default() -> Self {
        Self {
            inner: Arc::new(datafusion::functions_aggregate::array_agg::ArrayAgg::default()),
        }
    }
}

impl PartialEq for ArraySubquery {
    fn eq(&self, other: &Self) -> bool {
        self.inner
            .dyn_eq(other.inner.as_ref() as &dyn std::any::Any)
    }
}

impl Eq for ArraySubquery {}

impl std::hash::Hash for ArraySubquery {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.dyn_hash(state);
    }
}

/// An empty list of the elements of list type `data_type`.
fn empty_list(data_type: &DataType) -> datafusion::common::Result<ScalarValue> {
    match data_type {
        DataType::List(field) => Ok(ScalarValue::List(Arc::new(
            datafusion::common::utils::SingleRowListArrayBuilder::new(
                datafusion::arrow::array::new_empty_array(field.data_type()),
            )
            .with_field(field)
            .build_list_array(),
        ))),
        other => datafusion::common::exec_err!("augur_array returns a list, not {other}"),
    }
}

impl datafusion::logical_expr::AggregateUDFImpl for ArraySubquery {
    fn name(&self) -> &str {
        crate::sql::rewrite::ARRAY_FUNCTION
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn state_fields(
        &self,
        args: datafusion::logical_expr::function::StateFieldsArgs,
    ) -> datafusion::common::Result<Vec<datafusion::arrow::datatypes::FieldRef>> {
        self.inner.state_fields(args)
    }

    fn order_sensitivity(&self) -> datafusion::logical_expr::utils::AggregateOrderSensitivity {
        self.inner.order_sensitivity()
    }

    fn with_beneficial_ordering(
        self: Arc<Self>,
        beneficial_ordering: bool,
    ) -> datafusion::common::Result<Option<Arc<dyn datafusion::logical_expr::AggregateUDFImpl>>>
    {
        let inner = self
            .inner
            .clone()
            .with_beneficial_ordering(beneficial_ordering)?;
        Ok(inner.map(|inner| {
            Arc::new(ArraySubquery { inner }) as Arc<dyn datafusion::logical_expr::AggregateUDFImpl>
        }))
    }

    fn accumulator(
        &self,
        args: datafusion::logical_expr::function::AccumulatorArgs,
    ) -> datafusion::common::Result<Box<dyn datafusion::logical_expr::Accumulator>> {
        let empty = empty_list(args.return_field.data_type())?;
        Ok(Box::new(EmptyWhenNone {
            inner: self.inner.accumulator(args)?,
            empty,
        }))
    }

    fn default_value(&self, data_type: &DataType) -> datafusion::common::Result<ScalarValue> {
        empty_list(data_type)
    }
}

/// `array_agg`'s accumulator, giving an empty list where it gives NULL.
#[derive(Debug)]
struct EmptyWhenNone {
    inner: Box<dyn datafusion::logical_expr::Accumulator>,
    empty: ScalarValue,
}

impl datafusion::logical_expr::Accumulator for EmptyWhenNone {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::common::Result<()> {
        self.inner.update_batch(values)
    }

    fn evaluate(&mut self) -> datafusion::common::Result<ScalarValue> {
        let value = self.inner.evaluate()?;
        Ok(if value.is_null() {
            self.empty.clone()
        } else {
            value
        })
    }

    fn size(&self) -> usize {
        self.inner.size() + self.empty.size()
    }

    fn state(&mut self) -> datafusion::common::Result<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::common::Result<()> {
        self.inner.merge_batch(states)
    }
}

/// `pg_get_expr(expr, relation [, pretty])`: Augur's catalogs keep expressions (`pg_attrdef`'s
/// defaults) as SQL text, so this is that text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpressionText {
    signature: Signature,
}

impl ScalarUDFImpl for ExpressionText {
    fn name(&self) -> &str {
        "pg_get_expr"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let Some(expr) = args.args.first() else {
            return datafusion::common::plan_err!("pg_get_expr needs an expression");
        };
        expr.cast_to(&DataType::Utf8, None)
    }
}

fn text_at(array: &datafusion::arrow::array::StringArray, row: usize) -> Option<&str> {
    (!array.is_null(row)).then(|| array.value(row))
}

/// `pg_get_userbyid(oid)`: `augur`, the role that owns every object (Augur has no
/// privileges, so ownership means nothing more).
fn owner_name() -> ScalarUDF {
    create_udf(
        "pg_get_userbyid",
        vec![DataType::Int32],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            make_scalar_function(
                |arrays: &[ArrayRef]| {
                    let out: datafusion::arrow::array::StringArray = (0..arrays[0].len())
                        .map(|i| (!arrays[0].is_null(i)).then_some("augur"))
                        .collect();
                    Ok(Arc::new(out) as ArrayRef)
                },
                vec![],
            )(args)
        }),
    )
}

/// `pg_size_pretty(bytes)`: a size in bytes, kB, MB, GB, TB or PB, as PostgreSQL writes it
/// (a unit is used below 10 of the next; rounded half up).
fn size_pretty() -> ScalarUDF {
    create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            make_scalar_function(
                |arrays: &[ArrayRef]| {
                    let sizes = arrays[0].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                    let out: datafusion::arrow::array::StringArray =
                        sizes.iter().map(|size| size.map(pretty_size)).collect();
                    Ok(Arc::new(out) as ArrayRef)
                },
                vec![],
            )(args)
        }),
    )
}

fn pretty_size(mut size: i64) -> String {
    // (name, limit below which it is used, rounded, bits)
    const UNITS: &[(&str, i64, bool, u32)] = &[
        ("bytes", 10 * 1024, false, 0),
        ("kB", 20 * 1024 - 1, true, 10),
        ("MB", 20 * 1024 - 1, true, 20),
        ("GB", 20 * 1024 - 1, true, 30),
        ("TB", 20 * 1024 - 1, true, 40),
        ("PB", 20 * 1024 - 1, true, 50),
    ];
    for (i, &(name, limit, round, bits)) in UNITS.iter().enumerate() {
        let next = UNITS.get(i + 1);
        if next.is_none() || size.abs() < limit {
            if round {
                size = (size + if size < 0 { -1 } else { 1 }) / 2;
            }
            return format!("{size} {name}");
        }
        if let Some(&(_, _, next_round, next_bits)) = next {
            // One bit fewer when the next unit rounds: it halves what is left.
            let shift = next_bits - bits - u32::from(next_round) + u32::from(round);
            size /= 1i64 << shift;
        }
    }
    format!("{size} bytes")
}

/// `augur_function_arguments(proargtypes, proargnames, proallargtypes, proargmodes)`: what
/// `pg_get_function_arguments(oid)` gives for a `pg_proc` row.
pub const FUNCTION_ARGUMENTS: &str = "augur_function_arguments";

/// The same without `OUT` arguments: `pg_get_function_identity_arguments(oid)`.
pub const FUNCTION_IDENTITY_ARGUMENTS: &str = "augur_function_identity_arguments";

/// `augur_function_result(prorettype, proretset, proargnames, proallargtypes, proargmodes)`:
/// what `pg_get_function_result(oid)` gives for a `pg_proc` row.
pub const FUNCTION_RESULT: &str = "augur_function_result";

/// The items of a `pg_proc` array column as the catalog keeps it (`{a,b}` or `['a', 'b']`).
fn catalog_list(text: Option<&str>) -> Vec<String> {
    let Some(text) = text else {
        return vec![];
    };
    let inner = text
        .trim()
        .trim_start_matches(['{', '['])
        .trim_end_matches(['}', ']']);
    inner
        .split([',', ' '])
        .map(|item| item.trim().trim_matches(['\'', '"']).to_string())
        .filter(|item| !item.is_empty())
        .collect()
}

/// The name `format_type` gives the type with OID `oid`.
pub fn type_name(oid: u32) -> String {
    let sql_name = match oid {
        16 => "boolean",
        18 => "\"char\"",
        20 => "bigint",
        21 => "smallint",
        23 => "integer",
        700 => "real",
        701 => "double precision",
        1042 => "character",
        1043 => "character varying",
        1083 => "time without time zone",
        1114 => "timestamp without time zone",
        1184 => "timestamp with time zone",
        1266 => "time with time zone",
        1560 => "bit",
        1562 => "bit varying",
        2276 => "\"any\"",
        _ => "",
    };
    if !sql_name.is_empty() {
        return sql_name.to_string();
    }
    match postgres_types::Type::from_oid(oid) {
        Some(t) => match t.kind() {
            postgres_types::Kind::Array(element) => format!("{}[]", type_name(element.oid())),
            _ => t.name().to_string(),
        },
        None => format!("oid({oid})"),
    }
}

/// One argument per type, with its mode and name: `OUT word text`, `VARIADIC "any"`.
fn arguments(
    types: Option<&str>,
    names: Option<&str>,
    all_types: Option<&str>,
    modes: Option<&str>,
    identity: bool,
) -> String {
    let all_types = catalog_list(all_types);
    let types = if all_types.is_empty() {
        catalog_list(types)
    } else {
        all_types
    };
    let names = catalog_list(names);
    let modes = catalog_list(modes);
    types
        .iter()
        .enumerate()
        .filter_map(|(i, oid)| {
            let mode = modes.get(i).map(String::as_str).unwrap_or("i");
            let prefix = match mode {
                "o" if identity => return None,
                "t" => return None,
                "o" => "OUT ",
                "b" => "INOUT ",
                "v" => "VARIADIC ",
                _ => "",
            };
            let name = names
                .get(i)
                .filter(|n| !n.is_empty())
                .map(|n| format!("{n} "))
                .unwrap_or_default();
            Some(format!(
                "{prefix}{name}{}",
                type_name(oid.parse().unwrap_or(0))
            ))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn function_signature(name: &str, identity: bool) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8; 4],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            make_scalar_function(
                |arrays: &[ArrayRef]| {
                    let text = |i: usize| arrays[i].as_string::<i32>();
                    let (types, names, all, modes) = (text(0), text(1), text(2), text(3));
                    let out: datafusion::arrow::array::StringArray = (0..types.len())
                        .map(|row| {
                            let get = |a| text_at(a, row);
                            Some(arguments(
                                get(types),
                                get(names),
                                get(all),
                                get(modes),
                                identity,
                            ))
                        })
                        .collect();
                    Ok(Arc::new(out) as ArrayRef)
                },
                vec![],
            )(args)
        }),
    )
}

fn function_result() -> ScalarUDF {
    create_udf(
        FUNCTION_RESULT,
        vec![
            DataType::Int32,
            DataType::Boolean,
            DataType::Utf8,
            DataType::Utf8,
            DataType::Utf8,
        ],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            make_scalar_function(
                |arrays: &[ArrayRef]| {
                    let result =
                        arrays[0].as_primitive::<datafusion::arrow::datatypes::Int32Type>();
                    let set = arrays[1].as_boolean();
                    let text = |i: usize| arrays[i].as_string::<i32>();
                    let (names, all, modes) = (text(2), text(3), text(4));
                    let out: datafusion::arrow::array::StringArray = (0..result.len())
                        .map(|row| {
                            if result.is_null(row) {
                                return None;
                            }
                            let get = |a| text_at(a, row);
                            let modes_list = catalog_list(get(modes));
                            if modes_list.iter().any(|m| m == "t") {
                                // RETURNS TABLE: the table's columns are the `t` arguments.
                                let types = catalog_list(get(all));
                                let names = catalog_list(get(names));
                                let columns: Vec<String> = modes_list
                                    .iter()
                                    .enumerate()
                                    .filter(|(_, m)| *m == "t")
                                    .map(|(i, _)| {
                                        format!(
                                            "{} {}",
                                            names.get(i).cloned().unwrap_or_default(),
                                            type_name(
                                                types
                                                    .get(i)
                                                    .and_then(|t| t.parse().ok())
                                                    .unwrap_or(0)
                                            )
                                        )
                                    })
                                    .collect();
                                return Some(format!("TABLE({})", columns.join(", ")));
                            }
                            let setof = if !set.is_null(row) && set.value(row) {
                                "SETOF "
                            } else {
                                ""
                            };
                            Some(format!("{setof}{}", type_name(result.value(row) as u32)))
                        })
                        .collect();
                    Ok(Arc::new(out) as ArrayRef)
                },
                vec![],
            )(args)
        }),
    )
}

/// `pg_relation_is_publishable(relation)`: Augur has no logical replication publications. Takes
/// an OID or its text (`'16455'`), as psql passes it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NotPublishable {
    signature: Signature,
}

impl ScalarUDFImpl for NotPublishable {
    fn name(&self) -> &str {
        "pg_relation_is_publishable"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let array: ArrayRef = Arc::new(datafusion::arrow::array::BooleanArray::from(vec![
            false;
            args.number_rows
        ]));
        Ok(ColumnarValue::Array(array))
    }
}

/// `augur_bytea_in(text)`: PostgreSQL's text form of `bytea` (`\\x0102ff`, or the escape form
/// with `\\ooo` octal bytes) to bytes. Augur plans it wherever text is cast to `bytea`, where
/// a plain cast would keep the characters themselves.
pub const BYTEA_IN: &str = "augur_bytea_in";

fn bytea_in() -> ScalarUDF {
    create_udf(
        BYTEA_IN,
        vec![DataType::Utf8],
        DataType::Binary,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let texts = arrays[0].as_string::<i32>();
            let mut out = datafusion::arrow::array::BinaryBuilder::new();
            for text in texts.iter() {
                match text {
                    None => out.append_null(),
                    Some(text) => match crate::common::types::parse_bytea(text) {
                        Some(bytes) => out.append_value(bytes),
                        None => {
                            return Err(datafusion::error::DataFusionError::External(Box::new(
                                crate::error::Error::InvalidText(format!(
                                    "invalid input syntax for type bytea: \"{text}\""
                                )),
                            )));
                        }
                    },
                }
            }
            let array: ArrayRef = Arc::new(out.finish());
            Ok(ColumnarValue::Array(array))
        }),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn doubles_read_as_postgresql_reads_them() {
        assert_eq!(super::parse_float8(" 1.5 ").unwrap(), 1.5);
        assert!(super::parse_float8("-Infinity").unwrap().is_infinite());
        assert!(super::parse_float8("NaN").unwrap().is_nan());
        assert_eq!(super::parse_float8("0e10").unwrap(), 0.0);
        assert_eq!(super::parse_float8("1e308").unwrap(), 1e308);
        for out_of_range in ["10e400", "-10e400", "10e-400", "-1e-400"] {
            assert!(super::parse_float8(out_of_range).is_err(), "{out_of_range}");
        }
        assert!(super::parse_float8("abc").is_err());
    }

    #[test]
    fn sizes_read_as_postgresql_writes_them() {
        assert_eq!(super::pretty_size(0), "0 bytes");
        assert_eq!(super::pretty_size(10 * 1024 - 1), "10239 bytes");
        assert_eq!(super::pretty_size(10 * 1024), "10 kB");
        assert_eq!(super::pretty_size(1_000_000), "977 kB");
        assert_eq!(super::pretty_size(20 * 1024 * 1024), "20 MB");
        assert_eq!(super::pretty_size(10 * 1024 * 1024 * 1024), "10 GB");
        assert_eq!(super::pretty_size(-10 * 1024), "-10 kB");
    }

    #[test]
    fn function_signatures_read_as_psql_shows_them() {
        assert_eq!(
            super::arguments(Some("2276"), None, Some("[2276]"), Some("['v']"), false),
            "VARIADIC \"any\""
        );
        assert_eq!(
            super::arguments(
                Some(""),
                Some("['word', 'catcode']"),
                Some("[25, 18]"),
                Some("['o', 'o']"),
                false
            ),
            "OUT word text, OUT catcode \"char\""
        );
        assert_eq!(
            super::arguments(Some("20 1009"), None, None, None, false),
            "bigint, text[]"
        );
        assert_eq!(super::type_name(1184), "timestamp with time zone");
    }

    #[test]
    fn decode_reads_what_encode_writes() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = super::base64_lines(&bytes);
        assert!(text.contains('\n'));
        assert_eq!(super::decode_base64(&text).unwrap(), bytes);
        assert_eq!(super::decode_hex("01 ff").unwrap(), vec![1, 255]);
        assert!(super::decode_hex("abc").is_err());
        assert_eq!(super::decode_escape("a\\\\b\\001").unwrap(), b"a\\b\x01");
    }

    #[test]
    fn base64_is_padded_and_wrapped() {
        assert_eq!(super::base64_lines(b"\x01\x02"), "AQI=");
        assert_eq!(super::base64_lines(b"abc"), "YWJj");
        assert_eq!(super::base64_lines(b"a"), "YQ==");
        let long = super::base64_lines(&[0u8; 60]);
        assert_eq!(long.lines().map(str::len).collect::<Vec<_>>(), vec![76, 4]);
    }
}

/// `pg_typeof(x)`: the name of `x`'s type, as PostgreSQL writes a `regtype`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TypeOf {
    signature: Signature,
}

impl ScalarUDFImpl for TypeOf {
    fn name(&self) -> &str {
        "pg_typeof"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let field = &args.arg_fields[0];
        let name = match field.metadata().get(super::pg_builtins::PG_TYPE_KEY) {
            Some(pg_type) => match super::pg_char::parse_pg_type(pg_type) {
                Some((kind, _)) => kind.name().to_string(),
                None => pg_type.clone(),
            },
            None if field.data_type() == &DataType::Null => "unknown".to_string(),
            None => crate::common::types::pg_type_name(field.data_type()),
        };
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))))
    }
}

/// `quote_literal(text)`: the text as a string literal, quotes doubled, and written `E'...'`
/// with backslashes doubled where it has any.
fn quote_literal() -> ScalarUDF {
    create_udf(
        "quote_literal",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let texts = args[0].to_array(1)?;
            let texts = datafusion::arrow::array::cast::as_string_array(&texts);
            let quoted: datafusion::arrow::array::StringArray = texts
                .iter()
                .map(|text| {
                    text.map(|t| {
                        let body = t.replace('\'', "''");
                        if t.contains('\\') {
                            format!("E'{}'", body.replace('\\', "\\\\"))
                        } else {
                            format!("'{body}'")
                        }
                    })
                })
                .collect();
            let out: ArrayRef = Arc::new(quoted);
            Ok(match &args[0] {
                ColumnarValue::Scalar(_) => {
                    ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
                }
                ColumnarValue::Array(_) => ColumnarValue::Array(out),
            })
        }),
    )
}

#[cfg(test)]
mod float4_tests {
    use super::significant_digits;

    #[test]
    fn a_real_as_numeric_has_six_significant_digits() {
        assert_eq!(significant_digits(7.8), 7.8);
        assert_eq!(significant_digits(0.09561), 0.09561);
        assert_eq!(significant_digits(1.2345678), 1.23457);
        assert_eq!(significant_digits(-324.78), -324.78);
        assert_eq!(significant_digits(1e30), 1e30);
    }
}
