//! Data-modifying statements in WITH: `WITH t AS (INSERT | UPDATE | DELETE ... RETURNING ...)
//! query`, and a WITH clause before an INSERT, UPDATE or DELETE.
//!
//! As in PostgreSQL, every part of the statement sees the database as it was when the statement
//! started: the writes of the WITH queries are worked out first, in the order their references
//! to each other need, each reading the rows the ones before it returned; then the main query
//! or write runs; then all the writes commit together, under one write guard. Nothing commits
//! if any part fails. Each data-modifying query runs to its end, whether or not the main query
//! reads all of its rows.
//!
//! The rows a WITH query returns are held in memory tables that only this statement's planning
//! sees, under `"augur.with".rows.<name>`; the data-modifying queries and the WITH queries they
//! read are planned against those.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemTable, MemoryCatalogProvider,
    MemoryCatalogProviderList, MemorySchemaProvider, SchemaProvider,
};
use datafusion::common::ParamValues;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    Cte, Ident, ObjectName, ObjectNamePart, Query, SetExpr, Statement, TableFactor, Visit,
    VisitMut, Visitor, VisitorMut,
};

use super::dml::WritePlan;
use super::{Database, Output, SessionEnv, rows_output};
use crate::error::{Error, Result};
use crate::sql::normalize_ident;
use crate::table::Table;
use crate::table::writer::TableChanges;

/// The catalog and schema holding the rows of a statement's WITH queries.
const CATALOG: &str = "augur.with";
const SCHEMA: &str = "rows";

/// Rows a statement reads besides the database's relations: what the WITH queries it depends
/// on returned, by name.
#[derive(Debug, Default, Clone)]
pub(super) struct WithRows(Vec<(String, Arc<MemTable>)>);

impl WithRows {
    /// `ctx`'s state, with these rows visible as `"augur.with".rows.<name>`.
    pub(super) fn state(&self, ctx: &SessionContext) -> Result<SessionState> {
        let state = ctx.state();
        if self.0.is_empty() {
            return Ok(state);
        }
        let list = MemoryCatalogProviderList::new();
        let existing = state.catalog_list();
        for name in existing.catalog_names() {
            if let Some(catalog) = existing.catalog(&name) {
                list.register_catalog(name, catalog);
            }
        }
        let schema = MemorySchemaProvider::new();
        for (name, table) in &self.0 {
            schema.register_table(name.clone(), table.clone())?;
        }
        let catalog = MemoryCatalogProvider::new();
        catalog.register_schema(SCHEMA, Arc::new(schema))?;
        list.register_catalog(CATALOG.to_string(), Arc::new(catalog));
        Ok(SessionStateBuilder::new_from_existing(state)
            .with_catalog_list(Arc::new(list))
            .build())
    }

    /// Makes room for the rows of `name`, filled in when they have been computed.
    fn add(&mut self, name: &str, schema: SchemaRef) -> Result<Arc<MemTable>> {
        let table = Arc::new(MemTable::try_new(schema, vec![vec![]])?);
        self.0.push((name.to_string(), table.clone()));
        Ok(table)
    }
}

/// True when `statement` holds a data-modifying statement in its WITH clause, or is an INSERT,
/// UPDATE or DELETE after a WITH clause.
pub(super) fn is_modifying(statement: &Statement) -> bool {
    let Statement::Query(query) = statement else {
        return false;
    };
    query.with.as_ref().is_some_and(|with| {
        is_write(&query.body) || with.cte_tables.iter().any(|c| is_write(&c.query.body))
    })
}

fn is_write(body: &SetExpr) -> bool {
    matches!(
        body,
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_)
    )
}

/// The statement of a data-modifying query.
fn write_of(body: &SetExpr) -> Option<&Statement> {
    match body {
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) => Some(s),
        _ => None,
    }
}

