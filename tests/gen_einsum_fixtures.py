#!/usr/bin/env python3
"""Generates the einsum fixtures under tests/fixtures/einsum/.

Run from the repository root with the test venv (numpy 2.x, opt_einsum):

    tests/.venv/bin/python tests/gen_einsum_fixtures.py

Writes:
  corpus.json   valid specs with shapes and numpy's (or opt_einsum's) results, invalid
                specs that numpy rejects (with the Tessera diagnostic code each must
                give), and specs numpy refuses for their iteration space alone that
                opt_einsum plans (with opt_einsum's cost);
  npy/          a few specs as .npy inputs (f32 and f64, one Fortran-ordered) and
                expected outputs, described by npy/manifest.json.

Inputs are not stored in corpus.json: element k (flat C-order index) of operand o is
((k * 37 + o * 101 + 11) % 97) / 48.5 - 1.0, computed in f64.
The output is deterministic: running the script twice gives identical files.
"""

import json
import os
import sys

import numpy as np
import opt_einsum

ROOT = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(ROOT, "fixtures", "einsum")
FORMULA = "((k * 37 + o * 101 + 11) % 97) / 48.5 - 1.0"


def operand(o, shape, dtype=np.float64):
    """Operand o of the given shape, filled by the corpus formula (C order)."""
    k = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
    values = ((k * 37 + o * 101 + 11) % 97) / 48.5 - 1.0
    return values.reshape(shape).astype(dtype)


