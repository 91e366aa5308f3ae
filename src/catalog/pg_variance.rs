//! `var_pop`, `var_samp`, `stddev_pop` and `stddev_samp` as PostgreSQL computes them: with
//! Youngs and Cramer's running sums, which keep the digits of values far from zero (DataFusion's
//! running mean loses them: 2.50000000558794 for the variance of 100000003, 100000004,
//! 100000006 and 100000007, where it is 2.5), and NaN when an infinity or NaN is among the
//! values (DataFusion's variance of a single such value is 0). DataFusion's functions give the
//! signatures, coercions and result types.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue};

use super::pg_frame_sum::doubles;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator,
};
use datafusion::prelude::SessionContext;

/// Replaces DataFusion's variance and standard deviation functions with PostgreSQL's.
pub fn register(ctx: &SessionContext) {
    for name in ["var_pop", "var_samp", "stddev_pop", "stddev"] {
        if let Ok(inner) = datafusion::execution::FunctionRegistry::udaf(ctx, name) {
            let mut aliases = inner.aliases().to_vec();
            // PostgreSQL's name for the sample variance.
            if name == "var_samp" {
                aliases.push("variance".to_string());
            }
            ctx.register_udaf(AggregateUDF::new_from_impl(Variance { inner, aliases }));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Variance {
    inner: Arc<AggregateUDF>,
    aliases: Vec<String>,
}

impl AggregateUDFImpl for Variance {
    super::pg_frame_sum::forward_to_inner!();

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        // `var_pop(DISTINCT x)`: DataFusion's, which keeps the distinct values.
        if args.is_distinct {
            return self.inner.accumulator(args);
        }
        Ok(Box::new(Single {
            kind: self.kind(),
            state: Moments::default(),
        }))
    }

    fn create_sliding_accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        // Summed anew for each frame, as PostgreSQL does: taking values back out of the running
        // sums would leave rounding behind (2.0000000000000004 for 2).
        let kind = self.kind();
        Ok(Box::new(super::pg_frame_sum::Frame::new(move |values| {
            let mut state = Moments::default();
            values.iter().for_each(|&x| state.add(x));
            state.overflowed()?;
            Ok(state.evaluate(kind))
        })))
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        !args.is_distinct
    }

    fn create_groups_accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Groups {
            kind: self.kind(),
            groups: Vec::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        if args.is_distinct {
            return self.inner.state_fields(args);
        }
        Ok(["count", "sum", "sum_of_squared_deviations", "non_finite"]
            .iter()
            .zip([
                DataType::Int64,
                DataType::Float64,
                DataType::Float64,
                DataType::Int64,
            ])
            .map(|(part, data_type)| {
                Arc::new(Field::new(
                    format!("{}[{part}]", args.name),
                    data_type,
                    true,
                ))
            })
            .collect())
    }
}

impl Variance {
    fn kind(&self) -> Kind {
        let name = self.inner.name();
        Kind {
            sample: !name.ends_with("_pop"),
            root: name.starts_with("stddev"),
        }
    }
}

/// Which of the four functions: of a sample (divided by n - 1) or of the population (by n),
/// and the standard deviation (the variance's square root) or the variance.
#[derive(Debug, Clone, Copy)]
struct Kind {
    sample: bool,
    root: bool,
}

/// PostgreSQL's running state (Youngs and Cramer): how many finite values, their sum, and the
/// sum of their squared deviations from their mean, updated without cancellation; apart, how
/// many values were infinite or NaN, so that a moving window can take them back out.
#[derive(Debug, Default, Clone, Copy)]
struct Moments {
    count: i64,
    sum: f64,
    squares: f64,
    non_finite: i64,
}

impl Moments {
    fn add(&mut self, x: f64) {
        if !x.is_finite() {
            self.non_finite += 1;
            return;
        }
        self.count += 1;
        self.sum += x;
        if self.count > 1 {
            let n = self.count as f64;
            let t = x * n - self.sum;
            self.squares += t * t / (n * (n - 1.0));
        }
    }

    /// The inverse of [`Moments::add`].
    fn remove(&mut self, x: f64) {
        if !x.is_finite() {
            self.non_finite -= 1;
            return;
        }
        if self.count > 1 {
            let n = self.count as f64;
            let t = x * n - self.sum;
            self.squares = (self.squares - t * t / (n * (n - 1.0))).max(0.0);
        }
        self.count -= 1;
        self.sum -= x;
        if self.count == 0 {
            self.sum = 0.0;
            self.squares = 0.0;
        }
    }

    /// Both states as one, as PostgreSQL combines partial states.
    fn merge(&mut self, other: Moments) {
        self.non_finite += other.non_finite;
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            (self.count, self.sum, self.squares) = (other.count, other.sum, other.squares);
            return;
        }
        let (n1, n2) = (self.count as f64, other.count as f64);
        let t = self.sum / n1 - other.sum / n2;
        self.squares += other.squares + n1 * n2 * t * t / (n1 + n2);
        self.count += other.count;
        self.sum += other.sum;
    }

    /// An overflow of the running sums of finite values is PostgreSQL's error, not an infinity.
    fn overflowed(&self) -> Result<()> {
        if self.non_finite == 0 && !(self.sum.is_finite() && self.squares.is_finite()) {
            return Err(datafusion::error::DataFusionError::External(Box::new(
                crate::error::Error::coded("22003", "value out of range: overflow"),
            )));
        }
        Ok(())
    }

    fn evaluate(&self, kind: Kind) -> Option<f64> {
        let values = self.count + self.non_finite;
        if values == 0 || (kind.sample && values == 1) {
            return None;
        }
        if self.non_finite > 0 {
            return Some(f64::NAN);
        }
        let divisor = if kind.sample {
            self.count - 1
        } else {
            self.count
        };
        let variance = self.squares / divisor as f64;
        Some(if kind.root { variance.sqrt() } else { variance })
    }
}

