//! `character(n)` and `character varying(n)`: text with a length limit, as PostgreSQL has them.
//!
//! Values of both are stored as text, typed by the field's [`PG_TYPE_KEY`] metadata
//! (`character(4)`, `character varying(4)`). A value longer than the limit is an error
//! (`22001`) where it is written, unless what is past the limit is spaces, which are cut; an
//! explicit cast (`x::char(4)`) cuts without error. A `character(n)` value is kept without its
//! trailing spaces, which PostgreSQL ignores in comparisons, concatenation and `length`, and is
//! padded with spaces to `n` characters only where it is sent to a client.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use super::pg_builtins::{PG_TYPE_KEY, pg_error};

/// The function `x::character(n)` is planned as: `augur_bpchar(x::text, n)`.
pub const BPCHAR: &str = "augur_bpchar";
/// The function `x::character varying(n)` is planned as: `augur_varchar(x::text, n)`.
pub const VARCHAR: &str = "augur_varchar";

/// The largest length PostgreSQL takes for either type.
pub const MAX_LENGTH: u64 = 10_485_760;

/// Blank-padded or varying.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum CharKind {
    /// `character(n)`, `char(n)`, `bpchar(n)`.
    #[default]
    Bpchar,
    /// `character varying(n)`, `varchar(n)`.
    Varchar,
}

impl CharKind {
    /// The type's name as `format_type` writes it, without the length.
    pub fn name(self) -> &'static str {
        match self {
            CharKind::Bpchar => "character",
            CharKind::Varchar => "character varying",
        }
    }

    /// The function a cast to this type is planned as.
    pub fn cast_function(self) -> &'static str {
        match self {
            CharKind::Bpchar => BPCHAR,
            CharKind::Varchar => VARCHAR,
        }
    }

    /// The type's OID.
    pub fn oid(self) -> i32 {
        match self {
            CharKind::Bpchar => 1042,
            CharKind::Varchar => 1043,
        }
    }

    /// The type's name in `pg_type` (`udt_name`).
    pub fn internal_name(self) -> &'static str {
        match self {
            CharKind::Bpchar => "bpchar",
            CharKind::Varchar => "varchar",
        }
    }

    /// `length` as this type's limit: PostgreSQL's bounds and messages (`22023`).
    pub fn checked_length(self, length: i64) -> Result<u64, String> {
        let short = match self {
            CharKind::Bpchar => "char",
            CharKind::Varchar => "varchar",
        };
        if length < 1 {
            Err(format!("length for type {short} must be at least 1"))
        } else if length as u64 > MAX_LENGTH {
            Err(format!(
                "length for type {short} cannot exceed {MAX_LENGTH}"
            ))
        } else {
            Ok(length as u64)
        }
    }

    /// The metadata value of a field of this type with limit `length`.
    pub fn pg_type(self, length: u64) -> String {
        format!("{}({length})", self.name())
    }

    /// `text` as a value of this type with limit `length`: cut to the limit where `explicit`
    /// (a cast) or where only spaces are past it, an error otherwise; without trailing spaces
    /// for `character`.
    pub fn coerce(self, text: &str, length: u64, explicit: bool) -> Result<String, String> {
        let limit = usize::try_from(length).unwrap_or(usize::MAX);
        let kept = match text.char_indices().nth(limit) {
            None => text,
            Some((end, _)) => {
                if !explicit && text[end..].chars().any(|c| c != ' ') {
                    return Err(format!("value too long for type {}", self.pg_type(length)));
                }
                &text[..end]
            }
        };
        Ok(match self {
            CharKind::Bpchar => kept.trim_end_matches(' ').to_string(),
            CharKind::Varchar => kept.to_string(),
        })
    }
}

/// The kind and limit a field's [`PG_TYPE_KEY`] metadata value names, if it names one.
pub fn parse_pg_type(pg_type: &str) -> Option<(CharKind, u64)> {
    let (name, rest) = pg_type.split_once('(')?;
    let kind = match name {
        "character" => CharKind::Bpchar,
        "character varying" => CharKind::Varchar,
        _ => return None,
    };
    let length = rest.strip_suffix(')')?.parse().ok()?;
    Some((kind, length))
}

