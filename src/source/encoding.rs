//! Record encodings: `ENCODE JSON`, `ENCODE CSV` and `ENCODE AVRO` payloads into Arrow rows, one
//! record per row, and the records that cannot be read set aside with the reason.
//!
//! Records are decoded in batches with Arrow's readers (`arrow-json`, `arrow-csv`, `arrow-avro`,
//! see [`super::avro`] for the schema registry). A bad
//! record must cost one row, not its batch: Arrow's decoders cannot resume after an error, so
//! when a batch fails it is decoded again record by record, and only the records that fail
//! alone are rejected.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use datafusion::arrow::compute::{CastOptions, cast_with_options, concat_batches};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;

use super::avro::AvroFormat;
use super::{Result, SourceError};

/// How a record's payload is written.
#[derive(Debug, Clone)]
pub enum Encoding {
    /// One JSON object per record: fields by name, missing ones NULL, unknown ones ignored.
    Json,
    /// One line of delimited values per record, columns by position.
    Csv {
        /// The field delimiter.
        delimiter: u8,
        /// Whether a record may be a header line (the column names), which is skipped.
        header: bool,
    },
    /// Avro in the Confluent wire format, schemas from a schema registry.
    Avro(Arc<AvroFormat>),
}

impl Encoding {
    /// The encoding `ENCODE name (options)` names.
    pub fn new(name: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let known: &[&str] = match name.to_ascii_lowercase().as_str() {
            "json" => &[],
            "csv" => &["delimiter", "without_header"],
            "avro" => super::avro::OPTIONS,
            other => {
                return Err(SourceError::NotSupported(format!(
                    "ENCODE {} (Augur reads JSON, CSV and AVRO)",
                    other.to_uppercase()
                )));
            }
        };
        if let Some(unknown) = options.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(SourceError::Option(format!(
                "unknown option {unknown} for ENCODE {}",
                name.to_uppercase()
            )));
        }
        if known.is_empty() {
            return Ok(Self::Json);
        }
        if name.eq_ignore_ascii_case("avro") {
            return Ok(Self::Avro(Arc::new(AvroFormat::new(options)?)));
        }
        let delimiter = match options.get("delimiter").map(String::as_str) {
            None => b',',
            Some("\\t") => b'\t',
            Some(d) if d.len() == 1 => d.as_bytes()[0],
            Some(d) => {
                return Err(SourceError::Option(format!(
                    "invalid value '{d}' for option delimiter: one character"
                )));
            }
        };
        let header = match options.get("without_header").map(String::as_str) {
            None | Some("true") => false,
            Some("false") => true,
            Some(v) => {
                return Err(SourceError::Option(format!(
                    "invalid value '{v}' for option without_header: 'true' or 'false'"
                )));
            }
        };
        Ok(Self::Csv { delimiter, header })
    }
}

/// Records that could not be read: their index in the batch and why.
pub type Failures = Vec<(usize, String)>;

/// Reads payloads of one encoding into rows of a schema.
#[derive(Debug, Clone)]
pub struct RecordDecoder {
    schema: SchemaRef,
    encoding: Encoding,
}

impl RecordDecoder {
    /// Reads `encoding` into rows of `schema`.
    pub fn new(schema: SchemaRef, encoding: Encoding) -> Self {
        Self { schema, encoding }
    }

