//! CREATE [MATERIALIZED] VIEW, DROP (tables and views, with CASCADE), SHOW [MATERIALIZED]
//! VIEWS, EXPLAIN CREATE MATERIALIZED VIEW and FLUSH — and the rebuilding of every view's
//! dataflow when the server starts.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder, col};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{CreateView, ObjectName, ObjectType, Query, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::{Output, Session, rows_output};
use crate::catalog::Catalog;
use crate::catalog::view::{View, ViewDef};
use crate::error::{Error, Result};
use crate::planner;
use crate::sql::{normalize_ident, table_name};
use crate::stream::ExprErrors;
use crate::stream::runtime::ViewFlow;
use crate::stream::state::StateScope;

/// The schema of `SHOW [MATERIALIZED] VIEWS`.
pub(super) fn show_views_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("Name", DataType::Utf8, false)]))
}

/// The schema of `EXPLAIN CREATE MATERIALIZED VIEW`.
pub(super) fn explain_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "QUERY PLAN",
        DataType::Utf8,
        false,
    )]))
}

/// The result of `SHOW VIEWS`, `SHOW SOURCES`, ...: one name per row.
pub(super) fn names_output(names: Vec<String>) -> Result<Output> {
    let schema = show_views_schema();
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(names))])?;
    Ok(rows_output(schema, vec![batch], "SHOW".into()))
}

/// Plans a query into a logical plan.
pub(super) async fn logical_plan(state: &SessionState, query: &Query) -> Result<LogicalPlan> {
    let statement = Statement::Query(Box::new(query.clone()));
    let plan = state
        .statement_to_plan(DfStatement::Statement(Box::new(statement)))
        .await?;
    if !plan.get_parameter_types()?.is_empty() {
        return Err(Error::coded(
            "42P02",
            "a view's query cannot have parameters",
        ));
    }
    super::postgres_plan(state, plan)
}

