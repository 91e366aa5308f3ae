//! PostgreSQL's functions that users call and DataFusion lacks: `pg_sleep`, `age`,
//! `gen_random_uuid` and the reading of `uuid` text.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{Datelike, NaiveDateTime, Timelike};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, IntervalMonthDayNanoArray, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Float64Type, IntervalMonthDayNano, IntervalUnit, TimeUnit,
    TimestampMicrosecondType,
};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;

pub use crate::common::names::PG_TYPE_KEY;

/// Name of the function a cast to `uuid` is planned as.
pub const UUID_IN: &str = "augur_uuid_in";

/// Registers the functions of this module.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(AsyncScalarUDF::new(Arc::new(PgSleep::new())).into_scalar_udf());
    ctx.register_udf(ScalarUDF::new_from_impl(Age::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(UuidIn::new()));
    ctx.register_udf(gen_random_uuid());
    ctx.register_udf(super::pg_to_char::to_char());
    ctx.register_udf(super::pg_to_date::to_date());
    ctx.register_udf(super::pg_to_date::to_timestamp(
        ctx.state().config_options(),
    ));
    for function in super::pg_datetime::functions() {
        ctx.register_udf(function);
    }
    ctx.register_udf(ScalarUDF::new_from_impl(ExpandArray {
        signature: Signature::any(1, Volatility::Immutable),
    }));
    super::pg_regexp::register(ctx);
    super::pg_bytea::register(ctx);
    for function in super::pg_char::functions() {
        ctx.register_udf(function);
    }
    ctx.register_udf(ScalarUDF::new_from_impl(Format {
        signature: Signature::variadic_any(Volatility::Stable),
        spread: false,
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(Format {
        signature: Signature::any(2, Volatility::Stable),
        spread: true,
    }));
    if let Ok(array_to_string) =
        datafusion::execution::FunctionRegistry::udf(ctx, "array_to_string")
    {
        ctx.register_udf(
            array_to_string
                .as_ref()
                .clone()
                .with_aliases([CONCAT_SPREAD, CONCAT_WS_SPREAD]),
        );
    }
    ctx.register_udf(ScalarUDF::new_from_impl(MakeInterval::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(MakeTimestamp::new()));
    ctx.register_udf(unistr());
    // DataFusion takes a unit or stride only as a constant; PostgreSQL from any expression.
    for (name, constant) in [("date_trunc", 0), ("date_bin", 0)] {
        if let Ok(inner) = datafusion::execution::FunctionRegistry::udf(ctx, name) {
            ctx.register_udf(ScalarUDF::new_from_impl(RowByRow { inner, constant }));
        }
    }
    ctx.register_udf(ScalarUDF::new_from_impl(Concat::new(false)));
    ctx.register_udf(ScalarUDF::new_from_impl(Concat::new(true)));
    super::pg_transition::register(ctx);
    super::pg_variance::register(ctx);
    super::pg_frame_sum::register(ctx);
    super::pg_degrees::register(ctx);
    super::pg_power::register(ctx);
    super::pg_bits::register(ctx);
    // PostgreSQL's other names for ceil and signum.
    for (function, alias) in [("ceil", "ceiling"), ("signum", "sign")] {
        if let Ok(udf) = datafusion::execution::FunctionRegistry::udf(ctx, function) {
            ctx.register_udf(udf.as_ref().clone().with_aliases([alias]));
        }
    }
    // `transaction_timestamp()` is `now()`: the start of the transaction block.
    if let Ok(now) = datafusion::execution::FunctionRegistry::udf(ctx, "now") {
        ctx.register_udf(now.as_ref().clone().with_aliases(["transaction_timestamp"]));
    }
}

pub(crate) fn pg_error(code: &'static str, message: String) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(crate::error::Error::coded(
        code, message,
    )))
}

/// `pg_sleep(seconds)`: waits without holding a thread, so that a cancel request or
/// `statement_timeout` ends it at once. Returns `void`, which is written as an empty string.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgSleep {
    signature: Signature,
}

