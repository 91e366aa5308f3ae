//! Emit: the root of a dataflow whose rows are not stored — a sink's own query
//! (`CREATE SINK ... AS query`). It gives the sink each epoch's net changes: a row inserted and
//! deleted within the epoch is not written at all, and a key updated twice is written once.
//! Nothing is kept between epochs; the operators below it hold whatever state the query needs.

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::SchemaRef;

use super::change::consolidate;
use super::{ChangeBatch, Operator, Result};
use crate::table::RowCodec;

/// Rows per batch given on.
const EMIT_BATCH: usize = 8192;

/// Passes on each epoch's consolidated changes, renamed to the query's column names.
#[derive(Debug)]
pub struct EmitOp {
    name: String,
    codec: RowCodec,
    /// This epoch's changes: encoded row and weight, in arrival order.
    pending: Vec<(Box<[u8]>, i64)>,
}

impl EmitOp {
    /// The root of sink `name`'s query, whose rows have `schema`.
    pub fn new(name: &str, schema: &SchemaRef) -> Result<Self> {
        Ok(Self {
            name: name.to_string(),
            codec: RowCodec::new(schema, &[])?,
            pending: Vec::new(),
        })
    }
}

impl Operator for EmitOp {
    fn process(&mut self, _: usize, changes: ChangeBatch, _: &mut Vec<ChangeBatch>) -> Result<()> {
        let values = self.codec.encode_values(changes.rows())?;
        for (row, weight) in changes.weights().values().iter().enumerate() {
            self.pending.push((values.row(row).data().into(), *weight));
        }
        Ok(())
    }

    fn on_barrier(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        let net = consolidate(std::mem::take(&mut self.pending));
        // In batches of bounded size: a snapshot may be large.
        for chunk in net.chunks(EMIT_BATCH) {
            let rows = self
                .codec
                .decode_values(chunk.iter().map(|(v, _)| v.as_ref()))?;
            let weights = Int64Array::from_iter_values(chunk.iter().map(|(_, w)| *w));
            out.push(ChangeBatch::new(rows, weights));
        }
        Ok(())
    }

    fn schema(&self) -> SchemaRef {
        self.codec.schema().clone()
    }

    fn explain(&self) -> String {
        format!("Emit: to sink {}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::change::pretty::{changes, net};

    #[test]
    fn an_epoch_gives_its_net_changes() {
        let input = changes(
            "I  T
             + 1  a
             + 2  b
             - 1  a
             - 3  c
             + 2  b",
        );
        let mut op = EmitOp::new("s", &input.schema()).unwrap();
        let mut out = Vec::new();
        op.process(0, input, &mut out).unwrap();
        assert!(out.is_empty(), "nothing leaves before the barrier");
        op.on_barrier(&mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), 2, "one row per distinct row");
        assert_eq!(net(&out), vec!["+2 2 b".to_string(), "- 3 c".to_string()]);
        let mut again = Vec::new();
        op.on_barrier(&mut again).unwrap();
        assert!(again.is_empty(), "an epoch's changes are given once");
    }
}
