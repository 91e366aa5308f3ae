//! Applies the changes one statement makes to one table, atomically and with the table's
//! constraints checked: types, NOT NULL, and primary-key uniqueness.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BinaryBuilder, Int64Array, RecordBatch};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::Table;
use super::changelog::ChangeLog;
use super::index::Index;
use super::watermark::WatermarkState;
use crate::common::types::parse_bytea;
use crate::error::{Error, Result};
use crate::storage::{Store, WriteBatch};

/// What an INSERT does with a row whose key is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// Fail the statement with a unique violation (`23505`).
    Fail,
    /// Skip the row (`ON CONFLICT DO NOTHING`).
    Skip,
}

impl Table {
    /// Builds whole stored rows from `columns`, given in the order of the visible schema: casts
    /// each to its column's type, checks NOT NULL, and numbers new rows when the table has a
    /// hidden row id.
    ///
    /// `row_ids` keeps the hidden row ids of rows being updated; new rows get fresh ones.
    pub fn conform(
        &self,
        columns: Vec<ArrayRef>,
        row_ids: Option<ArrayRef>,
    ) -> Result<RecordBatch> {
        let visible = self.visible_schema();
        if columns.len() != visible.fields().len() {
            return Err(Error::Internal(format!(
                "{} values for the {} columns of {}",
                columns.len(),
                visible.fields().len(),
                self.name()
            )));
        }
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        let rows = columns.first().map_or(0, |c| c.len());
        let mut out = Vec::with_capacity(self.full_schema().fields().len());
        let precisions: Vec<Option<u8>> = self
            .def()
            .columns
            .iter()
            .filter(|c| !c.hidden)
            .map(|c| c.precision)
            .collect();
        for ((column, field), precision) in
            columns.into_iter().zip(visible.fields()).zip(precisions)
        {
            let column = if column.data_type() == field.data_type() {
                column
            } else if field.data_type() == &DataType::Binary
                && column.data_type() == &DataType::Utf8
            {
                bytea_from_text(&column)?
            } else if matches!(field.data_type(), DataType::Interval(_))
                && column.data_type() == &DataType::Utf8
            {
                interval_from_text(&column)?
            } else {
                cast_with_options(&column, field.data_type(), &options)?
            };
            let column = match field.metadata().get(crate::common::names::PG_TYPE_KEY) {
                Some(pg_type) => match crate::catalog::pg_char::parse_pg_type(pg_type) {
                    Some((kind, length)) => crate::catalog::pg_char::assign(&column, kind, length)?,
                    None => typed_text(&column, pg_type)?,
                },
                None => column,
            };
            let column = match precision {
                Some(digits) => crate::catalog::pg_datetime::round_seconds(&column, digits),
                None => column,
            };
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(Error::NotNullViolation {
                    table: self.name().to_string(),
                    column: field.name().clone(),
                });
            }
            out.push(column);
        }
        if self.def().has_row_id() {
            out.push(match row_ids {
                Some(ids) => ids,
                None => {
                    let first = self.reserve_row_ids(rows);
                    Arc::new(Int64Array::from_iter_values(first..first + rows as i64))
                }
            });
        }
        let rows = RecordBatch::try_new(self.full_schema().clone(), out)?;
        for check in self.checks() {
            if let Some(row) = check.first_failure(&rows)? {
                return Err(Error::CheckViolation {
                    table: self.name().to_string(),
                    constraint: check.name().to_string(),
                    detail: self.describe_row(&rows, row),
                });
            }
        }
        Ok(rows)
    }

    /// `Failing row contains (1, x, null).` for row `row` of `rows` (whole rows), as PostgreSQL
    /// words it.
    fn describe_row(&self, rows: &RecordBatch, row: usize) -> String {
        let options = FormatOptions::default().with_null("null");
        let values: Vec<String> = self
            .def()
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.hidden)
            .map(|(i, _)| {
                ArrayFormatter::try_new(rows.column(i).as_ref(), &options)
                    .map(|f| f.value(row).to_string())
                    .unwrap_or_default()
            })
            .collect();
        format!("Failing row contains ({}).", values.join(", "))
    }

    /// The storage keys and values of `rows` (whole rows of a table whose rows are not counted).
    pub fn encode_rows(&self, rows: &RecordBatch) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let codec = self.codec();
        let keys = codec.encode_keys(&codec.key_columns(rows))?;
        let values = codec.encode_values(rows)?;
        Ok((0..rows.num_rows())
            .map(|i| {
                (
                    self.row_key(keys.row(i).as_ref()),
                    values.row(i).as_ref().to_vec(),
                )
            })
            .collect())
    }

    /// `Key (a, b)=(1, x)` for row `row` of `rows` (whole rows), as PostgreSQL words it.
    fn describe_key(&self, rows: &RecordBatch, row: usize) -> String {
        self.describe_columns(&self.def().primary_key, rows, row)
    }

    /// `Key (a, b)=(1, x)` for columns `columns` of row `row` of `rows` (whole rows).
    pub fn describe_columns(&self, columns: &[usize], rows: &RecordBatch, row: usize) -> String {
        let def = self.def();
        let names: Vec<&str> = columns
            .iter()
            .map(|&i| def.columns[i].name.as_str())
            .collect();
        let options = FormatOptions::default().with_null("null");
        let values: Vec<String> = columns
            .iter()
            .map(|&i| {
                ArrayFormatter::try_new(rows.column(i).as_ref(), &options)
                    .map(|f| f.value(row).to_string())
                    .unwrap_or_default()
            })
            .collect();
        format!("Key ({})=({})", names.join(", "), values.join(", "))
    }
}

