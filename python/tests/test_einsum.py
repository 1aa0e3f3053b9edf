"""tessera.einsum against numpy.einsum, and contract_path against numpy and opt_einsum."""

import json

import numpy as np
import pytest

import tessera

# (spec, shapes): numpy's syntax in its variety, sizes 1 to 7.
CORPUS = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("ij,jk,kl,lm->im", [(2, 3), (3, 4), (4, 5), (5, 2)]),
    ("i,i->", [(6,), (6,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("ij->ji", [(3, 5)]),
    ("ij->", [(3, 5)]),
    ("ijk->kji", [(2, 3, 4)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk", [(2, 3, 4), (4, 5)]),
    ("i...->...", [(3, 2, 4)]),
    ("...,...", [(2, 3), (2, 3)]),
    ("ij,ij->ij", [(3, 4), (3, 4)]),
    ("ij,ij", [(3, 4), (3, 4)]),
    ("ijk,ikl,ilm->jm", [(2, 3, 4), (2, 4, 5), (2, 5, 3)]),
    ("ab,bc,cd,de,ef->af", [(2, 3), (3, 4), (4, 5), (5, 6), (6, 7)]),
    ("abc,cde,efa->bdf", [(2, 3, 4), (4, 3, 2), (2, 5, 2)]),
    ("ij,j->i", [(5, 7), (7,)]),
    ("i,ij,j->", [(5,), (5, 7), (7,)]),
    ("ij,kj->ik", [(1, 4), (3, 4)]),
    ("ij,jk->ik", [(3, 1), (4, 5)]),
    ("iij->j", [(3, 3, 2)]),
    ("ea,fb,abcd,gc,hd->efgh", [(2, 3), (2, 3), (3, 3, 3, 3), (2, 3), (2, 3)]),
    (",ij->ij", [(), (2, 3)]),
    ("->", [()]),
]


def _operands(shapes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


@pytest.mark.parametrize("spec,shapes", CORPUS, ids=[c[0] or "scalar" for c in CORPUS])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_agrees_with_numpy(spec, shapes, dtype):
    ops = _operands(shapes, dtype)
    want = np.einsum(spec, *ops)
    got = tessera.einsum(spec, *ops)
    assert isinstance(got, np.ndarray)
    assert got.dtype == dtype
    assert got.shape == np.shape(want)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_repeated_calls_reuse_the_compiled_function():
    a, b = _operands([(4, 3), (3, 2)], np.float64)
    first = tessera.einsum("ij,jk->ik", a, b)
    for _ in range(50):
        np.testing.assert_array_equal(tessera.einsum("ij,jk->ik", a, b), first)
    # A new shape is a new compilation with the right answer.
    c, d = _operands([(5, 3), (3, 6)], np.float64)
    np.testing.assert_allclose(tessera.einsum("ij,jk->ik", c, d), c @ d, rtol=1e-12)


def test_mixed_dtypes_promote_to_float64():
    a = np.ones((2, 3), np.float32)
    b = np.ones((3, 4), np.float64)
    out = tessera.einsum("ij,jk->ik", a, b)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, np.full((2, 4), 3.0))


def test_lists_and_optimize_are_accepted():
    out = tessera.einsum("i,i->", [1.0, 2.0, 3.0], [4.0, 5.0, 6.0], optimize="optimal")
    assert float(out) == 32.0


# --- non-contiguous and strided inputs -------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a.T,
        lambda a: a[::2, ::3],
        lambda a: a[::-1, :],
        lambda a: a[:, ::-2],
        lambda a: np.asfortranarray(a),
        lambda a: np.broadcast_to(a[:1], a.shape),
    ],
    ids=["transpose", "step", "reversed", "negative-step", "fortran", "broadcast-zero-stride"],
)
def test_strided_inputs(make):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((12, 12))
    a = make(base)
    b = rng.standard_normal((a.shape[1], 5))
    np.testing.assert_allclose(tessera.einsum("ij,jk->ik", a, b), a @ b, rtol=1e-12, atol=1e-12)


def test_inputs_are_not_modified():
    a, b = _operands([(4, 3), (3, 2)], np.float64)
    a0, b0 = a.copy(), b.copy()
    tessera.einsum("ij,jk->ik", a, b)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_readonly_inputs():
    a, b = _operands([(4, 3), (3, 2)], np.float64)
    a.setflags(write=False)
    np.testing.assert_allclose(tessera.einsum("ij,jk->ik", a, b), a @ b)


# --- errors ------------------------------------------------------------------------


def test_bad_spec_is_a_source_error():
    with pytest.raises(tessera.SourceError) as e:
        tessera.einsum("ij,jk->iz", np.ones((2, 3)), np.ones((3, 4)))
    assert isinstance(e.value, ValueError)
    # The rendered diagnostic points into the spec.
    assert "iz" in str(e.value) or "z" in str(e.value)


def test_shape_mismatch_is_a_value_error():
    with pytest.raises(ValueError):
        tessera.einsum("ij,jk->ik", np.ones((2, 3)), np.ones((4, 5)))


def test_wrong_operand_count():
    with pytest.raises(ValueError):
        tessera.einsum("ij,jk->ik", np.ones((2, 3)))


def test_integer_operand_names_the_argument():
    with pytest.raises(ValueError, match="operand 1"):
        tessera.einsum("ij,jk->ik", np.ones((2, 3)), np.ones((3, 4), dtype=np.int64))


def test_complex_operand_is_refused():
    with pytest.raises(ValueError, match="operand 0"):
        tessera.einsum("i->", np.ones(3, dtype=np.complex128))


# --- contract_path -----------------------------------------------------------------

PATH_CASES = [
    ("ij,jk,kl->il", [(10, 100), (100, 5), (5, 50)]),
    ("ab,bc,cd,de,ef->af", [(8, 16), (16, 4), (4, 32), (32, 8), (8, 2)]),
    ("ea,fb,abcd,gc,hd->efgh", [(10, 10), (10, 10), (10, 10, 10, 10), (10, 10), (10, 10)]),
    ("...ij,...jk,...kl", [(2, 3, 4), (2, 4, 5), (2, 5, 6)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("abc,cd,dea,eb->", [(4, 5, 6), (6, 7), (7, 3, 4), (3, 5)]),
]


@pytest.mark.parametrize("spec,shapes", PATH_CASES, ids=[c[0] for c in PATH_CASES])
def test_path_is_accepted_by_numpy(spec, shapes):
    ops = _operands(shapes, np.float64)
    path, info = tessera.contract_path(spec, *ops)
    assert all(isinstance(p, tuple) for p in path)
    want = np.einsum(spec, *ops)
    got = np.einsum(spec, *ops, optimize=info.einsum_path)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    # numpy's own accounting of the path.
    np_path, _ = np.einsum_path(spec, *ops, optimize=info.einsum_path)
    assert np_path == info.einsum_path


@pytest.mark.parametrize("spec,shapes", PATH_CASES, ids=[c[0] for c in PATH_CASES])
def test_path_is_accepted_by_opt_einsum_at_tesseras_cost(spec, shapes):
    oe = pytest.importorskip("opt_einsum")
    ops = _operands(shapes, np.float64)
    path, info = tessera.contract_path(spec, *ops)
    np.testing.assert_allclose(oe.contract(spec, *ops, optimize=path), np.einsum(spec, *ops), rtol=1e-10, atol=1e-10)
    oe_path, oe_info = oe.contract_path(spec, *ops, optimize=path)
    assert [tuple(p) for p in oe_path] == path
    # opt_einsum costs Tessera's path exactly as Tessera does, step by step.
    assert int(oe_info.opt_cost) == int(info.opt_cost)
    assert int(oe_info.naive_cost) == int(info.naive_cost)
    assert int(oe_info.largest_intermediate) == int(info.largest_intermediate)
    assert [c[2] for c in oe_info.contraction_list] == [c[2] for c in info.contraction_list]
    assert [c[0] for c in oe_info.contraction_list] == [c[0] for c in info.contraction_list]
    # And the path is no worse than opt_einsum's optimal one.
    _, best = oe.contract_path(spec, *ops, optimize="optimal")
    assert info.opt_cost <= best.opt_cost


def test_contract_path_with_shapes_and_info_fields():
    path, info = tessera.contract_path("ij,jk,kl->il", (10, 100), (100, 5), (5, 50), shapes=True)
    assert path == [(0, 1), (0, 1)]
    assert int(info.opt_cost) == 15000
    assert int(info.naive_cost) == 3 * 10 * 100 * 5 * 50
    assert float(info.speedup) == pytest.approx(750000 / 15000)
    assert int(info.largest_intermediate) == 500
    assert len(info.contraction_list) == 2
    text = str(info)
    for needle in ["Complete contraction:  ij,jk,kl->il", "Optimized FLOP count:", "Theoretical speedup:", "jk,ij->ki", "kl,ki->il", "Path search:"]:
        assert needle in text
    assert "<svg" in info._repr_html_()


def test_contract_path_memory_limit_slices():
    spec = "ab,bc,cd->ad"
    shapes = [(64, 64), (64, 64), (64, 64)]
    _, free = tessera.contract_path(spec, *shapes, shapes=True)
    _, capped = tessera.contract_path(spec, *shapes, shapes=True, memory_limit=256)
    # Tessera keeps the path and slices the intermediate instead (limits in float32).
    assert free.peak_bytes == 64 * 64 * 4
    assert capped.peak_bytes <= 256 * 4
    assert json.loads(capped.plan.to_json())["slices"], str(capped.plan)
    assert capped.path == free.path


def test_contract_path_bad_spec():
    with pytest.raises(tessera.SourceError):
        tessera.contract_path("ij,jk->q", (2, 3), (3, 4), shapes=True)
