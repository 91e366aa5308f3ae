//! CREATE SINK, DROP SINK, SHOW SINKS, and the restart of every sink's delivery when the server
//! starts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::execution::SessionState;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Query, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::{Output, Session};
use crate::catalog::{Catalog, SinkEntry};
use crate::error::{Error, Result};
use crate::sink::{self, Delivery, SinkDef, SinkProgress};
use crate::sql::{CreateSink, SinkInput};
use crate::storage::Store;
use crate::stream::ExprErrors;
use crate::stream::emit::EmitOp;
use crate::stream::runtime::{SinkFlow, ViewFlow};
use crate::stream::state::StateScope;

/// A sink's own query, planned: its dataflow (ending in an [`EmitOp`]) and what it gives.
struct QueryFlow {
    flow: ViewFlow,
    /// The columns it writes, named as the query names them.
    schema: SchemaRef,
    /// Columns unique in every row, by name, when the planner knows some.
    key: Option<Vec<String>>,
    /// True when its rows are only ever inserted.
    append_only: bool,
    /// The relations its dataflow reads.
    inputs: Vec<u32>,
    /// The models it calls.
    models: Vec<String>,
}

/// Plans sink `name`'s own query into the dataflow with id `id`.
async fn plan_query(
    state: &SessionState,
    catalog: &Catalog,
    query: &Query,
    id: u32,
    name: &str,
    errors: Arc<ExprErrors>,
) -> Result<QueryFlow> {
    let plan = super::views::logical_plan(state, query).await?;
    let names = super::views::column_names(&plan, &[])?;
    let models = crate::model::functions::models_used(&plan);
    let mut planned = crate::planner::plan(state, catalog, &plan, id, errors, false)?;
    let schema: SchemaRef = Arc::new(Schema::new(
        planned
            .schema
            .fields()
            .iter()
            .zip(&names)
            .map(|(f, name)| f.as_ref().clone().with_name(name))
            .collect::<Vec<_>>(),
    ));
    planned.add_root(Box::new(EmitOp::new(name, &schema)?))?;
    let key = planned
        .key
        .as_ref()
        .map(|key| key.iter().filter_map(|&i| names.get(i).cloned()).collect());
    Ok(QueryFlow {
        inputs: planned.graph.inputs(),
        flow: ViewFlow {
            id,
            name: name.to_string(),
            graph: planned.graph,
        },
        schema,
        key,
        append_only: planned.append_only,
        models,
    })
}

/// Reopens every stored sink: its catalog entry, its delivery (epochs left in its outbox are
/// delivered again), its flow for the runtime, and the dataflow of its own query if it has one.
pub(super) async fn recover(
    store: &Store,
    catalog: &Arc<Catalog>,
    ctx: &SessionContext,
) -> Result<(Vec<SinkFlow>, Vec<ViewFlow>)> {
    let mut flows = Vec::new();
    let mut queries = Vec::new();
    for def in catalog.stored_sinks()? {
        let progress = Arc::new(SinkProgress::default());
        progress.set_backlog(sink::backlog(store, def.id)?);
        let errors = Arc::new(ExprErrors::default());
        let schema = match &def.query {
            // A query that no longer plans leaves the sink stopped, with the reason, until it
            // is dropped: the server starts anyway.
            Some(text) => match recover_query(ctx, catalog, text, &def, errors.clone()).await {
                Ok(planned) => {
                    queries.push(planned.flow);
                    Ok(planned.schema)
                }
                Err(e) => {
                    tracing::error!(sink = def.name, "cannot plan the sink's query: {e}");
                    Err(format!("its query cannot be planned: {e}"))
                }
            },
            None => catalog
                .relation_by_id(def.input)
                .map(|view| view.visible_schema().clone())
                .ok_or_else(|| format!("the view {} is gone", def.from)),
        };
        let delivery = match schema {
            Err(e) => {
                progress.set_error(Some(e));
                None
            }
            Ok(schema) => match sink::open(&def, schema, false) {
                Ok(writer) => Some(
                    Delivery::start(store.clone(), def.id, &def.name, writer, progress.clone())
                        .map_err(|e| Error::Internal(format!("cannot start sink delivery: {e}")))?,
                ),
                Err(e) => {
                    tracing::error!(sink = def.name, "cannot open the sink: {e}");
                    progress.set_error(Some(e.to_string()));
                    None
                }
            },
        };
        flows.push(SinkFlow {
            id: def.id,
            name: def.name.clone(),
            input: def.input,
            progress: progress.clone(),
        });
        catalog.insert_sink(SinkEntry {
            def,
            progress,
            delivery: Mutex::new(delivery),
            errors,
        });
    }
    Ok((flows, queries))
}

