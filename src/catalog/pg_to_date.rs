//! PostgreSQL's `to_date(text, template)` and `to_timestamp(text, template)`: text read with
//! the template patterns `to_char` writes (`YYYY-MM-DD HH24:MI:SS`, `DD Mon YYYY`, `YYYYMMDD`,
//! `HH12:MI AM`, `J`, `TZH:TZM`, ...). DataFusion's functions of the same names take chrono's
//! `%Y-%m-%d` formats; their other forms (`to_timestamp(seconds)`, `to_date(text)`) are kept.
//!
//! As in PostgreSQL: letter case in the input is ignored; spaces before a number are skipped; a
//! separator in the template matches one separator in the input or none; a number is read to the
//! next non-digit unless the template puts another number right after it (`YYYYMMDD`), where it
//! takes its field's width; input left over when the template ends is ignored, and fields the
//! input does not reach keep their defaults (January 1 of year 0, that is 1 BC, at midnight).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Date32Array, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use super::pg_to_char::{DAYS, MONTHS, ROMAN_MONTHS, modifier, pattern_at};
use crate::session::timezone::Zone;

/// `to_date`, taking PostgreSQL's templates in its two-argument form.
pub fn to_date() -> ScalarUDF {
    ScalarUDF::new_from_impl(FromText::new(
        Target::Date,
        datafusion::functions::datetime::to_date(),
    ))
}

