//! The pgwire query handlers: simple and extended protocol over a [`Session`].

use std::fmt::Debug;
use std::sync::Arc;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::SessionExtensions;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler, send_describe_response};
use pgwire::api::results::CopyResponse;
use pgwire::api::results::{DescribePortalResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, DEFAULT_NAME, ErrorHandler,
    PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::extendedquery::{Describe, Parse, ParseComplete, TARGET_TYPE_BYTE_PORTAL};
use pgwire::messages::response::NoticeResponse;
use pgwire::messages::startup::ParameterStatus;
use pgwire::types::format::FormatOptions;

use super::auth::Startup;
use super::cancel::{CancelRequests, Interrupts};
use crate::error::Error;
use crate::session::limits::StatementLimits;
use crate::session::{self, ConnectionState, Database, Notice, Output, Prepared, Session, vars};

/// Everything pgwire needs to serve Augur.
pub struct Handlers {
    queries: Arc<Queries>,
    startup: Arc<Startup>,
    cancel: Arc<CancelRequests>,
}

impl Handlers {
    /// Handlers over `db`, authenticating with `startup`.
    pub fn new(db: Arc<Database>, startup: Startup, _connections: Arc<ConnectionManager>) -> Self {
        let interrupts = Arc::new(Interrupts::default());
        Self {
            queries: Arc::new(Queries {
                parser: Arc::new(Parser { db: db.clone() }),
                db,
                interrupts: interrupts.clone(),
            }),
            startup: Arc::new(startup),
            cancel: Arc::new(CancelRequests(interrupts)),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        // Called once per connection.
        Arc::new(self.startup.for_connection())
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        self.queries.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LogErrors)
    }
}

struct LogErrors;

impl ErrorHandler for LogErrors {
    fn on_error<C>(&self, _client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        tracing::debug!(%error, "statement failed");
    }
}

/// The wire form of an error: severity ERROR, its SQLSTATE, message and detail.
pub fn error_info(error: &Error) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".into(), error.sqlstate().into(), error.to_string());
    info.detail = error.detail();
    info.hint = error.hint();
    info
}

pub(super) fn to_pgwire(error: Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(&error)))
}

/// Runs statements for pgwire.
pub struct Queries {
    pub(super) db: Arc<Database>,
    parser: Arc<Parser>,
    interrupts: Arc<Interrupts>,
}

impl Queries {
    /// Limits for each statement of a new query message from `client`: its cancel requests and
    /// its `statement_timeout`, read when each statement starts.
    fn limits<C: ClientInfo>(&self, client: &C) -> impl Fn(&C) -> StatementLimits + use<C> {
        let interrupt = self.interrupts.of(client);
        let serial = interrupt.begin();
        move |client: &C| {
            StatementLimits::new(
                interrupt.clone(),
                serial,
                vars::duration(client.metadata(), "statement_timeout"),
            )
        }
    }
}

async fn send_notices<C>(client: &mut C, notices: Vec<Notice>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for notice in notices {
        let message = match notice {
            Notice::Message(severity, code, message) => PgWireBackendMessage::NoticeResponse(
                NoticeResponse::from(ErrorInfo::new(severity.into(), code.into(), message)),
            ),
            Notice::Parameter(name, value) => {
                PgWireBackendMessage::ParameterStatus(ParameterStatus::new(name, value))
            }
        };
        client.feed(message).await?;
    }
    Ok(())
}

/// Guards a statement's rows with its limits and waits for the first batch: DataFusion does a
/// query's work when its stream is polled, and most long queries (aggregates, sorts, joins)
/// finish it before the first batch, so an error then is the statement's error (and aborts a
/// transaction block). Rows after the first stream to the client as they come, and stop when the
/// statement is cancelled or times out.
async fn first_batch(output: Output, limits: &StatementLimits) -> Result<Output, Error> {
    Ok(match output {
        Output::Rows {
            schema,
            stream,
            tag,
        } => {
            let mut stream = limits.guard(stream);
            let first = stream.next().await.transpose()?;
            let stream = RecordBatchStreamAdapter::new(
                schema.clone(),
                futures::stream::iter(first.map(Ok)).chain(stream),
            );
            Output::Rows {
                schema,
                stream: Box::pin(stream),
                tag,
            }
        }
        Output::CopyOut {
            schema,
            stream,
            format,
        } => Output::CopyOut {
            schema,
            stream: limits.guard(stream),
            format,
        },
        other => other,
    })
}

