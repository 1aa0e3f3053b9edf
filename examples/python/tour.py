"""A tour of Tessera from Python: einsum, contract_path, compile, call, plans.

Run it as a script after `pip install ./python` (or paste the cells into Jupyter, where
a plan shows as a table and a drawing):

    python examples/python/tour.py [--html plan.html]
"""

import argparse
import time

import numpy as np

import tessera

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--html", help="also write the attention plan's HTML (table and SVG) here")
args = parser.parse_args()
rng = np.random.default_rng(0)

# %% 1. einsum: numpy's syntax, compiled once per (spec, shapes, dtype).
a = rng.standard_normal((64, 32))
b = rng.standard_normal((32, 48))
c = rng.standard_normal((48, 8))
out = tessera.einsum("ij,jk,kl->il", a, b, c)
assert np.allclose(out, a @ b @ c)
x = rng.standard_normal((5, 4, 4)).astype(np.float32)
assert np.allclose(tessera.einsum("...ii", x), np.einsum("...ii", x), atol=1e-5)  # traces, implicit output
assert np.allclose(tessera.einsum("ij,jk->ik", a[::2].T, b), a[::2].T @ b)  # any strides

small = [rng.standard_normal((4, 4)) for _ in range(3)]
for name, fn in [("tessera.einsum", tessera.einsum), ("np.einsum", np.einsum)]:
    fn("ij,jk,kl->il", *small)
    t0 = time.perf_counter()
    for _ in range(2000):
        fn("ij,jk,kl->il", *small)
    print(f"{name:>15}: {(time.perf_counter() - t0) / 2000 * 1e6:6.1f} µs per tiny 3-operand call")

# %% 2. contract_path: opt_einsum's (path, info).
path, info = tessera.contract_path("ea,fb,abcd,gc,hd->efgh", *[(10, 10)] * 2, (10, 10, 10, 10), *[(10, 10)] * 2, shapes=True)
print("\npath:", path)
print(info)
ops = [rng.standard_normal(s) for s in [(10, 10)] * 2 + [(10, 10, 10, 10)] + [(10, 10)] * 2]
assert np.allclose(np.einsum("ea,fb,abcd,gc,hd->efgh", *ops, optimize=info.einsum_path), tessera.einsum("ea,fb,abcd,gc,hd->efgh", *ops))

# %% 3. compile a .tsr program and call it with numpy arrays.
mod = tessera.compile(
    """
fn attention(Q: f32[n, d], K: f32[m, d], V: f32[m, e]) -> O: f32[n, e] {
    S[i, j] = Q[i, a] * K[j, a] / sqrt(d)
    M[i] max= S[i, j]
    P[i, j] = exp(S[i, j] - M[i])
    O[i, c] = P[i, j] * V[j, c] / sum[k](P[i, k])
}
"""
)
q, k, v = (rng.standard_normal((128, 16)).astype(np.float32) for _ in range(3))
o = mod.attention(q, k, v)
o_by_name = mod["attention"](V=v, K=k, Q=q)
s = q @ k.T / np.sqrt(16)
p = np.exp(s - s.max(1, keepdims=True))
assert np.allclose(o, p @ v / p.sum(1, keepdims=True), atol=1e-5) and np.array_equal(o, o_by_name)
print("\nattention on 128 x 16: matches numpy")

# %% 4. plans: numbers, the text table, JSON, and (in Jupyter) a drawing.
plan = mod.attention.plan(n=4096, m=4096, d=64, e=64)
print(f"\n{plan.flops:.3e} FLOPs, {plan.naive_flops:.3e} naive, peak {plan.peak_bytes} bytes, {len(plan.steps)} steps")
print(plan)
print(mod.attention.emit("tir"))
if args.html:
    with open(args.html, "w") as f:
        f.write(plan._repr_html_())
    print(f"wrote {args.html}")

# %% 5. the standard library and its errors.
print("stdlib modules:", ", ".join(tessera.stdlib_names()))
try:
    tessera.compile("fn f(A: f32[n]) -> B: f32[n] { B[i] = A[i] * Z[i] }")
except tessera.SourceError as e:
    print(e)
