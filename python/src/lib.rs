//! `tessera._tessera`: the native half of the Python package. The Python half
//! (`python/tessera/__init__.py`) adds `contract_path`'s opt_einsum-style info and the
//! module/function wrappers that take arguments by name.
//!
//! Everything here goes through the facade crate `tessera` (the same calls the CLI
//! makes); the GIL is released while Tessera checks, plans, compiles and runs.

use ndarray::{ArrayD, ArrayViewD};

// Planning allocates many small objects; mimalloc serves them about twice as fast as
// glibc's malloc (a 12-tensor contract_path spent half its planning time in malloc).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use numpy::{Element, PyArray, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyFileNotFoundError, PyMemoryError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use std::sync::Arc;
use tessera::{Backend, CallOptions, DType, Error, PlanOptions, Scalar};

create_exception!(
    _tessera,
    SourceError,
    PyValueError,
    "An error in .tsr source or an einsum spec; the message is the rendered diagnostic with its source excerpt."
);
create_exception!(
    _tessera,
    InternalError,
    PyRuntimeError,
    "An internal invariant failed. This is always a bug in Tessera; please report it."
);

/// A facade error as the Python exception a caller can catch.
fn to_py(e: Error) -> PyErr {
    match &e {
        Error::Compile { .. } => SourceError::new_err(e.render(false).trim_end().to_string()),
        Error::Io { message, .. } if message == "no such file" => PyFileNotFoundError::new_err(e.to_string()),
        Error::Io { .. } => PyOSError::new_err(e.to_string()),
        Error::Input(_) | Error::Eval(_) => PyValueError::new_err(e.to_string()),
        Error::Memory(_) => PyMemoryError::new_err(e.to_string()),
        Error::Internal(_) => InternalError::new_err(e.to_string()),
        // Python calls never distribute, but the facade's error type covers it.
        Error::Distributed(_) => PyRuntimeError::new_err(e.to_string()),
    }
}

/// An array argument with Tessera's element type, borrowed read-only from numpy.
enum Operand<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
}

/// `obj` as an f32 or f64 array (lists and scalars go through `numpy.asarray`); other
/// dtypes are refused with `what` (`operand 2`, `input A`) in the message.
fn operand<'py>(obj: &Bound<'py, PyAny>, what: &dyn Fn() -> String) -> PyResult<Operand<'py>> {
    let py = obj.py();
    let arr = match obj.cast::<PyUntypedArray>() {
        Ok(a) => a.clone(),
        Err(_) => {
            let a = py.import("numpy")?.call_method1("asarray", (obj,))?;
            a.cast_into::<PyUntypedArray>().map_err(|_| PyValueError::new_err(format!("{} is not an array", what())))?
        }
    };
    let borrow_err = |_| PyValueError::new_err(format!("{} is being written to elsewhere (a mutable borrow)", what()));
    if let Ok(a) = arr.cast::<PyArrayDyn<f64>>() {
        return Ok(Operand::F64(a.try_readonly().map_err(borrow_err)?));
    }
    if let Ok(a) = arr.cast::<PyArrayDyn<f32>>() {
        return Ok(Operand::F32(a.try_readonly().map_err(borrow_err)?));
    }
    let dtype = arr.dtype().str().map(|s| s.to_string()).unwrap_or_else(|_| "?".into());
    Err(PyValueError::new_err(format!(
        "{} has dtype {dtype}; Tessera computes in float32 or float64 (convert it, e.g. with .astype(numpy.float64))",
        what()
    )))
}

