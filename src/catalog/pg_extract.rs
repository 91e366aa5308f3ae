//! `EXTRACT(DECADE | CENTURY | MILLENNIUM | QUARTER | EPOCH | SECOND FROM x)` as PostgreSQL
//! computes them: DataFusion's `date_part` has no decades, centuries or millennia, no quarter
//! of an interval, counts an interval's years as 360 days where PostgreSQL counts 365.25, and
//! gives whole seconds where PostgreSQL keeps their fraction. The year and ISO year are numbered
//! as PostgreSQL numbers them (1 BC is -1) and are doubles, so an infinity's year is that
//! infinity (PostgreSQL's `date_part` gives a `double precision` for every field).

use std::sync::Arc;

use chrono::Datelike;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, IntervalUnit, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The function's name; `EXTRACT(field FROM x)` with one of these fields is planned as
/// `augur_extract('field', x)`.
pub const EXTRACT: &str = "augur_extract";

/// The name `date_part('field', x)` with one of these fields is planned as (the same function,
/// named `date_part` in a column heading).
pub const DATE_PART: &str = "augur_date_part";

/// `augur_extract(field, x)`, also called [`DATE_PART`].
pub fn function() -> ScalarUDF {
    ScalarUDF::new_from_impl(Extract {
        signature: Signature::any(2, Volatility::Immutable),
    })
    .with_aliases([DATE_PART])
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Extract {
    signature: Signature,
}

/// PostgreSQL's decade, century or millennium of the astronomical year `year` (0 is 1 BC).
fn of_year(field: &str, year: i64) -> Option<f64> {
    let value = match field {
        "decade" if year >= 0 => year / 10,
        "decade" => -((8 - (year - 1)) / 10),
        "century" if year > 0 => (year + 99) / 100,
        "century" => -((99 - (year - 1)) / 100),
        "millennium" if year > 0 => (year + 999) / 1000,
        "millennium" => -((999 - (year - 1)) / 1000),
        _ => return None,
    };
    Some(value as f64)
}

/// The field of an interval of `months`: its years (truncated) in tens, hundreds, thousands,
/// or the quarter of its months within the year.
fn of_interval(field: &str, months: i32) -> Option<f64> {
    let years = (months / 12) as i64;
    let value = match field {
        "decade" => years / 10,
        "century" => years / 100,
        "millennium" => years / 1000,
        "quarter" => ((months % 12) / 3 + 1) as i64,
        _ => return None,
    };
    Some(value as f64)
}

/// Seconds in an interval as PostgreSQL counts them: a year of 365.25 days, a month (beyond
/// whole years) of 30.
fn interval_epoch(months: i32, days: i32, nanoseconds: i64) -> f64 {
    let years = (months / 12) as f64;
    let months = (months % 12) as f64;
    nanoseconds as f64 / 1e9
        + years * 365.25 * 86_400.0
        + months * 30.0 * 86_400.0
        + days as f64 * 86_400.0
}

impl ScalarUDFImpl for Extract {
    fn name(&self) -> &str {
        EXTRACT
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let field = match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(f))) => f.to_ascii_lowercase(),
            _ => return exec_err!("{EXTRACT} takes the field as a constant"),
        };
        let values = args.args[1].to_array(args.number_rows)?;
        let unsupported = || {
            Err(datafusion::error::DataFusionError::External(Box::new(
                crate::error::Error::coded(
                    "0A000",
                    format!(
                        "unit \"{field}\" not supported for type {}",
                        values.data_type()
                    ),
                ),
            )))
        };
        if field == "year" || field == "isoyear" {
            return Ok(ColumnarValue::Array(years(&field, &values)?));
        }
        let out: Float64Array = match values.data_type() {
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                let intervals =
                    values.as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>();
                let mut out = Vec::with_capacity(intervals.len());
                for i in 0..intervals.len() {
                    out.push(if intervals.is_null(i) {
                        None
                    } else {
                        let value = intervals.value(i);
                        let value = if field == "epoch" {
                            Some(interval_epoch(value.months, value.days, value.nanoseconds))
                        } else if field == "second" {
                            // The seconds of the time part, with their fraction and sign.
                            Some((value.nanoseconds % 60_000_000_000) as f64 / 1e9)
                        } else {
                            of_interval(&field, value.months)
                        };
                        match value {
                            Some(v) => Some(v),
                            None => return unsupported(),
                        }
                    });
                }
                out.into_iter().collect()
            }
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
                let micros = timestamp_micros(&values)?;
                let micros =
                    micros.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
                let mut out = Vec::with_capacity(micros.len());
                for i in 0..micros.len() {
                    if micros.is_null(i) {
                        out.push(None);
                        continue;
                    }
                    if field == "epoch" {
                        out.push(Some(match micros.value(i) {
                            i64::MAX => f64::INFINITY,
                            i64::MIN => f64::NEG_INFINITY,
                            v => v as f64 / 1e6,
                        }));
                        continue;
                    }
                    // An infinity's decade, century and millennium are that infinity; its
                    // other fields have no value.
                    if let v @ (i64::MAX | i64::MIN) = micros.value(i) {
                        let infinite = ["decade", "century", "millennium"].contains(&&*field);
                        out.push(infinite.then_some(if v == i64::MAX {
                            f64::INFINITY
                        } else {
                            f64::NEG_INFINITY
                        }));
                        continue;
                    }
                    if field == "second" {
                        // The seconds of the minute with their fraction.
                        out.push(Some(micros.value(i).rem_euclid(60_000_000) as f64 / 1e6));
                        continue;
                    }
                    let Some(at) = chrono::DateTime::from_timestamp_micros(micros.value(i)) else {
                        return exec_err!("timestamp out of range");
                    };
                    let value = if field == "quarter" {
                        Some((at.month0() / 3 + 1) as f64)
                    } else {
                        of_year(&field, at.year() as i64)
                    };
                    match value {
                        Some(v) => out.push(Some(v)),
                        None => return unsupported(),
                    }
                }
                out.into_iter().collect()
            }
            DataType::Time32(_) | DataType::Time64(_) if field == "second" => {
                let micros = cast(&values, &DataType::Time64(TimeUnit::Microsecond))?;
                micros
                    .as_primitive::<datafusion::arrow::datatypes::Time64MicrosecondType>()
                    .iter()
                    .map(|v| v.map(|v| v.rem_euclid(60_000_000) as f64 / 1e6))
                    .collect()
            }
            _ => return unsupported(),
        };
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

