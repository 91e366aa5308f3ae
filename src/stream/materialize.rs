//! Materialize: the root of every view's dataflow. It writes the view's rows into the view's
//! storage — laid out like a table's, so SELECTs and key lookups read a view exactly as they
//! read a table — and passes the consolidated changes on to views defined on this view.
//!
//! A view with a key (its GROUP BY columns, or the key of what it selects from) stores one row
//! per key, written without reading the old one; a view without one stores each distinct row
//! once with its multiplicity, which the operator keeps in a state table (cached within the
//! views' budget, and never read for a row known to be new) — unless its rows are only ever
//! inserted (a projection or filter of a source, an inner join of two): then each row is
//! appended under its sequence number, and nothing is read to write it.
//!
//! A key the view declares (`WITH (primary_key = '...')`) rather than one the planner derives
//! is checked: each change is applied against the stored row, a second row for a key is
//! refused — the view's creation fails on it while the view backfills, and later it is counted
//! in the view's errors, the stored row kept — and what reaches readers is what was stored.

use datafusion::common::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, Int64Array};
use datafusion::arrow::datatypes::SchemaRef;

use std::sync::atomic::{AtomicI64, Ordering};

use super::change::consolidate;
use super::state::{CacheBudget, Reader, StateScope, StateTable};
use super::{ChangeBatch, ExprErrors, Operator, Result, StreamError, Watermark};
use crate::storage::{Store, WriteBatch};
use crate::table::Table;

/// An encoded row and its weight.
type Weighted = (Box<[u8]>, i64);

/// The multiplicity of a counted view's row as stored: the encoding followed by the count.
fn decode_count(_: &[u8], stored: Vec<u8>) -> Result<i64> {
    let (_, count) =
        crate::table::split_count(&stored).map_err(|e| StreamError::Corrupt(e.to_string()))?;
    Ok(count)
}

/// Writes a view's changes into its storage.
#[derive(Debug)]
pub struct MaterializeOp {
    table: Arc<Table>,
    store: Store,
    /// Changes of this epoch of a view with a declared key or counted rows: key → (value,
    /// weight) in arrival order.
    pending: HashMap<Box<[u8]>, Vec<Weighted>>,
    /// Changes of this epoch of a view with a derived key, as they came.
    keyed: Vec<ChangeBatch>,
    /// Writes for the next checkpoint: storage key → new value (`None` deletes).
    staged: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Rows in the view, and where it is stored and published.
    rows: i64,
    rows_key: Vec<u8>,
    published_rows: Arc<AtomicI64>,
    /// Watermarks that arrived this epoch: they follow the epoch's changes to readers.
    watermarks: Vec<Watermark>,
    /// An appended view's rows since the last checkpoint (`None` for other views).
    appended: Option<Appended>,
    /// How a declared key is checked (`None` for keys the planner derived).
    check: Option<KeyCheck>,
    /// A counted view's stored multiplicities by row key, cached: what `staged` writes over.
    counted: Option<StateTable<i64>>,
}

/// The checking of a declared key.
#[derive(Debug)]
struct KeyCheck {
    /// Where rows refused after creation are counted.
    errors: Arc<ExprErrors>,
    /// Until the first barrier (the backfill of a view being created): a violation fails it.
    strict: bool,
}

/// An appended view's rows: written under their sequence numbers, never read back.
#[derive(Debug, Default)]
struct Appended {
    /// This epoch's changes, passed on as they came at the barrier.
    epoch: Vec<ChangeBatch>,
    /// Rows this epoch added (the sum of its weights): the next epoch's rows start after them.
    epoch_rows: i64,
    /// Rows staged for the checkpoint: encoded values each followed by its count, back to back.
    data: Vec<u8>,
    /// Each staged row's sequence number and where its bytes end in `data`.
    ends: Vec<(u64, usize)>,
}

