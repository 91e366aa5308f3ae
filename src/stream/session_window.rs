//! SESSION windows kept up to date: a session is a run of rows of one GROUP BY key whose times
//! are less than `gap` apart; its `window_start` is the first row's time and its `window_end`
//! the last row's time plus the gap.
//!
//! `SESSION(input, ts, gap)` in FROM becomes a subquery that adds the two bounds with two window
//! functions (`sql::windows`), which an ad-hoc query runs over the whole input; a view keeps the
//! same bounds up to date with [`SessionOp`]. A row that falls between two sessions merges
//! them: every row of both is retracted with its old bounds and inserted with the merged ones,
//! so a GROUP BY of the bounds above retracts two groups and emits one.
//!
//! State, per partition (the GROUP BY key, in Arrow's row format):
//! - `r` + partition + time + row → multiplicity: the rows, in time order;
//! - `w` + partition + last → start: the sessions, found by the time of their last row;
//! - `e` + last + partition → start: the sessions in the order they close.
//!
//! A partition's rows and sessions are each read whole (one prefix scan) the first time they
//! are needed, then cached within the state cache's budget (`state::Partitions`).
//!
//! A watermark `w` on the time column closes every session whose `last + gap ≤ w`: no row at or
//! after `w` can reach it, so its rows and entries are deleted. Future changes only touch open
//! sessions, whose `window_end` is above `w`: the watermark passes on to `window_end`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::row::RowConverter;
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;

use super::change::rows_of;
use super::state::{Partitioner, Partitions, Reader, StateScope, StateTable, put_i64, sort_fields};
use super::{ChangeBatch, ExprErrors, Operator, Result, StreamError, Watermark};
use crate::common::time::{self, nanos_per};
use crate::storage::WriteBatch;

const ROW_TAG: u8 = b'r';
const SESSION_TAG: u8 = b'w';
const CLOSE_TAG: u8 = b'e';

/// Which bound of its session a column gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionBound {
    /// The first row's time.
    Start,
    /// The last row's time plus the gap.
    End,
}

/// The sessions of `times`, sorted ascending: ranges of positions in which each time is less
/// than `gap` after the one before.
pub fn sessions(times: &[i64], gap: i64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut first = 0;
    for i in 1..times.len() {
        if i128::from(times[i]) - i128::from(times[i - 1]) >= i128::from(gap) {
            out.push(first..i);
            first = i;
        }
    }
    if !times.is_empty() {
        out.push(first..times.len());
    }
    out
}

/// Nanoseconds in one unit of a timestamp column.
pub fn unit_nanos(data_type: &DataType) -> crate::Result<i64> {
    match data_type {
        DataType::Timestamp(unit, _) => Ok(nanos_per(unit)),
        other => Err(crate::Error::coded(
            "42804",
            format!("SESSION's time column must be a timestamp, not {other}"),
        )),
    }
}

/// A gap of `nanos` nanoseconds in units of a `data_type` column.
pub fn gap_in_units(nanos: i64, data_type: &DataType) -> crate::Result<i64> {
    let unit = unit_nanos(data_type)?;
    if nanos <= 0 || nanos % unit != 0 {
        return Err(crate::Error::coded(
            "22023",
            format!(
                "SESSION's gap must be a positive whole number of the time column's units \
                 ({unit} ns), not {nanos} ns"
            ),
        ));
    }
    Ok(nanos / unit)
}

/// A session's end: its last time plus the gap.
pub fn end_of(last: i64, gap: i64) -> crate::Result<i64> {
    last.checked_add(gap)
        .ok_or_else(|| crate::Error::coded("22008", "a session ends after the last timestamp"))
}

/// One session: its first and last row's times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SessionSpan {
    start: i64,
    last: i64,
}

/// A row of a partition: its time and its encoding.
type RowAt = (i64, Box<[u8]>);

/// A partition's rows in a time span, with their multiplicities.
type Rows = BTreeMap<RowAt, i64>;

/// A change to a partition: time, encoded row, weight.
type Change = (i64, Box<[u8]>, i64);

/// Sessions with the rows (encoded) they hold and their multiplicities.
type Formed<'a> = Vec<(SessionSpan, Vec<(&'a [u8], i64)>)>;

