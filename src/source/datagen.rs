//! `datagen`: reproducible generated rows, for tests, demos and benchmarks.
//!
//! Options follow RisingWave's: `datagen.rows.per.second` (default 10), and per column
//! `fields.<col>.kind` (`sequence` or `random`), `.start` / `.end` for sequences, `.min` /
//! `.max` / `.seed` for random numbers, `.length` / `.seed` for random strings. Augur adds
//! `datagen.rows`, a bounded total, and timestamps that advance with the rows: row `n` has
//! `fields.<col>.start` (default `2026-01-01 00:00:00`) plus `n` times `fields.<col>.step`
//! (default one second divided by the rate), so event time runs at the generation rate; with
//! `fields.<col>.max_past` each row's time is moved back by a random amount up to that interval
//! (seeded by `.seed`), for event times that arrive out of order.
//!
//! Every value is a function of the row's position and the column's seed alone: reading rows
//! `n..m` twice gives the same rows, which is what recovery and backfill rely on.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringBuilder,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef};

use super::{Positional, Result, SourceError, declared_rows, parse_option as parse, rows_to_read};

/// Rows per second when no rate is given (RisingWave's default).
const DEFAULT_RATE: f64 = 10.0;

#[derive(Debug, Clone)]
enum Values {
    Sequence {
        start: i64,
    },
    Int {
        min: i64,
        max: i64,
        seed: u64,
    },
    Float {
        min: f64,
        max: f64,
        seed: u64,
    },
    Text {
        length: usize,
        seed: u64,
    },
    Bool {
        seed: u64,
    },
    /// Microseconds since 1970: `start + n * step`, less a random amount up to `max_past`.
    Time {
        start: i64,
        step: i64,
        max_past: i64,
        seed: u64,
    },
}

/// The `datagen` connector.
#[derive(Debug)]
pub struct Datagen {
    schema: SchemaRef,
    columns: Vec<Values>,
    rows: Option<u64>,
    rate: f64,
}

