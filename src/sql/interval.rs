//! PostgreSQL's reading of interval text (`interval_in` in the `postgres` style): numbers with
//! units in any of PostgreSQL's spellings (`2 mons`, `3 hrs`, `1.5 weeks`), times of day
//! (`+04:05:06.5`, `1 2:03`), a leading `@`, a trailing `ago`, and ISO 8601 (`P1Y2M3DT4H5M6S`).
//! Fractions are carried down as PostgreSQL carries them: a year's into whole months, a month's
//! into days of 30, a week's into days, a day's into hours of 24.

use datafusion::arrow::datatypes::IntervalMonthDayNano;

/// An interval as months, days and microseconds, built up field by field.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Fields {
    months: f64,
    days: f64,
    micros: f64,
}

impl Fields {
    /// Adds `value` of `unit`, carrying fractions down.
    fn add(&mut self, value: f64, unit: Unit) {
        const MICROS_PER_DAY: f64 = 86_400e6;
        let months = |f: &mut Fields, m: f64| {
            let whole = m.trunc();
            f.months += whole;
            f.days += ((m - whole) * 30.0 * 1e6).round() / 1e6;
        };
        // A fraction of a year (decade, ...) is a whole number of months, rounded: it does not
        // reach days, as in PostgreSQL.
        let years = |f: &mut Fields, y: f64, per: f64| {
            let whole = y.trunc();
            f.months += whole * per + ((y - whole) * per).round_ties_even();
        };
        match unit {
            Unit::Millennium => years(self, value, 12_000.0),
            Unit::Century => years(self, value, 1_200.0),
            Unit::Decade => years(self, value, 120.0),
            Unit::Year => years(self, value, 12.0),
            Unit::Month => months(self, value),
            Unit::Week | Unit::Day => {
                let days = if unit == Unit::Week {
                    value * 7.0
                } else {
                    value
                };
                let whole = days.trunc();
                self.days += whole;
                self.micros += ((days - whole) * MICROS_PER_DAY).round();
            }
            Unit::Hour => self.micros += (value * 3_600e6).round(),
            Unit::Minute => self.micros += (value * 60e6).round(),
            Unit::Second => self.micros += (value * 1e6).round(),
            Unit::Millisecond => self.micros += (value * 1e3).round(),
            Unit::Microsecond => self.micros += value.round(),
        }
    }

    fn finish(self) -> Option<IntervalMonthDayNano> {
        // Days carried from fractions of months may themselves be fractional.
        let days_whole = self.days.trunc();
        let micros = self.micros + ((self.days - days_whole) * 86_400e6).round();
        let in_range =
            |v: f64| v.is_finite() && v >= f64::from(i32::MIN) && v <= f64::from(i32::MAX);
        if !in_range(self.months) || !in_range(days_whole) || !micros.is_finite() {
            return None;
        }
        let nanos = (micros as i64).checked_mul(1000)?;
        Some(IntervalMonthDayNano::new(
            self.months as i32,
            days_whole as i32,
            nanos,
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Millennium,
    Century,
    Decade,
    Year,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
    Microsecond,
}

fn unit(word: &str) -> Option<Unit> {
    Some(match word.to_ascii_lowercase().as_str() {
        "millennium" | "millennia" | "millenniums" | "mil" | "mils" => Unit::Millennium,
        "century" | "centuries" | "c" | "cent" => Unit::Century,
        "decade" | "decades" | "dec" | "decs" => Unit::Decade,
        "year" | "years" | "y" | "yr" | "yrs" => Unit::Year,
        "month" | "months" | "mon" | "mons" => Unit::Month,
        "week" | "weeks" | "w" => Unit::Week,
        "day" | "days" | "d" => Unit::Day,
        "hour" | "hours" | "h" | "hr" | "hrs" => Unit::Hour,
        "minute" | "minutes" | "m" | "min" | "mins" => Unit::Minute,
        "second" | "seconds" | "s" | "sec" | "secs" => Unit::Second,
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" | "millisecon" => {
            Unit::Millisecond
        }
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" => Unit::Microsecond,
        _ => return None,
    })
}

/// Whether `text` reads differently under `IntervalStyle = sql_standard`: its first field has
/// a minus and no other field has a sign (`-1 day 2:03:04`), so the minus applies to every
/// field there, to the first only in the other styles.
pub fn depends_on_style(text: &str) -> bool {
    let trimmed = text.trim();
    if !trimmed.starts_with('-') {
        return false;
    }
    let Some(tokens) = tokenize(trimmed) else {
        return false;
    };
    let numbers = tokens
        .iter()
        .filter(|t| t.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '.')))
        .count();
    numbers > 1 && !tokens[1..].iter().any(|t| t.starts_with(['+', '-']))
}

