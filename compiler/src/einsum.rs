//! numpy einsum strings translated straight to TIR.
//! (Being written; see the foundation issue.)
