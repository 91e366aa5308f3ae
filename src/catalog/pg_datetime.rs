//! Date and time text as PostgreSQL reads it: `timestamp`, `timestamptz` and `date` input.
//!
//! PostgreSQL takes far more than ISO 8601: `Mon Feb 10 17:32:01 1997 PST`, `19970210 173201
//! -0800`, `Feb 10 5:32PM 1997`, `1997.041` (day of the year), `J2451187` (Julian day),
//! `2000-03-15 08:14:01 GMT+8` (a POSIX zone), `0097-02-16 BC`, zone abbreviations and names,
//! and the words `epoch`, `now`, `today`, `tomorrow`, `yesterday`, `infinity` and `-infinity`.
//! The text is split into fields as PostgreSQL's `ParseDateTime` splits it and each field read
//! as its `DecodeDateTime` reads it, month-day-year order for ambiguous numbers (the default
//! DateStyle). Days are counted from 1970-01-01 by the proleptic Gregorian calendar over
//! PostgreSQL's whole range (4714 BC to 294276 AD for timestamps), which chrono does not reach.
//!
//! `infinity` and `-infinity` are stored as PostgreSQL stores them, the largest and smallest
//! values of the type, which sort after and before every other value and are written back as
//! the words.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Date32Array, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::pg_functions::session_setting;
use crate::session::timezone::Zone;

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

/// The days from 1970-01-01 to 4714-11-24 BC, the first day PostgreSQL's timestamps reach
/// (Julian day 0).
const FIRST_DAY: i64 = -2_440_588;

/// The days from 1970-01-01 to 294277-01-01 AD, the first day after the last a timestamp
/// reaches.
const END_OF_TIMESTAMPS: i64 = 106_762_940;

/// The days from 1970-01-01 to 5874898-01-01 AD, the first day after the last a date reaches.
const END_OF_DATES: i64 = 2_145_042_906;

/// `timestamp 'infinity'`, as PostgreSQL stores it.
pub const TIMESTAMP_INFINITY: i64 = i64::MAX;
/// `timestamp '-infinity'`.
pub const TIMESTAMP_NEG_INFINITY: i64 = i64::MIN;
/// `date 'infinity'`.
pub const DATE_INFINITY: i32 = i32::MAX;
/// `date '-infinity'`.
pub const DATE_NEG_INFINITY: i32 = i32::MIN;

/// The days from 1970-01-01 to `year-month-day` (astronomical year: 1 BC is 0) in the
/// proleptic Gregorian calendar.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The astronomical year, month and day of `days` after 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Whether the astronomical year `year` is a leap year.
pub fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// The days of `month` (1 to 12) of the astronomical year `year`.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `days` after 1970-01-01 as PostgreSQL writes a date in the ISO style: `1997-02-10`,
/// `0097-02-16 BC`, `infinity`.
pub fn date_text(days: i32) -> String {
    match days {
        DATE_INFINITY => "infinity".into(),
        DATE_NEG_INFINITY => "-infinity".into(),
        _ => {
            let (year, month, day) = civil_from_days(i64::from(days));
            let (year, era) = era_year(year);
            format!("{year:04}-{month:02}-{day:02}{era}")
        }
    }
}

/// A timestamp's wall-clock `micros` (since 1970-01-01 00:00 on the same clock) as PostgreSQL
/// writes it in the ISO style, with `offset` (seconds east) after the time when given:
/// `1997-02-10 17:32:01.5`, `0097-02-16 17:32:01-08 BC`.
pub fn timestamp_text(micros: i64, offset: Option<i32>) -> String {
    match micros {
        TIMESTAMP_INFINITY => return "infinity".into(),
        TIMESTAMP_NEG_INFINITY => return "-infinity".into(),
        _ => {}
    }
    let days = micros.div_euclid(DAY_MICROS);
    let of_day = micros.rem_euclid(DAY_MICROS);
    let (year, month, day) = civil_from_days(days);
    let (year, era) = era_year(year);
    let seconds = of_day / 1_000_000;
    let fraction = of_day % 1_000_000;
    let fraction = if fraction == 0 {
        String::new()
    } else {
        format!(".{fraction:06}").trim_end_matches('0').to_string()
    };
    let offset = offset
        .map(crate::session::timezone::offset_text)
        .unwrap_or_default();
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}{fraction}{offset}{era}",
        seconds / 3600,
        (seconds / 60) % 60,
        seconds % 60
    )
}

/// The year as written with its era: 1 BC is astronomical year 0.
fn era_year(year: i64) -> (i64, &'static str) {
    if year <= 0 {
        (1 - year, " BC")
    } else {
        (year, "")
    }
}

/// The order of day, month and year in a date written with numbers only (`DateStyle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DateOrder {
    /// `02/10/1997`: PostgreSQL's default.
    #[default]
    Mdy,
    /// `10/02/1997`.
    Dmy,
    /// `1997/02/10`.
    Ymd,
}

impl DateOrder {
    /// The order a `DateStyle` setting (`ISO, MDY`, `ymd`, `European`) gives.
    pub fn of_datestyle(style: &str) -> DateOrder {
        let style = style.to_ascii_lowercase();
        if style.contains("ymd") {
            DateOrder::Ymd
        } else if style.contains("dmy") || (style.contains("euro") && !style.contains("noneuro")) {
            DateOrder::Dmy
        } else {
            DateOrder::Mdy
        }
    }
}

/// What reading text as a date or time depends on: the moment (`now`, `today`), the session's
/// time zone (text without one) and its date order.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// Microseconds since 1970 UTC.
    pub now_micros: i64,
    /// The session's `TimeZone`.
    pub zone: Zone,
    /// The session's `DateStyle` order.
    pub order: DateOrder,
}

/// Why text is not a date or time.
#[derive(Debug, Clone, PartialEq)]
enum Refusal {
    /// Not a date or time at all (`22007`).
    Syntax,
    /// A field out of its range, such as February 30th (`22008`).
    FieldRange,
    /// An offset of more than 15 hours (`22009`).
    Displacement,
    /// A zone name that is not known (`22023`).
    UnknownZone(String),
}

/// A zone written in the text.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Written {
    /// A fixed offset, seconds east of Greenwich.
    Offset(i32),
    /// A named zone with its rules.
    Zone(Zone),
}

/// What the text says.
#[derive(Debug, Clone, PartialEq)]
enum Reading {
    /// A date and time of day on the clock of `zone` (or of no zone).
    At {
        /// Days from 1970-01-01.
        days: i64,
        /// Microseconds into the day.
        micros: i64,
        zone: Option<Written>,
        /// Whether a date was written (text with only a time is not a timestamp).
        has_date: bool,
    },
    /// `now`: this moment.
    Now,
    /// `infinity`.
    Infinity,
    /// `-infinity`.
    NegInfinity,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Digits, perhaps with a fraction or a run of digits (`19970210`, `1997.041`).
    Number,
    /// A time of day (`17:32:01.5`).
    Time,
    /// A date with separators (`1997-02-10`, `feb-10-1997`), or a zone name with punctuation.
    Date,
    /// A word.
    Word,
    /// A signed offset (`-0800`, `+05:30`).
    Offset,
    /// A signed word (`-infinity`).
    Special,
}