/// The sessions of the rows present (multiplicity above zero) in `rows`, each with the rows it
/// holds.
fn sessions_of(rows: &Rows, gap: i64) -> Formed<'_> {
    let present: Vec<(i64, &[u8], i64)> = rows
        .iter()
        .filter(|(_, c)| **c > 0)
        .map(|((t, row), c)| (*t, row.as_ref(), *c))
        .collect();
    let times: Vec<i64> = present.iter().map(|(t, _, _)| *t).collect();
    sessions(&times, gap)
        .into_iter()
        .map(|range| {
            let session = SessionSpan {
                start: times[range.start],
                last: times[range.end - 1],
            };
            let members = present[range].iter().map(|(_, r, c)| (*r, *c)).collect();
            (session, members)
        })
        .collect()
}

/// The first time key after time `hi` (`None`: no time is after it): the end of a range of
/// entries keyed by time up to `hi`.
fn rows_after(hi: i64) -> Option<Vec<u8>> {
    hi.checked_add(1).map(|next| time::encode(next).to_vec())
}

/// An output row: the encoded input row, its session, and its weight.
type Emitted = Vec<(Box<[u8]>, SessionSpan, i64)>;

/// Keeps each row's session bounds as rows arrive, leave and merge sessions.
#[derive(Debug)]
pub struct SessionOp {
    schema: SchemaRef,
    input_width: usize,
    partition: Partitioner,
    /// Encodes whole input rows.
    row_codec: RowConverter,
    time: usize,
    time_type: DataType,
    /// In the time column's units.
    gap: i64,
    outputs: Vec<SessionBound>,
    /// Changes of this epoch per partition: `(time, row, weight)`.
    pending: BTreeMap<Box<[u8]>, Vec<Change>>,
    /// Rows by partition: time + row → multiplicity.
    rows: Partitions,
    /// Sessions by partition: last → start.
    sessions: Partitions,
    /// Sessions in the order they close: last + partition → start.
    closes: StateTable<Vec<u8>>,
    /// The latest watermark on the time column, not yet acted on.
    closing: Option<ScalarValue>,
    held: Vec<Watermark>,
    /// For EXPLAIN: a watermark on the time column can arrive.
    watermarked: bool,
    errors: Arc<ExprErrors>,
}

