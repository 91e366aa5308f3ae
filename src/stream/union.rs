//! UNION ALL: the changes of every input, as rows of one schema. Stateless.

use datafusion::arrow::datatypes::SchemaRef;

use super::watermark::Meet;
use super::{ChangeBatch, Operator, Result, Watermark};

/// Merges any number of inputs.
#[derive(Debug)]
pub struct UnionOp {
    schema: SchemaRef,
    inputs: usize,
    /// Columns every input carries a watermark on, with the least of them.
    watermarks: Vec<(usize, Meet)>,
}

impl UnionOp {
    /// A union of `inputs` inputs into `schema`.
    pub fn new(schema: SchemaRef, inputs: usize) -> Self {
        Self {
            schema,
            inputs,
            watermarks: Vec::new(),
        }
    }

    /// Carries the least of the inputs' watermarks on `columns`, which every input has.
    pub fn with_watermarks(mut self, columns: &[usize]) -> Self {
        self.watermarks = columns
            .iter()
            .map(|&c| (c, Meet::new(self.inputs)))
            .collect();
        self
    }
}

impl Operator for UnionOp {
    fn process(
        &mut self,
        _: usize,
        changes: ChangeBatch,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        // Inputs are planned to the union's types; `with_columns` casts what differs.
        let columns = changes.rows().columns().to_vec();
        out.push(changes.with_columns(self.schema.clone(), columns)?);
        Ok(())
    }

    fn on_watermark(
        &mut self,
        side: usize,
        watermark: Watermark,
        out: &mut Vec<Watermark>,
    ) -> Result<()> {
        for (column, meet) in &mut self.watermarks {
            if *column == watermark.column
                && let Some(value) = meet.raise(side, watermark.value.clone())
            {
                out.push(Watermark {
                    column: *column,
                    value,
                });
            }
        }
        Ok(())
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn explain(&self) -> String {
        format!("Union: {} inputs", self.inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::change::pretty::{changes, net};

    #[test]
    fn every_input_passes_through_with_its_weights() {
        let schema = changes("I").schema();
        let mut op = UnionOp::new(schema, 2);
        let mut out = Vec::new();
        op.process(0, changes("I\n+ 1\n+ 2"), &mut out).unwrap();
        op.process(1, changes("I\n- 2\n+ 3"), &mut out).unwrap();
        assert_eq!(net(&out), vec!["+ 1", "+ 3"]);
    }
}
