//! Where a connection's temporary relations live and how its statements find them.
//!
//! As in PostgreSQL, `CREATE TEMP TABLE t` makes `t` in a schema of the connection's own,
//! `pg_temp_N`, and an unqualified `t` then means that table before any other of the same name,
//! so a temporary table can stand in for a permanent one for a while. `pg_temp.t` names it
//! explicitly. A view over a temporary relation is temporary and goes there too.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    CopySource, Ident, ObjectName, ObjectNamePart, ObjectType, Query, Statement, TableAlias,
    TableFactor, Visit, VisitMut, Visitor, VisitorMut,
};

use super::connection::ConnectionState;
use super::database::Database;
use crate::error::Result;
use crate::sql::{Stmt, normalize_ident};

/// `stmt` with its relation names resolved for `conn`'s temporary relations.
pub fn resolve(db: &Database, conn: &ConnectionState, stmt: Stmt) -> Result<Stmt> {
    match stmt {
        Stmt::Sql(mut statement) => {
            resolve_statement(db, conn, &mut statement)?;
            Ok(Stmt::Sql(statement))
        }
        Stmt::CreateTable {
            mut create,
            append_only,
            watermark,
            connector,
        } => {
            let written = create.name.clone();
            if create.temporary {
                create.name = in_temp_schema(db, conn, &create.name)?;
            }
            resolve_references(db, conn, &mut create, &written);
            Ok(Stmt::CreateTable {
                create,
                append_only,
                watermark,
                connector,
            })
        }
        Stmt::Maintenance { command, tables } => {
            let tables = match conn.temp_schema_if_any() {
                None => tables,
                Some(schema) => tables
                    .into_iter()
                    .map(|table| {
                        let key = crate::catalog::schema::qualify(&schema, &table);
                        if !table.contains('.') && db.catalog().table(&key).is_some() {
                            key
                        } else {
                            table
                        }
                    })
                    .collect(),
            };
            Ok(Stmt::Maintenance { command, tables })
        }
        other => Ok(other),
    }
}

fn resolve_statement(
    db: &Database,
    conn: &ConnectionState,
    statement: &mut Statement,
) -> Result<()> {
    match statement {
        Statement::CreateTable(create) => {
            let written = create.name.clone();
            if create.temporary {
                create.name = in_temp_schema(db, conn, &create.name)?;
            }
            resolve_references(db, conn, create, &written);
            let name = create.name.clone();
            resolve_names(db, conn, statement);
            if let Statement::CreateTable(create) = statement {
                create.name = name;
            }
        }
        Statement::CreateView(create) => {
            let mut name = create.name.clone();
            let explicit = create.temporary;
            if explicit {
                name = in_temp_schema(db, conn, &name)?;
            }
            let read_temporary = resolve_names(db, conn, statement) > 0;
            if let Statement::CreateView(create) = statement {
                // A view over a temporary relation is temporary.
                if read_temporary && !explicit && create.name.0.len() == 1 {
                    name = in_temp_schema(db, conn, &name)?;
                }
                create.name = name;
            }
        }
        Statement::Drop {
            object_type: object_type @ (ObjectType::Table | ObjectType::View | ObjectType::Index),
            names,
            ..
        } => {
            if let Some(schema) = conn.temp_schema_if_any() {
                for name in names.iter_mut() {
                    let resolved = if *object_type == ObjectType::Index {
                        temporary_index(db, &schema, name)
                    } else {
                        temporary_name(db, &schema, name)
                    };
                    if let Some(resolved) = resolved {
                        *name = resolved;
                    }
                }
            }
        }
        Statement::Copy {
            source: CopySource::Table { table_name, .. },
            ..
        } => {
            if let Some(schema) = conn.temp_schema_if_any()
                && let Some(resolved) = temporary_name(db, &schema, table_name)
            {
                *table_name = resolved;
            }
            resolve_names(db, conn, statement);
        }
        _ => {
            resolve_names(db, conn, statement);
        }
    }
    Ok(())
}

