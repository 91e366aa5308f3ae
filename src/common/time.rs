//! Timestamp units and durations, and times in state keys, for whatever works along event
//! time (operators, watermarks, the planner).

use datafusion::arrow::datatypes::TimeUnit;
use datafusion::common::ScalarValue;

use crate::error::{Error, Result};

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

/// `t` as 8 bytes that sort as the numbers do, for state keys ordered by time.
pub fn encode(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time [`encode`] wrote at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<i64> {
    let bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::Internal("corrupt state: a time of fewer than 8 bytes".into()))?;
    Ok((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
}

/// A timestamp's value in its own units.
pub fn raw(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampSecond(v, _)
        | ScalarValue::TimestampMillisecond(v, _)
        | ScalarValue::TimestampMicrosecond(v, _)
        | ScalarValue::TimestampNanosecond(v, _) => *v,
        _ => None,
    }
}

/// A timestamp in nanoseconds since 1970 (saturating).
pub fn nanos(value: &ScalarValue) -> Option<i64> {
    let per = match value {
        ScalarValue::TimestampSecond(..) => nanos_per(&TimeUnit::Second),
        ScalarValue::TimestampMillisecond(..) => nanos_per(&TimeUnit::Millisecond),
        ScalarValue::TimestampMicrosecond(..) => nanos_per(&TimeUnit::Microsecond),
        ScalarValue::TimestampNanosecond(..) => 1,
        _ => return None,
    };
    raw(value).map(|v| v.saturating_mul(per))
}
