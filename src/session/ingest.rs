//! Tables fed by a connector: `CREATE TABLE t (...) WITH (connector = 'kafka', ...) FORMAT
//! PLAIN | UPSERT | DEBEZIUM ENCODE ...`.
//!
//! The table keeps what its topic brought, as RisingWave's tables with connectors do: a view
//! created later fills from the table, not from the topic, so rows the topic has since dropped
//! are still there. One thread per table reads the topic and writes each batch of records as a
//! statement would — types and NOT NULL checked, the old and new versions logged for the views,
//! under the server's write lock — with the topic's offsets and the rejected records in the
//! same atomic write. After `kill -9` reading resumes at the offsets of the last write: nothing
//! lost, nothing applied twice. Within a batch the last record of a key decides the key's row.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, take_record_batch};

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::source::envelope::Op;
use crate::source::kafka::KafkaSource;
use crate::source::{
    FormatDef, Rejected, Source, SourceBatch, SourceDef, SourceProgress, SourceReader, Splits,
};
use crate::storage::{Store, WriteBatch};
use crate::table::changelog::ChangeLog;
use crate::table::writer::{OnConflict, TableChanges};
use crate::table::{ConnectorDef, Table};

/// Records read per write at most.
const BATCH: usize = 8192;

/// What a feeding thread needs of the server.
#[derive(Clone)]
pub struct Feeder {
    /// The store tables live in.
    pub store: Store,
    /// The catalog, to see the table still exists and whether views read it.
    pub catalog: Arc<Catalog>,
    /// The server's write lock: a batch is written as a statement is.
    pub write_lock: Arc<tokio::sync::Mutex<()>>,
    /// Where writes to tables that views read are logged.
    pub changelog: Arc<ChangeLog>,
}

/// The connector `def` describes, reading into changes of `table`.
pub fn open(table: &Table, def: &ConnectorDef) -> Result<KafkaSource> {
    match def.options.get("connector").map(String::as_str) {
        Some("kafka") => {}
        Some(other) => {
            return Err(Error::NotSupported(format!(
                "connector '{other}' on a table (tables read 'kafka')"
            )));
        }
        None => {
            return Err(Error::InvalidParameter(
                "WITH needs connector = '...'".into(),
            ));
        }
    }
    let visible = table.visible_schema().clone();
    let source = SourceDef {
        id: table.def().id,
        name: table.name().to_string(),
        columns: Vec::new(),
        options: def.options.clone(),
        created_ms: 0,
        watermark: None,
        format: Some(FormatDef {
            format: def.format.clone(),
            encode: def.encode.clone(),
            options: def.encode_options.clone(),
        }),
        includes: Vec::new(),
    };
    let key = if table.def().has_row_id() {
        Vec::new()
    } else {
        table
            .def()
            .primary_key
            .iter()
            .map(|&i| table.def().columns[i].name.clone())
            .collect()
    };
    Ok(KafkaSource::for_table(visible, &source, key)?)
}

/// Starts feeding `table` from `source`, from `splits` (`None`: the table's start was never
/// stored — the server stopped right after CREATE — and is found as CREATE finds it);
/// `progress` shows how far it has read.
pub fn start(
    feeder: Feeder,
    table: Arc<Table>,
    source: KafkaSource,
    splits: Option<Splits>,
    progress: Arc<SourceProgress>,
) -> Result<()> {
    let retention = crate::source::rejected_retention(
        &table
            .def()
            .connector
            .as_ref()
            .map(|c| c.options.clone())
            .unwrap_or_default(),
    )?;
    let unknown = splits.is_none();
    let splits = splits.unwrap_or_default();
    progress.set_committed(&splits);
    feeder.catalog.set_feed(table.def().id, progress.clone());
    let feed = Feed {
        feeder,
        table,
        source,
        splits,
        unknown,
        progress,
        retention,
    };
    std::thread::Builder::new()
        .name(format!("augur-feed-{}", feed.table.name()))
        .spawn(move || feed.run())
        .map_err(|e| Error::Internal(format!("cannot start feeding a table: {e}")))?;
    Ok(())
}

struct Feed {
    feeder: Feeder,
    table: Arc<Table>,
    source: KafkaSource,
    splits: Splits,
    /// The start is still to be found.
    unknown: bool,
    progress: Arc<SourceProgress>,
    retention: u64,
}