impl PgSleep {
    fn new() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Float64], Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for PgSleep {
    fn name(&self) -> &str {
        "pg_sleep"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // Planned as an asynchronous function; DataFusion calls invoke_async_with_args.
        Err(datafusion::error::DataFusionError::Internal(
            "pg_sleep runs asynchronously".into(),
        ))
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for PgSleep {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let seconds = args.args[0].to_array(rows)?;
        let seconds = seconds.as_primitive::<Float64Type>();
        // One sleep per row, as PostgreSQL calls it once per row.
        for i in 0..rows {
            if seconds.is_valid(i) && seconds.value(i) > 0.0 {
                let secs = seconds.value(i).min(1e9);
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
        }
        let voids: StringArray = (0..rows).map(|_| Some("")).collect();
        Ok(ColumnarValue::Array(Arc::new(voids)))
    }
}

/// `age(a, b)` and `age(a)` (from midnight today): the difference of two timestamps in years,
/// months and days as a calendar counts them (`age('2024-05-06', '2023-01-01')` is
/// `1 year 4 mons 5 days`), computed as PostgreSQL's `timestamp_age` does.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Age {
    signature: Signature,
}

impl Age {
    fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Stable),
        }
    }
}

const MICROS_TIMESTAMP: DataType = DataType::Timestamp(TimeUnit::Microsecond, None);

