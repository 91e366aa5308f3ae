//! A source as DataFusion sees it: `SELECT ... FROM source` reads the rows the views have
//! committed, regenerated from their positions — the same rows, at the same epoch, that every
//! view over the source has seen.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

use super::{OnTimeRows, Source, SourceWatermark};

/// A source, with how far the views have read it.
#[derive(Debug, Clone)]
pub struct SourceScan {
    /// The source's id.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Its rows.
    pub source: Arc<dyn Source>,
    /// Rows read and committed by the views.
    pub committed: Arc<AtomicU64>,
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
            end: self.committed.load(Ordering::SeqCst),
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
    end: u64,
    batch_size: usize,
}

impl PartitionStream for Rows {
    fn schema(&self) -> &SchemaRef {
        self.source.schema()
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let rows = OnTimeRows::new(
            self.source.clone(),
            self.watermark.clone(),
            self.end,
            self.batch_size,
        )
        .map(|rows| rows.map_err(|e| DataFusionError::External(Box::new(e))));
        Box::pin(RecordBatchStreamAdapter::new(
            self.source.schema().clone(),
            futures::stream::iter(rows),
        ))
    }
}
