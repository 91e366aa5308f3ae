//! `substr`/`substring` and `btrim`/`ltrim`/`rtrim` of `bytea`, which PostgreSQL has beside
//! the text forms: DataFusion's functions, with byte-string forms added.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// Replaces DataFusion's `substr`, `btrim`, `ltrim` and `rtrim` in `ctx` with forms that also
/// take `bytea`.
pub fn register(ctx: &SessionContext) {
    let forms = [
        ("substr", Op::Substr),
        (
            "btrim",
            Op::Trim {
                start: true,
                end: true,
            },
        ),
        (
            "ltrim",
            Op::Trim {
                start: true,
                end: false,
            },
        ),
        (
            "rtrim",
            Op::Trim {
                start: false,
                end: true,
            },
        ),
    ];
    ctx.register_udf(bytea_like());
    for (name, op) in forms {
        let Ok(inner) = datafusion::execution::FunctionRegistry::udf(ctx, name) else {
            continue;
        };
        let signature = Signature::user_defined(inner.signature().volatility);
        ctx.register_udf(ScalarUDF::new_from_impl(WithBytea {
            inner,
            signature,
            op,
        }));
    }
}

#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Op {
    Substr,
    Trim { start: bool, end: bool },
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct WithBytea {
    inner: Arc<ScalarUDF>,
    signature: Signature,
    op: Op,
}

fn is_binary(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
    )
}

