//! `pg_catalog` as clients see it: `datafusion-pg-catalog`'s tables, with the few that Augur
//! serves itself laid over them.
//!
//! - `pg_statistic_ext` is empty, with its array columns typed as arrays so that psql's `\d`
//!   query over it plans.
//! - `pg_class` says `m` (materialized view) for materialized views, so that psql's `\dm`
//!   lists them, and has `reloptions` (none), and `pg_matviews` lists them with their queries.
//! - `pg_views` lists the plain views with their queries; `augur_view_definitions` gives every
//!   view's definition by the OID `pg_class` gives it, for `pg_get_viewdef`.
//! - `augur_index_definitions` gives each index's definition and key columns, for
//!   `pg_get_indexdef`.
//! - `pg_index` has one index per primary key, its `indclass` and `indoption` arrays as long as
//!   its key, so that SQLAlchemy's `get_indexes` query plans.
//! - `pg_constraint` holds the primary keys of Augur's tables (with `conkey` a real `int2[]`),
//!   joined to `pg_class` so that `conrelid` is the OID `pg_class` gives the table. SQLAlchemy's
//!   `get_pk_constraint` and psql read it.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{BooleanArray, Int16Builder, ListBuilder, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::SchemaProvider;
use datafusion::common::{Column, JoinType, ScalarValue};
use datafusion::datasource::{MemTable, TableProvider, ViewTable, provider_as_source};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{LogicalPlanBuilder, cast, col, lit, when};

use super::Catalog;

/// The `pg_catalog` schema with Augur's tables over the library's.
#[derive(Debug)]
pub struct PgCatalogOverlay {
    inner: Arc<dyn SchemaProvider>,
    catalog: Arc<Catalog>,
}

const OWN_TABLES: &[&str] = &[
    "pg_statistic_ext",
    "pg_constraint",
    "pg_index",
    VIEW_DEFINITIONS,
    INDEX_DEFINITIONS,
];

/// The table `pg_get_indexdef` reads (see `sql::rewrite::view_definitions`).
pub const INDEX_DEFINITIONS: &str = "augur_index_definitions";

/// The table `pg_get_viewdef(oid)` reads (see `sql::rewrite::view_definitions`).
pub const VIEW_DEFINITIONS: &str = "augur_view_definitions";

/// Constraint OIDs are the table's OID plus this, clear of the OIDs `pg_class` hands out.
const CONSTRAINT_OID_OFFSET: i32 = 1_000_000;

impl PgCatalogOverlay {
    /// Lays Augur's tables over `inner`.
    pub fn new(inner: Arc<dyn SchemaProvider>, catalog: Arc<Catalog>) -> Self {
        Self { inner, catalog }
    }