/// Reads `text` as PostgreSQL reads an interval under the session's `IntervalStyle`: under
/// `sql_standard` a minus before the first field of [`depends_on_style`] text applies to all
/// of them.
pub fn parse_in_style(text: &str, sql_standard: bool) -> Option<IntervalMonthDayNano> {
    if !(sql_standard && depends_on_style(text)) {
        return parse(text);
    }
    let positive = parse(text.trim().strip_prefix('-')?)?;
    Some(IntervalMonthDayNano::new(
        positive.months.checked_neg()?,
        positive.days.checked_neg()?,
        positive.nanoseconds.checked_neg()?,
    ))
}

/// PostgreSQL's error for `text` that is not an interval.
pub fn invalid_text(text: &str) -> crate::error::Error {
    crate::error::Error::InvalidText(format!(
        "invalid input syntax for type interval: \"{text}\""
    ))
}

/// Reads `text` as PostgreSQL reads an interval; `None` when PostgreSQL would refuse it.
pub fn parse(text: &str) -> Option<IntervalMonthDayNano> {
    let trimmed = text.trim();
    if let Some(iso) = trimmed.strip_prefix(['P', 'p']) {
        return parse_iso(iso);
    }
    let body = trimmed.strip_prefix('@').unwrap_or(trimmed).trim();
    // SQL's `Y-M` for years and months (`1-2`, `-1-2`), spelled out with units.
    let spelled: Vec<String> = body
        .split_whitespace()
        .map(|word| match year_month(word) {
            Some((years, months)) => format!("{years} years {months} months"),
            None => word.to_string(),
        })
        .collect();
    let tokens = tokenize(&spelled.join(" "))?;
    if tokens.is_empty() {
        return None;
    }
    let mut fields = Fields::default();
    let mut ago = false;
    let mut i = 0;
    let mut pending: Option<f64> = None;
    while i < tokens.len() {
        let token = &tokens[i];
        if token.eq_ignore_ascii_case("ago") {
            if i + 1 != tokens.len() {
                return None;
            }
            ago = true;
        } else if token.contains(':') {
            // A bare number before a time of day is a number of days (`1 2:03:04`).
            if let Some(days) = pending.take() {
                fields.add(days, Unit::Day);
            }
            fields.micros += time_micros(token)?;
        } else if let Some(u) = unit(token) {
            fields.add(pending.take()?, u);
        } else {
            if let Some(seconds) = pending.replace(number(token)?) {
                // Two numbers in a row: the first was seconds.
                fields.add(seconds, Unit::Second);
            }
        }
        i += 1;
    }
    if let Some(seconds) = pending {
        fields.add(seconds, Unit::Second);
    }
    if ago {
        fields = Fields {
            months: -fields.months,
            days: -fields.days,
            micros: -fields.micros,
        };
    }
    fields.finish()
}

/// Splits `1day 2hours` into `1`, `day`, `2`, `hours`; a sign stays with its number.
fn tokenize(text: &str) -> Option<Vec<String>> {
    let mut tokens = Vec::new();
    for word in text.split_whitespace() {
        let mut current = String::new();
        let mut numeric: Option<bool> = None;
        for c in word.chars() {
            let is_number = c.is_ascii_digit() || matches!(c, '.' | ':' | '+' | '-');
            if !c.is_ascii_alphanumeric() && !is_number {
                // commas and the like separate fields
                if c == ',' {
                    if !current.is_empty() {
                        tokens.push(std::mem::take(&mut current));
                    }
                    numeric = None;
                    continue;
                }
                return None;
            }
            if numeric.is_some_and(|n| n != is_number) && !current.is_empty() {
                tokens.push(std::mem::take(&mut current));
            }
            numeric = Some(is_number);
            current.push(c);
        }
        if !current.is_empty() {
            tokens.push(current);
        }
    }
    Some(tokens)
}

