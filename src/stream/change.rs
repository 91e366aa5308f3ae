//! Change batches: an Arrow batch of rows with a weight per row.
//!
//! A weight of `+1` inserts the row, `-1` retracts it; an update is a retraction of the old row
//! and an insertion of the new one. Weights other than ±1 appear when changes are consolidated
//! (two inserts of one row are one row with weight 2). Every operator consumes and produces
//! change batches, so deletes flow through a view the same way inserts do.

use std::collections::HashMap;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, RecordBatchOptions,
};
use datafusion::arrow::compute::{cast, filter, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;

use super::Result;

/// Rows and their weights.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    rows: RecordBatch,
    weights: Int64Array,
}

impl ChangeBatch {
    /// Pairs `rows` with `weights` (one per row, never null).
    pub fn new(rows: RecordBatch, weights: Int64Array) -> Self {
        debug_assert_eq!(rows.num_rows(), weights.len());
        Self { rows, weights }
    }

    /// Every row of `rows` inserted once.
    pub fn inserts(rows: RecordBatch) -> Self {
        let weights = Int64Array::from(vec![1; rows.num_rows()]);
        Self { rows, weights }
    }

    /// The rows.
    pub fn rows(&self) -> &RecordBatch {
        &self.rows
    }

    /// The weight of each row.
    pub fn weights(&self) -> &Int64Array {
        &self.weights
    }

    /// The rows' schema.
    pub fn schema(&self) -> SchemaRef {
        self.rows.schema()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.num_rows()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.num_rows() == 0
    }

    /// The rows where `mask` is true (a null in `mask` counts as false).
    pub fn filter(&self, mask: &BooleanArray) -> Result<Self> {
        let rows = filter_record_batch(&self.rows, mask)?;
        let weights = filter(&self.weights, mask)?;
        Ok(Self {
            rows,
            weights: weights
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .unwrap_or_else(|| Int64Array::from(Vec::<i64>::new())),
        })
    }

    /// The same weights over other columns (one per row), cast where needed to the types of
    /// `schema`.
    pub fn with_columns(&self, schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<Self> {
        Ok(Self {
            rows: rows_of(schema, columns, self.len())?,
            weights: self.weights.clone(),
        })
    }
}

/// `n` rows of `schema` from `columns`, each cast to its field's type where it differs (an
/// expression's type may be wider than the planned column's, a join's padding is untyped
/// NULLs).
pub fn rows_of(schema: SchemaRef, columns: Vec<ArrayRef>, n: usize) -> Result<RecordBatch> {
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(column, field)| cast(&column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(n));
    Ok(RecordBatch::try_new_with_options(
        schema, columns, &options,
    )?)
}

/// Sums the weights of equal rows given as `(row key, weight)`, dropping rows whose weights
/// cancel. The result is in first-seen order of the keys.
///
/// Most calls sum a handful of rows (a key's old and new versions), so equal rows are found by
/// a linear search until there are more than [`LINEAR_CONSOLIDATION`], then through a hash map.
pub fn consolidate<K: std::hash::Hash + Eq + Clone>(
    rows: impl IntoIterator<Item = (K, i64)>,
) -> Vec<(K, i64)> {
    let mut sums: Vec<(K, i64)> = Vec::new();
    let mut index: Option<HashMap<K, usize>> = None;
    for (key, weight) in rows {
        let at = match &index {
            Some(index) => index.get(&key).copied(),
            None => sums.iter().position(|(k, _)| *k == key),
        };
        match at {
            Some(at) => sums[at].1 += weight,
            None => {
                if let Some(index) = &mut index {
                    index.insert(key.clone(), sums.len());
                }
                sums.push((key, weight));
                if index.is_none() && sums.len() > LINEAR_CONSOLIDATION {
                    index = Some(
                        sums.iter()
                            .enumerate()
                            .map(|(i, (k, _))| (k.clone(), i))
                            .collect(),
                    );
                }
            }
        }
    }
    sums.retain(|(_, weight)| *weight != 0);
    sums
}

/// Up to this many distinct rows, [`consolidate`] searches linearly.
const LINEAR_CONSOLIDATION: usize = 16;

#[cfg(test)]
pub mod pretty {
    //! Change batches written as small text tables, for operator tests:
    //!
    //! ```text
    //!   I  T     F
    //! + 1  a     1.5
    //! - 2  .     2.0
    //! ```
    //!
    //! The first line gives column types (`I` BIGINT, `i` INT, `F` DOUBLE, `T` TEXT, `B`
    //! BOOLEAN); each further line starts with `+`, `-` or a signed weight; `.` is NULL.