/// Calls `f32_call` or `f64_call` with views of the operands in one dtype: float64 if
/// any is float64 (numpy's promotion), else float32. float32 operands of a float64 call
/// are converted (a copy).
fn with_views<R>(
    ops: Vec<Operand<'_>>,
    f32_call: impl FnOnce(&[ArrayViewD<'_, f32>]) -> PyResult<R>,
    f64_call: impl FnOnce(&[ArrayViewD<'_, f64>]) -> PyResult<R>,
) -> PyResult<R> {
    if ops.iter().any(|o| matches!(o, Operand::F64(_))) {
        let converted: Vec<ArrayD<f64>> = ops
            .iter()
            .filter_map(|o| match o {
                Operand::F32(a) => Some(a.as_array().mapv(f64::from)),
                Operand::F64(_) => None,
            })
            .collect();
        let mut next = converted.iter();
        let views: Option<Vec<ArrayViewD<'_, f64>>> = ops
            .iter()
            .map(|o| match o {
                Operand::F64(a) => Some(a.as_array()),
                Operand::F32(_) => next.next().map(|c| c.view()),
            })
            .collect();
        let views = views.ok_or_else(|| to_py(Error::Internal("an operand was not converted to float64".into())))?;
        f64_call(&views)
    } else {
        let views: Vec<ArrayViewD<'_, f32>> = ops
            .iter()
            .filter_map(|o| match o {
                Operand::F32(a) => Some(a.as_array()),
                Operand::F64(_) => None,
            })
            .collect();
        f32_call(&views)
    }
}

fn to_numpy<'py, T: Element>(py: Python<'py>, a: ArrayD<T>) -> Bound<'py, PyAny> {
    PyArray::from_owned_array(py, a).into_any()
}

fn einsum_run<T: Scalar + Element + Send + Sync>(
    py: Python<'_>,
    spec: &str,
    views: &[ArrayViewD<'_, T>],
) -> PyResult<Py<PyAny>> {
    let out = py.detach(|| tessera::einsum_with(spec, views, &CallOptions::default())).map_err(to_py)?;
    Ok(to_numpy(py, out).unbind())
}

/// einsum(spec, *operands, optimize=True)
/// --
///
/// numpy's einsum: the whole subscript syntax (implicit output, `...`, repeated labels),
/// float32 or float64 operands of any strides. Tessera plans and compiles each
/// (spec, shapes, dtype) once and caches it, so a repeated einsum costs a lookup and its
/// kernels. `optimize` is accepted for numpy compatibility: Tessera always plans.
#[pyfunction]
#[pyo3(signature = (spec, *operands, optimize = None))]
fn einsum(
    py: Python<'_>,
    spec: &str,
    operands: &Bound<'_, PyTuple>,
    optimize: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let _ = optimize;
    let n = operands.len();
    let mut ops = Vec::with_capacity(n);
    for (k, o) in operands.iter().enumerate() {
        ops.push(operand(&o, &|| format!("operand {k} (of {n})"))?);
    }
    with_views(ops, |v| einsum_run(py, spec, v), |v| einsum_run(py, spec, v))
}

/// einsum_plan(spec, shapes, memory_limit=None, dtype="float64")
/// --
///
/// The Plan of an einsum for operand shapes (the path search and its costs).
#[pyfunction]
#[pyo3(signature = (spec, shapes, memory_limit = None))]
fn einsum_plan(py: Python<'_>, spec: &str, shapes: Vec<Vec<usize>>, memory_limit: Option<u64>) -> PyResult<Plan> {
    let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
    let opts = PlanOptions { memory_limit, ..PlanOptions::default() };
    let plan = py.detach(|| tessera::einsum_shapes_plan(spec, &refs, &opts)).map_err(to_py)?;
    Ok(Plan { inner: Arc::new(plan) })
}

/// A checked `.tsr` module.
#[pyclass(frozen, name = "Module", module = "tessera")]
struct Module {
    inner: Arc<tessera::Module>,
}

#[pymethods]
impl Module {
    /// Checks `.tsr` source text, shown as `name` in diagnostics.
    #[staticmethod]
    #[pyo3(signature = (text, name = "<source>"))]
    fn from_source(py: Python<'_>, text: &str, name: &str) -> PyResult<Module> {
        let m = py.detach(|| tessera::Module::from_named_source(name, text)).map_err(to_py)?;
        Ok(Module { inner: Arc::new(m) })
    }

    /// Reads and checks a `.tsr` file.
    #[staticmethod]
    fn from_file(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Module> {
        let m = py.detach(|| tessera::Module::from_file(&path)).map_err(to_py)?;
        Ok(Module { inner: Arc::new(m) })
    }

    /// A standard-library module, e.g. `Module.stdlib("attention")`.
    #[staticmethod]
    fn stdlib(py: Python<'_>, name: &str) -> PyResult<Module> {
        let m = py.detach(|| tessera::Module::stdlib(name)).map_err(to_py)?;
        Ok(Module { inner: Arc::new(m) })
    }

    /// The functions' names, in order.
    fn function_names(&self) -> Vec<String> {
        self.inner.function_names().into_iter().map(String::from).collect()
    }

    /// Warnings found while checking, rendered with their source.
    fn warnings(&self) -> String {
        self.inner.render_warnings(false)
    }

    /// The function called `name` (ValueError naming the module's functions if none).
    fn function(&self, name: &str) -> PyResult<Function> {
        self.inner.function(name).map_err(to_py)?;
        Ok(Function { module: self.inner.clone(), name: name.to_string() })
    }

    /// The file's AST printed as canonical source.
    fn emit_ast(&self) -> String {
        self.inner.emit_ast()
    }
}

/// One function of a module.
#[pyclass(frozen, name = "Function", module = "tessera")]
struct Function {
    module: Arc<tessera::Module>,
    name: String,
}

impl Function {
    fn get(&self) -> PyResult<tessera::Function<'_>> {
        self.module.function(&self.name).map_err(to_py)
    }
}

fn dims_of(dims: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(String, u64)>> {
    let mut out = Vec::new();
    if let Some(d) = dims {
        for (k, v) in d.iter() {
            let name: String = k.extract()?;
            let size: u64 =
                v.extract().map_err(|_| PyValueError::new_err(format!("dim `{name}` must be a whole number >= 0")))?;
            out.push((name, size));
        }
    }
    Ok(out)
}

fn call_run<T: Scalar + Element + Send + Sync>(
    py: Python<'_>,
    f: &tessera::Function<'_>,
    views: &[ArrayViewD<'_, T>],
    opts: &CallOptions,
) -> PyResult<Py<PyAny>> {
    let outs = py.detach(|| f.call_with(views, opts)).map_err(to_py)?;
    let arrays: Vec<Bound<'_, PyAny>> = outs.into_iter().map(|a| to_numpy(py, a)).collect();
    Ok(PyList::new(py, arrays)?.into_any().unbind())
}

#[pymethods]
impl Function {
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The declared element type: "float32" or "float64".
    #[getter]
    fn dtype(&self) -> PyResult<&'static str> {
        Ok(match self.get()?.dtype() {
            DType::F32 => "float32",
            DType::F64 => "float64",
        })
    }

    #[getter]
    fn input_names(&self) -> PyResult<Vec<String>> {
        Ok(self.get()?.input_names().into_iter().map(String::from).collect())
    }

    #[getter]
    fn output_names(&self) -> PyResult<Vec<String>> {
        Ok(self.get()?.output_names().into_iter().map(String::from).collect())
    }

    /// The dims of the signature, in order.
    #[getter]
    fn dims(&self) -> PyResult<Vec<String>> {
        Ok(self.get()?.tir().dims.iter().map(|d| d.name.clone()).collect())
    }

    /// Calls the function on arrays in declaration order; returns the list of outputs.
    /// Every input must have the declared dtype; `dims` gives dims the shapes do not;
    /// `mul` is the multiplication mode (`"exact"`, `"lmul"`, `"lmul3"`, ...: docs/lmul.md).
    #[pyo3(signature = (inputs, dims = None, mul = None))]
    fn call(
        &self,
        py: Python<'_>,
        inputs: Vec<Bound<'_, PyAny>>,
        dims: Option<&Bound<'_, PyDict>>,
        mul: Option<&str>,
    ) -> PyResult<Py<PyAny>> {
        let f = self.get()?;
        let names = f.input_names();
        if inputs.len() != names.len() {
            return Err(PyValueError::new_err(format!(
                "`{}` takes {} inputs ({}), but {} were given",
                self.name,
                names.len(),
                names.join(", "),
                inputs.len()
            )));
        }
        let want = f.dtype();
        let mut ops = Vec::with_capacity(inputs.len());
        for (obj, name) in inputs.iter().zip(&names) {
            let o = operand(obj, &|| format!("input `{name}`"))?;
            let got = match o {
                Operand::F32(_) => DType::F32,
                Operand::F64(_) => DType::F64,
            };
            if got != want {
                return Err(PyValueError::new_err(format!(
                    "input `{name}` is {}, but `{}` is declared {}; convert it with .astype(numpy.{})",
                    numpy_name(got),
                    self.name,
                    numpy_name(want),
                    numpy_name(want)
                )));
            }
            ops.push(o);
        }
        let mul = match mul {
            Some(m) => tessera::MulMode::parse(m).map_err(PyValueError::new_err)?,
            None => tessera::MulMode::Exact,
        };
        let opts = CallOptions { dims: dims_of(dims)?, mul, ..CallOptions::default() };
        with_views(ops, |v| call_run(py, &f, v, &opts), |v| call_run(py, &f, v, &opts))
    }

    /// The costed plan for dims given by name, e.g. `f.plan({"n": 4096, "d": 64})`.
    #[pyo3(signature = (dims = None, memory_limit = None, algebra = true))]
    fn plan(
        &self,
        py: Python<'_>,
        dims: Option<&Bound<'_, PyDict>>,
        memory_limit: Option<u64>,
        algebra: bool,
    ) -> PyResult<Plan> {
        let f = self.get()?;
        let dims = dims_of(dims)?;
        let refs: Vec<(&str, u64)> = dims.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let mut opts = PlanOptions { memory_limit, ..PlanOptions::default() };
        if !algebra {
            opts.algebra = None;
        }
        let plan = py.detach(|| f.plan(&refs, &opts)).map_err(to_py)?;
        Ok(Plan { inner: Arc::new(plan) })
    }

    /// The text form of a stage: "tir", "graph", "plan", "loops", "clif" or "llvm"
    /// (the last four need every dim).
    #[pyo3(signature = (stage, dims = None))]
    fn emit(&self, py: Python<'_>, stage: &str, dims: Option<&Bound<'_, PyDict>>) -> PyResult<String> {
        let f = self.get()?;
        let dims = dims_of(dims)?;
        let refs: Vec<(&str, u64)> = dims.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        // Loop programs come from the interpreter's compilation, which generates no code
        // of its own, as `tessera emit` does.
        let interp = CallOptions { backend: Backend::Interp, ..CallOptions::default() };
        py.detach(|| match stage {
            "tir" => Ok(f.emit_tir()),
            "graph" => Ok(format!("fn {}\n{}", f.name(), f.emit_graph())),
            "plan" => f.plan(&refs, &PlanOptions::default()).map(|p| p.to_string()),
            "loops" => f.compile_dims(&refs, &interp).map(|c| c.program().to_string()),
            "clif" => f.compile_dims(&refs, &interp).and_then(|c| c.emit_code(Backend::Cranelift)),
            "llvm" => f.compile_dims(&refs, &interp).and_then(|c| c.emit_code(Backend::Llvm)),
            other => Err(Error::Input(format!(
                "unknown stage `{other}`; the stages are tir, graph, plan, loops, clif, llvm (and Module.emit_ast())"
            ))),
        })
        .map_err(to_py)
    }

    fn __repr__(&self) -> PyResult<String> {
        let f = self.get()?;
        Ok(format!(
            "<tessera function {}({}) -> {}>",
            self.name,
            f.input_names().join(", "),
            f.output_names().join(", ")
        ))
    }
}

fn numpy_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "float32",
        DType::F64 => "float64",
    }
}

/// A costed plan: `str(plan)` is the table `tessera plan` prints; in Jupyter it shows
/// as a table and a drawing of the steps.
#[pyclass(frozen, name = "Plan", module = "tessera")]
struct Plan {
    inner: Arc<tessera::Plan>,
}

#[pymethods]
impl Plan {
    #[getter]
    fn function(&self) -> &str {
        &self.inner.function
    }

    #[getter]
    fn flops(&self) -> f64 {
        self.inner.flops
    }

    #[getter]
    fn naive_flops(&self) -> f64 {
        self.inner.naive_flops
    }

    #[getter]
    fn speedup(&self) -> f64 {
        self.inner.speedup
    }

    /// The largest total of intermediates alive at once, in bytes.
    #[getter]
    fn peak_bytes(&self) -> u64 {
        self.inner.peak_bytes
    }

    /// Milliseconds the planner took.
    #[getter]
    fn search_ms(&self) -> f64 {
        self.inner.search_ms
    }

    /// Dims and the sizes the plan is for.
    #[getter]
    fn dims<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for x in &self.inner.dims {
            d.set_item(&x.name, x.size)?;
        }
        Ok(d)
    }

    /// For a single einsum, the contraction order in opt_einsum's format (a list of
    /// tuples of operand positions); else None.
    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        match &self.inner.path {
            None => Ok(None),
            Some(p) => {
                let tuples: Vec<Bound<'py, PyTuple>> =
                    p.iter().map(|t| PyTuple::new(py, t)).collect::<PyResult<_>>()?;
                Ok(Some(PyList::new(py, tuples)?))
            }
        }
    }

    /// The steps as dicts (kind, result, shape, inputs, einsum, flops, bytes, statement,
    /// and for contractions the index roles), as in `to_json()`.
    #[getter]
    fn steps<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = py.import("json")?;
        let text = self.inner.to_json();
        json.call_method1("loads", (text,))?.get_item("steps")
    }

    fn to_json(&self) -> String {
        self.inner.to_json()
    }

    /// The steps as an SVG drawing (what `tessera plan --format svg` prints).
    fn to_svg(&self) -> String {
        self.inner.to_svg()
    }

    fn to_dot(&self) -> String {
        self.inner.to_dot()
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "<tessera Plan for {}: {} steps, {:.3e} FLOPs ({:.1}x fewer than naive), peak {} bytes>",
            self.inner.function,
            self.inner.steps.len(),
            self.inner.flops,
            self.inner.speedup,
            self.inner.peak_bytes
        )
    }

    /// Jupyter's rich display: the totals, a table of the steps and the SVG drawing.
    fn _repr_html_(&self) -> String {
        plan_html(&self.inner)
    }
}

