//! Sliding aggregates along event time: `count`, `sum`, `avg`, `min` and `max` `OVER (PARTITION
//! BY ... ORDER BY t RANGE BETWEEN x PRECEDING AND CURRENT ROW)`, the per-event features of
//! fraud scoring and recommendations, kept per partition in memory.
//!
//! Each partition holds its rows within reach of the watermark on `t`, in order of `t`, and for
//! each function the aggregate over the frame of its newest row. A row that comes after every
//! row of its partition (the common case: events arrive about in order) moves each frame
//! forward — values that leave the frame are subtracted, a monotonic deque gives min and max —
//! and its features are ready in O(1) per function, without reading anything (a float sum is
//! added up over the frame, in its order, so that it is the same bits a recompute gives). Any other change
//! (a row earlier than the newest, a peer of it, a retraction, a NULL `t`) recomputes the rows
//! whose frames it reaches, `[t, t + x]`, from the rows kept, and emits their difference: the
//! answer is always the query's.
//!
//! With a watermark `W` on `t`, no later change has `t < W`; it reaches frames that start at
//! `W - x` or later, so rows below `W - x` are dropped at the barrier, and the values of rows
//! below `W` are final. Nothing else is kept: a row's features are computed again from the rows
//! when it must be retracted, and they are what was emitted, because every change that reached
//! a row re-emitted it.
//!
//! State is the log of the input's changes: one entry per epoch (`l` + a number) holding the
//! epoch's changes, written once; an entry is deleted when all its rows are below the watermark's
//! reach. At start the entries are read back in order to rebuild the partitions. Rows with a
//! NULL `t` (peers of each other only) keep their entry for good.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef};
use datafusion::arrow::row::RowConverter;
use datafusion::common::{HashMap, ScalarValue};
use datafusion::physical_expr::PhysicalExpr;

use super::change::rows_of;
use super::project::evaluate;
use super::state::{Partitioner, Reader, StateScope, put_i64, sort_fields};
use super::{ChangeBatch, ExprErrors, Operator, Result, StreamError, Watermark};
use crate::storage::WriteBatch;

const LOG_TAG: u8 = b'l';

/// A sliding aggregate function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SlideKind {
    /// Non-null values.
    Count,
    /// Sum of the non-null values (NULL without any).
    Sum,
    /// Their mean.
    Avg,
    /// The least.
    Min,
    /// The greatest.
    Max,
}

impl SlideKind {
    /// The function called `name`, if it slides.
    pub fn named(name: &str) -> Option<Self> {
        Some(match name {
            "count" => Self::Count,
            "sum" => Self::Sum,
            "avg" | "mean" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            _ => return None,
        })
    }
}

/// One function: what it computes, over which argument, how far back its frame reaches.
#[derive(Debug, Clone)]
pub struct Slide {
    /// The function.
    pub kind: SlideKind,
    /// Its argument, over the input's rows.
    pub arg: Arc<dyn PhysicalExpr>,
    /// The frame is `[t - before, t]` (with `t`'s peers), in the units of `t`.
    pub before: i64,
    /// Its text, for EXPLAIN.
    pub text: String,
}

/// An argument's value: integers exactly, everything else as a float.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    I(i64),
    F(f64),
}

impl Num {
    fn f64(self) -> f64 {
        match self {
            Num::I(v) => v as f64,
            Num::F(v) => v,
        }
    }

    fn less(self, other: Num) -> bool {
        match (self, other) {
            (Num::I(a), Num::I(b)) => a < b,
            (a, b) => a.f64().total_cmp(&b.f64()).is_lt(),
        }
    }
}

/// What an argument's values are kept as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ArgKind {
    /// Integers, exactly.
    Int,
    /// Floats.
    Float,
    /// Only whether it is NULL (an argument only counted, such as text).
    Counted,
}

/// A function's running aggregate over a frame.
#[derive(Debug, Clone, Default)]
struct Running {
    /// Non-null values in the frame.
    count: i64,
    int: i128,
    /// Float sum, with Neumaier's compensation.
    float: f64,
    compensation: f64,
    /// Positions (absolute) of the candidates for min or max, best first.
    extremes: VecDeque<u64>,
    /// Absolute position of the frame's first row.
    front: u64,
}

impl Running {
    fn add(&mut self, value: Option<Num>) {
        self.change(value, 1);
    }

    fn remove(&mut self, value: Option<Num>) {
        self.change(value, -1);
    }

