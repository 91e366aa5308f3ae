//! The session's `TimeZone`: which zone names it takes, and how a `timestamptz` (stored in UTC)
//! is shown and how text without an offset is read in it, as PostgreSQL does.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeZone, Utc};

/// A time zone a session can be set to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    /// A zone of the IANA database (`Europe/Berlin`), with its daylight saving rules.
    Named(chrono_tz::Tz),
    /// A fixed offset from UTC, east positive.
    Fixed(FixedOffset),
}

impl Zone {
    /// The zone `name` stands for, as `SET TimeZone` takes it: an IANA name in any case, `UTC`
    /// and its synonyms, a number of hours east of Greenwich (`-7`, `5.5`), or a POSIX-style
    /// offset (`+05:30`, `UTC+5`), which PostgreSQL counts positive *west* of Greenwich.
    pub fn parse(name: &str) -> Option<Zone> {
        let trimmed = name.trim();
        if matches!(
            trimmed.to_ascii_uppercase().as_str(),
            "UTC" | "GMT" | "Z" | "ZULU" | "UCT" | "UNIVERSAL" | "ETC/UTC" | "ETC/GMT"
        ) {
            return Some(Zone::Fixed(FixedOffset::east_opt(0)?));
        }
        if let Some(tz) = chrono_tz::TZ_VARIANTS
            .iter()
            .find(|tz| tz.name().eq_ignore_ascii_case(trimmed))
        {
            return Some(Zone::Named(*tz));
        }
        // A plain number is hours east of Greenwich (`-7`, `5.5`), as `SET TIME ZONE` takes it.
        if let Ok(hours) = trimmed.parse::<f64>() {
            if !hours.is_finite() || hours.abs() > 15.0 {
                return None;
            }
            return Some(Zone::Fixed(FixedOffset::east_opt(
                (hours * 3600.0).round() as i32,
            )?));
        }
        // A POSIX offset (`+05:30`, `UTC+5`, `GMT-3`) counts hours *west* of Greenwich.
        let posix = trimmed.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let (sign, rest) = match posix.as_bytes().first()? {
            b'+' => (1, &posix[1..]),
            b'-' => (-1, &posix[1..]),
            _ => (1, posix),
        };
        let mut parts = rest.split(':');
        let hours: i32 = parts.next()?.parse().ok()?;
        let minutes: i32 = parts.next().map_or(Some(0), |m| m.parse().ok())?;
        let seconds: i32 = parts.next().map_or(Some(0), |s| s.parse().ok())?;
        if parts.next().is_some() || hours > 15 || minutes > 59 || seconds > 59 {
            return None;
        }
        let west = sign * (hours * 3600 + minutes * 60 + seconds);
        Some(Zone::Fixed(FixedOffset::east_opt(-west)?))
    }

    /// UTC.
    pub fn utc() -> Zone {
        Zone::Fixed(FixedOffset::east_opt(0).expect("UTC is an offset"))
    }

    /// The `TimeZone` of the session whose settings are among a query's `config`; UTC when it
    /// has none.
    pub fn of_session(config: &datafusion::config::ConfigOptions) -> Zone {
        crate::catalog::pg_functions::session_setting(config, "timezone")
            .and_then(Zone::parse)
            .unwrap_or_else(Zone::utc)
    }

    /// The name `SHOW TimeZone` gives: the IANA name as the database spells it, `UTC`, or the
    /// offset as it was set.
    pub fn canonical_name(name: &str) -> Option<String> {
        Some(match Zone::parse(name)? {
            Zone::Named(tz) => tz.name().to_string(),
            Zone::Fixed(offset) if offset.local_minus_utc() == 0 => "UTC".to_string(),
            Zone::Fixed(_) => name.trim().to_string(),
        })
    }

    /// The offset from UTC, in seconds east, at the instant `utc`.
    pub fn offset_at(&self, utc: NaiveDateTime) -> i32 {
        match self {
            Zone::Named(tz) => tz.offset_from_utc_datetime(&utc).fix().local_minus_utc(),
            Zone::Fixed(offset) => offset.local_minus_utc(),
        }
    }

