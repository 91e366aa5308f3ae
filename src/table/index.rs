//! Secondary indexes: `CREATE [UNIQUE] INDEX name ON relation (columns)`.
//!
//! An index maps the values of its columns to the primary keys of the rows that hold them. Its
//! entries live under `i` + index id, then the index columns in Arrow's row format (comparable
//! and self-delimiting, so that the entries of one value are exactly the keys that start with
//! it), then — unless the index is unique and no column is NULL — the row's key; the value of an
//! entry is always the row's key. Entries are written in the same batch as the rows they
//! describe, so an index never disagrees with its relation.
//!
//! A unique index, as in PostgreSQL, treats NULLs as distinct: a row with a NULL in an index
//! column never conflicts.

use std::collections::{HashMap, HashSet};

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::{Snapshot, Store, WriteBatch};

/// What `CREATE INDEX` said, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexDef {
    /// Unique id, from the catalog's counter; prefixes the index's entries.
    pub id: u32,
    /// The index's name.
    pub name: String,
    /// The table or materialized view it indexes.
    pub relation: String,
    /// Positions of the indexed columns among the relation's stored columns.
    pub columns: Vec<usize>,
    /// UNIQUE.
    pub unique: bool,
    /// Made by a `UNIQUE` constraint (listed among the table's constraints), not by `CREATE
    /// INDEX`.
    #[serde(default)]
    pub constraint: bool,
}

impl IndexDef {
    /// The key range of this index's entries.
    pub fn key_prefix(&self) -> [u8; 5] {
        prefix(self.id)
    }
}

fn prefix(id: u32) -> [u8; 5] {
    let mut prefix = [b'i', 0, 0, 0, 0];
    prefix[1..].copy_from_slice(&id.to_be_bytes());
    prefix
}

/// An index ready for use.
#[derive(Debug)]
pub struct Index {
    def: IndexDef,
    converter: RowConverter,
}

/// One index entry: its storage key and the key of its row (without the table prefix).
struct Entry {
    key: Vec<u8>,
    row_key: Vec<u8>,
    /// The storage key a unique index checks (`None` when a column is NULL or not unique).
    unique: bool,
}

