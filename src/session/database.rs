//! The state one server shares between its connections.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};

use super::vars;
use crate::catalog::Catalog;
use crate::catalog::schema::{AugurSchema, CATALOG_NAME, SCHEMA_NAME};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{Models, OnnxConfig};
use crate::sql::SqlParser;
use crate::storage::Store;
use crate::stream::runtime::Runtime;
use crate::table::changelog::{self, ChangeLog};

/// Everything the sessions of one server share: storage, catalog, the DataFusion contexts
/// queries are planned in, and the lock that serialises writes.
pub struct Database {
    store: Store,
    catalog: Arc<Catalog>,
    /// Plans users' queries.
    ctx: SessionContext,
    /// Plans UPDATE and DELETE: tables show their hidden row ids here.
    dml_ctx: SessionContext,
    parser: SqlParser,
    /// Held while a statement writes, so that constraint checks and writes do not interleave,
    /// and while a view is created or dropped, so that its backfill sees every write before it
    /// and none after.
    write_lock: Arc<tokio::sync::Mutex<()>>,
    /// Where writes to tables that views read are logged.
    changelog: Arc<ChangeLog>,
    /// The dataflow keeping materialized views up to date.
    runtime: Runtime,
    /// The models PREDICT runs.
    models: Arc<Models>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("store", &self.store)
            .finish()
    }
}

