//! Window functions (`OVER`), kept up to date per partition.
//!
//! The operator keeps every output row (the input row and its window values) under its
//! partition and ORDER BY key. When rows of a partition change, it recomputes the window values
//! of the rows they can affect with DataFusion's own window expressions, over those rows and
//! the rows their frames reach, and emits the difference from what it showed before. So a view
//! computes exactly what the query computes as a batch query: frames, peers (rows with equal
//! ORDER BY values share a RANGE frame, as in PostgreSQL), NULL ordering and every window
//! function DataFusion has.
//!
//! How much is recomputed depends on the frames. When every function is an aggregate over a
//! `RANGE BETWEEN x PRECEDING AND y FOLLOWING` frame (either side may be `CURRENT ROW`) ordered
//! by one number or timestamp, a change at order value `t` can only affect rows in
//! `[t - y, t + x]`, whose frames reach `[t - y - x, t + x + y]`: only those rows are read.
//! Anything else (ROWS frames, running totals from UNBOUNDED PRECEDING, row_number, lag, lead)
//! recomputes the partition.
//!
//! With bounded recompute and a watermark `W` on the ORDER BY column, rows below
//! `W - x - y` are never read again (a later change is at `W` or above, and its frames reach
//! down to `W - y - x`) and their values are final: they are deleted, so the state holds the
//! rows within reach of the watermark, not the history.
//!
//! State: `o` + partition + order key + output row → multiplicity and the output row; for
//! deletion below the watermark, `m` + partition → the partition's lowest order key (or lower)
//! and `x` + that key + partition, to find the partitions with rows to delete. A partition's
//! rows are read whole (one prefix scan) the first time they are needed and then cached within
//! the state cache's budget (`state::Partitions`).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{SortOptions, cast, take};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::WindowExpr;

use super::change::{consolidate, rows_of};
use super::project::evaluate;
use super::state::{Partitioner, Partitions, Reader, StateScope, StateTable, put_i64, sort_fields};
use super::{ChangeBatch, ExprErrors, Operator, Result, StreamError, Watermark};
use crate::common::time::{human_duration, nanos_per};
use crate::storage::WriteBatch;

const ROW_TAG: u8 = b'o';
/// Partition → its lowest stored order key, or a lower one.
const MIN_TAG: u8 = b'm';
/// Lowest order key + partition → nothing: partitions by their oldest rows.
const INDEX_TAG: u8 = b'x';

/// How far a change reaches along a single numeric or timestamp ORDER BY column: a change at
/// `t` affects rows in `[t - after, t + before]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reach {
    /// The largest `x` of `x PRECEDING`, in the column's units.
    pub before: i64,
    /// The largest `y` of `y FOLLOWING`.
    pub after: i64,
}

/// A partition's changes of the epoch: order value (when bounded recompute applies), encoded
/// input row, weight.
type Change = (Option<i64>, Box<[u8]>, i64);

/// Order values `[lo, hi]`.
type Span = (i64, i64);

/// Output rows (encoded) with their multiplicities and order keys.
type Shown = BTreeMap<Box<[u8]>, (i64, Vec<u8>)>;

/// A stored output row: its entry's key (order key + row) and value (count + row) split into
/// the order key, the count and the row.
fn split_entry<'a>(key: &'a [u8], value: &'a [u8]) -> Result<(&'a [u8], i64, &'a [u8])> {
    let count = Reader::new(value).i64()?;
    let row = &value[8..];
    let order_key = key
        .len()
        .checked_sub(row.len())
        .map(|end| &key[..end])
        .ok_or_else(|| StreamError::Corrupt("a window row key without its row".into()))?;
    Ok((order_key, count, row))
}

/// Window functions over `input`, all with one PARTITION BY and ORDER BY.
#[derive(Debug)]
pub struct OverOp {
    schema: SchemaRef,
    input: SchemaRef,
    functions: Vec<Arc<dyn WindowExpr>>,
    partition: Partitioner,
    order: Vec<Arc<dyn PhysicalExpr>>,
    order_codec: RowConverter,
    input_codec: RowConverter,
    output_codec: RowConverter,
    /// Bounded recompute, when the frames allow it.
    reach: Option<Reach>,
    /// The ORDER BY column passes a watermark on: no function looks ahead.
    watermark_column: Option<usize>,
    held: Vec<Watermark>,
    /// The ORDER BY column, whose watermark deletes rows out of reach (bounded recompute only).
    cleanup: Option<usize>,
    /// The latest watermark on it, acted on at the barrier.
    closing: Option<i64>,
    pending: BTreeMap<Box<[u8]>, Vec<Change>>,
    /// Output rows by partition: order key + row → multiplicity and row.
    rows: Partitions,
    /// Partition → its lowest stored order key, or a lower one (with cleanup).
    lowest: StateTable<Vec<u8>>,
    /// Lowest order key + partition: the partitions by their oldest rows (with cleanup).
    index: StateTable<()>,
    errors: Arc<ExprErrors>,
}

