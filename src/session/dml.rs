//! INSERT, UPDATE and DELETE: planned with DataFusion, applied by the table writer.
//!
//! - INSERT plans through DataFusion's own INSERT planning (column lists, DEFAULTs, casts to
//!   the column types); Augur runs the input and writes the rows, handling ON CONFLICT itself.
//! - UPDATE and DELETE become a SELECT of the affected rows (their whole stored rows, hidden row
//!   ids included, plus the new values of an UPDATE), planned in a context that shows hidden
//!   columns. Every affected row is read and rewritten under the write lock, so concurrent
//!   updates never lose each other's changes.
//! - RETURNING expressions are planned against the table's columns and evaluated over the
//!   rows written.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ParamValues, Result as DfResult, ScalarValue, TableReference};
use datafusion::logical_expr::expr::{Exists, InList, InSubquery};
use datafusion::logical_expr::{Expr, LogicalPlan, Subquery, WriteOp, lit};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::ast::{
    Assignment, AssignmentTarget, Delete, FromTable, Ident, Insert, ObjectName, OnConflictAction,
    OnInsert, SelectItem, Statement, TableFactor, TableObject, Update, UpdateTableFromKind,
};

use super::modifying_with::WithRows;
use super::{Database, Output, compile, evaluate, rows_output};
use crate::error::{Error, Result};
use crate::sql::{normalize_ident, table_name};
use crate::table::Table;
use crate::table::index::Index;
use crate::table::writer::{OnConflict, TableChanges};

/// A planned INSERT, UPDATE or DELETE.
#[derive(Debug)]
pub struct WritePlan {
    table: Arc<Table>,
    kind: Kind,
    /// The plan producing the rows the statement acts on.
    input: LogicalPlan,
    returning: Option<Returning>,
}

#[derive(Debug)]
enum Kind {
    /// `input` yields rows in the table's visible columns.
    Insert(InsertConflict),
    /// `input` yields whole stored rows, then the new values of `columns` (visible positions).
    Update { columns: Vec<usize> },
    /// `input` yields whole stored rows.
    Delete,
}

#[derive(Debug)]
enum InsertConflict {
    Fail,
    /// `ON CONFLICT [target] DO NOTHING`: rows that conflict on any of the arbiters are skipped.
    Skip(Vec<Arbiter>),
    /// `ON CONFLICT target DO UPDATE SET ...`: expressions over the existing row (qualified by
    /// the table name) and the proposed one (`excluded`).
    Update {
        arbiter: Arbiter,
        columns: Vec<usize>,
        /// A projection over the existing and the proposed row whose expressions are the new
        /// values of `columns`, then the WHERE condition if there is one.
        exprs: Box<LogicalPlan>,
        has_condition: bool,
        schema: Arc<DFSchema>,
    },
}

/// An ON CONFLICT DO UPDATE clause ready to run: the new values of its columns, then its WHERE
/// condition if there is one.
type CompiledUpdate = (Vec<Arc<dyn PhysicalExpr>>, Option<Arc<dyn PhysicalExpr>>);

/// A constraint an ON CONFLICT clause decides conflicts on, as PostgreSQL infers it from the
/// conflict target.
#[derive(Debug, Clone, PartialEq)]
enum Arbiter {
    /// The primary key.
    PrimaryKey,
    /// A unique index (or `UNIQUE` constraint), by id.
    Index(u32),
}

/// What a write did, its changes not yet committed.
pub(super) struct Applied {
    /// Rows inserted, updated or deleted.
    count: usize,
    /// Completion tag without the row count.
    tag: &'static str,
    /// The RETURNING rows, if the statement has RETURNING.
    returning: Option<(SchemaRef, Vec<RecordBatch>)>,
}

impl Applied {
    /// The RETURNING rows, if the statement has RETURNING.
    pub(super) fn returning(&self) -> Option<&(SchemaRef, Vec<RecordBatch>)> {
        self.returning.as_ref()
    }

    /// The statement's result.
    pub(super) fn output(self) -> Output {
        match self.returning {
            None => Output::Command(format!("{} {}", self.tag, self.count)),
            Some((schema, rows)) => rows_output(schema, rows, self.tag.into()),
        }
    }
}

/// Compiled RETURNING list.
#[derive(Debug)]
struct Returning {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The table's visible columns, qualified by the name the statement gave the table.
    input_schema: Arc<DFSchema>,
    schema: SchemaRef,
}

impl WritePlan {
    /// Plans `statement`, which is an INSERT, UPDATE or DELETE.
    pub async fn new(db: &Database, statement: &Statement) -> Result<Self> {
        Self::reading(db, statement, &WithRows::default()).await
    }

    /// Plans `statement`, which may read `rows` (the results of the data-modifying queries of
    /// its WITH clause).
    pub(super) async fn reading(
        db: &Database,
        statement: &Statement,
        rows: &WithRows,
    ) -> Result<Self> {
        match statement {
            Statement::Insert(insert) => plan_insert(db, insert, rows).await,
            Statement::Update(update) => plan_update(db, update, rows).await,
            Statement::Delete(delete) => plan_delete(db, delete, rows).await,
            other => Err(Error::Internal(format!("not a write: {other}"))),
        }
    }

    /// Columns of the RETURNING rows, if the statement has RETURNING.
    pub fn returning_schema(&self) -> Option<SchemaRef> {
        self.returning.as_ref().map(|r| r.schema.clone())
    }