/// The text split into fields as PostgreSQL's `ParseDateTime` splits it; words lower-cased.
fn fields(text: &str) -> Option<Vec<(Kind, String)>> {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let mut i = 0;
    let mut out = Vec::new();
    let digit = |i: usize| i < n && chars[i].is_ascii_digit();
    while i < n {
        let c = chars[i];
        let mut field = String::new();
        let kind;
        if c.is_ascii_digit() {
            while digit(i) {
                field.push(chars[i]);
                i += 1;
            }
            if i < n && chars[i] == ':' {
                kind = Kind::Time;
                while i < n && (chars[i].is_ascii_digit() || chars[i] == ':' || chars[i] == '.') {
                    field.push(chars[i]);
                    i += 1;
                }
            } else if i < n && matches!(chars[i], '-' | '/' | '.') {
                let delimiter = chars[i];
                field.push(delimiter);
                i += 1;
                if digit(i) {
                    let mut k = if delimiter == '.' {
                        Kind::Number
                    } else {
                        Kind::Date
                    };
                    while digit(i) {
                        field.push(chars[i]);
                        i += 1;
                    }
                    if i < n && chars[i] == delimiter {
                        k = Kind::Date;
                        while i < n && (chars[i].is_ascii_digit() || chars[i] == delimiter) {
                            field.push(chars[i]);
                            i += 1;
                        }
                    }
                    kind = k;
                } else {
                    kind = Kind::Date;
                    while i < n && (chars[i].is_ascii_alphanumeric() || chars[i] == delimiter) {
                        field.push(chars[i].to_ascii_lowercase());
                        i += 1;
                    }
                }
            } else {
                kind = Kind::Number;
            }
        } else if c == '.' {
            field.push(c);
            i += 1;
            while digit(i) {
                field.push(chars[i]);
                i += 1;
            }
            kind = Kind::Number;
        } else if c.is_ascii_alphabetic() {
            while i < n && chars[i].is_ascii_alphabetic() {
                field.push(chars[i].to_ascii_lowercase());
                i += 1;
            }
            // A date with a month name (`feb-10-1997`) or a zone name with punctuation
            // (`america/new_york`, `gmt+8`); a keyword followed by a number stays a word.
            let is_date = i < n
                && (matches!(chars[i], '-' | '/' | '.')
                    || ((chars[i] == '+' || chars[i].is_ascii_digit())
                        && keyword(&field).is_none()));
            if is_date {
                while i < n
                    && (chars[i].is_ascii_alphanumeric()
                        || matches!(chars[i], '+' | '-' | '/' | '_' | '.' | ':'))
                {
                    field.push(chars[i].to_ascii_lowercase());
                    i += 1;
                }
                kind = Kind::Date;
            } else {
                kind = Kind::Word;
            }
        } else if c.is_whitespace() {
            i += 1;
            continue;
        } else if c == '+' || c == '-' {
            field.push(c);
            i += 1;
            while i < n && chars[i].is_whitespace() {
                i += 1;
            }
            if digit(i) {
                while i < n && (chars[i].is_ascii_digit() || matches!(chars[i], ':' | '.' | '-')) {
                    field.push(chars[i]);
                    i += 1;
                }
                kind = Kind::Offset;
            } else if i < n && chars[i].is_ascii_alphabetic() {
                while i < n && chars[i].is_ascii_alphabetic() {
                    field.push(chars[i].to_ascii_lowercase());
                    i += 1;
                }
                kind = Kind::Special;
            } else {
                return None;
            }
        } else if c.is_ascii_punctuation() {
            // Other punctuation only separates fields.
            i += 1;
            continue;
        } else {
            return None;
        }
        out.push((kind, field));
    }
    Some(out)
}

/// The words PostgreSQL's date and time reader knows, apart from zone abbreviations.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Keyword {
    Month(u32),
    /// A day of the week: read and ignored.
    Weekday,
    Am,
    Pm,
    Ad,
    Bc,
    Epoch,
    Now,
    Today,
    Tomorrow,
    Yesterday,
    Infinity,
    NegInfinity,
    /// Midnight.
    Allballs,
    /// `T`: a time follows (ISO 8601).
    IsoTime,
    /// `J`: a Julian day number follows.
    Julian,
}

fn keyword(word: &str) -> Option<Keyword> {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    if let Some(m) = MONTHS
        .iter()
        .position(|m| *m == word || (word.len() == 3 && m.starts_with(word)))
    {
        return Some(Keyword::Month(m as u32 + 1));
    }
    Some(match word {
        "sept" => Keyword::Month(9),
        "sun" | "sunday" | "mon" | "monday" | "tue" | "tues" | "tuesday" | "wed" | "weds"
        | "wednes" | "wednesday" | "thu" | "thur" | "thurs" | "thursday" | "fri" | "friday"
        | "sat" | "saturday" => Keyword::Weekday,
        "am" => Keyword::Am,
        "pm" => Keyword::Pm,
        "ad" => Keyword::Ad,
        "bc" => Keyword::Bc,
        "epoch" => Keyword::Epoch,
        "now" => Keyword::Now,
        "today" => Keyword::Today,
        "tomorrow" => Keyword::Tomorrow,
        "yesterday" => Keyword::Yesterday,
        "infinity" => Keyword::Infinity,
        "-infinity" => Keyword::NegInfinity,
        "allballs" => Keyword::Allballs,
        "t" => Keyword::IsoTime,
        "j" | "jd" | "julian" => Keyword::Julian,
        _ => return None,
    })
}

/// Zone abbreviations PostgreSQL's default set knows, in seconds east of Greenwich.
fn abbreviation(word: &str) -> Option<i32> {
    let hours = |h: f64| Some((h * 3600.0) as i32);
    match word {
        "utc" | "gmt" | "ut" | "z" | "zulu" | "wet" | "greenwich" => hours(0.0),
        "bst" | "cet" | "met" | "mez" | "west" | "wat" => hours(1.0),
        "cest" | "eet" | "mest" | "mesz" | "sast" | "ist" | "cat" => hours(2.0),
        "eest" | "msk" | "eat" | "idt" => hours(3.0),
        "msd" | "gst" => hours(4.0),
        "pkt" => hours(5.0),
        "ict" | "wib" => hours(7.0),
        "awst" | "hkt" | "sgt" | "pht" | "wst" => hours(8.0),
        "jst" | "kst" => hours(9.0),
        "acst" => hours(9.5),
        "aest" => hours(10.0),
        "acdt" => hours(10.5),
        "aedt" => hours(11.0),
        "nzst" => hours(12.0),
        "nzdt" => hours(13.0),
        "adt" => hours(-3.0),
        "ast" | "edt" => hours(-4.0),
        "est" | "cdt" => hours(-5.0),
        "cst" | "mdt" => hours(-6.0),
        "mst" | "pdt" => hours(-7.0),
        "pst" | "akdt" => hours(-8.0),
        "akst" | "hdt" => hours(-9.0),
        "hst" => hours(-10.0),
        "nst" => hours(-3.5),
        "ndt" => hours(-2.5),
        _ => None,
    }
}