impl ScalarUDFImpl for Age {
    fn name(&self) -> &str {
        "age"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let timestamp_like = |t: &DataType| {
            matches!(
                t,
                DataType::Timestamp(_, _)
                    | DataType::Date32
                    | DataType::Date64
                    | DataType::Utf8
                    | DataType::Utf8View
                    | DataType::LargeUtf8
                    | DataType::Null
            )
        };
        if (1..=2).contains(&arg_types.len()) && arg_types.iter().all(timestamp_like) {
            Ok(vec![MICROS_TIMESTAMP; arg_types.len()])
        } else {
            Err(pg_error(
                "42883",
                format!(
                    "function age({}) does not exist",
                    arg_types
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let first = args.args[0].to_array(rows)?;
        let first = first.as_primitive::<TimestampMicrosecondType>();
        let second: TimestampMicrosecondArray = match args.args.get(1) {
            Some(second) => second.to_array(rows)?.as_primitive().clone(),
            None => {
                let midnight = chrono::Utc::now()
                    .date_naive()
                    .and_hms_opt(0, 0, 0)
                    .map(|t| t.and_utc().timestamp_micros());
                // age(ts) is age(midnight today, ts).
                let ages: IntervalMonthDayNanoArray = first
                    .iter()
                    .map(|ts| match (midnight, ts) {
                        (Some(m), Some(ts)) => timestamp_age(m, ts).map(Some),
                        _ => Ok(None),
                    })
                    .collect::<Result<_>>()?;
                return Ok(ColumnarValue::Array(Arc::new(ages)));
            }
        };
        let ages: IntervalMonthDayNanoArray = first
            .iter()
            .zip(second.iter())
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => timestamp_age(a, b).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<_>>()?;
        Ok(ColumnarValue::Array(Arc::new(ages)))
    }
}

/// PostgreSQL's `timestamp_age`: field-by-field differences, negative fields borrowed from the
/// next larger one (a month borrows the length of the month of the earlier timestamp).
fn timestamp_age(a: i64, b: i64) -> Result<IntervalMonthDayNano> {
    let out_of_range = || pg_error("22008", "timestamp out of range".into());
    let fields = |micros: i64| -> Result<(NaiveDateTime, i64)> {
        let t = chrono::DateTime::from_timestamp_micros(micros)
            .ok_or_else(out_of_range)?
            .naive_utc();
        Ok((t, micros.rem_euclid(1_000_000)))
    };
    let ((t1, us1), (t2, us2)) = (fields(a)?, fields(b)?);
    let mut usec = us1 - us2;
    let mut sec = i64::from(t1.second()) - i64::from(t2.second());
    let mut min = i64::from(t1.minute()) - i64::from(t2.minute());
    let mut hour = i64::from(t1.hour()) - i64::from(t2.hour());
    let mut day = i64::from(t1.day()) - i64::from(t2.day());
    let mut mon = i64::from(t1.month()) - i64::from(t2.month());
    let mut year = i64::from(t1.year()) - i64::from(t2.year());
    let negative = a < b;
    let flip = |fields: [&mut i64; 7]| {
        for f in fields {
            *f = -*f;
        }
    };
    if negative {
        flip([
            &mut usec, &mut sec, &mut min, &mut hour, &mut day, &mut mon, &mut year,
        ]);
    }
    while usec < 0 {
        usec += 1_000_000;
        sec -= 1;
    }
    while sec < 0 {
        sec += 60;
        min -= 1;
    }
    while min < 0 {
        min += 60;
        hour -= 1;
    }
    while hour < 0 {
        hour += 24;
        day -= 1;
    }
    // The month whose length a negative day count borrows: the earlier timestamp's.
    let earlier = if negative { t1 } else { t2 };
    while day < 0 {
        day += days_in_month(earlier.year(), earlier.month());
        mon -= 1;
    }
    while mon < 0 {
        mon += 12;
        year -= 1;
    }
    if negative {
        flip([
            &mut usec, &mut sec, &mut min, &mut hour, &mut day, &mut mon, &mut year,
        ]);
    }
    let months = i32::try_from(year * 12 + mon).map_err(|_| out_of_range())?;
    let days = i32::try_from(day).map_err(|_| out_of_range())?;
    let micros = ((hour * 60 + min) * 60 + sec) * 1_000_000 + usec;
    Ok(IntervalMonthDayNano::new(months, days, micros * 1000))
}

fn days_in_month(year: i32, month: u32) -> i64 {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let first = chrono::NaiveDate::from_ymd_opt(year, month, 1);
    let next = chrono::NaiveDate::from_ymd_opt(next_year, next_month, 1);
    match (first, next) {
        (Some(first), Some(next)) => (next - first).num_days(),
        _ => 30,
    }
}

/// The function `information_schema._pg_expandarray(array)` is rewritten into, under `unnest`
/// (see `sql::rewrite::expand_arrays`).
pub const EXPAND_ARRAY: &str = "augur_expandarray";

/// `augur_expandarray(array)`: each element with its place (from 1), as the records `(x, n)`
/// that `information_schema._pg_expandarray` returns, in an array per row.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: Signature,
}

impl ExpandArray {
    fn element(args: &[DataType]) -> Result<DataType> {
        match args.first() {
            Some(DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)) => {
                Ok(f.data_type().clone())
            }
            other => datafusion::common::plan_err!(
                "_pg_expandarray takes an array, not {}",
                other.map(|t| t.to_string()).unwrap_or_default()
            ),
        }
    }

    fn record(element: DataType) -> DataType {
        DataType::Struct(
            vec![
                Field::new("x", element, true),
                Field::new("n", DataType::Int32, false),
            ]
            .into(),
        )
    }
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        EXPAND_ARRAY
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let record = Self::record(Self::element(args)?);
        Ok(DataType::List(Arc::new(Field::new_list_field(
            record, true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let array = args.args[0].to_array(rows)?;
        let element = Self::element(&[array.data_type().clone()])?;
        let list = datafusion::arrow::compute::cast(
            &array,
            &DataType::List(Arc::new(Field::new_list_field(element.clone(), true))),
        )?;
        let list = list.as_list::<i32>();
        let offsets = list.offsets();
        let mut places = Vec::with_capacity(list.values().len());
        for row in 0..list.len() {
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            places.extend(1..=(end - start) as i32);
        }
        let DataType::Struct(fields) = Self::record(element) else {
            return datafusion::common::internal_err!("a record type that is not a struct");
        };
        let records = datafusion::arrow::array::StructArray::try_new(
            fields,
            vec![
                list.values().clone(),
                Arc::new(datafusion::arrow::array::Int32Array::from(places)),
            ],
            None,
        )?;
        let out = datafusion::arrow::array::ListArray::try_new(
            Arc::new(Field::new_list_field(records.data_type().clone(), true)),
            list.offsets().clone(),
            Arc::new(records),
            list.nulls().cloned(),
        )?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `gen_random_uuid()`: a version 4 UUID, typed `uuid`.
fn gen_random_uuid() -> ScalarUDF {
    ScalarUDF::new_from_impl(RandomUuid {
        signature: Signature::nullary(Volatility::Volatile),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct RandomUuid {
    signature: Signature,
}

impl ScalarUDFImpl for RandomUuid {
    fn name(&self) -> &str {
        "gen_random_uuid"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(uuid_field(false))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // DataFusion's uuid() makes version 4 UUIDs in the canonical text.
        datafusion::functions::string::uuid().invoke_with_args(args)
    }
}

fn uuid_field(nullable: bool) -> FieldRef {
    Arc::new(
        Field::new("uuid", DataType::Utf8, nullable).with_metadata(
            [(PG_TYPE_KEY.to_string(), "uuid".to_string())]
                .into_iter()
                .collect(),
        ),
    )
}

/// A UUID's canonical text: lower case, hyphens after 8, 12, 16 and 20 digits.
pub fn uuid_text(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Reads `text` as PostgreSQL's `uuid_in` does: 32 hexadecimal digits, in either case,
/// optionally in braces, with a hyphen allowed after any group of four digits.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    let mut bytes = [0u8; 16];
    let mut digits = 0usize;
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        let value = c.to_digit(16)? as u8;
        if digits >= 32 {
            return None;
        }
        bytes[digits / 2] |= if digits.is_multiple_of(2) {
            value << 4
        } else {
            value
        };
        digits += 1;
        if digits.is_multiple_of(4) && digits < 32 && chars.peek() == Some(&'-') {
            chars.next();
            chars.peek()?;
        }
    }
    (digits == 32).then_some(bytes)
}

/// `augur_uuid_in(text)`: text cast to `uuid`: checked (`22P02`) and written in the canonical
/// lower-case form, typed `uuid`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct UuidIn {
    signature: Signature,
}

impl UuidIn {
    fn new() -> Self {
        Self {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Null]),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for UuidIn {
    fn name(&self) -> &str {
        UUID_IN
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(uuid_field(
            args.arg_fields.first().is_none_or(|f| f.is_nullable()),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let texts = args.args[0].to_array(args.number_rows)?;
        let texts = datafusion::arrow::compute::cast(&texts, &DataType::Utf8)?;
        let uuids: StringArray = texts
            .as_string::<i32>()
            .iter()
            .map(|text| {
                text.map(|text| {
                    parse_uuid(text).map(|b| uuid_text(&b)).ok_or_else(|| {
                        pg_error(
                            "22P02",
                            format!("invalid input syntax for type uuid: \"{text}\""),
                        )
                    })
                })
                .transpose()
            })
            .collect::<Result<_>>()?;
        Ok(if scalar && !uuids.is_empty() {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&uuids, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(uuids) as ArrayRef)
        })
    }
}

/// `format(formatstr, args...)`: PostgreSQL's `%s` (text; NULL is empty), `%I` (an identifier,
/// quoted when it must be), `%L` (a literal, `NULL` for NULL) and `%%`, with argument positions
/// (`%2$s`), `-` and widths (`%-10s`, `%*s`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: Signature,
    /// `format(f, VARIADIC array)` ([`FORMAT_SPREAD`]): the arguments are the elements of the
    /// one array after the template (none when it is NULL).
    spread: bool,
}

/// The name `format(f, VARIADIC array)` is called by (see `sql::postgresql_token_forms`).
pub const FORMAT_SPREAD: &str = "augur_format_variadic";
/// The names `concat(VARIADIC array)` and `concat_ws(sep, VARIADIC array)` are called by:
/// `array_to_string`, which skips NULL elements as they skip NULL arguments.
pub const CONCAT_SPREAD: &str = "augur_concat_variadic";
/// See [`CONCAT_SPREAD`].
pub const CONCAT_WS_SPREAD: &str = "augur_concat_ws_variadic";

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        if self.spread { FORMAT_SPREAD } else { "format" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let Some((template, values)) = arrays.split_first() else {
            return Err(pg_error("42883", "function format() does not exist".into()));
        };
        let template = datafusion::arrow::compute::cast(template, &DataType::Utf8)?;
        let template = template.as_string::<i32>();
        let mut out = datafusion::arrow::array::StringBuilder::new();
        for row in 0..rows {
            if template.is_null(row) {
                out.append_null();
                continue;
            }
            let values = values
                .iter()
                .map(|a| ScalarValue::try_from_array(a, row))
                .collect::<Result<Vec<_>>>()?;
            let values = match (self.spread, values.as_slice()) {
                (false, _) => values,
                (true, [list]) if list.is_null() => vec![],
                (true, [ScalarValue::List(list)]) => {
                    let elements = list.value(0);
                    (0..elements.len())
                        .map(|k| ScalarValue::try_from_array(&elements, k))
                        .collect::<Result<Vec<_>>>()?
                }
                (true, _) => {
                    return Err(pg_error(
                        "42804",
                        "VARIADIC argument must be an array".into(),
                    ));
                }
            };
            out.append_value(format_text(template.value(row), &values)?);
        }
        let result: ArrayRef = Arc::new(out.finish());
        Ok(if scalar && !result.is_empty() {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?)
        } else {
            ColumnarValue::Array(result)
        })
    }
}

fn format_text(template: &str, values: &[ScalarValue]) -> Result<String> {
    let invalid = |message: &str| pg_error("22023", message.to_string());
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    let mut next = 0usize;
    let number = |chars: &mut std::iter::Peekable<std::str::Chars>| -> Option<usize> {
        let mut digits = String::new();
        while let Some(c) = chars.peek().filter(|c| c.is_ascii_digit()) {
            digits.push(*c);
            chars.next();
        }
        digits.parse().ok()
    };
    let argument = |index: usize| -> Result<&ScalarValue> {
        values
            .get(index)
            .ok_or_else(|| invalid("too few arguments for format()"))
    };
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // %[position$][flags][width]type
        let mut position = None;
        let mut left = false;
        let mut width: Option<i64> = None;
        let save = chars.clone();
        if let Some(n) = number(&mut chars) {
            if chars.peek() == Some(&'$') {
                chars.next();
                if n == 0 {
                    return Err(invalid(
                        "format specifies argument 0, but arguments are numbered from 1",
                    ));
                }
                position = Some(n - 1);
            } else {
                chars = save;
            }
        }
        if chars.peek() == Some(&'-') {
            chars.next();
            left = true;
        }
        if chars.peek() == Some(&'*') {
            chars.next();
            let index = match number(&mut chars) {
                Some(n) if chars.peek() == Some(&'$') => {
                    chars.next();
                    let index = n.checked_sub(1).ok_or_else(|| {
                        invalid("format specifies argument 0, but arguments are numbered from 1")
                    })?;
                    // As in PostgreSQL, the value without a position of its own is the
                    // argument after the width's.
                    next = index + 1;
                    index
                }
                Some(_) => return Err(invalid("unterminated format() type specifier")),
                None => {
                    let i = next;
                    next += 1;
                    i
                }
            };
            let w = argument(index)?;
            width = if w.is_null() {
                None
            } else {
                Some(
                    w.cast_to(&DataType::Int64)
                        .ok()
                        .and_then(|v| match v {
                            ScalarValue::Int64(v) => v,
                            _ => None,
                        })
                        .ok_or_else(|| invalid("width argument must be an integer"))?,
                )
            };
        } else if let Some(n) = number(&mut chars) {
            width = Some(n as i64);
        }
        let kind = chars
            .next()
            .ok_or_else(|| invalid("unterminated format() type specifier"))?;
        let index = match position {
            Some(p) => p,
            None => {
                let i = next;
                next += 1;
                i
            }
        };
        if position.is_some() {
            next = index + 1;
        }
        let value = argument(index)?;
        let text = crate::server::text::value_text(value);
        let piece = match kind {
            's' => text.unwrap_or_default(),
            'I' => {
                let text = text.ok_or_else(|| {
                    pg_error(
                        "22004",
                        "null values cannot be formatted as an SQL identifier".into(),
                    )
                })?;
                quote_ident(&text)
            }
            'L' => match text {
                None => "NULL".to_string(),
                Some(text) => quote_literal(&text),
            },
            other => {
                return Err(invalid(&format!(
                    "unrecognized format() type specifier \"{other}\""
                )));
            }
        };
        let (left, width) = match width {
            Some(w) if w < 0 => (true, w.unsigned_abs() as usize),
            Some(w) => (left, w as usize),
            None => (left, 0),
        };
        let pad = width.saturating_sub(piece.chars().count());
        if left {
            out.push_str(&piece);
            out.extend(std::iter::repeat_n(' ', pad));
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&piece);
        }
    }
    Ok(out)
}

/// An identifier as PostgreSQL's `quote_ident` writes it: as it is when it is lower case
/// letters, digits and underscores not starting with a digit, else in double quotes.
fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !datafusion::sql::sqlparser::keywords::RESERVED_FOR_COLUMN_ALIAS
            .iter()
            .any(|k| format!("{k:?}").eq_ignore_ascii_case(name));
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A literal as PostgreSQL's `quote_literal` writes it: in single quotes, quotes doubled, and
/// with `E` and backslashes doubled when it has a backslash.
fn quote_literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// `make_interval(years, months, weeks, days, hours, mins, secs)`, each argument optional and
/// nameable (`make_interval(days => 10)`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct MakeInterval {
    signature: Signature,
}

/// `make_interval`'s parameters, in order.
pub const MAKE_INTERVAL_PARAMETERS: [&str; 7] =
    ["years", "months", "weeks", "days", "hours", "mins", "secs"];

impl MakeInterval {
    fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for MakeInterval {
    fn name(&self) -> &str {
        "make_interval"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() > MAKE_INTERVAL_PARAMETERS.len()
            || !arg_types
                .iter()
                .all(|t| t.is_numeric() || matches!(t, DataType::Null | DataType::Utf8))
        {
            return Err(pg_error(
                "42883",
                "function make_interval with these arguments does not exist".into(),
            ));
        }
        Ok(vec![DataType::Float64; arg_types.len()])
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let out_of_range = || pg_error("22008", "interval out of range".into());
        let mut out = Vec::with_capacity(rows);
        'rows: for row in 0..rows {
            let mut values = [0f64; 7];
            for (i, array) in arrays.iter().enumerate() {
                let value = ScalarValue::try_from_array(array, row)?;
                if value.is_null() {
                    out.push(None);
                    continue 'rows;
                }
                values[i] = match value.cast_to(&DataType::Float64)? {
                    ScalarValue::Float64(Some(v)) => v,
                    _ => 0.0,
                };
            }
            let [years, months, weeks, days, hours, mins, secs] = values;
            let months =
                i32::try_from(years as i64 * 12 + months as i64).map_err(|_| out_of_range())?;
            let days = i32::try_from(weeks as i64 * 7 + days as i64).map_err(|_| out_of_range())?;
            let micros = (hours * 3_600e6 + mins * 60e6 + secs * 1e6).round();
            if !micros.is_finite() || micros.abs() > 9.2e18 / 1000.0 {
                return Err(out_of_range());
            }
            out.push(Some(IntervalMonthDayNano::new(
                months,
                days,
                micros as i64 * 1000,
            )));
        }
        Ok(ColumnarValue::Array(Arc::new(
            IntervalMonthDayNanoArray::from(out),
        )))
    }
}

/// `concat(any, ...)` and `concat_ws(separator, any, ...)`, replacing DataFusion's: each
/// argument written as PostgreSQL writes its type (`t` for true, `{1,2}` for an array), NULLs
/// skipped.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Concat {
    /// `concat_ws`: the first argument goes between the others.
    separated: bool,
    signature: Signature,
}

impl Concat {
    fn new(separated: bool) -> Self {
        Self {
            separated,
            signature: Signature::user_defined(Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for Concat {
    fn name(&self) -> &str {
        if self.separated {
            "concat_ws"
        } else {
            "concat"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.is_empty() || (self.separated && arg_types.len() < 2) {
            return Err(pg_error(
                "42883",
                format!("function {}() does not exist", self.name()),
            ));
        }
        Ok(arg_types
            .iter()
            .enumerate()
            .map(|(i, t)| match t {
                DataType::Utf8View | DataType::LargeUtf8 | DataType::Null => DataType::Utf8,
                _ if i == 0 && self.separated => DataType::Utf8,
                other => other.clone(),
            })
            .collect())
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        // Each argument as text once: as it is, or written as PostgreSQL writes its type.
        let texts: Vec<StringArray> = arrays
            .iter()
            .map(|array| match array.data_type() {
                DataType::Utf8 => array.as_string::<i32>().clone(),
                _ => (0..rows)
                    .map(|row| crate::server::text::field_text(array, row))
                    .collect(),
            })
            .collect();
        let (separators, values) = if self.separated {
            (Some(&texts[0]), &texts[1..])
        } else {
            (None, &texts[..])
        };
        let mut out = datafusion::arrow::array::StringBuilder::with_capacity(rows, rows * 16);
        let mut joined = String::new();
        for row in 0..rows {
            let separator = match separators {
                Some(s) if s.is_null(row) => {
                    out.append_null();
                    continue;
                }
                Some(s) => s.value(row),
                None => "",
            };
            joined.clear();
            let mut first = true;
            for value in values.iter().filter(|v| v.is_valid(row)) {
                if !first {
                    joined.push_str(separator);
                }
                joined.push_str(value.value(row));
                first = false;
            }
            out.append_value(&joined);
        }
        let array = out.finish();
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(array))
        })
    }
}

/// A function whose argument `constant` DataFusion takes only as a constant, run row by row
/// when that argument varies (`date_trunc(unit_column, ts)`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct RowByRow {
    inner: Arc<ScalarUDF>,
    constant: usize,
}

impl ScalarUDFImpl for RowByRow {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        // NULL when the unit or stride of a row is.
        let field = self.inner.return_field_from_args(args)?;
        Ok(Arc::new(field.as_ref().clone().with_nullable(true)))
    }

    fn output_ordering(
        &self,
        inputs: &[datafusion::logical_expr::sort_properties::ExprProperties],
    ) -> Result<datafusion::logical_expr::sort_properties::SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn preserves_lex_ordering(
        &self,
        inputs: &[datafusion::logical_expr::sort_properties::ExprProperties],
    ) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if self.inner.name() == "date_bin" {
            check_strides(&args.args[0])?;
        }
        if !matches!(args.args.get(self.constant), Some(ColumnarValue::Array(_))) {
            return self.inner.invoke_with_args(args);
        }
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let mut values = Vec::with_capacity(rows);
        for row in 0..rows {
            let row_args = arrays
                .iter()
                .map(|a| ScalarValue::try_from_array(a, row).map(ColumnarValue::Scalar))
                .collect::<Result<Vec<_>>>()?;
            // Strict, as PostgreSQL's are: NULL in, NULL out.
            if row_args
                .iter()
                .any(|a| matches!(a, ColumnarValue::Scalar(v) if v.is_null()))
            {
                values.push(ScalarValue::try_from(args.return_field.data_type())?);
                continue;
            }
            let value = self.inner.invoke_with_args(ScalarFunctionArgs {
                args: row_args,
                arg_fields: args.arg_fields.clone(),
                number_rows: 1,
                return_field: args.return_field.clone(),
                config_options: args.config_options.clone(),
            })?;
            values.push(match value {
                ColumnarValue::Scalar(v) => v,
                ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0)?,
            });
        }
        if values.is_empty() {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_empty_array(args.return_field.data_type()),
            ));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(values)?))
    }
}