    /// Parameter types, by position.
    pub fn param_types(&self, models: &crate::model::Models) -> Result<Vec<DataType>> {
        let mut types = super::param_types(&self.input, models)?;
        if let Kind::Insert(InsertConflict::Update { exprs, .. }) = &self.kind {
            for (i, ty) in super::param_types(exprs, models)?.into_iter().enumerate() {
                if i >= types.len() {
                    types.resize(i + 1, DataType::Null);
                }
                if types[i] == DataType::Null {
                    types[i] = ty;
                }
            }
        }
        Ok(types)
    }

    /// Runs the statement, waiting at most `lock_timeout` for other writers.
    pub async fn execute(
        &self,
        db: &Database,
        env: &super::SessionEnv,
        params: ParamValues,
        lock_timeout: Option<std::time::Duration>,
    ) -> Result<Output> {
        let _guard = db.write_guard(lock_timeout).await?;
        let mut changes = TableChanges::new(db.store(), &self.table);
        let applied = self.apply(db, env, params, &mut changes).await?;
        changes.commit(db.log_for(self.table.def().id))?;
        Ok(applied.output())
    }

    /// The table written.
    pub(super) fn table(&self) -> &Arc<Table> {
        &self.table
    }

    /// Works out the statement's changes into `changes` (of this statement's table) without
    /// committing them; the caller holds the write guard until they are committed.
    pub(super) async fn apply(
        &self,
        db: &Database,
        env: &super::SessionEnv,
        params: ParamValues,
        changes: &mut TableChanges<'_>,
    ) -> Result<Applied> {
        let input = self.input.clone().replace_params_with_values(&params)?;
        // A plan made before ALTER TABLE or DROP TABLE holds the table as it was.
        self.table.check_current()?;
        let ctx = match self.kind {
            Kind::Insert(_) => db.ctx(),
            _ => db.dml_ctx(),
        };
        // Cooperative, so that a cancel request or a timeout can stop a long INSERT ... SELECT
        // between batches.
        let mut state = ctx.state();
        env.apply(&mut state);
        let input = match self.kind {
            Kind::Insert(_) => run_values_subqueries(&state, input).await?,
            _ => input,
        };
        let stream = datafusion::physical_plan::coop::make_cooperative(
            datafusion::dataframe::DataFrame::new(state, input)
                .execute_stream()
                .await?,
        );
        let batches: Vec<_> = futures::TryStreamExt::try_collect(stream).await?;
        let mut removed = Vec::new();
        let (affected, tag) = match &self.kind {
            Kind::Insert(conflict) => {
                let compiled = match conflict {
                    InsertConflict::Update {
                        exprs,
                        has_condition,
                        schema,
                        ..
                    } => {
                        let mut state = db.ctx().state();
                        env.apply(&mut state);
                        let LogicalPlan::Projection(projection) =
                            (**exprs).clone().replace_params_with_values(&params)?
                        else {
                            return Err(Error::Internal(
                                "ON CONFLICT expressions are not a projection".into(),
                            ));
                        };
                        let results =
                            SubqueryResults::run(&state, &projection.expr, "ON CONFLICT DO UPDATE")
                                .await?;
                        let mut compiled = Vec::with_capacity(projection.expr.len());
                        for expr in projection.expr {
                            let expr = results.replace(expr.unalias_nested().data)?;
                            compiled.push(compile(db, &expr, schema)?);
                        }
                        let condition = if *has_condition { compiled.pop() } else { None };
                        Some((compiled, condition))
                    }
                    _ => None,
                };
                (
                    self.insert(changes, conflict, compiled, batches)?,
                    "INSERT 0",
                )
            }
            Kind::Update { columns } => (
                self.update(changes, columns, batches, &mut removed)?,
                "UPDATE",
            ),
            Kind::Delete => {
                for batch in &batches {
                    changes.delete(batch)?;
                }
                removed = batches.clone();
                (batches, "DELETE")
            }
        };
        if !matches!(self.kind, Kind::Delete) {
            super::foreign_keys::check_written(db, &self.table, changes, &affected)?;
        }
        super::foreign_keys::check_removed(db, &self.table, changes, &removed)?;
        let count: usize = affected.iter().map(RecordBatch::num_rows).sum();
        let returning = match &self.returning {
            None => None,
            Some(returning) => {
                let rows = affected
                    .iter()
                    .map(|batch| returning.evaluate(&self.table, batch))
                    .collect::<Result<Vec<_>>>()?;
                Some((returning.schema.clone(), rows))
            }
        };
        Ok(Applied {
            count,
            tag,
            returning,
        })
    }

