//! `augur_catalog`: Augur's own system views, readable from any client.
//!
//! - `views`: every materialized view with its query, key, row count, the epoch its rows are
//!   from (the last committed one, the same for every view) and when that epoch was committed,
//!   how many rows got NULL because an expression failed on them (since the server started), and
//!   what it could not fill itself with when it was created (records a topic no longer held).
//! - `source_stats`: per source and per table, the rows ingested so far, and the rows dropped as
//!   late or rejected as malformed, the fault a source's reader is retrying through, and how
//!   many records it is behind (Kafka: offsets behind the partitions' high watermarks).
//! - `source_splits`: per source and split (a Kafka partition, a file), where reading started,
//!   the next offset, the records read, how far behind the split's end (its lag), and whether a
//!   file is read to its end.
//! - `rejected_rows`: the records sources could not turn into rows (malformed, or not fitting
//!   their columns): where each was read (split and offset; for a file, its name and the line
//!   or row number from 0), its payload (truncated; binary payloads such as Avro
//!   as `\x` and hex digits, as PostgreSQL shows `bytea`), the error and when.
//! - `sinks`: per sink, the view it reads, its connector and format, the records written since
//!   the server started, the last epoch delivered, the epochs waiting and the error delivery is
//!   retrying through.
//! - `view_state`: per materialized view, the entries and bytes of operator state it holds
//!   (read from RocksDB when queried): what windows, watermarks and NOW() keep bounded.
//! - `state_cache`: the memory the views' operator state may keep cached (`--state-cache-mb`),
//!   what it holds now, and since the server started how many keys were read back from RocksDB
//!   and how many records were evicted.
//! - `models`: every model with its version, kind, inputs and outputs, file size and SHA-256,
//!   and how many rows it scored, in how many runs, how many failed and the last failure (since
//!   the server started).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::error::Result as DfResult;

use super::Catalog;
use crate::model::Models;

/// Name of the schema.
pub const SYSTEM_SCHEMA: &str = "augur_catalog";

/// The last committed epoch: its number and its commit time (ms since 1970).
pub type EpochProbe = Arc<dyn Fn() -> (u64, i64) + Send + Sync>;

/// The `augur_catalog` schema.
pub struct SystemSchema {
    catalog: Arc<Catalog>,
    models: Arc<Models>,
    epoch: EpochProbe,
}

impl std::fmt::Debug for SystemSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemSchema").finish()
    }
}

const TABLES: &[&str] = &[
    "views",
    "source_stats",
    "models",
    "view_state",
    "rejected_rows",
    "source_splits",
    "sinks",
    "state_cache",
];

impl SystemSchema {
    /// System views over `catalog`; `epoch` tells the last committed epoch.
    pub fn new(catalog: Arc<Catalog>, models: Arc<Models>, epoch: EpochProbe) -> Self {
        Self {
            catalog,
            models,
            epoch,
        }
    }