fn html_esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn plan_html(p: &tessera::Plan) -> String {
    let mut h = String::from("<div class=\"tessera-plan\">");
    let dims: Vec<String> = p.dims.iter().map(|d| format!("{} = {}", d.name, d.size)).collect();
    h.push_str(&format!(
        "<p><b>plan for <code>{}</code></b> ({}; {})<br>{:.3e} FLOPs, {:.3e} naive ({:.1}x fewer); peak intermediate {} bytes; planned in {:.2} ms</p>",
        html_esc(&p.function),
        html_esc(&p.dtype),
        html_esc(&dims.join(", ")),
        p.flops,
        p.naive_flops,
        p.speedup,
        p.peak_bytes,
        p.search_ms
    ));
    h.push_str("<table><thead><tr><th>step</th><th>kind</th><th>result</th><th>shape</th><th>operation</th><th>FLOPs</th><th>bytes</th></tr></thead><tbody>");
    for (k, s) in p.steps.iter().enumerate() {
        let kind = match &s.kind {
            tessera::StepKind::Contract { .. } => "contract".to_string(),
            tessera::StepKind::Map => "map".to_string(),
            tessera::StepKind::Reduce { op } => format!("reduce {op}"),
        };
        let shape: Vec<String> = s.shape.iter().map(|x| x.to_string()).collect();
        h.push_str(&format!(
            "<tr><td>{k}</td><td>{}</td><td>{}</td><td>[{}]</td><td><code>{}</code></td><td>{:.3e}</td><td>{}</td></tr>",
            html_esc(&kind),
            html_esc(&s.result),
            shape.join(", "),
            html_esc(&s.einsum),
            s.flops,
            s.bytes
        ));
    }
    h.push_str("</tbody></table>");
    h.push_str(&p.to_svg());
    h.push_str("</div>");
    h
}