    /// Writes the rows of an INSERT; returns the rows written (inserted or, with ON CONFLICT DO
    /// UPDATE, updated), as whole stored rows.
    fn insert(
        &self,
        changes: &mut TableChanges<'_>,
        conflict: &InsertConflict,
        compiled: Option<CompiledUpdate>,
        batches: Vec<RecordBatch>,
    ) -> Result<Vec<RecordBatch>> {
        let mut written = Vec::with_capacity(batches.len());
        // Storage keys of the rows this statement inserted or updated: a proposed row that
        // conflicts with one of them is an error under DO UPDATE, as in PostgreSQL.
        let mut touched: HashSet<Vec<u8>> = HashSet::new();
        for batch in batches {
            let rows = self.table.conform(batch.columns().to_vec(), None)?;
            match conflict {
                InsertConflict::Fail => {
                    // Late rows (behind a watermark) are not written.
                    let inserted = changes.insert(&rows, OnConflict::Fail)?;
                    written.push(filter_record_batch(&rows, &BooleanArray::from(inserted))?);
                }
                InsertConflict::Skip(arbiters) if arbiters == &[Arbiter::PrimaryKey] => {
                    let inserted = changes.insert(&rows, OnConflict::Skip)?;
                    written.push(filter_record_batch(&rows, &BooleanArray::from(inserted))?);
                }
                InsertConflict::Skip(arbiters) => {
                    let indexes = self.arbiter_indexes(arbiters)?;
                    // Row by row, so that a value repeated within the statement is seen.
                    for i in 0..rows.num_rows() {
                        let row = rows.slice(i, 1);
                        if arbiters.contains(&Arbiter::PrimaryKey) && changes.taken(&row)?[0] {
                            continue;
                        }
                        let mut conflicts = false;
                        for index in &indexes {
                            if changes.holders(index, &row)?[0].is_some() {
                                conflicts = true;
                                break;
                            }
                        }
                        if !conflicts && changes.insert(&row, OnConflict::Fail)?[0] {
                            written.push(row);
                        }
                    }
                }
                InsertConflict::Update {
                    arbiter,
                    columns,
                    schema,
                    ..
                } => {
                    let (values, condition) = compiled.as_ref().ok_or_else(|| {
                        Error::Internal("ON CONFLICT DO UPDATE not compiled".into())
                    })?;
                    let index = self.arbiter_indexes(std::slice::from_ref(arbiter))?.pop();
                    // Row by row, so that a key repeated within the statement is seen.
                    for i in 0..rows.num_rows() {
                        let row = rows.slice(i, 1);
                        let holder = match &index {
                            None => {
                                let key = changes.row_keys(&row)?.remove(0);
                                changes.value(&key)?.map(|value| (key, value))
                            }
                            Some(index) => match changes.holders(index, &row)?.remove(0) {
                                Some(key) => changes.value(&key)?.map(|value| (key, value)),
                                None => None,
                            },
                        };
                        let Some((key, existing)) = holder else {
                            if changes.insert(&row, OnConflict::Fail)?[0] {
                                touched.extend(changes.row_keys(&row)?);
                                written.push(row);
                            }
                            continue;
                        };
                        if touched.contains(&key) {
                            return Err(Error::coded(
                                "21000",
                                "ON CONFLICT DO UPDATE command cannot affect row a second time",
                            ));
                        }
                        let existing = self.table.codec().decode_values([existing.as_slice()])?;
                        let visible = self.table.visible_schema().fields().len();
                        let mut both: Vec<ArrayRef> = existing.columns()[..visible].to_vec();
                        both.extend_from_slice(&row.columns()[..visible]);
                        let combined =
                            RecordBatch::try_new(Arc::new(schema.as_arrow().clone()), both)?;
                        if let Some(condition) = condition {
                            let keep = evaluate(condition, &combined)?;
                            let keep =
                                keep.as_any()
                                    .downcast_ref::<BooleanArray>()
                                    .ok_or_else(|| {
                                        Error::coded(
                                            "42804",
                                            "argument of WHERE must be type boolean",
                                        )
                                    })?;
                            if !(keep.is_valid(0) && keep.value(0)) {
                                continue;
                            }
                        }
                        let mut new_columns = existing.columns()[..visible].to_vec();
                        for (&column, value) in columns.iter().zip(values) {
                            new_columns[column] = evaluate(value, &combined)?;
                        }
                        let row_ids = self
                            .table
                            .def()
                            .has_row_id()
                            .then(|| existing.column(visible).clone());
                        let updated = self.table.conform(new_columns, row_ids)?;
                        changes.delete(&existing)?;
                        changes.insert(&updated, OnConflict::Fail)?;
                        touched.extend(changes.row_keys(&updated)?);
                        written.push(updated);
                    }
                }
            }
        }
        Ok(written)
    }

    /// The unique indexes among `arbiters`, as the table has them now.
    fn arbiter_indexes(&self, arbiters: &[Arbiter]) -> Result<Vec<Arc<Index>>> {
        let indexes = self.table.indexes();
        arbiters
            .iter()
            .filter_map(|arbiter| match arbiter {
                Arbiter::PrimaryKey => None,
                Arbiter::Index(id) => Some(
                    indexes
                        .iter()
                        .find(|index| index.def().id == *id)
                        .cloned()
                        // Dropped since the statement was planned.
                        .ok_or_else(no_arbiter),
                ),
            })
            .collect()
    }

    /// Rewrites the rows of an UPDATE; returns the new rows, and the old ones in `old_out`.
    fn update(
        &self,
        changes: &mut TableChanges<'_>,
        columns: &[usize],
        batches: Vec<RecordBatch>,
        old_out: &mut Vec<RecordBatch>,
    ) -> Result<Vec<RecordBatch>> {
        let full = self.table.full_schema().clone();
        let stored = full.fields().len();
        let visible = self.table.visible_schema().fields().len();
        let mut old_rows = Vec::with_capacity(batches.len());
        let mut new_rows = Vec::with_capacity(batches.len());
        for batch in batches {
            let old = RecordBatch::try_new(full.clone(), batch.columns()[..stored].to_vec())?;
            let mut new_columns = old.columns()[..visible].to_vec();
            for (j, &column) in columns.iter().enumerate() {
                new_columns[column] = batch.column(stored + j).clone();
            }
            let row_ids = self
                .table
                .def()
                .has_row_id()
                .then(|| old.column(visible).clone());
            new_rows.push(self.table.conform(new_columns, row_ids)?);
            old_rows.push(old);
        }
        // All old rows go first, so that keys may move onto keys this statement frees.
        for old in &old_rows {
            changes.delete(old)?;
        }
        for new in &new_rows {
            changes.insert(new, OnConflict::Fail)?;
        }
        *old_out = old_rows;
        Ok(new_rows)
    }
}