/// Text for a column of a type stored as text (`uuid`, `json`, `jsonb`), read as that type
/// reads it: checked (`22P02`) and normalized (`uuid` in lower case, `jsonb` as PostgreSQL
/// writes it).
fn typed_text(column: &ArrayRef, pg_type: &str) -> Result<ArrayRef> {
    use crate::catalog::pg_json::JsonKind;
    let read = |text: &str| -> Result<String> {
        let invalid = || {
            Error::InvalidText(format!(
                "invalid input syntax for type {pg_type}: \"{text}\""
            ))
        };
        match pg_type {
            "uuid" => crate::catalog::pg_builtins::parse_uuid(text)
                .map(|bytes| crate::catalog::pg_builtins::uuid_text(&bytes))
                .ok_or_else(invalid),
            "json" => JsonKind::Json.read(text).map_err(|_| invalid()),
            "jsonb" => JsonKind::Jsonb.read(text).map_err(|_| invalid()),
            _ => Ok(text.to_string()),
        }
    };
    let values: datafusion::arrow::array::StringArray = column
        .as_string::<i32>()
        .iter()
        .map(|text| text.map(read).transpose())
        .collect::<Result<_>>()?;
    Ok(Arc::new(values))
}

/// Text to `interval` as PostgreSQL reads it (`41 mon 12 days 360:00`).
fn interval_from_text(column: &ArrayRef) -> Result<ArrayRef> {
    let values: datafusion::arrow::array::IntervalMonthDayNanoArray = column
        .as_string::<i32>()
        .iter()
        .map(|text| {
            text.map(|text| {
                crate::sql::interval::parse(text)
                    .ok_or_else(|| crate::sql::interval::invalid_text(text))
            })
            .transpose()
        })
        .collect::<Result<_>>()?;
    Ok(Arc::new(values))
}

