"""Tessera for numpy users.

- ``tessera.einsum(spec, *arrays)``: numpy's einsum, planned and compiled once per
  (spec, shapes, dtype) and cached, so repeated calls cost a lookup and the kernels.
- ``tessera.contract_path(spec, *operands)``: ``(path, info)`` as opt_einsum returns them.
- ``tessera.compile(source_or_path)``: a ``.tsr`` module; its functions are called with
  numpy arrays and show their plans (``f.plan(n=4096)``), also as a drawing in Jupyter.
- ``tessera.stdlib(name)``: a standard-library module.

The work happens in Rust with the GIL released, so several threads may call at once.
"""

import os
from decimal import Decimal

import numpy as _np

from . import _tessera
from ._tessera import InternalError, Plan, SourceError, __version__, clebsch_gordan, einsum

__all__ = [
    "einsum",
    "contract_path",
    "compile",
    "stdlib",
    "stdlib_names",
    "Module",
    "Function",
    "Plan",
    "PathInfo",
    "TensorProduct",
    "clebsch_gordan",
    "SourceError",
    "InternalError",
    "__version__",
]


def stdlib_names():
    """The names of the standard-library modules (``tessera.stdlib(name)``)."""
    return list(_tessera.stdlib_names())


class Function:
    """A function of a compiled module. Call it with numpy arrays, positionally or by
    input name; one output comes back as an array, several as a tuple."""

    def __init__(self, native):
        self._f = native
        self.name = native.name
        self.input_names = tuple(native.input_names)
        self.output_names = tuple(native.output_names)
        self.dtype = native.dtype
        self.dims = tuple(native.dims)

    def __call__(self, *args, **kwargs):
        inputs = list(args)
        if len(inputs) > len(self.input_names):
            raise TypeError(
                f"{self.name}() takes {len(self.input_names)} inputs "
                f"({', '.join(self.input_names)}), but {len(inputs)} were given"
            )
        inputs += [_MISSING] * (len(self.input_names) - len(inputs))
        for key, value in kwargs.items():
            if key not in self.input_names:
                raise TypeError(
                    f"{self.name}() has no input {key!r}; its inputs are {', '.join(self.input_names)}"
                )
            k = self.input_names.index(key)
            if inputs[k] is not _MISSING:
                raise TypeError(f"{self.name}() got input {key!r} twice")
            inputs[k] = value
        missing = [n for n, v in zip(self.input_names, inputs) if v is _MISSING]
        if missing:
            raise TypeError(f"{self.name}() is missing inputs: {', '.join(missing)}")
        outs = self._f.call(inputs)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def call(self, *args, dims=None, mul=None):
        """Calls with explicit sizes for dims the input shapes do not determine, and
        optionally in a multiplication mode: ``mul="lmul"`` (or ``"lmul3"``, ``"lmul4"``)
        makes every product of the plan's contractions and maps an L-Mul (docs/lmul.md)."""
        outs = self._f.call(list(args), dims, mul)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def plan(self, memory_limit=None, algebra=True, **dims):
        """The costed plan for dims by name: ``f.plan(n=4096, d=64)``.
        ``memory_limit`` is in bytes (bigger intermediates are sliced)."""
        return self._f.plan(dims, memory_limit, algebra)

    def emit(self, stage, **dims):
        """The text of a compiler stage: "tir", "graph", "plan", "loops", "clif" or
        "llvm" (the last four need the dims: ``f.emit("loops", n=64)``)."""
        return self._f.emit(stage, dims)

    def __repr__(self):
        return repr(self._f)


class _Missing:
    def __repr__(self):
        return "<missing>"


_MISSING = _Missing()


class Module:
    """A checked ``.tsr`` module: ``mod.attention`` or ``mod["attention"]``."""

    def __init__(self, native):
        self._m = native
        self._functions = {name: Function(native.function(name)) for name in native.function_names()}

    @property
    def functions(self):
        """The function names, in order."""
        return list(self._functions)

    @property
    def warnings(self):
        """Warnings found while checking, rendered with their source ("" if none)."""
        return self._m.warnings()

    def emit_ast(self):
        return self._m.emit_ast()

    def __getitem__(self, name):
        try:
            return self._functions[name]
        except KeyError:
            raise KeyError(f"no function {name!r} in this module; its functions are: {', '.join(self._functions)}") from None

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._functions[name]
        except KeyError:
            raise AttributeError(
                f"no function {name!r} in this module; its functions are: {', '.join(self._functions)}"
            ) from None

    def __contains__(self, name):
        return name in self._functions

    def __iter__(self):
        return iter(self._functions.values())

    def __dir__(self):
        return sorted(set(object.__dir__(self)) | set(self._functions))

    def __repr__(self):
        return f"<tessera Module: {', '.join(self._functions)}>"