    /// One row per primary key: table name, constraint name, key column numbers (from 1).
    fn primary_keys(&self) -> DfResult<Arc<dyn TableProvider>> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("key_relname", DataType::Utf8, false),
            Field::new("key_conname", DataType::Utf8, false),
            Field::new("key_conkey", list(DataType::Int16), false),
        ]));
        let mut relnames = Vec::new();
        let mut connames = Vec::new();
        let mut conkeys = ListBuilder::new(Int16Builder::new());
        for name in self.catalog.table_names() {
            let Some(table) = self.catalog.table(&name) else {
                continue;
            };
            let def = table.def();
            if def.has_row_id() {
                continue;
            }
            relnames.push(def.name.clone());
            connames.push(def.pkey_name());
            for &column in &def.primary_key {
                conkeys.values().append_value(column as i16 + 1);
            }
            conkeys.append(true);
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(relnames)),
                Arc::new(StringArray::from(connames)),
                Arc::new(conkeys.finish()),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    /// `pg_class` (as `c`) joined to the primary keys (as `k`).
    async fn tables_with_keys(&self) -> DfResult<LogicalPlanBuilder> {
        let Some(pg_class) = self.inner.table("pg_class").await? else {
            return datafusion::common::plan_err!("pg_catalog.pg_class is missing");
        };
        let keys = LogicalPlanBuilder::scan("k", provider_as_source(self.primary_keys()?), None)?
            .build()?;
        LogicalPlanBuilder::scan("c", provider_as_source(pg_class), None)?.join(
            keys,
            JoinType::Inner,
            (
                vec![Column::from_qualified_name("c.relname")],
                vec![Column::from_qualified_name("k.key_relname")],
            ),
            None,
        )
    }

    /// One index per primary key, as PostgreSQL keeps one behind every primary key.
    async fn pg_index(&self) -> DfResult<Arc<dyn TableProvider>> {
        let oid = cast(col("c.oid") + lit(CONSTRAINT_OID_OFFSET), DataType::Int32);
        let natts = cast(
            datafusion::functions_nested::expr_fn::cardinality(col("k.key_conkey")),
            DataType::Int16,
        );
        let none = |name: &str| cast(lit(ScalarValue::Null), DataType::Utf8).alias(name);
        // `oidvector` and `int2vector` columns, one entry per key column: the default operator
        // class (0) and no sort options.
        let zeros = |element: DataType| {
            datafusion::functions_nested::expr_fn::array_repeat(
                cast(lit(0), element),
                cast(
                    datafusion::functions_nested::expr_fn::cardinality(col("k.key_conkey")),
                    DataType::Int64,
                ),
            )
        };
        let plan = self
            .tables_with_keys()
            .await?
            .project(vec![
                oid.alias("indexrelid"),
                col("c.oid").alias("indrelid"),
                natts.clone().alias("indnatts"),
                natts.alias("indnkeyatts"),
                lit(true).alias("indisunique"),
                lit(false).alias("indnullsnotdistinct"),
                lit(true).alias("indisprimary"),
                lit(false).alias("indisexclusion"),
                lit(true).alias("indimmediate"),
                lit(false).alias("indisclustered"),
                lit(true).alias("indisvalid"),
                lit(false).alias("indcheckxmin"),
                lit(true).alias("indisready"),
                lit(true).alias("indislive"),
                lit(false).alias("indisreplident"),
                col("k.key_conkey").alias("indkey"),
                none("indcollation"),
                zeros(DataType::Int32).alias("indclass"),
                zeros(DataType::Int16).alias("indoption"),
                none("indexprs"),
                none("indpred"),
            ])?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }

    /// The library's `pg_class` with relkind `m` for materialized views, and `reloptions`.
    async fn pg_class(&self) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(pg_class) = self.inner.table("pg_class").await? else {
            return Ok(None);
        };
        let materialized: Vec<_> = self
            .catalog
            .views()
            .iter()
            .filter(|v| v.def().materialized)
            .map(|v| lit(v.name().to_string()))
            .collect();
        let schema = pg_class.schema();
        let mut columns: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| {
                if f.name() == "relkind" && !materialized.is_empty() {
                    when(
                        col("relname").in_list(materialized.clone(), false),
                        lit("m"),
                    )
                    .otherwise(col("relkind"))
                    .map(|e| e.alias("relkind"))
                } else {
                    Ok(col(f.name()))
                }
            })
            .collect::<DfResult<_>>()?;
        if schema.field_with_name("reloptions").is_err() {
            // Storage options (`text[]`): Augur's relations have none.
            columns.push(lit(ScalarValue::try_from(&list(DataType::Utf8))?).alias("reloptions"));
        }
        let plan = LogicalPlanBuilder::scan("pg_class", provider_as_source(pg_class), None)?
            .project(columns)?
            .build()?;
        Ok(Some(Arc::new(ViewTable::new(plan, None))))
    }

    /// One row per materialized view.
    fn pg_matviews(&self) -> DfResult<Arc<dyn TableProvider>> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("schemaname", DataType::Utf8, true),
            Field::new("matviewname", DataType::Utf8, true),
            Field::new("matviewowner", DataType::Utf8, true),
            Field::new("tablespace", DataType::Utf8, true),
            Field::new("hasindexes", DataType::Boolean, true),
            Field::new("ispopulated", DataType::Boolean, true),
            Field::new("definition", DataType::Utf8, true),
        ]));
        let views: Vec<_> = self
            .catalog
            .views()
            .into_iter()
            .filter(|v| v.def().materialized)
            .collect();
        let n = views.len();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    crate::catalog::schema::SCHEMA_NAME;
                    n
                ])),
                Arc::new(StringArray::from_iter_values(
                    views.iter().map(|v| v.name()),
                )),
                Arc::new(StringArray::from(vec!["augur"; n])),
                Arc::new(StringArray::from(vec![None::<&str>; n])),
                Arc::new(BooleanArray::from(
                    views
                        .iter()
                        .map(|v| v.def().key.is_some())
                        .collect::<Vec<_>>(),
                )),
                Arc::new(BooleanArray::from(vec![true; n])),
                Arc::new(StringArray::from_iter_values(
                    views.iter().map(|v| format!("{};", v.def().query)),
                )),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    /// Every view, plain and materialized: name, definition (as `pg_get_viewdef` gives it) and
    /// whether it is materialized.
    fn view_definitions(&self) -> DfResult<RecordBatch> {
        let views = self.catalog.views();
        let schema = Arc::new(Schema::new(vec![
            Field::new("viewname", DataType::Utf8, false),
            Field::new("definition", DataType::Utf8, false),
            Field::new("materialized", DataType::Boolean, false),
        ]));
        Ok(RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(
                    views.iter().map(|v| v.name()),
                )),
                Arc::new(StringArray::from_iter_values(
                    views.iter().map(|v| format!(" {};", v.def().query)),
                )),
                Arc::new(BooleanArray::from(
                    views
                        .iter()
                        .map(|v| v.def().materialized)
                        .collect::<Vec<_>>(),
                )),
            ],
        )?)
    }

    /// `pg_views`: the plain views with their definitions.
    fn pg_views(&self) -> DfResult<Arc<dyn TableProvider>> {
        let all = self.view_definitions()?;
        let plain = datafusion::arrow::compute::filter_record_batch(
            &all,
            &datafusion::arrow::compute::not(all.column(2).as_any().downcast_ref().ok_or_else(
                || datafusion::error::DataFusionError::Internal("materialized flags".into()),
            )?)?,
        )?;
        let n = plain.num_rows();
        let schema = Arc::new(Schema::new(vec![
            Field::new("schemaname", DataType::Utf8, true),
            Field::new("viewname", DataType::Utf8, true),
            Field::new("viewowner", DataType::Utf8, true),
            Field::new("definition", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    crate::catalog::schema::SCHEMA_NAME;
                    n
                ])),
                plain.column(0).clone(),
                Arc::new(StringArray::from(vec!["augur"; n])),
                plain.column(1).clone(),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    /// `augur_view_definitions`: the OID `pg_class` gives each view, with its definition; what
    /// `pg_get_viewdef(oid)` reads.
    async fn oid_view_definitions(&self) -> DfResult<Arc<dyn TableProvider>> {
        let Some(pg_class) = self.inner.table("pg_class").await? else {
            return datafusion::common::plan_err!("pg_catalog.pg_class is missing");
        };
        let all = self.view_definitions()?;
        let views = MemTable::try_new(all.schema(), vec![vec![all]])?;
        let plan = LogicalPlanBuilder::scan("c", provider_as_source(pg_class), None)?
            .join(
                LogicalPlanBuilder::scan("v", provider_as_source(Arc::new(views)), None)?
                    .build()?,
                JoinType::Inner,
                (
                    vec![Column::from_qualified_name("c.relname")],
                    vec![Column::from_qualified_name("v.viewname")],
                ),
                None,
            )?
            .project(vec![
                col("c.oid").alias("oid"),
                col("v.viewname").alias("viewname"),
                col("v.definition").alias("definition"),
            ])?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }

    /// `augur_index_definitions`: for every index, by the OID `pg_index` gives it, its
    /// `CREATE INDEX` statement (`column_no` 0) and its key columns (`column_no` from 1); what
    /// `pg_get_indexdef` reads.
    async fn index_definitions(&self) -> DfResult<Arc<dyn TableProvider>> {
        let Some(pg_class) = self.inner.table("pg_class").await? else {
            return datafusion::common::plan_err!("pg_catalog.pg_class is missing");
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("relname", DataType::Utf8, false),
            Field::new("column_no", DataType::Int32, false),
            Field::new("definition", DataType::Utf8, false),
        ]));
        let (mut relnames, mut numbers, mut definitions) = (Vec::new(), Vec::new(), Vec::new());
        for name in self.catalog.table_names() {
            let Some(table) = self.catalog.table(&name) else {
                continue;
            };
            let def = table.def();
            if def.has_row_id() {
                continue;
            }
            let columns: Vec<String> = def
                .primary_key
                .iter()
                .map(|&i| quote_ident(&def.columns[i].name))
                .collect();
            relnames.push(def.name.clone());
            numbers.push(0);
            definitions.push(format!(
                "CREATE UNIQUE INDEX {} ON {}.{} USING btree ({})",
                quote_ident(&def.pkey_name()),
                crate::catalog::schema::SCHEMA_NAME,
                quote_ident(&def.name),
                columns.join(", ")
            ));
            for (i, column) in columns.into_iter().enumerate() {
                relnames.push(def.name.clone());
                numbers.push(i as i32 + 1);
                definitions.push(column);
            }
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(relnames)),
                Arc::new(datafusion::arrow::array::Int32Array::from(numbers)),
                Arc::new(StringArray::from(definitions)),
            ],
        )?;
        let indexes = MemTable::try_new(schema, vec![vec![batch]])?;
        let plan = LogicalPlanBuilder::scan("c", provider_as_source(pg_class), None)?
            .join(
                LogicalPlanBuilder::scan("i", provider_as_source(Arc::new(indexes)), None)?
                    .build()?,
                JoinType::Inner,
                (
                    vec![Column::from_qualified_name("c.relname")],
                    vec![Column::from_qualified_name("i.relname")],
                ),
                None,
            )?
            .project(vec![
                cast(col("c.oid") + lit(CONSTRAINT_OID_OFFSET), DataType::Int32)
                    .alias("indexrelid"),
                col("i.column_no").alias("column_no"),
                col("i.definition").alias("definition"),
            ])?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }

    async fn pg_constraint(&self) -> DfResult<Arc<dyn TableProvider>> {
        let oid = cast(col("c.oid") + lit(CONSTRAINT_OID_OFFSET), DataType::Int32);
        let none = |name: &str| cast(lit(ScalarValue::Null), DataType::Utf8).alias(name);
        let plan = self
            .tables_with_keys()
            .await?
            .project(vec![
                oid.clone().alias("oid"),
                col("k.key_conname").alias("conname"),
                col("c.relnamespace").alias("connamespace"),
                lit("p").alias("contype"),
                lit(false).alias("condeferrable"),
                lit(false).alias("condeferred"),
                lit(true).alias("convalidated"),
                col("c.oid").alias("conrelid"),
                lit(0i32).alias("contypid"),
                oid.alias("conindid"),
                lit(0i32).alias("conparentid"),
                lit(0i32).alias("confrelid"),
                lit(" ").alias("confupdtype"),
                lit(" ").alias("confdeltype"),
                lit(" ").alias("confmatchtype"),
                lit(true).alias("conislocal"),
                lit(0i16).alias("coninhcount"),
                lit(true).alias("connoinherit"),
                col("k.key_conkey").alias("conkey"),
                cast(lit(ScalarValue::Null), list(DataType::Int16)).alias("confkey"),
                none("conpfeqop"),
                none("conppeqop"),
                none("conffeqop"),
                none("confdelsetcols"),
                none("conexclop"),
                none("conbin"),
            ])?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

/// `name` as PostgreSQL prints an identifier: quoted unless it is lower-case letters, digits
/// and underscores.
fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn list(element: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(element, true)))
}

