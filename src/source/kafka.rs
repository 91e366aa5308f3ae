//! `kafka`: a topic's records as rows, with RisingWave's option names.
//!
//! ```sql
//! CREATE SOURCE payments (id BIGINT, amount DOUBLE PRECISION, ts TIMESTAMP)
//! INCLUDE partition AS p, offset AS o, timestamp AS kafka_ts, key AS k
//! WITH (connector = 'kafka', topic = 'payments',
//!       properties.bootstrap.server = '127.0.0.1:9092', scan.startup.mode = 'earliest')
//! FORMAT PLAIN ENCODE JSON;
//! ```
//!
//! Each partition is a split whose offsets are Kafka's. Partitions are assigned with their
//! offsets (never a consumer group's subscription), and offsets are committed with Augur's
//! epochs, never by Kafka's auto-commit: the views' state and the position they have read to
//! are one atomic write. `scan.startup.mode` (`earliest`, the default, or `latest`) or
//! `scan.startup.timestamp.millis` fixes each partition's first offset when the source is
//! created; partitions added later are found every `scan.partition.discovery.interval.ms`
//! (5 s) and read from their beginning. Any `properties.<name>` is passed to librdkafka as
//! `<name>`. With `properties.group.id`, what Augur has committed is also committed to that
//! consumer group, at the same interval, for Kafka's monitoring tools; Augur never reads it.
//!
//! The views read through a thread that polls the consumer and decodes ahead of them, at most
//! [`PREFETCH`] batches: when the views fall behind, the thread waits, and so does the broker's
//! fetching. Broker faults do not stop a source: librdkafka reconnects, and the fault is
//! shown as the source's `last_error` until a fetch of the topic's metadata succeeds again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Int32Array, Int64Array, RecordBatch, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::encoding::{Encoding, RecordDecoder};
use super::envelope::{ChangeDecoder, Envelope, Record};
use super::{
    Rejected, Result, Source, SourceBatch, SourceDef, SourceError, SourceReader, SplitState,
    Splits, TableChanges,
};

/// Batches decoded ahead of the views.
pub const PREFETCH: usize = 4;

/// Records per batch at most.
const MAX_BATCH: usize = 8192;

/// How long to wait for the broker at CREATE and for each step of a re-read.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What a Kafka record adds to its row besides its payload (`INCLUDE ... AS column`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// The partition, `INT`.
    Partition,
    /// The offset, `BIGINT`.
    Offset,
    /// The record's timestamp, `TIMESTAMPTZ`.
    Timestamp,
    /// The record's key, `BYTEA`.
    Key,
}

impl Include {
    /// The part `INCLUDE name` names.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "partition" => Some(Self::Partition),
            "offset" => Some(Self::Offset),
            "timestamp" => Some(Self::Timestamp),
            "key" => Some(Self::Key),
            _ => None,
        }
    }

    /// The column's type.
    pub fn data_type(self) -> DataType {
        match self {
            Self::Partition => DataType::Int32,
            Self::Offset => DataType::Int64,
            Self::Timestamp => DataType::Timestamp(
                TimeUnit::Microsecond,
                Some(crate::common::types::UTC.into()),
            ),
            Self::Key => DataType::Binary,
        }
    }
}

/// Where reading starts when the source is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Startup {
    Earliest,
    Latest,
    /// The first record at or after this time (ms since 1970).
    Timestamp(i64),
}

/// The `kafka` connector.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    schema: SchemaRef,
    /// For each column of `schema`: the payload's column, or what the record adds.
    columns: Vec<Column>,
    decoder: Payload,
    topic: String,
    /// librdkafka's settings for every consumer.
    config: BTreeMap<String, String>,
    startup: Startup,
    discovery: Duration,
    payload_kept: usize,
}

/// How a record's payload becomes rows.
#[derive(Debug, Clone)]
enum Payload {
    /// Each record a row of a source.
    Rows(RecordDecoder),
    /// Each record a change of a table with a key.
    Changes(ChangeDecoder),
}

#[derive(Debug, Clone, Copy)]
enum Column {
    Payload(usize),
    Include(Include),
}

