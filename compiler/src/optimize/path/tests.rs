use super::bits::with_width;
use super::dp::{self, Budget};
use super::problem::{ssa_to_linear, BitProblem, Problem};
use super::rng::Rng;
use super::*;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// A network from an einsum string ("ij,jk->ik"); labels are letters, numbered in
/// alphabetical order; `size` gives each letter's size.
fn einsum(spec: &str, size: impl Fn(char) -> u64) -> Network {
    let (lhs, rhs) = spec.split_once("->").expect("test spec has ->");
    let id = |c: char| -> Label {
        if c.is_ascii_lowercase() {
            c as u32 - 'a' as u32
        } else {
            26 + c as u32 - 'A' as u32
        }
    };
    let inputs = if lhs.is_empty() {
        Vec::new()
    } else {
        lhs.split(',')
            .map(|t| t.chars().map(id).collect())
            .collect()
    };
    let output = rhs.chars().map(id).collect();
    let sizes = (0..52u32)
        .map(|i| {
            size(if i < 26 {
                (b'a' + i as u8) as char
            } else {
                (b'A' + (i - 26) as u8) as char
            })
        })
        .collect();
    Network {
        inputs,
        output,
        sizes,
    }
}

fn opts(method: Method) -> PathOptions {
    PathOptions {
        method,
        time_budget: Duration::from_secs(10),
        max_intermediate: None,
    }
}

fn run(net: &Network, method: Method) -> ContractionPath {
    let path = optimize_path_with_cache(net, &opts(method), None).expect("path search succeeds");
    check(net, &path);
    path
}