/// Refuses the strides of `date_bin` PostgreSQL refuses: with months or years, or not positive.
fn check_strides(strides: &ColumnarValue) -> Result<()> {
    let strides = strides.to_array(1)?;
    let DataType::Interval(IntervalUnit::MonthDayNano) = strides.data_type() else {
        return Ok(());
    };
    for stride in strides
        .as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>()
        .iter()
        .flatten()
    {
        if stride.months != 0 {
            return Err(pg_error(
                "0A000",
                "timestamps cannot be binned into intervals containing months or years".into(),
            ));
        }
        if i128::from(stride.days) * 86_400_000_000_000 + i128::from(stride.nanoseconds) <= 0 {
            return Err(pg_error("22008", "stride must be greater than zero".into()));
        }
    }
    Ok(())
}

/// `unistr(text)`: the text with its Unicode escapes (`\XXXX`, `\+XXXXXX`, `\uXXXX`,
/// `\UXXXXXXXX`, `\\`) decoded.
fn unistr() -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        "unistr",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let texts = args[0].to_array(1)?;
            let texts = texts.as_string::<i32>();
            let decoded = texts
                .iter()
                .map(|text| {
                    text.map(crate::sql::unicode_escapes::unistr)
                        .transpose()
                        .map_err(|message| pg_error("42601", message))
                })
                .collect::<Result<StringArray>>()?;
            Ok(match &args[0] {
                ColumnarValue::Scalar(_) => {
                    ColumnarValue::Scalar(ScalarValue::try_from_array(&decoded, 0)?)
                }
                ColumnarValue::Array(_) => ColumnarValue::Array(Arc::new(decoded)),
            })
        }),
    )
}

