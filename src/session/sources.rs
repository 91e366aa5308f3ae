//! CREATE SOURCE, SHOW SOURCES, and the reopening of every source when the server starts.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};

use super::{Output, Session};
use crate::catalog::{Catalog, SourceEntry};
use crate::common::types;
use crate::error::{Error, Result};
use crate::source::provider::SourceScan;
use crate::source::{self, SourceDef, SourceProgress, SourceWatermark};
use crate::sql::{CreateSource, normalize_ident};
use crate::stream::runtime::SourceFlow;
use crate::table::ColumnDef;
use crate::table::watermark::WatermarkRule;

/// The Arrow schema of a source's columns.
fn schema_of(columns: &[ColumnDef]) -> Result<SchemaRef> {
    let fields = columns
        .iter()
        .map(|c| {
            let data_type = c.data_type.parse().map_err(|e| {
                Error::Internal(format!("stored type {} of {}: {e}", c.data_type, c.name))
            })?;
            Ok(Field::new(&c.name, data_type, true))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// Opens a stored source: its catalog entry and its flow for the runtime.
pub(super) fn open(
    def: SourceDef,
    store: &crate::storage::Store,
) -> Result<(SourceEntry, SourceFlow)> {
    let schema = schema_of(&def.columns)?;
    let watermark = def
        .watermark
        .as_ref()
        .map(|w| -> Result<_> {
            Ok(Arc::new(SourceWatermark {
                watermark: WatermarkRule::compile(w, &schema)?,
            }))
        })
        .transpose()?;
    let rows = source::open(&def, schema, store)?;
    let progress = Arc::new(SourceProgress::default());
    let scan = Arc::new(SourceScan {
        id: def.id,
        name: def.name.clone(),
        source: rows.clone(),
        progress: progress.clone(),
        watermark: watermark.clone(),
    });
    let flow = SourceFlow {
        id: def.id,
        name: def.name.clone(),
        source: rows,
        progress,
        watermark,
        rejected_retention: source::rejected_retention(&def.options)?,
    };
    Ok((SourceEntry { def, scan }, flow))
}

/// Reopens every stored source into the catalog; returns their flows for the runtime.
pub(super) fn recover(catalog: &Catalog) -> Result<Vec<SourceFlow>> {
    let mut flows = Vec::new();
    for def in catalog.stored_sources()? {
        let (entry, flow) = open(def, catalog.store())?;
        catalog.insert_source(entry);
        flows.push(flow);
    }
    Ok(flows)
}

impl Session<'_> {
    pub(super) async fn create_source(&mut self, create: &CreateSource) -> Result<Output> {
        let _guard = self.write_guard().await?;
        let catalog = self.db.catalog();
        catalog.check_schema(&create.name)?;
        if catalog.exists(&create.name) {
            if create.if_not_exists {
                self.notice(
                    "42P07",
                    format!("relation \"{}\" already exists, skipping", create.name),
                );
                return Ok(Output::Command("CREATE SOURCE".into()));
            }
            return Err(Error::DuplicateTable(create.name.clone()));
        }
        let mut columns: Vec<ColumnDef> = Vec::with_capacity(create.columns.len());
        for column in &create.columns {
            let name = normalize_ident(&column.name);
            if columns.iter().any(|c| c.name == name) {
                return Err(Error::coded(
                    "42701",
                    format!("column \"{name}\" specified more than once"),
                ));
            }
            if !column.options.is_empty() {
                return Err(Error::NotSupported(format!(
                    "constraints and defaults on source columns ({name})"
                )));
            }
            columns.push(ColumnDef::nullable(
                name,
                &types::arrow_type(&column.data_type)?,
            ));
        }
        let mut options = BTreeMap::new();
        for (key, value) in &create.options {
            if options.insert(key.clone(), value.clone()).is_some() {
                return Err(Error::InvalidParameter(format!("option {key} given twice")));
            }
        }
        if columns.is_empty() {
            columns = source::implied_columns(&options)?
                .into_iter()
                .map(|(name, data_type)| ColumnDef::nullable(name, &data_type))
                .collect();
        }
        for include in &create.includes {
            let part = source::kafka::Include::from_name(&include.part).ok_or_else(|| {
                Error::Syntax(format!(
                    "INCLUDE {} is not one of partition, offset, timestamp, key",
                    include.part
                ))
            })?;
            if columns.iter().any(|c| c.name == include.column) {
                return Err(Error::coded(
                    "42701",
                    format!("column \"{}\" specified more than once", include.column),
                ));
            }
            columns.push(ColumnDef::nullable(
                include.column.clone(),
                &part.data_type(),
            ));
        }
        let def = SourceDef {
            id: catalog.reserve_id()?,
            name: create.name.clone(),
            columns,
            options,
            created_ms: chrono::Utc::now().timestamp_millis(),
            watermark: create.watermark.clone(),
            format: create.format.clone(),
            includes: create.includes.clone(),
        };
        let entry = Catalog::source_entry(&def)?;
        // Opening a connector and finding where it starts may wait on the network.
        let store = catalog.store().clone();
        let (source, flow, splits) = tokio::task::spawn_blocking(move || -> Result<_> {
            let (source, flow) = open(def, &store)?;
            let splits = flow.source.initial_splits()?;
            Ok((source, flow, splits))
        })
        .await
        .map_err(|e| Error::Internal(format!("opening the source failed: {e}")))??;
        self.db
            .runtime()
            .add_source(flow, splits, vec![entry])
            .await?;
        catalog.insert_source(source);
        Ok(Output::Command("CREATE SOURCE".into()))
    }

    /// What a view reading `inputs` cannot fill itself with: records its sources have read
    /// that they no longer hold (a Kafka topic's retention removed them).
    pub(super) async fn backfill_gaps(&self, inputs: &[u32]) -> Result<Option<String>> {
        let sources: Vec<_> = self
            .db
            .catalog()
            .sources()
            .into_iter()
            .filter(|s| inputs.contains(&s.def.id))
            .collect();
        if sources.is_empty() {
            return Ok(None);
        }
        let gaps = tokio::task::spawn_blocking(move || -> Result<Vec<String>> {
            let mut gaps = Vec::new();
            for source in sources {
                let committed = source.scan.progress.committed();
                if let Some(gap) = source.scan.source.missing(&committed)? {
                    gaps.push(format!("source {}: {gap}", source.def.name));
                }
            }
            Ok(gaps)
        })
        .await
        .map_err(|e| Error::Internal(format!("checking the sources failed: {e}")))??;
        Ok((!gaps.is_empty()).then(|| {
            format!(
                "the view starts without records its sources no longer hold ({}); views created \
                 before them have them",
                gaps.join("; ")
            )
        }))
    }

    /// `SHOW SOURCES`.
    pub(super) fn show_sources(&self) -> Result<Output> {
        let names: Vec<String> = self
            .db
            .catalog()
            .sources()
            .iter()
            .map(|s| s.def.name.clone())
            .collect();
        super::views::names_output(names)
    }
}