def compile(source_or_path):
    """A ``.tsr`` module from source text or from a file (a path object, or a string
    naming an existing file or ending in ``.tsr``). Errors in the source raise
    ``SourceError`` with the rendered diagnostic."""
    if isinstance(source_or_path, os.PathLike):
        return Module(_tessera.Module.from_file(os.fspath(source_or_path)))
    if not isinstance(source_or_path, str):
        raise TypeError(f"compile() takes .tsr source or a path, not {type(source_or_path).__name__}")
    text = source_or_path
    looks_like_path = "\n" not in text and (text.endswith(".tsr") or os.path.isfile(text))
    if looks_like_path:
        return Module(_tessera.Module.from_file(text))
    return Module(_tessera.Module.from_source(text))


def stdlib(name):
    """A standard-library module, e.g. ``tessera.stdlib("attention")``."""
    return Module(_tessera.Module.stdlib(name))


# ----------------------------------------------------------------------------------
# contract_path: opt_einsum's (path, PathInfo), from Tessera's path search.

_RESERVED = set(",.->")


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _symbol(i):
    """opt_einsum's ``get_symbol``: letters, then code points from 192 up."""
    return _LETTERS[i] if i < 52 else chr(i + 140)


def _fresh_symbols(used, n):
    """n labels that do not occur in the spec (for the axes of `...`), the ones
    opt_einsum picks, so that contraction strings read the same."""
    out = []
    i = 0
    while len(out) < n:
        c = _symbol(i)
        if c not in used:
            out.append(c)
        i += 1
    return out


def _normalize(spec, shapes):
    """(input subscripts, output subscript) with `...` spelled out as fresh labels and
    an implicit output made explicit, as numpy reads the spec."""
    spec = "".join(c for c in spec if not c.isspace())
    if "->" in spec:
        lhs, out = spec.split("->", 1)
    else:
        lhs, out = spec, None
    terms = lhs.split(",") if lhs or shapes else []
    if len(terms) != len(shapes):
        raise ValueError(f"the spec has {len(terms)} operands, but {len(shapes)} were given")
    n_ell = 0
    for t, shape in zip(terms, shapes):
        if "..." in t:
            n_ell = max(n_ell, len(shape) - (len(t) - 3))
    # As opt_einsum: as many fresh labels as the largest rank, each operand's `...`
    # spelled with the last ones (right-aligned broadcasting).
    longest = max((len(s) for s in shapes), default=0)
    pool = "".join(_fresh_symbols(set(spec), longest))
    ell = pool[len(pool) - n_ell :] if n_ell else ""
    inputs = []
    for t, shape in zip(terms, shapes):
        if "..." in t:
            k = max(len(shape) - (len(t) - 3), 0)
            t = t.replace("...", pool[len(pool) - k :] if k else "")
        inputs.append(t)
    if out is None:
        counts = {}
        for t in inputs:
            for c in t:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    else:
        out = out.replace("...", ell)
    return inputs, out


def _size_dict(inputs, shapes):
    sizes = {}
    for t, shape in zip(inputs, shapes):
        for c, d in zip(t, shape):
            # A size-1 axis broadcasts against the label's other size.
            if sizes.get(c, 1) == 1:
                sizes[c] = int(d)
    return sizes


def _size(labels, sizes):
    n = 1
    for c in labels:
        n *= sizes[c]
    return n


def _flop_count(labels, inner, num_terms, sizes):
    """opt_einsum's FLOP convention for one contraction."""
    factor = max(1, num_terms - 1) + (1 if inner else 0)
    return _size(labels, sizes) * factor


