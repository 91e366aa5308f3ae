//! The catalog as a DataFusion schema: `augur.public`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::{TableProvider, ViewTable};
use datafusion::error::Result as DfResult;

use super::Catalog;
use crate::table::provider::TableScan;

/// Name of the DataFusion catalog (the database clients connect to, whatever name they ask for).
pub const CATALOG_NAME: &str = "augur";
/// Name of the schema holding users' tables.
pub const SCHEMA_NAME: &str = "public";

/// Serves the tables of a [`Catalog`] to DataFusion.
#[derive(Debug)]
pub struct AugurSchema {
    catalog: Arc<Catalog>,
    /// Expose hidden row ids (used to plan UPDATE and DELETE, never for users' queries).
    with_hidden: bool,
}

impl AugurSchema {
    /// The schema of users' queries.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self {
            catalog,
            with_hidden: false,
        }
    }

    /// The schema Augur plans UPDATE and DELETE in: tables show their hidden row ids.
    pub fn with_hidden(catalog: Arc<Catalog>) -> Self {
        Self {
            catalog,
            with_hidden: true,
        }
    }
}

#[async_trait]
impl SchemaProvider for AugurSchema {
    fn table_names(&self) -> Vec<String> {
        self.catalog.relation_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(table) = self.catalog.table(name) {
            return Ok(Some(Arc::new(TableScan::new(
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
            return Ok(Some(Arc::new(TableScan::view(
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
        self.catalog.exists(name)
    }
}
