"""Times the stdlib workloads in numpy and opt_einsum at the sizes of
examples/stdlib_timings.rs, for the side-by-side tables in docs/.

Run: python docs/measure_numpy.py   (needs numpy and opt_einsum; f32 inputs)

Each workload is written the way a numpy user would: one einsum call with
optimize='optimal' for the contraction (numpy then picks the order), and the same
spec through opt_einsum.contract; softmax and normalisations are plain numpy.
"""

import timeit

import numpy as np
import opt_einsum as oe

rng = np.random.default_rng(0)


def r(*shape):
    return rng.uniform(-1, 1, shape).astype(np.float32)


def best(fn, reps=5):
    fn()  # warm up (also lets einsum cache nothing: numpy does not cache paths)
    return min(timeit.repeat(fn, number=1, repeat=reps)) * 1e3


def ein(spec, *ops):
    return np.einsum(spec, *ops, optimize="optimal")


def softmax_attention(q, k, v, causal=False):
    s = q @ k.T / np.sqrt(q.shape[1])
    if causal:
        s = np.where(np.tril(np.ones(s.shape, bool)), s, -np.inf)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    return p @ v / p.sum(axis=1, keepdims=True)


def tensor_attention(q, k1, k2, v1, v2, poly, contract):
    s = contract("ia,ja,la->ijl", q, k1, k2)
    if poly:
        p = (1 + s) ** 2
    else:
        s = s / np.sqrt(q.shape[1])
        p = np.exp(s - s.max(axis=(1, 2), keepdims=True))
    return contract("ijl,jb,lb->ib", p, v1, v2) / p.sum(axis=(1, 2))[:, None]