impl SessionOp {
    /// Sessions of `input` rows by `partition`, over the timestamp column `time`, with `gap`
    /// nanoseconds between them; output columns after the input's give `outputs`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        input: &SchemaRef,
        schema: SchemaRef,
        partition: Vec<Arc<dyn PhysicalExpr>>,
        time: usize,
        gap_nanos: i64,
        outputs: Vec<SessionBound>,
        state: StateScope,
        errors: Arc<ExprErrors>,
    ) -> Result<Self> {
        let time_type = input.field(time).data_type().clone();
        let gap = gap_in_units(gap_nanos, &time_type)?;
        Ok(Self {
            schema,
            input_width: input.fields().len(),
            partition: Partitioner::new(partition, input)?,
            row_codec: RowConverter::new(sort_fields(input.fields()))?,
            time,
            time_type,
            gap,
            outputs,
            pending: BTreeMap::new(),
            rows: Partitions::new(state.clone(), ROW_TAG)?,
            sessions: Partitions::new(state.clone(), SESSION_TAG)?,
            closes: StateTable::new(state, CLOSE_TAG)?,
            closing: None,
            held: Vec::new(),
            watermarked: false,
            errors,
        })
    }

    /// Tells EXPLAIN that a watermark on the time column closes sessions.
    pub fn with_watermark(mut self, watermarked: bool) -> Self {
        self.watermarked = watermarked;
        self
    }

    /// The sessions of `partition` that a row at some time in `[first, last]` may join: those
    /// with a row less than `gap` from that span.
    fn near(&mut self, partition: &[u8], first: i64, last: i64) -> Result<Vec<SessionSpan>> {
        let gap = self.gap;
        let from = time::encode(first.saturating_sub(gap).saturating_add(1));
        let mut sessions = Vec::new();
        for (key, value) in self.sessions.range(partition, &from, None)? {
            let session = SessionSpan {
                start: time::decode(&value)?,
                last: time::decode(&key)?,
            };
            // Sessions are disjoint: in order of their last rows their starts rise too, so the
            // first one starting out of reach ends the search.
            if i128::from(session.start) >= i128::from(last) + i128::from(gap) {
                break;
            }
            sessions.push(session);
        }
        Ok(sessions)
    }

    /// The rows of `partition` with times in `[lo, hi]`.
    fn rows(&mut self, partition: &[u8], lo: i64, hi: i64) -> Result<Rows> {
        let mut rows = Rows::new();
        let to = rows_after(hi);
        for (key, value) in self
            .rows
            .range(partition, &time::encode(lo), to.as_deref())?
        {
            let t = time::decode(&key)?;
            rows.insert((t, key[8..].into()), Reader::new(&value).i64()?);
        }
        Ok(rows)
    }

    fn put_session(&mut self, partition: &[u8], session: SessionSpan, present: bool) -> Result<()> {
        let last = time::encode(session.last);
        let value = present.then(|| time::encode(session.start).to_vec());
        self.sessions.set(partition, &last, value.clone())?;
        self.closes.put(&[&last[..], partition].concat(), value);
        Ok(())
    }

    /// Applies one partition's changes of the epoch; appends the output's changes.
    fn update(&mut self, partition: &[u8], changes: Vec<Change>, out: &mut Emitted) -> Result<()> {
        let mut deltas = Rows::new();
        for (t, row, w) in changes {
            *deltas.entry((t, row)).or_default() += w;
        }
        deltas.retain(|_, w| *w != 0);
        // Each changed time with the sessions it can touch, merged into disjoint spans.
        let times: BTreeSet<i64> = deltas.keys().map(|(t, _)| *t).collect();
        let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
            return Ok(());
        };
        let near = self.near(partition, first, last)?;
        let mut spans: Vec<(i64, i64)> = Vec::new();
        for &t in &times {
            // The sessions a row at `t` joins: at most two, one on each side.
            let (mut lo, mut hi) = (t, t);
            for s in near.iter().filter(|s| {
                i128::from(s.last) > i128::from(t) - i128::from(self.gap)
                    && i128::from(s.start) < i128::from(t) + i128::from(self.gap)
            }) {
                lo = lo.min(s.start);
                hi = hi.max(s.last);
            }
            spans.push((lo, hi));
        }
        // Spans less than a gap apart may chain into one session.
        spans.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (lo, hi) in spans {
            match merged.last_mut() {
                Some(last) if i128::from(lo) - i128::from(last.1) < i128::from(self.gap) => {
                    last.1 = last.1.max(hi)
                }
                _ => merged.push((lo, hi)),
            }
        }
        for (lo, hi) in merged {
            let old = self.rows(partition, lo, hi)?;
            let mut new = old.clone();
            let in_span: Vec<(RowAt, i64)> = deltas
                .iter()
                .filter(|((t, _), _)| (lo..=hi).contains(t))
                .map(|(k, w)| (k.clone(), *w))
                .collect();
            for ((t, row), w) in &in_span {
                let key = [&time::encode(*t)[..], row].concat();
                let count = new.entry((*t, row.clone())).or_default();
                *count += w;
                if *count == 0 {
                    new.remove(&(*t, row.clone()));
                    self.rows.set(partition, &key, None)?;
                } else {
                    let mut value = Vec::with_capacity(8);
                    put_i64(&mut value, *count);
                    self.rows.set(partition, &key, Some(value))?;
                }
            }
            let before = sessions_of(&old, self.gap);
            let after = sessions_of(&new, self.gap);
            let kept: HashSet<SessionSpan> = before
                .iter()
                .map(|(s, _)| *s)
                .filter(|s| after.iter().any(|(a, _)| a == s))
                .collect();
            for (session, members) in &before {
                if !kept.contains(session) {
                    out.extend(members.iter().map(|(r, c)| ((*r).into(), *session, -c)));
                }
            }
            for (session, members) in &after {
                if !kept.contains(session) {
                    out.extend(members.iter().map(|(r, c)| ((*r).into(), *session, *c)));
                }
            }
            // Rows that came or went inside a session that kept its bounds.
            for ((t, row), _) in &in_span {
                let Some(session) = kept
                    .iter()
                    .find(|s| (s.start..=s.last).contains(t))
                    .copied()
                else {
                    continue;
                };
                let shown = |rows: &Rows| rows.get(&(*t, row.clone())).copied().unwrap_or(0).max(0);
                let change = shown(&new) - shown(&old);
                if change != 0 {
                    out.push((row.clone(), session, change));
                }
            }
            let (before, after): (Vec<SessionSpan>, Vec<SessionSpan>) = (
                before.into_iter().map(|(s, _)| s).collect(),
                after.into_iter().map(|(s, _)| s).collect(),
            );
            for s in before.into_iter().filter(|s| !kept.contains(s)) {
                self.put_session(partition, s, false)?;
            }
            for s in after.into_iter().filter(|s| !kept.contains(s)) {
                self.put_session(partition, s, true)?;
            }
        }
        Ok(())
    }

    /// Deletes the sessions no row at or after `watermark` can reach.
    fn close(&mut self, watermark: i64) -> Result<()> {
        let Some(limit) = watermark.checked_sub(self.gap) else {
            return Ok(());
        };
        let to = rows_after(limit);
        let closed = self
            .closes
            .load_range(&[], to.as_deref(), |_, stored| Ok(stored))?;
        for key in closed {
            let Some(Some(start)) = self.closes.get(&key) else {
                return Err(StreamError::Internal("a closing session not loaded".into()));
            };
            let session = SessionSpan {
                start: time::decode(start)?,
                last: time::decode(&key)?,
            };
            let partition = &key[8..];
            self.put_session(partition, session, false)?;
            let to = rows_after(session.last);
            self.rows
                .delete_range(partition, &time::encode(session.start), to.as_deref())?;
        }
        Ok(())
    }

    /// Output rows: the decoded input rows followed by their bounds.
    fn decode(&self, rows: &Emitted) -> Result<ChangeBatch> {
        let parser = self.row_codec.parser();
        let mut columns: Vec<ArrayRef> = self
            .row_codec
            .convert_rows(rows.iter().map(|(r, _, _)| parser.parse(r)))?;
        for bound in &self.outputs {
            let values = rows
                .iter()
                .map(|(_, s, _)| match bound {
                    SessionBound::Start => Ok(s.start),
                    SessionBound::End => Ok(end_of(s.last, self.gap)?),
                })
                .collect::<Result<Vec<i64>>>()?;
            columns.push(cast(&Int64Array::from(values), &self.time_type)?);
        }
        let batch = rows_of(self.schema.clone(), columns, rows.len())?;
        Ok(ChangeBatch::new(
            batch,
            Int64Array::from_iter_values(rows.iter().map(|(_, _, w)| *w)),
        ))
    }
}