fn number(token: &str) -> Option<f64> {
    let digits = token.trim_start_matches(['+', '-']);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    token.parse().ok()
}

/// `[+-]H:MM[:SS[.frac]]` (or `MM:SS.frac` when the first field has a fraction) in microseconds.
fn time_micros(token: &str) -> Option<f64> {
    let (negative, body) = match token.as_bytes().first()? {
        b'-' => (true, &token[1..]),
        b'+' => (false, &token[1..]),
        _ => (false, token),
    };
    let parts: Vec<&str> = body.split(':').collect();
    let value = |s: &str| -> Option<f64> {
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return None;
        }
        s.parse().ok()
    };
    let micros = match parts.as_slice() {
        [h, m] if m.contains('.') => value(h)? * 60e6 + value(m)? * 1e6,
        [h, m] => value(h)? * 3_600e6 + value(m)? * 60e6,
        [h, m, s] => value(h)? * 3_600e6 + value(m)? * 60e6 + value(s)? * 1e6,
        _ => return None,
    };
    let micros = micros.round();
    Some(if negative { -micros } else { micros })
}

/// ISO 8601 durations after the `P`: with designators (`1Y2M3DT4H5M6.5S`, `T1H`, `2W`,
/// `10.5e4Y`), or in the alternative format, basic (`00021015T103020`) or extended
/// (`0002-10-15T10:30:20`, `0002`, `T10:30`).
fn parse_iso(text: &str) -> Option<IntervalMonthDayNano> {
    let chars: Vec<char> = text.chars().collect();
    let mut fields = Fields::default();
    let mut in_time = false;
    let mut any = false;
    // Fields read so far in the date or the time part: the alternative format comes first.
    let mut in_part = 0;
    let mut i = 0;
    // A number at `i`: its value, the count of digits before its point, and where it ends.
    let read = |i: usize| -> Option<(f64, usize, usize)> {
        let mut j = i;
        if matches!(chars.get(j), Some('+' | '-')) {
            j += 1;
        }
        let digits_start = j;
        while chars.get(j).is_some_and(|c| c.is_ascii_digit()) {
            j += 1;
        }
        let whole_digits = j - digits_start;
        if chars.get(j) == Some(&'.') {
            j += 1;
            while chars.get(j).is_some_and(|c| c.is_ascii_digit()) {
                j += 1;
            }
        }
        if j == digits_start || (j == digits_start + 1 && chars[digits_start] == '.') {
            return None;
        }
        // An exponent, which PostgreSQL has always taken.
        if matches!(chars.get(j), Some('e' | 'E')) {
            let mut k = j + 1;
            if matches!(chars.get(k), Some('+' | '-')) {
                k += 1;
            }
            if chars.get(k).is_some_and(|c| c.is_ascii_digit()) {
                while chars.get(k).is_some_and(|c| c.is_ascii_digit()) {
                    k += 1;
                }
                j = k;
            }
        }
        let text: String = chars[i..j].iter().collect();
        Some((text.parse().ok()?, whole_digits, j))
    };
    while i < chars.len() {
        if matches!(chars[i], 'T' | 't') {
            if in_time {
                return None;
            }
            in_time = true;
            in_part = 0;
            i += 1;
            continue;
        }
        let (value, whole_digits, end) = read(i)?;
        in_part += 1;
        i = end;
        let designator = chars
            .get(i)
            .copied()
            .filter(|c| c.is_ascii_alphabetic() && !matches!(c, 'T' | 't'));
        if let Some(letter) = designator {
            let u = match (letter.to_ascii_uppercase(), in_time) {
                ('Y', false) => Unit::Year,
                ('M', false) => Unit::Month,
                ('W', false) => Unit::Week,
                ('D', false) => Unit::Day,
                ('H', true) => Unit::Hour,
                ('M', true) => Unit::Minute,
                ('S', true) => Unit::Second,
                _ => return None,
            };
            fields.add(value, u);
            any = true;
            i += 1;
            continue;
        }
        // The alternative format: positions, not designators, say what a number is.
        if in_part > 1 {
            return None;
        }
        let (units, separator, basic) = if in_time {
            ([Unit::Hour, Unit::Minute, Unit::Second], ':', 6)
        } else {
            ([Unit::Year, Unit::Month, Unit::Day], '-', 8)
        };
        if chars.get(i) == Some(&separator) {
            fields.add(value, units[0]);
            for unit in &units[1..] {
                if chars.get(i) != Some(&separator) {
                    break;
                }
                let (value, _, end) = read(i + 1)?;
                fields.add(value, *unit);
                i = end;
            }
        } else if whole_digits == basic && value.fract() == 0.0 {
            let v = value.abs() as i64;
            let sign = value.signum();
            fields.add(sign * (v / 10_000) as f64, units[0]);
            fields.add(sign * (v / 100 % 100) as f64, units[1]);
            fields.add(sign * (v % 100) as f64, units[2]);
        } else {
            fields.add(value, units[0]);
        }
        any = true;
        // The date part ends at `T`, the time part at the end.
        if i < chars.len() && (in_time || !matches!(chars[i], 'T' | 't')) {
            return None;
        }
    }
    if !any {
        return None;
    }
    fields.finish()
}

