//! Where an operator keeps its state in RocksDB.
//!
//! Every stateful operator of a view owns the key range `s` + view id (u32 BE) + operator
//! position (u16 BE). Inside it, a one-byte tag separates kinds of entries (an aggregate's
//! groups from its value multisets, a join's left rows from its right rows), followed by keys in
//! Arrow's row format. Dropping a view deletes `s` + view id.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::ExprErrors;
use crate::storage::Store;

pub mod table;

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

/// State an operator wrote since its last checkpoint (`None`: deleted), read over the store:
/// what an operator that reads its state back in ranges sees before the epoch commits.
#[derive(Debug, Default)]
pub struct Overlay {
    entries: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Key ranges deleted since the last checkpoint, applied after the writes.
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Overlay {
    /// Sets `key` to `value`, or deletes it with `None`.
    pub fn set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.entries.insert(key, value);
    }

    /// The value of `key` as it stands: this epoch's write, else the store's.
    pub fn get(&self, store: &Store, key: &[u8]) -> super::Result<Option<Vec<u8>>> {
        match self.entries.get(key) {
            Some(value) => Ok(value.clone()),
            None => Ok(store.get(key)?),
        }
    }

    /// The values of `keys` as they stand, the stored ones read in one call.
    pub fn get_many(&self, store: &Store, keys: &[Vec<u8>]) -> super::Result<Vec<Option<Vec<u8>>>> {
        let unwritten: Vec<Vec<u8>> = keys
            .iter()
            .filter(|k| !self.entries.contains_key(*k))
            .cloned()
            .collect();
        let mut stored = store.multi_get(&unwritten)?.into_iter();
        Ok(keys
            .iter()
            .map(|k| match self.entries.get(k) {
                Some(value) => value.clone(),
                None => stored.next().flatten(),
            })
            .collect())
    }

    /// The first entry of `[from, to)` as it stands: the store under this epoch's writes.
    pub fn first(
        &self,
        store: &Store,
        from: &[u8],
        to: &[u8],
    ) -> super::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut stored = None;
        store.scan_range::<super::StreamError>(from, to, |k, v| {
            if matches!(self.entries.get(k), Some(None)) {
                return Ok(true);
            }
            stored = Some((k.to_vec(), v.to_vec()));
            Ok(false)
        })?;
        let written = self
            .entries
            .range(from.to_vec()..to.to_vec())
            .find_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())));
        Ok(match (stored, written) {
            (Some(s), Some(w)) => Some(if w.0 <= s.0 { w } else { s }),
            (s, w) => w.or(s),
        })
    }

    /// Deletes the keys in `[from, to)`, written or stored, at the checkpoint. Until then the
    /// stored ones still read: callers delete what they will not read again.
    pub fn delete_range(&mut self, from: Vec<u8>, to: Vec<u8>) {
        let keys: Vec<Vec<u8>> = self
            .entries
            .range(from.clone()..to.clone())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.entries.remove(&key);
        }
        self.ranges.push((from, to));
    }

    /// Applies the writes to keys in `[from, to)` to `found`, entries read from the store.
    pub fn apply(
        &self,
        found: &mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
        from: &[u8],
        to: &[u8],
    ) {
        for (k, v) in self.entries.range(from.to_vec()..to.to_vec()) {
            match v {
                Some(v) => found.insert(k.clone(), v.clone()),
                None => found.remove(k),
            };
        }
    }

    /// The entries of `[from, to)` in `store` with the writes applied.
    pub fn read(
        &self,
        store: &Store,
        from: &[u8],
        to: &[u8],
    ) -> super::Result<std::collections::BTreeMap<Vec<u8>, Vec<u8>>> {
        let mut found = std::collections::BTreeMap::new();
        store.scan_range::<super::StreamError>(from, to, |k, v| {
            found.insert(k.to_vec(), v.to_vec());
            Ok(true)
        })?;
        self.apply(&mut found, from, to);
        Ok(found)
    }

    /// Moves the writes, then the range deletions, into `batch`.
    pub fn flush(&mut self, batch: &mut crate::storage::WriteBatch) {
        for (key, value) in std::mem::take(&mut self.entries) {
            match value {
                Some(value) => batch.put(key, value),
                None => batch.delete(key),
            }
        }
        for (from, to) in std::mem::take(&mut self.ranges) {
            batch.delete_range(from.as_slice(), to.as_slice());
        }
    }
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