impl OverOp {
    /// The operator for `functions` over rows of `input`, partitioned by `partition` and
    /// ordered by `order`; its rows are the input's followed by one column per function.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        input: SchemaRef,
        schema: SchemaRef,
        functions: Vec<Arc<dyn WindowExpr>>,
        partition: Vec<Arc<dyn PhysicalExpr>>,
        order: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
        reach: Option<Reach>,
        state: StateScope,
        errors: Arc<ExprErrors>,
    ) -> Result<Self> {
        let mut order_fields = order
            .iter()
            .map(|(e, options)| Ok(SortField::new_with_options(e.data_type(&input)?, *options)))
            .collect::<Result<Vec<_>>>()?;
        if order_fields.is_empty() {
            // Without ORDER BY every row is a peer of every other: one constant key.
            order_fields.push(SortField::new(DataType::Boolean));
        }
        Ok(Self {
            input_codec: RowConverter::new(sort_fields(input.fields()))?,
            output_codec: RowConverter::new(sort_fields(schema.fields()))?,
            order_codec: RowConverter::new(order_fields)?,
            partition: Partitioner::new(partition, &input)?,
            schema,
            input,
            functions,
            order: order.into_iter().map(|(e, _)| e).collect(),
            reach,
            watermark_column: None,
            held: Vec::new(),
            cleanup: None,
            closing: None,
            pending: BTreeMap::new(),
            rows: Partitions::new(state.clone(), ROW_TAG)?,
            lowest: StateTable::new(state.clone(), MIN_TAG)?,
            index: StateTable::new(state, INDEX_TAG)?,
            errors,
        })
    }

    /// Passes a watermark on ORDER BY column `column` through: set when no function's value
    /// depends on rows after its own.
    pub fn with_watermark(mut self, column: Option<usize>) -> Self {
        self.watermark_column = column;
        self
    }

    /// Deletes rows out of reach of the watermark on input column `column`, the ORDER BY
    /// column (it has one); only with bounded recompute.
    pub fn with_cleanup(mut self, column: Option<usize>) -> Self {
        self.cleanup = column.filter(|_| self.reach.is_some());
        self
    }

    /// The order key of each row of `batch`.
    fn order_keys(&self, batch: &RecordBatch) -> Result<datafusion::arrow::row::Rows> {
        let columns = if self.order.is_empty() {
            vec![Arc::new(datafusion::arrow::array::BooleanArray::from(vec![
                true;
                batch
                    .num_rows(
                    )
            ])) as ArrayRef]
        } else {
            self.order
                .iter()
                .map(|e| evaluate(e, batch, &self.errors))
                .collect::<Result<Vec<_>>>()?
        };
        Ok(self.order_codec.convert_columns(&columns)?)
    }

    /// The order keys from order value `lo` (inclusive) to `hi` (inclusive; `None` when there
    /// is no key after it): the span of a bounded recompute, or every key without one.
    fn key_range(&self, span: Option<Span>) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        let Some((lo, hi)) = span else {
            return Ok((Vec::new(), None));
        };
        Ok((
            self.order_key(lo)?,
            hi.checked_add(1).map(|hi| self.order_key(hi)).transpose()?,
        ))
    }

    /// The order key of order value `value` (bounded recompute: one number or timestamp).
    fn order_key(&self, value: i64) -> Result<Vec<u8>> {
        let data_type = self.order[0].data_type(&self.input)?;
        let array = cast(&Int64Array::from(vec![value]), &data_type)?;
        Ok(self
            .order_codec
            .convert_columns(&[array])?
            .row(0)
            .data()
            .to_vec())
    }

    /// Records that each partition holds a row at its order value: lowers the partitions'
    /// lowest keys, read in one call.
    fn note_lowest(&mut self, lowest: Vec<(&[u8], i64)>) -> Result<()> {
        let partitions: Vec<&[u8]> = lowest.iter().map(|(p, _)| *p).collect();
        self.lowest.load(&partitions, |_, stored| Ok(stored))?;
        for (partition, t) in lowest {
            let key = self.order_key(t)?;
            let old = self.lowest.get(partition).cloned().flatten();
            if old.as_ref().is_some_and(|old| *old <= key) {
                continue;
            }
            if let Some(old) = old {
                self.index.put(&[old.as_slice(), partition].concat(), None);
            }
            self.index
                .put(&[key.as_slice(), partition].concat(), Some(()));
            self.lowest.put(partition, Some(key));
        }
        Ok(())
    }

    /// Deletes the rows of every partition below order value `below`.
    fn delete_below(&mut self, below: i64) -> Result<()> {
        let bound = self.order_key(below)?;
        for entry in self.index.keys_in_range(&[], Some(&bound))? {
            let partition = entry
                .get(bound.len()..)
                .ok_or_else(|| StreamError::Corrupt("a window index key too short".into()))?
                .to_vec();
            self.index.put(&entry, None);
            self.rows.delete_range(&partition, &[], Some(&bound))?;
            let first = match self.rows.first(&partition, &bound)? {
                Some((key, value)) => Some(split_entry(&key, &value)?.0.to_vec()),
                None => None,
            };
            match first {
                Some(order_key) => {
                    self.index
                        .put(&[order_key.as_slice(), &partition].concat(), Some(()));
                    self.lowest.put(&partition, Some(order_key));
                }
                None => self.lowest.put(&partition, None),
            }
        }
        Ok(())
    }

    /// The stored output rows of `partition` with order keys in `range`.
    fn stored(&mut self, partition: &[u8], range: &(Vec<u8>, Option<Vec<u8>>)) -> Result<Shown> {
        let mut shown = Shown::new();
        for (key, value) in self.rows.range(partition, &range.0, range.1.as_deref())? {
            let (order_key, count, row) = split_entry(&key, &value)?;
            shown.insert(row.into(), (count, order_key.to_vec()));
        }
        Ok(shown)
    }

    /// The affected spans of `changes` (all with order values) and the spans their frames
    /// reach. Spans whose frames overlap are one, so each change is applied once.
    fn spans(changes: &[Change], reach: Reach) -> Vec<(Span, Span)> {
        let mut spans: Vec<Span> = changes
            .iter()
            .filter_map(|(t, _, _)| *t)
            .map(|t| {
                (
                    t.saturating_sub(reach.after),
                    t.saturating_add(reach.before),
                )
            })
            .collect();
        spans.sort_unstable();
        let frames = reach.before.saturating_add(reach.after).saturating_add(1);
        let mut merged: Vec<Span> = Vec::new();
        for (lo, hi) in spans {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(frames) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        merged
            .into_iter()
            .map(|(lo, hi)| {
                let context = (
                    lo.saturating_sub(reach.before),
                    hi.saturating_add(reach.after),
                );
                ((lo, hi), context)
            })
            .collect()
    }

    /// Recomputes one partition after `changes`; appends the output's changes.
    fn update(
        &mut self,
        partition: &[u8],
        changes: Vec<Change>,
        out: &mut Vec<(Box<[u8]>, i64)>,
    ) -> Result<()> {
        // The rows whose values may change, and the rows their frames reach.
        let spans: Vec<Option<(Span, Span)>> = match self.reach {
            Some(reach) if changes.iter().all(|(t, _, _)| t.is_some()) => {
                Self::spans(&changes, reach).into_iter().map(Some).collect()
            }
            _ => vec![None],
        };
        for span in spans {
            let affected = self.key_range(span.map(|(a, _)| a))?;
            let context = span.map(|(_, c)| c);
            let reached = self.key_range(context)?;
            let shown = self.stored(partition, &reached)?;
            // The input rows: the stored outputs' input columns, changed.
            let mut inputs: BTreeMap<Box<[u8]>, i64> = BTreeMap::new();
            if !shown.is_empty() {
                let parser = self.output_codec.parser();
                let columns = self
                    .output_codec
                    .convert_rows(shown.keys().map(|r| parser.parse(r)))?;
                let encoded = self
                    .input_codec
                    .convert_columns(&columns[..self.input.fields().len()])?;
                for (i, (count, _)) in shown.values().enumerate() {
                    *inputs.entry(encoded.row(i).data().into()).or_default() += count;
                }
            }
            for (t, row, w) in &changes {
                let inside = match (context, t) {
                    (Some((lo, hi)), Some(t)) => (lo..=hi).contains(t),
                    _ => true,
                };
                if inside {
                    *inputs.entry(row.clone()).or_default() += w;
                }
            }
            let computed = self.compute(&inputs)?;
            // Only rows in the affected span are compared: the others' frames are incomplete.
            let in_span = |rows: Shown| -> Shown {
                rows.into_iter()
                    .filter(|(_, (_, key))| {
                        *key >= affected.0 && affected.1.as_ref().is_none_or(|hi| key < hi)
                    })
                    .collect()
            };
            let (before, after) = (in_span(shown), in_span(computed));
            let diff = consolidate(
                before
                    .iter()
                    .map(|(r, (c, _))| (r.clone(), -c))
                    .chain(after.iter().map(|(r, (c, _))| (r.clone(), *c))),
            );
            for (row, change) in diff {
                let (count, key) = match (after.get(&row), before.get(&row)) {
                    (Some((count, key)), _) => (*count, key),
                    (None, Some((_, key))) => (0, key),
                    (None, None) => continue,
                };
                let entry = [key.as_slice(), &row].concat();
                let value = (count != 0).then(|| {
                    let mut value = Vec::with_capacity(8 + row.len());
                    put_i64(&mut value, count);
                    value.extend_from_slice(&row);
                    value
                });
                self.rows.set(partition, &entry, value)?;
                out.push((row, change));
            }
        }
        Ok(())
    }

    fn decode_outputs<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a Box<[u8]>>,
    ) -> Result<RecordBatch> {
        let parser = self.output_codec.parser();
        let rows: Vec<&Box<[u8]>> = rows.into_iter().collect();
        let n = rows.len();
        let columns = self
            .output_codec
            .convert_rows(rows.into_iter().map(|r| parser.parse(r)))?;
        rows_of(self.schema.clone(), columns, n)
    }

    /// The output rows of a partition's input rows (encoded, with multiplicities): the window
    /// functions evaluated over them in ORDER BY order, ties in a fixed order.
    fn compute(&self, inputs: &BTreeMap<Box<[u8]>, i64>) -> Result<Shown> {
        let present: Vec<(&Box<[u8]>, i64)> = inputs
            .iter()
            .filter(|(_, c)| **c > 0)
            .map(|(r, c)| (r, *c))
            .collect();
        if present.is_empty() {
            return Ok(Shown::new());
        }
        let parser = self.input_codec.parser();
        let columns = self
            .input_codec
            .convert_rows(present.iter().map(|(r, _)| parser.parse(r)))?;
        let distinct = RecordBatch::try_new(self.input.clone(), columns)?;
        let keys = self.order_keys(&distinct)?;
        let mut order: Vec<usize> = (0..present.len()).collect();
        order.sort_by(|&a, &b| keys.row(a).cmp(&keys.row(b)).then(a.cmp(&b)));
        let indices: UInt32Array = order
            .iter()
            .flat_map(|&i| std::iter::repeat_n(i as u32, present[i].1 as usize))
            .collect();
        let columns = distinct
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<Vec<_>, _>>()?;
        let sorted = RecordBatch::try_new(self.input.clone(), columns)?;
        let mut outputs = sorted.columns().to_vec();
        for function in &self.functions {
            outputs.push(function.evaluate(&sorted)?);
        }
        let batch = rows_of(self.schema.clone(), outputs, sorted.num_rows())?;
        let encoded = self.output_codec.convert_columns(batch.columns())?;
        let mut rows = Shown::new();
        for (i, source) in indices.values().iter().enumerate() {
            rows.entry(encoded.row(i).data().into())
                .or_insert_with(|| (0, keys.row(*source as usize).data().to_vec()))
                .0 += 1;
        }
        Ok(rows)
    }
}