impl Database {
    /// Opens the database in `config.data_dir`, creating it if needed, loads the catalog and
    /// starts the dataflow of every materialized view where its last commit left it.
    pub async fn open(config: &Config) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::Internal(format!(
                "cannot create data directory {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let store = Store::open(&config.data_dir, !config.no_fsync)?;
        let catalog = Arc::new(Catalog::load(store.clone())?);
        catalog
            .state_cache()
            .set_limit((config.state_cache_mb as usize).saturating_mul(1 << 20));
        let models = Arc::new(Models::load(
            store.clone(),
            OnnxConfig {
                library: config.onnxruntime.clone(),
                threads: usize::from(config.onnx_threads),
            },
        )?);
        let ctx = new_context(
            AugurSchema::new(catalog.clone(), SCHEMA_NAME),
            &models,
            catalog.sequences(),
        )?;
        let roles = Roles::of(config)?;
        datafusion_pg_catalog::setup_pg_catalog(&ctx, CATALOG_NAME, roles)
            .map_err(|e| Error::from(*e))?;
        crate::catalog::pg_functions::register(&ctx);
        crate::catalog::pg_builtins::register(&ctx);
        crate::catalog::pg_json::register(&ctx);
        crate::sql::operators::register(&ctx)?;
        let augur = ctx
            .catalog(CATALOG_NAME)
            .ok_or_else(|| Error::Internal("catalog augur missing".into()))?;
        if let Some(pg_catalog) = augur.schema("pg_catalog") {
            augur.register_schema(
                "pg_catalog",
                Arc::new(crate::catalog::pg_overlay::PgCatalogOverlay::new(
                    pg_catalog,
                    catalog.clone(),
                )),
            )?;
        }
        let dml_ctx = new_context(
            AugurSchema::with_hidden(catalog.clone(), SCHEMA_NAME),
            &models,
            catalog.sequences(),
        )?;
        crate::catalog::pg_functions::register(&dml_ctx);
        crate::catalog::pg_builtins::register(&dml_ctx);
        crate::catalog::pg_json::register(&dml_ctx);
        crate::sql::operators::register(&dml_ctx)?;
        for schema in catalog.schemas() {
            attach_schema(&ctx, &dml_ctx, &catalog, &schema)?;
        }
        let parser = SqlParser::new().with_functions(catalog.functions().clone());
        let sources = super::sources::recover(&catalog)?;
        let mut flows = super::views::recover(&catalog, &ctx).await?;
        let (sinks, sink_queries) = super::sinks::recover(&store, &catalog, &ctx).await?;
        flows.extend(sink_queries);
        let lookup_catalog = catalog.clone();
        let runtime = Runtime::start(
            store.clone(),
            Arc::new(move |id| lookup_catalog.relation_by_id(id)),
            flows,
            sources,
            sinks,
            crate::stream::runtime::Epochs {
                shortest: std::time::Duration::from_millis(config.min_epoch_ms),
                longest: std::time::Duration::from_millis(config.epoch_ms),
            },
        )?;
        let applied = runtime
            .progress()
            .applied_seq
            .load(std::sync::atomic::Ordering::SeqCst);
        let logged = changelog::last_logged(&store)?.unwrap_or(0);
        let changelog = Arc::new(ChangeLog::new(applied.max(logged) + 1));
        changelog.subscribe(runtime.subscriber());
        let progress = runtime.progress().clone();
        let system = crate::catalog::system::SystemSchema::new(
            catalog.clone(),
            models.clone(),
            Arc::new(move || {
                use std::sync::atomic::Ordering;
                (
                    progress.epoch.load(Ordering::SeqCst),
                    progress.committed_at_ms.load(Ordering::SeqCst),
                )
            }),
        );
        augur.register_schema(crate::catalog::system::SYSTEM_SCHEMA, Arc::new(system))?;
        augur.register_schema(
            crate::catalog::information_schema::INFORMATION_SCHEMA,
            Arc::new(crate::catalog::information_schema::InformationSchema::new(
                catalog.clone(),
                Arc::downgrade(&augur),
            )),
        )?;
        let db = Arc::new(Self {
            store,
            catalog,
            ctx,
            dml_ctx,
            parser,
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            changelog,
            runtime,
            models,
        });
        db.start_feeds()?;
        Ok(db)
    }

    /// Makes schema `name` (made by `CREATE SCHEMA`) visible to queries.
    pub(crate) fn attach_schema(&self, name: &str) -> Result<()> {
        attach_schema(&self.ctx, &self.dml_ctx, &self.catalog, name)
    }

    /// Removes schema `name` from queries' view (after `DROP SCHEMA`).
    pub(crate) fn detach_schema(&self, name: &str) -> Result<()> {
        for ctx in [&self.ctx, &self.dml_ctx] {
            if let Some(augur) = ctx.catalog(CATALOG_NAME) {
                augur.deregister_schema(name, true)?;
            }
        }
        Ok(())
    }

    /// Commits what the views have pending and stops their dataflow.
    pub async fn shutdown(&self) {
        if let Err(e) = self.runtime.stop().await {
            tracing::error!(error = %e, "stopping the dataflow");
        }
    }

    /// The dataflow runtime.
    pub(crate) fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The change log.
    pub(crate) fn changelog(&self) -> &Arc<ChangeLog> {
        &self.changelog
    }

    /// What a thread feeding a table from its connector needs.
    pub(crate) fn feeder(&self) -> super::ingest::Feeder {
        super::ingest::Feeder {
            store: self.store.clone(),
            catalog: self.catalog.clone(),
            write_lock: self.write_lock.clone(),
            changelog: self.changelog.clone(),
        }
    }

    /// Starts feeding every table that has a connector, from where its last write left it.
    fn start_feeds(&self) -> Result<()> {
        for name in self.catalog.table_names() {
            let Some(table) = self.catalog.table(&name) else {
                continue;
            };
            let Some(connector) = table.def().connector.clone() else {
                continue;
            };
            let source = super::ingest::open(&table, &connector)?;
            let splits = super::ingest::stored_splits(&self.store, table.def().id)?;
            super::ingest::start(
                self.feeder(),
                table,
                source,
                splits,
                Arc::new(crate::source::SourceProgress::default()),
            )?;
        }
        Ok(())
    }

    /// The change log, if a view reads table `table_id` (writes to other tables are not logged).
    pub(crate) fn log_for(&self, table_id: u32) -> Option<&ChangeLog> {
        self.catalog
            .is_logged(table_id)
            .then_some(self.changelog.as_ref())
    }

    /// The models.
    pub fn models(&self) -> &Arc<Models> {
        &self.models
    }

    /// The RocksDB store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The catalog of tables.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The context users' queries are planned and run in.
    pub fn ctx(&self) -> &SessionContext {
        &self.ctx
    }

    /// The context UPDATE and DELETE are planned in.
    pub(crate) fn dml_ctx(&self) -> &SessionContext {
        &self.dml_ctx
    }

    /// The SQL parser.
    pub fn parser(&self) -> &SqlParser {
        &self.parser
    }

    /// Serialises writers. Waits at most `lock_timeout` (none: as long as it takes), then
    /// fails with `55P03`.
    pub(crate) async fn write_guard(
        &self,
        lock_timeout: Option<std::time::Duration>,
    ) -> Result<tokio::sync::MutexGuard<'_, ()>> {
        match lock_timeout {
            None => Ok(self.write_lock.lock().await),
            Some(timeout) => tokio::time::timeout(timeout, self.write_lock.lock())
                .await
                .map_err(|_| super::limits::lock_timed_out()),
        }
    }
}

