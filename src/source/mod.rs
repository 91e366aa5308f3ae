//! Sources: streams of rows from outside Augur that views read.
//!
//! A source is addressed by position: row `n` of a source is always the same row, so the
//! dataflow can commit how far it has read with each epoch, replay from there after a crash,
//! and replay from the start to fill a view created after rows arrived. A source is read while
//! at least one view reads it (as in RisingWave, nothing is ingested for nobody). Connectors
//! live one per file (`datagen.rs`). Depends on nothing of Augur but the table column
//! definitions.

pub mod avro;
pub mod datagen;
pub mod encoding;
pub mod envelope;
pub mod file;
pub mod kafka;
pub mod nexmark;
pub mod provider;
pub mod split;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::table::ColumnDef;
use crate::table::watermark::{WatermarkDef, WatermarkRule, WatermarkState};

pub use split::{SplitState, Splits};

/// A source's watermark, compiled. Where it stands is in the source's committed splits
/// ([`Splits::mark`]).
#[derive(Debug)]
pub struct SourceWatermark {
    /// The compiled declaration.
    pub watermark: WatermarkRule,
}

/// How far the views have read a source, as of the last commit, and what its reader is
/// retrying through: what readers of the source and the system views see.
#[derive(Debug, Default)]
pub struct SourceProgress {
    committed: std::sync::Mutex<Splits>,
    last_error: std::sync::Mutex<Option<String>>,
    ends: std::sync::Mutex<BTreeMap<i32, i64>>,
}

impl SourceProgress {
    /// The splits as last committed.
    pub fn committed(&self) -> Splits {
        self.committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records a commit.
    pub fn set_committed(&self, splits: &Splits) {
        *self.committed.lock().unwrap_or_else(|e| e.into_inner()) = splits.clone();
    }

    /// The fault the reader is retrying through, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the reader's fault (`None` once it reads again).
    pub fn set_last_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Each split's end as the reader last saw it (a Kafka partition's high watermark).
    pub fn ends(&self) -> BTreeMap<i32, i64> {
        self.ends.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records the splits' ends.
    pub fn set_ends(&self, ends: BTreeMap<i32, i64>) {
        *self.ends.lock().unwrap_or_else(|e| e.into_inner()) = ends;
    }
}

/// What a source's views saw up to `until`, read again: each split from its start, late rows
/// dropped as `watermark` says (judged split by split, from each split's first row). Batches left
/// with no rows are skipped.
pub struct OnTimeRows {
    reader: Box<dyn SourceReader>,
    watermark: Option<Arc<SourceWatermark>>,
    marks: BTreeMap<i32, WatermarkState>,
    batch: usize,
}

impl OnTimeRows {
    /// Re-reads `source` up to `until`, in batches of up to `batch` rows.
    pub fn new(
        source: &Arc<dyn Source>,
        watermark: Option<Arc<SourceWatermark>>,
        until: &Splits,
        batch: usize,
    ) -> Result<Self> {
        Ok(Self {
            reader: source.reread(until)?,
            watermark,
            marks: BTreeMap::new(),
            batch: batch.max(1),
        })
    }
}

impl Iterator for OnTimeRows {
    type Item = crate::error::Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let read = match self.reader.next(self.batch) {
                Ok(Some(read)) => read,
                Ok(None) => return None,
                Err(e) => return Some(Err(e.into())),
            };
            let rows = match &self.watermark {
                Some(w) => {
                    let state = self.marks.entry(read.split).or_default();
                    match w.watermark.filter(&read.rows, state) {
                        Ok(rows) => rows,
                        Err(e) => return Some(Err(e)),
                    }
                }
                None => read.rows,
            };
            if rows.num_rows() > 0 {
                return Some(Ok(rows));
            }
        }
    }
}

/// A record a reader could not turn into a row, kept for `augur_catalog.rejected_rows`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The split it was read from.
    pub split: i32,
    /// Its offset in the split.
    pub offset: i64,
    /// The record as it came (truncated by the reader).
    pub payload: Vec<u8>,
    /// Why it was rejected.
    pub error: String,
}