impl Appended {
    /// Stages `changes` for `table`, whose rows before this epoch number `rows`: every row gets
    /// the next sequence number; nothing is read.
    fn push(&mut self, table: &Table, rows: i64, mut changes: ChangeBatch) -> Result<()> {
        if changes.weights().values().iter().any(|&w| w <= 0) {
            // The planner only appends rows of append-only inputs.
            tracing::error!(view = table.name(), "a retraction in an append-only view");
            let inserts = datafusion::arrow::compute::kernels::cmp::gt(
                changes.weights(),
                &Int64Array::new_scalar(0),
            )?;
            changes = changes.filter(&inserts)?;
        }
        let values = table.codec().encode_values(changes.rows())?;
        for (row, &weight) in changes.weights().values().iter().enumerate() {
            let seq = rows + self.epoch_rows;
            self.epoch_rows += weight;
            self.data.extend_from_slice(values.row(row).data());
            self.data.extend_from_slice(&weight.to_be_bytes());
            self.ends.push((seq as u64, self.data.len()));
        }
        let columns = changes.rows().columns().to_vec();
        self.epoch
            .push(changes.with_columns(table.full_schema().clone(), columns)?);
        Ok(())
    }

    /// Writes the staged rows of `table` into `batch`.
    fn write(&mut self, table: &Table, batch: &mut WriteBatch) {
        // Sequence numbers rise, so the keys arrive in order.
        let mut key = table.row_key(&[]);
        let prefix = key.len();
        let mut start = 0;
        for &(seq, end) in &self.ends {
            key.truncate(prefix);
            key.extend_from_slice(&seq.to_be_bytes());
            batch.put(&key, &self.data[start..end]);
            start = end;
        }
        self.data.clear();
        self.ends.clear();
    }
}

impl MaterializeOp {
    /// Adds to `batch` the index changes of this epoch's writes: the entries of the rows staged
    /// to be replaced or deleted go, those of the rows staged or appended come.
    fn update_indexes(
        &self,
        indexes: &[Arc<crate::table::index::Index>],
        batch: &mut WriteBatch,
    ) -> Result<()> {
        let counted = self.table.def().counted;
        let row_of = |value: &[u8]| -> Result<Vec<u8>> {
            Ok(if counted {
                crate::table::split_count(value)
                    .map_err(|e| StreamError::Internal(e.to_string()))?
                    .0
                    .to_vec()
            } else {
                value.to_vec()
            })
        };
        let prefix = self.table.row_key(&[]).len();
        let keys: Vec<Vec<u8>> = self.staged.iter().map(|(k, _)| k.clone()).collect();
        let (mut old_keys, mut old_values) = (Vec::new(), Vec::new());
        for (key, old) in keys.iter().zip(self.store.multi_get(&keys)?) {
            if let Some(old) = old {
                old_keys.push(key[prefix..].to_vec());
                old_values.push(row_of(&old)?);
            }
        }
        let (mut new_keys, mut new_values) = (Vec::new(), Vec::new());
        for (key, new) in &self.staged {
            if let Some(new) = new {
                new_keys.push(key[prefix..].to_vec());
                new_values.push(row_of(new)?);
            }
        }
        if let Some(appended) = &self.appended {
            let mut start = 0;
            for &(seq, end) in &appended.ends {
                new_keys.push(seq.to_be_bytes().to_vec());
                new_values.push(appended.data[start..end - 8].to_vec());
                start = end;
            }
        }
        let codec = self.table.codec();
        let decode = |values: &[Vec<u8>]| codec.decode_values(values.iter().map(Vec::as_slice));
        let (old_rows, new_rows) = (decode(&old_values)?, decode(&new_values)?);
        for index in indexes {
            index
                .update(
                    &self.store,
                    batch,
                    (&old_rows, &old_keys),
                    (&new_rows, &new_keys),
                    |_| String::new(),
                )
                .map_err(|e| StreamError::Internal(e.to_string()))?;
        }
        Ok(())
    }

    /// Materializes into `table` (a view's storage); keeps the view's row count in `rows`, and a
    /// counted view's rows cached within `budget`.
    pub fn new(
        table: Arc<Table>,
        store: Store,
        rows: Arc<AtomicI64>,
        budget: Arc<CacheBudget>,
    ) -> Result<Self> {
        let scope = StateScope::new(store.clone(), table.def().id, u16::MAX).with_budget(budget);
        let rows_key = scope.key(b'n', &[]);
        let counted = if table.def().counted && !table.def().appended {
            Some(StateTable::at(scope, table.def().key_prefix().to_vec())?)
        } else {
            None
        };
        let count = store
            .get(&rows_key)?
            .map(|v| Reader::new(&v).i64())
            .transpose()?
            .unwrap_or(0);
        rows.store(count, Ordering::SeqCst);
        Ok(Self {
            appended: table.def().appended.then(Appended::default),
            table,
            store,
            pending: HashMap::new(),
            keyed: Vec::new(),
            staged: Vec::new(),
            rows: count,
            rows_key,
            published_rows: rows,
            watermarks: Vec::new(),
            check: None,
            counted,
        })
    }

