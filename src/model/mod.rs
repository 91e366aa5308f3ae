//! Models: ONNX files stored in RocksDB and run inside SQL by `PREDICT`, `PREDICT_LABEL` and
//! `PREDICT_PROBA`.
//!
//! `CREATE MODEL name FROM 'file.onnx'` reads the file, checks that ONNX Runtime loads it, and
//! stores its bytes (`mb` + id) and definition (`cm` + id, JSON) in one write, so a model works
//! after a restart even when the file is gone. `CREATE OR REPLACE MODEL` stores a new version
//! under the same id; queries planned after it, and the rows views compute after it, use the new
//! version. The functions are DataFusion scalar functions ([`functions`]): one ONNX Runtime run
//! per Arrow batch.

pub mod functions;
pub mod onnx;
pub mod runtime;
pub mod scores;
pub mod signature;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::{Error, Result};
use crate::storage::{StorageError, Store, WriteBatch};
use onnx::Loaded;
use runtime::Failure;
use scores::Want;

const MODEL_PREFIX: &[u8] = b"cm";
const BYTES_PREFIX: &[u8] = b"mb";

/// The largest model file CREATE MODEL takes.
pub const MAX_MODEL_BYTES: u64 = 1 << 30;

/// The stored definition of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDef {
    /// Unique id, from the catalog's counter.
    pub id: u32,
    /// The model's name.
    pub name: String,
    /// 1 at CREATE, one more at each CREATE OR REPLACE.
    pub version: u32,
    /// The file it was read from, as given.
    pub path: String,
    /// The size of the ONNX file in bytes.
    pub size: u64,
    /// SHA-256 of the file, in hex.
    pub sha256: String,
    /// When this version was created (ms since 1970).
    pub created_ms: i64,
}

/// How ONNX Runtime is found and run.
#[derive(Debug, Clone, Default)]
pub struct OnnxConfig {
    /// `--onnxruntime`: the library, or a directory holding it.
    pub library: Option<PathBuf>,
    /// Threads ONNX Runtime uses inside one run (`--onnx-threads`).
    pub threads: usize,
}

/// Counters of a model's runs since the server started, kept across versions.
#[derive(Debug, Default)]
pub struct Stats {
    /// Rows scored.
    pub rows: AtomicU64,
    /// Runs (batches).
    pub runs: AtomicU64,
    /// Runs that failed.
    pub errors: AtomicU64,
    /// The last failure.
    pub last_error: Mutex<Option<String>>,
}

impl Stats {
    fn failed(&self, why: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_string());
    }
}

/// One version of a model, ready to run (or why it cannot).
#[derive(Debug)]
pub struct Model {
    /// Its definition.
    pub def: ModelDef,
    /// The loaded model, or why ONNX Runtime could not load it at start.
    pub loaded: std::result::Result<Loaded, Failure>,
    /// Its counters.
    pub stats: Arc<Stats>,
}

impl Model {
    /// The loaded model, or an error saying why it cannot run.
    pub fn loaded(&self) -> Result<&Loaded> {
        self.loaded.as_ref().map_err(|why| {
            Error::coded(
                "58000",
                format!("model \"{}\" cannot run: {why}", self.def.name),
            )
        })
    }

    /// Runs the model over a batch, counting the run and its failure.
    pub fn run(
        &self,
        config: &OnnxConfig,
        want: Want,
        args: &[datafusion::arrow::array::ArrayRef],
        rows: usize,
    ) -> Result<datafusion::arrow::array::ArrayRef> {
        let loaded = self.loaded()?;
        let env = runtime::environment(config.library.as_deref())
            .map_err(|why| Error::coded("58000", why))?;
        self.stats.runs.fetch_add(1, Ordering::Relaxed);
        match loaded.run(env, want, args, rows) {
            Ok(array) => {
                self.stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
                Ok(array)
            }
            Err(why) => {
                self.stats.failed(&why);
                Err(Error::coded(
                    "38000",
                    format!("model \"{}\" failed: {why}", self.def.name),
                ))
            }
        }
    }
}

/// Every model, by name.
#[derive(Debug)]
pub struct Models {
    store: Store,
    config: OnnxConfig,
    models: RwLock<BTreeMap<String, Arc<Model>>>,
}

