//! `CREATE [UNIQUE] INDEX` and `DROP INDEX`, on tables and materialized views.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{CreateIndex, Expr as SqlExpr, IndexType, ObjectName};

use super::{Output, Session};
use crate::error::{Error, Result};
use crate::sql::{normalize_ident, table_name};
use crate::storage::WriteBatch;
use crate::table::Table;
use crate::table::index::{Index, IndexDef};

/// Rows read at a time when an index is built over existing rows.
const BUILD_BATCH_ROWS: usize = 4096;

impl Session<'_> {
    /// `CREATE [UNIQUE] INDEX [IF NOT EXISTS] [name] ON table (columns)`: the index is built
    /// over the rows stored now, under the write lock, and maintained with every later write.
    pub(super) async fn create_index(&mut self, create: &CreateIndex) -> Result<Output> {
        refuse_unsupported(create)?;
        let relation = table_name(&create.table_name)?;
        let catalog = self.db.catalog();
        let (table, is_view) = match catalog.table(&relation) {
            Some(table) if create.unique && table.def().connector.is_some() => {
                return Err(Error::NotSupported(format!(
                    "a unique index on table \"{relation}\", which its connector feeds (its rows \
                     are the topic's)"
                )));
            }
            Some(table) => (table, false),
            None => match catalog.view(&relation).and_then(|v| v.storage().cloned()) {
                Some(storage) if create.unique => {
                    return Err(Error::NotSupported(format!(
                        "a unique index on materialized view \"{}\" (its rows come from its query)",
                        storage.name()
                    )));
                }
                Some(storage) => (storage, true),
                None if catalog.exists(&relation) => {
                    return Err(Error::coded(
                        "42809",
                        format!("\"{relation}\" is not a table or materialized view"),
                    ));
                }
                None => return Err(Error::UndefinedTable(relation)),
            },
        };
        let visible = table.visible_schema();
        let mut columns = Vec::with_capacity(create.columns.len());
        let mut names = Vec::with_capacity(create.columns.len());
        for column in &create.columns {
            let name = match &column.column.expr {
                SqlExpr::Identifier(ident) => normalize_ident(ident),
                SqlExpr::CompoundIdentifier(parts) if parts.len() == 1 => {
                    normalize_ident(&parts[0])
                }
                other => {
                    return Err(Error::NotSupported(format!(
                        "an index on the expression {other}"
                    )));
                }
            };
            let position = visible
                .index_of(&name)
                .map_err(|_| Error::UndefinedColumn(format!("column \"{name}\" does not exist")))?;
            columns.push(position);
            names.push(name);
        }
        let name = match &create.name {
            // An index is in its relation's schema.
            Some(name) if name.0.len() == 1 => crate::catalog::schema::qualify(
                crate::common::names::split(&relation).0,
                &table_name(name)?,
            ),
            Some(name) => {
                return Err(Error::Syntax(format!(
                    "syntax error: an index name cannot be qualified: {name}"
                )));
            }
            None => {
                let wanted = format!("{relation}_{}_idx", names.join("_"));
                let mut candidate = wanted.clone();
                let mut suffix = 0;
                while catalog.exists(&candidate) {
                    suffix += 1;
                    candidate = format!("{wanted}{suffix}");
                }
                candidate
            }
        };
        let def = IndexDef {
            id: 0,
            name: name.clone(),
            relation,
            columns,
            unique: create.unique,
            constraint: false,
        };
        let store = self.db.store().clone();
        let if_not_exists = create.if_not_exists;
        let created = if is_view {
            // A view's rows are written by its dataflow: the index is built between two of
            // its epochs, and maintained from the next one on.
            let (tx, rx) = tokio::sync::oneshot::channel();
            let catalog = catalog.clone();
            self.db
                .runtime()
                .exclusive(Box::new(move |store| {
                    let created =
                        catalog.create_index(&table, def, if_not_exists, |index, batch| {
                            build(store, &table, index, batch)
                        });
                    let _ = tx.send(created);
                    None
                }))
                .await?;
            rx.await
                .map_err(|_| Error::Internal("the index was not built".into()))??
        } else {
            let _guard = self.write_guard().await?;
            catalog.create_index(&table, def, if_not_exists, |index, batch| {
                build(&store, &table, index, batch)
            })?
        };
        if !created {
            self.notice(
                "42P07",
                format!("relation \"{name}\" already exists, skipping"),
            );
        }
        Ok(Output::Command("CREATE INDEX".into()))
    }

    /// `DROP INDEX [IF EXISTS] name, ...`.
    pub(super) async fn drop_indexes(
        &mut self,
        names: &[ObjectName],
        if_exists: bool,
    ) -> Result<Output> {
        let _guard = self.write_guard().await?;
        for name in names {
            let name = table_name(name)?;
            let catalog = self.db.catalog().clone();
            let on_view = catalog
                .index(&name)
                .is_some_and(|def| catalog.table(&def.relation).is_none());
            let dropped = if on_view {
                // Between two epochs of the view's dataflow, which writes its entries.
                let (tx, rx) = tokio::sync::oneshot::channel();
                let index = name.clone();
                self.db
                    .runtime()
                    .exclusive(Box::new(move |_| {
                        let _ = tx.send(catalog.drop_index(&index));
                        None
                    }))
                    .await?;
                rx.await
                    .map_err(|_| Error::Internal("the index was not dropped".into()))??
            } else {
                catalog.drop_index(&name)?
            };
            if !dropped {
                if !if_exists {
                    return Err(Error::coded(
                        "42704",
                        format!("index \"{name}\" does not exist"),
                    ));
                }
                self.notice(
                    "00000",
                    format!("index \"{name}\" does not exist, skipping"),
                );
            }
        }
        Ok(Output::Command("DROP INDEX".into()))
    }
}

/// Adds the entries of every stored row of `table` to `batch`.
pub(super) fn build(
    store: &crate::storage::Store,
    table: &Arc<Table>,
    index: &Index,
    batch: &mut WriteBatch,
) -> Result<()> {
    let mut seen = HashSet::new();
    table.read_batches_with_keys(store, None, BUILD_BATCH_ROWS, |rows, keys| {
        index.build(batch, (&rows, &keys), &mut seen, |i| {
            table.describe_columns(&index.def().columns, &rows, i)
        })?;
        Ok(true)
    })
}

/// Refuses what Augur's indexes do not do, rather than ignoring it.
fn refuse_unsupported(create: &CreateIndex) -> Result<()> {
    let refuse = |what: &str| Err(Error::NotSupported(what.to_string()));
    match &create.using {
        None | Some(IndexType::BTree) | Some(IndexType::Hash) => {}
        Some(other) => return refuse(&format!("index access method \"{other}\"")),
    }
    if create.predicate.is_some() {
        return refuse("partial indexes (CREATE INDEX ... WHERE)");
    }
    if !create.include.is_empty() {
        return refuse("INCLUDE columns in an index");
    }
    if create.nulls_distinct == Some(false) {
        return refuse("NULLS NOT DISTINCT");
    }
    if let Some(option) = create.with.first() {
        let name = match option {
            datafusion::sql::sqlparser::ast::Expr::BinaryOp { left, .. } => left.to_string(),
            other => other.to_string(),
        };
        return Err(Error::coded(
            "22023",
            format!("unrecognized parameter \"{name}\""),
        ));
    }
    if create.columns.iter().any(|c| c.operator_class.is_some()) {
        return refuse("operator classes in an index");
    }
    if !create.index_options.is_empty() || !create.alter_options.is_empty() {
        return refuse("these index options");
    }
    Ok(())
}
