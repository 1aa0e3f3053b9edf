//! Contraction trees assembled from pieces (components solved separately, subtrees
//! rebuilt by reconfiguration), turned into SSA paths at the end.

/// A forest over `n` leaves: internal node `k` has id `n + k` and two children, which
/// may be leaves or internal nodes created in any order.
#[derive(Clone, Debug)]
pub(crate) struct Tree {
    pub(crate) n: usize,
    pub(crate) kids: Vec<(u32, u32)>,
}

impl Tree {
    pub(crate) fn new(n: usize) -> Self {
        Tree {
            n,
            kids: Vec::with_capacity(n.saturating_sub(1)),
        }
    }

    pub(crate) fn push(&mut self, a: u32, b: u32) -> u32 {
        self.kids.push((a, b));
        (self.n + self.kids.len() - 1) as u32
    }

    /// Builds a tree from an SSA path (whose ids are already in this numbering).
    pub(crate) fn from_ssa(n: usize, ssa: &[(u32, u32)]) -> Self {
        Tree {
            n,
            kids: ssa.to_vec(),
        }
    }

    /// The SSA path that contracts the subtree under `root` in post-order, renumbering
    /// the internal nodes in the order they are created.
    pub(crate) fn to_ssa(&self, root: u32) -> Vec<(u32, u32)> {
        let mut out = Vec::with_capacity(self.kids.len());
        let mut new_id = vec![u32::MAX; self.kids.len()];
        // Explicit stack: (node, children done?) so that deep chains do not overflow.
        let mut stack = vec![(root, false)];
        while let Some((v, done)) = stack.pop() {
            let Some(k) = (v as usize).checked_sub(self.n) else {
                continue;
            };
            let Some(&(a, b)) = self.kids.get(k) else {
                continue;
            };
            if done {
                let map = |x: u32| -> u32 {
                    match (x as usize).checked_sub(self.n) {
                        Some(i) => new_id.get(i).copied().unwrap_or(x),
                        None => x,
                    }
                };
                let (ma, mb) = (map(a), map(b));
                out.push((ma.min(mb), ma.max(mb)));
                new_id[k] = (self.n + out.len() - 1) as u32;
            } else {
                stack.push((v, true));
                stack.push((b, false));
                stack.push((a, false));
            }
        }
        out
    }
}