/// The options of the connector itself; `properties.*` go to librdkafka.
const OPTIONS: &[&str] = &[
    "connector",
    "topic",
    "scan.startup.mode",
    "scan.startup.timestamp.millis",
    "scan.partition.discovery.interval.ms",
    "rejected.retention.rows",
    "rejected.payload.max.bytes",
];

impl KafkaSource {
    /// Reads `def`'s topic into rows of `schema`.
    pub fn new(schema: SchemaRef, def: &SourceDef) -> Result<Self> {
        Self::open(schema, def, None)
    }

    /// Reads `def`'s topic into changes of a table whose whole rows are `schema` and whose
    /// primary key is the columns named `key` (none: the table has no key, and records append).
    pub fn for_table(schema: SchemaRef, def: &SourceDef, key: Vec<String>) -> Result<Self> {
        Self::open(schema, def, Some(key))
    }

    fn open(schema: SchemaRef, def: &SourceDef, table_key: Option<Vec<String>>) -> Result<Self> {
        let options = &def.options;
        let mut config = BTreeMap::new();
        for (key, value) in options {
            if let Some(setting) = key.strip_prefix("properties.") {
                // RisingWave's name for the brokers.
                let setting = match setting {
                    "bootstrap.server" => "bootstrap.servers",
                    other => other,
                };
                config.insert(setting.to_string(), value.clone());
            } else if !OPTIONS.contains(&key.as_str()) {
                return Err(SourceError::Option(format!(
                    "unknown option {key} for connector 'kafka'"
                )));
            }
        }
        if !config.contains_key("bootstrap.servers") {
            return Err(SourceError::Option(
                "a kafka source needs properties.bootstrap.server".into(),
            ));
        }
        let topic = options
            .get("topic")
            .cloned()
            .ok_or_else(|| SourceError::Option("a kafka source needs topic".into()))?;
        let startup = match (
            options
                .get("scan.startup.mode")
                .map(|m| m.to_ascii_lowercase()),
            super::parse_option::<i64>(options, "scan.startup.timestamp.millis")?,
        ) {
            (_, Some(ms)) => Startup::Timestamp(ms),
            (None, None) => Startup::Earliest,
            (Some(mode), None) => match mode.as_str() {
                "earliest" => Startup::Earliest,
                "latest" => Startup::Latest,
                other => {
                    return Err(SourceError::Option(format!(
                        "invalid value '{other}' for option scan.startup.mode: 'earliest' or \
                         'latest'"
                    )));
                }
            },
        };
        let discovery =
            super::parse_option::<u64>(options, "scan.partition.discovery.interval.ms")?
                .unwrap_or(5_000);
        let payload_kept = super::payload_kept(options)?;
        let format = def.format.as_ref().ok_or_else(|| {
            SourceError::Option(
                "a kafka source needs FORMAT PLAIN ENCODE JSON | CSV after its options".into(),
            )
        })?;
        let envelope = Envelope::new(&format.format)?;
        if envelope != Envelope::Plain && table_key.is_none() {
            return Err(SourceError::NotSupported(format!(
                "FORMAT {} on a source: changes need a table with a primary key (CREATE TABLE \
                 ... PRIMARY KEY ... WITH (connector = 'kafka', ...))",
                format.format.to_uppercase()
            )));
        }
        let encoding = Encoding::new(&format.encode, &format.options)?;
        if let Some(key) = table_key {
            let decoder = ChangeDecoder::new(schema.clone(), key, envelope, encoding)?;
            return Ok(Self {
                columns: (0..schema.fields().len()).map(Column::Payload).collect(),
                schema,
                decoder: Payload::Changes(decoder),
                topic,
                config,
                startup,
                discovery: Duration::from_millis(discovery.max(1)),
                payload_kept,
            });
        }
        let mut columns = Vec::with_capacity(schema.fields().len());
        let mut payload = Vec::new();
        for field in schema.fields() {
            match def.includes.iter().find(|i| &i.column == field.name()) {
                Some(include) => {
                    let part = Include::from_name(&include.part).ok_or_else(|| {
                        SourceError::Option(format!("unknown INCLUDE {}", include.part))
                    })?;
                    columns.push(Column::Include(part));
                }
                None => {
                    columns.push(Column::Payload(payload.len()));
                    payload.push(Field::new(field.name(), field.data_type().clone(), true));
                }
            }
        }
        let decoder = RecordDecoder::new(Arc::new(Schema::new(payload)), encoding);
        Ok(Self {
            schema,
            columns,
            decoder: Payload::Rows(decoder),
            topic,
            config,
            startup,
            discovery: Duration::from_millis(discovery.max(1)),
            payload_kept,
        })
    }

