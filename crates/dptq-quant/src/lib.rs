//! dptq-quant (work in progress).