/// The tables a new table's foreign keys reference: the table itself where it names itself as
/// written (`written`), a temporary table of the connection before a permanent one.
fn resolve_references(
    db: &Database,
    conn: &ConnectionState,
    create: &mut datafusion::sql::sqlparser::ast::CreateTable,
    written: &ObjectName,
) {
    use datafusion::sql::sqlparser::ast::{ColumnOption, TableConstraint};
    let own = create.name.clone();
    let schema = conn.temp_schema_if_any();
    let resolve = |name: &mut ObjectName| {
        if name == written {
            *name = own.clone();
        } else if let Some(schema) = &schema
            && let Some(resolved) = temporary_name(db, schema, name)
        {
            *name = resolved;
        }
    };
    for column in create.columns.iter_mut() {
        for option in column.options.iter_mut() {
            if let ColumnOption::ForeignKey(fk) = &mut option.option {
                resolve(&mut fk.foreign_table);
            }
        }
    }
    for constraint in create.constraints.iter_mut() {
        if let TableConstraint::ForeignKey(fk) = constraint {
            resolve(&mut fk.foreign_table);
        }
    }
}

/// `name` in the connection's schema of temporary relations, made when it has none yet; a name
/// qualified with another schema is refused as PostgreSQL refuses it.
fn in_temp_schema(db: &Database, conn: &ConnectionState, name: &ObjectName) -> Result<ObjectName> {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(normalize_ident))
        .collect();
    let relation = match parts.as_slice() {
        [relation] => relation.clone(),
        [schema, relation] if schema == "pg_temp" => relation.clone(),
        [schema, relation] if crate::catalog::schema::is_temp_schema(schema) => relation.clone(),
        _ => {
            return Err(crate::error::Error::coded(
                "42P16",
                "cannot create temporary relation in non-temporary schema",
            ));
        }
    };
    let schema = conn.temp_schema();
    if db.catalog().add_temp_schema(&schema) {
        db.attach_schema(&schema)?;
    }
    Ok(qualified(&schema, &relation))
}

fn qualified(schema: &str, relation: &str) -> ObjectName {
    ObjectName(vec![
        ObjectNamePart::Identifier(Ident::with_quote('"', schema)),
        ObjectNamePart::Identifier(Ident::with_quote('"', relation)),
    ])
}

/// `name` in `schema` when it names one of the temporary relations there: unqualified, or
/// qualified with `pg_temp`.
fn temporary_name(db: &Database, schema: &str, name: &ObjectName) -> Option<ObjectName> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(normalize_ident))
        .collect::<Option<_>>()?;
    let relation = match parts.as_slice() {
        [relation] => relation,
        [qualifier, relation] if qualifier == "pg_temp" => relation,
        _ => return None,
    };
    let key = crate::catalog::schema::qualify(schema, relation);
    let catalog = db.catalog();
    (catalog.table(&key).is_some() || catalog.view(&key).is_some())
        .then(|| qualified(schema, relation))
}

/// `name` in `schema` when it names an index of a temporary table there.
fn temporary_index(db: &Database, schema: &str, name: &ObjectName) -> Option<ObjectName> {
    let [part] = name.0.as_slice() else {
        return None;
    };
    let index = normalize_ident(part.as_ident()?);
    db.catalog()
        .index(&crate::catalog::schema::qualify(schema, &index))
        .map(|_| qualified(schema, &index))
}