/// One step worked out before the main query: a WITH query whose rows later steps read.
enum Step {
    /// A data-modifying query; its RETURNING rows go to `rows`.
    Write {
        plan: WritePlan,
        rows: Option<Arc<MemTable>>,
    },
    /// A plain query a data-modifying one reads.
    Query {
        plan: LogicalPlan,
        rows: Arc<MemTable>,
    },
}

enum Main {
    Query(LogicalPlan),
    Write(WritePlan),
}

/// The statement planned: its steps in the order they run, then the main query or write.
struct Planned {
    steps: Vec<Step>,
    main: Main,
}

/// The columns `statement` returns, if any, and the types of its parameters (`$1`, ...).
pub(super) async fn describe(
    db: &Database,
    statement: &Statement,
) -> Result<(Option<SchemaRef>, Vec<DataType>)> {
    let planned = plan(db, statement).await?;
    let mut types: Vec<DataType> = Vec::new();
    let mut merge = |found: Vec<DataType>| {
        for (i, t) in found.into_iter().enumerate() {
            if i >= types.len() {
                types.resize(i + 1, DataType::Null);
            }
            if types[i] == DataType::Null {
                types[i] = t;
            }
        }
    };
    for step in &planned.steps {
        match step {
            Step::Write { plan, .. } => merge(plan.param_types(db.models())?),
            Step::Query { plan, .. } => merge(super::param_types(plan, db.models())?),
        }
    }
    let schema = match &planned.main {
        Main::Query(plan) => {
            merge(super::param_types(plan, db.models())?);
            Some(Arc::new(plan.schema().as_arrow().clone()))
        }
        Main::Write(write) => {
            merge(write.param_types(db.models())?);
            write.returning_schema()
        }
    };
    Ok((schema, types))
}

/// Runs `statement` (see the module's documentation).
pub(super) async fn execute(
    db: &Database,
    env: &SessionEnv,
    statement: &Statement,
    params: ParamValues,
    lock_timeout: Option<std::time::Duration>,
) -> Result<Output> {
    let planned = plan(db, statement).await?;
    let _guard = db.write_guard(lock_timeout).await?;
    // One set of changes per table: the writes to a table see each other's keys.
    let mut changes: Vec<(&Table, TableChanges<'_>)> = Vec::new();
    for step in &planned.steps {
        match step {
            Step::Write { plan, rows } => {
                let i = changes_of(&mut changes, db, plan.table());
                let done = plan
                    .apply(db, env, params.clone(), &mut changes[i].1)
                    .await?;
                if let (Some(rows), Some((_, batches))) = (rows, done.returning()) {
                    fill(rows, batches.clone()).await?;
                }
            }
            Step::Query { plan, rows } => {
                let plan = plan.clone().replace_params_with_values(&params)?;
                let (_, batches) = collect(db, env, plan).await?;
                fill(rows, batches).await?;
            }
        }
    }
    let output = match &planned.main {
        Main::Query(plan) => {
            let plan = plan.clone().replace_params_with_values(&params)?;
            let (schema, batches) = collect(db, env, plan).await?;
            rows_output(schema, batches, "SELECT".into())
        }
        Main::Write(write) => {
            let i = changes_of(&mut changes, db, write.table());
            write
                .apply(db, env, params, &mut changes[i].1)
                .await?
                .output()
        }
    };
    for (table, changes) in changes {
        changes.commit(db.log_for(table.def().id))?;
    }
    Ok(output)
}

/// The position in `changes` of the changes to `table`, added if there are none yet.
fn changes_of<'a>(
    changes: &mut Vec<(&'a Table, TableChanges<'a>)>,
    db: &'a Database,
    table: &'a Arc<Table>,
) -> usize {
    let id = table.def().id;
    match changes.iter().position(|(t, _)| t.def().id == id) {
        Some(i) => i,
        None => {
            changes.push((
                table.as_ref(),
                TableChanges::new(db.store(), table.as_ref()),
            ));
            changes.len() - 1
        }
    }
}

