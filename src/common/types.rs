//! SQL types of column definitions and casts, mapped to the Arrow types Augur stores.
//!
//! The mapping follows PostgreSQL's storage semantics: timestamps keep microseconds, `numeric`
//! without a precision gets the widest decimal Arrow offers, `varchar(n)`/`char(n)` are text.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};
use datafusion::sql::sqlparser::ast::{
    ArrayElemTypeDef, DataType as SqlType, ExactNumberInfo, TimezoneInfo,
};

use crate::error::{Error, Result};

/// Precision and scale given to `numeric` / `decimal` without a type modifier.
pub const DEFAULT_NUMERIC: (u8, i8) = (38, 10);

/// The time zone Augur attaches to `timestamptz` values (they are stored in UTC).
pub const UTC: &str = "+00:00";

/// Maps a SQL column type to the Arrow type its values are stored as.
pub fn arrow_type(sql: &SqlType) -> Result<DataType> {
    let unsupported = || Error::NotSupported(format!("column type {sql}"));
    Ok(match sql {
        SqlType::Bool | SqlType::Boolean => DataType::Boolean,
        SqlType::SmallInt(_) | SqlType::Int2(_) => DataType::Int16,
        SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) => DataType::Int32,
        SqlType::BigInt(_) | SqlType::Int8(_) => DataType::Int64,
        SqlType::Real | SqlType::Float4 => DataType::Float32,
        SqlType::Double(_) | SqlType::DoublePrecision | SqlType::Float8 => DataType::Float64,
        SqlType::Float(info) => match info {
            ExactNumberInfo::Precision(p) if *p <= 24 => DataType::Float32,
            _ => DataType::Float64,
        },
        SqlType::Numeric(info) | SqlType::Decimal(info) | SqlType::Dec(info) => match info {
            ExactNumberInfo::None => DataType::Decimal128(DEFAULT_NUMERIC.0, DEFAULT_NUMERIC.1),
            ExactNumberInfo::Precision(p) => DataType::Decimal128(decimal_precision(*p)?, 0),
            ExactNumberInfo::PrecisionAndScale(p, s) => {
                let p = decimal_precision(*p)?;
                let s = i8::try_from(*s)
                    .ok()
                    .filter(|s| *s >= 0 && *s as u8 <= p)
                    .ok_or_else(|| {
                        Error::InvalidParameter(format!(
                            "NUMERIC scale {s} must be between 0 and precision {p}"
                        ))
                    })?;
                DataType::Decimal128(p, s)
            }
        },
        SqlType::Text
        | SqlType::Varchar(_)
        | SqlType::CharacterVarying(_)
        | SqlType::CharVarying(_)
        | SqlType::Char(_)
        | SqlType::Character(_)
        | SqlType::String(_)
        | SqlType::JSON
        | SqlType::JSONB
        | SqlType::Uuid => DataType::Utf8,
        SqlType::Bytea => DataType::Binary,
        SqlType::Date => DataType::Date32,
        SqlType::Time(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            DataType::Time64(TimeUnit::Microsecond)
        }
        SqlType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        SqlType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => {
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC)))
        }
        SqlType::Interval { .. } => DataType::Interval(IntervalUnit::MonthDayNano),
        SqlType::Array(
            ArrayElemTypeDef::SquareBracket(inner, _)
            | ArrayElemTypeDef::AngleBracket(inner)
            | ArrayElemTypeDef::Parenthesis(inner),
        ) => {
            let element = arrow_type(inner)?;
            if matches!(element, DataType::List(_)) {
                return Err(Error::NotSupported(format!(
                    "multi-dimensional array column type {sql}"
                )));
            }
            DataType::List(Arc::new(Field::new_list_field(element, true)))
        }
        SqlType::Custom(name, modifiers) if modifiers.is_empty() => {
            match name.to_string().to_ascii_lowercase().as_str() {
                "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC))),
                "float" => DataType::Float64,
                // PostgreSQL's type for identifiers: text of at most 63 bytes.
                "name" => DataType::Utf8,
                "uuid" | "json" | "jsonb" => DataType::Utf8,
                _ => return Err(unsupported()),
            }
        }
        _ => return Err(unsupported()),
    })
}

/// The digits after the point a `timestamp(p)` or `timestamptz(p)` column keeps of its
/// seconds, when fewer than the six Augur stores.
pub fn seconds_precision(sql: &SqlType) -> Option<u8> {
    match sql {
        SqlType::Timestamp(Some(p), _) if *p < 6 => Some(*p as u8),
        _ => None,
    }
}

/// The PostgreSQL type of a column of type `sql` that is stored as text but is a type of its
/// own: `uuid`, `json`, `jsonb`.
pub fn text_type(sql: &SqlType) -> Option<&'static str> {
    match sql {
        SqlType::Uuid => Some("uuid"),
        SqlType::JSON => Some("json"),
        SqlType::JSONB => Some("jsonb"),
        SqlType::Custom(name, modifiers) if modifiers.is_empty() => {
            match name.to_string().to_ascii_lowercase().as_str() {
                "uuid" => Some("uuid"),
                "json" => Some("json"),
                "jsonb" => Some("jsonb"),
                _ => None,
            }
        }
        _ => None,
    }
}

