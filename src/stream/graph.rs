//! One view's dataflow: a tree of operators with the view's [`MaterializeOp`] at the root and
//! one leaf per relation the query reads.
//!
//! Nodes are kept children-first, so that walking them in order visits every operator after
//! all of its inputs: that is the order barriers take.
//!
//! [`MaterializeOp`]: super::materialize::MaterializeOp

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::SchemaRef;

use super::{ChangeBatch, Message, Operator, Result, Watermark};
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

    /// Feeds `message` in: a chunk or a watermark of relation `input` enters at its leaves (a
    /// watermark's column is a position in the relation's rows); a barrier reaches every
    /// operator, inputs first, and each emits what it held back, then the watermarks it held
    /// with it. Returns what reaches the root's output, in order (never a barrier).
    pub fn push(&mut self, input: u32, message: Message) -> Result<Vec<Message>> {
        let mut root_out = Vec::new();
        match message {
            Message::Barrier => {
                for node in 0..self.nodes.len() {
                    self.deliver(node, 0, Message::Barrier, &mut root_out)?;
                }
            }
            message => {
                for leaf in self.leaves_of(input) {
                    self.deliver(leaf, 0, message.clone(), &mut root_out)?;
                }
            }
        }
        Ok(root_out)
    }

    /// Hands `message` to operator `node` on input `side` and sends what it gives on to its
    /// parent (a barrier is not sent on: [`Graph::push`] gives it to every operator in turn).
    fn deliver(
        &mut self,
        node: usize,
        side: usize,
        message: Message,
        root_out: &mut Vec<Message>,
    ) -> Result<()> {
        let op = &mut self.nodes[node].op;
        let mut changes = Vec::new();
        let mut watermarks = Vec::new();
        match message {
            Message::Chunk(batch) => op.process(side, batch, &mut changes)?,
            Message::Watermark(watermark) => op.on_watermark(side, watermark, &mut watermarks)?,
            Message::Barrier => {
                op.on_barrier(&mut changes)?;
                op.held_watermarks(&mut watermarks);
            }
        }
        let out = changes
            .into_iter()
            .filter(|c| !c.is_empty())
            .map(Message::Chunk)
            .chain(watermarks.into_iter().map(Message::Watermark));
        match self.nodes[node].parent {
            Some(edge) => {
                for message in out {
                    self.deliver(edge.node, edge.side, message, root_out)?;
                }
            }
            None => root_out.extend(out),
        }
        Ok(())
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
