//! File sinks: `CREATE SINK s FROM v WITH (connector = 'file', path = '/data/out' |
//! 's3://bucket/prefix') FORMAT PLAIN ENCODE PARQUET | CSV | JSON`.
//!
//! Each epoch's inserted rows become files named `<sink>-<epoch>-<part>.<ext>` in the directory
//! or under the prefix (a new part every `max.rows.per.file` rows). A file appears whole: local
//! files are written under a temporary name and renamed, and an S3 object exists only once its
//! upload completes (both through `object_store`'s `put`). An epoch delivered again after a
//! crash writes the same names with the same rows, so files are never duplicated.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{Epoch, SinkDef, SinkError, SinkWriter};
use crate::source::file::Location;

/// Options a file sink takes besides [`super::COMMON_OPTIONS`].
const OPTIONS: &[&str] = &[
    "path",
    "max.rows.per.file",
    "s3.endpoint",
    "s3.region",
    "s3.access.key",
    "s3.secret.key",
];

/// Rows per file when `max.rows.per.file` is not given.
const DEFAULT_MAX_ROWS: usize = 1_000_000;

/// How the files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encode {
    Parquet,
    Csv,
    Json,
}

impl Encode {
    fn extension(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Csv => "csv",
            Self::Json => "jsonl",
        }
    }
}

/// Writes epochs as files.
pub struct FileSink {
    name: String,
    schema: SchemaRef,
    location: Location,
    directory: StorePath,
    encode: Encode,
    max_rows: usize,
    force_append_only: bool,
    /// Made on the delivery thread, at the first write.
    io: Option<(tokio::runtime::Runtime, Arc<dyn ObjectStore>)>,
}