impl Rejected {
    /// The stored form, with the time it was rejected (ms since 1970): split, offset, time,
    /// the error's length and text, then the payload.
    pub fn encode(&self, at_ms: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.error.len() + self.payload.len());
        out.extend_from_slice(&self.split.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&at_ms.to_be_bytes());
        out.extend_from_slice(&(self.error.len() as u32).to_be_bytes());
        out.extend_from_slice(self.error.as_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Reads [`Rejected::encode`]'s output: the record and when it was rejected.
    pub fn decode(bytes: &[u8]) -> Option<(Self, i64)> {
        let split = i32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
        let offset = i64::from_be_bytes(bytes.get(4..12)?.try_into().ok()?);
        let at = i64::from_be_bytes(bytes.get(12..20)?.try_into().ok()?);
        let len = u32::from_be_bytes(bytes.get(20..24)?.try_into().ok()?) as usize;
        let error = String::from_utf8_lossy(bytes.get(24..24 + len)?).into_owned();
        let payload = bytes.get(24 + len..)?.to_vec();
        Some((
            Self {
                split,
                offset,
                payload,
                error,
            },
            at,
        ))
    }
}

/// Records read from one split.
#[derive(Debug)]
pub struct SourceBatch {
    /// The split.
    pub split: i32,
    /// Where the split starts, for a split the reader met first (a partition added later).
    pub start: i64,
    /// The rows.
    pub rows: RecordBatch,
    /// The split's next offset after these records.
    pub next: i64,
    /// Records read: the rows and the rejected ones.
    pub records: u64,
    /// Records that gave no row.
    pub rejected: Vec<Rejected>,
    /// For a table fed by changes: the keys deleted and the order of writes and deletes
    /// (`rows` are the rows written).
    pub changes: Option<TableChanges>,
    /// The split's name, for a split that has one (a file).
    pub name: Option<String>,
    /// Whether the split is read to its end and will have no more records (a file).
    pub done: bool,
}

/// What records do to a keyed table besides writing [`SourceBatch::rows`].
#[derive(Debug)]
pub struct TableChanges {
    /// Rows whose keys are deleted (whole rows; only their key columns matter).
    pub deleted: RecordBatch,
    /// Writes and deletes in record order.
    pub ops: Vec<envelope::Op>,
    /// The offset of the record each row to write came from.
    pub row_offsets: Vec<i64>,
    /// The offset of the record each deleted key came from.
    pub deleted_offsets: Vec<i64>,
}

/// Reads a source's records in order, split by split.
pub trait SourceReader: Send {
    /// Up to `max_rows` rows of one split. A reader of what comes next answers `None` when no
    /// record is ready yet; a re-read answers `None` at its end (it waits for records up to
    /// there).
    fn next(&mut self, max_rows: usize) -> Result<Option<SourceBatch>>;

    /// The last fault the reader met and retries through (an unreachable broker), while it
    /// lasts.
    fn last_error(&self) -> Option<String> {
        None
    }

    /// Each split's end as last seen (a partition's high watermark): how far behind the
    /// reading is. Empty when the reader does not know.
    fn ends(&self) -> BTreeMap<i32, i64> {
        BTreeMap::new()
    }

    /// Tells the reader what Augur has committed, for monitoring outside Augur (Kafka: the
    /// consumer group's offsets, when `properties.group.id` is given). Reading never starts
    /// from what this reports.
    fn committed(&mut self, splits: &Splits) {
        let _ = splits;
    }
}

/// Errors of the source layer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An option is unknown, missing or has a bad value (`22023`); the text says which.
    #[error("{0}")]
    Option(String),
    /// A column type or connector Augur does not have (`0A000`).
    #[error("{0} is not supported")]
    NotSupported(String),
    /// An outside system cannot be reached (`08001`).
    #[error("{0}")]
    Unavailable(String),
    /// What the source names does not exist (`42704`): the text names it.
    #[error("{0} does not exist")]
    Missing(String),
    /// A declared column the records do not have (`42703`).
    #[error("{0}")]
    Column(String),
    /// Building rows failed.
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
}

/// The source layer's result type.
pub type Result<T, E = SourceError> = std::result::Result<T, E>;

impl From<SourceError> for crate::Error {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Option(m) => crate::Error::InvalidParameter(m),
            SourceError::NotSupported(what) => crate::Error::NotSupported(what),
            SourceError::Unavailable(m) => crate::Error::coded("08001", m),
            SourceError::Missing(m) => crate::Error::coded("42704", format!("{m} does not exist")),
            SourceError::Column(m) => crate::Error::coded("42703", m),
            SourceError::Arrow(e) => crate::Error::from(e),
        }
    }
}

/// The stored definition of a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceDef {
    /// Unique id, from the tables' and views' counter.
    pub id: u32,
    /// The source's name.
    pub name: String,
    /// Its columns.
    pub columns: Vec<ColumnDef>,
    /// The `WITH (...)` options, keys lower-cased.
    pub options: BTreeMap<String, String>,
    /// When it was created (ms since 1970).
    pub created_ms: i64,
    /// `WATERMARK FOR column AS expr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<WatermarkDef>,
    /// `FORMAT ... ENCODE ...`, for connectors that read encoded records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FormatDef>,
    /// `INCLUDE part AS column`: columns a record adds besides its payload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub includes: Vec<IncludeDef>,
}