/// Runs a query to its end.
async fn collect(
    db: &Database,
    env: &SessionEnv,
    plan: LogicalPlan,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    match super::run_query(db, env, plan).await? {
        Output::Rows { schema, stream, .. } => {
            let batches = futures::TryStreamExt::try_collect(stream).await?;
            Ok((schema, batches))
        }
        _ => Err(Error::Internal("a query returned no rows".into())),
    }
}

/// Puts a step's rows where the steps after it read them.
async fn fill(rows: &MemTable, batches: Vec<RecordBatch>) -> Result<()> {
    let schema = datafusion::catalog::TableProvider::schema(rows);
    let batches = batches
        .into_iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if let Some(partition) = rows.batches.first() {
        *partition.write().await = batches;
    }
    Ok(())
}

/// A WITH query of the statement.
struct WithQuery {
    name: String,
    cte: Cte,
    /// The names of the statement's other WITH queries it reads.
    reads: HashSet<String>,
}

async fn plan(db: &Database, statement: &Statement) -> Result<Planned> {
    let Statement::Query(query) = statement else {
        return Err(Error::Internal("not a query with WITH".into()));
    };
    refuse_nested_writes(query)?;
    let mut query = query.as_ref().clone();
    let with = query
        .with
        .take()
        .ok_or_else(|| Error::Internal("not a query with WITH".into()))?;
    let names: HashSet<String> = with
        .cte_tables
        .iter()
        .map(|c| normalize_ident(&c.alias.name))
        .collect();
    let queries: Vec<WithQuery> = with
        .cte_tables
        .iter()
        .map(|cte| {
            let name = normalize_ident(&cte.alias.name);
            let mut reads = references(&cte.query, &names);
            if is_write(&cte.query.body) {
                if with.recursive && reads.contains(&name) {
                    return Err(Error::coded(
                        "42P19",
                        format!(
                            "recursive query \"{name}\" must not contain data-modifying statements"
                        ),
                    ));
                }
                if cte.query.with.is_some() {
                    return Err(Error::NotSupported(
                        "a WITH clause inside a data-modifying WITH query".into(),
                    ));
                }
            }
            // A recursive query reads itself: not a step before it.
            reads.remove(&name);
            Ok(WithQuery {
                name,
                cte: cte.clone(),
                reads,
            })
        })
        .collect::<Result<_>>()?;
    let by_name: HashMap<&str, usize> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| (q.name.as_str(), i))
        .collect();
    // The WITH queries worked out before the main query: every data-modifying one, the ones
    // those read, and the ones a main write reads; each after the ones it reads.
    let main_write = write_of(&query.body).cloned();
    let mut roots: Vec<usize> = (0..queries.len())
        .filter(|&i| is_write(&queries[i].cte.query.body))
        .collect();
    if let Some(write) = &main_write {
        let read = references(write, &names);
        roots.extend(read.iter().filter_map(|n| by_name.get(n.as_str()).copied()));
    }
    let mut order = Vec::new();
    let mut state = vec![0u8; queries.len()];
    for root in roots {
        visit(root, &queries, &by_name, &mut state, &mut order)?;
    }
    let mut rows = WithRows::default();
    let mut steps = Vec::with_capacity(order.len());
    let mut computed: HashSet<String> = HashSet::new();
    for i in order {
        let query = &queries[i];
        let columns: Vec<String> = query
            .cte
            .alias
            .columns
            .iter()
            .map(|c| normalize_ident(&c.name))
            .collect();
        let step = match write_of(&query.cte.query.body) {
            Some(write) => {
                let mut write = write.clone();
                read_computed_by_write(&mut write, &computed);
                let plan = WritePlan::reading(db, &write, &rows).await?;
                let table = match plan.returning_schema() {
                    Some(schema) => Some(rows.add(&query.name, renamed(&schema, &columns)?)?),
                    None => None,
                };
                Step::Write { plan, rows: table }
            }
            None => {
                let mut cte = query.cte.clone();
                read_computed(&mut cte.query, &computed);
                let text = format!(
                    "WITH {}{cte} SELECT * FROM {}",
                    if with.recursive { "RECURSIVE " } else { "" },
                    quote(&query.name)
                );
                let statement = db
                    .parser()
                    .parse(&text)?
                    .pop()
                    .ok_or_else(|| Error::Internal("empty WITH query".into()))?;
                let plan = rows
                    .state(db.ctx())?
                    .statement_to_plan(DfStatement::Statement(Box::new(statement)))
                    .await?;
                let plan = super::postgres_plan(db.ctx(), plan)?;
                let schema = Arc::new(plan.schema().as_arrow().clone());
                let table = rows.add(&query.name, schema)?;
                Step::Query { plan, rows: table }
            }
        };
        computed.insert(query.name.clone());
        steps.push(step);
    }
    let main = match main_write {
        Some(mut write) => {
            read_computed_by_write(&mut write, &computed);
            Main::Write(WritePlan::reading(db, &write, &rows).await?)
        }
        None => {
            // The main query keeps the WITH clause; a data-modifying query in it reads the rows
            // its step returned.
            let mut kept = with.clone();
            // A data-modifying query without RETURNING has no rows to read.
            let silent: HashSet<String> = kept
                .cte_tables
                .iter()
                .filter(|c| write_of(&c.query.body).is_some_and(|w| !has_returning(w)))
                .map(|c| normalize_ident(&c.alias.name))
                .collect();
            kept.cte_tables
                .retain(|c| !silent.contains(&normalize_ident(&c.alias.name)));
            let mut read = references(&query, &silent);
            for cte in &kept.cte_tables {
                read.extend(references(&cte.query, &silent));
            }
            if let Some(name) = read.into_iter().next() {
                return Err(Error::coded(
                    "0A000",
                    format!("WITH query \"{name}\" does not have a RETURNING clause"),
                ));
            }
            for cte in kept.cte_tables.iter_mut() {
                if is_write(&cte.query.body) {
                    let name = normalize_ident(&cte.alias.name);
                    let text = format!(
                        "SELECT * FROM {}.{}.{}",
                        quote(CATALOG),
                        quote(SCHEMA),
                        quote(&name)
                    );
                    let Some(Statement::Query(select)) = db.parser().parse(&text)?.pop() else {
                        return Err(Error::Internal("WITH rows did not parse".into()));
                    };
                    cte.query = select;
                }
            }
            query.with = (!kept.cte_tables.is_empty()).then_some(kept);
            let plan = rows
                .state(db.ctx())?
                .statement_to_plan(DfStatement::Statement(Box::new(Statement::Query(
                    Box::new(query),
                ))))
                .await?;
            Main::Query(super::postgres_plan(db.ctx(), plan)?)
        }
    };
    Ok(Planned { steps, main })
}

