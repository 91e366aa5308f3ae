//! `ALTER TABLE`: add, drop and rename columns, rename the table, set and drop defaults and
//! `NOT NULL`, and add `PRIMARY KEY` (on an empty table), `UNIQUE` and `CHECK` constraints.
//!
//! Each operation is one atomic change under the write lock: the new definition, the stored rows
//! rewritten to the new layout where columns come or go (the rows keep their keys), the indexes
//! and owned sequences that follow. A table that views read is not altered: the change is refused
//! naming the views, since their dataflows read the table's rows in its current layout.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use datafusion::arrow::datatypes::Schema;
use datafusion::common::DFSchema;
use datafusion::sql::sqlparser::ast::{
    AlterColumnOperation, AlterTable, AlterTableOperation, ColumnDef as SqlColumnDef, CreateTable,
    Expr as SqlExpr, Ident, RenameTableNameKind, TableConstraint,
};

use super::{Output, Session};
use crate::catalog::TableChange;
use crate::error::{Error, Result};
use crate::sql::{ddl, normalize_ident, table_name};
use crate::storage::WriteBatch;
use crate::table::{ROW_ID_COLUMN, Table, TableDef};

/// Rows read at a time when a table's rows are rewritten.
const REWRITE_BATCH_ROWS: usize = 4096;

/// How the stored rows change with an operation.
enum Rewrite {
    /// They do not (names, defaults, constraints checked against them).
    None,
    /// A column is added after the visible ones, with this default (`None`: NULL).
    Add(Option<datafusion::logical_expr::Expr>),
    /// The visible column at this position goes.
    Drop(usize),
}

