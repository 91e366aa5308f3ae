//! Values of the aggregates that keep their input's multiset: min and max over changing input,
//! DISTINCT aggregates, string_agg, array_agg and variance over changing input, computed from
//! the group's values in their encoded (sorted) order.

use std::collections::BTreeMap;

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::ScalarValue;
use datafusion::common::utils::SingleRowListArrayBuilder;

use super::{AggCall, AggKind, CallInput, Strategy};
use crate::stream::{Result, StreamError};

impl AggCall {
    /// Decodes one stored value (its last encoded column).
    pub(super) fn decode_one(&self, row: &[u8]) -> Result<ScalarValue> {
        let array = self.decode(&[row])?;
        Ok(ScalarValue::try_from_array(&array, 0)?)
    }

    /// Decodes stored values (their last encoded column) into one array.
    pub(super) fn decode(&self, rows: &[&[u8]]) -> Result<ArrayRef> {
        let converter = self
            .values
            .as_ref()
            .ok_or_else(|| StreamError::Internal("no value encoder".into()))?;
        let parser = converter.parser();
        let mut columns = converter.convert_rows(rows.iter().map(|r| parser.parse(r)))?;
        columns
            .pop()
            .ok_or_else(|| StreamError::Internal("no decoded column".into()))
    }

    /// This call's value over `rows` rows of `input`, computed as a call with `strategy` over
    /// `input_type` would: the running form of an aggregate whose values are kept in full.
    fn fold(
        &self,
        strategy: Strategy,
        input_type: DataType,
        input: &CallInput,
        rows: usize,
    ) -> Result<ScalarValue> {
        let running = AggCall {
            strategy,
            values: None,
            order_by: vec![],
            arg: None,
            filter: None,
            kind: self.kind.clone(),
            distinct: false,
            input_type,
            output_type: self.output_type.clone(),
            text: String::new(),
        };
        let mut acc = running.empty();
        for row in 0..rows {
            running.update(&mut acc, input, &None, row, 1);
        }
        running.value(&acc)
    }

    pub(super) fn multiset_value(&self, values: &BTreeMap<Box<[u8]>, i64>) -> Result<ScalarValue> {
        let null = || ScalarValue::try_from(&self.output_type);
        Ok(match &self.kind {
            AggKind::Min => match values.keys().next() {
                Some(row) => self.decode_one(row)?,
                None => null()?,
            },
            AggKind::Max => match values.keys().next_back() {
                Some(row) => self.decode_one(row)?,
                None => null()?,
            },
            AggKind::Count => ScalarValue::Int64(Some(values.len() as i64)),
            kind => {
                if values.is_empty() {
                    return Ok(null()?);
                }
                // Every value once for DISTINCT, as often as it occurs otherwise; in order.
                let rows: Vec<&[u8]> = values
                    .iter()
                    .flat_map(|(row, &count)| {
                        let times = if self.distinct {
                            1
                        } else {
                            count.max(0) as usize
                        };
                        std::iter::repeat_n(row.as_ref(), times)
                    })
                    .collect();
                let array = self.decode(&rows)?;
                match kind {
                    AggKind::StringAgg { delimiter } => {
                        let text = cast(&array, &DataType::Utf8)?;
                        let parts: Vec<&str> = text.as_string::<i32>().iter().flatten().collect();
                        ScalarValue::Utf8(Some(parts.join(delimiter)))
                    }
                    AggKind::Variance { .. } => {
                        let values = cast(&array, &DataType::Float64)?;
                        let input = CallInput::Float(values.as_primitive::<Float64Type>().clone());
                        self.fold(Strategy::Variance, DataType::Float64, &input, array.len())?
                    }
                    AggKind::ArrayAgg => SingleRowListArrayBuilder::new(array)
                        .with_nullable(true)
                        .build_list_scalar(),
                    AggKind::Sum | AggKind::Avg => {
                        let input = CallInput::summed(&array)?;
                        self.fold(Strategy::Sum, self.input_type.clone(), &input, array.len())?
                    }
                    other => {
                        return Err(StreamError::Internal(format!("{other:?} over a multiset")));
                    }
                }
            }
        })
    }
}