impl Operator for SessionOp {
    fn process(
        &mut self,
        _: usize,
        changes: ChangeBatch,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        let batch = changes.rows();
        let times = cast(batch.column(self.time), &DataType::Int64)?;
        let times = times.as_primitive::<Int64Type>();
        // Rows without a time belong to no session: they pass with NULL bounds.
        if times.null_count() > 0 {
            let mask = datafusion::arrow::compute::is_null(times)?;
            let unplaced = changes.filter(&mask)?;
            let mut columns = unplaced.rows().columns().to_vec();
            columns.extend(
                self.outputs
                    .iter()
                    .map(|_| new_null_array(&self.time_type, unplaced.len())),
            );
            out.push(unplaced.with_columns(self.schema.clone(), columns)?);
        }
        let partitions = self.partition.keys(batch, &self.errors)?;
        let rows = self.row_codec.convert_columns(batch.columns())?;
        for (i, partition) in partitions.into_iter().enumerate() {
            if times.is_null(i) {
                continue;
            }
            self.pending.entry(partition).or_default().push((
                times.value(i),
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
        if watermark.column != self.time {
            return Ok(());
        }
        if self.closing.as_ref().is_none_or(|c| *c < watermark.value) {
            self.closing = Some(watermark.value.clone());
        }
        for (i, bound) in self.outputs.iter().enumerate() {
            if *bound == SessionBound::End {
                super::watermark::hold(
                    &mut self.held,
                    Watermark {
                        column: self.input_width + i,
                        value: watermark.value.clone(),
                    },
                );
            }
        }
        Ok(())
    }

    fn held_watermarks(&mut self, out: &mut Vec<Watermark>) {
        out.append(&mut self.held);
    }

    fn on_barrier(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        let mut emitted = Emitted::new();
        for (partition, changes) in std::mem::take(&mut self.pending) {
            self.update(&partition, changes, &mut emitted)?;
        }
        if let Some(watermark) = self.closing.take().as_ref().and_then(time::raw) {
            self.close(watermark)?;
        }
        if !emitted.is_empty() {
            out.push(self.decode(&emitted)?);
        }
        Ok(())
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) -> Result<()> {
        self.rows.checkpoint(batch)?;
        self.sessions.checkpoint(batch)?;
        self.closes
            .checkpoint_entries(batch, |start, value| value.extend_from_slice(start))
    }

    fn evict(&mut self) {
        self.rows.evict();
        self.sessions.evict();
        self.closes.evict();
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn explain(&self) -> String {
        let outputs: Vec<&str> = self
            .outputs
            .iter()
            .map(|b| match b {
                SessionBound::Start => "start",
                SessionBound::End => "end",
            })
            .collect();
        let time = self.schema.field(self.time).name();
        let unit = unit_nanos(&self.time_type).unwrap_or(1);
        let gap = crate::common::time::human_duration(i128::from(self.gap) * i128::from(unit));
        let closed = if self.watermarked {
            format!(", closed below the watermark of {time}")
        } else {
            String::new()
        };
        format!(
            "Session: partition=[{}], time={time}, gap={gap}, bounds=[{}]{closed}",
            self.partition.explain(),
            outputs.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion::physical_expr::expressions::Column;

    use super::*;
    use crate::storage::Store;
    use crate::stream::change::pretty::{changes_of, net};

    #[test]
    fn sessions_split_where_rows_are_a_gap_apart() {
        assert_eq!(sessions(&[1, 2, 5, 15, 16, 30], 10), vec![0..3, 3..5, 5..6]);
        assert_eq!(sessions(&[0, 10], 10), vec![0..1, 1..2]);
        assert_eq!(sessions(&[0, 9], 10), vec![0..2]);
        assert!(sessions(&[], 10).is_empty());
    }

    /// Rows `(user BIGINT, ts TIMESTAMP(s))`, sessions per user with a gap of 10 seconds.
    fn op(store: &Store) -> SessionOp {
        let input: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Second, None), true),
        ]));
        let mut fields = input.fields().to_vec();
        for name in ["window_start", "window_end"] {
            fields.push(Arc::new(Field::new(
                name,
                DataType::Timestamp(TimeUnit::Second, None),
                true,
            )));
        }
        SessionOp::new(
            &input,
            Arc::new(Schema::new(fields)),
            vec![Arc::new(Column::new("user", 0))],
            1,
            10_000_000_000,
            vec![SessionBound::Start, SessionBound::End],
            StateScope::new(store.clone(), 1, 0),
            Arc::default(),
        )
        .unwrap()
    }

    fn epoch(op: &mut SessionOp, store: &Store, rows: &[&str]) -> Vec<String> {
        let input = Arc::new(Schema::new(op.schema.fields()[..2].to_vec()));
        let mut out = Vec::new();
        op.process(0, changes_of(&input, rows.iter().copied()), &mut out)
            .unwrap();
        op.on_barrier(&mut out).unwrap();
        let mut batch = WriteBatch::default();
        op.checkpoint(&mut batch).unwrap();
        store.write(batch).unwrap();
        net(&out)
    }

    #[test]
    fn a_row_between_two_sessions_merges_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let mut op = op(&store);
        let out = epoch(
            &mut op,
            &store,
            &[
                "+ 1 1970-01-01T00:00:00",
                "+ 1 1970-01-01T00:00:15",
                "+ 2 1970-01-01T00:00:05",
            ],
        );
        assert_eq!(
            out,
            vec![
                "+ 1 1970-01-01T00:00:00 1970-01-01T00:00:00 1970-01-01T00:00:10",
                "+ 1 1970-01-01T00:00:15 1970-01-01T00:00:15 1970-01-01T00:00:25",
                "+ 2 1970-01-01T00:00:05 1970-01-01T00:00:05 1970-01-01T00:00:15",
            ]
        );
        // 00:08 is within 10 s of both of user 1's sessions: one session from 00:00 to 00:25.
        let mut op = self::op(&store);
        let out = epoch(&mut op, &store, &["+ 1 1970-01-01T00:00:08"]);
        assert_eq!(
            out,
            vec![
                "- 1 1970-01-01T00:00:00 1970-01-01T00:00:00 1970-01-01T00:00:10",
                "+ 1 1970-01-01T00:00:00 1970-01-01T00:00:00 1970-01-01T00:00:25",
                "+ 1 1970-01-01T00:00:08 1970-01-01T00:00:00 1970-01-01T00:00:25",
                "+ 1 1970-01-01T00:00:15 1970-01-01T00:00:00 1970-01-01T00:00:25",
                "- 1 1970-01-01T00:00:15 1970-01-01T00:00:15 1970-01-01T00:00:25",
            ]
        );
        // Taking it back splits them again; a row inside a session keeps its bounds.
        let out = epoch(
            &mut op,
            &store,
            &["- 1 1970-01-01T00:00:08", "+ 2 1970-01-01T00:00:05"],
        );
        assert_eq!(
            out,
            vec![
                "+ 1 1970-01-01T00:00:00 1970-01-01T00:00:00 1970-01-01T00:00:10",
                "- 1 1970-01-01T00:00:00 1970-01-01T00:00:00 1970-01-01T00:00:25",
                "- 1 1970-01-01T00:00:08 1970-01-01T00:00:00 1970-01-01T00:00:25",
                "- 1 1970-01-01T00:00:15 1970-01-01T00:00:00 1970-01-01T00:00:25",
                "+ 1 1970-01-01T00:00:15 1970-01-01T00:00:15 1970-01-01T00:00:25",
                "+ 2 1970-01-01T00:00:05 1970-01-01T00:00:05 1970-01-01T00:00:15",
            ]
        );
    }

