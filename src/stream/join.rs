//! Equi-joins (inner, left, right, full, semi, anti), with optional extra conditions.
//!
//! Each side's rows are kept per join key: every distinct row once, with its multiplicity and
//! its number of matches on the other side (matches count only pairs that pass the extra
//! condition). A change on one side joins against the other side's current rows —
//! `Δ(L ⋈ R) = ΔL ⋈ R + L' ⋈ ΔR` — and the match counts say when an outer row gains its
//! first match (its NULL-padded row is retracted) or loses its last (it comes back). State is
//! stored under `l` / `r` + join key + row, in Arrow's row format; each side keeps its rows per
//! join key in a state table (a bucket of rows per key), cached within the views' budget.

use datafusion::common::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, RecordBatchOptions, UInt32Array,
    new_null_array,
};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::JoinType;
use datafusion::physical_expr::PhysicalExpr;

use super::change::rows_of;
use super::project::evaluate;
use super::state::{Reader, Record, StateScope, StateTable, put_i64, sort_fields};
use super::watermark::Meet;
use super::{ChangeBatch, ExprErrors, Operator, Result, StreamError, Watermark};
use crate::common::time;
use crate::storage::WriteBatch;

const SIDE_TAGS: [u8; 2] = [b'l', b'r'];

/// With an interval condition, each side's rows by event time: `L` / `R` + time + key length +
/// key + row.
const TIME_TAGS: [u8; 2] = [b'L', b'R'];

/// A condition `lo ≤ left.a - right.b ≤ hi` between two event-time columns with watermarks
/// (nanoseconds; either side may be open): rows that no later row of the other side can reach
/// are deleted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// `a`, a column of the left input.
    pub left: usize,
    /// `b`, a column of the right input.
    pub right: usize,
    /// The least `a - b` that passes.
    pub lo: Option<i64>,
    /// The greatest `a - b` that passes.
    pub hi: Option<i64>,
}

impl Interval {
    /// Below which time each side's rows are final and out of reach, given the watermarks
    /// (nanoseconds) on `a` and `b`: a left row at `a` matches right rows at `b ≤ a - lo`, and
    /// later right rows are at `W_b` or above; a right row at `b` matches left rows at
    /// `a ≤ b + hi`, and later left rows are at `W_a` or above.
    fn thresholds(&self, marks: [Option<i64>; 2]) -> [Option<i64>; 2] {
        let [Some(wa), Some(wb)] = marks else {
            return [None, None];
        };
        [
            self.lo.map(|lo| wa.min(wb.saturating_add(lo))),
            self.hi.map(|hi| wb.min(wa.saturating_sub(hi))),
        ]
    }
}

/// A row of one side: its join key and its encoding.
type RowAt = (Box<[u8]>, Box<[u8]>);

/// A row of one side written at a checkpoint: join key, encoding, and whether it is still
/// stored.
type Written = (Box<[u8]>, Box<[u8]>, bool);

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// Multiplicity of the row.
    count: i64,
    /// Rows of the other side it matches, with multiplicity.
    matches: i64,
}

/// The rows of one side with one join key.
#[derive(Debug, Default)]
struct Bucket {
    rows: HashMap<Box<[u8]>, Entry>,
    /// Rows changed since the last checkpoint.
    changed: Vec<Box<[u8]>>,
    /// Bytes of the rows' encodings.
    bytes: usize,
}

impl Bucket {
    /// The entry of `row`, a new one when the bucket has none.
    fn entry(&mut self, row: Box<[u8]>) -> &mut Entry {
        let len = row.len();
        let mut added = false;
        let entry = self.rows.entry(row).or_insert_with(|| {
            added = true;
            Entry::default()
        });
        if added {
            self.bytes += len;
        }
        entry
    }

    /// Removes `row`.
    fn remove(&mut self, row: &[u8]) {
        if self.rows.remove(row).is_some() {
            self.bytes -= row.len();
        }
    }
}

impl Record for Bucket {
    fn size(&self) -> usize {
        48 + 64 * self.rows.len() + self.bytes + 16 * self.changed.len()
    }
}

/// A bucket from its stored entries: row → count, matches.
fn decode_bucket(_: &[u8], entries: Vec<(Box<[u8]>, Vec<u8>)>) -> Result<Bucket> {
    let mut rows = HashMap::with_capacity(entries.len());
    let mut bytes = 0;
    for (row, value) in entries {
        bytes += row.len();
        let mut reader = Reader::new(&value);
        let entry = Entry {
            count: reader.i64()?,
            matches: reader.i64()?,
        };
        rows.insert(row, entry);
    }
    Ok(Bucket {
        rows,
        changed: Vec::new(),
        bytes,
    })
}

/// What a side emits besides joined pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Unmatched {
    /// Nothing (inner side).
    Nothing,
    /// The row padded with NULLs while it has no match (outer side).
    Padded,
    /// The row alone while it has no match (anti join).
    Alone,
    /// The row alone while it has a match (semi join).
    AloneWhenMatched,
}

/// Per side: key expressions, row encoding, the rows by join key.
#[derive(Debug)]
struct Side {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    rows: RowConverter,
    buckets: StateTable<Bucket>,
    unmatched: Unmatched,
}