impl Feed {
    /// Whether the table is still the one being fed (not dropped or replaced).
    fn current(&self) -> bool {
        self.table.check_current().is_ok()
            && self
                .feeder
                .catalog
                .relation_by_id(self.table.def().id)
                .is_some_and(|t| Arc::ptr_eq(&t, &self.table))
    }

    fn run(mut self) {
        let mut reader: Option<Box<dyn SourceReader>> = None;
        while self.current() {
            if self.unknown {
                match self.source.initial_splits() {
                    Ok(splits) => {
                        self.splits = splits;
                        self.unknown = false;
                        self.progress.set_committed(&self.splits);
                    }
                    Err(e) => {
                        self.progress.set_last_error(Some(e.to_string()));
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                }
            }
            if reader.is_none() {
                match self.source.reader(&self.splits) {
                    Ok(r) => reader = Some(r),
                    Err(e) => {
                        self.progress.set_last_error(Some(e.to_string()));
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                }
            }
            let Some(r) = reader.as_mut() else { continue };
            let next = r.next(BATCH);
            self.progress.set_last_error(r.last_error());
            self.progress.set_ends(r.ends());
            match next {
                Ok(Some(batch)) => match self.write(batch) {
                    Ok(()) => r.committed(&self.splits),
                    Err(e) => {
                        if !self.current() {
                            return;
                        }
                        // The batch was not written: read again from the last write.
                        tracing::error!(table = self.table.name(), "cannot write a batch: {e}");
                        self.progress.set_last_error(Some(e.to_string()));
                        reader = None;
                        std::thread::sleep(Duration::from_secs(1));
                    }
                },
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => {
                    self.progress.set_last_error(Some(e.to_string()));
                    reader = None;
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Writes one batch of records and the position after it, atomically.
    fn write(&mut self, mut batch: SourceBatch) -> Result<()> {
        let table = self.table.clone();
        let mut rejected = std::mem::take(&mut batch.rejected);
        let offsets = match &batch.changes {
            Some(changes) => changes.row_offsets.clone(),
            None => vec![batch.next - 1; batch.rows.num_rows()],
        };
        // Rows that do not fit the table (a NULL where it allows none) are rejected alone.
        let (rows, fitting) = conform_each(&table, &batch.rows, |n, error| {
            rejected.push(Rejected {
                split: batch.split,
                offset: offsets.get(n).copied().unwrap_or(batch.next - 1),
                payload: Vec::new(),
                error,
            });
        })?;
        let mut ops = match &batch.changes {
            Some(changes) => changes.ops.clone(),
            None => (0..batch.rows.num_rows()).map(Op::Write).collect(),
        };
        // A record whose new row was rejected changes nothing: not even the delete of its old
        // row (a Debezium update).
        if let Some(changes) = &batch.changes {
            let refused: std::collections::HashSet<i64> = fitting
                .iter()
                .zip(&offsets)
                .filter(|(at, _)| at.is_none())
                .map(|(_, offset)| *offset)
                .collect();
            if !refused.is_empty() {
                ops.retain(|op| match *op {
                    Op::Delete(i) => changes
                        .deleted_offsets
                        .get(i)
                        .is_none_or(|offset| !refused.contains(offset)),
                    Op::Write(_) => true,
                });
            }
        }
        let deleted = batch.changes.as_ref().map(|c| &c.deleted);

        let _guard = self.feeder.write_lock.blocking_lock();
        table.check_current()?;
        let mut changes = TableChanges::new(&self.feeder.store, &table);
        if table.def().has_row_id() {
            // No key: every record appends.
            changes.insert(&rows, OnConflict::Fail)?;
        } else {
            self.apply_keyed(&mut changes, &rows, &fitting, deleted, &ops)?;
        }
        // The position moves only with a write that succeeded: a failed one is read again.
        let mut splits = self.splits.clone();
        splits.apply(&batch, rejected.len() as u64);
        let mut extra = WriteBatch::default();
        extra.put(Table::feed_key(table.def().id), splits.encode());
        crate::stream::runtime::write_rejected(
            &mut extra,
            table.def().id,
            splits.mark().rejected,
            rejected,
            self.retention,
        );
        let logged = self.feeder.catalog.is_logged(table.def().id);
        changes.commit_with(logged.then_some(self.feeder.changelog.as_ref()), extra)?;
        self.splits = splits;
        self.progress.set_committed(&self.splits);
        Ok(())
    }

    /// Applies writes and deletes by key: the last operation on a key decides its row.
    fn apply_keyed(
        &self,
        changes: &mut TableChanges<'_>,
        rows: &RecordBatch,
        fitting: &[Option<usize>],
        deleted: Option<&RecordBatch>,
        ops: &[Op],
    ) -> Result<()> {
        let table = &self.table;
        let write_keys = changes.row_keys(rows)?;
        let delete_keys = match deleted {
            Some(deleted) if deleted.num_rows() > 0 => key_of_rows(table, deleted)?,
            _ => Vec::new(),
        };
        // The last operation on each key, in the order keys were first met.
        let mut last: HashMap<&[u8], (usize, Option<usize>)> = HashMap::new();
        let mut order: Vec<&[u8]> = Vec::new();
        for (n, op) in ops.iter().enumerate() {
            let (key, write) = match *op {
                Op::Write(i) => match fitting.get(i).copied().flatten() {
                    Some(row) => (write_keys[row].as_slice(), Some(row)),
                    None => continue,
                },
                Op::Delete(i) => match delete_keys.get(i).and_then(Option::as_ref) {
                    Some(key) => (key.as_slice(), None),
                    None => continue,
                },
            };
            if last.insert(key, (n, write)).is_none() {
                order.push(key);
            }
        }
        // Every key touched loses its old row; the keys whose last operation writes get the
        // new one.
        let keys: Vec<Vec<u8>> = order.iter().map(|key| key.to_vec()).collect();
        let old: Vec<Vec<u8>> = changes.values(&keys)?.into_iter().flatten().collect();
        if !old.is_empty() {
            let old_rows = table.decode_stored(&old)?;
            changes.delete(&old_rows)?;
        }
        let mut written: Vec<u32> = order
            .iter()
            .filter_map(|key| last[key].1.map(|row| row as u32))
            .collect();
        written.sort_unstable();
        if !written.is_empty() {
            let new_rows = take_record_batch(rows, &UInt32Array::from(written))?;
            changes.insert(&new_rows, OnConflict::Fail)?;
        }
        Ok(())
    }
}

/// The storage key of each of `rows`' primary key, `None` where a key column is NULL or does
/// not fit its type.
fn key_of_rows(table: &Table, rows: &RecordBatch) -> Result<Vec<Option<Vec<u8>>>> {
    let schema = table.full_schema();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for &i in &table.def().primary_key {
        let target = schema.field(i).data_type();
        let column = rows.column(i);
        columns.push(if column.data_type() == target {
            column.clone()
        } else {
            cast(column, target)?
        });
    }
    let keys = table.codec().encode_keys(&columns)?;
    Ok((0..rows.num_rows())
        .map(|n| {
            columns
                .iter()
                .all(|c| c.is_valid(n))
                .then(|| table.row_key(keys.row(n).as_ref()))
        })
        .collect())
}

/// `rows` (the table's visible columns) as whole stored rows, and where each row went (`None`:
/// it did not fit, and `reject` was told why).
fn conform_each(
    table: &Table,
    rows: &RecordBatch,
    mut reject: impl FnMut(usize, String),
) -> Result<(RecordBatch, Vec<Option<usize>>)> {
    if let Ok(whole) = table.conform(rows.columns().to_vec(), None) {
        return Ok((whole, (0..rows.num_rows()).map(Some).collect()));
    }
    let mut parts = Vec::new();
    let mut at = Vec::with_capacity(rows.num_rows());
    let mut kept = 0;
    for n in 0..rows.num_rows() {
        let one = rows.slice(n, 1);
        match table.conform(one.columns().to_vec(), None) {
            Ok(row) => {
                parts.push(row);
                at.push(Some(kept));
                kept += 1;
            }
            Err(e) => {
                reject(n, e.to_string());
                at.push(None);
            }
        }
    }
    let whole = datafusion::arrow::compute::concat_batches(table.full_schema(), &parts)?;
    Ok((whole, at))
}

/// Where feeding a table resumes: the stored position, if any.
pub fn stored_splits(store: &Store, id: u32) -> Result<Option<Splits>> {
    match store.get(&Table::feed_key(id))? {
        Some(bytes) => Splits::decode(&bytes, None)
            .map(Some)
            .ok_or_else(|| Error::Internal(format!("corrupt stored position of table {id}"))),
        None => Ok(None),
    }
}