    /// Checks the view's key, which the view declared: a violation fails the first barrier
    /// when `strict` (the view is being created), and is counted in `errors` after that.
    pub fn checking_key(mut self, errors: Arc<ExprErrors>, strict: bool) -> Self {
        self.check = Some(KeyCheck { errors, strict });
        self
    }

    /// A declared key: each key's changes are applied to its stored row. A retraction removes
    /// the stored row when it is that row (else it retracts a row refused before); an
    /// insertion is stored when the key has no row, and refused when it has one.
    fn barrier_checked(&mut self) -> Result<Vec<(Box<[u8]>, i64)>> {
        let mut nets = Vec::new();
        for (key, changes) in std::mem::take(&mut self.pending) {
            let net = consolidate(changes);
            if !net.is_empty() {
                nets.push((key, net));
            }
        }
        let keys: Vec<Vec<u8>> = nets.iter().map(|(k, _)| self.table.row_key(k)).collect();
        let stored = self.store.multi_get(&keys)?;
        let mut emitted = Vec::new();
        let mut refused: u64 = 0;
        let mut example: Option<Box<[u8]>> = None;
        for ((storage_key, old), (_, net)) in keys.into_iter().zip(stored).zip(nets) {
            let old: Option<Box<[u8]>> = old.map(Vec::into_boxed_slice);
            let mut current = old.clone();
            for (value, _) in net.iter().filter(|(_, w)| *w < 0) {
                if current.as_ref() == Some(value) {
                    current = None;
                }
            }
            for (value, weight) in net.iter().filter(|(_, w)| *w > 0) {
                let mut weight = *weight;
                if current.is_none() {
                    current = Some(value.clone());
                    weight -= 1;
                }
                if weight > 0 {
                    refused += weight as u64;
                    example.get_or_insert_with(|| value.clone());
                }
            }
            if current == old {
                continue;
            }
            if let Some(old) = old {
                emitted.push((old, -1));
            }
            if let Some(new) = &current {
                emitted.push((new.clone(), 1));
            }
            self.staged
                .push((storage_key, current.map(|v| v.into_vec())));
        }
        if let (Some(check), Some(value)) = (&mut self.check, example) {
            let rows = self.table.codec().decode_values([value.as_ref()])?;
            let key = self
                .table
                .describe_columns(&self.table.def().primary_key, &rows, 0);
            let view = self.table.name();
            if check.strict {
                return Err(StreamError::Table(Box::new(crate::Error::coded(
                    "23505",
                    format!(
                        "could not create materialized view \"{view}\": its rows break the primary key it declares: {key} is duplicated"
                    ),
                ))));
            }
            check.errors.record(
                refused,
                format!(
                    "duplicate key value violates the primary key of materialized view \"{view}\": {key} already exists; the row was not kept"
                ),
            );
        }
        if let Some(check) = &mut self.check {
            check.strict = false;
        }
        Ok(emitted)
    }