    fn change(&mut self, value: Option<Num>, sign: i64) {
        let Some(value) = value else {
            return;
        };
        self.count += sign;
        match value {
            Num::I(v) => self.int += i128::from(v) * i128::from(sign),
            Num::F(v) => {
                let v = v * sign as f64;
                let t = self.float + v;
                self.compensation += if self.float.abs() >= v.abs() {
                    (self.float - t) + v
                } else {
                    (v - t) + self.float
                };
                self.float = t;
            }
        }
    }

    /// The value of a count, sum or avg (min and max come from `extremes`).
    fn value(&self, kind: SlideKind, float: bool) -> Option<Num> {
        match kind {
            SlideKind::Count => Some(Num::I(self.count)),
            _ if self.count == 0 => None,
            SlideKind::Sum if float => Some(Num::F(self.float + self.compensation)),
            SlideKind::Sum => Some(Num::I(self.int as i64)),
            SlideKind::Avg if float => {
                Some(Num::F((self.float + self.compensation) / self.count as f64))
            }
            SlideKind::Avg => Some(Num::F(self.int as f64 / self.count as f64)),
            SlideKind::Min | SlideKind::Max => None,
        }
    }
}

/// A row of a partition.
#[derive(Debug)]
struct Row {
    t: i64,
    /// The input row, in the input's row format.
    input: Box<[u8]>,
    /// The functions' argument values.
    args: Box<[Option<Num>]>,
}

/// One partition's rows within reach, in order of `t` (ties in arrival order).
#[derive(Debug, Default)]
struct Part {
    rows: VecDeque<Row>,
    /// Absolute position of `rows[0]`: rows dropped from the front so far.
    base: u64,
    /// Rows with a NULL `t`.
    nulls: Vec<Row>,
    /// Each function's aggregate over the frame of the newest row; `None` after a change that
    /// was not an append, until the next append rebuilds it.
    tail: Option<Vec<Running>>,
}

impl Part {
    fn row(&self, at: u64) -> &Row {
        &self.rows[(at - self.base) as usize]
    }

    fn first_t(&self) -> Option<i64> {
        self.rows.front().map(|r| r.t)
    }

    /// Position (relative) of the first row with `t >= value`.
    fn lower(&self, value: i64) -> usize {
        self.rows.partition_point(|r| r.t < value)
    }

    /// Position (relative) after the last row with `t <= value`.
    fn upper(&self, value: i64) -> usize {
        self.rows.partition_point(|r| r.t <= value)
    }
}

/// Output rows computed on the slow path: input row, feature values, weight.
type Recomputed = (Box<[u8]>, Vec<Option<Num>>, i64);

/// Where a change's output goes: the values of an appended row, and recomputed rows.
type Emitted<'a> = (&'a mut Vec<Vec<Option<Num>>>, &'a mut Vec<Recomputed>);

/// A change read back from the log: partition, `t`, input row, weight.
type Logged = (Box<[u8]>, Option<i64>, Box<[u8]>, i64);

/// Sliding aggregates over an input with a watermark on its ORDER BY column.
#[derive(Debug)]
pub struct SlidingOp {
    schema: SchemaRef,
    input: SchemaRef,
    partition: Partitioner,
    /// The ORDER BY column (integer or timestamp).
    order: usize,
    slides: Vec<Slide>,
    /// Distinct argument expressions; each slide's index into them.
    args: Vec<Arc<dyn PhysicalExpr>>,
    arg_of: Vec<usize>,
    /// What each argument's values are.
    arg_kinds: Vec<ArgKind>,
    /// The largest `before`: how far any change reaches.
    reach: i64,
    codec: RowConverter,
    parts: HashMap<Box<[u8]>, Part>,
    /// Partitions by their first row's `t`: those with rows to drop at a watermark.
    by_first: BTreeSet<(i64, Box<[u8]>)>,
    /// The newest watermark on `t`, acted on at the barrier.
    closing: Option<i64>,
    /// Whether the watermark on `t` passes on to the output.
    passes_watermark: bool,
    /// This epoch's changes, encoded for the log.
    log: Vec<u8>,
    log_max_t: Option<i64>,
    log_nulls: bool,
    log_count: i64,
    /// Log entries stored: number, greatest `t`, whether it holds NULL `t`s.
    entries: Vec<(u64, Option<i64>, bool)>,
    next_entry: u64,
    /// Entries to delete at the checkpoint.
    expired: Vec<u64>,
    /// Bytes of rows kept, and what of it is counted in the views' state budget.
    bytes: usize,
    counted: usize,
    state: StateScope,
    errors: Arc<ExprErrors>,
}

/// Bytes a kept row costs beyond its encoding.
const ROW_OVERHEAD: usize = 48;