/// Timestamps or dates as timestamps in microseconds; a date's infinity (the largest or smallest
/// day) becomes a timestamp's, which a cast would overflow into NULL.
fn timestamp_micros(values: &ArrayRef) -> Result<ArrayRef> {
    if values.data_type() != &DataType::Date32 {
        return Ok(cast(
            values,
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )?);
    }
    let days = values.as_primitive::<datafusion::arrow::datatypes::Date32Type>();
    let micros: datafusion::arrow::array::TimestampMicrosecondArray = days
        .iter()
        .map(|day| {
            day.map(|day| match day {
                super::pg_datetime::DATE_INFINITY => i64::MAX,
                super::pg_datetime::DATE_NEG_INFINITY => i64::MIN,
                day => i64::from(day) * 86_400_000_000,
            })
        })
        .collect();
    Ok(Arc::new(micros))
}

/// The years (`field` `year`) or ISO 8601 week-numbering years (`isoyear`) of `values` as
/// PostgreSQL numbers them: 1 BC is -1 (not 0, as in the proleptic calendar), an interval's
/// whole years, an infinity's year that infinity.
fn years(field: &str, values: &ArrayRef) -> Result<ArrayRef> {
    let out: Float64Array = match values.data_type() {
        DataType::Interval(IntervalUnit::MonthDayNano) if field == "year" => values
            .as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>()
            .iter()
            .map(|v| v.map(|v| (v.months / 12) as f64))
            .collect(),
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
            let micros = timestamp_micros(values)?;
            micros
                .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
                .iter()
                .map(|v| match v? {
                    i64::MAX => Some(f64::INFINITY),
                    i64::MIN => Some(f64::NEG_INFINITY),
                    v => {
                        let at = chrono::DateTime::from_timestamp_micros(v)?;
                        let year = if field == "isoyear" {
                            at.iso_week().year()
                        } else {
                            at.year()
                        };
                        Some(if year <= 0 { year - 1 } else { year } as f64)
                    }
                })
                .collect()
        }
        other => {
            return Err(datafusion::error::DataFusionError::External(Box::new(
                crate::error::Error::coded(
                    "0A000",
                    format!("unit \"{field}\" not supported for type {other}"),
                ),
            )));
        }
    };
    Ok(Arc::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_as_postgresql_counts_them() {
        assert_eq!(of_year("decade", 1999), Some(199.0));
        assert_eq!(of_year("century", 2000), Some(20.0));
        assert_eq!(of_year("century", 2001), Some(21.0));
        assert_eq!(of_year("millennium", 2001), Some(3.0));
        // 1 BC (year 0) is in the first century BC.
        assert_eq!(of_year("century", 0), Some(-1.0));
        assert_eq!(of_interval("decade", -99 * 12), Some(-9.0));
        assert_eq!(of_interval("quarter", 14), Some(1.0));
        assert_eq!(of_interval("quarter", 11), Some(4.0));
        assert_eq!(interval_epoch(34 * 12, 0, 0), 1_072_958_400.0);
        assert_eq!(interval_epoch(5, 0, 12 * 3_600_000_000_000), 13_003_200.0);
        assert_eq!((-61_500_000_000i64 % 60_000_000_000) as f64 / 1e9, -1.5);
    }
}
