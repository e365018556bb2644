//! Shared pieces of the fused CPU kernels: the element trait, storage access, the matrix
//! product and the fixed work partitions that keep every kernel deterministic.
//!
//! Determinism: a kernel's output never depends on thread scheduling. Work is split into
//! pieces fixed by the shapes (and, for reductions over the batch, by the number of rayon
//! threads); each piece writes its own part of the output, and partial sums are combined in
//! piece order.

use candle_core::{CpuStorage, DType, Layout, Result, WithDType};
use gemm::Parallelism;

/// f32 or f64: the element types with fused kernels.
pub(crate) trait Real: WithDType {
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn is_nan(self) -> bool;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

/// Whether `dtype` has fused kernels.
pub(crate) fn has_kernels(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64)
}

/// The contiguous elements of a CPU tensor as a slice, or an error naming the op.
pub(crate) fn contiguous<'a, T: Real>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&storage.as_slice::<T>()?[start..end]),
        None => candle_core::bail!(
            "{op}: expected a contiguous input, got strides {:?}",
            layout.stride()
        ),
    }
}

/// Runs `$body` with `$t` bound to the element type of `$storage` (f32 or f64).
macro_rules! dispatch_real {
    ($op:expr, $storage:expr, $t:ident => $body:expr) => {
        match candle_core::backend::BackendStorage::dtype($storage) {
            candle_core::DType::F32 => {
                type $t = f32;
                $body
            }
            candle_core::DType::F64 => {
                type $t = f64;
                $body
            }
            dtype => candle_core::bail!("{}: no fused kernel for dtype {dtype:?}", $op),
        }
    };
}
pub(crate) use dispatch_real;

/// Number of rayon threads the kernels split their work over.
pub(crate) fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// Splits `0..len` into `parts` contiguous ranges of near-equal length (the first ones one
/// longer), in order.
pub(crate) fn split_even(len: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, len.max(1));
    let (base, extra) = (len / parts, len % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let end = start + base + usize::from(i < extra);
            let range = start..end;
            start = end;
            range
        })
        .collect()
}

/// A row-major matrix view into a slice: element `(r, c)` is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A dense row-major `rows x cols` matrix with row stride `rs`.
    pub fn rows(data: &'a [T], rows: usize, cols: usize, rs: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs,
            cs: 1,
        }
    }

    /// The transpose (a view, no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn extent(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.rs + (self.cols - 1) * self.cs + 1
        }
    }
}

/// `dst = lhs * rhs` (or `dst += lhs * rhs` with `accumulate`), where `dst` is a dense
/// row-major `lhs.rows x rhs.cols` matrix with row stride `dst_rs`. `threads > 1` lets the
/// gemm crate split the product over rayon threads (by output blocks: the sum over the
/// inner dimension stays sequential, so the result does not depend on scheduling).
pub(crate) fn matmul<T: Real>(
    dst: &mut [T],
    dst_rs: usize,
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    accumulate: bool,
    threads: usize,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(k, rhs.rows, "matmul: inner dimensions differ");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        dst_rs >= n && dst.len() >= (m - 1) * dst_rs + n,
        "matmul: destination too small"
    );
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(T::ZERO);
            }
        }
        return;
    }
    assert!(
        lhs.data.len() >= lhs.extent() && rhs.data.len() >= rhs.extent(),
        "matmul: operand too small"
    );
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above bound every element the product reads (`lhs`, `rhs`) or
    // writes (`dst`, which is borrowed mutably and so cannot alias the operands).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `sum_i a[i] * b[i]` over eight interleaved partial sums (so that it vectorises),
/// combined in a fixed order.
#[inline(always)]
pub(crate) fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: T = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .fold(T::ZERO, |s, (&x, &y)| s + x * y);
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `sum_i f(a[i], b[i])` accumulated in f64 over eight interleaved partial sums, combined
/// in a fixed order.
#[inline(always)]
pub(crate) fn sum2_f64<T: Real>(a: &[T], b: &[T], f: impl Fn(f64, f64) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .fold(0.0, |s, (&x, &y)| s + f(x.to_f64(), y.to_f64()));
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += f(x[l].to_f64(), y[l].to_f64());
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `sum_i f(a[i])` accumulated in f64, like [`sum2_f64`].
#[inline(always)]
pub(crate) fn sum_f64<T: Real>(a: &[T], f: impl Fn(f64) -> f64) -> f64 {
    sum2_f64(a, a, |x, _| f(x))
}

/// Wraps a kernel's output as CPU storage.
pub(crate) fn storage<T: Real>(data: Vec<T>) -> CpuStorage {
    T::to_cpu_storage_owned(data)
}

/// Runs `f` compiled for the best instruction set of this CPU (AVX-512, AVX2 + FMA, or the
/// baseline), detected at run time, so that its loops vectorise with it (conditional
/// updates become blends instead of branches). Only code inlined into `f` benefits: the
/// kernels it calls are `#[inline(always)]`. Results do not depend on the instruction set:
/// Rust never contracts `a * b + c` into a fused multiply-add, and reductions keep their
/// explicit order.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}