impl Session<'_> {
    /// `ALTER TABLE [IF EXISTS] name operation, ...`: the operations apply in order, each
    /// atomically.
    pub(super) async fn alter_table(&mut self, alter: &AlterTable) -> Result<Output> {
        let name = table_name(&alter.name)?;
        let _guard = self.write_guard().await?;
        let catalog = self.db.catalog().clone();
        let Some(mut table) = catalog.table(&name) else {
            if alter.if_exists {
                self.notice(
                    "00000",
                    format!("relation \"{name}\" does not exist, skipping"),
                );
                return Ok(Output::Command("ALTER TABLE".into()));
            }
            if catalog.exists(&name) {
                return Err(Error::coded("42809", format!("\"{name}\" is not a table")));
            }
            return Err(Error::UndefinedTable(name));
        };
        if table.def().connector.is_some() {
            return Err(Error::NotSupported(format!(
                "ALTER TABLE on \"{name}\", which its connector feeds (drop and create it again)"
            )));
        }
        // Foreign keys name columns and tables: changing either is not supported yet.
        let adds_foreign_key = alter.operations.iter().any(|op| match op {
            AlterTableOperation::AddConstraint { constraint, .. } => {
                matches!(constraint, TableConstraint::ForeignKey(_))
            }
            AlterTableOperation::AddColumn { column_def, .. } => {
                column_def.options.iter().any(|o| {
                    matches!(
                        o.option,
                        datafusion::sql::sqlparser::ast::ColumnOption::ForeignKey(_)
                    )
                })
            }
            _ => false,
        });
        if adds_foreign_key {
            return Err(Error::NotSupported(
                "ALTER TABLE ... ADD a FOREIGN KEY (declare it in CREATE TABLE)".into(),
            ));
        }
        if !table.def().foreign_keys.is_empty()
            || !super::foreign_keys::referencing(self.db, &table).is_empty()
        {
            return Err(Error::NotSupported(format!(
                "ALTER TABLE on \"{name}\", which has a foreign key or is referenced by one"
            )));
        }
        let dependents = catalog.dependents(table.def().id);
        let sinks = catalog.query_sinks_reading(table.def().id);
        if !dependents.is_empty() || !sinks.is_empty() {
            let names: Vec<String> = dependents
                .iter()
                .map(|v| v.name().to_string())
                .chain(sinks.iter().map(|s| format!("sink {}", s.def.name)))
                .collect();
            return Err(Error::coded(
                "2BP01",
                format!(
                    "cannot alter table \"{name}\" because other objects depend on it (views \
                     or sinks read it: {}); drop them first",
                    names.join(", ")
                ),
            ));
        }
        for operation in &alter.operations {
            table = self.alter_one(&table, operation)?;
        }
        Ok(Output::Command("ALTER TABLE".into()))
    }

    fn alter_one(
        &mut self,
        table: &Arc<Table>,
        operation: &AlterTableOperation,
    ) -> Result<Arc<Table>> {
        let catalog = self.db.catalog().clone();
        let old = table.def();
        let mut def = old.clone();
        let mut change = TableChange {
            indexes: catalog.indexes_on(&old.name),
            ..TableChange::default()
        };
        let mut rewrite = Rewrite::None;
        // Whether the stored rows are checked against the new definition (a constraint
        // tightened); renames and defaults need no look at the rows.
        let mut validate = false;
        let mut unique: Vec<(String, Vec<String>)> = Vec::new();
        let visible_count = old.columns.iter().filter(|c| !c.hidden).count();
        let position = |name: &Ident| -> Result<usize> {
            let name = normalize_ident(name);
            old.columns
                .iter()
                .position(|c| c.name == name && !c.hidden)
                .ok_or_else(|| {
                    Error::UndefinedColumn(format!(
                        "column \"{name}\" of relation \"{}\" does not exist",
                        old.name
                    ))
                })
        };
        match operation {
            AlterTableOperation::AddColumn {
                if_not_exists,
                column_def,
                ..
            } => {
                let column_name = normalize_ident(&column_def.name);
                if old.columns.iter().any(|c| c.name == column_name) {
                    if *if_not_exists {
                        self.notice(
                            "42701",
                            format!(
                                "column \"{column_name}\" of relation \"{}\" already exists, skipping",
                                old.name
                            ),
                        );
                        return Ok(table.clone());
                    }
                    return Err(Error::coded(
                        "42701",
                        format!(
                            "column \"{column_name}\" of relation \"{}\" already exists",
                            old.name
                        ),
                    ));
                }
                let added = single_column_table(&old.name, column_def)?;
                if !added.def.has_row_id() || !added.unique.is_empty() {
                    return Err(Error::NotSupported(
                        "ADD COLUMN with PRIMARY KEY or UNIQUE; add the column, then ADD \
                         PRIMARY KEY (...) or ADD UNIQUE (...)"
                            .into(),
                    ));
                }
                if !added.sequences.is_empty() {
                    return Err(Error::NotSupported(
                        "adding a SERIAL or identity column to an existing table".into(),
                    ));
                }
                let column = added.def.columns[0].clone();
                for check in added.def.checks {
                    add_check(&mut def.checks, check)?;
                }
                let default = column
                    .default
                    .as_deref()
                    .map(|sql| catalog.parse_default(sql))
                    .transpose()?;
                def.columns.insert(visible_count, column);
                if def.has_row_id() {
                    def.primary_key = vec![def.columns.len() - 1];
                }
                rewrite = Rewrite::Add(default);
            }
            AlterTableOperation::DropColumn {
                column_names,
                if_exists,
                ..
            } => {
                let [column] = column_names.as_slice() else {
                    return Err(Error::NotSupported(
                        "dropping several columns in one operation".into(),
                    ));
                };
                let at = match position(column) {
                    Ok(at) => at,
                    Err(_) if *if_exists => {
                        self.notice(
                            "00000",
                            format!(
                                "column \"{}\" of relation \"{}\" does not exist, skipping",
                                normalize_ident(column),
                                old.name
                            ),
                        );
                        return Ok(table.clone());
                    }
                    Err(e) => return Err(e),
                };
                let column_name = old.columns[at].name.clone();
                if old.primary_key.contains(&at) {
                    return Err(Error::NotSupported(format!(
                        "dropping primary-key column \"{column_name}\""
                    )));
                }
                if visible_count == 1 {
                    return Err(Error::NotSupported("tables without columns".into()));
                }
                def.columns.remove(at);
                def.primary_key = old
                    .primary_key
                    .iter()
                    .map(|&p| if p > at { p - 1 } else { p })
                    .collect();
                // Constraints and indexes on the column go with it, as in PostgreSQL.
                def.checks.retain(|c| !check_reads(&c.expr, &column_name));
                let (dropped, kept): (Vec<_>, Vec<_>) = change
                    .indexes
                    .drain(..)
                    .partition(|index| index.columns.contains(&at));
                change.dropped_indexes = dropped;
                change.indexes = kept
                    .into_iter()
                    .map(|mut index| {
                        for c in &mut index.columns {
                            if *c > at {
                                *c -= 1;
                            }
                        }
                        index
                    })
                    .collect();
                change.sequences = catalog
                    .sequences()
                    .owned_by(&old.name)
                    .into_iter()
                    .filter(|s| {
                        s.def()
                            .owned_by
                            .as_ref()
                            .is_some_and(|(_, c)| *c == column_name)
                    })
                    .map(|s| (s, None))
                    .collect();
                rewrite = Rewrite::Drop(at);
            }
            AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => {
                let at = position(old_column_name)?;
                let from = old.columns[at].name.clone();
                let to = normalize_ident(new_column_name);
                if old.columns.iter().any(|c| c.name == to) || to == ROW_ID_COLUMN {
                    return Err(Error::coded(
                        "42701",
                        format!(
                            "column \"{to}\" of relation \"{}\" already exists",
                            old.name
                        ),
                    ));
                }
                if let Some(check) = old.checks.iter().find(|c| check_reads(&c.expr, &from)) {
                    return Err(Error::NotSupported(format!(
                        "renaming column \"{from}\", which check constraint \"{}\" reads",
                        check.name
                    )));
                }
                if old.watermark.as_ref().is_some_and(|w| w.column == from) {
                    return Err(Error::NotSupported(format!(
                        "renaming the event-time column \"{from}\""
                    )));
                }
                def.columns[at].name = to.clone();
                change.sequences = catalog
                    .sequences()
                    .owned_by(&old.name)
                    .into_iter()
                    .filter(|s| s.def().owned_by.as_ref().is_some_and(|(_, c)| *c == from))
                    .map(|s| (s, Some((old.name.clone(), to.clone()))))
                    .collect();
            }
            AlterTableOperation::RenameTable { table_name: new } => {
                let (RenameTableNameKind::To(new) | RenameTableNameKind::As(new)) = new;
                let new = match new.0.as_slice() {
                    [_] => crate::catalog::schema::qualify(
                        crate::common::names::split(&old.name).0,
                        &table_name(new)?,
                    ),
                    _ => table_name(new)?,
                };
                if crate::common::names::split(&new).0 != crate::common::names::split(&old.name).0 {
                    return Err(Error::NotSupported(
                        "moving a table to another schema".into(),
                    ));
                }
                if old.temporary {
                    return Err(Error::NotSupported("renaming a temporary table".into()));
                }
                def.name = new.clone();
                change.indexes = change
                    .indexes
                    .into_iter()
                    .map(|mut index| {
                        index.relation = new.clone();
                        index
                    })
                    .collect();
                change.sequences = catalog
                    .sequences()
                    .owned_by(&old.name)
                    .into_iter()
                    .map(|s| {
                        let column = s.def().owned_by.as_ref().map(|(_, c)| c.clone());
                        (s, column.map(|c| (new.clone(), c)))
                    })
                    .collect();
            }
            AlterTableOperation::AlterColumn { column_name, op } => {
                let at = position(column_name)?;
                match op {
                    AlterColumnOperation::SetNotNull => {
                        def.columns[at].nullable = false;
                        validate = true;
                    }
                    AlterColumnOperation::DropNotNull => {
                        if old.primary_key.contains(&at) {
                            return Err(Error::coded(
                                "42P16",
                                format!("column \"{}\" is in a primary key", old.columns[at].name),
                            ));
                        }
                        def.columns[at].nullable = true;
                    }
                    AlterColumnOperation::SetDefault { value } => {
                        if def.columns[at].identity.is_some() {
                            return Err(Error::coded(
                                "55000",
                                format!(
                                    "column \"{}\" of relation \"{}\" is an identity column",
                                    old.columns[at].name, old.name
                                ),
                            ));
                        }
                        let sql = crate::sql::ddl::default_sql(value);
                        catalog.parse_default(&sql)?;
                        def.columns[at].default = Some(sql);
                    }
                    AlterColumnOperation::DropDefault => {
                        if def.columns[at].identity.is_some() {
                            return Err(Error::coded(
                                "55000",
                                format!(
                                    "column \"{}\" of relation \"{}\" is an identity column",
                                    old.columns[at].name, old.name
                                ),
                            ));
                        }
                        def.columns[at].default = None;
                    }
                    other => {
                        return Err(Error::NotSupported(format!("ALTER COLUMN ... {other}")));
                    }
                }
            }
            AlterTableOperation::AddConstraint { constraint, .. } => match constraint {
                TableConstraint::PrimaryKey(_) => {
                    if !old.has_row_id() {
                        return Err(Error::coded(
                            "42P16",
                            format!(
                                "multiple primary keys for table \"{}\" are not allowed",
                                old.name
                            ),
                        ));
                    }
                    if self.has_rows(table)? {
                        return Err(Error::NotSupported(format!(
                            "adding a primary key to table \"{}\", which has rows (rows are \
                             stored by their key)",
                            old.name
                        )));
                    }
                    let keyed = constraint_table(&old.name, &old.columns, constraint)?;
                    def.columns = keyed.def.columns;
                    def.primary_key = keyed.def.primary_key;
                }
                TableConstraint::Unique(_) => {
                    unique = constraint_table(&old.name, &old.columns, constraint)?.unique;
                }
                TableConstraint::Check(_) => {
                    let named = matches!(constraint, TableConstraint::Check(c) if c.name.is_some());
                    let checks = constraint_table(&old.name, &old.columns, constraint)?
                        .def
                        .checks;
                    for mut check in checks {
                        if named {
                            add_check(&mut def.checks, check)?;
                            continue;
                        }
                        // An unnamed check takes a number when its name is taken.
                        let base = check.name.clone();
                        let mut n = 0;
                        while def.checks.iter().any(|c| c.name == check.name) {
                            n += 1;
                            check.name = format!("{base}{n}");
                        }
                        def.checks.push(check);
                    }
                    validate = true;
                }
                other => {
                    return Err(Error::NotSupported(format!("ADD {other}")));
                }
            },
            other => return Err(Error::NotSupported(format!("ALTER TABLE ... {other}"))),
        }
        let store = self.db.store().clone();
        let new = catalog.replace_table(table, def, change, |new, batch| {
            if matches!(rewrite, Rewrite::None) && !validate {
                return Ok(());
            }
            rewrite_rows(&store, table, new, &rewrite, batch)
        })?;
        if !unique.is_empty() {
            self.add_unique_constraints(&new, unique)?;
        }
        Ok(new)
    }

    fn has_rows(&self, table: &Table) -> Result<bool> {
        let mut any = false;
        table.read_batches(self.db.store(), None, 1, |rows, _| {
            any = rows.num_rows() > 0;
            Ok(false)
        })?;
        Ok(any)
    }
}

