//! Statement dispatch: one [`Session`] per connection turns SQL into [`Output`].
//!
//! Every statement is first *prepared* — parsed, classified and, where it can be, planned by
//! DataFusion — and then *executed* with its parameter values. The simple query protocol
//! prepares and executes at once; the extended protocol prepares at Parse and executes at each
//! Execute, so a prepared statement is planned once however often it runs.

mod alter;
mod apply;
pub mod connection;
pub mod copy;
mod database;
mod dml;
mod foreign_keys;
mod functions;
mod indexes;
mod ingest;
pub mod limits;
mod lookup;
mod models;
mod modifying_with;
mod portals;
mod schemas;
mod set_ops;
mod sinks;
mod sources;
mod temp;
pub mod timezone;
mod utility;
pub mod vars;
mod views;
mod whole_rows;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, IntervalUnit, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::common::tree_node::TreeNode;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;

pub use connection::ConnectionState;
pub use database::Database;
use utility::{check_utility, show_name, show_schema};

use crate::error::{Error, Result};
use crate::sql::Stmt;

/// What a statement returns.
pub enum Output {
    /// Rows, streamed; `tag` is the command word of the completion tag (`SELECT`, or
    /// `INSERT 0` / `UPDATE` / `DELETE` with RETURNING); the row count is appended.
    Rows {
        /// The columns.
        schema: SchemaRef,
        /// The rows.
        stream: SendableRecordBatchStream,
        /// Completion tag without the row count.
        tag: String,
    },
    /// A command's completion tag, e.g. `CREATE TABLE` or `INSERT 0 5`.
    Command(String),
    /// `BEGIN`: a transaction block starts.
    TransactionStart(String),
    /// `COMMIT` / `ROLLBACK`: a transaction block ends.
    TransactionEnd(String),
    /// `COPY ... FROM STDIN`: the client now sends the data, which goes to this COPY.
    CopyIn(copy::CopyIn),
    /// `COPY ... TO STDOUT`: rows to send in COPY format.
    CopyOut {
        /// The columns.
        schema: SchemaRef,
        /// The rows.
        stream: SendableRecordBatchStream,
        /// How to write them.
        format: copy::CopyFormat,
    },
    /// An empty statement.
    Empty,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Rows { tag, schema, .. } => write!(f, "Rows({tag}, {schema:?})"),
            Output::Command(tag) => write!(f, "Command({tag})"),
            Output::TransactionStart(tag) => write!(f, "TransactionStart({tag})"),
            Output::TransactionEnd(tag) => write!(f, "TransactionEnd({tag})"),
            Output::CopyIn(copy) => write!(f, "{copy:?}"),
            Output::CopyOut { format, .. } => write!(f, "CopyOut({format:?})"),
            Output::Empty => write!(f, "Empty"),
        }
    }
}

/// A message for the client besides the statement's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A NOTICE or WARNING: `(severity, SQLSTATE, message)`.
    Message(&'static str, &'static str, String),
    /// A session variable the client tracks changed: ParameterStatus `(name, value)`.
    Parameter(String, String),
}

/// A statement ready to execute any number of times.
#[derive(Clone, Debug)]
pub struct Prepared(Arc<PreparedInner>);

#[derive(Debug)]
struct PreparedInner {
    statement: Stmt,
    plan: Plan,
    /// Types of `$1`, `$2`, ... (`Null` where nothing constrains a parameter).
    param_types: Vec<DataType>,
    /// Columns of the rows it returns, if it returns rows.
    schema: Option<SchemaRef>,
}

#[derive(Debug)]
enum Plan {
    /// A query DataFusion runs.
    Query(LogicalPlan),
    /// A query that reads one row by primary key, run without DataFusion.
    Lookup(lookup::PointLookup),
    /// INSERT / UPDATE / DELETE.
    Write(dml::WritePlan),
    /// A statement with INSERT, UPDATE or DELETE in its WITH clause, or after it: planned when
    /// it runs, after the WITH queries before it (see `modifying_with`).
    ModifyingWith,
    /// `EXECUTE name (arguments)` of a statement prepared with PREPARE.
    Execute {
        target: connection::NamedStatement,
        arguments: Vec<datafusion::sql::sqlparser::ast::Expr>,
    },
    /// `DECLARE name CURSOR FOR query`.
    Declare {
        name: String,
        query: LogicalPlan,
        hold: bool,
        /// `NO SCROLL`: the cursor moves forward only.
        no_scroll: bool,
    },
    /// Everything else, executed from the statement itself.
    Utility,
}

impl Prepared {
    /// Types of the parameters, by position.
    pub fn param_types(&self) -> &[DataType] {
        &self.0.param_types
    }

    /// Columns of the result rows, or `None` when the statement returns none.
    pub fn schema(&self) -> Option<&SchemaRef> {
        self.0.schema.as_ref()
    }

    /// The statement as parsed.
    pub fn statement(&self) -> &Stmt {
        &self.0.statement
    }
}

/// Metadata key recording that the current transaction block has written.
const TXN_WROTE: &str = "augur.txn_wrote";
/// Metadata key (and query setting) holding the moment the current transaction block began, in
/// microseconds since 1970: what `now()` and the text 'now' give inside the block.
pub(crate) const TXN_START: &str = "augur.txn_start";
/// Query setting holding the moment the statement began, in microseconds since 1970: what
/// `statement_timestamp()` gives.
pub(crate) const STATEMENT_START: &str = "augur.statement_start";

/// One connection's view of the database. Session variables live in the connection's metadata
/// map, which the caller owns and passes in.
pub struct Session<'a> {
    db: &'a Database,
    vars: &'a mut HashMap<String, String>,
    /// The connection's named statements and cursors.
    conn: &'a ConnectionState,
    notices: Vec<Notice>,
}

impl<'a> Session<'a> {
    /// A session over `db` with the connection's variables `vars` and state `conn`.
    pub fn new(
        db: &'a Database,
        vars: &'a mut HashMap<String, String>,
        conn: &'a ConnectionState,
    ) -> Self {
        Self {
            db,
            vars,
            conn,
            notices: Vec::new(),
        }
    }

    /// Messages produced so far, to send before the statement's result.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Parses `sql` into statements.
    pub fn parse(&self, sql: &str) -> Result<Vec<Stmt>> {
        self.db.parser().parse_stmts(sql)
    }

    /// Prepares one parsed statement.
    pub async fn prepare(&self, statement: Stmt) -> Result<Prepared> {
        prepare(self.db, self.conn, statement).await
    }

