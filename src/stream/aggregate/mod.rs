//! GROUP BY and global aggregates, maintained under inserts and retractions.
//!
//! Each group's state (its row count and one [`Acc`] per call) is cached in memory and stored
//! under the operator's `g` entries, keyed by the group key in Arrow's row format; the value
//! multisets of calls that need them under `m` + call index + group key + value. Changes are
//! applied as they arrive; each group that changed emits once per epoch, at the barrier: the
//! retraction of the row it had at the last barrier and its new row. A global aggregate (no
//! GROUP BY) always has exactly one row, as in PostgreSQL.
//!
//! Grouped by a column that carries a watermark (a window's start or end), a group below the
//! watermark can no longer change: at the barrier it is closed and its state deleted. That
//! column comes first in the stored keys, so the closed groups are one key range, read and
//! deleted at once. Under `EMIT ON WINDOW CLOSE` groups emit nothing while they change and
//! their one final row when they close: the output only grows.

pub mod acc;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;

pub use acc::{Acc, AggCall, AggKind};

use super::project::evaluate;
use super::state::{Reader, Record, StateScope, StateTable, put_i64, sort_fields};
use super::watermark::{Derived, hold};
use super::{ChangeBatch, ExprErrors, Operator, Result, StreamError, Watermark};
use crate::storage::WriteBatch;

const GROUP_TAG: u8 = b'g';
const VALUE_TAG: u8 = b'm';

#[derive(Debug)]
struct Group {
    rows: i64,
    accs: Vec<Acc>,
    /// The values emitted at the last barrier, encoded (`None`: the group had no row).
    emitted: Option<Box<[u8]>>,
}

impl Group {
    fn empty(calls: &[AggCall]) -> Self {
        Group {
            rows: 0,
            accs: calls.iter().map(AggCall::empty).collect(),
            emitted: None,
        }
    }
}

impl Record for Group {
    fn size(&self) -> usize {
        let accs: usize = self
            .accs
            .iter()
            .map(|acc| match acc {
                Acc::Extreme(Some(v)) => 48 + v.len(),
                Acc::Multiset { values, changed } => {
                    64 + values.keys().map(|v| 48 + v.len()).sum::<usize>()
                        + changed.iter().map(|v| 32 + v.len()).sum::<usize>()
                }
                _ => 48,
            })
            .sum();
        let emitted = self.emitted.as_ref().map_or(0, |row| 16 + row.len());
        48 + accs + emitted
    }
}

/// A hash aggregate over change batches.
#[derive(Debug)]
pub struct AggregateOp {
    schema: SchemaRef,
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    calls: Vec<AggCall>,
    /// Encodes group keys (unused without GROUP BY).
    keys: RowConverter,
    /// Encodes a group's output values (the columns after the group columns).
    values: RowConverter,
    state: StateScope,
    /// The groups, by key; a cached key without a group has no rows. The groups it has seen
    /// change since the last checkpoint are those whose rows may change at the barrier.
    groups: StateTable<Group>,
    errors: Arc<ExprErrors>,
    /// Group columns (outputs) that carry an input column's watermark.
    watermarks: Vec<Derived>,
    /// Group positions in the order their values make up a stored key: the column groups are
    /// closed by first.
    key_order: Vec<usize>,
    /// Groups are closed by this group column's watermark.
    close_on: Option<usize>,
    /// Encodes a value of the `close_on` column alone: the bound of the closed keys.
    close_keys: Option<RowConverter>,
    /// Its watermark, to close groups below at the next barrier.
    closing: Option<ScalarValue>,
    /// Keys below this (encoded) bound are closed; deleted from storage at the checkpoint.
    closed_below: Option<Vec<u8>>,
    /// `EMIT ON WINDOW CLOSE`: a group emits its row once, when it closes.
    emit_on_close: bool,
    /// Output watermarks, given after the barrier's changes.
    held: Vec<Watermark>,
}

impl AggregateOp {
    /// Counts the rows whose expressions fail (they get NULL) in `errors`, the view's.
    pub fn with_errors(mut self, errors: Arc<ExprErrors>) -> Self {
        self.errors = errors;
        self
    }

