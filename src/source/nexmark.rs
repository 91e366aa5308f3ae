//! `nexmark`: the Nexmark benchmark's online auction — people, auctions and bids — as sources.
//!
//! Options follow RisingWave's: `nexmark.table.type` (`Person`, `Auction` or `Bid`) picks the
//! events a source reads, `nexmark.event.num` bounds the event stream (counted over all three
//! types, so that three sources with the same options split one stream: with the generator's
//! proportions of 1 person, 3 auctions and 46 bids in every 50 events, 1000 events hold 20
//! people, 60 auctions and 920 bids), and `nexmark.min.event.gap.in.ns` paces the reading (the
//! time between two rows of the source; 0 reads as fast as possible). The generator's own
//! settings `nexmark.first.event.rate` (events per second of event time, all types together),
//! `nexmark.active.people`, `nexmark.in.flight.auctions` and `nexmark.base.time` (milliseconds
//! since 1970 of the first event) are options too. `nexmark.split.num` is accepted for
//! RisingWave's scripts: a source is read by one thread here, so it changes nothing.
//!
//! Event `n` of the stream is a function of `n` and the options alone, and the default base time
//! is fixed (2026-01-01 00:00:00 UTC), so a source gives the same rows on every run — what
//! recovery, backfill and tests rely on.
//!
//! A source declares any of its type's columns, by name, in any order and of any type the
//! values cast to (RisingWave's scripts declare ids as INTEGER); a source declared without
//! columns gets all of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use nexmark::EventGenerator;
use nexmark::config::NexmarkConfig;
use nexmark::event::{Event, EventType};

use super::{Positional, Result, SourceError, declared_rows, parse_option, rows_to_read};

/// Rows per second when `nexmark.min.event.gap.in.ns` is not given (RisingWave's default gap
/// of 100 µs).
const DEFAULT_GAP_NS: u64 = 100_000;

/// The first event's time when `nexmark.base.time` is not given: 2026-01-01 00:00:00 UTC.
const DEFAULT_BASE_TIME_MS: u64 = 1_767_225_600_000;

/// The kind of a column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Time,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Int => DataType::Int64,
            Kind::Text => DataType::Utf8,
            Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }
}

const PERSON: &[(&str, Kind)] = &[
    ("id", Kind::Int),
    ("name", Kind::Text),
    ("email_address", Kind::Text),
    ("credit_card", Kind::Text),
    ("city", Kind::Text),
    ("state", Kind::Text),
    ("date_time", Kind::Time),
    ("extra", Kind::Text),
];

const AUCTION: &[(&str, Kind)] = &[
    ("id", Kind::Int),
    ("item_name", Kind::Text),
    ("description", Kind::Text),
    ("initial_bid", Kind::Int),
    ("reserve", Kind::Int),
    ("date_time", Kind::Time),
    ("expires", Kind::Time),
    ("seller", Kind::Int),
    ("category", Kind::Int),
    ("extra", Kind::Text),
];

const BID: &[(&str, Kind)] = &[
    ("auction", Kind::Int),
    ("bidder", Kind::Int),
    ("price", Kind::Int),
    ("channel", Kind::Text),
    ("url", Kind::Text),
    ("date_time", Kind::Time),
    ("extra", Kind::Text),
];

/// The event type `nexmark.table.type` names, with its columns.
fn table(
    options: &BTreeMap<String, String>,
) -> Result<(EventType, &'static [(&'static str, Kind)])> {
    let name = options.get("nexmark.table.type").ok_or_else(|| {
        SourceError::Option(
            "a nexmark source needs nexmark.table.type: 'Person', 'Auction' or 'Bid'".into(),
        )
    })?;
    match name.to_ascii_lowercase().as_str() {
        "person" => Ok((EventType::Person, PERSON)),
        "auction" => Ok((EventType::Auction, AUCTION)),
        "bid" => Ok((EventType::Bid, BID)),
        _ => Err(SourceError::Option(format!(
            "invalid value '{name}' for nexmark.table.type: use 'Person', 'Auction' or 'Bid'"
        ))),
    }
}