/// A join of two change streams.
#[derive(Debug)]
pub struct JoinOp {
    join_type: JoinType,
    sides: [Side; 2],
    key_types: Vec<DataType>,
    key_encoder: RowConverter,
    /// NULL keys match each other (`IS NOT DISTINCT FROM`).
    nulls_match: bool,
    /// The extra condition, over left columns then right columns.
    filter: Option<Arc<dyn PhysicalExpr>>,
    /// left columns ++ right columns, what `filter` reads.
    pair_schema: SchemaRef,
    schema: SchemaRef,
    state: StateScope,
    errors: Arc<ExprErrors>,
    /// Equality-key columns `(left, right)` both sides carry a watermark on, with the least of
    /// the two: every output row has equal values there. The first pair, when there is one, is
    /// the first join key: rows below its least watermark are final on both sides.
    watermarks: Vec<(usize, usize, Meet)>,
    /// The least watermark on the first join key, when it rose this epoch: rows with keys below
    /// it are deleted at the checkpoint.
    closing: Option<datafusion::common::ScalarValue>,
    /// An interval condition on event time, with the latest watermarks (ns) of its columns.
    interval: Option<(Interval, [Option<i64>; 2])>,
    /// Per side, the time below which rows out of reach of the interval condition have been
    /// deleted since the operator started.
    deleted_below: [Option<i64>; 2],
}

impl JoinOp {
    /// Counts the rows whose expressions fail (they get NULL) in `errors`, the view's.
    pub fn with_errors(mut self, errors: Arc<ExprErrors>) -> Self {
        self.errors = errors;
        self
    }

    /// Carries the least of both sides' watermarks on the equality-key column pairs `pairs`;
    /// the first pair must be the first join key, whose rows below it are then deleted.
    pub fn with_watermarks(mut self, pairs: &[(usize, usize)]) -> Self {
        self.watermarks = pairs.iter().map(|&(l, r)| (l, r, Meet::new(2))).collect();
        self
    }

    /// Deletes the rows out of reach of an interval condition on event time (part of the
    /// filter): each side's rows are also kept by time.
    pub fn with_interval(mut self, interval: Option<Interval>) -> Self {
        self.interval = interval.map(|i| (i, [None, None]));
        self
    }