/// Plans the stored query `text` of sink `def` again.
async fn recover_query(
    ctx: &SessionContext,
    catalog: &Catalog,
    text: &str,
    def: &SinkDef,
    errors: Arc<ExprErrors>,
) -> Result<QueryFlow> {
    // The stored text was parsed and rewritten once already: parse it as it is.
    let query = match Parser::parse_sql(&PostgreSqlDialect {}, text)?.pop() {
        Some(Statement::Query(query)) => query,
        _ => {
            return Err(Error::Internal(format!(
                "stored query of sink {} is not a query",
                def.name
            )));
        }
    };
    plan_query(&ctx.state(), catalog, &query, def.id, &def.name, errors).await
}

/// The columns of `SHOW CREATE SINK`.
pub(super) fn show_create_schema() -> SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field};
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("create_sql", DataType::Utf8, false),
    ]))
}

/// `CREATE SINK` of `def`, with the values of options that hold secrets hidden.
fn create_statement(def: &SinkDef) -> String {
    let quoted = |key: &str, value: &str| {
        let secret = [
            "secret",
            "password",
            "sasl.jaas",
            "oauthbearer",
            "ssl.key.pem",
        ]
        .iter()
        .any(|s| key.contains(s));
        let value = if secret {
            "[hidden]".to_string()
        } else {
            without_credentials(value)
        };
        format!("{key} = '{}'", value.replace('\'', "''"))
    };
    let ident = |name: &str| {
        name.split('.')
            .map(crate::catalog::pg_overlay::quote_ident)
            .collect::<Vec<_>>()
            .join(".")
    };
    let list = |options: &BTreeMap<String, String>| {
        options
            .iter()
            .map(|(k, v)| quoted(k, v))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let input = match &def.query {
        Some(query) => format!("AS {query}"),
        None => format!("FROM {}", ident(&def.from)),
    };
    let mut text = format!(
        "CREATE SINK {} {input} WITH ({}) FORMAT {} ENCODE {}",
        ident(&def.name),
        list(&def.options),
        def.format.format.to_uppercase(),
        def.format.encode.to_uppercase()
    );
    if !def.format.options.is_empty() {
        text.push_str(&format!(" ({})", list(&def.format.options)));
    }
    text
}

/// `value` with the user and password of a URL in it (`http://user:pw@host`) left out.
fn without_credentials(value: &str) -> String {
    let Some(scheme) = value.find("://") else {
        return value.to_string();
    };
    let rest = &value[scheme + 3..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    match authority.rfind('@') {
        Some(at) => format!("{}{}", &value[..scheme + 3], &rest[at + 1..]),
        None => value.to_string(),
    }
}

/// What a new sink writes.
struct Input {
    /// The id of the dataflow whose changes it writes.
    id: u32,
    /// The materialized view, or empty.
    from: String,
    /// Its own query, as text and planned.
    query: Option<(String, QueryFlow)>,
    schema: SchemaRef,
    /// The key of what it writes, by name, when there is one.
    key: Option<Vec<String>>,
    append_only: bool,
    depends_on: Vec<u32>,
    models: Vec<String>,
}

impl Session<'_> {
    pub(super) async fn create_sink(&mut self, create: &CreateSink) -> Result<Output> {
        let _guard = self.write_guard().await?;
        let catalog = self.db.catalog().clone();
        if catalog.sink(&create.name).is_some() {
            if create.if_not_exists {
                self.notice(
                    "42710",
                    format!("sink \"{}\" already exists, skipping", create.name),
                );
                return Ok(Output::Command("CREATE SINK".into()));
            }
            return Err(Error::coded(
                "42710",
                format!("sink \"{}\" already exists", create.name),
            ));
        }
        if catalog.exists(&create.name) {
            return Err(Error::DuplicateTable(create.name.clone()));
        }
        let id = catalog.reserve_id()?;
        let errors = Arc::new(ExprErrors::default());
        let input = match &create.input {
            SinkInput::View(from) => Self::view_input(&catalog, from)?,
            SinkInput::Query(query) => {
                let state = self.db.ctx().state();
                let planned =
                    plan_query(&state, &catalog, query, id, &create.name, errors.clone()).await?;
                let mut depends_on = planned.inputs.clone();
                depends_on.extend(super::views::dependencies(&catalog, query)?);
                depends_on.sort_unstable();
                depends_on.dedup();
                if let Some(note) = self.backfill_gaps(&planned.inputs).await? {
                    self.notice("01000", note);
                }
                Input {
                    id,
                    from: String::new(),
                    schema: planned.schema.clone(),
                    key: planned.key.clone(),
                    append_only: planned.append_only,
                    depends_on,
                    models: planned.models.clone(),
                    query: Some((query.to_string(), planned)),
                }
            }
        };
        let mut options = BTreeMap::new();
        for (key, value) in &create.options {
            if options.insert(key.clone(), value.clone()).is_some() {
                return Err(Error::InvalidParameter(format!("option {key} given twice")));
            }
        }
        let format = create.format.clone().ok_or_else(|| {
            Error::InvalidParameter(
                "a sink needs FORMAT PLAIN | UPSERT | DEBEZIUM ENCODE ... after its options".into(),
            )
        })?;
        let schema = input.schema.clone();
        let key: Vec<String> = match options.get("primary_key") {
            Some(list) => list
                .split(',')
                .map(|k| k.trim().to_lowercase())
                .filter(|k| !k.is_empty())
                .collect(),
            None => input.key.clone().unwrap_or_default(),
        };
        let snapshot = sink::flag(&options, "snapshot", true)?;
        if sink::encode::envelope(&format.format)? == sink::encode::Envelope::Plain
            && !input.append_only
            && !sink::flag(&options, "force_append_only", false)?
        {
            let what = match &input.query {
                Some(_) => "the query".to_string(),
                None => format!("materialized view {}", input.from),
            };
            return Err(Error::InvalidParameter(format!(
                "{what} updates and deletes rows, which FORMAT PLAIN cannot say: use FORMAT \
                 UPSERT or DEBEZIUM, or force_append_only = 'true' to write only the rows \
                 inserted"
            )));
        }
        let (query_text, query_flow) = match input.query {
            Some((text, planned)) => (Some(text), Some(planned.flow)),
            None => (None, None),
        };
        let def = SinkDef {
            id,
            name: create.name.clone(),
            from: input.from,
            input: input.id,
            query: query_text,
            depends_on: input.depends_on,
            models: input.models,
            options,
            format,
            key,
            created_ms: chrono::Utc::now().timestamp_millis(),
        };
        // Opening the connector checks its destination, which may wait on the network.
        let writer = {
            let def = def.clone();
            tokio::task::spawn_blocking(move || sink::open(&def, schema, true))
                .await
                .map_err(|e| Error::Internal(format!("opening the sink failed: {e}")))??
        };
        let entry = Catalog::sink_entry(&def)?;
        let progress = Arc::new(SinkProgress::default());
        let flow = SinkFlow {
            id: def.id,
            name: def.name.clone(),
            input: def.input,
            progress: progress.clone(),
        };
        let delivery = Delivery::start(
            self.db.store().clone(),
            def.id,
            &def.name,
            writer,
            progress.clone(),
        )
        .map_err(|e| Error::Internal(format!("cannot start sink delivery: {e}")))?;
        // The catalog knows the sink before the dataflow commits it: a statement cancelled
        // while the dataflow works leaves no committed sink the catalog does not know.
        let name = def.name.clone();
        catalog.insert_sink(SinkEntry {
            def,
            progress,
            delivery: Mutex::new(Some(delivery)),
            errors,
        });
        let added = self
            .db
            .runtime()
            .add_sink(flow, query_flow, snapshot, vec![entry])
            .await;
        if let Err(e) = added {
            if let Some(entry) = catalog.remove_sink(&name) {
                let delivery = entry
                    .delivery
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                // Joins the thread.
                let _ = tokio::task::spawn_blocking(move || drop(delivery)).await;
            }
            return Err(e.into());
        }
        Ok(Output::Command("CREATE SINK".into()))
    }

    /// `DROP SINK [IF EXISTS] names`.
    pub(super) async fn drop_sinks(&mut self, names: &[String], if_exists: bool) -> Result<Output> {
        let _guard = self.write_guard().await?;
        let catalog = self.db.catalog().clone();
        for name in names {
            if catalog.sink(name).is_none() {
                if if_exists {
                    self.notice("00000", format!("sink \"{name}\" does not exist, skipping"));
                    continue;
                }
                return Err(Error::coded(
                    "42704",
                    format!("sink \"{name}\" does not exist"),
                ));
            }
        }
        for name in names {
            self.drop_sink(name).await?;
        }
        Ok(Output::Command("DROP SINK".into()))
    }

    /// Stops sink `name`'s delivery and deletes it with its outbox.
    pub(super) async fn drop_sink(&self, name: &str) -> Result<()> {
        let catalog = self.db.catalog();
        let Some(entry) = catalog.sink(name) else {
            return Ok(());
        };
        let delivery = entry
            .delivery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(delivery) = delivery {
            // Joins the thread, which may be waiting on a write.
            let _ = tokio::task::spawn_blocking(move || drop(delivery)).await;
        }
        let ranges = match entry.def.query {
            Some(_) => vec![StateScope::view_prefix(entry.def.id)],
            None => Vec::new(),
        };
        self.db
            .runtime()
            .drop_sink(
                entry.def.id,
                vec![Catalog::sink_entry_key(entry.def.id)],
                ranges,
            )
            .await?;
        catalog.remove_sink(name);
        Ok(())
    }

    /// A sink of materialized view `from`.
    fn view_input(catalog: &Catalog, from: &str) -> Result<Input> {
        let view = catalog.view(from);
        let Some((view, storage)) = view
            .as_ref()
            .and_then(|v| v.storage().cloned().map(|s| (v.clone(), s)))
        else {
            if view.is_some() || catalog.exists(from) {
                return Err(Error::coded(
                    "42809",
                    format!(
                        "\"{from}\" is not a materialized view: a sink reads the changes of a \
                         materialized view (or of its own query: CREATE SINK ... AS SELECT ...)"
                    ),
                ));
            }
            return Err(Error::UndefinedTable(from.to_string()));
        };
        let schema = storage.visible_schema().clone();
        let key = view.def().key.as_ref().map(|key| {
            key.iter()
                .filter_map(|&i| schema.fields().get(i).map(|f| f.name().clone()))
                .collect()
        });
        Ok(Input {
            id: view.def().id,
            from: from.to_string(),
            query: None,
            schema,
            key,
            append_only: view.def().append_only,
            depends_on: Vec::new(),
            models: Vec::new(),
        })
    }

    /// `SHOW CREATE SINK name`: the statement that makes the sink as it is (secrets hidden).
    pub(super) fn show_create_sink(&self, name: &str) -> Result<Output> {
        let Some(entry) = self.db.catalog().sink(name) else {
            return Err(Error::coded(
                "42704",
                format!("sink \"{name}\" does not exist"),
            ));
        };
        let schema = show_create_schema();
        let batch = datafusion::arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(datafusion::arrow::array::StringArray::from(vec![
                    entry.def.name.clone(),
                ])),
                Arc::new(datafusion::arrow::array::StringArray::from(vec![
                    create_statement(&entry.def),
                ])),
            ],
        )?;
        Ok(super::rows_output(schema, vec![batch], "SHOW".into()))
    }

    /// `SHOW SINKS`, by name.
    pub(super) fn show_sinks(&self) -> Result<Output> {
        let mut names: Vec<String> = self
            .db
            .catalog()
            .sinks()
            .iter()
            .map(|s| s.def.name.clone())
            .collect();
        names.sort();
        super::views::names_output(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::FormatDef;

    #[test]
    fn create_statements_hide_secrets_and_quote_names() {
        let def = SinkDef {
            id: 1,
            name: "Out".into(),
            from: "per user".into(),
            input: 2,
            query: None,
            depends_on: Vec::new(),
            models: Vec::new(),
            options: BTreeMap::from([
                ("connector".into(), "file".into()),
                ("s3.secret.key".into(), "abc".into()),
                ("path".into(), "s3://lake/it's/".into()),
            ]),
            format: FormatDef {
                format: "plain".into(),
                encode: "avro".into(),
                options: BTreeMap::from([(
                    "schema.registry".into(),
                    "http://me:pw@registry:8081/x@y".into(),
                )]),
            },
            key: Vec::new(),
            created_ms: 0,
        };
        assert_eq!(
            create_statement(&def),
            "CREATE SINK \"Out\" FROM \"per user\" WITH (connector = 'file', path = \
             's3://lake/it''s/', s3.secret.key = '[hidden]') FORMAT PLAIN ENCODE AVRO \
             (schema.registry = 'http://registry:8081/x@y')"
        );
        assert_eq!(without_credentials("plain"), "plain");
    }
}
