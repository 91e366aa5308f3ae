//! File and object-store sources: `CREATE SOURCE s (...) WITH (connector = 'file', path = ...)
//! FORMAT PLAIN ENCODE CSV | JSON | PARQUET`.
//!
//! `path` names one file, a directory (every file under it) or a glob, on a local disk or in S3
//! (`s3://bucket/prefix`, through `object_store`). Each file is a split, named by its path and
//! numbered in name order; its offsets are line numbers (CSV, JSON lines: blank lines and the
//! CSV header are lines but not records) or row numbers (Parquet). Files are read once each,
//! in split order; files that appear later are listed every `refresh.interval` and read after
//! the others. Names starting with `.` or `_` are skipped, so a writer can write under such a
//! name and rename when the file is whole. A file is read to its end and then marked done in
//! the committed splits: a file appended to after it was read is not read again.
//!
//! Reading runs on a thread of its own with its own async runtime (object stores are async),
//! handing batches over a bounded channel: a source never gets more than a few batches ahead
//! of the views.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::{
    AsyncFileReader, ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder,
};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

use super::encoding::{Encoding, RecordDecoder, by_name_rows, field_index, row_json};
use super::{Rejected, Result, Source, SourceBatch, SourceDef, SourceError, SourceReader, Splits};

/// Options a file source takes.
const OPTIONS: &[&str] = &[
    "connector",
    "path",
    "refresh.interval",
    "s3.endpoint",
    "s3.region",
    "s3.access.key",
    "s3.secret.key",
    "rejected.retention.rows",
    "rejected.payload.max.bytes",
];

/// Records (lines or rows) per batch handed to the views.
const BATCH: usize = 8192;

/// How often the files are listed again when `refresh.interval` is not given.
const DEFAULT_REFRESH: Duration = Duration::from_secs(5);

/// Batches read ahead of the views.
const AHEAD: usize = 4;

/// How a file's records are written.
#[derive(Debug, Clone)]
enum FileFormat {
    /// Lines decoded by [`RecordDecoder`] (CSV by position, JSON objects by name); `header`:
    /// the first line holds the column names and is skipped.
    Lines {
        decoder: RecordDecoder,
        header: bool,
    },
    /// Parquet, columns matched by name.
    Parquet,
}

/// The store the files are in.
#[derive(Debug, Clone)]
enum Store {
    /// The local file system.
    Local,
    /// An S3 bucket.
    S3 {
        bucket: String,
        endpoint: Option<String>,
        region: Option<String>,
        access_key: Option<String>,
        secret_key: Option<String>,
    },
}

/// Where the files are: the store, the prefix to list under, and the pattern a glob adds.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    store: Store,
    /// The path in the store: the file, the directory or the part of a glob before its first
    /// wildcard.
    prefix: StorePath,
    /// A glob's pattern over the whole path in the store.
    pattern: Option<glob::Pattern>,
    /// Whether `path` may name one file (no wildcard, no trailing `/`).
    maybe_file: bool,
}

/// What the reading threads share with the source: the files of the last listing, and the
/// reader's fault while it lasts.
#[derive(Debug, Default)]
struct Shared {
    listed: Mutex<Option<BTreeSet<String>>>,
    last_error: Mutex<Option<String>>,
    ends: Mutex<BTreeMap<i32, i64>>,
}

/// A `connector = 'file'` source.
#[derive(Debug, Clone)]
pub struct FileSource {
    schema: SchemaRef,
    location: Location,
    format: FileFormat,
    refresh: Duration,
    payload_kept: usize,
    shared: Arc<Shared>,
}

