//! `ORDER BY ... LIMIT n [OFFSET m]`: keeps the rows at positions `m .. m + n` of the input in
//! sort order, as the input changes.
//!
//! Every input row is kept in a state table, ordered by its sort key (Arrow's row format with
//! the query's sort options) and then by the whole row, so ties are broken the same way every
//! time: `v` + sort key + row → multiplicity. Only the first rows are held in order in memory —
//! at least `m + n` of them, every stored row up to a boundary — so memory stays bounded by the
//! window, not the input; when changes take rows out of that prefix, the next ones are read
//! from the table in order. At each barrier the operator compares the rows in the window with
//! those it emitted last and emits the difference.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::change::consolidate;
use super::project::evaluate;
use super::state::{Reader, StateScope, StateTable};
use super::{ChangeBatch, ExprErrors, Operator, Result, StreamError};
use crate::storage::WriteBatch;

const ROW_TAG: u8 = b'v';

/// How far the rows held in order reach.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reach {
    /// No row is held yet.
    Nothing,
    /// Every row with a key up to this one (inclusive).
    UpTo(Box<[u8]>),
    /// Every row.
    All,
}

impl Reach {
    fn covers(&self, key: &[u8]) -> bool {
        match self {
            Reach::Nothing => false,
            Reach::UpTo(last) => key <= last.as_ref(),
            Reach::All => true,
        }
    }
}

/// A stored multiplicity.
fn decode_count(_: &[u8], value: Vec<u8>) -> Result<i64> {
    Reader::new(&value).i64()
}

/// Top-n over the whole input.
#[derive(Debug)]
pub struct TopNOp {
    schema: SchemaRef,
    order: Vec<Arc<dyn PhysicalExpr>>,
    /// Encodes `[sort keys..., row...]`.
    encoder: RowConverter,
    offset: usize,
    limit: usize,
    /// Every row's multiplicity, by encoded `(sort key, row)`.
    rows: StateTable<i64>,
    /// The first rows in order, with their multiplicities: every row `reach` covers.
    first: BTreeMap<Box<[u8]>, i64>,
    reach: Reach,
    /// Rows changed since the last barrier.
    changed: bool,
    /// What the window held at the last barrier.
    shown: Vec<Box<[u8]>>,
    errors: Arc<ExprErrors>,
}

impl TopNOp {
    /// Counts the rows whose expressions fail (they get NULL) in `errors`, the view's.
    pub fn with_errors(mut self, errors: Arc<ExprErrors>) -> Self {
        self.errors = errors;
        self
    }

    /// Keeps rows `offset .. offset + limit` of the input ordered by `order`.
    pub fn new(
        schema: SchemaRef,
        order: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
        offset: usize,
        limit: usize,
        state: StateScope,
    ) -> Result<Self> {
        let mut fields = Vec::new();
        for (expr, options) in &order {
            fields.push(SortField::new_with_options(
                expr.data_type(&schema)?,
                *options,
            ));
        }
        fields.extend(
            schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone())),
        );
        let mut op = Self {
            encoder: RowConverter::new(fields)?,
            schema,
            order: order.into_iter().map(|(e, _)| e).collect(),
            offset,
            limit,
            rows: StateTable::new(state, ROW_TAG)?,
            first: BTreeMap::new(),
            reach: Reach::Nothing,
            changed: false,
            shown: Vec::new(),
            errors: Arc::default(),
        };
        op.fill()?;
        op.shown = op.window();
        Ok(op)
    }

    /// Rows the window needs held in order: those before it and in it.
    fn needed(&self) -> usize {
        if self.limit == 0 {
            return 0;
        }
        self.offset.saturating_add(self.limit)
    }

    /// Occurrences of the rows held in order.
    fn held(&self) -> usize {
        self.first.values().map(|&c| c.max(0) as usize).sum()
    }

    /// Reads the next rows in order until the window's rows are all held (or every row is).
    fn fill(&mut self) -> Result<()> {
        loop {
            let held = self.held();
            let need = self.needed();
            if held >= need || self.reach == Reach::All {
                return Ok(());
            }
            let after = match &self.reach {
                Reach::UpTo(last) => Some(last.clone()),
                _ => None,
            };
            let want = need - held;
            let keys = self
                .rows
                .first_after(after.as_deref(), want, decode_count)?;
            for key in &keys {
                if let Some(Some(count)) = self.rows.get(key) {
                    self.first.insert(key.clone(), *count);
                }
            }
            self.reach = match keys.last() {
                Some(last) if keys.len() >= want => Reach::UpTo(last.clone()),
                _ => Reach::All,
            };
        }
    }

    /// Forgets the rows held in order beyond twice the window's needs.
    fn trim(&mut self) {
        let keep = self.needed().saturating_mul(2).saturating_add(64);
        if self.first.len() <= keep {
            return;
        }
        let Some(boundary) = self.first.keys().nth(keep).cloned() else {
            return;
        };
        let dropped = self.first.split_off(&boundary);
        if self.held() < self.needed() {
            // Retracted rows counted below zero: keep everything.
            self.first.extend(dropped);
            return;
        }
        if let Some(last) = self.first.keys().next_back() {
            self.reach = Reach::UpTo(last.clone());
        }
    }

    /// The encoded rows in the window, each as often as it occurs.
    fn window(&self) -> Vec<Box<[u8]>> {
        self.first
            .iter()
            .flat_map(|(row, &count)| std::iter::repeat_n(row, count.max(0) as usize))
            .skip(self.offset)
            .take(self.limit)
            .cloned()
            .collect()
    }

    fn decode(&self, rows: &[(Box<[u8]>, i64)]) -> Result<ChangeBatch> {
        let parser = self.encoder.parser();
        let columns: Vec<ArrayRef> = self
            .encoder
            .convert_rows(rows.iter().map(|(r, _)| parser.parse(r)))?;
        let columns = columns[self.order.len()..].to_vec();
        let batch = datafusion::arrow::array::RecordBatch::try_new(self.schema.clone(), columns)?;
        Ok(ChangeBatch::new(
            batch,
            Int64Array::from_iter_values(rows.iter().map(|(_, w)| *w)),
        ))
    }
}

