//! `json` and `jsonb`: text columns whose field metadata names the type (see
//! [`super::pg_builtins::PG_TYPE_KEY`]), read and checked by `augur_json_in`/`augur_jsonb_in`
//! (a `jsonb` is stored in PostgreSQL's normalized text: keys ordered by length and then bytes,
//! the last of duplicate keys kept, `{"a": 1, "b": [1, 2]}`), and PostgreSQL's operators and
//! functions over them: `->`, `->>`, `#>`, `#>>`, `@>`, `<@`, `?`, `jsonb_typeof`,
//! `jsonb_array_length`, `jsonb_extract_path[_text]`, `jsonb_pretty` and their `json_` forms.
//! Values are read by a parser of this module that keeps numbers as PostgreSQL's `numeric`
//! keeps them (`19.90` stays `19.90`, `1e2` is `100`, any number of digits).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;

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

/// A JSON value, numbers kept as the text of PostgreSQL's `numeric` and object members in
/// order (a jsonb's in its order, duplicates removed, once [`Json::normalized`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// How deep a value may nest before it is refused (PostgreSQL's stack limit does the same).
const MAX_DEPTH: usize = 6400;

impl Json {
    /// The value as a jsonb holds it: object keys shortest first and then in byte order, the
    /// last of duplicate keys kept.
    fn normalized(self) -> Json {
        match self {
            Json::Array(items) => Json::Array(items.into_iter().map(Json::normalized).collect()),
            Json::Object(members) => {
                let mut kept: Vec<(String, Json)> = Vec::with_capacity(members.len());
                for (key, value) in members {
                    let value = value.normalized();
                    match kept.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = value,
                        None => kept.push((key, value)),
                    }
                }
                kept.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
                Json::Object(kept)
            }
            scalar => scalar,
        }
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip_blanks(&mut self) {
        while self.at < self.text.len()
            && matches!(self.text[self.at], b' ' | b'\t' | b'\n' | b'\r')
        {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_blanks();
        let c = *self.text.get(self.at)?;
        match c {
            b'{' => {
                self.at += 1;
                let mut members = Vec::new();
                self.skip_blanks();
                if self.text.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Some(Json::Object(members));
                }
                loop {
                    self.skip_blanks();
                    if self.text.get(self.at) != Some(&b'"') {
                        return None;
                    }
                    let key = self.string()?;
                    self.skip_blanks();
                    if self.text.get(self.at) != Some(&b':') {
                        return None;
                    }
                    self.at += 1;
                    let value = self.value(depth + 1)?;
                    members.push((key, value));
                    self.skip_blanks();
                    match self.text.get(self.at)? {
                        b',' => self.at += 1,
                        b'}' => {
                            self.at += 1;
                            return Some(Json::Object(members));
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                self.skip_blanks();
                if self.text.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Some(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.skip_blanks();
                    match self.text.get(self.at)? {
                        b',' => self.at += 1,
                        b']' => {
                            self.at += 1;
                            return Some(Json::Array(items));
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(Json::String),
            b't' => self.word("true", Json::Bool(true)),
            b'f' => self.word("false", Json::Bool(false)),
            b'n' => self.word("null", Json::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn word(&mut self, word: &str, value: Json) -> Option<Json> {
        if self.text[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Some(value)
        } else {
            None
        }
    }

    fn string(&mut self) -> Option<String> {
        self.at += 1; // the opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = *self.text.get(self.at)?;
            self.at += 1;
            match c {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = *self.text.get(self.at)?;
                    self.at += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut code = self.hex4()?;
                            if (0xD800..0xDC00).contains(&code) {
                                // a surrogate pair
                                if self.text.get(self.at..self.at + 2) != Some(b"\\u") {
                                    return None;
                                }
                                self.at += 2;
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return None;
                                }
                                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                            }
                            let ch = char::from_u32(code).filter(|c| *c != '\0')?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                other => out.push(other),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = std::str::from_utf8(self.text.get(self.at..self.at + 4)?).ok()?;
        self.at += 4;
        u32::from_str_radix(digits, 16).ok()
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.at;
        let negative = self.text[self.at] == b'-';
        if negative {
            self.at += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.at;
            while p.at < p.text.len() && p.text[p.at].is_ascii_digit() {
                p.at += 1;
            }
            std::str::from_utf8(&p.text[s..p.at])
                .ok()
                .map(str::to_string)
        };
        let int = digits(self)?;
        if int.is_empty() || (int.len() > 1 && int.starts_with('0')) {
            return None;
        }
        let mut frac = String::new();
        if self.text.get(self.at) == Some(&b'.') {
            self.at += 1;
            frac = digits(self)?;
            if frac.is_empty() {
                return None;
            }
        }
        let mut exp: i64 = 0;
        if matches!(self.text.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            let sign = match self.text.get(self.at) {
                Some(b'-') => {
                    self.at += 1;
                    -1
                }
                Some(b'+') => {
                    self.at += 1;
                    1
                }
                _ => 1,
            };
            let e = digits(self)?;
            if e.is_empty() || e.len() > 6 {
                return None;
            }
            exp = sign * e.parse::<i64>().ok()?;
        }
        let _ = start;
        Some(Json::Number(numeric_text(negative, &int, &frac, exp)))
    }
}

/// A number as PostgreSQL's `numeric` writes it: `1e2` is `100`, `1.50e1` is `15.0` (the scale
/// is the fraction's digits less the exponent), no exponent, `-0` is `0`.
fn numeric_text(negative: bool, int: &str, frac: &str, exp: i64) -> String {
    let digits: String = format!("{int}{frac}");
    let scale = (frac.len() as i64 - exp).max(0) as usize;
    let point = int.len() as i64 + exp;
    let (whole, fraction) = if point <= 0 {
        (
            "0".to_string(),
            format!("{}{digits}", "0".repeat((-point) as usize)),
        )
    } else if point as usize >= digits.len() {
        (
            format!("{digits}{}", "0".repeat(point as usize - digits.len())),
            String::new(),
        )
    } else {
        (
            digits[..point as usize].to_string(),
            digits[point as usize..].to_string(),
        )
    };
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let mut fraction = fraction;
    fraction.truncate(scale);
    while fraction.len() < scale {
        fraction.push('0');
    }
    let zero = whole == "0" && fraction.chars().all(|c| c == '0');
    let sign = if negative && !zero { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

/// Two numbers' values are equal (`1.0` and `1`).
fn numbers_equal(a: &str, b: &str) -> bool {
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    trim(a) == trim(b)
}

fn parse(text: &str, kind: JsonKind) -> Result<Json> {
    let mut parser = Parser {
        text: text.as_bytes(),
        at: 0,
    };
    let value = parser.value(0).and_then(|v| {
        parser.skip_blanks();
        (parser.at == parser.text.len()).then_some(v)
    });
    match value {
        Some(v) if kind == JsonKind::Jsonb => Ok(v.normalized()),
        Some(v) => Ok(v),
        None => Err(pg_error(
            "22P02",
            format!("invalid input syntax for type {}: \"{text}\"", kind.name()),
        )),
    }
}

/// A value as PostgreSQL writes a `jsonb`: `{"a": 1, "bb": [1, 2]}`.
pub fn jsonb_text(value: &Json) -> String {
    let mut out = String::new();
    write_jsonb(value, &mut out, None);
    out
}

/// `jsonb_pretty`: one member or element a line, indented by four spaces.
fn pretty_text(value: &Json) -> String {
    let mut out = String::new();
    write_jsonb(value, &mut out, Some(0));
    out
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes `value`; with `indent`, pretty at that depth.
fn write_jsonb(value: &Json, out: &mut String, indent: Option<usize>) {
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"    ".repeat(depth));
    };
    match value {
        Json::Object(members) if !members.is_empty() => {
            out.push('{');
            for (i, (key, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    if indent.is_none() {
                        out.push(' ');
                    }
                }
                if let Some(depth) = indent {
                    newline(out, depth + 1);
                }
                write_string(key, out);
                out.push_str(": ");
                write_jsonb(v, out, indent.map(|d| d + 1));
            }
            if let Some(depth) = indent {
                newline(out, depth);
            }
            out.push('}');
        }
        Json::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    if indent.is_none() {
                        out.push(' ');
                    }
                }
                if let Some(depth) = indent {
                    newline(out, depth + 1);
                }
                write_jsonb(v, out, indent.map(|d| d + 1));
            }
            if let Some(depth) = indent {
                newline(out, depth);
            }
            out.push(']');
        }
        Json::Object(_) => out.push_str("{}"),
        Json::Array(_) => out.push_str("[]"),
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(n),
        Json::String(s) => write_string(s, out),
    }
}

/// One step of a path: an object key, or an array index (negative counts from the end).
/// `->` takes an integer for an array and text for an object (`by_index` says which it got);
/// a path (`#>`, `jsonb_extract_path`) is text throughout, read as an index where an array is.
fn step<'a>(value: &'a Json, key: &str, by_index: Option<bool>) -> Option<&'a Json> {
    match value {
        Json::Object(_) if by_index != Some(true) => value.get(key),
        Json::Array(items) if by_index != Some(false) => {
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
fn as_text(value: &Json) -> Option<String> {
    match value {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(jsonb_text(other)),
    }
}

/// Two scalars are equal (numbers by value: `1.0` is `1`).
fn scalars_equal(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => numbers_equal(x, y),
        _ => a == b,
    }
}

/// PostgreSQL's `jsonb @>`: every part of `right` is in `left` (a scalar equals, an object's
/// keys are all there with contained values, an array's elements are each contained in some
/// element; an array on the left also contains a scalar on the right).
fn contains(left: &Json, right: &Json, top: bool) -> bool {
    let nested = |v: &Json| matches!(v, Json::Object(_) | Json::Array(_));
    match (left, right) {
        (Json::Object(_), Json::Object(r)) => r
            .iter()
            .all(|(k, rv)| left.get(k).is_some_and(|lv| contains(lv, rv, false))),
        (Json::Array(l), Json::Array(r)) => r.iter().all(|rv| {
            l.iter().any(|lv| {
                if nested(rv) {
                    contains(lv, rv, false)
                } else {
                    scalars_equal(lv, rv)
                }
            })
        }),
        (Json::Array(l), scalar) if top && !nested(scalar) => {
            l.iter().any(|lv| scalars_equal(lv, scalar))
        }
        (l, r) if nested(l) || nested(r) => false,
        (l, r) => scalars_equal(l, r),
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
                            Json::Object(_) => left.get(r).is_some(),
                            Json::Array(items) => {
                                items.iter().any(|v| matches!(v, Json::String(s) if s == r))
                            }
                            Json::String(s) => s == r,
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
                            Json::Array(items) => Some(items.len() as i32),
                            Json::Object(_) => {
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
                                Json::Null => "null",
                                Json::Bool(_) => "boolean",
                                Json::Number(_) => "number",
                                Json::String(_) => "string",
                                Json::Array(_) => "array",
                                Json::Object(_) => "object",
                            }
                            .to_string(),
                        ),
                        Op::Pretty => Some(pretty_text(&parse(text, JsonKind::Jsonb)?)),
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
        Ok(if all_scalar && !result.is_empty() {
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

    fn v(text: &str) -> Json {
        parse(text, JsonKind::Jsonb).unwrap()
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
        // numbers as numeric keeps them
        assert_eq!(
            JsonKind::Jsonb
                .read(
                    "[123456789012345678901234567890, 19.90, 1e2, 1.50e1, -0, 0.001, 2E-3, -1.5e-1]"
                )
                .unwrap(),
            "[123456789012345678901234567890, 19.90, 100, 15.0, 0, 0.001, 0.002, -0.15]"
        );
        assert_eq!(
            JsonKind::Jsonb
                .read(r#""a\"b\\c\u00e9\ud83d\ude00\n""#)
                .unwrap(),
            r#""a\"b\\cé😀\n""#
        );
        for bad in [
            "01",
            "1.",
            ".5",
            "[1,]",
            "{\"a\" 1}",
            "\"\\u0000\"",
            "tru",
            "1 2",
        ] {
            assert!(JsonKind::Jsonb.read(bad).is_err(), "{bad}");
        }
        assert_eq!(
            pretty_text(&v(r#"{"aa": 1, "b": [1, {}], "c": []}"#)),
            "{\n    \"b\": [\n        1,\n        {}\n    ],\n    \"c\": [],\n    \"aa\": 1\n}"
        );
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
        assert!(!contains(
            &v(r#"{"a": 9007199254740993}"#),
            &v(r#"{"a": 9007199254740992}"#),
            true
        ));
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
