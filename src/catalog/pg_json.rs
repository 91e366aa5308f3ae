//! `json` and `jsonb`: text columns whose field metadata names the type (see
//! [`super::pg_builtins::PG_TYPE_KEY`]), read and checked by `augur_json_in`/`augur_jsonb_in`
//! (a `jsonb` is stored in PostgreSQL's normalized text: keys ordered by length and then bytes,
//! the last of duplicate keys kept, `{"a": 1, "b": [1, 2]}`), and PostgreSQL's operators and
//! functions over them: `->`, `->>`, `#>`, `#>>`, `@>`, `<@`, `?`, `jsonb_typeof`,
//! `jsonb_array_length`, `jsonb_extract_path[_text]`, `jsonb_pretty` and their `json_` forms.
//! Values are parsed with `serde_json`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use serde_json::Value;

use super::pg_builtins::PG_TYPE_KEY;

/// Name of the function a cast to `json` is planned as.
pub const JSON_IN: &str = "augur_json_in";
/// Name of the function a cast to `jsonb` is planned as.
pub const JSONB_IN: &str = "augur_jsonb_in";
/// `json -> key | index`.
pub const GET: &str = "augur_json_get";
/// `json ->> key | index`.
pub const GET_TEXT: &str = "augur_json_get_text";
/// `json #> path`.
pub const GET_PATH: &str = "augur_json_get_path";
/// `json #>> path`.
pub const GET_PATH_TEXT: &str = "augur_json_get_path_text";
/// `jsonb @> jsonb`.
pub const CONTAINS: &str = "augur_jsonb_contains";
/// `jsonb <@ jsonb`.
pub const CONTAINED_BY: &str = "augur_jsonb_contained_by";
/// `jsonb ? key`.
pub const HAS_KEY: &str = "augur_jsonb_has_key";

/// Which of the two JSON types a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JsonKind {
    Json,
    Jsonb,
}

impl JsonKind {
    fn name(self) -> &'static str {
        match self {
            JsonKind::Json => "json",
            JsonKind::Jsonb => "jsonb",
        }
    }

    /// The JSON type a field carries, if any.
    pub fn of_field(field: &Field) -> Option<JsonKind> {
        match field.metadata().get(PG_TYPE_KEY).map(String::as_str) {
            Some("json") => Some(JsonKind::Json),
            Some("jsonb") => Some(JsonKind::Jsonb),
            _ => None,
        }
    }

    /// A text field typed as this JSON type.
    pub fn field(self, name: &str, nullable: bool) -> FieldRef {
        Arc::new(
            Field::new(name, DataType::Utf8, nullable).with_metadata(
                [(PG_TYPE_KEY.to_string(), self.name().to_string())]
                    .into_iter()
                    .collect(),
            ),
        )
    }

    /// `text` read as a value of this type: checked, and for `jsonb` normalized.
    pub fn read(self, text: &str) -> Result<String> {
        let value = parse(text, self)?;
        Ok(match self {
            // json keeps its text as given.
            JsonKind::Json => text.to_string(),
            JsonKind::Jsonb => jsonb_text(&value),
        })
    }
}

fn pg_error(code: &'static str, message: String) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(crate::error::Error::coded(
        code, message,
    )))
}

fn parse(text: &str, kind: JsonKind) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        pg_error(
            "22P02",
            format!(
                "invalid input syntax for type {}: \"{text}\" ({e})",
                kind.name()
            ),
        )
    })
}

/// A value as PostgreSQL writes a `jsonb`: `{"a": 1, "bb": [1, 2]}`, object keys shortest
/// first and then in byte order.
pub fn jsonb_text(value: &Value) -> String {
    let mut out = String::new();
    write_jsonb(value, &mut out);
    out
}

