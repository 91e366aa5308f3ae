//! The catalog: every table's and view's definition, persisted in RocksDB and loaded on start.
//!
//! Entries live under `ct` (tables) and `cv` (views) + id (u32, big-endian) as JSON; the next
//! id under `mnext_table_id`. Tables and views share one namespace and one id counter.
//! Creating or dropping a table is one atomic write (dropping also deletes the table's rows in
//! the same batch); a materialized view's entry is committed by the dataflow together with its
//! first state. DataFusion sees the catalog through [`schema::AugurSchema`].

pub mod function;
pub mod information_schema;
pub mod ordered_set;
pub mod pg_bits;
pub mod pg_builtins;
pub mod pg_bytea;
pub mod pg_char;
pub mod pg_datetime;
pub mod pg_degrees;
pub mod pg_extract;
pub mod pg_frame_sum;
pub mod pg_functions;
pub mod pg_json;
pub mod pg_overlay;
pub mod pg_power;
pub mod pg_regexp;
pub mod pg_series;
pub mod pg_to_char;
pub mod pg_to_date;
pub mod pg_transition;
pub mod pg_variance;
pub mod schema;
pub mod sequence;
pub mod sequence_functions;
pub mod single_value;
pub mod system;
pub mod view;
pub mod window_exclude;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;

use crate::error::{Error, Result};
use crate::storage::{StorageError, Store, WriteBatch};
use crate::table::index::{Index, IndexDef};
use crate::table::watermark::WatermarkState;
use crate::table::{Table, TableDef};

const TABLE_PREFIX: &[u8] = b"ct";
const VIEW_PREFIX: &[u8] = b"cv";
const SOURCE_PREFIX: &[u8] = b"cs";
const SINK_PREFIX: &[u8] = b"ck";
const INDEX_PREFIX: &[u8] = b"ci";
const SCHEMA_PREFIX: &[u8] = b"cn";
const NEXT_TABLE_ID: &[u8] = b"mnext_table_id";

use view::{View, ViewDef};

use crate::source::SourceDef;
use crate::source::provider::SourceScan;

/// A source: its definition and its rows.
#[derive(Debug)]
pub struct SourceEntry {
    /// The stored definition.
    pub def: SourceDef,
    /// Its rows, as far as the views have read them.
    pub scan: Arc<SourceScan>,
}

/// A sink: its definition, how its delivery goes, and the delivery thread.
#[derive(Debug)]
pub struct SinkEntry {
    /// The stored definition.
    pub def: crate::sink::SinkDef,
    /// Records written, epochs waiting, the last error.
    pub progress: Arc<crate::sink::SinkProgress>,
    /// The thread delivering its outbox (none when its connector could not be opened).
    pub delivery: std::sync::Mutex<Option<crate::sink::Delivery>>,
    /// Rows of its own query whose expressions failed and got NULL.
    pub errors: Arc<crate::stream::ExprErrors>,
}