/// The names of the standard-library modules.
/// The e3nn-style tensor product of irreps `in1 ⊗ in2 → out` in `mode` (`uvw` or
/// `uvu`): its generated `.tsr` source, its blocks `(mul, l, parity)` and its
/// instructions `(i_in1, i_in2, i_out, weight_shape, coefficient)`.
#[pyfunction]
fn tensor_product_spec(py: Python<'_>, in1: &str, in2: &str, out: &str, mode: &str, dtype: &str) -> PyResult<Py<PyAny>> {
    use tessera::equivariant::{Irreps, Mode};
    let parse = |s: &str| s.parse::<Irreps>().map_err(|e| PyValueError::new_err(e.to_string()));
    let mode: Mode = mode.parse().map_err(PyValueError::new_err)?;
    let dtype = match dtype {
        "float32" | "f32" => DType::F32,
        "float64" | "f64" => DType::F64,
        other => return Err(PyValueError::new_err(format!("dtype {other:?}: expected float32 or float64"))),
    };
    let spec = tessera::equivariant::Spec::new(parse(in1)?, parse(in2)?, parse(out)?, mode).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let blocks = |x: &Irreps| x.0.iter().map(|b| (b.mul, b.ir.l, b.ir.p)).collect::<Vec<_>>();
    let d = PyDict::new(py);
    d.set_item("source", spec.source(dtype))?;
    d.set_item("in1", blocks(&spec.in1))?;
    d.set_item("in2", blocks(&spec.in2))?;
    d.set_item("out", blocks(&spec.out))?;
    let ins: Vec<(usize, usize, usize, Vec<usize>, f64)> =
        spec.instructions.iter().map(|i| (i.i_in1, i.i_in2, i.i_out, i.weight_shape.clone(), i.coefficient)).collect();
    d.set_item("instructions", ins)?;
    Ok(d.into_any().unbind())
}