    /// The encoding.
    pub fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    /// The columns of the rows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Readies what decoding `payloads` needs from outside (Avro's writer schemas): an error,
    /// to retry later, only if an outside system cannot be reached.
    pub fn resolve<'a>(&self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Result<()> {
        match &self.encoding {
            Encoding::Avro(format) => format.resolve(payloads),
            _ => Ok(()),
        }
    }

    /// The rows of `payloads`, in order, and the records that gave none: which ones (by index)
    /// and why. A record that is a header line gives no row and is not a failure; its index is
    /// in neither.
    pub fn decode(&self, payloads: &[&[u8]]) -> (RecordBatch, Vec<usize>, Failures) {
        let mut kept: Vec<usize> = Vec::with_capacity(payloads.len());
        let mut failures = Failures::new();
        let mut batch = Vec::with_capacity(payloads.len());
        for (i, payload) in payloads.iter().enumerate() {
            if payload.iter().all(u8::is_ascii_whitespace) {
                failures.push((i, "empty record".into()));
            } else if self.is_header(payload) {
                continue;
            } else {
                kept.push(i);
                batch.push(*payload);
            }
        }
        if let Ok(rows) = self.decode_all(&batch) {
            return (rows, kept, failures);
        }
        // Some record is bad: read each alone and keep the ones that read.
        let mut parts = Vec::with_capacity(batch.len());
        let mut good = Vec::with_capacity(batch.len());
        for (payload, index) in batch.iter().zip(&kept) {
            match self.decode_all(&[payload]) {
                Ok(rows) => {
                    parts.push(rows);
                    good.push(*index);
                }
                Err(e) => failures.push((*index, e)),
            }
        }
        failures.sort_by_key(|(i, _)| *i);
        let rows = concat_batches(&self.schema, &parts)
            .unwrap_or_else(|_| RecordBatch::new_empty(self.schema.clone()));
        (rows, good, failures)
    }

    /// Whether `payload` is a CSV header line: the column names, where a header may come.
    fn is_header(&self, payload: &[u8]) -> bool {
        let Encoding::Csv {
            delimiter,
            header: true,
        } = self.encoding
        else {
            return false;
        };
        let line = String::from_utf8_lossy(payload);
        let fields: Vec<&str> = line
            .trim_end_matches(['\r', '\n'])
            .split(delimiter as char)
            .map(|f| f.trim().trim_matches('"'))
            .collect();
        fields.len() == self.schema.fields().len()
            && fields
                .iter()
                .zip(self.schema.fields())
                .all(|(f, field)| f.eq_ignore_ascii_case(field.name()))
    }

    /// Every payload as one row each, or the first error.
    fn decode_all(&self, payloads: &[&[u8]]) -> Result<RecordBatch, String> {
        let rows = match &self.encoding {
            Encoding::Json => self.json(payloads),
            Encoding::Csv { delimiter, .. } => self.csv(payloads, *delimiter),
            Encoding::Avro(format) => return self.avro(format, payloads),
        }
        .map_err(|e| e.to_string())?;
        if rows.num_rows() != payloads.len() {
            return Err(format!(
                "a record must hold one row; {} records held {}",
                payloads.len(),
                rows.num_rows()
            ));
        }
        Ok(rows)
    }

    fn json(&self, payloads: &[&[u8]]) -> Result<RecordBatch, ArrowError> {
        let mut decoder = datafusion::arrow::json::ReaderBuilder::new(self.schema.clone())
            .with_batch_size(payloads.len().max(1))
            .with_coerce_primitive(true)
            .build_decoder()?;
        for payload in payloads {
            let before = decoder.len();
            let mut rest: &[u8] = payload;
            while !rest.is_empty() {
                let read = decoder.decode(rest)?;
                if read == 0 {
                    break;
                }
                rest = &rest[read..];
            }
            if decoder.has_partial_record()
                || decoder.len() != before + 1
                || !rest.iter().all(u8::is_ascii_whitespace)
            {
                return Err(ArrowError::JsonError(
                    "a record must be one complete JSON object".into(),
                ));
            }
        }
        Ok(decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone())))
    }

    fn avro(&self, format: &AvroFormat, payloads: &[&[u8]]) -> Result<RecordBatch, String> {
        let mut parts = Vec::new();
        for decoded in format.decode(payloads)? {
            parts.extend(decoded.project(&self.schema)?);
        }
        concat_batches(&self.schema, &parts).map_err(|e| e.to_string())
    }

    fn csv(&self, payloads: &[&[u8]], delimiter: u8) -> Result<RecordBatch, ArrowError> {
        let mut decoder = datafusion::arrow::csv::ReaderBuilder::new(self.schema.clone())
            .with_delimiter(delimiter)
            .with_header(false)
            .with_batch_size(payloads.len().max(1))
            .build_decoder();
        let mut text = Vec::with_capacity(payloads.iter().map(|p| p.len() + 1).sum());
        for payload in payloads {
            let line = payload
                .strip_suffix(b"\n")
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .unwrap_or(payload);
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        let mut rest: &[u8] = &text;
        while !rest.is_empty() {
            let read = decoder.decode(rest)?;
            if read == 0 {
                break;
            }
            rest = &rest[read..];
        }
        Ok(decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone())))
    }
}

/// The position of the field of `schema` called `name`: exactly so named, else the same name
/// ignoring case.
pub fn field_index(schema: &datafusion::arrow::datatypes::Schema, name: &str) -> Option<usize> {
    schema.index_of(name).ok().or_else(|| {
        schema
            .fields()
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(name))
    })
}

