//! The profit types the solver is generic over: `f32` and `f64`.

use std::fmt::{Debug, Display};
use std::ops::Add;

pub(crate) mod sealed {
    /// Seals [`Profit`](super::Profit) and carries the per-type SIMD kernels.
    pub trait Sealed: Sized {
        /// One row of the dynamic program with AVX2: `cur[start + s] = max_j p[j] +
        /// next[start + s - w[j]]` for `s` in `0..blocks * LANES` (see `crate::simd`).
        ///
        /// # Safety
        ///
        /// The CPU supports AVX2; `start >= max(w)`, `start + blocks * LANES <= next.len()`
        /// and `<= cur.len()`; `w.len() == p.len() >= 1`.
        #[cfg(target_arch = "x86_64")]
        unsafe fn row_avx2(
            next: &[Self],
            start: usize,
            cur: &mut [Self],
            w: &[u32],
            p: &[Self],
            blocks: usize,
        );

        /// One row of the gang kernel with AVX2 (see `crate::simd`).
        ///
        /// # Safety
        ///
        /// The CPU supports AVX2; `start >= max(w)`; `end * GANG <= next.len()` and
        /// `<= cur.len()`; `p.len() == w.len() * GANG`, `w.len() >= 1`.
        #[cfg(target_arch = "x86_64")]
        unsafe fn gang_row_avx2(
            next: &[Self],
            cur: &mut [Self],
            p: &[Self],
            w: &[u32],
            start: usize,
            end: usize,
        );

        /// `crate::gang::transpose`, with AVX2 where written (f32).
        ///
        /// # Safety
        ///
        /// The CPU supports AVX2; `profits.len() >= GANG * per`, `out.len() >= per * GANG`.
        #[cfg(target_arch = "x86_64")]
        unsafe fn gang_transpose_avx2(profits: &[Self], per: usize, out: &mut [Self]);

        /// `crate::gang::backtrack`, with AVX2 gathers where written (f32).
        ///
        /// # Safety
        ///
        /// The CPU supports AVX2; `values` and `p` are the gang buffers `walk` describes.
        #[cfg(target_arch = "x86_64")]
        unsafe fn gang_backtrack_avx2(
            values: &[Self],
            p: &[Self],
            walk: &crate::gang::Walk<'_>,
            choices: &mut [u32],
        );
    }

    impl Sealed for f32 {
        #[cfg(target_arch = "x86_64")]
        unsafe fn row_avx2(
            next: &[Self],
            start: usize,
            cur: &mut [Self],
            w: &[u32],
            p: &[Self],
            blocks: usize,
        ) {
            // SAFETY: forwarded contract.
            unsafe { crate::simd::row_f32(next, start, cur, w, p, blocks) }
        }

        #[cfg(target_arch = "x86_64")]
        unsafe fn gang_row_avx2(
            next: &[Self],
            cur: &mut [Self],
            p: &[Self],
            w: &[u32],
            start: usize,
            end: usize,
        ) {
            // SAFETY: forwarded contract.
            unsafe { crate::simd::gang_row_f32(next, cur, p, w, start, end) }
        }

        #[cfg(target_arch = "x86_64")]
        unsafe fn gang_transpose_avx2(profits: &[Self], per: usize, out: &mut [Self]) {
            // SAFETY: forwarded contract.
            unsafe { crate::simd::gang_transpose_f32(profits, per, out) }
        }

        #[cfg(target_arch = "x86_64")]
        unsafe fn gang_backtrack_avx2(
            values: &[Self],
            p: &[Self],
            walk: &crate::gang::Walk<'_>,
            choices: &mut [u32],
        ) {
            // SAFETY: forwarded contract.
            unsafe { crate::simd::gang_backtrack_f32(values, p, walk, choices) }
        }
    }

    impl Sealed for f64 {
        #[cfg(target_arch = "x86_64")]
        unsafe fn row_avx2(
            next: &[Self],
            start: usize,
            cur: &mut [Self],
            w: &[u32],
            p: &[Self],
            blocks: usize,
        ) {
            // SAFETY: forwarded contract.
            unsafe { crate::simd::row_f64(next, start, cur, w, p, blocks) }
        }

        #[cfg(target_arch = "x86_64")]
        unsafe fn gang_row_avx2(
            next: &[Self],
            cur: &mut [Self],
            p: &[Self],
            w: &[u32],
            start: usize,
            end: usize,
        ) {
            // SAFETY: forwarded contract.
            unsafe { crate::simd::gang_row_f64(next, cur, p, w, start, end) }
        }

        // f64 has no hand-written transpose or gather backtrack: the portable ones.
        #[cfg(target_arch = "x86_64")]
        unsafe fn gang_transpose_avx2(profits: &[Self], per: usize, out: &mut [Self]) {
            crate::gang::transpose(profits, per, out)
        }

        #[cfg(target_arch = "x86_64")]
        unsafe fn gang_backtrack_avx2(
            values: &[Self],
            p: &[Self],
            walk: &crate::gang::Walk<'_>,
            choices: &mut [u32],
        ) {
            crate::gang::backtrack(values, p, walk, choices)
        }
    }
}

/// A floating-point profit: implemented for `f32` and `f64` (sealed).
///
/// Comparisons are exact IEEE comparisons, never within an epsilon.
pub trait Profit:
    Copy
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Debug
    + Display
    + Send
    + Sync
    + 'static
    + sealed::Sealed
{
    /// `0.0`.
    const ZERO: Self;
    /// `-inf`: the value of a capacity state no choice can reach.
    const NEG_INFINITY: Self;
    /// Largest finite value.
    const MAX: Self;
    /// `|self|`.
    fn abs(self) -> Self;
    /// Lossless widening to `f64` (for error messages).
    fn to_f64(self) -> f64;
    /// Whether the value is neither NaN nor infinite.
    fn is_finite(self) -> bool;
    /// The largest magnitude allowed for a profit when there are `groups` groups,
    /// `MAX / (2 * groups)`: any sum of `groups` such profits, in any order and with any
    /// rounding, stays finite.
    fn limit(groups: usize) -> Self;
}

impl Profit for f32 {
    const ZERO: Self = 0.0;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    const MAX: Self = f32::MAX;
    #[inline(always)]
    fn abs(self) -> Self {
        f32::abs(self)
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    fn limit(groups: usize) -> Self {
        (f32::MAX as f64 / (2.0 * groups.max(1) as f64)) as f32
    }
}

impl Profit for f64 {
    const ZERO: Self = 0.0;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    const MAX: Self = f64::MAX;
    #[inline(always)]
    fn abs(self) -> Self {
        f64::abs(self)
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    fn limit(groups: usize) -> Self {
        f64::MAX / (2.0 * groups.max(1) as f64)
    }
}