    /// Groups rows by `group_exprs` (whose types are `group_types`) and computes `calls`;
    /// output rows are the group columns then one column per call, in `schema`.
    pub fn new(
        schema: SchemaRef,
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        calls: Vec<AggCall>,
        state: StateScope,
    ) -> Result<Self> {
        let fields = sort_fields(&schema.fields()[..group_exprs.len()]);
        let value_fields = sort_fields(&schema.fields()[group_exprs.len()..]);
        let mut op = Self {
            schema,
            group_exprs,
            calls,
            keys: RowConverter::new(fields)?,
            values: RowConverter::new(value_fields)?,
            groups: StateTable::new(state.clone(), GROUP_TAG)?,
            state,
            errors: Arc::default(),
            watermarks: Vec::new(),
            key_order: Vec::new(),
            close_on: None,
            close_keys: None,
            closing: None,
            closed_below: None,
            emit_on_close: false,
            held: Vec::new(),
        };
        op.key_order = (0..op.group_exprs.len()).collect();
        if op.is_global() {
            // The one row exists from the start: make sure it is emitted once.
            op.load(&[&[]])?;
            let emitted = matches!(op.groups.get(&[][..]), Some(Some(g)) if g.emitted.is_some());
            if !emitted {
                let calls = &op.calls;
                if let Some(slot) = op.groups.get_mut(&[][..]) {
                    slot.get_or_insert_with(|| Group::empty(calls));
                }
            }
        }
        Ok(op)
    }

    /// Carries watermarks to the group columns `watermarks` and closes the groups below the
    /// first one's; with `emit_on_close`, groups emit their row only then. Stored keys start
    /// with that column: call this before any state is written.
    pub fn with_watermarks(
        mut self,
        watermarks: Vec<Derived>,
        emit_on_close: bool,
    ) -> Result<Self> {
        self.close_on = watermarks.iter().map(|d| d.output).min();
        if let Some(close_on) = self.close_on {
            self.key_order.retain(|&c| c != close_on);
            self.key_order.insert(0, close_on);
            let field = |c: usize| SortField::new(self.schema.field(c).data_type().clone());
            self.keys = RowConverter::new(self.key_order.iter().map(|&c| field(c)).collect())?;
            self.close_keys = Some(RowConverter::new(vec![field(close_on)])?);
        }
        self.watermarks = watermarks;
        self.emit_on_close = emit_on_close && self.close_on.is_some();
        Ok(self)
    }

    fn is_global(&self) -> bool {
        self.group_exprs.is_empty()
    }

    /// Closes the groups below the `close_on` column's watermark: deletes their state and,
    /// under `EMIT ON WINDOW CLOSE`, emits their rows.
    fn close(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        let (Some(value), Some(encoder)) = (self.closing.take(), &self.close_keys) else {
            return Ok(());
        };
        let bound: Vec<u8> = encoder
            .convert_columns(&[value.to_array_of_size(1)?])?
            .row(0)
            .data()
            .to_vec();
        // Closed groups: those stored below the bound, and those changed since the last
        // checkpoint (not stored yet) below it.
        let closed = self.groups.keys_in_range(&[], Some(&bound))?;
        if self.emit_on_close && !closed.is_empty() {
            let keys: Vec<&[u8]> = closed.iter().map(AsRef::as_ref).collect();
            self.load(&keys)?;
            let mut shown: Vec<&[u8]> = Vec::with_capacity(closed.len());
            let mut groups: Vec<&Group> = Vec::with_capacity(closed.len());
            for key in &closed {
                let Some(Some(group)) = self.groups.get(key) else {
                    return Err(StreamError::Internal("closed group not loaded".into()));
                };
                if self.has_row(group) {
                    shown.push(key);
                    groups.push(group);
                }
            }
            if !shown.is_empty() {
                let values = self.value_columns(&groups)?;
                let weights = vec![1; shown.len()];
                out.push(self.batch(&shown, values, weights)?);
            }
        }
        if !closed.is_empty() {
            self.groups.delete_range(&[], &bound);
        }
        if self.closed_below.as_ref().is_none_or(|b| *b < bound) {
            self.closed_below = Some(bound);
        }
        Ok(())
    }

