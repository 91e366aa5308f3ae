//! `information_schema` with PostgreSQL's columns and type names, for the tools and scripts
//! that read it instead of `pg_catalog`.
//!
//! - `schemata`, `tables`, `columns`, `views`, `table_constraints`, `key_column_usage`,
//!   `constraint_column_usage`, `check_constraints`, `referential_constraints` (empty: Augur has
//!   no foreign keys) and `sequences`, with the columns PostgreSQL 15 gives them.
//! - Types are named as PostgreSQL names them (`data_type` `integer`, `ARRAY`, `timestamp with
//!   time zone`; `udt_name` `int4`, `_text`), with their precision, scale and radix.
//! - `tables` lists materialized views (`MATERIALIZED VIEW`) and sources (`FOREIGN`) too, and
//!   `columns` their columns: in Augur they are what one queries most. PostgreSQL leaves its
//!   materialized views out of `information_schema`.
//! - Constraints are the primary keys and, as PostgreSQL lists them, one `CHECK` per `NOT NULL`
//!   column of a table, named `<schema oid>_<table oid>_<column number>_not_null` after the OIDs
//!   `pg_catalog` gives them.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::common::{Column, JoinType};
use datafusion::datasource::{MemTable, TableProvider, TableType, ViewTable, provider_as_source};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{LogicalPlanBuilder, cast, col, lit, when};

use super::Catalog;
use super::schema::{CATALOG_NAME, qualify, split};
use crate::table::{ColumnDef, Identity};

/// Name of the schema.
pub const INFORMATION_SCHEMA: &str = "information_schema";

/// The `information_schema` schema.
pub struct InformationSchema {
    catalog: Arc<Catalog>,
    /// The DataFusion catalog this schema is registered in, for the other schemas' tables.
    datafusion: Weak<dyn CatalogProvider>,
}

impl std::fmt::Debug for InformationSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InformationSchema").finish()
    }
}

const TABLES: &[&str] = &[
    "schemata",
    "tables",
    "columns",
    "views",
    "table_constraints",
    "key_column_usage",
    "constraint_column_usage",
    "check_constraints",
    "referential_constraints",
    "sequences",
];

/// A field of an `information_schema` table: text (PostgreSQL's `sql_identifier`,
/// `character_data`, `yes_or_no`) or a number (`cardinal_number`).
enum Kind {
    Text,
    Number,
}

