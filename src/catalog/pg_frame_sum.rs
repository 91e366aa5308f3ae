//! `sum` and `avg` of `double precision` over a moving window frame, as PostgreSQL computes
//! them: each frame summed anew. DataFusion takes the rows leaving a frame back out of a running
//! sum, which loses small values beside large ones (`1e20` then `1`: the second frame's sum is
//! 0, where it is 1). PostgreSQL has no inverse for a sum of doubles for that reason. Every other
//! use of the two functions is DataFusion's.

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, GroupsAccumulator, ReversedUDAF, SetMonotonicity,
    Signature,
};
use datafusion::prelude::SessionContext;

/// Replaces DataFusion's `sum` and `avg` with ones that sum each moving frame of doubles anew.
pub fn register(ctx: &SessionContext) {
    for name in ["sum", "avg"] {
        if let Ok(inner) = datafusion::execution::FunctionRegistry::udaf(ctx, name) {
            ctx.register_udaf(AggregateUDF::new_from_impl(FrameSum { inner }));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct FrameSum {
    inner: Arc<AggregateUDF>,
}

impl AggregateUDFImpl for FrameSum {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        self.inner.return_field(arg_fields)
    }

    fn is_nullable(&self) -> bool {
        self.inner.is_nullable()
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.inner.default_value(data_type)
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.order_sensitivity()
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        match self.inner.reverse_udf() {
            ReversedUDAF::Identical => ReversedUDAF::Identical,
            _ => ReversedUDAF::NotSupported,
        }
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.inner.inner().set_monotonicity(data_type)
    }

    fn value_from_stats(
        &self,
        statistics_args: &datafusion::logical_expr::StatisticsArgs,
    ) -> Option<ScalarValue> {
        self.inner.inner().value_from_stats(statistics_args)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner.accumulator(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        self.inner.create_groups_accumulator(args)
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let doubles = args
            .expr_fields
            .first()
            .is_some_and(|f| matches!(f.data_type(), DataType::Float64 | DataType::Float32))
            && args.return_type() == &DataType::Float64
            && !args.is_distinct;
        if !doubles {
            return self.inner.create_sliding_accumulator(args);
        }
        Ok(Box::new(Frame {
            average: self.inner.name() == "avg",
            values: VecDeque::new(),
        }))
    }
}

/// The values of one moving frame, in the order they entered it.
#[derive(Debug)]
struct Frame {
    average: bool,
    values: VecDeque<f64>,
}

fn doubles(values: &[ArrayRef]) -> Result<Vec<f64>> {
    let Some(array) = values.first() else {
        return Ok(Vec::new());
    };
    let array = datafusion::arrow::compute::cast(array, &DataType::Float64)?;
    Ok(array
        .as_primitive::<Float64Type>()
        .iter()
        .flatten()
        .collect())
}

impl Accumulator for Frame {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.values.extend(doubles(values)?);
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for x in doubles(values)? {
            // Rows leave a frame in the order they entered it.
            match self.values.iter().position(|v| v.to_bits() == x.to_bits()) {
                Some(at) => {
                    self.values.remove(at);
                }
                None => {
                    return datafusion::common::internal_err!(
                        "a value left the window frame that was not in it"
                    );
                }
            }
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.values.is_empty() {
            return Ok(ScalarValue::Float64(None));
        }
        let sum: f64 = self.values.iter().sum();
        Ok(ScalarValue::Float64(Some(if self.average {
            sum / self.values.len() as f64
        } else {
            sum
        })))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.capacity() * std::mem::size_of::<f64>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        datafusion::common::internal_err!("a window frame's sum has no partial state")
    }

    fn merge_batch(&mut self, _: &[ArrayRef]) -> Result<()> {
        datafusion::common::internal_err!("a window frame's sum is not merged")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Float64Array;

    #[test]
    fn a_small_value_beside_a_large_one_survives_the_large_one_leaving() {
        let mut frame = Frame {
            average: false,
            values: VecDeque::new(),
        };
        let batch = |v: &[f64]| vec![Arc::new(Float64Array::from(v.to_vec())) as ArrayRef];
        frame.update_batch(&batch(&[1e20, 1.0])).unwrap();
        assert_eq!(frame.evaluate().unwrap(), ScalarValue::Float64(Some(1e20)));
        frame.retract_batch(&batch(&[1e20])).unwrap();
        assert_eq!(frame.evaluate().unwrap(), ScalarValue::Float64(Some(1.0)));
        frame.retract_batch(&batch(&[1.0])).unwrap();
        assert_eq!(frame.evaluate().unwrap(), ScalarValue::Float64(None));
    }
}
