//! Durable tables: definitions, row encoding, the DataFusion scan and the writer.
//!
//! A row is stored under `t` + table id (u32, big-endian) + its primary key in Arrow's row
//! format, so keys are memcomparable and a table is one contiguous key range. The value is the
//! whole row (every column, hidden ones included) in Arrow's row format, so a point read or a
//! scan decodes straight back into Arrow arrays. A table without a primary key gets a hidden
//! `_augur_row_id BIGINT` column, numbered from a counter kept with the rows.
//!
//! Depends on `storage` only.

pub mod changelog;
mod codec;
pub mod provider;
pub mod watermark;
pub mod writer;

use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::logical_expr::Expr;
use serde::{Deserialize, Serialize};

pub use codec::RowCodec;

use crate::error::{Error, Result};
use crate::storage::{Snapshot, Store};

/// Name of the hidden row-id column of tables without a primary key.
pub const ROW_ID_COLUMN: &str = "_augur_row_id";

/// The stored definition of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Column name.
    pub name: String,
    /// The Arrow type, in Arrow's own text form (`Int64`, `Decimal128(10, 2)`, ...).
    pub data_type: String,
    /// False for `NOT NULL` and primary-key columns.
    pub nullable: bool,
    /// The `DEFAULT` expression as SQL text.
    pub default: Option<String>,
    /// True for the hidden row id, which `SELECT *` does not show.
    #[serde(default)]
    pub hidden: bool,
}

/// The stored definition of a table: what `CREATE TABLE` said, resolved to Arrow types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    /// Unique id; prefixes the table's keys.
    pub id: u32,
    /// The table's name, as written (unquoted names lower-cased).
    pub name: String,
    /// Columns in order; a hidden row id, if any, is last.
    pub columns: Vec<ColumnDef>,
    /// Positions in `columns` of the primary key (the hidden row id if none was declared).
    pub primary_key: Vec<usize>,
    /// The statement that created the table, for `pg_get_tabledef`-style display.
    pub definition: String,
    /// Rows are stored once per distinct row, keyed by all columns, with their multiplicity in
    /// 8 bytes after the value (views whose rows have no key).
    #[serde(default)]
    pub counted: bool,
    /// Counted rows stored in arrival order, each under its sequence number (8 bytes, big
    /// endian) with count 1 or more: an append-only view's rows, written without reading.
    #[serde(default)]
    pub appended: bool,
    /// `APPEND ONLY`: rows are inserted, never updated or deleted.
    #[serde(default)]
    pub append_only: bool,
    /// `WATERMARK FOR column AS expr` (append-only tables only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<watermark::WatermarkDef>,
}

impl TableDef {
    /// True when the primary key is the hidden row id.
    pub fn has_row_id(&self) -> bool {
        self.columns.last().is_some_and(|c| c.hidden)
    }

    /// The columns unique in every row users see: the primary key, unless it is the hidden row
    /// id or rows are counted. An empty key means at most one row.
    pub fn unique_key(&self) -> Option<&[usize]> {
        (!self.has_row_id() && !self.counted).then_some(self.primary_key.as_slice())
    }

    /// The key range of this table's rows.
    pub fn key_prefix(&self) -> [u8; 5] {
        let mut prefix = [b't', 0, 0, 0, 0];
        prefix[1..].copy_from_slice(&self.id.to_be_bytes());
        prefix
    }

    /// Name of the primary-key constraint, as PostgreSQL names it.
    pub fn pkey_name(&self) -> String {
        format!("{}_pkey", self.name)
    }
}

