//! Session variables: `SET`, `SHOW`, `RESET`, and the values reported at startup.
//!
//! Values live in the connection's metadata map under lower-case names (pgwire reads `datestyle`,
//! `intervalstyle`, `bytea_output` and `extra_float_digits` from there when it encodes values).

use std::collections::HashMap;

use datafusion::sql::sqlparser::ast::{
    Expr, Set, TransactionIsolationLevel, TransactionMode, Value,
};

use crate::error::{Error, Result};

/// The PostgreSQL version Augur reports; drivers parse it to pick protocol features.
pub const SERVER_VERSION: &str = "13.0";

/// `version()`: PostgreSQL's version first (drivers parse it), then Augur's.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} on x86_64-pc-linux-gnu, compiled by rustc, 64-bit (Augur {})",
        env!("CARGO_PKG_VERSION")
    )
}

/// A variable Augur knows: its display name, default, and whether clients are told of changes
/// through a ParameterStatus message.
struct Var {
    name: &'static str,
    default: &'static str,
    reported: bool,
}

const VARS: &[Var] = &[
    Var {
        name: "application_name",
        default: "",
        reported: true,
    },
    Var {
        name: "bytea_output",
        default: "hex",
        reported: false,
    },
    Var {
        name: "client_encoding",
        default: "UTF8",
        reported: true,
    },
    Var {
        name: "client_min_messages",
        default: "notice",
        reported: false,
    },
    Var {
        name: "DateStyle",
        default: "ISO, MDY",
        reported: true,
    },
    Var {
        name: "default_table_access_method",
        default: "heap",
        reported: false,
    },
    Var {
        name: "default_transaction_isolation",
        default: "read committed",
        reported: false,
    },
    Var {
        name: "default_transaction_read_only",
        default: "off",
        reported: false,
    },
    Var {
        name: "extra_float_digits",
        default: "1",
        reported: false,
    },
    Var {
        name: "integer_datetimes",
        default: "on",
        reported: true,
    },
    Var {
        name: "IntervalStyle",
        default: "postgres",
        reported: true,
    },
    Var {
        name: "is_superuser",
        default: "on",
        reported: true,
    },
    Var {
        name: "lc_messages",
        default: "C",
        reported: false,
    },
    Var {
        name: "lc_monetary",
        default: "C",
        reported: false,
    },
    Var {
        name: "lc_numeric",
        default: "C",
        reported: false,
    },
    Var {
        name: "lc_time",
        default: "C",
        reported: false,
    },
    Var {
        name: "lock_timeout",
        default: "0",
        reported: false,
    },
    Var {
        name: "max_identifier_length",
        default: "63",
        reported: false,
    },
    Var {
        name: "search_path",
        default: "\"$user\", public",
        reported: false,
    },
    Var {
        name: "server_encoding",
        default: "UTF8",
        reported: true,
    },
    Var {
        name: "server_version",
        default: SERVER_VERSION,
        reported: true,
    },
    Var {
        name: "server_version_num",
        default: "130000",
        reported: false,
    },
    Var {
        name: "session_authorization",
        default: "augur",
        reported: true,
    },
    Var {
        name: "standard_conforming_strings",
        default: "on",
        reported: true,
    },
    Var {
        name: "statement_timeout",
        default: "0",
        reported: false,
    },
    Var {
        name: "TimeZone",
        default: "UTC",
        reported: true,
    },
    Var {
        name: "transaction_isolation",
        default: "read committed",
        reported: false,
    },
    Var {
        name: "transaction_read_only",
        default: "off",
        reported: false,
    },
];

