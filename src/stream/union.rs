//! UNION ALL: the changes of every input, as rows of one schema. Stateless.

use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;

use super::{ChangeBatch, Operator, Result};

/// Merges any number of inputs.
#[derive(Debug)]
pub struct UnionOp {
    schema: SchemaRef,
    inputs: usize,
}

impl UnionOp {
    /// A union of `inputs` inputs into `schema`.
    pub fn new(schema: SchemaRef, inputs: usize) -> Self {
        Self { schema, inputs }
    }
}

impl Operator for UnionOp {
    fn process(
        &mut self,
        _: usize,
        changes: ChangeBatch,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        let columns = changes
            .rows()
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    Ok(cast(c, f.data_type())?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(changes.with_columns(self.schema.clone(), columns)?);
        Ok(())
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn explain(&self) -> String {
        format!("Union: {} inputs", self.inputs)
    }
}