impl FileSource {
    /// Reads the files `def` names into rows of `schema`.
    pub fn new(schema: SchemaRef, def: &SourceDef) -> Result<Self> {
        let options = &def.options;
        if let Some(unknown) = options.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
            return Err(SourceError::Option(format!(
                "unknown option {unknown} for connector 'file' (it takes {})",
                OPTIONS[1..].join(", ")
            )));
        }
        if !def.includes.is_empty() {
            return Err(SourceError::Option(
                "INCLUDE is for kafka sources, not 'file'".into(),
            ));
        }
        let path = options
            .get("path")
            .ok_or_else(|| SourceError::Option("a file source needs path".into()))?;
        let location = Location::new(path, options)?;
        let format = def.format.as_ref().ok_or_else(|| {
            SourceError::Option(
                "a file source needs FORMAT PLAIN ENCODE CSV | JSON | PARQUET after its options"
                    .into(),
            )
        })?;
        if !format.format.eq_ignore_ascii_case("plain") {
            return Err(SourceError::NotSupported(format!(
                "FORMAT {} for files (files are read as FORMAT PLAIN)",
                format.format.to_uppercase()
            )));
        }
        let format = if format.encode.eq_ignore_ascii_case("parquet") {
            if let Some(unknown) = format.options.keys().next() {
                return Err(SourceError::Option(format!(
                    "unknown option {unknown} for ENCODE PARQUET"
                )));
            }
            FileFormat::Parquet
        } else {
            let encoding = Encoding::new(&format.encode, &format.options)?;
            let header = match &encoding {
                // Files have a header line unless said otherwise.
                Encoding::Csv { .. } => {
                    format.options.get("without_header").map(String::as_str) != Some("true")
                }
                Encoding::Json => false,
                Encoding::Avro(_) => {
                    return Err(SourceError::NotSupported(
                        "ENCODE AVRO for files (files are CSV, JSON or PARQUET)".into(),
                    ));
                }
            };
            let encoding = match encoding {
                Encoding::Csv { delimiter, .. } => Encoding::Csv {
                    delimiter,
                    header: false,
                },
                other => other,
            };
            FileFormat::Lines {
                decoder: RecordDecoder::new(schema.clone(), encoding),
                header,
            }
        };
        let refresh = match options.get("refresh.interval") {
            None => DEFAULT_REFRESH,
            Some(text) => parse_interval(text).ok_or_else(|| {
                SourceError::Option(format!(
                    "invalid value '{text}' for option refresh.interval: a duration such as \
                     '10s', '500ms' or '1m'"
                ))
            })?,
        };
        let payload_kept = super::payload_kept(options)?;
        Ok(Self {
            schema,
            location,
            format,
            refresh,
            payload_kept,
            shared: Arc::default(),
        })
    }

    /// The files as they are now, in name order: names and sizes.
    async fn list(&self, store: &Arc<dyn ObjectStore>) -> Result<Vec<(String, u64)>> {
        let location = &self.location;
        if location.maybe_file {
            match store.head(&location.prefix).await {
                Ok(meta) => return Ok(vec![(location.name(&meta.location), meta.size)]),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(&location.shown(), e)),
            }
        }
        let mut found = Vec::new();
        let mut listing = store.list(Some(&location.prefix));
        while let Some(meta) = listing.next().await {
            let meta = match meta {
                Ok(meta) => meta,
                // A directory that does not exist lists as nothing.
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(store_error(&location.shown(), e)),
            };
            if location.includes(&meta.location) {
                found.push((location.name(&meta.location), meta.size));
            }
        }
        found.sort();
        Ok(found)
    }

    /// The object store, made for the calling thread's runtime.
    fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        self.location.object_store()
    }

    /// For Parquet: the declared columns are columns of the first file (a misspelt column
    /// would otherwise read as NULL).
    async fn check_columns(&self, store: &Arc<dyn ObjectStore>, first: &str) -> Result<()> {
        if !matches!(self.format, FileFormat::Parquet) {
            return Ok(());
        }
        let path = self.location.path_of(first)?;
        let size = store
            .head(&path)
            .await
            .map_err(|e| store_error(first, e))?
            .size;
        let reader = StoreFile {
            store: store.clone(),
            path,
            size,
        };
        let builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|e| SourceError::Option(format!("{first} is not a Parquet file: {e}")))?;
        let found = builder.schema();
        for column in self.schema.fields() {
            if field_index(found, column.name()).is_none() {
                let fields: Vec<&str> = found.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(SourceError::Column(format!(
                    "column {} is not a column of {first} (its columns: {})",
                    column.name(),
                    fields.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Starts reading on a thread of its own: the files of `from` not yet done from their next
    /// offsets, listing again every `refresh.interval` for new ones; or, with `until`, each
    /// file of `until` from its start to its next offset, then ends.
    fn spawn(&self, from: Splits, until: Option<Splits>) -> Result<Prefetched> {
        let (tx, rx) = std::sync::mpsc::sync_channel(AHEAD);
        let stop = Arc::new(AtomicBool::new(false));
        let scan = Scan {
            source: self.clone(),
            splits: from,
            until,
            tx,
            stop: stop.clone(),
        };
        let live = scan.until.is_none();
        std::thread::Builder::new()
            .name("augur-file-source".into())
            .spawn(move || scan.run())
            .map_err(|e| SourceError::Unavailable(format!("cannot start reading: {e}")))?;
        Ok(Prefetched {
            rx,
            stop,
            shared: self.shared.clone(),
            live,
        })
    }

    fn fault(&self, error: Option<String>) {
        *self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = error;
    }
}

impl Location {
    /// Where `path` (with the `s3.*` options) points.
    pub(crate) fn new(path: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let s3 = options.keys().find(|k| k.starts_with("s3."));
        let (store, key) = if let Some(rest) = path.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(SourceError::Option(format!(
                    "invalid value '{path}' for option path: s3://bucket/prefix"
                )));
            }
            (
                Store::S3 {
                    bucket: bucket.to_string(),
                    endpoint: options.get("s3.endpoint").cloned(),
                    region: options.get("s3.region").cloned(),
                    access_key: options.get("s3.access.key").cloned(),
                    secret_key: options.get("s3.secret.key").cloned(),
                },
                key.to_string(),
            )
        } else {
            if let Some(option) = s3 {
                return Err(SourceError::Option(format!(
                    "option {option} is for paths in S3 (s3://bucket/prefix)"
                )));
            }
            let local = path.strip_prefix("file://").unwrap_or(path);
            if !local.starts_with('/') {
                return Err(SourceError::Option(format!(
                    "invalid value '{path}' for option path: an absolute path (or \
                     s3://bucket/prefix)"
                )));
            }
            (Store::Local, local.trim_start_matches('/').to_string())
        };
        let wildcard = key.find(['*', '?', '[']);
        let (prefix, pattern) = match wildcard {
            Some(at) => {
                let pattern = glob::Pattern::new(&key).map_err(|e| {
                    SourceError::Option(format!("invalid glob in option path '{path}': {e}"))
                })?;
                let prefix = key[..at].rsplit_once('/').map_or("", |(dir, _)| dir);
                (prefix.to_string(), Some(pattern))
            }
            None => (key.trim_end_matches('/').to_string(), None),
        };
        let maybe_file = wildcard.is_none() && !key.ends_with('/') && !key.is_empty();
        let prefix = StorePath::parse(&prefix).map_err(|e| {
            SourceError::Option(format!("invalid value '{path}' for option path: {e}"))
        })?;
        Ok(Self {
            store,
            prefix,
            pattern,
            maybe_file,
        })
    }

    /// Whether a listed object is one of the source's files.
    fn includes(&self, path: &StorePath) -> bool {
        let Some(rest) = path.prefix_match(&self.prefix) else {
            return false;
        };
        let parts: Vec<_> = rest.collect();
        if parts
            .iter()
            .any(|p| p.as_ref().starts_with('.') || p.as_ref().starts_with('_'))
        {
            return false;
        }
        match &self.pattern {
            Some(pattern) => pattern.matches_with(
                path.as_ref(),
                glob::MatchOptions {
                    case_sensitive: true,
                    require_literal_separator: true,
                    require_literal_leading_dot: true,
                },
            ),
            None => true,
        }
    }

    /// The directory or prefix `path` names, when it has no wildcard.
    pub(crate) fn directory(&self) -> Option<&StorePath> {
        self.pattern.is_none().then_some(&self.prefix)
    }

    /// Whether the files are on the local disk.
    pub(crate) fn is_local(&self) -> bool {
        matches!(self.store, Store::Local)
    }

    /// A file's name as users see it: its absolute path, or its `s3://` URL.
    pub(crate) fn name(&self, path: &StorePath) -> String {
        match &self.store {
            Store::Local => format!("/{path}"),
            Store::S3 { bucket, .. } => format!("s3://{bucket}/{path}"),
        }
    }

    /// The path as the user wrote it, near enough for messages.
    fn shown(&self) -> String {
        let mut shown = self.name(&self.prefix);
        if let Some(pattern) = &self.pattern {
            shown = self.name(&StorePath::from(pattern.as_str()));
        }
        shown
    }

    /// The store path of a file named by [`Location::name`].
    fn path_of(&self, name: &str) -> Result<StorePath> {
        let key = match &self.store {
            Store::Local => name.trim_start_matches('/'),
            Store::S3 { bucket, .. } => name
                .strip_prefix("s3://")
                .and_then(|rest| rest.strip_prefix(bucket.as_str()))
                .map_or(name, |rest| rest.trim_start_matches('/')),
        };
        StorePath::parse(key).map_err(|e| SourceError::Option(format!("file {name}: {e}")))
    }

    /// The object store, made for the calling thread's runtime.
    pub(crate) fn object_store(&self) -> Result<Arc<dyn ObjectStore>> {
        match &self.store {
            Store::Local => Ok(Arc::new(LocalFileSystem::new())),
            Store::S3 {
                bucket,
                endpoint,
                region,
                access_key,
                secret_key,
            } => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(region.as_deref().unwrap_or("us-east-1"))
                    .with_client_options(
                        ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(5))
                            .with_timeout(Duration::from_secs(60))
                            .with_allow_http(true),
                    )
                    .with_retry(RetryConfig {
                        max_retries: 2,
                        retry_timeout: Duration::from_secs(15),
                        ..RetryConfig::default()
                    });
                if let Some(endpoint) = endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(key) = access_key {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = secret_key {
                    builder = builder.with_secret_access_key(secret);
                }
                Ok(Arc::new(builder.build().map_err(|e| {
                    SourceError::Option(format!("s3 settings: {e}"))
                })?))
            }
        }
    }
}

/// An object store's error, for a user: a missing file or directory, or an outage.
pub(crate) fn store_error(what: &str, e: object_store::Error) -> SourceError {
    match e {
        object_store::Error::NotFound { .. } => SourceError::Missing(format!("file {what}")),
        other => SourceError::Unavailable(format!("cannot read {what}: {other}")),
    }
}

/// `'10s'`, `'500ms'`, `'2m'`, or a number of seconds.
fn parse_interval(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: f64 = number.trim().parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" | "sec" | "second" | "seconds" => number,
        "m" | "min" | "minute" | "minutes" => number * 60.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
}

impl Source for FileSource {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The files there now, each a split from its first record: an error if there are none
    /// or the store cannot be read.
    fn initial_splits(&self) -> Result<Splits> {
        let source = self.clone();
        super::on_own_runtime(move || async move {
            let store = source.store()?;
            let files = source.list(&store).await?;
            let Some((first, _)) = files.first() else {
                return Err(SourceError::Missing(format!(
                    "files at {}",
                    source.location.shown()
                )));
            };
            source.check_columns(&store, first).await?;
            let mut splits = Splits::default();
            for (split, (name, _)) in files.iter().enumerate() {
                splits.0.insert(split as i32, super::SplitState::default());
                splits.1.insert(split as i32, name.clone());
            }
            *source
                .shared
                .listed
                .lock()
                .unwrap_or_else(|e| e.into_inner()) =
                Some(files.into_iter().map(|(name, _)| name).collect());
            Ok(splits)
        })
        .map_err(SourceError::Unavailable)?
    }

    fn reader(&self, from: &Splits) -> Result<Box<dyn SourceReader>> {
        Ok(Box::new(self.spawn(from.clone(), None)?))
    }

    fn reread(&self, until: &Splits) -> Result<Box<dyn SourceReader>> {
        Ok(Box::new(self.spawn(until.clone(), Some(until.clone()))?))
    }

    fn missing(&self, until: &Splits) -> Result<Option<String>> {
        let source = self.clone();
        let names: Vec<String> = until
            .1
            .iter()
            .filter(|(split, _)| until.0.get(split).is_some_and(|s| s.next > s.start))
            .map(|(_, name)| name.clone())
            .collect();
        let gone = super::on_own_runtime(move || async move {
            let store = source.store()?;
            let mut gone = Vec::new();
            for name in names {
                match store.head(&source.location.path_of(&name)?).await {
                    Ok(_) => {}
                    Err(object_store::Error::NotFound { .. }) => gone.push(name),
                    Err(e) => return Err(store_error(&name, e)),
                }
            }
            Ok(gone)
        })
        .map_err(SourceError::Unavailable)??;
        Ok((!gone.is_empty()).then(|| {
            format!(
                "files read before no longer exist, their rows are missing: {}",
                gone.join(", ")
            )
        }))
    }

    fn bound(&self) -> Option<u64> {
        None
    }

    /// Every file listed is read to its end.
    fn read_to_end(&self, splits: &Splits) -> bool {
        let listed = self
            .shared
            .listed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        let known: BTreeSet<&String> = splits.1.values().collect();
        splits.0.values().all(|s| s.done) && listed.iter().all(|name| known.contains(name))
    }

    fn rate(&self) -> Option<f64> {
        None
    }
}

/// A Parquet file in an object store, read by byte ranges.
struct StoreFile {
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    size: u64,
}

impl AsyncFileReader for StoreFile {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<bytes::Bytes>> {
        Box::pin(async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<bytes::Bytes>>> {
        Box::pin(async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        Box::pin(async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_metadata_options(options.map(|o| o.metadata_options().clone()))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        })
    }
}

/// A file being read: its lines or its Parquet rows, from an offset.
enum Cursor {
    Lines(Lines),
    Parquet {
        stream: ParquetRecordBatchStream<StoreFile>,
        next: i64,
        rows: i64,
    },
}

/// A text file's lines, read from a byte stream.
struct Lines {
    stream: BoxStream<'static, object_store::Result<bytes::Bytes>>,
    pending: Vec<u8>,
    eof: bool,
    /// The line number of the next line.
    next: i64,
}

impl Lines {
    /// Up to `max` lines (without their line ends) and the number of the first; none at the
    /// end of the file.
    async fn take(&mut self, max: usize) -> object_store::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut start = 0;
        loop {
            while out.len() < max {
                match self.pending[start..].iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        out.push(self.pending[start..start + i].to_vec());
                        start += i + 1;
                    }
                    None => break,
                }
            }
            if out.len() >= max || self.eof {
                break;
            }
            self.pending.drain(..start);
            start = 0;
            match self.stream.next().await {
                Some(bytes) => self.pending.extend_from_slice(&bytes?),
                None => self.eof = true,
            }
        }
        if self.eof && out.len() < max && start < self.pending.len() {
            // The last line, without a line end.
            out.push(self.pending[start..].to_vec());
            start = self.pending.len();
        }
        self.pending.drain(..start);
        for line in &mut out {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        self.next += out.len() as i64;
        Ok(out)
    }

    /// Whether every line has been taken.
    fn finished(&self) -> bool {
        self.eof && self.pending.is_empty()
    }
}

/// The reading thread: reads the files of `splits` not yet done, in split order, from each
/// one's next offset; with `until`, each file of `until` from its start to its next offset
/// (a re-read), then ends.
struct Scan {
    source: FileSource,
    splits: Splits,
    until: Option<Splits>,
    tx: SyncSender<Result<SourceBatch>>,
    stop: Arc<AtomicBool>,
}

/// Why a scan stops reading a file.
enum Halt {
    /// The views no longer read (the reader was dropped).
    Stopped,
    /// The file cannot be read now.
    Failed(SourceError),
}

impl Scan {
    fn run(mut self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = self.tx.send(Err(SourceError::Unavailable(format!(
                    "cannot start reading: {e}"
                ))));
                return;
            }
        };
        runtime.block_on(async {
            match self.until.take() {
                Some(until) => self.reread(until).await,
                None => self.live().await,
            }
        });
    }

    /// Re-reads each file of `until` up to its next offset.
    async fn reread(&mut self, until: Splits) {
        let store = match self.source.store() {
            Ok(store) => store,
            Err(e) => {
                let _ = self.tx.send(Err(e));
                return;
            }
        };
        for (split, state) in &until.0 {
            if state.next <= state.start {
                continue;
            }
            let Some(name) = until.1.get(split) else {
                continue;
            };
            match self
                .file(&store, *split, name, state.start, Some(state.next))
                .await
            {
                Ok(()) => {}
                Err(Halt::Stopped) => return,
                Err(Halt::Failed(e)) => {
                    let _ = self.tx.send(Err(e));
                    return;
                }
            }
        }
    }

    /// Reads what is not read yet, and new files as they appear, until stopped.
    async fn live(&mut self) {
        let store = loop {
            match self.source.store() {
                Ok(store) => break store,
                Err(e) => {
                    self.source.fault(Some(e.to_string()));
                    if self.pause(Duration::from_secs(1)).await {
                        return;
                    }
                }
            }
        };
        let mut failed: BTreeSet<i32> = BTreeSet::new();
        loop {
            let listed = Instant::now();
            self.discover(&store).await;
            failed.clear();
            loop {
                let next = self
                    .splits
                    .0
                    .iter()
                    .find(|(split, state)| !state.done && !failed.contains(split))
                    .map(|(split, state)| (*split, state.next));
                let Some((split, from)) = next else {
                    break;
                };
                let Some(name) = self.splits.1.get(&split).cloned() else {
                    failed.insert(split);
                    continue;
                };
                match self.file(&store, split, &name, from, None).await {
                    Ok(()) => {}
                    Err(Halt::Stopped) => return,
                    Err(Halt::Failed(e)) => {
                        // Tried again at the next listing; the others are read meanwhile.
                        tracing::warn!(file = name, "reading the file failed: {e}");
                        self.source.fault(Some(e.to_string()));
                        failed.insert(split);
                    }
                }
            }
            if failed.is_empty() {
                self.source.fault(None);
            }
            let wait = self.source.refresh.saturating_sub(listed.elapsed());
            if self.pause(wait).await {
                return;
            }
        }
    }

    /// Sleeps `wait`; whether the reader was stopped meanwhile.
    async fn pause(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if self.stop.load(Ordering::SeqCst) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50).min(until - Instant::now())).await;
        }
        self.stop.load(Ordering::SeqCst)
    }

    /// Lists the files and gives new ones the next split numbers, in name order.
    async fn discover(&mut self, store: &Arc<dyn ObjectStore>) {
        let files = match self.source.list(store).await {
            Ok(files) => files,
            Err(e) => {
                self.source.fault(Some(e.to_string()));
                return;
            }
        };
        let known: BTreeSet<String> = self.splits.1.values().cloned().collect();
        let mut next = self.splits.0.keys().next_back().map_or(0, |s| s + 1);
        for (name, _) in &files {
            if !known.contains(name) {
                self.splits.0.insert(next, super::SplitState::default());
                self.splits.1.insert(next, name.clone());
                next += 1;
            }
        }
        *self
            .source
            .shared
            .listed
            .lock()
            .unwrap_or_else(|e| e.into_inner()) =
            Some(files.into_iter().map(|(name, _)| name).collect());
    }

    /// Reads file `name` (split `split`) from offset `from`, up to offset `end` if given
    /// (else to its end, the last batch marking it done), handing the batches over.
    async fn file(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        split: i32,
        name: &str,
        from: i64,
        end: Option<i64>,
    ) -> Result<(), Halt> {
        let mut cursor = self.open(store, name, from).await.map_err(Halt::Failed)?;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Err(Halt::Stopped);
            }
            let position = match &cursor {
                Cursor::Lines(lines) => lines.next,
                Cursor::Parquet { next, .. } => *next,
            };
            let max = match end {
                Some(end) if end <= position => return Ok(()),
                Some(end) => ((end - position) as usize).min(BATCH),
                None => BATCH,
            };
            let mut batch = self
                .source
                .batch(&mut cursor, split, name, max)
                .await
                .map_err(Halt::Failed)?;
            if end.is_some() {
                batch.done = false;
            }
            let done = batch.done;
            let next = batch.next;
            if batch.records == 0 && !done && batch.next == position {
                // Nothing more (a re-read past what the file now holds).
                return Ok(());
            }
            if self.tx.send(Ok(batch)).is_err() {
                return Err(Halt::Stopped);
            }
            // Handed over: a restart of the reading goes on from here.
            if end.is_none() {
                let state = self.splits.0.entry(split).or_default();
                state.next = next;
                state.done = done;
                if done {
                    let mut ends = self
                        .source
                        .shared
                        .ends
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    ends.insert(split, next);
                }
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Opens file `name` at offset `from`.
    async fn open(&self, store: &Arc<dyn ObjectStore>, name: &str, from: i64) -> Result<Cursor> {
        let path = self.source.location.path_of(name)?;
        match &self.source.format {
            FileFormat::Lines { .. } => {
                let found = store.get(&path).await.map_err(|e| store_error(name, e))?;
                let mut lines = Lines {
                    stream: found.into_stream(),
                    pending: Vec::new(),
                    eof: false,
                    next: 0,
                };
                // Lines before `from` were read before.
                while lines.next < from {
                    let want = ((from - lines.next) as usize).min(BATCH);
                    let skipped = lines.take(want).await.map_err(|e| store_error(name, e))?;
                    if skipped.is_empty() {
                        break;
                    }
                }
                Ok(Cursor::Lines(lines))
            }
            FileFormat::Parquet => {
                let meta = store.head(&path).await.map_err(|e| store_error(name, e))?;
                let reader = StoreFile {
                    store: store.clone(),
                    path,
                    size: meta.size,
                };
                let builder = ParquetRecordBatchStreamBuilder::new(reader)
                    .await
                    .map_err(|e| {
                        SourceError::Unavailable(format!("{name} is not a Parquet file: {e}"))
                    })?;
                let rows = builder.metadata().file_metadata().num_rows();
                let file_schema = builder.schema().clone();
                let roots: Vec<usize> = self
                    .source
                    .schema
                    .fields()
                    .iter()
                    .filter_map(|field| field_index(&file_schema, field.name()))
                    .collect::<BTreeSet<usize>>()
                    .into_iter()
                    .collect();
                let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
                let stream = builder
                    .with_projection(mask)
                    .with_offset(from.max(0) as usize)
                    .with_batch_size(BATCH)
                    .build()
                    .map_err(|e| SourceError::Unavailable(format!("reading {name}: {e}")))?;
                Ok(Cursor::Parquet {
                    stream,
                    next: from,
                    rows,
                })
            }
        }
    }
}

