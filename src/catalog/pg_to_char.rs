//! PostgreSQL's `to_char`: dates, times and timestamps formatted with PostgreSQL's template
//! patterns (`YYYY-MM-DD HH24:MI:SS`, `FMMonth DD, YYYY`, `Dy`, `"quoted text"`, ordinal
//! `TH`), and numbers with its numeric ones (`9`, `0`, `.`, `D`, `,`, `G`, `S`, `MI`, `PL`,
//! `SG`, `PR`, `FM`). A `timestamptz` is shown in the session's `TimeZone`. DataFusion's own
//! `to_char` takes chrono's `%Y-%m-%d` patterns, and would return PostgreSQL's as written.

use std::sync::Arc;

use chrono::{Datelike, NaiveDateTime, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::session::timezone::Zone;

/// `to_char(value, template)`, replacing DataFusion's.
pub fn to_char() -> ScalarUDF {
    ScalarUDF::new_from_impl(ToChar {
        signature: Signature::any(2, Volatility::Stable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ToChar {
    signature: Signature,
}

fn refuse(message: String) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(crate::error::Error::coded(
        "0A000", message,
    )))
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let supported = matches!(
            args.first(),
            Some(
                DataType::Timestamp(..)
                    | DataType::Date32
                    | DataType::Date64
                    | DataType::Time64(_)
                    | DataType::Time32(_)
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::UInt64
                    | DataType::Float32
                    | DataType::Float64
                    | DataType::Decimal128(..)
                    | DataType::Null
            )
        );
        if !supported {
            return Err(datafusion::error::DataFusionError::External(Box::new(
                crate::error::Error::coded(
                    "42883",
                    format!(
                        "function to_char({}, text) does not exist",
                        args.first()
                            .map(crate::common::types::pg_type_name)
                            .unwrap_or_default()
                    ),
                ),
            )));
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let zone = Zone::of_session(&args.config_options);
        let values = args.args[0].to_array(rows)?;
        let templates = args.args[1].to_array(rows)?;
        let templates = datafusion::arrow::compute::cast(&templates, &DataType::Utf8)?;
        let templates = templates.as_string::<i32>();
        let mut out = StringBuilder::new();
        match values.data_type() {
            DataType::Timestamp(..) | DataType::Date64 => {
                let tz = match values.data_type() {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                let with_zone = tz.is_some();
                let micros = datafusion::arrow::compute::cast(
                    &values,
                    &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
                )?;
                let micros =
                    micros.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
                for i in 0..rows {
                    // `infinity` has no fields to format: NULL, as in PostgreSQL.
                    if micros.is_null(i)
                        || templates.is_null(i)
                        || matches!(
                            micros.value(i),
                            super::pg_datetime::TIMESTAMP_INFINITY
                                | super::pg_datetime::TIMESTAMP_NEG_INFINITY
                        )
                    {
                        out.append_null();
                        continue;
                    }
                    let utc = chrono::DateTime::from_timestamp_micros(micros.value(i))
                        .ok_or_else(|| refuse("timestamp out of range".into()))?
                        .naive_utc();
                    let (local, offset) = if with_zone {
                        let offset = zone.offset_at(utc);
                        (utc + chrono::Duration::seconds(offset as i64), Some(offset))
                    } else {
                        (utc, None)
                    };
                    out.append_value(format_datetime(local, offset, templates.value(i)));
                }
            }
            DataType::Date32 => {
                let days = values.as_primitive::<datafusion::arrow::datatypes::Date32Type>();
                for i in 0..rows {
                    if days.is_null(i) || templates.is_null(i) {
                        out.append_null();
                        continue;
                    }
                    let date =
                        chrono::NaiveDate::from_num_days_from_ce_opt(days.value(i) + 719_163)
                            .ok_or_else(|| refuse("date out of range".into()))?;
                    out.append_value(format_datetime(
                        date.and_hms_opt(0, 0, 0).unwrap_or_default(),
                        None,
                        templates.value(i),
                    ));
                }
            }
            DataType::Time64(_) | DataType::Time32(_) => {
                let nanos = datafusion::arrow::compute::cast(
                    &values,
                    &DataType::Time64(TimeUnit::Nanosecond),
                )?;
                let nanos =
                    nanos.as_primitive::<datafusion::arrow::datatypes::Time64NanosecondType>();
                for i in 0..rows {
                    if nanos.is_null(i) || templates.is_null(i) {
                        out.append_null();
                        continue;
                    }
                    let n = nanos.value(i);
                    let time = chrono::NaiveTime::from_num_seconds_from_midnight_opt(
                        (n / 1_000_000_000) as u32,
                        (n % 1_000_000_000) as u32,
                    )
                    .unwrap_or_default();
                    let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default();
                    out.append_value(format_datetime(
                        epoch.and_time(time),
                        None,
                        templates.value(i),
                    ));
                }
            }
            DataType::Null => {
                for _ in 0..rows {
                    out.append_null();
                }
            }
            _ => {
                let float = matches!(values.data_type(), DataType::Float32 | DataType::Float64);
                let text = number_texts(&values)?;
                for (i, number) in text.iter().enumerate() {
                    match (number, templates.is_null(i)) {
                        (Some(number), false) => {
                            out.append_value(format_number(number, templates.value(i), float)?)
                        }
                        _ => out.append_null(),
                    }
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

// ---------------------------------------------------------------------------------------------
// Dates and times
// ---------------------------------------------------------------------------------------------

pub(crate) const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
pub(crate) const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
pub(crate) const ROMAN_MONTHS: [&str; 12] = [
    "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII",
];

/// The template patterns, longest first where one begins another. Those whose case matters
/// (names, `AM`, `BC`, `RM`, `TZ`) are listed in each case PostgreSQL takes; the others match in
/// upper or lower case.
const PATTERNS: &[&str] = &[
    "A.D.", "a.d.", "A.M.", "a.m.", "B.C.", "b.c.", "P.M.", "p.m.", "Y,YYY", "HH24", "HH12",
    "SSSSS", "SSSS", "MONTH", "Month", "month", "IDDD", "IYYY", "YYYY", "FF1", "FF2", "FF3", "FF4",
    "FF5", "FF6", "DAY", "Day", "day", "MON", "Mon", "mon", "DDD", "IYY", "YYY", "TZH", "TZM",
    "HH", "MI", "SS", "MS", "US", "AM", "am", "PM", "pm", "AD", "ad", "BC", "bc", "MM", "DY", "Dy",
    "dy", "DD", "ID", "IY", "YY", "WW", "IW", "CC", "RM", "rm", "TZ", "tz", "OF", "D", "I", "Y",
    "W", "J", "Q",
];

/// The pattern at the start of `rest`, as listed in [`PATTERNS`].
pub(crate) fn pattern_at(rest: &str) -> Option<&'static str> {
    PATTERNS.iter().copied().find(|p| {
        let Some(head) = rest.get(..p.len()) else {
            return false;
        };
        if head == *p {
            return true;
        }
        // Patterns without letters whose case matters also match in lower case.
        let case_free = !matches!(
            *p,
            "MONTH"
                | "Month"
                | "month"
                | "DAY"
                | "Day"
                | "day"
                | "MON"
                | "Mon"
                | "mon"
                | "DY"
                | "Dy"
                | "dy"
                | "AM"
                | "am"
                | "PM"
                | "pm"
                | "A.M."
                | "a.m."
                | "P.M."
                | "p.m."
                | "AD"
                | "ad"
                | "BC"
                | "bc"
                | "A.D."
                | "a.d."
                | "B.C."
                | "b.c."
                | "RM"
                | "rm"
                | "TZ"
                | "tz"
        );
        case_free && head == p.to_ascii_lowercase()
    })
}

/// A template modifier at the start of `rest` (`FM`, or `FX` and `TM`, which change nothing
/// here): the text after it, and whether it is `FM`.
pub(crate) fn modifier(rest: &str) -> Option<(&str, bool)> {
    if let Some(after) = rest.strip_prefix("FM").or_else(|| rest.strip_prefix("fm")) {
        return Some((after, true));
    }
    ["FX", "fx", "TM", "tm"]
        .iter()
        .find_map(|p| rest.strip_prefix(p))
        .map(|after| (after, false))
}

/// `ts` (local time) formatted with PostgreSQL's template `template`; `offset` is the zone's
/// offset east in seconds for a `timestamptz`.
pub fn format_datetime(ts: NaiveDateTime, offset: Option<i32>, template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    let mut fill = false;
    while !rest.is_empty() {
        if let Some((after, is_fill)) = modifier(rest) {
            fill |= is_fill;
            rest = after;
            continue;
        }
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            out.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            rest = &quoted[end.min(quoted.len())..];
            fill = false;
            continue;
        }
        if let Some(escaped) = rest.strip_prefix('\\') {
            let mut chars = escaped.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
            continue;
        }
        let Some(pattern) = pattern_at(rest) else {
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
            fill = false;
            continue;
        };
        rest = &rest[pattern.len()..];
        let ordinal = if let Some(after) = rest.strip_prefix("TH") {
            rest = after;
            Some(true)
        } else if let Some(after) = rest.strip_prefix("th") {
            rest = after;
            Some(false)
        } else {
            None
        };
        let (text, number) = datetime_field(&ts, offset, pattern, fill);
        out.push_str(&text);
        if let (Some(upper), Some(n)) = (ordinal, number) {
            let suffix = ordinal_suffix(n);
            if upper {
                out.push_str(&suffix.to_ascii_uppercase());
            } else {
                out.push_str(suffix);
            }
        }
        fill = false;
    }
    out
}

/// The text of one pattern, and its number when it is one (for `TH`).
fn datetime_field(
    ts: &NaiveDateTime,
    offset: Option<i32>,
    pattern: &str,
    fill: bool,
) -> (String, Option<i64>) {
    let num = |value: i64, width: usize| -> (String, Option<i64>) {
        let text = if fill {
            value.to_string()
        } else if value < 0 {
            format!("-{:0width$}", -value, width = width)
        } else {
            format!("{value:0width$}")
        };
        (text, Some(value))
    };
    let name = |full: &str, upper: &str| -> String {
        let shown = name_short(full, upper);
        if fill { shown } else { format!("{shown:<9}") }
    };
    let case = |p: &str| -> &'static str {
        if p.chars().all(|c| !c.is_ascii_lowercase()) {
            "upper"
        } else if p.chars().all(|c| !c.is_ascii_uppercase()) {
            "lower"
        } else {
            "title"
        }
    };
    // PostgreSQL counts years before 1 AD from 1 (1 BC is year 0 in the proleptic calendar).
    let year = ts.year();
    let shown_year = if year <= 0 { 1 - year } else { year } as i64;
    // An ISO year before 1 AD is written as its BC year, as the calendar year is.
    let iso_year = ts.iso_week().year();
    let shown_iso_year = if iso_year <= 0 {
        1 - iso_year
    } else {
        iso_year
    } as i64;
    let hour12 = match ts.hour() % 12 {
        0 => 12,
        h => h,
    } as i64;
    let micros = (ts.nanosecond() / 1000) as i64;
    let upper = pattern.to_ascii_uppercase();
    match upper.as_str() {
        "HH" | "HH12" => num(hour12, 2),
        "HH24" => num(ts.hour() as i64, 2),
        "MI" => num(ts.minute() as i64, 2),
        "SS" => num(ts.second() as i64, 2),
        "MS" => num(micros / 1000, 3),
        "US" => num(micros, 6),
        "FF1" | "FF2" | "FF3" | "FF4" | "FF5" | "FF6" => {
            let digits: usize = upper[2..].parse().unwrap_or(6);
            let value = micros / 10i64.pow(6 - digits as u32);
            num(value, digits)
        }
        "SSSS" | "SSSSS" => (
            ts.num_seconds_from_midnight().to_string(),
            Some(ts.num_seconds_from_midnight() as i64),
        ),
        "AM" | "PM" | "A.M." | "P.M." | "AD" | "BC" | "A.D." | "B.C." => {
            // Which of the pair the value is, in the pattern's spelling and case.
            let marker = if upper.contains('M') {
                if ts.hour() >= 12 { "PM" } else { "AM" }
            } else if year <= 0 {
                "BC"
            } else {
                "AD"
            };
            let text = if pattern.contains('.') {
                format!("{}.{}.", &marker[..1], &marker[1..])
            } else {
                marker.to_string()
            };
            (name_short(&text, case(pattern)), None)
        }
        "Y,YYY" => (
            format!("{},{:03}", shown_year / 1000, shown_year % 1000),
            Some(shown_year),
        ),
        "YYYY" => num(shown_year, 4),
        "YYY" => num(shown_year % 1000, 3),
        "YY" => num(shown_year % 100, 2),
        "Y" => num(shown_year % 10, 1),
        "IYYY" => num(shown_iso_year, 4),
        "IYY" => num(shown_iso_year % 1000, 3),
        "IY" => num(shown_iso_year % 100, 2),
        "I" => num(shown_iso_year % 10, 1),
        "MONTH" => (name(MONTHS[ts.month0() as usize], case(pattern)), None),
        "MON" => {
            let abbreviated = &MONTHS[ts.month0() as usize][..3];
            (name_short(abbreviated, case(pattern)), None)
        }
        "MM" => num(ts.month() as i64, 2),
        "DAY" => (
            name(
                DAYS[ts.weekday().num_days_from_sunday() as usize],
                case(pattern),
            ),
            None,
        ),
        "DY" => {
            let abbreviated = &DAYS[ts.weekday().num_days_from_sunday() as usize][..3];
            (name_short(abbreviated, case(pattern)), None)
        }
        "DDD" => num(ts.ordinal() as i64, 3),
        "IDDD" => {
            let week = ts.iso_week().week() as i64;
            let day = ts.weekday().number_from_monday() as i64;
            num((week - 1) * 7 + day, 3)
        }
        "DD" => num(ts.day() as i64, 2),
        "D" => num(ts.weekday().number_from_sunday() as i64, 1),
        "ID" => num(ts.weekday().number_from_monday() as i64, 1),
        "W" => num((ts.day() as i64 - 1) / 7 + 1, 1),
        "WW" => num((ts.ordinal() as i64 - 1) / 7 + 1, 2),
        "IW" => num(ts.iso_week().week() as i64, 2),
        "CC" => {
            let century = if year > 0 {
                (year as i64 + 99) / 100
            } else {
                -((99 - year as i64) / 100)
            };
            num(century, 2)
        }
        "J" => {
            let julian = ts.date().num_days_from_ce() as i64 + 1_721_425;
            (julian.to_string(), Some(julian))
        }
        "Q" => num((ts.month0() / 3 + 1) as i64, 1),
        "RM" => {
            let roman = ROMAN_MONTHS[ts.month0() as usize];
            let roman = if pattern == "rm" {
                roman.to_lowercase()
            } else {
                roman.to_string()
            };
            let text = if fill { roman } else { format!("{roman:<4}") };
            (text, None)
        }
        "TZ" => {
            let text = match offset {
                Some(seconds) => zone_abbreviation(seconds),
                None => String::new(),
            };
            let text = if pattern == "tz" {
                text.to_lowercase()
            } else {
                text
            };
            (text, None)
        }
        "TZH" => match offset {
            Some(seconds) => {
                let sign = if seconds < 0 { '-' } else { '+' };
                (format!("{sign}{:02}", seconds.abs() / 3600), None)
            }
            None => (String::new(), None),
        },
        "TZM" => match offset {
            Some(seconds) => (format!("{:02}", (seconds.abs() % 3600) / 60), None),
            None => (String::new(), None),
        },
        "OF" => match offset {
            Some(seconds) => {
                let sign = if seconds < 0 { '-' } else { '+' };
                let (h, m) = (seconds.abs() / 3600, (seconds.abs() % 3600) / 60);
                let text = if m == 0 {
                    format!("{sign}{h:02}")
                } else {
                    format!("{sign}{h:02}:{m:02}")
                };
                (text, None)
            }
            None => (String::new(), None),
        },
        _ => (pattern.to_string(), None),
    }
}

/// A name in the pattern's case (`MON`, `Mon`, `mon`; `upper`, `lower` or as written).
fn name_short(name: &str, case: &str) -> String {
    match case {
        "upper" => name.to_uppercase(),
        "lower" => name.to_lowercase(),
        _ => name.to_string(),
    }
}

/// What `TZ` shows for an offset: `UTC`, or the offset as PostgreSQL abbreviates a zone it
/// has no name for (`+05:30`, `-07`).
fn zone_abbreviation(seconds: i32) -> String {
    if seconds == 0 {
        return "UTC".into();
    }
    let sign = if seconds < 0 { '-' } else { '+' };
    let (h, m) = (seconds.abs() / 3600, (seconds.abs() % 3600) / 60);
    if m == 0 {
        format!("{sign}{h:02}")
    } else {
        format!("{sign}{h:02}:{m:02}")
    }
}

/// `st`, `nd`, `rd` or `th` for `n`.
fn ordinal_suffix(n: i64) -> &'static str {
    let n = n.abs();
    if (11..=13).contains(&(n % 100)) {
        return "th";
    }
    match n % 10 {
        1 => "st",
        2 => "nd",
        3 => "rd",
        _ => "th",
    }
}

// ---------------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------------

/// Each value as decimal text (`-123.45`; a double in its shortest exact form), NULL as `None`.
fn number_texts(values: &ArrayRef) -> Result<Vec<Option<String>>> {
    let texts = match values.data_type() {
        DataType::Float32 | DataType::Float64 => {
            let floats = datafusion::arrow::compute::cast(values, &DataType::Float64)?;
            let floats = floats.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
            (0..floats.len())
                .map(|i| {
                    (!floats.is_null(i)).then(|| {
                        let v = floats.value(i);
                        v.to_string()
                    })
                })
                .collect()
        }
        _ => {
            let text = datafusion::arrow::compute::cast(values, &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            (0..text.len())
                .map(|i| (!text.is_null(i)).then(|| text.value(i).to_string()))
                .collect()
        }
    };
    Ok(texts)
}

/// One element of a numeric template.
#[derive(Debug, Clone, Copy, PartialEq)]
enum NumToken {
    Nine,
    Zero,
    Point,
    Comma,
    /// `S`: the sign, `+` or `-`.
    Sign,
    /// `MI`: `-` when negative.
    Minus,
    /// `PL`: `+` when positive.
    Plus,
    /// `SG`: `+` or `-`, where it stands.
    SignHere,
    /// `PR`: a negative number in angle brackets.
    Brackets,
    /// `TH` (or `th`, `lower`): the ordinal suffix of a whole number that is not negative.
    Ordinal {
        lower: bool,
    },
    Literal(char),
}

fn num_tokens(template: &str) -> Result<(Vec<NumToken>, bool)> {
    let mut tokens = Vec::new();
    let mut fill = false;
    let chars: Vec<char> = template.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let two: String = chars[i..(i + 2).min(chars.len())]
            .iter()
            .collect::<String>()
            .to_ascii_uppercase();
        let token = match two.as_str() {
            "FM" => {
                fill = true;
                i += 2;
                continue;
            }
            "MI" => Some(NumToken::Minus),
            "PL" => Some(NumToken::Plus),
            "SG" => Some(NumToken::SignHere),
            "PR" => Some(NumToken::Brackets),
            "TH" => Some(NumToken::Ordinal {
                lower: chars[i] == 't',
            }),
            "EE" | "RN" => {
                return Err(refuse(format!(
                    "to_char of a number with the pattern {two} is not supported"
                )));
            }
            _ => None,
        };
        if let Some(token) = token {
            tokens.push(token);
            i += 2;
            continue;
        }
        // Text in double quotes is written as it is, `\` escaping the next character.
        if chars[i] == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                tokens.push(NumToken::Literal(chars[i]));
                i += 1;
            }
            i += 1;
            continue;
        }
        tokens.push(match chars[i] {
            '9' => NumToken::Nine,
            '0' => NumToken::Zero,
            '.' | 'D' | 'd' => NumToken::Point,
            ',' | 'G' | 'g' => NumToken::Comma,
            'S' | 's' => NumToken::Sign,
            // The currency symbol: none in Augur's C locale, which PostgreSQL writes as a space.
            'L' | 'l' => NumToken::Literal(' '),
            'V' | 'v' => {
                return Err(refuse(format!(
                    "to_char of a number with the pattern {} is not supported",
                    chars[i]
                )));
            }
            c => NumToken::Literal(c),
        });
        i += 1;
    }
    Ok((tokens, fill))
}

/// `number` (decimal text) formatted with PostgreSQL's numeric template `template`. A double
/// (`float`) shows 15 significant digits at most, as PostgreSQL's does: fraction digits beyond
/// them are left out, and the point with them when none is left.
pub fn format_number(number: &str, template: &str, float: bool) -> Result<String> {
    use NumToken::*;
    let (mut tokens, fill) = num_tokens(template)?;
    if float
        && number
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
    {
        let magnitude = number.trim_start_matches('-');
        let int_len = round_decimal(magnitude, 0)
            .trim_start_matches('0')
            .len()
            .max(1);
        let allowed = 15usize.saturating_sub(int_len);
        if let Some(point) = tokens.iter().position(|t| *t == Point) {
            let mut kept = 0;
            let mut i = point + 1;
            while i < tokens.len() {
                if matches!(tokens[i], Nine | Zero) {
                    if kept >= allowed {
                        tokens.remove(i);
                        continue;
                    }
                    kept += 1;
                }
                i += 1;
            }
            if kept == 0 {
                tokens.remove(point);
            }
        }
    }
    let point = tokens.iter().position(|t| *t == Point);
    let is_digit = |t: &NumToken| matches!(t, Nine | Zero);
    let int_slots = tokens[..point.unwrap_or(tokens.len())]
        .iter()
        .filter(|t| is_digit(t))
        .count();
    let frac_slots = point.map_or(0, |p| tokens[p..].iter().filter(|t| is_digit(t)).count());
    let finite = number
        .trim_start_matches('-')
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.');
    let negative_input = number.starts_with('-');
    let rounded = if finite {
        round_decimal(number.trim_start_matches('-'), frac_slots)
    } else {
        String::new()
    };
    let (int_digits, frac_digits) = match rounded.split_once('.') {
        Some((i, f)) => (i.trim_start_matches('0').to_string(), f.to_string()),
        None => (rounded.trim_start_matches('0').to_string(), String::new()),
    };
    let negative = negative_input
        && int_digits
            .chars()
            .chain(frac_digits.chars())
            .any(|c| c != '0');
    let overflow = !finite || int_digits.len() > int_slots;
    // Integer slots from this one on show digits: the value's, or zeros from the first `0`.
    let needed = if int_digits.is_empty() && frac_slots == 0 {
        1
    } else {
        int_digits.len()
    };
    let first_zero = tokens
        .iter()
        .take(point.unwrap_or(tokens.len()))
        .filter(|t| is_digit(t))
        .position(|t| *t == Zero);
    let shown_from = first_zero.map_or(int_slots - needed.min(int_slots), |z| {
        z.min(int_slots - needed.min(int_slots))
    });
    let padded = format!("{:0>width$}", int_digits, width = int_slots);
    let explicit = tokens
        .iter()
        .any(|t| matches!(t, Sign | Minus | Plus | SignHere | Brackets));
    // `S` before every digit: the sign goes right before the first digit shown.
    let first_digit = tokens.iter().position(is_digit);
    let floating_sign = tokens
        .iter()
        .position(|t| *t == Sign)
        .is_some_and(|s| first_digit.is_none_or(|d| s < d));
    let brackets = tokens.contains(&Brackets);

    let mut out = String::new();
    let mut anchor: Option<usize> = None;
    let (mut slot, mut frac_slot) = (0usize, 0usize);
    let mut in_fraction = false;
    for token in &tokens {
        match token {
            Nine | Zero if !in_fraction => {
                if overflow {
                    anchor.get_or_insert(out.len());
                    out.push('#');
                } else if slot >= shown_from {
                    anchor.get_or_insert(out.len());
                    out.push(padded.as_bytes()[slot] as char);
                } else if !fill {
                    out.push(' ');
                }
                slot += 1;
            }
            Nine | Zero => {
                let digit = frac_digits
                    .as_bytes()
                    .get(frac_slot)
                    .map_or('0', |b| *b as char);
                out.push(if overflow { '#' } else { digit });
                frac_slot += 1;
            }
            Point => {
                anchor.get_or_insert(out.len());
                in_fraction = true;
                out.push('.');
            }
            Comma => {
                if anchor.is_some() {
                    out.push(',');
                } else if !fill {
                    out.push(' ');
                }
            }
            Sign if floating_sign => {}
            Sign | SignHere => out.push(if negative { '-' } else { '+' }),
            Minus => {
                if negative {
                    out.push('-');
                } else if !fill {
                    out.push(' ');
                }
            }
            Plus => {
                if !negative {
                    out.push('+');
                } else if !fill {
                    out.push(' ');
                }
            }
            Brackets => {
                if negative {
                    out.push('>');
                } else if !fill {
                    out.push(' ');
                }
            }
            Ordinal { lower } => {
                let whole = frac_digits.chars().all(|c| c == '0');
                if !negative && whole && !overflow {
                    let last_two = int_digits
                        .get(int_digits.len().saturating_sub(2)..)
                        .and_then(|d| d.parse::<u32>().ok())
                        .unwrap_or(0);
                    let suffix = match (last_two % 100, last_two % 10) {
                        (11..=13, _) => "th",
                        (_, 1) => "st",
                        (_, 2) => "nd",
                        (_, 3) => "rd",
                        _ => "th",
                    };
                    if *lower {
                        out.push_str(suffix);
                    } else {
                        out.push_str(&suffix.to_ascii_uppercase());
                    }
                }
            }
            Literal(c) => out.push(*c),
        }
    }
    let anchor = anchor.unwrap_or(out.len());
    let sign = if brackets {
        if negative {
            Some('<')
        } else if fill {
            None
        } else {
            Some(' ')
        }
    } else if floating_sign {
        Some(if negative { '-' } else { '+' })
    } else if explicit {
        None
    } else if negative {
        Some('-')
    } else if fill {
        None
    } else {
        Some(' ')
    };
    if let Some(sign) = sign {
        out.insert(anchor, sign);
    }
    if fill && frac_slots > 0 {
        // FM drops the trailing zeros a `9` after the point would show.
        let last_zero = tokens.iter().rposition(|t| *t == Zero);
        let keep_from = match (point, last_zero) {
            (Some(p), Some(z)) if z > p => usize::MAX,
            _ => 0,
        };
        if keep_from == 0 && !overflow {
            let end = out
                .char_indices()
                .rev()
                .find(|&(_, c)| c != '0')
                .map_or(0, |(i, c)| i + c.len_utf8());
            if out[..end].contains('.') {
                out.truncate(end);
            }
        }
    }
    Ok(out)
}

/// `digits` (unsigned decimal text) rounded half away from zero to `scale` fraction digits.
fn round_decimal(digits: &str, scale: usize) -> String {
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let mut all: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    let int_len = int.len();
    let keep = int_len + scale;
    let round_up = frac.len() > scale && all.get(keep).is_some_and(|d| *d >= 5);
    all.resize(keep.max(int_len), 0);
    all.truncate(keep);
    let mut int_len = int_len;
    if round_up {
        let mut i = all.len();
        loop {
            if i == 0 {
                all.insert(0, 1);
                int_len += 1;
                break;
            }
            i -= 1;
            if all[i] == 9 {
                all[i] = 0;
            } else {
                all[i] += 1;
                break;
            }
        }
    }
    let text: String = all.iter().map(|d| (b'0' + d) as char).collect();
    let (i, f) = text.split_at(int_len);
    let i = if i.is_empty() { "0" } else { i };
    if scale == 0 {
        i.to_string()
    } else {
        format!("{i}.{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    #[test]
    fn dates_with_postgresql_patterns() {
        let t = ts("2024-05-06 07:08:09.123456");
        assert_eq!(
            format_datetime(t, None, "YYYY-MM-DD HH24:MI:SS"),
            "2024-05-06 07:08:09"
        );
        assert_eq!(
            format_datetime(t, None, "YYYY-MM-DD HH24:MI"),
            "2024-05-06 07:08"
        );
        assert_eq!(
            format_datetime(t, None, "Day, DD Month YYYY"),
            "Monday   , 06 May       2024"
        );
        assert_eq!(
            format_datetime(t, None, "FMDay, FMDD FMMonth YYYY"),
            "Monday, 6 May 2024"
        );
        assert_eq!(
            format_datetime(t, None, "DY dy Mon MON mon"),
            "MON mon May MAY may"
        );
        assert_eq!(format_datetime(t, None, "HH12:MI AM"), "07:08 AM");
        assert_eq!(
            format_datetime(t, None, "hh24:mi:ss.ms us"),
            "07:08:09.123 123456"
        );
        assert_eq!(
            format_datetime(t, None, "DDDth \"of the year\" Q W WW IW"),
            "127th of the year 2 1 19 19"
        );
        assert_eq!(
            format_datetime(t, None, "FMDDTH CC J RM"),
            "6TH 21 2460437 V   "
        );
        assert_eq!(
            format_datetime(t, Some(19_800), "HH24:MI TZH:TZM OF"),
            "07:08 +05:30 +05:30"
        );
        assert_eq!(format_datetime(t, Some(0), "TZ"), "UTC");
        assert_eq!(format_datetime(t, None, "Y,YYY YYY YY Y"), "2,024 024 24 4");
    }

    #[test]
    fn numbers_with_postgresql_patterns() {
        let f = |n: &str, t: &str| format_number(n, t, false).unwrap();
        assert_eq!(f("123", "999"), " 123");
        assert_eq!(f("-123", "999"), "-123");
        assert_eq!(f("123", "99999"), "   123");
        assert_eq!(f("123", "FM99999"), "123");
        assert_eq!(f("123", "00000"), " 00123");
        assert_eq!(f("-12.5", "999.99"), " -12.50");
        assert_eq!(f("0.5", "9.99"), "  .50");
        assert_eq!(f("0.5", "0.99"), " 0.50");
        assert_eq!(f("1234567", "9,999,999"), " 1,234,567");
        assert_eq!(f("123", "9,999"), "   123");
        assert_eq!(f("12345", "999"), " ###");
        assert_eq!(f("2.345", "9.99"), " 2.35");
        assert_eq!(f("-123", "999S"), "123-");
        assert_eq!(f("-456", "S9999"), " -456");
        assert_eq!(f("456", "S9999"), " +456");
        assert_eq!(f("0", "999"), "   0");
        assert_eq!(f("-0.5", "9.99"), " -.50");
        assert_eq!(f("-123", "999MI"), "123-");
        assert_eq!(f("123", "999MI"), "123 ");
        assert_eq!(f("-123", "999PR"), "<123>");
        assert_eq!(f("123", "999PR"), " 123 ");
        assert_eq!(f("123.5", "FM999.99"), "123.5");
        assert!(format_number("1", "9.99EEEE", false).is_err());
        // a double shows 15 significant digits
        assert_eq!(
            format_number("100000000000000000000", "999999999999999999999D9", true).unwrap(),
            " 100000000000000000000"
        );
        assert_eq!(format_number("1", "9D9", true).unwrap(), " 1.0");
        // a character of several bytes after the digits
        assert_eq!(format_number("1.5", "FM9.99€", false).unwrap(), "1.50€");
    }
}