/// A field of an interval qualifier (`DAY TO SECOND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

/// Reads `text` as PostgreSQL reads `INTERVAL 'text' leading [TO last] [(precision)]`: a bare
/// number is the qualifier's last field (`'1' YEAR TO MONTH` is a month), one before an hour
/// or a time of day is days, `'2:03'` is minutes and seconds under `MINUTE TO SECOND`, `Y-M`
/// is years and months; then the fields below the last are dropped and seconds rounded to
/// `precision` digits. `None` when PostgreSQL would refuse the text.
pub fn parse_qualified(
    text: &str,
    leading: Field,
    last: Option<Field>,
    precision: Option<u64>,
) -> Option<IntervalMonthDayNano> {
    let last = last.unwrap_or(leading);
    if last < leading {
        return None;
    }
    let trimmed = text.trim();
    let body = trimmed.strip_prefix('@').unwrap_or(trimmed).trim();
    let tokens = tokenize(body)?;
    if tokens.is_empty() {
        return None;
    }
    // The unit a bare number at the right end takes.
    let rightmost = match (leading, last) {
        (Field::Year, Field::Year) => Unit::Year,
        (_, Field::Month) => Unit::Month,
        (_, Field::Day) => Unit::Day,
        (_, Field::Hour) => Unit::Hour,
        (Field::Minute | Field::Hour | Field::Day, Field::Minute) => Unit::Minute,
        _ => Unit::Second,
    };
    let minutes_seconds = leading == Field::Minute && last == Field::Second;
    let mut fields = Fields::default();
    let mut seen: Vec<Unit> = Vec::new();
    let use_unit = |seen: &mut Vec<Unit>, fields: &mut Fields, value: f64, unit: Unit| {
        if seen.contains(&unit) {
            return None;
        }
        seen.push(unit);
        fields.add(value, unit);
        Some(())
    };
    let mut ago = false;
    // Right to left, as PostgreSQL reads: a unit word names the number to its left.
    let mut next: Option<Unit> = None;
    for (i, token) in tokens.iter().enumerate().rev() {
        if token.eq_ignore_ascii_case("ago") {
            if i + 1 != tokens.len() {
                return None;
            }
            ago = true;
        } else if token.contains(':') {
            let micros =
                if minutes_seconds && token.matches(':').count() == 1 && !token.contains('.') {
                    let (sign, rest) = match token.as_bytes()[0] {
                        b'-' => (-1.0, &token[1..]),
                        b'+' => (1.0, &token[1..]),
                        _ => (1.0, token.as_str()),
                    };
                    let (m, s) = rest.split_once(':')?;
                    sign * (number(m)? * 60e6 + number(s)? * 1e6)
                } else {
                    time_micros(token)?
                };
            if seen.contains(&Unit::Hour) {
                return None;
            }
            seen.push(Unit::Hour);
            fields.micros += micros;
            next = Some(Unit::Day);
        } else if let Some(u) = unit(token) {
            next = Some(u);
        } else if let Some((years, months)) = year_month(token) {
            use_unit(&mut seen, &mut fields, years, Unit::Year)?;
            use_unit(&mut seen, &mut fields, months, Unit::Month)?;
            next = None;
        } else {
            let value = number(token)?;
            let u = next.unwrap_or(rightmost);
            use_unit(&mut seen, &mut fields, value, u)?;
            next = Some(if u == Unit::Hour { Unit::Day } else { u });
        }
    }
    if ago {
        fields = Fields {
            months: -fields.months,
            days: -fields.days,
            micros: -fields.micros,
        };
    }
    let v = fields.finish()?;
    let micros = v.nanoseconds / 1000;
    const HOUR: i64 = 3_600_000_000;
    let (months, days, micros) = match last {
        Field::Year => ((v.months / 12) * 12, 0, 0),
        Field::Month => (v.months, 0, 0),
        Field::Day => (v.months, v.days, 0),
        Field::Hour => (v.months, v.days, micros / HOUR * HOUR),
        Field::Minute => (v.months, v.days, micros / 60_000_000 * 60_000_000),
        Field::Second => {
            let micros = match precision {
                Some(p) if p < 6 => {
                    let scale = 10i64.pow(6 - p as u32);
                    let half = scale / 2;
                    if micros >= 0 {
                        (micros + half) / scale * scale
                    } else {
                        -((-micros + half) / scale * scale)
                    }
                }
                _ => micros,
            };
            (v.months, v.days, micros)
        }
    };
    Some(IntervalMonthDayNano::new(
        months,
        days,
        micros.checked_mul(1000)?,
    ))
}

