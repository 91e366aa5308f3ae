//! Augur's error type. Every error knows its SQLSTATE; only `server/` turns it into a wire
//! message. A user's mistake gets a message that says what to change; an internal fault is
//! `XX000`.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

use crate::storage::StorageError;

/// Augur's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any error a statement can end with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The statement is not valid SQL (`42601`).
    #[error("{0}")]
    Syntax(String),
    /// A table or view named in the statement does not exist (`42P01`).
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    /// A column named in the statement does not exist (`42703`).
    #[error("{0}")]
    UndefinedColumn(String),
    /// CREATE of a name that is taken (`42P07`).
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    /// An INSERT or UPDATE would give two rows the same primary key (`23505`).
    #[error("duplicate key value violates unique constraint \"{constraint}\"")]
    UniqueViolation {
        /// The constraint's name, `<table>_pkey` as in PostgreSQL.
        constraint: String,
        /// Which key, e.g. `Key (id)=(1) already exists.`
        detail: String,
    },
    /// A row that makes a `CHECK` constraint false (`23514`).
    #[error("new row for relation \"{table}\" violates check constraint \"{constraint}\"")]
    CheckViolation {
        /// The table written to.
        table: String,
        /// The constraint's name.
        constraint: String,
        /// `Failing row contains (...).`
        detail: String,
    },
    /// A row naming a parent row that does not exist, or a parent row removed while rows
    /// still name it (`23503`).
    #[error("{message}")]
    ForeignKeyViolation {
        /// PostgreSQL's message, naming the tables and the constraint.
        message: String,
        /// `Key (a)=(1) is not present in table "t".` or `... is still referenced from ...`.
        detail: String,
    },
    /// A NULL for a NOT NULL column (`23502`).
    #[error(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
    )]
    NotNullViolation {
        /// The table written to.
        table: String,
        /// The column that got the NULL.
        column: String,
    },
    /// Text that does not parse as the type it is given for (`22P02`).
    #[error("{0}")]
    InvalidText(String),
    /// A parameter or option with a value out of its range (`22023`).
    #[error("{0}")]
    InvalidParameter(String),
    /// A feature Augur does not have; the message names it (`0A000`).
    #[error("{0} is not supported")]
    NotSupported(String),
    /// DROP of an object others depend on, without CASCADE (`2BP01`).
    #[error("{message}")]
    DependentObjects {
        /// `cannot drop table t because other objects depend on it`.
        message: String,
        /// One line per dependent object.
        detail: String,
    },
    /// Any other error with a known SQLSTATE.
    #[error("{message}")]
    Coded {
        /// The SQLSTATE.
        code: &'static str,
        /// What happened and what to change.
        message: String,
    },
    /// The storage layer failed (`XX000`).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An error from DataFusion that none of the variants above describes.
    #[error("{}", .0.find_root().message())]
    DataFusion(Box<DataFusionError>),
    /// A fault inside Augur (`XX000`).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The SQLSTATE code of this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::Syntax(_) => "42601",
            Error::UndefinedTable(_) => "42P01",
            Error::UndefinedColumn(_) => "42703",
            Error::DuplicateTable(_) => "42P07",
            Error::UniqueViolation { .. } => "23505",
            Error::NotNullViolation { .. } => "23502",
            Error::CheckViolation { .. } => "23514",
            Error::ForeignKeyViolation { .. } => "23503",
            Error::InvalidText(_) => "22P02",
            Error::InvalidParameter(_) => "22023",
            Error::NotSupported(_) => "0A000",
            Error::Coded { code, .. } => code,
            Error::DependentObjects { .. } => "2BP01",
            Error::Storage(_) | Error::Internal(_) => "XX000",
            Error::DataFusion(e) => datafusion_sqlstate(e),
        }
    }

    /// The HINT line of the error response, where there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::DependentObjects { .. } => {
                Some("Use DROP ... CASCADE to drop the dependent objects too.".into())
            }
            _ => None,
        }
    }

    /// The DETAIL line of the error response, where there is one.
    pub fn detail(&self) -> Option<String> {
        match self {
            Error::UniqueViolation { detail, .. } => Some(detail.clone()),
            Error::DependentObjects { detail, .. } => Some(detail.clone()),
            Error::CheckViolation { detail, .. } => Some(detail.clone()),
            Error::ForeignKeyViolation { detail, .. } => Some(detail.clone()),
            _ => None,
        }
    }

    /// An error with the given SQLSTATE and message.
    pub fn coded(code: &'static str, message: impl Into<String>) -> Self {
        Error::Coded {
            code,
            message: message.into(),
        }
    }
}

impl From<ParserError> for Error {
    fn from(e: ParserError) -> Self {
        let msg = match e {
            ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
            ParserError::RecursionLimitExceeded => {
                return crate::sql::depth::too_deep("the statement");
            }
        };
        Error::Syntax(format!("syntax error: {msg}"))
    }
}