/// All tables and views, by name.
pub struct Catalog {
    store: Store,
    tables: RwLock<BTreeMap<String, Arc<Table>>>,
    views: RwLock<BTreeMap<String, Arc<View>>>,
    sources: RwLock<BTreeMap<String, Arc<SourceEntry>>>,
    sinks: RwLock<BTreeMap<String, Arc<SinkEntry>>>,
    /// Sequences (`CREATE SEQUENCE`, `SERIAL` and identity columns).
    sequences: Arc<sequence::Sequences>,
    /// Functions written in SQL (`CREATE FUNCTION`).
    functions: Arc<function::Functions>,
    /// Secondary indexes by name; each is also attached to the table it indexes.
    indexes: RwLock<BTreeMap<String, IndexDef>>,
    /// The schemas made by `CREATE SCHEMA` (`public` is always there).
    schemas: RwLock<BTreeSet<String>>,
    /// The connections' schemas of temporary relations (`pg_temp_N`), not stored.
    temp_schemas: RwLock<BTreeSet<String>>,
    /// Serialises id reservations.
    ids: std::sync::Mutex<()>,
    /// Plans DEFAULT expressions (built-in functions and the sequence functions).
    expr_state: SessionState,
    /// How far the connectors of tables fed by one have read, by table id.
    feeds: RwLock<BTreeMap<u32, Arc<crate::source::SourceProgress>>>,
    /// The memory the cached operator state of every view may take (`--state-cache-mb`).
    state_cache: Arc<crate::stream::state::CacheBudget>,
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
        let sequences = Arc::new(sequence::Sequences::load(store.clone())?);
        let defaults = SessionContext::new();
        for function in sequence_functions::functions(&sequences) {
            defaults.register_udf(function);
        }
        // Defaults may read text as uuid or jsonb and call gen_random_uuid().
        pg_builtins::register(&defaults);
        pg_json::register(&defaults);
        let catalog = Self {
            state_cache: crate::stream::state::CacheBudget::new(
                crate::stream::state::table::DEFAULT_CACHE_BYTES,
            ),
            store: store.clone(),
            tables: RwLock::new(BTreeMap::new()),
            views: RwLock::new(BTreeMap::new()),
            sources: RwLock::new(BTreeMap::new()),
            sinks: RwLock::new(BTreeMap::new()),
            sequences,
            functions: Arc::new(function::Functions::load(store.clone())?),
            indexes: RwLock::new(BTreeMap::new()),
            schemas: RwLock::new(BTreeSet::new()),
            temp_schemas: RwLock::new(BTreeSet::new()),
            ids: std::sync::Mutex::new(()),
            expr_state: defaults.state(),
            feeds: RwLock::new(BTreeMap::new()),
        };
        store.scan_prefix::<Error>(SCHEMA_PREFIX, |key, _| {
            let name = String::from_utf8_lossy(&key[SCHEMA_PREFIX.len()..]).into_owned();
            catalog.write_schemas().insert(name);
            Ok(true)
        })?;
        for def in stored::<TableDef>(&store, TABLE_PREFIX, "table")? {
            let next_row_id = store
                .get(&Table::row_id_counter_key(def.id))?
                .map(|v| decode_i64(&v))
                .transpose()?
                .unwrap_or(1);
            let ingested = store
                .get(&Table::ingested_key(def.id))?
                .map(|v| decode_i64(&v))
                .transpose()?
                .unwrap_or(0);
            let watermark = store
                .get(&Table::watermark_key(def.id))?
                .map(|v| WatermarkState::decode(&v))
                .transpose()?
                .unwrap_or_default();
            let table = catalog.build(def, next_row_id)?;
            table.set_ingested(ingested);
            table.set_watermark_state(watermark);
            catalog
                .write_tables()
                .insert(table.name().to_string(), Arc::new(table));
        }
        for def in stored::<IndexDef>(&store, INDEX_PREFIX, "index")? {
            if let Some(table) = catalog.table(&def.relation) {
                table.add_index(Arc::new(Index::new(def.clone(), table.full_schema())?));
            }
            catalog.write_indexes().insert(def.name.clone(), def);
        }
        // Temporary tables whose sessions ended with the previous run.
        let leftovers: Vec<String> = catalog
            .read_tables()
            .values()
            .filter(|t| t.def().temporary)
            .map(|t| t.name().to_string())
            .collect();
        for name in leftovers {
            catalog.drop_table(&name)?;
        }
        Ok(catalog)
    }

    fn write_schemas(&self) -> std::sync::RwLockWriteGuard<'_, BTreeSet<String>> {
        self.schemas.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The schemas made by `CREATE SCHEMA`, sorted.
    pub fn schemas(&self) -> Vec<String> {
        let schemas = self.schemas.read().unwrap_or_else(|e| e.into_inner());
        schemas.iter().cloned().collect()
    }

    /// Whether schema `name` holds users' relations: `public`, one `CREATE SCHEMA` made, or a
    /// connection's schema of temporary relations.
    pub fn has_schema(&self, name: &str) -> bool {
        name == schema::SCHEMA_NAME
            || self
                .temp_schemas
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(name)
            || self
                .schemas
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(name)
    }

    /// Refuses (`3F000`) a new relation whose key `key` names a schema that does not exist.
    pub fn check_schema(&self, key: &str) -> Result<()> {
        let (schema, _) = schema::split(key);
        if self.has_schema(schema) {
            Ok(())
        } else if schema::SYSTEM_SCHEMAS.contains(&schema) {
            Err(Error::coded(
                "42501",
                format!("permission denied to create \"{key}\": {schema} is a system schema"),
            ))
        } else {
            Err(Error::coded(
                "3F000",
                format!("schema \"{schema}\" does not exist"),
            ))
        }
    }

    /// Makes `name` (`pg_temp_N`) a schema for a connection's temporary relations: kept in
    /// memory only, as what it holds does not outlive the process. `false` when it is one
    /// already.
    pub fn add_temp_schema(&self, name: &str) -> bool {
        self.temp_schemas
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string())
    }

    /// Stores schema `name`; `false` when it exists already.
    pub fn create_schema(&self, name: &str) -> Result<bool> {
        let mut schemas = self.write_schemas();
        if name == schema::SCHEMA_NAME || schemas.contains(name) {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.put(schema_key(name), b"");
        self.store.write(batch)?;
        schemas.insert(name.to_string());
        Ok(true)
    }

    /// Deletes schema `name`'s entry (the caller has dropped what it held).
    pub fn drop_schema(&self, name: &str) -> Result<()> {
        let mut schemas = self.write_schemas();
        let mut batch = WriteBatch::default();
        batch.delete(schema_key(name));
        self.store.write(batch)?;
        schemas.remove(name);
        Ok(())
    }

    /// The keys of the tables, views, sources and sequences in schema `name`, sorted.
    pub fn relations_in(&self, name: &str) -> Vec<String> {
        let mut keys = self.relation_names();
        keys.extend(self.sequences.names());
        keys.retain(|key| schema::split(key).0 == name);
        keys.sort();
        keys
    }

    fn read_indexes(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, IndexDef>> {
        self.indexes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_indexes(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, IndexDef>> {
        self.indexes.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Every secondary index, by name.
    pub fn indexes(&self) -> Vec<IndexDef> {
        self.read_indexes().values().cloned().collect()
    }

    /// The secondary index called `name`.
    pub fn index(&self, name: &str) -> Option<IndexDef> {
        self.read_indexes().get(name).cloned()
    }

    /// Creates index `def` on `table` (its id is assigned here): `build` adds the entries of
    /// the rows already stored to the batch that stores the definition. With `if_not_exists`,
    /// an existing relation of that name is left alone and `false` is returned.
    pub fn create_index(
        &self,
        table: &Arc<Table>,
        mut def: IndexDef,
        if_not_exists: bool,
        build: impl FnOnce(&Index, &mut WriteBatch) -> Result<()>,
    ) -> Result<bool> {
        let tables = self.write_tables();
        // ALTER TABLE or DROP TABLE may have replaced the table since the caller took it.
        table.check_current()?;
        if self.taken(&tables, &def.name) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(Error::DuplicateTable(def.name))
            };
        }
        def.id = self.reserve_id()?;
        let index = Index::new(def.clone(), table.full_schema())?;
        let mut batch = WriteBatch::default();
        build(&index, &mut batch)?;
        batch.put(
            entry_key(INDEX_PREFIX, def.id),
            serde_json::to_vec(&def).map_err(json_err)?,
        );
        self.store.write(batch)?;
        table.add_index(Arc::new(index));
        self.write_indexes().insert(def.name.clone(), def);
        Ok(true)
    }

    /// Drops index `name` and its entries; `false` when there is none.
    pub fn drop_index(&self, name: &str) -> Result<bool> {
        let tables = self.write_tables();
        let Some(def) = self.index(name) else {
            return Ok(false);
        };
        let mut batch = WriteBatch::default();
        self.drop_index_in(&mut batch, &def);
        self.store.write(batch)?;
        if let Some(table) = tables.get(&def.relation) {
            table.remove_index(def.id);
        }
        if let Some(storage) = self.view(&def.relation).and_then(|v| v.storage().cloned()) {
            storage.remove_index(def.id);
        }
        self.write_indexes().remove(&def.name);
        Ok(true)
    }

    fn drop_index_in(&self, batch: &mut WriteBatch, def: &IndexDef) {
        batch.delete(entry_key(INDEX_PREFIX, def.id));
        self.store.delete_prefix_in(batch, &def.key_prefix());
    }

    /// The catalog key of index `id`'s definition.
    pub fn index_entry_key(id: u32) -> Vec<u8> {
        entry_key(INDEX_PREFIX, id)
    }

    /// Forgets an index whose definition and entries were deleted by the caller.
    pub fn forget_index(&self, def: &IndexDef) {
        self.write_indexes().remove(&def.name);
    }

    /// The indexes on relation `name`.
    /// The indexes `UNIQUE` constraints of relation `name` made, oldest first.
    pub fn unique_constraints_on(&self, name: &str) -> Vec<IndexDef> {
        let mut unique: Vec<IndexDef> = self
            .indexes_on(name)
            .into_iter()
            .filter(|i| i.constraint)
            .collect();
        unique.sort_by_key(|i| i.id);
        unique
    }

    pub fn indexes_on(&self, name: &str) -> Vec<IndexDef> {
        self.read_indexes()
            .values()
            .filter(|d| d.relation == name)
            .cloned()
            .collect()
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

    /// The memory budget of the views' cached operator state (`--state-cache-mb`).
    pub fn state_cache(&self) -> &Arc<crate::stream::state::CacheBudget> {
        &self.state_cache
    }

    /// The store every table, view and the catalog itself live in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stored view definitions, in id order (the order they can be rebuilt in: a view only
    /// reads relations older than itself).
    pub fn stored_views(&self) -> Result<Vec<ViewDef>> {
        stored(&self.store, VIEW_PREFIX, "view")
    }

    /// Hands out a new table or view id.
    pub fn reserve_id(&self) -> Result<u32> {
        let _guard = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let id = self
            .store
            .get(NEXT_TABLE_ID)?
            .map(|v| decode_i64(&v))
            .transpose()?
            .unwrap_or(1);
        let mut batch = WriteBatch::default();
        batch.put(NEXT_TABLE_ID, (id + 1).to_be_bytes());
        self.store.write(batch)?;
        u32::try_from(id).map_err(|_| Error::Internal("table ids exhausted".into()))
    }

    fn read_views(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<View>>> {
        self.views.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_views(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<View>>> {
        self.views.write().unwrap_or_else(|e| e.into_inner())
    }

    /// True when a table, view, source or sequence is called `name`.
    pub fn exists(&self, name: &str) -> bool {
        self.taken(&self.read_tables(), name)
    }

    /// [`Catalog::exists`] for a caller that holds the tables' lock.
    fn taken(&self, tables: &BTreeMap<String, Arc<Table>>, name: &str) -> bool {
        tables.contains_key(name)
            || self.read_views().contains_key(name)
            || self.read_sources().contains_key(name)
            || self.sequences.get(name).is_some()
            || self.read_indexes().contains_key(name)
    }

    /// The functions written in SQL.
    pub fn functions(&self) -> &Arc<function::Functions> {
        &self.functions
    }

    /// The sequences.
    pub fn sequences(&self) -> &Arc<sequence::Sequences> {
        &self.sequences
    }

    /// Creates a sequence (its id is assigned here). With `if_not_exists`, an existing relation
    /// of that name is left alone and `false` is returned.
    pub fn create_sequence(
        &self,
        mut def: sequence::SequenceDef,
        if_not_exists: bool,
    ) -> Result<bool> {
        self.check_schema(&def.name)?;
        let tables = self.write_tables();
        if self.taken(&tables, &def.name) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(Error::DuplicateTable(def.name))
            };
        }
        def.id = self.reserve_id()?;
        let mut batch = WriteBatch::default();
        let sequence = self.sequences.create_in(&mut batch, def)?;
        self.store.write(batch)?;
        self.sequences.insert(sequence);
        Ok(true)
    }

    /// Drops sequence `name`; `false` when there is none. A sequence a column's default uses is
    /// dropped with its table, not alone (`2BP01`).
    pub fn drop_sequence(&self, name: &str) -> Result<bool> {
        let tables = self.write_tables();
        let Some(sequence) = self.sequences.get(name) else {
            return Ok(false);
        };
        if let Some((table, column)) = &sequence.def().owned_by
            && tables.contains_key(table.as_str())
        {
            return Err(Error::DependentObjects {
                message: format!("cannot drop sequence {name} because other objects depend on it"),
                detail: format!(
                    "default value for column {column} of table {table} depends on sequence {name}"
                ),
            });
        }
        let mut batch = WriteBatch::default();
        self.sequences.drop_in(&mut batch, &sequence);
        self.store.write(batch)?;
        self.sequences.remove(name);
        Ok(true)
    }

    fn read_sources(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<SourceEntry>>> {
        self.sources.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Stored source definitions, in id order.
    pub fn stored_sources(&self) -> Result<Vec<SourceDef>> {
        stored(&self.store, SOURCE_PREFIX, "source")
    }

    /// The catalog entry of a source: its key and value.
    pub fn source_entry(def: &SourceDef) -> Result<(Vec<u8>, Vec<u8>)> {
        Ok((
            source_key(def.id),
            serde_json::to_vec(def).map_err(json_err)?,
        ))
    }

    /// The storage key of source `id`'s catalog entry.
    pub fn source_entry_key(id: u32) -> Vec<u8> {
        source_key(id)
    }

    /// Adds a source whose entry is stored.
    pub fn insert_source(&self, entry: SourceEntry) -> Arc<SourceEntry> {
        let entry = Arc::new(entry);
        self.sources
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.def.name.clone(), entry.clone());
        entry
    }

    /// Forgets a source (its entry is deleted by the caller).
    pub fn remove_source(&self, name: &str) {
        self.sources
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// The source called `name`.
    pub fn source(&self, name: &str) -> Option<Arc<SourceEntry>> {
        self.read_sources().get(name).cloned()
    }

    /// All sources, in id order.
    pub fn sources(&self) -> Vec<Arc<SourceEntry>> {
        let mut sources: Vec<_> = self.read_sources().values().cloned().collect();
        sources.sort_by_key(|s| s.def.id);
        sources
    }

    /// Stored sink definitions, in id order.
    pub fn stored_sinks(&self) -> Result<Vec<crate::sink::SinkDef>> {
        stored(&self.store, SINK_PREFIX, "sink")
    }

    /// The catalog entry of a sink: its key and value.
    pub fn sink_entry(def: &crate::sink::SinkDef) -> Result<(Vec<u8>, Vec<u8>)> {
        Ok((
            entry_key(SINK_PREFIX, def.id),
            serde_json::to_vec(def).map_err(json_err)?,
        ))
    }

    /// The storage key of sink `id`'s catalog entry.
    pub fn sink_entry_key(id: u32) -> Vec<u8> {
        entry_key(SINK_PREFIX, id)
    }

    /// Adds a sink whose entry is stored.
    pub fn insert_sink(&self, entry: SinkEntry) -> Arc<SinkEntry> {
        let entry = Arc::new(entry);
        self.sinks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.def.name.clone(), entry.clone());
        entry
    }

    /// Forgets a sink (its entry is deleted by the caller).
    pub fn remove_sink(&self, name: &str) -> Option<Arc<SinkEntry>> {
        self.sinks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
    }

    /// The sink called `name`.
    pub fn sink(&self, name: &str) -> Option<Arc<SinkEntry>> {
        self.sinks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// All sinks, in id order.
    pub fn sinks(&self) -> Vec<Arc<SinkEntry>> {
        let mut sinks: Vec<_> = self
            .sinks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        sinks.sort_by_key(|s| s.def.id);
        sinks
    }

    /// Whether writes to table `id` go into the change log: while a view reads it, and always
    /// for a table with a watermark (the dataflow keeps its watermark for the views created
    /// later).
    pub fn is_logged(&self, id: u32) -> bool {
        self.has_dependents(id)
            || self
                .relation_by_id(id)
                .is_some_and(|t| t.watermark().is_some())
    }

    /// Records how far the connector feeding table `id` has read.
    pub fn set_feed(&self, id: u32, progress: Arc<crate::source::SourceProgress>) {
        self.feeds
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, progress);
    }

    /// How far the connector feeding table `id` has read, if one does.
    pub fn feed(&self, id: u32) -> Option<Arc<crate::source::SourceProgress>> {
        self.feeds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// The table called `name` for a statement that writes (`action`: "insert into", "update",
    /// "delete from", "truncate", "copy to"). A view or source of that name is named as what it is
    /// (`42809`, as PostgreSQL does for a materialized view); nothing of that name is `42P01`.
    pub fn table_to_write(&self, name: &str, action: &str) -> Result<Arc<Table>> {
        if let Some(table) = self.table(name) {
            if let Some(connector) = &table.def().connector {
                // Its topic owns its rows.
                let from = connector
                    .options
                    .get("connector")
                    .cloned()
                    .unwrap_or_default();
                return Err(Error::coded(
                    "42809",
                    format!(
                        "cannot {action} table \"{name}\": its rows come from its '{from}' \
                         connector"
                    ),
                ));
            }
            return Ok(table);
        }
        let what = match self.view(name) {
            Some(view) if view.def().materialized => "materialized view",
            Some(_) => "view",
            None if self.source(name).is_some() => "source",
            None => return Err(Error::UndefinedTable(name.to_string())),
        };
        Err(Error::coded(
            "42809",
            format!("cannot {action} {what} \"{name}\": only tables can be written"),
        ))
    }

    /// The view called `name`, if there is one.
    pub fn view(&self, name: &str) -> Option<Arc<View>> {
        self.read_views().get(name).cloned()
    }

    /// All views, in id order.
    pub fn views(&self) -> Vec<Arc<View>> {
        let mut views: Vec<_> = self.read_views().values().cloned().collect();
        views.sort_by_key(|v| v.def().id);
        views
    }

    /// The catalog entry of a view: its key and value.
    pub fn view_entry(def: &ViewDef) -> Result<(Vec<u8>, Vec<u8>)> {
        Ok((view_key(def.id), serde_json::to_vec(def).map_err(json_err)?))
    }

    /// The storage key of view `id`'s catalog entry.
    pub fn view_entry_key(id: u32) -> Vec<u8> {
        view_key(id)
    }

    /// Adds a view whose entry is already stored (or stored by the caller), with the indexes
    /// stored for it.
    pub fn insert_view(&self, view: View) -> Arc<View> {
        if let Some(storage) = view.storage() {
            for def in self.indexes_on(view.name()) {
                match Index::new(def.clone(), storage.full_schema()) {
                    Ok(index) => storage.add_index(Arc::new(index)),
                    Err(e) => tracing::error!(index = def.name, "cannot load index: {e}"),
                }
            }
        }
        let view = Arc::new(view);
        self.write_views()
            .insert(view.name().to_string(), view.clone());
        view
    }

    /// Stores and adds a plain view.
    pub fn create_plain_view(&self, view: View) -> Result<Arc<View>> {
        let (key, value) = Self::view_entry(view.def())?;
        let mut batch = WriteBatch::default();
        batch.put(key, value);
        self.store.write(batch)?;
        Ok(self.insert_view(view))
    }

    /// Forgets a view (its entry is deleted by the caller).
    pub fn remove_view(&self, name: &str) {
        self.write_views().remove(name);
    }

    /// Replaces plain view `old` with `view` (same name) in one write.
    pub fn replace_plain_view(&self, old: &View, view: View) -> Result<Arc<View>> {
        let (key, value) = Self::view_entry(view.def())?;
        let mut batch = WriteBatch::default();
        batch.delete(view_key(old.def().id));
        batch.put(key, value);
        self.store.write(batch)?;
        Ok(self.insert_view(view))
    }

    /// Deletes the stored entry of view `id` (a temporary view left by the previous run).
    pub fn delete_view_entry(&self, id: u32) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete(view_key(id));
        self.store.write(batch)?;
        Ok(())
    }

    /// Deletes a plain view's entry and forgets it.
    pub fn drop_plain_view(&self, name: &str) -> Result<()> {
        if let Some(view) = self.view(name) {
            let mut batch = WriteBatch::default();
            batch.delete(view_key(view.def().id));
            self.store.write(batch)?;
            self.remove_view(name);
        }
        Ok(())
    }

    /// Whether some view, or some sink's own query, reads relation `id` directly.
    pub fn has_dependents(&self, id: u32) -> bool {
        self.read_views()
            .values()
            .any(|v| v.def().depends_on.contains(&id))
            || self
                .sinks
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .any(|s| s.def.depends_on.contains(&id))
    }

    /// The sinks whose own queries read relation `id` directly.
    pub fn query_sinks_reading(&self, id: u32) -> Vec<Arc<SinkEntry>> {
        self.sinks()
            .into_iter()
            .filter(|s| s.def.depends_on.contains(&id))
            .collect()
    }

    /// The views that read relation `id` directly.
    pub fn dependents(&self, id: u32) -> Vec<Arc<View>> {
        self.views()
            .into_iter()
            .filter(|v| v.def().depends_on.contains(&id))
            .collect()
    }

    /// The views that call model `name` directly.
    pub fn model_dependents(&self, name: &str) -> Vec<Arc<View>> {
        self.views()
            .into_iter()
            .filter(|v| v.def().models.iter().any(|m| m == name))
            .collect()
    }

    /// The sinks whose own queries call model `name`.
    pub fn model_sinks(&self, name: &str) -> Vec<Arc<SinkEntry>> {
        self.sinks()
            .into_iter()
            .filter(|s| s.def.models.iter().any(|m| m == name))
            .collect()
    }

    /// The table, or the storage of the materialized view, with id `id`.
    pub fn relation_by_id(&self, id: u32) -> Option<Arc<Table>> {
        if let Some(table) = self.read_tables().values().find(|t| t.def().id == id) {
            return Some(table.clone());
        }
        self.read_views()
            .values()
            .find(|v| v.def().id == id)
            .and_then(|v| v.storage().cloned())
    }

    /// The id and name of relation `name` (a table or a view).
    pub fn relation_id(&self, name: &str) -> Option<u32> {
        if let Some(table) = self.table(name) {
            return Some(table.def().id);
        }
        if let Some(source) = self.source(name) {
            return Some(source.def.id);
        }
        self.view(name).map(|v| v.def().id)
    }

    /// The table called `name`, if there is one.
    pub fn table(&self, name: &str) -> Option<Arc<Table>> {
        self.read_tables().get(name).cloned()
    }

    /// Names of all tables, sorted.
    pub fn table_names(&self) -> Vec<String> {
        self.read_tables().keys().cloned().collect()
    }

    /// Names of all tables and views, sorted.
    pub fn relation_names(&self) -> Vec<String> {
        let mut names = self.table_names();
        names.extend(self.read_views().keys().cloned());
        names.extend(self.read_sources().keys().cloned());
        names.sort();
        names
    }

    /// Creates a table from `def` (its `id` is assigned here). With `if_not_exists`, an existing
    /// table of that name is left alone and `None` is returned.
    /// `sequences` are created with it, in the same write; one whose name is taken gets a digit
    /// appended, as in PostgreSQL, and the column default that uses it follows.
    pub fn create_table(
        &self,
        mut def: TableDef,
        if_not_exists: bool,
        sequences: Vec<sequence::SequenceDef>,
        unique: Vec<(String, Vec<usize>)>,
    ) -> Result<Option<Arc<Table>>> {
        self.check_schema(&def.name)?;
        if def.temporary && !schema::is_temp_schema(schema::split(&def.name).0) {
            return Err(Error::coded(
                "42P16",
                "cannot create temporary relation in non-temporary schema",
            ));
        }
        if self.view(&def.name).is_some()
            || self.source(&def.name).is_some()
            || self.sequences.get(&def.name).is_some()
        {
            return if if_not_exists {
                Ok(None)
            } else {
                Err(Error::DuplicateTable(def.name))
            };
        }
        let mut tables = self.write_tables();
        if tables.contains_key(&def.name) {
            return if if_not_exists {
                Ok(None)
            } else {
                Err(Error::DuplicateTable(def.name))
            };
        }
        def.id = self.reserve_id()?;
        let mut batch = WriteBatch::default();
        let mut created = Vec::new();
        for mut sequence in sequences {
            let wanted = sequence.name.clone();
            let mut suffix = 0;
            while sequence.name == def.name || self.taken(&tables, &sequence.name) {
                suffix += 1;
                sequence.name = format!("{wanted}{suffix}");
            }
            if sequence.name != wanted
                && let Some((_, column)) = &sequence.owned_by
                && let Some(c) = def.columns.iter_mut().find(|c| &c.name == column)
            {
                c.default = Some(sequence::nextval_default(&sequence.name));
            }
            sequence.id = self.reserve_id()?;
            created.push(self.sequences.create_in(&mut batch, sequence)?);
        }
        let table = Arc::new(self.build(def, 1)?);
        batch.put(
            table_key(table.def().id),
            serde_json::to_vec(table.def()).map_err(json_err)?,
        );
        // UNIQUE constraints: unique indexes written with the table (which has no rows yet).
        let mut indexes = Vec::with_capacity(unique.len());
        for (name, columns) in unique {
            if self.taken(&tables, &name)
                || name == table.name()
                || indexes.iter().any(|i: &Index| i.def().name == name)
            {
                return Err(Error::DuplicateTable(name));
            }
            let index_def = IndexDef {
                id: self.reserve_id()?,
                name,
                relation: table.name().to_string(),
                columns,
                unique: true,
                constraint: true,
            };
            batch.put(
                entry_key(INDEX_PREFIX, index_def.id),
                serde_json::to_vec(&index_def).map_err(json_err)?,
            );
            indexes.push(Index::new(index_def, table.full_schema())?);
        }
        self.store.write(batch)?;
        for sequence in created {
            self.sequences.insert(sequence);
        }
        for index in indexes {
            self.write_indexes()
                .insert(index.def().name.clone(), index.def().clone());
            table.add_index(Arc::new(index));
        }
        tables.insert(table.name().to_string(), table.clone());
        Ok(Some(table))
    }

    /// Replaces table `old` by one of definition `def` (same id, perhaps another name), in one
    /// atomic batch: `fill` writes the rows of the new layout (over the old rows, whose keys
    /// they keep), `indexes` are the new definitions of the indexes kept (their entries stay),
    /// `dropped_indexes` go with their entries, and `sequences` are the owned sequences with
    /// their new owners (`None` drops one). Returns the new table.
    pub fn replace_table(
        &self,
        old: &Arc<Table>,
        def: TableDef,
        change: TableChange,
        fill: impl FnOnce(&Table, &mut WriteBatch) -> Result<()>,
    ) -> Result<Arc<Table>> {
        let mut tables = self.write_tables();
        let old_name = old.name().to_string();
        if def.name != old_name && self.taken(&tables, &def.name) {
            return Err(Error::DuplicateTable(def.name));
        }
        let table = Arc::new(self.build(def, old.next_row_id())?);
        table.set_ingested(old.ingested());
        table.set_watermark_state(old.watermark_state());
        let mut batch = WriteBatch::default();
        fill(&table, &mut batch)?;
        batch.put(
            table_key(table.def().id),
            serde_json::to_vec(table.def()).map_err(json_err)?,
        );
        for index in &change.dropped_indexes {
            self.drop_index_in(&mut batch, index);
        }
        let mut kept = Vec::with_capacity(change.indexes.len());
        for index in &change.indexes {
            batch.put(
                entry_key(INDEX_PREFIX, index.id),
                serde_json::to_vec(index).map_err(json_err)?,
            );
            kept.push(Arc::new(Index::new(index.clone(), table.full_schema())?));
        }
        let mut reowned = Vec::new();
        let mut dropped_sequences = Vec::new();
        for (sequence, owner) in change.sequences {
            match owner {
                Some(owner) => reowned.push(self.sequences.reown_in(
                    &mut batch,
                    &sequence,
                    Some(owner),
                )?),
                None => {
                    self.sequences.drop_in(&mut batch, &sequence);
                    dropped_sequences.push(sequence.def().name.clone());
                }
            }
        }
        // Retired before the new layout is written, so that no reader holding the old table
        // decodes the new rows; current again if the write fails.
        old.retire(crate::table::ALTERED);
        if let Err(e) = self.store.write(batch) {
            old.retire(crate::table::CURRENT);
            return Err(e.into());
        }
        for index in kept {
            table.add_index(index);
        }
        {
            let mut index_defs = self.write_indexes();
            for index in &change.dropped_indexes {
                index_defs.remove(&index.name);
            }
            for index in change.indexes {
                index_defs.insert(index.name.clone(), index);
            }
        }
        for sequence in reowned {
            self.sequences.insert(sequence);
        }
        for name in dropped_sequences {
            self.sequences.remove(&name);
        }
        tables.remove(&old_name);
        tables.insert(table.name().to_string(), table.clone());
        Ok(table)
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
        batch.delete(Table::ingested_key(def.id));
        batch.delete(Table::watermark_key(def.id));
        if def.connector.is_some() {
            batch.delete(Table::feed_key(def.id));
            self.store
                .delete_prefix_in(&mut batch, &crate::stream::runtime::rejected_prefix(def.id));
        }
        self.store.delete_prefix_in(&mut batch, &def.key_prefix());
        let owned = self.sequences.owned_by(name);
        for sequence in &owned {
            self.sequences.drop_in(&mut batch, sequence);
        }
        let indexes = self.indexes_on(name);
        for index in &indexes {
            self.drop_index_in(&mut batch, index);
        }
        self.store.write(batch)?;
        for sequence in owned {
            self.sequences.remove(&sequence.def().name);
        }
        for index in &indexes {
            table.remove_index(index.id);
            self.write_indexes().remove(&index.name);
        }
        table.retire(crate::table::DROPPED);
        tables.remove(name);
        self.feeds
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&def.id);
        Ok(true)
    }
}

/// The table and column a sequence belongs to.
pub type SequenceOwner = (String, String);

/// What else changes with a table in [`Catalog::replace_table`].
#[derive(Default)]
pub struct TableChange {
    /// The new definitions of the indexes kept.
    pub indexes: Vec<IndexDef>,
    /// Indexes dropped with the change.
    pub dropped_indexes: Vec<IndexDef>,
    /// Owned sequences and their new owners (`None`: dropped).
    pub sequences: Vec<(Arc<sequence::Sequence>, Option<SequenceOwner>)>,
}

/// Every stored definition of one kind (`prefix`), in id order.
fn stored<T: serde::de::DeserializeOwned>(
    store: &Store,
    prefix: &[u8],
    kind: &str,
) -> Result<Vec<T>> {
    let mut defs = Vec::new();
    store.scan_prefix::<Error>(prefix, |_, value| {
        let def = serde_json::from_slice(value)
            .map_err(|e| StorageError::Corrupt(format!("{kind} definition: {e}")))?;
        defs.push(def);
        Ok(true)
    })?;
    Ok(defs)
}

/// The catalog key of an entry: its kind's prefix and its id.
fn entry_key(prefix: &[u8], id: u32) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn schema_key(name: &str) -> Vec<u8> {
    let mut key = SCHEMA_PREFIX.to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

fn source_key(id: u32) -> Vec<u8> {
    entry_key(SOURCE_PREFIX, id)
}

fn view_key(id: u32) -> Vec<u8> {
    entry_key(VIEW_PREFIX, id)
}

fn table_key(id: u32) -> Vec<u8> {
    entry_key(TABLE_PREFIX, id)
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