    fn models(&self) -> DfResult<RecordBatch> {
        let models = self.models.all();
        let text = |f: &dyn Fn(&crate::model::Model) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from_iter(models.iter().map(|m| f(m))))
        };
        let count = |f: &dyn Fn(&crate::model::Stats) -> u64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(
                models.iter().map(|m| f(&m.stats) as i64),
            ))
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("version", DataType::Int64, false),
            Field::new("kind", DataType::Utf8, true),
            Field::new("inputs", DataType::Utf8, true),
            Field::new("outputs", DataType::Utf8, true),
            Field::new("size_bytes", DataType::Int64, false),
            Field::new("sha256", DataType::Utf8, false),
            Field::new("path", DataType::Utf8, false),
            Field::new(
                "created_at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
                false,
            ),
            Field::new("rows_scored", DataType::Int64, false),
            Field::new("runs", DataType::Int64, false),
            Field::new("errors", DataType::Int64, false),
            Field::new("last_error", DataType::Utf8, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            text(&|m| Some(m.def.name.clone())),
            Arc::new(Int64Array::from_iter_values(
                models.iter().map(|m| i64::from(m.def.version)),
            )),
            text(&|m| match &m.loaded {
                Ok(loaded) => Some(match &loaded.signature.task {
                    Ok(task) => task.describe(),
                    Err(_) => "unusable".into(),
                }),
                Err(_) => Some("not loaded".into()),
            }),
            text(&|m| {
                m.loaded
                    .as_ref()
                    .ok()
                    .map(|l| l.signature.input_text.join(", "))
            }),
            text(&|m| {
                m.loaded
                    .as_ref()
                    .ok()
                    .map(|l| l.signature.output_text.join(", "))
            }),
            Arc::new(Int64Array::from_iter_values(
                models.iter().map(|m| m.def.size as i64),
            )),
            text(&|m| Some(m.def.sha256.clone())),
            text(&|m| Some(m.def.path.clone())),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(
                    models.iter().map(|m| m.def.created_ms),
                )
                .with_timezone("+00:00"),
            ),
            count(&|s| s.rows.load(Ordering::Relaxed)),
            count(&|s| s.runs.load(Ordering::Relaxed)),
            count(&|s| s.errors.load(Ordering::Relaxed)),
            text(&|m| {
                m.stats
                    .last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            }),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    fn views(&self) -> DfResult<RecordBatch> {
        let views: Vec<_> = self
            .catalog
            .views()
            .into_iter()
            .filter(|v| v.def().materialized)
            .collect();
        let (epoch, at) = (self.epoch)();
        let n = views.len();
        let key = |v: &crate::catalog::view::View| {
            v.def().key.as_ref().map(|key| {
                key.iter()
                    .map(|&i| v.def().columns[i].name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("definition", DataType::Utf8, false),
            Field::new("key", DataType::Utf8, true),
            Field::new("rows", DataType::Int64, false),
            Field::new("epoch", DataType::Int64, false),
            Field::new(
                "committed_at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
                true,
            ),
            Field::new("errors", DataType::Int64, false),
            Field::new("last_error", DataType::Utf8, true),
            Field::new("backfill_note", DataType::Utf8, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                views.iter().map(|v| v.name()),
            )),
            Arc::new(StringArray::from_iter_values(
                views.iter().map(|v| v.def().query.clone()),
            )),
            Arc::new(StringArray::from_iter(views.iter().map(|v| key(v)))),
            Arc::new(Int64Array::from_iter_values(
                views.iter().map(|v| v.rows().load(Ordering::SeqCst)),
            )),
            Arc::new(Int64Array::from(vec![epoch as i64; n])),
            Arc::new(
                TimestampMillisecondArray::from(vec![(at > 0).then_some(at); n])
                    .with_timezone("+00:00"),
            ),
            Arc::new(Int64Array::from_iter_values(
                views
                    .iter()
                    .map(|v| v.errors().rows.load(Ordering::Relaxed) as i64),
            )),
            Arc::new(StringArray::from_iter(views.iter().map(|v| {
                v.errors()
                    .last
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            }))),
            Arc::new(StringArray::from_iter(
                views.iter().map(|v| v.def().backfill_note.clone()),
            )),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// Per materialized view, the operator state it holds as of now: entries and bytes (keys
    /// and values), counted by reading it.
    fn view_state(&self) -> DfResult<RecordBatch> {
        let mut names = Vec::new();
        let mut entries = Vec::new();
        let mut bytes = Vec::new();
        for view in self.catalog.views() {
            if !view.def().materialized {
                continue;
            }
            let (n, size) = self
                .catalog
                .store()
                .measure_prefix(&crate::stream::state::StateScope::view_prefix(
                    view.def().id,
                ))
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            names.push(view.name().to_string());
            entries.push(n as i64);
            bytes.push(size as i64);
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("view_name", DataType::Utf8, false),
            Field::new("state_entries", DataType::Int64, false),
            Field::new("state_bytes", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(names)),
            Arc::new(Int64Array::from(entries)),
            Arc::new(Int64Array::from(bytes)),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    fn state_cache(&self) -> DfResult<RecordBatch> {
        let cache = self.catalog.state_cache();
        let schema = Arc::new(Schema::new(vec![
            Field::new("limit_bytes", DataType::Int64, false),
            Field::new("cached_bytes", DataType::Int64, false),
            Field::new("reads", DataType::Int64, false),
            Field::new("evicted", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![cache.limit() as i64])),
            Arc::new(Int64Array::from(vec![cache.used() as i64])),
            Arc::new(Int64Array::from(vec![cache.reads() as i64])),
            Arc::new(Int64Array::from(vec![cache.evicted() as i64])),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    fn source_stats(&self) -> DfResult<RecordBatch> {
        let mut names = Vec::new();
        let mut kinds = Vec::new();
        let mut ingested = Vec::new();
        let mut late = Vec::new();
        let mut rejected = Vec::new();
        let mut watermarks = Vec::new();
        let mut errors = Vec::new();
        let mut lags = Vec::new();
        for source in self.catalog.sources() {
            names.push(source.def.name.clone());
            kinds.push("source");
            let splits = source.scan.progress.committed();
            let read = splits.records() as i64;
            let dropped = splits.mark();
            // Rows that reached the views: those read, less those dropped.
            ingested.push(read - dropped.late as i64 - dropped.rejected as i64);
            late.push(dropped.late as i64);
            rejected.push(dropped.rejected as i64);
            watermarks.push(source.scan.watermark.as_ref().and(dropped.current));
            errors.push(source.scan.progress.last_error());
            let ends = source.scan.progress.ends();
            lags.push((!ends.is_empty()).then(|| {
                splits
                    .0
                    .iter()
                    .map(|(split, state)| {
                        ends.get(split).map_or(0, |end| (end - state.next).max(0))
                    })
                    .sum::<i64>()
            }));
        }
        for name in self.catalog.table_names() {
            if let Some(table) = self.catalog.table(&name) {
                names.push(name);
                kinds.push("table");
                ingested.push(table.ingested());
                let dropped = table.watermark_state();
                late.push(dropped.late as i64);
                watermarks.push(dropped.current);
                let feed = self.catalog.feed(table.def().id);
                errors.push(feed.as_ref().and_then(|f| f.last_error()));
                lags.push(feed.as_ref().and_then(|f| lag(f)));
                // Late rows of a table are counted by its watermark; records its connector
                // could not read, by the connector.
                rejected.push(
                    dropped.rejected as i64
                        + feed.map_or(0, |f| f.committed().mark().rejected as i64),
                );
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("source_name", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("rows_ingested", DataType::Int64, false),
            Field::new("rows_late", DataType::Int64, false),
            Field::new("rows_rejected", DataType::Int64, false),
            Field::new(
                "watermark",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
            Field::new("last_error", DataType::Utf8, true),
            Field::new("lag", DataType::Int64, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(kinds)),
            Arc::new(Int64Array::from(ingested)),
            Arc::new(Int64Array::from(late)),
            Arc::new(Int64Array::from(rejected)),
            Arc::new(TimestampMicrosecondArray::from(watermarks)),
            Arc::new(StringArray::from(errors)),
            Arc::new(Int64Array::from(lags)),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// Every source, and every table fed by a connector: name, id, and how far it has read.
    fn fed(&self) -> Vec<(String, u32, Arc<crate::source::SourceProgress>)> {
        let mut fed: Vec<_> = self
            .catalog
            .sources()
            .into_iter()
            .map(|s| (s.def.name.clone(), s.def.id, s.scan.progress.clone()))
            .collect();
        for name in self.catalog.table_names() {
            if let Some(table) = self.catalog.table(&name)
                && let Some(feed) = self.catalog.feed(table.def().id)
            {
                fed.push((name, table.def().id, feed));
            }
        }
        fed
    }

    /// Per source and split (a Kafka partition): where reading started, the next offset, the
    /// records read, and the split's end and lag where the reader knows them.
    fn source_splits(&self) -> DfResult<RecordBatch> {
        let mut names = Vec::new();
        let mut ids = Vec::new();
        let mut files = Vec::new();
        let mut done = Vec::new();
        let mut starts = Vec::new();
        let mut nexts = Vec::new();
        let mut records = Vec::new();
        let mut ends = Vec::new();
        let mut lags = Vec::new();
        for (name, _, progress) in self.fed() {
            let known = progress.ends();
            let committed = progress.committed();
            for (split, state) in committed.0 {
                names.push(name.clone());
                ids.push(split);
                files.push(committed.1.get(&split).cloned());
                done.push(state.done);
                starts.push(state.start);
                nexts.push(state.next);
                records.push(state.records as i64);
                let end = known.get(&split).copied();
                ends.push(end);
                lags.push(end.map(|end| (end - state.next).max(0)));
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("source_name", DataType::Utf8, false),
            Field::new("split", DataType::Int32, false),
            Field::new("file", DataType::Utf8, true),
            Field::new("start_offset", DataType::Int64, false),
            Field::new("next_offset", DataType::Int64, false),
            Field::new("records", DataType::Int64, false),
            Field::new("end_offset", DataType::Int64, true),
            Field::new("lag", DataType::Int64, true),
            Field::new("done", DataType::Boolean, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(names)),
            Arc::new(Int32Array::from(ids)),
            Arc::new(StringArray::from(files)),
            Arc::new(Int64Array::from(starts)),
            Arc::new(Int64Array::from(nexts)),
            Arc::new(Int64Array::from(records)),
            Arc::new(Int64Array::from(ends)),
            Arc::new(Int64Array::from(lags)),
            Arc::new(BooleanArray::from(done)),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// The records sources rejected, oldest first, as many per source as its retention keeps.
    fn rejected_rows(&self) -> DfResult<RecordBatch> {
        let mut names = Vec::new();
        let mut splits = Vec::new();
        let mut files = Vec::new();
        let mut offsets = Vec::new();
        let mut payloads = Vec::new();
        let mut errors = Vec::new();
        let mut times = Vec::new();
        for (name, id, progress) in self.fed() {
            let split_names = progress.committed().1;
            let prefix = crate::stream::runtime::rejected_prefix(id);
            self.catalog
                .store()
                .scan_prefix::<crate::storage::StorageError>(&prefix, |_, value| {
                    if let Some((rejected, at)) = crate::source::Rejected::decode(value) {
                        names.push(name.clone());
                        splits.push(rejected.split);
                        files.push(split_names.get(&rejected.split).cloned());
                        offsets.push(rejected.offset);
                        payloads.push(payload_text(&rejected.payload));
                        errors.push(rejected.error);
                        times.push(at);
                    }
                    Ok(true)
                })
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("source_name", DataType::Utf8, false),
            Field::new("split", DataType::Int32, false),
            Field::new("file", DataType::Utf8, true),
            Field::new("offset", DataType::Int64, false),
            Field::new("payload", DataType::Utf8, false),
            Field::new("error", DataType::Utf8, false),
            Field::new(
                "rejected_at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
                false,
            ),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(names)),
            Arc::new(Int32Array::from(splits)),
            Arc::new(StringArray::from(files)),
            Arc::new(Int64Array::from(offsets)),
            Arc::new(StringArray::from(payloads)),
            Arc::new(StringArray::from(errors)),
            Arc::new(TimestampMillisecondArray::from(times).with_timezone("+00:00")),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

impl SystemSchema {
    /// Every sink: what it reads, where it writes, and how its delivery goes.
    fn sinks(&self) -> DfResult<RecordBatch> {
        let sinks = self.catalog.sinks();
        let schema = Arc::new(Schema::new(vec![
            Field::new("sink_name", DataType::Utf8, false),
            Field::new("from_view", DataType::Utf8, true),
            Field::new("connector", DataType::Utf8, false),
            Field::new("format", DataType::Utf8, false),
            Field::new("rows_written", DataType::Int64, false),
            Field::new("last_epoch", DataType::Int64, true),
            Field::new("backlog", DataType::Int64, false),
            Field::new("last_error", DataType::Utf8, true),
            Field::new("query", DataType::Utf8, true),
            Field::new("query_errors", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                sinks.iter().map(|s| s.def.name.clone()),
            )),
            Arc::new(StringArray::from_iter(
                sinks
                    .iter()
                    .map(|s| s.def.query.is_none().then(|| s.def.from.clone())),
            )),
            Arc::new(StringArray::from_iter_values(
                sinks.iter().map(|s| s.def.connector().to_string()),
            )),
            Arc::new(StringArray::from_iter_values(sinks.iter().map(|s| {
                format!(
                    "{} {}",
                    s.def.format.format.to_uppercase(),
                    s.def.format.encode.to_uppercase()
                )
            }))),
            Arc::new(Int64Array::from_iter_values(
                sinks.iter().map(|s| s.progress.written() as i64),
            )),
            Arc::new(Int64Array::from_iter(sinks.iter().map(|s| {
                let epoch = s.progress.last_epoch();
                (epoch > 0).then_some(epoch as i64)
            }))),
            Arc::new(Int64Array::from_iter_values(
                sinks.iter().map(|s| s.progress.backlog() as i64),
            )),
            Arc::new(StringArray::from_iter(
                sinks.iter().map(|s| s.progress.last_error()),
            )),
            Arc::new(StringArray::from_iter(
                sinks.iter().map(|s| s.def.query.clone()),
            )),
            Arc::new(Int64Array::from_iter_values(
                sinks
                    .iter()
                    .map(|s| s.errors.rows.load(Ordering::Relaxed) as i64),
            )),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

/// Records behind the splits' ends, where the reader knows them.
fn lag(progress: &crate::source::SourceProgress) -> Option<i64> {
    let ends = progress.ends();
    if ends.is_empty() {
        return None;
    }
    Some(
        progress
            .committed()
            .0
            .iter()
            .map(|(split, state)| ends.get(split).map_or(0, |end| (end - state.next).max(0)))
            .sum(),
    )
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let batch = match name {
            "views" => self.views()?,
            "source_stats" => self.source_stats()?,
            "models" => self.models()?,
            "view_state" => self.view_state()?,
            "rejected_rows" => self.rejected_rows()?,
            "source_splits" => self.source_splits()?,
            "sinks" => self.sinks()?,
            "state_cache" => self.state_cache()?,
            _ => return Ok(None),
        };
        Ok(Some(Arc::new(MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}

/// A rejected record's payload as text: itself when it is text, else `\x` and its bytes in hex.
fn payload_text(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) =>
        {
            text.to_string()
        }
        _ => {
            let mut hex = String::with_capacity(2 + payload.len() * 2);
            hex.push_str("\\x");
            for byte in payload {
                let _ = write!(hex, "{byte:02x}");
            }
            hex
        }
    }
}
