//! Timestamp units and durations, for operators that work along event time.

use datafusion::arrow::datatypes::TimeUnit;

/// Nanoseconds in one `unit`.
pub fn nanos_per(unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

/// `nanos` in the largest unit that divides it: `30 minutes`, `1500 milliseconds`.
pub fn human_duration(nanos: i128) -> String {
    const UNITS: [(i128, &str); 7] = [
        (86_400_000_000_000, "days"),
        (3_600_000_000_000, "hours"),
        (60_000_000_000, "minutes"),
        (1_000_000_000, "seconds"),
        (1_000_000, "milliseconds"),
        (1_000, "microseconds"),
        (1, "nanoseconds"),
    ];
    if nanos == 0 {
        return "0".to_string();
    }
    let (size, name) = UNITS
        .iter()
        .find(|(size, _)| nanos % size == 0)
        .copied()
        .unwrap_or((1, "nanoseconds"));
    match nanos / size {
        1 => format!("1 {}", name.trim_end_matches('s')),
        n => format!("{n} {name}"),
    }
}
