//! AVX2 rows of the dynamic program, written with intrinsics (x86-64 only; chosen at run
//! time after feature detection).
//!
//! A row is computed in tiles of up to 4 blocks of [`LANES`] states that stay in registers
//! while the items stream past: per item one broadcast, then one load, add and max per
//! block. `_mm256_max_ps(cand, best)` is exactly `if cand > best { cand } else { best }`,
//! so ties keep the earlier item, as in the portable kernel: both give identical results.

use std::arch::x86_64::*;

use crate::problem::LANES;

/// `row_f32` / `row_f64`: tiles of up to 4 blocks over the `blocks` blocks of a row.
macro_rules! row {
    ($row:ident, $tile:ident, $t:ty) => {
        /// `cur[start + s] = max_j p[j] + next[start + s - w[j]]` for `s` in
        /// `0..blocks * LANES`, ties keeping the earlier item.
        ///
        /// # Safety
        ///
        /// AVX2; `start >= max(w)`; `start + blocks * LANES <= next.len()` and `<= cur.len()`;
        /// `w.len() == p.len() >= 1`.
        #[target_feature(enable = "avx2")]
        pub(crate) unsafe fn $row(
            next: &[$t],
            start: usize,
            cur: &mut [$t],
            w: &[u32],
            p: &[$t],
            blocks: usize,
        ) {
            debug_assert!(start + blocks * LANES <= next.len().min(cur.len()));
            debug_assert!(
                w.len() == p.len() && !w.is_empty() && w.iter().all(|&w| w as usize <= start)
            );
            let (next, out) = (next.as_ptr(), cur.as_mut_ptr());
            let mut b = 0;
            while b < blocks {
                let base = start + b * LANES;
                // SAFETY: the tile's blocks are among the row's blocks (caller's contract).
                unsafe {
                    match blocks - b {
                        1 => $tile::<1>(next, base, out, w, p),
                        2 => $tile::<2>(next, base, out, w, p),
                        3 => $tile::<3>(next, base, out, w, p),
                        _ => $tile::<4>(next, base, out, w, p),
                    }
                }
                b += (blocks - b).min(4);
            }
        }
    };
}

row!(row_f32, tile_f32, f32);
row!(row_f64, tile_f64, f64);

/// `NB` blocks of 8 `f32` states, one `__m256` each.
///
/// # Safety
///
/// AVX2; `next[base - w[j] .. base - w[j] + NB * 8]` and `out[base .. base + NB * 8]` in
/// bounds for every `j`; `w.len() == p.len() >= 1`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile_f32<const NB: usize>(
    next: *const f32,
    base: usize,
    out: *mut f32,
    w: &[u32],
    p: &[f32],
) {
    // SAFETY: every pointer below is in bounds by the contract.
    unsafe {
        let at = next.add(base - w[0] as usize);
        let p0 = _mm256_set1_ps(p[0]);
        let mut best = [_mm256_setzero_ps(); NB];
        for (b, best) in best.iter_mut().enumerate() {
            *best = _mm256_add_ps(_mm256_loadu_ps(at.add(b * 8)), p0);
        }
        for (&wj, &pj) in w[1..].iter().zip(&p[1..]) {
            let at = next.add(base - wj as usize);
            let pj = _mm256_set1_ps(pj);
            for (b, best) in best.iter_mut().enumerate() {
                let cand = _mm256_add_ps(_mm256_loadu_ps(at.add(b * 8)), pj);
                *best = _mm256_max_ps(cand, *best);
            }
        }
        for (b, best) in best.iter().enumerate() {
            _mm256_storeu_ps(out.add(base + b * 8), *best);
        }
    }
}

/// `NB` blocks of 8 `f64` states, two `__m256d` each.
///
/// # Safety
///
/// As [`tile_f32`].
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile_f64<const NB: usize>(
    next: *const f64,
    base: usize,
    out: *mut f64,
    w: &[u32],
    p: &[f64],
) {
    // SAFETY: every pointer below is in bounds by the contract.
    unsafe {
        let at = next.add(base - w[0] as usize);
        let p0 = _mm256_set1_pd(p[0]);
        let mut best = [[_mm256_setzero_pd(); 2]; NB];
        for (b, best) in best.iter_mut().enumerate() {
            for (h, best) in best.iter_mut().enumerate() {
                *best = _mm256_add_pd(_mm256_loadu_pd(at.add(b * 8 + h * 4)), p0);
            }
        }
        for (&wj, &pj) in w[1..].iter().zip(&p[1..]) {
            let at = next.add(base - wj as usize);
            let pj = _mm256_set1_pd(pj);
            for (b, best) in best.iter_mut().enumerate() {
                for (h, best) in best.iter_mut().enumerate() {
                    let cand = _mm256_add_pd(_mm256_loadu_pd(at.add(b * 8 + h * 4)), pj);
                    *best = _mm256_max_pd(cand, *best);
                }
            }
        }
        for (b, best) in best.iter().enumerate() {
            for (h, best) in best.iter().enumerate() {
                _mm256_storeu_pd(out.add(base + b * 8 + h * 4), *best);
            }
        }
    }
}