/// `make_timestamp(year, month, mday, hour, min, sec)`: a `timestamp` from its fields, a
/// negative year counting years BC as PostgreSQL does.
#[derive(Debug, PartialEq, Eq, Hash)]
struct MakeTimestamp {
    signature: Signature,
}

impl MakeTimestamp {
    fn new() -> Self {
        let int = || DataType::Int64;
        Self {
            signature: Signature::exact(
                vec![int(), int(), int(), int(), int(), DataType::Float64],
                Volatility::Immutable,
            ),
        }
    }
}

/// Microseconds since 1970-01-01 of a date and time given by its fields as `make_timestamp`
/// takes them, or the error message when a field is out of range.
fn timestamp_of_fields(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: f64,
) -> std::result::Result<i64, String> {
    if year == 0 {
        return Err(format!(
            "date field value out of range: {year}-{month:02}-{day:02}"
        ));
    }
    // Year -1 is 1 BC, astronomical year 0.
    let astronomical = if year < 0 { year + 1 } else { year };
    let valid_date = (1..=12).contains(&month)
        && (1..=i64::from(super::pg_datetime::days_in_month(
            astronomical,
            month as u32,
        )))
            .contains(&day);
    if !valid_date {
        return Err(format!(
            "date field value out of range: {year}-{month:02}-{day:02}"
        ));
    }
    let micros_of_second = (second * 1e6).round();
    let time_valid = (0..=24).contains(&hour)
        && (0..=59).contains(&minute)
        && (0.0..=60e6).contains(&micros_of_second)
        && (hour < 24 || (minute == 0 && micros_of_second == 0.0));
    if !time_valid {
        return Err(format!(
            "time field value out of range: {hour}:{minute:02}:{second:02}"
        ));
    }
    let days = super::pg_datetime::days_from_civil(astronomical, month as u32, day as u32);
    days.checked_mul(86_400_000_000)
        .and_then(|d| d.checked_add((hour * 3600 + minute * 60) * 1_000_000))
        .and_then(|d| d.checked_add(micros_of_second as i64))
        .ok_or_else(|| "timestamp out of range".to_string())
}