    /// Executes a prepared statement with parameter values (`$1`, `$2`, ...).
    pub async fn execute(&mut self, prepared: &Prepared, params: ParamValues) -> Result<Output> {
        self.check_transaction_state(prepared.statement())?;
        let undo = if in_transaction(self.vars) {
            undo_of_create(prepared.statement())
        } else {
            None
        };
        let output = self.execute_plan(prepared, params).await?;
        if let Some(drop) = undo {
            self.conn.created_in_block(drop);
        } else if in_transaction(self.vars) && changes_for_good(prepared.statement()) {
            self.vars.insert(TXN_WROTE.into(), "1".into());
        }
        Ok(output)
    }

    async fn execute_plan(&mut self, prepared: &Prepared, params: ParamValues) -> Result<Output> {
        match &prepared.0.plan {
            Plan::Lookup(lookup) => {
                let batch = lookup.execute(&params)?;
                Ok(rows_output(
                    lookup.schema().clone(),
                    vec![batch],
                    "SELECT".into(),
                ))
            }
            Plan::Query(plan) => {
                let plan = if prepared.0.param_types.is_empty() {
                    plan.clone()
                } else {
                    plan.clone().replace_params_with_values(&params)?
                };
                run_query(self.db, &self.env(), plan).await
            }
            Plan::Execute { target, arguments } => self.execute_named(target, arguments).await,
            Plan::Declare {
                name,
                query,
                hold,
                no_scroll,
            } => self.declare(name, query, *hold, *no_scroll, &params).await,
            Plan::Write(_) | Plan::ModifyingWith => {
                let lock_timeout = vars::duration(self.vars, "lock_timeout");
                let output = match (&prepared.0.plan, prepared.statement()) {
                    (Plan::Write(write), _) => {
                        write
                            .execute(self.db, &self.env(), params, lock_timeout)
                            .await?
                    }
                    (_, Stmt::Sql(statement)) => {
                        modifying_with::execute(
                            self.db,
                            &self.env(),
                            statement,
                            params,
                            lock_timeout,
                        )
                        .await?
                    }
                    _ => return Err(Error::Internal("a WITH statement that is not SQL".into())),
                };
                if in_transaction(self.vars) {
                    self.vars.insert(TXN_WROTE.into(), "1".into());
                }
                Ok(output)
            }
            Plan::Utility => match prepared.statement() {
                Stmt::Sql(statement) => self.execute_utility(statement).await,
                Stmt::Flush => self.flush().await,
                Stmt::CreateSource(create) => self.create_source(create).await,
                Stmt::DropSource {
                    names,
                    if_exists,
                    cascade,
                } => {
                    self.drop_relations(views::Kind::Source, *if_exists, names, *cascade)
                        .await
                }
                Stmt::ShowSources => self.show_sources(),
                Stmt::CreateSink(create) => self.create_sink(create).await,
                Stmt::DropSink { names, if_exists } => self.drop_sinks(names, *if_exists).await,
                Stmt::ShowSinks => self.show_sinks(),
                Stmt::ShowCreateSink(name) => self.show_create_sink(name),
                Stmt::CreateModel(create) => self.create_model(create).await,
                Stmt::DropModel {
                    names,
                    if_exists,
                    cascade,
                } => self.drop_models(names, *if_exists, *cascade).await,
                Stmt::ShowModels => self.show_models(),
                Stmt::Maintenance { command, tables } => {
                    for table in tables {
                        if !self.db.catalog().exists(table) {
                            return Err(Error::UndefinedTable(table.clone()));
                        }
                    }
                    Ok(Output::Command((*command).into()))
                }
                Stmt::CreateTable {
                    create,
                    append_only,
                    watermark,
                    connector,
                } => {
                    self.create_table(create, *append_only, watermark.clone(), connector.clone())
                        .await
                }
                Stmt::EmitOnWindowClose { create, explain } => {
                    if *explain {
                        self.explain_view(create, true).await
                    } else {
                        self.create_view(create, true).await
                    }
                }
            },
        }
    }

    /// Parses, prepares and executes `sql` without parameters, one statement after another,
    /// stopping at the first error. Used by the simple query protocol.
    pub async fn run(&mut self, statement: Stmt) -> Result<Output> {
        let prepared = self.prepare(statement).await?;
        if !prepared.param_types().is_empty() {
            return Err(Error::coded(
                "42P02",
                format!("there is no parameter ${}", 1),
            ));
        }
        self.execute(&prepared, ParamValues::List(vec![])).await
    }