    /// Keyed: the net change of each key is the removal of its old row and the insertion of
    /// its new one. The epoch's changes are encoded and ordered by key in one pass each; the
    /// changes of a key that cancel nothing (a group whose row changed gives the retraction of
    /// its old row and its new row) are written and passed on as they came, without building
    /// anything per row.
    fn barrier_keyed(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        let batches = std::mem::take(&mut self.keyed);
        let changes = match batches.len() {
            0 => return Ok(()),
            1 => batches.into_iter().next().unwrap_or_else(|| unreachable!()),
            _ => {
                let rows = datafusion::arrow::compute::concat_batches(
                    &batches[0].schema(),
                    batches.iter().map(ChangeBatch::rows),
                )?;
                let weights = Int64Array::from_iter_values(
                    batches
                        .iter()
                        .flat_map(|b| b.weights().values().iter().copied()),
                );
                ChangeBatch::new(rows, weights)
            }
        };
        let codec = self.table.codec();
        let rows = changes.rows();
        let weights = changes.weights().values();
        let values = codec.encode_values(rows)?;
        // A view with an empty key (a global aggregate) has one row, under the empty key.
        let keys = if self.table.def().primary_key.is_empty() {
            None
        } else {
            Some(codec.encode_keys(&codec.key_columns(rows))?)
        };
        let key_of = |i: usize| -> &[u8] {
            match &keys {
                Some(keys) => keys.row(i).data(),
                None => &[],
            }
        };
        // A key's changes stay in arrival order.
        let order = crate::storage::key_order(changes.len(), key_of);
        let mut kept = vec![false; changes.len()];
        // Net changes of keys with several changes that do not cancel, to decode and pass on.
        let mut netted: Vec<Weighted> = Vec::new();
        let mut emitted_rows = 0i64;
        let mut run = 0;
        while run < order.len() {
            let key = key_of(order[run]);
            let end = order[run..]
                .iter()
                .position(|&i| key_of(i) != key)
                .map_or(order.len(), |n| run + n);
            if end - run == 1 {
                let i = order[run];
                let weight = weights[i];
                if weight == 0 {
                    run = end;
                    continue;
                }
                if weight > 1 {
                    tracing::error!(view = self.table.name(), "two rows for one view key");
                }
                let value = (weight > 0).then(|| values.row(i).data().to_vec());
                self.staged.push((self.table.row_key(key), value));
                kept[i] = true;
                emitted_rows += weight;
            } else {
                let net = consolidate(
                    order[run..end]
                        .iter()
                        .map(|&i| (values.row(i).data(), weights[i])),
                );
                if !net.is_empty() {
                    let mut new_value = None;
                    for (value, weight) in &net {
                        if *weight > 0 {
                            if *weight != 1 || new_value.is_some() {
                                tracing::error!(
                                    view = self.table.name(),
                                    "two rows for one view key"
                                );
                            }
                            new_value = Some(value.to_vec());
                        }
                        emitted_rows += weight;
                    }
                    self.staged.push((self.table.row_key(key), new_value));
                    if net.len() == end - run {
                        // Nothing cancelled: the changes pass on as they came.
                        for &i in &order[run..end] {
                            kept[i] = true;
                        }
                    } else {
                        netted.extend(net.into_iter().map(|(v, w)| (Box::from(v), w)));
                    }
                }
            }
            run = end;
        }
        self.rows += emitted_rows;
        let schema = self.table.full_schema().clone();
        let passed = changes.filter(&BooleanArray::from(kept))?;
        if !passed.is_empty() {
            let columns = passed.rows().columns().to_vec();
            out.push(passed.with_columns(schema, columns)?);
        }
        if !netted.is_empty() {
            let rows = codec.decode_values(netted.iter().map(|(v, _)| v.as_ref()))?;
            let weights = Int64Array::from_iter_values(netted.iter().map(|(_, w)| *w));
            out.push(ChangeBatch::new(rows, weights));
        }
        Ok(())
    }

    /// Counted: each distinct row's multiplicity changes by its net weight.
    fn barrier_counted(&mut self) -> Result<Vec<(Box<[u8]>, i64)>> {
        let pending = std::mem::take(&mut self.pending);
        let mut net = Vec::with_capacity(pending.len());
        for (key, changes) in pending {
            let total: i64 = changes.iter().map(|(_, w)| w).sum();
            if total != 0 {
                net.push((key, changes[0].0.clone(), total));
            }
        }
        let rows = self
            .counted
            .as_mut()
            .ok_or_else(|| StreamError::Internal("a counted view without its rows".into()))?;
        let keys: Vec<&[u8]> = net.iter().map(|(k, _, _)| k.as_ref()).collect();
        rows.load(&keys, decode_count)?;
        let mut emitted = Vec::with_capacity(net.len());
        for (key, value, weight) in net {
            let slot = rows
                .get_mut(&key)
                .ok_or_else(|| StreamError::Internal("a counted row not loaded".into()))?;
            let old_count = slot.unwrap_or(0);
            let count = old_count + weight;
            if count < 0 {
                tracing::error!(
                    view = self.table.name(),
                    "a row retracted more often than inserted"
                );
            }
            *slot = (count > 0).then_some(count);
            let new = (count > 0).then(|| {
                let mut v = value.to_vec();
                v.extend_from_slice(&count.to_be_bytes());
                v
            });
            self.staged.push((self.table.row_key(&key), new));
            emitted.push((value, weight));
        }
        Ok(emitted)
    }
}