/// `FORMAT format ENCODE encode (options)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormatDef {
    /// `PLAIN` (appends), lower-cased.
    pub format: String,
    /// `JSON`, `CSV`, lower-cased.
    pub encode: String,
    /// The encoding's options, keys lower-cased.
    pub options: BTreeMap<String, String>,
}

/// `INCLUDE part AS column`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncludeDef {
    /// What the record adds: `partition`, `offset`, `timestamp`, `key`.
    pub part: String,
    /// The column it goes into.
    pub column: String,
}

/// A source: rows from outside, read split by split.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// The columns of every row.
    fn schema(&self) -> &SchemaRef;

    /// The splits reading starts from, resolved when the source is created (for Kafka,
    /// `scan.startup.mode` turned into offsets) and committed with it.
    fn initial_splits(&self) -> Result<Splits> {
        Ok(Splits::single())
    }

    /// Reads on from each split's next offset (and splits that appear later from their
    /// start), for the views.
    fn reader(&self, from: &Splits) -> Result<Box<dyn SourceReader>>;

    /// Reads again what was read up to `until`: each of its splits from its start to its next
    /// offset (a view created later, a SELECT from the source).
    fn reread(&self, until: &Splits) -> Result<Box<dyn SourceReader>>;

    /// What of the records read up to `until` the source no longer holds (a topic's retention
    /// removed them), said for a user; `None` when a re-read gets them all.
    fn missing(&self, until: &Splits) -> Result<Option<String>> {
        let _ = until;
        Ok(None)
    }

    /// The number of rows of a bounded source.
    fn bound(&self) -> Option<u64>;

    /// Whether reading has reached what the source holds, as far as a FLUSH waits for it:
    /// a bounded source's every row, a file source's every file listed. An unbounded stream
    /// is never waited for.
    fn read_to_end(&self, splits: &Splits) -> bool {
        self.bound().is_none_or(|b| splits.records() >= b)
    }

    /// How many rows per second to read at; `None` reads as fast as possible.
    fn rate(&self) -> Option<f64>;

    /// The source as a webhook source, which applications write to over HTTP.
    fn as_webhook(&self) -> Option<&webhook::WebhookSource> {
        None
    }
}

/// A source whose row `n` is always the same row (generated sources): one split whose offsets
/// are row numbers.
pub trait Positional: Send + Sync + std::fmt::Debug + 'static {
    /// The columns of every row.
    fn schema(&self) -> &SchemaRef;

    /// Up to `max_rows` rows starting at row `from`; fewer (or none) at the end of a bounded
    /// source.
    fn read(&self, from: u64, max_rows: usize) -> Result<RecordBatch>;

    /// The number of rows of a bounded source.
    fn bound(&self) -> Option<u64>;

    /// How many rows per second to read at; `None` reads as fast as possible.
    fn rate(&self) -> Option<f64>;
}

/// A [`Positional`] source as a [`Source`].
#[derive(Debug)]
pub struct ByPosition<P>(pub Arc<P>);

impl<P: Positional> Source for ByPosition<P> {
    fn schema(&self) -> &SchemaRef {
        self.0.schema()
    }

    fn reader(&self, from: &Splits) -> Result<Box<dyn SourceReader>> {
        let next = from.0.get(&0).map_or(0, |s| s.next.max(0) as u64);
        Ok(Box::new(PositionReader {
            source: self.0.clone(),
            next,
            end: None,
        }))
    }

    fn reread(&self, until: &Splits) -> Result<Box<dyn SourceReader>> {
        let end = until.0.get(&0).map_or(0, |s| s.next.max(0) as u64);
        Ok(Box::new(PositionReader {
            source: self.0.clone(),
            next: 0,
            end: Some(end),
        }))
    }

    fn bound(&self) -> Option<u64> {
        self.0.bound()
    }

    fn rate(&self) -> Option<f64> {
        self.0.rate()
    }
}

/// Reads a positional source from row `next`, up to row `end` if given.
struct PositionReader<P> {
    source: Arc<P>,
    next: u64,
    end: Option<u64>,
}

impl<P: Positional> SourceReader for PositionReader<P> {
    fn next(&mut self, max_rows: usize) -> Result<Option<SourceBatch>> {
        let n = match self.end {
            Some(end) => (end.saturating_sub(self.next) as usize).min(max_rows),
            None => max_rows,
        };
        if n == 0 {
            return Ok(None);
        }
        let rows = self.source.read(self.next, n)?;
        if rows.num_rows() == 0 {
            return Ok(None);
        }
        self.next += rows.num_rows() as u64;
        Ok(Some(SourceBatch {
            split: 0,
            start: 0,
            records: rows.num_rows() as u64,
            rows,
            next: self.next as i64,
            rejected: Vec::new(),
            changes: None,
            name: None,
            done: false,
        }))
    }
}