impl Returning {
    fn evaluate(&self, table: &Table, rows: &RecordBatch) -> Result<RecordBatch> {
        let visible = table.visible_schema().fields().len();
        let input = RecordBatch::try_new(
            Arc::new(self.input_schema.as_arrow().clone()),
            rows.columns()[..visible].to_vec(),
        )?;
        let columns = self
            .exprs
            .iter()
            .map(|e| evaluate(e, &input))
            .collect::<Result<Vec<_>>>()?;
        if columns.is_empty() {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// The table's visible columns qualified by `qualifier`, as a DataFusion schema.
fn qualified_schema(table: &Table, qualifier: &str) -> Result<DFSchema> {
    Ok(DFSchema::try_from_qualified_schema(
        TableReference::bare(qualifier),
        table.visible_schema(),
    )?)
}

/// Plans a list of SQL expressions (as text) against `schema`.
fn plan_exprs(
    db: &Database,
    sql: &[String],
    schema: &DFSchema,
) -> Result<Vec<Arc<dyn PhysicalExpr>>> {
    let state = db.ctx().state();
    sql.iter()
        .map(|s| compile(db, &state.create_logical_expr(s, schema)?, schema))
        .collect()
}

fn compile_returning(
    db: &Database,
    table: &Table,
    qualifier: &str,
    items: &Option<Vec<SelectItem>>,
) -> Result<Option<Returning>> {
    let Some(items) = items else {
        return Ok(None);
    };
    let input_schema = Arc::new(qualified_schema(table, qualifier)?);
    let mut texts = Vec::new();
    let mut names = Vec::new();
    for item in items {
        match item {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                for field in table.visible_schema().fields() {
                    texts.push(format!("\"{}\"", field.name().replace('"', "\"\"")));
                    names.push(field.name().clone());
                }
            }
            SelectItem::UnnamedExpr(expr) => {
                texts.push(expr.to_string());
                names.push(crate::sql::names::column_name(expr));
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                texts.push(expr.to_string());
                names.push(normalize_ident(alias));
            }
            other => return Err(Error::NotSupported(format!("RETURNING item {other}"))),
        }
    }
    let exprs = plan_exprs(db, &texts, &input_schema)?;
    let fields = exprs
        .iter()
        .zip(&names)
        .map(|(e, name)| {
            let data_type = e.data_type(input_schema.as_arrow())?;
            Ok(Field::new(name, data_type, true))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(Returning {
        exprs,
        input_schema,
        schema: Arc::new(Schema::new(fields)),
    }))
}

/// An append-only table takes INSERT and COPY only (`55000`, as PostgreSQL refuses DML on
/// relations that cannot take it).
pub(super) fn refuse_if_append_only(table: &Table, what: &str) -> Result<()> {
    if table.def().append_only {
        return Err(Error::coded(
            "55000",
            format!(
                "cannot {what} table \"{}\": it is APPEND ONLY",
                table.name()
            ),
        ));
    }
    Ok(())
}

fn lookup_table(db: &Database, name: &str, action: &str) -> Result<Arc<Table>> {
    db.catalog().table_to_write(name, action)
}

/// Visible column positions of assignment targets.
fn assignment_columns(
    table: &Table,
    assignments: &[Assignment],
) -> Result<(Vec<usize>, Vec<String>)> {
    let mut columns = Vec::with_capacity(assignments.len());
    let mut values = Vec::with_capacity(assignments.len());
    for assignment in assignments {
        let AssignmentTarget::ColumnName(name) = &assignment.target else {
            return Err(Error::NotSupported(
                "assigning to a tuple of columns".into(),
            ));
        };
        let column = name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map(normalize_ident)
            .unwrap_or_default();
        let position = table.visible_schema().index_of(&column).map_err(|_| {
            Error::UndefinedColumn(format!(
                "column \"{column}\" of relation \"{}\" does not exist",
                table.name()
            ))
        })?;
        if columns.contains(&position) {
            return Err(Error::coded(
                "42601",
                format!("multiple assignments to same column \"{column}\""),
            ));
        }
        columns.push(position);
        values.push(assigned_value(
            &assignment.value,
            table.visible_schema().field(position).data_type(),
        ));
    }
    Ok((columns, values))
}

/// The SQL text of the value assigned to a column of type `ty`. A bare parameter (`SET a = $1`)
/// takes the column's type, as in PostgreSQL, rather than none (which clients send as text).
fn assigned_value(value: &ast::Expr, ty: &DataType) -> String {
    let is_parameter = matches!(
        value,
        ast::Expr::Value(v) if matches!(v.value, ast::Value::Placeholder(_))
    );
    if is_parameter && !ty.is_nested() {
        format!(
            "CAST({value} AS {})",
            crate::common::types::pg_type_name(ty)
        )
    } else {
        value.to_string()
    }
}

async fn plan_insert(db: &Database, insert: &Insert, rows: &WithRows) -> Result<WritePlan> {
    let TableObject::TableName(name) = &insert.table else {
        return Err(Error::NotSupported("INSERT into a table function".into()));
    };
    let table = lookup_table(db, &table_name(name)?, "insert into")?;
    let mut stripped = insert.clone();
    refuse_generated_always(&table, insert)?;
    replace_default_keywords(&table, &mut stripped)?;
    let on = stripped.on.take();
    let returning_items = stripped.returning.take();
    let qualifier = match &stripped.table_alias {
        Some(alias) => normalize_ident(&alias.alias),
        None => crate::common::names::split(table.name()).1.to_string(),
    };
    stripped.table_alias = None;
    let is_values = stripped
        .source
        .as_ref()
        .is_none_or(|s| matches!(s.body.as_ref(), ast::SetExpr::Values(_)));
    let input = if is_values {
        let plan = rows
            .state(db.ctx())?
            .statement_to_plan(DfStatement::Statement(Box::new(Statement::Insert(
                stripped,
            ))))
            .await?;
        let LogicalPlan::Dml(dml) = plan else {
            return Err(Error::Internal("INSERT did not plan as DML".into()));
        };
        if !matches!(dml.op, WriteOp::Insert(_)) {
            return Err(Error::Internal("INSERT planned as another write".into()));
        }
        dml.input.as_ref().clone()
    } else {
        insert_query_input(db, &table, &stripped, rows).await?
    };
    let conflict = match on {
        None => InsertConflict::Fail,
        Some(OnInsert::OnConflict(on_conflict)) => match on_conflict.action {
            OnConflictAction::DoNothing => {
                InsertConflict::Skip(arbiters(&table, on_conflict.conflict_target.as_ref())?)
            }
            OnConflictAction::DoUpdate(update) => {
                refuse_if_append_only(&table, "ON CONFLICT DO UPDATE")?;
                let Some(target) = on_conflict.conflict_target.as_ref() else {
                    return Err(Error::coded(
                        "42601",
                        "ON CONFLICT DO UPDATE requires inference specification or constraint name",
                    ));
                };
                let arbiter = arbiters(&table, Some(target))?.remove(0);
                let mut schema = qualified_schema(&table, &qualifier)?;
                schema.merge(&qualified_schema(&table, "excluded")?);
                let (columns, texts) = assignment_columns(&table, &update.assignments)?;
                let mut texts = texts;
                let has_condition = update.selection.is_some();
                texts.extend(update.selection.map(|s| s.to_string()));
                let exprs = plan_conflict_exprs(db, rows, &table, &qualifier, &texts).await?;
                InsertConflict::Update {
                    arbiter,
                    columns,
                    exprs: Box::new(exprs),
                    has_condition,
                    schema: Arc::new(schema),
                }
            }
        },
        Some(other) => return Err(Error::NotSupported(format!("INSERT {other}"))),
    };
    let returning = compile_returning(db, &table, &qualifier, &returning_items)?;
    Ok(WritePlan {
        table,
        kind: Kind::Insert(conflict),
        input: super::postgres_plan(db.ctx(), input)?,
        returning,
    })
}

/// The constraints an ON CONFLICT clause with `target` decides conflicts on, inferred as
/// PostgreSQL infers them: without a target every unique constraint of the table; with a column
/// list the primary key or the unique index on exactly those columns; `ON CONSTRAINT name` the
/// primary key or `UNIQUE` constraint so named.
fn arbiters(table: &Table, target: Option<&ast::ConflictTarget>) -> Result<Vec<Arbiter>> {
    let def = table.def();
    let indexes = table.indexes();
    let unique = indexes.iter().map(|i| i.def()).filter(|d| d.unique);
    let has_key = !def.has_row_id();
    match target {
        None => {
            let mut all = vec![Arbiter::PrimaryKey];
            all.extend(unique.map(|d| Arbiter::Index(d.id)));
            Ok(all)
        }
        Some(ast::ConflictTarget::Columns(names)) => {
            let mut columns = Vec::with_capacity(names.len());
            for name in names {
                let column = normalize_ident(name);
                let position = table.visible_schema().index_of(&column).map_err(|_| {
                    Error::UndefinedColumn(format!("column \"{column}\" does not exist"))
                })?;
                if !columns.contains(&position) {
                    columns.push(position);
                }
            }
            let same =
                |of: &[usize]| of.len() == columns.len() && of.iter().all(|c| columns.contains(c));
            let mut found = Vec::new();
            if has_key && same(&def.primary_key) {
                found.push(Arbiter::PrimaryKey);
            }
            found.extend(
                unique
                    .filter(|d| same(&d.columns))
                    .map(|d| Arbiter::Index(d.id)),
            );
            if found.is_empty() {
                return Err(no_arbiter());
            }
            Ok(found)
        }
        Some(ast::ConflictTarget::OnConstraint(name)) => {
            let wanted = name
                .0
                .last()
                .and_then(|part| part.as_ident())
                .map(normalize_ident)
                .unwrap_or_default();
            let unqualified = |n: &str| crate::common::names::split(n).1.to_string();
            if has_key && unqualified(&def.pkey_name()) == wanted {
                return Ok(vec![Arbiter::PrimaryKey]);
            }
            unique
                .filter(|d| d.constraint)
                .find(|d| unqualified(&d.name) == wanted)
                .map(|d| vec![Arbiter::Index(d.id)])
                .ok_or_else(|| {
                    Error::coded(
                        "42704",
                        format!(
                            "constraint \"{wanted}\" for table \"{}\" does not exist",
                            unqualified(table.name())
                        ),
                    )
                })
        }
    }
}

/// Plans the expressions (SQL text) of ON CONFLICT DO UPDATE over the existing row (qualified
/// by `qualifier`) and the proposed one (`excluded`), as the select list of a query over the
/// two, so that subqueries in them read relations and WITH queries as in any query.
async fn plan_conflict_exprs(
    db: &Database,
    rows: &WithRows,
    table: &Table,
    qualifier: &str,
    texts: &[String],
) -> Result<LogicalPlan> {
    let name = quote_key(table.name());
    let sql = format!(
        "SELECT {} FROM {name} AS {}, {name} AS excluded",
        texts
            .iter()
            .map(|t| format!("({t})"))
            .collect::<Vec<_>>()
            .join(", "),
        quote(qualifier)
    );
    // The expressions are the statement's own, already rewritten as every statement is.
    let statement = crate::sql::parse_raw(&sql)
        .map_err(|e| Error::Syntax(e.to_string()))?
        .pop()
        .ok_or_else(|| Error::Internal("ON CONFLICT expressions did not parse".into()))?;
    let plan = rows
        .state(db.ctx())?
        .statement_to_plan(DfStatement::Statement(Box::new(statement)))
        .await?;
    if !matches!(plan, LogicalPlan::Projection(_)) {
        return Err(Error::Internal(
            "ON CONFLICT expressions did not plan as a projection".into(),
        ));
    }
    Ok(plan)
}

/// The results of the uncorrelated subqueries of some expressions, run before the expressions
/// are evaluated: ON CONFLICT DO UPDATE's and those in an INSERT's VALUES rows are evaluated row
/// by row, outside a query plan that could run them.
struct SubqueryResults(Vec<(Subquery, Vec<ScalarValue>)>);

impl SubqueryResults {
    /// Runs every subquery of `exprs` (read as the statement runs). `place` names where they
    /// are, for the error refusing a subquery that reads the row's own columns.
    async fn run<'a>(
        state: &datafusion::execution::SessionState,
        exprs: impl IntoIterator<Item = &'a Expr>,
        place: &str,
    ) -> Result<Self> {
        let mut found: Vec<Subquery> = Vec::new();
        for expr in exprs {
            expr.apply(|e| {
                if let Expr::ScalarSubquery(s)
                | Expr::Exists(Exists { subquery: s, .. })
                | Expr::InSubquery(InSubquery { subquery: s, .. }) = e
                    && !found.contains(s)
                {
                    found.push(s.clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        let mut results = Vec::with_capacity(found.len());
        for subquery in found {
            if !subquery.outer_ref_columns.is_empty() {
                return Err(Error::NotSupported(format!(
                    "a subquery in {place} that reads the row's columns"
                )));
            }
            let plan = subquery.subquery.as_ref().clone();
            let batches = datafusion::dataframe::DataFrame::new(state.clone(), plan)
                .collect()
                .await?;
            let mut values = Vec::new();
            for batch in &batches {
                for i in 0..batch.num_rows() {
                    values.push(ScalarValue::try_from_array(batch.column(0), i)?);
                }
            }
            results.push((subquery, values));
        }
        Ok(Self(results))
    }

    fn values_of(&self, subquery: &Subquery) -> DfResult<&[ScalarValue]> {
        self.0
            .iter()
            .find(|(found, _)| found == subquery)
            .map(|(_, values)| values.as_slice())
            .ok_or_else(|| Error::Internal("subquery not run".into()).into())
    }

    /// `expr` with each subquery replaced by its result: a scalar subquery by its value, EXISTS
    /// by whether it has rows, `x IN (subquery)` by the list of its values.
    fn replace(&self, expr: Expr) -> DfResult<Expr> {
        let resolved = expr.transform_up(|e| {
            Ok(match e {
                Expr::ScalarSubquery(s) => {
                    let value = match self.values_of(&s)? {
                        [] => ScalarValue::try_from(s.subquery.schema().field(0).data_type())?,
                        [one] => one.clone(),
                        _ => {
                            return Err(Error::coded(
                                "21000",
                                "more than one row returned by a subquery used as an expression",
                            )
                            .into());
                        }
                    };
                    Transformed::yes(lit(value))
                }
                Expr::Exists(Exists { subquery, negated }) => {
                    let any = !self.values_of(&subquery)?.is_empty();
                    Transformed::yes(lit(any != negated))
                }
                Expr::InSubquery(InSubquery {
                    expr,
                    subquery,
                    negated,
                }) => {
                    let list = self
                        .values_of(&subquery)?
                        .iter()
                        .cloned()
                        .map(lit)
                        .collect();
                    Transformed::yes(Expr::InList(InList::new(expr, list, negated)))
                }
                other => Transformed::no(other),
            })
        })?;
        Ok(resolved.data)
    }
}

/// `plan` with the subqueries in the rows of its VALUES run and replaced by their results.
async fn run_values_subqueries(
    state: &datafusion::execution::SessionState,
    plan: LogicalPlan,
) -> Result<LogicalPlan> {
    let mut exprs: Vec<&Expr> = Vec::new();
    plan.apply(|node| {
        if let LogicalPlan::Values(values) = node {
            exprs.extend(values.values.iter().flatten());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let results = SubqueryResults::run(state, exprs, "VALUES").await?;
    if results.0.is_empty() {
        return Ok(plan);
    }
    let plan = plan.transform_up(|node| {
        Ok(match node {
            LogicalPlan::Values(mut values) => {
                for row in values.values.iter_mut() {
                    for expr in row.iter_mut() {
                        *expr = results.replace(expr.clone())?;
                    }
                }
                Transformed::yes(LogicalPlan::Values(values))
            }
            other => Transformed::no(other),
        })
    })?;
    Ok(plan.data)
}

fn no_arbiter() -> Error {
    Error::coded(
        "42P10",
        "there is no unique or exclusion constraint matching the ON CONFLICT specification",
    )
}

/// The rows of `INSERT INTO t [(columns)] query`, as whole rows of `t`: the query's columns cast
/// to the target columns' types, the other columns their defaults.
///
/// DataFusion plans every `VALUES` inside an INSERT's query against the target table's columns
/// (`INSERT INTO t (a) SELECT p0 FROM (VALUES ($1, 0), ($2, 1)) AS v(p0, n) ORDER BY n`, which
/// SQLAlchemy sends for a batch of ORM rows, is refused for its two-column VALUES), so the query
/// is planned on its own here.
async fn insert_query_input(
    db: &Database,
    table: &Table,
    insert: &Insert,
    rows: &WithRows,
) -> Result<LogicalPlan> {
    use datafusion::logical_expr::{ExprSchemable, LogicalPlanBuilder, lit};

    let source = insert
        .source
        .as_ref()
        .ok_or_else(|| Error::Internal("INSERT without rows".into()))?;
    let plan = rows
        .state(db.ctx())?
        .statement_to_plan(DfStatement::Statement(Box::new(Statement::Query(
            source.clone(),
        ))))
        .await?;
    let provider = db
        .ctx()
        .table_provider(table.name())
        .await
        .map_err(|_| Error::UndefinedTable(table.name().to_string()))?;
    let target = provider.schema();
    let width = plan.schema().fields().len();
    let mut value_of: Vec<Option<usize>> = vec![None; target.fields().len()];
    if insert.columns.is_empty() {
        // Without a column list the query fills the leading columns, as in PostgreSQL.
        if width > value_of.len() {
            return Err(Error::coded(
                "42601",
                "INSERT has more expressions than target columns",
            ));
        }
        for (i, slot) in value_of.iter_mut().take(width).enumerate() {
            *slot = Some(i);
        }
    } else {
        for (i, column) in insert.columns.iter().enumerate() {
            let name = column
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(normalize_ident)
                .unwrap_or_default();
            let position = target.index_of(&name).map_err(|_| {
                Error::UndefinedColumn(format!(
                    "column \"{name}\" of relation \"{}\" does not exist",
                    table.name()
                ))
            })?;
            if value_of[position].is_some() {
                return Err(Error::coded(
                    "42701",
                    format!("column \"{name}\" specified more than once"),
                ));
            }
            value_of[position] = Some(i);
        }
        if width != insert.columns.len() {
            let message = if width > insert.columns.len() {
                "INSERT has more expressions than target columns"
            } else {
                "INSERT has more target columns than expressions"
            };
            return Err(Error::coded("42601", message));
        }
    }
    let schema = plan.schema().clone();
    let exprs = target
        .fields()
        .iter()
        .zip(&value_of)
        .map(|(field, value)| {
            let expr = match value {
                Some(v) => datafusion::logical_expr::Expr::Column(
                    datafusion::common::Column::from(schema.qualified_field(*v)),
                )
                .cast_to(field.data_type(), &schema)?,
                None => provider
                    .get_column_default(field.name())
                    .cloned()
                    .unwrap_or_else(|| lit(datafusion::common::ScalarValue::Null))
                    .cast_to(field.data_type(), &DFSchema::empty())?,
            };
            Ok(expr.alias(field.name()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
}

/// An identity column `GENERATED ALWAYS` takes only its sequence's values: an INSERT that gives
/// it one is refused (`428C9`), as in PostgreSQL. `DEFAULT` is allowed.
fn refuse_generated_always(table: &Table, insert: &Insert) -> Result<()> {
    use crate::table::Identity;
    use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, SetExpr};

    let columns = &table.def().columns;
    if !columns.iter().any(|c| c.identity == Some(Identity::Always)) {
        return Ok(());
    }
    let Some(source) = insert.source.as_ref() else {
        return Ok(());
    };
    let refuse = |column: &str| {
        Err(Error::coded(
            "428C9",
            format!(
                "cannot insert a non-DEFAULT value into column \"{column}\": it is an identity column defined as GENERATED ALWAYS"
            ),
        ))
    };
    let position = |name: &ObjectName| {
        let name = name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(normalize_ident)
            .unwrap_or_default();
        columns.iter().position(|c| !c.hidden && c.name == name)
    };
    let is_default = |expr: &SqlExpr| {
        matches!(expr, SqlExpr::Identifier(ident)
            if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default"))
    };
    let targets: Vec<Option<usize>> = if insert.columns.is_empty() {
        (0..columns.len()).map(Some).collect()
    } else {
        insert.columns.iter().map(position).collect()
    };
    let always = |target: &Option<usize>| {
        target
            .and_then(|i| (columns[i].identity == Some(Identity::Always)).then(|| &columns[i].name))
    };
    match source.body.as_ref() {
        SetExpr::Values(values) => {
            for row in &values.rows {
                for (expr, target) in row.content.iter().zip(&targets) {
                    if let Some(name) = always(target)
                        && !is_default(expr)
                    {
                        return refuse(name);
                    }
                }
            }
        }
        _ => {
            if let Some(name) = targets.iter().find_map(always) {
                return refuse(name);
            }
        }
    }
    Ok(())
}

/// `VALUES (1, DEFAULT)`: each `DEFAULT` becomes its column's DEFAULT expression, or NULL; rows
/// shorter than the table fill its leading columns.
fn replace_default_keywords(table: &Table, insert: &mut Insert) -> Result<()> {
    use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, SetExpr, Value};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    let Some(source) = insert.source.as_mut() else {
        return Ok(());
    };
    let SetExpr::Values(values) = source.body.as_mut() else {
        return Ok(());
    };
    let visible = table.visible_schema();
    // `INSERT INTO t VALUES (1)` fills the leading columns; the rest get their defaults.
    let width = values.rows.first().map_or(0, |r| r.content.len());
    if insert.columns.is_empty()
        && width < visible.fields().len()
        && values.rows.iter().all(|r| r.content.len() == width)
    {
        insert.columns = visible.fields()[..width]
            .iter()
            .map(|f| ObjectName::from(vec![Ident::with_quote('"', f.name().clone())]))
            .collect();
    }
    let targets: Vec<usize> = if insert.columns.is_empty() {
        (0..visible.fields().len()).collect()
    } else {
        insert
            .columns
            .iter()
            .map(|c| {
                let name =
                    c.0.last()
                        .and_then(|p| p.as_ident())
                        .map(normalize_ident)
                        .unwrap_or_default();
                visible.index_of(&name).map_err(|_| {
                    Error::UndefinedColumn(format!(
                        "column \"{name}\" of relation \"{}\" does not exist",
                        table.name()
                    ))
                })
            })
            .collect::<Result<_>>()?
    };
    for row in values.rows.iter_mut() {
        for (i, expr) in row.content.iter_mut().enumerate() {
            let is_default = matches!(expr, SqlExpr::Identifier(ident)
                if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default"));
            if !is_default {
                continue;
            }
            let column = *targets.get(i).ok_or_else(|| {
                Error::Syntax(
                    "syntax error: INSERT has more expressions than target columns".into(),
                )
            })?;
            *expr = match &table.def().columns[column].default {
                Some(sql) => Parser::new(&PostgreSqlDialect {})
                    .try_with_sql(sql)?
                    .parse_expr()?,
                None => SqlExpr::Value(Value::Null.into()),
            };
        }
    }
    Ok(())
}

/// The table named by a FROM item, the name the statement refers to it by, and its columns
/// as a SELECT list (`alias.*`, or `schema.name.*` as written).
fn target(factor: &TableFactor) -> Result<(String, String, String)> {
    let TableFactor::Table { name, alias, .. } = factor else {
        return Err(Error::NotSupported(format!("UPDATE or DELETE of {factor}")));
    };
    let table = table_name(name)?;
    let (qualifier, all) = match alias {
        Some(a) => {
            let alias = normalize_ident(&a.name);
            let all = format!("{}.*", quote(&alias));
            (alias, all)
        }
        None => (
            crate::common::names::split(&table).1.to_string(),
            format!("{name}.*"),
        ),
    };
    Ok((table, qualifier, all))
}

pub(super) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Catalog key `key` as a SQL name: `"name"` or `"schema"."name"`.
pub(super) fn quote_key(key: &str) -> String {
    match key.split_once('.') {
        Some((schema, name)) => format!("{}.{}", quote(schema), quote(name)),
        None => quote(key),
    }
}

async fn plan_select(db: &Database, sql: &str, rows: &WithRows) -> Result<LogicalPlan> {
    let statement = db
        .parser()
        .parse(sql)?
        .pop()
        .ok_or_else(|| Error::Internal("empty rewritten statement".into()))?;
    Ok(rows
        .state(db.dml_ctx())?
        .statement_to_plan(DfStatement::Statement(Box::new(statement)))
        .await?)
}

async fn plan_update(db: &Database, update: &Update, rows: &WithRows) -> Result<WritePlan> {
    if !update.table.joins.is_empty() {
        return Err(Error::NotSupported("UPDATE of a join".into()));
    }
    let (name, qualifier, all) = target(&update.table.relation)?;
    let table = lookup_table(db, &name, "update")?;
    refuse_if_append_only(&table, "UPDATE")?;
    let (columns, values) = assignment_columns(&table, &update.assignments)?;
    let mut sql = format!("SELECT {all}");
    for value in &values {
        sql.push_str(", ");
        sql.push_str(value);
    }
    sql.push_str(&format!(" FROM {}", update.table));
    if let Some(UpdateTableFromKind::AfterSet(from) | UpdateTableFromKind::BeforeSet(from)) =
        &update.from
    {
        for item in from {
            sql.push_str(&format!(", {item}"));
        }
    }
    if let Some(selection) = &update.selection {
        sql.push_str(&format!(" WHERE {selection}"));
    }
    let selected = plan_select(db, &sql, rows).await?;
    let input = super::postgres_plan(db.ctx(), selected)?;
    let returning = compile_returning(db, &table, &qualifier, &update.returning)?;
    Ok(WritePlan {
        table,
        kind: Kind::Update { columns },
        input,
        returning,
    })
}

async fn plan_delete(db: &Database, delete: &Delete, rows: &WithRows) -> Result<WritePlan> {
    let from = match &delete.from {
        FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
    };
    let [first] = from.as_slice() else {
        return Err(Error::NotSupported("DELETE from several tables".into()));
    };
    if !first.joins.is_empty() {
        return Err(Error::NotSupported("DELETE from a join".into()));
    }
    let (name, qualifier, all) = target(&first.relation)?;
    let table = lookup_table(db, &name, "delete from")?;
    refuse_if_append_only(&table, "DELETE")?;
    let mut sql = format!("SELECT {all} FROM {first}");
    for item in delete.using.iter().flatten() {
        sql.push_str(&format!(", {item}"));
    }
    if let Some(selection) = &delete.selection {
        sql.push_str(&format!(" WHERE {selection}"));
    }
    let input = plan_select(db, &sql, rows).await?;
    let returning = compile_returning(db, &table, &qualifier, &delete.returning)?;
    Ok(WritePlan {
        table,
        kind: Kind::Delete,
        input,
        returning,
    })
}
