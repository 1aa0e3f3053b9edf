#!/usr/bin/env bash
# Distributed runs over MPI on loopback: `mpirun -n 2` gives the single-process result,
# and a rank that fails makes every rank exit with an error naming it, without hanging.
# Usage: tests/mpi/run.sh [path/to/tessera]   (default: builds it with --features mpi,
# in the dev profile, which shares its dependencies with `cargo test`)
# Needs OpenMPI (apt-get install libopenmpi-dev openmpi-bin libclang-dev).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -ge 1 ]; then
    T=$(realpath "$1")
else
    cargo build --features mpi
    T=$(realpath target/debug/tessera)
fi
# CI runs as root; OpenMPI refuses that unless told.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Loopback only: no network interfaces to probe, no high-speed transports to look for.
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
MPIRUN=(timeout 120 mpirun --oversubscribe)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"

cat > gen.tsr <<'TSR'
fn gen() -> X: f64[n, n] {
    X[i, j] = sin(1.3 * i + 0.7 * j)
}
fn other() -> X: f64[n, n] {
    X[i, j] = cos(0.9 * i - 0.4 * j)
}
TSR
cat > rows.tsr <<'TSR'
fn rows(A: f64[n, k], B: f64[k, m]) -> (s: f64[n], top: f64[n]) {
    T[i, j] = A[i, l] * B[l, j]
    s[i] = exp(T[i, j])
    top[i] max= T[i, j]
}
TSR
cat > diff.tsr <<'TSR'
fn diff(a: f64[n], b: f64[n]) -> d: f64 {
    d max= abs(a[i] - b[i]) / (1 + abs(a[i]))
}
TSR
"$T" run gen.tsr --fn gen --dim n=96 -o a.npy
"$T" run gen.tsr --fn other --dim n=96 -o b.npy

close() { # close NAME X.npy Y.npy: relative difference below 1e-9
    local d
    d=$("$T" run diff.tsr "a=$2" "b=$3" | tail -n 1)
    if ! awk -v d="$d" 'BEGIN { exit !(d <= 1e-9) }'; then
        echo "FAIL $1: distributed and single-process results differ by $d" >&2
        exit 1
    fi
    echo "ok   $1 (difference $d)"
}

# An einsum whose 96 x 96 intermediates (72 KiB) do not fit 16 KiB, as a vector.
spec='ij,jk,kl,li->i'
"$T" einsum "$spec" a.npy b.npy a.npy b.npy -o one.npy
"$T" einsum "$spec" a.npy b.npy a.npy b.npy --memory-limit 16KiB -o sliced.npy
"${MPIRUN[@]}" -n 2 "$T" einsum "$spec" a.npy b.npy a.npy b.npy --memory-limit 16KiB --distributed -o two.npy
close "einsum sliced" one.npy sliced.npy
close "einsum over 2 ranks" one.npy two.npy
"${MPIRUN[@]}" -n 3 "$T" einsum "$spec" a.npy b.npy a.npy b.npy --memory-limit 16KiB --distributed -o three.npy
close "einsum over 3 ranks" one.npy three.npy
# --distributed outside mpirun runs as one process.
"$T" einsum "$spec" a.npy b.npy a.npy b.npy --memory-limit 16KiB --distributed -o alone.npy
close "einsum --distributed alone" one.npy alone.npy

# A function with a sum and a max= over the sliced index.
"$T" run rows.tsr A=a.npy B=b.npy -o s=s1.npy -o top=t1.npy
"${MPIRUN[@]}" -n 2 "$T" run rows.tsr A=a.npy B=b.npy --memory-limit 16KiB --distributed -o s=s2.npy -o top=t2.npy
close "run sum over 2 ranks" s1.npy s2.npy
close "run max= over 2 ranks" t1.npy t2.npy

# Faults: rank 1 cannot read its input, or reads other data than rank 0. Every rank
# exits (timeout would say 124), and rank 0 names rank 1.
expect_fault() { # NAME EXPECTED-TEXT ARGS-OF-RANK-1...
    local name=$1 want=$2
    shift 2
    set +e
    "${MPIRUN[@]}" -n 1 "$T" einsum "$spec" a.npy b.npy a.npy b.npy --memory-limit 16KiB --distributed -o f.npy \
        : -n 1 "$T" "$@" > fault.out 2>&1
    local rc=$?
    set -e
    if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || ! grep -q "$want" fault.out; then
        echo "FAIL $name: exit status $rc" >&2
        cat fault.out >&2
        exit 1
    fi
    echo "ok   $name (exit status $rc: $(grep -m1 "$want" fault.out))"
}
expect_fault "a rank that cannot read its input" "rank 1 of 2 failed: cannot read operand 2" \
    einsum "$spec" a.npy missing.npy a.npy b.npy --memory-limit 16KiB --distributed -o f.npy
expect_fault "ranks that read different inputs" "differ from rank 0" \
    einsum "$spec" a.npy a.npy a.npy b.npy --memory-limit 16KiB --distributed -o f.npy
echo "all distributed tests passed"