    /// Makes sure the groups with `keys` are in memory, reading the missing ones in one batch.
    fn load(&mut self, keys: &[&[u8]]) -> Result<()> {
        let missing: Vec<&[u8]> = keys
            .iter()
            .copied()
            .filter(|k| self.groups.get(k).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let Self {
            groups,
            calls,
            state,
            ..
        } = self;
        groups.load(&missing, |key, bytes| {
            decode_group(calls, state, key, &bytes)
        })?;
        // Stored state is the state of the last barrier: so are its values.
        let mut loaded: Vec<&[u8]> = Vec::with_capacity(missing.len());
        let mut shown: Vec<&Group> = Vec::with_capacity(missing.len());
        for key in missing {
            if let Some(Some(group)) = self.groups.get(key)
                && self.has_row(group)
                && group.emitted.is_none()
            {
                loaded.push(key);
                shown.push(group);
            }
        }
        if loaded.is_empty() {
            return Ok(());
        }
        let rows = self.values.convert_columns(&self.value_columns(&shown)?)?;
        for (i, key) in loaded.into_iter().enumerate() {
            let row: Box<[u8]> = encoded(&rows, i).into();
            self.groups.update_unchanged(key, |slot| {
                if let Some(group) = slot {
                    group.emitted = Some(row);
                }
            });
        }
        Ok(())
    }

    /// Emits the rows of the groups changed since the last checkpoint (a barrier without a
    /// checkpoint in between finds them emitted already): for each whose values changed, the
    /// retraction of the row it had and its new row. Values are built a column at a time and
    /// compared encoded.
    fn emit_changes(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        let changed = self.groups.changed();
        // Groups with a row now (positions in `changed`), and those whose row went.
        let (mut live, mut live_groups, mut gone) = (Vec::new(), Vec::new(), Vec::new());
        for (i, key) in changed.iter().enumerate() {
            let Some(Some(group)) = self.groups.get(key) else {
                continue;
            };
            if self.has_row(group) {
                live.push(i);
                live_groups.push(group);
            } else if group.emitted.is_some() {
                gone.push(i);
            }
        }
        let columns = self.value_columns(&live_groups)?;
        let rows = self.values.convert_columns(&columns)?;
        // Retractions: (position in `changed`, the row it had); insertions: (position, index
        // into `columns`).
        let mut retracted: Vec<(usize, Box<[u8]>)> = Vec::new();
        let mut inserted: Vec<(usize, u32)> = Vec::new();
        for (at, (&i, group)) in live.iter().zip(&live_groups).enumerate() {
            let row = encoded(&rows, at);
            if group.emitted.as_deref() == Some(row) {
                continue;
            }
            if let Some(old) = &group.emitted {
                retracted.push((i, old.clone()));
            }
            inserted.push((i, at as u32));
        }
        for &i in &gone {
            if let Some(Some(group)) = self.groups.get(&changed[i])
                && let Some(old) = &group.emitted
            {
                retracted.push((i, old.clone()));
            }
        }
        if retracted.is_empty() && inserted.is_empty() {
            return Ok(());
        }
        let keys: Vec<&[u8]> = retracted
            .iter()
            .map(|(i, _)| changed[*i].as_ref())
            .chain(inserted.iter().map(|(i, _)| changed[*i].as_ref()))
            .collect();
        let parser = self.values.parser();
        let before = self
            .values
            .convert_rows(retracted.iter().map(|(_, row)| parser.parse(row)))?;
        let picks = UInt32Array::from_iter_values(inserted.iter().map(|(_, at)| *at));
        let values = before
            .iter()
            .zip(&columns)
            .map(|(old, new)| {
                let new = take(new.as_ref(), &picks, None)?;
                Ok(concat(&[old.as_ref(), new.as_ref()])?)
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let mut weights = vec![-1; retracted.len()];
        weights.resize(keys.len(), 1);
        let batch = self.batch(&keys, values, weights)?;
        // What each group shows now.
        let shown: Vec<(usize, Box<[u8]>)> = inserted
            .iter()
            .map(|(i, at)| (*i, encoded(&rows, *at as usize).into()))
            .collect();
        for i in gone {
            if let Some(Some(group)) = self.groups.changed_mut(i) {
                group.emitted = None;
            }
        }
        for (i, row) in shown {
            if let Some(Some(group)) = self.groups.changed_mut(i) {
                group.emitted = Some(row);
            }
        }
        out.push(batch);
        Ok(())
    }

    /// Whether `group` has a row in the output (a global aggregate always has one).
    fn has_row(&self, group: &Group) -> bool {
        group.rows > 0 || self.is_global()
    }

    /// The output values of `groups`, one column per call.
    fn value_columns(&self, groups: &[&Group]) -> Result<Vec<ArrayRef>> {
        self.calls
            .iter()
            .enumerate()
            .map(|(i, call)| call.column(groups.iter().map(|g| &g.accs[i])))
            .collect()
    }

    /// Output rows: the groups with `keys` and their `values` (one column per call), with
    /// their `weights`.
    fn batch(
        &self,
        keys: &[&[u8]],
        values: Vec<ArrayRef>,
        weights: Vec<i64>,
    ) -> Result<ChangeBatch> {
        let mut columns: Vec<ArrayRef> = if self.is_global() {
            Vec::new()
        } else {
            let parser = self.keys.parser();
            let in_key_order = self
                .keys
                .convert_rows(keys.iter().map(|key| parser.parse(key)))?;
            let mut placed: Vec<(usize, ArrayRef)> =
                self.key_order.iter().copied().zip(in_key_order).collect();
            placed.sort_unstable_by_key(|(position, _)| *position);
            placed.into_iter().map(|(_, array)| array).collect()
        };
        columns.extend(values);
        let options =
            datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(keys.len()));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        Ok(ChangeBatch::new(batch, Int64Array::from(weights)))
    }
}

/// The `i`th of encoded values: empty when there are no values (a GROUP BY without aggregate
/// calls), where `rows` has none.
fn encoded(rows: &Rows, i: usize) -> &[u8] {
    if i < rows.num_rows() {
        rows.row(i).data()
    } else {
        &[]
    }
}

/// A stored group: its row count, then each call's state; the values of multiset calls are
/// read from their own entries.
fn decode_group(calls: &[AggCall], state: &StateScope, key: &[u8], bytes: &[u8]) -> Result<Group> {
    let mut reader = Reader::new(bytes);
    let rows = reader.i64()?;
    let mut accs = Vec::with_capacity(calls.len());
    for (index, call) in calls.iter().enumerate() {
        let mut acc = call.decode_state(&mut reader)?;
        if let Acc::Multiset { values, .. } = &mut acc {
            let prefix = state.key(VALUE_TAG, &[&[index as u8], key]);
            state.store().scan_prefix::<StreamError>(&prefix, |k, v| {
                let count = Reader::new(v).i64()?;
                values.insert(k[prefix.len()..].into(), count);
                Ok(true)
            })?;
        }
        accs.push(acc);
    }
    Ok(Group {
        rows,
        accs,
        emitted: None,
    })
}

impl Operator for AggregateOp {
    fn process(&mut self, _: usize, changes: ChangeBatch, _: &mut Vec<ChangeBatch>) -> Result<()> {
        let rows = changes.rows();
        let n = rows.num_rows();
        let keys = if self.is_global() {
            None
        } else {
            let columns = self
                .group_exprs
                .iter()
                .map(|e| evaluate(e, rows, &self.errors))
                .collect::<Result<Vec<_>>>()?;
            let columns: Vec<ArrayRef> =
                self.key_order.iter().map(|&c| columns[c].clone()).collect();
            Some(self.keys.convert_columns(&columns)?)
        };
        let key_of = |row: usize| -> &[u8] {
            match &keys {
                Some(keys) => keys.row(row).data(),
                None => &[],
            }
        };
        let inputs = self
            .calls
            .iter()
            .map(|c| c.prepare(rows, &self.errors))
            .collect::<Result<Vec<_>>>()?;
        let weights = changes.weights().values();
        // Rows of cached groups are applied at once; the others after one read of all their
        // groups. Aggregates do not depend on the order of their input.
        let mut misses: Vec<usize> = Vec::new();
        for pass in 0..2 {
            let rows_of_pass: Box<dyn Iterator<Item = usize>> = if pass == 0 {
                Box::new(0..n)
            } else {
                if misses.is_empty() {
                    break;
                }
                let keys: Vec<&[u8]> = misses.iter().map(|&row| key_of(row)).collect();
                self.load(&keys)?;
                Box::new(std::mem::take(&mut misses).into_iter())
            };
            let Self { groups, calls, .. } = self;
            for row in rows_of_pass {
                let key = key_of(row);
                let Some(slot) = groups.get_mut(key) else {
                    if pass == 0 {
                        misses.push(row);
                        continue;
                    }
                    return Err(StreamError::Internal("group not loaded".into()));
                };
                let group = slot.get_or_insert_with(|| Group::empty(calls));
                let w = weights[row];
                group.rows += w;
                for ((call, acc), (input, mask)) in
                    calls.iter().zip(group.accs.iter_mut()).zip(&inputs)
                {
                    call.update(acc, input, mask, row, w);
                }
            }
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        _: usize,
        watermark: Watermark,
        _: &mut Vec<Watermark>,
    ) -> Result<()> {
        for mark in Derived::carry(&self.watermarks, &watermark)? {
            if Some(mark.column) == self.close_on
                && self.closing.as_ref().is_none_or(|c| *c < mark.value)
            {
                self.closing = Some(mark.value.clone());
            }
            hold(&mut self.held, mark);
        }
        Ok(())
    }

    fn held_watermarks(&mut self, out: &mut Vec<Watermark>) {
        out.append(&mut self.held);
    }

    fn on_barrier(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        if !self.emit_on_close {
            self.emit_changes(out)?;
        }
        self.close(out)
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) -> Result<()> {
        let global = self.is_global();
        let Self {
            groups,
            calls,
            state,
            ..
        } = self;
        groups.checkpoint(batch, |key, slot, batch| {
            let Some(group) = slot else {
                batch.delete(state.key(GROUP_TAG, &[key]));
                return Ok(());
            };
            for (index, acc) in group.accs.iter_mut().enumerate() {
                if let Acc::Multiset { values, changed } = acc {
                    for value in changed.drain() {
                        let k = state.key(VALUE_TAG, &[&[index as u8], key, &value]);
                        match values.get(&value) {
                            Some(count) => batch.put(k, count.to_be_bytes()),
                            None => batch.delete(k),
                        }
                    }
                }
            }
            let storage_key = state.key(GROUP_TAG, &[key]);
            if group.rows == 0 && !global {
                // The group is gone; its key stays cached as known to have none.
                batch.delete(storage_key);
                *slot = None;
                return Ok(());
            }
            let mut value = Vec::with_capacity(32);
            put_i64(&mut value, group.rows);
            for (call, acc) in calls.iter().zip(&group.accs) {
                call.encode(acc, &mut value);
            }
            batch.put(storage_key, value);
            Ok(())
        })?;
        if let Some(bound) = self.closed_below.take() {
            for (index, call) in self.calls.iter().enumerate() {
                if call.keeps_values() {
                    let index = [index as u8];
                    batch.delete_range(
                        self.state.key(VALUE_TAG, &[&index]),
                        self.state.key(VALUE_TAG, &[&index, &bound]),
                    );
                }
            }
        }
        Ok(())
    }

    fn evict(&mut self) {
        self.groups.evict();
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn explain(&self) -> String {
        let groups: Vec<String> = self.group_exprs.iter().map(|e| e.to_string()).collect();
        let calls: Vec<&str> = self.calls.iter().map(AggCall::text).collect();
        let closing = match (self.close_on, self.emit_on_close) {
            (Some(c), true) => format!(", emit on window close of {}", self.schema.field(c).name()),
            (Some(c), false) => format!(
                ", closed below the watermark of {}",
                self.schema.field(c).name()
            ),
            (None, _) => String::new(),
        };
        format!(
            "Aggregate: groupBy=[{}], aggr=[{}]{closing}",
            groups.join(", "),
            calls.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::ScalarValue;
    use datafusion::physical_expr::expressions::{Column, Literal};

    use super::*;
    use crate::storage::Store;
    use crate::stream::change::pretty::{changes, net};

    fn column(i: usize) -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new(&format!("c{i}"), i))
    }

    fn call(
        kind: AggKind,
        arg: Option<usize>,
        input: DataType,
        output: DataType,
        distinct: bool,
    ) -> AggCall {
        let arg = match arg {
            Some(i) => column(i),
            None => Arc::new(Literal::new(ScalarValue::Int64(Some(1)))),
        };
        AggCall::new(
            kind,
            Some(arg),
            None,
            vec![],
            distinct,
            input,
            output,
            false,
            "call".into(),
        )
        .unwrap()
    }

    /// `c0` groups; count(*), sum(c1), min(c1), max(c1), count(DISTINCT c2), string_agg(c2).
    fn op(store: &Store) -> AggregateOp {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("n", DataType::Int64, true),
            Field::new("sum", DataType::Float64, true),
            Field::new("min", DataType::Float64, true),
            Field::new("max", DataType::Float64, true),
            Field::new("distinct", DataType::Int64, true),
            Field::new("names", DataType::Utf8, true),
        ]));
        let calls = vec![
            call(
                AggKind::Count,
                None,
                DataType::Int64,
                DataType::Int64,
                false,
            ),
            call(
                AggKind::Sum,
                Some(1),
                DataType::Float64,
                DataType::Float64,
                false,
            ),
            call(
                AggKind::Min,
                Some(1),
                DataType::Float64,
                DataType::Float64,
                false,
            ),
            call(
                AggKind::Max,
                Some(1),
                DataType::Float64,
                DataType::Float64,
                false,
            ),
            call(
                AggKind::Count,
                Some(2),
                DataType::Utf8,
                DataType::Int64,
                true,
            ),
            call(
                AggKind::StringAgg {
                    delimiter: ",".into(),
                },
                Some(2),
                DataType::Utf8,
                DataType::Utf8,
                false,
            ),
        ];
        AggregateOp::new(
            schema,
            vec![column(0)],
            calls,
            StateScope::new(store.clone(), 1, 0),
        )
        .unwrap()
    }

    fn epoch(op: &mut AggregateOp, input: &str) -> Vec<String> {
        let mut out = Vec::new();
        op.process(0, changes(input), &mut out).unwrap();
        assert!(out.is_empty(), "aggregates emit at barriers only");
        op.on_barrier(&mut out).unwrap();
        net(&out)
    }

    fn commit(op: &mut AggregateOp, store: &Store) {
        let mut batch = WriteBatch::default();
        op.checkpoint(&mut batch).unwrap();
        store.write(batch).unwrap();
    }

    #[test]
    fn groups_follow_inserts_and_retractions_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let mut agg = op(&store);
        let out = epoch(
            &mut agg,
            "I F T
             + 1 1.5 a
             + 1 2.5 b
             + 1 2.5 b
             + 2 3.0 a",
        );
        assert_eq!(
            out,
            vec!["+ 1 3 6.5 1.5 2.5 2 a,b,b", "+ 2 1 3.0 3.0 3.0 1 a"]
        );

        // The largest value goes (once of twice), then entirely: max falls back.
        let out = epoch(
            &mut agg,
            "I F T
             - 1 2.5 b
             - 1 2.5 b",
        );
        assert_eq!(
            out,
            vec!["+ 1 1 1.5 1.5 1.5 1 a", "- 1 3 6.5 1.5 2.5 2 a,b,b"]
        );
        commit(&mut agg, &store);

        // A new operator over the same state carries on where the old one stopped.
        let mut agg = op(&store);
        let out = epoch(
            &mut agg,
            "I F T
             + 1 0.5 c
             - 2 3.0 a",
        );
        assert_eq!(
            out,
            vec![
                "- 1 1 1.5 1.5 1.5 1 a",
                "+ 1 2 2.0 0.5 1.5 2 a,c",
                "- 2 1 3.0 3.0 3.0 1 a"
            ]
        );
        commit(&mut agg, &store);
        // The emptied group's state is gone from storage.
        let mut groups = 0;
        store
            .scan_prefix::<crate::storage::StorageError>(&agg.state.key(GROUP_TAG, &[]), |_, _| {
                groups += 1;
                Ok(true)
            })
            .unwrap();
        assert_eq!(groups, 1);
    }