impl FileSink {
    /// The sink `def` defines, writing rows of `schema`; with `check`, makes sure the
    /// directory can be written to (a local one is created).
    pub fn new(def: &SinkDef, schema: SchemaRef, check: bool) -> Result<Self, SinkError> {
        if let Some(unknown) = def.options.keys().find(|k| {
            !OPTIONS.contains(&k.as_str()) && !super::COMMON_OPTIONS.contains(&k.as_str())
        }) {
            return Err(SinkError::Option(format!(
                "unknown option {unknown} for a 'file' sink (it takes {})",
                OPTIONS.join(", ")
            )));
        }
        if super::encode::envelope(&def.format.format)? != super::encode::Envelope::Plain {
            return Err(SinkError::NotSupported(format!(
                "FORMAT {} for file sinks (files take FORMAT PLAIN)",
                def.format.format.to_uppercase()
            )));
        }
        let encode = match def.format.encode.to_ascii_lowercase().as_str() {
            "parquet" => Encode::Parquet,
            "csv" => Encode::Csv,
            "json" => Encode::Json,
            other => {
                return Err(SinkError::NotSupported(format!(
                    "ENCODE {} for file sinks (PARQUET, CSV or JSON)",
                    other.to_uppercase()
                )));
            }
        };
        if let Some(option) = def.format.options.keys().next() {
            return Err(SinkError::Option(format!(
                "unknown option {option} for ENCODE {}",
                def.format.encode.to_uppercase()
            )));
        }
        let path = def
            .options
            .get("path")
            .ok_or_else(|| SinkError::Option("a file sink needs path".into()))?;
        let location = Location::new(path, &def.options)?;
        let directory = location.directory().cloned().ok_or_else(|| {
            SinkError::Option(format!(
                "invalid value '{path}' for option path: a directory or prefix, not a glob"
            ))
        })?;
        let max_rows = match def.options.get("max.rows.per.file") {
            None => DEFAULT_MAX_ROWS,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    SinkError::Option(format!(
                        "invalid value '{v}' for option max.rows.per.file: a positive number"
                    ))
                })?,
        };
        let sink = Self {
            name: def.name.clone(),
            schema,
            location,
            directory,
            encode,
            max_rows,
            force_append_only: super::flag(&def.options, "force_append_only", false)?,
            io: None,
        };
        if check {
            sink.check()?;
        }
        Ok(sink)
    }

    /// A local directory is created; an S3 prefix must be listable.
    fn check(&self) -> Result<(), SinkError> {
        if self.location.is_local() {
            let dir = format!("/{}", self.directory);
            return std::fs::create_dir_all(&dir)
                .map_err(|e| SinkError::Option(format!("cannot create directory {dir}: {e}")));
        }
        let location = self.location.clone();
        let directory = self.directory.clone();
        crate::source::on_own_runtime(move || async move {
            use futures::StreamExt;
            let store = location.object_store()?;
            let mut listing = store.list(Some(&directory));
            match listing.next().await {
                Some(Err(e)) => Err(crate::source::file::store_error(
                    &location.name(&directory),
                    e,
                )),
                _ => Ok(()),
            }
        })
        .map_err(SinkError::Unavailable)?
        .map_err(SinkError::from)
    }

    /// The inserted rows of `epoch`, each as many times as inserted.
    fn inserted(&self, epoch: &Epoch) -> Result<Option<RecordBatch>, String> {
        let mut parts = Vec::new();
        for change in &epoch.changes {
            let rows = super::visible(&change.rows, &self.schema)?;
            let mut indices = Vec::new();
            for (i, weight) in change.weights.iter().enumerate() {
                let weight = weight.unwrap_or(0);
                if weight < 0 && !self.force_append_only {
                    return Err(format!(
                        "the view deleted a row, which a file of rows cannot say; set \
                         force_append_only = 'true' to write only inserted rows (sink {})",
                        self.name
                    ));
                }
                for _ in 0..weight.max(0) {
                    indices.push(i as u32);
                }
            }
            if !indices.is_empty() {
                parts.push(
                    take_record_batch(&rows, &UInt32Array::from(indices))
                        .map_err(|e| e.to_string())?,
                );
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        concat_batches(&self.schema, &parts)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// `rows` in the sink's encoding.
    fn bytes(&self, rows: &RecordBatch) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        match self.encode {
            Encode::Parquet => {
                let properties = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .build();
                let mut writer =
                    ArrowWriter::try_new(&mut out, self.schema.clone(), Some(properties))
                        .map_err(|e| e.to_string())?;
                writer.write(rows).map_err(|e| e.to_string())?;
                writer.close().map_err(|e| e.to_string())?;
            }
            Encode::Csv => {
                let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                writer.write(rows).map_err(|e| e.to_string())?;
            }
            Encode::Json => {
                let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
                writer.write(rows).map_err(|e| e.to_string())?;
                writer.finish().map_err(|e| e.to_string())?;
            }
        }
        Ok(out)
    }
}

impl SinkWriter for FileSink {
    fn write(&mut self, epoch: &Epoch) -> Result<u64, String> {
        let Some(rows) = self.inserted(epoch)? else {
            return Ok(0);
        };
        if self.io.is_none() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let store = self.location.object_store().map_err(|e| e.to_string())?;
            self.io = Some((runtime, store));
        }
        let mut files = Vec::new();
        for (part, start) in (0..rows.num_rows()).step_by(self.max_rows).enumerate() {
            let n = (rows.num_rows() - start).min(self.max_rows);
            let name = format!(
                "{}-{:020}-{part:04}.{}",
                self.name,
                epoch.number,
                self.encode.extension()
            );
            files.push((
                self.directory.clone().join(name.as_str()),
                self.bytes(&rows.slice(start, n))?,
            ));
        }
        let Some((runtime, store)) = &self.io else {
            return Err("the sink's store is not open".into());
        };
        runtime.block_on(async {
            for (path, bytes) in files {
                store
                    .put(&path, PutPayload::from(bytes))
                    .await
                    .map_err(|e| format!("writing {}: {e}", self.location.name(&path)))?;
            }
            Ok::<_, String>(())
        })?;
        Ok(rows.num_rows() as u64)
    }
}