    /// Random inserts and deletes over many epochs and restarts: the output, summed, always
    /// equals the sessions of the rows present, computed from scratch.
    #[test]
    fn output_equals_sessions_computed_from_scratch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let mut op = op(&store);
        let mut next = crate::stream::xorshift(0x2545_f491_4f6c_dd1d);
        let mut present: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        let mut shown: BTreeMap<String, i64> = BTreeMap::new();
        let time = |t: i64| format!("1970-01-01T00:{:02}:{:02}", t / 60, t % 60);
        for round in 0..60 {
            let mut lines = Vec::new();
            for _ in 0..1 + next(6) {
                let (user, t) = (next(3) as i64, next(120) as i64);
                let existing: Vec<(i64, i64)> = present.keys().copied().collect();
                if next(3) == 0 && !existing.is_empty() {
                    let (user, t) = existing[next(existing.len() as u64) as usize];
                    *present.entry((user, t)).or_default() -= 1;
                    present.retain(|_, c| *c > 0);
                    lines.push(format!("- {user} {}", time(t)));
                } else {
                    *present.entry((user, t)).or_default() += 1;
                    lines.push(format!("+ {user} {}", time(t)));
                }
            }
            if round % 10 == 9 {
                op = self::op(&store);
            }
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            for line in epoch(&mut op, &store, &refs) {
                let (weight, row) = line.split_once(' ').unwrap();
                let w = match weight {
                    "+" => 1,
                    "-" => -1,
                    w => w.parse().unwrap(),
                };
                *shown.entry(row.to_string()).or_default() += w;
            }
            shown.retain(|_, w| *w != 0);
            let mut expected: BTreeMap<String, i64> = BTreeMap::new();
            for user in 0..3 {
                let times: Vec<i64> = present
                    .iter()
                    .filter(|((u, _), _)| *u == user)
                    .flat_map(|((_, t), c)| std::iter::repeat_n(*t, *c as usize))
                    .collect();
                for range in sessions(&times, 10) {
                    let (start, end) = (times[range.start], times[range.end - 1] + 10);
                    for &t in &times[range] {
                        let row = format!("{user} {} {} {}", time(t), time(start), time(end));
                        *expected.entry(row).or_default() += 1;
                    }
                }
            }
            assert_eq!(shown, expected, "round {round}: {lines:?}");
        }
    }

    #[test]
    fn a_watermark_closes_sessions_and_deletes_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let mut op = op(&store);
        epoch(
            &mut op,
            &store,
            &[
                "+ 1 1970-01-01T00:00:00",
                "+ 1 1970-01-01T00:00:30",
                "+ 2 1970-01-01T00:00:02",
            ],
        );
        let mut marks = Vec::new();
        op.on_watermark(
            0,
            Watermark {
                column: 1,
                value: ScalarValue::TimestampSecond(Some(20), None),
            },
            &mut marks,
        )
        .unwrap();
        epoch(&mut op, &store, &[]);
        let mut held = Vec::new();
        op.held_watermarks(&mut held);
        assert_eq!(
            held,
            vec![Watermark {
                column: 3,
                value: ScalarValue::TimestampSecond(Some(20), None)
            }]
        );
        // Only user 1's session at 00:30 is left: its row and its two entries.
        let mut keys = 0;
        store
            .scan_prefix::<StreamError>(&StateScope::view_prefix(1), |_, _| {
                keys += 1;
                Ok(true)
            })
            .unwrap();
        assert_eq!(keys, 3);
        let out = epoch(&mut op, &store, &["+ 1 1970-01-01T00:00:35"]);
        assert_eq!(
            out,
            vec![
                "- 1 1970-01-01T00:00:30 1970-01-01T00:00:30 1970-01-01T00:00:40",
                "+ 1 1970-01-01T00:00:30 1970-01-01T00:00:30 1970-01-01T00:00:45",
                "+ 1 1970-01-01T00:00:35 1970-01-01T00:00:30 1970-01-01T00:00:45",
            ]
        );
    }
}
