//! Event time: a relation's watermark, and the rows that arrive too late for it.
//!
//! `WATERMARK FOR ts AS ts - INTERVAL '5 seconds'` makes `ts` the event time of a source or an
//! append-only table. The watermark is the largest value the expression has given over the rows
//! so far (the largest event time seen, minus the delay). A row whose event time is below the
//! watermark as it arrives is late: it is dropped before any view sees it, and counted.
//!
//! Rows are judged one at a time, in arrival order, each against the watermark of the rows
//! before it — never per batch — so the same rows in the same order give the same verdicts
//! however they are batched: a view that reads a source from the start later sees exactly the
//! rows the views that read it live saw.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{Expr, Volatility};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `WATERMARK FOR column AS expr`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkDef {
    /// The event-time column.
    pub column: String,
    /// The watermark of a row, as SQL text (`ts - INTERVAL '5 seconds'`).
    pub expr: String,
}

impl std::fmt::Display for WatermarkDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WATERMARK FOR {} AS {}", self.column, self.expr)
    }
}

/// Where a relation's watermark stands, and what it has dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatermarkState {
    /// The watermark in the event-time column's unit (µs since 1970); `None` before the first
    /// row.
    pub current: Option<i64>,
    /// Rows dropped because their event time was below the watermark.
    pub late: u64,
    /// Rows dropped because they had no event time (NULL).
    pub rejected: u64,
}

impl WatermarkState {
    const ENCODED: usize = 25;

    /// The stored form: a flag and the watermark, then the two counts (big-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::ENCODED);
        out.push(u8::from(self.current.is_some()));
        out.extend_from_slice(&self.current.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&self.late.to_be_bytes());
        out.extend_from_slice(&self.rejected.to_be_bytes());
        out
    }

    /// Reads [`WatermarkState::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = || Error::Internal("corrupt stored watermark".into());
        if bytes.len() != Self::ENCODED {
            return Err(corrupt());
        }
        let word =
            |at: usize| -> Result<[u8; 8]> { bytes[at..at + 8].try_into().map_err(|_| corrupt()) };
        Ok(Self {
            current: (bytes[0] == 1).then_some(i64::from_be_bytes(word(1)?)),
            late: u64::from_be_bytes(word(9)?),
            rejected: u64::from_be_bytes(word(17)?),
        })
    }
}

/// A watermark compiled against its relation's columns.
#[derive(Debug)]
pub struct WatermarkRule {
    /// Position of the event-time column.
    column: usize,
    column_type: DataType,
    expr: Arc<dyn PhysicalExpr>,
    /// When the expression is the column minus a fixed delay (`ts - INTERVAL '5 seconds'`, the
    /// usual form): the delay in the column's unit, so that rows' marks are computed without
    /// evaluating the expression.
    delay: Option<i64>,
}

/// The delay of `expr` if it is `column - <interval of a fixed length>` (or `column` alone), in
/// the unit of the column's timestamps.
fn fixed_delay(expr: &Expr, column: &str, column_type: &DataType) -> Option<i64> {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    let DataType::Timestamp(unit, _) = column_type else {
        return None;
    };
    let unit_nanos = crate::common::time::nanos_per(unit);
    let is_column = |e: &Expr| matches!(e, Expr::Column(c) if c.name == column);
    let nanos = match expr {
        e if is_column(e) => 0,
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Minus,
            right,
        }) if is_column(left) => match right.as_ref() {
            // Days and months are calendar lengths in a time zone; only a fixed length is
            // a plain subtraction.
            Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _)
                if v.months == 0 && v.days == 0 =>
            {
                v.nanoseconds
            }
            Expr::Literal(ScalarValue::DurationNanosecond(Some(n)), _) => *n,
            _ => return None,
        },
        _ => return None,
    };
    (nanos >= 0 && nanos % unit_nanos == 0).then_some(nanos / unit_nanos)
}