/// The fields of table `name`.
fn fields(name: &str) -> &'static [(&'static str, Kind)] {
    use Kind::{Number as N, Text as T};
    match name {
        "schemata" => &[
            ("catalog_name", T),
            ("schema_name", T),
            ("schema_owner", T),
            ("default_character_set_catalog", T),
            ("default_character_set_schema", T),
            ("default_character_set_name", T),
            ("sql_path", T),
        ],
        "tables" => &[
            ("table_catalog", T),
            ("table_schema", T),
            ("table_name", T),
            ("table_type", T),
            ("self_referencing_column_name", T),
            ("reference_generation", T),
            ("user_defined_type_catalog", T),
            ("user_defined_type_schema", T),
            ("user_defined_type_name", T),
            ("is_insertable_into", T),
            ("is_typed", T),
            ("commit_action", T),
        ],
        "columns" => &[
            ("table_catalog", T),
            ("table_schema", T),
            ("table_name", T),
            ("column_name", T),
            ("ordinal_position", N),
            ("column_default", T),
            ("is_nullable", T),
            ("data_type", T),
            ("character_maximum_length", N),
            ("character_octet_length", N),
            ("numeric_precision", N),
            ("numeric_precision_radix", N),
            ("numeric_scale", N),
            ("datetime_precision", N),
            ("interval_type", T),
            ("interval_precision", N),
            ("character_set_catalog", T),
            ("character_set_schema", T),
            ("character_set_name", T),
            ("collation_catalog", T),
            ("collation_schema", T),
            ("collation_name", T),
            ("domain_catalog", T),
            ("domain_schema", T),
            ("domain_name", T),
            ("udt_catalog", T),
            ("udt_schema", T),
            ("udt_name", T),
            ("scope_catalog", T),
            ("scope_schema", T),
            ("scope_name", T),
            ("maximum_cardinality", N),
            ("dtd_identifier", T),
            ("is_self_referencing", T),
            ("is_identity", T),
            ("identity_generation", T),
            ("identity_start", T),
            ("identity_increment", T),
            ("identity_maximum", T),
            ("identity_minimum", T),
            ("identity_cycle", T),
            ("is_generated", T),
            ("generation_expression", T),
            ("is_updatable", T),
        ],
        "views" => &[
            ("table_catalog", T),
            ("table_schema", T),
            ("table_name", T),
            ("view_definition", T),
            ("check_option", T),
            ("is_updatable", T),
            ("is_insertable_into", T),
            ("is_trigger_updatable", T),
            ("is_trigger_deletable", T),
            ("is_trigger_insertable_into", T),
        ],
        "table_constraints" => &[
            ("constraint_catalog", T),
            ("constraint_schema", T),
            ("constraint_name", T),
            ("table_catalog", T),
            ("table_schema", T),
            ("table_name", T),
            ("constraint_type", T),
            ("is_deferrable", T),
            ("initially_deferred", T),
            ("enforced", T),
            ("nulls_distinct", T),
        ],
        "key_column_usage" => &[
            ("constraint_catalog", T),
            ("constraint_schema", T),
            ("constraint_name", T),
            ("table_catalog", T),
            ("table_schema", T),
            ("table_name", T),
            ("column_name", T),
            ("ordinal_position", N),
            ("position_in_unique_constraint", N),
        ],
        "constraint_column_usage" => &[
            ("table_catalog", T),
            ("table_schema", T),
            ("table_name", T),
            ("column_name", T),
            ("constraint_catalog", T),
            ("constraint_schema", T),
            ("constraint_name", T),
        ],
        "check_constraints" => &[
            ("constraint_catalog", T),
            ("constraint_schema", T),
            ("constraint_name", T),
            ("check_clause", T),
        ],
        "referential_constraints" => &[
            ("constraint_catalog", T),
            ("constraint_schema", T),
            ("constraint_name", T),
            ("unique_constraint_catalog", T),
            ("unique_constraint_schema", T),
            ("unique_constraint_name", T),
            ("match_option", T),
            ("update_rule", T),
            ("delete_rule", T),
        ],
        "sequences" => &[
            ("sequence_catalog", T),
            ("sequence_schema", T),
            ("sequence_name", T),
            ("data_type", T),
            ("numeric_precision", N),
            ("numeric_precision_radix", N),
            ("numeric_scale", N),
            ("start_value", T),
            ("minimum_value", T),
            ("maximum_value", T),
            ("increment", T),
            ("cycle_option", T),
        ],
        _ => &[],
    }
}

fn table_schema(name: &str) -> SchemaRef {
    Arc::new(Schema::new(
        fields(name)
            .iter()
            .map(|(field, kind)| {
                let data_type = match kind {
                    Kind::Text => DataType::Utf8,
                    Kind::Number => DataType::Int32,
                };
                Field::new(*field, data_type, true)
            })
            .collect::<Vec<_>>(),
    ))
}

/// One value of a row.
enum Cell {
    Text(Option<String>),
    Number(Option<i32>),
}

impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Text(Some(v.to_string()))
    }
}

impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Text(Some(v))
    }
}

impl From<Option<String>> for Cell {
    fn from(v: Option<String>) -> Self {
        Cell::Text(v)
    }
}

impl From<Option<&str>> for Cell {
    fn from(v: Option<&str>) -> Self {
        Cell::Text(v.map(str::to_string))
    }
}

impl From<i32> for Cell {
    fn from(v: i32) -> Self {
        Cell::Number(Some(v))
    }
}

impl From<Option<i32>> for Cell {
    fn from(v: Option<i32>) -> Self {
        Cell::Number(v)
    }
}