impl Index {
    /// An index over the columns of rows shaped like `schema` (all stored columns).
    pub fn new(def: IndexDef, schema: &SchemaRef) -> Result<Self> {
        let fields: Vec<SortField> = def
            .columns
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect();
        if !RowConverter::supports_fields(&fields) {
            return Err(Error::NotSupported(format!(
                "an index on a column of type {}",
                def.columns
                    .iter()
                    .map(|&i| schema.field(i).data_type().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(Self {
            def,
            converter: RowConverter::new(fields)?,
        })
    }

    /// The definition.
    pub fn def(&self) -> &IndexDef {
        &self.def
    }

    /// The index columns of `rows` (whole stored rows), and their values in the row format
    /// the entry keys are made of.
    fn index_values(
        &self,
        rows: &RecordBatch,
    ) -> Result<(Vec<ArrayRef>, datafusion::arrow::row::Rows)> {
        let columns: Vec<ArrayRef> = self
            .def
            .columns
            .iter()
            .map(|&i| rows.column(i).clone())
            .collect();
        let values = self.converter.convert_columns(&columns)?;
        Ok((columns, values))
    }

    /// The entries of `rows` (whole stored rows) whose keys (without the table prefix) are
    /// `row_keys`.
    fn entries(&self, rows: &RecordBatch, row_keys: &[Vec<u8>]) -> Result<Vec<Entry>> {
        let (columns, values) = self.index_values(rows)?;
        let prefix = self.def.key_prefix();
        Ok(row_keys
            .iter()
            .enumerate()
            .map(|(i, row_key)| {
                let unique = self.def.unique && columns.iter().all(|c| c.is_valid(i));
                let value = values.row(i);
                let mut key =
                    Vec::with_capacity(prefix.len() + value.as_ref().len() + row_key.len());
                key.extend_from_slice(&prefix);
                key.extend_from_slice(value.as_ref());
                if !unique {
                    key.extend_from_slice(row_key);
                }
                Entry {
                    key,
                    row_key: row_key.clone(),
                    unique,
                }
            })
            .collect())
    }

    /// For each of `rows` (whole stored rows), the storage key of its entry in this unique
    /// index; `None` where an index column is NULL (such a row conflicts with none).
    pub fn unique_keys(&self, rows: &RecordBatch) -> Result<Vec<Option<Vec<u8>>>> {
        let (columns, values) = self.index_values(rows)?;
        let prefix = self.def.key_prefix();
        Ok((0..rows.num_rows())
            .map(|i| {
                columns.iter().all(|c| c.is_valid(i)).then(|| {
                    let mut key = prefix.to_vec();
                    key.extend_from_slice(values.row(i).as_ref());
                    key
                })
            })
            .collect())
    }

    /// The key prefix of the entries of rows whose index columns hold `values`; `None` when a
    /// value is NULL (no row equals NULL) or cannot be converted to its column's type.
    pub fn lookup_prefix(
        &self,
        values: &[ScalarValue],
        schema: &SchemaRef,
    ) -> Result<Option<Vec<u8>>> {
        let mut columns = Vec::with_capacity(values.len());
        for (value, &column) in values.iter().zip(&self.def.columns) {
            if value.is_null() {
                return Ok(None);
            }
            let target = schema.field(column).data_type();
            let Ok(value) = value.cast_to(target) else {
                return Ok(None);
            };
            columns.push(value.to_array()?);
        }
        let values = self.converter.convert_columns(&columns)?;
        let mut key = self.def.key_prefix().to_vec();
        key.extend_from_slice(values.row(0).as_ref());
        Ok(Some(key))
    }

    /// The row keys (without the table prefix) of the rows whose index columns hold `values`,
    /// read from `snapshot` or the store's latest state.
    pub fn find(
        &self,
        store: &Store,
        snapshot: Option<&Snapshot>,
        values: &[ScalarValue],
        schema: &SchemaRef,
    ) -> Result<Vec<Vec<u8>>> {
        let Some(prefix) = self.lookup_prefix(values, schema)? else {
            return Ok(vec![]);
        };
        let mut keys = Vec::new();
        let visit = |_: &[u8], value: &[u8]| -> Result<bool> {
            keys.push(value.to_vec());
            Ok(true)
        };
        match snapshot {
            Some(snapshot) => snapshot.scan_prefix::<Error>(&prefix, visit)?,
            None => store.scan_prefix::<Error>(&prefix, visit)?,
        }
        Ok(keys)
    }

    /// Adds to `batch` the index changes of replacing the `old` rows by the `new` rows (whole
    /// stored rows with their keys, without the table prefix). A unique index refuses a value
    /// that a row keeps or that two new rows share (`23505`).
    pub fn update(
        &self,
        store: &Store,
        batch: &mut WriteBatch,
        old: (&RecordBatch, &[Vec<u8>]),
        new: (&RecordBatch, &[Vec<u8>]),
        describe: impl Fn(usize) -> String,
    ) -> Result<()> {
        let removed = self.entries(old.0, old.1)?;
        let added = self.entries(new.0, new.1)?;
        let removed_keys: HashSet<&[u8]> = removed.iter().map(|e| e.key.as_slice()).collect();
        if self.def.unique {
            let mut seen: HashMap<&[u8], usize> = HashMap::new();
            let mut to_check = Vec::new();
            for (i, entry) in added.iter().enumerate().filter(|(_, e)| e.unique) {
                if seen.insert(entry.key.as_slice(), i).is_some() {
                    return Err(self.violation(describe(i)));
                }
                if !removed_keys.contains(entry.key.as_slice()) {
                    to_check.push((i, entry.key.clone()));
                }
            }
            let keys: Vec<Vec<u8>> = to_check.iter().map(|(_, k)| k.clone()).collect();
            for ((i, _), found) in to_check.iter().zip(store.multi_get(&keys)?) {
                if found.is_some() {
                    return Err(self.violation(describe(*i)));
                }
            }
        }
        for entry in &removed {
            batch.delete(&entry.key);
        }
        for entry in &added {
            batch.put(&entry.key, &entry.row_key);
        }
        Ok(())
    }

    /// The entries of every row of `rows` (whole stored rows with their keys), for building the
    /// index over existing rows. A unique index refuses values that repeat, also across
    /// batches: `seen` holds the unique keys written so far.
    pub fn build(
        &self,
        batch: &mut WriteBatch,
        rows: (&RecordBatch, &[Vec<u8>]),
        seen: &mut HashSet<Vec<u8>>,
        describe: impl Fn(usize) -> String,
    ) -> Result<()> {
        for (i, entry) in self.entries(rows.0, rows.1)?.into_iter().enumerate() {
            if entry.unique && !seen.insert(entry.key.clone()) {
                return Err(Error::coded(
                    "23505",
                    format!(
                        "could not create unique index \"{}\": {} is duplicated",
                        crate::common::names::split(&self.def.name).1,
                        describe(i)
                    ),
                ));
            }
            batch.put(&entry.key, &entry.row_key);
        }
        Ok(())
    }

    fn violation(&self, key: String) -> Error {
        Error::UniqueViolation {
            constraint: crate::common::names::split(&self.def.name).1.to_string(),
            detail: format!("{key} already exists."),
        }
    }
}
