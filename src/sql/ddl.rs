//! CREATE TABLE: from the parsed statement to a [`TableDef`].

use datafusion::sql::sqlparser::ast::{
    ColumnOption, CreateTable, Expr as SqlExpr, TableConstraint,
};

use super::{normalize_ident, table_name, types};
use crate::error::{Error, Result};
use crate::table::{ColumnDef, ROW_ID_COLUMN, TableDef};

/// Resolves a CREATE TABLE statement (without `AS query`) into a table definition. The id is
/// assigned by the catalog.
pub fn table_def(create: &CreateTable) -> Result<TableDef> {
    refuse_unsupported(create)?;
    let name = table_name(&create.name)?;
    let mut columns: Vec<ColumnDef> = Vec::with_capacity(create.columns.len() + 1);
    let mut primary_key: Option<Vec<String>> = None;
    let mut set_primary_key = |cols: Vec<String>| {
        if primary_key.is_some() {
            return Err(Error::coded(
                "42P16",
                format!("multiple primary keys for table \"{name}\" are not allowed"),
            ));
        }
        primary_key = Some(cols);
        Ok(())
    };

    for column in &create.columns {
        let column_name = normalize_ident(&column.name);
        if column_name == ROW_ID_COLUMN {
            return Err(Error::coded(
                "42701",
                format!("column name \"{ROW_ID_COLUMN}\" is reserved"),
            ));
        }
        if columns.iter().any(|c| c.name == column_name) {
            return Err(Error::coded(
                "42701",
                format!("column \"{column_name}\" specified more than once"),
            ));
        }
        let data_type = types::arrow_type(&column.data_type)?;
        let mut nullable = true;
        let mut default: Option<String> = None;
        for option in &column.options {
            match &option.option {
                ColumnOption::Null => nullable = true,
                ColumnOption::NotNull => nullable = false,
                ColumnOption::Default(expr) => default = Some(default_sql(expr)),
                ColumnOption::PrimaryKey(_) => set_primary_key(vec![column_name.clone()])?,
                ColumnOption::Unique(_) => {
                    return Err(Error::NotSupported(
                        "UNIQUE constraints other than the PRIMARY KEY".into(),
                    ));
                }
                ColumnOption::ForeignKey(_) => {
                    return Err(Error::NotSupported("FOREIGN KEY constraints".into()));
                }
                ColumnOption::Check(_) => {
                    return Err(Error::NotSupported("CHECK constraints".into()));
                }
                ColumnOption::Generated { .. } => {
                    return Err(Error::NotSupported("generated columns".into()));
                }
                other => {
                    return Err(Error::NotSupported(format!("column option {other}")));
                }
            }
        }
        columns.push(ColumnDef {
            name: column_name,
            data_type: data_type.to_string(),
            nullable,
            default,
            hidden: false,
        });
    }
    if columns.is_empty() {
        return Err(Error::NotSupported("tables without columns".into()));
    }

    for constraint in &create.constraints {
        match constraint {
            TableConstraint::PrimaryKey(pk) => {
                let cols = pk
                    .columns
                    .iter()
                    .map(|c| match &c.column.expr {
                        SqlExpr::Identifier(ident) => Ok(normalize_ident(ident)),
                        other => Err(Error::NotSupported(format!(
                            "PRIMARY KEY on expression {other}"
                        ))),
                    })
                    .collect::<Result<Vec<_>>>()?;
                set_primary_key(cols)?;
            }
            TableConstraint::Unique(_) => {
                return Err(Error::NotSupported(
                    "UNIQUE constraints other than the PRIMARY KEY".into(),
                ));
            }
            TableConstraint::ForeignKey(_) => {
                return Err(Error::NotSupported("FOREIGN KEY constraints".into()));
            }
            TableConstraint::Check(_) => {
                return Err(Error::NotSupported("CHECK constraints".into()));
            }
            other => return Err(Error::NotSupported(format!("table constraint {other}"))),
        }
    }

    let primary_key = match primary_key {
        Some(names) => {
            let mut positions = Vec::with_capacity(names.len());
            for key in names {
                let pos = columns.iter().position(|c| c.name == key).ok_or_else(|| {
                    Error::UndefinedColumn(format!("column \"{key}\" named in key does not exist"))
                })?;
                if positions.contains(&pos) {
                    return Err(Error::coded(
                        "42701",
                        format!("column \"{key}\" appears twice in primary key constraint"),
                    ));
                }
                columns[pos].nullable = false;
                positions.push(pos);
            }
            positions
        }
        None => {
            columns.push(ColumnDef {
                name: ROW_ID_COLUMN.into(),
                data_type: "Int64".into(),
                nullable: false,
                default: None,
                hidden: true,
            });
            vec![columns.len() - 1]
        }
    };

    Ok(TableDef {
        id: 0,
        name,
        columns,
        primary_key,
        definition: create.to_string(),
        counted: false,
        appended: false,
        append_only: false,
        watermark: None,
    })
}

