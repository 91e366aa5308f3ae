//! Aggregate calls and their per-group state, all maintainable under retractions.
//!
//! Invertible aggregates keep a small running state that a retraction undoes: count, sum and avg
//! (exact integer or decimal sums, float sums), variance and standard deviation (Welford's
//! method, which also takes removals), bool_and / bool_or (counts of true and false). min and max
//! over an append-only input keep only the current extreme. Everything else — min and max over
//! changing input (still right after the current extreme is deleted), DISTINCT aggregates,
//! string_agg and array_agg — keeps the multiset of its input values per group, ordered in
//! Arrow's row format, and computes its value from it when the group changes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float64Array, Int64Array, UInt32Array,
    new_empty_array, new_null_array,
};
use datafusion::arrow::compute::{SortOptions, cast, take};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;

mod multiset;

use crate::stream::ExprErrors;
use crate::stream::project::evaluate;
use crate::stream::state::{Reader, put_i64};
use crate::stream::{Result, StreamError};

/// Which aggregate function.
#[derive(Debug, Clone, PartialEq)]
pub enum AggKind {
    /// `count(x)`, `count(*)`.
    Count,
    /// `sum(x)`.
    Sum,
    /// `avg(x)`.
    Avg,
    /// `var_samp`, `var_pop`, `stddev_samp`, `stddev_pop`.
    Variance {
        /// Divide by n − 1 rather than n.
        sample: bool,
        /// Take the square root (standard deviation).
        sqrt: bool,
    },
    /// `bool_and(x)`.
    BoolAnd,
    /// `bool_or(x)`.
    BoolOr,
    /// `min(x)`.
    Min,
    /// `max(x)`.
    Max,
    /// `string_agg(x, delimiter)`.
    StringAgg {
        /// The separator (a constant).
        delimiter: String,
    },
    /// `array_agg(x)`.
    ArrayAgg,
}

impl AggKind {
    /// The kind for a DataFusion aggregate function name, if Augur maintains it.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "count" => AggKind::Count,
            "sum" => AggKind::Sum,
            "avg" | "mean" => AggKind::Avg,
            "var" | "var_samp" | "var_sample" => AggKind::Variance {
                sample: true,
                sqrt: false,
            },
            "var_pop" | "var_population" => AggKind::Variance {
                sample: false,
                sqrt: false,
            },
            "stddev" | "stddev_samp" => AggKind::Variance {
                sample: true,
                sqrt: true,
            },
            "stddev_pop" => AggKind::Variance {
                sample: false,
                sqrt: true,
            },
            "bool_and" => AggKind::BoolAnd,
            "bool_or" => AggKind::BoolOr,
            "min" => AggKind::Min,
            "max" => AggKind::Max,
            "array_agg" => AggKind::ArrayAgg,
            "string_agg" => AggKind::StringAgg {
                delimiter: String::new(),
            },
            _ => return None,
        })
    }
}

/// How a call's state is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Strategy {
    Count,
    Sum,
    Variance,
    Bool,
    /// The current min or max only (append-only input).
    Extreme,
    /// Every input value with its multiplicity.
    Multiset,
}

/// One aggregate call of a GROUP BY.
#[derive(Debug)]
pub struct AggCall {
    kind: AggKind,
    /// The argument (`None` for `count(*)`).
    arg: Option<Arc<dyn PhysicalExpr>>,
    /// `FILTER (WHERE ...)`.
    filter: Option<Arc<dyn PhysicalExpr>>,
    /// `ORDER BY` inside the call (string_agg, array_agg).
    order_by: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
    distinct: bool,
    input_type: DataType,
    output_type: DataType,
    strategy: Strategy,
    /// Encodes `[order_by..., arg]` for Extreme and Multiset.
    values: Option<RowConverter>,
    text: String,
}

impl CallInput {
    /// Numbers as sum and avg add them: decimals as they are, floats as `double precision`,
    /// integers widened to `bigint`.
    pub fn summed(arg: &ArrayRef) -> Result<Self> {
        Ok(match arg.data_type() {
            DataType::Decimal128(..) => CallInput::Decimal(arg.as_primitive().clone()),
            t if t.is_floating() => CallInput::Float(
                cast(arg, &DataType::Float64)?
                    .as_primitive::<Float64Type>()
                    .clone(),
            ),
            _ => CallInput::Int(
                cast(arg, &DataType::Int64)?
                    .as_primitive::<Int64Type>()
                    .clone(),
            ),
        })
    }
}

