//! dptq-data (work in progress).
