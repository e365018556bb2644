//! dptq-models (work in progress).
pub mod ops;
