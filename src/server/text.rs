//! PostgreSQL's text output for the types whose text form the encoder writes differently:
//! floating point (PostgreSQL writes `10` and `1e+22`, not `10.0` and `1e22`) and timestamps and
//! times in the ISO date style (PostgreSQL drops a zero fraction and trailing zeros:
//! `2026-01-01 10:00:00`, `10:00:00.5`), and intervals in the `postgres` interval style, written
//! here for every value a column can hold (`-2147483648 days` included). Only text-format columns are rewritten, into strings
//! the encoder then writes as they are; binary results are untouched.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, DurationMicrosecondType, Field, Float32Type, Float64Type, IntervalMonthDayNanoType,
    IntervalUnit, Schema, Time64MicrosecondType, TimeUnit,
};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::types::format::FormatOptions;
use pgwire::types::format::interval_style::IntervalStyle;

/// Rewrites the text-format columns of `batch` whose PostgreSQL text differs from the encoder's.
/// Field metadata naming a list column's PostgreSQL vector type (`int2vector` or `oidvector`),
/// as catalog columns such as `pg_index.indkey` are: sent in text as space-separated numbers,
/// which clients (SQLAlchemy's reflection) split themselves.
pub const VECTOR_TYPE_KEY: &str = "augur.pg_vector";

/// `fields` with the text-format columns of `schema` that carry [`VECTOR_TYPE_KEY`] typed as
/// `int2vector` or `oidvector`, and those whose metadata names `uuid`, `json` or `jsonb`
/// (text columns; in binary format they stay `text`) as that type.
pub fn vector_types(schema: &Schema, fields: Vec<FieldInfo>) -> Vec<FieldInfo> {
    fields
        .into_iter()
        .zip(schema.fields())
        .map(|(info, field)| {
            // The type's OID, as a simple type: its text is one value, not an array's elements.
            let metadata = field.metadata();
            let (name, oid) = match metadata
                .get(VECTOR_TYPE_KEY)
                .or_else(|| metadata.get(crate::common::names::PG_TYPE_KEY))
                .map(String::as_str)
            {
                Some("int2vector") => ("int2vector", pgwire::api::Type::INT2_VECTOR.oid()),
                Some("oidvector") => ("oidvector", pgwire::api::Type::OID_VECTOR.oid()),
                Some("uuid") => ("uuid", pgwire::api::Type::UUID.oid()),
                Some("json") => ("json", pgwire::api::Type::JSON.oid()),
                Some("jsonb") => ("jsonb", pgwire::api::Type::JSONB.oid()),
                Some(pg_type) => match crate::catalog::pg_char::parse_pg_type(pg_type) {
                    Some((kind, _)) => (kind.internal_name(), kind.oid() as u32),
                    None => return info,
                },
                _ => return info,
            };
            let vector = pgwire::api::Type::new(
                name.to_string(),
                oid,
                postgres_types::Kind::Simple,
                "pg_catalog".to_string(),
            );
            if info.format() != FieldFormat::Text {
                return info;
            }
            FieldInfo::new(
                info.name().to_string(),
                info.table_id(),
                info.column_id(),
                vector,
                info.format(),
            )
        })
        .collect()
}

