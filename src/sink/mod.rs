//! Sinks: the changes of a materialized view leaving Augur, epoch by epoch, into a Kafka topic
//! or files (`CREATE SINK name FROM view WITH (connector = ...) FORMAT ... ENCODE ...`).
//!
//! The dataflow never waits on a sink's destination. At each commit the changes a view emitted
//! in that epoch are written into the sink's outbox in RocksDB, in the same atomic write as the
//! view's state; a delivery thread per sink takes the outbox's epochs in order, hands each to
//! the connector, and deletes it once the connector has it. After a crash the epochs still in
//! the outbox are delivered again: nothing committed is lost; a file sink writes the same file
//! again (its names carry the epoch), a Kafka sink may write an epoch's records twice
//! (at-least-once). When a sink falls behind by [`MAX_BACKLOG`] epochs, sources wait.

pub mod encode;
pub mod file;
pub mod kafka;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use serde::{Deserialize, Serialize};

use crate::source::FormatDef;
use crate::storage::{Store, WriteBatch};

/// Epochs a sink may have undelivered before the sources wait for it.
pub const MAX_BACKLOG: u64 = 32;

/// The stored definition of a sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkDef {
    /// Unique id, from the tables' and views' counter.
    pub id: u32,
    /// The sink's name.
    pub name: String,
    /// The materialized view it reads; empty when it has its own query.
    pub from: String,
    /// That view's id, or the sink's own id when the sink has its own query: the id of the
    /// dataflow whose changes it writes.
    pub input: u32,
    /// `CREATE SINK ... AS query`: the query, maintained for the sink alone.
    #[serde(default)]
    pub query: Option<String>,
    /// The tables, sources and views its query reads.
    #[serde(default)]
    pub depends_on: Vec<u32>,
    /// The models its query calls.
    #[serde(default)]
    pub models: Vec<String>,
    /// The `WITH (...)` options, keys lower-cased.
    pub options: BTreeMap<String, String>,
    /// `FORMAT ... ENCODE ...`.
    pub format: FormatDef,
    /// The columns that identify a row (`primary_key`, else the view's key).
    pub key: Vec<String>,
    /// When it was created (ms since 1970).
    pub created_ms: i64,
}

impl SinkDef {
    /// What it writes, for messages: "materialized view v" or "its query".
    pub fn reads(&self) -> String {
        match &self.query {
            Some(_) => "its query".to_string(),
            None => format!("materialized view {}", self.from),
        }
    }

    /// The connector's name.
    pub fn connector(&self) -> &str {
        self.options
            .get("connector")
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// Errors of the sink layer.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An option is unknown, missing or has a bad value (`22023`).
    #[error("{0}")]
    Option(String),
    /// A connector or format Augur does not write (`0A000`).
    #[error("{0} is not supported")]
    NotSupported(String),
    /// An outside system cannot be reached (`08001`).
    #[error("{0}")]
    Unavailable(String),
    /// What the sink names does not exist (`42704`).
    #[error("{0} does not exist")]
    Missing(String),
}

impl From<SinkError> for crate::Error {
    fn from(e: SinkError) -> Self {
        match e {
            SinkError::Option(m) => crate::Error::InvalidParameter(m),
            SinkError::NotSupported(what) => crate::Error::NotSupported(what),
            SinkError::Unavailable(m) => crate::Error::coded("08001", m),
            SinkError::Missing(m) => crate::Error::coded("42704", format!("{m} does not exist")),
        }
    }
}

impl From<crate::source::SourceError> for SinkError {
    fn from(e: crate::source::SourceError) -> Self {
        use crate::source::SourceError as S;
        match e {
            S::Option(m) | S::Column(m) => SinkError::Option(m),
            S::NotSupported(m) => SinkError::NotSupported(m),
            S::Unavailable(m) => SinkError::Unavailable(m),
            S::Missing(m) => SinkError::Missing(m),
            S::Arrow(e) => SinkError::Option(e.to_string()),
        }
    }
}

/// Rows of a view and their weights: `+n` inserted `n` times, `-n` deleted `n` times.
#[derive(Debug, Clone)]
pub struct Changes {
    /// The rows, in the view's columns.
    pub rows: RecordBatch,
    /// One weight per row.
    pub weights: Int64Array,
}

/// One epoch's changes, as a connector gets them.
#[derive(Debug)]
pub struct Epoch {
    /// The epoch's number: what file names and Debezium's source block carry.
    pub number: u64,
    /// When it was committed (ms since 1970).
    pub committed_ms: i64,
    /// Its changes, in order.
    pub changes: Vec<Changes>,
}

/// Writes epochs to a destination.
pub trait SinkWriter: Send {
    /// Writes `epoch`; returns the records (rows, messages) written. Called again with the
    /// same epoch after an error or a crash, so writing it twice must leave what writing it
    /// once leaves (files), or at least lose nothing (Kafka).
    fn write(&mut self, epoch: &Epoch) -> Result<u64, String>;
}

/// What readers see of a sink: records written, the last epoch delivered, the epochs waiting,
/// the last error.
#[derive(Debug, Default)]
pub struct SinkProgress {
    written: AtomicU64,
    last_epoch: AtomicU64,
    backlog: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Set when the outbox has a new epoch.
    wake: (Mutex<bool>, Condvar),
}

impl SinkProgress {
    /// Records written since the server started.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// The last epoch delivered (0: none yet).
    pub fn last_epoch(&self) -> u64 {
        self.last_epoch.load(Ordering::SeqCst)
    }

