//! `var_pop`, `var_samp`, `stddev_pop` and `stddev_samp` of `double precision` values as
//! PostgreSQL computes them when an infinity or NaN is among the values: NaN. DataFusion's
//! running variance of a single such value is 0 (nothing to subtract it from); an infinity or
//! NaN among several already gives NaN. The functions are DataFusion's, with a count of the
//! values that are not finite carried beside their state.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ReversedUDAF, Signature,
};
use datafusion::prelude::SessionContext;

/// Replaces DataFusion's variance and standard deviation functions with ones that give NaN
/// when a value is infinite or NaN.
pub fn register(ctx: &SessionContext) {
    for name in ["var_pop", "var_samp", "stddev_pop", "stddev"] {
        if let Ok(inner) = datafusion::execution::FunctionRegistry::udaf(ctx, name) {
            ctx.register_udaf(AggregateUDF::new_from_impl(NonFiniteAware { inner }));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct NonFiniteAware {
    inner: Arc<AggregateUDF>,
}

impl AggregateUDFImpl for NonFiniteAware {
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

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Counting {
            inner: self.inner.accumulator(acc_args)?,
            non_finite: 0,
        }))
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Counting {
            inner: self.inner.create_sliding_accumulator(args)?,
            non_finite: 0,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let name = format!("{}[non_finite]", args.name);
        let mut fields = self.inner.state_fields(args)?;
        fields.push(Arc::new(Field::new(name, DataType::Int64, true)));
        Ok(fields)
    }
}

/// DataFusion's accumulator, and how many of the values it took were infinite or NaN.
#[derive(Debug)]
struct Counting {
    inner: Box<dyn Accumulator>,
    non_finite: i64,
}

fn non_finite(values: &[ArrayRef]) -> i64 {
    match values.first() {
        Some(array) if array.data_type() == &DataType::Float64 => array
            .as_primitive::<Float64Type>()
            .iter()
            .flatten()
            .filter(|v| !v.is_finite())
            .count() as i64,
        _ => 0,
    }
}

impl Accumulator for Counting {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.non_finite += non_finite(values);
        self.inner.update_batch(values)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.non_finite -= non_finite(values);
        self.inner.retract_batch(values)
    }

    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let value = self.inner.evaluate()?;
        Ok(match value {
            ScalarValue::Float64(Some(_)) if self.non_finite > 0 => {
                ScalarValue::Float64(Some(f64::NAN))
            }
            other => other,
        })
    }

    fn size(&self) -> usize {
        self.inner.size() + std::mem::size_of::<i64>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut state = self.inner.state()?;
        state.push(ScalarValue::Int64(Some(self.non_finite)));
        Ok(state)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some((counts, inner)) = states.split_last() else {
            return Ok(());
        };
        let counts: &Int64Array = counts.as_primitive();
        self.non_finite += counts.iter().flatten().sum::<i64>();
        self.inner.merge_batch(inner)
    }
}
