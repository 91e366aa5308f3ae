//! `sum` and `avg` of `double precision` over a moving window frame, as PostgreSQL computes
//! them: each frame summed anew. DataFusion takes the rows leaving a frame back out of a running
//! sum, which loses small values beside large ones (`1e20` then `1`: the second frame's sum is
//! 0, where it is 1). PostgreSQL has no inverse for a sum of doubles for that reason. Every other
//! use of the two functions is DataFusion's. The frame accumulator here also computes the
//! variances' moving frames (see `pg_variance`).

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, GroupsAccumulator, SetMonotonicity,
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

/// The methods of an `AggregateUDFImpl` wrapping `self.inner`, a DataFusion aggregate whose
/// signature, types and ordering it keeps: all but `aliases` and the accumulators.
macro_rules! forward_to_inner {
    () => {
        fn name(&self) -> &str {
            self.inner.name()
        }

        fn signature(&self) -> &datafusion::logical_expr::Signature {
            self.inner.signature()
        }

        fn coerce_types(
            &self,
            arg_types: &[datafusion::arrow::datatypes::DataType],
        ) -> datafusion::common::Result<Vec<datafusion::arrow::datatypes::DataType>> {
            self.inner.coerce_types(arg_types)
        }

        fn return_type(
            &self,
            arg_types: &[datafusion::arrow::datatypes::DataType],
        ) -> datafusion::common::Result<datafusion::arrow::datatypes::DataType> {
            self.inner.return_type(arg_types)
        }

        fn return_field(
            &self,
            arg_fields: &[datafusion::arrow::datatypes::FieldRef],
        ) -> datafusion::common::Result<datafusion::arrow::datatypes::FieldRef> {
            self.inner.return_field(arg_fields)
        }

        fn is_nullable(&self) -> bool {
            self.inner.is_nullable()
        }

        fn default_value(
            &self,
            data_type: &datafusion::arrow::datatypes::DataType,
        ) -> datafusion::common::Result<datafusion::common::ScalarValue> {
            self.inner.default_value(data_type)
        }

        fn order_sensitivity(&self) -> datafusion::logical_expr::utils::AggregateOrderSensitivity {
            self.inner.order_sensitivity()
        }

        fn reverse_expr(&self) -> datafusion::logical_expr::ReversedUDAF {
            match self.inner.reverse_udf() {
                datafusion::logical_expr::ReversedUDAF::Identical => {
                    datafusion::logical_expr::ReversedUDAF::Identical
                }
                _ => datafusion::logical_expr::ReversedUDAF::NotSupported,
            }
        }
    };
}
pub(super) use forward_to_inner;

impl AggregateUDFImpl for FrameSum {
    forward_to_inner!();

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
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
        let average = self.inner.name() == "avg";
        Ok(Box::new(Frame::new(move |values| {
            if values.is_empty() {
                return Ok(None);
            }
            let sum: f64 = values.iter().sum();
            Ok(Some(if average {
                sum / values.len() as f64
            } else {
                sum
            }))
        })))
    }
}

/// What a frame's values give, computed from all of them in the order they entered it.
type OfFrame = dyn Fn(&VecDeque<f64>) -> Result<Option<f64>> + Send + Sync;

/// The values of one moving frame, in the order they entered it, and what they give.
pub(super) struct Frame {
    values: VecDeque<f64>,
    result: Box<OfFrame>,
}

impl Frame {
    pub(super) fn new(
        result: impl Fn(&VecDeque<f64>) -> Result<Option<f64>> + Send + Sync + 'static,
    ) -> Self {
        Frame {
            values: VecDeque::new(),
            result: Box::new(result),
        }
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("values", &self.values)
            .finish()
    }
}

/// The values of `values[0]` as doubles.
pub(super) fn doubles(values: &[ArrayRef]) -> Result<Float64Array> {
    let Some(array) = values.first() else {
        return Ok(Float64Array::from(Vec::<f64>::new()));
    };
    let array = datafusion::arrow::compute::cast(array, &DataType::Float64)?;
    Ok(array.as_primitive::<Float64Type>().clone())
}

impl Accumulator for Frame {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.values.extend(doubles(values)?.iter().flatten());
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for x in doubles(values)?.iter().flatten() {
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
        Ok(ScalarValue::Float64((self.result)(&self.values)?))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.capacity() * std::mem::size_of::<f64>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        datafusion::common::internal_err!("a window frame has no partial state")
    }

    fn merge_batch(&mut self, _: &[ArrayRef]) -> Result<()> {
        datafusion::common::internal_err!("a window frame is not merged")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_value_beside_a_large_one_survives_the_large_one_leaving() {
        let mut frame = Frame::new(|values| Ok((!values.is_empty()).then(|| values.iter().sum())));
        let batch = |v: &[f64]| vec![Arc::new(Float64Array::from(v.to_vec())) as ArrayRef];
        frame.update_batch(&batch(&[1e20, 1.0])).unwrap();
        assert_eq!(frame.evaluate().unwrap(), ScalarValue::Float64(Some(1e20)));
        frame.retract_batch(&batch(&[1e20])).unwrap();
        assert_eq!(frame.evaluate().unwrap(), ScalarValue::Float64(Some(1.0)));
        frame.retract_batch(&batch(&[1.0])).unwrap();
        assert_eq!(frame.evaluate().unwrap(), ScalarValue::Float64(None));
    }
}
