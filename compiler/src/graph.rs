//! The contraction graph (IR level 3): per statement, the tensors it reads and the tensor
//! it defines are nodes; an index shared by two of them is an edge, an index shared by
//! three or more is a hyperedge (drawn as a small node of its own). Used to find
//! connected components (outer products), and printed as text or DOT.

use crate::tir::{self, Expr, IndexId, Stmt, TensorId};
use petgraph::graph::{NodeIndex, UnGraph};
use std::fmt::Write;

/// A node of a statement's graph.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// A tensor read by the statement (`operand` counts reads of the same tensor apart).
    Operand { tensor: TensorId, operand: usize, indices: Vec<IndexId> },
    /// The tensor the statement defines.
    Result { tensor: TensorId, indices: Vec<IndexId> },
    /// An index shared by three or more nodes.
    Hyperedge { index: IndexId },
}

/// One statement's contraction graph.
#[derive(Clone, Debug)]
pub struct StmtGraph {
    pub stmt: usize,
    pub graph: UnGraph<Node, IndexId>,
    /// Connected components of the operands alone (more than one means an outer product).
    pub components: usize,
}

/// The contraction graphs of every statement of a function.
#[derive(Clone, Debug)]
pub struct ContractionGraph {
    pub statements: Vec<StmtGraph>,
}

/// Builds the graph of every statement.
pub fn build(f: &tir::Function) -> ContractionGraph {
    ContractionGraph { statements: f.stmts.iter().enumerate().map(|(k, s)| stmt_graph(k, s)).collect() }
}

/// Each tensor read with its distinct indices, in order.
fn reads(e: &Expr) -> Vec<(TensorId, Vec<IndexId>)> {
    let mut out = Vec::new();
    e.for_each_access(&mut |t, pos| {
        let mut ids: Vec<IndexId> = Vec::new();
        for i in pos.iter().flatten() {
            if !ids.contains(i) {
                ids.push(*i);
            }
        }
        out.push((t, ids));
    });
    out
}

fn stmt_graph(k: usize, s: &Stmt) -> StmtGraph {
    let mut g: UnGraph<Node, IndexId> = UnGraph::new_undirected();
    let operands = reads(&s.rhs);
    let mut nodes: Vec<(NodeIndex, Vec<IndexId>)> = Vec::new();
    for (n, (t, ids)) in operands.into_iter().enumerate() {
        let idx = g.add_node(Node::Operand { tensor: t, operand: n, indices: ids.clone() });
        nodes.push((idx, ids));
    }
    let operand_count = nodes.len();
    let lhs: Vec<IndexId> = s.lhs.iter().flatten().copied().collect();
    let result = g.add_node(Node::Result { tensor: s.target, indices: lhs.clone() });
    nodes.push((result, lhs));
    for i in 0..s.indices.len() {
        let id = IndexId(i as u32);
        let members: Vec<NodeIndex> = nodes.iter().filter(|(_, ids)| ids.contains(&id)).map(|(n, _)| *n).collect();
        match members.len() {
            0 | 1 => {}
            2 => {
                g.add_edge(members[0], members[1], id);
            }
            _ => {
                let h = g.add_node(Node::Hyperedge { index: id });
                for m in members {
                    g.add_edge(m, h, id);
                }
            }
        }
    }
    StmtGraph { stmt: k, components: operand_components(&g, operand_count), graph: g }
}

/// Components among operands, ignoring connections only through the result.
fn operand_components(g: &UnGraph<Node, IndexId>, operands: usize) -> usize {
    let mut sub = g.clone();
    sub.retain_nodes(|gr, n| !matches!(gr[n], Node::Result { .. }));
    // An index linking operands only through the result left a hyperedge node with
    // at most one neighbour; that is not a connection.
    if operands == 0 {
        return 0;
    }
    let comps = petgraph::algo::connected_components(&sub);
    let lone_hyperedges = sub
        .node_indices()
        .filter(|&n| matches!(sub[n], Node::Hyperedge { .. }) && sub.neighbors(n).count() <= 1)
        .count();
    comps - lone_hyperedges
}