const NULL: Cell = Cell::Text(None);

/// The rows of table `name` as a batch; each row has a cell per field, in order.
fn batch(name: &str, rows: Vec<Vec<Cell>>) -> DfResult<RecordBatch> {
    let schema = table_schema(name);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, (_, kind)) in fields(name).iter().enumerate() {
        let values = rows.iter().map(|row| row.get(i));
        columns.push(match kind {
            Kind::Text => Arc::new(StringArray::from_iter(values.map(|cell| match cell {
                Some(Cell::Text(v)) => v.clone(),
                Some(Cell::Number(v)) => v.map(|v| v.to_string()),
                None => None,
            }))),
            Kind::Number => Arc::new(Int32Array::from_iter(values.map(|cell| match cell {
                Some(Cell::Number(v)) => *v,
                _ => None,
            }))),
        });
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn mem_table(name: &str, rows: Vec<Vec<Cell>>) -> DfResult<Arc<dyn TableProvider>> {
    let batch = batch(name, rows)?;
    Ok(Arc::new(MemTable::try_new(
        batch.schema(),
        vec![vec![batch]],
    )?))
}

fn yes_no(v: bool) -> Cell {
    Cell::from(if v { "YES" } else { "NO" })
}

/// What a relation is, as `information_schema.tables.table_type` says.
#[derive(Clone, Copy, PartialEq)]
enum RelationKind {
    Table,
    Temporary,
    View,
    Materialized,
    Source,
}

impl RelationKind {
    fn table_type(self) -> &'static str {
        match self {
            RelationKind::Table => "BASE TABLE",
            RelationKind::Temporary => "LOCAL TEMPORARY",
            RelationKind::View => "VIEW",
            RelationKind::Materialized => "MATERIALIZED VIEW",
            RelationKind::Source => "FOREIGN",
        }
    }

    fn writable(self) -> bool {
        matches!(self, RelationKind::Table | RelationKind::Temporary)
    }
}

/// A relation and its columns.
struct Relation {
    schema: String,
    name: String,
    kind: RelationKind,
    columns: Vec<RelationColumn>,
}

struct RelationColumn {
    name: String,
    data_type: DataType,
    nullable: bool,
    default: Option<String>,
    identity: Option<Identity>,
    /// `character(n)` / `character varying(n)`: the kind and the limit.
    chars: Option<(super::pg_char::CharKind, u64)>,
}

impl RelationColumn {
    fn from_def(def: &ColumnDef) -> Option<Self> {
        if def.hidden {
            return None;
        }
        Some(Self {
            name: def.name.clone(),
            data_type: def.data_type.parse().unwrap_or(DataType::Utf8),
            nullable: def.nullable,
            default: def.default.clone().filter(|_| def.identity.is_none()),
            identity: def.identity,
            chars: def
                .pg_type
                .as_deref()
                .and_then(super::pg_char::parse_pg_type),
        })
    }

    fn from_field(field: &Field) -> Self {
        Self {
            name: field.name().clone(),
            data_type: field.data_type().clone(),
            nullable: field.is_nullable(),
            default: None,
            identity: None,
            chars: super::pg_char::of_field(field),
        }
    }
}

/// How `information_schema.columns` describes a type.
struct TypeInfo {
    data_type: String,
    udt_name: String,
    octet_length: Option<i32>,
    precision: Option<i32>,
    radix: Option<i32>,
    scale: Option<i32>,
    datetime_precision: Option<i32>,
}