    /// After an error inside a transaction block only COMMIT and ROLLBACK run, as in PostgreSQL.
    fn check_transaction_state(&self, statement: &Stmt) -> Result<()> {
        if self.vars.get("augur.txn_failed").is_some()
            && !matches!(
                statement,
                Stmt::Sql(s) if matches!(s.as_ref(), Statement::Commit { .. } | Statement::Rollback { .. })
            )
        {
            return Err(Error::coded(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        Ok(())
    }

    /// What functions of this session's queries read: its user, settings and sequence values.
    pub(crate) fn env(&self) -> SessionEnv {
        SessionEnv {
            sequences: self.conn.sequences().clone(),
            user: self.conn.user().clone(),
            settings: crate::catalog::pg_functions::SessionSettings(Arc::new(
                vars::all(self.vars)
                    .into_iter()
                    .map(|(name, value)| (name.to_ascii_lowercase(), value))
                    .chain(
                        self.vars
                            .get(TXN_START)
                            .map(|start| (TXN_START.to_string(), start.clone())),
                    )
                    .chain(std::iter::once((
                        STATEMENT_START.to_string(),
                        chrono::Utc::now().timestamp_micros().to_string(),
                    )))
                    .collect(),
            )),
        }
    }

    /// Waits for the write lock, at most `lock_timeout`.
    pub(crate) async fn write_guard(&self) -> Result<tokio::sync::MutexGuard<'a, ()>> {
        self.db
            .write_guard(vars::duration(self.vars, "lock_timeout"))
            .await
    }

    /// Records that a statement failed, which aborts an open transaction block.
    pub fn statement_failed(&mut self) {
        if in_transaction(self.vars) {
            self.vars.insert("augur.txn_failed".into(), "1".into());
        }
    }
}

/// Whether `statement` changes the catalog or the data in a way a ROLLBACK cannot undo.
fn changes_for_good(statement: &Stmt) -> bool {
    match statement {
        Stmt::Sql(statement) => matches!(
            statement.as_ref(),
            Statement::Drop { .. }
                | Statement::AlterTable(_)
                | Statement::AlterIndex { .. }
                | Statement::AlterView { .. }
                | Statement::AlterSchema(_)
                | Statement::Truncate(_)
                | Statement::CreateTable(_)
                | Statement::CreateView(_)
                | Statement::CreateIndex(_)
                | Statement::CreateSequence { .. }
                | Statement::CreateSchema { .. }
                | Statement::CreateFunction(_)
                | Statement::DropFunction(_)
        ),
        Stmt::DropSource { .. }
        | Stmt::CreateSink(_)
        | Stmt::DropSink { .. }
        | Stmt::DropModel { .. }
        | Stmt::CreateModel(_)
        | Stmt::CreateSource(_)
        | Stmt::CreateTable { .. }
        | Stmt::EmitOnWindowClose { explain: false, .. } => true,
        _ => false,
    }
}

/// The statement that drops what `statement` creates, for a ROLLBACK of the transaction block
/// it runs in. None for statements that create nothing, and for `IF NOT EXISTS` and `OR
/// REPLACE`, which may have found the object already there.
fn undo_of_create(statement: &Stmt) -> Option<String> {
    let drop = |kind: &str, name: &dyn std::fmt::Display| {
        Some(format!("DROP {kind} IF EXISTS {name} CASCADE"))
    };
    match statement {
        Stmt::Sql(statement) => match statement.as_ref() {
            Statement::CreateTable(create) if !create.if_not_exists && !create.or_replace => {
                drop("TABLE", &create.name)
            }
            Statement::CreateView(create) if !create.if_not_exists && !create.or_replace => {
                let kind = if create.materialized {
                    "MATERIALIZED VIEW"
                } else {
                    "VIEW"
                };
                drop(kind, &create.name)
            }
            Statement::CreateIndex(create) if !create.if_not_exists => {
                let name = create.name.as_ref()?;
                // An index of a table this block created goes with the table.
                Some(format!("DROP INDEX IF EXISTS {name}"))
            }
            Statement::CreateSequence {
                name,
                if_not_exists: false,
                ..
            } => drop("SEQUENCE", name),
            Statement::CreateSchema {
                schema_name,
                if_not_exists: false,
                ..
            } => drop("SCHEMA", schema_name),
            Statement::CreateFunction(create) if !create.or_replace => {
                let types = create
                    .args
                    .iter()
                    .flatten()
                    .map(|a| a.data_type.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                Some(format!("DROP FUNCTION IF EXISTS {}({types})", create.name))
            }
            _ => None,
        },
        Stmt::CreateTable { create, .. } if !create.if_not_exists && !create.or_replace => {
            drop("TABLE", &create.name)
        }
        Stmt::EmitOnWindowClose {
            create,
            explain: false,
        } if !create.if_not_exists && !create.or_replace => drop("MATERIALIZED VIEW", &create.name),
        Stmt::CreateSource(create) if !create.if_not_exists => {
            drop("SOURCE", &dml::quote_key(&create.name))
        }
        _ => None,
    }
}

/// Prepares one parsed statement: classifies it and plans what can be planned ahead. `conn`
/// holds the statements `EXECUTE` runs and the cursors `FETCH` reads.
pub async fn prepare(db: &Database, conn: &ConnectionState, stmt: Stmt) -> Result<Prepared> {
    let stmt = temp::resolve(db, conn, stmt)?;
    let statement = match &stmt {
        Stmt::Sql(statement) => statement.as_ref(),
        other => {
            let schema = match other {
                Stmt::ShowSources | Stmt::ShowSinks | Stmt::ShowModels => {
                    Some(views::show_views_schema())
                }
                Stmt::ShowCreateSink(_) => Some(sinks::show_create_schema()),
                Stmt::EmitOnWindowClose { explain: true, .. } => Some(views::explain_schema()),
                _ => None,
            };
            return Ok(Prepared(Arc::new(PreparedInner {
                statement: stmt,
                plan: Plan::Utility,
                param_types: vec![],
                schema,
            })));
        }
    };
    let (plan, schema, param_types) = match statement {
        Statement::Explain { statement, .. } if matches!(statement.as_ref(), Statement::CreateView(c) if c.materialized) =>
        {
            let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
                datafusion::arrow::datatypes::Field::new("QUERY PLAN", DataType::Utf8, false),
            ]));
            (Plan::Utility, Some(schema), vec![])
        }
        Statement::Execute {
            name: Some(name),
            parameters,
            ..
        } => {
            let target = conn.prepared(&portals::statement_name(name)?)?;
            let schema = target.prepared.schema().cloned();
            let arguments = parameters.clone();
            (Plan::Execute { target, arguments }, schema, vec![])
        }
        Statement::Declare { stmts } => {
            let declaration = portals::cursor_declaration(stmts)?;
            let query = Statement::Query(Box::new(declaration.query.clone()));
            let plan = db
                .ctx()
                .state()
                .statement_to_plan(DfStatement::Statement(Box::new(query)))
                .await?;
            let types = param_types(&plan, db.models())?;
            let plan = postgres_plan(db.ctx(), plan)?;
            let declare = Plan::Declare {
                name: declaration.name,
                query: plan,
                hold: declaration.hold,
                no_scroll: declaration.no_scroll,
            };
            (declare, None, types)
        }
        Statement::Fetch { name, .. } => {
            let schema = conn
                .cursor_schema(&crate::sql::normalize_ident(name))
                .ok_or_else(|| {
                    Error::coded(
                        "34000",
                        format!(
                            "cursor \"{}\" does not exist",
                            crate::sql::normalize_ident(name)
                        ),
                    )
                })?;
            (Plan::Utility, Some(schema), vec![])
        }
        Statement::Query(_) if modifying_with::is_modifying(statement) => {
            let (schema, types) = modifying_with::describe(db, statement).await?;
            (Plan::ModifyingWith, schema, types)
        }
        Statement::Query(_) | Statement::Explain { .. } => {
            if let Statement::Query(query) = statement {
                modifying_with::refuse_nested_writes(query)?;
            }
            let plan = match db
                .ctx()
                .state()
                .statement_to_plan(DfStatement::Statement(Box::new(statement.clone())))
                .await
            {
                Ok(plan) => plan,
                // `SELECT t FROM t`: a relation's name as a value is its whole row.
                Err(e) => match missing_column(&e).and_then(|name| {
                    let mut rewritten = statement.clone();
                    crate::sql::rewrite::whole_row_references(&mut rewritten, &name)
                        .then_some(rewritten)
                }) {
                    Some(rewritten) => db
                        .ctx()
                        .state()
                        .statement_to_plan(DfStatement::Statement(Box::new(rewritten)))
                        .await
                        .map_err(|_| e)?,
                    None => return Err(e.into()),
                },
            };
            let types = param_types(&plan, db.models())?;
            let plan = postgres_plan(db.ctx(), plan)?;
            let schema = Arc::new(coerced_schema(db, &plan));
            let plan = match lookup::PointLookup::from_plan(&plan, &db.ctx().state()) {
                Some(lookup) => Plan::Lookup(lookup),
                None => Plan::Query(plan),
            };
            (plan, Some(schema), types)
        }
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
            let write = dml::WritePlan::new(db, statement).await?;
            let schema = write.returning_schema();
            let types = write.param_types(db.models())?;
            (Plan::Write(write), schema, types)
        }
        Statement::ShowVariable { variable } => {
            let name = if variable.len() == 1 && variable[0].value.eq_ignore_ascii_case("all") {
                None
            } else {
                Some(show_name(variable))
            };
            (Plan::Utility, Some(show_schema(name.as_deref())), vec![])
        }
        Statement::ShowViews { .. } | Statement::ShowTables { .. } => {
            (Plan::Utility, Some(views::show_views_schema()), vec![])
        }
        // COPY ... FROM STDIN names a table that must exist when the statement is prepared:
        // clients that send COPY through the extended protocol (tokio-postgres, JDBC) start
        // sending rows once it is described.
        Statement::Copy {
            source: datafusion::sql::sqlparser::ast::CopySource::Table { table_name, .. },
            to: false,
            ..
        } => {
            db.catalog()
                .table_to_write(&crate::sql::table_name(table_name)?, "copy to")?;
            (Plan::Utility, None, vec![])
        }
        other => {
            check_utility(other)?;
            (Plan::Utility, None, vec![])
        }
    };
    Ok(Prepared(Arc::new(PreparedInner {
        statement: stmt,
        plan,
        param_types,
        schema,
    })))
}

