//! PostgreSQL catalog functions clients call on connect that `datafusion-pg-catalog` lacks.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use datafusion::prelude::SessionContext;

/// Implements DataFusion's configuration-extension traits for a value a session hands to the
/// functions of its queries (read through `ScalarFunctionArgs::config_options`); it cannot be
/// `SET`. A copy shares what the value shares (its `Arc`s).
macro_rules! session_extension {
    ($type:ty, $prefix:literal) => {
        impl datafusion::common::config::ExtensionOptions for $type {
            fn as_any(&self) -> &dyn std::any::Any {
                self
            }

            fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
                self
            }

            fn cloned(&self) -> Box<dyn datafusion::common::config::ExtensionOptions> {
                Box::new(self.clone())
            }

            fn set(&mut self, key: &str, _value: &str) -> datafusion::common::Result<()> {
                datafusion::common::plan_err!("{key} cannot be set")
            }

            fn entries(&self) -> Vec<datafusion::common::config::ConfigEntry> {
                vec![]
            }
        }

        impl datafusion::common::config::ConfigExtension for $type {
            const PREFIX: &'static str = $prefix;
        }
    };
}
pub(crate) use session_extension;

/// The user a connection logged in as, among a query's configuration extensions: what
/// `current_user`, `session_user`, `user` and `current_role` return.
#[derive(Debug, Clone, Default)]
pub struct SessionUser(pub String);

session_extension!(SessionUser, "augur_user");

/// The session's settings (lower-case names), among a query's configuration extensions: what
/// `current_setting` reads.
#[derive(Debug, Clone, Default)]
pub struct SessionSettings(pub Arc<std::collections::HashMap<String, String>>);

session_extension!(SessionSettings, "augur_settings");

/// `current_setting(name [, missing_ok])`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let rows = args.number_rows;
        let settings = args.config_options.extensions.get::<SessionSettings>();
        let names = args.args[0].to_array(rows)?;
        let names = names.as_string::<i32>();
        let missing_ok = args.args.get(1).map(|a| a.to_array(rows)).transpose()?;
        let mut out = datafusion::arrow::array::StringBuilder::new();
        for i in 0..rows {
            if names.is_null(i) {
                out.append_null();
                continue;
            }
            let name = names.value(i).to_ascii_lowercase();
            match settings.and_then(|s| s.0.get(&name)) {
                Some(value) => out.append_value(value),
                None if missing_ok
                    .as_ref()
                    .is_some_and(|m| m.as_boolean().is_valid(i) && m.as_boolean().value(i)) =>
                {
                    out.append_null()
                }
                None => {
                    return Err(datafusion::error::DataFusionError::External(Box::new(
                        crate::error::Error::coded(
                            "42704",
                            format!("unrecognized configuration parameter \"{name}\""),
                        ),
                    )));
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `augur_like_escape(pattern, escape)`: a LIKE pattern written with `escape` as its escape
/// character (none when empty), rewritten with the backslash as its escape, which is what
/// DataFusion's LIKE takes.
fn like_escape() -> ScalarUDF {
    create_udf(
        crate::sql::rewrite::LIKE_ESCAPE_FUNCTION,
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = args
                .iter()
                .find_map(|a| match a {
                    ColumnarValue::Array(a) => Some(a.len()),
                    ColumnarValue::Scalar(_) => None,
                })
                .unwrap_or(1);
            let patterns = args[0].to_array(rows)?;
            let escapes = args[1].to_array(rows)?;
            let (patterns, escapes) = (patterns.as_string::<i32>(), escapes.as_string::<i32>());
            let mut out = datafusion::arrow::array::StringBuilder::new();
            for i in 0..rows {
                if patterns.is_null(i) || escapes.is_null(i) {
                    out.append_null();
                    continue;
                }
                let escape = escapes.value(i);
                let mut chars = escape.chars();
                let escape = match (chars.next(), chars.next()) {
                    (None, _) => None,
                    (Some(c), None) => Some(c),
                    _ => {
                        return Err(pg_error(
                            "22025",
                            "invalid escape string: escape string must be empty or one character",
                        ));
                    }
                };
                let mut rewritten = String::new();
                let mut pattern = patterns.value(i).chars();
                while let Some(c) = pattern.next() {
                    if Some(c) == escape {
                        let Some(next) = pattern.next() else {
                            return Err(pg_error(
                                "22025",
                                "LIKE pattern must not end with escape character",
                            ));
                        };
                        rewritten.push('\\');
                        rewritten.push(next);
                    } else if c == '\\' {
                        rewritten.push_str("\\\\");
                    } else {
                        rewritten.push(c);
                    }
                }
                out.append_value(rewritten);
            }
            let array = out.finish();
            Ok(
                if rows == 1 && args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
                    ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
                } else {
                    ColumnarValue::Array(Arc::new(array))
                },
            )
        }),
    )
}

