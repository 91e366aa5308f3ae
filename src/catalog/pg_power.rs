//! `power(x, y)` (and `x ^ y`) of doubles with PostgreSQL's errors: a negative number to a
//! non-integer power (`2201F`, where DataFusion gives NaN), zero to a negative power (`2201F`),
//! and results that overflow to infinity or underflow to zero (`22003`). Other types are
//! DataFusion's `power` as it is.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// Registers `power` (and its other name `pow`) over DataFusion's.
pub fn register(ctx: &SessionContext) {
    if let Ok(inner) = datafusion::execution::FunctionRegistry::udf(ctx, "power") {
        ctx.register_udf(ScalarUDF::new_from_impl(Power { inner }));
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Power {
    inner: Arc<ScalarUDF>,
}

fn error(code: &'static str, message: &str) -> datafusion::error::DataFusionError {
    super::pg_builtins::pg_error(code, message.to_string())
}

impl ScalarUDFImpl for Power {
    fn name(&self) -> &str {
        "power"
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }

    fn return_field_from_args(
        &self,
        args: ReturnFieldArgs,
    ) -> Result<datafusion::arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let doubles = args.return_field.data_type() == &DataType::Float64;
        let inputs = if doubles {
            Some(
                args.args
                    .iter()
                    .map(|a| {
                        a.to_array(rows)
                            .and_then(|a| Ok(cast(&a, &DataType::Float64)?))
                    })
                    .collect::<Result<Vec<_>>>()?,
            )
        } else {
            None
        };
        let result = self.inner.invoke_with_args(args)?;
        let Some(inputs) = inputs else {
            return Ok(result);
        };
        let out = result.to_array(rows)?;
        let out = cast(&out, &DataType::Float64)?;
        let (x, y, out) = (
            inputs[0].as_primitive::<Float64Type>(),
            inputs[1].as_primitive::<Float64Type>(),
            out.as_primitive::<Float64Type>(),
        );
        for i in 0..out.len() {
            if out.is_null(i) || x.is_null(i) || y.is_null(i) {
                continue;
            }
            let (a, b, v) = (x.value(i), y.value(i), out.value(i));
            if a == 0.0 && b < 0.0 {
                return Err(error(
                    "2201F",
                    "zero raised to a negative power is undefined",
                ));
            }
            if a < 0.0 && a.is_finite() && b.is_finite() && b.floor() != b {
                return Err(error(
                    "2201F",
                    "a negative number raised to a non-integer power yields a complex result",
                ));
            }
            if v.is_infinite() && a.is_finite() && b.is_finite() {
                return Err(error("22003", "value out of range: overflow"));
            }
            if v == 0.0 && a != 0.0 && a.is_finite() && b.is_finite() {
                return Err(error("22003", "value out of range: underflow"));
            }
        }
        Ok(result)
    }
}
