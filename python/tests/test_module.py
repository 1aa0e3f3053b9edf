"""tessera.compile, functions, plans, errors and threads."""

import json
import threading

import numpy as np
import pytest

import tessera

CHAIN = """
# A matrix chain: the plan multiplies the cheap pair first.
fn chain(A: f64[a, b], B: f64[b, c], C: f64[c, d]) -> D: f64[a, d] {
    D[i, l] = A[i, j] * B[j, k] * C[k, l]
}

fn two(X: f32[n, m]) -> (S: f32[n], T: f32[m]) {
    S[i] = X[i, j]
    T[j] = X[i, j]
}
"""


@pytest.fixture(scope="module")
def mod():
    return tessera.compile(CHAIN)


def _rand(*shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_functions_by_attribute_and_item(mod):
    assert mod.functions == ["chain", "two"]
    assert mod.chain is mod["chain"]
    assert mod.chain.input_names == ("A", "B", "C")
    assert mod.two.output_names == ("S", "T")
    assert "chain" in mod
    assert "chain" in dir(mod)


def test_call_positionally_and_by_name(mod):
    a, b, c = _rand(4, 30), _rand(30, 3, seed=1), _rand(3, 5, seed=2)
    want = a @ b @ c
    np.testing.assert_allclose(mod.chain(a, b, c), want, rtol=1e-12)
    np.testing.assert_allclose(mod.chain(C=c, A=a, B=b), want, rtol=1e-12)
    np.testing.assert_allclose(mod.chain(a, C=c, B=b), want, rtol=1e-12)


def test_several_outputs_are_a_tuple(mod):
    x = _rand(3, 4, dtype=np.float32)
    s, t = mod.two(x)
    np.testing.assert_allclose(s, x.sum(1), rtol=1e-5)
    np.testing.assert_allclose(t, x.sum(0), rtol=1e-5)
    assert s.dtype == np.float32


def test_strided_function_inputs(mod):
    a = _rand(8, 60)[::2, ::2]
    b = _rand(30, 3, seed=1)
    c = np.asfortranarray(_rand(3, 5, seed=2))
    np.testing.assert_allclose(mod.chain(a, b, c), a @ b @ c, rtol=1e-12)


def test_wrong_dtype_names_the_input(mod):
    with pytest.raises(ValueError, match="input `B`"):
        mod.chain(_rand(2, 3), _rand(3, 4, dtype=np.float32), _rand(4, 5))


def test_wrong_shape_names_the_tensor(mod):
    with pytest.raises(ValueError, match="B"):
        mod.chain(_rand(2, 3), _rand(4, 4), _rand(4, 5))


def test_argument_mistakes(mod):
    with pytest.raises(TypeError, match="missing inputs: C"):
        mod.chain(_rand(2, 3), _rand(3, 4))
    with pytest.raises(TypeError, match="no input 'Z'"):
        mod.chain(_rand(2, 3), _rand(3, 4), _rand(4, 5), Z=1)
    with pytest.raises(TypeError, match="twice"):
        mod.chain(_rand(2, 3), _rand(3, 4), _rand(4, 5), A=1)
    with pytest.raises(AttributeError, match="chain, two"):
        mod.nope
    with pytest.raises(KeyError):
        mod["nope"]


def test_source_error_carries_the_rendered_diagnostic():
    with pytest.raises(tessera.SourceError) as e:
        tessera.compile("fn f(A: f64[n]) -> B: f64[n] { B[i] = Q[i] }")
    assert isinstance(e.value, ValueError)
    text = str(e.value)
    assert "<source>" in text and "B[i] = Q[i]" in text, text


def test_compile_from_path(tmp_path, mod):
    p = tmp_path / "chain.tsr"
    p.write_text(CHAIN)
    m = tessera.compile(p)
    assert m.functions == mod.functions
    m2 = tessera.compile(str(p))
    assert m2.functions == mod.functions
    with pytest.raises(FileNotFoundError):
        tessera.compile(str(tmp_path / "missing.tsr"))


def test_plan_object(mod):
    plan = mod.chain.plan(a=10, b=100, c=5, d=50)
    assert isinstance(plan, tessera.Plan)
    assert plan.flops == 15000.0
    assert plan.naive_flops == 3 * 10 * 100 * 5 * 50
    assert plan.peak_bytes == 10 * 5 * 8
    assert plan.dims == {"a": 10, "b": 100, "c": 5, "d": 50}
    steps = plan.steps
    assert [s["kind"] for s in steps] == ["contract", "contract"]
    assert steps[1]["result"] == "D" and steps[1]["shape"] == [10, 50]
    assert sum(s["flops"] for s in steps) == plan.flops
    assert "plan for `chain`" in str(plan)
    data = json.loads(plan.to_json())
    assert data["flops"] == 15000.0 and len(data["steps"]) == 2
    assert "15000" in repr(plan) or "1.500e4" in repr(plan)


def test_plan_html_has_a_table_and_a_drawing(mod):
    html = mod.chain.plan(a=10, b=100, c=5, d=50)._repr_html_()
    assert "<table>" in html and html.count("<tr>") == 3
    svg = html[html.index("<svg") :]
    assert svg.count("<rect") == 3 + 2  # three inputs, two steps
    assert "A[10, 100]" in svg and "%0[10, 5]" in svg


def test_plan_errors(mod):
    with pytest.raises(ValueError, match="missing: d"):
        mod.chain.plan(a=1, b=2, c=3)
    with pytest.raises(ValueError, match="no dim `z`"):
        mod.chain.plan(a=1, b=2, c=3, d=4, z=5)


def test_emit_stages(mod):
    assert "fn chain" in mod.chain.emit("tir")
    assert "plan for `chain`" in mod.chain.emit("plan", a=2, b=3, c=4, d=5)
    assert "kernel" in mod.chain.emit("loops", a=2, b=3, c=4, d=5).lower() or "gemm" in mod.chain.emit("loops", a=2, b=3, c=4, d=5).lower()
    with pytest.raises(ValueError, match="unknown stage"):
        mod.chain.emit("nonsense")


def test_stdlib():
    names = tessera.stdlib_names()
    assert "attention" in names
    att = tessera.stdlib("attention")
    assert len(att.functions) >= 1
    with pytest.raises(ValueError, match="attention"):
        tessera.stdlib("no_such_module")


def test_stdlib_function_runs_against_numpy():
    att = tessera.stdlib("attention")
    f = att[att.functions[0]]
    plan = f.plan(**{d: 8 for d in f.dims})
    assert plan.flops > 0 and plan.flops <= plan.naive_flops


# --- threads -----------------------------------------------------------------------


def test_threads_calling_at_once(mod):
    """Several threads compile and run einsums and functions at once; every result is
    right. (The GIL is released while Tessera works.)"""
    errors = []
    barrier = threading.Barrier(6)

    def work(seed):
        try:
            barrier.wait()
            rng = np.random.default_rng(seed)
            for k in range(20):
                n = 2 + (seed + k) % 5
                a = rng.standard_normal((n, 7))
                b = rng.standard_normal((7, n + 1))
                np.testing.assert_allclose(tessera.einsum("ij,jk->ik", a, b), a @ b, rtol=1e-12, atol=1e-12)
                c = rng.standard_normal((n + 1, 3))
                np.testing.assert_allclose(mod.chain(a, b, c), a @ b @ c, rtol=1e-11, atol=1e-11)
                x = rng.standard_normal((n, 4, 4))
                np.testing.assert_allclose(tessera.einsum("bii->b", x), np.einsum("bii->b", x), rtol=1e-12)
        except Exception as e:  # noqa: BLE001 - reported below with its thread
            errors.append((seed, e))

    threads = [threading.Thread(target=work, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_lmul_mode_changes_products_and_bad_modes_are_refused():
    f = tessera.compile("fn mul(x: f32[n], y: f32[n]) -> z: f32[n] { z[i] = x[i] * y[i] }")["mul"]
    x = np.array([1.5, 3.0, 0.1], dtype=np.float32)
    y = np.array([1.5, 0.7, 0.3], dtype=np.float32)
    exact = f.call(x, y)
    np.testing.assert_array_equal(exact, x * y)
    approx = f.call(x, y, mul="lmul")
    # L-Mul drops the product of the mantissas, so not every product is exact.
    assert not np.array_equal(approx, exact)
    np.testing.assert_allclose(approx, exact, rtol=0.15)
    with pytest.raises(ValueError, match="unknown multiplication"):
        f.call(x, y, mul="lmul99")


def test_tensor_product_runs_on_flat_features():
    tp = tessera.TensorProduct("2x0e + 2x1o", "1x0e + 1x1o", "2x0e + 2x1o + 2x1e", "uvu", dtype="float64")
    assert tp.weight_numel == sum(int(np.prod(s)) for s in tp._weights)
    assert [i[:3] for i in tp.instructions] == [(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0), (1, 1, 2)]
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((4, 8)), rng.standard_normal((4, 4))
    w = rng.standard_normal(tp.weight_numel)
    out = tp(x1, x2, w)
    assert out.shape == (4, 2 + 6 + 6)
    # Linear in the weights: doubling them doubles the output.
    np.testing.assert_allclose(tp(x1, x2, 2 * w), 2 * out)
    with pytest.raises(ValueError, match="expected \\[batch, 8\\]"):
        tp(x1[:, :5], x2, w)
    with pytest.raises(ValueError, match="parity"):
        tessera.TensorProduct("2x0q", "1x0e", "2x0e")
    np.testing.assert_allclose(tessera.clebsch_gordan(1, 1, 0), np.eye(3)[:, :, None] / np.sqrt(3), atol=1e-15)
