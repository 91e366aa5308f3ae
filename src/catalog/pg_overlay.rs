//! `pg_catalog` as clients see it: `datafusion-pg-catalog`'s tables, with the few that Augur
//! serves itself laid over them.
//!
//! - `pg_attribute` types the columns of Augur's relations as PostgreSQL does (`interval`,
//!   `numeric(p,s)` with its type modifier, arrays with their dimensions) and says which have a
//!   default or are identity columns; `pg_attrdef` holds the defaults, which `pg_get_expr`
//!   returns as written.
//! - `augur_relation_sizes` gives the bytes (keys and values) each relation's rows and its
//!   indexes take in RocksDB, by OID, for `pg_table_size` and its kin. A primary key is the order
//!   rows are stored in and takes no bytes of its own; a plain view takes none; a source's rows
//!   are not counted (NULL).
//! - `pg_statistic_ext` is empty, with its array columns typed as arrays so that psql's `\d`
//!   query over it plans.
//! - `pg_class` says `m` (materialized view) for materialized views, so that psql's `\dm`
//!   lists them, `relhasindex` for relations with indexes (psql's `\d` lists them then), and has
//!   `reloptions` (none), and `pg_matviews` lists them with their queries.
//! - `pg_views` lists the plain views with their queries; `augur_view_definitions` gives every
//!   view's definition by the OID `pg_class` gives it, for `pg_get_viewdef`.
//! - `augur_index_definitions` gives each index's definition and key columns, for
//!   `pg_get_indexdef`.
//! - `pg_index` has one index per primary key, its `indclass` and `indoption` arrays as long as
//!   its key, so that SQLAlchemy's `get_indexes` query plans.
//! - `pg_constraint` holds the primary keys, `UNIQUE` and `CHECK` constraints of Augur's tables
//!   (with `conkey` a real `int2[]`, a UNIQUE constraint's `conindid` its index's OID in
//!   `pg_index`, a CHECK's expression in `conbin`), joined to `pg_class` so that `conrelid` is
//!   the OID `pg_class` gives the table; `augur_constraint_definitions` gives each one's
//!   definition for `pg_get_constraintdef`. SQLAlchemy's `get_pk_constraint`,
//!   `get_unique_constraints` and `get_check_constraints` and psql's `\d` read them.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    AsArray, BooleanArray, Int16Builder, ListBuilder, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::SchemaProvider;
use datafusion::common::{Column, JoinType, ScalarValue};
use datafusion::datasource::{MemTable, TableProvider, ViewTable, provider_as_source};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{LogicalPlanBuilder, cast, col, lit, when};

use super::Catalog;
use super::schema::{SCHEMA_NAME, split};

/// The `pg_catalog` schema with Augur's tables over the library's.
#[derive(Debug)]
pub struct PgCatalogOverlay {
    inner: Arc<dyn SchemaProvider>,
    catalog: Arc<Catalog>,
}

const OWN_TABLES: &[&str] = &[
    CONSTRAINT_DEFINITIONS,
    "pg_attribute",
    "pg_attrdef",
    "pg_statistic_ext",
    RELATION_SIZES,
    "pg_constraint",
    "pg_index",
    VIEW_DEFINITIONS,
    INDEX_DEFINITIONS,
    "pg_indexes",
    "pg_views",
];

/// The table `pg_table_size`, `pg_relation_size`, `pg_total_relation_size` and
/// `pg_indexes_size` read (see `sql::rewrite::view_definitions`).
pub const RELATION_SIZES: &str = "augur_relation_sizes";

/// The table `pg_get_indexdef` reads (see `sql::rewrite::view_definitions`).
pub const INDEX_DEFINITIONS: &str = "augur_index_definitions";

/// The table `pg_get_constraintdef(oid)` reads (see `sql::rewrite::view_definitions`).
pub const CONSTRAINT_DEFINITIONS: &str = "augur_constraint_definitions";

/// The table `pg_get_viewdef(oid)` reads (see `sql::rewrite::view_definitions`).
pub const VIEW_DEFINITIONS: &str = "augur_view_definitions";

/// Constraint OIDs are the table's OID plus this, clear of the OIDs `pg_class` hands out.
const CONSTRAINT_OID_OFFSET: i32 = 1_000_000;

/// CHECK constraints' OIDs: this plus the table's OID times [`CHECKS_PER_TABLE`] plus the
/// constraint's place among the table's CHECKs.
const CHECK_OID_OFFSET: i32 = 10_000_000;
const CHECKS_PER_TABLE: i32 = 100;

impl PgCatalogOverlay {
    /// Lays Augur's tables over `inner`.
    pub fn new(inner: Arc<dyn SchemaProvider>, catalog: Arc<Catalog>) -> Self {
        Self { inner, catalog }
    }

