//! The program shown at the top of README.md checks and computes attention.

use ndarray::Array2;

#[test]
fn readme_program_checks_and_runs() {
    let readme = include_str!("../README.md");
    let start = readme.find("```\nfn ").expect("README has a program block") + 4;
    let end = start + readme[start..].find("```").expect("block ends");
    let module = tessera::Module::from_source(&readme[start..end]).unwrap_or_else(|e| panic!("{}", e.render(false)));
    assert!(module.warnings().is_empty(), "{}", module.render_warnings(false));
    let f = module.function("attention").expect("attention is defined");
    let ones = Array2::<f32>::ones((3, 2)).into_dyn();
    let v = Array2::<f32>::from_shape_fn((3, 2), |(i, j)| (i + j) as f32).into_dyn();
    let out = f.call(&[ones.view(), ones.view(), v.view()]).expect("runs");
    // Equal scores give uniform weights: every output row is the column mean of V.
    for row in out[0].outer_iter() {
        assert!((row[0] - 1.0).abs() < 1e-6 && (row[1] - 2.0).abs() < 1e-6, "{row}");
    }
}
