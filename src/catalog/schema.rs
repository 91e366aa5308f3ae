//! The catalog as DataFusion schemas: `augur.public` and each schema made by `CREATE SCHEMA`.
//!
//! A relation's catalog key is its name in `public` and `schema.name` in any other schema
//! (schema names never contain a dot, and neither do relation names: see
//! [`crate::sql::table_name`]); names derived from a relation's (`t_pkey`, `t_id_seq`,
//! `t_a_key`) land in the relation's schema by being derived from its key.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::{TableProvider, ViewTable};
use datafusion::error::Result as DfResult;

use super::Catalog;
use crate::table::provider::RelationProvider;

pub use crate::common::names::{CATALOG_NAME, SCHEMA_NAME, split};

/// The schemas no `CREATE SCHEMA` may take: the ones every database has.
pub const SYSTEM_SCHEMAS: [&str; 4] = [
    SCHEMA_NAME,
    "pg_catalog",
    "information_schema",
    crate::catalog::system::SYSTEM_SCHEMA,
];

/// The catalog key of relation `name` in schema `schema`.
pub fn qualify(schema: &str, name: &str) -> String {
    if schema == SCHEMA_NAME {
        name.to_string()
    } else {
        format!("{schema}.{name}")
    }
}

/// The prefix of the schemas that hold one connection's temporary relations (`pg_temp_3`).
pub const TEMP_SCHEMA_PREFIX: &str = "pg_temp_";

/// Whether `schema` is a connection's schema of temporary relations.
pub fn is_temp_schema(schema: &str) -> bool {
    schema
        .strip_prefix(TEMP_SCHEMA_PREFIX)
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// The catalog key of a relation DataFusion names by `reference`.
pub fn reference_key(reference: &datafusion::common::TableReference) -> String {
    match reference.schema() {
        Some(schema) => qualify(schema, reference.table()),
        None => reference.table().to_string(),
    }
}

/// Serves the relations of one schema of a [`Catalog`] to DataFusion.
#[derive(Debug)]
pub struct AugurSchema {
    catalog: Arc<Catalog>,
    /// Expose hidden row ids (used to plan UPDATE and DELETE, never for users' queries).
    with_hidden: bool,
    /// The schema served.
    schema: String,
}

impl AugurSchema {
    /// Schema `schema` as users' queries see it.
    pub fn new(catalog: Arc<Catalog>, schema: &str) -> Self {
        Self {
            catalog,
            with_hidden: false,
            schema: schema.to_string(),
        }
    }

    /// Schema `schema` as Augur plans UPDATE and DELETE in it: tables show their hidden row
    /// ids.
    pub fn with_hidden(catalog: Arc<Catalog>, schema: &str) -> Self {
        Self {
            catalog,
            with_hidden: true,
            schema: schema.to_string(),
        }
    }
}

#[async_trait]
impl SchemaProvider for AugurSchema {
    fn table_names(&self) -> Vec<String> {
        self.catalog
            .relation_names()
            .iter()
            .map(|key| split(key))
            .filter(|(schema, _)| *schema == self.schema)
            .map(|(_, name)| name.to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if name.contains('.') {
            return Ok(None);
        }
        let key = qualify(&self.schema, name);
        let name = key.as_str();
        if let Some(table) = self.catalog.table(name) {
            return Ok(Some(Arc::new(RelationProvider::new(
                table,
                self.catalog.store().clone(),
                self.with_hidden,
            ))));
        }
        if let Some(source) = self.catalog.source(name) {
            return Ok(Some(source.scan.clone()));
        }
        let Some(view) = self.catalog.view(name) else {
            return Ok(None);
        };
        if let Some(storage) = view.storage() {
            return Ok(Some(Arc::new(RelationProvider::view(
                storage.clone(),
                self.catalog.store().clone(),
            ))));
        }
        match view.plan() {
            Some(plan) => Ok(Some(Arc::new(ViewTable::new(
                plan.clone(),
                Some(view.def().query.clone()),
            )))),
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        !name.contains('.') && self.catalog.exists(&qualify(&self.schema, name))
    }
}