/// The connection's named statements and cursors.
fn connection<C: ClientInfo>(client: &C) -> Arc<ConnectionState> {
    let user = client.metadata().get(pgwire::api::METADATA_USER).cloned();
    client
        .session_extensions()
        .get_or_insert_with(|| ConnectionState::for_user(user.unwrap_or_default()))
}

/// Forgets the protocol-level statements a `DEALLOCATE` removed.
fn forget_deallocated<C>(client: &C, conn: &ConnectionState)
where
    C: ClientPortalStore,
    C::PortalStore: PortalStore,
{
    for name in conn.take_deallocated() {
        client.portal_store().rm_statement(&name);
    }
}

/// Ends a statement: records a failure (which aborts an open transaction block) and collects
/// the messages for the client.
fn conclude(
    mut session: Session<'_>,
    result: Result<Output, Error>,
) -> (Result<Output, Error>, Vec<Notice>) {
    if result.is_err() {
        session.statement_failed();
    }
    (result, session.take_notices())
}

/// Runs a statement's work and then waits for its first batch, both within `limits`.
async fn within(
    limits: &StatementLimits,
    work: impl std::future::Future<Output = Result<Output, Error>>,
) -> Result<Output, Error> {
    let output = limits.run(work).await?;
    limits.run(first_batch(output, limits)).await
}