impl SlidingOp {
    /// The functions `slides` over rows of `input`, partitioned by `partition` and ordered by
    /// input column `order`; output rows are the input's followed by one column per function,
    /// in `schema`. Reads back the rows its log holds.
    pub fn new(
        input: SchemaRef,
        schema: SchemaRef,
        partition: Vec<Arc<dyn PhysicalExpr>>,
        order: usize,
        slides: Vec<Slide>,
        state: StateScope,
        errors: Arc<ExprErrors>,
    ) -> Result<Self> {
        let mut args: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
        let mut arg_of = Vec::new();
        for slide in &slides {
            let at = match args.iter().position(|a| a.as_ref() == slide.arg.as_ref()) {
                Some(at) => at,
                None => {
                    args.push(slide.arg.clone());
                    args.len() - 1
                }
            };
            arg_of.push(at);
        }
        let arg_kinds = args
            .iter()
            .map(|a| {
                Ok(match a.data_type(&input)? {
                    // (UInt64 may not fit; the planner lets only count take it.)
                    t if t.is_integer() && t != DataType::UInt64 => ArgKind::Int,
                    t if t.is_floating() => ArgKind::Float,
                    // Only counted (count of text, say): whether it is NULL is all it keeps.
                    _ => ArgKind::Counted,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut op = Self {
            codec: RowConverter::new(sort_fields(input.fields()))?,
            partition: Partitioner::new(partition, &input)?,
            reach: slides.iter().map(|s| s.before).max().unwrap_or(0),
            schema,
            input,
            order,
            slides,
            args,
            arg_of,
            arg_kinds,
            parts: HashMap::new(),
            by_first: BTreeSet::new(),
            closing: None,
            passes_watermark: false,
            log: Vec::new(),
            log_max_t: None,
            log_nulls: false,
            log_count: 0,
            entries: Vec::new(),
            next_entry: 0,
            expired: Vec::new(),
            bytes: 0,
            counted: 0,
            state,
            errors,
        };
        op.recover()?;
        Ok(op)
    }

    /// Passes the watermark on `t` through (no function looks past the current row).
    pub fn with_watermark(mut self, passes: bool) -> Self {
        self.passes_watermark = passes;
        self
    }

    /// Rebuilds the partitions from the stored log.
    fn recover(&mut self) -> Result<()> {
        let prefix = self.state.key(LOG_TAG, &[]);
        let mut stored = Vec::new();
        self.state
            .store()
            .scan_prefix::<StreamError>(&prefix, |k, v| {
                let number = Reader::new(&k[prefix.len()..]).i64()? as u64;
                stored.push((number, v.to_vec()));
                Ok(true)
            })?;
        for (number, bytes) in stored {
            let mut reader = Reader::new(&bytes);
            let max_t = match reader.i64()? {
                i64::MIN => None,
                t => Some(t),
            };
            let nulls = reader.take(1)?[0] == 1;
            let count = reader.i64()?;
            let mut changes: Vec<Logged> = Vec::new();
            for _ in 0..count {
                let len = reader.i64()?;
                let partition: Box<[u8]> = reader.take(len as usize)?.into();
                let t = match reader.take(1)?[0] {
                    0 => None,
                    _ => Some(reader.i64()?),
                };
                let len = reader.i64()?;
                let row: Box<[u8]> = reader.take(len as usize)?.into();
                let weight = reader.i64()?;
                changes.push((partition, t, row, weight));
            }
            let rows: Vec<&[u8]> = changes.iter().map(|c| c.2.as_ref()).collect();
            let args = self.args_of_rows(&rows)?;
            for ((partition, t, row, weight), args) in changes.into_iter().zip(args) {
                self.apply(&partition, t, row, args, weight, None);
            }
            self.entries.push((number, max_t, nulls));
            self.next_entry = number + 1;
        }
        Ok(())
    }

    /// The argument values of encoded input rows.
    fn args_of_rows(&self, rows: &[&[u8]]) -> Result<Vec<Box<[Option<Num>]>>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let parser = self.codec.parser();
        let columns = self
            .codec
            .convert_rows(rows.iter().map(|r| parser.parse(r)))?;
        let batch = RecordBatch::try_new(self.input.clone(), columns)?;
        self.args_of_batch(&batch)
    }

    /// The argument values of each row of `batch`.
    fn args_of_batch(&self, batch: &RecordBatch) -> Result<Vec<Box<[Option<Num>]>>> {
        let columns = self
            .args
            .iter()
            .zip(&self.arg_kinds)
            .map(|(arg, kind)| {
                let values = evaluate(arg, batch, &self.errors)?;
                Ok(match kind {
                    ArgKind::Int => cast(&values, &DataType::Int64)?,
                    ArgKind::Float => cast(&values, &DataType::Float64)?,
                    // Only its NULLs matter: zeros where it has a value.
                    ArgKind::Counted => Arc::new(Int64Array::from_iter(
                        (0..values.len()).map(|i| values.is_valid(i).then_some(0)),
                    )),
                })
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        Ok((0..batch.num_rows())
            .map(|row| {
                columns
                    .iter()
                    .zip(&self.arg_kinds)
                    .map(|(c, kind)| {
                        (!c.is_null(row)).then(|| match kind {
                            ArgKind::Float => Num::F(c.as_primitive::<Float64Type>().value(row)),
                            _ => Num::I(c.as_primitive::<Int64Type>().value(row)),
                        })
                    })
                    .collect()
            })
            .collect())
    }

    /// The features of row `at` (relative) of `part`, computed from its frame.
    fn features_at(&self, part: &Part, at: usize) -> Vec<Option<Num>> {
        let t = part.rows[at].t;
        let end = part.upper(t);
        self.slides
            .iter()
            .enumerate()
            .map(|(i, slide)| {
                let start = part.lower(t.saturating_sub(slide.before));
                self.aggregate(i, part.rows.range(start..end))
            })
            .collect()
    }

    /// Function `i` over `rows`, added up in their order.
    fn aggregate<'a>(&self, i: usize, rows: impl Iterator<Item = &'a Row>) -> Option<Num> {
        let (kind, arg) = (self.slides[i].kind, self.arg_of[i]);
        let mut running = Running::default();
        let mut best: Option<Num> = None;
        for row in rows {
            let value = row.args[arg];
            running.add(value);
            if let Some(v) = value {
                let better = match (kind, best) {
                    (_, None) => true,
                    (SlideKind::Min, Some(b)) => v.less(b),
                    (SlideKind::Max, Some(b)) => b.less(v),
                    _ => false,
                };
                if better {
                    best = Some(v);
                }
            }
        }
        match kind {
            SlideKind::Min | SlideKind::Max => best,
            _ => running.value(kind, self.arg_kinds[arg] == ArgKind::Float),
        }
    }

    /// The features of the NULL-`t` rows of `part`: each one's frame is all of them.
    fn null_features(&self, part: &Part) -> Vec<Option<Num>> {
        (0..self.slides.len())
            .map(|i| self.aggregate(i, part.nulls.iter()))
            .collect()
    }

    /// Rebuilds the running aggregates of the newest row's frame.
    fn rebuild_tail(&self, part: &Part) -> Vec<Running> {
        let Some(last) = part.rows.back() else {
            return vec![Running::default(); self.slides.len()];
        };
        self.slides
            .iter()
            .enumerate()
            .map(|(i, slide)| {
                let arg = self.arg_of[i];
                let start = part.lower(last.t.saturating_sub(slide.before));
                let mut running = Running {
                    front: part.base + start as u64,
                    ..Running::default()
                };
                for at in start..part.rows.len() {
                    let value = part.rows[at].args[arg];
                    running.add(value);
                    push_extreme(&mut running, slide.kind, part, part.base + at as u64, arg);
                }
                running
            })
            .collect()
    }

    /// Applies one change to `partition`; with `out`, emits what it changes in the output:
    /// the features of an appended row in `out.0` (its values), the recomputed rows in `out.1`.
    fn apply(
        &mut self,
        partition: &[u8],
        t: Option<i64>,
        input: Box<[u8]>,
        args: Box<[Option<Num>]>,
        weight: i64,
        mut out: Option<Emitted<'_>>,
    ) -> bool {
        // The partition is taken out while it changes (and put back in the same slot): its key
        // is allocated once, when the partition is new.
        let mut part = match self.parts.get_mut(partition) {
            Some(part) => std::mem::take(part),
            None => Part::default(),
        };
        let first = part.first_t();
        let size = ROW_OVERHEAD + input.len() + args.len() * 16;
        let mut appended = None;
        match t {
            None => {
                let before = self.null_features(&part);
                let inputs: Vec<Box<[u8]>> = part.nulls.iter().map(|r| r.input.clone()).collect();
                if weight > 0 {
                    for _ in 0..weight {
                        part.nulls.push(Row {
                            t: 0,
                            input: input.clone(),
                            args: args.clone(),
                        });
                        self.bytes += size;
                    }
                } else {
                    for _ in 0..-weight {
                        if let Some(at) = part.nulls.iter().position(|r| r.input == input) {
                            part.nulls.remove(at);
                            self.bytes = self.bytes.saturating_sub(size);
                        }
                    }
                }
                if let Some((_, recomputed)) = out.as_mut() {
                    for row in inputs {
                        recomputed.push((row, before.clone(), -1));
                    }
                    let after = self.null_features(&part);
                    for row in &part.nulls {
                        recomputed.push((row.input.clone(), after.clone(), 1));
                    }
                }
            }
            Some(t) => {
                let append = weight == 1 && part.rows.back().is_none_or(|last| last.t < t);
                if append && part.tail.is_some() {
                    let at = part.base + part.rows.len() as u64;
                    part.rows.push_back(Row { t, input, args });
                    self.bytes += size;
                    let mut tail = part.tail.take().unwrap_or_default();
                    let mut values = Vec::with_capacity(self.slides.len());
                    for (i, slide) in self.slides.iter().enumerate() {
                        let arg = self.arg_of[i];
                        let running = &mut tail[i];
                        running.add(part.row(at).args[arg]);
                        push_extreme(running, slide.kind, &part, at, arg);
                        let from = t.saturating_sub(slide.before);
                        while running.front < at && part.row(running.front).t < from {
                            let value = part.row(running.front).args[arg];
                            running.remove(value);
                            running.front += 1;
                        }
                        while running.extremes.front().is_some_and(|&e| e < running.front) {
                            running.extremes.pop_front();
                        }
                        let float = self.arg_kinds[arg] == ArgKind::Float;
                        values.push(match slide.kind {
                            // A float sum depends on the order of its terms: summed over the
                            // frame as a recompute sums it, so that a later retraction of this
                            // row takes back exactly these bits.
                            SlideKind::Sum | SlideKind::Avg if float => {
                                let start = (running.front - part.base) as usize;
                                self.aggregate(i, part.rows.range(start..))
                            }
                            SlideKind::Min | SlideKind::Max => running
                                .extremes
                                .front()
                                .and_then(|&at| part.row(at).args[arg]),
                            kind => running.value(kind, float),
                        });
                    }
                    part.tail = Some(tail);
                    appended = Some(values);
                } else if append {
                    part.rows.push_back(Row { t, input, args });
                    self.bytes += size;
                    let at = part.rows.len() - 1;
                    appended = Some(self.features_at(&part, at));
                    part.tail = Some(self.rebuild_tail(&part));
                } else {
                    // The rows whose frames the change reaches, before and after it.
                    let reach = t.saturating_add(self.reach);
                    if let Some((_, recomputed)) = out.as_mut() {
                        for at in part.lower(t)..part.upper(reach) {
                            let values = self.features_at(&part, at);
                            recomputed.push((part.rows[at].input.clone(), values, -1));
                        }
                    }
                    if weight > 0 {
                        for _ in 0..weight {
                            let at = part.upper(t);
                            part.rows.insert(
                                at,
                                Row {
                                    t,
                                    input: input.clone(),
                                    args: args.clone(),
                                },
                            );
                            self.bytes += size;
                        }
                    } else {
                        for _ in 0..-weight {
                            let (lo, hi) = (part.lower(t), part.upper(t));
                            if let Some(at) = (lo..hi).find(|&at| part.rows[at].input == input) {
                                part.rows.remove(at);
                                self.bytes = self.bytes.saturating_sub(size);
                            }
                        }
                    }
                    if let Some((_, recomputed)) = out.as_mut() {
                        for at in part.lower(t)..part.upper(reach) {
                            let values = self.features_at(&part, at);
                            recomputed.push((part.rows[at].input.clone(), values, 1));
                        }
                    }
                    part.tail = None;
                }
            }
        }
        let now_first = part.first_t();
        if first != now_first {
            if let Some(f) = first {
                self.by_first.remove(&(f, Box::from(partition)));
            }
            if let Some(f) = now_first {
                self.by_first.insert((f, Box::from(partition)));
            }
        }
        if part.rows.is_empty() && part.nulls.is_empty() {
            self.parts.remove(partition);
        } else if let Some(slot) = self.parts.get_mut(partition) {
            *slot = part;
        } else {
            self.parts.insert(partition.into(), part);
        }
        if let (Some(values), Some((fast, _))) = (appended, out) {
            fast.push(values);
            return true;
        }
        false
    }

    /// Drops the rows below `below` from every partition.
    fn drop_below(&mut self, below: i64) {
        let Self {
            parts,
            by_first,
            arg_of,
            bytes,
            ..
        } = self;
        while let Some((first, partition)) = by_first.pop_first() {
            if first >= below {
                by_first.insert((first, partition));
                break;
            }
            let Some(part) = parts.get_mut(&partition) else {
                continue;
            };
            while part.rows.front().is_some_and(|r| r.t < below) {
                let at = part.base;
                if let Some(tail) = part.tail.as_mut() {
                    for (i, running) in tail.iter_mut().enumerate() {
                        if running.front == at {
                            running.remove(part.rows[0].args[arg_of[i]]);
                            running.front += 1;
                        }
                        while running.extremes.front().is_some_and(|&e| e <= at) {
                            running.extremes.pop_front();
                        }
                    }
                }
                if let Some(row) = part.rows.pop_front() {
                    *bytes =
                        bytes.saturating_sub(ROW_OVERHEAD + row.input.len() + row.args.len() * 16);
                }
                part.base += 1;
            }
            match part.first_t() {
                Some(f) => {
                    by_first.insert((f, partition));
                }
                None if part.nulls.is_empty() => {
                    parts.remove(&partition);
                }
                None => {}
            }
        }
        // Log entries whose rows are all out of reach go.
        let expired: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, max_t, nulls)| !nulls && max_t.is_none_or(|t| t < below))
            .map(|(n, _, _)| *n)
            .collect();
        self.entries.retain(|(n, _, _)| !expired.contains(n));
        self.expired.extend(expired);
    }

    /// Output rows: appended rows of `batch` (positions, values) and recomputed rows.
    fn output(
        &self,
        batch: &RecordBatch,
        appended: (Vec<u32>, Vec<Vec<Option<Num>>>),
        recomputed: Vec<Recomputed>,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        let (positions, values) = appended;
        if !positions.is_empty() {
            let indices = UInt32Array::from(positions);
            let mut columns = batch
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &indices, None))
                .collect::<Result<Vec<_>, _>>()?;
            columns.extend(self.feature_columns(values.iter().map(Vec::as_slice)));
            let n = indices.len();
            out.push(ChangeBatch::inserts(rows_of(
                self.schema.clone(),
                columns,
                n,
            )?));
        }
        if !recomputed.is_empty() {
            let parser = self.codec.parser();
            let mut columns = self
                .codec
                .convert_rows(recomputed.iter().map(|(r, _, _)| parser.parse(r)))?;
            columns.extend(self.feature_columns(recomputed.iter().map(|(_, v, _)| v.as_slice())));
            let n = recomputed.len();
            let weights = Int64Array::from_iter_values(recomputed.iter().map(|(_, _, w)| *w));
            out.push(ChangeBatch::new(
                rows_of(self.schema.clone(), columns, n)?,
                weights,
            ));
        }
        Ok(())
    }

