#!/usr/bin/env bash
# Builds what bench/gpu/check.sh runs on a GPU machine that has no Rust and no LLVM
# (the lent machines have CUDA, torch and Python only): the release `tessera` binary and
# the GPU test binary, both with `--features cuda`, and the shared libraries LLVM 19
# needs, compressed, into bench/gpu/carry/ (git-ignored). Run it here, then carry that
# folder: run(command="bash bench/gpu/check.sh", carry=["bench/gpu/carry"]).
set -euo pipefail
cd "$(dirname "$0")/../.."
export LLVM_SYS_191_PREFIX="${LLVM_SYS_191_PREFIX:-/usr/lib/llvm-19}"
out=bench/gpu/carry
rm -rf "$out" && mkdir -p "$out/lib"
cargo build --release --features cuda --bin tessera
tests=$(cargo test --release --features cuda --test gpu --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gpu":
        print(m["executable"])' | tail -1)
cp target/release/tessera "$out/tessera"
cp "$tests" "$out/gpu-tests"
# Every library the binaries load, except the C and C++ runtimes every Linux has.
ldd target/release/tessera | awk '/=> \//{print $3}' | grep -v -E 'lib(c|m|gcc_s|stdc\+\+|pthread|dl|rt)\.so' \
    | while read -r lib; do cp -L "$lib" "$out/lib/"; done
tar -C "$out" -cJf "$out/bundle.tar.xz" tessera gpu-tests lib
rm -rf "$out/lib" "$out/tessera" "$out/gpu-tests"
ls -la "$out"
