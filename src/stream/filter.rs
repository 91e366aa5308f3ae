//! Filter: keeps the changes whose rows satisfy a predicate. Stateless: a retraction of a row
//! passes exactly when its insertion did.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;

use super::project::evaluate;
use super::{ChangeBatch, ExprErrors, Operator, Result, Watermark};

/// `WHERE` / `HAVING`.
#[derive(Debug)]
pub struct FilterOp {
    predicate: Arc<dyn PhysicalExpr>,
    schema: SchemaRef,
    errors: Arc<ExprErrors>,
}

impl FilterOp {
    /// Keeps rows of `schema` for which `predicate` is true (not false, not NULL).
    pub fn new(predicate: Arc<dyn PhysicalExpr>, schema: SchemaRef) -> Self {
        Self {
            predicate,
            schema,
            errors: Arc::default(),
        }
    }

    /// Counts the rows whose expressions fail (they get NULL) in `errors`, the view's.
    pub fn with_errors(mut self, errors: Arc<ExprErrors>) -> Self {
        self.errors = errors;
        self
    }
}

impl Operator for FilterOp {
    fn on_watermark(
        &mut self,
        _: usize,
        watermark: Watermark,
        out: &mut Vec<Watermark>,
    ) -> Result<()> {
        out.push(watermark);
        Ok(())
    }

    fn process(
        &mut self,
        _: usize,
        changes: ChangeBatch,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        let mask = evaluate(&self.predicate, changes.rows(), &self.errors)?;
        let mask: BooleanArray = if mask.data_type() == &DataType::Boolean {
            mask.as_boolean().clone()
        } else {
            // A predicate of NULL type (`WHERE NULL`) keeps nothing.
            BooleanArray::from(vec![false; changes.len()])
        };
        if mask.true_count() == changes.len() && mask.null_count() == 0 {
            out.push(changes);
            return Ok(());
        }
        let kept = changes.filter(&mask)?;
        if !kept.is_empty() {
            out.push(kept);
        }
        Ok(())
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn explain(&self) -> String {
        format!("Filter: {}", self.predicate)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Operator as BinOp;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};

    use super::*;
    use crate::stream::change::pretty::{changes, net};

    #[test]
    fn keeps_matching_inserts_and_retractions() {
        let input = changes(
            "I T
             + 1 a
             + 5 b
             - 7 c
             + . d",
        );
        let predicate = Arc::new(BinaryExpr::new(
            Arc::new(Column::new("c0", 0)),
            BinOp::Gt,
            Arc::new(Literal::new(ScalarValue::Int64(Some(3)))),
        ));
        let mut op = FilterOp::new(predicate, input.schema());
        let mut out = Vec::new();
        op.process(0, input, &mut out).unwrap();
        assert_eq!(net(&out), vec!["+ 5 b", "- 7 c"]);
    }
}