/// The name of the unqualified column planning did not find, if that is why it failed.
fn missing_column(e: &datafusion::error::DataFusionError) -> Option<String> {
    match e.find_root() {
        datafusion::error::DataFusionError::SchemaError(error, _) => match error.as_ref() {
            datafusion::common::SchemaError::FieldNotFound { field, .. }
                if field.relation.is_none() =>
            {
                Some(field.name.clone())
            }
            _ => None,
        },
        _ => None,
    }
}

fn in_transaction(vars: &HashMap<String, String>) -> bool {
    vars.contains_key("augur.in_txn")
}

/// What PostgreSQL computes differently from DataFusion's plan of the same query, fixed in the
/// plan of every query, write and view: `EXCEPT ALL`/`INTERSECT ALL` count copies of rows, text
/// cast to `bytea` is read as PostgreSQL reads it (`'\\x01'::bytea` is one byte, not four),
/// constant integer arithmetic that overflows and doubles divided by zero are errors, text cast
/// to a double is range-checked, casts to integers round, intervals compare with 30-day months
/// and cast to text as PostgreSQL writes them, and `to_hex` of an `integer` writes 32 bits.
/// `registry` holds Augur's functions (a session context or a view's planning state).
pub(crate) fn postgres_plan(
    registry: &dyn datafusion::execution::FunctionRegistry,
    plan: LogicalPlan,
) -> Result<LogicalPlan> {
    let plan = set_ops::multiset_semantics(plan)?;
    let plan = whole_rows::expand(plan)?;
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::{Cast, Expr, ExprSchemable};

    let bytea_in = registry.udf(crate::catalog::pg_functions::BYTEA_IN)?;
    let interval_key = registry.udf(crate::catalog::pg_functions::INTERVAL_KEY)?;
    let float_divide = registry.udf(crate::catalog::pg_functions::FLOAT_DIVIDE)?;
    let float8_in = registry.udf(crate::catalog::pg_functions::FLOAT8_IN)?;
    let interval_text = registry.udf(crate::catalog::pg_functions::INTERVAL_TEXT)?;
    let to_hex = registry.udf("to_hex")?;
    let datetime_in =
        |target: crate::catalog::pg_datetime::Target| registry.udf(target.function_name());
    let timestamp_in = datetime_in(crate::catalog::pg_datetime::Target::Timestamp)?;
    let timestamptz_in = datetime_in(crate::catalog::pg_datetime::Target::Timestamptz)?;
    let date_in = datetime_in(crate::catalog::pg_datetime::Target::Date)?;
    let datetime_text = registry.udf(crate::catalog::pg_datetime::DATETIME_TEXT)?;
    let bytea_like = registry.udf(crate::catalog::pg_bytea::BYTEA_LIKE)?;
    let float4_decimal = registry.udf(crate::catalog::pg_functions::FLOAT4_DECIMAL)?;
    // Whether a rewrite changed what a column of a node's output is typed as: that node and
    // every node above it work their schemas out again.
    let retyped = std::cell::Cell::new(false);
    let rewritten = plan.transform_up_with_subqueries(|node| {
        let inputs: Vec<_> = node.inputs().iter().map(|i| i.schema().clone()).collect();
        // Rewritten expressions keep their names: the nodes above refer to them by name.
        let names = datafusion::logical_expr::expr_rewriter::NamePreserver::new(&node);
        let node = node.map_expressions(|expr| {
            let name = names.save(&expr);
            let rewritten = expr.transform_up(|e| match &e {
                // A `character(n)` or `character varying(n)` value cast to another type (text
                // among them) is of that type: the cast's field does not keep the source's.
                Expr::Cast(Cast { expr, field })
                    if field.name().is_empty()
                        && inputs
                            .iter()
                            .find_map(|schema| expr.to_field(schema).ok())
                            .is_some_and(|(_, source)| {
                                crate::catalog::pg_char::of_field(&source).is_some()
                            }) =>
                {
                    retyped.set(true);
                    Ok(Transformed::yes(Expr::Cast(Cast {
                        expr: expr.clone(),
                        field: Arc::new(datafusion::arrow::datatypes::Field::new(
                            "text",
                            field.data_type().clone(),
                            true,
                        )),
                    })))
                }
                // A `real` cast to `numeric` is its value to 6 significant digits, as
                // PostgreSQL casts it, not its binary value's digits.
                Expr::Cast(Cast { expr, field })
                    if matches!(
                        field.data_type(),
                        DataType::Decimal128(..) | DataType::Decimal256(..)
                    ) && inputs
                        .iter()
                        .find_map(|schema| expr.get_type(schema).ok())
                        // A node without inputs (VALUES): constants.
                        .or_else(|| expr.get_type(&datafusion::common::DFSchema::empty()).ok())
                        .is_some_and(|t| t == DataType::Float32) =>
                {
                    Ok(Transformed::yes(Expr::Cast(Cast {
                        expr: Box::new(float4_decimal.call(vec![expr.as_ref().clone()])),
                        field: field.clone(),
                    })))
                }
                Expr::Cast(Cast { expr, field })
                    if field.data_type() == &DataType::Binary
                        && inputs.iter().any(|schema| {
                            expr.get_type(schema).is_ok_and(|t| {
                                matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
                            })
                        }) =>
                {
                    Ok(Transformed::yes(bytea_in.call(vec![expr.as_ref().clone()])))
                }
                // Integer arithmetic of constants, which the optimizer folds with wrapping
                // arithmetic before the checked kernels could see it.
                Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr { left, op, right })
                    if matches!(
                        op,
                        datafusion::logical_expr::Operator::Plus
                            | datafusion::logical_expr::Operator::Minus
                            | datafusion::logical_expr::Operator::Multiply
                    ) =>
                {
                    // Doubles likewise: PostgreSQL's overflow and underflow errors, where
                    // folding gives an infinity or a zero.
                    if let (Some((l, l_double)), Some((r, r_double))) =
                        (constant_double(left), constant_double(right))
                        && (l_double || r_double)
                    {
                        let (l, r) = (&l, &r);
                        let v = match op {
                            datafusion::logical_expr::Operator::Plus => l + r,
                            datafusion::logical_expr::Operator::Minus => l - r,
                            _ => l * r,
                        };
                        let what = if v.is_infinite() && l.is_finite() && r.is_finite() {
                            Some("overflow")
                        } else if *op == datafusion::logical_expr::Operator::Multiply
                            && v == 0.0
                            && *l != 0.0
                            && *r != 0.0
                        {
                            Some("underflow")
                        } else {
                            None
                        };
                        if let Some(what) = what {
                            return Err(datafusion::error::DataFusionError::External(Box::new(
                                crate::error::Error::coded(
                                    "22003",
                                    format!("value out of range: {what}"),
                                ),
                            )));
                        }
                    }
                    if let (Some(l), Some(r)) = (constant_integer(left), constant_integer(right)) {
                        let wide = if l.data_type() == DataType::Int64
                            || r.data_type() == DataType::Int64
                        {
                            DataType::Int64
                        } else if l.data_type() == DataType::Int32
                            || r.data_type() == DataType::Int32
                        {
                            DataType::Int32
                        } else {
                            DataType::Int16
                        };
                        let (l, r) = (l.cast_to(&wide)?, r.cast_to(&wide)?);
                        let result = match op {
                            datafusion::logical_expr::Operator::Plus => l.add_checked(&r),
                            datafusion::logical_expr::Operator::Minus => l.sub_checked(&r),
                            _ => l.mul_checked(&r),
                        };
                        if result.is_err() {
                            let name = match wide {
                                DataType::Int64 => "bigint",
                                DataType::Int32 => "integer",
                                _ => "smallint",
                            };
                            return Err(datafusion::error::DataFusionError::External(Box::new(
                                crate::error::Error::coded("22003", format!("{name} out of range")),
                            )));
                        }
                    }
                    Ok(Transformed::no(e))
                }
                // `bytea LIKE bytea` matches bytes.
                Expr::Like(datafusion::logical_expr::Like {
                    negated,
                    expr,
                    pattern,
                    escape_char,
                    case_insensitive: false,
                }) if type_in(expr, &inputs) == Some(DataType::Binary)
                    && type_in(pattern, &inputs) == Some(DataType::Binary)
                    && escape_char.is_none_or(|c| c.is_ascii()) =>
                {
                    let escape = escape_char.unwrap_or('\\').to_string();
                    let matched = bytea_like.call(vec![
                        expr.as_ref().clone(),
                        pattern.as_ref().clone(),
                        datafusion::logical_expr::lit(escape),
                    ]);
                    Ok(Transformed::yes(if *negated {
                        Expr::Not(Box::new(matched))
                    } else {
                        matched
                    }))
                }
                // A double divided by zero is an error in PostgreSQL, not an infinity.
                Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr {
                    left,
                    op: datafusion::logical_expr::Operator::Divide,
                    right,
                }) if [left, right]
                    .iter()
                    .any(|side| type_in(side, &inputs) == Some(DataType::Float64)) =>
                {
                    Ok(Transformed::yes(float_divide.call(vec![
                        left.as_ref().clone(),
                        right.as_ref().clone(),
                    ])))
                }
                // Constant text cast to an interval: read as PostgreSQL reads it (an INSERT's
                // VALUES into an interval column, `'1 day 02:00'::interval` in a plan).
                Expr::Cast(Cast { expr, field })
                    if matches!(field.data_type(), DataType::Interval(IntervalUnit::MonthDayNano))
                        && matches!(
                            expr.as_ref(),
                            Expr::Literal(datafusion::common::ScalarValue::Utf8(Some(_)), _)
                        ) =>
                {
                    let Expr::Literal(datafusion::common::ScalarValue::Utf8(Some(text)), _) =
                        expr.as_ref()
                    else {
                        return Ok(Transformed::no(e));
                    };
                    match crate::sql::interval::parse(text) {
                        Some(v) => Ok(Transformed::yes(datafusion::logical_expr::lit(
                            datafusion::common::ScalarValue::IntervalMonthDayNano(Some(v)),
                        ))),
                        None => Err(datafusion::error::DataFusionError::External(Box::new(
                            crate::sql::interval::invalid_text(text),
                        ))),
                    }
                }
                // A timestamp or date as text is PostgreSQL's text of it (`1997-02-10
                // 17:32:01`, `0097-02-16 BC`, `infinity`; a timestamptz in the session's zone).
                Expr::Cast(Cast { expr, field })
                    if matches!(
                        field.data_type(),
                        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
                    ) && matches!(
                        type_in(expr, &inputs),
                        Some(DataType::Timestamp(..) | DataType::Date32)
                    ) =>
                {
                    Ok(Transformed::yes(datafusion::logical_expr::cast(
                        datetime_text.call(vec![expr.as_ref().clone()]),
                        field.data_type().clone(),
                    )))
                }
                // An interval as text is PostgreSQL's text of it.
                Expr::Cast(Cast { expr, field })
                    if matches!(
                        field.data_type(),
                        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
                    ) && is_interval(expr, &inputs) =>
                {
                    Ok(Transformed::yes(interval_text.call(vec![expr.as_ref().clone()])))
                }
                // to_hex of an integer (or smallint) writes its 32 bits, as PostgreSQL's
                // to_hex(integer) does; DataFusion widened it to 64 bits first.
                Expr::ScalarFunction(function)
                    if function.name() == "to_hex"
                        && function.args.len() == 1
                        && matches!(
                            type_in(&function.args[0], &inputs),
                            Some(DataType::Int16 | DataType::Int32)
                        ) =>
                {
                    let wide = datafusion::logical_expr::cast(
                        function.args[0].clone(),
                        DataType::Int64,
                    );
                    let low_bits = Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
                        Box::new(wide),
                        datafusion::logical_expr::Operator::BitwiseAnd,
                        Box::new(datafusion::logical_expr::lit(0xffff_ffffi64)),
                    ));
                    Ok(Transformed::yes(to_hex.call(vec![low_bits])))
                }
                // Text read as a timestamp or date as PostgreSQL reads it (`Feb 10 17:32:01
                // 1997 PST`, `epoch`, `infinity`, zone names); DataFusion's cast takes ISO 8601.
                Expr::Cast(Cast { expr, field })
                    if matches!(field.data_type(), DataType::Timestamp(..) | DataType::Date32)
                        && matches!(
                            type_in(expr, &inputs),
                            Some(DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
                        ) =>
                {
                    let reader = match field.data_type() {
                        DataType::Date32 => &date_in,
                        DataType::Timestamp(_, None) => &timestamp_in,
                        _ => &timestamptz_in,
                    };
                    let text = datafusion::logical_expr::cast(expr.as_ref().clone(), DataType::Utf8);
                    let read = reader.call(vec![text]);
                    Ok(Transformed::yes(datafusion::logical_expr::cast(
                        read,
                        field.data_type().clone(),
                    )))
                }
                // Text read as a double: PostgreSQL refuses numbers a double cannot hold.
                Expr::Cast(Cast { expr, field })
                    if field.data_type() == &DataType::Float64
                        && matches!(
                            type_in(expr, &inputs),
                            Some(DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
                        ) =>
                {
                    Ok(Transformed::yes(float8_in.call(vec![expr.as_ref().clone()])))
                }
                // PostgreSQL compares intervals with a month as 30 days and a day as 24 hours.
                Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr { left, op, right })
                    if matches!(
                        op,
                        datafusion::logical_expr::Operator::Eq
                            | datafusion::logical_expr::Operator::NotEq
                            | datafusion::logical_expr::Operator::Lt
                            | datafusion::logical_expr::Operator::LtEq
                            | datafusion::logical_expr::Operator::Gt
                            | datafusion::logical_expr::Operator::GtEq
                    ) && [left, right].iter().any(|side| is_interval(side, &inputs))
                        && [left, right]
                            .iter()
                            .all(|side| is_interval(side, &inputs) || is_text_literal(side)) =>
                {
                    // An untyped literal on the other side is read as an interval.
                    let key = |side: &Expr| {
                        let side = if is_text_literal(side) {
                            datafusion::logical_expr::cast(
                                side.clone(),
                                DataType::Interval(IntervalUnit::MonthDayNano),
                            )
                        } else {
                            side.clone()
                        };
                        Box::new(interval_key.call(vec![side]))
                    };
                    Ok(Transformed::yes(Expr::BinaryExpr(
                        datafusion::logical_expr::BinaryExpr::new(key(left), *op, key(right)),
                    )))
                }
                // PostgreSQL rounds a float to the nearest integer (ties to even) and a numeric
                // half away from zero; DataFusion's cast truncates.
                Expr::Cast(Cast { expr, field })
                    if matches!(
                        field.data_type(),
                        DataType::Int16 | DataType::Int32 | DataType::Int64
                    ) =>
                {
                    let source = type_in(expr, &inputs);
                    // A literal with a decimal point is a numeric in PostgreSQL.
                    let numeric_literal = matches!(expr.as_ref(), Expr::Literal(..));
                    let rounded = match source {
                        Some(DataType::Float16 | DataType::Float32 | DataType::Float64)
                            if !numeric_literal =>
                        {
                            Some(round_half_even(expr.as_ref().clone())?)
                        }
                        Some(
                            DataType::Decimal128(..)
                            | DataType::Decimal256(..)
                            | DataType::Float16
                            | DataType::Float32
                            | DataType::Float64,
                        ) => Some(
                            datafusion::functions::math::expr_fn::round(vec![
                                expr.as_ref().clone(),
                            ]),
                        ),
                        _ => None,
                    };
                    match rounded {
                        Some(rounded) => Ok(Transformed::yes(Expr::Cast(Cast {
                            expr: Box::new(rounded),
                            field: field.clone(),
                        }))),
                        None => Ok(Transformed::no(e)),
                    }
                }
                Expr::Cast(Cast { expr, field })
                    if field.data_type() == &DataType::Binary
                        && inputs.is_empty()
                        && matches!(expr.as_ref(), Expr::Literal(v, _) if matches!(v.data_type(), DataType::Utf8)) =>
                {
                    Ok(Transformed::yes(bytea_in.call(vec![expr.as_ref().clone()])))
                }
                _ => Ok(Transformed::no(e)),
            })?;
            Ok(rewritten.update_data(|e| name.restore(e)))
        })?;
        if retyped.get() {
            node.map_data(|plan| plan.recompute_schema())
        } else {
            Ok(node)
        }
    })?;
    Ok(rewritten.data)
}

