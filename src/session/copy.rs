//! COPY: `COPY t [(cols)] FROM STDIN` and `COPY t | (query) TO STDOUT`, in PostgreSQL's text and
//! CSV formats, as psql's `\copy` sends them.
//!
//! A COPY FROM collects the rows it receives (parsed, cast to the column types and checked) and
//! writes them all in one atomic batch when the client says it is done, like any other statement.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use datafusion::arrow::datatypes::Schema;
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption, Ident};

use super::{Database, compile, evaluate};
use crate::error::{Error, Result};
use crate::sql::normalize_ident;
use crate::table::Table;
use crate::table::writer::{OnConflict, TableChanges};

/// Rows parsed before they are turned into a batch.
const CHUNK_ROWS: usize = 8192;

/// How COPY data is laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyFormat {
    /// CSV instead of PostgreSQL's text format.
    pub csv: bool,
    /// Field separator (tab for text, comma for CSV).
    pub delimiter: u8,
    /// The text that stands for NULL (`\N` for text, empty for CSV).
    pub null: String,
    /// CSV: the first line is a header.
    pub header: bool,
    /// CSV quote character.
    pub quote: u8,
    /// CSV escape character inside quotes.
    pub escape: u8,
}

impl CopyFormat {
    /// The format COPY options describe.
    pub fn from_options(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<Self> {
        let mut csv = false;
        let mut delimiter = None;
        let mut null = None;
        let mut header = false;
        let mut quote = None;
        let mut escape = None;
        for option in options {
            match option {
                CopyOption::Format(ident) => match ident.value.to_ascii_lowercase().as_str() {
                    "csv" => csv = true,
                    "text" => csv = false,
                    other => return Err(Error::NotSupported(format!("COPY format {other}"))),
                },
                CopyOption::Delimiter(c) => delimiter = Some(*c),
                CopyOption::Null(s) => null = Some(s.clone()),
                CopyOption::Header(h) => header = *h,
                CopyOption::Quote(c) => quote = Some(*c),
                CopyOption::Escape(c) => escape = Some(*c),
                CopyOption::Encoding(e)
                    if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
                other => return Err(Error::NotSupported(format!("COPY option {other}"))),
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Csv(csv_options) => {
                    csv = true;
                    for o in csv_options {
                        match o {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(c) => quote = Some(*c),
                            CopyLegacyCsvOption::Escape(c) => escape = Some(*c),
                            other => {
                                return Err(Error::NotSupported(format!("COPY option {other}")));
                            }
                        }
                    }
                }
                CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
                CopyLegacyOption::Null(s) => null = Some(s.clone()),
                CopyLegacyOption::Header => header = true,
                other => return Err(Error::NotSupported(format!("COPY option {other}"))),
            }
        }
        if header && !csv {
            return Err(Error::NotSupported("COPY HEADER in text format".into()));
        }
        let byte = |c: char, what: &str| -> Result<u8> {
            u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
                Error::coded(
                    "22023",
                    format!("COPY {what} must be a single one-byte character"),
                )
            })
        };
        let quote = byte(quote.unwrap_or('"'), "quote")?;
        Ok(Self {
            csv,
            delimiter: byte(
                delimiter.unwrap_or(if csv { ',' } else { '\t' }),
                "delimiter",
            )?,
            null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
            header,
            quote,
            escape: escape
                .map(|c| byte(c, "escape"))
                .transpose()?
                .unwrap_or(quote),
        })
    }
}

/// A COPY FROM STDIN in progress.
pub struct CopyIn {
    table: Arc<Table>,
    /// Visible column positions, in the order of the data's fields.
    columns: Vec<usize>,
    /// Compiled DEFAULT of each visible column that has one.
    defaults: Vec<Option<Arc<dyn PhysicalExpr>>>,
    format: CopyFormat,
    /// Bytes received but not yet parsed (an incomplete line or record).
    pending: Vec<u8>,
    /// Parsed rows not yet turned into a batch.
    rows: Vec<Vec<Option<String>>>,
    /// Whole stored rows, ready to write.
    batches: Vec<RecordBatch>,
    header_seen: bool,
    /// The text format's end marker `\.` arrived.
    ended: bool,
    line: usize,
    /// How long to wait for other writers (`lock_timeout`).
    lock_timeout: Option<std::time::Duration>,
    /// How dates and times are read.
    datetime: crate::catalog::pg_datetime::Context,
}