impl FileSource {
    /// The next batch of up to `max` records of the file `cursor` reads.
    async fn batch(
        &self,
        cursor: &mut Cursor,
        split: i32,
        name: &str,
        max: usize,
    ) -> Result<SourceBatch> {
        match cursor {
            Cursor::Lines(lines) => {
                let first = lines.next;
                let taken = lines.take(max).await.map_err(|e| store_error(name, e))?;
                let FileFormat::Lines { decoder, header } = &self.format else {
                    unreachable!("a text file is read by lines");
                };
                // Blank lines and the header are lines, not records.
                let mut payloads = Vec::with_capacity(taken.len());
                let mut numbers = Vec::with_capacity(taken.len());
                for (i, line) in taken.iter().enumerate() {
                    let number = first + i as i64;
                    if (*header && number == 0) || line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    payloads.push(line.as_slice());
                    numbers.push(number);
                }
                let (rows, _, failures) = decoder.decode(&payloads);
                let rejected = failures
                    .into_iter()
                    .map(|(i, error)| Rejected {
                        split,
                        offset: numbers[i],
                        payload: payloads[i][..payloads[i].len().min(self.payload_kept)].to_vec(),
                        error,
                    })
                    .collect();
                Ok(SourceBatch {
                    split,
                    start: 0,
                    rows,
                    next: lines.next,
                    records: payloads.len() as u64,
                    rejected,
                    changes: None,
                    name: Some(name.to_string()),
                    done: lines.finished(),
                })
            }
            Cursor::Parquet { stream, next, rows } => {
                let first = *next;
                let read = if first >= *rows {
                    None
                } else {
                    stream
                        .next()
                        .await
                        .transpose()
                        .map_err(|e| SourceError::Unavailable(format!("reading {name}: {e}")))?
                };
                let Some(read) = read else {
                    return Ok(SourceBatch {
                        split,
                        start: 0,
                        rows: RecordBatch::new_empty(self.schema.clone()),
                        next: first,
                        records: 0,
                        rejected: Vec::new(),
                        changes: None,
                        name: Some(name.to_string()),
                        done: true,
                    });
                };
                // A re-read may want fewer rows than a batch holds.
                let read = read.slice(0, read.num_rows().min(max));
                let (out, _, failures) = by_name_rows(&read, &self.schema);
                let rejected = failures
                    .into_iter()
                    .map(|(i, error)| {
                        let payload = row_json(&read, i);
                        Rejected {
                            split,
                            offset: first + i as i64,
                            payload: payload[..payload.len().min(self.payload_kept)].to_vec(),
                            error,
                        }
                    })
                    .collect();
                *next = first + read.num_rows() as i64;
                Ok(SourceBatch {
                    split,
                    start: 0,
                    rows: out,
                    next: *next,
                    records: read.num_rows() as u64,
                    rejected,
                    changes: None,
                    name: Some(name.to_string()),
                    done: *next >= *rows,
                })
            }
        }
    }
}