class PathInfo:
    """What opt_einsum's ``PathInfo`` has (``opt_cost``, ``naive_cost``, ``speedup``,
    ``largest_intermediate``, ``contraction_list``, ``scale_list``, ``size_list``,
    ``eq``, ``path``), plus Tessera's ``plan``, ``search_ms`` and ``peak_bytes``."""

    def __init__(self, eq, inputs, output, shapes, sizes, path, plan):
        self.eq = eq
        self.input_subscripts = ",".join(inputs)
        self.output_subscript = output
        self.indices = set("".join(inputs))
        self.path = path
        self.plan = plan
        self.size_dict = sizes
        self.shapes = [tuple(s) for s in shapes]
        self.search_ms = plan.search_ms
        self.peak_bytes = plan.peak_bytes
        self._inputs = inputs
        self.opt_cost = Decimal(int(plan.flops)) if plan.flops < 2**63 else Decimal(plan.flops)
        self.naive_cost = Decimal(int(plan.naive_flops)) if plan.naive_flops < 2**63 else Decimal(plan.naive_flops)
        self.speedup = self.naive_cost / max(self.opt_cost, Decimal(1))
        self._steps = None

    # The per-step lists are worked out on first use: most callers of contract_path
    # only want the path, and for them this Python loop was a fifth of the call.
    def _step_lists(self):
        if self._steps is not None:
            return self._steps
        inputs, output, sizes = self._inputs, self.output_subscript, self.size_dict
        remaining = list(inputs)
        remaining_sets = [set(t) for t in inputs]
        out_set = set(output)
        contraction_list = []
        scale_list = []
        size_list = []
        cost_list = []
        for step, positions in enumerate(self.path):
            positions = tuple(sorted(positions, reverse=True))
            taken = [remaining.pop(p) for p in positions]
            taken_sets = [remaining_sets.pop(p) for p in positions]
            contract = set().union(*taken_sets)
            keep = out_set.union(*remaining_sets)
            result_set = contract & keep
            removed = contract - result_set
            if step == len(self.path) - 1:
                result = output
            else:
                joined = "".join(taken)
                result = "".join(sorted(result_set, key=joined.find))
            cost_list.append(_flop_count(contract, bool(removed), len(positions), sizes))
            scale_list.append(len(contract))
            size_list.append(_size(result, sizes))
            remaining.append(result)
            remaining_sets.append(set(result))
            blas = "GEMM" if len(positions) == 2 and removed else False
            contraction_list.append(
                (positions, frozenset(removed), ",".join(taken) + "->" + result, tuple(remaining), blas)
            )
        self._steps = (contraction_list, scale_list, size_list, cost_list)
        return self._steps

    contraction_list = property(lambda self: self._step_lists()[0])
    scale_list = property(lambda self: self._step_lists()[1])
    size_list = property(lambda self: self._step_lists()[2])
    cost_list = property(lambda self: self._step_lists()[3])
    largest_intermediate = property(lambda self: Decimal(max(self.size_list, default=1)))

    def __repr__(self):
        # opt_einsum's layout, then what Tessera adds.
        header = ("scaling", "BLAS", "current", "remaining")
        lines = [
            f"  Complete contraction:  {self.eq}",
            f"         Naive scaling:  {len(self.indices)}",
            f"     Optimized scaling:  {max(self.scale_list, default=0)}",
            f"      Naive FLOP count:  {self.naive_cost:.3e}",
            f"  Optimized FLOP count:  {self.opt_cost:.3e}",
            f"   Theoretical speedup:  {self.speedup:.3e}",
            f"  Largest intermediate:  {self.largest_intermediate:.3e} elements",
            f"           Path search:  {self.search_ms:.3f} ms (Tessera)",
            f"     Peak intermediate:  {self.peak_bytes} bytes in float32, all alive at once",
            "-" * 80,
            "{:>6} {:>11} {:>22} {:>37}".format(*header),
            "-" * 80,
        ]
        for (positions, removed, einsum_str, remaining, blas), scale in zip(self.contraction_list, self.scale_list):
            rest = ",".join(remaining) + "->" + self.output_subscript if remaining is not None else "..."
            lines.append("{:>4} {:>14} {:>22}    {:>37}".format(scale, blas or "-", einsum_str, rest))
        return "\n".join(lines)

    __str__ = __repr__

    def _repr_html_(self):
        return f"<pre>{_html_escape(repr(self))}</pre>" + self.plan._repr_html_()