/// The roles `pg_roles` lists (psql's `\du`): the users of `--users-file`, and `augur`, the
/// name the server's own objects are owned by. Each may do anything: Augur has no privileges.
#[derive(Debug, Clone)]
struct Roles(Arc<Vec<String>>);

impl Roles {
    fn of(config: &Config) -> Result<Self> {
        let mut names = match &config.users_file {
            Some(path) => crate::server::Users::from_file(path)?.names(),
            None => vec![],
        };
        if !names.iter().any(|n| n == "augur") {
            names.insert(0, "augur".to_string());
        }
        Ok(Self(Arc::new(names)))
    }
}

#[async_trait::async_trait]
impl PgCatalogContextProvider for Roles {
    async fn roles(&self) -> Vec<String> {
        self.0.as_ref().clone()
    }

    async fn role(&self, name: &str) -> Option<Role> {
        self.0.iter().any(|n| n == name).then(|| Role {
            name: name.to_string(),
            is_superuser: true,
            can_login: true,
            can_create_db: true,
            can_create_role: true,
            can_create_user: true,
            can_replication: false,
            grants: vec![],
            inherited_roles: vec![],
        })
    }
}

/// Registers schema `name` of `catalog` in both contexts.
fn attach_schema(
    ctx: &SessionContext,
    dml_ctx: &SessionContext,
    catalog: &Arc<Catalog>,
    name: &str,
) -> Result<()> {
    for (ctx, schema) in [
        (ctx, AugurSchema::new(catalog.clone(), name)),
        (dml_ctx, AugurSchema::with_hidden(catalog.clone(), name)),
    ] {
        let augur = ctx
            .catalog(CATALOG_NAME)
            .ok_or_else(|| Error::Internal("catalog augur missing".into()))?;
        augur.register_schema(name, Arc::new(schema))?;
    }
    Ok(())
}

fn new_context(
    schema: AugurSchema,
    models: &Arc<Models>,
    sequences: &Arc<crate::catalog::sequence::Sequences>,
) -> Result<SessionContext> {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG_NAME, SCHEMA_NAME)
        .with_information_schema(false)
        .with_target_partitions(2);
    config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    // A subquery's ORDER BY is kept, as PostgreSQL keeps it: an outer LIMIT, or a window without
    // ORDER BY, takes the subquery's rows in its order.
    config
        .options_mut()
        .sql_parser
        .enable_subquery_sort_elimination = false;
    // `timestamptz` literals and `now()` are instants (typed with UTC); they are shown in the
    // session's TimeZone when written out.
    config.options_mut().execution.time_zone = Some("+00:00".into());
    // A rewrite DataFusion cannot finish (decorrelating a subquery it does not support) leaves
    // the plan as it was: correlated subqueries it leaves run per outer row (`apply`).
    config.options_mut().optimizer.skip_failed_rules = true;
    let mut rules = datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules;
    rules.push(Arc::new(crate::sql::checked::CheckedArithmetic));
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_physical_optimizer_rules(rules)
        .with_optimizer_rules(super::apply::optimizer_rules())
        .with_query_planner(Arc::new(super::apply::AugurQueryPlanner))
        .build();
    let ctx = SessionContext::new_with_state(state);
    let catalog = MemoryCatalogProvider::new();
    catalog.register_schema(SCHEMA_NAME, Arc::new(schema))?;
    ctx.register_catalog(CATALOG_NAME, Arc::new(catalog));
    let version = vars::version_string();
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                version.clone(),
            ))))
        }),
    ));
    crate::model::functions::register(&ctx, models);
    for function in crate::catalog::sequence_functions::functions(sequences) {
        ctx.register_udf(function);
    }
    crate::sql::windows::register_session_functions(&ctx);
    Ok(ctx)
}
