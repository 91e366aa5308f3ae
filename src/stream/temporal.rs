//! `NOW()` in views: the operator that keeps rows while the event-time clock is within their
//! window (the planner's half, `planner::temporal`, says what `NOW()` in a view means and turns
//! conditions on it into [`Bound`]s).
//!
//! Each row is visible while the clock is in `[from, until)`, computed from the row once. Rows
//! wait in state keyed by the time they appear or leave, so a clock that advances reads only the
//! rows it moves past; rows that have left are deleted, which keeps the state to the rows in the
//! window.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampNanosecondType};
use datafusion::arrow::row::RowConverter;
use datafusion::logical_expr::Operator as BinaryOp;
use datafusion::physical_expr::PhysicalExpr;

use super::change::rows_of;
use super::project::evaluate;
use super::state::{Reader, StateScope, StateTable, put_i64, sort_fields};
use super::{ChangeBatch, ExprErrors, Operator, Result, StreamError, Watermark};
use crate::common::time::{self, human_duration};
use crate::storage::WriteBatch;

/// How a row's value compares with the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Lt,
    LtEq,
    Gt,
    GtEq,
    Eq,
}

impl Cmp {
    /// The comparison `op`, if it is one.
    pub fn of(op: BinaryOp) -> Option<Self> {
        Some(match op {
            BinaryOp::Lt => Cmp::Lt,
            BinaryOp::LtEq => Cmp::LtEq,
            BinaryOp::Gt => Cmp::Gt,
            BinaryOp::GtEq => Cmp::GtEq,
            BinaryOp::Eq => Cmp::Eq,
            _ => return None,
        })
    }

    /// The comparison with its sides swapped.
    pub fn swap(self) -> Self {
        match self {
            Cmp::Lt => Cmp::Gt,
            Cmp::LtEq => Cmp::GtEq,
            Cmp::Gt => Cmp::Lt,
            Cmp::GtEq => Cmp::LtEq,
            Cmp::Eq => Cmp::Eq,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::LtEq => "<=",
            Cmp::Gt => ">",
            Cmp::GtEq => ">=",
            Cmp::Eq => "=",
        }
    }
}

/// A condition ready to run: the row's side compiled.
#[derive(Debug)]
pub struct Bound {
    /// The row's side, a timestamp.
    pub row: Arc<dyn PhysicalExpr>,
    /// How it compares with the clock.
    pub op: Cmp,
    /// Added to the clock, in nanoseconds.
    pub offset: i64,
    /// For EXPLAIN: the row's side.
    pub text: String,
}

/// Rows waiting for the clock to reach the time they appear: `f` + from + row → count, until.
const FROM_TAG: u8 = b'f';
/// Visible rows that leave at a known time: `u` + until + row → count.
const UNTIL_TAG: u8 = b'u';
/// The clock (nanoseconds) as of the last barrier.
const CLOCK_TAG: u8 = b'c';

/// A stored entry: its key and value.
type Entry = (Box<[u8]>, Vec<u8>);

/// The row of a waiting or leaving entry's key: what follows its time.
fn row_of(key: &[u8]) -> Result<&[u8]> {
    key.get(8..)
        .ok_or_else(|| StreamError::Corrupt("a temporal filter key without its row".into()))
}

/// Keeps each row while the event-time clock is within the row's `[from, until)`.
#[derive(Debug)]
pub struct TemporalFilterOp {
    schema: SchemaRef,
    bounds: Vec<Bound>,
    /// The input column whose watermark is the clock.
    clock: usize,
    codec: RowConverter,
    /// The clock as of the last barrier; `None` until read from the state.
    now: Option<i64>,
    /// The latest watermark on the clock column, applied at the barrier.
    next: Option<i64>,
    /// Rows waiting to appear: from + row → count and until.
    waiting: StateTable<Vec<u8>>,
    /// Visible rows that leave at a known time: until + row → count.
    leaving: StateTable<Vec<u8>>,
    /// The clock changed since the last checkpoint.
    clock_moved: bool,
    state: StateScope,
    errors: Arc<ExprErrors>,
}

impl TemporalFilterOp {
    /// Filters rows of `schema` by `bounds` on the clock, the watermark of column `clock`.
    pub fn new(
        schema: SchemaRef,
        bounds: Vec<Bound>,
        clock: usize,
        state: StateScope,
        errors: Arc<ExprErrors>,
    ) -> Result<Self> {
        Ok(Self {
            codec: RowConverter::new(sort_fields(schema.fields()))?,
            schema,
            bounds,
            clock,
            now: None,
            next: None,
            waiting: StateTable::new(state.clone(), FROM_TAG)?,
            leaving: StateTable::new(state.clone(), UNTIL_TAG)?,
            clock_moved: false,
            state,
            errors,
        })
    }

