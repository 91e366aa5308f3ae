//! PostgreSQL's regular-expression functions DataFusion lacks: `regexp_substr`,
//! `regexp_split_to_array` and the arrays `regexp_matches` (and `regexp_split_to_table`) are
//! unnested from, with PostgreSQL's flags (`i`, `c`, `n`, `x`, `q`, `g`), its reading of `.`,
//! which matches a newline unless the `n` flag is given, and its rules for empty matches. A
//! pattern is compiled once for the rows that share it.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

/// Registers the functions of this module.
pub fn register(ctx: &datafusion::prelude::SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(RegexpSubstr::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(RegexpSplitToArray::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(RegexpMatches::new()));
}

/// The function `regexp_matches` is rewritten into, under `unnest` (see
/// `sql::rewrite::set_returning_select_items`): every row's matches as an array of arrays.
pub const REGEXP_MATCHES_ARRAY: &str = "augur_regexp_matches";

fn invalid(code: &'static str, message: String) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(crate::error::Error::coded(
        code, message,
    )))
}

/// `pattern` with PostgreSQL's `flags`, as a Rust regular expression.
fn compile(pattern: &str, flags: &str) -> Result<regex::Regex> {
    // `g` (every match) is read by the caller that takes it.
    let flags: String = flags.chars().filter(|&c| c != 'g').collect();
    let mut insensitive = false;
    let mut newline = false;
    let mut extended = false;
    let mut literal = false;
    for flag in flags.chars() {
        match flag {
            'i' => insensitive = true,
            'c' => insensitive = false,
            // `m` is PostgreSQL's old name for `n`.
            'n' | 'm' | 'p' | 'w' => newline = true,
            's' => newline = false,
            'x' => extended = true,
            'e' | 'b' | 't' => {}
            'q' => literal = true,
            other => {
                return Err(invalid(
                    "22023",
                    format!("invalid regular expression option: \"{other}\""),
                ));
            }
        }
    }
    let body = if literal {
        regex::escape(pattern)
    } else {
        pattern.to_string()
    };
    let mut options = String::from("(?");
    if !newline {
        options.push('s');
    } else {
        options.push('m');
    }
    if insensitive {
        options.push('i');
    }
    if extended {
        options.push('x');
    }
    options.push(')');
    regex::Regex::new(&format!("{options}{body}")).map_err(|e| {
        invalid(
            "2201B",
            format!(
                "invalid regular expression: {}",
                e.to_string().lines().last().unwrap_or("")
            ),
        )
    })
}

/// The text, pattern and flags arguments of a call, row by row; the pattern compiled once for a
/// run of rows with the same pattern and flags (a constant pattern: once per batch).
struct RegexRows {
    strings: ArrayRef,
    patterns: ArrayRef,
    flags: Option<ArrayRef>,
    compiled: Option<(String, String, regex::Regex)>,
}

impl RegexRows {
    /// Arguments `0` (text), `1` (pattern) and `flags` (when given) of `args`.
    fn new(args: &[ArrayRef], rows: usize, flags: usize) -> Result<Self> {
        let null =
            || -> ArrayRef { Arc::new(datafusion::arrow::array::StringArray::new_null(rows)) };
        Ok(Self {
            strings: text_arg(args, 0)?.unwrap_or_else(null),
            patterns: text_arg(args, 1)?.unwrap_or_else(null),
            flags: text_arg(args, flags)?,
            compiled: None,
        })
    }

    /// Whether row `i`'s text, pattern or flags is NULL.
    fn is_null(&self, i: usize) -> bool {
        self.strings.is_null(i)
            || self.patterns.is_null(i)
            || self.flags.as_ref().is_some_and(|f| f.is_null(i))
    }

    /// Row `i`'s text, compiled pattern and flags; `None` when one of them is NULL.
    fn row(&mut self, i: usize) -> Result<Option<(&str, &regex::Regex, &str)>> {
        let (strings, patterns) = (
            self.strings.as_string::<i32>(),
            self.patterns.as_string::<i32>(),
        );
        let flags = match &self.flags {
            None => "",
            Some(f) if f.is_null(i) => return Ok(None),
            Some(f) => f.as_string::<i32>().value(i),
        };
        if strings.is_null(i) || patterns.is_null(i) {
            return Ok(None);
        }
        let pattern = patterns.value(i);
        let fresh = self
            .compiled
            .as_ref()
            .is_some_and(|(p, f, _)| p == pattern && f == flags);
        if !fresh {
            self.compiled = Some((
                pattern.to_string(),
                flags.to_string(),
                compile(pattern, flags)?,
            ));
        }
        let re = self.compiled.as_ref().map(|(_, _, re)| re);
        Ok(re.map(|re| (strings.value(i), re, flags)))
    }
}