/// The columns a nexmark source declared without columns gets: all of its type's.
pub fn columns(options: &BTreeMap<String, String>) -> Result<Vec<(String, DataType)>> {
    Ok(table(options)?
        .1
        .iter()
        .map(|(name, kind)| (name.to_string(), kind.data_type()))
        .collect())
}

/// One value of an event, by the column's position in its type's list.
enum Value<'a> {
    Int(i64),
    Text(&'a str),
    /// Milliseconds since 1970.
    Time(u64),
}

fn value(event: &Event, column: usize) -> Value<'_> {
    match event {
        Event::Person(p) => match column {
            0 => Value::Int(p.id as i64),
            1 => Value::Text(&p.name),
            2 => Value::Text(&p.email_address),
            3 => Value::Text(&p.credit_card),
            4 => Value::Text(&p.city),
            5 => Value::Text(&p.state),
            6 => Value::Time(p.date_time),
            _ => Value::Text(&p.extra),
        },
        Event::Auction(a) => match column {
            0 => Value::Int(a.id as i64),
            1 => Value::Text(&a.item_name),
            2 => Value::Text(&a.description),
            3 => Value::Int(a.initial_bid as i64),
            4 => Value::Int(a.reserve as i64),
            5 => Value::Time(a.date_time),
            6 => Value::Time(a.expires),
            7 => Value::Int(a.seller as i64),
            8 => Value::Int(a.category as i64),
            _ => Value::Text(&a.extra),
        },
        Event::Bid(b) => match column {
            0 => Value::Int(b.auction as i64),
            1 => Value::Int(b.bidder as i64),
            2 => Value::Int(b.price as i64),
            3 => Value::Text(&b.channel),
            4 => Value::Text(&b.url),
            5 => Value::Time(b.date_time),
            _ => Value::Text(&b.extra),
        },
    }
}

/// The `nexmark` connector.
#[derive(Debug)]
pub struct Nexmark {
    schema: SchemaRef,
    /// For each column of the schema, its position in the type's list and kind.
    columns: Vec<(usize, Kind)>,
    /// A generator of this type's events from the first, cloned for each read.
    generator: EventGenerator,
    rows: Option<u64>,
    gap_ns: u64,
}

impl Nexmark {
    /// Reads the events of the type `options` name into rows of `schema`. Unknown options and
    /// columns are refused.
    pub fn new(schema: SchemaRef, options: &BTreeMap<String, String>) -> Result<Self> {
        for key in options.keys() {
            let known = matches!(
                key.as_str(),
                "connector"
                    | "nexmark.table.type"
                    | "nexmark.event.num"
                    | "nexmark.min.event.gap.in.ns"
                    | "nexmark.split.num"
                    | "nexmark.first.event.rate"
                    | "nexmark.active.people"
                    | "nexmark.in.flight.auctions"
                    | "nexmark.base.time"
            );
            if !known {
                return Err(SourceError::Option(format!("unknown nexmark option {key}")));
            }
        }
        let (event_type, fields) = table(options)?;
        let mut columns = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let name = field.name().to_lowercase();
            let Some(index) = fields.iter().position(|(f, _)| *f == name) else {
                let names: Vec<&str> = fields.iter().map(|(f, _)| *f).collect();
                return Err(SourceError::Option(format!(
                    "nexmark {event_type:?} events have no column \"{name}\"; their columns are {}",
                    names.join(", ")
                )));
            };
            let kind = fields[index].1;
            if !datafusion::arrow::compute::can_cast_types(&kind.data_type(), field.data_type()) {
                return Err(SourceError::Option(format!(
                    "nexmark column \"{name}\" holds {} values, which do not convert to {}",
                    kind.data_type(),
                    field.data_type()
                )));
            }
            columns.push((index, kind));
        }

