//! One view's dataflow: a tree of operators with the view's [`MaterializeOp`] at the root and
//! one leaf per relation the query reads.
//!
//! Nodes are kept children-first, so that walking them in order visits every operator after
//! all of its inputs: that is the order barriers take.
//!
//! [`MaterializeOp`]: super::materialize::MaterializeOp

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::SchemaRef;

use super::{ChangeBatch, Operator, Result, Watermark};
use crate::storage::WriteBatch;

/// Where a node sends its output: the parent's position and which of its inputs.
#[derive(Debug, Clone, Copy)]
pub struct Edge {
    /// Position of the parent.
    pub node: usize,
    /// Input number at the parent (0, or 1 for a join's right input).
    pub side: usize,
}

#[derive(Debug)]
struct Node {
    op: Box<dyn Operator>,
    parent: Option<Edge>,
}

/// The dataflow of one view.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    /// `(relation id, leaf node)`: changes of that relation enter the dataflow there.
    leaves: Vec<(u32, usize)>,
}

impl Graph {
    /// Adds `op` (whose inputs were added before it) and returns its position.
    pub fn add(&mut self, op: Box<dyn Operator>) -> usize {
        self.nodes.push(Node { op, parent: None });
        self.nodes.len() - 1
    }

    /// Number of operators so far (the position the next one gets).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True before the first operator is added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Connects the output of `child` to input `side` of `parent`.
    pub fn connect(&mut self, child: usize, parent: usize, side: usize) {
        self.nodes[child].parent = Some(Edge { node: parent, side });
    }

    /// Marks `node` as where changes of relation `input` enter.
    pub fn add_leaf(&mut self, input: u32, node: usize) {
        self.leaves.push((input, node));
    }

    /// The relations this dataflow reads, each once.
    pub fn inputs(&self) -> Vec<u32> {
        let mut inputs: Vec<u32> = self.leaves.iter().map(|(id, _)| *id).collect();
        inputs.sort_unstable();
        inputs.dedup();
        inputs
    }

    /// Whether changes of relation `input` enter this dataflow.
    pub fn reads(&self, input: u32) -> bool {
        self.leaves.iter().any(|(id, _)| *id == input)
    }

    /// The leaves where relation `input` enters.
    fn leaves_of(&self, input: u32) -> Vec<usize> {
        self.leaves
            .iter()
            .filter(|(id, _)| *id == input)
            .map(|(_, node)| *node)
            .collect()
    }

    /// Feeds changes of relation `input` in; returns the changes that reach the root's output.
    pub fn push(&mut self, input: u32, changes: &ChangeBatch) -> Result<Vec<ChangeBatch>> {
        let mut root_out = Vec::new();
        for leaf in self.leaves_of(input) {
            self.deliver(leaf, 0, changes.clone(), &mut root_out)?;
        }
        Ok(root_out)
    }

    fn deliver(
        &mut self,
        node: usize,
        side: usize,
        changes: ChangeBatch,
        root_out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        let mut out = Vec::new();
        self.nodes[node].op.process(side, changes, &mut out)?;
        self.forward(node, out, root_out)
    }

    fn forward(
        &mut self,
        node: usize,
        out: Vec<ChangeBatch>,
        root_out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        match self.nodes[node].parent {
            Some(edge) => {
                for batch in out {
                    if !batch.is_empty() {
                        self.deliver(edge.node, edge.side, batch, root_out)?;
                    }
                }
            }
            None => root_out.extend(out.into_iter().filter(|b| !b.is_empty())),
        }
        Ok(())
    }

    /// Feeds a watermark of relation `input` in (`column` is a position in the relation's
    /// rows); returns the watermarks that reach the root's output.
    pub fn watermark(&mut self, input: u32, watermark: &Watermark) -> Result<Vec<Watermark>> {
        let mut root_out = Vec::new();
        for leaf in self.leaves_of(input) {
            self.deliver_watermark(leaf, 0, watermark.clone(), &mut root_out)?;
        }
        Ok(root_out)
    }