/// Text to `bytea` as PostgreSQL reads it (`\\x0102ff`), not the text's own bytes.
fn bytea_from_text(column: &ArrayRef) -> Result<ArrayRef> {
    let mut out = BinaryBuilder::new();
    for text in column.as_string::<i32>().iter() {
        match text {
            None => out.append_null(),
            Some(text) => out.append_value(parse_bytea(text).ok_or_else(|| {
                Error::InvalidText(format!("invalid input syntax for type bytea: \"{text}\""))
            })?),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// Deletes every row of `table` (TRUNCATE) in one atomic batch: its rows and index entries go
/// by range; with `log` (the table feeds views) every row is logged as deleted in the same batch.
pub fn truncate(store: &Store, table: &Table, log: Option<&ChangeLog>) -> Result<()> {
    table.check_current()?;
    let mut batch = WriteBatch::default();
    let prefix = table.def().key_prefix();
    let entries = match log {
        Some(log) => {
            let mut rows = Vec::new();
            store.scan_prefix::<crate::Error>(&prefix, |_, value| {
                rows.push(value.to_vec());
                Ok(true)
            })?;
            log.append(&mut batch, table.def().id, rows, Vec::new())
        }
        None => Vec::new(),
    };
    store.delete_prefix_in(&mut batch, &prefix);
    for index in table.indexes().iter() {
        store.delete_prefix_in(&mut batch, &index.def().key_prefix());
    }
    store.write(batch)?;
    if let Some(log) = log {
        log.publish(entries);
    }
    Ok(())
}

/// Old and new versions of the rows a statement changes (stored values).
type RowVersions = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// The changes of one statement to one table. Nothing is visible until [`TableChanges::commit`],
/// which writes them in one atomic batch.
pub struct TableChanges<'a> {
    store: &'a Store,
    table: &'a Table,
    /// Keys deleted by this statement.
    deleted: HashSet<Vec<u8>>,
    /// Rows written by this statement, by key.
    written: HashMap<Vec<u8>, Vec<u8>>,
    /// Keys known to have no stored row (checked by an insert).
    absent: HashSet<Vec<u8>>,
    /// The table's watermark as this statement has moved it (tables with a watermark).
    watermark: Option<WatermarkState>,
    /// For the unique indexes asked about by [`TableChanges::holders`] (an ON CONFLICT clause's
    /// arbiters), by index id: the entries of the rows this statement wrote, entry key → the
    /// row's storage key.
    entries: HashMap<u32, (Arc<Index>, EntryKeys)>,
}

/// Index entry key → the storage key of the row it belongs to.
type EntryKeys = HashMap<Vec<u8>, Vec<u8>>;

impl<'a> TableChanges<'a> {
    /// No changes yet.
    pub fn new(store: &'a Store, table: &'a Table) -> Self {
        Self {
            store,
            table,
            deleted: HashSet::new(),
            written: HashMap::new(),
            absent: HashSet::new(),
            watermark: None,
            entries: HashMap::new(),
        }
    }

    fn keys(&self, rows: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        let codec = self.table.codec();
        let keys = codec.encode_keys(&codec.key_columns(rows))?;
        Ok(keys
            .iter()
            .map(|k| self.table.row_key(k.as_ref()))
            .collect())
    }

    /// Deletes `rows` (whole stored rows, as read from the table).
    pub fn delete(&mut self, rows: &RecordBatch) -> Result<()> {
        let keys = self.keys(rows)?;
        for (index, entries) in self.entries.values_mut() {
            for (entry, key) in index.unique_keys(rows)?.into_iter().zip(&keys) {
                if let Some(entry) = entry
                    && entries.get(&entry) == Some(key)
                {
                    entries.remove(&entry);
                }
            }
        }
        for key in keys {
            self.written.remove(&key);
            self.deleted.insert(key);
        }
        Ok(())
    }

    /// The storage key of each of `rows` (whole rows).
    pub fn row_keys(&self, rows: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        self.keys(rows)
    }

    /// The stored value of the row with storage key `key`, as this statement sees it.
    pub fn value(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(value) = self.written.get(key) {
            return Ok(Some(value.clone()));
        }
        if self.deleted.contains(key) {
            return Ok(None);
        }
        Ok(self.store.get(key)?)
    }

    /// For each of `rows` (whole rows), the storage key of the row that holds the same values
    /// in the columns of the unique `index` as this statement leaves the table; `None` where no
    /// row does or an index column of the row is NULL.
    pub fn holders(
        &mut self,
        index: &Arc<Index>,
        rows: &RecordBatch,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let id = index.def().id;
        if !self.entries.contains_key(&id) {
            // Rows this statement (or an earlier part of it) already wrote are not in the index
            // yet: their entries are worked out once, then kept as rows are written.
            let mut entries = HashMap::new();
            if !self.written.is_empty() {
                let keys: Vec<Vec<u8>> = self.written.keys().cloned().collect();
                let values: Vec<Vec<u8>> = keys.iter().map(|k| self.written[k].clone()).collect();
                let written = self.table.decode_stored(&values)?;
                for (entry, key) in index.unique_keys(&written)?.into_iter().zip(keys) {
                    if let Some(entry) = entry {
                        entries.insert(entry, key);
                    }
                }
            }
            self.entries.insert(id, (index.clone(), entries));
        }
        let entries = &self.entries[&id].1;
        let wanted = index.unique_keys(rows)?;
        let mut out = vec![None; wanted.len()];
        let mut to_read = Vec::new();
        let mut positions = Vec::new();
        for (i, entry) in wanted.into_iter().enumerate() {
            let Some(entry) = entry else { continue };
            if let Some(key) = entries.get(&entry) {
                out[i] = Some(key.clone());
            } else {
                to_read.push(entry);
                positions.push(i);
            }
        }
        if !to_read.is_empty() {
            for (found, i) in self.store.multi_get(&to_read)?.into_iter().zip(positions) {
                // A stored row this statement deleted or rewrote holds the value no longer
                // (rewritten with it, it is among this statement's entries).
                if let Some(row_key) = found {
                    let key = self.table.row_key(&row_key);
                    if !self.changed(&key) {
                        out[i] = Some(key);
                    }
                }
            }
        }
        Ok(out)
    }

    /// For each of `rows` (whole rows), whether its key is taken: by a stored row this statement
    /// has not deleted, or by a row this statement wrote.
    pub fn taken(&self, rows: &RecordBatch) -> Result<Vec<bool>> {
        let keys = self.keys(rows)?;
        if self.table.def().has_row_id() {
            // Every stored row has its own key: only this statement's can be taken.
            return Ok(keys.iter().map(|k| self.written.contains_key(k)).collect());
        }
        self.has_keys(&keys)
    }

    /// For each storage key, whether a row has it as this statement leaves the table (read in
    /// one batch where the statement has not decided it).
    pub fn has_keys(&self, keys: &[Vec<u8>]) -> Result<Vec<bool>> {
        let mut found = vec![false; keys.len()];
        let mut to_read = Vec::new();
        let mut positions = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if self.written.contains_key(key) {
                found[i] = true;
            } else if !self.deleted.contains(key) {
                to_read.push(key.clone());
                positions.push(i);
            }
        }
        if !to_read.is_empty() {
            for (value, i) in self.store.multi_get(&to_read)?.into_iter().zip(positions) {
                found[i] = value.is_some();
            }
        }
        Ok(found)
    }

    /// The stored values of the rows with the keys of `rows` (whole rows), as this statement
    /// sees them: its own writes and deletes included.
    pub fn existing(&self, rows: &RecordBatch) -> Result<Vec<Option<Vec<u8>>>> {
        self.values(&self.keys(rows)?)
    }

    /// The stored values of the rows with storage keys `keys`, as this statement sees them: its
    /// own writes and deletes included; the rest read in one batch.
    pub fn values(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut out = vec![None; keys.len()];
        let mut to_read = Vec::new();
        let mut positions = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if let Some(value) = self.written.get(key) {
                out[i] = Some(value.clone());
            } else if !self.deleted.contains(key) {
                to_read.push(key.clone());
                positions.push(i);
            }
        }
        if !to_read.is_empty() {
            for (found, i) in self.store.multi_get(&to_read)?.into_iter().zip(positions) {
                out[i] = found;
            }
        }
        Ok(out)
    }

    /// Whether this statement deleted or wrote the row with storage key `key`.
    pub fn changed(&self, key: &[u8]) -> bool {
        self.written.contains_key(key) || self.deleted.contains(key)
    }

    /// The rows this statement wrote, whole.
    pub fn written_rows(&self) -> Result<Vec<RecordBatch>> {
        if self.written.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Vec<u8>> = self.written.values().cloned().collect();
        Ok(vec![self.table.decode_stored(&values)?])
    }

    /// Whether this statement itself wrote a row with the key of each of `rows`.
    pub fn written_here(&self, rows: &RecordBatch) -> Result<Vec<bool>> {
        Ok(self
            .keys(rows)?
            .iter()
            .map(|k| self.written.contains_key(k))
            .collect())
    }

    /// Inserts `rows` (whole rows, from [`Table::conform`]); returns which of them were written
    /// (all of them, except late rows behind the table's watermark and, with
    /// [`OnConflict::Skip`], rows whose key is taken).
    pub fn insert(&mut self, rows: &RecordBatch, on_conflict: OnConflict) -> Result<Vec<bool>> {
        let table = self.table;
        let on_time = match table.watermark() {
            Some(watermark) => {
                let state = self
                    .watermark
                    .get_or_insert_with(|| table.watermark_state());
                Some(watermark.judge(rows, state)?)
            }
            None => None,
        };
        let taken = self.taken(rows)?;
        let keys = self.keys(rows)?;
        let values = self.table.codec().encode_values(rows)?;
        let mut inserted = Vec::with_capacity(keys.len());
        for (i, key) in keys.into_iter().enumerate() {
            if on_time.as_ref().is_some_and(|on_time| !on_time[i]) {
                inserted.push(false);
                continue;
            }
            // A key may repeat within `rows` itself: check against what is written so far.
            if taken[i] || self.written.contains_key(&key) {
                match on_conflict {
                    OnConflict::Fail => {
                        return Err(Error::UniqueViolation {
                            constraint: crate::common::names::split(&self.table.def().pkey_name())
                                .1
                                .to_string(),
                            detail: format!("{} already exists.", self.table.describe_key(rows, i)),
                        });
                    }
                    OnConflict::Skip => {
                        inserted.push(false);
                        continue;
                    }
                }
            }
            if !self.deleted.contains(&key) {
                self.absent.insert(key.clone());
            }
            self.written.insert(key, values.row(i).as_ref().to_vec());
            inserted.push(true);
        }
        if !self.entries.is_empty() {
            let keys = self.keys(rows)?;
            for (index, entries) in self.entries.values_mut() {
                let wanted = index.unique_keys(rows)?;
                for ((entry, key), inserted) in wanted.into_iter().zip(&keys).zip(&inserted) {
                    if let Some(entry) = entry
                        && *inserted
                    {
                        entries.insert(entry, key.clone());
                    }
                }
            }
        }
        Ok(inserted)
    }

    /// Writes every change in one atomic batch. With `log` (the table feeds views), the old
    /// and new versions of every changed row go into the change log in the same batch.
    pub fn commit(self, log: Option<&ChangeLog>) -> Result<()> {
        self.commit_with(log, WriteBatch::default())
    }

    /// [`TableChanges::commit`], with `extra` writes in the same atomic batch (a connector's
    /// offsets).
    pub fn commit_with(self, log: Option<&ChangeLog>, extra: WriteBatch) -> Result<()> {
        self.table.check_current()?;
        let mut batch = extra;
        let indexes = self.table.indexes();
        let versions = if log.is_some() || !indexes.is_empty() {
            Some(self.row_versions()?)
        } else {
            None
        };
        if let Some((deleted, inserted)) = &versions
            && !indexes.is_empty()
        {
            self.update_indexes(&indexes, &mut batch, deleted, inserted)?;
        }
        let entries = match (log, versions) {
            (Some(log), Some((deleted, inserted))) => {
                log.append(&mut batch, self.table.def().id, deleted, inserted)
            }
            _ => Vec::new(),
        };
        for key in &self.deleted {
            if !self.written.contains_key(key) {
                batch.delete(key);
            }
        }
        for (key, value) in &self.written {
            batch.put(key, value);
        }
        if self.table.def().has_row_id() {
            batch.put(
                Table::row_id_counter_key(self.table.def().id),
                self.table.next_row_id().to_be_bytes(),
            );
        }
        if !self.written.is_empty() {
            let total = self.table.add_ingested(self.written.len() as i64);
            batch.put(
                Table::ingested_key(self.table.def().id),
                total.to_be_bytes(),
            );
        }
        if let Some(state) = self.watermark {
            batch.put(Table::watermark_key(self.table.def().id), state.encode());
        }
        self.store.write(batch)?;
        if let Some(state) = self.watermark {
            self.table.set_watermark_state(state);
        }
        if let Some(log) = log {
            log.publish(entries);
        }
        Ok(())
    }

    /// Adds the index changes of replacing the `deleted` row versions by the `inserted` ones.
    fn update_indexes(
        &self,
        indexes: &[std::sync::Arc<super::index::Index>],
        batch: &mut WriteBatch,
        deleted: &[Vec<u8>],
        inserted: &[Vec<u8>],
    ) -> Result<()> {
        let decode = |values: &[Vec<u8>]| -> Result<(RecordBatch, Vec<Vec<u8>>)> {
            let codec = self.table.codec();
            let rows = codec.decode_values(values.iter().map(Vec::as_slice))?;
            let keys = codec.encode_keys(&codec.key_columns(&rows))?;
            let keys = keys.iter().map(|k| k.as_ref().to_vec()).collect();
            Ok((rows, keys))
        };
        let (old_rows, old_keys) = decode(deleted)?;
        let (new_rows, new_keys) = decode(inserted)?;
        for index in indexes {
            index.update(
                self.store,
                batch,
                (&old_rows, &old_keys),
                (&new_rows, &new_keys),
                |i| {
                    self.table
                        .describe_columns(&index.def().columns, &new_rows, i)
                },
            )?;
        }
        Ok(())
    }

    /// The stored versions this statement replaces or deletes, and the versions it writes;
    /// rows written unchanged appear in neither.
    fn row_versions(&self) -> Result<RowVersions> {
        let touched: Vec<Vec<u8>> = self
            .deleted
            .iter()
            .chain(self.written.keys())
            .filter(|k| !self.absent.contains(*k))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let old = if self.table.def().has_row_id() && self.deleted.is_empty() {
            vec![None; touched.len()]
        } else {
            self.store.multi_get(&touched)?
        };
        let mut deleted = Vec::new();
        let mut inserted = Vec::new();
        for (key, old) in touched.iter().zip(old) {
            let new = self.written.get(key);
            match (old, new) {
                (Some(old), Some(new)) if &old == new => {}
                (old, new) => {
                    deleted.extend(old);
                    inserted.extend(new.cloned());
                }
            }
        }
        for key in &self.absent {
            if let Some(new) = self.written.get(key) {
                inserted.push(new.clone());
            }
        }
        Ok((deleted, inserted))
    }
}