/// Resolves the relations `statement` reads or writes; returns how many name a temporary one.
/// Names of common table expressions are left alone.
fn resolve_names(db: &Database, conn: &ConnectionState, statement: &mut Statement) -> usize {
    let Some(schema) = conn.temp_schema_if_any() else {
        return 0;
    };
    let mut ctes = CteNames::default();
    let _ = Visit::visit(&*statement, &mut ctes);
    // Tables in FROM keep the name they were written with as their alias (`d.*`, `d.a`).
    let mut tables = AliasedTables {
        db,
        schema: &schema,
        ctes: &ctes,
        resolved: 0,
    };
    let _ = VisitMut::visit(statement, &mut tables);
    let mut resolved = tables.resolved;
    let _ = datafusion::sql::sqlparser::ast::visit_relations_mut(statement, |name| {
        if !ctes.names(name)
            && let Some(temporary) = temporary_name(db, &schema, name)
        {
            *name = temporary;
            resolved += 1;
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = VisitMut::visit(
        statement,
        &mut RegclassNames {
            db,
            schema: &schema,
        },
    );
    resolved
}

/// `'t'::regclass` of a temporary relation `t`: the catalog reads it as
/// `parse_ident('t'::TEXT)` looked up in the current schema (see `datafusion-pg-catalog`'s
/// `RewriteRegCastToSubquery`), where the temporary relation is not; the name is qualified
/// with the connection's schema of temporary relations, which comes first as in PostgreSQL.
struct RegclassNames<'a> {
    db: &'a Database,
    schema: &'a str,
}

impl VisitorMut for RegclassNames<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        use datafusion::sql::sqlparser::ast::{
            DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem, SetExpr,
            Value,
        };
        // Only the catalog's own lookup: `SELECT parse_ident('t'::TEXT) AS parts`.
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let [
            SelectItem::ExprWithAlias {
                expr: Expr::Function(function),
                alias,
            },
        ] = select.projection.as_mut_slice()
        else {
            return ControlFlow::Continue(());
        };
        if alias.value != "parts" {
            return ControlFlow::Continue(());
        }
        let named = function
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.eq_ignore_ascii_case("parse_ident"));
        let FunctionArguments::List(list) = &mut function.args else {
            return ControlFlow::Continue(());
        };
        if !named || list.args.len() != 1 {
            return ControlFlow::Continue(());
        }
        let FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Cast {
            expr: operand,
            data_type: DataType::Text,
            ..
        })) = &mut list.args[0]
        else {
            return ControlFlow::Continue(());
        };
        let Expr::Value(value) = operand.as_mut() else {
            return ControlFlow::Continue(());
        };
        let Value::SingleQuotedString(text) = &mut value.value else {
            return ControlFlow::Continue(());
        };
        // One name, as `parse_ident` reads it: folded to lower case unless quoted.
        let relation = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(quoted) if !quoted.contains('"') => Ident::with_quote('"', quoted),
            Some(_) => return ControlFlow::Continue(()),
            None if text.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                Ident::new(text.as_str())
            }
            None => return ControlFlow::Continue(()),
        };
        let name = ObjectName(vec![ObjectNamePart::Identifier(relation)]);
        if let Some(temporary) = temporary_name(self.db, self.schema, &name) {
            *text = temporary.to_string();
        }
        ControlFlow::Continue(())
    }
}

struct AliasedTables<'a> {
    db: &'a Database,
    schema: &'a str,
    ctes: &'a CteNames,
    resolved: usize,
}

impl VisitorMut for AliasedTables<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
            && !self.ctes.names(name)
            && let Some(written) = name.0.last().and_then(|p| p.as_ident()).cloned()
            && let Some(temporary) = temporary_name(self.db, self.schema, name)
        {
            *name = temporary;
            if alias.is_none() {
                *alias = Some(TableAlias {
                    explicit: false,
                    name: written,
                    columns: vec![],
                    at: None,
                });
            }
            self.resolved += 1;
        }
        ControlFlow::Continue(())
    }
}

/// The names of the common table expressions of a statement.
#[derive(Default)]
struct CteNames(HashSet<String>);

impl CteNames {
    /// Whether `name`, unqualified, is one of them.
    fn names(&self, name: &ObjectName) -> bool {
        matches!(name.0.as_slice(), [part] if part.as_ident().is_some_and(|i| self.0.contains(&normalize_ident(i))))
    }
}

impl Visitor for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.0.insert(normalize_ident(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }
}
