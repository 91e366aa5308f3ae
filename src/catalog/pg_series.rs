//! `generate_series(start, stop, step)` of timestamps or dates with an infinite bound. In PostgreSQL such
//! a series has no end (a query cuts it with `LIMIT`); DataFusion's `generate_series` builds
//! the whole series as one list and gives an empty one for an infinite bound. This refuses the
//! series instead of answering it wrongly, and hands every other call to DataFusion's.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type, IntervalMonthDayNanoType, IntervalUnit};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// `generate_series` as a function of a list (the set-returning form unnests it).
pub fn function() -> ScalarUDF {
    ScalarUDF::new_from_impl(Series {
        inner: datafusion::functions_nested::range::gen_series_udf(),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Series {
    inner: Arc<ScalarUDF>,
}

/// Whether a series from `start` to `stop` by `step` has a row and an infinite bound; Augur
/// keeps `'infinity'` and `'-infinity'` as the largest and smallest timestamps and dates.
fn unbounded(start: i64, stop: i64, step: i128, dates: bool) -> bool {
    let infinite = |v: i64| {
        if dates {
            [
                super::pg_datetime::DATE_INFINITY,
                super::pg_datetime::DATE_NEG_INFINITY,
            ]
            .map(i64::from)
            .contains(&v)
        } else {
            [i64::MAX, i64::MIN].contains(&v)
        }
    };
    let rows = (step > 0 && start <= stop) || (step < 0 && start >= stop);
    rows && (infinite(start) || infinite(stop))
}

impl ScalarUDFImpl for Series {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(
        &self,
        args: ReturnFieldArgs,
    ) -> Result<datafusion::arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let [start, stop, step] = &args.args[..]
            && let DataType::Timestamp(..) | DataType::Date32 = start.data_type()
            && let DataType::Timestamp(..) | DataType::Date32 = stop.data_type()
        {
            let rows = args.number_rows;
            let as_integers = |value: &ColumnarValue| -> Result<_> {
                let array = value.to_array(rows)?;
                // The unit does not matter: an infinity is the type's extreme in any unit (a
                // date's is that of 32 bits).
                Ok(datafusion::arrow::compute::cast(&array, &DataType::Int64)?)
            };
            let dates = start.data_type() == DataType::Date32;
            let (start_values, stop_values) = (as_integers(start)?, as_integers(stop)?);
            let step_values = step.to_array(rows)?;
            if let DataType::Interval(IntervalUnit::MonthDayNano) = step_values.data_type() {
                let starts = start_values.as_primitive::<Int64Type>();
                let stops = stop_values.as_primitive::<Int64Type>();
                let steps = step_values.as_primitive::<IntervalMonthDayNanoType>();
                for i in 0..rows {
                    if starts.is_null(i) || stops.is_null(i) || steps.is_null(i) {
                        continue;
                    }
                    if unbounded(
                        starts.value(i),
                        stops.value(i),
                        super::pg_functions::interval_length(steps.value(i)),
                        dates,
                    ) {
                        return Err(datafusion::error::DataFusionError::External(Box::new(
                            crate::error::Error::coded(
                                "0A000",
                                "generate_series with an infinite bound is not supported: \
                                 the series has no end (give it a finite bound)",
                            ),
                        )));
                    }
                }
            }
        }
        self.inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infinite_bounds_in_the_series_direction() {
        let month = super::super::pg_functions::interval_length(
            datafusion::arrow::datatypes::IntervalMonthDayNano::new(1, 0, 0),
        );
        assert!(unbounded(0, i64::MAX, month, false));
        assert!(unbounded(i64::MIN, 0, month, false));
        // Empty series: the start is already past the stop.
        assert!(!unbounded(i64::MAX, 0, month, false));
        assert!(!unbounded(0, i64::MIN, month, false));
        assert!(unbounded(0, i64::MIN, -month, false));
        assert!(!unbounded(0, 10, month, false));
        // A date's infinity is that of 32 bits; a timestamp there is an ordinary one.
        assert!(unbounded(0, i64::from(i32::MAX), month, true));
        assert!(!unbounded(0, i64::from(i32::MAX), month, false));
    }
}