/// The four state columns of `states` as one state per row.
fn states_of(states: &[ArrayRef]) -> Result<impl Iterator<Item = Moments> + '_> {
    let [count, sum, squares, non_finite] = states else {
        return datafusion::common::internal_err!("variance state of {} parts", states.len());
    };
    let count: &Int64Array = count.as_primitive();
    let sum: &Float64Array = sum.as_primitive();
    let squares: &Float64Array = squares.as_primitive();
    let non_finite: &Int64Array = non_finite.as_primitive();
    Ok((0..count.len()).map(move |i| Moments {
        count: count.value(i),
        sum: sum.value(i),
        squares: squares.value(i),
        non_finite: non_finite.value(i),
    }))
}

fn state_arrays(states: &[Moments]) -> Vec<ArrayRef> {
    vec![
        Arc::new(Int64Array::from_iter_values(states.iter().map(|s| s.count))),
        Arc::new(Float64Array::from_iter_values(states.iter().map(|s| s.sum))),
        Arc::new(Float64Array::from_iter_values(
            states.iter().map(|s| s.squares),
        )),
        Arc::new(Int64Array::from_iter_values(
            states.iter().map(|s| s.non_finite),
        )),
    ]
}

/// One group's state.
#[derive(Debug)]
struct Single {
    kind: Kind,
    state: Moments,
}

impl Accumulator for Single {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        doubles(values)?
            .iter()
            .flatten()
            .for_each(|x| self.state.add(x));
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        doubles(values)?
            .iter()
            .flatten()
            .for_each(|x| self.state.remove(x));
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.state.overflowed()?;
        Ok(ScalarValue::Float64(self.state.evaluate(self.kind)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let s = self.state;
        Ok(vec![
            ScalarValue::Int64(Some(s.count)),
            ScalarValue::Float64(Some(s.sum)),
            ScalarValue::Float64(Some(s.squares)),
            ScalarValue::Int64(Some(s.non_finite)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for other in states_of(states)? {
            self.state.merge(other);
        }
        Ok(())
    }
}

/// The states of many groups.
struct Groups {
    kind: Kind,
    groups: Vec<Moments>,
}

impl GroupsAccumulator for Groups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize(total_num_groups, Moments::default());
        let values = doubles(values)?;
        for (row, (value, &group)) in values.iter().zip(group_indices).enumerate() {
            if let Some(x) = value
                && opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row))
            {
                self.groups[group].add(x);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = emit_to.take_needed(&mut self.groups);
        groups.iter().try_for_each(Moments::overflowed)?;
        let values: Float64Array = groups.iter().map(|s| s.evaluate(self.kind)).collect();
        Ok(Arc::new(values))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(state_arrays(&emit_to.take_needed(&mut self.groups)))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize(total_num_groups, Moments::default());
        for (other, &group) in states_of(values)?.zip(group_indices) {
            self.groups[group].merge(other);
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let values = doubles(values)?;
        let states: Vec<Moments> = values
            .iter()
            .enumerate()
            .map(|(row, value)| {
                let mut state = Moments::default();
                if let Some(x) = value
                    && opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row))
                {
                    state.add(x);
                }
                state
            })
            .collect();
        Ok(state_arrays(&states))
    }

    fn size(&self) -> usize {
        self.groups.capacity() * std::mem::size_of::<Moments>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POP: Kind = Kind {
        sample: false,
        root: false,
    };

    #[test]
    fn variance_of_values_far_from_zero_keeps_its_digits() {
        let mut state = Moments::default();
        for x in [100000003.0, 100000004.0, 100000006.0, 100000007.0] {
            state.add(x);
        }
        assert_eq!(state.evaluate(POP), Some(2.5));
        // Two halves combined give the same.
        let (mut a, mut b) = (Moments::default(), Moments::default());
        a.add(100000003.0);
        a.add(100000004.0);
        b.add(100000006.0);
        b.add(100000007.0);
        a.merge(b);
        assert_eq!(a.evaluate(POP), Some(2.5));
        // Taking a value back out leaves the variance of the rest.
        state.remove(100000003.0);
        let rest = state.evaluate(POP).unwrap();
        assert!((rest - 14.0 / 9.0).abs() < 1e-9, "{rest}");
    }

    #[test]
    fn a_value_not_finite_makes_nan_until_taken_out() {
        let mut state = Moments::default();
        state.add(1.0);
        state.add(f64::INFINITY);
        assert!(state.evaluate(POP).unwrap().is_nan());
        state.remove(f64::INFINITY);
        assert_eq!(state.evaluate(POP), Some(0.0));
        let mut single = Moments::default();
        single.add(f64::NAN);
        assert!(single.evaluate(POP).unwrap().is_nan());
        let sample = Kind {
            sample: true,
            root: true,
        };
        assert_eq!(single.evaluate(sample), None);
        // Finite values whose squares overflow.
        let mut huge = Moments::default();
        huge.add(1e200);
        huge.add(-1e200);
        assert!(huge.overflowed().is_err());
        assert!(single.overflowed().is_ok());
    }
}