impl Operator for MaterializeOp {
    fn process(&mut self, _: usize, changes: ChangeBatch, _: &mut Vec<ChangeBatch>) -> Result<()> {
        if let Some(appended) = &mut self.appended {
            return appended.push(&self.table, self.rows, changes);
        }
        if self.check.is_none() && !self.table.def().counted {
            if !changes.is_empty() {
                self.keyed.push(changes);
            }
            return Ok(());
        }
        let codec = self.table.codec();
        let rows = changes.rows();
        let values = codec.encode_values(rows)?;
        // A view with an empty key (a global aggregate) has one row, under the empty key.
        let keys = if self.table.def().primary_key.is_empty() {
            None
        } else {
            Some(codec.encode_keys(&codec.key_columns(rows))?)
        };
        for (row, weight) in changes.weights().values().iter().enumerate() {
            let key: Box<[u8]> = match &keys {
                Some(keys) => keys.row(row).data().into(),
                None => Box::from(&[][..]),
            };
            self.pending
                .entry(key)
                .or_default()
                .push((values.row(row).data().into(), *weight));
        }
        Ok(())
    }

    fn on_barrier(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        if let Some(appended) = &mut self.appended {
            self.rows += std::mem::take(&mut appended.epoch_rows);
            out.append(&mut appended.epoch);
            return Ok(());
        }
        let emitted = if self.check.is_some() {
            self.barrier_checked()?
        } else if self.table.def().counted {
            self.barrier_counted()?
        } else {
            return self.barrier_keyed(out);
        };
        if emitted.is_empty() {
            return Ok(());
        }
        self.rows += emitted.iter().map(|(_, w)| w).sum::<i64>();
        let rows = self
            .table
            .codec()
            .decode_values(emitted.iter().map(|(v, _)| v.as_ref()))?;
        let weights = Int64Array::from_iter_values(emitted.iter().map(|(_, w)| *w));
        out.push(ChangeBatch::new(rows, weights));
        Ok(())
    }

    fn on_watermark(
        &mut self,
        _: usize,
        watermark: Watermark,
        _: &mut Vec<Watermark>,
    ) -> Result<()> {
        super::watermark::hold(&mut self.watermarks, watermark);
        Ok(())
    }

    fn held_watermarks(&mut self, out: &mut Vec<Watermark>) {
        out.append(&mut self.watermarks);
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) -> Result<()> {
        let indexes = self.table.indexes();
        if !indexes.is_empty() {
            self.update_indexes(&indexes, batch)?;
        }
        let appended = self.appended.as_mut().filter(|a| !a.ends.is_empty());
        if !self.staged.is_empty() || appended.is_some() {
            batch.put(&self.rows_key, self.rows.to_be_bytes());
            self.published_rows.store(self.rows, Ordering::SeqCst);
        }
        if let Some(appended) = appended {
            appended.write(&self.table, batch);
        }
        if let Some(rows) = &mut self.counted {
            // The staged writes below store what the cached rows now hold.
            rows.checkpoint(batch, |_, _, _| Ok(()))?;
        }
        // In key order: RocksDB's memtable inserts sorted keys much faster than scattered ones.
        let staged = std::mem::take(&mut self.staged);
        for i in crate::storage::key_order(staged.len(), |i| &staged[i].0) {
            match &staged[i] {
                (key, Some(value)) => batch.put(key, value),
                (key, None) => batch.delete(key),
            }
        }
        Ok(())
    }

    fn evict(&mut self) {
        if let Some(rows) = &mut self.counted {
            rows.evict();
        }
    }

    fn schema(&self) -> SchemaRef {
        self.table.full_schema().clone()
    }