    fn now(&mut self) -> Result<i64> {
        if let Some(now) = self.now {
            return Ok(now);
        }
        let now = match self.state.store().get(&self.state.key(CLOCK_TAG, &[]))? {
            Some(bytes) => Reader::new(&bytes).i64()?,
            None => i64::MIN,
        };
        self.now = Some(now);
        Ok(now)
    }

    /// Each row's `[from, until)` in nanoseconds of the clock; `None` for a row some bound of
    /// which is NULL (never visible).
    fn spans(
        &self,
        rows: &datafusion::arrow::array::RecordBatch,
    ) -> Result<Vec<Option<(i64, i64)>>> {
        let mut spans = vec![Some((i64::MIN, i64::MAX)); rows.num_rows()];
        for bound in &self.bounds {
            let values = evaluate(&bound.row, rows, &self.errors)?;
            let values = cast(&values, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
            let values = values.as_primitive::<TimestampNanosecondType>();
            for (i, span) in spans.iter_mut().enumerate() {
                let Some((from, until)) = span else { continue };
                if values.is_null(i) {
                    *span = None;
                    continue;
                }
                // row OP clock + offset  ⇔  clock (op reversed) row - offset.
                let t = values.value(i).saturating_sub(bound.offset);
                match bound.op {
                    Cmp::Gt => *until = (*until).min(t),
                    Cmp::GtEq => *until = (*until).min(t.saturating_add(1)),
                    Cmp::Lt => *from = (*from).max(t.saturating_add(1)),
                    Cmp::LtEq => *from = (*from).max(t),
                    Cmp::Eq => {
                        *from = (*from).max(t);
                        *until = (*until).min(t.saturating_add(1));
                    }
                }
            }
        }
        Ok(spans)
    }

    /// Adds each weight to the count under its key in `table` (`extra`, when given, is stored
    /// after the count), reading the uncached counts in one call.
    fn add(
        table: &mut StateTable<Vec<u8>>,
        changes: Vec<(Vec<u8>, i64, Option<i64>)>,
    ) -> Result<()> {
        let mut summed: BTreeMap<Vec<u8>, (i64, Option<i64>)> = BTreeMap::new();
        for (key, weight, extra) in changes {
            let entry = summed.entry(key).or_insert((0, extra));
            entry.0 += weight;
        }
        let keys: Vec<&[u8]> = summed.keys().map(Vec::as_slice).collect();
        table.load(&keys, |_, stored| Ok(stored))?;
        for (key, (weight, extra)) in summed {
            let Some(slot) = table.get_mut(&key) else {
                return Err(StreamError::Internal("a waiting row not loaded".into()));
            };
            let count = match slot {
                Some(bytes) => Reader::new(bytes).i64()? + weight,
                None => weight,
            };
            *slot = (count != 0).then(|| {
                let mut value = Vec::with_capacity(16);
                put_i64(&mut value, count);
                if let Some(extra) = extra {
                    put_i64(&mut value, extra);
                }
                value
            });
        }
        Ok(())
    }

    /// The entries of `table` with times up to `last`, deleted: they are due.
    fn take_due(table: &mut StateTable<Vec<u8>>, last: i64) -> Result<Vec<Entry>> {
        let to = last.checked_add(1).map(time::encode);
        let keys = table.load_range(&[], to.as_ref().map(|t| &t[..]), |_, stored| Ok(stored))?;
        let mut due = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(Some(value)) = table.get_mut(&key).map(Option::take) else {
                return Err(StreamError::Internal("a due row not loaded".into()));
            };
            due.push((key, value));
        }
        Ok(due)
    }

    fn emit(&self, rows: &[(Vec<u8>, i64)], out: &mut Vec<ChangeBatch>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let parser = self.codec.parser();
        let columns = self
            .codec
            .convert_rows(rows.iter().map(|(r, _)| parser.parse(r)))?;
        let batch = rows_of(self.schema.clone(), columns, rows.len())?;
        out.push(ChangeBatch::new(
            batch,
            Int64Array::from_iter_values(rows.iter().map(|(_, w)| *w)),
        ));
        Ok(())
    }
}

