"""Parity of Tessera's equivariant tensor products with e3nn 0.6 (torch, CPU).

Run by `.ci/run` (through `python/ci.sh`) in the venv where the tessera wheel is
installed, after `pip install e3nn`:

    python -m pytest -q tests/e3nn

- `cg(l1, l2, l3)` equals `e3nn.o3.wigner_3j(l1, l2, l3)` entry for entry (the same real
  basis, phase and sign; see compiler/src/constants/mod.rs) for every l <= 4;
- `tessera.TensorProduct` equals `e3nn.o3.TensorProduct` with the same instructions on
  random inputs and weights, in modes uvw and uvu;
- the product is equivariant: rotating (and reflecting) the inputs with e3nn's Wigner D
  matrices rotates the output.
"""

import numpy as np
import pytest
import torch

import tessera

e3nn = pytest.importorskip("e3nn")
from e3nn import o3  # noqa: E402

torch.set_default_dtype(torch.float64)


def test_clebsch_gordan_equals_wigner_3j():
    checked = 0
    for l1 in range(5):
        for l2 in range(5):
            for l3 in range(abs(l1 - l2), min(l1 + l2, 4) + 1):
                ours = tessera.clebsch_gordan(l1, l2, l3)
                theirs = o3.wigner_3j(l1, l2, l3, dtype=torch.float64).numpy()
                assert ours.shape == theirs.shape
                np.testing.assert_allclose(ours, theirs, atol=1e-12, err_msg=f"cg({l1}, {l2}, {l3})")
                checked += 1
    assert checked == 65


CASES = [
    # (irreps_in1, irreps_in2, irreps_out, mode)
    ("4x0e + 4x1o + 4x2e", "1x0e + 1x1o + 1x2e", "4x0e + 4x1o + 4x2e", "uvu"),
    ("3x0e + 2x1o + 2x2e + 1x3o", "1x0e + 1x1o + 1x2e + 1x3o", "3x0e + 2x1o + 2x2e + 3x1e + 2x3o", "uvw"),
    ("2x0e + 3x1o + 2x1e", "2x0o + 1x1o", "2x0e + 3x1o + 3x1e + 2x2e + 2x0o", "uvu"),
    ("5x1o + 3x2e", "2x1o + 1x2e", "4x0e + 3x1e + 2x2e + 1x3o + 2x4e", "uvw"),
]


def e3nn_tp(tp, in1, in2, out):
    return o3.TensorProduct(in1, in2, out, tp.instructions, internal_weights=False, shared_weights=True)


def random_rotation(rng, reflect):
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return torch.tensor(-q if reflect else q)


@pytest.mark.parametrize("in1, in2, out, mode", CASES)
def test_tensor_product_equals_e3nn(in1, in2, out, mode):
    tp = tessera.TensorProduct(in1, in2, out, mode, dtype="float64")
    theirs = e3nn_tp(tp, in1, in2, out)
    assert tp.weight_numel == theirs.weight_numel
    rng = np.random.default_rng(0)
    z = 37
    x1 = rng.standard_normal((z, o3.Irreps(in1).dim))
    x2 = rng.standard_normal((z, o3.Irreps(in2).dim))
    w = rng.standard_normal(tp.weight_numel)
    want = theirs(torch.tensor(x1), torch.tensor(x2), torch.tensor(w)).numpy()
    got = tp(x1, x2, w)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    # float32 as well, at float32's precision.
    tp32 = tessera.TensorProduct(in1, in2, out, mode, dtype="float32")
    got32 = tp32(x1.astype(np.float32), x2.astype(np.float32), w.astype(np.float32))
    np.testing.assert_allclose(got32, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("in1, in2, out, mode", CASES)
def test_tensor_product_is_equivariant(in1, in2, out, mode):
    tp = tessera.TensorProduct(in1, in2, out, mode, dtype="float64")
    rng = np.random.default_rng(1)
    z = 11
    x1 = rng.standard_normal((z, o3.Irreps(in1).dim))
    x2 = rng.standard_normal((z, o3.Irreps(in2).dim))
    w = rng.standard_normal(tp.weight_numel)
    for reflect in (False, True):
        R = random_rotation(rng, reflect)
        d1, d2, d3 = (o3.Irreps(x).D_from_matrix(R).numpy() for x in (in1, in2, out))
        rotated = tp(x1 @ d1.T, x2 @ d2.T, w)
        np.testing.assert_allclose(rotated, tp(x1, x2, w) @ d3.T, atol=1e-10, err_msg=f"reflect={reflect}")