    /// Writes the by-time entries of `rows` (key, row, still stored) of `side` to `batch`.
    fn index_by_time(
        &mut self,
        side: usize,
        column: usize,
        rows: &[Written],
        below: Option<i64>,
        batch: &mut WriteBatch,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let encoded: Vec<&[u8]> = rows.iter().map(|(_, row, _)| &row[..]).collect();
        let times = cast(
            &self.decode(side, &encoded)?[column],
            &DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None),
        )?;
        let times = times.as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>();
        let mut entries = Vec::with_capacity(rows.len());
        for (i, (key, row, present)) in rows.iter().enumerate() {
            if times.is_null(i) {
                continue;
            }
            let time = times.value(i);
            if *present && below.is_some_and(|b| time < b) {
                // Already out of reach: it goes now, where the scan of stored entries below
                // the bound would not see it.
                self.forget(side, key, row, batch);
                continue;
            }
            let entry = self.state.key(
                TIME_TAGS[side],
                &[
                    &time::encode(time),
                    &(key.len() as u32).to_be_bytes(),
                    key,
                    row,
                ],
            );
            entries.push((entry, *present));
        }
        // In key order: RocksDB's memtable inserts sorted keys much faster than scattered ones.
        entries.sort_unstable();
        for (entry, present) in entries {
            if present {
                batch.put(entry, Vec::new());
            } else {
                batch.delete(entry);
            }
        }
        Ok(())
    }

    /// Deletes a stored row of `side` and its cached copy.
    fn forget(&mut self, side: usize, key: &[u8], row: &[u8], batch: &mut WriteBatch) {
        batch.delete(self.state.key(SIDE_TAGS[side], &[key, row]));
        self.sides[side].buckets.update_unchanged(key, |slot| {
            if let Some(bucket) = slot {
                bucket.remove(row);
                if bucket.rows.is_empty() && bucket.changed.is_empty() {
                    *slot = None;
                }
            }
        });
    }

    /// Deletes the stored rows of `side` with times below `below`, and their cached copies.
    /// The time index below the last bound is gone already: only the entries from there on
    /// are read, and they go as one range.
    fn delete_before(&mut self, side: usize, below: i64, batch: &mut WriteBatch) -> Result<()> {
        let done = self.deleted_below[side];
        if done.is_some_and(|d| d >= below) {
            return Ok(());
        }
        let start = self.state.key(TIME_TAGS[side], &[]);
        let from = match done {
            Some(d) => self.state.key(TIME_TAGS[side], &[&time::encode(d)]),
            None => start.clone(),
        };
        let to = self.state.key(TIME_TAGS[side], &[&time::encode(below)]);
        let mut found = Vec::new();
        self.state
            .store()
            .scan_range::<StreamError>(&from, &to, |k, _| {
                found.push(k.to_vec());
                Ok(true)
            })?;
        let mut rows = Vec::with_capacity(found.len());
        for entry in &found {
            let corrupt = || StreamError::Corrupt("a join time entry too short".into());
            let rest = entry.get(start.len() + 8..).ok_or_else(corrupt)?;
            let (len, rest) = rest.split_at_checked(4).ok_or_else(corrupt)?;
            let len = u32::from_be_bytes(len.try_into().map_err(|_| corrupt())?) as usize;
            rows.push(rest.split_at_checked(len).ok_or_else(corrupt)?);
        }
        // By key, not by time: the row entries are keyed by the join key.
        rows.sort_unstable();
        for (key, row) in rows {
            self.forget(side, key, row, batch);
        }
        batch.delete_range(from.as_slice(), to.as_slice());
        self.deleted_below[side] = Some(below);
        Ok(())
    }

    /// Joins `left` and `right` on `on` (pairs of key expressions, each over its side) and
    /// `filter`; `schema` is the output (left ++ right, or left alone for semi and anti joins).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        join_type: JoinType,
        left: SchemaRef,
        right: SchemaRef,
        on: Vec<(Arc<dyn PhysicalExpr>, Arc<dyn PhysicalExpr>)>,
        key_types: Vec<DataType>,
        nulls_match: bool,
        filter: Option<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
        state: StateScope,
    ) -> Result<Self> {
        let (left_unmatched, right_unmatched) = match join_type {
            JoinType::Inner => (Unmatched::Nothing, Unmatched::Nothing),
            JoinType::Left => (Unmatched::Padded, Unmatched::Nothing),
            JoinType::Right => (Unmatched::Nothing, Unmatched::Padded),
            JoinType::Full => (Unmatched::Padded, Unmatched::Padded),
            JoinType::LeftSemi => (Unmatched::AloneWhenMatched, Unmatched::Nothing),
            JoinType::LeftAnti => (Unmatched::Alone, Unmatched::Nothing),
            other => return Err(StreamError::NotSupported(format!("{other} join"))),
        };
        let side = |index: usize, schema: &SchemaRef, keys, unmatched| -> Result<Side> {
            let fields = sort_fields(schema.fields());
            Ok(Side {
                keys,
                schema: schema.clone(),
                rows: RowConverter::new(fields)?,
                buckets: StateTable::new(state.clone(), SIDE_TAGS[index])?,
                unmatched,
            })
        };
        let (left_keys, right_keys): (Vec<_>, Vec<_>) = on.into_iter().unzip();
        let mut pair_fields: Vec<_> = left.fields().iter().cloned().collect();
        pair_fields.extend(
            right
                .fields()
                .iter()
                .map(|f| Arc::new(f.as_ref().clone().with_nullable(true))),
        );
        let pair_schema = Arc::new(datafusion::arrow::datatypes::Schema::new(pair_fields));
        let key_encoder = RowConverter::new(
            key_types
                .iter()
                .map(|t| SortField::new(t.clone()))
                .collect(),
        )?;
        let op = Self {
            join_type,
            sides: [
                side(0, &left, left_keys, left_unmatched)?,
                side(1, &right, right_keys, right_unmatched)?,
            ],
            key_types,
            key_encoder,
            nulls_match,
            filter,
            pair_schema,
            schema,
            state,
            errors: Arc::default(),
            watermarks: Vec::new(),
            closing: None,
            interval: None,
            deleted_below: [None, None],
        };
        Ok(op)
    }

    fn emits_pairs(&self) -> bool {
        !matches!(self.join_type, JoinType::LeftSemi | JoinType::LeftAnti)
    }

    /// Makes sure the buckets of `keys` on `side` are cached.
    fn load(&mut self, side: usize, keys: &[&[u8]]) -> Result<()> {
        self.sides[side].buckets.load_entries(keys, decode_bucket)
    }

    /// Decodes rows of `side` from their encoding.
    fn decode(&self, side: usize, rows: &[&[u8]]) -> Result<Vec<ArrayRef>> {
        let converter = &self.sides[side].rows;
        let parser = converter.parser();
        Ok(converter.convert_rows(rows.iter().map(|r| parser.parse(r)))?)
    }

    /// Output rows: `left` columns and `right` columns (either may be all NULL).
    fn output(
        &self,
        left: Option<Vec<ArrayRef>>,
        right: Option<Vec<ArrayRef>>,
        weights: Vec<i64>,
    ) -> Result<ChangeBatch> {
        let n = weights.len();
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        let fill =
            |side: usize, columns: &mut Vec<ArrayRef>, given: Option<Vec<ArrayRef>>| match given {
                Some(given) => columns.extend(given),
                None => columns.extend(
                    self.sides[side]
                        .schema
                        .fields()
                        .iter()
                        .map(|f| new_null_array(f.data_type(), n)),
                ),
            };
        fill(0, &mut columns, left);
        if self.emits_pairs() {
            fill(1, &mut columns, right);
        }
        let rows = rows_of(self.schema.clone(), columns, n)?;
        Ok(ChangeBatch::new(rows, Int64Array::from(weights)))
    }

    /// The side's rows alone or padded: `rows` are given as columns of that side.
    fn unmatched_rows(
        &self,
        side: usize,
        rows: Vec<ArrayRef>,
        weights: Vec<i64>,
    ) -> Result<ChangeBatch> {
        if side == 0 {
            self.output(Some(rows), None, weights)
        } else {
            self.output(None, Some(rows), weights)
        }
    }
}