/// Turns a statement's output into pgwire's response, encoding rows in `format`.
fn into_response(
    output: Output,
    format: &Format,
    options: Arc<FormatOptions>,
    extensions: &SessionExtensions,
) -> PgWireResult<Response> {
    Ok(match output {
        Output::CopyIn(copy) => {
            let columns = copy.column_count();
            super::copy::start_copy_in(extensions, copy);
            Response::CopyIn(CopyResponse::new(0, columns, futures::stream::empty()))
        }
        Output::CopyOut {
            schema,
            stream,
            format,
        } => {
            let fields = Arc::new(pg_fields(&schema, &Format::UnifiedText, Some(options))?);
            Response::CopyOut(super::copy::copy_out(schema, fields, stream, format))
        }
        Output::Rows {
            schema,
            stream,
            tag,
        } => {
            let fields = Arc::new(pg_fields(&schema, format, Some(options.clone()))?);
            let encode_fields = fields.clone();
            // `character(n)` values, kept without their trailing spaces, are sent padded to `n`.
            let widths = crate::catalog::pg_char::padded_widths(&schema);
            let rows = stream
                .map(move |batch| {
                    let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send + Sync> = match batch
                    {
                        Ok(batch) => encode_recordbatch(
                            encode_fields.clone(),
                            super::text::postgres_text(
                                crate::catalog::pg_char::pad_batch(batch, &widths),
                                &encode_fields,
                                &options,
                            ),
                        ),
                        Err(e) => Box::new(std::iter::once(Err(to_pgwire(Error::from(e))))),
                    };
                    futures::stream::iter(rows)
                })
                .flatten();
            let mut response = QueryResponse::new(fields, rows);
            response.set_command_tag(&tag);
            Response::Query(response)
        }
        Output::Command(tag) => Response::Execution(Tag::new(&tag)),
        Output::TransactionStart(tag) => Response::TransactionStart(Tag::new(&tag)),
        Output::TransactionEnd(tag) => Response::TransactionEnd(Tag::new(&tag)),
        Output::Empty => Response::EmptyQuery,
    })
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = match self.db.parser().parse_stmts(query) {
            Ok(statements) => statements,
            Err(e) => return Ok(vec![Response::Error(Box::new(error_info(&e)))]),
        };
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let limits_for = self.limits(client);
        let conn = connection(client);
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            let limits = limits_for(client);
            let (result, notices) = {
                let mut session = Session::new(&self.db, client.metadata_mut(), &conn);
                let result = within(&limits, session.run(statement)).await;
                conclude(session, result)
            };
            forget_deallocated(client, &conn);
            send_notices(client, notices).await?;
            // After the statement, which may have changed a setting the output depends on.
            let options = format_options(client.metadata());
            match result.and_then(|output| {
                into_response(
                    output,
                    &Format::UnifiedText,
                    options.clone(),
                    client.session_extensions(),
                )
                .map_err(|e| Error::Internal(e.to_string()))
            }) {
                Ok(response) => responses.push(response),
                Err(e) => {
                    responses.push(Response::Error(Box::new(error_info(&e))));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    /// As pgwire does, and records the statement's name, which `DEALLOCATE ALL` forgets.
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_NAME.to_owned());
        match StoredStatement::parse(client, &message, self.query_parser()).await? {
            Some(statement) => client.portal_store().put_statement(Arc::new(statement)),
            None => client.portal_store().put_empty_statement(&name),
        }
        if message.name.is_some() {
            connection(client).protocol_statement_prepared(&name);
        }
        client
            .send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    /// As pgwire does; a portal named after an open cursor describes the cursor's rows (psycopg
    /// describes a named cursor that way after declaring it).
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type == TARGET_TYPE_BYTE_PORTAL
            && let Some(name) = message.name.as_deref()
            && client.portal_store().get_portal(name).is_none()
            && let Some(schema) = connection(client).cursor_schema(name)
        {
            let fields = pg_fields(&schema, &Format::UnifiedText, None)?;
            return send_describe_response(client, &DescribePortalResponse::new(fields)).await;
        }
        self._on_describe(client, message).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let expected = prepared.param_types().len();
        if portal.parameter_len() != expected {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                "08P01".into(),
                format!(
                    "bind message supplies {} parameters, but prepared statement requires {expected}",
                    portal.parameter_len()
                ),
            ))));
        }
        let types: Vec<Option<&DataType>> = prepared
            .param_types()
            .iter()
            .map(|t| (!t.is_null()).then_some(t))
            .collect();
        let params = match text_typed_parameters(portal) {
            Some(portal) => super::params::deserialize(&portal, &types)?,
            None => super::params::deserialize(portal, &types)?,
        };
        let options = format_options(client.metadata());
        let limits = self.limits(client)(client);
        let conn = connection(client);
        let (result, notices) = {
            let mut session = Session::new(&self.db, client.metadata_mut(), &conn);
            let result = within(&limits, session.execute(prepared, params)).await;
            conclude(session, result)
        };
        forget_deallocated(client, &conn);
        send_notices(client, notices).await?;
        into_response(
            result.map_err(to_pgwire)?,
            &portal.result_column_format,
            options,
            client.session_extensions(),
        )
    }
}

/// Prepares statements at Parse.
pub struct Parser {
    db: Arc<Database>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = self.db.parser().parse_stmts(sql).map_err(to_pgwire)?;
        match statements.len() {
            0 => Ok(None),
            1 => {
                let statement = statements.remove(0);
                Ok(Some(
                    session::prepare(&self.db, &connection(client), statement)
                        .await
                        .map_err(to_pgwire)?,
                ))
            }
            _ => Err(to_pgwire(Error::Syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            ))),
        }
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        stmt.param_types()
            .iter()
            .map(|t| {
                if t.is_null() {
                    Ok(Type::TEXT)
                } else {
                    into_pg_type(t)
                }
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match stmt.schema() {
            Some(schema) => Ok(pg_fields(
                schema,
                format.unwrap_or(&Format::UnifiedText),
                None,
            )?),
            None => Ok(vec![]),
        }
    }
}