def _html_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def contract_path(spec, *operands, shapes=False, memory_limit=None, optimize=None):
    """``(path, info)`` for an einsum, as ``opt_einsum.contract_path`` returns them.

    ``path`` is opt_einsum's format, a list of tuples of operand positions, so it works
    as ``opt_einsum.contract(..., optimize=path)``; numpy's ``np.einsum`` wants it with
    a leading ``"einsum_path"``, which ``info.einsum_path`` is. With ``shapes=True`` the
    operands are shapes instead of arrays. ``memory_limit`` (elements, or
    ``"max_input"``) bounds the largest intermediate: Tessera slices the intermediates
    that would exceed it. ``optimize`` is accepted for compatibility: Tessera chooses.
    """
    del optimize
    if shapes:
        shape_list = [tuple(int(d) for d in s) for s in operands]
    else:
        shape_list = [tuple(_np.shape(o)) for o in operands]
    inputs, output = _normalize(spec, shape_list)
    sizes = _size_dict(inputs, shape_list)
    limit_bytes = None
    if memory_limit is not None:
        if memory_limit == "max_input":
            elements = max((_size(t, sizes) for t in inputs), default=1)
        else:
            elements = int(memory_limit)
        # Tessera's limits are bytes; opt_einsum's are elements. Paths are planned
        # in float32 (the path does not depend on the element type).
        limit_bytes = elements * 4
    plan = _tessera.einsum_plan(spec, [list(s) for s in shape_list], limit_bytes)
    path = plan.path
    if path is None:
        path = [tuple(range(len(inputs)))]
    path = [tuple(p) for p in path]
    info = PathInfo(",".join(inputs) + "->" + output, inputs, output, shape_list, sizes, path, plan)
    info.einsum_path = ["einsum_path"] + path
    return path, info


# ----------------------------------------------------------------------------------
# Equivariant tensor products with e3nn's layout.


class TensorProduct:
    """The tensor product of two irreps features over every allowed path, as
    ``e3nn.o3.TensorProduct`` computes it (default normalisation), in mode ``"uvw"``
    (e3nn's ``FullyConnectedTensorProduct``) or ``"uvu"`` (channel-wise).

    ``tp = TensorProduct("32x0e + 32x1o", "1x0e + 1x1o + 1x2e", "32x0e + 32x1o", "uvu")``;
    ``tp(x1, x2, weight)`` takes flat features ``[batch, dim]`` and e3nn's flat weight
    vector (``tp.weight_numel`` values) and returns ``[batch, out_dim]``.
    ``tp.instructions`` lists the paths as ``(i_in1, i_in2, i_out, mode, True,
    path_weight=1.0)`` tuples, which ``e3nn.o3.TensorProduct`` accepts as they are.
    The program Tessera compiles is ``tp.source``; its function is ``tp.function``."""

    def __init__(self, irreps_in1, irreps_in2, irreps_out, mode="uvw", dtype="float32"):
        spec = _tessera.tensor_product_spec(str(irreps_in1), str(irreps_in2), str(irreps_out), mode, str(_np.dtype(dtype)))
        self.mode = mode
        self.dtype = _np.dtype(dtype)
        self.source = spec["source"]
        self._blocks = [spec["in1"], spec["in2"], spec["out"]]
        self._weights = [tuple(shape) for (_, _, _, shape, _) in spec["instructions"]]
        self.instructions = [(a, b, o, mode, True, 1.0) for (a, b, o, _, _) in spec["instructions"]]
        self.coefficients = [c for (_, _, _, _, c) in spec["instructions"]]
        self.weight_numel = sum(int(_np.prod(s)) for s in self._weights)
        self.function = compile(self.source)["tensor_product"]

    @staticmethod
    def _dim(blocks):
        return sum(mul * (2 * l + 1) for (mul, l, _) in blocks)

    def _split(self, x, blocks, what):
        x = _np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self._dim(blocks):
            raise ValueError(f"{what} has shape {x.shape}, expected [batch, {self._dim(blocks)}]")
        out, at = [], 0
        for mul, l, _ in blocks:
            d = 2 * l + 1
            out.append(x[:, at : at + mul * d].reshape(x.shape[0], mul, d))
            at += mul * d
        return out

    def __call__(self, x1, x2, weight):
        xs = self._split(x1, self._blocks[0], "the first feature")
        ys = self._split(x2, self._blocks[1], "the second feature")
        if _np.shape(x1)[0] != _np.shape(x2)[0]:
            raise ValueError(f"the features have batch sizes {_np.shape(x1)[0]} and {_np.shape(x2)[0]}")
        weight = _np.asarray(weight)
        if weight.shape != (self.weight_numel,):
            raise ValueError(f"weight has shape {weight.shape}, expected ({self.weight_numel},)")
        ws, at = [], 0
        for shape in self._weights:
            n = int(_np.prod(shape))
            ws.append(weight[at : at + n].reshape(shape))
            at += n
        outs = self.function(*xs, *ys, *ws)
        if not isinstance(outs, tuple):
            outs = (outs,)
        batch = _np.asarray(x1).shape[0]
        return _np.concatenate([o.reshape(batch, -1) for o in outs], axis=1)

    def __repr__(self):
        return f"<tessera TensorProduct {self.mode}: {len(self.instructions)} paths>"