impl WatermarkRule {
    /// Compiles `def` over rows of `schema`. The column must exist and be a `timestamp` or
    /// `timestamptz`; the expression must give a timestamp and be deterministic (the same rows
    /// must give the same watermark when they are read again).
    pub fn compile(def: &WatermarkDef, schema: &SchemaRef) -> Result<Self> {
        let column = schema.index_of(&def.column).map_err(|_| {
            Error::UndefinedColumn(format!(
                "column \"{}\" named in WATERMARK does not exist",
                def.column
            ))
        })?;
        let column_type = schema.field(column).data_type().clone();
        if !matches!(column_type, DataType::Timestamp(..)) {
            return Err(Error::coded(
                "42804",
                format!(
                    "WATERMARK FOR {}: the event-time column must be a timestamp or timestamptz, \
                     not {}",
                    def.column,
                    crate::common::types::pg_type_name(&column_type)
                ),
            ));
        }
        let ctx = SessionContext::new();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let expr = ctx.parse_sql_expr(&def.expr, &df_schema)?;
        let mut varies = false;
        expr.apply(|e| {
            varies |= matches!(e, Expr::ScalarFunction(f)
                if f.func.signature().volatility != Volatility::Immutable);
            Ok(TreeNodeRecursion::Continue)
        })?;
        if varies {
            return Err(Error::NotSupported(format!(
                "a watermark expression whose value can change between reads ({})",
                def.expr
            )));
        }
        let delay = fixed_delay(&expr, &def.column, &column_type);
        let expr = ctx.create_physical_expr(expr, &df_schema)?;
        let ty = expr.data_type(schema)?;
        if !matches!(ty, DataType::Timestamp(..)) {
            return Err(Error::coded(
                "42804",
                format!(
                    "the watermark expression {} is of type {}; it must give a timestamp like \
                     column {}",
                    def.expr,
                    crate::common::types::pg_type_name(&ty),
                    def.column
                ),
            ));
        }
        Ok(Self {
            column,
            column_type,
            expr,
            delay,
        })
    }

    /// Position of the event-time column.
    pub fn column(&self) -> usize {
        self.column
    }

    /// Where `state` stands, as a value of the event-time column; `None` before any row.
    pub fn value(&self, state: &WatermarkState) -> Result<Option<ScalarValue>> {
        state
            .current
            .map(|v| ScalarValue::Int64(Some(v)).cast_to(&self.column_type))
            .transpose()
            .map_err(Error::from)
    }

    /// Judges `rows` in order against `state`, which it advances: returns the rows that are
    /// on time. A late row (event time below the watermark) and a row without an event time
    /// are dropped and counted; neither moves the watermark.
    pub fn filter(&self, rows: &RecordBatch, state: &mut WatermarkState) -> Result<RecordBatch> {
        let keep = self.judge(rows, state)?;
        if keep.iter().all(|k| *k) {
            return Ok(rows.clone());
        }
        Ok(filter_record_batch(rows, &BooleanArray::from(keep))?)
    }