/// The kind and limit of a field, if it is typed `character(n)` or `character varying(n)`.
pub fn of_field(field: &Field) -> Option<(CharKind, u64)> {
    field
        .metadata()
        .get(PG_TYPE_KEY)
        .and_then(|t| parse_pg_type(t))
}

/// The `character(n)` width a field's values are padded to where they are sent, if any.
pub fn padded_width(field: &Field) -> Option<usize> {
    match of_field(field) {
        Some((CharKind::Bpchar, length)) => usize::try_from(length).ok(),
        _ => None,
    }
}

/// The width each column of `schema` is padded to where it is sent (`character(n)` columns).
pub fn padded_widths(schema: &Schema) -> Vec<Option<usize>> {
    schema.fields().iter().map(|f| padded_width(f)).collect()
}

/// `batch` with the columns `widths` names padded to their widths.
pub fn pad_batch(batch: RecordBatch, widths: &[Option<usize>]) -> RecordBatch {
    if widths.iter().all(Option::is_none) || widths.len() != batch.num_columns() {
        return batch;
    }
    let columns = batch
        .columns()
        .iter()
        .zip(widths)
        .map(|(column, width)| {
            width
                .and_then(|width| pad(column, width))
                .unwrap_or_else(|| column.clone())
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns).unwrap_or(batch)
}

/// `column`'s values padded with spaces to `width` characters.
fn pad(column: &ArrayRef, width: usize) -> Option<ArrayRef> {
    let column = datafusion::arrow::compute::cast(column, &DataType::Utf8).ok()?;
    let texts = column.as_string_opt::<i32>()?;
    let padded: StringArray = texts
        .iter()
        .map(|text| {
            text.map(|text| {
                let count = text.chars().count();
                if count >= width {
                    text.to_string()
                } else {
                    let mut out = String::with_capacity(text.len() + width - count);
                    out.push_str(text);
                    out.extend(std::iter::repeat_n(' ', width - count));
                    out
                }
            })
        })
        .collect();
    Some(Arc::new(padded))
}

/// Text values written to a column of `kind` with limit `length`: checked and cut as
/// PostgreSQL's assignment does (`22001` for a value too long).
pub fn assign(column: &ArrayRef, kind: CharKind, length: u64) -> crate::error::Result<ArrayRef> {
    let texts = column.as_string::<i32>();
    let values: StringArray = texts
        .iter()
        .map(|text| {
            text.map(|text| kind.coerce(text, length, false))
                .transpose()
                .map_err(|message| crate::error::Error::coded("22001", message))
        })
        .collect::<crate::error::Result<_>>()?;
    Ok(Arc::new(values))
}

/// The functions casts to `character(n)` and `character varying(n)` are planned as.
pub fn functions() -> Vec<ScalarUDF> {
    [CharKind::Bpchar, CharKind::Varchar]
        .into_iter()
        .map(|kind| {
            ScalarUDF::new_from_impl(CharCast {
                kind,
                signature: Signature::one_of(
                    vec![
                        TypeSignature::Exact(vec![DataType::Utf8, DataType::Int64]),
                        TypeSignature::Exact(vec![DataType::Null, DataType::Int64]),
                    ],
                    Volatility::Immutable,
                ),
            })
        })
        .collect()
}

/// `augur_bpchar(text, n)` / `augur_varchar(text, n)`: text cast to `character(n)` /
/// `character varying(n)`, cut to `n` characters, typed by the result field's metadata.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CharCast {
    kind: CharKind,
    signature: Signature,
}

impl CharCast {
    fn length(&self, value: Option<&ScalarValue>) -> Result<u64> {
        match value {
            Some(ScalarValue::Int64(Some(n))) => self
                .kind
                .checked_length(*n)
                .map_err(|m| pg_error("22023", m)),
            _ => exec_err!("the length of a character type must be a constant"),
        }
    }
}

