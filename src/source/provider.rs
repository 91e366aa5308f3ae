//! A source as DataFusion sees it: `SELECT ... FROM source` reads the rows the views have
//! committed, regenerated from their positions — the same rows, at the same epoch, that every
//! view over the source has seen.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};

use super::{OnTimeRows, Source, SourceProgress, SourceWatermark, Splits};

/// A source, with how far the views have read it.
#[derive(Debug, Clone)]
pub struct SourceScan {
    /// The source's id.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Its rows.
    pub source: Arc<dyn Source>,
    /// How far the views have read and committed.
    pub progress: Arc<SourceProgress>,
    /// The source's watermark, if it has one: late rows are not shown.
    pub watermark: Option<Arc<SourceWatermark>>,
}

#[async_trait]
impl TableProvider for SourceScan {
    fn schema(&self) -> SchemaRef {
        self.source.schema().clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let partition = Arc::new(Rows {
            source: self.source.clone(),
            watermark: self.watermark.clone(),
            until: self.progress.committed(),
            batch_size: state.config().batch_size(),
        });
        Ok(Arc::new(StreamingTableExec::try_new(
            self.source.schema().clone(),
            vec![partition],
            projection,
            [],
            false,
            limit,
        )?))
    }
}

#[derive(Debug)]
struct Rows {
    source: Arc<dyn Source>,
    watermark: Option<Arc<SourceWatermark>>,
    until: Splits,
    batch_size: usize,
}

impl PartitionStream for Rows {
    fn schema(&self) -> &SchemaRef {
        self.source.schema()
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let schema = self.source.schema().clone();
        let rows = match OnTimeRows::new(
            &self.source,
            self.watermark.clone(),
            &self.until,
            self.batch_size,
        ) {
            Ok(rows) => rows,
            Err(e) => {
                let error = DataFusionError::External(Box::new(crate::Error::from(e)));
                return Box::pin(RecordBatchStreamAdapter::new(
                    schema,
                    futures::stream::once(async move { Err(error) }),
                ));
            }
        };
        // A re-read may wait on the network: it runs off the async threads.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::task::spawn_blocking(move || {
            for rows in rows {
                let rows = rows.map_err(|e| DataFusionError::External(Box::new(e)));
                if tx.blocking_send(rows).is_err() {
                    return;
                }
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|rows| (rows, rx))
            }),
        ))
    }
}