    /// [`WatermarkRule::filter`]'s verdicts: for each of `rows`, whether it is on time.
    pub fn judge(&self, rows: &RecordBatch, state: &mut WatermarkState) -> Result<Vec<bool>> {
        let n = rows.num_rows();
        if n == 0 {
            return Ok(Vec::new());
        }
        let times = cast(rows.column(self.column), &DataType::Int64)?;
        let times = times.as_primitive::<Int64Type>();
        let marks: ArrayRef = match self.delay {
            Some(delay) => Arc::new(times.unary_opt::<_, Int64Type>(|t| t.checked_sub(delay))),
            None => {
                let marks = self.expr.evaluate(rows)?.into_array(n)?;
                cast(&cast(&marks, &self.column_type)?, &DataType::Int64)?
            }
        };
        let marks = marks.as_primitive::<Int64Type>();
        let mut keep = Vec::with_capacity(n);
        for i in 0..n {
            if times.is_null(i) {
                state.rejected += 1;
                keep.push(false);
                continue;
            }
            if state.current.is_some_and(|w| times.value(i) < w) {
                state.late += 1;
                keep.push(false);
                continue;
            }
            keep.push(true);
            if marks.is_valid(i) {
                let mark = marks.value(i);
                state.current = Some(state.current.map_or(mark, |w| w.max(mark)));
            }
        }
        Ok(keep)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]))
    }

    fn rows(times: &[Option<i64>]) -> RecordBatch {
        let ids = Int64Array::from_iter_values(0..times.len() as i64);
        let ts: TimestampMicrosecondArray =
            times.iter().map(|t| t.map(|s| s * 1_000_000)).collect();
        RecordBatch::try_new(schema(), vec![Arc::new(ids), Arc::new(ts)]).unwrap()
    }

    fn watermark(expr: &str) -> Result<WatermarkRule> {
        WatermarkRule::compile(
            &WatermarkDef {
                column: "ts".into(),
                expr: expr.into(),
            },
            &schema(),
        )
    }

    fn kept_ids(batch: &RecordBatch) -> Vec<i64> {
        batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    }

    #[test]
    fn late_rows_are_dropped_and_counted_row_by_row() {
        // The usual form is computed as a fixed delay; the second is evaluated per row.
        let fixed = watermark("ts - INTERVAL '5 seconds'").unwrap();
        assert_eq!(fixed.delay, Some(5_000_000));
        let evaluated = watermark("ts - INTERVAL '4 seconds' - INTERVAL '1 second'").unwrap();
        assert_eq!(evaluated.delay, None);
        for w in [fixed, evaluated] {
            late_rows_of(&w);
        }
        assert_eq!(watermark("ts").unwrap().delay, Some(0));
        assert_eq!(
            watermark("ts - INTERVAL '4' SECOND").unwrap().delay,
            Some(4_000_000)
        );
        assert_eq!(watermark("ts - INTERVAL '1 day'").unwrap().delay, None);
    }

    fn late_rows_of(w: &WatermarkRule) {
        let mut state = WatermarkState::default();
        // Seconds: 10 (w=5), 7 (on time), 4 (late), 20 (w=15), 15 (on time: not below), 14
        // (late), NULL (rejected), 16.
        let batch = rows(&[
            Some(10),
            Some(7),
            Some(4),
            Some(20),
            Some(15),
            Some(14),
            None,
            Some(16),
        ]);
        let kept = w.filter(&batch, &mut state).unwrap();
        assert_eq!(kept_ids(&kept), vec![0, 1, 3, 4, 7]);
        assert_eq!(state.current, Some(15_000_000));
        assert_eq!((state.late, state.rejected), (2, 1));

        // The same rows in batches of any size give the same verdicts.
        for size in 1..batch.num_rows() {
            let mut state = WatermarkState::default();
            let mut ids = Vec::new();
            let mut from = 0;
            while from < batch.num_rows() {
                let len = size.min(batch.num_rows() - from);
                let part = w.filter(&batch.slice(from, len), &mut state).unwrap();
                ids.extend(kept_ids(&part));
                from += len;
            }
            assert_eq!(ids, vec![0, 1, 3, 4, 7], "batches of {size}");
            assert_eq!((state.late, state.rejected), (2, 1), "batches of {size}");
        }
    }

    #[test]
    fn state_survives_encoding() {
        for state in [
            WatermarkState::default(),
            WatermarkState {
                current: Some(-42),
                late: 7,
                rejected: 1 << 40,
            },
        ] {
            assert_eq!(WatermarkState::decode(&state.encode()).unwrap(), state);
        }
        assert!(WatermarkState::decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn bad_declarations_are_refused() {
        assert_eq!(watermark("ts > ts").unwrap_err().sqlstate(), "42804");
        assert_eq!(watermark("id - 5").unwrap_err().sqlstate(), "42804");
        assert_eq!(watermark("now()").unwrap_err().sqlstate(), "0A000");
        assert_eq!(
            watermark("ts - random() * INTERVAL '1 second'")
                .unwrap_err()
                .sqlstate(),
            "0A000"
        );
        let w = WatermarkRule::compile(
            &WatermarkDef {
                column: "id".into(),
                expr: "id".into(),
            },
            &schema(),
        );
        assert_eq!(w.unwrap_err().sqlstate(), "42804");
        let w = WatermarkRule::compile(
            &WatermarkDef {
                column: "nope".into(),
                expr: "nope".into(),
            },
            &schema(),
        );
        assert_eq!(w.unwrap_err().sqlstate(), "42703");
    }
}