/// A table ready for use: its definition with everything derived from it.
#[derive(Debug)]
pub struct Table {
    def: TableDef,
    /// All columns, hidden ones included: the layout of stored rows.
    full_schema: SchemaRef,
    /// The columns users see.
    visible_schema: SchemaRef,
    codec: RowCodec,
    /// Parsed DEFAULT expressions by column position.
    defaults: Vec<Option<Expr>>,
    /// The next hidden row id to hand out (tables without a primary key).
    next_row_id: AtomicI64,
    /// Row versions written since the table was created.
    ingested: AtomicI64,
    /// The compiled watermark, if the table has one.
    watermark: Option<watermark::Watermark>,
    /// Where it stands, as last committed.
    watermark_state: Mutex<watermark::WatermarkState>,
}

impl Table {
    /// Builds a table from its definition; `parse_default` turns DEFAULT text into an expression.
    pub fn new(
        def: TableDef,
        next_row_id: i64,
        parse_default: impl Fn(&str) -> Result<Expr>,
    ) -> Result<Self> {
        let mut fields = Vec::with_capacity(def.columns.len());
        for c in &def.columns {
            let dt = DataType::from_str(&c.data_type).map_err(|e| {
                Error::Internal(format!("stored type {} of {}: {e}", c.data_type, c.name))
            })?;
            fields.push(Field::new(&c.name, dt, c.nullable));
        }
        let full_schema = Arc::new(Schema::new(fields));
        let visible: Vec<_> = full_schema
            .fields()
            .iter()
            .zip(&def.columns)
            .filter(|(_, c)| !c.hidden)
            .map(|(f, _)| f.clone())
            .collect();
        let visible_schema = Arc::new(Schema::new(visible));
        let codec = RowCodec::new(&full_schema, &def.primary_key)?;
        let defaults = def
            .columns
            .iter()
            .map(|c| c.default.as_deref().map(&parse_default).transpose())
            .collect::<Result<_>>()?;
        let watermark = def
            .watermark
            .as_ref()
            .map(|w| watermark::Watermark::compile(w, &full_schema))
            .transpose()?;
        Ok(Self {
            watermark,
            watermark_state: Mutex::new(watermark::WatermarkState::default()),
            def,
            full_schema,
            visible_schema,
            codec,
            defaults,
            next_row_id: AtomicI64::new(next_row_id),
            ingested: AtomicI64::new(0),
        })
    }