    #[test]
    fn groups_below_the_watermark_close_and_leave_storage() {
        use crate::stream::watermark::Derived;

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let input = changes("I I").schema();
        let schema = Arc::new(Schema::new(vec![
            Field::new("w", DataType::Int64, true),
            Field::new("n", DataType::Int64, true),
        ]));
        for (op, emit_on_close) in [(0, false), (1, true)] {
            let count = call(
                AggKind::Count,
                None,
                DataType::Int64,
                DataType::Int64,
                false,
            );
            let mut agg = AggregateOp::new(
                schema.clone(),
                vec![column(0)],
                vec![count],
                StateScope::new(store.clone(), 1, op),
            )
            .unwrap()
            .with_watermarks(Derived::find(&[column(0)], &input, &[0]), emit_on_close)
            .unwrap();
            let first = epoch(&mut agg, "I I\n+ 1 0\n+ 1 0\n+ 2 0\n+ 3 0");
            if emit_on_close {
                assert!(first.is_empty(), "{first:?}");
            } else {
                assert_eq!(first, vec!["+ 1 2", "+ 2 1", "+ 3 1"]);
            }
            commit(&mut agg, &store);

            // Groups 1 and 2 are below the watermark 3: they close at the barrier, and the
            // watermark follows the barrier's rows.
            let mut marks = Vec::new();
            let mark = Watermark {
                column: 0,
                value: ScalarValue::Int64(Some(3)),
            };
            agg.on_watermark(0, mark.clone(), &mut marks).unwrap();
            assert!(marks.is_empty());
            let mut out = Vec::new();
            agg.on_barrier(&mut out).unwrap();
            agg.held_watermarks(&mut marks);
            assert_eq!(marks, vec![mark]);
            if emit_on_close {
                assert_eq!(net(&out), vec!["+ 1 2", "+ 2 1"]);
            } else {
                assert!(out.is_empty());
            }
            commit(&mut agg, &store);
            let mut stored = 0;
            store
                .scan_prefix::<crate::storage::StorageError>(
                    &agg.state.key(GROUP_TAG, &[]),
                    |_, _| {
                        stored += 1;
                        Ok(true)
                    },
                )
                .unwrap();
            assert_eq!(stored, 1, "only the open group is stored");
            // The open group carries on.
            let last = epoch(&mut agg, "I I\n+ 3 0");
            if emit_on_close {
                assert!(last.is_empty());
            } else {
                assert_eq!(last, vec!["- 3 1", "+ 3 2"]);
            }
        }
    }