impl Operator for JoinOp {
    fn process(
        &mut self,
        this: usize,
        changes: ChangeBatch,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        let other = 1 - this;
        let batch = changes.rows();
        let n = batch.num_rows();
        let weights = changes.weights().values();
        // Join keys, cast to common types.
        let mut key_columns = Vec::with_capacity(self.key_types.len());
        for (expr, t) in self.sides[this].keys.iter().zip(&self.key_types) {
            let column = evaluate(expr, batch, &self.errors)?;
            key_columns.push(if column.data_type() == t {
                column
            } else {
                cast(&column, t)?
            });
        }
        let has_null_key: Vec<bool> = (0..n)
            .map(|i| !self.nulls_match && key_columns.iter().any(|c| c.is_null(i)))
            .collect();
        let keys = self.key_encoder.convert_columns(&key_columns)?;
        let row_bytes = self.sides[this].rows.convert_columns(batch.columns())?;
        let probe: Vec<&[u8]> = (0..n)
            .filter(|&i| !has_null_key[i])
            .map(|i| keys.row(i).data())
            .collect();
        self.load(other, &probe)?;
        self.load(this, &probe)?;

        // Candidate pairs: (row of the batch, row of the other side, its multiplicity).
        let mut pair_this: Vec<u32> = Vec::new();
        let mut pair_other: Vec<&[u8]> = Vec::new();
        let mut pair_count: Vec<i64> = Vec::new();
        let other_buckets = &self.sides[other].buckets;
        for (i, _) in has_null_key.iter().enumerate().filter(|(_, null)| !**null) {
            if let Some(Some(bucket)) = other_buckets.get(keys.row(i).data()) {
                for (row, entry) in &bucket.rows {
                    pair_this.push(i as u32);
                    pair_other.push(row);
                    pair_count.push(entry.count);
                }
            }
        }
        // Pairs as rows of left ++ right, and which pass the condition.
        let mut passing = vec![true; pair_this.len()];
        let mut pair_columns: Option<(Vec<ArrayRef>, Vec<ArrayRef>)> = None;
        if !pair_this.is_empty() {
            let indices = UInt32Array::from(pair_this.clone());
            let this_columns = batch
                .columns()
                .iter()
                .map(|c| Ok(take(c.as_ref(), &indices, None)?))
                .collect::<Result<Vec<_>>>()?;
            let other_columns = self.decode(other, &pair_other)?;
            let (left, right) = if this == 0 {
                (this_columns, other_columns)
            } else {
                (other_columns, this_columns)
            };
            if let Some(filter) = &self.filter {
                let mut all = left.clone();
                all.extend(right.iter().cloned());
                let options = RecordBatchOptions::new().with_row_count(Some(pair_this.len()));
                let pairs =
                    RecordBatch::try_new_with_options(self.pair_schema.clone(), all, &options)?;
                let mask = evaluate(filter, &pairs, &self.errors)?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::BooleanArray>()
                    .ok_or_else(|| StreamError::Internal("join condition is not boolean".into()))?;
                for (p, pass) in passing.iter_mut().enumerate() {
                    *pass = mask.is_valid(p) && mask.value(p);
                }
            }
            pair_columns = Some((left, right));
        }

        // Joined rows.
        if self.emits_pairs()
            && let Some((left, right)) = pair_columns
        {
            let keep: Vec<u32> = (0..pair_this.len() as u32)
                .filter(|&p| passing[p as usize])
                .collect();
            if !keep.is_empty() {
                let indices = UInt32Array::from(keep.clone());
                let pick = |cols: Vec<ArrayRef>| -> Result<Vec<ArrayRef>> {
                    cols.iter()
                        .map(|c| Ok(take(c.as_ref(), &indices, None)?))
                        .collect()
                };
                let w = keep
                    .iter()
                    .map(|&p| weights[pair_this[p as usize] as usize] * pair_count[p as usize])
                    .collect();
                out.push(self.output(Some(pick(left)?), Some(pick(right)?), w)?);
            }
        }

        // Matches of this batch's rows, and changes of the other side's match counts.
        let mut matches = vec![0i64; n];
        // (join key, row of the other side) → change of its match count.
        let mut other_delta: HashMap<RowAt, i64> = HashMap::new();
        for p in 0..pair_this.len() {
            if !passing[p] {
                continue;
            }
            let i = pair_this[p] as usize;
            matches[i] += pair_count[p];
            if self.sides[other].unmatched != Unmatched::Nothing {
                *other_delta
                    .entry((keys.row(i).data().into(), pair_other[p].into()))
                    .or_default() += weights[i];
            }
        }

        // This side's own unmatched (or, for a semi join, matched) rows.
        let mode = self.sides[this].unmatched;
        if mode != Unmatched::Nothing {
            let emit: Vec<u32> = (0..n as u32)
                .filter(|&i| {
                    let m = matches[i as usize];
                    if mode == Unmatched::AloneWhenMatched {
                        m > 0
                    } else {
                        m == 0
                    }
                })
                .collect();
            if !emit.is_empty() {
                let indices = UInt32Array::from(emit.clone());
                let columns = batch
                    .columns()
                    .iter()
                    .map(|c| Ok(take(c.as_ref(), &indices, None)?))
                    .collect::<Result<Vec<_>>>()?;
                let w = emit.iter().map(|&i| weights[i as usize]).collect();
                out.push(self.unmatched_rows(this, columns, w)?);
            }
        }

        // The other side's rows whose having-a-match changed.
        let mut flipped: Vec<(Box<[u8]>, i64)> = Vec::new();
        let other_mode = self.sides[other].unmatched;
        for ((key, row), delta) in other_delta {
            if delta == 0 {
                continue;
            }
            let side = &mut self.sides[other];
            let Some(Some(bucket)) = side.buckets.get_mut(&key) else {
                continue;
            };
            let Some(entry) = bucket.rows.get_mut(&row) else {
                continue;
            };
            let before = entry.matches;
            entry.matches += delta;
            let after = entry.matches;
            bucket.changed.push(row.clone());
            let (was, is) = (before > 0, after > 0);
            if was != is {
                let shown_when_matched = other_mode == Unmatched::AloneWhenMatched;
                // +count when the row starts being shown, -count when it stops.
                let w = if is == shown_when_matched {
                    entry.count
                } else {
                    -entry.count
                };
                flipped.push((row, w));
            }
        }
        if !flipped.is_empty() {
            let rows: Vec<&[u8]> = flipped.iter().map(|(r, _)| r.as_ref()).collect();
            let columns = self.decode(other, &rows)?;
            let w = flipped.iter().map(|(_, w)| *w).collect();
            out.push(self.unmatched_rows(other, columns, w)?);
        }

        // Finally this side's rows change.
        for i in 0..n {
            if has_null_key[i] {
                continue;
            }
            let key = keys.row(i).data();
            let row: Box<[u8]> = row_bytes.row(i).data().into();
            let side = &mut self.sides[this];
            let slot = side
                .buckets
                .get_mut(key)
                .ok_or_else(|| StreamError::Internal("a join bucket not loaded".into()))?;
            let bucket = slot.get_or_insert_with(Bucket::default);
            let entry = bucket.entry(row.clone());
            entry.count += weights[i];
            entry.matches = matches[i];
            if entry.count == 0 {
                bucket.remove(&row);
            }
            bucket.changed.push(row);
        }
        Ok(())
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) -> Result<()> {
        if let Some(value) = self.closing.take() {
            // Rows whose first key is below the least watermark of both sides: no later row
            // of either side can match them or take them back. Keys start with the first key
            // column's encoding, so they are one range (after NULL keys) on each side.
            let value = value.cast_to(&self.key_types[0])?.to_array()?;
            let bound = RowConverter::new(vec![SortField::new(self.key_types[0].clone())])?
                .convert_columns(&[value])?
                .row(0)
                .data()
                .to_vec();
            for side in &mut self.sides {
                // After NULL keys (`0`), up to the bound.
                side.buckets.delete_range(&[1], &bound);
            }
        }
        let timed = self.interval.is_some();
        let mut changed_rows: [Vec<Written>; 2] = [Vec::new(), Vec::new()];
        for (index, side) in self.sides.iter_mut().enumerate() {
            let scope = side.buckets.scope().clone();
            let written = &mut changed_rows[index];
            side.buckets.checkpoint(batch, |key, slot, batch| {
                let Some(bucket) = slot else {
                    return Ok(());
                };
                let mut changed = std::mem::take(&mut bucket.changed);
                changed.sort_unstable();
                changed.dedup();
                for row in changed {
                    let storage_key = scope.key(SIDE_TAGS[index], &[key, &row]);
                    if timed {
                        let present = bucket.rows.contains_key(&row);
                        written.push((key.into(), row.clone(), present));
                    }
                    match bucket.rows.get(&row) {
                        Some(entry) => {
                            let mut value = Vec::with_capacity(16);
                            put_i64(&mut value, entry.count);
                            put_i64(&mut value, entry.matches);
                            batch.put(storage_key, value);
                        }
                        None => batch.delete(storage_key),
                    }
                }
                if bucket.rows.is_empty() {
                    *slot = None;
                }
                Ok(())
            })?;
        }
        if let Some((interval, marks)) = self.interval {
            let columns = [interval.left, interval.right];
            let thresholds = interval.thresholds(marks);
            for (side, rows) in changed_rows.iter().enumerate() {
                self.index_by_time(side, columns[side], rows, thresholds[side], batch)?;
            }
            for (side, below) in thresholds.into_iter().enumerate() {
                if let Some(below) = below {
                    self.delete_before(side, below, batch)?;
                }
            }
        }
        Ok(())
    }