    fn deliver_watermark(
        &mut self,
        node: usize,
        side: usize,
        watermark: Watermark,
        root_out: &mut Vec<Watermark>,
    ) -> Result<()> {
        let mut out = Vec::new();
        self.nodes[node]
            .op
            .on_watermark(side, watermark, &mut out)?;
        self.forward_watermarks(node, out, root_out)
    }

    fn forward_watermarks(
        &mut self,
        node: usize,
        out: Vec<Watermark>,
        root_out: &mut Vec<Watermark>,
    ) -> Result<()> {
        match self.nodes[node].parent {
            Some(edge) => {
                for watermark in out {
                    self.deliver_watermark(edge.node, edge.side, watermark, root_out)?;
                }
            }
            None => root_out.extend(out),
        }
        Ok(())
    }

    /// Ends the epoch: every operator, inputs first, emits what it held back, then the
    /// watermarks it held with it. Returns the changes of the view's output, and the watermarks
    /// that follow them.
    pub fn barrier(&mut self) -> Result<(Vec<ChangeBatch>, Vec<Watermark>)> {
        let mut root_out = Vec::new();
        let mut root_watermarks = Vec::new();
        for node in 0..self.nodes.len() {
            let mut out = Vec::new();
            self.nodes[node].op.on_barrier(&mut out)?;
            self.forward(node, out, &mut root_out)?;
            let mut held = Vec::new();
            self.nodes[node].op.held_watermarks(&mut held);
            self.forward_watermarks(node, held, &mut root_watermarks)?;
        }
        Ok((root_out, root_watermarks))
    }

    /// Adds every operator's changed state to `batch`.
    pub fn checkpoint(&mut self, batch: &mut WriteBatch) -> Result<()> {
        for node in &mut self.nodes {
            node.op.checkpoint(batch)?;
        }
        Ok(())
    }

    /// Lets operators drop cached state that is safely stored.
    pub fn evict(&mut self) {
        for node in &mut self.nodes {
            node.op.evict();
        }
    }

    /// The plan as an indented tree, root first, for EXPLAIN.
    pub fn explain(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(root) = self.nodes.len().checked_sub(1) {
            self.explain_node(root, 0, &mut lines);
        }
        lines
    }

    fn explain_node(&self, node: usize, depth: usize, lines: &mut Vec<String>) {
        lines.push(format!(
            "{}{}",
            "  ".repeat(depth),
            self.nodes[node].op.explain()
        ));
        let mut children: Vec<(usize, usize)> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.parent.filter(|e| e.node == node).map(|e| (e.side, i)))
            .collect();
        children.sort();
        for (_, child) in children {
            self.explain_node(child, depth + 1, lines);
        }
    }
}

/// A leaf: takes the changes of a relation (whole stored rows) and keeps the columns the query
/// reads.
#[derive(Debug)]
pub struct ScanOp {
    name: String,
    /// Positions of the kept columns in the relation's rows.
    columns: Vec<usize>,
    schema: SchemaRef,
}

impl ScanOp {
    /// Reads relation `name`, keeping `columns` as `schema`.
    pub fn new(name: String, columns: Vec<usize>, schema: SchemaRef) -> Self {
        Self {
            name,
            columns,
            schema,
        }
    }
}

impl Operator for ScanOp {
    fn process(
        &mut self,
        _: usize,
        changes: ChangeBatch,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        let columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|&i| changes.rows().column(i).clone())
            .collect();
        out.push(changes.with_columns(self.schema.clone(), columns)?);
        Ok(())
    }

    fn on_watermark(
        &mut self,
        _: usize,
        watermark: Watermark,
        out: &mut Vec<Watermark>,
    ) -> Result<()> {
        if let Some(column) = self.columns.iter().position(|&c| c == watermark.column) {
            out.push(Watermark {
                column,
                ..watermark
            });
        }
        Ok(())
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn explain(&self) -> String {
        let names: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        format!("Scan: {} [{}]", self.name, names.join(", "))
    }
}