fn write_jsonb(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(b.0)));
            out.push('{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_jsonb(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// One step of a path: an object key, or an array index (negative counts from the end).
/// `->` takes an integer for an array and text for an object (`by_index` says which it got);
/// a path (`#>`, `jsonb_extract_path`) is text throughout, read as an index where an array is.
fn step<'a>(value: &'a Value, key: &str, by_index: Option<bool>) -> Option<&'a Value> {
    match value {
        Value::Object(map) if by_index != Some(true) => map.get(key),
        Value::Array(items) if by_index != Some(false) => {
            let index: i64 = key.parse().ok()?;
            let index = if index < 0 {
                items.len() as i64 + index
            } else {
                index
            };
            usize::try_from(index).ok().and_then(|i| items.get(i))
        }
        _ => None,
    }
}

/// A value as `->>` gives it: a string's contents, `null` as SQL NULL, anything else its text.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(jsonb_text(other)),
    }
}

/// PostgreSQL's `jsonb @>`: every part of `right` is in `left` (a scalar equals, an object's
/// keys are all there with contained values, an array's elements are each contained in some
/// element; an array on the left also contains a scalar on the right).
fn contains(left: &Value, right: &Value, top: bool) -> bool {
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => r
            .iter()
            .all(|(k, rv)| l.get(k).is_some_and(|lv| contains(lv, rv, false))),
        (Value::Array(l), Value::Array(r)) => r.iter().all(|rv| {
            l.iter().any(|lv| match rv {
                Value::Object(_) | Value::Array(_) => contains(lv, rv, false),
                scalar => lv == scalar || numbers_equal(lv, scalar),
            })
        }),
        (Value::Array(l), scalar) if top && !scalar.is_object() => {
            l.iter().any(|lv| lv == scalar || numbers_equal(lv, scalar))
        }
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => false,
        (l, r) => l == r || numbers_equal(l, r),
    }
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => a.is_number() && b.is_number() && x == y,
        _ => false,
    }
}

/// What a function does with its arguments, one row at a time, in text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    /// `augur_json_in` / `augur_jsonb_in`.
    Read,
    Get,
    GetText,
    GetPath,
    GetPathText,
    Contains,
    ContainedBy,
    HasKey,
    TypeOf,
    ArrayLength,
    Pretty,
}

/// One of this module's functions over JSON text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonFunction {
    name: String,
    op: Op,
    /// The type the result has (for results that are JSON), else the type of the input.
    kind: JsonKind,
    signature: Signature,
}

impl JsonFunction {
    fn new(name: &str, op: Op, kind: JsonKind) -> Self {
        let signature = match op {
            Op::Read | Op::TypeOf | Op::ArrayLength | Op::Pretty => Signature::one_of(
                vec![
                    datafusion::logical_expr::TypeSignature::Exact(vec![DataType::Utf8]),
                    datafusion::logical_expr::TypeSignature::Exact(vec![DataType::Null]),
                ],
                Volatility::Immutable,
            ),
            Op::GetPath | Op::GetPathText => Signature::variadic_any(Volatility::Immutable),
            _ => Signature::any(2, Volatility::Immutable),
        };
        Self {
            name: name.to_string(),
            op,
            kind,
            signature,
        }
    }
}