/// The value of an integer literal, possibly cast to another integer type.
/// The value of a constant number as a double, and whether it is one (a literal double, or a
/// literal cast to one).
fn constant_double(expr: &datafusion::logical_expr::Expr) -> Option<(f64, bool)> {
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{Cast, Expr};
    match expr {
        Expr::Literal(ScalarValue::Float64(Some(v)), _) => Some((*v, true)),
        Expr::Cast(Cast { expr, field }) if field.data_type() == &DataType::Float64 => {
            let (v, _) = constant_double(expr)?;
            Some((v, true))
        }
        Expr::Negative(inner) => constant_double(inner).map(|(v, d)| (-v, d)),
        other => {
            let v = constant_integer(other)?.cast_to(&DataType::Float64).ok()?;
            match v {
                ScalarValue::Float64(Some(v)) => Some((v, false)),
                _ => None,
            }
        }
    }
}

fn constant_integer(
    expr: &datafusion::logical_expr::Expr,
) -> Option<datafusion::common::ScalarValue> {
    use datafusion::logical_expr::{Cast, Expr};
    let integer = |t: &DataType| matches!(t, DataType::Int16 | DataType::Int32 | DataType::Int64);
    match expr {
        Expr::Literal(v, _) if integer(&v.data_type()) && !v.is_null() => Some(v.clone()),
        Expr::Cast(Cast { expr, field }) if integer(field.data_type()) => {
            let value = match expr.as_ref() {
                Expr::Literal(v, _) if !v.is_null() => v.clone(),
                other => constant_integer(other)?,
            };
            value.cast_to(field.data_type()).ok()
        }
        Expr::Negative(inner) => constant_integer(inner)?.arithmetic_negate().ok(),
        _ => None,
    }
}