pub fn postgres_text(
    batch: RecordBatch,
    fields: &[FieldInfo],
    options: &FormatOptions,
) -> RecordBatch {
    // extra_float_digits of 0 or less: rounded to 15 (6 for real) digits plus that number;
    // above 0, the shortest text that reads back as the same value.
    let rounded = Some(i32::from(options.extra_float_digits)).filter(|d| *d <= 0);
    let iso = options
        .date_style
        .trim_start()
        .to_ascii_uppercase()
        .starts_with("ISO");
    // timestamptz values are shown in the session's time zone.
    let zone = crate::session::timezone::Zone::parse(&options.time_zone)
        .unwrap_or_else(crate::session::timezone::Zone::utc);
    let style = IntervalStyle::try_from(options.interval_style.as_str()).unwrap_or_default();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    let mut schema_fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    let mut changed = false;
    for (i, field) in fields.iter().enumerate() {
        if field.format() != FieldFormat::Text || i >= columns.len() {
            continue;
        }
        let column = &columns[i];
        let rewritten: Option<StringArray> = match column.data_type() {
            DataType::Float64 => Some(
                column
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| {
                        v.map(|v| match rounded {
                            Some(extra) => float_digits(v, 15 + extra),
                            None => float_text(v, 15),
                        })
                    })
                    .collect(),
            ),
            DataType::Float32 => Some(
                column
                    .as_primitive::<Float32Type>()
                    .iter()
                    .map(|v| {
                        v.map(|v| match rounded {
                            Some(extra) => float_digits(f64::from(v), 6 + extra),
                            None => float32_text(v),
                        })
                    })
                    .collect(),
            ),
            DataType::Timestamp(..) | DataType::Date32 if iso => {
                crate::catalog::pg_datetime::text_column(column, &zone)
                    .ok()
                    .flatten()
            }
            DataType::List(_)
                if batch
                    .schema()
                    .field(i)
                    .metadata()
                    .contains_key(VECTOR_TYPE_KEY) =>
            {
                let lists = column.as_list::<i32>();
                Some(
                    (0..lists.len())
                        .map(|row| {
                            lists.is_valid(row).then(|| {
                                let values = cast(&lists.value(row), &DataType::Utf8).ok();
                                values
                                    .map(|v| {
                                        let v = v.as_string::<i32>();
                                        (0..v.len())
                                            .map(|j| v.value(j))
                                            .collect::<Vec<_>>()
                                            .join(" ")
                                    })
                                    .unwrap_or_default()
                            })
                        })
                        .collect(),
                )
            }
            DataType::Interval(IntervalUnit::MonthDayNano) => Some(
                column
                    .as_primitive::<IntervalMonthDayNanoType>()
                    .iter()
                    .map(|v| {
                        v.map(|v| {
                            styled_interval_text(style, v.months, v.days, v.nanoseconds / 1000)
                        })
                    })
                    .collect(),
            ),
            // The difference of two timestamps: PostgreSQL's interval of whole days and a time.
            DataType::Duration(_) => {
                let micros = cast(column, &DataType::Duration(TimeUnit::Microsecond)).ok();
                micros.map(|micros| {
                    micros
                        .as_primitive::<DurationMicrosecondType>()
                        .iter()
                        .map(|v| {
                            v.map(|v| {
                                let day = 86_400_000_000;
                                let days = i32::try_from(v / day).unwrap_or(i32::MAX);
                                styled_interval_text(style, 0, days, v % day)
                            })
                        })
                        .collect()
                })
            }
            DataType::Struct(_) => Some(
                (0..column.len())
                    .map(|row| field_text(column, row))
                    .collect(),
            ),
            DataType::Time32(_) | DataType::Time64(_) => {
                let micros = cast(column, &DataType::Time64(TimeUnit::Microsecond)).ok();
                micros.map(|micros| {
                    micros
                        .as_primitive::<Time64MicrosecondType>()
                        .iter()
                        .map(|v| v.map(time_text))
                        .collect()
                })
            }
            _ => None,
        };
        // Arrays of doubles: each element as PostgreSQL writes it (`{5,2.5}`, not `{5.0,2.5}`);
        // the array keeps its type, its elements go to the encoder as text.
        if let DataType::List(element) = column.data_type()
            && matches!(element.data_type(), DataType::Float64 | DataType::Float32)
        {
            let lists = column.as_list::<i32>();
            let values = cast(lists.values(), &DataType::Float64).ok();
            if let Some(values) = values {
                let texts: StringArray = values
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| {
                        v.map(|v| match (element.data_type(), rounded) {
                            (DataType::Float32, Some(extra)) => float_digits(v, 6 + extra),
                            (DataType::Float32, None) => float32_text(v as f32),
                            (_, Some(extra)) => float_digits(v, 15 + extra),
                            (_, None) => float_text(v, 15),
                        })
                    })
                    .collect();
                let item = Arc::new(Field::new_list_field(DataType::Utf8, true));
                if let Ok(texts) = datafusion::arrow::array::ListArray::try_new(
                    item.clone(),
                    lists.offsets().clone(),
                    Arc::new(texts),
                    lists.nulls().cloned(),
                ) {
                    schema_fields[i] = Arc::new(Field::new(
                        schema_fields[i].name(),
                        DataType::List(item),
                        schema_fields[i].is_nullable(),
                    ));
                    columns[i] = Arc::new(texts);
                    changed = true;
                }
            }
            continue;
        }
        if let Some(strings) = rewritten {
            schema_fields[i] = Arc::new(Field::new(
                schema_fields[i].name(),
                DataType::Utf8,
                schema_fields[i].is_nullable(),
            ));
            columns[i] = Arc::new(strings);
            changed = true;
        }
    }
    if !changed {
        return batch;
    }
    RecordBatch::try_new(Arc::new(Schema::new(schema_fields)), columns).unwrap_or(batch)
}