impl From<ArrowError> for Error {
    fn from(e: ArrowError) -> Self {
        Error::from(DataFusionError::ArrowError(Box::new(e), None))
    }
}

/// An Augur error raised inside DataFusion (a function, a table scan), carried through it
/// unchanged and recognised again by `From<DataFusionError>`.
impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

impl From<DataFusionError> for Error {
    /// Recognises the DataFusion errors that have a PostgreSQL counterpart and rewrites them into
    /// PostgreSQL's wording; keeps the rest as they are.
    fn from(e: DataFusionError) -> Self {
        let root = e.find_root();
        match root {
            DataFusionError::External(inner) => {
                if let Some(own) = inner.downcast_ref::<Error>() {
                    return Error::coded(own.sqlstate(), own.to_string());
                }
            }
            DataFusionError::SQL(parser, _) => return Error::from(parser.as_ref().clone()),
            DataFusionError::SchemaError(schema_err, _) => {
                use datafusion::common::SchemaError;
                if let SchemaError::FieldNotFound { field, .. } = schema_err.as_ref() {
                    return Error::UndefinedColumn(format!(
                        "column \"{}\" does not exist",
                        field.name
                    ));
                }
            }
            DataFusionError::Plan(msg) => {
                if let Some(name) = missing_table(msg) {
                    return Error::UndefinedTable(name);
                }
            }
            DataFusionError::ArrowError(arrow, _)
                if matches!(arrow.as_ref(), ArrowError::DivideByZero) =>
            {
                return Error::coded("22012", "division by zero");
            }
            DataFusionError::Execution(msg) if msg.contains("Divide by zero") => {
                return Error::coded("22012", "division by zero");
            }
            _ => {}
        }
        Error::DataFusion(Box::new(e))
    }
}

/// The table name in DataFusion's "table 'catalog.schema.name' not found".
fn missing_table(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("table '")?;
    let (name, tail) = rest.split_once('\'')?;
    tail.starts_with(" not found")
        .then(|| name.rsplit('.').next().unwrap_or(name).to_string())
}

/// SQLSTATE for a DataFusion error, by kind and, where the kind is too broad, by message.
fn datafusion_sqlstate(e: &DataFusionError) -> &'static str {
    match e.find_root() {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::SchemaError(..) => "42703",
        DataFusionError::ResourcesExhausted(_) => "53200",
        DataFusionError::ArrowError(arrow, _) => arrow_sqlstate(arrow),
        DataFusionError::Plan(msg) => {
            if msg.contains("Invalid function") || msg.contains("No function matches") {
                "42883"
            } else if msg.contains("Ambiguous reference") {
                "42702"
            } else {
                "42P18"
            }
        }
        DataFusionError::Execution(msg) => execution_sqlstate(msg),
        DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
            Some(own) => own.sqlstate(),
            None => "XX000",
        },
        _ => "XX000",
    }
}

fn arrow_sqlstate(e: &ArrowError) -> &'static str {
    match e {
        ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02",
        ArrowError::DivideByZero => "22012",
        ArrowError::ArithmeticOverflow(_) | ArrowError::ComputeError(_) => "22003",
        ArrowError::InvalidArgumentError(_) => "22023",
        _ => "XX000",
    }
}

fn execution_sqlstate(msg: &str) -> &'static str {
    if msg.contains("Cannot cast") || msg.contains("Error parsing") {
        "22P02"
    } else if msg.contains("Divide by zero") || msg.contains("division by zero") {
        "22012"
    } else if msg.contains("overflow") {
        "22003"
    } else {
        "XX000"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn plan_error(sql: &str) -> Error {
        let ctx = SessionContext::new();
        match ctx.sql(sql).await {
            Ok(df) => Error::from(df.collect().await.unwrap_err()),
            Err(e) => Error::from(e),
        }
    }

    #[tokio::test]
    async fn datafusion_errors_get_postgres_sqlstates() {
        let e = plan_error("SELECT * FROM nowhere").await;
        assert_eq!(e.sqlstate(), "42P01");
        assert_eq!(e.to_string(), "relation \"nowhere\" does not exist");

        let e = plan_error("SELECT nope FROM (VALUES (1)) AS t(a)").await;
        assert_eq!(e.sqlstate(), "42703");
        assert!(e.to_string().contains("\"nope\""), "{e}");

        assert_eq!(plan_error("SELEC 1").await.sqlstate(), "42601");
        assert_eq!(plan_error("SELECT 'abc'::int").await.sqlstate(), "22P02");
        assert_eq!(plan_error("SELECT no_such_fn(1)").await.sqlstate(), "42883");
    }

    #[test]
    fn own_errors_keep_their_codes() {
        let e = Error::UniqueViolation {
            constraint: "t_pkey".into(),
            detail: "Key (id)=(1) already exists.".into(),
        };
        assert_eq!(e.sqlstate(), "23505");
        let wrapped = Error::from(DataFusionError::External(Box::new(e)));
        assert_eq!(wrapped.sqlstate(), "23505");
    }
}
