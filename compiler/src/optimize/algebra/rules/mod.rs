//! Rewrite rules as named data, grouped by theme. Each rule looks at one kind of node
//! and, given an e-class holding such a node, builds equal terms; the plumbing here
//! turns a [`Rule`] into an egg [`Rewrite`] (a searcher that finds the classes holding
//! a matching node, an applier that unions what the rule built with the class).

mod cse;
mod distribute;
mod factor;
mod fold;
mod kron;
mod merge;

use super::lang::{union_checked, TAnalysis, TNode, EG};
use egg::{Applier, Id, Language, PatternAst, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};
use std::collections::HashSet;
use std::sync::Mutex;

/// Bounds that keep single rules from blowing up the e-graph.
pub(crate) mod limits {
    /// Largest contraction (operands) a rule may build by inlining.
    pub const MAX_INLINE_OPERANDS: usize = 10;
    /// Largest contraction that is distributed over a sum.
    pub const MAX_DISTRIBUTE_OPERANDS: usize = 8;
    /// Largest sum that is distributed.
    pub const MAX_DISTRIBUTE_TERMS: usize = 4;
    /// Largest flattened sum.
    pub const MAX_TERMS: usize = 12;
    /// Contractions with this many variable operands or fewer are split into pairs.
    pub const MAX_SPLIT_OPERANDS: usize = 5;
}

/// One named rewrite.
#[derive(Clone, Copy)]
pub struct Rule {
    pub name: &'static str,
    pub theme: &'static str,
    /// One line: what the rule does.
    pub summary: &'static str,
    /// Which nodes the rule reads.
    pub(crate) applies_to: fn(&TNode) -> bool,
    /// Builds terms equal to the class `Id` from one of its matching nodes.
    pub(crate) apply: fn(&mut EG, Id, &TNode) -> Vec<Id>,
}

/// Every rule, in the order the runner tries them.
pub fn all() -> Vec<Rule> {
    let mut v = Vec::new();
    v.extend(fold::rules());
    v.extend(kron::rules());
    v.extend(merge::rules());
    v.extend(distribute::rules());
    v.extend(factor::rules());
    v.extend(cse::rules());
    v
}

/// The rules with the given names (unknown names are ignored).
pub fn named(names: &[&str]) -> Vec<Rule> {
    all().into_iter().filter(|r| names.contains(&r.name)).collect()
}

struct NodeSearcher {
    applies_to: fn(&TNode) -> bool,
}

impl Searcher<TNode, TAnalysis> for NodeSearcher {
    fn search_eclass_with_limit(&self, eg: &EG, eclass: Id, limit: usize) -> Option<SearchMatches<'_, TNode>> {
        if limit > 0 && eg[eclass].nodes.iter().any(|n| (self.applies_to)(n)) {
            Some(SearchMatches { eclass, substs: vec![Subst::default()], ast: None })
        } else {
            None
        }
    }

    fn vars(&self) -> Vec<Var> {
        Vec::new()
    }
}

struct NodeApplier {
    applies_to: fn(&TNode) -> bool,
    apply: fn(&mut EG, Id, &TNode) -> Vec<Id>,
    /// Nodes already rewritten, with the number of nodes their children's classes had
    /// then: a rule reads only the node and its children's nodes, so applying it again
    /// before a child class grows can only rebuild what exists.
    done: Mutex<HashSet<(TNode, Vec<usize>)>>,
}

impl Applier<TNode, TAnalysis> for NodeApplier {
    fn apply_one(&self, eg: &mut EG, eclass: Id, _: &Subst, _: Option<&PatternAst<TNode>>, _: Symbol) -> Vec<Id> {
        let nodes: Vec<TNode> = eg[eclass].nodes.iter().filter(|n| (self.applies_to)(n)).cloned().collect();
        let mut changed = Vec::new();
        for n in nodes {
            if eg.total_size() >= eg.analysis.node_budget {
                break;
            }
            let canon = n.clone().map_children(|c| eg.find(c));
            let sizes: Vec<usize> = canon.children().iter().map(|&c| eg[c].nodes.len()).collect();
            let fresh = match self.done.lock() {
                Ok(mut done) => done.insert((canon, sizes)),
                Err(_) => true,
            };
            if !fresh {
                continue;
            }
            for new in (self.apply)(eg, eclass, &n) {
                if union_checked(eg, eclass, new) {
                    changed.push(new);
                }
            }
        }
        changed
    }
}

pub(crate) fn to_rewrite(r: &Rule) -> Result<Rewrite<TNode, TAnalysis>, String> {
    Rewrite::new(
        r.name,
        NodeSearcher { applies_to: r.applies_to },
        NodeApplier { applies_to: r.applies_to, apply: r.apply, done: Mutex::new(HashSet::new()) },
    )
}

pub(crate) fn is_einsum(n: &TNode) -> bool {
    matches!(n, TNode::Einsum(..))
}

pub(crate) fn is_add(n: &TNode) -> bool {
    matches!(n, TNode::Add(..))
}

#[cfg(test)]
mod tests;
