//! Row encoding of a table: keys and values in Arrow's row format.

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, Rows, SortField};

use crate::error::{Error, Result};

/// Encodes the rows of one table: the primary key into memcomparable key bytes and the whole
/// row into value bytes, and decodes values back into Arrow batches.
#[derive(Debug)]
pub struct RowCodec {
    schema: SchemaRef,
    primary_key: Vec<usize>,
    key: RowConverter,
    value: RowConverter,
}

impl RowCodec {
    /// A codec for rows of `schema` keyed by the columns at `primary_key`.
    pub fn new(schema: &SchemaRef, primary_key: &[usize]) -> Result<Self> {
        let fields: Vec<SortField> = schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        if !RowConverter::supports_fields(&fields) {
            return Err(Error::NotSupported(format!(
                "a column type of table with columns {:?}",
                schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
            )));
        }
        let key_fields = primary_key.iter().map(|&i| fields[i].clone()).collect();
        Ok(Self {
            schema: schema.clone(),
            primary_key: primary_key.to_vec(),
            key: RowConverter::new(key_fields)?,
            value: RowConverter::new(fields)?,
        })
    }

    /// Key columns of `batch` (a batch of whole rows) in the table's key order.
    pub fn key_columns(&self, batch: &RecordBatch) -> Vec<ArrayRef> {
        self.primary_key
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect()
    }

    /// Encodes primary-key columns (in key order) into key rows.
    pub fn encode_keys(&self, key_columns: &[ArrayRef]) -> Result<Rows> {
        Ok(self.key.convert_columns(key_columns)?)
    }

    /// Encodes whole rows into value rows.
    pub fn encode_values(&self, batch: &RecordBatch) -> Result<Rows> {
        Ok(self.value.convert_columns(batch.columns())?)
    }

    /// Decodes stored values into a batch of whole rows.
    pub fn decode_values<'a>(
        &self,
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<RecordBatch> {
        let parser = self.value.parser();
        let columns = self
            .value
            .convert_rows(values.into_iter().map(|v| parser.parse(v)))?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// The schema of decoded rows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn values_round_trip_and_keys_sort_like_values() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![10, -5, 300])),
                Arc::new(StringArray::from(vec![Some("a"), None, Some("ccc")])),
                Arc::new(Float64Array::from(vec![Some(1.5), Some(-2.0), None])),
            ],
        )
        .unwrap();
        let codec = RowCodec::new(&schema, &[0]).unwrap();
        let values = codec.encode_values(&batch).unwrap();
        let decoded = codec
            .decode_values(values.iter().map(|r| r.data()))
            .unwrap();
        assert_eq!(decoded, batch);

        let keys = codec.encode_keys(&codec.key_columns(&batch)).unwrap();
        let mut order: Vec<usize> = (0..3).collect();
        order.sort_by_key(|&i| keys.row(i).data().to_vec());
        assert_eq!(
            order,
            vec![1, 0, 2],
            "keys must sort as the ids do: -5, 10, 300"
        );
    }
}
