"""Times Tessera's CUDA backend against torch on the same GPU, one row per workload.

Each row runs `tessera bench --backend cuda --format json` (median of repeated calls,
host arrays in and out, so each call copies its inputs to the device and its outputs
back) and the same formula in torch on device tensors (CUDA events, median of 50 calls
after warm-up). The copies are part of Tessera's time and not of torch's: that is what
the API costs today (device-resident tensors are not in the API yet). Writes a Markdown
table naming the GPU.
"""
import argparse
import json
import statistics
import subprocess

import torch

def _simplicial(Q, K1, K2, V1, V2):
    s = torch.einsum("id,jd,ld->ijl", Q, K1, K2) / Q.shape[1] ** 0.5
    p = torch.softmax(s.reshape(s.shape[0], -1), dim=1).reshape(s.shape)
    return torch.einsum("ijl,je,le->ie", p, V1, V2)


ROWS = [
    # name, .tsr file, function, dims, dtype, input shapes from dims, torch formula
    ("matmul 4096³", "bench/compare/programs/matmul.tsr", None, dict(m=4096, k=4096, n=4096), "f32",
     lambda d: [(d["m"], d["k"]), (d["k"], d["n"])], lambda A, B: A @ B),
    ("batched matmul 64×256³", "bench/compare/programs/bmm.tsr", "bmm", dict(b=64, m=256, k=256, n=256), "f32",
     lambda d: [(d["b"], d["m"], d["k"]), (d["b"], d["k"], d["n"])], torch.bmm),
    ("softmax attention n=4096 d=64", "stdlib/attention.tsr", "softmax", dict(n=4096, m=4096, d=64, e=64), "f32",
     lambda d: [(d["n"], d["d"]), (d["m"], d["d"]), (d["m"], d["e"])],
     lambda Q, K, V: torch.nn.functional.scaled_dot_product_attention(Q[None], K[None], V[None])[0]),
    ("causal attention n=4096 d=64", "stdlib/attention.tsr", "causal", dict(n=4096, d=64, e=64), "f32",
     lambda d: [(d["n"], d["d"]), (d["n"], d["d"]), (d["n"], d["e"])],
     lambda Q, K, V: torch.nn.functional.scaled_dot_product_attention(Q[None], K[None], V[None], is_causal=True)[0]),
    ("2-simplicial attention n=128", "stdlib/tensor_attention.tsr", "exact", dict(n=128, m1=128, m2=128, d=64, e=64), "f32",
     lambda d: [(d["n"], d["d"]), (d["m1"], d["d"]), (d["m2"], d["d"]), (d["m1"], d["e"]), (d["m2"], d["e"])], _simplicial),
    ("layernorm 8192×1024", "stdlib/norm.tsr", "layernorm", dict(b=8192, d=1024), "f32",
     lambda d: [(d["b"], d["d"]), (d["d"],), (d["d"],)],
     lambda x, g, b: torch.nn.functional.layer_norm(x, (x.shape[1],), g, b)),
    ("LoRA n=4096 d=o=4096 r=16", "stdlib/lowrank.tsr", "lora", dict(n=4096, d=4096, o=4096, r=16), "f32",
     lambda d: [(d["n"], d["d"]), (d["d"], d["o"]), (d["d"], d["r"]), (d["r"], d["o"]), ()],
     lambda X, W, B, A, alpha: X @ W + alpha * ((X @ B) @ A)),
    ("CG product z=16384", "stdlib/equivariant.tsr", "cg_product", dict(u=16, v=16, w=16, i=3, j=3, k=5, z=16384), "f32",
     lambda d: [(d["u"], d["v"], d["w"]), (d["i"], d["j"], d["k"]), (d["z"], d["u"], d["i"]), (d["z"], d["v"], d["j"])],
     lambda W, C, x, y: torch.einsum("pqc,stm,bps,bqt->bcm", W, C, x, y)),
    ("MTTKRP 512³ r=32 (f64)", "stdlib/cp.tsr", "mttkrp", dict(i=512, j=512, k=512, r=32), "f64",
     lambda d: [(d["i"], d["j"], d["k"]), (d["j"], d["r"]), (d["k"], d["r"])],
     lambda X, B, C: torch.einsum("ijk,jr,kr->ir", X, B, C)),
]


def tessera_row(binary, path, fn, dims):
    cmd = [binary, "bench", path, "--backend", "cuda", "--format", "json", "--min-time", "2"]
    if fn:
        cmd += ["--fn", fn]
    for k, v in dims.items():
        cmd += ["--dim", f"{k}={v}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        return None, p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
    return json.loads(p.stdout), None


def torch_time(f, shapes, dtype):
    dt = torch.float64 if dtype == "f64" else torch.float32
    xs = [torch.randn(*s, device="cuda", dtype=dt) for s in shapes]
    for _ in range(5):
        f(*xs)
    torch.cuda.synchronize()
    times = []
    for _ in range(50):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        f(*xs)
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    gpu = torch.cuda.get_device_name(0)
    lines = [
        f"# Tessera CUDA backend vs torch on {gpu}",
        "",
        "Tessera: `tessera bench --backend cuda` median (host arrays in and out: copies included).",
        "torch: device tensors, CUDA events, median of 50 calls. Ratio: torch ms / Tessera ms.",
        "",
        "| row | Tessera ms | torch ms | ratio | note |",
        "|---|---|---|---|---|",
    ]
    for name, path, fn, dims, dtype, shapes, formula in ROWS:
        res, err = tessera_row(args.tessera, path, fn, dims)
        t_ms = res["median_ms"] if res else None
        torch_ms = None
        note = err or ""
        try:
            torch_ms = torch_time(formula, shapes(dims), dtype)
        except Exception as e:  # a row's failure must not stop the table
            note += f" torch: {e}"
        cell = lambda v: f"{v:.3g}" if v is not None else "—"
        ratio = f"{torch_ms / t_ms:.2f}" if (t_ms and torch_ms) else "—"
        lines.append(f"| {name} | {cell(t_ms)} | {cell(torch_ms)} | {ratio} | {note.strip()} |")
        print(lines[-1], flush=True)
    open(args.out, "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