impl ScalarUDFImpl for JsonFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.op {
            Op::Contains | Op::ContainedBy | Op::HasKey => DataType::Boolean,
            Op::ArrayLength => DataType::Int32,
            _ => DataType::Utf8,
        })
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let data_type = self.return_type(&[])?;
        // The JSON type of the result follows the input's (`jsonb -> k` is a jsonb).
        let kind = match self.op {
            Op::Read => Some(self.kind),
            Op::Get | Op::GetPath => Some(
                args.arg_fields
                    .first()
                    .and_then(|f| JsonKind::of_field(f))
                    .unwrap_or(self.kind),
            ),
            _ => None,
        };
        Ok(match kind {
            Some(kind) => kind.field(self.name(), true),
            None => Arc::new(Field::new(self.name(), data_type, true)),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let texts: Vec<ArrayRef> = arrays
            .iter()
            .map(|a| {
                if a.data_type() == &DataType::Utf8 {
                    Ok(a.clone())
                } else {
                    datafusion::arrow::compute::cast(a, &DataType::Utf8).map_err(Into::into)
                }
            })
            .collect::<Result<_>>()?;
        let input_kind = args
            .arg_fields
            .first()
            .and_then(|f| JsonKind::of_field(f))
            .unwrap_or(self.kind);
        let by_index: Vec<bool> = arrays.iter().map(|a| a.data_type().is_integer()).collect();
        let value_at = |col: usize, row: usize| -> Option<&str> {
            let a = texts[col].as_string::<i32>();
            a.is_valid(row).then(|| a.value(row))
        };
        let result: ArrayRef = match self.op {
            Op::Contains | Op::ContainedBy | Op::HasKey => {
                let mut out = Vec::with_capacity(rows);
                for row in 0..rows {
                    let (Some(l), Some(r)) = (value_at(0, row), value_at(1, row)) else {
                        out.push(None);
                        continue;
                    };
                    let left = parse(l, input_kind)?;
                    out.push(Some(match self.op {
                        Op::HasKey => match &left {
                            Value::Object(map) => map.contains_key(r),
                            Value::Array(items) => items.iter().any(|v| v.as_str() == Some(r)),
                            Value::String(s) => s == r,
                            _ => false,
                        },
                        Op::Contains => contains(&left, &parse(r, JsonKind::Jsonb)?, true),
                        _ => contains(&parse(r, JsonKind::Jsonb)?, &left, true),
                    }));
                }
                Arc::new(BooleanArray::from(out))
            }
            Op::ArrayLength => {
                let mut out = Vec::with_capacity(rows);
                for row in 0..rows {
                    out.push(match value_at(0, row) {
                        None => None,
                        Some(text) => match parse(text, input_kind)? {
                            Value::Array(items) => Some(items.len() as i32),
                            Value::Object(_) => {
                                return Err(pg_error(
                                    "22023",
                                    "cannot get array length of a non-array".into(),
                                ));
                            }
                            _ => {
                                return Err(pg_error(
                                    "22023",
                                    "cannot get array length of a scalar".into(),
                                ));
                            }
                        },
                    });
                }
                Arc::new(Int32Array::from(out))
            }
            _ => {
                let mut out: Vec<Option<String>> = Vec::with_capacity(rows);
                for row in 0..rows {
                    let Some(text) = value_at(0, row) else {
                        out.push(None);
                        continue;
                    };
                    out.push(match self.op {
                        Op::Read => Some(self.kind.read(text)?),
                        Op::TypeOf => Some(
                            match parse(text, input_kind)? {
                                Value::Null => "null",
                                Value::Bool(_) => "boolean",
                                Value::Number(_) => "number",
                                Value::String(_) => "string",
                                Value::Array(_) => "array",
                                Value::Object(_) => "object",
                            }
                            .to_string(),
                        ),
                        Op::Pretty => Some(
                            serde_json::to_string_pretty(&parse(text, input_kind)?)
                                .unwrap_or_default(),
                        ),
                        _ => {
                            let value = parse(text, input_kind)?;
                            let strict = matches!(self.op, Op::Get | Op::GetText);
                            let path: Option<Vec<(&str, Option<bool>)>> = (1..texts.len())
                                .map(|col| {
                                    value_at(col, row).map(|k| (k, strict.then_some(by_index[col])))
                                })
                                .collect();
                            let found = path.and_then(|path| {
                                path.iter()
                                    .try_fold(&value, |v, (key, index)| step(v, key, *index))
                            });
                            match (found, self.op) {
                                (None, _) => None,
                                (Some(v), Op::GetText | Op::GetPathText) => as_text(v),
                                (Some(v), _) => Some(jsonb_text(v)),
                            }
                        }
                    });
                }
                Arc::new(StringArray::from(out))
            }
        };
        Ok(if all_scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?)
        } else {
            ColumnarValue::Array(result)
        })
    }
}