fn is_interval(
    expr: &datafusion::logical_expr::Expr,
    inputs: &[datafusion::common::DFSchemaRef],
) -> bool {
    type_in(expr, inputs)
        .is_some_and(|t| matches!(t, DataType::Interval(IntervalUnit::MonthDayNano)))
}

fn is_text_literal(expr: &datafusion::logical_expr::Expr) -> bool {
    matches!(
        expr,
        datafusion::logical_expr::Expr::Literal(datafusion::common::ScalarValue::Utf8(Some(_)), _)
    )
}

/// The type of `expr` over one of a plan node's inputs (or none, for an expression of literals).
fn type_in(
    expr: &datafusion::logical_expr::Expr,
    inputs: &[datafusion::common::DFSchemaRef],
) -> Option<DataType> {
    use datafusion::logical_expr::ExprSchemable;
    if inputs.is_empty() {
        expr.get_type(&datafusion::common::DFSchema::empty()).ok()
    } else {
        inputs.iter().find_map(|schema| expr.get_type(schema).ok())
    }
}

/// `x` rounded to the nearest integer, ties to the even one (C's `rint`, which PostgreSQL's
/// float-to-integer casts use): `round` where the fraction is not exactly one half, else twice
/// the rounded half.
fn round_half_even(
    x: datafusion::logical_expr::Expr,
) -> datafusion::common::Result<datafusion::logical_expr::Expr> {
    use datafusion::functions::math::expr_fn::{abs, round, trunc};
    use datafusion::logical_expr::{lit, when};

    let fraction = abs(x.clone() - trunc(vec![x.clone()]));
    when(
        fraction.eq(lit(0.5)),
        lit(2.0) * round(vec![x.clone() / lit(2.0)]),
    )
    .otherwise(round(vec![x]))
}

