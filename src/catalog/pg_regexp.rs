//! PostgreSQL's regular-expression functions DataFusion lacks or reads differently:
//! `regexp_replace` and `regexp_instr` with all their arguments, `regexp_substr`,
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
    ctx.register_udf(ScalarUDF::new_from_impl(RegexpReplace {
        signature: any_of(3..=6),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(RegexpInstr {
        signature: any_of(2..=7),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(SubstringSimilar {
        signature: any_of(3..=3),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(SubstringRegex {
        signature: any_of(2..=2),
    }));
}

/// The function `SUBSTRING(text FROM pattern)` with a text pattern is read as.
pub const SUBSTRING_REGEX: &str = "augur_substring_regex";

/// `SUBSTRING(text FROM pattern)` with a text `pattern`: the first match of the POSIX regular
/// expression, or the part its first parenthesized subexpression matched when it has one (NULL
/// when that part did not take part in the match); NULL when nothing matches.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SubstringRegex {
    signature: Signature,
}

impl ScalarUDFImpl for SubstringRegex {
    fn name(&self) -> &str {
        SUBSTRING_REGEX
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
        let mut regex_rows = RegexRows::new(&arrays, rows, 2)?;
        let mut out = StringBuilder::new();
        for i in 0..rows {
            let Some((text, re, _)) = regex_rows.row(i)? else {
                out.append_null();
                continue;
            };
            let group = usize::from(re.captures_len() > 1);
            match re.captures(text).and_then(|c| c.get(group)) {
                Some(m) => out.append_value(m.as_str()),
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// The function `SUBSTRING(text SIMILAR pattern ESCAPE escape)` is read as.
pub const SUBSTRING_SIMILAR: &str = "augur_substring_similar";

/// `SUBSTRING(text SIMILAR pattern ESCAPE escape)`: the part of `text` that matches the part of
/// `pattern` between the two separators `escape"` when the whole pattern matches the whole
/// text (all of it without separators; after the one separator when there is one); NULL when it
/// does not match.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SubstringSimilar {
    signature: Signature,
}

/// The regular expression of a SIMILAR pattern with its `escape"` separators: the part before
/// them matched as little as it can, the part between them captured.
fn similar_with_separators(pattern: &str, escape: Option<char>) -> Result<String> {
    let mut parts = vec![String::new()];
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            match chars.next() {
                Some('"') => parts.push(String::new()),
                Some(next) => {
                    let part = parts.last_mut().expect("one part");
                    part.push(c);
                    part.push(next);
                }
                None => parts.last_mut().expect("one part").push(c),
            }
        } else {
            parts.last_mut().expect("one part").push(c);
        }
    }
    let body = |p: &str| crate::sql::pg_exprs::similar_body(p, escape);
    Ok(match parts.as_slice() {
        [whole] => format!("^({})$", body(whole)),
        [before, rest] => format!("^(?U:{})({})$", body(before), body(rest)),
        [before, middle, after] => format!(
            "^(?U:{})({})(?:{})$",
            body(before),
            body(middle),
            body(after)
        ),
        _ => {
            return Err(invalid(
                "2201B",
                "SQL regular expression may not contain more than two escape-double-quote \
                 separators"
                    .into(),
            ));
        }
    })
}

impl ScalarUDFImpl for SubstringSimilar {
    fn name(&self) -> &str {
        SUBSTRING_SIMILAR
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
        let null =
            || -> ArrayRef { Arc::new(datafusion::arrow::array::StringArray::new_null(rows)) };
        let [texts, patterns, escapes] =
            [0, 1, 2].map(|i| text_arg(&arrays, i).map(|a| a.unwrap_or_else(null)));
        let (texts, patterns, escapes) = (texts?, patterns?, escapes?);
        let (texts, patterns, escapes) = (
            texts.as_string::<i32>(),
            patterns.as_string::<i32>(),
            escapes.as_string::<i32>(),
        );
        let mut compiled: Option<(String, String, regex::Regex)> = None;
        let mut out = StringBuilder::new();
        for i in 0..rows {
            if texts.is_null(i) || patterns.is_null(i) || escapes.is_null(i) {
                out.append_null();
                continue;
            }
            let (pattern, escape_text) = (patterns.value(i), escapes.value(i));
            let mut escape_chars = escape_text.chars();
            let escape = escape_chars.next();
            if escape_chars.next().is_some() {
                return Err(invalid("22025", "invalid escape string".into()));
            }
            let fresh = compiled
                .as_ref()
                .is_some_and(|(p, e, _)| p == pattern && e == escape_text);
            if !fresh {
                let regex = similar_with_separators(pattern, escape)?;
                let re = regex::Regex::new(&format!("(?s){regex}"))
                    .map_err(|e| invalid("2201B", format!("invalid regular expression: {e}")))?;
                compiled = Some((pattern.to_string(), escape_text.to_string(), re));
            }
            let re = &compiled.as_ref().expect("compiled").2;
            match re.captures(texts.value(i)).and_then(|c| c.get(1)) {
                Some(m) => out.append_value(m.as_str()),
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// Row `i` of an optional integer argument: `default` when the argument is not given, None
/// when it is NULL.
fn int_at(a: &Option<ArrayRef>, i: usize, default: i64) -> Option<i64> {
    match a {
        None => Some(default),
        Some(a) => {
            let a = a.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            (!a.is_null(i)).then(|| a.value(i))
        }
    }
}

/// The byte offset of character `start` (from 1) of `text`, refused below 1 as PostgreSQL does.
fn start_offset(text: &str, start: i64) -> Result<usize> {
    if start < 1 {
        return Err(invalid(
            "22023",
            format!("invalid value for parameter \"start\": {start}"),
        ));
    }
    Ok(text
        .char_indices()
        .nth((start - 1) as usize)
        .map(|(b, _)| b)
        .unwrap_or(text.len()))
}

fn refuse_below(name: &str, value: i64, least: i64) -> Result<()> {
    if value < least {
        return Err(invalid(
            "22023",
            format!("invalid value for parameter \"{name}\": {value}"),
        ));
    }
    Ok(())
}

/// `regexp_replace(source, pattern, replacement [, start [, n]] [, flags])`, as PostgreSQL 15
/// takes it: the first match (at or after character `start`), the `n`th, or every one with `n`
/// 0 or the `g` flag; `\1`..`\9` and `\&` in the replacement stand for the groups and the match.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegexpReplace {
    signature: Signature,
}

impl ScalarUDFImpl for RegexpReplace {
    fn name(&self) -> &str {
        "regexp_replace"
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
        // The fourth argument is the start when it is a number, else the flags.
        let numeric_fourth = arrays.get(3).is_some_and(|a| {
            a.data_type().is_integer() || a.data_type().is_null() && arrays.len() > 4
        });
        let (starts, ns, flags_at) = if numeric_fourth {
            (int_arg(&arrays, 3)?, int_arg(&arrays, 4)?, 5)
        } else {
            if arrays.len() > 4 {
                return Err(invalid(
                    "42883",
                    "function regexp_replace with these arguments does not exist".into(),
                ));
            }
            (None, None, 3)
        };
        let mut regex_rows = RegexRows::new(&arrays, rows, flags_at)?;
        let replacements = text_arg(&arrays, 2)?
            .unwrap_or_else(|| Arc::new(datafusion::arrow::array::StringArray::new_null(rows)));
        let replacements = replacements.as_string::<i32>();
        let mut out = StringBuilder::new();
        for i in 0..rows {
            let (Some(start), Some(n)) = (int_at(&starts, i, 1), int_at(&ns, i, 1)) else {
                out.append_null();
                continue;
            };
            if regex_rows.is_null(i) || replacements.is_null(i) {
                out.append_null();
                continue;
            }
            refuse_below("n", n, 0)?;
            let Some((text, re, flags)) = regex_rows.row(i)? else {
                out.append_null();
                continue;
            };
            let from = start_offset(text, start)?;
            // With `n`, the `g` flag is ignored.
            let all = n == 0 || (ns.is_none() && flags.contains('g'));
            let matches = pg_matches_from(re, text, from, true, false);
            let chosen: Vec<&regex::Captures> = if all {
                matches.iter().collect()
            } else {
                matches.iter().skip((n - 1) as usize).take(1).collect()
            };
            let replacement = replacements.value(i);
            let mut result = String::with_capacity(text.len());
            let mut copied = 0;
            for captures in chosen {
                let Some(whole) = captures.get(0) else {
                    continue;
                };
                result.push_str(&text[copied..whole.start()]);
                expand_replacement(replacement, captures, &mut result);
                copied = whole.end();
            }
            result.push_str(&text[copied..]);
            out.append_value(result);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `replacement` with PostgreSQL's escapes expanded: `\1`..`\9` a group, `\&` the whole match,
/// `\\` a backslash.
fn expand_replacement(replacement: &str, captures: &regex::Captures, out: &mut String) {
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek().copied() {
            Some(d @ '1'..='9') => {
                chars.next();
                let group = d as usize - '0' as usize;
                if let Some(m) = captures.get(group) {
                    out.push_str(m.as_str());
                }
            }
            Some('&') => {
                chars.next();
                if let Some(m) = captures.get(0) {
                    out.push_str(m.as_str());
                }
            }
            Some('\\') => {
                chars.next();
                out.push('\\');
            }
            _ => out.push('\\'),
        }
    }
}

/// `regexp_instr(string, pattern [, start [, n [, endoption [, flags [, subexpr]]]]])`: where
/// (in characters, from 1) the `n`th match at or after `start` begins, or ends with `endoption`
/// 1; of its `subexpr`th group when given; 0 when there is none.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegexpInstr {
    signature: Signature,
}

impl ScalarUDFImpl for RegexpInstr {
    fn name(&self) -> &str {
        "regexp_instr"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut regex_rows = RegexRows::new(&arrays, rows, 5)?;
        let (starts, ns, ends, groups) = (
            int_arg(&arrays, 2)?,
            int_arg(&arrays, 3)?,
            int_arg(&arrays, 4)?,
            int_arg(&arrays, 6)?,
        );
        let mut out = datafusion::arrow::array::Int32Builder::new();
        for i in 0..rows {
            let (Some(start), Some(n), Some(end), Some(group)) = (
                int_at(&starts, i, 1),
                int_at(&ns, i, 1),
                int_at(&ends, i, 0),
                int_at(&groups, i, 0),
            ) else {
                out.append_null();
                continue;
            };
            if regex_rows.is_null(i) {
                out.append_null();
                continue;
            }
            refuse_below("n", n, 1)?;
            if end != 0 && end != 1 {
                return Err(invalid(
                    "22023",
                    format!("invalid value for parameter \"endoption\": {end}"),
                ));
            }
            refuse_below("subexpr", group, 0)?;
            let Some((text, re, _)) = regex_rows.row(i)? else {
                out.append_null();
                continue;
            };
            let from = start_offset(text, start)?;
            let found = nth_match(re, text, from, n, group);
            let position = match found {
                None => 0,
                Some(range) => {
                    let byte = if end == 1 { range.end } else { range.start };
                    text[..byte].chars().count() as i32 + 1
                }
            };
            out.append_value(position);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
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
            refuse_below("n", n, 1)?;
            refuse_below("subexpr", group, 0)?;
            let Some((text, re, _)) = regex_rows.row(i)? else {
                out.append_null();
                continue;
            };
            let offset = start_offset(text, start)?;
            match nth_match(re, text, offset, n, group) {
                Some(range) => out.append_value(&text[range]),
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
    pg_matches_from(re, text, 0, global, ignore_degenerate)
}

/// Where group `group` (0: the whole match) of the `n`th match (from 1) at or after byte `from`
/// lies in `text`; None when there is no such match or the group did not take part.
fn nth_match(
    re: &regex::Regex,
    text: &str,
    from: usize,
    n: i64,
    group: i64,
) -> Option<std::ops::Range<usize>> {
    pg_matches_from(re, text, from, true, false)
        .into_iter()
        .nth(usize::try_from(n - 1).ok()?)
        .and_then(|c| c.get(usize::try_from(group).ok()?).map(|m| m.range()))
}

/// [`pg_matches`] from byte `from` of `text` on (`^` still matches only at its start).
fn pg_matches_from<'t>(
    re: &regex::Regex,
    text: &'t str,
    from: usize,
    global: bool,
    ignore_degenerate: bool,
) -> Vec<regex::Captures<'t>> {
    let mut out = Vec::new();
    let mut start = from;
    let mut previous_end = from;
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