/// The value of option `key`, if given, as a `T`.
fn parse_option<T: std::str::FromStr>(
    options: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<T>> {
    options
        .get(key)
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|_| SourceError::Option(format!("invalid value '{v}' for option {key}")))
        })
        .transpose()
}

/// How many rows a read of up to `max_rows` from position `from` gets, of `bound` rows if the
/// source is bounded.
fn rows_to_read(bound: Option<u64>, from: u64, max_rows: usize) -> usize {
    match bound {
        Some(total) => (total.saturating_sub(from) as usize).min(max_rows),
        None => max_rows,
    }
}

/// `n` rows of `schema` from `columns` of the connector's own types, cast to the declared ones.
fn declared_rows(schema: &SchemaRef, columns: Vec<ArrayRef>, n: usize) -> Result<RecordBatch> {
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column)
            } else {
                datafusion::arrow::compute::cast(&column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(n));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &options,
    )?)
}

/// Runs the future `work` makes to completion on a thread of its own with a runtime of its own,
/// so it may be called from any thread, async or not. For the rare calls to outside systems
/// made while a statement runs (a schema registry, an object store's listing).
pub(crate) fn on_own_runtime<T, F>(
    work: impl FnOnce() -> F + Send,
) -> std::result::Result<T, String>
where
    T: Send,
    F: std::future::Future<Output = T>,
{
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok(runtime.block_on(work()))
            })
            .join()
            .unwrap_or_else(|_| Err("the request failed".into()))
    })
}

/// Bytes of a rejected record's payload kept when `rejected.payload.max.bytes` is not given.
const DEFAULT_PAYLOAD_KEPT: usize = 4096;

/// How many bytes of a rejected record's payload `augur_catalog.rejected_rows` keeps: option
/// `rejected.payload.max.bytes`.
pub fn payload_kept(options: &BTreeMap<String, String>) -> Result<usize> {
    Ok(parse_option(options, "rejected.payload.max.bytes")?.unwrap_or(DEFAULT_PAYLOAD_KEPT))
}

/// Rejected records kept per source when `rejected.retention.rows` is not given.
const DEFAULT_REJECTED_RETENTION: u64 = 10_000;

/// How many rejected records of a source `augur_catalog.rejected_rows` keeps (the newest):
/// option `rejected.retention.rows`.
pub fn rejected_retention(options: &BTreeMap<String, String>) -> Result<u64> {
    Ok(parse_option(options, "rejected.retention.rows")?.unwrap_or(DEFAULT_REJECTED_RETENTION))
}

/// The columns of a source declared without any, for connectors whose rows have a fixed shape.
pub fn implied_columns(
    options: &BTreeMap<String, String>,
) -> Result<Vec<(String, datafusion::arrow::datatypes::DataType)>> {
    match options.get("connector").map(String::as_str) {
        Some("nexmark") => nexmark::columns(options),
        _ => Err(SourceError::Option(
            "a source needs a column list; only 'nexmark' sources imply their columns".into(),
        )),
    }
}

/// Opens the connector `def` names; `store` keeps what a webhook source is sent.
pub fn open(
    def: &SourceDef,
    schema: SchemaRef,
    store: &crate::storage::Store,
) -> Result<Arc<dyn Source>> {
    let connector = def.options.get("connector").map(String::as_str);
    if matches!(connector, Some("datagen" | "nexmark")) {
        if def.format.is_some() {
            return Err(SourceError::Option(format!(
                "a '{}' source generates rows: it takes no FORMAT ... ENCODE",
                connector.unwrap_or_default()
            )));
        }
        if !def.includes.is_empty() {
            return Err(SourceError::Option(format!(
                "INCLUDE is for kafka sources, not '{}'",
                connector.unwrap_or_default()
            )));
        }
    }
    match connector {
        Some("datagen") => Ok(Arc::new(ByPosition(Arc::new(datagen::Datagen::new(
            schema,
            &def.options,
        )?)))),
        Some("nexmark") => Ok(Arc::new(ByPosition(Arc::new(nexmark::Nexmark::new(
            schema,
            &def.options,
        )?)))),
        Some("kafka") => Ok(Arc::new(kafka::KafkaSource::new(schema, def)?)),
        Some("file") => Ok(Arc::new(file::FileSource::new(schema, def)?)),
        Some("webhook") => Ok(Arc::new(webhook::WebhookSource::new(
            schema,
            def,
            store.clone(),
        )?)),
        Some(other) => Err(SourceError::NotSupported(format!("connector '{other}'"))),
        None => Err(SourceError::Option(
            "a source needs WITH (connector = '...'); Augur has 'datagen', 'nexmark', 'kafka', \
             'file' and 'webhook'"
                .into(),
        )),
    }
}
