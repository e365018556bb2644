//! dptq-analysis (work in progress).
