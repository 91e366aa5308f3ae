//! CREATE [OR REPLACE] MODEL, DROP MODEL and SHOW MODELS.

use std::sync::Arc;

use super::views::view_noun;
use super::{Output, Session};
use crate::catalog::view::View;
use crate::error::{Error, Result};
use crate::model::{MAX_MODEL_BYTES, ModelDef, sha256_hex, undefined};
use crate::sql::CreateModel;

/// Reads a model file on the server.
fn read_model_file(path: &str) -> Result<Vec<u8>> {
    let open_error = |e: std::io::Error| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            "58P01"
        } else {
            "58030"
        };
        Error::coded(code, format!("could not open model file \"{path}\": {e}"))
    };
    let meta = std::fs::metadata(path).map_err(open_error)?;
    if !meta.is_file() {
        return Err(Error::coded(
            "58030",
            format!("could not read model file \"{path}\": not a file"),
        ));
    }
    if meta.len() > MAX_MODEL_BYTES {
        return Err(Error::coded(
            "54000",
            format!(
                "model file \"{path}\" has {} bytes; the limit is {MAX_MODEL_BYTES}",
                meta.len()
            ),
        ));
    }
    std::fs::read(path).map_err(open_error)
}

impl Session<'_> {
    /// `CREATE [OR REPLACE] MODEL [IF NOT EXISTS] name FROM 'path'`.
    pub(super) async fn create_model(&mut self, create: &CreateModel) -> Result<Output> {
        const TAG: &str = "CREATE MODEL";
        let _guard = self.write_guard().await?;
        let models = self.db.models().clone();
        let existing = models.get(&create.name);
        if existing.is_some() && !create.or_replace {
            if create.if_not_exists {
                self.notice(
                    "42710",
                    format!("model \"{}\" already exists, skipping", create.name),
                );
                return Ok(Output::Command(TAG.into()));
            }
            return Err(Error::coded(
                "42710",
                format!("model \"{}\" already exists", create.name),
            ));
        }
        let path = create.path.clone();
        let bytes = tokio::task::spawn_blocking(move || read_model_file(&path))
            .await
            .map_err(|e| Error::Internal(format!("reading a model file: {e}")))??;
        let size = bytes.len() as u64;
        let sha256 = sha256_hex(&bytes);
        let loader = models.clone();
        let loaded = tokio::task::spawn_blocking(move || loader.prepare(bytes))
            .await
            .map_err(|e| Error::Internal(format!("loading a model: {e}")))??;
        let catalog = self.db.catalog();
        let (id, version) =
            match &existing {
                Some(old) => {
                    let users = catalog.model_dependents(&create.name);
                    let sinks = catalog.model_sinks(&create.name);
                    let fits = old
                        .loaded
                        .as_ref()
                        .is_ok_and(|o| o.signature.interface() == loaded.signature.interface());
                    let used = !users.is_empty() || !sinks.is_empty();
                    if used && !fits {
                        return Err(Error::DependentObjects {
                            message: format!(
                                "cannot replace model {}: the new version takes or gives other \
                             types ({}), and other objects use it",
                                create.name,
                                loaded.signature.expects()
                            ),
                            detail: users
                                .iter()
                                .map(|v| format!("{} uses model {}", view_noun(v), create.name))
                                .chain(sinks.iter().map(|s| {
                                    format!("sink {} uses model {}", s.def.name, create.name)
                                }))
                                .collect::<Vec<_>>()
                                .join("\n"),
                        });
                    }
                    (old.def.id, old.def.version + 1)
                }
                None => (catalog.reserve_id()?, 1),
            };
        let def = ModelDef {
            id,
            name: create.name.clone(),
            version,
            path: create.path.clone(),
            size,
            sha256,
            created_ms: chrono::Utc::now().timestamp_millis(),
        };
        models.put(def, loaded)?;
        Ok(Output::Command(TAG.into()))
    }

    /// `DROP MODEL [IF EXISTS] name, ... [CASCADE]`: refused while a view uses a model, unless
    /// CASCADE, which drops those views (and what depends on them) too.
    pub(super) async fn drop_models(
        &mut self,
        names: &[String],
        if_exists: bool,
        cascade: bool,
    ) -> Result<Output> {
        let _guard = self.write_guard().await?;
        let models = self.db.models().clone();
        let catalog = self.db.catalog().clone();
        let mut found = Vec::new();
        for name in names {
            if models.get(name).is_some() {
                found.push(name.clone());
            } else if if_exists {
                self.notice(
                    "00000",
                    format!("model \"{name}\" does not exist, skipping"),
                );
            } else {
                return Err(undefined(name));
            }
        }
        let users = |name: &str| -> Vec<(Arc<View>, String)> {
            catalog
                .model_dependents(name)
                .into_iter()
                .map(|v| (v, format!("model {name}")))
                .collect()
        };
        // Nothing is dropped unless all of it can be.
        if !cascade && let Some(name) = found.iter().find(|n| !users(n).is_empty()) {
            return self
                .drop_with_dependents("model", name, Vec::new(), users(name), false)
                .await
                .map(|_| Output::Empty);
        }
        for name in &found {
            let sinks = catalog.model_sinks(name);
            if sinks.is_empty() {
                continue;
            }
            if !cascade {
                return Err(Error::DependentObjects {
                    message: format!("cannot drop model {name} because other objects depend on it"),
                    detail: sinks
                        .iter()
                        .map(|s| format!("sink {} uses model {name}", s.def.name))
                        .collect::<Vec<_>>()
                        .join("\n"),
                });
            }
            for sink in sinks {
                self.notice("00000", format!("drop cascades to sink {}", sink.def.name));
                self.drop_sink(&sink.def.name).await?;
            }
        }
        for name in &found {
            self.drop_with_dependents("model", name, Vec::new(), users(name), true)
                .await?;
            models.drop_model(name)?;
        }
        Ok(Output::Command("DROP MODEL".into()))
    }

    /// `SHOW MODELS`.
    pub(super) fn show_models(&self) -> Result<Output> {
        let names = self
            .db
            .models()
            .all()
            .iter()
            .map(|m| m.def.name.clone())
            .collect();
        super::views::names_output(names)
    }
}