/// Which fields have been read, to refuse one written twice.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    year: bool,
    month: bool,
    day: bool,
    time: bool,
    zone: bool,
}

impl Seen {
    fn any_date(&self) -> bool {
        self.year || self.month || self.day
    }
    fn whole_date(&self) -> bool {
        self.year && self.month && self.day
    }
}

/// The fields read so far.
#[derive(Debug, Default)]
struct Parts {
    seen: Seen,
    year: i64,
    month: u32,
    day: u32,
    day_of_year: Option<u32>,
    hour: i64,
    minute: i64,
    second: i64,
    micros: i64,
    zone: Option<Written>,
    two_digit_year: bool,
    text_month: bool,
    bc: bool,
    ampm: Option<bool>,
    julian: Option<i64>,
    order: DateOrder,
}

impl Parts {
    fn set_year(&mut self, value: i64, digits: usize) -> Result<(), Refusal> {
        if self.seen.year {
            return Err(Refusal::Syntax);
        }
        self.seen.year = true;
        self.year = value;
        self.two_digit_year = digits <= 2;
        Ok(())
    }
    fn set_month(&mut self, value: i64) -> Result<(), Refusal> {
        if self.seen.month {
            return Err(Refusal::Syntax);
        }
        self.seen.month = true;
        self.month = u32::try_from(value).map_err(|_| Refusal::FieldRange)?;
        Ok(())
    }
    fn set_day(&mut self, value: i64) -> Result<(), Refusal> {
        if self.seen.day {
            return Err(Refusal::Syntax);
        }
        self.seen.day = true;
        self.day = u32::try_from(value).map_err(|_| Refusal::FieldRange)?;
        Ok(())
    }
    fn set_time(
        &mut self,
        hour: i64,
        minute: i64,
        second: i64,
        micros: i64,
    ) -> Result<(), Refusal> {
        if self.seen.time {
            return Err(Refusal::Syntax);
        }
        if hour < 0 || !(0..60).contains(&minute) || !(0..=60).contains(&second) {
            return Err(Refusal::FieldRange);
        }
        self.seen.time = true;
        (self.hour, self.minute, self.second, self.micros) = (hour, minute, second, micros);
        Ok(())
    }
    fn set_zone(&mut self, zone: Written) -> Result<(), Refusal> {
        if self.seen.zone {
            return Err(Refusal::Syntax);
        }
        self.seen.zone = true;
        self.zone = Some(zone);
        Ok(())
    }
    fn set_date(&mut self, days: i64) -> Result<(), Refusal> {
        let (year, month, day) = civil_from_days(days);
        if self.seen.any_date() {
            return Err(Refusal::Syntax);
        }
        self.seen.year = true;
        self.seen.month = true;
        self.seen.day = true;
        (self.year, self.month, self.day) = (year, month, day);
        // Already astronomical: no era or two-digit adjustment.
        self.julian = Some(days);
        Ok(())
    }

    /// A number standing alone, placed by what has been read so far (`DecodeNumber`).
    fn number(&mut self, text: &str) -> Result<(), Refusal> {
        let (digits, fraction) = match text.split_once('.') {
            Some((d, f)) => (d, Some(f)),
            None => (text, None),
        };
        if fraction.is_some() {
            if digits.len() > 2 {
                return self.number_run(text);
            }
            // A fraction of a second after a number standing alone is not something
            // timestamps take.
            return Err(Refusal::Syntax);
        }
        let value: i64 = digits.parse().map_err(|_| Refusal::FieldRange)?;
        let len = digits.len();
        let s = self.seen;
        if len == 3 && s.year && !s.month && !s.day && (1..=366).contains(&value) {
            self.seen.month = true;
            self.seen.day = true;
            self.day_of_year = Some(value as u32);
            return Ok(());
        }
        match (s.year, s.month, s.day) {
            (false, false, false) => {
                if len >= 3 || self.order == DateOrder::Ymd {
                    self.set_year(value, len)
                } else if self.order == DateOrder::Dmy {
                    self.set_day(value)
                } else {
                    self.set_month(value)
                }
            }
            (true, false, false) => self.set_month(value),
            (false, true, false) => {
                if self.text_month && (len >= 3 || self.order == DateOrder::Ymd) {
                    self.set_year(value, len)
                } else {
                    self.set_day(value)
                }
            }
            (true, true, false) => {
                if self.text_month && len >= 3 && self.two_digit_year {
                    // The first number was the day, not a two-digit year.
                    self.seen.day = true;
                    self.day = u32::try_from(self.year).map_err(|_| Refusal::FieldRange)?;
                    self.year = value;
                    self.two_digit_year = false;
                    Ok(())
                } else {
                    self.set_day(value)
                }
            }
            (false, false, true) => self.set_month(value),
            (false, true, true) => self.set_year(value, len),
            (true, true, true) => self.number_run(text),
            _ => Err(Refusal::Syntax),
        }
    }