/// The rows of `part` as columns of `schema`, matched by name (exactly, else ignoring case): a
/// column no field has is NULL; values are cast to the column's type, an error if one does not
/// fit, and a NULL in a NOT NULL column is an error. For records whose writer says the names
/// (Avro, Parquet).
pub fn by_name(part: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, String> {
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let found = field_index(part.schema_ref(), field.name()).map(|i| part.column(i));
        let column = match found {
            None => new_null_array(field.data_type(), part.num_rows()),
            Some(c) if c.data_type() == field.data_type() => c.clone(),
            Some(c) => cast_with_options(c, field.data_type(), &options)
                .map_err(|e| format!("field {}: {e}", field.name()))?,
        };
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(format!("field {} is null", field.name()));
        }
        columns.push(column);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(part.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(|e| e.to_string())
}

/// [`by_name`], a bad row costing only itself: the rows that fit, which rows of `part` they
/// are, and the rows that do not with why.
pub fn by_name_rows(part: &RecordBatch, schema: &SchemaRef) -> (RecordBatch, Vec<usize>, Failures) {
    if let Ok(rows) = by_name(part, schema) {
        return (rows, (0..part.num_rows()).collect(), Failures::new());
    }
    let mut parts = Vec::new();
    let mut kept = Vec::new();
    let mut failures = Failures::new();
    for i in 0..part.num_rows() {
        match by_name(&part.slice(i, 1), schema) {
            Ok(row) => {
                parts.push(row);
                kept.push(i);
            }
            Err(e) => failures.push((i, e)),
        }
    }
    let rows =
        concat_batches(schema, &parts).unwrap_or_else(|_| RecordBatch::new_empty(schema.clone()));
    (rows, kept, failures)
}

/// Row `i` of `rows` as a line of JSON, to keep as a rejected record's payload.
pub fn row_json(rows: &RecordBatch, i: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
    if writer
        .write(&rows.slice(i, 1))
        .and_then(|()| writer.finish())
        .is_err()
    {
        return Vec::new();
    }
    while out.last() == Some(&b'\n') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
        ]))
    }

    fn ids(rows: &RecordBatch) -> Vec<Option<i64>> {
        let ids = rows
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        ids.iter().collect()
    }

    #[test]
    fn json_fields_by_name_missing_null_unknown_ignored() {
        let decoder = RecordDecoder::new(schema(), Encoding::Json);
        let payloads: Vec<&[u8]> = vec![
            br#"{"id": 1, "name": "a", "amount": 2.5}"#,
            br#"{"amount": 3, "id": 2, "extra": {"x": 1}}"#,
            br#"{"id": "3", "name": 7}"#,
        ];
        let (rows, kept, failures) = decoder.decode(&payloads);
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(kept, vec![0, 1, 2]);
        assert_eq!(ids(&rows), vec![Some(1), Some(2), Some(3)]);
        let names = rows
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert!(names.is_null(1));
        assert_eq!(names.value(2), "7");
        let amounts = rows
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(amounts.value(1), 3.0);
    }

    #[test]
    fn a_bad_json_record_costs_one_row() {
        let decoder = RecordDecoder::new(schema(), Encoding::Json);
        let payloads: Vec<&[u8]> = vec![
            br#"{"id": 1}"#,
            br#"{"id": 2"#,
            br#"{"id": "two"}"#,
            br#"{"id": 4} {"id": 5}"#,
            b"",
            br#"{"id": 6}"#,
        ];
        let (rows, kept, failures) = decoder.decode(&payloads);
        assert_eq!(ids(&rows), vec![Some(1), Some(6)]);
        assert_eq!(kept, vec![0, 5]);
        let bad: Vec<usize> = failures.iter().map(|(i, _)| *i).collect();
        assert_eq!(bad, vec![1, 2, 3, 4]);
    }

    #[test]
    fn csv_by_position_with_header_lines_skipped() {
        let options = BTreeMap::from([
            ("delimiter".to_string(), "|".to_string()),
            ("without_header".to_string(), "false".to_string()),
        ]);
        let encoding = Encoding::new("csv", &options).unwrap();
        let decoder = RecordDecoder::new(schema(), encoding);
        let payloads: Vec<&[u8]> = vec![b"id|name|amount", b"1|a|2.5\n", b"x|b|1", b"3||"];
        let (rows, kept, failures) = decoder.decode(&payloads);
        assert_eq!(ids(&rows), vec![Some(1), Some(3)]);
        assert_eq!(kept, vec![1, 3]);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].0, 2);
    }

    #[test]
    fn unknown_encodings_and_options_are_refused() {
        assert!(Encoding::new("protobuf", &BTreeMap::new()).is_err());
        let options = BTreeMap::from([("delimter".to_string(), ",".to_string())]);
        assert!(Encoding::new("csv", &options).is_err());
    }
}
