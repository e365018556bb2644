//! dptq-models (work in progress).