    use std::collections::BTreeMap;
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    use datafusion::common::ScalarValue;

    use super::ChangeBatch;

    /// The schema with columns `c0`, `c1`, ... of the given type letters.
    pub fn schema(types: &str) -> SchemaRef {
        let fields = types
            .split_whitespace()
            .enumerate()
            .map(|(i, t)| Field::new(format!("c{i}"), type_of(t), true))
            .collect::<Vec<_>>();
        Arc::new(Schema::new(fields))
    }

    fn type_of(letter: &str) -> DataType {
        match letter {
            "I" => DataType::Int64,
            "i" => DataType::Int32,
            "F" => DataType::Float64,
            "T" => DataType::Utf8,
            "B" => DataType::Boolean,
            other => panic!("unknown type letter {other}"),
        }
    }

    /// Parses a change batch; see the module docs.
    pub fn changes(text: &str) -> ChangeBatch {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let types = lines.next().expect("a line of types");
        let schema = schema(types);
        changes_of(&schema, lines)
    }

    /// Parses rows (without the type line) for `schema`.
    pub fn changes_of<'a>(
        schema: &SchemaRef,
        lines: impl IntoIterator<Item = &'a str>,
    ) -> ChangeBatch {
        let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::new(); schema.fields().len()];
        let mut weights = Vec::new();
        for line in lines {
            let mut parts = line.split_whitespace();
            let weight = match parts.next().expect("a weight") {
                "+" => 1,
                "-" => -1,
                w => w.parse().expect("a weight"),
            };
            weights.push(weight);
            for (i, field) in schema.fields().iter().enumerate() {
                let text = parts.next().expect("a value per column");
                let value = if text == "." {
                    ScalarValue::try_from(field.data_type()).unwrap()
                } else {
                    ScalarValue::try_from_string(text.to_string(), field.data_type()).unwrap()
                };
                columns[i].push(value);
            }
        }
        let arrays = columns
            .into_iter()
            .zip(schema.fields())
            .map(|(values, field)| {
                if values.is_empty() {
                    datafusion::arrow::array::new_empty_array(field.data_type())
                } else {
                    ScalarValue::iter_to_array(values).unwrap()
                }
            })
            .collect();
        ChangeBatch::new(
            RecordBatch::try_new(schema.clone(), arrays).unwrap(),
            Int64Array::from(weights),
        )
    }

    /// The net effect of `batches` as lines `+ 1 a` (weights summed per row, zero sums
    /// dropped), ordered by the rows' text: what a test compares.
    pub fn net(batches: &[ChangeBatch]) -> Vec<String> {
        let mut sums: BTreeMap<String, i64> = BTreeMap::new();
        let options = FormatOptions::default().with_null(".");
        for batch in batches {
            let formatters: Vec<_> = batch
                .rows()
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                .collect();
            for row in 0..batch.len() {
                let line = formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect::<Vec<_>>()
                    .join(" ");
                *sums.entry(line).or_default() += batch.weights().value(row);
            }
        }
        sums.into_iter()
            .filter(|(_, w)| *w != 0)
            .map(|(line, w)| match w {
                1 => format!("+ {line}"),
                -1 => format!("- {line}"),
                w => format!("{w:+} {line}"),
            })
            .collect()
    }
}
