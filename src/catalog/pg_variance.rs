//! `var_pop`, `var_samp`, `stddev_pop` and `stddev_samp` of `double precision` values as
//! PostgreSQL computes them when an infinity or NaN is among the values: NaN. DataFusion's
//! running variance of a single such value is 0 (nothing to subtract it from); an infinity or
//! NaN among several already gives NaN. The functions are DataFusion's, with a count of the
//! values that are not finite carried beside their state.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, ReversedUDAF, Signature,
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

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(CountingGroups {
            inner: self.inner.create_groups_accumulator(args)?,
            non_finite: Vec::new(),
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

/// For each value of `values[0]` (when they are doubles), whether it is infinite or NaN.
fn non_finite_flags(values: &[ArrayRef]) -> Option<impl Iterator<Item = bool> + '_> {
    match values.first() {
        Some(array) if array.data_type() == &DataType::Float64 => Some(
            array
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.is_some_and(|v| !v.is_finite())),
        ),
        _ => None,
    }
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

/// DataFusion's accumulator of many groups, and for each group how many of its values were
/// infinite or NaN.
struct CountingGroups {
    inner: Box<dyn GroupsAccumulator>,
    non_finite: Vec<i64>,
}

impl CountingGroups {
    /// `result` with NaN for the groups (the first of `counts`) that took a value not finite.
    fn with_nan(result: ArrayRef, counts: &[i64]) -> ArrayRef {
        if counts.iter().all(|c| *c == 0) || result.data_type() != &DataType::Float64 {
            return result;
        }
        let values = result.as_primitive::<Float64Type>();
        let patched: Float64Array = values
            .iter()
            .zip(counts)
            .map(|(v, c)| v.map(|v| if *c > 0 { f64::NAN } else { v }))
            .collect();
        Arc::new(patched)
    }
}

impl GroupsAccumulator for CountingGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.non_finite.resize(total_num_groups, 0);
        if let Some(flags) = non_finite_flags(values) {
            for (row, (flag, &group)) in flags.zip(group_indices).enumerate() {
                if flag && opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row)) {
                    self.non_finite[group] += 1;
                }
            }
        }
        self.inner
            .update_batch(values, group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let counts = emit_to.take_needed(&mut self.non_finite);
        Ok(Self::with_nan(self.inner.evaluate(emit_to)?, &counts))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let counts = emit_to.take_needed(&mut self.non_finite);
        let mut state = self.inner.state(emit_to)?;
        state.push(Arc::new(Int64Array::from(counts)));
        Ok(state)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        let Some((counts, inner)) = values.split_last() else {
            return Ok(());
        };
        self.non_finite.resize(total_num_groups, 0);
        let counts: &Int64Array = counts.as_primitive();
        for (count, &group) in counts.iter().zip(group_indices) {
            self.non_finite[group] += count.unwrap_or(0);
        }
        self.inner
            .merge_batch(inner, group_indices, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let mut state = self.inner.convert_to_state(values, opt_filter)?;
        let rows = values.first().map_or(0, |v| v.len());
        let counts: Int64Array = match non_finite_flags(values) {
            Some(flags) => flags
                .enumerate()
                .map(|(row, flag)| {
                    let kept = opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
                    Some(i64::from(flag && kept))
                })
                .collect(),
            None => std::iter::repeat_n(Some(0), rows).collect(),
        };
        state.push(Arc::new(counts));
        Ok(state)
    }

    fn size(&self) -> usize {
        self.inner.size() + self.non_finite.capacity() * std::mem::size_of::<i64>()
    }
}