/// Replays a path independently of the library: every pair valid, one operand left
/// holding exactly the output labels, and the flops and largest intermediate equal to
/// what was reported. Returns the tensor sets the steps created.
fn check(net: &Network, path: &ContractionPath) -> Vec<BTreeSet<usize>> {
    let out: BTreeSet<Label> = net.output.iter().copied().collect();
    let mut ops: Vec<(BTreeSet<Label>, BTreeSet<usize>)> = net
        .inputs
        .iter()
        .enumerate()
        .map(|(t, v)| (v.iter().copied().collect(), BTreeSet::from([t])))
        .collect();
    let size = |l: &Label| net.sizes[*l as usize] as f64;
    // A zero size empties a tensor however large the others are (0 * inf is 0 here).
    let prod = |it: &mut dyn Iterator<Item = f64>| {
        it.fold(
            1.0,
            |a: f64, b| if a == 0.0 || b == 0.0 { 0.0 } else { a * b },
        )
    };
    let (mut flops, mut largest) = (0.0, 0.0f64);
    let mut created = Vec::new();
    for &(i, j) in &path.pairs {
        assert!(
            i != j && i < ops.len() && j < ops.len(),
            "bad pair ({i}, {j}) with {} operands",
            ops.len()
        );
        let (hi, lo) = (i.max(j), i.min(j));
        let b = ops.remove(hi);
        let a = ops.remove(lo);
        let union: BTreeSet<Label> = a.0.union(&b.0).copied().collect();
        let keep: BTreeSet<Label> = union
            .iter()
            .copied()
            .filter(|l| out.contains(l) || ops.iter().any(|o| o.0.contains(l)))
            .collect();
        let all = prod(&mut union.iter().map(size));
        flops += if keep.len() < union.len() {
            2.0 * all
        } else {
            all
        };
        largest = largest.max(prod(&mut keep.iter().map(size)));
        let tensors: BTreeSet<usize> = a.1.union(&b.1).copied().collect();
        created.push(tensors.clone());
        ops.push((keep, tensors));
    }
    if net.inputs.len() >= 2 {
        assert_eq!(ops.len(), 1, "path leaves {} operands", ops.len());
        assert_eq!(ops[0].0, out, "final labels differ from the output");
        assert!(
            close(flops, path.flops),
            "replayed flops {flops} != reported {}",
            path.flops
        );
        assert!(
            close(largest, path.largest_intermediate),
            "largest {largest} != {}",
            path.largest_intermediate
        );
    } else {
        assert!(path.pairs.is_empty());
    }
    created
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// The cheapest cost over every order of pairwise contractions; with `connected`, only
/// pairs sharing a summed label are tried while any such pair exists (the space of the
/// connected DP and of branch-and-bound). Memoised on the multiset of operand label
/// sets, which is all the future cost depends on.
fn brute(net: &Network, connected: bool) -> f64 {
    type State = Vec<BTreeSet<Label>>;
    fn go(
        ops: State,
        out: &BTreeSet<Label>,
        sizes: &[u64],
        connected: bool,
        memo: &mut HashMap<State, f64>,
    ) -> f64 {
        if ops.len() <= 1 {
            return 0.0;
        }
        if let Some(&c) = memo.get(&ops) {
            return c;
        }
        let shares = |a: &BTreeSet<Label>, b: &BTreeSet<Label>| {
            a.iter().any(|l| !out.contains(l) && b.contains(l))
        };
        let any_connected =
            (0..ops.len()).any(|i| (i + 1..ops.len()).any(|j| shares(&ops[i], &ops[j])));
        let mut best = f64::INFINITY;
        for i in 0..ops.len() {
            for j in i + 1..ops.len() {
                if connected && any_connected && !shares(&ops[i], &ops[j]) {
                    continue;
                }
                let rest: State = ops
                    .iter()
                    .enumerate()
                    .filter(|&(k, _)| k != i && k != j)
                    .map(|(_, o)| o.clone())
                    .collect();
                let union: BTreeSet<Label> = ops[i].union(&ops[j]).copied().collect();
                let keep: BTreeSet<Label> = union
                    .iter()
                    .copied()
                    .filter(|l| out.contains(l) || rest.iter().any(|o| o.contains(l)))
                    .collect();
                let all: f64 = union.iter().map(|&l| sizes[l as usize] as f64).product();
                let step = if keep.len() < union.len() {
                    2.0 * all
                } else {
                    all
                };
                let mut next = rest;
                next.push(keep);
                next.sort();
                best = best.min(step + go(next, out, sizes, connected, memo));
            }
        }
        memo.insert(ops, best);
        best
    }
    let out: BTreeSet<Label> = net.output.iter().copied().collect();
    let mut ops: State = net
        .inputs
        .iter()
        .map(|v| v.iter().copied().collect())
        .collect();
    ops.sort();
    go(ops, &out, &net.sizes, connected, &mut HashMap::new())
}

/// A random network: `n` inputs over up to `nl` labels, each label in 1-3 inputs, some
/// in the output, some repeated within an input, sizes in `sizes`.
fn random_network(rng: &mut Rng, n: usize, nl: usize, sizes: &[u64]) -> Network {
    let pick = |rng: &mut Rng, k: usize| (rng.next_u64() % k as u64) as usize;
    let mut inputs: Vec<Vec<Label>> = vec![Vec::new(); n];
    let mut output = Vec::new();
    let mut label_sizes = Vec::new();
    for l in 0..nl as Label {
        let holders = 1 + pick(rng, 3);
        for _ in 0..holders {
            let t = pick(rng, n);
            inputs[t].push(l);
            if pick(rng, 8) == 0 {
                inputs[t].push(l); // a diagonal
            }
        }
        if pick(rng, 4) == 0 {
            output.push(l);
        }
        label_sizes.push(sizes[pick(rng, sizes.len())]);
    }
    for inp in inputs.iter_mut() {
        // Shuffle so label order inside an input carries no meaning.
        for k in (1..inp.len()).rev() {
            let j = pick(rng, k + 1);
            inp.swap(k, j);
        }
    }
    Network {
        inputs,
        output,
        sizes: label_sizes,
    }
}

/// The connected DP's cost, run without an upper bound and with the greedy path's cost
/// as bound (which may lie outside its space and starve the first attempt); both must
/// agree.
fn connected_dp_cost(net: &Network) -> f64 {
    fn go<const W: usize>(p: &Problem, upper: f64) -> Option<Vec<(u32, u32)>> {
        let bp = BitProblem::<W>::new(p);
        let mut work = 0;
        let budget = Budget {
            work: u64::MAX,
            deadline: None,
        };
        dp::connected_dp(&bp, None, upper, budget, &mut work)
            .ok()
            .map(|x| x.0)
    }
    let p = Problem::from_network(net);
    let upper = super::greedy::greedy(&p, None).expect("greedy").1;
    let cost = |upper: f64| {
        let ssa = with_width!(p.nlabels(), go(&p, upper))
            .flatten()
            .expect("connected dp finishes");
        let pairs = ssa_to_linear(&ssa, net.inputs.len());
        path_cost(net, &pairs).expect("dp path is valid").flops
    };
    let (free, bounded) = (cost(f64::INFINITY), cost(upper));
    assert!(
        close(free, bounded),
        "bounded dp {bounded} != unbounded {free} on {net:?}"
    );
    free
}

#[test]
fn pairwise_flops_follows_the_convention() {
    let sizes = [2, 3, 5];
    // Matrix product: i, j, k all counted, j summed: 2 * 30.
    assert_eq!(pairwise_flops(&[0, 1], &[1, 2], &[0, 2], &sizes), 60.0);
    // Outer product: nothing summed.
    assert_eq!(pairwise_flops(&[0], &[2], &[0, 2], &sizes), 10.0);
    // Hadamard product keeping the shared label.
    assert_eq!(pairwise_flops(&[0, 1], &[0, 1], &[0, 1], &sizes), 6.0);
    // A repeated label (diagonal) counts once.
    assert_eq!(pairwise_flops(&[0, 0], &[0], &[], &sizes), 4.0);
}

#[test]
fn ssa_to_linear_matches_opt_einsum() {
    assert_eq!(
        ssa_to_linear(&[(0, 3), (2, 4), (1, 5)], 4),
        vec![(0, 3), (1, 2), (0, 1)]
    );
}

#[test]
fn matrix_chain_textbook_example() {
    // CLRS 15.2: dims 30x35, 35x15, 15x5, 5x10, 10x20, 20x25; optimum 15125 scalar
    // multiplications as ((A1 (A2 A3)) ((A4 A5) A6)).
    let dims = [30u64, 35, 15, 5, 10, 20, 25];
    let net = einsum("ab,bc,cd,de,ef,fg->ag", |c| {
        dims.get((c as u8).wrapping_sub(b'a') as usize)
            .copied()
            .unwrap_or(1)
    });
    for method in [Method::Auto, Method::Optimal, Method::BranchBound] {
        let path = run(&net, method);
        assert_eq!(path.flops, 2.0 * 15125.0, "{method:?}");
        let created: BTreeSet<BTreeSet<usize>> = check(&net, &path).into_iter().collect();
        let want: BTreeSet<BTreeSet<usize>> = [
            vec![1, 2],
            vec![0, 1, 2],
            vec![3, 4],
            vec![3, 4, 5],
            vec![0, 1, 2, 3, 4, 5],
        ]
        .into_iter()
        .map(|v| v.into_iter().collect())
        .collect();
        assert_eq!(created, want, "{method:?}");
        assert!(path.optimal, "{method:?}");
    }
}

#[test]
fn long_matrix_chain_uses_the_connected_dp() {
    // 40 matrices (a chain is connected, with only O(n^2) connected subsets); compare
    // with the classic O(n^3) matrix-chain recurrence.
    let dims: Vec<u64> = (0..41u64).map(|i| 2 + (i * 7919 % 23)).collect();
    let n = 40;
    let net = Network {
        inputs: (0..n as u32).map(|i| vec![i, i + 1]).collect(),
        output: vec![0, n as u32],
        sizes: dims.clone(),
    };
    let mut m = vec![vec![0.0f64; n]; n];
    for len in 2..=n {
        for i in 0..=n - len {
            let j = i + len - 1;
            m[i][j] = (i..j)
                .map(|k| m[i][k] + m[k + 1][j] + 2.0 * (dims[i] * dims[k + 1] * dims[j + 1]) as f64)
                .fold(f64::INFINITY, f64::min);
        }
    }
    let path = run(&net, Method::Optimal);
    assert_eq!(path.method, "dp");
    assert!(path.optimal);
    assert!(
        close(path.flops, m[0][n - 1]),
        "{} vs {}",
        path.flops,
        m[0][n - 1]
    );
    let auto = run(&net, Method::Auto);
    assert!(close(auto.flops, m[0][n - 1]));
}

#[test]
fn lora_contracts_x_with_b_first() {
    // Y[n,o] = X[n,d] B[d,r] A[r,o]: (XB)A costs n*d*r + n*r*o, never forming B A (d*o).
    let net = einsum("nd,dr,ro->no", |c| if c == 'r' { 16 } else { 4096 });
    for method in [
        Method::Auto,
        Method::Optimal,
        Method::Greedy,
        Method::BranchBound,
    ] {
        let path = run(&net, method);
        assert_eq!(path.pairs[0], (0, 1), "{method:?}");
        assert_eq!(path.flops, 2.0 * 4096.0 * 4096.0 * 16.0 * 2.0, "{method:?}");
    }
}

#[test]
fn galore_projects_g_first() {
    // out[n,k] = P[n,r] P[m,r] G[m,k]: P (P^T G), not (P P^T) G.
    let net = einsum("nr,mr,mk->nk", |c| if c == 'r' { 128 } else { 4096 });
    let path = run(&net, Method::Auto);
    assert_eq!(path.pairs[0], (1, 2));
    assert_eq!(path.flops, 4.0 * 4096.0 * 4096.0 * 128.0);
}

#[test]
fn kronecker_matvec_never_forms_the_kronecker_matrix() {
    // y[i,k] = A[i,j] B[k,l] x[j,l]: B X A^T on the reshaped vector.
    let net = einsum("ij,kl,jl->ik", |_| 64);
    let path = run(&net, Method::Auto);
    let first = check(&net, &path)[0].clone();
    assert!(
        first.contains(&2),
        "first step must involve x, got {first:?}"
    );
    let n = 64.0f64;
    assert_eq!(path.flops, 2.0 * n * n * n * 2.0);
}

#[test]
fn mttkrp_contracts_x_with_c_first() {
    // M[i,r] = X[i,j,k] B[j,r] C[k,r], sizes chosen so that X.C over k is strictly best.
    let size = |c| match c {
        'i' => 10,
        'j' => 50,
        'k' => 100,
        _ => 16,
    };
    let net = einsum("ijk,jr,kr->ir", size);
    let path = run(&net, Method::Auto);
    assert_eq!(path.pairs[0], (0, 2));
    assert_eq!(
        path.flops,
        2.0 * 10.0 * 50.0 * 100.0 * 16.0 + 2.0 * 10.0 * 50.0 * 16.0
    );
    assert_eq!(path.flops, brute(&net, false));
}

#[test]
fn five_cycle_graph_polynomial() {
    // trace(A^5) as a 5-cycle: three n^3 matrix products and a final n^2 inner product.
    let net = einsum("ab,bc,cd,de,ea->", |_| 100);
    let path = run(&net, Method::Auto);
    assert_eq!(path.flops, 6.0 * 1e6 + 2.0 * 1e4);
    assert_eq!(path.flops, brute(&net, false));
}

#[test]
fn hyperedges_and_batch_labels() {
    // i is shared by three inputs and summed only at the end.
    let net = einsum("ij,ik,il->", |c| if c == 'i' { 7 } else { 3 });
    let path = run(&net, Method::Auto);
    assert_eq!(path.flops, brute(&net, false));
    // A batched matrix chain: b is in every input and in the output.
    let net = einsum("bij,bjk,bkl->bil", |c| match c {
        'b' => 8,
        'i' => 100,
        'j' => 2,
        'k' => 100,
        _ => 3,
    });
    let path = run(&net, Method::Auto);
    assert_eq!(path.flops, brute(&net, false));
    assert_eq!(
        path.flops,
        2.0 * 8.0 * (2.0 * 100.0 * 3.0 + 100.0 * 2.0 * 3.0)
    );
    // A batch label shared by only some inputs.
    let net = einsum("bij,jk,bkl,lm->bim", |c| if c == 'b' { 5 } else { 6 });
    let path = run(&net, Method::Optimal);
    assert_eq!(path.flops, brute(&net, false));
}

#[test]
fn labels_in_one_input_are_summed_by_its_first_step() {
    // x occurs only in A: A's first step sums it (opt_einsum counts it there).
    let net = einsum("ix,ij->j", |c| if c == 'x' { 10 } else { 3 });
    let path = run(&net, Method::Auto);
    assert_eq!(path.flops, 2.0 * 10.0 * 9.0);
    let net = einsum(
        "ix,ij,jy,k->k",
        |c| if c == 'x' || c == 'y' { 10 } else { 3 },
    );
    let path = run(&net, Method::Optimal);
    assert_eq!(path.flops, brute(&net, false));
}

#[test]
fn scalars_single_and_empty_networks() {
    let empty = Network::default();
    let p = run(&empty, Method::Auto);
    assert_eq!(
        (p.pairs.len(), p.flops, p.largest_intermediate),
        (0, 0.0, 0.0)
    );

    // One input: a sum over j costs one addition per element; a transpose costs nothing.
    let sum = einsum("ij->i", |c| if c == 'i' { 3 } else { 4 });
    assert_eq!(run(&sum, Method::Auto).flops, 12.0);
    let trace = einsum("ii->", |_| 5);
    assert_eq!(run(&trace, Method::Auto).flops, 5.0);
    let transpose = einsum("ij->ji", |_| 5);
    assert_eq!(run(&transpose, Method::Auto).flops, 0.0);

    // Scalar inputs and a scalar output.
    let net = einsum(",i,i->", |_| 4);
    let p = run(&net, Method::Auto);
    assert_eq!(p.flops, brute(&net, false));
    let net = einsum(",->", |_| 4);
    assert_eq!(run(&net, Method::Auto).flops, 1.0);
}

#[test]
fn zero_and_one_sizes() {
    let net = einsum("ij,jk,kl->il", |c| if c == 'j' { 0 } else { 5 });
    let p = run(&net, Method::Auto);
    assert_eq!(p.flops, brute(&net, false));
    assert_eq!(p.flops, 25.0 * 2.0 * 0.0 + p.flops); // finite, no NaN
    assert!(p.flops.is_finite());
    let net = einsum("ij,jk,kl->il", |c| if c == 'j' { 1 } else { 5 });
    let p = run(&net, Method::Auto);
    assert_eq!(p.flops, brute(&net, false));
    // Every size 0: everything is free, and the path is still valid.
    let net = einsum("ab,bc,cd,de,ea,af,fg,gh,hi,ij,jk,kl->", |_| 0);
    let p = run(&net, Method::Auto);
    assert_eq!(p.flops, 0.0);
}

#[test]
fn overflowing_sizes_saturate_without_nan() {
    // Twenty labels of size 2^64 in one step overflow f64: the cost is infinite, yet
    // every method still returns a valid path.
    let big = "abcdefghijklmnopqrst";
    let net = einsum(&format!("{big},{big}u,uv,vw->w"), |_| u64::MAX);
    for method in [
        Method::Auto,
        Method::Optimal,
        Method::BranchBound,
        Method::Greedy,
    ] {
        let p = run(&net, method);
        assert_eq!(p.flops, f64::INFINITY, "{method:?}");
    }
    // A zero-sized label empties any step holding it, even next to infinite sizes.
    let net = einsum(&format!("{big}u,{big}u,u->"), |c| {
        if c == 'u' {
            0
        } else {
            u64::MAX
        }
    });
    for method in [Method::Auto, Method::Optimal, Method::Greedy] {
        let p = run(&net, method);
        assert_eq!(p.flops, 0.0, "{method:?}");
    }
}

#[test]
fn invalid_networks_are_errors() {
    let o = PathOptions::default();
    let bad_label = Network {
        inputs: vec![vec![0, 5]],
        output: vec![],
        sizes: vec![2, 2],
    };
    assert_eq!(
        optimize_path(&bad_label, &o),
        Err(PathError::LabelOutOfRange {
            input: 0,
            label: 5,
            num_sizes: 2
        })
    );
    let missing = Network {
        inputs: vec![vec![0], vec![0]],
        output: vec![1],
        sizes: vec![2, 2],
    };
    assert_eq!(
        optimize_path(&missing, &o),
        Err(PathError::OutputLabelMissing { label: 1 })
    );
    let repeated = Network {
        inputs: vec![vec![0, 1], vec![1]],
        output: vec![0, 0],
        sizes: vec![2, 2],
    };
    assert_eq!(
        optimize_path(&repeated, &o),
        Err(PathError::RepeatedOutputLabel { label: 0 })
    );
    let out_range = Network {
        inputs: vec![vec![0]],
        output: vec![9],
        sizes: vec![2],
    };
    assert_eq!(
        optimize_path(&out_range, &o),
        Err(PathError::OutputLabelOutOfRange {
            label: 9,
            num_sizes: 1
        })
    );
    let ok = einsum("ij,jk->ik", |_| 2);
    for limit in [f64::NAN, -1.0] {
        let o = PathOptions {
            max_intermediate: Some(limit),
            ..PathOptions::default()
        };
        assert!(matches!(
            optimize_path(&ok, &o),
            Err(PathError::InvalidMemoryLimit { .. })
        ));
    }
    assert!(matches!(
        path_cost(&ok, &[(0, 0)]),
        Err(PathError::InvalidPath { .. })
    ));
    assert!(matches!(
        path_cost(&ok, &[]),
        Err(PathError::InvalidPath { .. })
    ));
}

#[test]
fn dp_is_optimal_against_brute_force() {
    let mut rng = Rng::new(7);
    for case in 0..300 {
        let n = 2 + case % 6;
        let nl = 1 + (rng.next_u64() % 8) as usize;
        let net = random_network(&mut rng, n, nl, &[1, 2, 3, 5, 8]);
        let all = brute(&net, false);
        let path = run(&net, Method::Optimal);
        assert!(
            close(path.flops, all),
            "case {case}: dp {} vs brute {all} on {net:?}",
            path.flops
        );
        assert!(path.optimal);
        // The connected DP is exact over its own space.
        let conn = brute(&net, true);
        let c = connected_dp_cost(&net);
        assert!(
            close(c, conn),
            "case {case}: connected dp {c} vs brute {conn} on {net:?}"
        );
        // Exhaustive branch-and-bound never does worse than its space's optimum.
        let bb = run(&net, Method::BranchBound);
        assert!(
            bb.flops <= conn * (1.0 + 1e-9) && bb.flops >= all * (1.0 - 1e-9),
            "case {case}"
        );
        assert!(bb.optimal);
        // The heuristics never beat the optimum.
        for method in [
            Method::Greedy,
            Method::RandomGreedy {
                trials: 8,
                seed: case as u64,
            },
            Method::Auto,
        ] {
            let h = run(&net, method);
            assert!(
                h.flops >= all * (1.0 - 1e-9),
                "case {case}: {method:?} {} < optimum {all}",
                h.flops
            );
        }
    }
}

#[test]
fn connected_dp_beats_or_matches_heuristics_on_medium_networks() {
    let mut rng = Rng::new(11);
    for case in 0..20 {
        let n = 11 + case % 6;
        let net = random_network(&mut rng, n, 2 * n, &[2, 3, 4, 8]);
        let exact = run(&net, Method::Optimal);
        assert_eq!(exact.method, "dp");
        for method in [
            Method::Greedy,
            Method::RandomGreedy {
                trials: 64,
                seed: 1,
            },
            Method::Auto,
        ] {
            let h = run(&net, method);
            assert!(
                h.flops >= exact.flops * (1.0 - 1e-9),
                "case {case}: {method:?} {} < dp {}",
                h.flops,
                exact.flops
            );
        }
    }
}

#[test]
fn results_are_deterministic() {
    let mut rng = Rng::new(3);
    // Auto where the exact search finishes, and the work-limited methods.
    let small = random_network(&mut rng, 20, 30, &[2, 3, 4]);
    let big = random_network(&mut rng, 40, 70, &[2, 3, 4]);
    for (net, method) in [
        (&small, Method::Auto),
        (&big, Method::Greedy),
        (
            &big,
            Method::RandomGreedy {
                trials: 50,
                seed: 9,
            },
        ),
    ] {
        let a = run(net, method);
        let b = run(net, method);
        assert_eq!(
            (a.pairs, a.flops, a.method),
            (b.pairs, b.flops, b.method),
            "{method:?}"
        );
    }
    // Auto's heuristic stages stop on counts of work, not on the clock (which only
    // guards against slow machines): with no deadline they repeat exactly.
    let p = Problem::from_network(&big);
    let budget = Budget {
        work: 50_000,
        deadline: None,
    };
    let stages = || {
        let (found, cut) =
            super::greedy::random_greedy(&p, 0..4096, 0, None, budget, Vec::new(), 4);
        assert!(!cut);
        let best = found.iter().filter_map(|(ssa, _)| {
            super::reconf::reconfigure(&p, ssa, None, budget, super::reconf::SUBTREE)
                .map(|r| (r.0, r.1))
        });
        (found.clone(), best.collect::<Vec<_>>())
    };
    assert_eq!(stages(), stages());
}

#[test]
fn cache_maps_results_through_the_permutation() {
    let cache = PathCache::new(8);
    let net = einsum("ab,bc,cd,de,ef->af", |c| 2 + (c as u64 % 7));
    // The same network with inputs reversed and labels renamed.
    let rename = |l: Label| 40 - l;
    let mut sizes = vec![1u64; 41];
    for l in 0..6 {
        sizes[rename(l) as usize] = net.sizes[l as usize];
    }
    let twin = Network {
        inputs: net
            .inputs
            .iter()
            .rev()
            .map(|v| v.iter().map(|&l| rename(l)).collect())
            .collect(),
        output: net.output.iter().map(|&l| rename(l)).collect(),
        sizes,
    };
    let o = opts(Method::Optimal);
    let a = optimize_path_with_cache(&net, &o, Some(&cache)).expect("search");
    let b = optimize_path_with_cache(&twin, &o, Some(&cache)).expect("search");
    check(&net, &a);
    check(&twin, &b);
    assert_eq!(a.flops, b.flops);
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.hits, stats.misses), (1, 1, 1));
    // A hit gives exactly what a fresh search gives.
    let fresh = optimize_path_with_cache(&twin, &o, None).expect("search");
    assert_eq!(fresh.pairs, b.pairs);
    // The cache stays bounded.
    let mut rng = Rng::new(5);
    for _ in 0..20 {
        let net = random_network(&mut rng, 5, 6, &[2, 3]);
        optimize_path_with_cache(&net, &o, Some(&cache)).expect("search");
    }
    assert!(cache.stats().entries <= 8);
}

