//! COPY on the wire: the data of `COPY ... FROM STDIN` as it arrives, and the rows of
//! `COPY ... TO STDOUT` encoded as CopyData messages. Parsing and writing the rows is the
//! session's ([`crate::session::copy`]).

use std::fmt::Debug;
use std::sync::Arc;

use arrow_pg::encoder::encode_value;
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::{
    CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, FieldInfo, Tag,
};
use pgwire::api::{ClientInfo, SessionExtensions};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};

use super::handler::{Queries, to_pgwire};
use crate::error::Error;
use crate::session::copy::{CopyFormat, CopyIn};

/// The COPY FROM STDIN a connection is receiving data for.
pub(super) struct PendingCopy(std::sync::Mutex<Option<CopyState>>);

enum CopyState {
    Receiving(CopyIn),
    /// The data was bad; the rest is ignored until the client ends the COPY.
    Failed(Error),
}

/// Remembers the COPY FROM STDIN whose data the connection now receives.
pub(super) fn start_copy_in(extensions: &SessionExtensions, copy: CopyIn) {
    extensions.insert(PendingCopy(std::sync::Mutex::new(Some(
        CopyState::Receiving(copy),
    ))));
}

/// Encodes rows for `COPY ... TO STDOUT`: one CopyData message per row (after a header line for
/// CSV with HEADER).
pub(super) fn copy_out(
    schema: SchemaRef,
    fields: Arc<Vec<FieldInfo>>,
    stream: SendableRecordBatchStream,
    format: CopyFormat,
) -> CopyResponse {
    let columns = fields.len();
    let header = (format.csv && format.header).then(|| {
        let delimiter = (format.delimiter as char).to_string();
        let names: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| csv_quote(f.name(), &format))
            .collect();
        Ok(CopyData::new(Bytes::from(format!(
            "{}\n",
            names.join(&delimiter)
        ))))
    });
    let new_encoder = {
        let fields = fields.clone();
        let format = format.clone();
        move || {
            if format.csv {
                CopyEncoder::new_csv(
                    fields.clone(),
                    CopyCsvOptions {
                        delimiter: (format.delimiter as char).to_string().into(),
                        quote: (format.quote as char).to_string().into(),
                        escape: (format.escape as char).to_string().into(),
                        null_string: format.null.clone().into(),
                        force_quote: vec![],
                    },
                )
            } else {
                CopyEncoder::new_text(
                    fields.clone(),
                    CopyTextOptions {
                        delimiter: (format.delimiter as char).to_string().into(),
                        null_string: format.null.clone().into(),
                    },
                )
            }
        }
    };
    let widths = crate::catalog::pg_char::padded_widths(&schema);
    let rows = stream
        .map(move |batch| {
            let rows: Vec<PgWireResult<CopyData>> = match batch {
                Ok(batch) => {
                    let batch = crate::catalog::pg_char::pad_batch(batch, &widths);
                    let mut encoder = new_encoder();
                    let mut out = Vec::with_capacity(batch.num_rows());
                    'rows: for row in 0..batch.num_rows() {
                        for (i, column) in batch.columns().iter().enumerate() {
                            if let Err(e) = encode_value(
                                &mut encoder,
                                column,
                                row,
                                batch.schema().field(i),
                                &fields[i],
                            ) {
                                out.push(Err(e));
                                break 'rows;
                            }
                        }
                        out.push(Ok(encoder.take_copy()));
                    }
                    out
                }
                Err(e) => vec![Err(to_pgwire(Error::from(e)))],
            };
            futures::stream::iter(rows)
        })
        .flatten();
    CopyResponse::new(0, columns, futures::stream::iter(header).chain(rows))
}

fn csv_quote(value: &str, format: &CopyFormat) -> String {
    let quote = format.quote as char;
    let needs = value.is_empty()
        || value.contains(format.delimiter as char)
        || value.contains(quote)
        || value.contains('\n')
        || value.contains('\r');
    if needs {
        format!(
            "{quote}{}{quote}",
            value.replace(quote, &format!("{quote}{quote}"))
        )
    } else {
        value.to_string()
    }
}

#[async_trait]
impl CopyHandler for Queries {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(pending) = client.session_extensions().get::<PendingCopy>() else {
            return Err(to_pgwire(Error::coded(
                "08P01",
                "CopyData without a COPY in progress",
            )));
        };
        let mut state = pending.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(CopyState::Receiving(copy)) = state.as_mut()
            && let Err(e) = copy.push(&copy_data.data)
        {
            *state = Some(CopyState::Failed(e));
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = client
            .session_extensions()
            .get::<PendingCopy>()
            .and_then(|pending| pending.0.lock().unwrap_or_else(|e| e.into_inner()).take());
        let copy = match state {
            Some(CopyState::Receiving(copy)) => copy,
            Some(CopyState::Failed(e)) => return Err(to_pgwire(e)),
            None => {
                return Err(to_pgwire(Error::coded(
                    "08P01",
                    "CopyDone without a COPY in progress",
                )));
            }
        };
        let rows = copy.finish(&self.db).await.map_err(to_pgwire)?;
        client
            .send(PgWireBackendMessage::CommandComplete(
                Tag::new("COPY").with_rows(rows).into(),
            ))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(pending) = client.session_extensions().get::<PendingCopy>() {
            pending.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
        to_pgwire(Error::coded(
            "57014",
            format!("COPY from stdin failed: {}", fail.message),
        ))
    }
}
