//! `ORDER BY ... LIMIT n [OFFSET m]`: keeps the rows at positions `m .. m + n` of the input in
//! sort order, as the input changes.
//!
//! Every input row is kept, ordered by its sort key (Arrow's row format with the query's sort
//! options) and then by the whole row, so ties are broken the same way every time. At each
//! barrier the operator compares the rows in the window with those it emitted last and emits the
//! difference. Rows are stored under `v` + sort key + row with their multiplicity.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::change::consolidate;
use super::project::evaluate;
use super::state::{Reader, StateScope};
use super::{ChangeBatch, ExprErrors, Operator, Result, StreamError};
use crate::storage::WriteBatch;

const ROW_TAG: u8 = b'v';

/// Top-n over the whole input.
#[derive(Debug)]
pub struct TopNOp {
    schema: SchemaRef,
    order: Vec<Arc<dyn PhysicalExpr>>,
    /// Encodes `[sort keys..., row...]`.
    encoder: RowConverter,
    offset: usize,
    limit: usize,
    /// Encoded `(sort key, row)` → multiplicity; `None` until read from storage.
    rows: Option<BTreeMap<Box<[u8]>, i64>>,
    changed: HashSet<Box<[u8]>>,
    /// What the window held at the last barrier.
    shown: Vec<Box<[u8]>>,
    state: StateScope,
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
            rows: None,
            changed: HashSet::new(),
            shown: Vec::new(),
            state,
            errors: Arc::default(),
        };
        op.loaded()?;
        op.shown = op.window();
        Ok(op)
    }

    fn loaded(&mut self) -> Result<&mut BTreeMap<Box<[u8]>, i64>> {
        if self.rows.is_none() {
            let mut rows = BTreeMap::new();
            let prefix = self.state.key(ROW_TAG, &[]);
            self.state
                .store()
                .scan_prefix::<StreamError>(&prefix, |k, v| {
                    rows.insert(k[prefix.len()..].into(), Reader::new(v).i64()?);
                    Ok(true)
                })?;
            self.rows = Some(rows);
        }
        self.rows
            .as_mut()
            .ok_or_else(|| StreamError::Internal("top-n rows not loaded".into()))
    }

    /// The encoded rows in the window, each as often as it occurs.
    fn window(&self) -> Vec<Box<[u8]>> {
        let Some(rows) = &self.rows else {
            return Vec::new();
        };
        rows.iter()
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
        let weights = changes.weights().values().to_vec();
        let rows = self.loaded()?;
        let mut touched = Vec::with_capacity(weights.len());
        for (i, w) in weights.into_iter().enumerate() {
            let key: Box<[u8]> = encoded.row(i).data().into();
            let count = rows.entry(key.clone()).or_insert(0);
            *count += w;
            if *count == 0 {
                rows.remove(&key);
            }
            touched.push(key);
        }
        self.changed.extend(touched);
        Ok(())
    }

    fn on_barrier(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        if self.changed.is_empty() {
            return Ok(());
        }
        let now = self.window();
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
        let changed = std::mem::take(&mut self.changed);
        let state = self.state.clone();
        let rows = self.loaded()?;
        for row in changed {
            let key = state.key(ROW_TAG, &[&row]);
            match rows.get(&row) {
                Some(count) => batch.put(key, count.to_be_bytes()),
                None => batch.delete(key),
            }
        }
        Ok(())
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
}