    /// The stored definition.
    pub fn def(&self) -> &TableDef {
        &self.def
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// Schema of stored rows (hidden columns included).
    pub fn full_schema(&self) -> &SchemaRef {
        &self.full_schema
    }

    /// Schema users see.
    pub fn visible_schema(&self) -> &SchemaRef {
        &self.visible_schema
    }

    /// Key and value encoding of this table's rows.
    pub fn codec(&self) -> &RowCodec {
        &self.codec
    }

    /// The DEFAULT expression of the column at `index`, if it has one.
    pub fn default_of(&self, index: usize) -> Option<&Expr> {
        self.defaults.get(index).and_then(Option::as_ref)
    }

    /// Reserves `n` consecutive hidden row ids and returns the first.
    pub fn reserve_row_ids(&self, n: usize) -> i64 {
        self.next_row_id.fetch_add(n as i64, Ordering::SeqCst)
    }

    /// The next hidden row id that will be handed out.
    pub fn next_row_id(&self) -> i64 {
        self.next_row_id.load(Ordering::SeqCst)
    }

    /// Row versions written since the table was created (INSERT, COPY and UPDATE).
    pub fn ingested(&self) -> i64 {
        self.ingested.load(Ordering::SeqCst)
    }

    /// Sets the count of written row versions (when loading).
    pub fn set_ingested(&self, n: i64) {
        self.ingested.store(n, Ordering::SeqCst);
    }

    /// Counts `n` more written row versions; returns the new total.
    pub fn add_ingested(&self, n: i64) -> i64 {
        self.ingested.fetch_add(n, Ordering::SeqCst) + n
    }

    /// The table's watermark, if it has one.
    pub fn watermark(&self) -> Option<&watermark::Watermark> {
        self.watermark.as_ref()
    }

    /// Where the watermark stands, as last committed.
    pub fn watermark_state(&self) -> watermark::WatermarkState {
        *self
            .watermark_state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Sets where the watermark stands (when loading, and after a commit).
    pub fn set_watermark_state(&self, state: watermark::WatermarkState) {
        *self
            .watermark_state
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// Storage key of the watermark of the table with id `table_id`.
    pub fn watermark_key(table_id: u32) -> Vec<u8> {
        let mut key = b"mwatermark/".to_vec();
        key.extend_from_slice(&table_id.to_be_bytes());
        key
    }

    /// Storage key of the written-rows counter of the table with id `table_id`.
    pub fn ingested_key(table_id: u32) -> Vec<u8> {
        let mut key = b"mingested/".to_vec();
        key.extend_from_slice(&table_id.to_be_bytes());
        key
    }

    /// Storage key of the row-id counter of the table with id `table_id`.
    pub fn row_id_counter_key(table_id: u32) -> Vec<u8> {
        let mut key = b"mrowid/".to_vec();
        key.extend_from_slice(&table_id.to_be_bytes());
        key
    }
}

impl Table {
    /// The storage key of the row whose encoded key is `key`.
    pub fn row_key(&self, key: &[u8]) -> Vec<u8> {
        let prefix = self.def.key_prefix();
        let mut out = Vec::with_capacity(prefix.len() + key.len());
        out.extend_from_slice(&prefix);
        out.extend_from_slice(key);
        out
    }

    /// Reads every stored row in key order — from `snapshot`, or from one snapshot of `store`
    /// taken now — and hands them to `f` in batches of up to `batch_size` whole rows, with each
    /// row's multiplicity (always 1 unless the table is counted). `f` returns `false` to stop.
    pub fn read_batches(
        &self,
        store: &Store,
        snapshot: Option<&Snapshot>,
        batch_size: usize,
        mut f: impl FnMut(RecordBatch, Vec<i64>) -> Result<bool>,
    ) -> Result<()> {
        let counted = self.def.counted;
        let mut data: Vec<u8> = Vec::new();
        let mut ends: Vec<usize> = Vec::with_capacity(batch_size);
        let mut counts: Vec<i64> = Vec::with_capacity(batch_size);
        let mut flush =
            |data: &mut Vec<u8>, ends: &mut Vec<usize>, counts: &mut Vec<i64>| -> Result<bool> {
                let mut start = 0;
                let values = ends.iter().map(|&end| {
                    let value = &data[start..end];
                    start = end;
                    value
                });
                let rows = self.codec.decode_values(values)?;
                data.clear();
                ends.clear();
                f(rows, std::mem::take(counts))
            };
        let mut open = true;
        let visit = |_: &[u8], value: &[u8]| -> Result<bool> {
            let (row, count) = if counted {
                split_count(value)?
            } else {
                (value, 1)
            };
            data.extend_from_slice(row);
            ends.push(data.len());
            counts.push(count);
            if ends.len() >= batch_size {
                open = flush(&mut data, &mut ends, &mut counts)?;
            }
            Ok(open)
        };
        let prefix = self.def.key_prefix();
        match snapshot {
            Some(snapshot) => snapshot.scan_prefix::<Error>(&prefix, visit)?,
            None => store.scan_prefix::<Error>(&prefix, visit)?,
        }
        if open && !ends.is_empty() {
            flush(&mut data, &mut ends, &mut counts)?;
        }
        Ok(())
    }
}

/// Splits the stored value of a counted table's row into the row and its multiplicity.
pub fn split_count(value: &[u8]) -> Result<(&[u8], i64)> {
    let at = value.len().checked_sub(8).ok_or_else(|| {
        Error::Storage(crate::storage::StorageError::Corrupt(
            "counted row without its count".into(),
        ))
    })?;
    let (row, count) = value.split_at(at);
    let count: [u8; 8] = count.try_into().unwrap_or([0; 8]);
    Ok((row, i64::from_be_bytes(count)))
}