/// A value as PostgreSQL's output function writes it (what `::text` and `format('%s')` give):
/// booleans `t`/`f`, doubles in their shortest form, intervals in the `postgres` style,
/// timestamptz with its UTC offset; anything else as Arrow writes it.
pub fn value_text(value: &datafusion::common::ScalarValue) -> Option<String> {
    use datafusion::common::ScalarValue as V;
    if value.is_null() {
        return None;
    }
    Some(match value {
        V::Boolean(Some(b)) => if *b { "t" } else { "f" }.to_string(),
        V::Float64(Some(v)) => float_text(*v, 15),
        V::Float32(Some(v)) => float32_text(*v),
        V::IntervalMonthDayNano(Some(v)) => interval_text(v.months, v.days, v.nanoseconds / 1000),
        V::TimestampMicrosecond(Some(v), tz) | V::TimestampNanosecond(Some(v), tz) => {
            let micros = if matches!(value, V::TimestampNanosecond(..)) {
                v.div_euclid(1000)
            } else {
                *v
            };
            let base = crate::catalog::pg_datetime::timestamp_text(micros, None);
            if tz.is_some() {
                format!("{base}+00")
            } else {
                base
            }
        }
        V::Date32(Some(days)) => crate::catalog::pg_datetime::date_text(*days),
        other => other.to_string(),
    })
}

/// Row `row` of `column` as PostgreSQL writes it, records (and arrays inside them) included;
/// None for NULL.
pub fn field_text(column: &ArrayRef, row: usize) -> Option<String> {
    if column.is_null(row) {
        return None;
    }
    match column.data_type() {
        // `(a,b,)`: a NULL field is empty; a field is quoted when it is empty or holds a quote,
        // a backslash, a parenthesis, a comma or white space (record_out).
        DataType::Struct(_) => {
            let record = column.as_struct();
            let fields: Vec<String> = record
                .columns()
                .iter()
                .map(|field| {
                    field_text(field, row).map_or_else(String::new, |text| {
                        let special = text.is_empty()
                            || text.chars().any(|c| {
                                matches!(c, '"' | '\\' | '(' | ')' | ',') || c.is_whitespace()
                            });
                        quoted(text, special, None)
                    })
                })
                .collect();
            Some(format!("({})", fields.join(",")))
        }
        // `{a,b,NULL}`: an element is quoted when it is empty, `NULL`, or holds a quote, a
        // backslash, a brace, a comma or white space (array_out).
        DataType::List(_) => {
            let values = column.as_list::<i32>().value(row);
            let elements: Vec<String> = (0..values.len())
                .map(|i| match field_text(&values, i) {
                    None => "NULL".to_string(),
                    Some(text) => {
                        let special = text.is_empty()
                            || text.eq_ignore_ascii_case("null")
                            || text.chars().any(|c| {
                                matches!(c, '"' | '\\' | '{' | '}' | ',') || c.is_whitespace()
                            });
                        quoted(text, special, Some('\\'))
                    }
                })
                .collect();
            Some(format!("{{{}}}", elements.join(",")))
        }
        _ => datafusion::common::ScalarValue::try_from_array(column, row)
            .ok()
            .and_then(|v| value_text(&v)),
    }
}