def layernorm(x, g, b):
    mu = x.mean(axis=1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * g + b


def rmsnorm(x, g):
    return x / np.sqrt((x * x).mean(axis=1, keepdims=True) + 1e-6) * g


def evonorm_s0(x, v, gamma, beta):
    b, s, ch = x.shape
    g, c = v.shape
    xg = x.reshape(b, s, g, c)
    var = xg.var(axis=(1, 3), keepdims=True)
    y = xg / (1 + np.exp(-v * xg)) / np.sqrt(var + 1e-5) * gamma + beta
    return y.reshape(b, s, ch)


def cases():
    """(name, numpy callable, opt_einsum callable or None)."""
    q, k, v = r(256, 64), r(256, 64), r(256, 64)
    yield "attention::softmax", lambda: softmax_attention(q, k, v), None
    yield "attention::causal", lambda: softmax_attention(q, k, v, True), None
    t16 = [r(64, 16) for _ in range(5)]
    yield ("tensor_attention::exact", lambda: tensor_attention(*t16, False, ein),
           lambda: tensor_attention(*t16, False, oe.contract))
    t8 = [r(64, 8) for _ in range(5)]
    yield ("tensor_attention::poly", lambda: tensor_attention(*t8, True, ein),
           lambda: tensor_attention(*t8, True, oe.contract))

    def both(spec, *ops):
        return (lambda: ein(spec, *ops)), (lambda: oe.contract(spec, *ops))

    g, u1, u2, u3, y = r(8, 6, 4), r(40, 8), r(30, 6), r(20, 4), r(40, 30, 20)
    yield ("tucker::reconstruct", *both("pqr,xp,yq,zr->xyz", g, u1, u2, u3))
    yield ("tucker::project", *both("xyz,xp,yq,zr->pqr", y, u1, u2, u3))
    a, b, c, x = r(50, 8), r(40, 8), r(30, 8), r(50, 40, 30)
    yield ("cp::reconstruct", *both("xs,ys,zs->xyz", a, b, c))
    yield ("cp::mttkrp", *both("xyz,ys,zs->xs", x, b, c))
    w, cg, xe, ye = r(8, 8, 8), r(5, 5, 5), r(32, 8, 5), r(32, 8, 5)
    yield ("equivariant::cg_product", *both("pqc,stm,bps,bqt->bcm", w, cg, xe, ye))
    yi, yg, xv, yv = r(49, 200), r(200, 49), r(49), r(49)
    yield ("equivariant::grid_product", *both("mp,pa,a,pb,b->m", yi, yg, xv, yg, yv))
    A, B, D, xl, yl = r(16, 32), r(16, 32), r(16, 32), r(16), r(16)
    yield ("equivariant::cp_product", *both("is,js,ks,i,j->k", A, B, D, xl, yl))
    adj = r(100, 100)
    for name, spec in [("triangles", "ij,jk,ki->"), ("four_cycle", "ij,jk,kl,li->"),
                       ("tailed_triangles", "ij,jk,ki,il->"), ("node_triangles", "ij,jk,ki->i"),
                       ("edge_triangles", "ik,kj,ij->ij"), ("four_path", "ik,kl,lj,ij->ij")]:
        yield ("graph_poly::" + name, *both(spec, adj, adj, adj, *([adj] if spec.count(",") == 3 else [])))
    X, W, Bl, Al = r(512, 256), r(256, 256), r(256, 8), r(8, 256)
    yield ("lowrank::lora", lambda: ein("ij,jk->ik", X, W) + 2.0 * ein("ip,ps,sk->ik", X, Bl, Al),
           lambda: oe.contract("ij,jk->ik", X, W) + 2.0 * oe.contract("ip,ps,sk->ik", X, Bl, Al))
    xm, Wm, Am, Bm, f = r(16, 8, 64), r(64, 64), r(16, 64, 2), r(16, 64, 2), r(16)
    yield ("lowrank::eggroll", lambda: ein("mbi,io->mbo", xm, Wm) + 0.1 * ein("mbt,mts,mks->mbk", xm, Am, Bm),
           lambda: oe.contract("mbi,io->mbo", xm, Wm) + 0.1 * oe.contract("mbt,mts,mks->mbk", xm, Am, Bm))
    yield ("lowrank::eggroll_update", *both("m,mis,mos->io", f, Am, Bm))
    P, G = r(256, 8), r(256, 128)
    yield ("lowrank::galore", *both("is,ik->sk", P, G))
    yield ("lowrank::galore_residual", lambda: G - ein("is,js,jk->ik", P, P, G),
           lambda: G - oe.contract("is,js,jk->ik", P, P, G))
    xa, Pa, lam, Qa = r(64, 256), r(256, 8), r(8), r(8, 256)
    yield ("lowrank::adalora", *both("ij,js,s,sk->ik", xa, Pa, lam, Qa))
    Ak, Bk, xk = r(32, 32), r(32, 32), r(1024)
    # As written (the Kronecker matrix formed by np.kron), and as an einsum on the reshaped vector.
    yield ("kron::matvec (np.kron @ x)", lambda: np.kron(Ak, Bk) @ xk, None)
    yield ("kron::matvec (einsum on reshaped x)", *both("ij,kl,jl->ik", Ak, Bk, xk.reshape(32, 32)))
    Ai, Gi, grad = r(128, 128), r(64, 64), r(64, 128)
    yield ("kron::kfac_precondition", *both("ik,kl,lj->ij", Gi, grad, Ai))
    S, sv = r(256, 256), r(256)
    yield ("kron::sherman_morrison",
           lambda: S - ein("ik,k,l,lj->ij", S, sv, sv, S) / (1 + ein("a,ab,b->", sv, S, sv)),
           lambda: S - oe.contract("ik,k,l,lj->ij", S, sv, sv, S) / (1 + oe.contract("a,ab,b->", sv, S, sv)))
    U, V = r(1000, 16), r(1000, 16)
    yield "grassmann::plucker", lambda: U[:, :, None] * V[:, None, :] - U[:, None, :] * V[:, :, None], None
    xn, gn, bn = r(512, 256), r(256), r(256)
    yield "norm::layernorm", lambda: layernorm(xn, gn, bn), None
    yield "norm::rmsnorm", lambda: rmsnorm(xn, gn), None
    xe2, ve, ge, be = r(32, 64, 64), r(8, 8), r(8, 8), r(8, 8)
    yield "norm::evonorm_s0", lambda: evonorm_s0(xe2, ve, ge, be), None
    Om, Mc, Uc, Vc = (r(300, 200) > 0).astype(np.float32), r(300, 200), r(300, 10), r(200, 10)
    yield "completion::masked_residual", lambda: Om * (Mc - Uc @ Vc.T), None


def main():
    print(f"numpy {np.__version__}, opt_einsum {oe.__version__}; f32; ms, best of 5")
    print("| function | numpy (einsum optimize='optimal' or direct) | opt_einsum.contract |")
    print("|---|---:|---:|")
    for name, np_fn, oe_fn in cases():
        t_np = best(np_fn)
        t_oe = f"{best(oe_fn):.2f}" if oe_fn else "—"
        print(f"| `{name}` | {t_np:.2f} | {t_oe} |")


if __name__ == "__main__":
    main()