    /// One column per function from each row's values.
    fn feature_columns<'a>(
        &self,
        rows: impl Iterator<Item = &'a [Option<Num>]> + Clone,
    ) -> Vec<ArrayRef> {
        (0..self.slides.len())
            .map(|i| {
                let float = match self.slides[i].kind {
                    SlideKind::Count => false,
                    SlideKind::Avg => true,
                    _ => self.arg_kinds[self.arg_of[i]] == ArgKind::Float,
                };
                let values = rows.clone().map(|r| r[i]);
                if float {
                    Arc::new(values.map(|v| v.map(Num::f64)).collect::<Float64Array>()) as ArrayRef
                } else {
                    Arc::new(
                        values
                            .map(|v| {
                                v.map(|v| match v {
                                    Num::I(v) => v,
                                    Num::F(v) => v as i64,
                                })
                            })
                            .collect::<Int64Array>(),
                    ) as ArrayRef
                }
            })
            .collect()
    }

    /// Adds a change to this epoch's log entry.
    fn log(&mut self, partition: &[u8], t: Option<i64>, row: &[u8], weight: i64) {
        self.log_count += 1;
        put_i64(&mut self.log, partition.len() as i64);
        self.log.extend_from_slice(partition);
        match t {
            Some(t) => {
                self.log.push(1);
                put_i64(&mut self.log, t);
                self.log_max_t = Some(self.log_max_t.map_or(t, |m| m.max(t)));
            }
            None => {
                self.log.push(0);
                self.log_nulls = true;
            }
        }
        put_i64(&mut self.log, row.len() as i64);
        self.log.extend_from_slice(row);
        put_i64(&mut self.log, weight);
    }
}