fn key(prefix: &[u8], id: u32) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The error of a model that does not exist (`42704`).
pub fn undefined(name: &str) -> Error {
    Error::coded("42704", format!("model \"{name}\" does not exist"))
}

impl Models {
    /// Loads every stored model. A model ONNX Runtime cannot load (or no ONNX Runtime at all)
    /// does not stop the server: using it fails with the reason.
    pub fn load(store: Store, config: OnnxConfig) -> Result<Self> {
        let models = Self {
            store: store.clone(),
            config,
            models: RwLock::new(BTreeMap::new()),
        };
        let mut defs: Vec<ModelDef> = Vec::new();
        store.scan_prefix::<Error>(MODEL_PREFIX, |_, value| {
            defs.push(
                serde_json::from_slice(value)
                    .map_err(|e| StorageError::Corrupt(format!("model definition: {e}")))?,
            );
            Ok(true)
        })?;
        for def in defs {
            let bytes: Arc<[u8]> = store
                .get(&key(BYTES_PREFIX, def.id))?
                .ok_or_else(|| {
                    StorageError::Corrupt(format!("the bytes of model {} are missing", def.name))
                })?
                .into();
            let loaded = models.build(bytes);
            if let Err(why) = &loaded {
                tracing::warn!(model = %def.name, error = %why, "model not loaded");
            }
            let model = Model {
                def,
                loaded,
                stats: Arc::default(),
            };
            models
                .write()
                .insert(model.def.name.clone(), Arc::new(model));
        }
        Ok(models)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Model>>> {
        self.models.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Model>>> {
        self.models.read().unwrap_or_else(|e| e.into_inner())
    }

    /// How ONNX Runtime is found and run.
    pub fn config(&self) -> &OnnxConfig {
        &self.config
    }

    fn build(&self, bytes: Arc<[u8]>) -> std::result::Result<Loaded, Failure> {
        let env = runtime::environment(self.config.library.as_deref())?;
        Loaded::new(env, bytes, self.config.threads.max(1))
    }

    /// Loads `bytes` as a model, for CREATE MODEL: an error when ONNX Runtime is missing or
    /// refuses the file.
    pub fn prepare(&self, bytes: Vec<u8>) -> Result<Loaded> {
        let env = runtime::environment(self.config.library.as_deref())
            .map_err(|why| Error::coded("58000", why))?;
        Loaded::new(env, bytes.into(), self.config.threads.max(1)).map_err(|why| {
            Error::InvalidParameter(format!("not a model ONNX Runtime can run: {why}"))
        })
    }

    /// The current version of model `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Model>> {
        self.read().get(name).cloned()
    }

    /// Every model, by name.
    pub fn all(&self) -> Vec<Arc<Model>> {
        self.read().values().cloned().collect()
    }

    /// Stores `loaded` as model `def` (a new model, or a new version of one) and makes it the
    /// current version.
    pub fn put(&self, def: ModelDef, loaded: Loaded) -> Result<Arc<Model>> {
        let mut batch = WriteBatch::default();
        batch.put(
            key(MODEL_PREFIX, def.id),
            serde_json::to_vec(&def)
                .map_err(|e| Error::Internal(format!("encoding a model definition: {e}")))?,
        );
        batch.put(key(BYTES_PREFIX, def.id), loaded.bytes().as_ref());
        self.store.write(batch)?;
        let stats = self
            .get(&def.name)
            .map(|m| m.stats.clone())
            .unwrap_or_default();
        let model = Arc::new(Model {
            def,
            loaded: Ok(loaded),
            stats,
        });
        self.write().insert(model.def.name.clone(), model.clone());
        Ok(model)
    }

    /// Deletes model `name`.
    pub fn drop_model(&self, name: &str) -> Result<()> {
        let Some(model) = self.get(name) else {
            return Err(undefined(name));
        };
        let mut batch = WriteBatch::default();
        batch.delete(key(MODEL_PREFIX, model.def.id));
        batch.delete(key(BYTES_PREFIX, model.def.id));
        self.store.write(batch)?;
        self.write().remove(name);
        Ok(())
    }
}