    /// A run of digits holding several fields (`DecodeNumberField`): `19970210` (a date),
    /// `173201` or `1732` (a time), `173201.5`.
    fn number_run(&mut self, text: &str) -> Result<(), Refusal> {
        let (digits, fraction) = match text.split_once('.') {
            Some((d, f)) => (d, Some(f)),
            None => (text, None),
        };
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(Refusal::Syntax);
        }
        let len = digits.len();
        let at = |from: usize, to: usize| -> Result<i64, Refusal> {
            digits[from..to].parse().map_err(|_| Refusal::Syntax)
        };
        if fraction.is_none() && !self.seen.whole_date() {
            if len >= 6 {
                if self.seen.any_date() {
                    return Err(Refusal::Syntax);
                }
                self.seen.year = true;
                self.seen.month = true;
                self.seen.day = true;
                self.day = at(len - 2, len)? as u32;
                self.month = at(len - 4, len - 2)? as u32;
                self.year = at(0, len - 4)?;
                self.two_digit_year = len - 4 == 2;
                return Ok(());
            }
            return Err(Refusal::Syntax);
        }
        if !self.seen.time {
            let micros = fraction_micros(fraction)?;
            return match len {
                6 => self.set_time(at(0, 2)?, at(2, 4)?, at(4, 6)?, micros),
                4 if fraction.is_none() => self.set_time(at(0, 2)?, at(2, 4)?, 0, 0),
                _ => Err(Refusal::Syntax),
            };
        }
        Err(Refusal::Syntax)
    }

    /// A date with separators (`DecodeDate`): `1997-02-10`, `02/10/1997`, `feb-10-1997`,
    /// `1997.041`.
    fn date(&mut self, text: &str) -> Result<(), Refusal> {
        let mut subfields = Vec::new();
        let mut current = String::new();
        let mut current_is_digit = false;
        for c in text.chars() {
            let is_digit = c.is_ascii_digit();
            if c.is_ascii_alphanumeric() {
                if !current.is_empty() && is_digit != current_is_digit {
                    subfields.push(std::mem::take(&mut current));
                }
                current_is_digit = is_digit;
                current.push(c);
            } else if !current.is_empty() {
                subfields.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            subfields.push(current);
        }
        let before = self.seen;
        // Month names first: they make the order of the numbers unambiguous.
        let mut numbers = Vec::new();
        for field in subfields {
            if field.starts_with(|c: char| c.is_ascii_alphabetic()) {
                match keyword(&field) {
                    Some(Keyword::Month(m)) => {
                        self.set_month(i64::from(m))?;
                        self.text_month = true;
                    }
                    _ => return Err(Refusal::Syntax),
                }
            } else {
                numbers.push(field);
            }
        }
        for field in numbers {
            self.number(&field)?;
        }
        let gave_all = (self.seen.year && !before.year)
            && (self.seen.month && !before.month)
            && (self.seen.day && !before.day);
        if gave_all {
            Ok(())
        } else {
            Err(Refusal::Syntax)
        }
    }

    /// A time of day (`DecodeTime`): `17:32`, `17:32:01.5`, `32:01.5` (minutes and seconds).
    fn time(&mut self, text: &str) -> Result<(), Refusal> {
        let parts: Vec<&str> = text.split(':').collect();
        let int = |s: &str| -> Result<i64, Refusal> {
            if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
                return Err(Refusal::Syntax);
            }
            s.parse().map_err(|_| Refusal::FieldRange)
        };
        match parts.as_slice() {
            [h, m] => match m.split_once('.') {
                // `mm:ss.fff`
                Some((s, f)) => self.set_time(0, int(h)?, int(s)?, fraction_micros(Some(f))?),
                None => self.set_time(int(h)?, int(m)?, 0, 0),
            },
            [h, m, s] => {
                let (s, f) = match s.split_once('.') {
                    Some((s, f)) => (s, Some(f)),
                    None => (*s, None),
                };
                self.set_time(int(h)?, int(m)?, int(s)?, fraction_micros(f)?)
            }
            _ => Err(Refusal::Syntax),
        }
    }
}

/// Microseconds of a fraction of a second written after the point, rounded as PostgreSQL
/// rounds it.
fn fraction_micros(fraction: Option<&str>) -> Result<i64, Refusal> {
    let Some(f) = fraction else {
        return Ok(0);
    };
    if !f.chars().all(|c| c.is_ascii_digit()) {
        return Err(Refusal::Syntax);
    }
    if f.is_empty() {
        return Ok(0);
    }
    let value: f64 = format!("0.{f}").parse().map_err(|_| Refusal::Syntax)?;
    Ok((value * 1_000_000.0).round_ties_even() as i64)
}

/// A signed offset (`DecodeTimezone`): `-08`, `-0800`, `+05:30`, `-8`, seconds east.
fn offset(text: &str) -> Result<i32, Refusal> {
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(Refusal::Syntax),
    };
    let number = |s: &str| -> Result<i32, Refusal> {
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
            return Err(Refusal::Syntax);
        }
        s.parse().map_err(|_| Refusal::Displacement)
    };
    let (hours, minutes, seconds) = if rest.contains(':') {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.as_slice() {
            [h, m] => (number(h)?, number(m)?, 0),
            [h, m, s] => (number(h)?, number(m)?, number(s)?),
            _ => return Err(Refusal::Syntax),
        }
    } else {
        let value = number(rest)?;
        match rest.len() {
            0..=2 => (value, 0, 0),
            3 | 4 => (value / 100, value % 100, 0),
            5 | 6 => (value / 10_000, (value / 100) % 100, value % 100),
            _ => return Err(Refusal::Displacement),
        }
    };
    if hours > 15 || minutes >= 60 || seconds >= 60 {
        return Err(Refusal::Displacement);
    }
    Ok(sign * (hours * 3600 + minutes * 60 + seconds))
}

/// The clock and date of the moment `now_micros` (UTC) in `zone`: days and microseconds.
fn local_now(now_micros: i64, zone: &Zone) -> (i64, i64) {
    let offset = chrono::DateTime::from_timestamp_micros(now_micros)
        .map_or(0, |t| zone.offset_at(t.naive_utc()));
    let local = now_micros + i64::from(offset) * 1_000_000;
    (local.div_euclid(DAY_MICROS), local.rem_euclid(DAY_MICROS))
}