/// `to_timestamp`, taking PostgreSQL's templates in its two-argument form.
pub fn to_timestamp(config: &datafusion::config::ConfigOptions) -> ScalarUDF {
    ScalarUDF::new_from_impl(FromText::new(
        Target::Timestamptz,
        datafusion::functions::datetime::to_timestamp(config),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    Date,
    Timestamptz,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct FromText {
    target: Target,
    /// DataFusion's function of the same name, for the other forms.
    other_forms: Arc<ScalarUDF>,
    signature: Signature,
}

impl FromText {
    fn new(target: Target, other_forms: Arc<ScalarUDF>) -> Self {
        Self {
            target,
            other_forms,
            signature: Signature::user_defined(Volatility::Stable),
        }
    }

    fn output(&self) -> DataType {
        match self.target {
            Target::Date => DataType::Date32,
            Target::Timestamptz => DataType::Timestamp(
                TimeUnit::Microsecond,
                Some(Arc::from(crate::common::types::UTC)),
            ),
        }
    }
}

impl ScalarUDFImpl for FromText {
    fn name(&self) -> &str {
        self.other_forms.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() == 2 {
            Ok(vec![DataType::Utf8, DataType::Utf8])
        } else {
            let fields: Vec<FieldRef> = arg_types
                .iter()
                .map(|t| Arc::new(Field::new("", t.clone(), true)))
                .collect();
            Ok(
                datafusion::logical_expr::type_coercion::functions::fields_with_udf(
                    &fields,
                    self.other_forms.as_ref(),
                )?
                .iter()
                .map(|f| f.data_type().clone())
                .collect(),
            )
        }
    }

    fn with_updated_config(&self, config: &datafusion::config::ConfigOptions) -> Option<ScalarUDF> {
        let other_forms = self.other_forms.inner().with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(FromText::new(
            self.target,
            Arc::new(other_forms),
        )))
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.output())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if args.arg_fields.len() == 2 {
            Ok(Arc::new(Field::new(self.name(), self.output(), true)))
        } else {
            self.other_forms.return_field_from_args(args)
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.len() != 2 {
            return self.other_forms.invoke_with_args(args);
        }
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let texts = args.args[0].to_array(rows)?;
        let templates = args.args[1].to_array(rows)?;
        let (texts, templates) = (texts.as_string::<i32>(), templates.as_string::<i32>());
        let zone = Zone::of_session(&args.config_options);
        let mut values = Vec::with_capacity(rows);
        for row in 0..rows {
            if texts.is_null(row) || templates.is_null(row) {
                values.push(None);
                continue;
            }
            let fields = read(texts.value(row), templates.value(row))
                .map_err(|(code, message)| super::pg_builtins::pg_error(code, message))?;
            values.push(Some(match self.target {
                Target::Date => fields.days().map_err(to_error)?,
                Target::Timestamptz => fields.instant(&zone).map_err(to_error)?,
            }));
        }
        let array: ArrayRef = match self.target {
            Target::Date => Arc::new(Date32Array::from(
                values
                    .into_iter()
                    .map(|v| v.map(|d| d as i32))
                    .collect::<Vec<_>>(),
            )),
            Target::Timestamptz => Arc::new(
                TimestampMicrosecondArray::from(values).with_timezone(crate::common::types::UTC),
            ),
        };
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}

/// A refusal: SQLSTATE and message.
type Refusal = (&'static str, String);

fn to_error((code, message): Refusal) -> datafusion::error::DataFusionError {
    super::pg_builtins::pg_error(code, message)
}

/// One element of a template.
#[derive(Debug)]
enum Node {
    /// A template pattern (`YYYY`, `Mon`, ...), with `FM` before it.
    Field { pattern: &'static str, fill: bool },
    /// Text in double quotes: skips as many characters of the input.
    Quoted(usize),
    /// Any other character: a separator, or a letter that skips one character.
    Char(char),
}

fn template_nodes(template: &str) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut rest = template;
    let mut fill = false;
    while let Some(c) = rest.chars().next() {
        if let Some((after, is_fill)) = modifier(rest) {
            fill |= is_fill;
            rest = after;
            continue;
        }
        if let Some(pattern) = pattern_at(rest) {
            nodes.push(Node::Field { pattern, fill });
            fill = false;
            rest = &rest[pattern.len()..];
            // An ordinal suffix after a number is read and ignored.
            if let Some(after) = rest.strip_prefix("TH").or_else(|| rest.strip_prefix("th")) {
                nodes.push(Node::Quoted(2));
                rest = after;
            }
            continue;
        }
        if c == '"' {
            let mut count = 0;
            let mut chars = rest[1..].char_indices();
            let mut end = rest.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                        count += 1;
                    }
                    '"' => {
                        end = i + 2;
                        break;
                    }
                    _ => count += 1,
                }
            }
            nodes.push(Node::Quoted(count));
            rest = &rest[end.min(rest.len())..];
            continue;
        }
        nodes.push(Node::Char(c));
        rest = &rest[c.len_utf8()..];
    }
    nodes
}

/// Patterns read as numbers.
fn numeric(pattern: &str) -> bool {
    !matches!(
        pattern.to_ascii_uppercase().as_str(),
        "MONTH"
            | "MON"
            | "DAY"
            | "DY"
            | "AM"
            | "PM"
            | "A.M."
            | "P.M."
            | "AD"
            | "BC"
            | "A.D."
            | "B.C."
            | "RM"
            | "TZ"
            | "OF"
    )
}

/// The fields read from the input.
#[derive(Debug, Default)]
struct Fields {
    year: Option<i64>,
    century: Option<i64>,
    bc: bool,
    month: Option<i64>,
    day: Option<i64>,
    day_of_year: Option<i64>,
    week_of_year: Option<i64>,
    week_of_month: Option<i64>,
    julian: Option<i64>,
    hour: Option<i64>,
    twelve_hour: bool,
    pm: Option<bool>,
    minute: i64,
    second: i64,
    /// Fractions of a second from `MS` and from `US` or `FFn`, which add up.
    millis_micros: i64,
    micros: i64,
    seconds_of_day: Option<i64>,
    offset_hours: Option<i64>,
    offset_minutes: i64,
}

/// The input after `at`, with spaces skipped.
fn skip_spaces(input: &[char], mut at: usize) -> usize {
    while at < input.len() && input[at].is_whitespace() {
        at += 1;
    }
    at
}

fn invalid_value(text: &str, pattern: &str) -> Refusal {
    (
        "22007",
        format!("invalid value \"{text}\" for \"{pattern}\""),
    )
}

/// Reads `text` with `template`.
fn read(text: &str, template: &str) -> Result<Fields, Refusal> {
    let nodes = template_nodes(template);
    let input: Vec<char> = text.chars().collect();
    let mut fields = Fields::default();
    let mut at = 0;
    for (index, node) in nodes.iter().enumerate() {
        if at >= input.len() {
            break;
        }
        match node {
            Node::Char(c) if c.is_whitespace() => {
                at = skip_spaces(&input, at);
            }
            Node::Char(c) if !c.is_alphanumeric() => {
                // A separator matches one separator in the input (after any spaces), or none.
                let next = skip_spaces(&input, at);
                if next < input.len() && !input[next].is_alphanumeric() {
                    at = next + 1;
                } else {
                    at = next;
                }
            }
            Node::Char(_) => at += 1,
            Node::Quoted(n) => at = (at + n).min(input.len()),
            Node::Field { pattern, fill } => {
                let upper = pattern.to_ascii_uppercase();
                if numeric(pattern) {
                    // A number runs to the next non-digit unless another number follows it
                    // directly in the template.
                    let slurp = *fill
                        || match nodes.get(index + 1) {
                            None => true,
                            Some(Node::Char(c)) => !c.is_ascii_digit(),
                            Some(Node::Quoted(_)) => true,
                            Some(Node::Field { pattern, .. }) => !numeric(pattern),
                        };
                    let (value, digits, next) = read_number(&input, at, &upper, slurp)?;
                    at = next;
                    fields.set_number(&upper, value, digits)?;
                } else {
                    at = fields.read_word(&input, at, &upper, pattern)?;
                }
            }
        }
    }
    Ok(fields)
}

/// The width of a numeric pattern's field when it is read at fixed width.
fn width(pattern: &str) -> usize {
    match pattern {
        "Y,YYY" => 5,
        "YYYY" | "IYYY" | "SSSS" => 4,
        "SSSSS" => 5,
        "YYY" | "IYY" | "DDD" | "IDDD" | "MS" => 3,
        "US" => 6,
        "Y" | "I" | "D" | "ID" | "W" | "Q" => 1,
        "J" => 7,
        p if p.starts_with("FF") => p[2..].parse().unwrap_or(6),
        _ => 2,
    }
}

/// Reads the number of `pattern` at `at`: its value, the count of digits, and where it ends.
fn read_number(
    input: &[char],
    at: usize,
    pattern: &str,
    slurp: bool,
) -> Result<(i64, usize, usize), Refusal> {
    let start = skip_spaces(input, at);
    let signed = matches!(pattern, "TZH" | "J" | "YYYY" | "Y,YYY");
    let mut end = start;
    if signed && end < input.len() && matches!(input[end], '+' | '-') {
        end += 1;
    }
    let digits_start = end;
    if slurp {
        while end < input.len()
            && (input[end].is_ascii_digit() || (pattern == "Y,YYY" && input[end] == ','))
        {
            end += 1;
        }
    } else {
        let want = width(pattern);
        let available = input.len() - digits_start;
        if available < want {
            return Err((
                "22007",
                format!("source string too short for \"{pattern}\" formatting field"),
            ));
        }
        end = digits_start + want;
    }
    let text: String = input[start..end].iter().collect();
    let digits: String = input[digits_start..end]
        .iter()
        .filter(|c| **c != ',')
        .collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        let shown: String = input[start..(start + width(pattern)).min(input.len())]
            .iter()
            .collect();
        return Err(invalid_value(
            if text.is_empty() { &shown } else { &text },
            pattern,
        ));
    }
    let value: i64 = digits.parse().map_err(|_| invalid_value(&text, pattern))?;
    let negative = input[start..digits_start].contains(&'-');
    Ok((if negative { -value } else { value }, digits.len(), end))
}