/// Orders `i` after the WITH queries it reads (depth first); `state` marks queries being
/// visited (1) and placed (2).
fn visit(
    i: usize,
    queries: &[WithQuery],
    by_name: &HashMap<&str, usize>,
    state: &mut [u8],
    order: &mut Vec<usize>,
) -> Result<()> {
    match state[i] {
        2 => return Ok(()),
        1 => {
            return Err(Error::coded(
                "42P19",
                format!(
                    "recursive reference to query \"{}\" must not appear within its non-recursive term",
                    queries[i].name
                ),
            ));
        }
        _ => {}
    }
    state[i] = 1;
    let mut reads: Vec<&String> = queries[i].reads.iter().collect();
    reads.sort();
    for name in reads {
        if let Some(&j) = by_name.get(name.as_str()) {
            visit(j, queries, by_name, state, order)?;
        }
    }
    state[i] = 2;
    order.push(i);
    Ok(())
}

fn has_returning(write: &Statement) -> bool {
    match write {
        Statement::Insert(insert) => insert.returning.is_some(),
        Statement::Update(update) => update.returning.is_some(),
        Statement::Delete(delete) => delete.returning.is_some(),
        _ => false,
    }
}

/// Refuses a query with a data-modifying statement in the WITH clause of one of its subqueries
/// (`0A000`): PostgreSQL takes them in the WITH clause of the statement only.
pub(super) fn refuse_nested_writes(query: &Query) -> Result<()> {
    struct Nested {
        top: bool,
    }
    impl Visitor for Nested {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if std::mem::take(&mut self.top) {
                return ControlFlow::Continue(());
            }
            match &query.with {
                Some(with) if with.cte_tables.iter().any(|c| is_write(&c.query.body)) => {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    if query.visit(&mut Nested { top: true }).is_break() {
        return Err(Error::coded(
            "0A000",
            "WITH clause containing a data-modifying statement must be at the top level",
        ));
    }
    Ok(())
}

/// The names among `names` that `node` reads as relations.
fn references<V: Visit>(node: &V, names: &HashSet<String>) -> HashSet<String> {
    let mut found = HashSet::new();
    let _ = datafusion::sql::sqlparser::ast::visit_relations(node, |name| {
        if let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() {
            let name = normalize_ident(ident);
            if names.contains(&name) {
                found.insert(name);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// Points the references of `node` to the WITH queries in `computed` at their rows.
fn read_computed<V: VisitMut>(node: &mut V, computed: &HashSet<String>) {
    struct Computed<'a>(&'a HashSet<String>);
    impl VisitorMut for Computed<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, alias, .. } = factor
                && let [ObjectNamePart::Identifier(ident)] = name.0.as_slice()
                && self.0.contains(&normalize_ident(ident))
            {
                let table = normalize_ident(ident);
                if alias.is_none() {
                    // The rows keep the name the query gave them: `t.a` still reads them.
                    *alias = Some(datafusion::sql::sqlparser::ast::TableAlias {
                        explicit: true,
                        name: ident.clone(),
                        columns: vec![],
                        at: None,
                    });
                }
                *name = ObjectName(
                    [CATALOG, SCHEMA, table.as_str()]
                        .iter()
                        .map(|p| ObjectNamePart::Identifier(Ident::with_quote('"', *p)))
                        .collect(),
                );
            }
            ControlFlow::Continue(())
        }
    }
    let _ = node.visit(&mut Computed(computed));
}

/// Like [`read_computed`] for the main write, whose target is a table even where a WITH query
/// has its name.
fn read_computed_by_write(write: &mut Statement, computed: &HashSet<String>) {
    match write {
        Statement::Insert(insert) => {
            if let Some(source) = insert.source.as_mut() {
                read_computed(source.as_mut(), computed);
            }
            if let Some(on) = insert.on.as_mut() {
                read_computed(on, computed);
            }
        }
        Statement::Update(update) => {
            let target = update.table.relation.clone();
            read_computed(write, computed);
            if let Statement::Update(update) = write {
                update.table.relation = target;
            }
        }
        Statement::Delete(delete) => {
            let target = delete.from.clone();
            read_computed(write, computed);
            if let Statement::Delete(delete) = write {
                delete.from = target;
            }
        }
        _ => {}
    }
}

/// `schema` with its columns named `columns` (as many as are given).
fn renamed(schema: &SchemaRef, columns: &[String]) -> Result<SchemaRef> {
    if columns.is_empty() {
        return Ok(schema.clone());
    }
    if columns.len() > schema.fields().len() {
        return Err(Error::coded(
            "42P10",
            format!(
                "WITH query has {} columns available but {} columns specified",
                schema.fields().len(),
                columns.len()
            ),
        ));
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match columns.get(i) {
            Some(name) => f.as_ref().clone().with_name(name),
            None => f.as_ref().clone(),
        })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

fn quote(ident: &str) -> String {
    super::dml::quote(ident)
}
