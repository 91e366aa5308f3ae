//! Projection that remembers what it computed, for expressions whose value for a row can change
//! over time: model calls (a model can be replaced while its scores are in views).
//!
//! A plain projection recomputes a retracted row's columns; over a model that was replaced in
//! between, that would take back a score that was never given and leave the given one behind.
//! This operator stores, per distinct input row, the output it emitted and how many copies are
//! live: an insert of a known row reuses its output, a retraction takes back exactly what was
//! given, and only rows it has not seen are computed (one model run per batch of them). State
//! lives under the operator's scope (tag `m`: input row → count, output row), all of it in
//! memory while the view runs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::RowConverter;
use datafusion::physical_expr::PhysicalExpr;

use super::project::{evaluate, explain_exprs};
use super::state::{Reader, StateScope, put_i64, sort_fields};
use super::{ChangeBatch, ExprErrors, Operator, Result, StreamError};
use crate::storage::WriteBatch;

const MEMO_TAG: u8 = b'm';

/// A remembered output: how many copies of the input row are live, and the output row.
type Entry = (i64, Box<[u8]>);

/// The SELECT list of a view over changing rows, where it calls a model.
#[derive(Debug)]
pub struct MemoProjectOp {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    inputs: RowConverter,
    outputs: RowConverter,
    state: StateScope,
    memo: Option<HashMap<Box<[u8]>, Entry>>,
    changed: HashSet<Box<[u8]>>,
    errors: Arc<ExprErrors>,
}

impl MemoProjectOp {
    /// Computes `exprs` over rows of `input` into rows of `schema`, remembering outputs in
    /// `state`; rows whose expressions fail get NULL and are counted in `errors`.
    pub fn new(
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        input: &SchemaRef,
        schema: SchemaRef,
        state: StateScope,
        errors: Arc<ExprErrors>,
    ) -> Result<Self> {
        Ok(Self {
            exprs,
            inputs: RowConverter::new(sort_fields(input.fields()))?,
            outputs: RowConverter::new(sort_fields(schema.fields()))?,
            schema,
            state,
            memo: None,
            changed: HashSet::new(),
            errors,
        })
    }

    fn memo(&mut self) -> Result<&mut HashMap<Box<[u8]>, Entry>> {
        if self.memo.is_none() {
            let mut memo = HashMap::new();
            let prefix = self.state.key(MEMO_TAG, &[]);
            self.state
                .store()
                .scan_prefix::<StreamError>(&prefix, |k, v| {
                    let mut reader = Reader::new(v);
                    let count = reader.i64()?;
                    let output = reader.take(v.len() - 8)?;
                    memo.insert(k[prefix.len()..].into(), (count, output.into()));
                    Ok(true)
                })?;
            self.memo = Some(memo);
        }
        self.memo
            .as_mut()
            .ok_or_else(|| StreamError::Internal("memo not loaded".into()))
    }
}

impl Operator for MemoProjectOp {
    fn process(
        &mut self,
        _: usize,
        changes: ChangeBatch,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        let keys = self.inputs.convert_columns(changes.rows().columns())?;
        // Rows never seen: computed, once per batch.
        let memo = self.memo()?;
        let unseen: Vec<u32> = (0..changes.len())
            .filter(|&i| !memo.contains_key(keys.row(i).as_ref()))
            .map(|i| i as u32)
            .collect();
        let computed = if unseen.is_empty() {
            None
        } else {
            let rows = take_record_batch(changes.rows(), &UInt32Array::from(unseen.clone()))?;
            let columns = self
                .exprs
                .iter()
                .map(|e| evaluate(e, &rows, &self.errors))
                .collect::<Result<Vec<_>>>()?;
            let rows = super::change::rows_of(self.schema.clone(), columns, rows.num_rows())?;
            Some(self.outputs.convert_columns(rows.columns())?)
        };
        let weights = changes.weights();
        let mut emitted: Vec<Box<[u8]>> = Vec::with_capacity(changes.len());
        let mut next_unseen = 0;
        self.memo()?;
        let (Some(memo), changed) = (self.memo.as_mut(), &mut self.changed) else {
            return Err(StreamError::Internal("memo not loaded".into()));
        };
        for i in 0..changes.len() {
            let key = keys.row(i);
            let weight = weights.value(i);
            let fresh = unseen.get(next_unseen) == Some(&(i as u32));
            let fresh_output = if fresh {
                next_unseen += 1;
                computed.as_ref().map(|rows| rows.row(next_unseen - 1))
            } else {
                None
            };
            let entry = match memo.get_mut(key.as_ref()) {
                Some(entry) => entry,
                None => {
                    let output = fresh_output.ok_or_else(|| {
                        StreamError::Internal("a row with no computed output".into())
                    })?;
                    memo.entry(key.as_ref().into())
                        .or_insert((0, output.as_ref().into()))
                }
            };
            entry.0 += weight;
            emitted.push(entry.1.clone());
            if entry.0 <= 0 {
                memo.remove(key.as_ref());
            }
            changed.insert(key.as_ref().into());
        }
        let parser = self.outputs.parser();
        let columns = self
            .outputs
            .convert_rows(emitted.iter().map(|r| parser.parse(r)))?;
        let rows = RecordBatch::try_new(self.schema.clone(), columns)?;
        out.push(ChangeBatch::new(
            rows,
            Int64Array::from_iter_values(weights.iter().map(|w| w.unwrap_or(0))),
        ));
        Ok(())
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) -> Result<()> {
        let changed = std::mem::take(&mut self.changed);
        let state = self.state.clone();
        let memo = self.memo()?;
        for row in changed {
            let key = state.key(MEMO_TAG, &[&row]);
            match memo.get(&row) {
                Some((count, output)) => {
                    let mut value = Vec::with_capacity(8 + output.len());
                    put_i64(&mut value, *count);
                    value.extend_from_slice(output);
                    batch.put(key, value);
                }
                None => batch.delete(key),
            }
        }
        Ok(())
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn explain(&self) -> String {
        format!(
            "Project (outputs remembered): {}",
            explain_exprs(&self.exprs, &self.schema)
        )
    }
}
