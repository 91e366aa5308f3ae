//! CREATE TABLE: from the parsed statement to a [`TableDef`].

use datafusion::sql::sqlparser::ast::{
    ColumnOption, CreateTable, CreateTableOptions, DataType as SqlType, Expr as SqlExpr,
    GeneratedAs, OnCommit, SequenceOptions, SqlOption, TableConstraint, UnaryOperator, Value,
};

use super::{normalize_ident, table_name};
use crate::catalog::sequence::SequenceDef;
use crate::common::types;
use crate::error::{Error, Result};
use crate::table::foreign_key::ForeignKeyDef;
use crate::table::{ColumnDef, Identity, ROW_ID_COLUMN, TableDef};

/// The type and sequence type of `SERIAL`, `BIGSERIAL` and `SMALLSERIAL` (and their aliases).
fn serial_type(data_type: &SqlType) -> Option<(SqlType, &'static str)> {
    let SqlType::Custom(name, modifiers) = data_type else {
        return None;
    };
    if !modifiers.is_empty() {
        return None;
    }
    match name.to_string().to_ascii_lowercase().as_str() {
        "serial" | "serial4" => Some((SqlType::Integer(None), "integer")),
        "bigserial" | "serial8" => Some((SqlType::BigInt(None), "bigint")),
        "smallserial" | "serial2" => Some((SqlType::SmallInt(None), "smallint")),
        _ => None,
    }
}

/// The sequence type of an identity column of `data_type`.
fn identity_sequence_type(data_type: &SqlType) -> Result<&'static str> {
    match data_type {
        SqlType::SmallInt(_) | SqlType::Int2(_) => Ok("smallint"),
        SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) => Ok("integer"),
        SqlType::BigInt(_) | SqlType::Int8(_) => Ok("bigint"),
        other => Err(Error::coded(
            "22023",
            format!("identity column type must be smallint, integer, or bigint, not {other}"),
        )),
    }
}

/// An integer literal of a sequence option (`5`, `-1`).
fn int_literal(expr: &SqlExpr) -> Result<i64> {
    match expr {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        SqlExpr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => int_literal(expr).ok().and_then(i64::checked_neg),
        SqlExpr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => int_literal(expr).ok(),
        _ => None,
    }
    .ok_or_else(|| Error::Syntax(format!("syntax error: {expr} is not an integer")))
}

/// Applies `CREATE SEQUENCE` options to `def`; the bounds follow the increment's direction as in
/// PostgreSQL.
pub fn apply_sequence_options(def: &mut SequenceDef, options: &[SequenceOptions]) -> Result<()> {
    let (type_min, type_max) = crate::catalog::sequence::type_range(&def.data_type)?;
    let (mut min, mut max, mut start) = (None, None, None);
    for option in options {
        match option {
            SequenceOptions::IncrementBy(e, _) => def.increment = int_literal(e)?,
            SequenceOptions::MinValue(e) => min = Some(e.as_ref().map(int_literal).transpose()?),
            SequenceOptions::MaxValue(e) => max = Some(e.as_ref().map(int_literal).transpose()?),
            SequenceOptions::StartWith(e, _) => start = Some(int_literal(e)?),
            SequenceOptions::Cache(e) => {
                int_literal(e)?;
            }
            SequenceOptions::Cycle(no) => def.cycle = !*no,
        }
    }
    let ascending = def.increment > 0;
    def.min = min
        .flatten()
        .unwrap_or(if ascending { 1 } else { type_min });
    def.max = max
        .flatten()
        .unwrap_or(if ascending { type_max } else { -1 });
    def.start = start.unwrap_or(if ascending { def.min } else { def.max });
    for (what, value) in [("MINVALUE", def.min), ("MAXVALUE", def.max)] {
        if value < type_min || value > type_max {
            return Err(Error::coded(
                "22023",
                format!(
                    "{what} ({value}) is out of range for sequence data type {}",
                    def.data_type
                ),
            ));
        }
    }
    def.validate()
}