/// PostgreSQL's planner and resource settings. Scripts and tools written for PostgreSQL set
/// them; Augur accepts and shows them, and its own planner reads one of them:
/// `max_parallel_workers_per_gather = 0` runs each query on one thread.
const POSTGRES_TUNING: &[Var] = &[
    tuning("cpu_index_tuple_cost", "0.005"),
    tuning("cpu_operator_cost", "0.0025"),
    tuning("cpu_tuple_cost", "0.01"),
    tuning("effective_cache_size", "4GB"),
    tuning("enable_async_append", "on"),
    tuning("enable_bitmapscan", "on"),
    tuning("enable_gathermerge", "on"),
    tuning("enable_hashagg", "on"),
    tuning("enable_hashjoin", "on"),
    tuning("enable_incremental_sort", "on"),
    tuning("enable_indexonlyscan", "on"),
    tuning("enable_indexscan", "on"),
    tuning("enable_material", "on"),
    tuning("enable_memoize", "on"),
    tuning("enable_mergejoin", "on"),
    tuning("enable_nestloop", "on"),
    tuning("enable_parallel_append", "on"),
    tuning("enable_parallel_hash", "on"),
    tuning("enable_partition_pruning", "on"),
    tuning("enable_partitionwise_aggregate", "off"),
    tuning("enable_partitionwise_join", "off"),
    tuning("enable_seqscan", "on"),
    tuning("enable_sort", "on"),
    tuning("enable_tidscan", "on"),
    tuning("escape_string_warning", "on"),
    tuning("force_parallel_mode", "off"),
    tuning("from_collapse_limit", "8"),
    tuning("geqo", "on"),
    tuning("geqo_threshold", "12"),
    tuning("jit", "off"),
    tuning("jit_above_cost", "100000"),
    tuning("join_collapse_limit", "8"),
    tuning("maintenance_work_mem", "64MB"),
    tuning("max_parallel_workers_per_gather", "2"),
    tuning("min_parallel_table_scan_size", "8MB"),
    tuning("parallel_leader_participation", "on"),
    tuning("parallel_setup_cost", "1000"),
    tuning("parallel_tuple_cost", "0.1"),
    tuning("random_page_cost", "4"),
    tuning("seq_page_cost", "1"),
    tuning("synchronous_commit", "on"),
    tuning("work_mem", "4MB"),
];

const fn tuning(name: &'static str, default: &'static str) -> Var {
    Var {
        name,
        default,
        reported: false,
    }
}

/// Variables that cannot be changed.
const READ_ONLY: &[&str] = &[
    "integer_datetimes",
    "is_superuser",
    "max_identifier_length",
    "server_encoding",
    "server_version",
    "server_version_num",
];

fn lookup(name: &str) -> Option<&'static Var> {
    all_vars().find(|v| v.name.eq_ignore_ascii_case(name))
}

/// The name PostgreSQL spells a setting with (`TimeZone`, `DateStyle`), which `SHOW` uses as
/// its column's name; a name Augur does not know, in lower case.
pub fn canonical_name(name: &str) -> String {
    lookup(name).map_or_else(|| name.to_ascii_lowercase(), |v| v.name.to_string())
}

fn all_vars() -> impl Iterator<Item = &'static Var> {
    VARS.iter().chain(POSTGRES_TUNING)
}

/// The name/value pairs sent as ParameterStatus when a connection starts.
pub fn startup_parameters() -> Vec<(&'static str, &'static str)> {
    VARS.iter()
        .filter(|v| v.reported)
        .map(|v| (v.name, v.default))
        .collect()
}

/// The current value of `name`.
pub fn get(metadata: &HashMap<String, String>, name: &str) -> Result<String> {
    let var = lookup(name).ok_or_else(|| unknown(name))?;
    Ok(metadata
        .get(&var.name.to_ascii_lowercase())
        .cloned()
        .unwrap_or_else(|| var.default.to_string()))
}

/// Every variable and its current value, for `SHOW ALL`.
pub fn all(metadata: &HashMap<String, String>) -> Vec<(String, String)> {
    all_vars()
        .map(|v| {
            let value = metadata
                .get(&v.name.to_ascii_lowercase())
                .cloned()
                .unwrap_or_else(|| v.default.to_string());
            (v.name.to_string(), value)
        })
        .collect()
}

/// The value of a duration setting (`statement_timeout`, `lock_timeout`); `None` for no limit.
pub fn duration(metadata: &HashMap<String, String>, name: &str) -> Option<std::time::Duration> {
    let value = metadata.get(name)?;
    super::limits::parse_duration(value).filter(|d| !d.is_zero())
}

/// The first schema of a `search_path` value that names one (`"$user"` and `pg_catalog`
/// aside), folded as PostgreSQL folds it.
pub fn first_user_schema(path: &str) -> Option<String> {
    path.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(
            |p| match p.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => p.to_lowercase(),
            },
        )
        .find(|p| p != "$user" && p != "pg_catalog")
}

/// A change to report to the client: `(name, new value)` when the variable is reported.
pub type Reported = Option<(String, String)>;

/// Sets `name` to `value` (`None` resets it to its default).
pub fn set(
    metadata: &mut HashMap<String, String>,
    name: &str,
    value: Option<String>,
) -> Result<Reported> {
    let var = lookup(name).ok_or_else(|| unknown(name))?;
    if READ_ONLY.contains(&var.name) {
        return Err(Error::coded(
            "55P02",
            format!("parameter \"{}\" cannot be changed", var.name),
        ));
    }
    let value = match value {
        Some(v) => validate(var.name, v)?,
        None => var.default.to_string(),
    };
    metadata.insert(var.name.to_ascii_lowercase(), value.clone());
    Ok(var.reported.then(|| (var.name.to_string(), value)))
}

