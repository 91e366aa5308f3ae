//! Sources: streams of rows from outside Augur that views read.
//!
//! A source is addressed by position: row `n` of a source is always the same row, so the
//! dataflow can commit how far it has read with each epoch, replay from there after a crash,
//! and replay from the start to fill a view created after rows arrived. A source is read while
//! at least one view reads it (as in RisingWave, nothing is ingested for nobody). Connectors
//! live one per file (`datagen.rs`). Depends on nothing of Augur but the table column
//! definitions.

pub mod datagen;
pub mod nexmark;
pub mod provider;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::table::ColumnDef;
use crate::table::watermark::{Watermark, WatermarkDef, WatermarkState};

/// A source's watermark: compiled, and where it stands as last committed (what the system
/// views show).
#[derive(Debug)]
pub struct SourceWatermark {
    /// The compiled declaration.
    pub watermark: Watermark,
    /// As of the last commit.
    pub committed: std::sync::Mutex<WatermarkState>,
}

impl SourceWatermark {
    /// The state as of the last commit.
    pub fn committed(&self) -> WatermarkState {
        *self.committed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The first `end` rows of a source as its views saw them, in batches of up to `batch` rows:
/// late rows dropped as `watermark`, judged from the source's first row, says. Batches left with
/// no rows are skipped.
pub struct OnTimeRows {
    source: Arc<dyn Source>,
    watermark: Option<Arc<SourceWatermark>>,
    state: WatermarkState,
    from: u64,
    end: u64,
    batch: usize,
}

impl OnTimeRows {
    /// Reads `source` from its first row up to row `end`.
    pub fn new(
        source: Arc<dyn Source>,
        watermark: Option<Arc<SourceWatermark>>,
        end: u64,
        batch: usize,
    ) -> Self {
        Self {
            source,
            watermark,
            state: WatermarkState::default(),
            from: 0,
            end,
            batch: batch.max(1),
        }
    }
}

impl Iterator for OnTimeRows {
    type Item = crate::error::Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.from < self.end {
            let n = (self.end - self.from).min(self.batch as u64) as usize;
            let rows = match self.source.read(self.from, n) {
                Ok(rows) if rows.num_rows() == 0 => return None,
                Ok(rows) => rows,
                Err(e) => return Some(Err(e.into())),
            };
            self.from += rows.num_rows() as u64;
            let rows = match &self.watermark {
                Some(w) => match w.watermark.filter(&rows, &mut self.state) {
                    Ok(rows) => rows,
                    Err(e) => return Some(Err(e)),
                },
                None => rows,
            };
            if rows.num_rows() > 0 {
                return Some(Ok(rows));
            }
        }
        None
    }
}

/// Errors of the source layer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An option is unknown, missing or has a bad value (`22023`); the text says which.
    #[error("{0}")]
    Option(String),
    /// A column type or connector Augur does not have (`0A000`).
    #[error("{0} is not supported")]
    NotSupported(String),
    /// Building rows failed.
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
}

/// The source layer's result type.
pub type Result<T, E = SourceError> = std::result::Result<T, E>;

impl From<SourceError> for crate::Error {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Option(m) => crate::Error::InvalidParameter(m),
            SourceError::NotSupported(what) => crate::Error::NotSupported(what),
            SourceError::Arrow(e) => crate::Error::from(e),
        }
    }
}

/// The stored definition of a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceDef {
    /// Unique id, from the tables' and views' counter.
    pub id: u32,
    /// The source's name.
    pub name: String,
    /// Its columns.
    pub columns: Vec<ColumnDef>,
    /// The `WITH (...)` options, keys lower-cased.
    pub options: BTreeMap<String, String>,
    /// When it was created (ms since 1970).
    pub created_ms: i64,
    /// `WATERMARK FOR column AS expr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<WatermarkDef>,
}

/// Rows of a source by position.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// The columns of every row.
    fn schema(&self) -> &SchemaRef;

    /// Up to `max_rows` rows starting at position `from`. Fewer (or none) when the source has
    /// no more rows yet, or ends.
    fn read(&self, from: u64, max_rows: usize) -> Result<RecordBatch>;

    /// The number of rows of a bounded source.
    fn bound(&self) -> Option<u64>;

    /// How many rows per second to read at; `None` reads as fast as possible.
    fn rate(&self) -> Option<f64>;
}

/// The value of option `key`, if given, as a `T`.
fn parse_option<T: std::str::FromStr>(
    options: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<T>> {
    options
        .get(key)
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|_| SourceError::Option(format!("invalid value '{v}' for option {key}")))
        })
        .transpose()
}

/// How many rows a read of up to `max_rows` from position `from` gets, of `bound` rows if the
/// source is bounded.
fn rows_to_read(bound: Option<u64>, from: u64, max_rows: usize) -> usize {
    match bound {
        Some(total) => (total.saturating_sub(from) as usize).min(max_rows),
        None => max_rows,
    }
}

/// `n` rows of `schema` from `columns` of the connector's own types, cast to the declared ones.
fn declared_rows(schema: &SchemaRef, columns: Vec<ArrayRef>, n: usize) -> Result<RecordBatch> {
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column)
            } else {
                datafusion::arrow::compute::cast(&column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(n));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &options,
    )?)
}

/// The columns of a source declared without any, for connectors whose rows have a fixed shape.
pub fn implied_columns(
    options: &BTreeMap<String, String>,
) -> Result<Vec<(String, datafusion::arrow::datatypes::DataType)>> {
    match options.get("connector").map(String::as_str) {
        Some("nexmark") => nexmark::columns(options),
        _ => Err(SourceError::Option(
            "a source needs a column list; only 'nexmark' sources imply their columns".into(),
        )),
    }
}

/// Opens the connector `def` names.
pub fn open(def: &SourceDef, schema: SchemaRef) -> Result<Arc<dyn Source>> {
    match def.options.get("connector").map(String::as_str) {
        Some("datagen") => Ok(Arc::new(datagen::Datagen::new(schema, &def.options)?)),
        Some("nexmark") => Ok(Arc::new(nexmark::Nexmark::new(schema, &def.options)?)),
        Some(other) => Err(SourceError::NotSupported(format!("connector '{other}'"))),
        None => Err(SourceError::Option(
            "a source needs WITH (connector = '...'); Augur has 'datagen' and 'nexmark'".into(),
        )),
    }
}