/// Resolves `CREATE SEQUENCE name [AS type] options` into a definition; `OWNED BY` is resolved
/// by the caller, which knows the tables.
pub fn sequence_def(
    name: String,
    data_type: Option<&SqlType>,
    options: &[SequenceOptions],
) -> Result<SequenceDef> {
    let data_type = match data_type {
        None => "bigint",
        Some(t) => identity_sequence_type(t).map_err(|_| {
            Error::coded(
                "22023",
                format!("sequence type must be smallint, integer, or bigint, not {t}"),
            )
        })?,
    };
    let mut def = SequenceDef::counting(name, data_type)?;
    apply_sequence_options(&mut def, options)?;
    Ok(def)
}

/// Resolves a CREATE TABLE statement (without `AS query`) into a table definition and the
/// sequences its `SERIAL` and identity columns need (owned by those columns). Ids are assigned
/// by the catalog, which may rename a sequence whose name is taken.
/// A `FOREIGN KEY` of table `table` on `columns`. Its referenced columns are filled in from
/// the parent's primary key when the table is created (an empty list here means "the primary
/// key"). Only `NO ACTION`/`RESTRICT`, `MATCH SIMPLE` and immediate checking are supported.
fn foreign_key(
    table: &str,
    name: Option<&datafusion::sql::sqlparser::ast::Ident>,
    columns: Vec<String>,
    fk: &datafusion::sql::sqlparser::ast::ForeignKeyConstraint,
) -> Result<ForeignKeyDef> {
    use datafusion::sql::sqlparser::ast::{ConstraintReferenceMatchKind, ReferentialAction};
    for (what, action) in [("ON DELETE", &fk.on_delete), ("ON UPDATE", &fk.on_update)] {
        if let Some(
            action @ (ReferentialAction::Cascade
            | ReferentialAction::SetNull
            | ReferentialAction::SetDefault),
        ) = action
        {
            return Err(Error::NotSupported(format!(
                "foreign keys with {what} {action}"
            )));
        }
    }
    if matches!(
        fk.match_kind,
        Some(ConstraintReferenceMatchKind::Full | ConstraintReferenceMatchKind::Partial)
    ) {
        return Err(Error::NotSupported(
            "foreign keys with MATCH FULL or PARTIAL".into(),
        ));
    }
    if fk.characteristics.is_some() {
        return Err(Error::NotSupported("DEFERRABLE foreign keys".into()));
    }
    let parent = table_name(&fk.foreign_table)?;
    let parent_columns: Vec<String> = fk.referred_columns.iter().map(normalize_ident).collect();
    if !parent_columns.is_empty() && parent_columns.len() != columns.len() {
        return Err(Error::coded(
            "42830",
            "number of referencing and referenced columns for foreign key disagree",
        ));
    }
    let relation = crate::common::names::split(table).1;
    let name = match name {
        Some(n) => normalize_ident(n),
        None => format!("{relation}_{}_fkey", columns.join("_")),
    };
    Ok(ForeignKeyDef {
        name,
        columns,
        parent,
        parent_columns,
    })
}

/// The `UNIQUE` constraints of `create`, column and table constraints alike, as (name, column
/// names); unnamed ones are named as PostgreSQL names them, `<table>_<columns>_key`. Each becomes
/// a unique index: NULLs are distinct, as PostgreSQL's default is.
pub fn unique_constraints(create: &CreateTable) -> Result<Vec<(String, Vec<String>)>> {
    use datafusion::sql::sqlparser::ast::{NullsDistinctOption, UniqueConstraint};
    let table = table_name(&create.name)?;
    let named = |name: Option<&datafusion::sql::sqlparser::ast::Ident>, columns: &[String]| {
        name.map(|n| {
            crate::catalog::schema::qualify(
                crate::common::names::split(&table).0,
                &normalize_ident(n),
            )
        })
        .unwrap_or_else(|| format!("{table}_{}_key", columns.join("_")))
    };
    let check = |unique: &UniqueConstraint| {
        if matches!(unique.nulls_distinct, NullsDistinctOption::NotDistinct) {
            return Err(Error::NotSupported("UNIQUE NULLS NOT DISTINCT".into()));
        }
        Ok(())
    };
    let mut out = Vec::new();
    for column in &create.columns {
        for option in &column.options {
            if let ColumnOption::Unique(unique) = &option.option {
                check(unique)?;
                let columns = vec![normalize_ident(&column.name)];
                out.push((named(option.name.as_ref(), &columns), columns));
            }
        }
    }
    for constraint in &create.constraints {
        if let TableConstraint::Unique(unique) = constraint {
            check(unique)?;
            let columns = unique
                .columns
                .iter()
                .map(|c| match &c.column.expr {
                    SqlExpr::Identifier(ident) => Ok(normalize_ident(ident)),
                    other => Err(Error::NotSupported(format!("UNIQUE on expression {other}"))),
                })
                .collect::<Result<Vec<_>>>()?;
            out.push((named(unique.name.as_ref(), &columns), columns));
        }
    }
    // A constraint's index is a relation: its name cannot hold a schema.
    let schema = match table.split_once('.') {
        Some((schema, _)) => format!("{schema}."),
        None => String::new(),
    };
    if let Some((name, _)) = out
        .iter()
        .find(|(name, _)| name.strip_prefix(&schema).unwrap_or(name).contains('.'))
    {
        return Err(Error::coded(
            "42602",
            format!("invalid name \"{name}\": Augur's names cannot contain \".\""),
        ));
    }
    Ok(out)
}