/// `RESET ALL`: every variable that can be changed back to Augur's default (PostgreSQL goes back
/// to the values the client sent at connection start). Returns the reported variables whose
/// value changed.
pub fn reset_all(metadata: &mut HashMap<String, String>) -> Vec<(String, String)> {
    let mut changed = Vec::new();
    for var in all_vars().filter(|v| !READ_ONLY.contains(&v.name)) {
        let key = var.name.to_ascii_lowercase();
        if let Some(old) = metadata.remove(&key)
            && old != var.default
            && var.reported
        {
            changed.push((var.name.to_string(), var.default.to_string()));
        }
    }
    changed
}

fn validate(name: &str, value: String) -> Result<String> {
    let invalid = |hint: &str| {
        Err(Error::InvalidParameter(format!(
            "invalid value for parameter \"{name}\": \"{value}\"{hint}"
        )))
    };
    match name {
        "client_encoding" => {
            let v = value.to_ascii_uppercase().replace('-', "");
            if v == "UTF8" || v == "UNICODE" {
                Ok("UTF8".into())
            } else {
                invalid(" (Augur speaks UTF8 only)")
            }
        }
        "extra_float_digits" => match value.parse::<i32>() {
            Ok(n) if (-15..=3).contains(&n) => Ok(n.to_string()),
            _ => invalid(" (an integer from -15 to 3)"),
        },
        "standard_conforming_strings" => match value.to_ascii_lowercase().as_str() {
            "on" | "true" | "1" => Ok("on".into()),
            _ => invalid(" (Augur only supports on)"),
        },
        "IntervalStyle" => match value.to_ascii_lowercase().as_str() {
            v @ ("postgres" | "postgres_verbose" | "sql_standard" | "iso_8601") => Ok(v.into()),
            _ => invalid(" (postgres, postgres_verbose, sql_standard or iso_8601)"),
        },
        "TimeZone" => match super::timezone::Zone::canonical_name(&value) {
            Some(name) => Ok(name),
            None => invalid(""),
        },
        _ if name.starts_with("enable_")
            || matches!(
                name,
                "geqo"
                    | "jit"
                    | "escape_string_warning"
                    | "force_parallel_mode"
                    | "parallel_leader_participation"
            ) =>
        {
            match value.to_ascii_lowercase().as_str() {
                "on" | "true" | "yes" | "1" | "t" | "y" => Ok("on".into()),
                "off" | "false" | "no" | "0" | "f" | "n" => Ok("off".into()),
                _ => Err(Error::InvalidParameter(format!(
                    "parameter \"{name}\" requires a Boolean value"
                ))),
            }
        }
        "statement_timeout" | "lock_timeout" => match super::limits::parse_duration(&value) {
            Some(duration) => Ok(super::limits::show_duration(duration)),
            None => invalid(" (a duration such as 5000, '5s' or '1min')"),
        },
        "transaction_isolation" | "default_transaction_isolation" => {
            match value.to_ascii_lowercase().as_str() {
                v
                @ ("read uncommitted" | "read committed" | "repeatable read" | "serializable") => {
                    Ok(v.to_string())
                }
                _ => invalid(""),
            }
        }
        _ => Ok(value),
    }
}

fn unknown(name: &str) -> Error {
    Error::coded(
        "42704",
        format!("unrecognized configuration parameter \"{name}\""),
    )
}

/// The text of a SET value: `'x'`, `x`, `1`, `DEFAULT` (→ `None`).
fn value_text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.to_string()),
            Value::Boolean(b) => Some(if *b { "on" } else { "off" }.into()),
            other => Some(other.to_string()),
        },
        Expr::Identifier(ident) if ident.value.eq_ignore_ascii_case("default") => None,
        Expr::Identifier(ident) => Some(ident.value.clone()),
        other => Some(other.to_string()),
    }
}

fn isolation_name(level: &TransactionIsolationLevel) -> &'static str {
    match level {
        TransactionIsolationLevel::ReadUncommitted => "read uncommitted",
        TransactionIsolationLevel::ReadCommitted => "read committed",
        TransactionIsolationLevel::RepeatableRead => "repeatable read",
        TransactionIsolationLevel::Serializable => "serializable",
        TransactionIsolationLevel::Snapshot => "serializable",
    }
}

