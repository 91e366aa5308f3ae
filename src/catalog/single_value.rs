//! The value of a scalar subquery: `augur_single_value(x)` aggregates the subquery's rows into
//! its one value and whether there were more, and `augur_single_unwrap` takes the value out
//! where the subquery's answer is used.
//!
//! A scalar subquery returns its one row's value, NULL when it returns no row, and fails with
//! `21000` when it returns more. DataFusion turns a correlated scalar subquery into a join only
//! when it aggregates, and then aggregates every group of the inner table, those no outer row
//! meets included: the error is raised by `augur_single_unwrap`, for a row that reads the value,
//! as PostgreSQL raises it, and not for a group nothing reads.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};

/// The aggregate's name.
pub const SINGLE_VALUE: &str = "augur_single_value";
/// The unwrapping function's name.
pub const SINGLE_UNWRAP: &str = "augur_single_unwrap";

/// The aggregate's result type for values of `value`: the value and whether more rows came.
fn result_fields(value: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("value", value.clone(), true),
        Field::new("more", DataType::Boolean, false),
    ])
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SingleValue {
    signature: Signature,
}

impl Default for SingleValue {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for SingleValue {
    fn name(&self) -> &str {
        SINGLE_VALUE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(result_fields(&arg_types[0])))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let value = args
            .input_fields
            .first()
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        Ok(vec![
            Arc::new(Field::new("value", value, true)),
            Arc::new(Field::new("rows", DataType::Int64, false)),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let value_type = match args.return_field.data_type() {
            DataType::Struct(fields) => fields[0].data_type().clone(),
            other => other.clone(),
        };
        Ok(Box::new(SingleValueAccumulator {
            value: ScalarValue::try_from(&value_type)?,
            value_type,
            rows: 0,
        }))
    }
}

#[derive(Debug)]
struct SingleValueAccumulator {
    value: ScalarValue,
    value_type: DataType,
    rows: i64,
}

impl Accumulator for SingleValueAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let column = &values[0];
        if self.rows == 0 && !column.is_empty() {
            self.value = ScalarValue::try_from_array(column, 0)?;
        }
        self.rows += column.len() as i64;
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states[1].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        for row in 0..rows.len() {
            if self.rows == 0 && rows.value(row) > 0 {
                self.value = ScalarValue::try_from_array(&states[0], row)?;
            }
            self.rows += rows.value(row);
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            self.value.clone(),
            ScalarValue::Int64(Some(self.rows)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let value = self.value.to_array()?;
        let more: ArrayRef = Arc::new(BooleanArray::from(vec![self.rows > 1]));
        let array = StructArray::try_new(result_fields(&self.value_type), vec![value, more], None)?;
        Ok(ScalarValue::Struct(Arc::new(array)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.size()
    }
}

/// `augur_single_unwrap(s)`: the value of an [`SingleValue`] result, an error where the
/// subquery returned more than one row.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SingleUnwrap {
    signature: Signature,
}

impl Default for SingleUnwrap {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for SingleUnwrap {
    fn name(&self) -> &str {
        SINGLE_UNWRAP
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &arg_types[0] {
            DataType::Struct(fields) if fields.len() == 2 => Ok(fields[0].data_type().clone()),
            // Not wrapped (the subquery aggregated already): the value itself.
            other => Ok(other.clone()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let array = args.args[0].to_array(args.number_rows)?;
        let Some(structs) = array.as_struct_opt() else {
            return Ok(ColumnarValue::Array(array));
        };
        let more = structs.column(1).as_boolean();
        for row in 0..structs.len() {
            if structs.is_valid(row) && more.is_valid(row) && more.value(row) {
                return Err(datafusion::error::DataFusionError::External(Box::new(
                    crate::error::Error::coded(
                        "21000",
                        "more than one row returned by a subquery used as an expression",
                    ),
                )));
            }
        }
        let values = structs.column(0);
        // A NULL struct (no row met) is a NULL value.
        let values = match structs.nulls() {
            Some(nulls) if nulls.null_count() > 0 => {
                let combined =
                    datafusion::arrow::buffer::NullBuffer::union(Some(nulls), values.nulls());
                datafusion::arrow::array::make_array(
                    values.to_data().into_builder().nulls(combined).build()?,
                )
            }
            _ => values.clone(),
        };
        Ok(ColumnarValue::Array(values))
    }
}