    fn evict(&mut self) {
        for side in &mut self.sides {
            side.buckets.evict();
        }
    }

    fn on_watermark(
        &mut self,
        side: usize,
        watermark: Watermark,
        out: &mut Vec<Watermark>,
    ) -> Result<()> {
        if let Some((interval, marks)) = &mut self.interval {
            let column = [interval.left, interval.right][side];
            if column == watermark.column
                && let Some(t) = time::nanos(&watermark.value)
            {
                marks[side] = Some(marks[side].map_or(t, |m| m.max(t)));
            }
        }
        let width = self.sides[0].schema.fields().len();
        let has_right = self.schema.fields().len() > width;
        for (pair, (left, right, meet)) in self.watermarks.iter_mut().enumerate() {
            let column = if side == 0 { *left } else { *right };
            if column != watermark.column {
                continue;
            }
            if let Some(value) = meet.raise(side, watermark.value.clone()) {
                if pair == 0 {
                    self.closing = Some(value.clone());
                }
                if has_right {
                    out.push(Watermark {
                        column: width + *right,
                        value: value.clone(),
                    });
                }
                out.push(Watermark {
                    column: *left,
                    value,
                });
            }
        }
        Ok(())
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn explain(&self) -> String {
        let on: Vec<String> = self.sides[0]
            .keys
            .iter()
            .zip(&self.sides[1].keys)
            .map(|(l, r)| format!("{l} = {r}"))
            .collect();
        let filter = self
            .filter
            .as_ref()
            .map(|f| format!(", filter={f}"))
            .unwrap_or_default();
        let mut deletes = Vec::new();
        if !self.watermarks.is_empty() {
            deletes.push("keys both watermarks have passed".to_string());
        }
        if let Some((i, _)) = self.interval {
            let bound = |v: Option<i64>| {
                v.map_or("unbounded".to_string(), |v| {
                    let text = crate::common::time::human_duration(i128::from(v).abs());
                    if v < 0 { format!("-{text}") } else { text }
                })
            };
            deletes.push(format!(
                "rows out of reach of left {} - right {} in [{}, {}]",
                self.sides[0].schema.field(i.left).name(),
                self.sides[1].schema.field(i.right).name(),
                bound(i.lo),
                bound(i.hi)
            ));
        }
        let deletes = if deletes.is_empty() {
            String::new()
        } else {
            format!(", deletes {}", deletes.join(" and "))
        };
        format!(
            "Join: {} on=[{}]{filter}{deletes}",
            self.join_type,
            on.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::logical_expr::Operator as BinOp;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column};

    use super::*;
    use crate::storage::Store;
    use crate::stream::change::pretty::{changes_of, net, schema};
    use datafusion::common::ScalarValue;

    fn column(name: &str, i: usize) -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new(name, i))
    }