/// Reads `text` (`DecodeDateTime`). `now_micros` and `zone` give `today`, `tomorrow` and
/// `yesterday` their date.
fn read(text: &str, context: &Context) -> Result<Reading, Refusal> {
    let (now_micros, zone) = (context.now_micros, &context.zone);
    let fields = fields(text).ok_or(Refusal::Syntax)?;
    let mut parts = Parts {
        order: context.order,
        ..Parts::default()
    };
    let mut pending: Option<Keyword> = None;
    let mut special: Option<Reading> = None;
    let last = fields.len();
    for (i, (kind, field)) in fields.iter().enumerate() {
        let prefix = pending.take();
        match kind {
            Kind::Number => match prefix {
                Some(Keyword::Julian) => {
                    let day: i64 = field.parse().map_err(|_| Refusal::Syntax)?;
                    parts.set_date(day - 2_440_588)?;
                }
                Some(Keyword::IsoTime) => parts.number_run(field)?,
                _ => {
                    let len = field.len();
                    let point = field.find('.');
                    if point.is_some() && !parts.seen.any_date() {
                        parts.date(field)?;
                    } else if point.is_some_and(|p| p > 2)
                        || (len >= 6 && (!parts.seen.any_date() || !parts.seen.time))
                    {
                        // A run of digits holding a date or a time (`19970210`, `173201.5`).
                        parts.number_run(field)?;
                    } else {
                        parts.number(field)?;
                    }
                }
            },
            Kind::Time => {
                if matches!(prefix, Some(Keyword::Julian)) {
                    return Err(Refusal::Syntax);
                }
                parts.time(field)?;
            }
            Kind::Date => {
                if parts.seen.month && parts.seen.day || prefix.is_some() {
                    // After a whole month and day, a zone name with punctuation
                    // (`america/new_york`, `gmt+8`).
                    if field.starts_with(|c: char| c.is_ascii_digit()) {
                        return Err(Refusal::Syntax);
                    }
                    let zone =
                        Zone::parse(field).ok_or_else(|| Refusal::UnknownZone(field.clone()))?;
                    parts.set_zone(Written::Zone(zone))?;
                } else {
                    parts.date(field)?;
                }
            }
            Kind::Offset => {
                if i > 0 && parts.seen.zone && fields[i - 1].0 == Kind::Word {
                    // `EST+3`: a POSIX zone, an abbreviation then hours west of it.
                    if let Some(Written::Offset(east)) = parts.zone {
                        parts.zone = Some(Written::Offset(east - offset(field)?));
                        continue;
                    }
                }
                parts.set_zone(Written::Offset(offset(field)?))?;
            }
            Kind::Word | Kind::Special => match keyword(field) {
                Some(Keyword::Month(m)) => {
                    parts.set_month(i64::from(m))?;
                    parts.text_month = true;
                }
                Some(Keyword::Weekday) => {}
                Some(Keyword::Am | Keyword::Pm) => {
                    if parts.ampm.is_some() {
                        return Err(Refusal::Syntax);
                    }
                    parts.ampm = Some(keyword(field) == Some(Keyword::Pm));
                }
                Some(Keyword::Ad | Keyword::Bc) => {
                    if parts.bc {
                        return Err(Refusal::Syntax);
                    }
                    parts.bc = keyword(field) == Some(Keyword::Bc);
                }
                Some(Keyword::Epoch) => {
                    parts.set_date(0)?;
                    parts.set_time(0, 0, 0, 0)?;
                    parts.set_zone(Written::Offset(0))?;
                }
                Some(Keyword::Now) => {
                    if special.is_some() || parts.seen.any_date() || parts.seen.time {
                        return Err(Refusal::Syntax);
                    }
                    special = Some(Reading::Now);
                }
                Some(k @ (Keyword::Today | Keyword::Tomorrow | Keyword::Yesterday)) => {
                    let (today, _) = local_now(now_micros, zone);
                    let shift = match k {
                        Keyword::Tomorrow => 1,
                        Keyword::Yesterday => -1,
                        _ => 0,
                    };
                    parts.set_date(today + shift)?;
                }
                Some(Keyword::Infinity | Keyword::NegInfinity) => {
                    if fields.len() != 1 {
                        return Err(Refusal::Syntax);
                    }
                    special = Some(if keyword(field) == Some(Keyword::Infinity) {
                        Reading::Infinity
                    } else {
                        Reading::NegInfinity
                    });
                }
                Some(Keyword::Allballs) => parts.set_time(0, 0, 0, 0)?,
                Some(k @ (Keyword::IsoTime | Keyword::Julian)) => {
                    if i + 1 == last {
                        return Err(Refusal::Syntax);
                    }
                    pending = Some(k);
                }
                None => match abbreviation(field) {
                    Some(east) => parts.set_zone(Written::Offset(east))?,
                    None => match Zone::parse(field).filter(|_| field.len() > 3) {
                        Some(zone) => parts.set_zone(Written::Zone(zone))?,
                        None => return Err(Refusal::Syntax),
                    },
                },
            },
        }
    }
    if let Some(special) = special {
        if parts.seen.any_date() || parts.seen.time {
            return Err(Refusal::Syntax);
        }
        return Ok(special);
    }
    // The year with its era, then the rest checked against it (`ValidateDate`).
    if parts.seen.year && parts.julian.is_none() {
        if parts.bc {
            if parts.year <= 0 {
                return Err(Refusal::FieldRange);
            }
            parts.year = 1 - parts.year;
        } else if parts.two_digit_year {
            if parts.year < 70 {
                parts.year += 2000;
            } else if parts.year < 100 {
                parts.year += 1900;
            }
        } else if parts.year <= 0 {
            return Err(Refusal::FieldRange);
        }
    }
    if let Some(day_of_year) = parts.day_of_year {
        let days = days_from_civil(parts.year, 1, 1) + i64::from(day_of_year) - 1;
        (parts.year, parts.month, parts.day) = civil_from_days(days);
    }
    if parts.seen.month && !(1..=12).contains(&parts.month) {
        return Err(Refusal::FieldRange);
    }
    if parts.seen.day && !(1..=31).contains(&parts.day) {
        return Err(Refusal::FieldRange);
    }
    if parts.seen.whole_date() && parts.day > days_in_month(parts.year, parts.month) {
        return Err(Refusal::FieldRange);
    }
    if let Some(pm) = parts.ampm {
        if !parts.seen.time || parts.hour > 12 {
            return Err(Refusal::FieldRange);
        }
        if pm && parts.hour != 12 {
            parts.hour += 12;
        } else if !pm && parts.hour == 12 {
            parts.hour = 0;
        }
    }
    if parts.hour > 24
        || (parts.hour == 24 && (parts.minute > 0 || parts.second > 0 || parts.micros > 0))
    {
        return Err(Refusal::FieldRange);
    }
    let has_date = parts.seen.whole_date();
    if parts.seen.any_date() && !has_date {
        return Err(Refusal::Syntax);
    }
    let days = if has_date {
        days_from_civil(parts.year, parts.month, parts.day)
    } else {
        0
    };
    let micros = ((parts.hour * 60 + parts.minute) * 60 + parts.second) * 1_000_000 + parts.micros;
    Ok(Reading::At {
        days,
        micros,
        zone: parts.zone,
        has_date,
    })
}

/// The type a text is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Timestamp,
    Timestamptz,
    Date,
}

impl Target {
    fn type_name(self) -> &'static str {
        match self {
            Target::Timestamp => "timestamp",
            Target::Timestamptz => "timestamp with time zone",
            Target::Date => "date",
        }
    }

    /// The name of the function that reads text as this type.
    pub fn function_name(self) -> &'static str {
        match self {
            Target::Timestamp => "augur_timestamp_in",
            Target::Timestamptz => "augur_timestamptz_in",
            Target::Date => "augur_date_in",
        }
    }

    fn output(self) -> DataType {
        match self {
            Target::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Target::Timestamptz => DataType::Timestamp(
                TimeUnit::Microsecond,
                Some(Arc::from(crate::common::types::UTC)),
            ),
            Target::Date => DataType::Date32,
        }
    }
}

fn refusal_error(refusal: Refusal, target: Target, text: &str) -> crate::error::Error {
    let (code, message) = match refusal {
        Refusal::Syntax => (
            "22007",
            format!(
                "invalid input syntax for type {}: \"{text}\"",
                target.type_name()
            ),
        ),
        Refusal::FieldRange => (
            "22008",
            format!("date/time field value out of range: \"{text}\""),
        ),
        Refusal::Displacement => (
            "22009",
            format!("time zone displacement out of range: \"{text}\""),
        ),
        Refusal::UnknownZone(zone) => ("22023", format!("time zone \"{zone}\" not recognized")),
    };
    crate::error::Error::coded(code, message)
}