/// A session's part of a query's configuration, read by `currval`, `current_user`,
/// `current_setting` and their kin.
#[derive(Debug, Clone)]
pub(crate) struct SessionEnv {
    sequences: crate::catalog::sequence_functions::SessionSequences,
    user: crate::catalog::pg_functions::SessionUser,
    settings: crate::catalog::pg_functions::SessionSettings,
}

impl SessionEnv {
    /// Adds the session's extensions to `state`, whose execution starts now.
    pub(crate) fn apply(&self, state: &mut datafusion::execution::SessionState) {
        let extensions = &mut state.config_mut().options_mut().extensions;
        extensions.insert(self.sequences.clone());
        extensions.insert(self.user.clone());
        extensions.insert(self.settings.clone());
        // PostgreSQL's switch for parallel query: at 0 a statement runs on one thread (and
        // order-dependent results, such as a frame without ORDER BY, come out the same each time).
        if self
            .settings
            .0
            .get("max_parallel_workers_per_gather")
            .is_some_and(|v| v.trim() == "0")
        {
            state.config_mut().options_mut().execution.target_partitions = 1;
        }
        // Functions read the configuration as of the start of execution.
        state.mark_start_execution();
        // `now()` is the moment the transaction block began, or the statement outside one.
        let moment = |key| {
            self.settings
                .0
                .get(key)
                .and_then(|micros| micros.parse::<i64>().ok())
                .and_then(chrono::DateTime::from_timestamp_micros)
        };
        if let Some(start) = moment(TXN_START).or_else(|| moment(STATEMENT_START)) {
            state.execution_props_mut().query_execution_start_time = Some(start);
        }
    }
}

/// Runs a query plan in the users' context: tables as of now, materialized views as of the last
/// committed epoch, each from one snapshot for the whole statement.
async fn run_query(db: &Database, env: &SessionEnv, plan: LogicalPlan) -> Result<Output> {
    let mut state = db.ctx().state();
    state
        .config_mut()
        .set_extension(Arc::new(crate::table::provider::ReadSnapshots {
            latest: Arc::new(db.store().snapshot()),
            committed: db.runtime().progress().snapshot(),
        }));
    env.apply(&mut state);
    let df = datafusion::dataframe::DataFrame::new(state, plan);
    let named = df.schema().as_arrow().clone();
    let stream = df.execute_stream().await?;
    let schema = Arc::new(executed_types(named, &stream.schema()));
    Ok(Output::Rows {
        schema,
        stream,
        tag: "SELECT".into(),
    })
}

/// The columns `plan` returns, typed as they are once type coercion ran (a `UNION` branch's
/// columns take the type common to all branches only then).
fn coerced_schema(db: &Database, plan: &LogicalPlan) -> datafusion::arrow::datatypes::Schema {
    let named = plan.schema().as_arrow().clone();
    let has_union = plan
        .exists(|node| Ok(matches!(node, LogicalPlan::Union(_))))
        .unwrap_or(false);
    if !has_union {
        return named;
    }
    let state = db.ctx().state();
    match state
        .analyzer()
        .execute_and_check(plan.clone(), state.config_options(), |_, _| {})
    {
        Ok(analyzed) => executed_types(named, &Arc::new(analyzed.schema().as_arrow().clone())),
        Err(_) => named,
    }
}

/// `named` (the columns as the statement names them) with the types its plan produces once
/// type coercion ran: `SELECT 1 UNION SELECT 2.2::numeric` names an `int8` column and returns
/// `numeric` values.
fn executed_types(
    named: datafusion::arrow::datatypes::Schema,
    executed: &SchemaRef,
) -> datafusion::arrow::datatypes::Schema {
    if named.fields().len() != executed.fields().len()
        || named
            .fields()
            .iter()
            .zip(executed.fields())
            .all(|(n, e)| n.data_type() == e.data_type())
    {
        return named;
    }
    let fields: Vec<_> = named
        .fields()
        .iter()
        .zip(executed.fields())
        .map(|(n, e)| {
            n.as_ref()
                .clone()
                .with_data_type(e.data_type().clone())
                .with_nullable(n.is_nullable() || e.is_nullable())
        })
        .collect();
    datafusion::arrow::datatypes::Schema::new_with_metadata(fields, named.metadata().clone())
}