        let positive = |key: &str| -> Result<Option<usize>> {
            match parse_option::<usize>(options, key)? {
                Some(0) => Err(SourceError::Option(format!("{key} must be positive"))),
                v => Ok(v),
            }
        };
        positive("nexmark.split.num")?;
        let mut config = NexmarkConfig {
            base_time: parse_option(options, "nexmark.base.time")?.unwrap_or(DEFAULT_BASE_TIME_MS),
            ..NexmarkConfig::default()
        };
        if let Some(rate) = positive("nexmark.first.event.rate")? {
            config.first_rate = rate;
            config.next_rate = rate;
        }
        if let Some(people) = positive("nexmark.active.people")? {
            config.active_people = people;
        }
        if let Some(auctions) = positive("nexmark.in.flight.auctions")? {
            config.in_flight_auctions = auctions;
        }
        let proportions = (
            config.person_proportion as u64,
            config.auction_proportion as u64,
            config.bid_proportion as u64,
        );
        let rows = parse_option::<u64>(options, "nexmark.event.num")?
            .map(|events| rows_of(event_type, events, proportions));
        Ok(Self {
            schema,
            columns,
            generator: EventGenerator::new(config).with_type_filter(event_type),
            rows,
            gap_ns: parse_option(options, "nexmark.min.event.gap.in.ns")?.unwrap_or(DEFAULT_GAP_NS),
        })
    }
}

/// How many of the first `events` events are of `event_type`, events coming in rounds of
/// `person` people, then `auction` auctions, then `bid` bids.
fn rows_of(event_type: EventType, events: u64, (person, auction, bid): (u64, u64, u64)) -> u64 {
    let round = person + auction + bid;
    let (first, count) = match event_type {
        EventType::Person => (0, person),
        EventType::Auction => (person, auction),
        EventType::Bid => (person + auction, bid),
    };
    events / round * count + (events % round).saturating_sub(first).min(count)
}

impl Positional for Nexmark {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn read(&self, from: u64, max_rows: usize) -> Result<RecordBatch> {
        let n = rows_to_read(self.rows, from, max_rows);
        let events: Vec<Event> = self.generator.clone().with_offset(from).take(n).collect();
        let mut arrays = Vec::with_capacity(self.columns.len());
        for &(index, kind) in &self.columns {
            let array: ArrayRef = match kind {
                Kind::Int => {
                    let mut b = Int64Builder::with_capacity(n);
                    for event in &events {
                        if let Value::Int(v) = value(event, index) {
                            b.append_value(v);
                        }
                    }
                    Arc::new(b.finish())
                }
                Kind::Text => {
                    let mut b = StringBuilder::with_capacity(n, n * 16);
                    for event in &events {
                        if let Value::Text(v) = value(event, index) {
                            b.append_value(v);
                        }
                    }
                    Arc::new(b.finish())
                }
                Kind::Time => {
                    let mut b = TimestampMicrosecondBuilder::with_capacity(n);
                    for event in &events {
                        if let Value::Time(ms) = value(event, index) {
                            b.append_value(ms as i64 * 1000);
                        }
                    }
                    Arc::new(b.finish())
                }
            };
            arrays.push(array);
        }
        declared_rows(&self.schema, arrays, n)
    }

    fn bound(&self) -> Option<u64> {
        self.rows
    }