pub fn table_def(create: &CreateTable) -> Result<(TableDef, Vec<SequenceDef>)> {
    refuse_unsupported(create)?;
    let name = table_name(&create.name)?;
    let mut columns: Vec<ColumnDef> = Vec::with_capacity(create.columns.len() + 1);
    let mut sequences: Vec<SequenceDef> = Vec::new();
    let mut primary_key: Option<Vec<String>> = None;
    // (name, columns it reads, expression) of each CHECK constraint.
    let mut checks: Vec<(Option<String>, Vec<String>, String)> = Vec::new();
    let mut foreign_keys: Vec<ForeignKeyDef> = Vec::new();
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
        let serial = serial_type(&column.data_type);
        let sql_type = serial.as_ref().map_or(&column.data_type, |(t, _)| t);
        let data_type = types::arrow_type(sql_type)?;
        let mut nullable = true;
        let mut default: Option<String> = None;
        let mut identity = None;
        let mut owned_sequence = |data_type: &str, options: &[SequenceOptions]| -> Result<String> {
            let sequence_name = format!("{name}_{column_name}_seq");
            let mut def = SequenceDef::counting(sequence_name.clone(), data_type)?;
            apply_sequence_options(&mut def, options)?;
            def.owned_by = Some((name.clone(), column_name.clone()));
            sequences.push(def);
            Ok(crate::catalog::sequence::nextval_default(&sequence_name))
        };
        if let Some((_, sequence_type)) = serial {
            default = Some(owned_sequence(sequence_type, &[])?);
            nullable = false;
        }
        for option in &column.options {
            match &option.option {
                ColumnOption::Null => nullable = true,
                ColumnOption::NotNull => nullable = false,
                ColumnOption::Default(_) if default.is_some() => {
                    return Err(Error::coded(
                        "42601",
                        format!(
                            "multiple default values specified for column \"{column_name}\" of table \"{name}\""
                        ),
                    ));
                }
                ColumnOption::Default(expr) => default = Some(default_sql(expr)),
                ColumnOption::Generated {
                    generated_as: generated_as @ (GeneratedAs::Always | GeneratedAs::ByDefault),
                    sequence_options,
                    generation_expr: None,
                    ..
                } => {
                    if default.is_some() {
                        return Err(Error::coded(
                            "42601",
                            format!(
                                "both default and identity specified for column \"{column_name}\" of table \"{name}\""
                            ),
                        ));
                    }
                    let sequence_type = identity_sequence_type(&column.data_type)?;
                    let options = sequence_options.as_deref().unwrap_or_default();
                    default = Some(owned_sequence(sequence_type, options)?);
                    nullable = false;
                    identity = Some(match generated_as {
                        GeneratedAs::Always => Identity::Always,
                        _ => Identity::ByDefault,
                    });
                }
                ColumnOption::PrimaryKey(_) => set_primary_key(vec![column_name.clone()])?,
                // Made into unique indexes when the table is created (unique_constraints).
                ColumnOption::Unique(_) => {}
                ColumnOption::ForeignKey(fk) => foreign_keys.push(foreign_key(
                    &name,
                    option.name.as_ref().or(fk.name.as_ref()),
                    vec![column_name.clone()],
                    fk,
                )?),
                ColumnOption::Check(check) => checks.push((
                    option
                        .name
                        .as_ref()
                        .or(check.name.as_ref())
                        .map(normalize_ident),
                    vec![column_name.clone()],
                    check.expr.to_string(),
                )),
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
            identity,
            pg_type: match types::text_type(sql_type) {
                Some(name) => Some(name.to_string()),
                None => crate::catalog::pg_char::char_type(sql_type)?,
            },
            precision: types::seconds_precision(sql_type),
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
            TableConstraint::Unique(_) => {}
            TableConstraint::ForeignKey(fk) => foreign_keys.push(foreign_key(
                &name,
                fk.name.as_ref(),
                fk.columns.iter().map(normalize_ident).collect(),
                fk,
            )?),
            TableConstraint::Check(check) => checks.push((
                check.name.as_ref().map(normalize_ident),
                referenced_columns(&check.expr),
                check.expr.to_string(),
            )),
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
                identity: None,
                pg_type: None,
                precision: None,
            });
            vec![columns.len() - 1]
        }
    };

    let checks = check_defs(&name, checks)?;
    for fk in &foreign_keys {
        for column in &fk.columns {
            if !columns.iter().any(|c| &c.name == column) {
                return Err(Error::UndefinedColumn(format!(
                    "column \"{column}\" referenced in foreign key constraint does not exist"
                )));
            }
        }
    }
    let table = TableDef {
        id: 0,
        checks,
        foreign_keys,
        name,
        columns,
        primary_key,
        definition: create.to_string(),
        counted: false,
        appended: false,
        append_only: false,
        watermark: None,
        temporary: create.temporary,
        connector: None,
    };
    Ok((table, sequences))
}