/// PostgreSQL's reading of a year given in fewer than four digits: the one nearest 2020.
fn nearest_2020(year: i64) -> i64 {
    match year {
        0..=69 => year + 2000,
        70..=99 => year + 1900,
        100..=519 => year + 2000,
        520..=999 => year + 1000,
        _ => year,
    }
}

impl Fields {
    fn set_number(&mut self, pattern: &str, value: i64, digits: usize) -> Result<(), Refusal> {
        let fraction = |places: u32| {
            let digits = digits as u32;
            if digits <= places {
                value * 10i64.pow(places - digits)
            } else {
                value / 10i64.pow(digits - places)
            }
        };
        match pattern {
            "YYYY" | "Y,YYY" => self.year = Some(value),
            "YYY" | "YY" | "Y" => {
                self.year = Some(if digits < 4 {
                    nearest_2020(value)
                } else {
                    value
                })
            }
            "CC" => self.century = Some(value),
            "MM" => self.month = Some(value),
            "DD" => self.day = Some(value),
            "DDD" => self.day_of_year = Some(value),
            "WW" => self.week_of_year = Some(value),
            "W" => self.week_of_month = Some(value),
            "J" => self.julian = Some(value),
            "HH" | "HH12" => {
                self.hour = Some(value);
                self.twelve_hour = true;
            }
            "HH24" => self.hour = Some(value),
            "MI" => self.minute = value,
            "SS" => self.second = value,
            "MS" => self.millis_micros = fraction(3) * 1000,
            "US" => self.micros = fraction(6),
            p if p.starts_with("FF") => self.micros = fraction(6),
            "SSSS" | "SSSSS" => self.seconds_of_day = Some(value),
            "TZH" => self.offset_hours = Some(value),
            "TZM" => self.offset_minutes = value,
            // Day of the week and quarter say nothing a date does not.
            "D" | "Q" => {}
            other => {
                return Err((
                    "0A000",
                    format!("reading the template pattern \"{other}\" is not supported"),
                ));
            }
        }
        Ok(())
    }

