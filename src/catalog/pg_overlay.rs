//! `pg_catalog` as clients see it: `datafusion-pg-catalog`'s tables, with the few that Augur
//! serves itself laid over them.
//!
//! - `pg_statistic_ext` is empty, with its array columns typed as arrays so that psql's `\d`
//!   query over it plans.
//! - `pg_class` says `m` (materialized view) for materialized views, so that psql's `\dm`
//!   lists them, and `pg_matviews` lists them with their queries.
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

const OWN_TABLES: &[&str] = &["pg_statistic_ext", "pg_constraint", "pg_index"];

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
                none("indclass"),
                none("indoption"),
                none("indexprs"),
                none("indpred"),
            ])?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }

    /// The library's `pg_class` with relkind `m` for materialized views.
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
        if materialized.is_empty() {
            return Ok(Some(pg_class));
        }
        let schema = pg_class.schema();
        let columns: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| {
                if f.name() == "relkind" {
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
            _ => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        OWN_TABLES.contains(&name.to_ascii_lowercase().as_str()) || self.inner.table_exist(name)
    }
}