    fn rate(&self) -> Option<f64> {
        (self.gap_ns > 0).then(|| 1e9 / self.gap_ns as f64)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, Int64Array, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn all_columns(table: &str) -> SchemaRef {
        let fields = columns(&options(&[("nexmark.table.type", table)]))
            .unwrap()
            .into_iter()
            .map(|(name, t)| Field::new(name, t, true))
            .collect::<Vec<_>>();
        Arc::new(Schema::new(fields))
    }

    #[test]
    fn three_sources_split_one_event_stream() {
        let events = [1000u64, 1001, 1003, 1004, 1049, 1050, 7];
        for n in events {
            let total: u64 = [EventType::Person, EventType::Auction, EventType::Bid]
                .into_iter()
                .map(|t| rows_of(t, n, (1, 3, 46)))
                .sum();
            assert_eq!(total, n);
        }
        assert_eq!(rows_of(EventType::Person, 1000, (1, 3, 46)), 20);
        assert_eq!(rows_of(EventType::Auction, 1000, (1, 3, 46)), 60);
        assert_eq!(rows_of(EventType::Bid, 1000, (1, 3, 46)), 920);
        assert_eq!(rows_of(EventType::Auction, 1002, (1, 3, 46)), 61);

        // The event times of the three types interleave as one stream's: 10,000 events per
        // second, in milliseconds (event 99 is at 9.9 ms, rounded to 10).
        let read = |table: &str| {
            let source = Nexmark::new(
                all_columns(table),
                &options(&[
                    ("connector", "nexmark"),
                    ("nexmark.table.type", table),
                    ("nexmark.event.num", "100"),
                ]),
            )
            .unwrap();
            let rows = source.read(0, 1000).unwrap();
            let index = rows.schema().index_of("date_time").unwrap();
            let times = rows.column(index).as_any();
            let times = times.downcast_ref::<TimestampMicrosecondArray>().unwrap();
            times.values().to_vec()
        };
        let mut all = [read("Person"), read("Auction"), read("Bid")].concat();
        assert_eq!(all.len(), 100);
        all.sort();
        assert_eq!(all[0], DEFAULT_BASE_TIME_MS as i64 * 1000);
        assert_eq!(all[99] - all[0], 10_000);
    }

    #[test]
    fn rows_are_a_function_of_their_position() {
        let source = Nexmark::new(
            all_columns("Bid"),
            &options(&[
                ("nexmark.table.type", "bid"),
                ("nexmark.min.event.gap.in.ns", "0"),
            ]),
        )
        .unwrap();
        assert_eq!(source.bound(), None);
        assert_eq!(source.rate(), None);
        let whole = source.read(0, 200).unwrap();
        let part = source.read(150, 50).unwrap();
        assert_eq!(whole.slice(150, 50), part);
        assert_eq!(source.read(0, 200).unwrap(), whole);
        let auctions = whole
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert!(auctions.iter().all(|a| a.is_some_and(|a| a >= 1000)));
    }

    #[test]
    fn columns_by_name_and_cast() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "date_time",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
            Field::new("seller", DataType::Int32, true),
        ]));
        let source = Nexmark::new(
            schema,
            &options(&[
                ("nexmark.table.type", "Auction"),
                ("nexmark.event.num", "50"),
            ]),
        )
        .unwrap();
        assert_eq!(source.bound(), Some(3));
        assert_eq!(source.rate(), Some(10_000.0));
        let rows = source.read(0, 10).unwrap();
        assert_eq!(rows.num_rows(), 3);
        assert_eq!(rows.column(1).data_type(), &DataType::Int32);
        assert_eq!(rows.column(1).null_count(), 0);
        assert_eq!(source.read(3, 10).unwrap().num_rows(), 0);

        let refused = |pairs: &[(&str, &str)], schema: SchemaRef| {
            Nexmark::new(schema, &options(pairs))
                .unwrap_err()
                .to_string()
        };
        let bids = all_columns("Bid");
        assert!(refused(&[], bids.clone()).contains("needs nexmark.table.type"));
        assert!(refused(&[("nexmark.table.type", "Item")], bids.clone()).contains("'Item'"));
        assert!(
            refused(
                &[("nexmark.table.type", "Bid"), ("nexmark.speed", "1")],
                bids.clone()
            )
            .contains("unknown nexmark option nexmark.speed")
        );
        assert!(
            refused(&[("nexmark.table.type", "Person")], bids.clone())
                .contains("no column \"auction\"")
        );
        assert!(
            refused(
                &[("nexmark.table.type", "Bid"), ("nexmark.event.num", "many")],
                bids
            )
            .contains("invalid value 'many'")
        );
    }
}