fn pg_statistic_ext() -> DfResult<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("oid", DataType::Int32, false),
        Field::new("stxrelid", DataType::Int32, false),
        Field::new("stxname", DataType::Utf8, false),
        Field::new("stxnamespace", DataType::Int32, false),
        Field::new("stxowner", DataType::Int32, false),
        Field::new("stxstattarget", DataType::Int16, true),
        Field::new("stxkeys", list(DataType::Int16), false),
        Field::new("stxkind", list(DataType::Utf8), false),
        Field::new("stxexprs", DataType::Utf8, true),
    ]));
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?))
}

#[async_trait]
impl SchemaProvider for PgCatalogOverlay {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        match name.to_ascii_lowercase().as_str() {
            "pg_statistic_ext" => Ok(Some(pg_statistic_ext()?)),
            "pg_constraint" => Ok(Some(self.pg_constraint().await?)),
            "pg_index" => Ok(Some(self.pg_index().await?)),
            "pg_class" => self.pg_class().await,
            "pg_matviews" => Ok(Some(self.pg_matviews()?)),
            "pg_views" => Ok(Some(self.pg_views()?)),
            VIEW_DEFINITIONS => Ok(Some(self.oid_view_definitions().await?)),
            INDEX_DEFINITIONS => Ok(Some(self.index_definitions().await?)),
            _ => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        OWN_TABLES.contains(&name.to_ascii_lowercase().as_str()) || self.inner.table_exist(name)
    }
}