fn type_info(data_type: &DataType) -> TypeInfo {
    let plain = |data_type: &str, udt: &str| TypeInfo {
        data_type: data_type.into(),
        udt_name: udt.into(),
        octet_length: None,
        precision: None,
        radix: None,
        scale: None,
        datetime_precision: None,
    };
    let number = |data_type: &str, udt: &str, bits: i32, scale: Option<i32>| TypeInfo {
        precision: Some(bits),
        radix: Some(2),
        scale,
        ..plain(data_type, udt)
    };
    let time = |data_type: &str, udt: &str, precision: i32| TypeInfo {
        datetime_precision: Some(precision),
        ..plain(data_type, udt)
    };
    match data_type {
        DataType::Boolean => plain("boolean", "bool"),
        DataType::Int16 => number("smallint", "int2", 16, Some(0)),
        DataType::Int32 => number("integer", "int4", 32, Some(0)),
        DataType::Int64 => number("bigint", "int8", 64, Some(0)),
        DataType::Float32 => number("real", "float4", 24, None),
        DataType::Float64 => number("double precision", "float8", 53, None),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => TypeInfo {
            precision: Some(i32::from(*p)),
            radix: Some(10),
            scale: Some(i32::from(*s)),
            ..plain("numeric", "numeric")
        },
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => TypeInfo {
            // PostgreSQL's largest field, 1 GB.
            octet_length: Some(1_073_741_824),
            ..plain("text", "text")
        },
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => plain("bytea", "bytea"),
        DataType::Date32 | DataType::Date64 => time("date", "date", 0),
        DataType::Time32(_) | DataType::Time64(_) => time("time without time zone", "time", 6),
        DataType::Timestamp(_, None) => time("timestamp without time zone", "timestamp", 6),
        DataType::Timestamp(_, Some(_)) => time("timestamp with time zone", "timestamptz", 6),
        DataType::Interval(_) | DataType::Duration(_) => time("interval", "interval", 6),
        DataType::List(element) | DataType::LargeList(element) => {
            let element = type_info(element.data_type());
            plain("ARRAY", &format!("_{}", element.udt_name))
        }
        other => plain("USER-DEFINED", &other.to_string()),
    }
}

impl InformationSchema {
    /// The schema over `catalog`, reading the other schemas of `datafusion`.
    pub fn new(catalog: Arc<Catalog>, datafusion: Weak<dyn CatalogProvider>) -> Self {
        Self {
            catalog,
            datafusion,
        }
    }

    /// Every relation: Augur's, then the system schemas' tables, then this schema's own.
    async fn relations(&self) -> DfResult<Vec<Relation>> {
        let mut out = Vec::new();
        for name in self.catalog.table_names() {
            let Some(table) = self.catalog.table(&name) else {
                continue;
            };
            let def = table.def();
            let (schema, name) = split(&def.name);
            out.push(Relation {
                schema: schema.into(),
                name: name.into(),
                kind: if def.temporary {
                    RelationKind::Temporary
                } else {
                    RelationKind::Table
                },
                columns: def
                    .columns
                    .iter()
                    .filter_map(RelationColumn::from_def)
                    .collect(),
            });
        }
        for view in self.catalog.views() {
            let def = view.def();
            let (schema, name) = split(&def.name);
            out.push(Relation {
                schema: schema.into(),
                name: name.into(),
                kind: if def.materialized {
                    RelationKind::Materialized
                } else {
                    RelationKind::View
                },
                columns: def
                    .columns
                    .iter()
                    .filter_map(RelationColumn::from_def)
                    .collect(),
            });
        }
        for source in self.catalog.sources() {
            let (schema, name) = split(&source.def.name);
            out.push(Relation {
                schema: schema.into(),
                name: name.into(),
                kind: RelationKind::Source,
                columns: source
                    .def
                    .columns
                    .iter()
                    .filter_map(RelationColumn::from_def)
                    .collect(),
            });
        }
        if let Some(datafusion) = self.datafusion.upgrade() {
            let mut schemas = datafusion.schema_names();
            schemas.sort();
            for schema_name in schemas {
                if self.catalog.has_schema(&schema_name) || schema_name == INFORMATION_SCHEMA {
                    continue;
                }
                let Some(schema) = datafusion.schema(&schema_name) else {
                    continue;
                };
                let mut names = schema.table_names();
                names.sort();
                for name in names {
                    let Some(table) = schema.table(&name).await? else {
                        continue;
                    };
                    out.push(Relation {
                        schema: schema_name.clone(),
                        name,
                        kind: if table.table_type() == TableType::View {
                            RelationKind::View
                        } else {
                            RelationKind::Table
                        },
                        columns: table
                            .schema()
                            .fields()
                            .iter()
                            .map(|f| RelationColumn::from_field(f))
                            .collect(),
                    });
                }
            }
        }
        for name in TABLES {
            out.push(Relation {
                schema: INFORMATION_SCHEMA.into(),
                name: name.to_string(),
                kind: RelationKind::View,
                columns: table_schema(name)
                    .fields()
                    .iter()
                    .map(|f| RelationColumn::from_field(f))
                    .collect(),
            });
        }
        Ok(out)
    }