#[test]
fn memory_limit_is_respected_or_reported() {
    // The chain's cheapest path makes a 30x10 intermediate... any path needs at least
    // one 30x25-sized result (the output), so 750 is feasible and 100 is not.
    let dims = [30u64, 35, 15, 5, 10, 20, 25];
    let net = einsum("ab,bc,cd,de,ef,fg->ag", |c| {
        dims.get((c as u8).wrapping_sub(b'a') as usize)
            .copied()
            .unwrap_or(1)
    });
    for method in [
        Method::Auto,
        Method::Optimal,
        Method::Greedy,
        Method::BranchBound,
    ] {
        let o = PathOptions {
            max_intermediate: Some(750.0),
            ..opts(method)
        };
        let p = optimize_path_with_cache(&net, &o, None).expect("feasible");
        check(&net, &p);
        assert!(p.largest_intermediate <= 750.0);
        let o = PathOptions {
            max_intermediate: Some(100.0),
            ..opts(method)
        };
        assert!(matches!(
            optimize_path_with_cache(&net, &o, None),
            Err(PathError::MemoryLimit { .. })
        ));
    }
    // A tight limit forces a costlier path than the unconstrained optimum.
    let net = einsum(
        "ij,jk,kl->il",
        |c| if c == 'j' || c == 'k' { 2 } else { 50 },
    );
    let free = run(&net, Method::Optimal);
    let o = PathOptions {
        max_intermediate: Some(2500.0),
        ..opts(Method::Optimal)
    };
    let tight = optimize_path_with_cache(&net, &o, None).expect("feasible");
    check(&net, &tight);
    assert!(tight.largest_intermediate <= 2500.0 && tight.flops >= free.flops);
}