/// Writes every row of `old` in the layout of `new` (checked against `new`'s constraints):
/// rewritten when a column comes or goes, otherwise only checked.
fn rewrite_rows(
    store: &crate::storage::Store,
    old: &Table,
    new: &Table,
    rewrite: &Rewrite,
    batch: &mut WriteBatch,
) -> Result<()> {
    let visible = old.def().columns.iter().filter(|c| !c.hidden).count();
    let default = match rewrite {
        Rewrite::Add(Some(expr)) => {
            // `now()` and its kin are the statement's time, as when the default is written.
            use datafusion::logical_expr::simplify::SimplifyContext;
            use datafusion::optimizer::simplify_expressions::ExprSimplifier;
            let context = SimplifyContext::builder()
                .with_schema(Arc::new(DFSchema::empty()))
                .with_query_execution_start_time(Some(chrono::Utc::now()))
                .build();
            let expr = ExprSimplifier::new(context).simplify(expr.clone())?;
            Some(
                datafusion::prelude::SessionContext::new()
                    .create_physical_expr(expr, &DFSchema::empty())?,
            )
        }
        _ => None,
    };
    let added_type = new
        .visible_schema()
        .fields()
        .last()
        .map(|f| f.data_type().clone());
    old.read_batches(store, None, REWRITE_BATCH_ROWS, |rows, _| {
        let n = rows.num_rows();
        let mut columns: Vec<ArrayRef> = rows.columns()[..visible].to_vec();
        let row_ids = old.def().has_row_id().then(|| rows.column(visible).clone());
        match rewrite {
            Rewrite::None => {}
            Rewrite::Add(_) => {
                let ty = added_type
                    .clone()
                    .ok_or_else(|| Error::Internal("added column missing".into()))?;
                let values = match &default {
                    Some(expr) => {
                        let empty = RecordBatch::try_new_with_options(
                            Arc::new(Schema::empty()),
                            vec![],
                            &RecordBatchOptions::new().with_row_count(Some(n)),
                        )?;
                        expr.evaluate(&empty)?.into_array(n)?
                    }
                    None => new_null_array(&ty, n),
                };
                columns.push(values);
            }
            Rewrite::Drop(at) => {
                columns.remove(*at);
            }
        }
        let rows = new.conform(columns, row_ids)?;
        if !matches!(rewrite, Rewrite::None) {
            for (key, value) in new.encode_rows(&rows)? {
                batch.put(key, value);
            }
        }
        Ok(true)
    })
}