    fn schemata(&self) -> DfResult<Arc<dyn TableProvider>> {
        let mut names = self
            .datafusion
            .upgrade()
            .map(|c| c.schema_names())
            .unwrap_or_default();
        if !names.iter().any(|n| n == INFORMATION_SCHEMA) {
            names.push(INFORMATION_SCHEMA.into());
        }
        names.sort();
        let rows = names
            .into_iter()
            .map(|name| {
                vec![
                    CATALOG_NAME.into(),
                    name.into(),
                    "augur".into(),
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                ]
            })
            .collect();
        mem_table("schemata", rows)
    }

    async fn tables(&self) -> DfResult<Arc<dyn TableProvider>> {
        let rows = self
            .relations()
            .await?
            .into_iter()
            .map(|r| {
                let insertable = r.kind.writable() && self.catalog.has_schema(&r.schema);
                vec![
                    CATALOG_NAME.into(),
                    r.schema.into(),
                    r.name.into(),
                    r.kind.table_type().into(),
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    yes_no(insertable),
                    "NO".into(),
                    (r.kind == RelationKind::Temporary)
                        .then_some("PRESERVE")
                        .into(),
                ]
            })
            .collect();
        mem_table("tables", rows)
    }

    async fn columns(&self) -> DfResult<Arc<dyn TableProvider>> {
        let sequences = self.catalog.sequences();
        let mut rows = Vec::new();
        for relation in self.relations().await? {
            let key = qualify(&relation.schema, &relation.name);
            let writable = relation.kind.writable() && self.catalog.has_schema(&relation.schema);
            for (i, column) in relation.columns.into_iter().enumerate() {
                let mut info = type_info(&column.data_type);
                let mut max_length = None;
                if let Some((kind, length)) = column.chars {
                    info.data_type = kind.name().to_string();
                    info.udt_name = kind.internal_name().to_string();
                    // Four bytes at most per character in UTF-8.
                    info.octet_length = i32::try_from(length * 4).ok();
                    max_length = i32::try_from(length).ok();
                }
                let position = i as i32 + 1;
                let identity = column.identity.and_then(|identity| {
                    let sequence = sequences.all().into_iter().find(|s| {
                        s.def()
                            .owned_by
                            .as_ref()
                            .is_some_and(|(table, owner)| *table == key && *owner == column.name)
                    })?;
                    Some((identity, sequence.def().clone()))
                });
                let identity_text = |f: fn(&super::sequence::SequenceDef) -> String| {
                    Cell::from(identity.as_ref().map(|(_, def)| f(def)))
                };
                rows.push(vec![
                    CATALOG_NAME.into(),
                    relation.schema.clone().into(),
                    relation.name.clone().into(),
                    column.name.into(),
                    position.into(),
                    column.default.into(),
                    // A view's columns are nullable, whatever its query gives.
                    yes_no(
                        column.nullable
                            || matches!(
                                relation.kind,
                                RelationKind::View | RelationKind::Materialized
                            ),
                    ),
                    info.data_type.into(),
                    max_length.into(),
                    info.octet_length.into(),
                    info.precision.into(),
                    info.radix.into(),
                    info.scale.into(),
                    info.datetime_precision.into(),
                    NULL,
                    Cell::Number(None),
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    CATALOG_NAME.into(),
                    "pg_catalog".into(),
                    info.udt_name.into(),
                    NULL,
                    NULL,
                    NULL,
                    Cell::Number(None),
                    position.to_string().into(),
                    "NO".into(),
                    yes_no(identity.is_some()),
                    Cell::from(identity.as_ref().map(|(generation, _)| match generation {
                        Identity::Always => "ALWAYS",
                        Identity::ByDefault => "BY DEFAULT",
                    })),
                    identity_text(|d| d.start.to_string()),
                    identity_text(|d| d.increment.to_string()),
                    identity_text(|d| d.max.to_string()),
                    identity_text(|d| d.min.to_string()),
                    identity_text(|d| if d.cycle { "YES" } else { "NO" }.to_string()),
                    "NEVER".into(),
                    NULL,
                    yes_no(writable),
                ]);
            }
        }
        mem_table("columns", rows)
    }