/// The real-basis Clebsch-Gordan tensor `cg(l1, l2, l3)` of the language (e3nn's
/// `wigner_3j`), shape `[2l1+1, 2l2+1, 2l3+1]`, float64.
#[pyfunction]
fn clebsch_gordan<'py>(py: Python<'py>, l1: u32, l2: u32, l3: u32) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
    let values = tessera::equivariant::clebsch_gordan(l1, l2, l3).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let shape = tessera::equivariant::cg_shape(l1, l2, l3);
    let a = ArrayD::from_shape_vec(ndarray::IxDyn(&shape), values).map_err(|e| InternalError::new_err(e.to_string()))?;
    Ok(PyArray::from_owned_array(py, a))
}

#[pyfunction]
fn stdlib_names() -> Vec<String> {
    tessera::stdlib_names().into_iter().map(String::from).collect()
}

#[pymodule]
fn _tessera(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(einsum, m)?)?;
    m.add_function(wrap_pyfunction!(einsum_plan, m)?)?;
    m.add_function(wrap_pyfunction!(stdlib_names, m)?)?;
    m.add_function(wrap_pyfunction!(tensor_product_spec, m)?)?;
    m.add_function(wrap_pyfunction!(clebsch_gordan, m)?)?;
    m.add_class::<Module>()?;
    m.add_class::<Function>()?;
    m.add_class::<Plan>()?;
    m.add("SourceError", py.get_type::<SourceError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
