//! The catalog: every table's definition, persisted in RocksDB and loaded on start.
//!
//! Entries live under `ct` + table id (u32, big-endian) as JSON; the next id under
//! `mnext_table_id`. Creating or dropping a table is one atomic write (dropping also deletes the
//! table's rows in the same batch). DataFusion sees the catalog through [`schema::AugurSchema`].

pub mod pg_functions;
pub mod pg_overlay;
pub mod schema;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;

use crate::error::{Error, Result};
use crate::storage::{StorageError, Store, WriteBatch};
use crate::table::{Table, TableDef};

const TABLE_PREFIX: &[u8] = b"ct";
const NEXT_TABLE_ID: &[u8] = b"mnext_table_id";

/// All tables, by name.
pub struct Catalog {
    store: Store,
    tables: RwLock<BTreeMap<String, Arc<Table>>>,
    /// Plans DEFAULT expressions (built-in functions only).
    expr_state: SessionState,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("tables", &self.table_names())
            .finish()
    }
}

impl Catalog {
    /// Loads every table definition from `store`.
    pub fn load(store: Store) -> Result<Self> {
        let catalog = Self {
            store: store.clone(),
            tables: RwLock::new(BTreeMap::new()),
            expr_state: SessionContext::new().state(),
        };
        let mut defs = Vec::new();
        store.scan_prefix::<Error>(TABLE_PREFIX, |_, value| {
            let def: TableDef = serde_json::from_slice(value)
                .map_err(|e| StorageError::Corrupt(format!("table definition: {e}")))?;
            defs.push(def);
            Ok(true)
        })?;
        for def in defs {
            let next_row_id = store
                .get(&Table::row_id_counter_key(def.id))?
                .map(|v| decode_i64(&v))
                .transpose()?
                .unwrap_or(1);
            let table = catalog.build(def, next_row_id)?;
            catalog
                .write_tables()
                .insert(table.name().to_string(), Arc::new(table));
        }
        Ok(catalog)
    }

    fn build(&self, def: TableDef, next_row_id: i64) -> Result<Table> {
        Table::new(def, next_row_id, |sql| self.parse_default(sql))
    }

    /// Plans a DEFAULT expression.
    pub fn parse_default(&self, sql: &str) -> Result<Expr> {
        Ok(self
            .expr_state
            .create_logical_expr(sql, &DFSchema::empty())?)
    }

    fn read_tables(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Table>>> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_tables(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Table>>> {
        self.tables.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The store the catalog and the tables live in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The table called `name`, if there is one.
    pub fn table(&self, name: &str) -> Option<Arc<Table>> {
        self.read_tables().get(name).cloned()
    }

    /// Names of all tables, sorted.
    pub fn table_names(&self) -> Vec<String> {
        self.read_tables().keys().cloned().collect()
    }

    /// Creates a table from `def` (its `id` is assigned here). With `if_not_exists`, an existing
    /// table of that name is left alone and `None` is returned.
    pub fn create_table(
        &self,
        mut def: TableDef,
        if_not_exists: bool,
    ) -> Result<Option<Arc<Table>>> {
        let mut tables = self.write_tables();
        if tables.contains_key(&def.name) {
            return if if_not_exists {
                Ok(None)
            } else {
                Err(Error::DuplicateTable(def.name))
            };
        }
        let id = self
            .store
            .get(NEXT_TABLE_ID)?
            .map(|v| decode_i64(&v))
            .transpose()?
            .unwrap_or(1);
        def.id = u32::try_from(id).map_err(|_| Error::Internal("table ids exhausted".into()))?;
        let table = Arc::new(self.build(def, 1)?);
        let mut batch = WriteBatch::default();
        batch.put(
            table_key(table.def().id),
            serde_json::to_vec(table.def()).map_err(json_err)?,
        );
        batch.put(NEXT_TABLE_ID, (id + 1).to_be_bytes());
        self.store.write(batch)?;
        tables.insert(table.name().to_string(), table.clone());
        Ok(Some(table))
    }

    /// Drops the table called `name` and deletes its rows. Returns false when there is no such
    /// table.
    pub fn drop_table(&self, name: &str) -> Result<bool> {
        let mut tables = self.write_tables();
        let Some(table) = tables.get(name).cloned() else {
            return Ok(false);
        };
        let def = table.def();
        let mut batch = WriteBatch::default();
        batch.delete(table_key(def.id));
        batch.delete(Table::row_id_counter_key(def.id));
        self.store.delete_prefix_in(&mut batch, &def.key_prefix());
        self.store.write(batch)?;
        tables.remove(name);
        Ok(true)
    }
}

fn table_key(id: u32) -> Vec<u8> {
    let mut key = TABLE_PREFIX.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn decode_i64(bytes: &[u8]) -> Result<i64> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StorageError::Corrupt(format!("counter of {} bytes", bytes.len())))?;
    Ok(i64::from_be_bytes(array))
}

fn json_err(e: serde_json::Error) -> Error {
    Error::Internal(format!("encoding a catalog entry: {e}"))
}