impl Drop for SlidingOp {
    fn drop(&mut self) {
        self.state.budget().sub(self.counted);
    }
}

/// Adds the row at absolute position `at` to the candidates for min or max.
fn push_extreme(running: &mut Running, kind: SlideKind, part: &Part, at: u64, arg: usize) {
    let Some(value) = part.row(at).args[arg] else {
        return;
    };
    let worse = |other: Num| match kind {
        SlideKind::Min => !other.less(value),
        SlideKind::Max => !value.less(other),
        _ => false,
    };
    if !matches!(kind, SlideKind::Min | SlideKind::Max) {
        return;
    }
    while running
        .extremes
        .back()
        .and_then(|&b| part.row(b).args[arg])
        .is_some_and(worse)
    {
        running.extremes.pop_back();
    }
    running.extremes.push_back(at);
}

impl Operator for SlidingOp {
    fn process(
        &mut self,
        _: usize,
        changes: ChangeBatch,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        let batch = changes.rows();
        let partitions = self.partition.keys(batch, &self.errors)?;
        let times = cast(batch.column(self.order), &DataType::Int64)?;
        let times = times.as_primitive::<Int64Type>();
        let rows = self.codec.convert_columns(batch.columns())?;
        let args = self.args_of_batch(batch)?;
        let (mut positions, mut values, mut recomputed) = (Vec::new(), Vec::new(), Vec::new());
        for (i, (partition, args)) in partitions.into_iter().zip(args).enumerate() {
            let t = times.is_valid(i).then(|| times.value(i));
            let weight = changes.weights().value(i);
            let row: Box<[u8]> = rows.row(i).data().into();
            self.log(&partition, t, &row, weight);
            let appended = self.apply(
                &partition,
                t,
                row,
                args,
                weight,
                Some((&mut values, &mut recomputed)),
            );
            if appended {
                positions.push(i as u32);
            }
        }
        self.output(batch, (positions, values), recomputed, out)
    }