impl std::fmt::Debug for CopyIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyIn")
            .field("table", &self.table.name())
            .finish()
    }
}

impl CopyIn {
    /// Starts a COPY into `table` of `columns` (all visible columns when empty).
    pub fn new(
        db: &Database,
        table: Arc<Table>,
        columns: &[Ident],
        format: CopyFormat,
    ) -> Result<Self> {
        let visible = table.visible_schema().clone();
        let columns = if columns.is_empty() {
            (0..visible.fields().len()).collect()
        } else {
            columns
                .iter()
                .map(|c| {
                    let name = normalize_ident(c);
                    visible.index_of(&name).map_err(|_| {
                        Error::UndefinedColumn(format!(
                            "column \"{name}\" of relation \"{}\" does not exist",
                            table.name()
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        let defaults = (0..visible.fields().len())
            .map(|i| {
                table
                    .default_of(i)
                    .map(|d| compile(db, d, &DFSchema::empty()))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            table,
            columns,
            defaults,
            format,
            pending: Vec::new(),
            rows: Vec::new(),
            batches: Vec::new(),
            header_seen: false,
            ended: false,
            line: 0,
            lock_timeout: None,
            datetime: crate::catalog::pg_datetime::Context::of_settings(None, None),
        })
    }

    /// Reads dates and times as a session with these `TimeZone` and `DateStyle` settings does,
    /// `'now'` being `now_micros` (the transaction block's start) when given.
    pub fn with_datetime_settings(
        mut self,
        timezone: &str,
        datestyle: &str,
        now_micros: Option<i64>,
    ) -> Self {
        self.datetime =
            crate::catalog::pg_datetime::Context::of_settings(Some(timezone), Some(datestyle));
        if let Some(now) = now_micros {
            self.datetime.now_micros = now;
        }
        self
    }

    /// Waits at most `timeout` for other writers when the data is written.
    pub fn with_lock_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Number of fields each row must have.
    pub fn column_count(&self) -> usize {
        self.columns.len()
    }

    /// Whether the data is CSV.
    pub fn format(&self) -> &CopyFormat {
        &self.format
    }

    /// Takes the next chunk of data from the client.
    pub fn push(&mut self, data: &[u8]) -> Result<()> {
        self.pending.extend_from_slice(data);
        self.parse(false)
    }

    fn parse(&mut self, at_end: bool) -> Result<()> {
        let mut start = 0;
        let pending = std::mem::take(&mut self.pending);
        while !self.ended && start < pending.len() {
            let rest = &pending[start..];
            let parsed = if self.format.csv {
                parse_csv_record(rest, &self.format, at_end)
            } else {
                parse_text_line(rest, &self.format, at_end)
            };
            let Some((record, used)) = parsed else { break };
            start += used;
            self.line += 1;
            match record {
                Record::End => self.ended = true,
                Record::Fields(fields) => {
                    if self.format.header && !self.header_seen {
                        self.header_seen = true;
                        continue;
                    }
                    if fields.len() != self.columns.len() {
                        let what = if fields.len() < self.columns.len() {
                            "missing data for a column"
                        } else {
                            "extra data after last expected column"
                        };
                        return Err(Error::coded(
                            "22P04",
                            format!("{what} (COPY {}, line {})", self.table.name(), self.line),
                        ));
                    }
                    self.rows.push(fields);
                    if self.rows.len() >= CHUNK_ROWS {
                        self.flush_rows()?;
                    }
                }
            }
        }
        self.pending = pending[start..].to_vec();
        Ok(())
    }

    /// Turns the parsed rows into a batch of whole rows: text cast to the column types, missing
    /// columns from their DEFAULT, constraints checked.
    fn flush_rows(&mut self) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        let n = rows.len();
        let visible = self.table.visible_schema().clone();
        let mut columns: Vec<Option<ArrayRef>> = vec![None; visible.fields().len()];
        for (field_index, &column) in self.columns.iter().enumerate() {
            let values = StringArray::from_iter(rows.iter().map(|r| r[field_index].as_deref()));
            // Dates and times as PostgreSQL reads them, in the session's zone and date order.
            columns[column] = Some(
                match crate::catalog::pg_datetime::Target::of(visible.field(column).data_type()) {
                    Some(target) => {
                        crate::catalog::pg_datetime::read_column(&values, target, &self.datetime)?
                    }
                    None => Arc::new(values),
                },
            );
        }
        let empty = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )?;
        let columns = columns
            .into_iter()
            .enumerate()
            .map(|(i, column)| match column {
                Some(c) => Ok(c),
                None => match &self.defaults[i] {
                    Some(default) => evaluate(default, &empty),
                    None => Ok(datafusion::arrow::array::new_null_array(
                        visible.field(i).data_type(),
                        n,
                    )),
                },
            })
            .collect::<Result<Vec<_>>>()?;
        self.batches.push(self.table.conform(columns, None)?);
        Ok(())
    }

    /// The client finished sending: parses what is left and writes every row atomically.
    /// Returns the number of rows copied.
    pub async fn finish(mut self, db: &Database) -> Result<usize> {
        self.parse(true)?;
        if !self.pending.is_empty() && !self.ended {
            return Err(Error::coded(
                "22P04",
                format!("unterminated CSV quoted field (COPY {})", self.table.name()),
            ));
        }
        self.flush_rows()?;
        let _guard = db.write_guard(self.lock_timeout).await?;
        self.table.check_current()?;
        let mut changes = TableChanges::new(db.store(), &self.table);
        let mut count = 0;
        for batch in &self.batches {
            // Late rows (below an append-only table's watermark) are not stored or counted.
            count += changes
                .insert(batch, OnConflict::Fail)?
                .into_iter()
                .filter(|stored| *stored)
                .count();
        }
        super::foreign_keys::check_written(db, &self.table, &changes, &self.batches)?;
        changes.commit(db.log_for(self.table.def().id))?;
        Ok(count)
    }
}

enum Record {
    Fields(Vec<Option<String>>),
    /// `\.` on a line of its own.
    End,
}

fn utf8(bytes: Vec<u8>) -> Result<String, ()> {
    String::from_utf8(bytes).map_err(|_| ())
}

/// One line of the text format, if a whole line is there (or `at_end`).
fn parse_text_line(buf: &[u8], format: &CopyFormat, at_end: bool) -> Option<(Record, usize)> {
    let (line, used) = match buf.iter().position(|&b| b == b'\n') {
        Some(end) => (&buf[..end], end + 1),
        None if at_end && !buf.is_empty() => (buf, buf.len()),
        None => return None,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line == b"\\." {
        return Some((Record::End, used));
    }
    let mut fields = Vec::new();
    for raw in line.split(|&b| b == format.delimiter) {
        if raw == format.null.as_bytes() {
            fields.push(None);
            continue;
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'\\' && i + 1 < raw.len() {
                i += 1;
                match raw[i] {
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(11),
                    b'x' if i + 1 < raw.len() && raw[i + 1].is_ascii_hexdigit() => {
                        let mut value = 0u8;
                        let mut digits = 0;
                        while digits < 2 && i + 1 < raw.len() && raw[i + 1].is_ascii_hexdigit() {
                            i += 1;
                            value = value * 16 + (raw[i] as char).to_digit(16).unwrap_or(0) as u8;
                            digits += 1;
                        }
                        out.push(value);
                    }
                    d @ b'0'..=b'7' => {
                        let mut value = (d - b'0') as u32;
                        let mut digits = 1;
                        while digits < 3 && i + 1 < raw.len() && (b'0'..=b'7').contains(&raw[i + 1])
                        {
                            i += 1;
                            value = value * 8 + (raw[i] - b'0') as u32;
                            digits += 1;
                        }
                        out.push(value as u8);
                    }
                    other => out.push(other),
                }
            } else {
                out.push(raw[i]);
            }
            i += 1;
        }
        fields.push(Some(
            utf8(out).unwrap_or_else(|()| String::from_utf8_lossy(raw).into_owned()),
        ));
    }
    Some((Record::Fields(fields), used))
}

/// One CSV record, if a whole record is there (or `at_end`). Quoted fields may hold newlines;
/// an unquoted field equal to the NULL string is NULL, a quoted one never is.
fn parse_csv_record(buf: &[u8], format: &CopyFormat, at_end: bool) -> Option<(Record, usize)> {
    let mut fields = Vec::new();
    let mut field = Vec::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut i = 0;
    while i < buf.len() {
        let b = buf[i];
        if in_quotes {
            if b == format.escape
                && format.escape != format.quote
                && buf.get(i + 1) == Some(&format.quote)
            {
                field.push(format.quote);
                i += 2;
                continue;
            }
            if b == format.quote {
                if buf.get(i + 1) == Some(&format.quote) && format.escape == format.quote {
                    field.push(format.quote);
                    i += 2;
                    continue;
                }
                if i + 1 == buf.len() && !at_end {
                    return None; // the next byte decides whether this quote is doubled
                }
                in_quotes = false;
                i += 1;
                continue;
            }
            field.push(b);
            i += 1;
            continue;
        }
        if b == format.quote {
            in_quotes = true;
            quoted = true;
        } else if b == format.delimiter {
            fields.push(csv_field(std::mem::take(&mut field), quoted, format));
            quoted = false;
        } else if b == b'\n' {
            if field.last() == Some(&b'\r') && !quoted {
                field.pop();
            }
            if fields.is_empty() && !quoted && field == b"\\." {
                return Some((Record::End, i + 1));
            }
            fields.push(csv_field(field, quoted, format));
            return Some((Record::Fields(fields), i + 1));
        } else {
            field.push(b);
        }
        i += 1;
    }
    if at_end && !in_quotes && (!field.is_empty() || !fields.is_empty() || quoted) {
        if fields.is_empty() && !quoted && field == b"\\." {
            return Some((Record::End, buf.len()));
        }
        fields.push(csv_field(field, quoted, format));
        return Some((Record::Fields(fields), buf.len()));
    }
    None
}

fn csv_field(bytes: Vec<u8>, quoted: bool, format: &CopyFormat) -> Option<String> {
    if !quoted && bytes == format.null.as_bytes() {
        return None;
    }
    Some(
        String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> CopyFormat {
        CopyFormat::from_options(&[], &[]).unwrap()
    }

    fn csv() -> CopyFormat {
        CopyFormat::from_options(&[CopyOption::Format(Ident::new("csv"))], &[]).unwrap()
    }

    fn fields(r: Option<(Record, usize)>) -> (Vec<Option<String>>, usize) {
        match r {
            Some((Record::Fields(f), used)) => (f, used),
            Some((Record::End, _)) => panic!("end marker"),
            None => panic!("incomplete"),
        }
    }

    #[test]
    fn text_format_escapes_and_nulls() {
        let (f, used) = fields(parse_text_line(
            b"1\t\\N\ta\\tb\\\\c\\101\n2",
            &text(),
            false,
        ));
        assert_eq!(f, vec![Some("1".into()), None, Some("a\tb\\cA".into())]);
        assert_eq!(used, 17);
        assert!(parse_text_line(b"2\tno newline yet", &text(), false).is_none());
        assert!(matches!(
            parse_text_line(b"\\.\n", &text(), false),
            Some((Record::End, 3))
        ));
    }

    #[test]
    fn csv_quotes_newlines_and_nulls() {
        let data = b"1,\"a,b\",,\"\"\n2,\"line\nbreak\",\"say \"\"hi\"\"\",x\n";
        let (f, used) = fields(parse_csv_record(data, &csv(), false));
        assert_eq!(
            f,
            vec![Some("1".into()), Some("a,b".into()), None, Some("".into())]
        );
        let (f, _) = fields(parse_csv_record(&data[used..], &csv(), false));
        assert_eq!(
            f,
            vec![
                Some("2".into()),
                Some("line\nbreak".into()),
                Some("say \"hi\"".into()),
                Some("x".into())
            ]
        );
        assert!(parse_csv_record(b"3,\"open", &csv(), false).is_none());
        let (f, _) = fields(parse_csv_record(b"4,last", &csv(), true));
        assert_eq!(f, vec![Some("4".into()), Some("last".into())]);
    }
}