/// `text` in double quotes when `special`, each quote and backslash in it escaped: preceded by
/// `escape`, or doubled (a record's field) when there is none.
fn quoted(text: String, special: bool, escape: Option<char>) -> String {
    if !special {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push(escape.unwrap_or(c));
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A double as PostgreSQL writes it with `extra_float_digits` ≥ 1: the shortest text that reads
/// back as the same value, in exponent form below 1e-4 or from 1e`max_exp`.
fn float_text(v: f64, max_exp: i32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..max_exp).contains(&exp) {
        format!("{v}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// A double rounded to `digits` significant digits as C's `%.*g` writes it, which is what
/// PostgreSQL sends with `extra_float_digits` of 0 or less.
fn float_digits(v: f64, digits: i32) -> String {
    if !v.is_finite() || v == 0.0 {
        return float_text(v, 15);
    }
    let precision = usize::try_from(digits.max(1)).unwrap_or(1);
    let sci = format!("{v:.*e}", precision - 1);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if exp < -4 || exp >= digits.max(1) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = usize::try_from(digits.max(1) - 1 - exp).unwrap_or(0);
        trim(&format!("{v:.decimals$}"))
    }
}

fn float32_text(v: f32) -> String {
    if !v.is_finite() || v == 0.0 {
        return float_text(v as f64, 6);
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        format!("{v}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

fn fraction(micros: u32) -> String {
    if micros == 0 {
        return String::new();
    }
    let digits = format!(".{micros:06}");
    digits.trim_end_matches('0').to_string()
}

fn time_text(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = fraction(micros.rem_euclid(1_000_000) as u32);
    format!(
        "{:02}:{:02}:{:02}{frac}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// An interval as PostgreSQL writes it in the session's `IntervalStyle`.
pub fn styled_interval_text(style: IntervalStyle, months: i32, days: i32, micros: i64) -> String {
    match style {
        IntervalStyle::Postgres => interval_text(months, days, micros),
        IntervalStyle::PostgresVerbose => verbose_interval_text(months, days, micros),
        IntervalStyle::SQLStandard => sql_standard_interval_text(months, days, micros),
        IntervalStyle::ISO8601 => iso_interval_text(months, days, micros),
    }
}

/// An interval's fields as PostgreSQL's `EncodeInterval` takes them: years and months from the
/// months, hours, minutes, seconds and microseconds from the time, each with its part's sign.
struct IntervalFields {
    year: i64,
    mon: i64,
    day: i64,
    hour: i64,
    min: i64,
    sec: i64,
    fsec: i64,
}

impl IntervalFields {
    fn of(months: i32, days: i32, micros: i64) -> Self {
        let months = i64::from(months);
        let secs = micros / 1_000_000;
        Self {
            year: months / 12,
            mon: months % 12,
            day: i64::from(days),
            hour: secs / 3600,
            min: (secs / 60) % 60,
            sec: secs % 60,
            fsec: micros % 1_000_000,
        }
    }

    /// `|sec|.fraction`, the seconds two digits wide when `zero_padded`.
    fn seconds(&self, zero_padded: bool) -> String {
        let sec = self.sec.unsigned_abs();
        let whole = if zero_padded {
            format!("{sec:02}")
        } else {
            sec.to_string()
        };
        format!("{whole}{}", fraction(self.fsec.unsigned_abs() as u32))
    }
}

/// `postgres_verbose`: `@ 1 year 2 mons -3 days 4 hours 5 mins 6.5 secs`, the sign of the first
/// field not zero given once as a trailing `ago`.
fn verbose_interval_text(months: i32, days: i32, micros: i64) -> String {
    let f = IntervalFields::of(months, days, micros);
    let mut out = String::from("@");
    let mut zero = true;
    let mut before = false;
    for (value, unit) in [
        (f.year, "year"),
        (f.mon, "mon"),
        (f.day, "day"),
        (f.hour, "hour"),
        (f.min, "min"),
    ] {
        if value == 0 {
            continue;
        }
        let shown = if zero {
            before = value < 0;
            value.abs()
        } else if before {
            -value
        } else {
            value
        };
        let plural = if shown == 1 { "" } else { "s" };
        out.push_str(&format!(" {shown} {unit}{plural}"));
        zero = false;
    }
    if f.sec != 0 || f.fsec != 0 {
        out.push(' ');
        if f.sec < 0 || (f.sec == 0 && f.fsec < 0) {
            if zero {
                before = true;
            } else if !before {
                out.push('-');
            }
        } else if before {
            out.push('-');
        }
        out.push_str(&f.seconds(false));
        let plural = if f.sec.abs() != 1 || f.fsec != 0 {
            "s"
        } else {
            ""
        };
        out.push_str(&format!(" sec{plural}"));
        zero = false;
    }
    if zero {
        out.push_str(" 0");
    }
    if before {
        out.push_str(" ago");
    }
    out
}

/// `sql_standard`: `1-2` (years-months), `3 4:05:06` (day-time), one sign for the whole value;
/// `+1-2 -3 +4:05:06` when the value mixes signs or both kinds of field.
fn sql_standard_interval_text(months: i32, days: i32, micros: i64) -> String {
    let mut f = IntervalFields::of(months, days, micros);
    let fields = [f.year, f.mon, f.day, f.hour, f.min, f.sec, f.fsec];
    let negative = fields.iter().any(|v| *v < 0);
    let positive = fields.iter().any(|v| *v > 0);
    let year_month = f.year != 0 || f.mon != 0;
    let day_time = f.day != 0 || f.hour != 0 || f.min != 0 || f.sec != 0 || f.fsec != 0;
    let mixed = (negative && positive) || (year_month && day_time);
    if !mixed {
        let mut out = String::new();
        if negative {
            out.push('-');
            f = IntervalFields {
                year: -f.year,
                mon: -f.mon,
                day: -f.day,
                hour: -f.hour,
                min: -f.min,
                sec: -f.sec,
                fsec: -f.fsec,
            };
        }
        if !negative && !positive {
            out.push('0');
        } else if !day_time {
            out.push_str(&format!("{}-{}", f.year, f.mon));
        } else if f.day != 0 {
            out.push_str(&format!(
                "{} {}:{:02}:{}",
                f.day,
                f.hour,
                f.min,
                f.seconds(true)
            ));
        } else {
            out.push_str(&format!("{}:{:02}:{}", f.hour, f.min, f.seconds(true)));
        }
        return out;
    }
    let sign = |negative: bool| if negative { '-' } else { '+' };
    format!(
        "{}{}-{} {}{} {}{}:{:02}:{}",
        sign(f.year < 0 || f.mon < 0),
        f.year.abs(),
        f.mon.abs(),
        sign(f.day < 0),
        f.day.abs(),
        sign(f.hour < 0 || f.min < 0 || f.sec < 0 || f.fsec < 0),
        f.hour.abs(),
        f.min.abs(),
        f.seconds(true)
    )
}

/// `iso_8601`: `P1Y2M3DT4H5M6.5S`, each field with its own sign; `PT0S` for zero.
fn iso_interval_text(months: i32, days: i32, micros: i64) -> String {
    let f = IntervalFields::of(months, days, micros);
    if [f.year, f.mon, f.day, f.hour, f.min, f.sec, f.fsec]
        .iter()
        .all(|v| *v == 0)
    {
        return "PT0S".into();
    }
    let mut out = String::from("P");
    let part = |out: &mut String, value: i64, unit: char| {
        if value != 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    };
    part(&mut out, f.year, 'Y');
    part(&mut out, f.mon, 'M');
    part(&mut out, f.day, 'D');
    if f.hour != 0 || f.min != 0 || f.sec != 0 || f.fsec != 0 {
        out.push('T');
    }
    part(&mut out, f.hour, 'H');
    part(&mut out, f.min, 'M');
    if f.sec != 0 || f.fsec != 0 {
        if f.sec < 0 || f.fsec < 0 {
            out.push('-');
        }
        out.push_str(&f.seconds(false));
        out.push('S');
    }
    out
}

/// An interval as PostgreSQL writes it in the `postgres` interval style: `1 year 2 mons -3 days
/// +04:05:06.5`. Each of years, months and days carries its own sign; a positive field after a
/// negative one is written with `+`; the time is written when it is not zero or nothing else is.
pub fn interval_text(months: i32, days: i32, micros: i64) -> String {
    let mut out = String::new();
    let mut negative_before = false;
    let months = i64::from(months);
    for (value, unit) in [
        (months / 12, "year"),
        (months % 12, "mon"),
        (i64::from(days), "day"),
    ] {
        if value == 0 {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        let plus = if negative_before && value > 0 {
            "+"
        } else {
            ""
        };
        let plural = if value == 1 { "" } else { "s" };
        out.push_str(&format!("{plus}{value} {unit}{plural}"));
        negative_before = value < 0;
    }
    if out.is_empty() || micros != 0 {
        let sign = if micros < 0 {
            "-"
        } else if negative_before {
            "+"
        } else {
            ""
        };
        let abs = micros.unsigned_abs();
        let secs = abs / 1_000_000;
        let frac = fraction((abs % 1_000_000) as u32);
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!(
            "{sign}{:02}:{:02}:{:02}{frac}",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_postgres_writes_them() {
        assert_eq!(float_text(10.0, 15), "10");
        assert_eq!(float_text(2.25, 15), "2.25");
        assert_eq!(float_text(0.1 + 0.2, 15), "0.30000000000000004");
        assert_eq!(float_text(1e22, 15), "1e+22");
        assert_eq!(float_text(1.5e-5, 15), "1.5e-05");
        assert_eq!(float_text(123456789012345.0, 15), "123456789012345");
        assert_eq!(float_text(f64::INFINITY, 15), "Infinity");
        assert_eq!(float32_text(1.5), "1.5");
        assert_eq!(float32_text(1e6), "1e+06");
    }

    #[test]
    fn floats_rounded_as_with_extra_float_digits_0() {
        for (v, digits, text) in [
            (2.0 / 3.0, 15, "0.666666666666667"),
            (1004.3, 15, "1004.3"),
            (-1.2345678901234e200, 15, "-1.2345678901234e+200"),
            (1.2345678901234e-200, 15, "1.2345678901234e-200"),
            (123456.0, 6, "123456"),
            (1234567.0, 6, "1.23457e+06"),
            (0.0001, 15, "0.0001"),
            (0.00001, 15, "1e-05"),
            (100.0, 1, "1e+02"),
            (f64::INFINITY, 15, "Infinity"),
        ] {
            assert_eq!(float_digits(v, digits), text, "{v}");
        }
    }

    #[test]
    fn intervals_as_postgresql_writes_them() {
        let day = 86_400_000_000i64;
        for ((months, days, micros), text) in [
            ((0, 0, 0), "00:00:00"),
            ((14, 3, 14_706_500_000), "1 year 2 mons 3 days 04:05:06.5"),
            ((-12, 0, 0), "-1 years"),
            ((1, -1, 0), "1 mon -1 days"),
            ((0, -1, 7_200_000_000), "-1 days +02:00:00"),
            ((0, 1, -7_200_000_000), "1 day -02:00:00"),
            ((0, i32::MIN, 0), "-2147483648 days"),
            ((0, 0, 30 * day), "720:00:00"),
            ((0, 0, -1), "-00:00:00.000001"),
        ] {
            assert_eq!(interval_text(months, days, micros), text);
        }
    }

    #[test]
    fn timestamps_drop_zero_fractions() {
        let timestamp_text = |micros| crate::catalog::pg_datetime::timestamp_text(micros, None);
        assert_eq!(timestamp_text(0), "1970-01-01 00:00:00");
        assert_eq!(timestamp_text(1_500_000), "1970-01-01 00:00:01.5");
        assert_eq!(time_text(3_723_000_001), "01:02:03.000001");
    }
}