/// `portal` with its `uuid`, `json` and `jsonb` parameters (by the types the client gave in
/// Parse) as the text Augur stores them in, typed `text`; `None` when it has none. Such values
/// are read into text columns and checked where they are written. In binary format a `uuid` is
/// its 16 bytes and a `jsonb` its text after a version byte.
fn text_typed_parameters<S: Clone>(portal: &Portal<S>) -> Option<Portal<S>> {
    use pgwire::api::Type;
    let types = &portal.statement.parameter_types;
    let typed = |t: &Option<Type>| matches!(t, Some(t) if *t == Type::UUID || *t == Type::JSON || *t == Type::JSONB);
    if !types.iter().any(typed) {
        return None;
    }
    let mut parameter_types = types.clone();
    let mut parameters = portal.parameters.clone();
    for (i, t) in types.iter().enumerate() {
        if !typed(t) {
            continue;
        }
        let binary = portal.parameter_format.is_binary(i);
        if let (Some(t), Some(Some(bytes))) = (t, parameters.get_mut(i)) {
            if binary && *t == Type::UUID {
                if let Ok(raw) = <[u8; 16]>::try_from(bytes.as_ref()) {
                    *bytes = crate::catalog::pg_builtins::uuid_text(&raw)
                        .into_bytes()
                        .into();
                }
            } else if binary && *t == Type::JSONB && bytes.first() == Some(&1) {
                *bytes = bytes.slice(1..);
            }
            // in the form the column stores, so that comparisons with it match
            if let Ok(text) = std::str::from_utf8(bytes) {
                let normal = if *t == Type::UUID {
                    crate::catalog::pg_builtins::parse_uuid(text)
                        .map(|b| crate::catalog::pg_builtins::uuid_text(&b))
                } else if *t == Type::JSONB {
                    crate::catalog::pg_json::JsonKind::Jsonb.read(text).ok()
                } else {
                    None
                };
                if let Some(normal) = normal {
                    *bytes = normal.into_bytes().into();
                }
            }
        }
        // text is the same in both formats: its UTF-8 bytes
        parameter_types[i] = Some(Type::TEXT);
    }
    let statement = Arc::new(StoredStatement::new(
        portal.statement.id.clone(),
        portal.statement.statement.clone(),
        parameter_types,
    ));
    let mut typed = Portal::new_cursor(portal.name.clone(), statement);
    typed.parameter_format = portal.parameter_format.clone();
    typed.parameters = parameters;
    typed.result_column_format = portal.result_column_format.clone();
    typed.state = portal.state.clone();
    Some(typed)
}

/// How the session's values are written: its `DateStyle`, `extra_float_digits`, `TimeZone`.
fn format_options(metadata: &std::collections::HashMap<String, String>) -> Arc<FormatOptions> {
    let mut options = FormatOptions::from_client_metadata(metadata);
    if let Some(zone) = metadata.get("timezone") {
        options.time_zone = zone.clone();
    }
    Arc::new(options)
}

/// Field descriptions with the names clients see (see [`crate::sql::names::client_name`]).
/// The row description of `schema`: arrow-pg's, with PostgreSQL's column names and the
/// `int2vector`/`oidvector` catalog columns typed as such.
fn pg_fields(
    schema: &datafusion::arrow::datatypes::Schema,
    format: &Format,
    options: Option<Arc<pgwire::types::format::FormatOptions>>,
) -> PgWireResult<Vec<FieldInfo>> {
    let fields = client_fields(arrow_schema_to_pg_fields(schema, format, options)?);
    Ok(super::text::vector_types(schema, fields))
}

fn client_fields(fields: Vec<FieldInfo>) -> Vec<FieldInfo> {
    fields
        .into_iter()
        .map(|f| {
            let name = crate::sql::names::client_name(f.name());
            if name.len() == f.name().len() {
                f
            } else {
                FieldInfo::new(
                    name.to_string(),
                    f.table_id(),
                    f.column_id(),
                    f.datatype().clone(),
                    f.format(),
                )
            }
        })
        .collect()
}