/// This module's functions: name, what it does, and the JSON type it reads or makes.
const FUNCTIONS: &[(&str, Op, JsonKind)] = &[
    (JSON_IN, Op::Read, JsonKind::Json),
    (JSONB_IN, Op::Read, JsonKind::Jsonb),
    (GET, Op::Get, JsonKind::Jsonb),
    (GET_TEXT, Op::GetText, JsonKind::Jsonb),
    (GET_PATH, Op::GetPath, JsonKind::Jsonb),
    (GET_PATH_TEXT, Op::GetPathText, JsonKind::Jsonb),
    (CONTAINS, Op::Contains, JsonKind::Jsonb),
    (CONTAINED_BY, Op::ContainedBy, JsonKind::Jsonb),
    (HAS_KEY, Op::HasKey, JsonKind::Jsonb),
    ("jsonb_typeof", Op::TypeOf, JsonKind::Jsonb),
    ("json_typeof", Op::TypeOf, JsonKind::Json),
    ("jsonb_array_length", Op::ArrayLength, JsonKind::Jsonb),
    ("json_array_length", Op::ArrayLength, JsonKind::Json),
    ("jsonb_extract_path", Op::GetPath, JsonKind::Jsonb),
    ("json_extract_path", Op::GetPath, JsonKind::Json),
    ("jsonb_extract_path_text", Op::GetPathText, JsonKind::Jsonb),
    ("json_extract_path_text", Op::GetPathText, JsonKind::Json),
    ("jsonb_pretty", Op::Pretty, JsonKind::Jsonb),
];

/// The function of this module called `name`.
pub fn function(name: &str) -> Option<ScalarUDF> {
    FUNCTIONS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(name, op, kind)| ScalarUDF::new_from_impl(JsonFunction::new(name, *op, *kind)))
}

/// Registers the functions of this module.
pub fn register(ctx: &SessionContext) {
    for (name, op, kind) in FUNCTIONS {
        ctx.register_udf(ScalarUDF::new_from_impl(JsonFunction::new(
            name, *op, *kind,
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn writes_jsonb_as_postgresql_does() {
        assert_eq!(
            JsonKind::Jsonb
                .read(r#"{"bb":[1,2.5,"x"],"a":{"c":null},"a":true}"#)
                .unwrap(),
            r#"{"a": true, "bb": [1, 2.5, "x"]}"#
        );
        assert_eq!(JsonKind::Json.read(r#"{"a" :1}"#).unwrap(), r#"{"a" :1}"#);
        assert!(JsonKind::Jsonb.read("{oops").is_err());
    }

    #[test]
    fn contains_as_postgresql_does() {
        assert!(contains(&v(r#"{"a": 1, "b": 2}"#), &v(r#"{"a": 1}"#), true));
        assert!(!contains(&v(r#"{"a": 1}"#), &v(r#"{"a": 2}"#), true));
        assert!(contains(&v("[1, 2, [3]]"), &v("[[3], 1]"), true));
        assert!(contains(&v(r#"["a", "b"]"#), &v(r#""a""#), true));
        assert!(!contains(&v(r#"{"a": [1, 2]}"#), &v(r#"{"a": 1}"#), true));
        assert!(contains(&v(r#"{"a": [1, 2]}"#), &v(r#"{"a": [2]}"#), true));
        assert!(contains(&v("1.0"), &v("1"), true));
    }

    #[test]
    fn steps_through_objects_and_arrays() {
        let doc = v(r#"{"a": [10, 20, {"b": "x"}]}"#);
        let a = step(&doc, "a", Some(false)).unwrap();
        assert_eq!(
            step(a, "-1", Some(true)).and_then(|v| step(v, "b", Some(false))),
            Some(&v(r#""x""#))
        );
        assert_eq!(step(a, "1", Some(true)), Some(&v("20")));
        assert_eq!(step(a, "1", Some(false)), None);
        assert_eq!(step(a, "1", None), Some(&v("20")));
        assert_eq!(step(a, "5", Some(true)), None);
        assert_eq!(as_text(&v(r#""x""#)).as_deref(), Some("x"));
        assert_eq!(as_text(&v("null")), None);
    }
}