    fn views(&self) -> DfResult<Arc<dyn TableProvider>> {
        let rows = self
            .catalog
            .views()
            .iter()
            .filter(|v| !v.def().materialized)
            .map(|v| {
                let (schema, name) = split(v.name());
                vec![
                    CATALOG_NAME.into(),
                    schema.into(),
                    name.into(),
                    format!(" {};", v.def().query).into(),
                    "NONE".into(),
                    "NO".into(),
                    "NO".into(),
                    "NO".into(),
                    "NO".into(),
                    "NO".into(),
                ]
            })
            .collect();
        mem_table("views", rows)
    }

    /// Augur's tables' constraints, one row per constraint and column: table, constraint name
    /// (NULL for a `NOT NULL` check, whose name takes OIDs), type, column, its number (from 1)
    /// and its position in the constraint.
    fn constraint_rows(&self) -> DfResult<Arc<dyn TableProvider>> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k_nspname", DataType::Utf8, false),
            Field::new("k_relname", DataType::Utf8, false),
            Field::new("k_conname", DataType::Utf8, true),
            Field::new("k_type", DataType::Utf8, false),
            Field::new("k_column", DataType::Utf8, false),
            Field::new("k_attnum", DataType::Int32, false),
            Field::new("k_position", DataType::Int32, false),
            Field::new("k_clause", DataType::Utf8, true),
        ]));
        let (mut relations, mut names, mut types) = (Vec::new(), Vec::new(), Vec::new());
        let mut schemas = Vec::new();
        let mut clauses: Vec<Option<String>> = Vec::new();
        let (mut columns, mut numbers, mut positions) = (Vec::new(), Vec::new(), Vec::new());
        for name in self.catalog.table_names() {
            let Some(table) = self.catalog.table(&name) else {
                continue;
            };
            let def = table.def();
            if !def.has_row_id() {
                for (position, &i) in def.primary_key.iter().enumerate() {
                    schemas.push(split(&def.name).0.to_string());
                    relations.push(split(&def.name).1.to_string());
                    names.push(Some(split(&def.pkey_name()).1.to_string()));
                    types.push("PRIMARY KEY");
                    columns.push(def.columns[i].name.clone());
                    numbers.push(i as i32 + 1);
                    positions.push(position as i32 + 1);
                    clauses.push(None);
                }
            }
            // UNIQUE constraints (not `CREATE UNIQUE INDEX`, which PostgreSQL does not list).
            for index in self.catalog.unique_constraints_on(&name) {
                for (position, &i) in index.columns.iter().enumerate() {
                    schemas.push(split(&def.name).0.to_string());
                    relations.push(split(&def.name).1.to_string());
                    names.push(Some(split(&index.name).1.to_string()));
                    types.push("UNIQUE");
                    columns.push(def.columns[i].name.clone());
                    numbers.push(i as i32 + 1);
                    positions.push(position as i32 + 1);
                    clauses.push(None);
                }
            }
            for check in &def.checks {
                schemas.push(split(&def.name).0.to_string());
                relations.push(split(&def.name).1.to_string());
                names.push(Some(check.name.clone()));
                types.push("CHECK");
                columns.push(String::new());
                numbers.push(0);
                positions.push(1);
                clauses.push(Some(format!("(({}))", check.expr)));
            }
            for (i, column) in def.columns.iter().enumerate() {
                if column.nullable || column.hidden {
                    continue;
                }
                schemas.push(split(&def.name).0.to_string());
                relations.push(split(&def.name).1.to_string());
                names.push(None);
                types.push("CHECK");
                columns.push(column.name.clone());
                numbers.push(i as i32 + 1);
                positions.push(1);
                clauses.push(Some(format!("{} IS NOT NULL", column.name)));
            }
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(schemas)),
                Arc::new(StringArray::from(relations)),
                Arc::new(StringArray::from(names)),
                Arc::new(StringArray::from(types)),
                Arc::new(StringArray::from(columns)),
                Arc::new(Int32Array::from(numbers)),
                Arc::new(Int32Array::from(positions)),
                Arc::new(StringArray::from(clauses)),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    /// The constraint rows (as `k`) with their names: a `NOT NULL` check's is made of the OIDs
    /// `pg_catalog` gives the schema and the table.
    async fn named_constraints(&self) -> DfResult<LogicalPlanBuilder> {
        let datafusion = self.datafusion.upgrade();
        let pg_catalog = datafusion.as_ref().and_then(|c| c.schema("pg_catalog"));
        let (Some(pg_class), Some(pg_namespace)) = (
            match &pg_catalog {
                Some(s) => s.table("pg_class").await?,
                None => None,
            },
            match &pg_catalog {
                Some(s) => s.table("pg_namespace").await?,
                None => None,
            },
        ) else {
            return datafusion::common::plan_err!("pg_catalog.pg_class is missing");
        };
        let classes = LogicalPlanBuilder::scan("c", provider_as_source(pg_class), None)?
            .join(
                LogicalPlanBuilder::scan("n", provider_as_source(pg_namespace), None)?.build()?,
                JoinType::Inner,
                (Vec::<Column>::new(), Vec::<Column>::new()),
                Some(
                    cast(col("c.relnamespace"), DataType::Int64)
                        .eq(cast(col("n.oid"), DataType::Int64))
                        .and(col("c.relkind").eq(lit("r"))),
                ),
            )?
            .build()?;
        let name = when(
            col("k.k_conname").is_null(),
            datafusion::functions::string::expr_fn::concat(vec![
                cast(col("n.oid"), DataType::Utf8),
                lit("_"),
                cast(col("c.oid"), DataType::Utf8),
                lit("_"),
                cast(col("k.k_attnum"), DataType::Utf8),
                lit("_not_null"),
            ]),
        )
        .otherwise(col("k.k_conname"))?;
        LogicalPlanBuilder::scan("k", provider_as_source(self.constraint_rows()?), None)?
            .join(
                classes,
                JoinType::Inner,
                (
                    vec![
                        Column::from_qualified_name("k.k_nspname"),
                        Column::from_qualified_name("k.k_relname"),
                    ],
                    vec![
                        Column::from_qualified_name("n.nspname"),
                        Column::from_qualified_name("c.relname"),
                    ],
                ),
                None,
            )?
            .project(vec![
                col("k.k_nspname").alias("nspname"),
                col("k.k_relname").alias("relname"),
                name.alias("conname"),
                col("k.k_type").alias("contype"),
                col("k.k_column").alias("colname"),
                col("k.k_position").alias("position"),
                col("k.k_clause").alias("clause"),
            ])
    }

    async fn constraint_view(
        &self,
        filter: &[&str],
        columns: Vec<datafusion::logical_expr::Expr>,
        distinct: bool,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let mut plan = self.named_constraints().await?;
        if !filter.is_empty() {
            let types = filter.iter().map(|t| lit(*t)).collect();
            plan = plan.filter(col("contype").in_list(types, false))?;
        }
        plan = plan.project(columns)?;
        if distinct {
            plan = plan.distinct()?;
        }
        Ok(Arc::new(ViewTable::new(plan.build()?, None)))
    }

    async fn table_constraints(&self) -> DfResult<Arc<dyn TableProvider>> {
        let none = |name: &str| {
            cast(lit(datafusion::common::ScalarValue::Null), DataType::Utf8).alias(name)
        };
        self.constraint_view(
            &[],
            vec![
                lit(CATALOG_NAME).alias("constraint_catalog"),
                col("nspname").alias("constraint_schema"),
                col("conname").alias("constraint_name"),
                lit(CATALOG_NAME).alias("table_catalog"),
                col("nspname").alias("table_schema"),
                col("relname").alias("table_name"),
                col("contype").alias("constraint_type"),
                lit("NO").alias("is_deferrable"),
                lit("NO").alias("initially_deferred"),
                lit("YES").alias("enforced"),
                none("nulls_distinct"),
            ],
            true,
        )
        .await
    }

    async fn key_column_usage(&self) -> DfResult<Arc<dyn TableProvider>> {
        self.constraint_view(
            &["PRIMARY KEY", "UNIQUE"],
            vec![
                lit(CATALOG_NAME).alias("constraint_catalog"),
                col("nspname").alias("constraint_schema"),
                col("conname").alias("constraint_name"),
                lit(CATALOG_NAME).alias("table_catalog"),
                col("nspname").alias("table_schema"),
                col("relname").alias("table_name"),
                col("colname").alias("column_name"),
                col("position").alias("ordinal_position"),
                cast(lit(datafusion::common::ScalarValue::Null), DataType::Int32)
                    .alias("position_in_unique_constraint"),
            ],
            false,
        )
        .await
    }

    async fn constraint_column_usage(&self) -> DfResult<Arc<dyn TableProvider>> {
        self.constraint_view(
            &["PRIMARY KEY", "UNIQUE"],
            vec![
                lit(CATALOG_NAME).alias("table_catalog"),
                col("nspname").alias("table_schema"),
                col("relname").alias("table_name"),
                col("colname").alias("column_name"),
                lit(CATALOG_NAME).alias("constraint_catalog"),
                col("nspname").alias("constraint_schema"),
                col("conname").alias("constraint_name"),
            ],
            false,
        )
        .await
    }

    async fn check_constraints(&self) -> DfResult<Arc<dyn TableProvider>> {
        self.constraint_view(
            &["CHECK"],
            vec![
                lit(CATALOG_NAME).alias("constraint_catalog"),
                col("nspname").alias("constraint_schema"),
                col("conname").alias("constraint_name"),
                col("clause").alias("check_clause"),
            ],
            false,
        )
        .await
    }

    fn sequences(&self) -> DfResult<Arc<dyn TableProvider>> {
        let rows = self
            .catalog
            .sequences()
            .all()
            .iter()
            .map(|s| {
                let def = s.def();
                let info = type_info(match def.data_type.as_str() {
                    "smallint" => &DataType::Int16,
                    "integer" => &DataType::Int32,
                    _ => &DataType::Int64,
                });
                let (schema, name) = split(&def.name);
                vec![
                    CATALOG_NAME.into(),
                    schema.into(),
                    name.into(),
                    info.data_type.into(),
                    info.precision.into(),
                    info.radix.into(),
                    info.scale.into(),
                    def.start.to_string().into(),
                    def.min.to_string().into(),
                    def.max.to_string().into(),
                    def.increment.to_string().into(),
                    yes_no(def.cycle),
                ]
            })
            .collect();
        mem_table("sequences", rows)
    }
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(Some(match name.to_ascii_lowercase().as_str() {
            "schemata" => self.schemata()?,
            "tables" => self.tables().await?,
            "columns" => self.columns().await?,
            "views" => self.views()?,
            "table_constraints" => self.table_constraints().await?,
            "key_column_usage" => self.key_column_usage().await?,
            "constraint_column_usage" => self.constraint_column_usage().await?,
            "check_constraints" => self.check_constraints().await?,
            "referential_constraints" => mem_table("referential_constraints", vec![])?,
            "sequences" => self.sequences()?,
            _ => return Ok(None),
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name.to_ascii_lowercase().as_str())
    }
}