    /// One row per constraint of Augur's tables: primary keys (`p`), `UNIQUE` constraints
    /// (`u`) and `CHECK` constraints (`c`), with the table's catalog key, the constraint's name,
    /// its key column numbers (from 1; for a CHECK, the columns it reads), its index's OID (a
    /// UNIQUE constraint's), its place among the table's CHECKs, its expression (a CHECK's) and
    /// its definition as `pg_get_constraintdef` gives it.
    fn constraints(&self) -> DfResult<Arc<dyn TableProvider>> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("key_relname", DataType::Utf8, false),
            Field::new("key_conname", DataType::Utf8, false),
            Field::new("key_type", DataType::Utf8, false),
            Field::new("key_conkey", list(DataType::Int16), false),
            Field::new("key_index", DataType::Int32, true),
            Field::new("key_check", DataType::Int32, false),
            Field::new("key_bin", DataType::Utf8, true),
            Field::new("key_def", DataType::Utf8, false),
        ]));
        let (mut relnames, mut connames, mut types) = (Vec::new(), Vec::new(), Vec::new());
        let (mut index_oids, mut check_numbers, mut bins, mut defs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut conkeys = ListBuilder::new(Int16Builder::new());
        let column_list = |def: &crate::table::TableDef, columns: &[usize]| -> String {
            columns
                .iter()
                .map(|&i| quote_ident(&def.columns[i].name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for name in self.catalog.table_names() {
            let Some(table) = self.catalog.table(&name) else {
                continue;
            };
            let def = table.def();
            if !def.has_row_id() {
                relnames.push(def.name.clone());
                connames.push(split(&def.pkey_name()).1.to_string());
                types.push("p");
                for &column in &def.primary_key {
                    conkeys.values().append_value(column as i16 + 1);
                }
                conkeys.append(true);
                index_oids.push(None);
                check_numbers.push(0);
                bins.push(None);
                defs.push(format!(
                    "PRIMARY KEY ({})",
                    column_list(def, &def.primary_key)
                ));
            }
            for index in self.catalog.unique_constraints_on(&name) {
                relnames.push(def.name.clone());
                connames.push(split(&index.name).1.to_string());
                types.push("u");
                for &column in &index.columns {
                    conkeys.values().append_value(column as i16 + 1);
                }
                conkeys.append(true);
                index_oids.push(Some(INDEX_OID_OFFSET + index.id as i32));
                check_numbers.push(0);
                bins.push(None);
                defs.push(format!("UNIQUE ({})", column_list(def, &index.columns)));
            }
            for (number, check) in def.checks.iter().enumerate() {
                relnames.push(def.name.clone());
                connames.push(check.name.clone());
                types.push("c");
                // The columns the expression names.
                let words: Vec<&str> = check
                    .expr
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .collect();
                for (i, column) in def.columns.iter().enumerate() {
                    if !column.hidden && words.contains(&column.name.as_str()) {
                        conkeys.values().append_value(i as i16 + 1);
                    }
                }
                conkeys.append(true);
                index_oids.push(None);
                check_numbers.push(number as i32 + 1);
                bins.push(Some(check.expr.clone()));
                defs.push(format!("CHECK (({}))", check.expr));
            }
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(relnames)),
                Arc::new(StringArray::from(connames)),
                Arc::new(StringArray::from(types)),
                Arc::new(conkeys.finish()),
                Arc::new(datafusion::arrow::array::Int32Array::from(index_oids)),
                Arc::new(datafusion::arrow::array::Int32Array::from(check_numbers)),
                Arc::new(StringArray::from(bins)),
                Arc::new(StringArray::from(defs)),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    /// One row per index, primary keys' and `CREATE INDEX`'s: the relation's catalog key, the
    /// index's catalog key and its name within its schema, whether it is the primary key and unique, its key column numbers (from 1),
    /// its OID if it has its own (`CREATE INDEX`; a primary key's follows its table's), and
    /// its `CREATE INDEX` statement.
    fn all_indexes(&self) -> DfResult<Arc<MemTable>> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x_relname", DataType::Utf8, false),
            Field::new("x_indexname", DataType::Utf8, false),
            Field::new("x_bare", DataType::Utf8, false),
            Field::new("x_primary", DataType::Boolean, false),
            Field::new("x_unique", DataType::Boolean, false),
            vector("x_key", DataType::Int16, "int2vector"),
            Field::new("x_oid", DataType::Int32, true),
            Field::new("x_definition", DataType::Utf8, false),
            vector("x_class", DataType::Int32, "oidvector"),
            vector("x_option", DataType::Int16, "int2vector"),
        ]));
        let mut relnames = Vec::new();
        let mut names = Vec::new();
        let mut bare = Vec::new();
        let mut primary = Vec::new();
        let mut unique = Vec::new();
        let mut keys = ListBuilder::new(Int16Builder::new());
        // Per key column: the default operator class (0) and no sort options.
        let mut classes = ListBuilder::new(datafusion::arrow::array::Int32Builder::new());
        let mut options = ListBuilder::new(Int16Builder::new());
        let mut oids = Vec::new();
        let mut definitions = Vec::new();
        for index in self.index_list() {
            relnames.push(index.relation.clone());
            names.push(index.name.clone());
            bare.push(split(&index.name).1.to_string());
            primary.push(index.primary);
            unique.push(index.unique);
            for (_, number) in &index.columns {
                keys.values().append_value(*number);
                classes.values().append_value(0);
                options.values().append_value(0);
            }
            keys.append(true);
            classes.append(true);
            options.append(true);
            oids.push(index.oid);
            definitions.push(index.definition());
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(relnames)),
                Arc::new(StringArray::from(names)),
                Arc::new(StringArray::from(bare)),
                Arc::new(BooleanArray::from(primary)),
                Arc::new(BooleanArray::from(unique)),
                Arc::new(keys.finish()),
                Arc::new(datafusion::arrow::array::Int32Array::from(oids)),
                Arc::new(StringArray::from(definitions)),
                Arc::new(classes.finish()),
                Arc::new(options.finish()),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    /// Every index: each primary key, then each secondary index.
    fn index_list(&self) -> Vec<IndexEntry> {
        let mut out = Vec::new();
        for name in self.catalog.table_names() {
            let Some(table) = self.catalog.table(&name) else {
                continue;
            };
            let def = table.def();
            if def.has_row_id() {
                continue;
            }
            out.push(IndexEntry {
                relation: def.name.clone(),
                name: def.pkey_name(),
                primary: true,
                unique: true,
                columns: def
                    .primary_key
                    .iter()
                    .map(|&i| (def.columns[i].name.clone(), i as i16 + 1))
                    .collect(),
                oid: None,
            });
        }
        for index in self.catalog.indexes() {
            let table = self.catalog.table(&index.relation).or_else(|| {
                self.catalog
                    .view(&index.relation)
                    .and_then(|v| v.storage().cloned())
            });
            let Some(table) = table else {
                continue;
            };
            let def = table.def();
            out.push(IndexEntry {
                relation: index.relation.clone(),
                name: index.name.clone(),
                primary: false,
                unique: index.unique,
                columns: index
                    .columns
                    .iter()
                    .map(|&i| (def.columns[i].name.clone(), i as i16 + 1))
                    .collect(),
                oid: Some(INDEX_OID_OFFSET + index.id as i32),
            });
        }
        out
    }

    /// `pg_class` (as `c`) and `pg_namespace` (as `n`) joined to every index (as `x`).
    async fn tables_with_indexes(&self) -> DfResult<LogicalPlanBuilder> {
        let indexes = LogicalPlanBuilder::scan("x", provider_as_source(self.all_indexes()?), None)?
            .build()?;
        self.classes_with_namespaces().await?.join_on(
            indexes,
            JoinType::Inner,
            [relation_key().eq(col("x.x_relname"))],
        )
    }

    /// `pg_indexes`: every index with its definition.
    fn pg_indexes(&self) -> DfResult<Arc<dyn TableProvider>> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("schemaname", DataType::Utf8, true),
            Field::new("tablename", DataType::Utf8, true),
            Field::new("indexname", DataType::Utf8, true),
            Field::new("tablespace", DataType::Utf8, true),
            Field::new("indexdef", DataType::Utf8, true),
        ]));
        let list = self.index_list();
        let n = list.len();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    list.iter().map(|i| split(&i.relation).0),
                )),
                Arc::new(StringArray::from_iter_values(
                    list.iter().map(|i| split(&i.relation).1),
                )),
                Arc::new(StringArray::from_iter_values(
                    list.iter().map(|i| split(&i.name).1),
                )),
                Arc::new(StringArray::from(vec![None::<&str>; n])),
                Arc::new(StringArray::from_iter_values(
                    list.iter().map(IndexEntry::definition),
                )),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    /// `pg_class` (as `c`) and `pg_namespace` (as `n`) joined to the constraints (as `k`).
    async fn tables_with_constraints(&self) -> DfResult<LogicalPlanBuilder> {
        let keys = LogicalPlanBuilder::scan("k", provider_as_source(self.constraints()?), None)?
            .build()?;
        self.classes_with_namespaces().await?.join_on(
            keys,
            JoinType::Inner,
            [relation_key().eq(col("k.key_relname"))],
        )
    }

    /// Every index: one behind every primary key, as PostgreSQL keeps, and each `CREATE INDEX`.
    async fn pg_index(&self) -> DfResult<Arc<dyn TableProvider>> {
        let natts = cast(
            datafusion::functions_nested::expr_fn::cardinality(col("x.x_key")),
            DataType::Int16,
        );
        let none = |name: &str| cast(lit(ScalarValue::Null), DataType::Utf8).alias(name);
        let plan = self
            .tables_with_indexes()
            .await?
            .project(vec![
                index_oid().alias("indexrelid"),
                col("c.oid").alias("indrelid"),
                natts.clone().alias("indnatts"),
                natts.alias("indnkeyatts"),
                col("x.x_unique").alias("indisunique"),
                lit(false).alias("indnullsnotdistinct"),
                col("x.x_primary").alias("indisprimary"),
                lit(false).alias("indisexclusion"),
                lit(true).alias("indimmediate"),
                lit(false).alias("indisclustered"),
                lit(true).alias("indisvalid"),
                lit(false).alias("indcheckxmin"),
                lit(true).alias("indisready"),
                lit(true).alias("indislive"),
                lit(false).alias("indisreplident"),
                col("x.x_key").alias("indkey"),
                none("indcollation"),
                col("x.x_class").alias("indclass"),
                col("x.x_option").alias("indoption"),
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
        if self.inner.table("pg_namespace").await?.is_none() {
            return Ok(None);
        }
        let materialized: Vec<_> = self
            .catalog
            .views()
            .iter()
            .filter(|v| v.def().materialized)
            .map(|v| lit(v.name().to_string()))
            .collect();
        let checks: Vec<(String, i16)> = self
            .catalog
            .table_names()
            .into_iter()
            .filter_map(|name| {
                let table = self.catalog.table(&name)?;
                let n = table.def().checks.len();
                (n > 0).then_some((name, n as i16))
            })
            .collect();
        let indexed: Vec<_> = self
            .index_list()
            .into_iter()
            .map(|i| lit(i.relation))
            .collect();
        let schema = pg_class.schema();
        let mut columns: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| {
                let theirs = col(format!("c.{}", f.name()));
                if f.name() == "relhasindex" && !indexed.is_empty() {
                    Ok(relation_key()
                        .in_list(indexed.clone(), false)
                        .alias("relhasindex"))
                } else if f.name() == "relchecks" && !checks.is_empty() {
                    // How many CHECK constraints each table has (psql's `\d` asks only then).
                    let mut counts = checks.iter();
                    let Some((first, n)) = counts.next() else {
                        return Ok(theirs.alias("relchecks"));
                    };
                    let mut case = when(relation_key().eq(lit(first.clone())), lit(*n));
                    for (key, n) in counts {
                        case = case.when(relation_key().eq(lit(key.clone())), lit(*n));
                    }
                    Ok(cast(case.otherwise(theirs)?, f.data_type().clone()).alias("relchecks"))
                } else if f.name() == "relkind" && !materialized.is_empty() {
                    when(
                        relation_key().in_list(materialized.clone(), false),
                        lit("m"),
                    )
                    .otherwise(theirs)
                    .map(|e| e.alias("relkind"))
                } else {
                    Ok(theirs.alias(f.name()))
                }
            })
            .collect::<DfResult<_>>()?;
        if schema.field_with_name("reloptions").is_err() {
            // Storage options (`text[]`): Augur's relations have none.
            columns.push(lit(ScalarValue::try_from(&list(DataType::Utf8))?).alias("reloptions"));
        }
        let mut plan = self.classes_with_namespaces().await?.project(columns)?;
        {
            // Indexes are relations too (relkind `i`), in their table's namespace, with the
            // btree access method (403).
            let mut index_columns = Vec::new();
            for f in schema.fields() {
                let expr = match f.name().as_str() {
                    "oid" => index_oid(),
                    "relname" => col("x.x_bare"),
                    "relkind" => lit("i"),
                    "relam" => lit(BTREE_AM_OID),
                    "relnatts" => {
                        datafusion::functions_nested::expr_fn::cardinality(col("x.x_key"))
                    }
                    "reltype" => lit(0),
                    "relhasindex" => lit(false),
                    name => col(format!("c.{name}")),
                };
                index_columns.push(cast(expr, f.data_type().clone()).alias(f.name()));
            }
            if schema.field_with_name("reloptions").is_err() {
                index_columns
                    .push(lit(ScalarValue::try_from(&list(DataType::Utf8))?).alias("reloptions"));
            }
            let indexes = self
                .tables_with_indexes()
                .await?
                .project(index_columns)?
                .build()?;
            plan = plan.union(indexes)?;
        }
        Ok(Some(Arc::new(ViewTable::new(plan.build()?, None))))
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
                Arc::new(StringArray::from_iter_values(
                    views.iter().map(|v| split(v.name()).0),
                )),
                Arc::new(StringArray::from_iter_values(
                    views.iter().map(|v| split(v.name()).1),
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
        let keys = plain.column(0).as_string::<i32>();
        let schema = Arc::new(Schema::new(vec![
            Field::new("schemaname", DataType::Utf8, true),
            Field::new("viewname", DataType::Utf8, true),
            Field::new("viewowner", DataType::Utf8, true),
            Field::new("definition", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    keys.iter().map(|k| split(k.unwrap_or_default()).0),
                )),
                Arc::new(StringArray::from_iter_values(
                    keys.iter().map(|k| split(k.unwrap_or_default()).1),
                )),
                Arc::new(StringArray::from(vec!["augur"; n])),
                plain.column(1).clone(),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    /// `augur_view_definitions`: the OID `pg_class` gives each view, with its definition; what
    /// `pg_get_viewdef(oid)` reads.
    async fn oid_view_definitions(&self) -> DfResult<Arc<dyn TableProvider>> {
        let all = self.view_definitions()?;
        let views = MemTable::try_new(all.schema(), vec![vec![all]])?;
        let plan = self
            .classes_with_namespaces()
            .await?
            .join_on(
                LogicalPlanBuilder::scan("v", provider_as_source(Arc::new(views)), None)?
                    .build()?,
                JoinType::Inner,
                [relation_key().eq(col("v.viewname"))],
            )?
            .project(vec![
                col("c.oid").alias("augur_view_oid"),
                col("v.definition").alias("augur_viewdef"),
            ])?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }

    /// `augur_index_definitions`: for every index, by the OID `pg_index` gives it, its
    /// `CREATE INDEX` statement (`column_no` 0) and its key columns (`column_no` from 1); what
    /// `pg_get_indexdef` reads.
    async fn index_definitions(&self) -> DfResult<Arc<dyn TableProvider>> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("d_indexname", DataType::Utf8, false),
            Field::new("column_no", DataType::Int32, false),
            Field::new("definition", DataType::Utf8, false),
        ]));
        let (mut names, mut numbers, mut definitions) = (Vec::new(), Vec::new(), Vec::new());
        for index in self.index_list() {
            names.push(index.name.clone());
            numbers.push(0);
            definitions.push(index.definition());
            for (i, (column, _)) in index.columns.iter().enumerate() {
                names.push(index.name.clone());
                numbers.push(i as i32 + 1);
                definitions.push(quote_ident(column));
            }
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(names)),
                Arc::new(datafusion::arrow::array::Int32Array::from(numbers)),
                Arc::new(StringArray::from(definitions)),
            ],
        )?;
        let definitions = MemTable::try_new(schema, vec![vec![batch]])?;
        let plan = self
            .tables_with_indexes()
            .await?
            .join(
                LogicalPlanBuilder::scan("d", provider_as_source(Arc::new(definitions)), None)?
                    .build()?,
                JoinType::Inner,
                (
                    vec![Column::from_qualified_name("x.x_indexname")],
                    vec![Column::from_qualified_name("d.d_indexname")],
                ),
                None,
            )?
            .project(vec![
                index_oid().alias("augur_index_oid"),
                col("d.column_no").alias("augur_column_no"),
                col("d.definition").alias("augur_indexdef"),
            ])?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }

    /// A constraint's OID: a primary key's follows its table's, a UNIQUE constraint's its
    /// index's, a CHECK's its table's and its place.
    fn constraint_oid() -> DfResult<datafusion::logical_expr::Expr> {
        Ok(cast(
            when(
                col("k.key_type").eq(lit("p")),
                col("c.oid") + lit(CONSTRAINT_OID_OFFSET),
            )
            .when(
                col("k.key_type").eq(lit("u")),
                col("k.key_index") + lit(CONSTRAINT_OID_OFFSET),
            )
            .otherwise(
                lit(CHECK_OID_OFFSET) + col("c.oid") * lit(CHECKS_PER_TABLE) + col("k.key_check"),
            )?,
            DataType::Int32,
        ))
    }

    /// `augur_constraint_definitions`: each constraint's definition by its OID, what
    /// `pg_get_constraintdef` reads.
    async fn constraint_definitions(&self) -> DfResult<Arc<dyn TableProvider>> {
        let plan = self
            .tables_with_constraints()
            .await?
            .project(vec![
                Self::constraint_oid()?.alias("augur_constraint_oid"),
                col("k.key_def").alias("augur_constraintdef"),
            ])?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }

    async fn pg_constraint(&self) -> DfResult<Arc<dyn TableProvider>> {
        let oid = Self::constraint_oid()?;
        let index = cast(
            when(
                col("k.key_type").eq(lit("p")),
                col("c.oid") + lit(CONSTRAINT_OID_OFFSET),
            )
            .when(col("k.key_type").eq(lit("u")), col("k.key_index"))
            .otherwise(lit(0i32))?,
            DataType::Int32,
        );
        let none = |name: &str| cast(lit(ScalarValue::Null), DataType::Utf8).alias(name);
        let plan = self
            .tables_with_constraints()
            .await?
            .project(vec![
                oid.alias("oid"),
                col("k.key_conname").alias("conname"),
                col("c.relnamespace").alias("connamespace"),
                col("k.key_type").alias("contype"),
                lit(false).alias("condeferrable"),
                lit(false).alias("condeferred"),
                lit(true).alias("convalidated"),
                col("c.oid").alias("conrelid"),
                lit(0i32).alias("contypid"),
                index.alias("conindid"),
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
                col("k.key_bin").alias("conbin"),
            ])?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

impl PgCatalogOverlay {
    /// The columns of Augur's relations as PostgreSQL types them: relation, column number
    /// (from 1), type OID, type modifier, array dimensions, default (SQL text), identity
    /// (`a` always, `d` by default, empty for none) and `NOT NULL`.
    fn column_types(&self) -> DfResult<Arc<dyn TableProvider>> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("t_relname", DataType::Utf8, false),
            Field::new("t_attnum", DataType::Int16, false),
            Field::new("t_typid", DataType::Int32, false),
            Field::new("t_typmod", DataType::Int32, false),
            Field::new("t_ndims", DataType::Int32, false),
            Field::new("t_default", DataType::Utf8, true),
            Field::new("t_identity", DataType::Utf8, false),
            Field::new("t_notnull", DataType::Boolean, false),
        ]));
        // (name, columns, whether `NOT NULL` holds: a view's columns never say it)
        let mut relations: Vec<(String, Vec<crate::table::ColumnDef>, bool)> = Vec::new();
        for name in self.catalog.table_names() {
            if let Some(table) = self.catalog.table(&name) {
                relations.push((name, table.def().columns.clone(), true));
            }
        }
        for view in self.catalog.views() {
            relations.push((view.name().to_string(), view.def().columns.clone(), false));
        }
        for source in self.catalog.sources() {
            relations.push((source.def.name.clone(), source.def.columns.clone(), true));
        }
        let (mut names, mut numbers, mut types, mut mods) = (vec![], vec![], vec![], vec![]);
        let (mut dims, mut defaults, mut identities, mut not_null) =
            (vec![], vec![], vec![], vec![]);
        for (relation, columns, constrained) in relations {
            for (i, column) in columns.iter().filter(|c| !c.hidden).enumerate() {
                let data_type: DataType = column.data_type.parse().unwrap_or(DataType::Utf8);
                let (oid, typmod) = match column.pg_type.as_deref() {
                    Some("uuid") => (2950, -1),
                    Some("json") => (114, -1),
                    Some("jsonb") => (3802, -1),
                    Some(pg_type) if super::pg_char::parse_pg_type(pg_type).is_some() => {
                        let (kind, length) =
                            super::pg_char::parse_pg_type(pg_type).unwrap_or_default();
                        (kind.oid(), length as i32 + 4)
                    }
                    _ => crate::common::types::pg_type_oid(&data_type),
                };
                names.push(relation.clone());
                numbers.push(i as i16 + 1);
                types.push(oid);
                mods.push(typmod);
                dims.push(i32::from(matches!(data_type, DataType::List(_))));
                defaults.push(column.default.clone().filter(|_| column.identity.is_none()));
                identities.push(match column.identity {
                    Some(crate::table::Identity::Always) => "a",
                    Some(crate::table::Identity::ByDefault) => "d",
                    None => "",
                });
                not_null.push(constrained && !column.nullable);
            }
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(names)),
                Arc::new(datafusion::arrow::array::Int16Array::from(numbers)),
                Arc::new(datafusion::arrow::array::Int32Array::from(types)),
                Arc::new(datafusion::arrow::array::Int32Array::from(mods)),
                Arc::new(datafusion::arrow::array::Int32Array::from(dims)),
                Arc::new(StringArray::from(defaults)),
                Arc::new(StringArray::from(identities)),
                Arc::new(BooleanArray::from(not_null)),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    /// The library's `pg_class` (as `c`) joined to `pg_namespace` (as `n`).
    async fn classes_with_namespaces(&self) -> DfResult<LogicalPlanBuilder> {
        let (Some(pg_class), Some(pg_namespace)) = (
            self.inner.table("pg_class").await?,
            self.inner.table("pg_namespace").await?,
        ) else {
            return datafusion::common::plan_err!("pg_catalog.pg_class is missing");
        };
        LogicalPlanBuilder::scan("c", provider_as_source(pg_class), None)?.join(
            LogicalPlanBuilder::scan("n", provider_as_source(pg_namespace), None)?.build()?,
            JoinType::Inner,
            (
                vec![Column::from_qualified_name("c.relnamespace")],
                vec![Column::from_qualified_name("n.oid")],
            ),
            None,
        )
    }

    /// The library's `pg_attribute` with the types, defaults and identities of Augur's columns.
    async fn pg_attribute(&self) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(pg_attribute) = self.inner.table("pg_attribute").await? else {
            return Ok(None);
        };
        let schema = pg_attribute.schema();
        let classes = self.classes_with_namespaces().await?.build()?;
        let types = LogicalPlanBuilder::scan("t", provider_as_source(self.column_types()?), None)?
            .build()?;
        let matched = col("t.t_relname").is_not_null();
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                let name = f.name().as_str();
                let theirs = col(format!("a.{name}"));
                let expr = match name {
                    "atttypid" => when(matched.clone(), col("t.t_typid")).otherwise(theirs)?,
                    "atttypmod" => when(matched.clone(), col("t.t_typmod")).otherwise(theirs)?,
                    "attndims" => when(matched.clone(), col("t.t_ndims")).otherwise(theirs)?,
                    "atthasdef" => {
                        when(matched.clone(), col("t.t_default").is_not_null()).otherwise(theirs)?
                    }
                    "attidentity" => {
                        when(matched.clone(), col("t.t_identity")).otherwise(theirs)?
                    }
                    "attnotnull" => when(matched.clone(), col("t.t_notnull")).otherwise(theirs)?,
                    _ => theirs,
                };
                Ok(cast(expr, f.data_type().clone()).alias(name))
            })
            .collect::<DfResult<Vec<_>>>()?;
        let plan = LogicalPlanBuilder::scan("a", provider_as_source(pg_attribute), None)?
            .join(
                classes,
                JoinType::Inner,
                (
                    vec![Column::from_qualified_name("a.attrelid")],
                    vec![Column::from_qualified_name("c.oid")],
                ),
                None,
            )?
            .join_on(
                types,
                JoinType::Left,
                [
                    relation_key().eq(col("t.t_relname")),
                    col("a.attnum").eq(col("t.t_attnum")),
                ],
            )?
            .project(columns)?
            .build()?;
        Ok(Some(Arc::new(ViewTable::new(plan, None))))
    }

    /// `pg_attrdef`: the defaults of Augur's columns, as SQL text in `adbin`.
    async fn pg_attrdef(&self) -> DfResult<Arc<dyn TableProvider>> {
        let types = LogicalPlanBuilder::scan("t", provider_as_source(self.column_types()?), None)?
            .filter(col("t.t_default").is_not_null())?
            .build()?;
        let plan = self
            .classes_with_namespaces()
            .await?
            .join_on(
                types,
                JoinType::Inner,
                [relation_key().eq(col("t.t_relname"))],
            )?
            .project(vec![
                cast(
                    col("c.oid") * lit(ATTRDEF_OID_FACTOR)
                        + cast(col("t.t_attnum"), DataType::Int32),
                    DataType::Int32,
                )
                .alias("oid"),
                col("c.oid").alias("adrelid"),
                col("t.t_attnum").alias("adnum"),
                col("t.t_default").alias("adbin"),
            ])?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

impl PgCatalogOverlay {
    /// `augur_relation_sizes`: per relation and index, by the OID `pg_class` gives it, the bytes
    /// of its rows (`table_bytes`), of its indexes (`index_bytes`) and both (`total_bytes`),
    /// measured when read.
    async fn relation_sizes(&self) -> DfResult<Arc<dyn TableProvider>> {
        let store = self.catalog.store();
        let measure = |prefix: &[u8]| -> DfResult<Option<i64>> {
            let (_, bytes) = store
                .measure_prefix(prefix)
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            Ok(Some(bytes as i64))
        };
        let (mut names, mut rows, mut indexes) = (Vec::new(), Vec::new(), Vec::new());
        let mut relation = |name: String, table: Option<&crate::table::Table>| -> DfResult<()> {
            let (row_bytes, mut index_bytes) = match table {
                Some(table) => (measure(&table.def().key_prefix())?, Some(0)),
                None => (Some(0), Some(0)),
            };
            for index in self.catalog.indexes_on(&name) {
                let bytes = measure(&index.key_prefix())?;
                index_bytes = Some(index_bytes.unwrap_or(0) + bytes.unwrap_or(0));
                names.push(index.name.clone());
                rows.push(bytes);
                indexes.push(Some(0));
            }
            names.push(name);
            rows.push(row_bytes);
            indexes.push(index_bytes);
            Ok(())
        };
        for name in self.catalog.table_names() {
            let table = self.catalog.table(&name);
            relation(name, table.as_deref())?;
        }
        for view in self.catalog.views() {
            relation(view.name().to_string(), view.storage().map(|t| t.as_ref()))?;
        }
        for source in self.catalog.sources() {
            names.push(source.def.name.clone());
            rows.push(None);
            indexes.push(None);
        }
        for index in self.index_list().into_iter().filter(|i| i.primary) {
            names.push(index.name);
            rows.push(Some(0));
            indexes.push(Some(0));
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("s_relname", DataType::Utf8, false),
            Field::new("s_table", DataType::Int64, true),
            Field::new("s_index", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(names)),
                Arc::new(datafusion::arrow::array::Int64Array::from(rows)),
                Arc::new(datafusion::arrow::array::Int64Array::from(indexes)),
            ],
        )?;
        let sizes = MemTable::try_new(schema, vec![vec![batch]])?;
        let Some(pg_class) = self.pg_class().await? else {
            return datafusion::common::plan_err!("pg_catalog.pg_class is missing");
        };
        let Some(pg_namespace) = self.inner.table("pg_namespace").await? else {
            return datafusion::common::plan_err!("pg_catalog.pg_namespace is missing");
        };
        let plan = LogicalPlanBuilder::scan("c", provider_as_source(pg_class), None)?
            .join(
                LogicalPlanBuilder::scan("n", provider_as_source(pg_namespace), None)?.build()?,
                JoinType::Inner,
                (
                    vec![Column::from_qualified_name("c.relnamespace")],
                    vec![Column::from_qualified_name("n.oid")],
                ),
                None,
            )?
            .join_on(
                LogicalPlanBuilder::scan("s", provider_as_source(Arc::new(sizes)), None)?
                    .build()?,
                JoinType::Inner,
                [relation_key().eq(col("s.s_relname"))],
            )?
            .project(vec![
                col("c.oid").alias("oid"),
                relation_key().alias("relname"),
                col("s.s_table").alias("table_bytes"),
                col("s.s_index").alias("index_bytes"),
                (col("s.s_table") + col("s.s_index")).alias("total_bytes"),
            ])?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

/// A default's OID is its table's OID times this plus its column number.
const ATTRDEF_OID_FACTOR: i32 = 1000;

/// The OID of the btree access method in `pg_am`.
const BTREE_AM_OID: i32 = 403;

/// OIDs of `CREATE INDEX` indexes are this plus the index's id.
const INDEX_OID_OFFSET: i32 = 2_000_000;

/// An index as the catalogs show it.
struct IndexEntry {
    relation: String,
    name: String,
    primary: bool,
    unique: bool,
    /// Names and numbers (from 1) of the key columns.
    columns: Vec<(String, i16)>,
    /// A secondary index's own OID.
    oid: Option<i32>,
}

impl IndexEntry {
    /// `CREATE [UNIQUE] INDEX name ON schema.relation USING btree (columns)`.
    fn definition(&self) -> String {
        let columns: Vec<String> = self.columns.iter().map(|(c, _)| quote_ident(c)).collect();
        let (schema, relation) = split(&self.relation);
        format!(
            "CREATE {}INDEX {} ON {}.{} USING btree ({})",
            if self.unique { "UNIQUE " } else { "" },
            quote_ident(split(&self.name).1),
            quote_ident(schema),
            quote_ident(relation),
            columns.join(", ")
        )
    }
}

/// The catalog key of relation `c` in namespace `n`: its name in `public`, `schema.name`
/// elsewhere (see `catalog::schema`).
fn relation_key() -> datafusion::logical_expr::Expr {
    when(col("n.nspname").eq(lit(SCHEMA_NAME)), col("c.relname"))
        .otherwise(datafusion::functions::string::expr_fn::concat(vec![
            col("n.nspname"),
            lit("."),
            col("c.relname"),
        ]))
        .unwrap_or_else(|_| col("c.relname"))
}

/// The OID of index `x` in a join of `pg_class` (`c`) and the indexes (`x`).
fn index_oid() -> datafusion::logical_expr::Expr {
    cast(
        when(
            col("x.x_oid").is_null(),
            col("c.oid") + lit(CONSTRAINT_OID_OFFSET),
        )
        .otherwise(col("x.x_oid"))
        .unwrap_or_else(|_| col("x.x_oid")),
        DataType::Int32,
    )
}

/// `name` as PostgreSQL prints an identifier: quoted unless it is lower-case letters, digits
/// and underscores.
pub(crate) fn quote_ident(name: &str) -> String {
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

/// A list column sent to clients as PostgreSQL's `int2vector` or `oidvector`.
fn vector(name: &str, element: DataType, pg_type: &str) -> Field {
    Field::new(name, list(element), false).with_metadata(
        [(
            crate::server::text::VECTOR_TYPE_KEY.to_string(),
            pg_type.to_string(),
        )]
        .into(),
    )
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
        let mut names = self.inner.table_names();
        for own in OWN_TABLES {
            if !names.iter().any(|n| n == own) {
                names.push(own.to_string());
            }
        }
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        match name.to_ascii_lowercase().as_str() {
            "pg_statistic_ext" => Ok(Some(pg_statistic_ext()?)),
            "pg_attribute" => self.pg_attribute().await,
            "pg_attrdef" => Ok(Some(self.pg_attrdef().await?)),
            RELATION_SIZES => Ok(Some(self.relation_sizes().await?)),
            "pg_constraint" => Ok(Some(self.pg_constraint().await?)),
            CONSTRAINT_DEFINITIONS => Ok(Some(self.constraint_definitions().await?)),
            "pg_index" => Ok(Some(self.pg_index().await?)),
            "pg_class" => self.pg_class().await,
            "pg_matviews" => Ok(Some(self.pg_matviews()?)),
            "pg_views" => Ok(Some(self.pg_views()?)),
            VIEW_DEFINITIONS => Ok(Some(self.oid_view_definitions().await?)),
            INDEX_DEFINITIONS => Ok(Some(self.index_definitions().await?)),
            "pg_indexes" => Ok(Some(self.pg_indexes()?)),
            _ => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        OWN_TABLES.contains(&name.to_ascii_lowercase().as_str()) || self.inner.table_exist(name)
    }
}