    fn on_watermark(
        &mut self,
        _: usize,
        watermark: Watermark,
        out: &mut Vec<Watermark>,
    ) -> Result<()> {
        if watermark.column == self.order {
            let t = match crate::common::time::raw(&watermark.value) {
                Some(t) => Some(t),
                None => match watermark.value.cast_to(&DataType::Int64)? {
                    ScalarValue::Int64(t) => t,
                    _ => None,
                },
            };
            if let Some(t) = t {
                self.closing = Some(self.closing.map_or(t, |c| c.max(t)));
            }
        }
        // Changes are emitted as they come: the watermark follows them at once.
        if self.passes_watermark && watermark.column == self.order {
            out.push(watermark);
        }
        Ok(())
    }

    fn on_barrier(&mut self, _: &mut Vec<ChangeBatch>) -> Result<()> {
        if let Some(w) = self.closing.take() {
            // A change at W or later reaches frames from W - reach on.
            self.drop_below(w.saturating_sub(self.reach));
        }
        // The rows kept count against the views' state budget.
        let budget = self.state.budget();
        if self.bytes >= self.counted {
            budget.add(self.bytes - self.counted);
        } else {
            budget.sub(self.counted - self.bytes);
        }
        self.counted = self.bytes;
        Ok(())
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) -> Result<()> {
        for number in std::mem::take(&mut self.expired) {
            batch.delete(self.state.key(LOG_TAG, &[&number.to_be_bytes()]));
        }
        if self.log.is_empty() {
            return Ok(());
        }
        let mut value = Vec::with_capacity(17 + self.log.len());
        put_i64(&mut value, self.log_max_t.unwrap_or(i64::MIN));
        value.push(u8::from(self.log_nulls));
        put_i64(&mut value, std::mem::take(&mut self.log_count));
        value.append(&mut self.log);
        let number = self.next_entry;
        self.next_entry += 1;
        batch.put(self.state.key(LOG_TAG, &[&number.to_be_bytes()]), value);
        self.entries.push((
            number,
            self.log_max_t.take(),
            std::mem::take(&mut self.log_nulls),
        ));
        Ok(())
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn explain(&self) -> String {
        let slides: Vec<&str> = self.slides.iter().map(|s| s.text.as_str()).collect();
        let order = self.input.field(self.order).name();
        format!(
            "SlidingWindow: [{}], partition=[{}], order=[{order}@{}], each appended row in O(1), keeps the rows within reach of the watermark of {order} in memory",
            slides.join(", "),
            self.partition.explain(),
            self.order,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::Column;

    use super::*;
    use crate::storage::Store;
    use crate::stream::change::pretty::{changes_of, net, schema};

    fn column(i: usize) -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new(&format!("c{i}"), i))
    }

    /// Partition c0, order c1, value c2: count(c2) and sum(c2) over 2 units, max(c2) over 5.
    fn op(store: &Store) -> SlidingOp {
        let input = schema("I I I");
        let mut fields: Vec<Field> = input.fields().iter().map(|f| (**f).clone()).collect();
        for name in ["n", "s", "m"] {
            fields.push(Field::new(name, DataType::Int64, true));
        }
        let slide = |kind, before| Slide {
            kind,
            arg: column(2),
            before,
            text: String::new(),
        };
        SlidingOp::new(
            input,
            Arc::new(Schema::new(fields)),
            vec![column(0)],
            1,
            vec![
                slide(SlideKind::Count, 2),
                slide(SlideKind::Sum, 2),
                slide(SlideKind::Max, 5),
            ],
            StateScope::new(store.clone(), 1, 0),
            Arc::default(),
        )
        .unwrap()
        .with_watermark(true)
    }

    /// An input row: partition, order value, value.
    type Event = (i64, i64, Option<i64>);

    /// What the query gives over `rows` (with multiplicities), brute force.
    fn oracle(rows: &[Event]) -> Vec<String> {
        let mut lines = std::collections::BTreeMap::<String, i64>::new();
        for &(p, t, v) in rows {
            let frame = |before: i64| {
                rows.iter()
                    .filter(move |(q, u, _)| *q == p && *u >= t - before && *u <= t)
                    .filter_map(|(_, _, v)| *v)
            };
            let n = frame(2).count();
            let s = frame(2).reduce(|a, b| a + b);
            let m = frame(5).max();
            let show = |v: Option<i64>| v.map_or(".".to_string(), |v| v.to_string());
            let v = show(v);
            *lines
                .entry(format!("{p} {t} {v} {n} {} {}", show(s), show(m)))
                .or_default() += 1;
        }
        lines
            .into_iter()
            .map(|(line, w)| match w {
                1 => format!("+ {line}"),
                w => format!("{w:+} {line}"),
            })
            .collect()
    }

    #[test]
    fn appends_out_of_order_rows_peers_and_retractions_give_the_querys_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let input = schema("I I I");
        let mut sliding = op(&store);
        let mut out = Vec::new();
        let mut rows: Vec<Event> = Vec::new();
        let steps: &[(&str, Event)] = &[
            ("+ 1 10 5", (1, 10, Some(5))),
            ("+ 1 11 7", (1, 11, Some(7))),
            ("+ 1 13 .", (1, 13, None)),
            ("+ 2 13 1", (2, 13, Some(1))),
            ("+ 1 14 2", (1, 14, Some(2))),
            // Out of order: reaches the rows at 12..14.
            ("+ 1 12 9", (1, 12, Some(9))),
            // A peer of the newest row.
            ("+ 1 14 4", (1, 14, Some(4))),
            ("+ 1 20 1", (1, 20, Some(1))),
        ];
        for (line, row) in steps {
            sliding
                .process(0, changes_of(&input, [*line]), &mut out)
                .unwrap();
            rows.push(*row);
            assert_eq!(net(&out), oracle(&rows), "after {line}");
        }
        // A retraction of the out-of-order row: the rows it reached go back.
        sliding
            .process(0, changes_of(&input, ["- 1 12 9"]), &mut out)
            .unwrap();
        rows.retain(|r| *r != (1, 12, Some(9)));
        assert_eq!(net(&out), oracle(&rows));

        // Restarted from its log, it carries on where it was.
        let mut batch = WriteBatch::default();
        sliding.checkpoint(&mut batch).unwrap();
        store.write(batch).unwrap();
        let mut sliding = op(&store);
        sliding
            .process(0, changes_of(&input, ["+ 1 21 3", "+ 1 19 6"]), &mut out)
            .unwrap();
        rows.extend([(1, 21, Some(3)), (1, 19, Some(6))]);
        assert_eq!(net(&out), oracle(&rows));

        // A watermark at 22 drops the rows below 22 - 5 from memory and the log entries
        // whose rows are all below it; later rows still see the rows within reach.
        let mut marks = Vec::new();
        let mark = Watermark {
            column: 1,
            value: ScalarValue::Int64(Some(22)),
        };
        sliding.on_watermark(0, mark.clone(), &mut marks).unwrap();
        assert_eq!(marks, vec![mark]);
        sliding.on_barrier(&mut out).unwrap();
        assert!(
            sliding
                .parts
                .values()
                .all(|p| p.rows.iter().all(|r| r.t >= 17))
        );
        sliding
            .process(0, changes_of(&input, ["+ 1 22 8"]), &mut out)
            .unwrap();
        rows.push((1, 22, Some(8)));
        assert_eq!(net(&out), oracle(&rows));
    }
}