# Valid specs: (category, spec, shapes) evaluated with numpy.einsum, and
# (category, spec, shapes) evaluated with opt_einsum.contract for non-ASCII labels.
VALID = [
    # One operand: permutations, sums, copies.
    ("unary", "i->i", [(4,)]),
    ("unary", "i->", [(5,)]),
    ("unary", "ij->ji", [(2, 3)]),
    ("unary", "ij->ij", [(2, 3)]),
    ("unary", "ij->i", [(3, 4)]),
    ("unary", "ij->j", [(3, 4)]),
    ("unary", "ij->", [(3, 4)]),
    ("unary", "ijk->kji", [(2, 3, 4)]),
    ("unary", "ijk->jik", [(2, 3, 4)]),
    ("unary", "ijk->k", [(2, 3, 4)]),
    ("unary", "ijk->ik", [(2, 3, 4)]),
    ("unary", "ijkl->ljki", [(2, 3, 2, 3)]),
    ("unary", "abcde->eca", [(2, 1, 2, 3, 2)]),
    # Implicit outputs: labels seen once, sorted by code point (upper case first).
    ("implicit", "i", [(4,)]),
    ("implicit", "ij", [(2, 3)]),
    ("implicit", "ji", [(2, 3)]),
    ("implicit", "ba", [(3, 2)]),
    ("implicit", "kji", [(2, 3, 4)]),
    ("implicit", "ij,jk", [(2, 3), (3, 4)]),
    ("implicit", "ij,kj", [(2, 3), (4, 3)]),
    ("implicit", "i,i", [(5,), (5,)]),
    ("implicit", "i,j", [(2,), (3,)]),
    ("implicit", "j,i", [(2,), (3,)]),
    ("implicit", "ij,j", [(3, 4), (4,)]),
    ("implicit", "aB", [(2, 3)]),
    ("implicit", "Ba", [(2, 3)]),
    ("implicit", "aB,Bc", [(2, 3), (3, 4)]),
    ("implicit", "Ab,bA", [(2, 3), (3, 2)]),
    ("implicit", "zZ,Zy", [(2, 3), (3, 2)]),
    ("implicit", "Aa", [(3, 2)]),
    ("implicit", "ab,cd", [(2, 1), (3, 2)]),
    ("implicit", "abc,cba", [(2, 3, 2), (2, 3, 2)]),
    ("implicit", "iI,Ij", [(2, 3), (3, 2)]),
    ("implicit", "Zz,zY,Ya", [(2, 3), (3, 2), (2, 2)]),
    ("implicit", "xyz,XYZ", [(1, 2, 1), (2, 1, 2)]),
    # Matrix products and chains.
    ("matmul", "ij,jk->ik", [(2, 3), (3, 4)]),
    ("matmul", "ij,jk->ki", [(2, 3), (3, 4)]),
    ("matmul", "ik,kj->ij", [(7, 5), (5, 6)]),
    ("matmul", "ji,jk->ik", [(3, 2), (3, 4)]),
    ("matmul", "ij,kj->ik", [(2, 3), (4, 3)]),
    ("matmul", "ij,j->i", [(3, 4), (4,)]),
    ("matmul", "j,jk->k", [(3,), (3, 4)]),
    ("matmul", "i,ij,j->", [(3,), (3, 4), (4,)]),
    ("chain", "ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("chain", "ab,bc,cd,de->ae", [(2, 3), (3, 2), (2, 4), (4, 3)]),
    ("chain", "ij,jk,kl,lm,mn->in", [(2, 2), (2, 3), (3, 2), (2, 3), (3, 2)]),
    ("chain", "ij,jk,kl->li", [(3, 2), (2, 2), (2, 3)]),
    # Batched products.
    ("batched", "bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]),
    ("batched", "bij,bjk->bki", [(2, 2, 3), (2, 3, 2)]),
    ("batched", "bhij,bhjk->bhik", [(2, 2, 2, 3), (2, 2, 3, 2)]),
    ("batched", "bij,jk->bik", [(3, 2, 3), (3, 2)]),
    ("batched", "ij,bjk->bik", [(2, 3), (2, 3, 2)]),
    ("batched", "bij,bj->bi", [(2, 3, 4), (2, 4)]),
    ("batched", "bqd,bkd->bqk", [(2, 3, 4), (2, 2, 4)]),
    ("batched", "bqk,bkd->bqd", [(2, 3, 2), (2, 2, 4)]),
    ("batched", "bij,bjk", [(2, 2, 3), (2, 3, 2)]),
    # Traces and diagonals (repeated labels in one operand).
    ("diagonal", "ii->", [(3, 3)]),
    ("diagonal", "ii", [(4, 4)]),
    ("diagonal", "ii->i", [(3, 3)]),
    ("diagonal", "iij->j", [(2, 2, 5)]),
    ("diagonal", "iij->ij", [(3, 3, 2)]),
    ("diagonal", "iji->j", [(2, 4, 2)]),
    ("diagonal", "ijji->", [(2, 3, 3, 2)]),
    ("diagonal", "ijji->ij", [(2, 3, 3, 2)]),
    ("diagonal", "ijji->ji", [(2, 3, 3, 2)]),
    ("diagonal", "iii->i", [(3, 3, 3)]),
    ("diagonal", "iii->", [(3, 3, 3)]),
    ("diagonal", "ijij->ij", [(2, 3, 2, 3)]),
    ("diagonal", "ii,ii->i", [(3, 3), (3, 3)]),
    ("diagonal", "ii,i->i", [(3, 3), (3,)]),
    ("diagonal", "ij,ii->j", [(3, 2), (3, 3)]),
    ("diagonal", "bii->bi", [(2, 3, 3)]),
    ("diagonal", "bii->b", [(2, 3, 3)]),
    ("diagonal", "bii", [(2, 3, 3)]),
    ("diagonal", "ijk,kk->ij", [(2, 2, 3), (3, 3)]),
    ("diagonal", "aab,bcc->ac", [(2, 2, 3), (3, 2, 2)]),
    # Outer products.
    ("outer", "i,j->ij", [(2,), (3,)]),
    ("outer", "i,j->ji", [(2,), (3,)]),
    ("outer", "i,j,k->ijk", [(2,), (3,), (2,)]),
    ("outer", "i,j,k->kij", [(2,), (3,), (2,)]),
    ("outer", "ij,kl->ijkl", [(2, 2), (2, 3)]),
    ("outer", "ij,kl->ikjl", [(2, 2), (2, 3)]),
    ("outer", "ij,kl", [(2, 1), (3, 2)]),
    # Inner and elementwise products.
    ("elementwise", "i,i->", [(5,), (5,)]),
    ("elementwise", "i,i->i", [(5,), (5,)]),
    ("elementwise", "ij,ij->ij", [(2, 3), (2, 3)]),
    ("elementwise", "ij,ij->", [(2, 3), (2, 3)]),
    ("elementwise", "ij,ji->ij", [(2, 3), (3, 2)]),
    ("elementwise", "ij,ji->", [(2, 3), (3, 2)]),
    ("elementwise", "ij,ij,ij->ij", [(2, 3), (2, 3), (2, 3)]),
    ("elementwise", "i,i,i->", [(4,), (4,), (4,)]),
    # Ellipsis broadcasting.
    ("ellipsis", "...->...", [(2, 3)]),
    ("ellipsis", "...", [(2, 3)]),
    ("ellipsis", "...ij->...ji", [(2, 3, 4)]),
    ("ellipsis", "...ij->...", [(2, 3, 4)]),
    ("ellipsis", "...i->...", [(2, 3)]),
    ("ellipsis", "i...->...", [(2, 3)]),
    ("ellipsis", "i...->i", [(2,)]),
    ("ellipsis", "...ii->...i", [(2, 3, 3)]),
    ("ellipsis", "i...i->...", [(3, 2, 3)]),
    ("ellipsis", "i...i", [(3, 2, 3)]),
    ("ellipsis", "...ij->ij...", [(2, 3, 4)]),
    ("ellipsis", "...ij->i...j", [(2, 3, 4)]),
    ("ellipsis", "ij...->...ij", [(2, 3, 4)]),
    ("ellipsis", "ij->...ij", [(2, 3)]),
    ("ellipsis", "...ij->...ij", [(2, 3)]),
    ("ellipsis", "...ij->ij", [(2, 3)]),
    ("ellipsis", "ij...", [(2, 3, 4)]),
    ("ellipsis", "...ij", [(4, 2, 3)]),
    ("ellipsis", "...ij,...jk->...ik", [(2, 2, 3), (2, 3, 2)]),
    ("ellipsis", "...ij,...jk->...ik", [(2, 2, 3), (3, 2)]),
    ("ellipsis", "...ij,...jk->...ik", [(2, 1, 2, 3), (3, 3, 2)]),
    ("ellipsis", "...ij,...jk", [(2, 1, 2, 3), (3, 3, 2)]),
    ("ellipsis", "...ij,jk->...ik", [(2, 2, 3), (3, 2)]),
    ("ellipsis", "ij,...j->...i", [(2, 3), (2, 2, 3)]),
    ("ellipsis", "...,...->...", [(2, 3), (3,)]),
    ("ellipsis", "...,...", [(2, 1), (1, 3)]),
    ("ellipsis", "...,...->...", [(1, 3), (2, 1)]),
    ("ellipsis", "ij...,jk...->ik...", [(2, 3, 2), (3, 2, 2)]),
    ("ellipsis", "...i,...i->...", [(2, 3), (2, 3)]),
    ("ellipsis", "...i,...i", [(2, 3), (4, 1, 3)]),
    ("ellipsis", "i...,i...->...", [(3, 2), (3, 1)]),
    ("ellipsis", "a...,...b->...ab", [(2, 3), (3, 2)]),
    ("ellipsis", "...,i->...i", [(2, 2), (3,)]),
    ("ellipsis", "i...,j->...", [(2, 3), (2,)]),
    ("ellipsis", "i...,j", [(2, 3), (2,)]),
    ("ellipsis", "...i,i", [(2, 3), (3,)]),
    ("ellipsis", "i...,i", [(3, 2, 2), (3,)]),
    ("ellipsis", "a...b,b...c->...ac", [(2, 3, 2), (2, 1, 2)]),
    ("ellipsis", "...ii,...i->...", [(2, 3, 3), (3,)]),
    ("ellipsis", "b...,b...->b...", [(2, 3, 1), (2, 1, 2)]),
    ("ellipsis", "...,...,...->...", [(2, 1, 3), (1, 2, 1), (3,)]),
    # Size-1 broadcasting of labelled axes.
    ("broadcast1", "ij,j->i", [(2, 1), (3,)]),
    ("broadcast1", "i,i->i", [(1,), (3,)]),
    ("broadcast1", "i,i->", [(1,), (3,)]),
    ("broadcast1", "i,i", [(3,), (1,)]),
    ("broadcast1", "ij,jk->ik", [(2, 1), (3, 4)]),
    ("broadcast1", "ij,ij->ij", [(1, 3), (2, 1)]),
    ("broadcast1", "ij,ij", [(1, 3), (2, 1)]),
    ("broadcast1", "ii,i", [(1, 1), (3,)]),
    ("broadcast1", "ii,i->i", [(1, 1), (3,)]),
    ("broadcast1", "bij,bjk->bik", [(1, 2, 3), (4, 3, 2)]),
    ("broadcast1", "i,i,i->i", [(1,), (3,), (1,)]),
    ("broadcast1", "ij,jk", [(2, 3), (3, 1)]),
    ("broadcast1", "ij,jk", [(2, 1), (1, 3)]),
    ("broadcast1", "i,i->i", [(1,), (1,)]),
    ("broadcast1", "ijk,ijk->ijk", [(1, 3, 1), (2, 1, 2)]),
    ("broadcast1", "ij,kj->ikj", [(2, 1), (3, 4)]),
    ("broadcast1", "...i,...i->...i", [(2, 1), (1, 3)]),
    # Scalars (empty terms).
    ("scalar", "", [()]),
    ("scalar", "->", [()]),
    ("scalar", ",", [(), ()]),
    ("scalar", ",->", [(), ()]),
    ("scalar", "i,->i", [(3,), ()]),
    ("scalar", ",i", [(), (3,)]),
    ("scalar", ",ij->ji", [(), (2, 3)]),
    ("scalar", ",,", [(), (), ()]),
    ("scalar", "...,", [(2,), ()]),
    ("scalar", "...->", [()]),
    ("scalar", "i,,j->ij", [(2,), (), (3,)]),
    ("scalar", ",i->", [(), (4,)]),
    # Zero-size axes.
    ("zero", "i->", [(0,)]),
    ("zero", "i->i", [(0,)]),
    ("zero", "ij,jk->ik", [(2, 0), (0, 3)]),
    ("zero", "ij,jk->ik", [(0, 3), (3, 2)]),
    ("zero", "ii->i", [(0, 0)]),
    ("zero", "...", [(0, 2)]),
    ("zero", "i,i", [(0,), (1,)]),
    ("zero", "bij,bjk", [(0, 2, 3), (0, 3, 2)]),
    ("zero", "...ij,...jk->...ik", [(0, 2, 3), (3, 2)]),
    ("zero", "i,j->ij", [(0,), (3,)]),
    ("zero", "ij->", [(2, 0)]),
    # Networks of three to eight operands.
    ("network", "ab,bc,ca->", [(2, 3), (3, 2), (2, 2)]),
    ("network", "ijk,jl,kl->i", [(2, 3, 2), (3, 2), (2, 2)]),
    ("network", "abc,cd,de,ea->b", [(2, 3, 2), (2, 3), (3, 2), (2, 2)]),
    ("network", "ab,bc,cd,de,ef,fg,gh,ha->", [(2, 3), (3, 2), (2, 2), (2, 3), (3, 2), (2, 2), (2, 3), (3, 2)]),
    ("network", "i,i,i,i->i", [(3,), (3,), (3,), (3,)]),
    ("network", "ea,fb,abcd,gc,hd->efgh", [(2, 2), (2, 2), (2, 2, 2, 2), (2, 2), (2, 2)]),
    ("network", "ai,bi,ci,di,ei,fi->abcdef", [(2, 3), (2, 3), (2, 3), (2, 3), (2, 3), (2, 3)]),
    ("network", "ab,bcd,def,fg->aceg", [(2, 2), (2, 2, 2), (2, 2, 2), (2, 2)]),
    ("network", "abc,bd,ce,de->a", [(2, 2, 3), (2, 2), (3, 2), (2, 2)]),
    ("network", "ij,jk,kl,lm,mn,no,op->ip", [(2, 2), (2, 2), (2, 2), (2, 2), (2, 2), (2, 2), (2, 3)]),
    ("network", "ab,ac,ad->bcd", [(3, 2), (3, 2), (3, 2)]),
    ("network", "pqrs,tp,uq,vr,ws->tuvw", [(2, 2, 2, 2), (2, 2), (2, 2), (2, 2), (2, 2)]),
    ("network", "ij,jk,ki,il->l", [(2, 3), (3, 2), (2, 2), (2, 3)]),
    ("network", "a,ab,bc,c->", [(2,), (2, 3), (3, 2), (2,)]),
    ("network", "ij,jk,kl", [(2, 3), (3, 2), (2, 4)]),
    ("network", "Ab,bC,Cd,dA", [(2, 3), (3, 2), (2, 2), (2, 2)]),
    ("network", "...ab,bc,...cd->...ad", [(2, 2, 3), (3, 2), (2, 2, 2)]),
    ("network", "bij,bjk,bkl,blm->bim", [(2, 2, 2), (2, 2, 3), (2, 3, 2), (2, 2, 2)]),
    # Spaces, as numpy skips them inside terms.
    ("whitespace", " ij , jk -> ik ", [(2, 3), (3, 4)]),
    ("whitespace", "i j", [(2, 3)]),
    ("whitespace", " ", [()]),
    ("whitespace", "i ,j->ij ", [(2,), (3,)]),
    ("whitespace", " ... ij -> ji ... ", [(2, 3, 4)]),
    ("whitespace", "i , i -> ", [(3,), (3,)]),
    ("whitespace", "ii -> i", [(3, 3)]),
]

# Labels beyond ASCII letters: numpy rejects them, so opt_einsum.contract is the reference.
VALID_UNICODE = [
    ("unicode", "αβ,βγ->αγ", [(2, 3), (3, 2)]),
    ("unicode", "αβ,βγ", [(2, 3), (3, 2)]),
    ("unicode", "βα", [(2, 3)]),
    ("unicode", "ωω->", [(3, 3)]),
    ("unicode", "ωω->ω", [(3, 3)]),
    ("unicode", "iα,αj->ij", [(2, 3), (3, 2)]),
    ("unicode", "жз,зи->жи", [(2, 3), (3, 2)]),
    ("unicode", "中文,文字->中字", [(2, 3), (3, 2)]),
    ("unicode", "αβγ,γδ,δε->αε", [(2, 2, 3), (3, 2), (2, 2)]),
    ("unicode", "éa,aé", [(2, 3), (3, 2)]),
    ("unicode", "Δx,xΔ,Δ", [(2, 3), (3, 2), (2,)]),
    ("unicode", "...α,αβ->...β", [(2, 2, 3), (3, 2)]),
    ("unicode", "λμ", [(2, 3)]),
    # opt_einsum takes any character but `,` `.` `-` `>` and whitespace as a label.
    ("labels", "×÷,÷a->×a", [(2, 3), (3, 2)]),
    ("labels", "×÷", [(2, 3)]),
    ("labels", "i1,1_->i_", [(2, 3), (3, 2)]),
    ("labels", "ij!", [(2, 3, 2)]),
    ("labels", "a1", [(2, 3)]),
    ("labels", "(),)[->[(", [(2, 3), (3, 2)]),
    ("labels", "=+,+*", [(2, 3), (3, 2)]),
    ("labels", "...×,×÷->...÷", [(2, 3), (3, 2)]),
]


def get_symbol(i):
    """opt_einsum's label for index i (ASCII letters, then chr(i + 140))."""
    return opt_einsum.get_symbol(i)


def ladder(cols, size):
    """The overlap of two matrix-product states: tensors T_k(b_k, p_k, b_k+1) and
    B_k(c_k, p_k, c_k+1), in column order, contracted to a scalar."""
    b = list(range(cols + 1))
    c = list(range(cols + 1, 2 * cols + 2))
    p = list(range(2 * cols + 2, 3 * cols + 2))
    terms = []
    for k in range(cols):
        terms.append([b[k], p[k], b[k + 1]])
        terms.append([c[k], p[k], c[k + 1]])
    return terms, [], [size] * (3 * cols + 2)


def lattice_network(rows, cols, sizes):
    """An open-boundary grid of tensors in column-major order, bonds of the given sizes
    in turn, with the corner bond open."""
    labels = {}
    terms = [[] for _ in range(rows * cols)]
    n = 0
    for c in range(cols):
        for r in range(rows):
            v = c * rows + r
            for w in ([v + 1] if r + 1 < rows else []) + ([v + rows] if c + 1 < cols else []):
                labels[(v, w)] = n
                terms[v].append(n)
                terms[w].append(n)
                n += 1
    return terms, [terms[0][0]], [sizes[k % len(sizes)] for k in range(n)]


def network_entry(category, terms, output, sizes):
    spec = ",".join("".join(get_symbol(i) for i in t) for t in terms) + "->" + "".join(get_symbol(i) for i in output)
    return (category, spec, [tuple(sizes[i] for i in t) for t in terms])


# Networks whose iteration space exceeds 2^63 (numpy without `optimize` refuses them) and
# with more than 52 labels, so opt_einsum's labels include `À`..`ÿ`, `×` and `÷`. Ordered
# so that the reference evaluator, which contracts left to right, keeps small
# intermediates.
VALID_LARGE = [
    network_entry("large", *ladder(40, 2)),
    network_entry("large", *lattice_network(5, 13, [2, 3, 2])),
    network_entry("large", *lattice_network(4, 8, [3, 2, 4])),
]

# Specs numpy rejects: (spec, shapes, Tessera's diagnostic code). Shapes may be huge:
# the operands are zero-stride broadcasts of one element, so nothing big is allocated.
INVALID = [
    ("i->ij", [(2,)], "einsum::output-label"),
    ("ij,jk->il", [(2, 3), (3, 4)], "einsum::output-label"),
    ("ij->jij", [(2, 3)], "einsum::output-repeated"),
    ("ij->ii", [(2, 3)], "einsum::output-repeated"),
    ("->,->", [()], "einsum::arrow"),
    ("i->j->k", [(2,)], "einsum::arrow"),
    ("i->i->i", [(2,)], "einsum::arrow"),
    ("i-j", [(2,)], "einsum::arrow"),
    ("i - > i", [(2,)], "einsum::arrow"),
    ("ij - > ji", [(2, 3)], "einsum::arrow"),
    ("i-", [(2,)], "einsum::arrow"),
    ("i.j", [(2, 3)], "einsum::ellipsis"),
    ("..i", [(2,)], "einsum::ellipsis"),
    ("....", [(2,)], "einsum::ellipsis"),
    (". ..", [(2,)], "einsum::ellipsis"),
    ("...i...", [(2,)], "einsum::ellipsis"),
    ("i->..", [(2,)], "einsum::ellipsis"),
    ("i->....", [(2,)], "einsum::ellipsis"),
    (".", [(2,)], "einsum::ellipsis"),
    ("i\tj", [(2, 2)], "einsum::invalid-char"),
    ("i\nj", [(2, 2)], "einsum::invalid-char"),
    ("i>j", [(2, 2)], "einsum::invalid-char"),
    ("i,j->i,j", [(2,), (2,)], "einsum::invalid-char"),
    ("i,j->-", [(2,), (3,)], "einsum::invalid-char"),
    ("i,j", [(2,)], "einsum::operand-count"),
    ("i", [(2,), (2,)], "einsum::operand-count"),
    ("i,", [(2,)], "einsum::operand-count"),
    ("i,->", [(2,)], "einsum::operand-count"),
    ("", [(), ()], "einsum::operand-count"),
    ("i", [], "einsum::operand-count"),
    ("", [(2,)], "einsum::rank"),
    ("ij", [(2,)], "einsum::rank"),
    ("i", [(2, 3)], "einsum::rank"),
    ("ij...", [(2,)], "einsum::rank"),
    ("i...", [()], "einsum::rank"),
    ("ij,jk->ik", [(2, 3), (3,)], "einsum::rank"),
    ("...ij->ij", [(2, 3, 4)], "einsum::output-ellipsis"),
    ("...ij->ij", [(1, 3, 4)], "einsum::output-ellipsis"),
    ("...ij->i", [(2, 3, 4)], "einsum::output-ellipsis"),
    ("...i,i->i", [(2, 3), (3,)], "einsum::output-ellipsis"),
    ("ij,jk", [(2, 3), (4, 5)], "einsum::size-mismatch"),
    ("i,i", [(0,), (3,)], "einsum::size-mismatch"),
    ("i,i->i", [(2,), (3,)], "einsum::size-mismatch"),
    ("ii", [(2, 3)], "einsum::diagonal-size"),
    ("ii", [(1, 3)], "einsum::diagonal-size"),
    ("ii->i", [(2, 3)], "einsum::diagonal-size"),
    ("...,...", [(2, 3), (4,)], "einsum::broadcast"),
    ("...i,...i", [(2, 3), (3, 3)], "einsum::broadcast"),
    ("ii", [(2**32, 2**32)], "einsum::too-large"),
]

# Specs numpy's einsum refuses for the size of the iteration space alone, which
# opt_einsum plans: Tessera must translate and plan them (running them would allocate
# what no machine has, so only the plan is checked).
PLANNABLE = [
    ("i,j->", [(2**40,), (2**40,)]),
    ("i,j,k->", [(2**30,), (2**30,), (2**30,)]),
    ("ij,jk,kl->il", [(2**20, 2**20), (2**20, 2**20), (2**20, 2**20)]),
    ("i,j->ij", [(2**32,), (2**32,)]),
]

# Non-ASCII specs that opt_einsum rejects too (numpy rejects every non-ASCII spec).
INVALID_UNICODE = [
    ("α->β", [(2,)], "einsum::output-label"),
    ("αβ,βγ->αγ", [(2, 3), (4, 2)], "einsum::size-mismatch"),
]

NPY = [
    # (name, spec, dtype, shapes, which inputs are Fortran-ordered)
    ("matmul_f32_fortran", "ij,jk->ik", "f32", [(3, 4), (4, 5)], [False, True]),
    ("batched_f64_fortran", "bij,bjk->bik", "f64", [(2, 3, 4), (2, 4, 2)], [True, False]),
    ("ellipsis_diag_f64", "...ii->...i", "f64", [(2, 3, 3)], [False]),
    ("scalar_scale_f32", ",ij->ji", "f32", [(), (2, 3)], [False, False]),
    ("broadcast1_f64", "ij,j->i", "f64", [(2, 1), (3,)], [False, False]),
]


def rejects(fn, spec, shapes):
    """The message fn raises for these operands, or None if it accepts them."""
    try:
        # An operand past 2^63-1 elements cannot even be a broadcast view.
        ops = [np.broadcast_to(np.float64(1.0), s) for s in shapes]
        fn(spec, *ops)
    except Exception as e:  # numpy raises ValueError, some paths TypeError.
        return f"{type(e).__name__}: {e}"
    return None


def dump_one_entry_per_line(obj):
    """JSON with each list entry of the top-level object on its own line (small diffs)."""
    lines = ["{"]
    items = list(obj.items())
    for n, (key, value) in enumerate(items):
        comma = "," if n + 1 < len(items) else ""
        if isinstance(value, list):
            lines.append(f" {json.dumps(key)}: [")
            for m, entry in enumerate(value):
                sep = "," if m + 1 < len(value) else ""
                lines.append("  " + json.dumps(entry, ensure_ascii=False) + sep)
            lines.append(" ]" + comma)
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    valid = []
    for refname, fn, table in (("numpy", np.einsum, VALID), ("opt_einsum", opt_einsum.contract, VALID_UNICODE),
                               ("opt_einsum", opt_einsum.contract, VALID_LARGE)):
        for category, spec, shapes in table:
            ops = [operand(o, s) for o, s in enumerate(shapes)]
            result = np.asarray(fn(spec, *ops), dtype=np.float64)
            valid.append({
                "category": category,
                "spec": spec,
                "shapes": [list(s) for s in shapes],
                "reference": refname,
                "output_shape": list(result.shape),
                "expected": [float(x) for x in result.reshape(-1)],
            })
    seen = set()
    for entry in valid:
        key = (entry["spec"], json.dumps(entry["shapes"]))
        if key in seen:
            sys.exit(f"duplicate valid entry {key}")
        seen.add(key)

    invalid = []
    for refname, fn, table in (("numpy", np.einsum, INVALID), ("opt_einsum", opt_einsum.contract, INVALID_UNICODE)):
        for spec, shapes, code in table:
            message = rejects(fn, spec, shapes)
            if message is None:
                sys.exit(f"{refname} accepts invalid spec {spec!r} {shapes}")
            invalid.append({
                "spec": spec,
                "shapes": [list(s) for s in shapes],
                "code": code,
                "reference": refname,
                "reference_error": message,
            })

    plannable = []
    for spec, shapes in PLANNABLE:
        if rejects(np.einsum, spec, shapes) is None:
            sys.exit(f"numpy accepts {spec!r} {shapes}; it does not belong in PLANNABLE")
        path, info = opt_einsum.contract_path(spec, *shapes, shapes=True)
        plannable.append({"spec": spec, "shapes": [list(s) for s in shapes], "reference": "opt_einsum",
                          "opt_cost": float(info.opt_cost)})

    os.makedirs(OUT_DIR, exist_ok=True)
    corpus = {
        "about": "numpy.einsum results for tessera_compiler::einsum::translate; "
                 "regenerate with tests/gen_einsum_fixtures.py",
        "numpy_version": np.__version__,
        "opt_einsum_version": opt_einsum.__version__,
        "input_formula": FORMULA,
        "valid": valid,
        "invalid": invalid,
        "plannable": plannable,
    }
    with open(os.path.join(OUT_DIR, "corpus.json"), "w", encoding="utf-8") as f:
        f.write(dump_one_entry_per_line(corpus))

    npy_dir = os.path.join(OUT_DIR, "npy")
    os.makedirs(npy_dir, exist_ok=True)
    manifest = []
    for name, spec, dtype, shapes, fortran in NPY:
        np_dtype = np.float32 if dtype == "f32" else np.float64
        files = []
        ops = []
        for o, (shape, f_order) in enumerate(zip(shapes, fortran)):
            a = operand(o, shape, np_dtype)
            if f_order:
                a = np.asfortranarray(a)
            file = f"{name}.op{o}.npy"
            np.save(os.path.join(npy_dir, file), a)
            files.append(file)
            ops.append(a)
        expected = np.einsum(spec, *ops)
        out_file = f"{name}.out.npy"
        np.save(os.path.join(npy_dir, out_file), np.asarray(expected, dtype=np_dtype))
        manifest.append({
            "name": name,
            "spec": spec,
            "dtype": dtype,
            "inputs": files,
            "fortran_order": fortran,
            "expected": out_file,
            "output_shape": list(np.shape(expected)),
            "rtol": 1e-5 if dtype == "f32" else 1e-12,
        })
    with open(os.path.join(npy_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"{len(valid)} valid, {len(invalid)} invalid, {len(manifest)} npy cases -> {OUT_DIR}")


if __name__ == "__main__":
    main()