    /// The instant at which the clocks of this zone show `local`. A time skipped by a change to
    /// daylight saving time is read with the offset before the change, a time that occurs twice
    /// as its first occurrence, as PostgreSQL reads them.
    pub fn to_utc(&self, local: NaiveDateTime) -> NaiveDateTime {
        match self {
            Zone::Fixed(offset) => {
                local - chrono::Duration::seconds(offset.local_minus_utc().into())
            }
            Zone::Named(tz) => match tz.from_local_datetime(&local) {
                chrono::LocalResult::Single(t) => t.naive_utc(),
                chrono::LocalResult::Ambiguous(first, _) => first.naive_utc(),
                chrono::LocalResult::None => {
                    let before = tz
                        .offset_from_utc_datetime(&(local - chrono::Duration::hours(12)))
                        .fix()
                        .local_minus_utc();
                    local - chrono::Duration::seconds(before.into())
                }
            },
        }
    }

    /// `micros` since 1970 UTC as PostgreSQL writes a `timestamptz` in this zone in the ISO
    /// style: `2024-01-01 07:00:00-05`, `2024-06-01 12:00:00.5+05:30`.
    pub fn timestamptz_text(&self, micros: i64) -> Option<String> {
        use crate::catalog::pg_datetime::{TIMESTAMP_INFINITY, TIMESTAMP_NEG_INFINITY};
        if micros == TIMESTAMP_INFINITY || micros == TIMESTAMP_NEG_INFINITY {
            return Some(crate::catalog::pg_datetime::timestamp_text(micros, None));
        }
        // Instants beyond chrono's calendar are shown in the zone's offset at its edge.
        let offset = match DateTime::<Utc>::from_timestamp_micros(micros) {
            Some(utc) => self.offset_at(utc.naive_utc()),
            None if micros < 0 => self.offset_at(NaiveDateTime::MIN),
            None => self.offset_at(NaiveDateTime::MAX),
        };
        let local = micros.checked_add(i64::from(offset) * 1_000_000)?;
        Some(crate::catalog::pg_datetime::timestamp_text(
            local,
            Some(offset),
        ))
    }
}

/// An offset as PostgreSQL writes it after a time: `+00`, `-05`, `+05:30`, `-00:25:21`.
pub fn offset_text(seconds_east: i32) -> String {
    let sign = if seconds_east < 0 { '-' } else { '+' };
    let s = seconds_east.unsigned_abs();
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    match (m, sec) {
        (0, 0) => format!("{sign}{h:02}"),
        (_, 0) => format!("{sign}{h:02}:{m:02}"),
        _ => format!("{sign}{h:02}:{m:02}:{sec:02}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> i64 {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .unwrap()
            .and_utc()
            .timestamp_micros()
    }

    #[test]
    fn shows_timestamps_in_the_zone() {
        let ny = Zone::parse("america/new_york").unwrap();
        assert_eq!(
            ny.timestamptz_text(micros("2024-01-01 12:00:00")).unwrap(),
            "2024-01-01 07:00:00-05"
        );
        assert_eq!(
            ny.timestamptz_text(micros("2024-07-01 12:00:00.25"))
                .unwrap(),
            "2024-07-01 08:00:00.25-04"
        );
        let kolkata = Zone::parse("Asia/Kolkata").unwrap();
        assert_eq!(
            kolkata
                .timestamptz_text(micros("2024-01-01 00:00:00"))
                .unwrap(),
            "2024-01-01 05:30:00+05:30"
        );
        let utc = Zone::parse("UTC").unwrap();
        assert_eq!(
            utc.timestamptz_text(micros("2024-01-01 00:00:00")).unwrap(),
            "2024-01-01 00:00:00+00"
        );
    }

    #[test]
    fn names_offsets_and_local_times() {
        assert_eq!(
            Zone::canonical_name("europe/berlin").as_deref(),
            Some("Europe/Berlin")
        );
        assert_eq!(Zone::canonical_name("GMT").as_deref(), Some("UTC"));
        assert!(Zone::parse("Mars/Olympus").is_none());
        // A number is hours east; a POSIX offset counts west: "+05:30" is UTC-5:30.
        let offset = |name: &str| Zone::parse(name).unwrap().offset_at(NaiveDateTime::MIN);
        assert_eq!(offset("-7"), -7 * 3600);
        assert_eq!(offset("5.5"), 5 * 3600 + 1800);
        assert_eq!(offset("+05:30"), -(5 * 3600 + 1800));
        assert_eq!(offset("UTC+5"), -5 * 3600);
        let ny = Zone::parse("America/New_York").unwrap();
        let local =
            NaiveDateTime::parse_from_str("2024-01-01 07:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(
            ny.to_utc(local).and_utc().timestamp_micros(),
            micros("2024-01-01 12:00:00")
        );
    }
}