/// A well-mixed 64-bit hash of `(seed, position)` (splitmix64).
fn mix(seed: u64, position: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(position)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An interval such as `1 second`, `250 ms`, `2 minutes`, in microseconds.
fn parse_interval(text: &str) -> Option<i64> {
    let mut parts = text.split_whitespace();
    let amount: f64 = parts.next()?.parse().ok()?;
    let unit = parts.next().unwrap_or("second").to_ascii_lowercase();
    let micros = match unit.trim_end_matches('s') {
        "microsecond" | "u" | "us" => 1.0,
        "millisecond" | "m" | "ms" => 1_000.0,
        "second" | "sec" | "" => 1_000_000.0,
        "minute" | "min" => 60_000_000.0,
        "hour" | "h" => 3_600_000_000.0,
        "day" | "d" => 86_400_000_000.0,
        _ => return None,
    };
    Some((amount * micros) as i64)
}

impl Datagen {
    /// Generates rows of `schema` as `options` say. Unknown options are refused, so that a
    /// misspelt key does not go unnoticed.
    pub fn new(schema: SchemaRef, options: &BTreeMap<String, String>) -> Result<Self> {
        let names: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| f.name().to_lowercase())
            .collect();
        for key in options.keys() {
            let known = matches!(
                key.as_str(),
                "connector" | "datagen.rows.per.second" | "datagen.rows" | "datagen.split.num"
            ) || key.strip_prefix("fields.").is_some_and(|rest| {
                rest.rsplit_once('.').is_some_and(|(column, option)| {
                    names.iter().any(|n| n == column)
                        && matches!(
                            option,
                            "kind"
                                | "start"
                                | "end"
                                | "min"
                                | "max"
                                | "seed"
                                | "length"
                                | "step"
                                | "max_past"
                        )
                })
            });
            if !known {
                return Err(SourceError::Option(format!("unknown datagen option {key}")));
            }
        }
        let rate = parse::<f64>(options, "datagen.rows.per.second")?.unwrap_or(DEFAULT_RATE);
        if rate.is_nan() || rate <= 0.0 {
            return Err(SourceError::Option(
                "datagen.rows.per.second must be positive".into(),
            ));
        }
        let mut rows = parse::<u64>(options, "datagen.rows")?;
        let mut columns = Vec::with_capacity(schema.fields().len());
        for (index, field) in schema.fields().iter().enumerate() {
            let name = &names[index];
            let key = |option: &str| format!("fields.{name}.{option}");
            let kind = options.get(&key("kind")).map(|k| k.to_ascii_lowercase());
            let seed = parse::<u64>(options, &key("seed"))?.unwrap_or(index as u64 + 1);
            let values = match (field.data_type(), kind.as_deref()) {
                (t, Some("sequence"))
                    if t.is_integer() || t.is_floating() || t == &DataType::Utf8 =>
                {
                    let start = parse::<i64>(options, &key("start"))?.unwrap_or(1);
                    if let Some(end) = parse::<i64>(options, &key("end"))? {
                        if end < start {
                            return Err(SourceError::Option(format!(
                                "{} is below {}",
                                key("end"),
                                key("start")
                            )));
                        }
                        let count = (end - start + 1) as u64;
                        rows = Some(rows.map_or(count, |r| r.min(count)));
                    }
                    Values::Sequence { start }
                }
                (DataType::Timestamp(..), None | Some("sequence")) => {
                    let start_text = options
                        .get(&key("start"))
                        .cloned()
                        .unwrap_or_else(|| "2026-01-01 00:00:00".into());
                    let start = chrono::NaiveDateTime::parse_from_str(
                        start_text.trim(),
                        "%Y-%m-%d %H:%M:%S",
                    )
                    .map_err(|_| {
                        SourceError::Option(format!(
                            "invalid timestamp '{start_text}' for {}",
                            key("start")
                        ))
                    })?
                    .and_utc()
                    .timestamp_micros();
                    let step = match options.get(&key("step")) {
                        Some(text) => parse_interval(text).ok_or_else(|| {
                            SourceError::Option(format!(
                                "invalid interval '{text}' for {}",
                                key("step")
                            ))
                        })?,
                        None => (1_000_000.0 / rate).max(1.0) as i64,
                    };
                    let max_past = match options.get(&key("max_past")) {
                        Some(text) => parse_interval(text).ok_or_else(|| {
                            SourceError::Option(format!(
                                "invalid interval '{text}' for {}",
                                key("max_past")
                            ))
                        })?,
                        None => 0,
                    };
                    Values::Time {
                        start,
                        step,
                        max_past,
                        seed,
                    }
                }
                (t, None | Some("random")) if t.is_integer() => Values::Int {
                    min: parse(options, &key("min"))?.unwrap_or(0),
                    max: parse(options, &key("max"))?.unwrap_or(32767),
                    seed,
                },
                (t, None | Some("random")) if t.is_floating() => Values::Float {
                    min: parse(options, &key("min"))?.unwrap_or(0.0),
                    max: parse(options, &key("max"))?.unwrap_or(32767.0),
                    seed,
                },
                (DataType::Utf8, None | Some("random")) => Values::Text {
                    length: parse(options, &key("length"))?.unwrap_or(10),
                    seed,
                },
                (DataType::Boolean, None | Some("random")) => Values::Bool { seed },
                (t, Some(kind)) if !matches!(kind, "sequence" | "random") => {
                    return Err(SourceError::Option(format!(
                        "unknown kind '{kind}' for column {name} of type {t}: use 'sequence' or 'random'"
                    )));
                }
                (t, _) => {
                    return Err(SourceError::NotSupported(format!(
                        "datagen values of type {t} (column {name})"
                    )));
                }
            };
            if let Values::Int { min, max, .. } = values
                && min > max
            {
                return Err(SourceError::Option(format!(
                    "{} is above {}",
                    key("min"),
                    key("max")
                )));
            }
            columns.push(values);
        }
        Ok(Self {
            schema,
            columns,
            rows,
            rate,
        })
    }

    fn column(&self, values: &Values, from: u64, n: usize) -> ArrayRef {
        let positions = from..from + n as u64;
        match values {
            Values::Sequence { start } => Arc::new(Int64Array::from_iter_values(
                positions.map(|p| start + p as i64),
            )),
            Values::Int { min, max, seed } => {
                let span = (max - min) as u64 + 1;
                Arc::new(Int64Array::from_iter_values(positions.map(|p| {
                    let r = mix(*seed, p);
                    min + if span == 0 {
                        r as i64
                    } else {
                        (r % span) as i64
                    }
                })))
            }
            Values::Float { min, max, seed } => {
                Arc::new(Float64Array::from_iter_values(positions.map(|p| {
                    min + (mix(*seed, p) >> 11) as f64 / (1u64 << 53) as f64 * (max - min)
                })))
            }
            Values::Text { length, seed } => {
                const ALPHABET: &[u8] =
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
                let mut builder = StringBuilder::with_capacity(n, n * length);
                let mut text = String::with_capacity(*length);
                for p in positions {
                    text.clear();
                    let mut r = mix(*seed, p);
                    for i in 0..*length {
                        if i % 10 == 0 && i > 0 {
                            r = mix(r, i as u64);
                        }
                        text.push(ALPHABET[(r % ALPHABET.len() as u64) as usize] as char);
                        r /= ALPHABET.len() as u64;
                    }
                    builder.append_value(&text);
                }
                Arc::new(builder.finish())
            }
            Values::Bool { seed } => Arc::new(BooleanArray::from_iter(
                positions.map(|p| Some(mix(*seed, p) & 1 == 1)),
            )),
            Values::Time {
                start,
                step,
                max_past,
                seed,
            } => Arc::new(TimestampMicrosecondArray::from_iter_values(positions.map(
                |p| {
                    let past = if *max_past > 0 {
                        (mix(*seed, p) % (*max_past as u64 + 1)) as i64
                    } else {
                        0
                    };
                    start + p as i64 * step - past
                },
            ))),
        }
    }
}