fn pg_error(code: &'static str, message: &str) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(crate::error::Error::coded(
        code,
        message.to_string(),
    )))
}

/// `session_user` and its synonyms.
#[derive(Debug, PartialEq, Eq, Hash)]
struct UserFunction {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for UserFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let user = args
            .config_options
            .extensions
            .get::<SessionUser>()
            .map(|u| u.0.clone())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "augur".into());
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(user))))
    }
}

/// Registers the functions of this module.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(like_escape());
    ctx.register_udf(ScalarUDF::new_from_impl(CurrentSetting {
        signature: Signature::one_of(
            vec![
                datafusion::logical_expr::TypeSignature::Exact(vec![DataType::Utf8]),
                datafusion::logical_expr::TypeSignature::Exact(vec![
                    DataType::Utf8,
                    DataType::Boolean,
                ]),
            ],
            Volatility::Stable,
        ),
    }));
    for name in ["session_user", "current_user", "user", "current_role"] {
        ctx.register_udf(ScalarUDF::new_from_impl(UserFunction {
            name,
            signature: Signature::nullary(Volatility::Stable),
        }));
    }
    ctx.register_udf(to_regtype());
    ctx.register_udf(bytea_in());
    ctx.register_udf(ScalarUDF::new_from_impl(JsonBuildObject::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(NotPublishable {
        signature: Signature::any(1, Volatility::Stable),
    }));
    for name in [
        "pg_type_is_visible",
        "pg_function_is_visible",
        "pg_operator_is_visible",
        "pg_opclass_is_visible",
        "pg_opfamily_is_visible",
        "pg_collation_is_visible",
        "pg_conversion_is_visible",
        "pg_statistics_obj_is_visible",
        "pg_ts_config_is_visible",
        "pg_ts_dict_is_visible",
        "pg_ts_parser_is_visible",
        "pg_ts_template_is_visible",
    ] {
        ctx.register_udf(is_visible(name));
    }
}

/// `pg_*_is_visible(oid)`: every object is in the search path (Augur has one schema).
fn is_visible(name: &str) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = ColumnarValue::values_to_arrays(args)?[0].len();
            let array: ArrayRef = Arc::new(datafusion::arrow::array::BooleanArray::from(vec![
                true;
                rows
            ]));
            Ok(ColumnarValue::Array(array))
        }),
    )
}

/// `json_build_object(key, value, ...)`: a JSON object (as text) from alternating keys and
/// values.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl JsonBuildObject {
    fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return datafusion::common::plan_err!(
                "json_build_object needs an even number of arguments (key, value, ...)"
            );
        }
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = datafusion::arrow::array::StringBuilder::with_capacity(rows, rows * 16);
        for row in 0..rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?.to_string();
                let value = json_value(&ScalarValue::try_from_array(&pair[1], row)?);
                object.insert(key, value);
            }
            out.append_value(serde_json::Value::Object(object).to_string());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn json_value(value: &ScalarValue) -> serde_json::Value {
    use serde_json::Value as J;
    if value.is_null() {
        return J::Null;
    }
    match value {
        ScalarValue::Boolean(Some(b)) => J::Bool(*b),
        ScalarValue::Int8(Some(v)) => J::from(*v),
        ScalarValue::Int16(Some(v)) => J::from(*v),
        ScalarValue::Int32(Some(v)) => J::from(*v),
        ScalarValue::Int64(Some(v)) => J::from(*v),
        ScalarValue::UInt8(Some(v)) => J::from(*v),
        ScalarValue::UInt16(Some(v)) => J::from(*v),
        ScalarValue::UInt32(Some(v)) => J::from(*v),
        ScalarValue::UInt64(Some(v)) => J::from(*v),
        ScalarValue::Float32(Some(v)) => J::from(*v),
        ScalarValue::Float64(Some(v)) => J::from(*v),
        other => J::String(other.to_string()),
    }
}