    /// Epochs committed and not yet delivered.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::SeqCst)
    }

    /// The error delivery is retrying through, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the error delivery is retrying through (`None` once it delivers again).
    pub fn set_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Sets the epochs waiting (after a restart: the outbox's).
    pub fn set_backlog(&self, epochs: u64) {
        self.backlog.store(epochs, Ordering::SeqCst);
    }

    /// Tells the delivery thread that an epoch was added to the outbox.
    pub fn added(&self) {
        self.backlog.fetch_add(1, Ordering::SeqCst);
        let (lock, ready) = &self.wake;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        ready.notify_all();
    }

    /// Waits until an epoch is added, at most `timeout`.
    fn wait(&self, timeout: Duration) {
        let (lock, ready) = &self.wake;
        let mut woken = lock.lock().unwrap_or_else(|e| e.into_inner());
        if !*woken {
            woken = ready
                .wait_timeout(woken, timeout)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        *woken = false;
    }
}

/// The prefix of sink `id`'s outbox: one key per undelivered epoch.
pub fn outbox_prefix(id: u32) -> Vec<u8> {
    let mut key = b"msink_outbox/".to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn outbox_key(id: u32, epoch: u64) -> Vec<u8> {
    let mut key = outbox_prefix(id);
    key.extend_from_slice(&epoch.to_be_bytes());
    key
}

/// Storage key of the last epoch sink `id` delivered.
pub fn delivered_key(id: u32) -> Vec<u8> {
    let mut key = b"msink_delivered/".to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// Name of the weight column of an outbox entry.
const WEIGHT: &str = "__augur_weight";

/// Adds epoch `number`'s `changes` to sink `id`'s outbox in `batch`.
pub fn stage(
    batch: &mut WriteBatch,
    id: u32,
    number: u64,
    committed_ms: i64,
    changes: &[Changes],
) -> Result<(), String> {
    let Some(first) = changes.first() else {
        return Ok(());
    };
    let mut fields: Vec<Field> = first
        .rows
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.push(Field::new(WEIGHT, DataType::Int64, false));
    let schema = Arc::new(Schema::new(fields));
    let mut out = committed_ms.to_be_bytes().to_vec();
    {
        let mut writer = StreamWriter::try_new(&mut out, &schema).map_err(|e| e.to_string())?;
        for change in changes {
            let mut columns: Vec<ArrayRef> = change.rows.columns().to_vec();
            columns.push(Arc::new(change.weights.clone()));
            let rows = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
            writer.write(&rows).map_err(|e| e.to_string())?;
        }
        writer.finish().map_err(|e| e.to_string())?;
    }
    batch.put(outbox_key(id, number), out);
    Ok(())
}

/// Reads an outbox entry back.
fn unstage(number: u64, bytes: &[u8]) -> Result<Epoch, String> {
    let committed_ms = i64::from_be_bytes(
        bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or("a short outbox entry")?,
    );
    let reader = StreamReader::try_new(&bytes[8..], None).map_err(|e| e.to_string())?;
    let mut changes = Vec::new();
    for rows in reader {
        let rows = rows.map_err(|e| e.to_string())?;
        let weight = rows.num_columns() - 1;
        let weights = rows
            .column(weight)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or("an outbox entry without weights")?
            .clone();
        let mut fields = rows.schema().fields().to_vec();
        fields.pop();
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let mut columns = rows.columns().to_vec();
        columns.pop();
        let rows = RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())?;
        changes.push(Changes { rows, weights });
    }
    Ok(Epoch {
        number,
        committed_ms,
        changes,
    })
}

/// Epochs in sink `id`'s outbox.
pub fn backlog(store: &Store, id: u32) -> crate::storage::Result<u64> {
    Ok(store.measure_prefix(&outbox_prefix(id))?.0 as u64)
}

/// A sink's delivery thread; stopped and joined when dropped.
pub struct Delivery {
    stop: Arc<AtomicBool>,
    progress: Arc<SinkProgress>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").finish_non_exhaustive()
    }
}

impl Delivery {
    /// Delivers sink `id`'s outbox through `writer` until dropped.
    pub fn start(
        store: Store,
        id: u32,
        name: &str,
        mut writer: Box<dyn SinkWriter>,
        progress: Arc<SinkProgress>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let progress = progress.clone();
            let name = name.to_string();
            std::thread::Builder::new()
                .name(format!("augur-sink-{id}"))
                .spawn(move || deliver(&store, id, &name, writer.as_mut(), &progress, &stop))?
        };
        Ok(Self {
            stop,
            progress,
            thread: Some(thread),
        })
    }

    /// Stops delivering and waits for the thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.progress.added();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The delivery loop: the oldest epoch in the outbox, written, then removed; an error is shown
/// and the same epoch tried again after a pause that grows to 10 s.
fn deliver(
    store: &Store,
    id: u32,
    name: &str,
    writer: &mut dyn SinkWriter,
    progress: &SinkProgress,
    stop: &AtomicBool,
) {
    let prefix = outbox_prefix(id);
    let mut pause = Duration::from_millis(100);
    while !stop.load(Ordering::SeqCst) {
        let mut next: Option<(Vec<u8>, Vec<u8>)> = None;
        let scanned = store.scan_prefix::<crate::storage::StorageError>(&prefix, |key, value| {
            next = Some((key.to_vec(), value.to_vec()));
            Ok(false)
        });
        if let Err(e) = scanned {
            progress.set_error(Some(format!("reading the outbox: {e}")));
            progress.wait(Duration::from_secs(1));
            continue;
        }
        let Some((key, value)) = next else {
            // The backlog is counted up by the dataflow as it stages epochs and down here as
            // they are delivered: an epoch staged after this scan began is still to come.
            progress.wait(Duration::from_millis(500));
            continue;
        };
        let number = key[prefix.len()..]
            .try_into()
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        let written = unstage(number, &value).and_then(|epoch| writer.write(&epoch));
        match written {
            Ok(records) => {
                let mut batch = WriteBatch::default();
                batch.delete(&key);
                batch.put(delivered_key(id), number.to_be_bytes());
                if let Err(e) = store.write(batch) {
                    progress.set_error(Some(format!("recording the delivery: {e}")));
                    continue;
                }
                progress.written.fetch_add(records, Ordering::SeqCst);
                progress.last_epoch.store(number, Ordering::SeqCst);
                let _ = progress
                    .backlog
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                        Some(b.saturating_sub(1))
                    });
                progress.set_error(None);
                pause = Duration::from_millis(100);
            }
            Err(e) => {
                tracing::warn!(sink = name, epoch = number, "delivering failed: {e}");
                progress.set_error(Some(e));
                let until = std::time::Instant::now() + pause;
                while std::time::Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// The view's columns of `rows` (by name, in `schema`'s order): what a sink writes.
pub fn visible(rows: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, String> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            rows.schema()
                .index_of(f.name())
                .map(|i| rows.column(i).clone())
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options =
        datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(|e| e.to_string())
}

/// Opens the connector `def` names, writing rows of `schema` (the view's columns); checks what
/// can be checked before the first epoch (options, formats, the destination).
pub fn open(
    def: &SinkDef,
    schema: SchemaRef,
    check: bool,
) -> Result<Box<dyn SinkWriter>, SinkError> {
    match def.connector() {
        "kafka" => Ok(Box::new(kafka::KafkaSink::new(def, schema, check)?)),
        "file" => Ok(Box::new(file::FileSink::new(def, schema, check)?)),
        "" => Err(SinkError::Option(
            "a sink needs WITH (connector = 'kafka' | 'file')".into(),
        )),
        other => Err(SinkError::NotSupported(format!("sink connector '{other}'"))),
    }
}

/// The position of every `key` column in `schema`.
pub fn key_positions(schema: &SchemaRef, key: &[String]) -> Result<Vec<usize>, SinkError> {
    key.iter()
        .map(|k| {
            schema
                .index_of(k)
                .map_err(|_| SinkError::Option(format!("primary_key column {k} is not a column")))
        })
        .collect()
}

/// Options every sink takes.
pub const COMMON_OPTIONS: &[&str] = &["connector", "primary_key", "force_append_only", "snapshot"];

/// Whether option `key` is `'true'` or `'false'`; `default` when not given.
pub fn flag(
    options: &BTreeMap<String, String>,
    key: &str,
    default: bool,
) -> Result<bool, SinkError> {
    match options.get(key).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(v) => Err(SinkError::Option(format!(
            "invalid value '{v}' for option {key}: 'true' or 'false'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outbox_entry_reads_back() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
        ]));
        let rows = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(datafusion::arrow::array::StringArray::from(vec![
                    Some("a"),
                    None,
                ])),
            ],
        )
        .unwrap();
        let changes = vec![Changes {
            rows,
            weights: Int64Array::from(vec![1, -2]),
        }];
        let mut batch = WriteBatch::default();
        stage(&mut batch, 3, 9, 1234, &changes).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        store.write(batch).unwrap();
        let value = store.get(&outbox_key(3, 9)).unwrap().unwrap();
        let epoch = unstage(9, &value).unwrap();
        assert_eq!((epoch.number, epoch.committed_ms), (9, 1234));
        assert_eq!(epoch.changes.len(), 1);
        assert_eq!(epoch.changes[0].rows.num_rows(), 2);
        assert_eq!(epoch.changes[0].weights, Int64Array::from(vec![1, -2]));
        assert_eq!(backlog(&store, 3).unwrap(), 1);
    }
}
