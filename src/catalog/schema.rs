//! The catalog as a DataFusion schema: `augur.public`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::TableProvider;
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
        self.catalog.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.catalog.table(name).map(|table| {
            Arc::new(TableScan::new(
                table,
                self.catalog.store().clone(),
                self.with_hidden,
            )) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.catalog.table(name).is_some()
    }
}
