//! PostgreSQL's functions over the bits and bytes of a `bytea`: `get_byte`, `set_byte`,
//! `get_bit`, `set_bit` (bits numbered from the right within each byte, as PostgreSQL numbers
//! them) and `bit_count`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// Registers the functions of this module.
pub fn register(ctx: &SessionContext) {
    for (name, arguments) in [
        ("get_byte", 2),
        ("set_byte", 3),
        ("get_bit", 2),
        ("set_bit", 3),
        ("bit_count", 1),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(Bits {
            name,
            signature: Signature::any(arguments, Volatility::Immutable),
        }));
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bits {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for Bits {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.name {
            "set_byte" | "set_bit" => DataType::Binary,
            "bit_count" => DataType::Int64,
            _ => DataType::Int32,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let bytes = cast(&arrays[0], &DataType::Binary)?;
        let bytes = bytes.as_binary::<i32>();
        let numbers: Vec<ArrayRef> = arrays[1..]
            .iter()
            .map(|a| cast(a, &DataType::Int64))
            .collect::<std::result::Result<_, _>>()?;
        let numbers: Vec<&datafusion::arrow::array::PrimitiveArray<Int64Type>> = numbers
            .iter()
            .map(|a| a.as_primitive::<Int64Type>())
            .collect();
        let present = |i: usize| bytes.is_valid(i) && numbers.iter().all(|n| n.is_valid(i));
        let bits = self.name.ends_with("_bit");
        // The byte and the bit within it that argument `n` names, checked against the length.
        let position = |value: &[u8], n: i64| -> Result<(usize, u32)> {
            let limit = value.len() as i64 * if bits { 8 } else { 1 };
            if n < 0 || n >= limit {
                return Err(super::pg_builtins::pg_error(
                    "2202E",
                    format!("index {n} out of valid range, 0..{}", limit - 1),
                ));
            }
            Ok(if bits {
                ((n / 8) as usize, (n % 8) as u32)
            } else {
                (n as usize, 0)
            })
        };
        let result: ArrayRef = match self.name {
            "bit_count" => Arc::new(
                (0..rows)
                    .map(|i| {
                        present(i).then(|| {
                            bytes
                                .value(i)
                                .iter()
                                .map(|b| i64::from(b.count_ones()))
                                .sum()
                        })
                    })
                    .collect::<Int64Array>(),
            ),
            "get_byte" | "get_bit" => Arc::new(
                (0..rows)
                    .map(|i| {
                        if !present(i) {
                            return Ok(None);
                        }
                        let value = bytes.value(i);
                        let (byte, bit) = position(value, numbers[0].value(i))?;
                        Ok(Some(if bits {
                            i32::from((value[byte] >> bit) & 1)
                        } else {
                            i32::from(value[byte])
                        }))
                    })
                    .collect::<Result<datafusion::arrow::array::Int32Array>>()?,
            ),
            _ => {
                let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(rows);
                for i in 0..rows {
                    if !present(i) {
                        out.push(None);
                        continue;
                    }
                    let mut value = bytes.value(i).to_vec();
                    let (byte, bit) = position(&value, numbers[0].value(i))?;
                    let new = numbers[1].value(i);
                    if bits {
                        if new != 0 && new != 1 {
                            return Err(super::pg_builtins::pg_error(
                                "22023",
                                "new bit must be 0 or 1".to_string(),
                            ));
                        }
                        value[byte] = (value[byte] & !(1 << bit)) | ((new as u8) << bit);
                    } else {
                        value[byte] = new as u8;
                    }
                    out.push(Some(value));
                }
                Arc::new(BinaryArray::from_iter(out))
            }
        };
        Ok(ColumnarValue::Array(result))
    }
}