/// Adds `check` to `checks`, refusing a name already there (`42710`).
fn add_check(
    checks: &mut Vec<crate::table::check::CheckDef>,
    check: crate::table::check::CheckDef,
) -> Result<()> {
    if checks.iter().any(|c| c.name == check.name) {
        return Err(Error::coded(
            "42710",
            format!("constraint \"{}\" already exists", check.name),
        ));
    }
    checks.push(check);
    Ok(())
}

/// Whether a CHECK expression (SQL text) reads `column`.
fn check_reads(expr: &str, column: &str) -> bool {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let Ok(expr) = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(expr)
        .and_then(|mut p| p.parse_expr())
    else {
        return true;
    };
    let mut reads = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(&expr, |e| {
        if let SqlExpr::Identifier(ident) = e {
            reads |= normalize_ident(ident) == column;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    reads
}

/// What `CREATE TABLE`'s reading of one column gives: its definition, sequences, UNIQUE and
/// CHECK constraints.
struct Added {
    def: TableDef,
    sequences: Vec<crate::catalog::sequence::SequenceDef>,
    unique: Vec<(String, Vec<String>)>,
}

/// A column definition read as `CREATE TABLE` reads it.
fn single_column_table(table: &str, column: &SqlColumnDef) -> Result<Added> {
    let create = create_table(table, vec![column.clone()], vec![])?;
    let (def, sequences) = ddl::table_def(&create)?;
    Ok(Added {
        def,
        sequences,
        unique: ddl::unique_constraints(&create)?,
    })
}

/// A table constraint over the table's columns read as `CREATE TABLE` reads it.
fn constraint_table(
    table: &str,
    columns: &[crate::table::ColumnDef],
    constraint: &TableConstraint,
) -> Result<Added> {
    use datafusion::sql::sqlparser::ast::{ColumnOption, ColumnOptionDef};
    let sql_columns = columns
        .iter()
        .filter(|c| !c.hidden)
        .map(|c| {
            let data_type = column_sql_type(c)?;
            Ok(SqlColumnDef {
                name: Ident::with_quote('"', c.name.clone()),
                data_type,
                options: if c.nullable {
                    vec![]
                } else {
                    vec![ColumnOptionDef {
                        name: None,
                        option: ColumnOption::NotNull,
                    }]
                },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let create = create_table(table, sql_columns, vec![constraint.clone()])?;
    let (mut def, sequences) = ddl::table_def(&create)?;
    // Keep what the columns were (types, defaults, identity); only key and nullability follow
    // the constraint.
    for (new, old) in def
        .columns
        .iter_mut()
        .zip(columns.iter().filter(|c| !c.hidden))
    {
        let nullable = new.nullable;
        *new = old.clone();
        new.nullable = nullable && old.nullable;
    }
    Ok(Added {
        def,
        sequences,
        unique: ddl::unique_constraints(&create)?,
    })
}

/// The SQL type of a stored column, as `CREATE TABLE` would take it.
fn column_sql_type(
    column: &crate::table::ColumnDef,
) -> Result<datafusion::sql::sqlparser::ast::DataType> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let name = match column.pg_type.as_deref() {
        Some(pg_type) => pg_type.to_string(),
        None => {
            let data_type: datafusion::arrow::datatypes::DataType = column
                .data_type
                .parse()
                .map_err(|e| Error::Internal(format!("stored type {}: {e}", column.data_type)))?;
            crate::common::types::pg_type_name(&data_type)
        }
    };
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&name)
        .and_then(|mut p| p.parse_data_type())
        .map_err(|e| Error::Internal(format!("type {name}: {e}")))
}

/// `CREATE TABLE name (columns, constraints)`, parsed.
fn create_table(
    name: &str,
    columns: Vec<SqlColumnDef>,
    constraints: Vec<TableConstraint>,
) -> Result<CreateTable> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let mut statement = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!(
            "CREATE TABLE {} (x int)",
            super::dml::quote_key(name)
        ))
        .and_then(|mut p| p.parse_statement())
        .map_err(|e| Error::Internal(format!("CREATE TABLE for ALTER TABLE: {e}")))?;
    let datafusion::sql::sqlparser::ast::Statement::CreateTable(create) = &mut statement else {
        return Err(Error::Internal("CREATE TABLE for ALTER TABLE".into()));
    };
    create.columns = columns;
    create.constraints = constraints;
    Ok(create.clone())
}
