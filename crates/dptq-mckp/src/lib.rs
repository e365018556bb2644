//! dptq-mckp (work in progress).
