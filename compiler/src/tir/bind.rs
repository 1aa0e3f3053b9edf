//! Binding a function's dims to concrete sizes from input shapes and explicit values.
//! (Being written; see the foundation issue.)
