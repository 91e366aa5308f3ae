//! Ordered-set aggregates DataFusion does not have: `percentile_disc(p) WITHIN GROUP (ORDER BY
//! x)` (the first value whose position in the order reaches the fraction `p`) and `mode()
//! WITHIN GROUP (ORDER BY x)` (the most frequent value, the first in the order among equally
//! frequent ones); and `percentile_cont(p)` as PostgreSQL interpolates, between the values at
//! the positions around `p` of the way (DataFusion rounds the fraction down to millionths:
//! 2.899999 for 2.9). NULLs are left out, as in PostgreSQL.

use std::cmp::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

/// The three aggregates.
pub fn functions() -> Vec<AggregateUDF> {
    vec![
        AggregateUDF::new_from_impl(OrderedSet {
            kind: Kind::PercentileCont,
            signature: Signature::any(2, Volatility::Immutable),
        }),
        AggregateUDF::new_from_impl(OrderedSet {
            kind: Kind::PercentileDisc,
            signature: Signature::any(2, Volatility::Immutable),
        }),
        AggregateUDF::new_from_impl(OrderedSet {
            kind: Kind::Mode,
            signature: Signature::any(1, Volatility::Immutable),
        }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    PercentileCont,
    PercentileDisc,
    Mode,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct OrderedSet {
    kind: Kind,
    signature: Signature,
}

impl AggregateUDFImpl for OrderedSet {
    fn name(&self) -> &str {
        match self.kind {
            Kind::PercentileCont => "percentile_cont",
            Kind::PercentileDisc => "percentile_disc",
            Kind::Mode => "mode",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match self.kind {
            Kind::PercentileCont if arg_types[0].is_numeric() || arg_types[0].is_null() => {
                Ok(DataType::Float64)
            }
            Kind::PercentileCont => Err(datafusion::error::DataFusionError::External(Box::new(
                crate::error::Error::coded(
                    "42883",
                    format!(
                        "function percentile_cont of {} does not exist",
                        arg_types[0]
                    ),
                ),
            ))),
            _ => Ok(arg_types[0].clone()),
        }
    }

    fn supports_within_group_clause(&self) -> bool {
        true
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let value = match self.kind {
            Kind::PercentileCont => DataType::Float64,
            _ => args.input_fields[0].data_type().clone(),
        };
        Ok(vec![Arc::new(Field::new(
            "values",
            DataType::List(Arc::new(Field::new_list_field(value, true))),
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let fraction = match self.kind {
            Kind::Mode => 0.0,
            Kind::PercentileDisc | Kind::PercentileCont => {
                let literal = args.exprs.get(1).and_then(|e| {
                    e.downcast_ref::<datafusion::physical_expr::expressions::Literal>()
                        .map(|l| l.value().clone())
                });
                match literal.map(|v| v.cast_to(&DataType::Float64)) {
                    Some(Ok(ScalarValue::Float64(Some(p)))) => {
                        if !(0.0..=1.0).contains(&p) {
                            return Err(datafusion::error::DataFusionError::External(Box::new(
                                crate::error::Error::coded(
                                    "22003",
                                    format!("percentile value {p} is not between 0 and 1"),
                                ),
                            )));
                        }
                        p
                    }
                    _ => return exec_err!("{} takes one constant fraction", self.name()),
                }
            }
        };
        let descending = args.order_bys.first().is_some_and(|s| s.options.descending);
        Ok(Box::new(OrderedSetAccumulator {
            kind: self.kind,
            fraction,
            descending,
            data_type: args.return_field.data_type().clone(),
            values: Vec::new(),
        }))
    }
}

#[derive(Debug)]
struct OrderedSetAccumulator {
    kind: Kind,
    fraction: f64,
    descending: bool,
    data_type: DataType,
    values: Vec<ScalarValue>,
}

impl Accumulator for OrderedSetAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let column = &match self.kind {
            Kind::PercentileCont => {
                datafusion::arrow::compute::cast(&values[0], &DataType::Float64)?
            }
            _ => Arc::clone(&values[0]),
        };
        for row in 0..column.len() {
            if column.is_valid(row) {
                self.values.push(ScalarValue::try_from_array(column, row)?);
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_list::<i32>();
        for row in 0..lists.len() {
            if lists.is_valid(row) {
                self.update_batch(&[lists.value(row)])?;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::List(ScalarValue::new_list_nullable(
            &self.values,
            &self.data_type,
        ))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let descending = self.descending;
        self.values.sort_by(|a, b| {
            let order = a.partial_cmp(b).unwrap_or(Ordering::Equal);
            if descending { order.reverse() } else { order }
        });
        if self.values.is_empty() {
            return ScalarValue::try_from(&self.data_type);
        }
        match self.kind {
            Kind::PercentileCont => {
                let value = |i: usize| match &self.values[i] {
                    ScalarValue::Float64(Some(v)) => *v,
                    _ => f64::NAN,
                };
                let position = self.fraction * (self.values.len() - 1) as f64;
                let (below, above) = (position.floor(), position.ceil());
                let first = value(below as usize);
                Ok(ScalarValue::Float64(Some(if below == above {
                    first
                } else {
                    first + (value(above as usize) - first) * (position - below)
                })))
            }
            Kind::PercentileDisc => {
                let n = self.values.len();
                let position = (self.fraction * n as f64).ceil() as usize;
                Ok(self.values[position.saturating_sub(1).min(n - 1)].clone())
            }
            Kind::Mode => {
                let mut best = (0usize, 0usize);
                let mut start = 0;
                for i in 1..=self.values.len() {
                    if i == self.values.len() || self.values[i] != self.values[start] {
                        if i - start > best.1 {
                            best = (start, i - start);
                        }
                        start = i;
                    }
                }
                Ok(self.values[best.0].clone())
            }
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.iter().map(|v| v.size()).sum::<usize>()
    }
}