#[test]
fn large_networks_return_valid_paths() {
    let mut rng = Rng::new(99);
    let net = random_network(&mut rng, 400, 600, &[2, 3, 5]);
    let o = PathOptions {
        time_budget: Duration::from_millis(200),
        ..PathOptions::default()
    };
    let p = optimize_path_with_cache(&net, &o, None).expect("search");
    check(&net, &p);
    let o = PathOptions {
        method: Method::Optimal,
        ..o
    };
    let p = optimize_path_with_cache(&net, &o, None).expect("search");
    check(&net, &p);
    assert!(!p.optimal);
}

#[test]
fn random_greedy_is_seeded() {
    let mut rng = Rng::new(21);
    let net = random_network(&mut rng, 30, 45, &[2, 3, 4, 5]);
    let a = run(
        &net,
        Method::RandomGreedy {
            trials: 40,
            seed: 1,
        },
    );
    let b = run(
        &net,
        Method::RandomGreedy {
            trials: 40,
            seed: 1,
        },
    );
    assert_eq!(a.pairs, b.pairs);
    let g = run(&net, Method::Greedy);
    assert!(
        a.flops <= g.flops,
        "random greedy includes the plain greedy run"
    );
}

#[test]
fn reconfiguration_never_makes_a_path_worse() {
    let mut rng = Rng::new(4);
    for _ in 0..10 {
        let net = random_network(&mut rng, 30, 45, &[2, 3, 4, 5]);
        let p = Problem::from_network(&net);
        let (ssa, cost) = super::greedy::greedy(&p, None).expect("greedy");
        let budget = Budget {
            work: u64::MAX,
            deadline: None,
        };
        let (better, c, _) =
            super::reconf::reconfigure(&p, &ssa, None, budget, super::reconf::SUBTREE)
                .expect("reconfigure");
        assert!(c <= cost * (1.0 + 1e-12));
        assert_eq!(p.ssa_cost(&better, None).map(|x| x.0), Some(c));
    }
}