/// A call's argument columns for one change batch, ready for row-by-row updates.
pub enum CallInput {
    /// Only validity matters (count).
    Validity(Option<ArrayRef>),
    /// Integers, widened to BIGINT.
    Int(Int64Array),
    /// Floats.
    Float(Float64Array),
    /// Decimals (unscaled values).
    Decimal(Decimal128Array),
    /// Booleans.
    Bool(BooleanArray),
    /// Encoded values; `valid[row]` false for a NULL argument that the call skips.
    Rows(Rows, Vec<bool>),
}

/// Per-row mask from a FILTER clause (`None`: every row counts).
pub type Mask = Option<BooleanArray>;

impl AggCall {
    /// A call of `kind` over `arg` of type `input_type`, giving `output_type`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: AggKind,
        arg: Option<Arc<dyn PhysicalExpr>>,
        filter: Option<Arc<dyn PhysicalExpr>>,
        order_by: Vec<(Arc<dyn PhysicalExpr>, SortOptions, DataType)>,
        distinct: bool,
        input_type: DataType,
        output_type: DataType,
        append_only: bool,
        text: String,
    ) -> Result<Self> {
        let numeric = |t: &DataType| {
            t.is_integer()
                || t.is_floating()
                || matches!(t, DataType::Decimal128(..) | DataType::Null)
        };
        let strategy = match &kind {
            AggKind::Count if !distinct => Strategy::Count,
            AggKind::Sum | AggKind::Avg if !distinct => {
                if !numeric(&input_type) {
                    return Err(StreamError::NotSupported(format!(
                        "{text} over {input_type}"
                    )));
                }
                Strategy::Sum
            }
            // A running variance drifts when values are taken out again (the last of equal
            // values leaves a residue where 0 is right): over changing input, keep the values.
            AggKind::Variance { .. } if !distinct && append_only => Strategy::Variance,
            AggKind::BoolAnd | AggKind::BoolOr if !distinct => Strategy::Bool,
            AggKind::Min | AggKind::Max if append_only => Strategy::Extreme,
            AggKind::Sum | AggKind::Avg if !numeric(&input_type) => {
                return Err(StreamError::NotSupported(format!(
                    "{text} over {input_type}"
                )));
            }
            AggKind::BoolAnd | AggKind::BoolOr => {
                return Err(StreamError::NotSupported(format!("{text} with DISTINCT")));
            }
            _ => Strategy::Multiset,
        };
        if !order_by.is_empty() && !matches!(kind, AggKind::StringAgg { .. } | AggKind::ArrayAgg) {
            return Err(StreamError::NotSupported(format!("ORDER BY inside {text}")));
        }
        let values = match strategy {
            Strategy::Extreme | Strategy::Multiset => {
                let mut fields: Vec<SortField> = order_by
                    .iter()
                    .map(|(_, options, t)| SortField::new_with_options(t.clone(), *options))
                    .collect();
                fields.push(SortField::new(input_type.clone()));
                Some(RowConverter::new(fields)?)
            }
            _ => None,
        };
        Ok(Self {
            kind,
            arg,
            filter,
            order_by: order_by.into_iter().map(|(e, o, _)| (e, o)).collect(),
            distinct,
            input_type,
            output_type,
            strategy,
            values,
            text,
        })
    }

    /// The call as written, for EXPLAIN.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the call keeps its group's values (stored beside the group).
    pub fn keeps_values(&self) -> bool {
        matches!(self.strategy, Strategy::Multiset)
    }

    /// A fresh state.
    pub fn empty(&self) -> Acc {
        match self.strategy {
            Strategy::Count => Acc::Count(0),
            Strategy::Sum => Acc::Sum {
                int: 0,
                float: 0.0,
                n: 0,
            },
            Strategy::Variance => Acc::Variance {
                n: 0,
                mean: 0.0,
                m2: 0.0,
            },
            Strategy::Bool => Acc::Bool { t: 0, f: 0 },
            Strategy::Extreme => Acc::Extreme(None),
            Strategy::Multiset => Acc::Multiset {
                values: BTreeMap::new(),
                changed: HashSet::new(),
            },
        }
    }

    /// Evaluates the argument (and FILTER) over a change batch.
    pub fn prepare(
        &self,
        rows: &datafusion::arrow::array::RecordBatch,
        errors: &ExprErrors,
    ) -> Result<(CallInput, Mask)> {
        let mask = match &self.filter {
            Some(filter) => {
                let m = evaluate(filter, rows, errors)?;
                Some(
                    m.as_boolean_opt()
                        .cloned()
                        .unwrap_or_else(|| BooleanArray::from(vec![false; rows.num_rows()])),
                )
            }
            None => None,
        };
        let arg = match &self.arg {
            Some(arg) => Some(evaluate(arg, rows, errors)?),
            None => None,
        };
        let input = match self.strategy {
            Strategy::Count => CallInput::Validity(arg),
            Strategy::Sum => CallInput::summed(
                &arg.ok_or_else(|| StreamError::Internal("sum without argument".into()))?,
            )?,
            Strategy::Variance => {
                let arg =
                    arg.ok_or_else(|| StreamError::Internal("variance without argument".into()))?;
                CallInput::Float(
                    cast(&arg, &DataType::Float64)?
                        .as_primitive::<Float64Type>()
                        .clone(),
                )
            }
            Strategy::Bool => {
                let arg =
                    arg.ok_or_else(|| StreamError::Internal("bool_and without argument".into()))?;
                CallInput::Bool(cast(&arg, &DataType::Boolean)?.as_boolean().clone())
            }
            Strategy::Extreme | Strategy::Multiset => {
                let arg =
                    arg.ok_or_else(|| StreamError::Internal("aggregate without argument".into()))?;
                let arg = if arg.data_type() == &self.input_type {
                    arg
                } else {
                    cast(&arg, &self.input_type)?
                };
                // array_agg keeps NULLs; every other aggregate skips them.
                let keep_nulls = self.kind == AggKind::ArrayAgg;
                let valid = (0..arg.len())
                    .map(|i| keep_nulls || arg.is_valid(i))
                    .collect();
                let mut columns = Vec::with_capacity(self.order_by.len() + 1);
                for (expr, _) in &self.order_by {
                    columns.push(evaluate(expr, rows, errors)?);
                }
                columns.push(arg);
                let converter = self
                    .values
                    .as_ref()
                    .ok_or_else(|| StreamError::Internal("no value encoder".into()))?;
                CallInput::Rows(converter.convert_columns(&columns)?, valid)
            }
        };
        Ok((input, mask))
    }

    /// Applies row `row` of `input` with weight `w` to `acc`.
    pub fn update(&self, acc: &mut Acc, input: &CallInput, mask: &Mask, row: usize, w: i64) {
        if let Some(mask) = mask
            && !(mask.is_valid(row) && mask.value(row))
        {
            return;
        }
        match (acc, input) {
            (Acc::Count(n), CallInput::Validity(arg))
                if arg.as_ref().is_none_or(|a| a.is_valid(row)) =>
            {
                *n += w;
            }
            (Acc::Sum { int, n, .. }, CallInput::Int(a)) if a.is_valid(row) => {
                *int += a.value(row) as i128 * w as i128;
                *n += w;
            }
            (Acc::Sum { int, n, .. }, CallInput::Decimal(a)) if a.is_valid(row) => {
                *int += a.value(row) * w as i128;
                *n += w;
            }
            (Acc::Sum { float, n, .. }, CallInput::Float(a)) if a.is_valid(row) => {
                *float += a.value(row) * w as f64;
                *n += w;
                if *n == 0 {
                    *float = 0.0;
                }
            }
            (Acc::Variance { n, mean, m2 }, CallInput::Float(a)) if a.is_valid(row) => {
                let x = a.value(row);
                let next = *n + w;
                if next == 0 {
                    (*n, *mean, *m2) = (0, 0.0, 0.0);
                } else {
                    let delta = x - *mean;
                    let new_mean = *mean + delta * w as f64 / next as f64;
                    *m2 += delta * (x - new_mean) * w as f64;
                    *mean = new_mean;
                    *n = next;
                    if *m2 < 0.0 {
                        *m2 = 0.0;
                    }
                }
            }
            (Acc::Bool { t, f }, CallInput::Bool(a)) if a.is_valid(row) => {
                if a.value(row) {
                    *t += w;
                } else {
                    *f += w;
                }
            }
            (Acc::Extreme(current), CallInput::Rows(rows, valid)) if valid[row] => {
                let value = rows.row(row);
                let better = match current {
                    None => true,
                    Some(c) => {
                        let c = c.as_ref();
                        if self.kind == AggKind::Max {
                            value.as_ref() > c
                        } else {
                            value.as_ref() < c
                        }
                    }
                };
                if better && w > 0 {
                    *current = Some(value.as_ref().into());
                }
            }
            (Acc::Multiset { values, changed }, CallInput::Rows(rows, valid)) if valid[row] => {
                let key: Box<[u8]> = rows.row(row).as_ref().into();
                let count = values.entry(key.clone()).or_insert(0);
                *count += w;
                if *count == 0 {
                    values.remove(&key);
                }
                changed.insert(key);
            }
            _ => {}
        }
    }

    /// The call's value for a group in state `acc`.
    pub fn value(&self, acc: &Acc) -> Result<ScalarValue> {
        let value = match acc {
            Acc::Count(n) => ScalarValue::Int64(Some(*n)),
            Acc::Sum { int, float, n } => self.sum_value(*int, *float, *n)?,
            Acc::Variance { n, m2, .. } => {
                let divisor = if matches!(self.kind, AggKind::Variance { sample: true, .. }) {
                    n - 1
                } else {
                    *n
                };
                if divisor <= 0 {
                    ScalarValue::Float64(None)
                } else {
                    let var = m2 / divisor as f64;
                    let sqrt = matches!(self.kind, AggKind::Variance { sqrt: true, .. });
                    ScalarValue::Float64(Some(if sqrt { var.sqrt() } else { var }))
                }
            }
            Acc::Bool { t, f } => {
                if t + f == 0 {
                    ScalarValue::Boolean(None)
                } else if self.kind == AggKind::BoolAnd {
                    ScalarValue::Boolean(Some(*f == 0))
                } else {
                    ScalarValue::Boolean(Some(*t > 0))
                }
            }
            Acc::Extreme(None) => ScalarValue::try_from(&self.input_type)?,
            Acc::Extreme(Some(row)) => self.decode_one(row)?,
            Acc::Multiset { values, .. } => self.multiset_value(values)?,
        };
        if value.data_type() == self.output_type {
            Ok(value)
        } else {
            Ok(value.cast_to(&self.output_type)?)
        }
    }

    /// The values of many groups' states at once: one column of the output type, built without
    /// going through a value per group for counts, sums, averages and extremes.
    pub fn column<'a>(&self, accs: impl Iterator<Item = &'a Acc>) -> Result<ArrayRef> {
        let avg = self.kind == AggKind::Avg;
        let array: ArrayRef = match self.strategy {
            Strategy::Count => Arc::new(Int64Array::from_iter_values(accs.map(|acc| match acc {
                Acc::Count(n) => *n,
                _ => 0,
            }))),
            Strategy::Sum if self.input_type.is_floating() || avg => {
                let floating = self.input_type.is_floating();
                if matches!(self.input_type, DataType::Decimal128(..)) {
                    return self.column_of_values(accs);
                }
                Arc::new(Float64Array::from_iter(accs.map(|acc| match acc {
                    Acc::Sum { int, float, n } if *n != 0 => Some(match (floating, avg) {
                        (true, false) => *float,
                        (true, true) => float / *n as f64,
                        (false, _) => *int as f64 / *n as f64,
                    }),
                    _ => None,
                })))
            }
            Strategy::Sum if !matches!(self.input_type, DataType::Decimal128(..)) => {
                Arc::new(Int64Array::from_iter(accs.map(|acc| match acc {
                    Acc::Sum { int, n, .. } if *n != 0 => i64::try_from(*int).ok(),
                    _ => None,
                })))
            }
            Strategy::Extreme => {
                let mut present: Vec<&[u8]> = Vec::new();
                let indices: UInt32Array = accs
                    .map(|acc| match acc {
                        Acc::Extreme(Some(row)) => {
                            present.push(row);
                            Some(present.len() as u32 - 1)
                        }
                        _ => None,
                    })
                    .collect();
                if present.is_empty() {
                    new_null_array(&self.input_type, indices.len())
                } else {
                    take(self.decode(&present)?.as_ref(), &indices, None)?
                }
            }
            _ => return self.column_of_values(accs),
        };
        if array.data_type() == &self.output_type {
            Ok(array)
        } else {
            Ok(cast(&array, &self.output_type)?)
        }
    }

    /// [`AggCall::column`] through each group's value.
    fn column_of_values<'a>(&self, accs: impl Iterator<Item = &'a Acc>) -> Result<ArrayRef> {
        let values = accs
            .map(|acc| self.value(acc))
            .collect::<Result<Vec<_>>>()?;
        if values.is_empty() {
            return Ok(new_empty_array(&self.output_type));
        }
        Ok(ScalarValue::iter_to_array(values)?)
    }

    fn sum_value(&self, int: i128, float: f64, n: i64) -> Result<ScalarValue> {
        if n == 0 {
            return Ok(ScalarValue::try_from(&self.output_type)?);
        }
        let avg = self.kind == AggKind::Avg;
        Ok(match (&self.input_type, &self.output_type) {
            (DataType::Decimal128(_, scale), DataType::Decimal128(p, s)) => {
                let value = if avg {
                    let factor = 10i128.pow(u32::from((*s - *scale).max(0) as u8));
                    int.checked_mul(factor).map(|v| v / n as i128)
                } else {
                    Some(int)
                };
                ScalarValue::Decimal128(value, *p, *s)
            }
            (t, _) if t.is_floating() => {
                ScalarValue::Float64(Some(if avg { float / n as f64 } else { float }))
            }
            _ if avg => ScalarValue::Float64(Some(int as f64 / n as f64)),
            _ => ScalarValue::Int64(i64::try_from(int).ok()),
        })
    }

    /// Appends the running state of `acc` (not the multiset) to `out`.
    pub fn encode(&self, acc: &Acc, out: &mut Vec<u8>) {
        match acc {
            Acc::Count(n) => put_i64(out, *n),
            Acc::Sum { int, float, n } => {
                out.extend_from_slice(&int.to_be_bytes());
                put_i64(out, float.to_bits() as i64);
                put_i64(out, *n);
            }
            Acc::Variance { n, mean, m2 } => {
                put_i64(out, *n);
                put_i64(out, mean.to_bits() as i64);
                put_i64(out, m2.to_bits() as i64);
            }
            Acc::Bool { t, f } => {
                put_i64(out, *t);
                put_i64(out, *f);
            }
            Acc::Extreme(value) => match value {
                None => put_i64(out, -1),
                Some(row) => crate::stream::state::put_bytes(out, row),
            },
            Acc::Multiset { .. } => {}
        }
    }

    /// Reads a state written by [`AggCall::encode`].
    pub fn decode_state(&self, reader: &mut Reader<'_>) -> Result<Acc> {
        Ok(match self.strategy {
            Strategy::Count => Acc::Count(reader.i64()?),
            Strategy::Sum => Acc::Sum {
                int: reader.i128()?,
                float: reader.f64()?,
                n: reader.i64()?,
            },
            Strategy::Variance => Acc::Variance {
                n: reader.i64()?,
                mean: reader.f64()?,
                m2: reader.f64()?,
            },
            Strategy::Bool => Acc::Bool {
                t: reader.i64()?,
                f: reader.i64()?,
            },
            Strategy::Extreme => {
                let len = reader.i64()?;
                if len < 0 {
                    Acc::Extreme(None)
                } else {
                    Acc::Extreme(Some(reader.take(len as usize)?.into()))
                }
            }
            Strategy::Multiset => self.empty(),
        })
    }
}

/// The state of one aggregate call for one group.
#[derive(Debug, Clone)]
pub enum Acc {
    /// Rows (or non-null values) counted.
    Count(i64),
    /// Sum of the non-null values: exact for integers and decimals, float otherwise.
    Sum {
        /// Integer or unscaled decimal sum.
        int: i128,
        /// Float sum.
        float: f64,
        /// Non-null values summed.
        n: i64,
    },
    /// Welford's running variance.
    Variance {
        /// Values.
        n: i64,
        /// Their mean.
        mean: f64,
        /// Sum of squared differences from the mean.
        m2: f64,
    },
    /// Counts of true and false.
    Bool {
        /// Trues.
        t: i64,
        /// Falses.
        f: i64,
    },
    /// The encoded current extreme.
    Extreme(Option<Box<[u8]>>),
    /// Encoded values with their multiplicities, and the values changed since the last
    /// checkpoint.
    Multiset {
        /// Value → multiplicity (> 0).
        values: BTreeMap<Box<[u8]>, i64>,
        /// Values whose multiplicity changed since the last checkpoint.
        changed: HashSet<Box<[u8]>>,
    },
}