/// The columns an expression reads, each once, in the order it names them.
fn referenced_columns(expr: &SqlExpr) -> Vec<String> {
    use datafusion::sql::sqlparser::ast::Visit;
    let mut columns: Vec<String> = Vec::new();
    let _ = expr.visit(&mut ColumnNames(&mut columns));
    columns
}

struct ColumnNames<'a>(&'a mut Vec<String>);

impl datafusion::sql::sqlparser::ast::Visitor for ColumnNames<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &SqlExpr) -> std::ops::ControlFlow<()> {
        if let SqlExpr::Identifier(ident) = expr {
            let name = normalize_ident(ident);
            if !self.0.contains(&name) {
                self.0.push(name);
            }
        }
        std::ops::ControlFlow::Continue(())
    }
}

/// CHECK constraints named as PostgreSQL names them: `<table>_<column>_check` when the
/// expression reads one column, `<table>_check` otherwise, with a number after a name taken.
fn check_defs(
    table: &str,
    checks: Vec<(Option<String>, Vec<String>, String)>,
) -> Result<Vec<crate::table::check::CheckDef>> {
    let mut out: Vec<crate::table::check::CheckDef> = Vec::with_capacity(checks.len());
    for (name, columns, expr) in checks {
        if let Some(name) = &name
            && out.iter().any(|c| &c.name == name)
        {
            return Err(Error::coded(
                "42710",
                format!("constraint \"{name}\" for relation \"{table}\" already exists"),
            ));
        }
        let name = name.unwrap_or_else(|| {
            // A constraint's name is not a relation's: no schema in it.
            let bare = crate::common::names::split(table).1;
            let base = match columns.as_slice() {
                [column] => format!("{bare}_{column}_check"),
                _ => format!("{bare}_check"),
            };
            let mut candidate = base.clone();
            let mut n = 0;
            while out.iter().any(|c| c.name == candidate) {
                n += 1;
                candidate = format!("{base}{n}");
            }
            candidate
        });
        out.push(crate::table::check::CheckDef { name, expr });
    }
    Ok(out)
}

pub fn default_sql(expr: &SqlExpr) -> String {
    let mut expr = expr.clone();
    super::pg_exprs::rewrite_expr(&mut expr);
    expr.to_string()
}