impl ScalarUDFImpl for WithBytea {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.first().is_some_and(is_binary) {
            let fits = match self.op {
                Op::Substr => (2..=3).contains(&arg_types.len()),
                Op::Trim { .. } => arg_types.len() == 2,
            };
            if !fits {
                return datafusion::common::plan_err!(
                    "function {}({}) does not exist",
                    self.name(),
                    arg_types
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            return Ok(match self.op {
                Op::Substr => std::iter::once(DataType::Binary)
                    .chain(std::iter::repeat_n(DataType::Int64, arg_types.len() - 1))
                    .collect(),
                Op::Trim { .. } => vec![DataType::Binary, DataType::Binary],
            });
        }
        let fields: Vec<FieldRef> = arg_types
            .iter()
            .map(|t| {
                Arc::new(datafusion::arrow::datatypes::Field::new(
                    "a",
                    t.clone(),
                    true,
                ))
            })
            .collect();
        Ok(
            datafusion::logical_expr::type_coercion::functions::fields_with_udf(
                &fields,
                self.inner.as_ref(),
            )?
            .iter()
            .map(|f| f.data_type().clone())
            .collect(),
        )
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if arg_types.first().is_some_and(is_binary) {
            Ok(DataType::Binary)
        } else {
            self.inner.return_type(arg_types)
        }
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if args
            .arg_fields
            .first()
            .is_some_and(|f| is_binary(f.data_type()))
        {
            let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
            Ok(Arc::new(datafusion::arrow::datatypes::Field::new(
                self.name(),
                DataType::Binary,
                nullable,
            )))
        } else {
            self.inner.return_field_from_args(args)
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !args.args.first().is_some_and(|a| is_binary(&a.data_type())) {
            return self.inner.invoke_with_args(args);
        }
        let op = self.op;
        datafusion::functions::utils::make_scalar_function(move |arrays| bytea(op, arrays), vec![])(
            &args.args,
        )
    }
}

/// `op` of the byte strings in `arrays[0]`, row by row.
fn bytea(op: Op, arrays: &[ArrayRef]) -> Result<ArrayRef> {
    let rows = arrays[0].len();
    let bytes = cast(&arrays[0], &DataType::Binary)?;
    let bytes = bytes.as_binary::<i32>();
    let mut out = BinaryBuilder::new();
    match op {
        Op::Substr => {
            let int = |i: usize| -> Result<Option<Int64Array>> {
                arrays
                    .get(i)
                    .map(|a| Ok(cast(a, &DataType::Int64)?.as_primitive().clone()))
                    .transpose()
            };
            let starts = int(1)?.expect("two arguments at least");
            let counts = int(2)?;
            for row in 0..rows {
                if bytes.is_null(row)
                    || starts.is_null(row)
                    || counts.as_ref().is_some_and(|c| c.is_null(row))
                {
                    out.append_null();
                    continue;
                }
                let value = bytes.value(row);
                let start = starts.value(row);
                let end = match &counts {
                    Some(counts) => {
                        let count = counts.value(row);
                        if count < 0 {
                            return Err(super::pg_builtins::pg_error(
                                "22011",
                                "negative substring length not allowed".into(),
                            ));
                        }
                        start.saturating_add(count)
                    }
                    None => i64::MAX,
                };
                // 1-based positions [start, end), clipped to the value.
                let len = value.len() as i64;
                let from = (start.max(1) - 1).min(len);
                let to = (end.max(1) - 1).clamp(from, len);
                out.append_value(&value[from as usize..to as usize]);
            }
        }
        Op::Trim { start, end } => {
            let sets = cast(&arrays[1], &DataType::Binary)?;
            let sets = sets.as_binary::<i32>();
            for row in 0..rows {
                if bytes.is_null(row) || sets.is_null(row) {
                    out.append_null();
                    continue;
                }
                let set = sets.value(row);
                let mut value = bytes.value(row);
                if start {
                    while let Some((first, rest)) = value.split_first()
                        && set.contains(first)
                    {
                        value = rest;
                    }
                }
                if end {
                    while let Some((last, rest)) = value.split_last()
                        && set.contains(last)
                    {
                        value = rest;
                    }
                }
                out.append_value(value);
            }
        }
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn one(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn bytes_are_trimmed_and_text_still_is() {
        let ctx = SessionContext::new();
        register(&ctx);
        let trimmed = one(&ctx, "SELECT btrim(X'00410000', X'00') AS a, ltrim(X'0041', X'00') AS b, rtrim(X'4100', X'00') AS c, btrim('  x ') AS d").await;
        assert!(trimmed.contains("| 41 | 41 | 41 | x |"), "{trimmed}");
    }
}

/// The function `bytea LIKE bytea` is planned as: `augur_bytea_like(value, pattern, escape)`.
pub const BYTEA_LIKE: &str = "augur_bytea_like";

/// `augur_bytea_like(value, pattern, escape)`: `LIKE` of byte strings, as PostgreSQL's
/// `bytealike`: `%` is any run of bytes, `_` one byte, and the escape character (one ASCII
/// character) takes the byte after it as itself.
pub fn bytea_like() -> ScalarUDF {
    ScalarUDF::new_from_impl(ByteaLike {
        signature: Signature::exact(
            vec![DataType::Binary, DataType::Binary, DataType::Utf8],
            datafusion::logical_expr::Volatility::Immutable,
        ),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ByteaLike {
    signature: Signature,
}

impl ScalarUDFImpl for ByteaLike {
    fn name(&self) -> &str {
        BYTEA_LIKE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let values = args.args[0].to_array(args.number_rows)?;
        let escape = match &args.args[2] {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::Utf8(Some(e)))
                if e.len() == 1 =>
            {
                e.as_bytes()[0]
            }
            _ => {
                return datafusion::common::exec_err!(
                    "the escape of bytea LIKE must be one ASCII character"
                );
            }
        };
        let values = values.as_binary::<i32>();
        let out: datafusion::arrow::array::BooleanArray = match &args.args[1] {
            // One pattern for the batch: read once.
            ColumnarValue::Scalar(pattern) => {
                let pattern = match pattern {
                    datafusion::common::ScalarValue::Binary(Some(p)) => {
                        Some(Pattern::new(p, escape))
                    }
                    _ => None,
                };
                values
                    .iter()
                    .map(|value| Some(pattern.as_ref()?.matches(value?)))
                    .collect()
            }
            ColumnarValue::Array(patterns) => values
                .iter()
                .zip(patterns.as_binary::<i32>().iter())
                .map(|(value, pattern)| Some(Pattern::new(pattern?, escape).matches(value?)))
                .collect(),
        };
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(out) as ArrayRef)
        })
    }
}

/// A `LIKE` pattern of bytes, read: each item a byte to match (escaped or not), `_` or `%`.
struct Pattern(Vec<Item>);

#[derive(Clone, Copy, PartialEq)]
enum Item {
    Byte(u8),
    One,
    Any,
}

impl Pattern {
    fn new(pattern: &[u8], escape: u8) -> Self {
        let mut items = Vec::with_capacity(pattern.len());
        let mut bytes = pattern.iter();
        while let Some(&b) = bytes.next() {
            items.push(match b {
                b if b == escape => Item::Byte(bytes.next().copied().unwrap_or(escape)),
                b'_' => Item::One,
                b'%' => Item::Any,
                b => Item::Byte(b),
            });
        }
        Pattern(items)
    }

    /// Whether `value` matches, byte by byte: greedy, going back to the last `%` on a
    /// mismatch.
    fn matches(&self, value: &[u8]) -> bool {
        let items = &self.0;
        let (mut v, mut p) = (0, 0);
        let mut resume: Option<(usize, usize)> = None;
        while v < value.len() {
            match items.get(p) {
                Some(Item::Any) => {
                    resume = Some((p, v));
                    p += 1;
                }
                Some(Item::One) => {
                    v += 1;
                    p += 1;
                }
                Some(Item::Byte(b)) if *b == value[v] => {
                    v += 1;
                    p += 1;
                }
                _ => match resume {
                    Some((star, from)) => {
                        p = star + 1;
                        v = from + 1;
                        resume = Some((star, from + 1));
                    }
                    None => return false,
                },
            }
        }
        items[p..].iter().all(|i| *i == Item::Any)
    }
}

/// Whether `value` matches the `LIKE` pattern `pattern`.
#[cfg(test)]
fn like(value: &[u8], pattern: &[u8], escape: u8) -> bool {
    Pattern::new(pattern, escape).matches(value)
}

#[cfg(test)]
mod like_tests {
    use super::like;

    #[test]
    fn bytea_like_patterns() {
        assert!(like(b"abc", b"_b_", b'\\'));
        assert!(!like(b"abc", b"_b", b'\\'));
        assert!(like(b"abc", b"%c", b'\\'));
        assert!(like(b"abcabd", b"%ab_", b'\\'));
        assert!(like(b"a_c", b"a\\__", b'\\'));
        assert!(!like(b"abc", b"a\\__", b'\\'));
        assert!(like(b"", b"%", b'\\'));
        assert!(!like(b"", b"_", b'\\'));
        assert!(like(b"a_c", b"a$__", b'$'));
        assert!(like(&[0xff, 0x00, 0x01], &[b'%', 0x00, b'_'], b'\\'));
    }
}