impl Positional for Datagen {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn read(&self, from: u64, max_rows: usize) -> Result<RecordBatch> {
        let n = rows_to_read(self.rows, from, max_rows);
        let columns = self
            .columns
            .iter()
            .map(|values| self.column(values, from, n))
            .collect();
        declared_rows(&self.schema, columns, n)
    }

    fn bound(&self) -> Option<u64> {
        self.rows
    }

    fn rate(&self) -> Option<f64> {
        (self.rate < 1e12).then_some(self.rate)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion::arrow::util::pretty::pretty_format_batches;

    use super::*;

    fn datagen(options: &[(&str, &str)]) -> Result<Datagen> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("user_id", DataType::Int32, true),
            Field::new("amount", DataType::Float64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]));
        let options = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Datagen::new(schema, &options)
    }

    #[test]
    fn rows_are_a_function_of_their_position() {
        let source = datagen(&[
            ("connector", "datagen"),
            ("datagen.rows.per.second", "4"),
            ("fields.id.kind", "sequence"),
            ("fields.user_id.min", "1"),
            ("fields.user_id.max", "3"),
            ("fields.amount.seed", "7"),
            ("fields.name.length", "4"),
        ])
        .unwrap();
        let all = source.read(0, 10).unwrap();
        let tail = source.read(6, 4).unwrap();
        assert_eq!(all.slice(6, 4), tail);
        let text = pretty_format_batches(&[all.slice(0, 3)])
            .unwrap()
            .to_string();
        assert!(text.contains("| 1  |"), "{text}");
        assert!(
            text.contains("2026-01-01T00:00:00.250"),
            "timestamps advance at the rate: {text}"
        );
        let users = all
            .column(1)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int32Array>()
            .unwrap();
        assert!(users.values().iter().all(|u| (1..=3).contains(u)));
    }

    #[test]
    fn bounded_sources_end_and_options_are_checked() {
        let source = datagen(&[("connector", "datagen"), ("datagen.rows", "5")]).unwrap();
        assert_eq!(source.read(3, 10).unwrap().num_rows(), 2);
        assert_eq!(source.read(5, 10).unwrap().num_rows(), 0);
        let source = datagen(&[
            ("fields.id.kind", "sequence"),
            ("fields.id.start", "10"),
            ("fields.id.end", "12"),
        ])
        .unwrap();
        assert_eq!(source.bound(), Some(3));
        assert!(datagen(&[("fields.nope.min", "1")]).is_err());
        assert!(datagen(&[("datagen.rows", "many")]).is_err());
        assert!(datagen(&[("fields.user_id.min", "5"), ("fields.user_id.max", "1")]).is_err());
    }
}