    fn explain(&self) -> String {
        let def = self.table.def();
        if def.appended {
            format!("Materialize: {} (rows appended)", def.name)
        } else if def.counted {
            format!("Materialize: {} (rows counted)", def.name)
        } else {
            let key: Vec<&str> = def
                .primary_key
                .iter()
                .map(|&i| def.columns[i].name.as_str())
                .collect();
            format!("Materialize: {} key=[{}]", def.name, key.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::DataType;

    use super::*;
    use crate::stream::change::pretty::{changes, net};
    use crate::table::{ColumnDef, TableDef};

    fn view(store: &Store, counted: bool) -> (Arc<Table>, MaterializeOp) {
        view_of(store, counted, false)
    }

    fn view_of(store: &Store, counted: bool, appended: bool) -> (Arc<Table>, MaterializeOp) {
        let column = |name: &str, t: DataType| ColumnDef::nullable(name, &t);
        let def = TableDef {
            id: 7,
            name: "v".into(),
            columns: vec![column("k", DataType::Int64), column("name", DataType::Utf8)],
            primary_key: if counted { vec![0, 1] } else { vec![0] },
            definition: String::new(),
            counted,
            appended,
            append_only: appended,
            watermark: None,
            temporary: false,
            checks: Vec::new(),
            foreign_keys: Vec::new(),
            connector: None,
        };
        let table = Arc::new(Table::new(def, 0, |_| unreachable!()).unwrap());
        let op = MaterializeOp::new(
            table.clone(),
            store.clone(),
            Arc::new(AtomicI64::new(0)),
            CacheBudget::new(1 << 20),
        )
        .unwrap();
        (table, op)
    }

    fn epoch(op: &mut MaterializeOp, store: &Store, input: &str) -> Vec<String> {
        let mut out = Vec::new();
        op.process(0, changes(input), &mut out).unwrap();
        op.on_barrier(&mut out).unwrap();
        let mut batch = WriteBatch::default();
        op.checkpoint(&mut batch).unwrap();
        store.write(batch).unwrap();
        net(&out)
    }

    fn stored(store: &Store, table: &Table) -> usize {
        store.measure_prefix(&table.def().key_prefix()).unwrap().0
    }

    #[test]
    fn keyed_rows_are_replaced_and_cancelled_changes_keep_the_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let (table, mut op) = view(&store, false);
        assert_eq!(
            epoch(&mut op, &store, "I T\n+ 1 a\n+ 2 b"),
            vec!["+ 1 a", "+ 2 b"]
        );
        assert_eq!(
            epoch(&mut op, &store, "I T\n- 1 a\n+ 1 z"),
            vec!["- 1 a", "+ 1 z"]
        );
        // Changes that cancel within an epoch leave the stored row alone.
        assert!(epoch(&mut op, &store, "I T\n- 2 b\n+ 2 b").is_empty());
        assert_eq!(stored(&store, &table), 2);
        assert_eq!(epoch(&mut op, &store, "I T\n- 2 b"), vec!["- 2 b"]);
        assert_eq!(stored(&store, &table), 1);
        assert_eq!(op.rows, 1);
    }

    #[test]
    fn rows_without_a_key_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let (table, mut op) = view(&store, true);
        assert_eq!(
            epoch(&mut op, &store, "I T\n+ 1 a\n+ 1 a\n+ 2 b"),
            vec!["+2 1 a", "+ 2 b"]
        );
        assert_eq!(stored(&store, &table), 2);
        assert_eq!(epoch(&mut op, &store, "I T\n- 1 a"), vec!["- 1 a"]);
        assert_eq!(epoch(&mut op, &store, "I T\n- 1 a"), vec!["- 1 a"]);
        assert_eq!(stored(&store, &table), 1);
        assert_eq!(op.rows, 1);
    }

    /// Every stored row with its multiplicity, read as SELECT reads a view.
    fn read(store: &Store, table: &Table) -> Vec<String> {
        let mut rows = Vec::new();
        table
            .read_batches(store, None, 2, |batch, counts| {
                let ks = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap();
                let names = batch
                    .column(1)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::StringArray>()
                    .unwrap();
                for (i, count) in counts.into_iter().enumerate() {
                    rows.push(format!("{count} {} {}", ks.value(i), names.value(i)));
                }
                Ok(true)
            })
            .unwrap();
        rows
    }

    #[test]
    fn appended_rows_keep_arrival_order_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let (table, mut op) = view_of(&store, true, true);
        assert_eq!(
            epoch(&mut op, &store, "I T\n+ 2 b\n+ 1 a\n+ 1 a"),
            vec!["+2 1 a", "+ 2 b"]
        );
        // Equal rows are stored apart, in arrival order; a weight above one is kept as a count.
        assert_eq!(epoch(&mut op, &store, "I T\n+3 0 z"), vec!["+3 0 z"]);
        assert_eq!(read(&store, &table), ["1 2 b", "1 1 a", "1 1 a", "3 0 z"]);
        assert_eq!(op.rows, 6);
        // A restarted view goes on after the last row instead of overwriting the first ones.
        let (table, mut op) = view_of(&store, true, true);
        assert_eq!(op.rows, 6);
        assert_eq!(epoch(&mut op, &store, "I T\n+ 5 e"), vec!["+ 5 e"]);
        assert_eq!(
            read(&store, &table),
            ["1 2 b", "1 1 a", "1 1 a", "3 0 z", "1 5 e"]
        );
        assert_eq!(op.rows, 7);
    }
}