    /// Reads the word `pattern` stands for at `at`; where it ends.
    fn read_word(
        &mut self,
        input: &[char],
        at: usize,
        pattern: &str,
        written: &str,
    ) -> Result<usize, Refusal> {
        let at = skip_spaces(input, at);
        let rest: String = input[at..].iter().collect();
        let lower = rest.to_lowercase();
        let matched = |candidates: &[&str]| -> Option<(usize, usize)> {
            candidates
                .iter()
                .enumerate()
                .filter(|(_, c)| lower.starts_with(&c.to_lowercase()))
                .max_by_key(|(_, c)| c.len())
                .map(|(i, c)| (i, c.chars().count()))
        };
        let found = match pattern {
            "MONTH" => matched(&MONTHS).map(|(i, n)| {
                self.month = Some(i as i64 + 1);
                n
            }),
            "MON" => {
                let short: Vec<&str> = MONTHS.iter().map(|m| &m[..3]).collect();
                matched(&short).map(|(i, n)| {
                    self.month = Some(i as i64 + 1);
                    n
                })
            }
            "DAY" => matched(&DAYS).map(|(_, n)| n),
            "DY" => {
                let short: Vec<&str> = DAYS.iter().map(|d| &d[..3]).collect();
                matched(&short).map(|(_, n)| n)
            }
            "RM" => {
                // The longest numeral that matches: VIII before V.
                matched(&ROMAN_MONTHS).map(|(i, n)| {
                    self.month = Some(i as i64 + 1);
                    n
                })
            }
            "AM" | "PM" => matched(&["am", "pm"]).map(|(i, n)| {
                self.pm = Some(i == 1);
                n
            }),
            "A.M." | "P.M." => matched(&["a.m.", "p.m."]).map(|(i, n)| {
                self.pm = Some(i == 1);
                n
            }),
            "AD" | "BC" => matched(&["ad", "bc"]).map(|(i, n)| {
                self.bc = i == 1;
                n
            }),
            "A.D." | "B.C." => matched(&["a.d.", "b.c."]).map(|(i, n)| {
                self.bc = i == 1;
                n
            }),
            _ => {
                return Err((
                    "0A000",
                    format!("formatting field \"{written}\" is only supported in to_char"),
                ));
            }
        };
        match found {
            Some(n) => Ok(at + n),
            None => Err(invalid_value(&rest, written)),
        }
    }

    /// The date read, as days since 1970-01-01.
    fn days(&self) -> Result<i64, Refusal> {
        if let Some(julian) = self.julian {
            // Julian day 2440588 is 1970-01-01.
            return Ok(julian - 2_440_588);
        }
        let mut year = match (self.year, self.century) {
            (Some(year), _) => year,
            (None, Some(century)) if century > 0 => (century - 1) * 100 + 1,
            (None, Some(century)) => century * 100 + 1,
            // As in PostgreSQL: year 0, shown as 1 BC.
            (None, None) => 0,
        };
        if self.bc {
            year = -year + 1;
        }
        let out_of_range = || {
            (
                "22008",
                format!(
                    "date/time field value out of range: \"{year}-{:02}-{:02}\"",
                    self.month.unwrap_or(1),
                    self.day.unwrap_or(1)
                ),
            )
        };
        let day_of_year = self.day_of_year.or_else(|| {
            self.week_of_year
                .filter(|_| self.month.is_none() && self.day.is_none())
                .map(|w| (w - 1) * 7 + 1)
        });
        if let (Some(doy), None) = (day_of_year, self.month) {
            let days = if super::pg_datetime::is_leap(year) {
                366
            } else {
                365
            };
            if !(1..=days).contains(&doy) {
                return Err(out_of_range());
            }
            return Ok(super::pg_datetime::days_from_civil(year, 1, 1) + doy - 1);
        }
        let month = self.month.unwrap_or(1);
        let day = self
            .day
            .or_else(|| self.week_of_month.map(|w| (w - 1) * 7 + 1))
            .unwrap_or(1);
        if !(1..=12).contains(&month)
            || !(1..=i64::from(super::pg_datetime::days_in_month(year, month as u32)))
                .contains(&day)
        {
            return Err(out_of_range());
        }
        Ok(super::pg_datetime::days_from_civil(
            year,
            month as u32,
            day as u32,
        ))
    }