/// The views' side of a read: batches from the reading thread.
struct Prefetched {
    rx: Receiver<Result<SourceBatch>>,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    /// A live read answers at once; a re-read waits for each batch and ends with the thread.
    live: bool,
}

impl SourceReader for Prefetched {
    fn next(&mut self, _max_rows: usize) -> Result<Option<SourceBatch>> {
        if self.live {
            return match self.rx.try_recv() {
                Ok(batch) => batch.map(Some),
                Err(TryRecvError::Empty) => Ok(None),
                Err(TryRecvError::Disconnected) => {
                    Err(SourceError::Unavailable("the file reader stopped".into()))
                }
            };
        }
        match self.rx.recv() {
            Ok(batch) => batch.map(Some),
            Err(_) => Ok(None),
        }
    }

    fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn ends(&self) -> BTreeMap<i32, i64> {
        self.shared
            .ends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Prefetched {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_with_units_or_as_seconds() {
        assert_eq!(parse_interval("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_interval("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_interval("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_interval(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_interval("0s"), None);
        assert_eq!(parse_interval("often"), None);
        assert_eq!(parse_interval("5h"), None);
    }

    #[test]
    fn globs_directories_and_hidden_files() {
        let none = BTreeMap::new();
        let glob = Location::new("/data/in/*.csv", &none).unwrap();
        assert_eq!(glob.prefix.as_ref(), "data/in");
        assert!(!glob.maybe_file);
        assert!(glob.includes(&StorePath::from("data/in/a.csv")));
        assert!(!glob.includes(&StorePath::from("data/in/a.json")));
        // `*` stays within a directory; names starting with `.` or `_` are not files yet.
        assert!(!glob.includes(&StorePath::from("data/in/sub/a.csv")));
        assert!(!glob.includes(&StorePath::from("data/in/.a.csv")));
        assert!(!glob.includes(&StorePath::from("data/in/_a.csv")));

        let dir = Location::new("file:///data/in/", &none).unwrap();
        assert!(!dir.maybe_file);
        assert!(dir.includes(&StorePath::from("data/in/day=1/a.csv")));
        assert!(!dir.includes(&StorePath::from("data/in/_tmp/a.csv")));
        assert!(!dir.includes(&StorePath::from("data/other/a.csv")));
        assert_eq!(
            dir.name(&StorePath::from("data/in/a.csv")),
            "/data/in/a.csv"
        );

        let s3 = Location::new("s3://lake/events/part-0.parquet", &none).unwrap();
        assert!(s3.maybe_file);
        let name = s3.name(&StorePath::from("events/part-0.parquet"));
        assert_eq!(name, "s3://lake/events/part-0.parquet");
        assert_eq!(s3.path_of(&name).unwrap().as_ref(), "events/part-0.parquet");

        assert!(Location::new("relative/x.csv", &none).is_err());
        assert!(Location::new("s3:///x", &none).is_err());
        assert!(Location::new("/data/[x", &none).is_err());
    }

    #[tokio::test]
    async fn lines_with_and_without_a_last_line_end() {
        let chunks: Vec<object_store::Result<bytes::Bytes>> = vec![
            Ok(bytes::Bytes::from_static(b"a,1\r\nb,")),
            Ok(bytes::Bytes::from_static(b"2\n\nc,3")),
        ];
        let mut lines = Lines {
            stream: futures::stream::iter(chunks).boxed(),
            pending: Vec::new(),
            eof: false,
            next: 0,
        };
        assert_eq!(
            lines.take(2).await.unwrap(),
            vec![b"a,1".to_vec(), b"b,2".to_vec()]
        );
        assert_eq!(lines.next, 2);
        assert!(!lines.finished());
        assert_eq!(
            lines.take(10).await.unwrap(),
            vec![b"".to_vec(), b"c,3".to_vec()]
        );
        assert!(lines.finished());
        assert_eq!(lines.next, 4);
        assert!(lines.take(10).await.unwrap().is_empty());
    }
}