/// Applies a SET statement; returns the changes to report to the client.
pub fn apply_set(
    metadata: &mut HashMap<String, String>,
    statement: &Set,
) -> Result<Vec<(String, String)>> {
    let mut reported = Vec::new();
    match statement {
        Set::SingleAssignment {
            variable, values, ..
        } => {
            let name = variable.to_string();
            let value = match values.as_slice() {
                [] => None,
                [one] => value_text(one),
                many => Some(
                    many.iter()
                        .filter_map(value_text)
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            };
            let name = if name.eq_ignore_ascii_case("time zone") {
                "TimeZone".into()
            } else {
                name
            };
            reported.extend(set(metadata, &name, value)?);
        }
        Set::SetTimeZone { value, .. } => {
            reported.extend(set(metadata, "TimeZone", value_text(value))?);
        }
        Set::SetNames { charset_name, .. } => {
            reported.extend(set(
                metadata,
                "client_encoding",
                Some(charset_name.value.clone()),
            )?);
        }
        Set::SetNamesDefault {} => {
            reported.extend(set(metadata, "client_encoding", None)?);
        }
        Set::SetTransaction { modes, session, .. } => {
            for mode in modes {
                match mode {
                    TransactionMode::IsolationLevel(level) => {
                        let name = if *session {
                            "default_transaction_isolation"
                        } else {
                            "transaction_isolation"
                        };
                        set(metadata, name, Some(isolation_name(level).into()))?;
                    }
                    TransactionMode::AccessMode(mode) => {
                        let read_only = matches!(
                            mode,
                            datafusion::sql::sqlparser::ast::TransactionAccessMode::ReadOnly
                        );
                        let name = if *session {
                            "default_transaction_read_only"
                        } else {
                            "transaction_read_only"
                        };
                        set(
                            metadata,
                            name,
                            Some(if read_only { "on" } else { "off" }.into()),
                        )?;
                    }
                }
            }
        }
        other => return Err(Error::NotSupported(format!("SET statement {other}"))),
    }
    Ok(reported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::SqlParser;
    use datafusion::sql::sqlparser::ast::Statement;

    fn run_set(metadata: &mut HashMap<String, String>, sql: &str) -> Result<Vec<(String, String)>> {
        match SqlParser::new().parse(sql)?.remove(0) {
            Statement::Set(set) => apply_set(metadata, &set),
            other => panic!("not SET: {other}"),
        }
    }

    #[test]
    fn what_clients_set_on_connect() {
        let mut m = HashMap::new();
        assert_eq!(
            run_set(&mut m, "SET extra_float_digits = 3").unwrap(),
            vec![]
        );
        assert_eq!(get(&m, "extra_float_digits").unwrap(), "3");
        assert_eq!(
            run_set(&mut m, "SET application_name = 'psql'").unwrap(),
            vec![("application_name".to_string(), "psql".to_string())]
        );
        run_set(&mut m, "SET DateStyle = ISO, DMY").unwrap();
        assert_eq!(get(&m, "datestyle").unwrap(), "ISO, DMY");
        run_set(&mut m, "SET TIME ZONE 'UTC'").unwrap();
        assert_eq!(get(&m, "timezone").unwrap(), "UTC");
        run_set(&mut m, "SET search_path TO public").unwrap();
        assert_eq!(get(&m, "search_path").unwrap(), "public");
        assert_eq!(
            first_user_schema("\"$user\", public").as_deref(),
            Some("public")
        );
        assert_eq!(
            first_user_schema("pg_catalog, Sales").as_deref(),
            Some("sales")
        );
        assert_eq!(
            first_user_schema("\"Sales\",public").as_deref(),
            Some("Sales")
        );
        assert_eq!(first_user_schema("\"$user\""), None);
        run_set(&mut m, "SET client_encoding TO 'UTF8'").unwrap();
        run_set(&mut m, "SET standard_conforming_strings = on").unwrap();
        run_set(
            &mut m,
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        )
        .unwrap();
        assert_eq!(
            get(&m, "default_transaction_isolation").unwrap(),
            "serializable"
        );
        run_set(&mut m, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").unwrap();
        assert_eq!(get(&m, "transaction_isolation").unwrap(), "repeatable read");
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut m = HashMap::new();
        assert_eq!(
            run_set(&mut m, "SET no_such_thing = 1")
                .unwrap_err()
                .sqlstate(),
            "42704"
        );
        assert_eq!(
            run_set(&mut m, "SET client_encoding = 'LATIN1'")
                .unwrap_err()
                .sqlstate(),
            "22023"
        );
        assert_eq!(
            run_set(&mut m, "SET server_version = '9'")
                .unwrap_err()
                .sqlstate(),
            "55P02"
        );
    }
}