fn default_sql(expr: &SqlExpr) -> String {
    expr.to_string()
}

fn refuse_unsupported(create: &CreateTable) -> Result<()> {
    let refuse = |what: &str| Err(Error::NotSupported(what.to_string()));
    if create.temporary {
        return refuse("TEMPORARY tables");
    }
    if create.external {
        return refuse("EXTERNAL tables");
    }
    if create.or_replace {
        return refuse("CREATE OR REPLACE TABLE");
    }
    if create.like.is_some() {
        return refuse("CREATE TABLE ... LIKE");
    }
    if create.partition_by.is_some() {
        return refuse("PARTITION BY");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::Statement;

    use super::*;
    use crate::sql::SqlParser;

    fn def(sql: &str) -> Result<TableDef> {
        match SqlParser::new().parse(sql)?.remove(0) {
            Statement::CreateTable(create) => table_def(&create),
            other => panic!("not CREATE TABLE: {other}"),
        }
    }

    #[test]
    fn primary_keys_and_defaults() {
        let t = def(
            "CREATE TABLE Users (id BIGINT PRIMARY KEY, name TEXT NOT NULL, \
                     score DOUBLE PRECISION DEFAULT 1.5)",
        )
        .unwrap();
        assert_eq!(t.name, "users");
        assert_eq!(t.primary_key, vec![0]);
        assert!(!t.columns[0].nullable && !t.columns[1].nullable && t.columns[2].nullable);
        assert_eq!(t.columns[2].default.as_deref(), Some("1.5"));
        assert!(!t.has_row_id());

        let t = def("CREATE TABLE e (a INT, b TEXT, PRIMARY KEY (b, a))").unwrap();
        assert_eq!(t.primary_key, vec![1, 0]);
    }

    #[test]
    fn tables_without_a_key_get_a_hidden_row_id() {
        let t = def("CREATE TABLE log (msg TEXT)").unwrap();
        assert!(t.has_row_id());
        assert_eq!(t.primary_key, vec![1]);
        assert_eq!(t.columns[1].name, ROW_ID_COLUMN);
    }

    #[test]
    fn bad_definitions_are_refused_with_their_sqlstate() {
        assert_eq!(
            def("CREATE TABLE t (a INT, a INT)").unwrap_err().sqlstate(),
            "42701"
        );
        assert_eq!(
            def("CREATE TABLE t (a INT PRIMARY KEY, b INT PRIMARY KEY)")
                .unwrap_err()
                .sqlstate(),
            "42P16"
        );
        assert_eq!(
            def("CREATE TABLE t (a INT, PRIMARY KEY (b))")
                .unwrap_err()
                .sqlstate(),
            "42703"
        );
        assert_eq!(
            def("CREATE TABLE t (a INT UNIQUE)").unwrap_err().sqlstate(),
            "0A000"
        );
        assert_eq!(
            def("CREATE TEMP TABLE t (a INT)").unwrap_err().sqlstate(),
            "0A000"
        );
    }
}