/// `text` read as a timestamp without time zone: wall-clock microseconds since 1970-01-01
/// (a zone in the text is ignored, as PostgreSQL ignores it).
pub fn timestamp_in(text: &str, context: &Context) -> crate::error::Result<i64> {
    let target = Target::Timestamp;
    let out_of_range =
        || crate::error::Error::coded("22008", format!("timestamp out of range: \"{text}\""));
    match read(text, context).map_err(|r| refusal_error(r, target, text))? {
        Reading::Infinity => Ok(TIMESTAMP_INFINITY),
        Reading::NegInfinity => Ok(TIMESTAMP_NEG_INFINITY),
        Reading::Now => {
            let (days, micros) = local_now(context.now_micros, &context.zone);
            finite_micros(days, micros).ok_or_else(out_of_range)
        }
        Reading::At {
            has_date: false, ..
        } => Err(refusal_error(Refusal::Syntax, target, text)),
        Reading::At { days, micros, .. } => {
            if !(FIRST_DAY..END_OF_TIMESTAMPS).contains(&days) {
                return Err(out_of_range());
            }
            finite_micros(days, micros).ok_or_else(out_of_range)
        }
    }
}

/// `text` read as a timestamp with time zone: microseconds since 1970-01-01 UTC. Text without
/// a zone is on the clocks of `zone`, the session's.
pub fn timestamptz_in(text: &str, context: &Context) -> crate::error::Result<i64> {
    let target = Target::Timestamptz;
    let out_of_range =
        || crate::error::Error::coded("22008", format!("timestamp out of range: \"{text}\""));
    match read(text, context).map_err(|r| refusal_error(r, target, text))? {
        Reading::Infinity => Ok(TIMESTAMP_INFINITY),
        Reading::NegInfinity => Ok(TIMESTAMP_NEG_INFINITY),
        Reading::Now => Ok(context.now_micros),
        Reading::At {
            has_date: false, ..
        } => Err(refusal_error(Refusal::Syntax, target, text)),
        Reading::At {
            days,
            micros,
            zone: written,
            ..
        } => {
            if !(FIRST_DAY - 1..=END_OF_TIMESTAMPS).contains(&days) {
                return Err(out_of_range());
            }
            let local = finite_micros(days, micros).ok_or_else(out_of_range)?;
            let clock = match written {
                Some(Written::Offset(east)) => {
                    Zone::Fixed(chrono::FixedOffset::east_opt(east).ok_or_else(out_of_range)?)
                }
                Some(Written::Zone(zone)) => zone,
                None => context.zone,
            };
            let utc = utc_of_local(local, &clock).ok_or_else(out_of_range)?;
            if utc < FIRST_DAY * DAY_MICROS {
                return Err(out_of_range());
            }
            Ok(utc)
        }
    }
}

/// `days` and `micros` into the day as microseconds since 1970, when a finite timestamp holds
/// them: the largest value stands for `infinity`.
fn finite_micros(days: i64, micros: i64) -> Option<i64> {
    days.checked_mul(DAY_MICROS)?
        .checked_add(micros)
        .filter(|v| *v != TIMESTAMP_INFINITY)
}

/// The UTC instant at which the clocks of `zone` show `local` (microseconds since 1970).
fn utc_of_local(local: i64, zone: &Zone) -> Option<i64> {
    let shift = |offset: i32| {
        local
            .checked_sub(i64::from(offset) * 1_000_000)
            .filter(|v| *v != TIMESTAMP_INFINITY && *v != TIMESTAMP_NEG_INFINITY)
    };
    if let Zone::Fixed(offset) = zone {
        return shift(offset.local_minus_utc());
    }
    match chrono::DateTime::from_timestamp_micros(local) {
        Some(t) => {
            let utc = zone.to_utc(t.naive_utc());
            Some(utc.and_utc().timestamp_micros())
        }
        // Beyond chrono's calendar: the zone's offset at the nearest date it reaches.
        None => {
            let edge = if local < 0 {
                chrono::NaiveDateTime::MIN
            } else {
                chrono::NaiveDateTime::MAX
            };
            shift(zone.offset_at(edge))
        }
    }
}

/// `text` read as a date: days since 1970-01-01. A time of day in the text is ignored.
pub fn date_in(text: &str, context: &Context) -> crate::error::Result<i32> {
    let target = Target::Date;
    match read(text, context).map_err(|r| refusal_error(r, target, text))? {
        Reading::Infinity => Ok(DATE_INFINITY),
        Reading::NegInfinity => Ok(DATE_NEG_INFINITY),
        Reading::Now => Ok(local_now(context.now_micros, &context.zone).0 as i32),
        Reading::At {
            has_date: false, ..
        } => Err(refusal_error(Refusal::Syntax, target, text)),
        Reading::At { days, .. } => {
            if !(FIRST_DAY..END_OF_DATES).contains(&days) {
                return Err(crate::error::Error::coded(
                    "22008",
                    format!("date out of range: \"{text}\""),
                ));
            }
            Ok(days as i32)
        }
    }
}

/// A column of text read as `target`.
pub fn read_column(
    texts: &datafusion::arrow::array::StringArray,
    target: Target,
    context: &Context,
) -> crate::error::Result<ArrayRef> {
    Ok(match target {
        Target::Date => Arc::new(
            texts
                .iter()
                .map(|t| t.map(|t| date_in(t, context)).transpose())
                .collect::<crate::error::Result<Date32Array>>()?,
        ),
        Target::Timestamp | Target::Timestamptz => {
            let read = if target == Target::Timestamp {
                timestamp_in
            } else {
                timestamptz_in
            };
            let values = texts
                .iter()
                .map(|t| t.map(|t| read(t, context)).transpose())
                .collect::<crate::error::Result<TimestampMicrosecondArray>>()?;
            match target.output() {
                DataType::Timestamp(_, Some(tz)) => Arc::new(values.with_timezone(tz)),
                _ => Arc::new(values),
            }
        }
    })
}

impl Target {
    /// The reader of values of `data_type`, when text is read as one of them.
    pub fn of(data_type: &DataType) -> Option<Target> {
        match data_type {
            DataType::Date32 => Some(Target::Date),
            DataType::Timestamp(_, None) => Some(Target::Timestamp),
            DataType::Timestamp(_, Some(_)) => Some(Target::Timestamptz),
            _ => None,
        }
    }
}

impl Context {
    /// The context of a session with settings `timezone` and `datestyle` (UTC and MDY when
    /// not given), at this moment.
    pub fn of_settings(timezone: Option<&str>, datestyle: Option<&str>) -> Context {
        Context {
            now_micros: chrono::Utc::now().timestamp_micros(),
            zone: timezone.and_then(Zone::parse).unwrap_or_else(Zone::utc),
            order: datestyle.map_or(DateOrder::Mdy, DateOrder::of_datestyle),
        }
    }

