//! CREATE SINK, DROP SINK, SHOW SINKS, and the restart of every sink's delivery when the server
//! starts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{Output, Session};
use crate::catalog::{Catalog, SinkEntry};
use crate::error::{Error, Result};
use crate::sink::{self, Delivery, SinkDef, SinkProgress};
use crate::sql::CreateSink;
use crate::storage::Store;
use crate::stream::runtime::SinkFlow;

/// Reopens every stored sink: its catalog entry, its delivery (epochs left in its outbox are
/// delivered again), and its flow for the runtime.
pub(super) fn recover(store: &Store, catalog: &Catalog) -> Result<Vec<SinkFlow>> {
    let mut flows = Vec::new();
    for def in catalog.stored_sinks()? {
        let progress = Arc::new(SinkProgress::default());
        progress.set_backlog(sink::backlog(store, def.id)?);
        let schema = catalog
            .relation_by_id(def.input)
            .map(|view| view.visible_schema().clone());
        let delivery = match schema {
            None => {
                progress.set_error(Some(format!("the view {} is gone", def.from)));
                None
            }
            Some(schema) => match sink::open(&def, schema, false) {
                Ok(writer) => Some(
                    Delivery::start(store.clone(), def.id, &def.name, writer, progress.clone())
                        .map_err(|e| Error::Internal(format!("cannot start sink delivery: {e}")))?,
                ),
                Err(e) => {
                    tracing::error!(sink = def.name, "cannot open the sink: {e}");
                    progress.set_error(Some(e.to_string()));
                    None
                }
            },
        };
        flows.push(SinkFlow {
            id: def.id,
            name: def.name.clone(),
            input: def.input,
            progress: progress.clone(),
        });
        catalog.insert_sink(SinkEntry {
            def,
            progress,
            delivery: Mutex::new(delivery),
        });
    }
    Ok(flows)
}

impl Session<'_> {
    pub(super) async fn create_sink(&mut self, create: &CreateSink) -> Result<Output> {
        let _guard = self.write_guard().await?;
        let catalog = self.db.catalog().clone();
        if catalog.sink(&create.name).is_some() {
            if create.if_not_exists {
                self.notice(
                    "42710",
                    format!("sink \"{}\" already exists, skipping", create.name),
                );
                return Ok(Output::Command("CREATE SINK".into()));
            }
            return Err(Error::coded(
                "42710",
                format!("sink \"{}\" already exists", create.name),
            ));
        }
        if catalog.exists(&create.name) {
            return Err(Error::DuplicateTable(create.name.clone()));
        }
        let view = catalog.view(&create.from);
        let Some((view, storage)) = view
            .as_ref()
            .and_then(|v| v.storage().cloned().map(|s| (v.clone(), s)))
        else {
            if view.is_some() || catalog.exists(&create.from) {
                return Err(Error::coded(
                    "42809",
                    format!(
                        "\"{}\" is not a materialized view: a sink reads the changes of a \
                         materialized view",
                        create.from
                    ),
                ));
            }
            return Err(Error::UndefinedTable(create.from.clone()));
        };
        let mut options = BTreeMap::new();
        for (key, value) in &create.options {
            if options.insert(key.clone(), value.clone()).is_some() {
                return Err(Error::InvalidParameter(format!("option {key} given twice")));
            }
        }
        let format = create.format.clone().ok_or_else(|| {
            Error::InvalidParameter(
                "a sink needs FORMAT PLAIN | UPSERT | DEBEZIUM ENCODE ... after its options".into(),
            )
        })?;
        let schema = storage.visible_schema().clone();
        let key: Vec<String> = match options.get("primary_key") {
            Some(list) => list
                .split(',')
                .map(|k| k.trim().to_lowercase())
                .filter(|k| !k.is_empty())
                .collect(),
            None => view
                .def()
                .key
                .as_ref()
                .map(|key| {
                    key.iter()
                        .filter_map(|&i| schema.fields().get(i).map(|f| f.name().clone()))
                        .collect()
                })
                .unwrap_or_default(),
        };
        let snapshot = sink::flag(&options, "snapshot", true)?;
        if sink::encode::Envelope::new(&format.format)? == sink::encode::Envelope::Plain
            && !view.def().append_only
            && !sink::flag(&options, "force_append_only", false)?
        {
            return Err(Error::InvalidParameter(format!(
                "materialized view {} updates and deletes rows, which FORMAT PLAIN cannot say: \
                 use FORMAT UPSERT or DEBEZIUM, or force_append_only = 'true' to write only the \
                 rows inserted",
                create.from
            )));
        }
        let def = SinkDef {
            id: catalog.reserve_id()?,
            name: create.name.clone(),
            from: create.from.clone(),
            input: view.def().id,
            options,
            format,
            key,
            created_ms: chrono::Utc::now().timestamp_millis(),
        };
        // Opening the connector checks its destination, which may wait on the network.
        let writer = {
            let def = def.clone();
            tokio::task::spawn_blocking(move || sink::open(&def, schema, true))
                .await
                .map_err(|e| Error::Internal(format!("opening the sink failed: {e}")))??
        };
        let entry = Catalog::sink_entry(&def)?;
        let progress = Arc::new(SinkProgress::default());
        let flow = SinkFlow {
            id: def.id,
            name: def.name.clone(),
            input: def.input,
            progress: progress.clone(),
        };
        self.db
            .runtime()
            .add_sink(flow, snapshot, vec![entry])
            .await?;
        let delivery = Delivery::start(
            self.db.store().clone(),
            def.id,
            &def.name,
            writer,
            progress.clone(),
        )
        .map_err(|e| Error::Internal(format!("cannot start sink delivery: {e}")))?;
        catalog.insert_sink(SinkEntry {
            def,
            progress,
            delivery: Mutex::new(Some(delivery)),
        });
        Ok(Output::Command("CREATE SINK".into()))
    }

    /// `DROP SINK [IF EXISTS] names`.
    pub(super) async fn drop_sinks(&mut self, names: &[String], if_exists: bool) -> Result<Output> {
        let _guard = self.write_guard().await?;
        let catalog = self.db.catalog().clone();
        for name in names {
            if catalog.sink(name).is_none() {
                if if_exists {
                    self.notice("00000", format!("sink \"{name}\" does not exist, skipping"));
                    continue;
                }
                return Err(Error::coded(
                    "42704",
                    format!("sink \"{name}\" does not exist"),
                ));
            }
        }
        for name in names {
            self.drop_sink(name).await?;
        }
        Ok(Output::Command("DROP SINK".into()))
    }

    /// Stops sink `name`'s delivery and deletes it with its outbox.
    pub(super) async fn drop_sink(&self, name: &str) -> Result<()> {
        let catalog = self.db.catalog();
        let Some(entry) = catalog.sink(name) else {
            return Ok(());
        };
        let delivery = entry
            .delivery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(delivery) = delivery {
            // Joins the thread, which may be waiting on a write.
            let _ = tokio::task::spawn_blocking(move || drop(delivery)).await;
        }
        self.db
            .runtime()
            .drop_sink(entry.def.id, vec![Catalog::sink_entry_key(entry.def.id)])
            .await?;
        catalog.remove_sink(name);
        Ok(())
    }

    /// `SHOW SINKS`, by name.
    pub(super) fn show_sinks(&self) -> Result<Output> {
        let mut names: Vec<String> = self
            .db
            .catalog()
            .sinks()
            .iter()
            .map(|s| s.def.name.clone())
            .collect();
        names.sort();
        super::views::names_output(names)
    }
}