impl Operator for TemporalFilterOp {
    fn process(
        &mut self,
        _: usize,
        changes: ChangeBatch,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        let now = self.now()?;
        let spans = self.spans(changes.rows())?;
        let encoded = self.codec.convert_columns(changes.rows().columns())?;
        let weights = changes.weights().clone();
        let mut keep = vec![false; changes.len()];
        let (mut waiting, mut leaving) = (Vec::new(), Vec::new());
        for (i, span) in spans.into_iter().enumerate() {
            let Some((from, until)) = span else { continue };
            if until <= now || from >= until {
                // Gone, or never in view: the clock only moves on.
                continue;
            }
            let row = encoded.row(i);
            let weight = weights.value(i);
            if from > now {
                let key = [&time::encode(from)[..], row.as_ref()].concat();
                waiting.push((key, weight, Some(until)));
            } else {
                keep[i] = true;
                if until != i64::MAX {
                    let key = [&time::encode(until)[..], row.as_ref()].concat();
                    leaving.push((key, weight, None));
                }
            }
        }
        Self::add(&mut self.waiting, waiting)?;
        Self::add(&mut self.leaving, leaving)?;
        let kept = changes.filter(&BooleanArray::from(keep))?;
        if !kept.is_empty() {
            out.push(kept);
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        _: usize,
        watermark: Watermark,
        _: &mut Vec<Watermark>,
    ) -> Result<()> {
        // Rows leave below any watermark: none passes on.
        if watermark.column == self.clock
            && let Some(t) = time::nanos(&watermark.value)
        {
            self.next = Some(self.next.map_or(t, |n| n.max(t)));
        }
        Ok(())
    }

    fn on_barrier(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        let Some(next) = self.next.take() else {
            return Ok(());
        };
        if next <= self.now()? {
            return Ok(());
        }
        let mut changed = Vec::new();
        let mut visible = Vec::new();
        for (key, value) in Self::take_due(&mut self.waiting, next)? {
            let mut reader = Reader::new(&value);
            let (count, until) = (reader.i64()?, reader.i64()?);
            if until > next {
                let row = row_of(&key)?.to_vec();
                if until != i64::MAX {
                    let key = [&time::encode(until)[..], &row].concat();
                    visible.push((key, count, None));
                }
                changed.push((row, count));
            }
        }
        Self::add(&mut self.leaving, visible)?;
        for (key, value) in Self::take_due(&mut self.leaving, next)? {
            let count = Reader::new(&value).i64()?;
            changed.push((row_of(&key)?.to_vec(), -count));
        }
        self.emit(&changed, out)?;
        self.now = Some(next);
        self.clock_moved = true;
        Ok(())
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) -> Result<()> {
        let encode = |stored: &Vec<u8>, value: &mut Vec<u8>| value.extend_from_slice(stored);
        self.waiting.checkpoint_entries(batch, encode)?;
        self.leaving.checkpoint_entries(batch, encode)?;
        if let (true, Some(now)) = (std::mem::take(&mut self.clock_moved), self.now) {
            let mut value = Vec::with_capacity(8);
            put_i64(&mut value, now);
            batch.put(self.state.key(CLOCK_TAG, &[]), value);
        }
        Ok(())
    }

    fn evict(&mut self) {
        self.waiting.evict();
        self.leaving.evict();
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn explain(&self) -> String {
        let conditions: Vec<String> = self
            .bounds
            .iter()
            .map(|b| {
                let offset = match b.offset {
                    0 => String::new(),
                    o if o < 0 => format!(" - {}", human_duration(-i128::from(o))),
                    o => format!(" + {}", human_duration(i128::from(o))),
                };
                format!("{} {} NOW(){offset}", b.text, b.op.symbol())
            })
            .collect();
        format!(
            "TemporalFilter: {} (NOW() = the watermark of {}; rows that leave are deleted)",
            conditions.join(" AND "),
            self.schema.field(self.clock).name()
        )
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::common::ScalarValue;
    use datafusion::physical_expr::expressions::Column;

    use super::*;
    use crate::storage::Store;
    use crate::stream::change::pretty::{changes_of, net};

    const SECOND: i64 = 1_000_000_000;

    /// Rows `(id BIGINT, ts TIMESTAMP(s))` kept while `ts > NOW() - 10 s AND ts <= NOW() + 3 s`.
    fn op(store: &Store) -> TemporalFilterOp {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Second, None), true),
        ]));
        let ts = || Arc::new(Column::new("ts", 1)) as Arc<dyn PhysicalExpr>;
        let bounds = vec![
            Bound {
                row: ts(),
                op: Cmp::Gt,
                offset: -10 * SECOND,
                text: "ts".into(),
            },
            Bound {
                row: ts(),
                op: Cmp::LtEq,
                offset: 3 * SECOND,
                text: "ts".into(),
            },
        ];
        TemporalFilterOp::new(
            schema,
            bounds,
            1,
            StateScope::new(store.clone(), 1, 0),
            Arc::default(),
        )
        .unwrap()
    }

    fn time(t: i64) -> String {
        chrono::DateTime::from_timestamp(t, 0)
            .unwrap()
            .naive_utc()
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    }

    /// One epoch: `rows` (`+ id t` / `- id t`, t in seconds), then a watermark at `clock`.
    fn epoch(
        op: &mut TemporalFilterOp,
        store: &Store,
        rows: &[(i64, i64, i64)],
        clock: Option<i64>,
    ) -> Vec<ChangeBatch> {
        let schema = op.schema();
        let lines: Vec<String> = rows
            .iter()
            .map(|(w, id, t)| format!("{w} {id} {}", time(*t)))
            .collect();
        let mut out = Vec::new();
        op.process(
            0,
            changes_of(&schema, lines.iter().map(String::as_str)),
            &mut out,
        )
        .unwrap();
        if let Some(clock) = clock {
            let watermark = Watermark {
                column: 1,
                value: ScalarValue::TimestampSecond(Some(clock), None),
            };
            let mut passed = Vec::new();
            op.on_watermark(0, watermark, &mut passed).unwrap();
            assert!(passed.is_empty(), "no watermark passes a temporal filter");
        }
        op.on_barrier(&mut out).unwrap();
        let mut batch = WriteBatch::default();
        op.checkpoint(&mut batch).unwrap();
        store.write(batch).unwrap();
        out
    }

    fn state_entries(store: &Store) -> usize {
        let scope = StateScope::new(store.clone(), 1, 0);
        [FROM_TAG, UNTIL_TAG]
            .iter()
            .map(|&tag| store.measure_prefix(&scope.key(tag, &[])).unwrap().0)
            .sum()
    }

    #[test]
    fn rows_enter_and_leave_with_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let mut op = op(&store);
        // Before any watermark the clock is at the beginning of time: nothing is due yet.
        let out = epoch(&mut op, &store, &[(1, 1, 100), (1, 2, 105)], None);
        assert!(net(&out).is_empty());
        // At 102 the row at 100 is in (100 ≤ 105), the row at 105 too (105 ≤ 102 + 3).
        let out = epoch(&mut op, &store, &[], Some(102));
        assert_eq!(
            net(&out),
            vec![format!("+ 1 {}", time(100)), format!("+ 2 {}", time(105))]
        );
        // At 110 the row at 100 leaves (100 > 110 - 10 is false).
        let out = epoch(&mut op, &store, &[(1, 3, 90)], Some(110));
        assert_eq!(net(&out), vec![format!("- 1 {}", time(100))]);
        // A retraction of a row that left changes nothing; one in view is retracted.
        let out = epoch(&mut op, &store, &[(-1, 1, 100), (-1, 2, 105)], None);
        assert_eq!(net(&out), vec![format!("- 2 {}", time(105))]);
        assert_eq!(state_entries(&store), 0);
    }

    #[test]
    fn a_random_history_matches_the_rows_in_the_window_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let mut op = op(&store);
        let mut random = crate::stream::xorshift(0x2545_f491_4f6c_dd1d);
        let mut next = move |n: i64| random(n as u64) as i64;
        let mut present: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        let mut shown: BTreeMap<String, i64> = BTreeMap::new();
        let mut clock = i64::MIN;
        for round in 0..80 {
            let mut rows = Vec::new();
            for _ in 0..next(6) {
                let id = next(5);
                let t = (clock.max(0) + next(30) - 10).max(0);
                if next(3) == 0
                    && let Some((&(id, t), _)) = present
                        .iter()
                        .nth(next(present.len().max(1) as i64) as usize)
                {
                    rows.push((-1, id, t));
                    *present.get_mut(&(id, t)).unwrap() -= 1;
                    present.retain(|_, c| *c > 0);
                } else {
                    rows.push((1, id, t));
                    *present.entry((id, t)).or_default() += 1;
                }
            }
            let advance = (next(2) == 0).then(|| clock.max(0) + next(8));
            if let Some(a) = advance {
                clock = clock.max(a);
            }
            for line in net(&epoch(&mut op, &store, &rows, advance)) {
                let (sign, row) = line.split_once(' ').unwrap();
                let weight = match sign {
                    "+" => 1,
                    "-" => -1,
                    w => w.parse::<i64>().unwrap(),
                };
                *shown.entry(row.to_string()).or_default() += weight;
            }
            shown.retain(|_, c| *c != 0);
            let expected: BTreeMap<String, i64> = present
                .iter()
                .filter(|((_, t), _)| clock != i64::MIN && *t > clock - 10 && *t <= clock + 3)
                .map(|((id, t), c)| (format!("{id} {}", time(*t)), *c))
                .collect();
            assert_eq!(shown, expected, "round {round}, clock {clock}");
            if round % 7 == 3 {
                op = self::op(&store);
            }
        }
        // Everything leaves once the clock has passed it, and its state goes with it.
        let out = epoch(&mut op, &store, &[], Some(clock + 1000));
        let left: i64 = net(&out).len() as i64;
        assert_eq!(left, shown.len() as i64);
        assert_eq!(state_entries(&store), 0);
    }
}