#[test]
fn odd_inputs_never_panic() {
    let mut rng = Rng::new(1234);
    let sizes = [0, 1, 2, 7, u64::MAX];
    for case in 0..50 {
        let n = [1, 2, 3, 5, 9, 12, 20, 35, 130, 1][case % 10];
        let nl = 1 + (rng.next_u64() % 40) as usize;
        let mut net = if case == 9 {
            Network::default()
        } else {
            random_network(&mut rng, n, nl, &sizes)
        };
        if case % 3 == 0 {
            net.inputs.push(Vec::new()); // a scalar
        }
        if case % 4 == 0 && !net.inputs.is_empty() {
            let twin = net.inputs[0].clone(); // a Hadamard partner
            net.inputs.push(twin);
        }
        net.sizes.extend([5, 6]); // sizes of labels nothing uses
        let small = net.inputs.len() <= 12;
        let methods = [
            (Method::Auto, small),
            (Method::Optimal, small),
            (Method::BranchBound, net.inputs.len() <= 7),
            (Method::Greedy, true),
            (Method::RandomGreedy { trials: 5, seed: 3 }, true),
        ];
        for (method, unbounded_ok) in methods {
            for budget in [Duration::ZERO, Duration::from_millis(5), Duration::MAX] {
                if budget == Duration::MAX && !unbounded_ok {
                    continue;
                }
                let o = PathOptions {
                    method,
                    time_budget: budget,
                    max_intermediate: None,
                };
                let p = optimize_path_with_cache(&net, &o, None).unwrap_or_else(|e| {
                    panic!("case {case} {method:?} {budget:?}: {e} on {net:?}")
                });
                check(&net, &p);
            }
        }
    }
}