    /// A consumer with the source's settings and Augur's: no auto-commit, no group.
    fn consumer(&self, partition_eof: bool) -> Result<BaseConsumer> {
        let mut config = ClientConfig::new();
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("group.id", "augur")
            .set(
                "enable.partition.eof",
                if partition_eof { "true" } else { "false" },
            );
        for (key, value) in &self.config {
            config.set(key, value);
        }
        config
            .create()
            .map_err(|e| SourceError::Option(format!("kafka settings: {e}")))
    }

    /// The topic's partitions, or why they cannot be known.
    fn partitions(&self, consumer: &BaseConsumer) -> Result<Vec<i32>> {
        partitions_of(consumer, &self.topic)
    }

    /// Turns a batch of records of one partition into rows: the payloads decoded, the parts
    /// the record adds, and the records that gave no row.
    fn rows<M: Message>(&self, partition: i32, records: &[M]) -> Result<SourceBatch> {
        let decoder = match &self.decoder {
            Payload::Rows(decoder) => decoder,
            Payload::Changes(decoder) => {
                let keyed: Vec<Record<'_>> =
                    records.iter().map(|m| (m.key(), m.payload())).collect();
                decoder.resolve(&keyed)?;
                let changes = decoder.decode(&keyed);
                let rejected = self.rejected(partition, records, changes.failures);
                return Ok(SourceBatch {
                    split: partition,
                    start: 0,
                    rows: changes.rows,
                    next: records.last().map_or(0, |m| m.offset() + 1),
                    records: records.len() as u64,
                    rejected,
                    changes: Some(TableChanges {
                        deleted: changes.deleted,
                        ops: changes.ops,
                        row_offsets: changes
                            .row_records
                            .iter()
                            .map(|&i| records[i].offset())
                            .collect(),
                        deleted_offsets: changes
                            .deleted_records
                            .iter()
                            .map(|&i| records[i].offset())
                            .collect(),
                    }),
                    name: None,
                    done: false,
                });
            }
        };
        let payloads: Vec<&[u8]> = records.iter().map(|m| m.payload().unwrap_or(&[])).collect();
        decoder.resolve(payloads.iter().copied())?;
        let (rows, kept, failures) = decoder.decode(&payloads);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for column in &self.columns {
            let array: ArrayRef = match column {
                Column::Payload(i) => rows.column(*i).clone(),
                Column::Include(Include::Partition) => {
                    Arc::new(Int32Array::from(vec![partition; kept.len()]))
                }
                Column::Include(Include::Offset) => Arc::new(Int64Array::from_iter_values(
                    kept.iter().map(|&i| records[i].offset()),
                )),
                Column::Include(Include::Timestamp) => Arc::new(
                    TimestampMicrosecondArray::from_iter(kept.iter().map(|&i| {
                        records[i]
                            .timestamp()
                            .to_millis()
                            .and_then(|ms| ms.checked_mul(1000))
                    }))
                    .with_timezone(crate::common::types::UTC),
                ),
                Column::Include(Include::Key) => {
                    let mut keys = BinaryBuilder::new();
                    for &i in &kept {
                        keys.append_option(records[i].key());
                    }
                    Arc::new(keys.finish())
                }
            };
            columns.push(array);
        }
        let options =
            datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(kept.len()));
        let rows = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        let rejected = self.rejected(partition, records, failures);
        let next = records.last().map_or(0, |m| m.offset() + 1);
        Ok(SourceBatch {
            split: partition,
            start: 0,
            rows,
            next,
            records: records.len() as u64,
            rejected,
            changes: None,
            name: None,
            done: false,
        })
    }

    /// For `ENCODE AVRO`: the registry answers, has the topic's value subject, and its latest
    /// schema has every declared column (a misspelt column would otherwise read as NULL).
    fn check_registry(&self) -> Result<()> {
        let (format, envelope, columns) = match &self.decoder {
            Payload::Rows(decoder) => match decoder.encoding() {
                Encoding::Avro(format) => (format.as_ref(), Envelope::Plain, decoder.schema()),
                _ => return Ok(()),
            },
            Payload::Changes(decoder) => match (decoder.avro(), decoder.encoding()) {
                (Some(format), _) => (format, decoder.envelope(), decoder.schema()),
                (None, Encoding::Avro(format)) => {
                    (format.as_ref(), Envelope::Plain, decoder.schema())
                }
                _ => return Ok(()),
            },
        };
        let registry = format.registry();
        let subject = format!("{}-value", self.topic);
        let Some((_, latest)) = registry.latest(&subject)? else {
            return Err(SourceError::Missing(format!(
                "schema registry subject {subject}"
            )));
        };
        let inner = (envelope == Envelope::Debezium).then_some("after");
        let Some(mut fields) = super::avro::record_fields(&latest, inner) else {
            return Ok(());
        };
        if envelope == Envelope::Upsert
            && let Some((_, key)) = registry.latest(&format!("{}-key", self.topic))?
        {
            match super::avro::record_fields(&key, None) {
                Some(key_fields) => fields.extend(key_fields),
                // A bare key value: the key's one column.
                None => return Ok(()),
            }
        }
        for column in columns.fields() {
            if !fields.iter().any(|f| f.eq_ignore_ascii_case(column.name())) {
                return Err(SourceError::Column(format!(
                    "column {} is not a field of the latest schema of subject {subject} \
                     (fields: {})",
                    column.name(),
                    fields.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The records of `failures`, kept with why (the payload truncated).
    fn rejected<M: Message>(
        &self,
        partition: i32,
        records: &[M],
        failures: Vec<(usize, String)>,
    ) -> Vec<Rejected> {
        failures
            .into_iter()
            .map(|(i, error)| {
                let payload = records[i].payload().unwrap_or(&[]);
                Rejected {
                    split: partition,
                    offset: records[i].offset(),
                    payload: payload[..payload.len().min(self.payload_kept)].to_vec(),
                    error,
                }
            })
            .collect()
    }
}

/// `topic`'s partitions as the broker tells them.
fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(|e| SourceError::Unavailable(format!("cannot reach the kafka brokers: {e}")))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(SourceError::Missing(format!("kafka topic \"{topic}\"")));
    };
    if let Some(error) = found.error() {
        let error = KafkaError::MetadataFetch(error.into());
        return Err(match error.rdkafka_error_code() {
            Some(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition) => {
                SourceError::Missing(format!("kafka topic \"{topic}\""))
            }
            _ => SourceError::Unavailable(format!("kafka topic \"{topic}\": {error}")),
        });
    }
    let mut partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    partitions.sort_unstable();
    Ok(partitions)
}

impl Source for KafkaSource {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn initial_splits(&self) -> Result<Splits> {
        let consumer = self.consumer(false)?;
        let partitions = self.partitions(&consumer)?;
        self.check_registry()?;
        let mut splits = Splits::default();
        let by_time = match self.startup {
            Startup::Timestamp(ms) => {
                let mut list = TopicPartitionList::new();
                for &p in &partitions {
                    list.add_partition_offset(&self.topic, p, Offset::Offset(ms))
                        .map_err(|e| SourceError::Option(e.to_string()))?;
                }
                let found = consumer.offsets_for_times(list, TIMEOUT).map_err(|e| {
                    SourceError::Unavailable(format!("cannot find offsets by time: {e}"))
                })?;
                found
                    .elements()
                    .iter()
                    .map(|e| (e.partition(), e.offset()))
                    .collect::<BTreeMap<_, _>>()
            }
            _ => BTreeMap::new(),
        };
        for p in partitions {
            let (low, high) = consumer
                .fetch_watermarks(&self.topic, p, TIMEOUT)
                .map_err(|e| SourceError::Unavailable(format!("kafka partition {p}: {e}")))?;
            let start = match self.startup {
                Startup::Earliest => low,
                Startup::Latest => high,
                Startup::Timestamp(_) => start_by_time(by_time.get(&p).copied(), high),
            };
            splits.0.insert(
                p,
                SplitState {
                    start,
                    next: start,
                    ..SplitState::default()
                },
            );
        }
        Ok(splits)
    }

    fn reader(&self, from: &Splits) -> Result<Box<dyn SourceReader>> {
        let (tx, rx) = sync_channel(PREFETCH);
        let stop = Arc::new(AtomicBool::new(false));
        let last_error = Arc::new(Mutex::new(None));
        let ends = Arc::new(Mutex::new(BTreeMap::new()));
        let committed = Arc::new(Mutex::new(None));
        let live = Live {
            committed: committed.clone(),
            source: self.clone(),
            known: from.0.keys().copied().collect(),
            from: from.clone(),
            tx,
            stop: stop.clone(),
            last_error: last_error.clone(),
            ends: ends.clone(),
        };
        std::thread::Builder::new()
            .name(format!("augur-kafka-{}", self.topic))
            .spawn(move || live.run())
            .map_err(|e| SourceError::Unavailable(format!("cannot start a kafka reader: {e}")))?;
        Ok(Box::new(Prefetched {
            rx,
            stop,
            last_error,
            ends,
            committed,
        }))
    }

    fn reread(&self, until: &Splits) -> Result<Box<dyn SourceReader>> {
        Ok(Box::new(Reread::new(self.clone(), until)?))
    }

    fn missing(&self, until: &Splits) -> Result<Option<String>> {
        let consumer = self.consumer(false)?;
        let mut gaps = Vec::new();
        for (p, split) in &until.0 {
            if split.next <= split.start {
                continue;
            }
            let (low, _) = consumer
                .fetch_watermarks(&self.topic, *p, TIMEOUT)
                .map_err(|e| SourceError::Unavailable(format!("kafka partition {p}: {e}")))?;
            if low > split.start {
                gaps.push(format!(
                    "partition {p}: offsets {} to {} of topic {} are gone",
                    split.start,
                    low.min(split.next) - 1,
                    self.topic
                ));
            }
        }
        Ok((!gaps.is_empty()).then(|| gaps.join(", ")))
    }

    fn bound(&self) -> Option<u64> {
        None
    }

    fn rate(&self) -> Option<f64> {
        None
    }
}

/// The first offset at or after a time, as the broker found it; no record that late: the end.
fn start_by_time(found: Option<Offset>, high: i64) -> i64 {
    match found {
        Some(Offset::Offset(offset)) if offset >= 0 => offset,
        _ => high,
    }
}

/// The reading thread's side of a live read.
struct Live {
    source: KafkaSource,
    from: Splits,
    /// Partitions assigned.
    known: std::collections::BTreeSet<i32>,
    tx: SyncSender<SourceBatch>,
    stop: Arc<AtomicBool>,
    last_error: Arc<Mutex<Option<String>>>,
    /// Each partition's end (high watermark) as last asked.
    ends: Arc<Mutex<BTreeMap<i32, i64>>>,
    /// What Augur last committed, to report to the consumer group.
    committed: Arc<Mutex<Option<Splits>>>,
}

impl Live {
    fn run(mut self) {
        while !self.stop.load(Ordering::SeqCst) {
            match self.read() {
                Ok(()) => return,
                Err(e) => {
                    // The consumer could not be made or assigned: try again after a pause.
                    self.fault(Some(e.to_string()));
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    fn fault(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Reads until stopped; an error if the consumer cannot be set up. Starts again from what
    /// it has handed over, and looks for new partitions again.
    fn read(&mut self) -> Result<()> {
        self.known = self.from.0.keys().copied().collect();
        let consumer = self.source.consumer(false)?;
        let mut assignment = TopicPartitionList::new();
        for (p, split) in &self.from.0 {
            assignment
                .add_partition_offset(&self.source.topic, *p, Offset::Offset(split.next))
                .map_err(|e| SourceError::Option(e.to_string()))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| SourceError::Unavailable(format!("cannot assign partitions: {e}")))?;
        let mut discovered = Instant::now();
        self.discover(&consumer);
        while !self.stop.load(Ordering::SeqCst) {
            if discovered.elapsed() >= self.source.discovery {
                discovered = Instant::now();
                self.discover(&consumer);
                self.report(&consumer);
            }
            let mut records: Vec<BorrowedMessage<'_>> = Vec::new();
            let mut wait = Duration::from_millis(100);
            let deadline = Instant::now() + Duration::from_millis(20);
            while records.len() < MAX_BATCH {
                match consumer.poll(wait) {
                    Some(Ok(record)) => records.push(record),
                    Some(Err(KafkaError::PartitionEOF(_))) => {}
                    Some(Err(e)) => {
                        self.fault(Some(e.to_string()));
                        break;
                    }
                    None => break,
                }
                wait = Duration::ZERO;
                if Instant::now() >= deadline {
                    break;
                }
            }
            if records.is_empty() {
                continue;
            }
            // One batch per partition, in the order the partition's records came.
            let mut by_partition: BTreeMap<i32, Vec<BorrowedMessage<'_>>> = BTreeMap::new();
            for record in records {
                by_partition
                    .entry(record.partition())
                    .or_default()
                    .push(record);
            }
            for (partition, records) in by_partition {
                let batch = self.source.rows(partition, &records)?;
                drop(records);
                let (start, next) = (batch.start, batch.next);
                if self.tx.send(batch).is_err() {
                    return Ok(());
                }
                // Handed over: a restart of the reading goes on from here.
                self.from.advance(partition, start, next, 0, 0);
            }
        }
        Ok(())
    }

    /// Commits what Augur has committed to the consumer group named by `properties.group.id`,
    /// so that Kafka's tools show the source's progress. Augur never reads these back.
    fn report(&self, consumer: &BaseConsumer) {
        if !self.source.config.contains_key("group.id") {
            return;
        }
        let Some(splits) = self
            .committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        let mut offsets = TopicPartitionList::new();
        for (p, split) in &splits.0 {
            if split.next > split.start {
                let _ = offsets.add_partition_offset(
                    &self.source.topic,
                    *p,
                    Offset::Offset(split.next),
                );
            }
        }
        if offsets.count() > 0
            && let Err(e) = consumer.commit(&offsets, CommitMode::Async)
        {
            tracing::debug!(
                topic = self.source.topic,
                "reporting offsets to the group: {e}"
            );
        }
    }

    /// Assigns partitions that appeared since the last look, from their beginning.
    fn discover(&mut self, consumer: &BaseConsumer) {
        let partitions = match self.source.partitions(consumer) {
            Ok(partitions) => partitions,
            Err(e) => {
                self.fault(Some(e.to_string()));
                return;
            }
        };
        self.fault(None);
        let mut added = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for p in partitions {
            if self.known.insert(p) {
                let _ = added.add_partition_offset(&self.source.topic, p, Offset::Offset(0));
            }
            if let Ok((_, high)) =
                consumer.fetch_watermarks(&self.source.topic, p, Duration::from_secs(1))
            {
                ends.insert(p, high);
            }
        }
        *self.ends.lock().unwrap_or_else(|e| e.into_inner()) = ends;
        if added.count() > 0
            && let Err(e) = consumer.incremental_assign(&added)
        {
            for element in added.elements() {
                self.known.remove(&element.partition());
            }
            self.fault(Some(format!("cannot assign new partitions: {e}")));
        }
    }
}

/// The views' side of a live read.
struct Prefetched {
    rx: Receiver<SourceBatch>,
    stop: Arc<AtomicBool>,
    last_error: Arc<Mutex<Option<String>>>,
    ends: Arc<Mutex<BTreeMap<i32, i64>>>,
    committed: Arc<Mutex<Option<Splits>>>,
}

impl SourceReader for Prefetched {
    fn next(&mut self, _max_rows: usize) -> Result<Option<SourceBatch>> {
        match self.rx.try_recv() {
            Ok(batch) => Ok(Some(batch)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => {
                Err(SourceError::Unavailable("the kafka reader stopped".into()))
            }
        }
    }

    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn ends(&self) -> BTreeMap<i32, i64> {
        self.ends.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn committed(&mut self, splits: &Splits) {
        *self.committed.lock().unwrap_or_else(|e| e.into_inner()) = Some(splits.clone());
    }
}

impl Drop for Prefetched {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A bounded re-read: each partition from its start to its next offset.
struct Reread {
    source: KafkaSource,
    consumer: BaseConsumer,
    /// The offset each unfinished partition ends before.
    ends: BTreeMap<i32, i64>,
    /// Records read and not yet returned, by partition.
    pending: BTreeMap<i32, Vec<OwnedMessage>>,
}

impl Reread {
    fn new(source: KafkaSource, until: &Splits) -> Result<Self> {
        let consumer = source.consumer(true)?;
        let mut assignment = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for (p, split) in &until.0 {
            if split.next > split.start {
                assignment
                    .add_partition_offset(&source.topic, *p, Offset::Offset(split.start))
                    .map_err(|e| SourceError::Option(e.to_string()))?;
                ends.insert(*p, split.next);
            }
        }
        if !ends.is_empty() {
            consumer
                .assign(&assignment)
                .map_err(|e| SourceError::Unavailable(format!("cannot assign partitions: {e}")))?;
        }
        Ok(Self {
            source,
            consumer,
            ends,
            pending: BTreeMap::new(),
        })
    }
}

impl SourceReader for Reread {
    fn next(&mut self, max_rows: usize) -> Result<Option<SourceBatch>> {
        let max_rows = max_rows.clamp(1, MAX_BATCH);
        let mut progress = Instant::now();
        loop {
            // A partition read to its end, or with a full batch, goes first.
            let ready = self
                .pending
                .iter()
                .find(|(p, records)| records.len() >= max_rows || !self.ends.contains_key(p))
                .map(|(p, _)| *p);
            if let Some(p) = ready {
                let records = self.pending.remove(&p).unwrap_or_default();
                if records.is_empty() {
                    continue;
                }
                return self.source.rows(p, &records).map(Some);
            }
            if self.ends.is_empty() {
                return Ok(None);
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(record)) => {
                    progress = Instant::now();
                    let p = record.partition();
                    let Some(&end) = self.ends.get(&p) else {
                        continue;
                    };
                    if record.offset() + 1 >= end {
                        self.ends.remove(&p);
                    }
                    if record.offset() < end {
                        self.pending.entry(p).or_default().push(record.detach());
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    // The partition holds nothing more (records up to its end were removed).
                    self.ends.remove(&p);
                }
                Some(Err(e)) if progress.elapsed() > TIMEOUT => {
                    return Err(SourceError::Unavailable(format!(
                        "cannot read topic {} again: {e}",
                        self.source.topic
                    )));
                }
                Some(Err(_)) => {}
                None if progress.elapsed() > TIMEOUT => {
                    return Err(SourceError::Unavailable(format!(
                        "reading topic {} again made no progress in {} s",
                        self.source.topic,
                        TIMEOUT.as_secs()
                    )));
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    use super::*;
    use crate::source::FormatDef;

    fn def(brokers: &str, topic: &str) -> SourceDef {
        let options = [
            ("connector", "kafka"),
            ("topic", topic),
            ("properties.bootstrap.server", brokers),
            ("scan.partition.discovery.interval.ms", "100"),
        ];
        SourceDef {
            id: 1,
            name: "s".into(),
            columns: Vec::new(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            created_ms: 0,
            watermark: None,
            format: Some(FormatDef {
                format: "plain".into(),
                encode: "json".into(),
                options: BTreeMap::new(),
            }),
            includes: Vec::new(),
        }
    }

    /// Topic `topic` with `partitions` partitions holding `{"id": i}` for `i` below `n`, record
    /// `i` in partition `i % partitions`; and a source of `id BIGINT` over it.
    fn topic_of_ids(
        cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
        topic: &str,
        partitions: i32,
        n: i32,
    ) -> KafkaSource {
        cluster.create_topic(topic, partitions, 1).unwrap();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .unwrap();
        for i in 0..n {
            let payload = format!(r#"{{"id": {i}}}"#);
            let record = BaseRecord::<(), _>::to(topic)
                .partition(i % partitions)
                .payload(&payload);
            producer.send(record).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        KafkaSource::new(schema, &def(&cluster.bootstrap_servers(), topic)).unwrap()
    }

    #[test]
    fn a_partition_the_splits_lack_is_read_from_its_beginning() {
        let cluster = MockCluster::new(1).unwrap();
        let source = topic_of_ids(&cluster, "grow", 3, 9);
        // As if the topic had partitions 0 and 1 when the source was created and partition 2
        // was added later; partition 0 was read up to offset 2.
        let mut splits = Splits::default();
        splits.0.insert(
            0,
            SplitState {
                start: 0,
                next: 2,
                records: 2,
                ..SplitState::default()
            },
        );
        splits.0.insert(1, SplitState::default());
        let mut reader = source.reader(&splits).unwrap();
        let mut read: BTreeMap<i32, (i64, i64, u64)> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while read.values().map(|r| r.2).sum::<u64>() < 7 && Instant::now() < deadline {
            match reader.next(100).unwrap() {
                Some(batch) => {
                    let entry = read.entry(batch.split).or_insert((batch.start, 0, 0));
                    entry.1 = batch.next;
                    entry.2 += batch.records;
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        // Partition 0 from offset 2 (one record left), 1 and 2 from their beginning.
        assert_eq!(read.get(&0), Some(&(0, 3, 1)));
        assert_eq!(read.get(&1), Some(&(0, 3, 3)));
        assert_eq!(read.get(&2), Some(&(0, 3, 3)));
        // The reader knows where each partition ends.
        assert_eq!(reader.ends(), BTreeMap::from([(0, 3), (1, 3), (2, 3)]));
    }

    #[test]
    fn a_reread_ends_at_the_committed_offsets() {
        let cluster = MockCluster::new(1).unwrap();
        let source = topic_of_ids(&cluster, "again", 2, 20);
        let mut until = Splits::default();
        for (p, start, next) in [(0, 1, 6), (1, 0, 10)] {
            until.0.insert(
                p,
                SplitState {
                    start,
                    next,
                    ..SplitState::default()
                },
            );
        }
        let mut reader = source.reread(&until).unwrap();
        let mut ids = Vec::new();
        while let Some(batch) = reader.next(3).unwrap() {
            assert!(batch.rows.num_rows() <= 3);
            let column = batch.rows.column(0);
            let column = column.as_any().downcast_ref::<Int64Array>().unwrap();
            ids.extend(column.iter().flatten());
        }
        ids.sort_unstable();
        // Partition 0 holds the even ids (offset n is id 2n), partition 1 the odd ones.
        let mut want: Vec<i64> = (1..6)
            .map(|n| 2 * n)
            .chain((0..10).map(|n| 2 * n + 1))
            .collect();
        want.sort_unstable();
        assert_eq!(ids, want);
    }

    #[test]
    fn what_augur_commits_is_reported_to_the_consumer_group() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("watched", 1, 1).unwrap();
        let mut def = def(&cluster.bootstrap_servers(), "watched");
        def.options
            .insert("properties.group.id".into(), "monitoring".into());
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let source = KafkaSource::new(schema, &def).unwrap();
        let mut reader = source.reader(&Splits::single()).unwrap();
        let mut splits = Splits::default();
        splits.advance(0, 0, 7, 7, 0);
        reader.committed(&splits);
        let group: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "monitoring")
            .create()
            .unwrap();
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition("watched", 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let offset = group
                .committed_offsets(wanted.clone(), Duration::from_secs(5))
                .ok()
                .and_then(|list| list.elements().first().map(|e| e.offset()));
            if offset == Some(Offset::Offset(7)) {
                break;
            }
            assert!(Instant::now() < deadline, "group offset {offset:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn a_start_by_time_is_the_first_offset_found_or_the_end() {
        // The broker found the first record at or after the time.
        assert_eq!(start_by_time(Some(Offset::Offset(42)), 100), 42);
        // No record that late (Kafka answers -1, librdkafka an end or invalid offset): the end.
        assert_eq!(start_by_time(Some(Offset::Offset(-1)), 100), 100);
        assert_eq!(start_by_time(Some(Offset::End), 100), 100);
        assert_eq!(start_by_time(None, 100), 100);
    }
}
