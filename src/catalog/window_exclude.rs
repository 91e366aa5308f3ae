//! Window frames with `EXCLUDE CURRENT ROW | GROUP | TIES | NO OTHERS`, which DataFusion's
//! window functions do not have.
//!
//! `f(x) OVER (... EXCLUDE mode)` is planned as `augur_exclude_f('mode', 1, x, keys...) OVER
//! (...)` (see `sql::postgresql_token_forms` and `sql::rewrite::window_clauses`): the
//! frame is DataFusion's; the function leaves out the current row, its peers (rows equal to it
//! in the window's ORDER BY keys, passed after the function's own arguments) or both, and
//! computes `f` over the rows that remain.

use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};

/// The prefix of the functions' names: `augur_exclude_sum`, ...
pub const PREFIX: &str = "augur_exclude_";

/// The window functions that take an `EXCLUDE` clause.
pub const FUNCTIONS: &[&str] = &[
    "sum",
    "count",
    "avg",
    "min",
    "max",
    "first_value",
    "last_value",
    "nth_value",
];

/// The functions, one per entry of [`FUNCTIONS`].
pub fn functions() -> Vec<WindowUDF> {
    FUNCTIONS
        .iter()
        .map(|f| {
            WindowUDF::new_from_impl(Exclude {
                name: format!("{PREFIX}{f}"),
                function: f,
                signature: Signature::variadic_any(Volatility::Immutable),
            })
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Exclude {
    name: String,
    function: &'static str,
    signature: Signature,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    CurrentRow,
    Group,
    Ties,
    NoOthers,
}

/// A constant argument of the call.
fn literal(expr: &Arc<dyn datafusion::physical_expr::PhysicalExpr>) -> Option<ScalarValue> {
    expr.downcast_ref::<datafusion::physical_expr::expressions::Literal>()
        .map(|l| l.value().clone())
}

impl WindowUDFImpl for Exclude {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let argument = field_args
            .get_input_field(2)
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        let data_type = match self.function {
            "count" => DataType::Int64,
            "avg" => DataType::Float64,
            "sum" => match argument {
                DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                    DataType::Int64
                }
                DataType::Float16 | DataType::Float32 | DataType::Float64 => DataType::Float64,
                other => other,
            },
            _ => argument,
        };
        Ok(Arc::new(Field::new(field_args.name(), data_type, true)))
    }

    fn partition_evaluator(
        &self,
        args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        let exprs = args.input_exprs();
        let mode = match exprs.first().and_then(literal) {
            Some(ScalarValue::Utf8(Some(m))) => match m.as_str() {
                "current row" => Mode::CurrentRow,
                "group" => Mode::Group,
                "ties" => Mode::Ties,
                "no others" => Mode::NoOthers,
                other => return exec_err!("unknown window exclusion {other}"),
            },
            _ => return exec_err!("{} takes the exclusion as a constant", self.name),
        };
        let arguments = match exprs.get(1).and_then(literal) {
            Some(ScalarValue::Int64(Some(n))) => n as usize,
            _ => return exec_err!("{} takes its argument count as a constant", self.name),
        };
        let return_type = self
            .field(WindowUDFFieldArgs::new(args.input_fields(), &self.name))?
            .data_type()
            .clone();
        Ok(Box::new(ExcludeEvaluator {
            function: self.function,
            mode,
            arguments,
            row: 0,
            return_type,
            groups: Vec::new(),
        }))
    }
}

#[derive(Debug)]
struct ExcludeEvaluator {
    function: &'static str,
    mode: Mode,
    /// How many of the values are the function's own arguments (after the two constants); the
    /// rest are the ORDER BY keys.
    arguments: usize,
    /// The row being evaluated: rows are evaluated in order, each once.
    row: usize,
    return_type: DataType,
    /// Each row's peer group in the partition (rows equal in the ORDER BY keys are adjacent),
    /// found when the first row is evaluated.
    groups: Vec<usize>,
}

impl ExcludeEvaluator {
    /// Numbers the runs of equal ORDER BY keys among the partition's rows.
    fn group(&mut self, values: &[ArrayRef]) -> Result<()> {
        let keys = &values[2 + self.arguments..];
        let rows = values.first().map_or(0, |v| v.len());
        self.groups = Vec::with_capacity(rows);
        let mut group = 0;
        for row in 0..rows {
            if row > 0 {
                for key in keys {
                    if ScalarValue::try_from_array(key, row)?
                        != ScalarValue::try_from_array(key, row - 1)?
                    {
                        group += 1;
                        break;
                    }
                }
            }
            self.groups.push(group);
        }
        Ok(())
    }
}

impl PartitionEvaluator for ExcludeEvaluator {
    fn uses_window_frame(&self) -> bool {
        true
    }

    fn evaluate(&mut self, values: &[ArrayRef], range: &Range<usize>) -> Result<ScalarValue> {
        let current = self.row;
        self.row += 1;
        if current == 0 && matches!(self.mode, Mode::Group | Mode::Ties) {
            self.group(values)?;
        }
        let peers = |r: usize| self.groups[r] == self.groups[current];
        let mut rows = Vec::with_capacity(range.len());
        for r in range.clone() {
            let excluded = match self.mode {
                Mode::NoOthers => false,
                Mode::CurrentRow => r == current,
                Mode::Group => peers(r),
                Mode::Ties => r != current && peers(r),
            };
            if !excluded {
                rows.push(r);
            }
        }
        let column = values.get(2);
        let value = |r: usize| -> Result<ScalarValue> {
            match column {
                Some(c) => ScalarValue::try_from_array(c, r),
                None => Ok(ScalarValue::Int64(Some(1))),
            }
        };
        let null = || ScalarValue::try_from(&self.return_type);
        match self.function {
            "first_value" => rows.first().map_or_else(null, |&r| value(r)),
            "last_value" => rows.last().map_or_else(null, |&r| value(r)),
            "nth_value" => {
                let n = match values.get(3) {
                    Some(n) => ScalarValue::try_from_array(n, current)?,
                    None => return exec_err!("nth_value takes two arguments"),
                };
                if n.is_null() {
                    return null();
                }
                let n = match n.cast_to(&DataType::Int64)? {
                    ScalarValue::Int64(Some(n)) => n,
                    _ => return null(),
                };
                if n <= 0 {
                    return Err(crate::catalog::pg_builtins::pg_error(
                        "22016",
                        "argument of nth_value must be greater than zero".to_string(),
                    ));
                }
                rows.get(n as usize - 1).map_or_else(null, |&r| value(r))
            }
            "count" => {
                let mut n = 0i64;
                for &r in &rows {
                    if !value(r)?.is_null() {
                        n += 1;
                    }
                }
                Ok(ScalarValue::Int64(Some(n)))
            }
            function => {
                let mut total: Option<ScalarValue> = None;
                let mut n = 0i64;
                for &r in &rows {
                    let v = value(r)?;
                    if v.is_null() {
                        continue;
                    }
                    n += 1;
                    let v = match function {
                        "sum" | "avg" => v.cast_to(if function == "avg" {
                            &DataType::Float64
                        } else {
                            &self.return_type
                        })?,
                        _ => v,
                    };
                    total = Some(match (total, function) {
                        (None, _) => v,
                        (Some(t), "sum" | "avg") => t.add_checked(&v)?,
                        (Some(t), "min") => {
                            if v < t {
                                v
                            } else {
                                t
                            }
                        }
                        (Some(t), _) => {
                            if v > t {
                                v
                            } else {
                                t
                            }
                        }
                    });
                }
                match (total, function) {
                    (None, _) => null(),
                    (Some(t), "avg") => match t {
                        ScalarValue::Float64(Some(s)) => {
                            Ok(ScalarValue::Float64(Some(s / n as f64)))
                        }
                        other => Ok(other),
                    },
                    (Some(t), _) => Ok(t),
                }
            }
        }
    }
}