fn decimal_precision(p: u64) -> Result<u8> {
    u8::try_from(p)
        .ok()
        .filter(|p| (1..=38).contains(p))
        .ok_or_else(|| {
            Error::InvalidParameter(format!("NUMERIC precision {p} must be between 1 and 38"))
        })
}

/// The PostgreSQL name of the type a column of Arrow type `dt` has, as `format_type` prints it.
pub fn pg_type_name(dt: &DataType) -> String {
    match dt {
        DataType::Boolean => "boolean".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal128(p, s) => format!("numeric({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time without time zone".into(),
        DataType::Timestamp(_, None) => "timestamp without time zone".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Interval(_) | DataType::Duration(_) => "interval".into(),
        DataType::List(f) => format!("{}[]", pg_type_name(f.data_type())),
        other => other.to_string(),
    }
}

/// The OID of the PostgreSQL type a column of Arrow type `dt` has, and its type modifier
/// (`numeric(p,s)`: `(p << 16 | s) + 4`; otherwise -1).
pub fn pg_type_oid(dt: &DataType) -> (i32, i32) {
    let oid = match dt {
        DataType::Boolean => 16,
        DataType::Int16 => 21,
        DataType::Int32 => 23,
        DataType::Int64 => 20,
        DataType::Float32 => 700,
        DataType::Float64 => 701,
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            return (1700, ((i32::from(*p) << 16) | i32::from(*s)) + 4);
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => 17,
        DataType::Date32 | DataType::Date64 => 1082,
        DataType::Time32(_) | DataType::Time64(_) => 1083,
        DataType::Timestamp(_, None) => 1114,
        DataType::Timestamp(_, Some(_)) => 1184,
        DataType::Interval(_) | DataType::Duration(_) => 1186,
        DataType::List(element) | DataType::LargeList(element) => {
            let (element, typmod) = pg_type_oid(element.data_type());
            let array = match element {
                16 => 1000,
                17 => 1001,
                20 => 1016,
                21 => 1005,
                23 => 1007,
                700 => 1021,
                701 => 1022,
                1082 => 1182,
                1083 => 1183,
                1114 => 1115,
                1184 => 1185,
                1186 => 1187,
                1700 => 1231,
                _ => 1009,
            };
            return (array, typmod);
        }
        _ => 25,
    };
    (oid, -1)
}

/// Parses PostgreSQL's text form of a `bytea` value.
pub fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix("\\x") {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        return digits
            .chunks(2)
            .map(|pair| {
                let hi = (pair[0] as char).to_digit(16)?;
                let lo = (pair[1] as char).to_digit(16)?;
                Some((hi * 16 + lo) as u8)
            })
            .collect();
    }
    parse_bytea_escape(text)
}

/// Parses `bytea`'s escape form: bytes as they are, `\\` for a backslash, `\nnn` in octal.
pub fn parse_bytea_escape(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = bytes.get(i + 1..i + 4)?;
            if !octal.iter().all(|b| (b'0'..=b'7').contains(b)) {
                return None;
            }
            let value = octal.iter().fold(0u32, |v, b| v * 8 + (b - b'0') as u32);
            out.push(u8::try_from(value).ok()?);
            i += 4;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn map(sql: &str) -> Result<DataType> {
        let ty = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_data_type()
            .unwrap();
        arrow_type(&ty)
    }

    #[test]
    fn postgres_types_map_to_arrow() {
        assert_eq!(map("BIGINT").unwrap(), DataType::Int64);
        assert_eq!(map("int4").unwrap(), DataType::Int32);
        assert_eq!(map("double precision").unwrap(), DataType::Float64);
        assert_eq!(map("numeric(10,2)").unwrap(), DataType::Decimal128(10, 2));
        assert_eq!(map("varchar(20)").unwrap(), DataType::Utf8);
        assert_eq!(
            map("timestamptz").unwrap(),
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC)))
        );
        assert_eq!(
            map("timestamp with time zone").unwrap(),
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC)))
        );
        assert_eq!(
            map("int[]").unwrap(),
            DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)))
        );
        assert_eq!(pg_type_name(&map("text[]").unwrap()), "text[]");
    }

    #[test]
    fn bytea_text_forms() {
        assert_eq!(parse_bytea("\\x0102ff"), Some(vec![1, 2, 255]));
        assert_eq!(parse_bytea("\\x"), Some(vec![]));
        assert_eq!(
            parse_bytea("ab\\\\c\\001"),
            Some(vec![b'a', b'b', b'\\', b'c', 1])
        );
        assert_eq!(parse_bytea("\\xzz"), None);
        assert_eq!(parse_bytea("bad\\9"), None);
    }

    #[test]
    fn unknown_types_are_refused_by_name() {
        let err = map("geometry").unwrap_err();
        assert_eq!(err.sqlstate(), "0A000");
        assert!(err.to_string().contains("geometry"), "{err}");
        assert_eq!(map("numeric(50)").unwrap_err().sqlstate(), "22023");
    }
}