impl ContractionGraph {
    /// The text form (`tessera emit --stage graph`).
    pub fn to_text(&self, f: &tir::Function) -> String {
        let mut out = String::new();
        for sg in &self.statements {
            let s = &f.stmts[sg.stmt];
            let _ = writeln!(out, "statement {}: {}", sg.stmt, short(f, s));
            let mut names = Vec::new();
            for n in sg.graph.node_weights() {
                if let Node::Operand { tensor, indices, .. } = n {
                    names.push(format!("{}[{}]", f.tensor(*tensor).name, index_names(s, indices)));
                }
            }
            let target = f.tensor(s.target);
            let lhs: Vec<IndexId> = s.lhs.iter().flatten().copied().collect();
            let _ = writeln!(out, "  nodes: {} -> {}[{}]", names.join("  "), target.name, index_names(s, &lhs));
            for (i, v) in s.indices.iter().enumerate() {
                let id = IndexId(i as u32);
                let users: Vec<String> = sg
                    .graph
                    .node_weights()
                    .filter_map(|n| match n {
                        Node::Operand { tensor, indices, .. } if indices.contains(&id) => Some(f.tensor(*tensor).name.clone()),
                        Node::Result { indices, .. } if indices.contains(&id) => Some("(result)".into()),
                        _ => None,
                    })
                    .collect();
                let kind = match (users.len(), s.reduced.contains(&id)) {
                    (_, true) if users.len() >= 3 => "summed hyperedge",
                    (_, true) => "summed",
                    (n, false) if n >= 3 => "kept hyperedge",
                    _ => "kept",
                };
                let _ = writeln!(
                    out,
                    "  index {} ({}, {}): {}",
                    v.name,
                    v.range.display(&f.dims),
                    kind,
                    if users.is_empty() { "(bound inside an expression)".to_string() } else { users.join(" ") }
                );
            }
            let _ = writeln!(out, "  components: {}", sg.components);
        }
        out
    }

    /// The DOT form (`tessera plan --format dot` shows the plan; this shows the graph).
    pub fn to_dot(&self, f: &tir::Function) -> String {
        let mut out = format!("graph \"{}\" {{\n  node [fontname=\"monospace\"];\n", escape(&f.name));
        for sg in &self.statements {
            let s = &f.stmts[sg.stmt];
            let _ = writeln!(out, "  subgraph cluster_{} {{\n    label=\"{}\";", sg.stmt, escape(&short(f, s)));
            for n in sg.graph.node_indices() {
                let id = format!("s{}n{}", sg.stmt, n.index());
                let (label, shape) = match &sg.graph[n] {
                    Node::Operand { tensor, indices, .. } => {
                        (format!("{}[{}]", f.tensor(*tensor).name, index_names(s, indices)), "box")
                    }
                    Node::Result { tensor, indices } => {
                        (format!("{}[{}]", f.tensor(*tensor).name, index_names(s, indices)), "doubleoctagon")
                    }
                    Node::Hyperedge { index } => (s.indices[index.index()].name.clone(), "point"),
                };
                let _ = writeln!(out, "    {id} [label=\"{}\", shape={shape}];", escape(&label));
            }
            for e in sg.graph.edge_indices() {
                if let Some((a, b)) = sg.graph.edge_endpoints(e) {
                    let v = &s.indices[sg.graph[e].index()];
                    let _ = writeln!(
                        out,
                        "    s{}n{} -- s{}n{} [label=\"{} ({})\"];",
                        sg.stmt,
                        a.index(),
                        sg.stmt,
                        b.index(),
                        escape(&v.name),
                        escape(&v.range.display(&f.dims).to_string())
                    );
                }
            }
            out.push_str("  }\n");
        }
        out.push_str("}\n");
        out
    }
}

fn index_names(s: &Stmt, ids: &[IndexId]) -> String {
    ids.iter().map(|i| s.indices[i.index()].name.as_str()).collect::<Vec<_>>().join(", ")
}

/// The statement without its trailing range comment.
fn short(f: &tir::Function, s: &Stmt) -> String {
    let text = f.stmt_string(s);
    text.split("    #").next().unwrap_or(&text).to_string()
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use crate::check::check_file;
    use crate::diag::SourceMap;

    fn graph_text(src: &str) -> String {
        let mut sm = SourceMap::new();
        let id = sm.add("g.tsr", src);
        let c = check_file(&mut sm, id);
        let f = &c.functions[0];
        super::build(f).to_text(f)
    }

    #[test]
    fn hyperedges_and_components() {
        let t = graph_text(
            "fn f(Q: f32[n, d], K1: f32[n, d], K2: f32[n, d]) -> S: f32[n, n, n] { S[i, j, l] = Q[i, a] * K1[j, a] * K2[l, a] }",
        );
        assert!(t.contains("index a (d, summed hyperedge): Q K1 K2"), "{t}");
        assert!(t.contains("components: 1"), "{t}");
        let outer = graph_text("fn f(x: f32[n], y: f32[m]) -> z: f32[n, m] { z[i, j] = x[i] * y[j] }");
        assert!(outer.contains("components: 2"), "{outer}");
        let batch = graph_text("fn f(A: f32[b, n], B: f32[b, n]) -> C: f32[b] { C[p] = A[p, i] * B[p, i] }");
        assert!(batch.contains("index p (b, kept hyperedge): A B (result)"), "{batch}");
    }

    #[test]
    fn dot_is_well_formed() {
        let mut sm = SourceMap::new();
        let id = sm.add("g.tsr", "fn f(A: f32[m, k], B: f32[k, n]) -> C: f32[m, n] { C[i, j] = A[i, l] * B[l, j] }");
        let c = check_file(&mut sm, id);
        let dot = super::build(&c.functions[0]).to_dot(&c.functions[0]);
        assert!(dot.starts_with("graph \"f\" {") && dot.trim_end().ends_with('}'), "{dot}");
        assert_eq!(dot.matches(" -- ").count(), 3, "{dot}");
    }
}
