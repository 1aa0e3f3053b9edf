//! Replays every regression case in `fuzz/findings/` on every backend at the dims,
//! dtype and input seed in its header. A case marked `# expect: fail` is a known open
//! bug: it must still fail (when it stops failing, remove the mark).

use tessera_fuzz::corpus::workspace_root;
use tessera_fuzz::run::{check_program, install_quiet_panic_hook, parse_header, Choice, Limits};

#[test]
fn every_finding_passes_on_every_backend() {
    install_quiet_panic_hook();
    let dir = workspace_root().join("fuzz/findings");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fuzz/findings exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tsr"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no cases in {}", dir.display());
    // Replays are never skipped for size: the header's dims are the ones that failed.
    let limits = Limits { max_work: u64::MAX, ..Limits::release() };
    let mut failures = Vec::new();
    let mut executed = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable");
        let expect_fail = text.lines().take_while(|l| l.starts_with('#')).any(|l| l.starts_with("# expect: fail"));
        let params: Vec<_> = parse_header(&text).into_iter().collect();
        let out = check_program(&text, &Choice::Fixed(params.clone()), &limits);
        if !params.is_empty() && out.executed == 0 && out.findings.is_empty() {
            failures.push(format!("{}: did not run on every backend", path.display()));
        }
        executed += out.executed;
        let found: Vec<String> = out.findings.iter().map(|f| format!("{} at {}: {}", f.kind.name(), f.stage, f.detail)).collect();
        match (expect_fail, found.is_empty()) {
            (false, false) => failures.push(format!("{}:\n  {}", path.display(), found.join("\n  "))),
            (true, true) => failures.push(format!("{}: fixed; remove its `# expect: fail` line", path.display())),
            _ => {}
        }
    }
    println!("{} cases, {executed} (function, dtype) runs compared", files.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