    #[test]
    fn changes_that_cancel_within_an_epoch_emit_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let mut agg = op(&store);
        let out = epoch(
            &mut agg,
            "I F T
             + 1 1.0 a
             - 1 1.0 a",
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_global_aggregate_has_one_row_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("sum", DataType::Float64, true),
            Field::new("var", DataType::Float64, true),
            Field::new("all", DataType::Boolean, true),
        ]));
        let calls = vec![
            call(
                AggKind::Count,
                None,
                DataType::Int64,
                DataType::Int64,
                false,
            ),
            call(
                AggKind::Sum,
                Some(0),
                DataType::Float64,
                DataType::Float64,
                false,
            ),
            call(
                AggKind::Variance {
                    sample: false,
                    sqrt: false,
                },
                Some(0),
                DataType::Float64,
                DataType::Float64,
                false,
            ),
            call(
                AggKind::BoolAnd,
                Some(1),
                DataType::Boolean,
                DataType::Boolean,
                false,
            ),
        ];
        let mut agg =
            AggregateOp::new(schema, vec![], calls, StateScope::new(store.clone(), 1, 0)).unwrap();
        let mut out = Vec::new();
        agg.on_barrier(&mut out).unwrap();
        assert_eq!(net(&out), vec!["+ 0 . . ."]);
        let out = epoch(
            &mut agg,
            "F B
             + 1.0 true
             + 3.0 false",
        );
        assert_eq!(out, vec!["- 0 . . .", "+ 2 4.0 1.0 false"]);
        let out = epoch(
            &mut agg,
            "F B
             - 3.0 false",
        );
        assert_eq!(out, vec!["+ 1 1.0 0.0 true", "- 2 4.0 1.0 false"]);
    }
}