impl ScalarUDFImpl for CharCast {
    fn name(&self) -> &str {
        self.kind.cast_function()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let length = self.length(args.scalar_arguments.get(1).copied().flatten())?;
        let nullable = args.arg_fields.first().is_none_or(|f| f.is_nullable());
        Ok(Arc::new(
            Field::new(self.kind.internal_name(), DataType::Utf8, nullable).with_metadata(
                [(PG_TYPE_KEY.to_string(), self.kind.pg_type(length))]
                    .into_iter()
                    .collect(),
            ),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let length = match &args.args[1] {
            ColumnarValue::Scalar(value) => self.length(Some(value))?,
            ColumnarValue::Array(_) => {
                return exec_err!("the length of a character type must be a constant");
            }
        };
        let cut = |text: &str| {
            self.kind
                .coerce(text, length, true)
                .map_err(|message| pg_error("22001", message))
        };
        match &args.args[0] {
            ColumnarValue::Scalar(value) => {
                let text = match value {
                    ScalarValue::Utf8(Some(text)) => Some(cut(text)?),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(text)))
            }
            ColumnarValue::Array(array) => {
                let texts = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
                let values: StringArray = texts
                    .as_string::<i32>()
                    .iter()
                    .map(|text| text.map(cut).transpose())
                    .collect::<Result<_>>()?;
                Ok(ColumnarValue::Array(Arc::new(values) as ArrayRef))
            }
        }
    }
}

/// The kind and declared length of a `character(n)` or `character varying(n)` type (`char`
/// alone is `character(1)`); `None` for other types and for `varchar` without a limit, which
/// is text.
pub fn char_length(sql: &datafusion::sql::sqlparser::ast::DataType) -> Option<(CharKind, u64)> {
    use datafusion::sql::sqlparser::ast::CharacterLength;
    let (kind, length) = match sql {
        datafusion::sql::sqlparser::ast::DataType::Char(length)
        | datafusion::sql::sqlparser::ast::DataType::Character(length) => {
            (CharKind::Bpchar, length)
        }
        datafusion::sql::sqlparser::ast::DataType::Varchar(length)
        | datafusion::sql::sqlparser::ast::DataType::CharacterVarying(length)
        | datafusion::sql::sqlparser::ast::DataType::CharVarying(length) => {
            (CharKind::Varchar, length)
        }
        _ => return None,
    };
    match length {
        Some(CharacterLength::IntegerLength { length, .. }) => Some((kind, *length)),
        None if kind == CharKind::Bpchar => Some((kind, 1)),
        _ => None,
    }
}

/// The PostgreSQL type of a `character(n)` or `character varying(n)` column, as its field's
/// metadata carries it (see [`char_length`]). A length out of PostgreSQL's bounds is `22023`.
pub fn char_type(sql: &datafusion::sql::sqlparser::ast::DataType) -> crate::Result<Option<String>> {
    let Some((kind, length)) = char_length(sql) else {
        return Ok(None);
    };
    let length = kind
        .checked_length(i64::try_from(length).unwrap_or(i64::MAX))
        .map_err(crate::Error::InvalidParameter)?;
    Ok(Some(kind.pg_type(length)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_cuts_only_spaces() {
        let k = CharKind::Varchar;
        assert_eq!(k.coerce("abcd    ", 4, false).unwrap(), "abcd");
        assert_eq!(
            k.coerce("abcde", 4, false).unwrap_err(),
            "value too long for type character varying(4)"
        );
        assert_eq!(k.coerce("ab  ", 4, false).unwrap(), "ab  ");
        assert_eq!(k.coerce("abcde", 4, true).unwrap(), "abcd");
        let b = CharKind::Bpchar;
        assert_eq!(b.coerce("ab  ", 4, false).unwrap(), "ab");
        assert_eq!(
            b.coerce("hi de ho neighbor", 10, true).unwrap(),
            "hi de ho n"
        );
        assert_eq!(b.coerce("ééééé", 4, true).unwrap(), "éééé");
    }

    #[test]
    fn metadata_names_round_trip() {
        for kind in [CharKind::Bpchar, CharKind::Varchar] {
            assert_eq!(parse_pg_type(&kind.pg_type(12)), Some((kind, 12)));
        }
        assert_eq!(parse_pg_type("uuid"), None);
        assert_eq!(parse_pg_type("jsonb"), None);
    }
}
