#!/usr/bin/env bash
# The prepared GPU check (issue 12), one command on a lent GPU machine:
#   run(command="bash bench/gpu/check.sh", carry=["bench/gpu/carry"], timeout_s=540)
# after `bash bench/gpu/prepare.sh` here (the GPU machines have no Rust or LLVM, so the
# binaries and LLVM's libraries travel in bench/gpu/carry/bundle.tar.xz).
# 1. GPU tests: every stdlib function on the CUDA backend against the reference evaluator.
# 2. A timing table against torch on the same GPU (rows.py), written to $OUT/RESULTS.md.
# Budget: under 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/tessera-gpu-out}"
mkdir -p "$OUT"
work=/tmp/tessera-gpu
rm -rf "$work" && mkdir -p "$work"
if [ ! -f bench/gpu/carry/bundle.tar.xz ]; then
    echo "no bench/gpu/carry/bundle.tar.xz: run bench/gpu/prepare.sh first and carry bench/gpu/carry" >&2
    exit 2
fi
tar -C "$work" -xJf bench/gpu/carry/bundle.tar.xz
# cudarc looks for libcublas.so (or .so.12): the CUDA toolkit's folder has the plain name.
cublas_dirs=$(ls -d /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH="$work/lib:${cublas_dirs}${LD_LIBRARY_PATH:-}"
ls /usr/local/cuda/lib64/libcublas.so* 2>/dev/null | head -3
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

echo "== GPU tests (TESSERA_GPU_TESTS=1)"
start=$(date +%s)
TESSERA_GPU_TESTS=1 timeout 240 "$work/gpu-tests" --test-threads 1 2>&1 | tee "$OUT/gpu-tests.log" | tail -30
tests_rc=${PIPESTATUS[0]}
echo "GPU tests: exit $tests_rc in $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu-tests.log"

echo "== timings against torch"
timeout 240 python3 bench/gpu/rows.py --tessera "$work/tessera" --out "$OUT/RESULTS.md" 2>&1 | tail -40
rows_rc=${PIPESTATUS[0]}
echo "tests exit $tests_rc, rows exit $rows_rc"
exit $(( tests_rc != 0 || rows_rc != 0 ))