    /// `l(c0 I, c1 T)` joined to `r(c0 I, c1 I)` on `l.c0 = r.c0`.
    fn join(store: &Store, join_type: JoinType, filter: Option<Arc<dyn PhysicalExpr>>) -> JoinOp {
        let left = schema("I T");
        let right = schema("I I");
        let mut fields: Vec<Field> = left.fields().iter().map(|f| f.as_ref().clone()).collect();
        if !matches!(join_type, JoinType::LeftSemi | JoinType::LeftAnti) {
            fields.extend(
                right
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_name(format!("r{}", f.name()))),
            );
        }
        JoinOp::new(
            join_type,
            left,
            right,
            vec![(column("c0", 0), column("c0", 0))],
            vec![DataType::Int64],
            false,
            filter,
            Arc::new(Schema::new(fields)),
            StateScope::new(store.clone(), 1, 0),
        )
        .unwrap()
    }

    fn push(op: &mut JoinOp, side: usize, rows: &[&str]) -> Vec<String> {
        let schema = if side == 0 {
            schema("I T")
        } else {
            schema("I I")
        };
        let mut out = Vec::new();
        op.process(side, changes_of(&schema, rows.iter().copied()), &mut out)
            .unwrap();
        net(&out)
    }

    #[test]
    fn inner_join_follows_both_sides() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let mut op = join(&store, JoinType::Inner, None);
        assert!(push(&mut op, 0, &["+ 1 a", "+ 2 b", "+ . n"]).is_empty());
        assert_eq!(
            push(&mut op, 1, &["+ 1 10", "+ 1 11", "+ . 12"]),
            vec!["+ 1 a 1 10", "+ 1 a 1 11"]
        );
        assert_eq!(
            push(&mut op, 0, &["+ 1 c"]),
            vec!["+ 1 c 1 10", "+ 1 c 1 11"]
        );
        assert_eq!(
            push(&mut op, 1, &["- 1 10"]),
            vec!["- 1 a 1 10", "- 1 c 1 10"]
        );
    }

    fn state_keys(store: &Store) -> usize {
        store.measure_prefix(&StateScope::view_prefix(1)).unwrap().0
    }

    fn commit(op: &mut JoinOp, store: &Store) {
        let mut batch = WriteBatch::default();
        op.checkpoint(&mut batch).unwrap();
        store.write(batch).unwrap();
    }

    #[test]
    fn rows_below_both_watermarks_on_the_key_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let mut op = join(&store, JoinType::Left, None).with_watermarks(&[(0, 0)]);
        push(&mut op, 0, &["+ 1 a", "+ 5 b", "+ 9 c", "+ . n"]);
        push(&mut op, 1, &["+ 1 10", "+ 5 50", "+ 9 90"]);
        commit(&mut op, &store);
        // Six rows: a NULL key never matches, its row is not kept.
        assert_eq!(state_keys(&store), 6);
        let watermark = |value| Watermark {
            column: 0,
            value: ScalarValue::Int64(Some(value)),
        };
        let mut out = Vec::new();
        // One side's watermark alone deletes nothing: the other side may still bring rows.
        op.on_watermark(0, watermark(6), &mut out).unwrap();
        commit(&mut op, &store);
        assert!(out.is_empty());
        assert_eq!(state_keys(&store), 6);
        // Both at 6 or above: keys 1 and 5 are final on both sides.
        op.on_watermark(1, watermark(8), &mut out).unwrap();
        commit(&mut op, &store);
        assert_eq!(out.len(), 2, "the least watermark goes on: {out:?}");
        assert_eq!(state_keys(&store), 2);
        // Rows at 9 still join and leave as before.
        assert_eq!(
            push(&mut op, 1, &["- 9 90"]),
            vec!["+ 9 c . .", "- 9 c 9 90"]
        );
        assert_eq!(push(&mut op, 0, &["+ 9 d"]), vec!["+ 9 d . ."]);
    }

    #[test]
    fn interval_joins_delete_rows_out_of_reach() {
        use datafusion::arrow::datatypes::TimeUnit;
        // l(k, a) ⋈ r(k, b) on k, for `b - 10 s ≤ a ≤ b`: a left row at `a` matches right rows
        // at `b ≤ a + 10 s`, a right row at `b` left rows at `a ≤ b`.
        let ts = DataType::Timestamp(TimeUnit::Second, None);
        let side = |time: &str| {
            Arc::new(Schema::new(vec![
                Field::new("k", DataType::Int64, true),
                Field::new(time, ts.clone(), true),
            ]))
        };
        let (left, right) = (side("a"), side("b"));
        let output = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("a", ts.clone(), true),
            Field::new("rk", DataType::Int64, true),
            Field::new("b", ts.clone(), true),
        ]));
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let mut op = JoinOp::new(
            JoinType::Inner,
            left.clone(),
            right.clone(),
            vec![(column("k", 0), column("k", 0))],
            vec![DataType::Int64],
            false,
            None,
            output,
            StateScope::new(store.clone(), 1, 0),
        )
        .unwrap()
        .with_interval(Some(Interval {
            left: 1,
            right: 1,
            lo: Some(-10_000_000_000),
            hi: Some(0),
        }));
        let push = |op: &mut JoinOp, side: usize, rows: &[&str]| {
            let schema = if side == 0 { &left } else { &right };
            let mut out = Vec::new();
            op.process(side, changes_of(schema, rows.iter().copied()), &mut out)
                .unwrap();
            net(&out)
        };
        push(
            &mut op,
            0,
            &["+ 1 1970-01-01T00:01:40", "+ 1 1970-01-01T00:01:45"],
        );
        push(
            &mut op,
            1,
            &["+ 1 1970-01-01T00:01:48", "+ 2 1970-01-01T00:01:30"],
        );
        commit(&mut op, &store);
        // Each stored row once by key and once by time.
        assert_eq!(state_keys(&store), 8);
        let watermark = |column, seconds| Watermark {
            column,
            value: ScalarValue::TimestampSecond(Some(seconds), None),
        };
        let mut out = Vec::new();
        op.on_watermark(0, watermark(1, 107), &mut out).unwrap();
        op.on_watermark(1, watermark(1, 120), &mut out).unwrap();
        commit(&mut op, &store);
        // Left rows below min(107, 120 - 10) are final and out of reach: both go. Right rows
        // below min(120, 107 - 0): the one at 1:30 goes, the one at 1:48 can still be reached by
        // a left row at 1:47 or later.
        assert_eq!(state_keys(&store), 2);
        assert_eq!(
            push(&mut op, 0, &["+ 1 1970-01-01T00:01:47"]),
            vec!["+ 1 1970-01-01T00:01:47 1 1970-01-01T00:01:48"]
        );
        // A row already out of reach when it is written is not kept, though the watermarks
        // stay where they are (this operator has no filter: it matches on the key alone); the
        // 1:47 row is kept by key and by time.
        push(&mut op, 0, &["+ 1 1970-01-01T00:01:00"]);
        commit(&mut op, &store);
        assert_eq!(state_keys(&store), 4);
        // Rising watermarks delete from where the last deletion ended.
        op.on_watermark(0, watermark(1, 200), &mut out).unwrap();
        op.on_watermark(1, watermark(1, 200), &mut out).unwrap();
        commit(&mut op, &store);
        assert_eq!(state_keys(&store), 0);
    }

    #[test]
    fn outer_rows_are_padded_until_they_match() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let mut op = join(&store, JoinType::Full, None);
        assert_eq!(
            push(&mut op, 0, &["+ 1 a", "+ 2 b"]),
            vec!["+ 1 a . .", "+ 2 b . ."]
        );
        assert_eq!(
            push(&mut op, 1, &["+ 1 10", "+ 3 30"]),
            vec!["+ . . 3 30", "- 1 a . .", "+ 1 a 1 10"]
        );
        // A second match changes nothing padded; losing both brings the padding back.
        assert_eq!(push(&mut op, 1, &["+ 1 11"]), vec!["+ 1 a 1 11"]);
        assert_eq!(
            push(&mut op, 1, &["- 1 10", "- 1 11"]),
            vec!["+ 1 a . .", "- 1 a 1 10", "- 1 a 1 11"]
        );
        assert_eq!(
            push(&mut op, 0, &["- 1 a", "+ 3 c"]),
            vec!["- . . 3 30", "- 1 a . .", "+ 3 c 3 30"]
        );

        // After a checkpoint, a new operator over the same state continues.
        let mut batch = WriteBatch::default();
        op.checkpoint(&mut batch).unwrap();
        store.write(batch).unwrap();
        let mut op = join(&store, JoinType::Full, None);
        assert_eq!(
            push(&mut op, 1, &["- 3 30"]),
            vec!["+ 3 c . .", "- 3 c 3 30"]
        );
    }

    #[test]
    fn extra_conditions_decide_what_matches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        // ... AND r.c1 > 10 (right columns follow the left ones in the pair schema)
        let filter = Arc::new(BinaryExpr::new(
            column("rc1", 3),
            BinOp::Gt,
            Arc::new(datafusion::physical_expr::expressions::Literal::new(
                datafusion::common::ScalarValue::Int64(Some(10)),
            )),
        ));
        let mut op = join(&store, JoinType::Left, Some(filter));
        assert_eq!(push(&mut op, 0, &["+ 1 a"]), vec!["+ 1 a . ."]);
        assert!(push(&mut op, 1, &["+ 1 5"]).is_empty());
        assert_eq!(
            push(&mut op, 1, &["+ 1 20"]),
            vec!["- 1 a . .", "+ 1 a 1 20"]
        );
    }

    #[test]
    fn semi_and_anti_joins_show_left_rows_by_whether_they_match() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let mut semi = join(&store, JoinType::LeftSemi, None);
        let other = tempfile::tempdir().unwrap();
        let other_store = Store::open(other.path(), false).unwrap();
        let mut anti = join(&other_store, JoinType::LeftAnti, None);
        for op in [&mut semi, &mut anti] {
            push(op, 0, &["+ 1 a", "+ 2 b"]);
        }
        assert_eq!(push(&mut semi, 1, &["+ 1 10", "+ 1 11"]), vec!["+ 1 a"]);
        assert_eq!(push(&mut anti, 1, &["+ 1 10", "+ 1 11"]), vec!["- 1 a"]);
        assert_eq!(push(&mut semi, 1, &["- 1 10"]), Vec::<String>::new());
        assert_eq!(push(&mut anti, 1, &["- 1 10", "- 1 11"]), vec!["+ 1 a"]);
    }

    /// A left join under random changes on both sides equals the join of all rows, while its
    /// cache holds almost nothing (buckets are dropped after each commit and read back) and it
    /// restarts from its state now and then.
    #[test]
    fn a_left_join_with_little_memory_equals_the_join_of_all_rows() {
        use std::collections::BTreeMap;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let budget = crate::stream::state::CacheBudget::new(1);
        let make = || {
            let mut op = join(&store, JoinType::Left, None);
            let scope = StateScope::new(store.clone(), 1, 0).with_budget(budget.clone());
            for (index, side) in op.sides.iter_mut().enumerate() {
                side.buckets = StateTable::new(scope.clone(), SIDE_TAGS[index]).unwrap();
            }
            op.state = scope;
            op
        };
        let mut next = crate::stream::xorshift(0x51_7cc1_b727_220a);
        let mut op = make();
        let mut sides: [BTreeMap<String, i64>; 2] = [BTreeMap::new(), BTreeMap::new()];
        let mut shown: BTreeMap<String, i64> = BTreeMap::new();
        for round in 0..150 {
            let side = next(2) as usize;
            let mut lines = Vec::new();
            for _ in 0..1 + next(4) {
                let present: Vec<String> = sides[side].keys().cloned().collect();
                let line = if next(3) == 0 && !present.is_empty() {
                    let row = present[next(present.len() as u64) as usize].clone();
                    *sides[side].get_mut(&row).unwrap() -= 1;
                    format!("- {row}")
                } else {
                    let key = next(6);
                    let row = if side == 0 {
                        format!("{key} {}", ["a", "b", "c"][next(3) as usize])
                    } else {
                        format!("{key} {}", next(3))
                    };
                    *sides[side].entry(row.clone()).or_default() += 1;
                    format!("+ {row}")
                };
                sides[side].retain(|_, c| *c > 0);
                lines.push(line);
            }
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            for line in push(&mut op, side, &refs) {
                let (sign, row) = line.split_once(' ').unwrap();
                *shown.entry(row.to_string()).or_default() += match sign {
                    "+" => 1,
                    "-" => -1,
                    w => w.parse::<i64>().unwrap(),
                };
                shown.retain(|_, c| *c != 0);
            }
            let mut expected: BTreeMap<String, i64> = BTreeMap::new();
            for (l, lc) in &sides[0] {
                let key = l.split(' ').next().unwrap();
                let matching: Vec<(&String, &i64)> = sides[1]
                    .iter()
                    .filter(|(r, _)| r.split(' ').next().unwrap() == key)
                    .collect();
                if matching.is_empty() {
                    *expected.entry(format!("{l} . .")).or_default() += lc;
                }
                for (r, rc) in matching {
                    *expected.entry(format!("{l} {r}")).or_default() += lc * rc;
                }
            }
            assert_eq!(shown, expected, "round {round}");
            commit(&mut op, &store);
            op.evict();
            if next(8) == 0 {
                op = make();
            }
        }
        assert!(budget.evicted() > 0);
        assert!(op.sides[0].buckets.reads() + op.sides[1].buckets.reads() > 0);
    }
}