    /// The context of a query with `config`: its session's settings, and as its moment the
    /// start of the session's transaction block if one is open, or this moment.
    pub fn of_query(config: &datafusion::config::ConfigOptions) -> Context {
        let setting = |name| session_setting(config, name);
        let mut context = Context::of_settings(setting("timezone"), setting("datestyle"));
        if let Some(start) =
            setting(crate::session::TXN_START).and_then(|micros| micros.parse().ok())
        {
            context.now_micros = start;
        }
        context
    }
}

/// A column of timestamps, timestamptz or dates as PostgreSQL writes them in the ISO style, a
/// timestamptz in `zone`; None for a column of another type.
pub fn text_column(
    values: &ArrayRef,
    zone: &Zone,
) -> Result<Option<datafusion::arrow::array::StringArray>> {
    Ok(Some(match values.data_type() {
        DataType::Date32 => values
            .as_primitive::<datafusion::arrow::datatypes::Date32Type>()
            .iter()
            .map(|v| v.map(date_text))
            .collect(),
        DataType::Timestamp(_, tz) => {
            let micros = datafusion::arrow::compute::cast(
                values,
                &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            )?;
            micros
                .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
                .iter()
                .map(|v| {
                    v.and_then(|v| match tz {
                        Some(_) => zone.timestamptz_text(v),
                        None => Some(timestamp_text(v, None)),
                    })
                })
                .collect()
        }
        _ => return Ok(None),
    }))
}

/// The functions that read text as `timestamp`, `timestamptz` and `date`, and the one that
/// writes them as text; casts between text and those types are planned as calls of them.
pub fn functions() -> Vec<ScalarUDF> {
    let mut functions: Vec<ScalarUDF> = [Target::Timestamp, Target::Timestamptz, Target::Date]
        .into_iter()
        .map(|target| {
            ScalarUDF::new_from_impl(DateTimeIn {
                target,
                signature: Signature::exact(vec![DataType::Utf8], Volatility::Stable),
            })
        })
        .collect();
    functions.push(ScalarUDF::new_from_impl(DateTimeText {
        signature: Signature::any(1, Volatility::Stable),
    }));
    functions.push(ScalarUDF::new_from_impl(RoundSeconds {
        signature: Signature::user_defined(Volatility::Immutable),
    }));
    for clock in [Clock::Statement, Clock::Wall] {
        functions.push(ScalarUDF::new_from_impl(ClockTime {
            clock,
            signature: Signature::nullary(match clock {
                Clock::Statement => Volatility::Stable,
                Clock::Wall => Volatility::Volatile,
            }),
        }));
    }
    functions
}

/// Which moment a clock function gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Clock {
    /// `statement_timestamp()`: when the statement began (one value for the statement, where
    /// `now()` is the transaction block's start).
    Statement,
    /// `clock_timestamp()`: the moment the value is computed, row by row.
    Wall,
}

/// `statement_timestamp()` and `clock_timestamp()`, as `timestamptz`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ClockTime {
    clock: Clock,
    signature: Signature,
}

impl ScalarUDFImpl for ClockTime {
    fn name(&self) -> &str {
        match self.clock {
            Clock::Statement => "statement_timestamp",
            Clock::Wall => "clock_timestamp",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some(crate::common::types::UTC.into()),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let now = || chrono::Utc::now().timestamp_micros();
        let zone = Some(std::sync::Arc::from(crate::common::types::UTC));
        Ok(match self.clock {
            Clock::Statement => {
                let start = session_setting(&args.config_options, crate::session::STATEMENT_START)
                    .and_then(|micros| micros.parse().ok())
                    .unwrap_or_else(now);
                ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(Some(start), zone))
            }
            Clock::Wall => ColumnarValue::Array(Arc::new(
                (0..args.number_rows)
                    .map(|_| Some(now()))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone_opt(zone),
            )),
        })
    }
}

/// The name of the function that writes a timestamp, timestamptz or date as PostgreSQL's
/// output function does (what `::text` gives).
pub const DATETIME_TEXT: &str = "augur_datetime_text";

#[derive(Debug, PartialEq, Eq, Hash)]
struct DateTimeText {
    signature: Signature,
}

impl ScalarUDFImpl for DateTimeText {
    fn name(&self) -> &str {
        DATETIME_TEXT
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args.first() {
            Some(DataType::Timestamp(..) | DataType::Date32) => Ok(DataType::Utf8),
            other => datafusion::common::plan_err!("{DATETIME_TEXT} of {other:?}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let zone = Zone::of_session(&args.config_options);
        let values = args.args[0].to_array(rows)?;
        let Some(out) = text_column(&values, &zone)? else {
            return datafusion::common::exec_err!("{DATETIME_TEXT} of {}", values.data_type());
        };
        let out: ArrayRef = Arc::new(out);
        if matches!(args.args[0], ColumnarValue::Scalar(_)) {
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&out, 0)?,
            ));
        }
        Ok(ColumnarValue::Array(out))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DateTimeIn {
    target: Target,
    signature: Signature,
}

impl ScalarUDFImpl for DateTimeIn {
    fn name(&self) -> &str {
        self.target.function_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.target.output())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let context = Context::of_query(&args.config_options);
        let texts = args.args[0].to_array(rows)?;
        let out = read_column(texts.as_string::<i32>(), self.target, &context)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
            && out.len() == 1
        {
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&out, 0)?,
            ));
        }
        Ok(ColumnarValue::Array(out))
    }
}

/// A column of timestamps rounded to `digits` after the point of the seconds, halves away from
/// zero, as PostgreSQL rounds a `timestamp(p)`; infinities stay.
pub fn round_seconds(column: &ArrayRef, digits: u8) -> ArrayRef {
    use datafusion::arrow::datatypes::{TimeUnit, TimestampMicrosecondType};
    let DataType::Timestamp(TimeUnit::Microsecond, _) = column.data_type() else {
        return column.clone();
    };
    let step = 10i64.pow(6 - u32::from(digits.min(6)));
    let half = step / 2;
    // PostgreSQL counts from 2000-01-01, which decides which way a half rounds.
    const FROM_2000: i64 = 946_684_800_000_000;
    let rounded: datafusion::arrow::array::PrimitiveArray<TimestampMicrosecondType> = column
        .as_primitive::<TimestampMicrosecondType>()
        .unary(|v| {
            if v == i64::MAX || v == i64::MIN {
                return v;
            }
            let t = v.saturating_sub(FROM_2000);
            let rounded = if t >= 0 {
                t.saturating_add(half) / step * step
            } else {
                -((-t).saturating_add(half) / step * step)
            };
            rounded.saturating_add(FROM_2000)
        });
    Arc::new(rounded.with_data_type(column.data_type().clone()))
}