impl ScalarUDFImpl for MakeTimestamp {
    fn name(&self) -> &str {
        "make_timestamp"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Microsecond, None))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let ints: Vec<_> = arrays[..5]
            .iter()
            .map(|a| a.as_primitive::<datafusion::arrow::datatypes::Int64Type>())
            .collect();
        let seconds = arrays[5].as_primitive::<Float64Type>();
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            if ints.iter().any(|a| a.is_null(row)) || seconds.is_null(row) {
                out.push(None);
                continue;
            }
            let [year, month, day, hour, minute] = [0, 1, 2, 3, 4].map(|i| ints[i].value(row));
            let micros = timestamp_of_fields(year, month, day, hour, minute, seconds.value(row))
                .map_err(|message| pg_error("22008", message))?;
            out.push(Some(micros));
        }
        Ok(ColumnarValue::Array(Arc::new(
            TimestampMicrosecondArray::from(out),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> i64 {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp_micros()
    }

    fn age(a: &str, b: &str) -> (i32, i32, i64) {
        let v = timestamp_age(micros(a), micros(b)).unwrap();
        (v.months, v.days, v.nanoseconds / 1000)
    }

    #[test]
    fn formats_as_postgresql_does() {
        let v = |s: &str| ScalarValue::Utf8(Some(s.into()));
        assert_eq!(
            format_text("%s-%s %%", &[v("a"), ScalarValue::Int64(Some(1))]).unwrap(),
            "a-1 %"
        );
        assert_eq!(
            format_text(
                "%I.%I %L %L",
                &[v("Tab"), v("ok_1"), v("it's"), ScalarValue::Null]
            )
            .unwrap(),
            "\"Tab\".ok_1 'it''s' NULL"
        );
        assert_eq!(
            format_text("|%-5s|%5s|", &[v("ab"), v("cd")]).unwrap(),
            "|ab   |   cd|"
        );
        assert_eq!(
            format_text("%2$s %1$s %s", &[v("a"), v("b")]).unwrap(),
            "b a b"
        );
        assert_eq!(format_text("%L", &[v("a\\b")]).unwrap(), "E'a\\\\b'");
        assert!(format_text("%s %s", &[v("a")]).is_err());
    }

    #[test]
    fn ages_as_postgresql_counts_them() {
        assert_eq!(
            age("2024-05-06 00:00:00", "2023-01-01 00:00:00"),
            (16, 5, 0)
        );
        // A negative day borrows the earlier month's length: Jan 31 to Mar 1 of a leap year.
        assert_eq!(age("2024-03-01 00:00:00", "2024-01-31 00:00:00"), (1, 1, 0));
        assert_eq!(
            age("2023-01-01 00:00:00", "2024-05-06 00:00:00"),
            (-16, -5, 0)
        );
        assert_eq!(
            age("2024-01-02 01:00:00", "2024-01-01 02:30:00"),
            (0, 0, (22 * 60 + 30) * 60_000_000)
        );
    }

    #[test]
    fn reads_uuids_as_postgresql_does() {
        let canonical = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        for text in [
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
        ] {
            assert_eq!(uuid_text(&parse_uuid(text).unwrap()), canonical, "{text}");
        }
        for bad in [
            "",
            "a0eebc99",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
            "-a0eebc99",
        ] {
            assert!(parse_uuid(bad).is_none(), "{bad}");
        }
    }
}