    /// The instant read: the local time in `zone`, or at the offset the input gave.
    fn instant(&self, zone: &Zone) -> Result<i64, Refusal> {
        let days = self.days()?;
        let (mut hour, mut minute, mut second) = (self.hour.unwrap_or(0), self.minute, self.second);
        if let Some(seconds) = self.seconds_of_day {
            hour = seconds / 3600;
            minute = seconds / 60 % 60;
            second = seconds % 60;
        }
        if self.twelve_hour {
            if !(1..=12).contains(&hour) {
                return Err((
                    "22007",
                    format!("hour \"{hour}\" is invalid for the 12-hour clock"),
                ));
            }
            hour %= 12;
        }
        if self.pm == Some(true) && hour < 12 {
            hour += 12;
        }
        if !(0..=24).contains(&hour) || !(0..=59).contains(&minute) || !(0..=60).contains(&second) {
            return Err((
                "22008",
                format!("date/time field value out of range: \"{hour}:{minute:02}:{second:02}\""),
            ));
        }
        let out_of_range = || ("22008", "timestamp out of range".to_string());
        let local = days
            .checked_mul(86_400_000_000)
            .and_then(|d| d.checked_add(((hour * 60 + minute) * 60 + second) * 1_000_000))
            .and_then(|d| d.checked_add(self.millis_micros + self.micros))
            .ok_or_else(out_of_range)?;
        match self.offset_hours {
            Some(hours) => {
                let sign = if hours < 0 { -1 } else { 1 };
                let offset = (hours * 3600 + sign * self.offset_minutes * 60) * 1_000_000;
                local.checked_sub(offset).ok_or_else(out_of_range)
            }
            None => {
                let naive = chrono::DateTime::from_timestamp_micros(local)
                    .ok_or_else(out_of_range)?
                    .naive_utc();
                Ok(zone.to_utc(naive).and_utc().timestamp_micros())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str, template: &str) -> String {
        let days = read(text, template).and_then(|f| f.days()).unwrap();
        super::super::pg_datetime::date_text(days as i32)
    }

    fn timestamp(text: &str, template: &str) -> String {
        let micros = read(text, template)
            .and_then(|f| f.instant(&Zone::utc()))
            .unwrap();
        super::super::pg_datetime::timestamp_text(micros, None)
    }

    #[test]
    fn dates() {
        assert_eq!(date("20100309", "YYYYMMDD"), "2010-03-09");
        assert_eq!(date("2024-01-05", "YYYY-MM-DD"), "2024-01-05");
        assert_eq!(date("05 Jan 2024", "DD Mon YYYY"), "2024-01-05");
        assert_eq!(date("  5 january   2024", "DD Month YYYY"), "2024-01-05");
        assert_eq!(date("2024/1/5", "YYYY-MM-DD"), "2024-01-05");
        assert_eq!(date("24-01-05", "YY-MM-DD"), "2024-01-05");
        assert_eq!(date("2024 032", "YYYY DDD"), "2024-02-01");
        assert_eq!(date("2451187", "J"), "1999-01-08");
        assert_eq!(date("44 3 15 BC", "YYYY MM DD BC"), "0044-03-15 BC");
        assert_eq!(date("2024", "YYYY-MM-DD"), "2024-01-01");
        assert_eq!(date("201003", "YYYYMMDD"), "2010-03-01");
        assert_eq!(date("March 3rd, 2024", "Month DDth, YYYY"), "2024-03-03");
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            timestamp("2024-01-05 10:11:12.5", "YYYY-MM-DD HH24:MI:SS.US"),
            "2024-01-05 10:11:12.5"
        );
        assert_eq!(timestamp("12.3", "SS.MS"), "0001-01-01 00:00:12.3 BC");
        assert_eq!(
            timestamp("2024-01-05 12:30 am", "YYYY-MM-DD HH12:MI AM"),
            "2024-01-05 00:30:00"
        );
        assert_eq!(
            timestamp("2024-01-05 01:30 P.M.", "YYYY-MM-DD HH:MI P.M."),
            "2024-01-05 13:30:00"
        );
        assert_eq!(
            timestamp("2024-01-05 10:00 -05:30", "YYYY-MM-DD HH24:MI TZH:TZM"),
            "2024-01-05 15:30:00"
        );
    }

    #[test]
    fn refusals() {
        for (text, template, code) in [
            ("2024-13-01", "YYYY-MM-DD", "22008"),
            ("2024-02-30", "YYYY-MM-DD", "22008"),
            ("20xx0101", "YYYYMMDD", "22007"),
            ("05 Foo 2024", "DD Mon YYYY", "22007"),
        ] {
            let refusal = read(text, template).and_then(|f| f.days()).unwrap_err();
            assert_eq!(refusal.0, code, "{text} {template}: {}", refusal.1);
        }
        let refusal = read("13:00", "HH12:MI")
            .and_then(|f| f.instant(&Zone::utc()))
            .unwrap_err();
        assert_eq!(refusal.0, "22007");
    }
}