impl Operator for TopNOp {
    fn process(&mut self, _: usize, changes: ChangeBatch, _: &mut Vec<ChangeBatch>) -> Result<()> {
        let batch = changes.rows();
        let mut columns = self
            .order
            .iter()
            .map(|e| evaluate(e, batch, &self.errors))
            .collect::<Result<Vec<_>>>()?;
        columns.extend(batch.columns().iter().cloned());
        let encoded = self.encoder.convert_columns(&columns)?;
        let keys: Vec<&[u8]> = (0..encoded.num_rows())
            .map(|i| encoded.row(i).data())
            .collect();
        self.rows.load(&keys, decode_count)?;
        for (key, &w) in keys.into_iter().zip(changes.weights().values().iter()) {
            let slot = self
                .rows
                .get_mut(key)
                .ok_or_else(|| StreamError::Internal("a top-n row not loaded".into()))?;
            let count = slot.unwrap_or(0) + w;
            *slot = (count != 0).then_some(count);
            if self.reach.covers(key) {
                if count == 0 {
                    self.first.remove(key);
                } else {
                    self.first.insert(key.into(), count);
                }
            }
        }
        self.changed = true;
        Ok(())
    }

    fn on_barrier(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        if !std::mem::take(&mut self.changed) {
            return Ok(());
        }
        self.fill()?;
        let now = self.window();
        self.trim();
        let before = std::mem::replace(&mut self.shown, now.clone());
        let diff = consolidate(
            before
                .into_iter()
                .map(|r| (r, -1))
                .chain(now.into_iter().map(|r| (r, 1))),
        );
        if !diff.is_empty() {
            out.push(self.decode(&diff)?);
        }
        Ok(())
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) -> Result<()> {
        let scope = self.rows.scope().clone();
        self.rows.checkpoint(batch, |row, count, batch| {
            let key = scope.key(ROW_TAG, &[row]);
            match count {
                Some(count) => batch.put(key, count.to_be_bytes()),
                None => batch.delete(key),
            }
            Ok(())
        })
    }

    fn evict(&mut self) {
        self.rows.evict();
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn explain(&self) -> String {
        let order: Vec<String> = self.order.iter().map(|e| e.to_string()).collect();
        format!(
            "TopN: order=[{}], offset={}, limit={}",
            order.join(", "),
            self.offset,
            self.limit
        )
    }
}

#[cfg(test)]
mod tests {
    use datafusion::physical_expr::expressions::Column;

    use super::*;
    use crate::storage::Store;
    use crate::stream::change::pretty::{changes, net};

    fn epoch(op: &mut TopNOp, input: &str) -> Vec<String> {
        let mut out = Vec::new();
        op.process(0, changes(input), &mut out).unwrap();
        op.on_barrier(&mut out).unwrap();
        net(&out)
    }