/// The function a cast to `timestamp(p)` or `timestamptz(p)` is planned as:
/// `augur_round_seconds(value, p)`.
pub const ROUND_SECONDS: &str = "augur_round_seconds";

/// `augur_round_seconds(timestamp, p)`: the timestamp with its seconds rounded to `p` digits
/// after the point, as a cast to `timestamp(p)` rounds it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RoundSeconds {
    signature: Signature,
}

impl ScalarUDFImpl for RoundSeconds {
    fn name(&self) -> &str {
        ROUND_SECONDS
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [DataType::Timestamp(_, zone), _] => Ok(vec![
                DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
                DataType::Int64,
            ]),
            [DataType::Null, _] => Ok(vec![
                DataType::Timestamp(TimeUnit::Microsecond, None),
                DataType::Int64,
            ]),
            _ => datafusion::common::plan_err!("{ROUND_SECONDS} takes a timestamp and digits"),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let digits = match &args.args[1] {
            ColumnarValue::Scalar(ScalarValue::Int64(Some(p))) => (*p).clamp(0, 6) as u8,
            _ => return datafusion::common::exec_err!("{ROUND_SECONDS} takes constant digits"),
        };
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let values = args.args[0].to_array(args.number_rows)?;
        let rounded = round_seconds(&values, digits);
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&rounded, 0)?)
        } else {
            ColumnarValue::Array(rounded)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(zone: &str) -> Context {
        Context {
            now_micros: 0,
            zone: Zone::parse(zone).unwrap(),
            order: DateOrder::Mdy,
        }
    }

    fn ts(text: &str) -> String {
        match timestamp_in(text, &context("UTC")) {
            Ok(micros) => timestamp_text(micros, None),
            Err(e) => format!("error {}", e.sqlstate()),
        }
    }

    fn tstz(text: &str, zone: &str) -> String {
        match timestamptz_in(text, &context(zone)) {
            Ok(micros) => timestamp_text(micros, Some(0)),
            Err(e) => format!("error {}", e.sqlstate()),
        }
    }

    #[test]
    fn calendar_arithmetic_round_trips() {
        for days in [
            -2_440_588,
            -719_528,
            -1,
            0,
            1,
            10_957,
            106_762_939,
            2_145_042_905,
        ] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(
            date_text(days_from_civil(-96, 2, 16) as i32),
            "0097-02-16 BC"
        );
    }

    #[test]
    fn reads_postgresql_timestamp_forms() {
        for (text, expected) in [
            ("1997-02-10 17:32:01", "1997-02-10 17:32:01"),
            ("Mon Feb 10 17:32:01.4 1997 PST", "1997-02-10 17:32:01.4"),
            ("19970210 173201 -0800", "1997-02-10 17:32:01"),
            ("Feb 10 5:32PM 1997", "1997-02-10 17:32:00"),
            ("1997.041 17:32:01 UTC", "1997-02-10 17:32:01"),
            ("97/02/10 17:32:01 UTC", "error 22008"),
            ("Feb-10-1997 17:32:01 PST", "1997-02-10 17:32:01"),
            ("02-10-1997 17:32:01 PST", "1997-02-10 17:32:01"),
            ("2000-03-15 08:14:01 GMT+8", "2000-03-15 08:14:01"),
            ("19970210 173201 America/New_York", "1997-02-10 17:32:01"),
            ("Feb 16 17:32:01 0097 BC", "0097-02-16 17:32:01 BC"),
            ("Feb 16 17:32:01 -0097", "error 22009"),
            ("J2451187", "1999-01-08 00:00:00"),
            ("2001-09-22T18:19:20", "2001-09-22 18:19:20"),
            ("12/10/1997", "1997-12-10 00:00:00"),
            ("Jan 8, 1999", "1999-01-08 00:00:00"),
            ("040506", "2004-05-06 00:00:00"),
            ("1997 Feb 10", "1997-02-10 00:00:00"),
            ("epoch", "1970-01-01 00:00:00"),
            ("infinity", "infinity"),
            ("-infinity", "-infinity"),
            ("Feb 29 17:32:01 1997", "error 22008"),
            ("4714-11-24 00:00:00 BC", "4714-11-24 00:00:00 BC"),
            ("4714-11-23 23:59:59 BC", "error 22008"),
            // Microseconds since 1970 in 64 bits end 30 years before PostgreSQL's (counted
            // from 2000) do.
            ("294246-12-31 23:59:59", "294246-12-31 23:59:59"),
            ("294276-12-31 23:59:59", "error 22008"),
            ("294277-01-01 00:00:00", "error 22008"),
            ("97FEB10 5:32:01PM UTC", "error 22007"),
            ("19970710 173201 America/Does_not_exist", "error 22023"),
            ("17:32:01", "error 22007"),
            ("garbage", "error 22007"),
        ] {
            assert_eq!(ts(text), expected, "{text}");
        }
    }

    #[test]
    fn reads_zones_for_timestamptz() {
        for (text, zone, expected) in [
            ("1997-02-10 17:32:01 PST", "UTC", "1997-02-11 01:32:01+00"),
            ("1997-02-10 17:32:01-08", "UTC", "1997-02-11 01:32:01+00"),
            ("2000-03-15 08:14:01 GMT+8", "UTC", "2000-03-15 16:14:01+00"),
            (
                "2000-03-15 02:14:05 MST+7:00",
                "UTC",
                "2000-03-15 09:14:05+00",
            ),
            (
                "1997-02-10 17:32:01",
                "America/Los_Angeles",
                "1997-02-11 01:32:01+00",
            ),
            (
                "19970210 173201 America/New_York",
                "UTC",
                "1997-02-10 22:32:01+00",
            ),
            ("epoch", "America/Los_Angeles", "1970-01-01 00:00:00+00"),
        ] {
            assert_eq!(tstz(text, zone), expected, "{text} in {zone}");
        }
    }

    #[test]
    fn numbers_follow_the_date_order() {
        let read = |text: &str, order: DateOrder| {
            let context = Context {
                order,
                ..context("UTC")
            };
            date_in(text, &context)
                .map(date_text)
                .unwrap_or_else(|e| e.sqlstate().to_string())
        };
        assert_eq!(read("02/10/1997", DateOrder::Mdy), "1997-02-10");
        assert_eq!(read("10/02/1997", DateOrder::Dmy), "1997-02-10");
        assert_eq!(read("97/02/10", DateOrder::Ymd), "1997-02-10");
        assert_eq!(read("97FEB10", DateOrder::Ymd), "1997-02-10");
        assert_eq!(read("97/02/10", DateOrder::Mdy), "22008");
        assert_eq!(DateOrder::of_datestyle("ISO, DMY"), DateOrder::Dmy);
        assert_eq!(
            DateOrder::of_datestyle("Postgres, NonEuropean"),
            DateOrder::Mdy
        );
    }
}