fn text_arg(args: &[ArrayRef], i: usize) -> Result<Option<ArrayRef>> {
    args.get(i)
        .map(|a| datafusion::arrow::compute::cast(a, &DataType::Utf8))
        .transpose()
        .map_err(Into::into)
}

fn int_arg(args: &[ArrayRef], i: usize) -> Result<Option<ArrayRef>> {
    args.get(i)
        .map(|a| datafusion::arrow::compute::cast(a, &DataType::Int64))
        .transpose()
        .map_err(Into::into)
}

/// Any arguments, `counts` of them.
fn any_of(counts: std::ops::RangeInclusive<usize>) -> Signature {
    Signature::one_of(
        counts.map(TypeSignature::Any).collect(),
        Volatility::Immutable,
    )
}

/// `regexp_substr(string, pattern [, start [, n [, flags [, subexpr]]]])`: the `n`th match
/// (from 1) at or after character `start`, or its `subexpr`th parenthesized group; NULL when
/// there is none.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegexpSubstr {
    signature: Signature,
}

impl RegexpSubstr {
    fn new() -> Self {
        Self {
            signature: any_of(2..=6),
        }
    }
}

impl ScalarUDFImpl for RegexpSubstr {
    fn name(&self) -> &str {
        "regexp_substr"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut regex_rows = RegexRows::new(&arrays, rows, 4)?;
        let starts = int_arg(&arrays, 2)?;
        let ns = int_arg(&arrays, 3)?;
        let groups = int_arg(&arrays, 5)?;
        let int_at = |a: &Option<ArrayRef>, i: usize, default: i64| -> Option<i64> {
            match a {
                None => Some(default),
                Some(a) => {
                    let a = a.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                    (!a.is_null(i)).then(|| a.value(i))
                }
            }
        };
        let mut out = StringBuilder::new();
        for i in 0..rows {
            let (Some(start), Some(n), Some(group)) = (
                int_at(&starts, i, 1),
                int_at(&ns, i, 1),
                int_at(&groups, i, 0),
            ) else {
                out.append_null();
                continue;
            };
            if regex_rows.is_null(i) {
                out.append_null();
                continue;
            }
            if start < 1 {
                return Err(invalid(
                    "22023",
                    format!("invalid value for parameter \"start\": {start}"),
                ));
            }
            if n < 1 {
                return Err(invalid(
                    "22023",
                    format!("invalid value for parameter \"n\": {n}"),
                ));
            }
            if group < 0 {
                return Err(invalid(
                    "22023",
                    format!("invalid value for parameter \"subexpr\": {group}"),
                ));
            }
            let Some((text, re, _)) = regex_rows.row(i)? else {
                out.append_null();
                continue;
            };
            let offset = text
                .char_indices()
                .nth((start - 1) as usize)
                .map(|(b, _)| b)
                .unwrap_or(text.len());
            let found = pg_matches(re, &text[offset..], true, false)
                .into_iter()
                .nth((n - 1) as usize)
                .and_then(|c| c.get(group as usize).map(|m| m.as_str().to_string()));
            match found {
                Some(s) => out.append_value(s),
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `regexp_split_to_array(string, pattern [, flags])`: the text between the matches. As in
/// PostgreSQL, an empty match at the start or end of the text, or right after another match,
/// does not split.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegexpSplitToArray {
    signature: Signature,
}

impl RegexpSplitToArray {
    fn new() -> Self {
        Self {
            signature: any_of(2..=3),
        }
    }
}

/// The matches of `re` in `text` as PostgreSQL finds them: the first, or with `global` each
/// next one from where the last ended (one character further after an empty match). With
/// `ignore_degenerate`, an empty match at the end or one that ends where the last ended is
/// skipped, as splitting does.
fn pg_matches<'t>(
    re: &regex::Regex,
    text: &'t str,
    global: bool,
    ignore_degenerate: bool,
) -> Vec<regex::Captures<'t>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut previous_end = 0;
    while start <= text.len() {
        let Some(captures) = re.captures_at(text, start) else {
            break;
        };
        let whole = captures.get(0).map_or(start..start, |m| m.range());
        let degenerate = whole.start >= text.len() || whole.end <= previous_end;
        if !(ignore_degenerate && degenerate) {
            out.push(captures);
            if !global {
                break;
            }
        }
        previous_end = whole.end;
        start = whole.end;
        if whole.start == whole.end {
            match text[start..].chars().next() {
                Some(c) => start += c.len_utf8(),
                None => break,
            }
        }
    }
    out
}

/// `text` split around the matches of `re`, as PostgreSQL splits it.
pub fn split(text: &str, re: &regex::Regex) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut piece_start = 0;
    for captures in pg_matches(re, text, true, true) {
        let Some(m) = captures.get(0) else {
            continue;
        };
        pieces.push(text[piece_start..m.start()].to_string());
        piece_start = m.end();
    }
    pieces.push(text[piece_start..].to_string());
    pieces
}