/// OIDs of built-in types by every name PostgreSQL accepts for them.
const TYPES: &[(&str, i32)] = &[
    ("bool", 16),
    ("boolean", 16),
    ("bytea", 17),
    ("char", 18),
    ("name", 19),
    ("int8", 20),
    ("bigint", 20),
    ("int2", 21),
    ("smallint", 21),
    ("int4", 23),
    ("int", 23),
    ("integer", 23),
    ("regproc", 24),
    ("text", 25),
    ("oid", 26),
    ("json", 114),
    ("float4", 700),
    ("real", 700),
    ("float8", 701),
    ("double precision", 701),
    ("bpchar", 1042),
    ("character", 1042),
    ("varchar", 1043),
    ("character varying", 1043),
    ("date", 1082),
    ("time", 1083),
    ("time without time zone", 1083),
    ("timestamp", 1114),
    ("timestamp without time zone", 1114),
    ("timestamptz", 1184),
    ("timestamp with time zone", 1184),
    ("interval", 1186),
    ("numeric", 1700),
    ("decimal", 1700),
    ("uuid", 2950),
    ("jsonb", 3802),
];

/// `to_regtype(name)`: the OID of the named type, or NULL when there is no such type (it never
/// fails, unlike a `::regtype` cast).
fn to_regtype() -> ScalarUDF {
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = arrays[0].as_string::<i32>();
            let oids: Int32Array = (0..names.len())
                .map(|i| {
                    if names.is_null(i) {
                        return None;
                    }
                    let name = names.value(i).trim().to_ascii_lowercase();
                    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
                    TYPES.iter().find(|(n, _)| *n == name).map(|(_, oid)| *oid)
                })
                .collect();
            let array: ArrayRef = Arc::new(oids);
            Ok(ColumnarValue::Array(array))
        }),
    )
}

/// `pg_relation_is_publishable(relation)`: Augur has no logical replication publications. Takes
/// an OID or its text (`'16455'`), as psql passes it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NotPublishable {
    signature: Signature,
}

impl ScalarUDFImpl for NotPublishable {
    fn name(&self) -> &str {
        "pg_relation_is_publishable"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let array: ArrayRef = Arc::new(datafusion::arrow::array::BooleanArray::from(vec![
            false;
            args.number_rows
        ]));
        Ok(ColumnarValue::Array(array))
    }
}

/// `augur_bytea_in(text)`: PostgreSQL's text form of `bytea` (`\\x0102ff`, or the escape form
/// with `\\ooo` octal bytes) to bytes. Augur plans it wherever text is cast to `bytea`, where
/// a plain cast would keep the characters themselves.
pub const BYTEA_IN: &str = "augur_bytea_in";

fn bytea_in() -> ScalarUDF {
    create_udf(
        BYTEA_IN,
        vec![DataType::Utf8],
        DataType::Binary,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let texts = arrays[0].as_string::<i32>();
            let mut out = datafusion::arrow::array::BinaryBuilder::new();
            for text in texts.iter() {
                match text {
                    None => out.append_null(),
                    Some(text) => match crate::sql::types::parse_bytea(text) {
                        Some(bytes) => out.append_value(bytes),
                        None => {
                            return Err(datafusion::error::DataFusionError::External(Box::new(
                                crate::error::Error::InvalidText(format!(
                                    "invalid input syntax for type bytea: \"{text}\""
                                )),
                            )));
                        }
                    },
                }
            }
            let array: ArrayRef = Arc::new(out.finish());
            Ok(ColumnarValue::Array(array))
        }),
    )
}