/// The options of `CREATE [MATERIALIZED] VIEW ... WITH (...)`: a materialized view's declared
/// key (`primary_key = 'a, b'`), as column names. Anything else is refused (`22023`).
fn view_options(
    options: &datafusion::sql::sqlparser::ast::CreateTableOptions,
    materialized: bool,
) -> Result<Option<Vec<String>>> {
    use datafusion::sql::sqlparser::ast::{CreateTableOptions, Expr as SqlExpr, SqlOption, Value};

    let list = match options {
        CreateTableOptions::With(list) if materialized => list,
        other => {
            crate::sql::ddl::refuse_options(other)?;
            return Ok(None);
        }
    };
    let mut key = None;
    for option in list {
        let SqlOption::KeyValue { key: name, value } = option else {
            return crate::sql::ddl::refuse_options(options).map(|_| None);
        };
        if !name.value.eq_ignore_ascii_case("primary_key") {
            return Err(Error::coded(
                "22023",
                format!("unrecognized parameter \"{name}\""),
            ));
        }
        let text = match value {
            SqlExpr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => s.clone(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        let columns = parse_column_list(&text).ok_or_else(|| {
            Error::coded(
                "22023",
                format!(
                    "invalid value for parameter \"primary_key\": {value} (a text of column names, such as 'user_id, ts')"
                ),
            )
        })?;
        if key.replace(columns).is_some() {
            return Err(Error::coded(
                "22023",
                "parameter \"primary_key\" specified more than once",
            ));
        }
    }
    Ok(key)
}

/// `a, "B", c` as column names (unquoted ones folded to lower case); `None` unless it is a
/// non-empty list of names.
fn parse_column_list(text: &str) -> Option<Vec<String>> {
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect).try_with_sql(text).ok()?;
    let idents = parser
        .parse_comma_separated(|p| p.parse_identifier())
        .ok()?;
    if parser.peek_token().token != datafusion::sql::sqlparser::tokenizer::Token::EOF {
        return None;
    }
    Some(idents.iter().map(normalize_ident).collect())
}

/// The positions of key columns `declared` among the view's columns `names`.
fn key_positions(declared: &[String], names: &[String]) -> Result<Vec<usize>> {
    let mut key = Vec::with_capacity(declared.len());
    for column in declared {
        let position = names.iter().position(|n| n == column).ok_or_else(|| {
            Error::UndefinedColumn(format!(
                "column \"{column}\" named in primary_key does not exist"
            ))
        })?;
        if key.contains(&position) {
            return Err(Error::coded(
                "42701",
                format!("column \"{column}\" appears twice in primary_key"),
            ));
        }
        key.push(position);
    }
    Ok(key)
}

/// The view's column names: the query's, or those the statement lists.
pub(super) fn column_names(plan: &LogicalPlan, listed: &[String]) -> Result<Vec<String>> {
    let names: Vec<String> = plan
        .schema()
        .fields()
        .iter()
        .map(|f| crate::sql::names::client_name(f.name()).to_string())
        .collect();
    if !listed.is_empty() && listed.len() > names.len() {
        return Err(Error::Syntax(
            "CREATE VIEW specifies more column names than columns".into(),
        ));
    }
    let mut out = names;
    for (i, name) in listed.iter().enumerate() {
        out[i] = name.clone();
    }
    let mut seen = BTreeSet::new();
    for name in &out {
        if !seen.insert(name) {
            return Err(Error::coded(
                "42701",
                format!("column \"{name}\" specified more than once"),
            ));
        }
    }
    Ok(out)
}

/// `plan` with its output columns renamed to `names`.
fn renamed(plan: LogicalPlan, names: &[String]) -> Result<LogicalPlan> {
    let exprs: Vec<_> = plan
        .schema()
        .columns()
        .into_iter()
        .zip(names)
        .map(|(c, name)| col(c).alias(name))
        .collect();
    Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
}

/// Rebuilds every stored view, in id order: plain views into the catalog, materialized views
/// into the catalog and into dataflows for the runtime.
pub(super) async fn recover(catalog: &Arc<Catalog>, ctx: &SessionContext) -> Result<Vec<ViewFlow>> {
    let mut flows = Vec::new();
    for def in catalog.stored_views()? {
        if def.temporary {
            // Its session ended with the previous run.
            catalog.delete_view_entry(def.id)?;
            continue;
        }
        // The stored text was parsed and rewritten once already: parse it as it is.
        let query = match Parser::parse_sql(&PostgreSqlDialect {}, &def.query)?.pop() {
            Some(Statement::Query(query)) => query,
            _ => {
                return Err(Error::Internal(format!(
                    "stored query of view {} is not a query",
                    def.name
                )));
            }
        };
        let state = ctx.state();
        let plan = logical_plan(&state, &query).await?;
        let names: Vec<String> = def.columns.iter().map(|c| c.name.clone()).collect();
        if def.materialized {
            let view = View::materialized(def.clone())?;
            let mut planned = planner::plan(
                &state,
                catalog,
                &plan,
                def.id,
                view.errors().clone(),
                def.emit_on_window_close,
            )?;
            planned.materialize(&view, catalog, false)?;
            catalog.insert_view(view);
            flows.push(ViewFlow {
                id: def.id,
                name: def.name.clone(),
                graph: planned.graph,
            });
        } else {
            let plan = renamed(plan, &names)?;
            catalog.insert_view(View::plain(def, plan));
        }
    }
    Ok(flows)
}

/// A plain view's dependencies (see [`dependencies`]), and whether it reads a temporary table or
/// view, which makes it temporary too.
fn plain_dependencies(catalog: &Catalog, query: &Query) -> Result<(Vec<u32>, bool)> {
    let statement = DfStatement::Statement(Box::new(Statement::Query(Box::new(query.clone()))));
    let (relations, _ctes) = datafusion::sql::resolve::resolve_table_references(&statement, true)?;
    let temporary = relations.iter().any(|r| {
        let key = crate::catalog::schema::reference_key(r);
        catalog.table(&key).is_some_and(|t| t.def().temporary)
            || catalog.view(&key).is_some_and(|v| v.def().temporary)
    });
    let mut ids: Vec<u32> = relations
        .iter()
        .filter_map(|r| catalog.relation_id(&crate::catalog::schema::reference_key(r)))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Ok((ids, temporary))
}

/// `CREATE OR REPLACE VIEW` keeps the view's columns, in order, with their names and types; it
/// may add columns after them (`42P16` otherwise, as in PostgreSQL).
fn compatible_columns(
    old: &[crate::table::ColumnDef],
    new: &[crate::table::ColumnDef],
) -> Result<()> {
    if new.len() < old.len() {
        return Err(Error::coded("42P16", "cannot drop columns from view"));
    }
    for (old, new) in old.iter().zip(new) {
        if old.name != new.name {
            return Err(Error::coded(
                "42P16",
                format!(
                    "cannot change name of view column \"{}\" to \"{}\"",
                    old.name, new.name
                ),
            ));
        }
        if old.data_type != new.data_type {
            return Err(Error::coded(
                "42P16",
                format!("cannot change data type of view column \"{}\"", old.name),
            ));
        }
    }
    Ok(())
}

/// The ids of the tables and views `query` names (plain views included, which planning inlines).
pub(super) fn dependencies(catalog: &Catalog, query: &Query) -> Result<Vec<u32>> {
    let statement = DfStatement::Statement(Box::new(Statement::Query(Box::new(query.clone()))));
    let (relations, _ctes) = datafusion::sql::resolve::resolve_table_references(&statement, true)?;
    let keys: Vec<String> = relations
        .iter()
        .map(crate::catalog::schema::reference_key)
        .collect();
    for key in &keys {
        let temporary = catalog.table(key).is_some_and(|t| t.def().temporary)
            || catalog.view(key).is_some_and(|v| v.def().temporary);
        if temporary {
            // The view would outlive the relation, which goes when its session ends.
            return Err(Error::NotSupported(format!(
                "a materialized view over temporary relation \"{key}\""
            )));
        }
    }
    let mut ids: Vec<u32> = keys.iter().filter_map(|k| catalog.relation_id(k)).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

impl Session<'_> {
    pub(super) async fn create_view(
        &mut self,
        create: &CreateView,
        emit_on_close: bool,
    ) -> Result<Output> {
        let kind = if create.materialized {
            "CREATE MATERIALIZED VIEW"
        } else {
            "CREATE VIEW"
        };
        if create.or_alter || (create.or_replace && create.materialized) {
            return Err(Error::NotSupported(format!("{kind} with OR REPLACE")));
        }
        if create.temporary && create.materialized {
            return Err(Error::NotSupported("temporary materialized views".into()));
        }
        let declared_key = view_options(&create.options, create.materialized)?;
        let name = table_name(&create.name)?;
        let listed: Vec<String> = create
            .columns
            .iter()
            .map(|c| normalize_ident(&c.name))
            .collect();
        let _guard = self.write_guard().await?;
        let catalog = self.db.catalog();
        catalog.check_schema(&name)?;
        // `CREATE OR REPLACE VIEW` of a plain view: replaced below, once the new one plans.
        let replaced = match catalog.view(&name) {
            Some(old) if create.or_replace && !old.def().materialized => Some(old),
            _ if create.or_replace && catalog.exists(&name) => {
                return Err(Error::coded("42809", format!("\"{name}\" is not a view")));
            }
            _ => None,
        };
        if replaced.is_none() && catalog.exists(&name) {
            if create.if_not_exists {
                self.notice(
                    "42P07",
                    format!("relation \"{name}\" already exists, skipping"),
                );
                return Ok(Output::Command(kind.into()));
            }
            return Err(Error::DuplicateTable(name));
        }
        let state = self.db.ctx().state();
        let plan = logical_plan(&state, &create.query).await?;
        let names = column_names(&plan, &listed)?;
        let query = create.query.to_string();
        let created_ms = chrono::Utc::now().timestamp_millis();
        if !create.materialized {
            let (depends_on, reads_temporary) = plain_dependencies(catalog, &create.query)?;
            let plan = renamed(plan, &names)?;
            let columns = ViewDef::columns_of(plan.schema().as_arrow(), &names);
            let temporary = create.temporary || reads_temporary;
            if temporary && !create.temporary {
                self.notice(
                    "00000",
                    format!(
                        "view \"{}\" will be a temporary view",
                        crate::common::names::split(&name).1
                    ),
                );
            }
            if let Some(old) = &replaced {
                compatible_columns(&old.def().columns, &columns)?;
                if depends_on.contains(&old.def().id) {
                    // It would read itself once the old definition is gone.
                    return Err(Error::NotSupported(format!(
                        "CREATE OR REPLACE VIEW {} reading the view it replaces",
                        old.name()
                    )));
                }
                if temporary && !old.def().temporary {
                    return Err(Error::NotSupported(format!(
                        "replacing permanent view {} with a temporary one",
                        old.name()
                    )));
                }
                if let Some(reader) = catalog.dependents(old.def().id).first() {
                    return Err(Error::NotSupported(format!(
                        "CREATE OR REPLACE VIEW of a view that {} reads",
                        view_noun(reader)
                    )));
                }
                if let Some(sink) = catalog.query_sinks_reading(old.def().id).first() {
                    return Err(Error::NotSupported(format!(
                        "CREATE OR REPLACE VIEW of a view that sink {} reads",
                        sink.def.name
                    )));
                }
            }
            let def = ViewDef {
                id: catalog.reserve_id()?,
                temporary,
                name,
                query,
                materialized: false,
                columns,
                key: None,
                key_checked: false,
                depends_on,
                models: crate::model::functions::models_used(&plan),
                created_ms,
                emit_on_window_close: false,
                append_only: false,
                watermarks: Vec::new(),
                appended: false,
                backfill_note: None,
            };
            let (name, id) = (def.name.clone(), def.id);
            match &replaced {
                Some(old) => catalog.replace_plain_view(old, View::plain(def, plan))?,
                None => catalog.create_plain_view(View::plain(def, plan))?,
            };
            if temporary {
                self.conn
                    .temporary_tables()
                    .add_view(self.db.catalog(), name, id);
            }
            return Ok(Output::Command(kind.into()));
        }
        let id = catalog.reserve_id()?;
        let errors = Arc::new(ExprErrors::default());
        let mut planned = planner::plan(&state, catalog, &plan, id, errors.clone(), emit_on_close)?;
        let columns = ViewDef::columns_of(&planned.schema, &names);
        let (key, key_checked) = match declared_key {
            None => (planned.key.clone(), false),
            Some(declared) => {
                let key = key_positions(&declared, &names)?;
                // A derived key inside the declared one makes it unique already.
                let implied = planned
                    .key
                    .as_ref()
                    .is_some_and(|derived| derived.iter().all(|c| key.contains(c)));
                (Some(key), !implied)
            }
        };
        // What the dataflow reads, and the plain views the query names on the way there.
        let mut depends_on = planned.graph.inputs();
        depends_on.extend(dependencies(catalog, &create.query)?);
        depends_on.sort_unstable();
        depends_on.dedup();
        let backfill_note = self.backfill_gaps(&planned.graph.inputs()).await?;
        if let Some(note) = &backfill_note {
            self.notice("01000", note.clone());
        }
        let def = ViewDef {
            id,
            name: name.clone(),
            query,
            materialized: true,
            columns,
            appended: key.is_none() && planned.append_only,
            key,
            key_checked,
            temporary: false,
            depends_on,
            models: crate::model::functions::models_used(&plan),
            created_ms,
            emit_on_window_close: emit_on_close,
            append_only: planned.append_only,
            watermarks: planned.watermarks.clone(),
            backfill_note,
        };
        let view = View::materialized(def.clone())?.with_errors(errors);
        planned.materialize(&view, catalog, true)?;
        let entry = Catalog::view_entry(&def)?;
        self.db
            .runtime()
            .add_view(
                ViewFlow {
                    id,
                    name,
                    graph: planned.graph,
                },
                vec![entry],
            )
            .await?;
        catalog.insert_view(view);
        Ok(Output::Command(kind.into()))
    }

    /// `EXPLAIN CREATE MATERIALIZED VIEW`: the dataflow, one operator per line.
    pub(super) async fn explain_view(
        &mut self,
        create: &CreateView,
        emit_on_close: bool,
    ) -> Result<Output> {
        let state = self.db.ctx().state();
        let plan = logical_plan(&state, &create.query).await?;
        // Planning touches no state: an id no view has is fine.
        let mut planned = planner::plan(
            &state,
            self.db.catalog(),
            &plan,
            u32::MAX,
            Arc::default(),
            emit_on_close,
        )?;
        let name = table_name(&create.name)?;
        let declared = view_options(&create.options, true)?;
        let graph = std::mem::take(&mut planned.graph);
        let key = match &planned.key {
            _ if declared.is_some() => {
                let declared = declared.unwrap_or_default();
                let listed: Vec<String> = create
                    .columns
                    .iter()
                    .map(|c| normalize_ident(&c.name))
                    .collect();
                let key = key_positions(&declared, &column_names(&plan, &listed)?)?;
                let implied = planned
                    .key
                    .as_ref()
                    .is_some_and(|derived| derived.iter().all(|c| key.contains(c)));
                let check = if implied { "" } else { ", checked" };
                format!("key=[{}] (declared{check})", declared.join(", "))
            }
            Some(key) => {
                let names: Vec<&str> = key
                    .iter()
                    .map(|&i| planned.schema.field(i).name().as_str())
                    .collect();
                format!("key=[{}]", names.join(", "))
            }
            None if planned.append_only => "rows appended".to_string(),
            None => "rows counted".to_string(),
        };
        let mut lines = vec![format!("Materialize: {name} {key}")];
        lines.extend(graph.explain().into_iter().map(|l| format!("  {l}")));
        let schema = explain_schema();
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(lines))])?;
        Ok(rows_output(schema, vec![batch], "EXPLAIN".into()))
    }

    /// `SHOW VIEWS`, `SHOW MATERIALIZED VIEWS`.
    pub(super) fn show_views(&self, materialized: bool) -> Result<Output> {
        let names: Vec<String> = self
            .db
            .catalog()
            .views()
            .iter()
            .filter(|v| v.def().materialized == materialized)
            .map(|v| v.name().to_string())
            .collect();
        names_output(names)
    }

    /// FLUSH: returns once every write acknowledged before it is visible in every view.
    pub(super) async fn flush(&mut self) -> Result<Output> {
        let seq = self.db.changelog().published_seq();
        self.db.runtime().flush(seq).await?;
        Ok(Output::Command("FLUSH".into()))
    }

    /// DROP TABLE / VIEW / MATERIALIZED VIEW, refusing (or with CASCADE, also dropping) the
    /// views that depend on what is dropped.
    pub(super) async fn drop_relations(
        &mut self,
        kind: Kind,
        if_exists: bool,
        names: &[String],
        cascade: bool,
    ) -> Result<Output> {
        let (noun, tag) = match kind {
            Kind::Table => ("table", "DROP TABLE"),
            Kind::View => ("view", "DROP VIEW"),
            Kind::MaterializedView => ("materialized view", "DROP MATERIALIZED VIEW"),
            Kind::Source => ("source", "DROP SOURCE"),
        };
        let _guard = self.write_guard().await?;
        let catalog = self.db.catalog().clone();
        let mut targets: Vec<(u32, String)> = Vec::new();
        for name in names.iter().cloned() {
            let found = match kind {
                Kind::Table => catalog.table(&name).map(|t| t.def().id),
                Kind::Source => catalog.source(&name).map(|s| s.def.id),
                _ => catalog
                    .view(&name)
                    .filter(|v| v.def().materialized == (kind == Kind::MaterializedView))
                    .map(|v| v.def().id),
            };
            match found {
                Some(id) => targets.push((id, name)),
                None if catalog.exists(&name) => {
                    let actual = relation_noun(&catalog, &name);
                    return Err(Error::coded(
                        "42809",
                        format!("\"{name}\" is not a {noun}; it is a {actual}"),
                    ));
                }
                None if if_exists => {
                    self.notice(
                        "00000",
                        format!("{noun} \"{name}\" does not exist, skipping"),
                    );
                }
                None => {
                    return Err(Error::coded(
                        "42P01",
                        format!("{noun} \"{name}\" does not exist"),
                    ));
                }
            }
        }
        // Tables whose rows foreign keys of other tables reference.
        if kind == Kind::Table {
            for (_, name) in &targets {
                let Some(table) = catalog.table(name) else {
                    continue;
                };
                let dependents: Vec<String> = super::foreign_keys::referencing(self.db, &table)
                    .into_iter()
                    .filter(|(child, _)| !targets.iter().any(|(_, n)| n == child.name()))
                    .map(|(child, fk)| {
                        format!(
                            "constraint {} on table {} depends on table {name}",
                            fk.name,
                            child.name()
                        )
                    })
                    .collect();
                if dependents.is_empty() {
                    continue;
                }
                if cascade {
                    return Err(Error::NotSupported(format!(
                        "DROP TABLE ... CASCADE of a table foreign keys reference (drop {} first)",
                        dependents.join("; ")
                    )));
                }
                return Err(Error::DependentObjects {
                    message: format!("cannot drop table {name} because other objects depend on it"),
                    detail: dependents.join("\n"),
                });
            }
        }
        let seeds = targets
            .iter()
            .map(|(id, name)| (*id, relation_noun_named(&catalog, name)))
            .collect();
        let first = targets.first().map(|(_, n)| n.clone()).unwrap_or_default();
        self.drop_with_dependents(noun, &first, seeds, Vec::new(), cascade)
            .await?;
        for (id, name) in &targets {
            if catalog.table(name).is_some_and(|t| t.def().id == *id) {
                catalog.drop_table(name)?;
            }
        }
        Ok(Output::Command(tag.into()))
    }

    /// Drops the views that depend on relations `seeds` (id, described) or that are listed in
    /// `direct` (a view and what it depends on, described), and everything depending on those,
    /// newest first; refuses (2BP01, naming each) unless `cascade`. The relations themselves
    /// (sources included) are dropped when they are views or sources; tables are left to the
    /// caller.
    pub(super) async fn drop_with_dependents(
        &mut self,
        noun: &str,
        first: &str,
        seeds: Vec<(u32, String)>,
        direct: Vec<(Arc<View>, String)>,
        cascade: bool,
    ) -> Result<()> {
        let catalog = self.db.catalog().clone();
        let mut doomed: BTreeSet<u32> = seeds.iter().map(|(id, _)| *id).collect();
        let described_seeds = seeds.clone();
        let mut dependents: Vec<(Arc<View>, String)> = Vec::new();
        let mut frontier: Vec<(u32, String)> = seeds;
        for (view, on) in direct {
            if doomed.insert(view.def().id) {
                frontier.push((view.def().id, view_noun(&view)));
                dependents.push((view, on));
            }
        }
        while let Some((id, described)) = frontier.pop() {
            for view in catalog.dependents(id) {
                if doomed.insert(view.def().id) {
                    frontier.push((view.def().id, view_noun(&view)));
                    dependents.push((view, described.clone()));
                }
            }
        }
        // Sinks of what is dropped go with it: those of a view dropped, and those whose own
        // query reads something dropped.
        let described: std::collections::BTreeMap<u32, String> = dependents
            .iter()
            .map(|(v, _)| (v.def().id, view_noun(v)))
            .chain(described_seeds)
            .collect();
        let sinks: Vec<_> = catalog
            .sinks()
            .into_iter()
            .filter_map(|s| {
                let on = std::iter::once(&s.def.input)
                    .chain(&s.def.depends_on)
                    .find_map(|id| described.get(id))?;
                Some((s, on.clone()))
            })
            .collect();
        if (!dependents.is_empty() || !sinks.is_empty()) && !cascade {
            let detail = dependents
                .iter()
                .map(|(v, on)| format!("{} depends on {on}", view_noun(v)))
                .chain(
                    sinks
                        .iter()
                        .map(|(s, on)| format!("sink {} depends on {on}", s.def.name)),
                )
                .collect::<Vec<_>>()
                .join("\n");
            return Err(Error::DependentObjects {
                message: format!("cannot drop {noun} {first} because other objects depend on it"),
                detail,
            });
        }
        for (view, _) in &dependents {
            self.notice("00000", format!("drop cascades to {}", view_noun(view)));
        }
        for (sink, _) in &sinks {
            self.notice("00000", format!("drop cascades to sink {}", sink.def.name));
            self.drop_sink(&sink.def.name).await?;
        }
        // Newest first: a view is always newer than what it reads.
        let mut order: Vec<u32> = doomed.into_iter().collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        for id in order {
            if let Some(view) = catalog.views().into_iter().find(|v| v.def().id == id) {
                if view.def().materialized {
                    let mut rows = vec![b't'];
                    rows.extend_from_slice(&id.to_be_bytes());
                    // Its indexes go with it, in the same commit.
                    let indexes = catalog.indexes_on(view.name());
                    let mut entries = vec![Catalog::view_entry_key(id)];
                    let mut ranges = vec![rows, StateScope::view_prefix(id)];
                    for index in &indexes {
                        entries.push(Catalog::index_entry_key(index.id));
                        ranges.push(index.key_prefix().to_vec());
                    }
                    self.db.runtime().drop_view(id, entries, ranges).await?;
                    catalog.remove_view(view.name());
                    for index in &indexes {
                        catalog.forget_index(index);
                    }
                } else {
                    catalog.drop_plain_view(view.name())?;
                }
            } else if let Some(source) = catalog.sources().into_iter().find(|s| s.def.id == id) {
                self.db
                    .runtime()
                    .drop_source(id, vec![Catalog::source_entry_key(id)])
                    .await?;
                catalog.remove_source(&source.def.name);
            }
        }
        Ok(())
    }
}