impl ScalarUDFImpl for RegexpSplitToArray {
    fn name(&self) -> &str {
        "regexp_split_to_array"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(
            DataType::Utf8,
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut regex_rows = RegexRows::new(&arrays, rows, 2)?;
        let mut out = ListBuilder::new(StringBuilder::new());
        for i in 0..rows {
            let Some((text, re, flags)) = regex_rows.row(i)? else {
                out.append(false);
                continue;
            };
            if flags.contains('g') {
                return Err(invalid(
                    "22023",
                    "regexp_split_to_array() does not support the \"global\" option".into(),
                ));
            }
            for piece in split(text, re) {
                out.values().append_value(piece);
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `regexp_matches(string, pattern [, flags])` as an array per row: the first match (every
/// match with the `g` flag), each as the array of its parenthesized groups (NULL for a group
/// that took no part), or of the whole match when the pattern has no groups.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegexpMatches {
    signature: Signature,
}

impl RegexpMatches {
    fn new() -> Self {
        Self {
            signature: any_of(2..=3),
        }
    }
}

impl ScalarUDFImpl for RegexpMatches {
    fn name(&self) -> &str {
        REGEXP_MATCHES_ARRAY
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        let inner = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
        Ok(DataType::List(Arc::new(Field::new_list_field(inner, true))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut regex_rows = RegexRows::new(&arrays, rows, 2)?;
        let mut out = ListBuilder::new(ListBuilder::new(StringBuilder::new()));
        for i in 0..rows {
            let Some((text, re, flags)) = regex_rows.row(i)? else {
                out.append(false);
                continue;
            };
            let global = flags.contains('g');
            for captures in pg_matches(re, text, global, false) {
                let groups = out.values();
                if captures.len() == 1 {
                    groups
                        .values()
                        .append_option(captures.get(0).map(|m| m.as_str()));
                } else {
                    for group in captures.iter().skip(1) {
                        groups.values().append_option(group.map(|m| m.as_str()));
                    }
                }
                groups.append(true);
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_as_postgresql_does() {
        let re = compile("", "").unwrap();
        assert_eq!(split("abc", &re), ["a", "b", "c"]);
        let re = compile(r"\s*", "").unwrap();
        assert_eq!(
            split("the quick brown", &re),
            [
                "t", "h", "e", "q", "u", "i", "c", "k", "b", "r", "o", "w", "n"
            ]
        );
        let re = compile(r"\s+", "").unwrap();
        assert_eq!(split("the quick  brown", &re), ["the", "quick", "brown"]);
        let re = compile("X", "i").unwrap();
        assert_eq!(split("axbXc", &re), ["a", "b", "c"]);
        assert!(compile("a", "z").is_err());
        // Empty matches as PostgreSQL finds them (`regexp_matches(..., 'mg')`).
        let re = compile(".?$", "m").unwrap();
        let found: Vec<&str> = pg_matches(&re, "\n1\n2", true, false)
            .iter()
            .map(|c| c.get(0).map_or("", |m| m.as_str()))
            .collect();
        assert_eq!(found, ["", "1", "", "2", ""]);
    }
}