/// Refuses `WITH (...)` options of a table or view with PostgreSQL's `22023`, naming the first:
/// Augur takes none yet, and an option it does not act on must not pass silently.
pub fn refuse_options(options: &CreateTableOptions) -> Result<()> {
    let list = match options {
        CreateTableOptions::None => return Ok(()),
        CreateTableOptions::With(list)
        | CreateTableOptions::Options(list)
        | CreateTableOptions::Plain(list)
        | CreateTableOptions::TableProperties(list) => list,
    };
    match list.first() {
        None => Ok(()),
        Some(option) => {
            let name = match option {
                SqlOption::KeyValue { key, .. } => key.to_string(),
                SqlOption::Ident(ident) => ident.to_string(),
                other => other.to_string(),
            };
            if name.eq_ignore_ascii_case("connector") {
                return Err(Error::Syntax(
                    "a table with a connector needs FORMAT PLAIN | UPSERT | DEBEZIUM ENCODE JSON \
                     | CSV after its options"
                        .into(),
                ));
            }
            Err(Error::coded(
                "22023",
                format!("unrecognized parameter \"{name}\""),
            ))
        }
    }
}

fn refuse_unsupported(create: &CreateTable) -> Result<()> {
    let refuse = |what: &str| Err(Error::NotSupported(what.to_string()));
    refuse_options(&create.table_options)?;
    if create
        .on_commit
        .is_some_and(|c| !matches!(c, OnCommit::PreserveRows))
    {
        return refuse("ON COMMIT DELETE ROWS or DROP");
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
    if create.inherits.is_some() {
        return refuse("INHERITS");
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
            Statement::CreateTable(create) => table_def(&create).map(|(t, _)| t),
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
    fn serial_and_identity_columns_own_sequences() {
        let create = |sql: &str| match SqlParser::new().parse(sql).unwrap().remove(0) {
            Statement::CreateTable(create) => table_def(&create),
            other => panic!("not CREATE TABLE: {other}"),
        };
        let (t, sequences) = create(
            "CREATE TABLE t (id SERIAL PRIMARY KEY, big BIGSERIAL, \
             i BIGINT GENERATED ALWAYS AS IDENTITY (INCREMENT BY 5 START WITH 10), v TEXT)",
        )
        .unwrap();
        assert_eq!(t.columns[0].data_type, "Int32");
        assert_eq!(t.columns[0].default.as_deref(), Some("nextval('t_id_seq')"));
        assert_eq!(t.columns[1].data_type, "Int64");
        assert!(!t.columns[1].nullable);
        assert_eq!(t.columns[2].identity, Some(Identity::Always));
        let names: Vec<_> = sequences.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["t_id_seq", "t_big_seq", "t_i_seq"]);
        assert_eq!(
            (sequences[0].max, sequences[1].max),
            (i32::MAX.into(), i64::MAX)
        );
        assert_eq!((sequences[2].start, sequences[2].increment), (10, 5));
        assert_eq!(
            sequences[2].owned_by,
            Some(("t".to_string(), "i".to_string()))
        );
        assert_eq!(
            create("CREATE TABLE u (a TEXT GENERATED ALWAYS AS IDENTITY)")
                .unwrap_err()
                .sqlstate(),
            "22023"
        );
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
            def("CREATE TABLE t (a INT REFERENCES u (a) ON DELETE CASCADE)")
                .unwrap_err()
                .sqlstate(),
            "0A000"
        );
        assert_eq!(
            def("CREATE TABLE t (a INT, b INT, FOREIGN KEY (a, b) REFERENCES u (a))")
                .unwrap_err()
                .sqlstate(),
            "42830"
        );
        assert_eq!(
            def("CREATE TABLE t (a INT REFERENCES u (a))")
                .unwrap()
                .foreign_keys[0]
                .name,
            "t_a_fkey"
        );
        assert!(def("CREATE TEMP TABLE t (a INT)").unwrap().temporary);
        assert_eq!(
            def("CREATE TEMP TABLE t (a INT) ON COMMIT DROP")
                .unwrap_err()
                .sqlstate(),
            "0A000"
        );
    }
}
