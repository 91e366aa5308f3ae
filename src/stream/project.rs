//! Projection: computes the output columns of every change from its row, with any DataFusion
//! scalar function. Stateless; weights pass through.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::compute::concat;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use super::watermark::Derived;
use super::{ChangeBatch, ExprErrors, Operator, Result, Watermark};

/// The SELECT list.
#[derive(Debug)]
pub struct ProjectOp {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    errors: Arc<ExprErrors>,
    /// Output columns that carry an input column's watermark.
    watermarks: Vec<Derived>,
}

impl ProjectOp {
    /// Computes `exprs` into columns of `schema`; rows whose expressions fail get NULL and are
    /// counted in `errors`.
    pub fn new(
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
        errors: Arc<ExprErrors>,
    ) -> Self {
        Self {
            exprs,
            schema,
            errors,
            watermarks: Vec::new(),
        }
    }

    /// Carries watermarks to the output columns `watermarks`.
    pub fn with_watermarks(mut self, watermarks: Vec<Derived>) -> Self {
        self.watermarks = watermarks;
        self
    }
}

impl Operator for ProjectOp {
    fn process(
        &mut self,
        _: usize,
        changes: ChangeBatch,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        let columns = self
            .exprs
            .iter()
            .map(|expr| evaluate(expr, changes.rows(), &self.errors))
            .collect::<Result<Vec<_>>>()?;
        out.push(changes.with_columns(self.schema.clone(), columns)?);
        Ok(())
    }

    fn on_watermark(
        &mut self,
        _: usize,
        watermark: Watermark,
        out: &mut Vec<Watermark>,
    ) -> Result<()> {
        out.extend(Derived::carry(&self.watermarks, &watermark)?);
        Ok(())
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn explain(&self) -> String {
        format!("Project: {}", explain_exprs(&self.exprs, &self.schema))
    }
}

/// `expr AS name, ...` for EXPLAIN.
pub fn explain_exprs(exprs: &[Arc<dyn PhysicalExpr>], schema: &SchemaRef) -> String {
    exprs
        .iter()
        .zip(schema.fields())
        .map(|(e, f)| format!("{e} AS {}", f.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Evaluates `expr` over every row of `batch`.
///
/// A view must not stop because one row makes an expression fail (a division by zero, a cast
/// of bad text, a model run): when the batch as a whole fails, rows are evaluated one by one and
/// those that fail get NULL, as RisingWave does. The failure is logged and the rows that got
/// NULL are counted in `errors`, the view's.
pub fn evaluate(
    expr: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
    errors: &ExprErrors,
) -> Result<ArrayRef> {
    match expr
        .evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
    {
        Ok(array) => Ok(array),
        Err(error) => {
            let data_type = expr.data_type(&batch.schema())?;
            let mut parts = Vec::with_capacity(batch.num_rows());
            let mut failed = 0usize;
            for row in 0..batch.num_rows() {
                let one = batch.slice(row, 1);
                match expr.evaluate(&one).and_then(|v| v.into_array(1)) {
                    Ok(value) => parts.push(value),
                    Err(_) => {
                        failed += 1;
                        parts.push(new_null_array(&data_type, 1));
                    }
                }
            }
            tracing::warn!(%expr, rows = failed, %error, "expression failed; rows get NULL");
            if failed > 0 {
                let error = crate::Error::from(error);
                errors.record(failed as u64, error.to_string());
            }
            if parts.is_empty() {
                return Ok(new_null_array(&data_type, 0));
            }
            let refs: Vec<&dyn datafusion::arrow::array::Array> =
                parts.iter().map(|a| a.as_ref()).collect();
            Ok(concat(&refs)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Operator as BinOp;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};

    use super::*;
    use crate::stream::change::pretty::{changes, net};

    #[test]
    fn computes_columns_and_keeps_weights() {
        let input = changes(
            "I I
             + 1 10
             - 2 20",
        );
        let sum = Arc::new(BinaryExpr::new(
            Arc::new(Column::new("c0", 0)),
            BinOp::Plus,
            Arc::new(Column::new("c1", 1)),
        ));
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Int64, true)]));
        let mut op = ProjectOp::new(vec![sum], schema, Arc::default());
        let mut out = Vec::new();
        op.process(0, input, &mut out).unwrap();
        assert_eq!(net(&out), vec!["+ 11", "- 22"]);
    }

    #[test]
    fn a_failing_row_gets_null_and_the_others_their_value() {
        let input = changes(
            "I
             + 2
             + 0
             - 4",
        );
        let div = Arc::new(BinaryExpr::new(
            Arc::new(Literal::new(ScalarValue::Int64(Some(8)))),
            BinOp::Divide,
            Arc::new(Column::new("c0", 0)),
        ));
        let schema = Arc::new(Schema::new(vec![Field::new("q", DataType::Int64, true)]));
        let errors = Arc::new(ExprErrors::default());
        let mut op = ProjectOp::new(vec![div], schema, errors.clone());
        let mut out = Vec::new();
        op.process(0, input, &mut out).unwrap();
        assert_eq!(net(&out), vec!["+ .", "- 2", "+ 4"]);
        assert_eq!(errors.rows.load(std::sync::atomic::Ordering::Relaxed), 1);
        let last = errors.last.lock().unwrap().clone().unwrap();
        assert!(last.contains("by zero"), "{last}");
    }
}
