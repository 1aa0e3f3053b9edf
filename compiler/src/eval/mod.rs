//! The reference evaluator (the oracle): evaluates TIR directly on ndarray arrays.
//! (Being written; see the foundation issue.)