    #[test]
    fn the_window_follows_inserts_and_deletes_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let schema = changes("I T").schema();
        // ORDER BY c0 DESC LIMIT 2 OFFSET 1
        let make = || {
            TopNOp::new(
                schema.clone(),
                vec![(
                    Arc::new(Column::new("c0", 0)) as Arc<dyn PhysicalExpr>,
                    SortOptions {
                        descending: true,
                        nulls_first: false,
                    },
                )],
                1,
                2,
                StateScope::new(store.clone(), 1, 0),
            )
            .unwrap()
        };
        let mut op = make();
        let out = epoch(
            &mut op,
            "I T
             + 5 e
             + 3 c
             + 9 i
             + 1 a",
        );
        assert_eq!(out, vec!["+ 3 c", "+ 5 e"]);
        // The top row goes: everything moves up one place.
        let out = epoch(
            &mut op,
            "I T
             - 9 i",
        );
        assert_eq!(out, vec!["+ 1 a", "- 5 e"]);
        let mut batch = WriteBatch::default();
        op.checkpoint(&mut batch).unwrap();
        store.write(batch).unwrap();

        let mut op = make();
        let out = epoch(
            &mut op,
            "I T
             + 4 d",
        );
        assert_eq!(out, vec!["- 1 a", "+ 4 d"]);
    }

    /// Random inserts and deletes of `(I, T)` rows, many duplicates, against a window computed
    /// from all rows; the operator restarts from its state now and then and its cache holds
    /// almost nothing, so rows leave the in-memory prefix and are read back in order.
    #[test]
    fn a_random_history_keeps_the_window_of_all_rows_with_little_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let schema = changes("I T").schema();
        let budget = crate::stream::state::CacheBudget::new(1);
        // ORDER BY c0 LIMIT 3 OFFSET 2
        let make = || {
            TopNOp::new(
                schema.clone(),
                vec![(
                    Arc::new(Column::new("c0", 0)) as Arc<dyn PhysicalExpr>,
                    SortOptions::default(),
                )],
                2,
                3,
                StateScope::new(store.clone(), 1, 0).with_budget(budget.clone()),
            )
            .unwrap()
        };
        let mut next = crate::stream::xorshift(0x9e37_79b9_7f4a_7c15);
        let mut op = make();
        let mut all: BTreeMap<(i64, String), i64> = BTreeMap::new();
        let mut shown: BTreeMap<String, i64> = BTreeMap::new();
        for round in 0..200 {
            let mut lines = vec!["I T".to_string()];
            for _ in 0..next(8) {
                let present: Vec<(i64, String)> = all.keys().cloned().collect();
                if next(3) == 0 && !present.is_empty() {
                    let (i, t) = present[next(present.len() as u64) as usize].clone();
                    lines.push(format!("- {i} {t}"));
                    *all.get_mut(&(i, t.clone())).unwrap() -= 1;
                    all.retain(|_, c| *c > 0);
                } else {
                    let (i, t) = (next(400) as i64, ["a", "b"][next(2) as usize].to_string());
                    lines.push(format!("+ {i} {t}"));
                    *all.entry((i, t)).or_default() += 1;
                }
            }
            for line in epoch(&mut op, &lines.join("\n")) {
                let (sign, row) = line.split_once(' ').unwrap();
                *shown.entry(row.to_string()).or_default() += match sign {
                    "+" => 1,
                    "-" => -1,
                    w => w.parse::<i64>().unwrap(),
                };
                shown.retain(|_, c| *c != 0);
            }
            let window: Vec<String> = all
                .iter()
                .flat_map(|((i, t), c)| std::iter::repeat_n(format!("{i} {t}"), *c as usize))
                .skip(2)
                .take(3)
                .collect();
            let mut expected: BTreeMap<String, i64> = BTreeMap::new();
            for row in window {
                *expected.entry(row).or_default() += 1;
            }
            assert_eq!(shown, expected, "round {round}");
            let mut batch = WriteBatch::default();
            op.checkpoint(&mut batch).unwrap();
            store.write(batch).unwrap();
            op.evict();
            if next(10) == 0 {
                op = make();
            }
        }
        // Only a prefix of the rows is held in order; the rest were dropped from memory and
        // read back.
        assert!(
            op.first.len() < all.len(),
            "{} of {}",
            op.first.len(),
            all.len()
        );
        assert!(budget.evicted() > 0);
        assert!(op.rows.reads() > 0);
    }
}