/// Compiles `expr` over columns `schema` describes, with DataFusion's type coercion.
pub(crate) fn compile(
    db: &Database,
    expr: &datafusion::logical_expr::Expr,
    schema: &datafusion::common::DFSchema,
) -> Result<Arc<dyn datafusion::physical_expr::PhysicalExpr>> {
    Ok(db
        .ctx()
        .state()
        .create_physical_expr(expr.clone(), schema)?)
}

/// Evaluates a compiled expression over every row of `batch`.
pub(crate) fn evaluate(
    expr: &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    batch: &RecordBatch,
) -> Result<datafusion::arrow::array::ArrayRef> {
    Ok(expr.evaluate(batch)?.into_array(batch.num_rows())?)
}

/// An [`Output::Rows`] over batches already in memory.
pub(crate) fn rows_output(schema: SchemaRef, batches: Vec<RecordBatch>, tag: String) -> Output {
    let stream = RecordBatchStreamAdapter::new(
        schema.clone(),
        futures::stream::iter(batches.into_iter().map(Ok)),
    );
    Output::Rows {
        schema,
        stream: Box::pin(stream),
        tag,
    }
}

/// Parameter types of a plan, by position (`$1` first). A parameter DataFusion leaves untyped
/// takes the type it is cast to (`$1::BIGINT`), as in PostgreSQL, or the type of the model
/// input it is passed to (`PREDICT('m', $1)`).
fn param_types(plan: &LogicalPlan, models: &crate::model::Models) -> Result<Vec<DataType>> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Cast, Expr};

    let mut types = plan.get_parameter_types()?;
    let mut casts: HashMap<String, DataType> = HashMap::new();
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::Cast(Cast { expr, field }) = e
                    && let Expr::Placeholder(p) = expr.as_ref()
                {
                    casts
                        .entry(p.id.clone())
                        .or_insert_with(|| field.data_type().clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    let model_inputs = crate::model::functions::placeholder_types(plan, models);
    for (id, ty) in types.iter_mut() {
        if ty.is_none() {
            *ty = casts.get(id).or_else(|| model_inputs.get(id)).cloned();
        }
    }
    let mut out: Vec<DataType> = Vec::new();
    for (name, ty) in types {
        let index: usize = name
            .trim_start_matches('$')
            .parse()
            .map_err(|_| Error::Syntax(format!("syntax error: bad parameter name {name}")))?;
        if index == 0 {
            return Err(Error::Syntax(
                "syntax error: parameters are numbered from $1".into(),
            ));
        }
        if out.len() < index {
            out.resize(index, DataType::Null);
        }
        out[index - 1] = ty.unwrap_or(DataType::Null);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    async fn db() -> (tempfile::TempDir, Arc<Database>) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_data_dir(dir.path().join("data"));
        config.no_fsync = true;
        let db = Database::open(&config).await.unwrap();
        let mut vars = HashMap::new();
        let conn = ConnectionState::default();
        let mut session = Session::new(&db, &mut vars, &conn);
        for sql in [
            "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT, score DOUBLE PRECISION)",
            "CREATE TABLE pair (a INT, b TEXT, v INT, PRIMARY KEY (a, b))",
            "INSERT INTO t VALUES (1, 'one', 1.5), (2, 'two', 2.5)",
            "INSERT INTO pair VALUES (1, 'x', 10)",
        ] {
            let statement = session.parse(sql).unwrap().remove(0);
            session.run(statement).await.unwrap();
        }
        (dir, db)
    }

    async fn plan_kind(db: &Database, sql: &str) -> &'static str {
        let statement = db.parser().parse_stmts(sql).unwrap().remove(0);
        match prepare(db, &ConnectionState::default(), statement)
            .await
            .unwrap()
            .0
            .plan
        {
            Plan::Lookup(_) => "lookup",
            Plan::Query(_) => "query",
            Plan::Write(_) | Plan::ModifyingWith => "write",
            Plan::Execute { .. } | Plan::Declare { .. } | Plan::Utility => "utility",
        }
    }

    #[tokio::test]
    async fn key_lookups_skip_datafusion_and_nothing_else_does() {
        let (_dir, db) = db().await;
        for sql in [
            "SELECT name, score FROM t WHERE id = $1",
            "SELECT name FROM t WHERE id = 2",
            "SELECT x.name AS n FROM t AS x WHERE x.id = $1",
            "SELECT v FROM pair WHERE b = $2 AND a = $1",
            "SELECT upper(name), score * 2 FROM t WHERE id = $1",
        ] {
            assert_eq!(plan_kind(&db, sql).await, "lookup", "{sql}");
        }
        for sql in [
            "SELECT name FROM t WHERE id > $1",
            "SELECT upper(name) || $2 FROM t WHERE id = $1",
            "SELECT name FROM t WHERE id = $1 AND score > 1",
            "SELECT v FROM pair WHERE a = $1",
            "SELECT * FROM t",
        ] {
            assert_eq!(plan_kind(&db, sql).await, "query", "{sql}");
        }
    }

    #[tokio::test]
    async fn key_lookups_read_the_row() {
        use datafusion::arrow::array::AsArray;
        use datafusion::common::metadata::ScalarAndMetadata;
        use futures::StreamExt;

        let (_dir, db) = db().await;
        let statement = db
            .parser()
            .parse_stmts("SELECT name FROM t WHERE id = $1")
            .unwrap()
            .remove(0);
        let conn = ConnectionState::default();
        let prepared = prepare(&db, &conn, statement).await.unwrap();
        let mut vars = HashMap::new();
        let mut session = Session::new(&db, &mut vars, &conn);
        for (id, expected) in [(2i64, Some("two")), (7, None)] {
            let params = ParamValues::List(vec![ScalarAndMetadata::from(
                datafusion::common::ScalarValue::Int64(Some(id)),
            )]);
            let Output::Rows { mut stream, .. } = session.execute(&prepared, params).await.unwrap()
            else {
                panic!("no rows");
            };
            let batch = stream.next().await.unwrap().unwrap();
            let names: Vec<&str> = batch
                .column(0)
                .as_string::<i32>()
                .iter()
                .flatten()
                .collect();
            assert_eq!(names, expected.into_iter().collect::<Vec<_>>());
        }
    }
}
