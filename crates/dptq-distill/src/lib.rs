//! dptq-distill (work in progress).
