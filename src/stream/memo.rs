//! Projection that remembers what it computed, for expressions whose value for a row can change
//! over time: model calls (a model can be replaced while its scores are in views).
//!
//! A plain projection recomputes a retracted row's columns; over a model that was replaced in
//! between, that would take back a score that was never given and leave the given one behind.
//! This operator stores, per distinct input row, the output it emitted and how many copies are
//! live: an insert of a known row reuses its output, a retraction takes back exactly what was
//! given, and only rows it has not seen are computed (one model run per batch of them). State
//! lives under the operator's scope (tag `m`: input row → count, output row) in a state table:
//! the rows seen recently stay cached, within the views' cache budget, and the others are read
//! back when they recur.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::RowConverter;
use datafusion::physical_expr::PhysicalExpr;

use super::project::{evaluate, explain_exprs};
use super::state::{Reader, Record, StateScope, StateTable, put_i64, sort_fields};
use super::{ChangeBatch, ExprErrors, Operator, Result, StreamError};
use crate::storage::WriteBatch;

const MEMO_TAG: u8 = b'm';

/// A remembered output: how many copies of the input row are live, and the output row.
#[derive(Debug)]
struct Entry {
    count: i64,
    output: Box<[u8]>,
}

impl Record for Entry {
    fn size(&self) -> usize {
        24 + self.output.len()
    }
}

/// The SELECT list of a view over changing rows, where it calls a model.
#[derive(Debug)]
pub struct MemoProjectOp {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    inputs: RowConverter,
    outputs: RowConverter,
    /// Input row → its remembered output; rows not cached are read back when they recur.
    memo: StateTable<Entry>,
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
            memo: StateTable::new(state, MEMO_TAG)?,
            errors,
        })
    }
}

/// A stored entry: the count, then the output row.
fn decode(_: &[u8], value: Vec<u8>) -> Result<Entry> {
    let mut reader = Reader::new(&value);
    let count = reader.i64()?;
    let output = reader.take(value.len() - 8)?.into();
    Ok(Entry { count, output })
}

impl Operator for MemoProjectOp {
    fn process(
        &mut self,
        _: usize,
        changes: ChangeBatch,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        let keys = self.inputs.convert_columns(changes.rows().columns())?;
        let key_list: Vec<&[u8]> = (0..changes.len()).map(|i| keys.row(i).data()).collect();
        self.memo.load(&key_list, decode)?;
        // Rows never seen: computed, once per batch.
        let unseen: Vec<u32> = (0..changes.len())
            .filter(|&i| matches!(self.memo.get(key_list[i]), Some(None) | None))
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
        for (i, key) in key_list.iter().enumerate() {
            let weight = weights.value(i);
            let fresh = unseen.get(next_unseen) == Some(&(i as u32));
            let fresh_output = if fresh {
                next_unseen += 1;
                computed.as_ref().map(|rows| rows.row(next_unseen - 1))
            } else {
                None
            };
            let slot = self
                .memo
                .get_mut(key)
                .ok_or_else(|| StreamError::Internal("a memo row not loaded".into()))?;
            if slot.is_none() {
                let output = fresh_output
                    .ok_or_else(|| StreamError::Internal("a row with no computed output".into()))?;
                *slot = Some(Entry {
                    count: 0,
                    output: output.as_ref().into(),
                });
            }
            if let Some(entry) = slot {
                entry.count += weight;
                emitted.push(entry.output.clone());
                if entry.count <= 0 {
                    *slot = None;
                }
            }
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
        let state = self.memo.scope().clone();
        self.memo.checkpoint(batch, |row, entry, batch| {
            let key = state.key(MEMO_TAG, &[row]);
            match entry {
                Some(Entry { count, output }) => {
                    let mut value = Vec::with_capacity(8 + output.len());
                    put_i64(&mut value, *count);
                    value.extend_from_slice(output);
                    batch.put(key, value);
                }
                None => batch.delete(key),
            }
            Ok(())
        })
    }

    fn evict(&mut self) {
        self.memo.evict();
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