/// `[+-]Y-M`: years and months, both with the sign.
fn year_month(token: &str) -> Option<(f64, f64)> {
    let (sign, body) = match token.as_bytes().first()? {
        b'-' => (-1.0, &token[1..]),
        b'+' => (1.0, &token[1..]),
        _ => (1.0, token),
    };
    let (years, months) = body.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if !digits(years) || !digits(months) {
        return None;
    }
    Some((
        sign * years.parse::<f64>().ok()?,
        sign * months.parse::<f64>().ok()?,
    ))
}

/// An interval as text DataFusion's own interval parser reads back exactly: months, days and
/// microseconds.
pub fn canonical_text(v: IntervalMonthDayNano) -> String {
    format!(
        "{} months {} days {} microseconds",
        v.months,
        v.days,
        v.nanoseconds / 1000
    )
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_leading_minus_under_sql_standard() {
        let read = |t: &str, standard: bool| {
            let v = parse_in_style(t, standard).unwrap();
            (v.months, v.days, v.nanoseconds / 1000)
        };
        assert!(depends_on_style("-1 day 2:03:04"));
        assert!(!depends_on_style("-1 day +2:03:04"));
        assert!(!depends_on_style("-1-2"));
        assert!(!depends_on_style("1 day -2 hours"));
        assert_eq!(read("-1 day 2 hours", true), (0, -1, -7_200_000_000));
        assert_eq!(read("-1 day 2 hours", false), (0, -1, 7_200_000_000));
        assert_eq!(read("-1 year 2 months", true), (-14, 0, 0));
    }
    use super::*;

    fn p(text: &str) -> (i32, i32, i64) {
        let v = parse(text).unwrap_or_else(|| panic!("{text}"));
        (v.months, v.days, v.nanoseconds / 1000)
    }

    const H: i64 = 3_600_000_000;
    const M: i64 = 60_000_000;

    fn q(
        text: &str,
        leading: Field,
        last: Option<Field>,
        precision: Option<u64>,
    ) -> (i32, i32, i64) {
        let v = parse_qualified(text, leading, last, precision).unwrap_or_else(|| panic!("{text}"));
        (v.months, v.days, v.nanoseconds / 1000)
    }

    #[test]
    fn reads_qualified_intervals_as_postgresql_does() {
        use Field::*;
        assert_eq!(q("1", Year, Some(Month), None), (1, 0, 0));
        assert_eq!(q("1-2", Year, Some(Month), None), (14, 0, 0));
        assert_eq!(q("1 2", Day, Some(Hour), None), (0, 1, 2 * H));
        assert_eq!(q("1 2:03:04", Day, Some(Hour), None), (0, 1, 2 * H));
        assert_eq!(
            q("1 2:03:04", Day, Some(Minute), None),
            (0, 1, 2 * H + 3 * M)
        );
        assert_eq!(q("1 2:03", Day, Some(Second), None), (0, 1, 2 * H + 3 * M));
        assert_eq!(
            q("1 2:03", Minute, Some(Second), None),
            (0, 1, 2 * M + 3_000_000)
        );
        assert_eq!(
            q("1 -2:03", Minute, Some(Second), None),
            (0, 1, -(2 * M + 3_000_000))
        );
        assert_eq!(
            q("1 -2:03:04", Minute, Some(Second), None),
            (0, 1, -(2 * H + 3 * M + 4_000_000))
        );
        assert_eq!(q("123 11", Day, Some(Hour), None), (0, 123, 11 * H));
        assert_eq!(
            q("12:34.5678", Minute, Some(Second), Some(2)),
            (0, 0, 12 * M + 34_570_000)
        );
        assert_eq!(q("1.234", Second, None, Some(2)), (0, 0, 1_230_000));
        assert_eq!(
            q("1 2:03.4567", Day, Some(Second), Some(2)),
            (0, 1, 2 * M + 3_460_000)
        );
        assert_eq!(q("999", Month, None, None), (999, 0, 0));
        assert!(parse_qualified("1 2", Day, Some(Second), None).is_none());
        assert!(parse_qualified("abc", Day, Some(Second), None).is_none());
    }

    #[test]
    fn reads_iso_8601_alternative_format() {
        assert_eq!(p("P00021015T103020"), p("2 years 10 mons 15 days 10:30:20"));
        assert_eq!(
            p("P0002-10-15T10:30:20"),
            p("2 years 10 mons 15 days 10:30:20")
        );
        assert_eq!(p("P0002"), p("2 years"));
        assert_eq!(p("P0002-10T1S"), p("2 years 10 mons 1 second"));
        assert_eq!(p("PT10"), p("10 hours"));
        assert_eq!(p("PT10:30"), p("10 hours 30 minutes"));
        assert_eq!(p("P10.5e4Y"), p("105000 years"));
        assert_eq!(p("P.1Y0M3DT4H5M6S"), p("1 mon 3 days 04:05:06"));
        assert!(parse("P.Y0M3DT4H5M6S").is_none());
        assert!(parse("P1Y2").is_none());
    }

    #[test]
    fn reads_what_postgresql_reads() {
        assert_eq!(p("41 mon 12 days 360:00"), (41, 12, 360 * H));
        assert_eq!(p("1-2"), (14, 0, 0));
        assert_eq!(p("-1-2"), (-14, 0, 0));
        assert_eq!(
            p("+1-2 -3 +4:05:06.789"),
            (14, -3, 4 * H + 5 * M + 6_789_000)
        );
        assert_eq!(p("-41 mon -12 days +360:00"), (-41, -12, 360 * H));
        assert_eq!(
            p("9 mon -27 days 12:34:56"),
            (9, -27, 12 * H + 34 * 60_000_000 + 56_000_000)
        );
        assert_eq!(
            p("-3 years 482 days 76:54:32.189"),
            (-36, 482, 76 * H + 54 * 60_000_000 + 32_189_000)
        );
        assert_eq!(p("@ 1 minute"), (0, 0, 60_000_000));
        assert_eq!(
            p("1 day 2 hours 3 minutes 4 seconds"),
            (0, 1, 2 * H + 3 * 60_000_000 + 4_000_000)
        );
        assert_eq!(p("1.5 weeks"), (0, 10, 12 * H));
        assert_eq!(p("1.5 months"), (1, 15, 0));
        assert_eq!(p("1.5 years"), (18, 0, 0));
        assert_eq!(p("5"), (0, 0, 5_000_000));
        assert_eq!(p("1 2:03:04"), (0, 1, 2 * H + 3 * 60_000_000 + 4_000_000));
        assert_eq!(p("1 day ago"), (0, -1, 0));
        assert_eq!(p("1day 2hrs"), (0, 1, 2 * H));
        assert_eq!(
            p("P1Y2M3DT4H5M6S"),
            (14, 3, 4 * H + 5 * 60_000_000 + 6_000_000)
        );
        assert_eq!(p("6 years"), (72, 0, 0));
        assert_eq!(p("10 secs"), (0, 0, 10_000_000));
        for bad in [
            "",
            "abc",
            "1 fortnight",
            "1 day 2",
            "ago 1 day",
            "P",
            "1:2:3:4",
        ] {
            if bad == "1 day 2" {
                // a trailing number is seconds
                assert_eq!(p(bad), (0, 1, 2_000_000));
                continue;
            }
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
