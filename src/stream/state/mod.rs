//! Where an operator keeps its state in RocksDB.
//!
//! Every stateful operator of a view owns the key range `s` + view id (u32 BE) + operator
//! position (u16 BE). Inside it, a one-byte tag separates kinds of entries (an aggregate's
//! groups from its value multisets, a join's left rows from its right rows), followed by keys in
//! Arrow's row format. Dropping a view deletes `s` + view id.
//!
//! Operators read and write their state through a [`StateTable`] (`table`): keyed records
//! cached within the server's budget, written once per changed key per checkpoint. Operators
//! whose state is ordered within a partition and read in ranges (OVER, SESSION) keep each
//! partition as one record of sorted entries ([`Partitions`], `sorted`).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::ExprErrors;
use crate::storage::Store;

pub mod sorted;
pub mod table;

pub use sorted::Partitions;
pub use table::{CacheBudget, Record, StateTable};

/// The storage tag of operator state.
pub const STATE_TAG: u8 = b's';

/// One operator's key range, the store to read it from, and the memory budget its cached
/// state counts against.
#[derive(Debug, Clone)]
pub struct StateScope {
    store: Store,
    prefix: Vec<u8>,
    budget: std::sync::Arc<CacheBudget>,
}

impl StateScope {
    /// The range of operator `op` of view `view`, with a budget of its own (the default size).
    pub fn new(store: Store, view: u32, op: u16) -> Self {
        let mut prefix = Vec::with_capacity(7);
        prefix.push(STATE_TAG);
        prefix.extend_from_slice(&view.to_be_bytes());
        prefix.extend_from_slice(&op.to_be_bytes());
        Self {
            store,
            prefix,
            budget: CacheBudget::new(table::DEFAULT_CACHE_BYTES),
        }
    }

    /// The same range, counting its cached state against `budget` (the server's).
    pub fn with_budget(mut self, budget: std::sync::Arc<CacheBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// The memory budget cached state counts against.
    pub fn budget(&self) -> &std::sync::Arc<CacheBudget> {
        &self.budget
    }

    /// The prefix of every state key of view `view`.
    pub fn view_prefix(view: u32) -> Vec<u8> {
        let mut prefix = vec![STATE_TAG];
        prefix.extend_from_slice(&view.to_be_bytes());
        prefix
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The key `prefix + tag + parts...`.
    pub fn key(&self, tag: u8, parts: &[&[u8]]) -> Vec<u8> {
        let len = self.prefix.len() + 1 + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut key = Vec::with_capacity(len);
        key.extend_from_slice(&self.prefix);
        key.push(tag);
        for part in parts {
            key.extend_from_slice(part);
        }
        key
    }
}

/// Appends `value` as 8 bytes, big-endian.
pub fn put_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// Reads values written by the `put_*` functions, front to back.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> super::Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(super::StreamError::Corrupt(format!(
                "{} bytes left where {n} were expected",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// The next 8-byte integer.
    pub fn i64(&mut self) -> super::Result<i64> {
        let bytes = self.take(8)?;
        Ok(i64::from_be_bytes(bytes.try_into().unwrap_or([0; 8])))
    }

    /// The next 16-byte integer.
    pub fn i128(&mut self) -> super::Result<i128> {
        let bytes = self.take(16)?;
        Ok(i128::from_be_bytes(bytes.try_into().unwrap_or([0; 16])))
    }

    /// The next 8-byte float.
    pub fn f64(&mut self) -> super::Result<f64> {
        Ok(f64::from_bits(self.i64()? as u64))
    }
}

/// Appends a length-prefixed byte string.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_i64(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

/// The smallest key after every key starting with `prefix` (the end of its range).
pub fn upper_bound(prefix: &[u8]) -> Vec<u8> {
    crate::storage::prefix_upper_bound(prefix).unwrap_or_else(|| vec![0xff; 32])
}

/// Row-format fields of `fields`' types, in ascending order: the encoding of whole rows.
pub fn sort_fields(fields: &[datafusion::arrow::datatypes::FieldRef]) -> Vec<SortField> {
    fields
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect()
}

/// Encodes each row's PARTITION BY values as the prefix of its state keys (Arrow's row format:
/// no partition's key is a prefix of another's). Without expressions every row is in the one
/// partition with the empty key.
#[derive(Debug)]
pub struct Partitioner {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    codec: Option<RowConverter>,
}

impl Partitioner {
    /// Partitions rows of `schema` by `exprs`.
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: &SchemaRef) -> super::Result<Self> {
        let codec = if exprs.is_empty() {
            None
        } else {
            let fields = exprs
                .iter()
                .map(|e| Ok(SortField::new(e.data_type(schema)?)))
                .collect::<super::Result<Vec<_>>>()?;
            Some(RowConverter::new(fields)?)
        };
        Ok(Self { exprs, codec })
    }

    /// The partition key of every row of `batch`.
    pub fn keys(&self, batch: &RecordBatch, errors: &ExprErrors) -> super::Result<Vec<Box<[u8]>>> {
        let Some(codec) = &self.codec else {
            return Ok(vec![Box::default(); batch.num_rows()]);
        };
        let columns = self
            .exprs
            .iter()
            .map(|e| super::project::evaluate(e, batch, errors))
            .collect::<super::Result<Vec<_>>>()?;
        let rows = codec.convert_columns(&columns)?;
        Ok(rows.iter().map(|r| r.data().into()).collect())
    }

    /// The expressions, for EXPLAIN.
    pub fn explain(&self) -> String {
        let exprs: Vec<String> = self.exprs.iter().map(|e| e.to_string()).collect();
        exprs.join(", ")
    }
}
