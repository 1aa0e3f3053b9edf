#!/usr/bin/env python3
"""The benchmark's tensor network: an open rows x cols lattice, one tensor per site with
a bond of dimension `bond` to each neighbour, contracted to a scalar. Prints the einsum
spec and the label sizes as `tessera plan/bench --sizes` takes them, or JSON.

Usage: network.py ROWS COLS BOND [--json]
"""
import json
import string
import sys


def lattice(rows, cols):
    labels = iter(string.ascii_letters)
    bonds = {}
    for r in range(rows):
        for c in range(cols):
            if c + 1 < cols:
                bonds[((r, c), (r, c + 1))] = next(labels)
            if r + 1 < rows:
                bonds[((r, c), (r + 1, c))] = next(labels)
    terms = []
    for r in range(rows):
        for c in range(cols):
            terms.append("".join(l for (a, b), l in bonds.items() if (r, c) in (a, b)))
    return terms, sorted(bonds.values())


def main():
    rows, cols, bond = (int(x) for x in sys.argv[1:4])
    terms, labels = lattice(rows, cols)
    spec = ",".join(terms) + "->"
    if "--json" in sys.argv:
        print(json.dumps({"spec": spec, "terms": terms, "sizes": {l: bond for l in labels}}))
    else:
        print(spec)
        print(",".join(f"{l}={bond}" for l in labels))


if __name__ == "__main__":
    main()