impl Operator for OverOp {
    fn process(&mut self, _: usize, changes: ChangeBatch, _: &mut Vec<ChangeBatch>) -> Result<()> {
        let batch = changes.rows();
        let partitions = self.partition.keys(batch, &self.errors)?;
        let times = match self.reach {
            Some(_) => {
                let values = evaluate(&self.order[0], batch, &self.errors)?;
                Some(cast(&values, &DataType::Int64)?)
            }
            None => None,
        };
        let times = times.as_ref().map(|t| t.as_primitive::<Int64Type>());
        let rows = self.input_codec.convert_columns(batch.columns())?;
        for (i, partition) in partitions.into_iter().enumerate() {
            let t = times.and_then(|t| t.is_valid(i).then(|| t.value(i)));
            self.pending.entry(partition).or_default().push((
                t,
                rows.row(i).data().into(),
                changes.weights().value(i),
            ));
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        _: usize,
        watermark: Watermark,
        _: &mut Vec<Watermark>,
    ) -> Result<()> {
        if Some(watermark.column) == self.cleanup
            && let Some(t) = crate::common::time::raw(&watermark.value)
        {
            self.closing = Some(self.closing.map_or(t, |c| c.max(t)));
        }
        // Rows are recomputed at the barrier: the watermark waits for the changes emitted there.
        if Some(watermark.column) == self.watermark_column {
            super::watermark::hold(&mut self.held, watermark);
        }
        Ok(())
    }

    fn held_watermarks(&mut self, out: &mut Vec<Watermark>) {
        out.append(&mut self.held);
    }

    fn on_barrier(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        let mut emitted = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        if self.cleanup.is_some() {
            let lowest = pending
                .iter()
                .filter_map(|(partition, changes)| {
                    let t = changes
                        .iter()
                        .filter(|(_, _, w)| *w > 0)
                        .filter_map(|c| c.0)
                        .min()?;
                    Some((&partition[..], t))
                })
                .collect();
            self.note_lowest(lowest)?;
        }
        for (partition, changes) in pending {
            self.update(&partition, changes, &mut emitted)?;
        }
        if let (Some(reach), Some(w)) = (self.reach, self.closing.take()) {
            // A change at W or later reads frames from W - after - before on.
            self.delete_below(w.saturating_sub(reach.after).saturating_sub(reach.before))?;
        }
        if emitted.is_empty() {
            return Ok(());
        }
        let batch = self.decode_outputs(emitted.iter().map(|(r, _)| r))?;
        out.push(ChangeBatch::new(
            batch,
            Int64Array::from_iter_values(emitted.iter().map(|(_, w)| *w)),
        ));
        Ok(())
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) -> Result<()> {
        self.rows.checkpoint(batch)?;
        self.lowest
            .checkpoint_entries(batch, |key, value| value.extend_from_slice(key))?;
        self.index.checkpoint_entries(batch, |_, _| {})
    }

    fn evict(&mut self) {
        self.rows.evict();
        self.lowest.evict();
        self.index.evict();
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn explain(&self) -> String {
        let names: Vec<String> = self
            .functions
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        let order: Vec<String> = self.order.iter().map(|e| e.to_string()).collect();
        let span = |units: i64| match self.order.first().map(|e| e.data_type(&self.input)) {
            Some(Ok(DataType::Timestamp(unit, _))) => {
                human_duration(i128::from(units) * i128::from(nanos_per(&unit)))
            }
            _ => units.to_string(),
        };
        let recompute = match self.reach {
            Some(r) => format!(
                "the rows {} before to {} after a change",
                span(r.before),
                span(r.after)
            ),
            None => "the partition".to_string(),
        };
        let deleted = match (self.cleanup, self.reach) {
            (Some(column), Some(r)) => format!(
                ", deletes rows {} below the watermark of {}",
                span(r.before.saturating_add(r.after)),
                self.input.field(column).name()
            ),
            _ => String::new(),
        };
        format!(
            "Over: [{}], partition=[{}], order=[{}], recomputes {recompute}{deleted}",
            names.join(", "),
            self.partition.explain(),
            order.join(", ")
        )
    }
}

/// The reach of frame bound `value` (`x` of `x PRECEDING`) in units of an ORDER BY column of
/// `order_type`; `None` when it is not a fixed amount.
pub fn bound_units(value: &ScalarValue, order_type: &DataType) -> Option<i64> {
    if value.is_null() {
        return None;
    }
    match order_type {
        DataType::Timestamp(unit, _) => {
            let nanos: i128 = match value {
                ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
                    i128::from(v.days) * 86_400_000_000_000 + i128::from(v.nanoseconds)
                }
                ScalarValue::IntervalDayTime(Some(v)) => {
                    i128::from(v.days) * 86_400_000_000_000 + i128::from(v.milliseconds) * 1_000_000
                }
                _ => return None,
            };
            let per_unit = i128::from(nanos_per(unit));
            // Rounded up: a wider span only reads more rows.
            i64::try_from((nanos + per_unit - 1) / per_unit).ok()
        }
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => match value.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(Some(v)) => Some(v),
            _ => None,
        },
        _ => None,
    }
}