/// "materialized view v" or "view v".
pub(super) fn view_noun(view: &View) -> String {
    if view.def().materialized {
        format!("materialized view {}", view.name())
    } else {
        format!("view {}", view.name())
    }
}

/// What DROP drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Table,
    View,
    MaterializedView,
    Source,
}

impl Kind {
    /// The kind an `ObjectType` of DROP names.
    pub(super) fn of(object_type: ObjectType) -> Option<Self> {
        Some(match object_type {
            ObjectType::Table => Kind::Table,
            ObjectType::View => Kind::View,
            ObjectType::MaterializedView => Kind::MaterializedView,
            _ => return None,
        })
    }
}

/// The names of `DROP`, resolved.
pub(super) fn drop_names(names: &[ObjectName]) -> Result<Vec<String>> {
    names.iter().map(table_name).collect()
}

/// "table", "view", "materialized view" or "source", for what `name` is.
fn relation_noun(catalog: &Catalog, name: &str) -> &'static str {
    if catalog.source(name).is_some() {
        return "source";
    }
    match catalog.view(name) {
        Some(v) if v.def().materialized => "materialized view",
        Some(_) => "view",
        None => "table",
    }
}

fn relation_noun_named(catalog: &Catalog, name: &str) -> String {
    format!("{} {name}", relation_noun(catalog, name))
}
