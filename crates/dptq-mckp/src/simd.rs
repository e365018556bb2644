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

/// `gang_row_f32` / `gang_row_f64`: the gang kernel's rows in tiles of up to 4 states.
macro_rules! gang_row {
    ($row:ident, $tile:ident, $t:ty) => {
        /// `cur[s] = max_j p[j] + next[s - w[j]]` lane-wise (8 instances) for states
        /// `start..end`, ties keeping the earlier item.
        ///
        /// # Safety
        ///
        /// AVX2; `start >= max(w)`; `end * 8 <= next.len()` and `<= cur.len()`;
        /// `p.len() == w.len() * 8`, `w.len() >= 1`.
        #[target_feature(enable = "avx2")]
        pub(crate) unsafe fn $row(
            next: &[$t],
            cur: &mut [$t],
            p: &[$t],
            w: &[u32],
            start: usize,
            end: usize,
        ) {
            debug_assert!(
                end * 8 <= next.len().min(cur.len()) && p.len() == w.len() * 8 && !w.is_empty()
            );
            debug_assert!(w.iter().all(|&w| w as usize <= start));
            let (next, out) = (next.as_ptr(), cur.as_mut_ptr());
            let mut s = start;
            while s < end {
                // SAFETY: the tile's states are among `start..end` (caller's contract).
                unsafe {
                    match end - s {
                        1 => $tile::<1>(next, s, out, w, p),
                        2 => $tile::<2>(next, s, out, w, p),
                        3 => $tile::<3>(next, s, out, w, p),
                        _ => $tile::<4>(next, s, out, w, p),
                    }
                }
                s += (end - s).min(4);
            }
        }
    };
}

gang_row!(gang_row_f32, gang_tile_f32, f32);
gang_row!(gang_row_f64, gang_tile_f64, f64);

/// `NS` states of the gang layout, 8 `f32` lanes (one `__m256`) each.
///
/// # Safety
///
/// AVX2; `next[(s - w[j]) * 8 .. (s - w[j] + NS) * 8]` and `out[s * 8 .. (s + NS) * 8]` in
/// bounds for every `j`; `p.len() == w.len() * 8 >= 8`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn gang_tile_f32<const NS: usize>(
    next: *const f32,
    s: usize,
    out: *mut f32,
    w: &[u32],
    p: &[f32],
) {
    // SAFETY: every pointer below is in bounds by the contract.
    unsafe {
        let at = next.add((s - w[0] as usize) * 8);
        let p0 = _mm256_loadu_ps(p.as_ptr());
        let mut best = [_mm256_setzero_ps(); NS];
        for (t, best) in best.iter_mut().enumerate() {
            *best = _mm256_add_ps(_mm256_loadu_ps(at.add(t * 8)), p0);
        }
        for (j, &wj) in w.iter().enumerate().skip(1) {
            let at = next.add((s - wj as usize) * 8);
            let pj = _mm256_loadu_ps(p.as_ptr().add(j * 8));
            for (t, best) in best.iter_mut().enumerate() {
                let cand = _mm256_add_ps(_mm256_loadu_ps(at.add(t * 8)), pj);
                *best = _mm256_max_ps(cand, *best);
            }
        }
        for (t, best) in best.iter().enumerate() {
            _mm256_storeu_ps(out.add((s + t) * 8), *best);
        }
    }
}

/// `NS` states of the gang layout, 8 `f64` lanes (two `__m256d`) each.
///
/// # Safety
///
/// As [`gang_tile_f32`].
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn gang_tile_f64<const NS: usize>(
    next: *const f64,
    s: usize,
    out: *mut f64,
    w: &[u32],
    p: &[f64],
) {
    // SAFETY: every pointer below is in bounds by the contract.
    unsafe {
        let at = next.add((s - w[0] as usize) * 8);
        let p0 = [
            _mm256_loadu_pd(p.as_ptr()),
            _mm256_loadu_pd(p.as_ptr().add(4)),
        ];
        let mut best = [[_mm256_setzero_pd(); 2]; NS];
        for (t, best) in best.iter_mut().enumerate() {
            for (h, best) in best.iter_mut().enumerate() {
                *best = _mm256_add_pd(_mm256_loadu_pd(at.add(t * 8 + h * 4)), p0[h]);
            }
        }
        for (j, &wj) in w.iter().enumerate().skip(1) {
            let at = next.add((s - wj as usize) * 8);
            let pj = [
                _mm256_loadu_pd(p.as_ptr().add(j * 8)),
                _mm256_loadu_pd(p.as_ptr().add(j * 8 + 4)),
            ];
            for (t, best) in best.iter_mut().enumerate() {
                for (h, best) in best.iter_mut().enumerate() {
                    let cand = _mm256_add_pd(_mm256_loadu_pd(at.add(t * 8 + h * 4)), pj[h]);
                    *best = _mm256_max_pd(cand, *best);
                }
            }
        }
        for (t, best) in best.iter().enumerate() {
            for (h, best) in best.iter().enumerate() {
                _mm256_storeu_pd(out.add((s + t) * 8 + h * 4), *best);
            }
        }
    }
}

/// `out[q * 8 + lane] = profits[lane * per + q]` with 8x8 in-register transposes (the tail
/// of `per % 8` columns scalar).
///
/// # Safety
///
/// AVX2; `profits.len() >= 8 * per`; `out.len() >= per * 8`.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn gang_transpose_f32(profits: &[f32], per: usize, out: &mut [f32]) {
    assert!(profits.len() >= 8 * per && out.len() >= per * 8);
    let (src, dst) = (profits.as_ptr(), out.as_mut_ptr());
    let mut q = 0;
    while q + 8 <= per {
        // SAFETY: rows `lane * per + q .. + 8` and output `q * 8 .. (q + 8) * 8` are in bounds.
        unsafe {
            let r: [__m256; 8] =
                std::array::from_fn(|lane| _mm256_loadu_ps(src.add(lane * per + q)));
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let o = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (k, o) in o.iter().enumerate() {
                _mm256_storeu_ps(dst.add((q + k) * 8), *o);
            }
        }
        q += 8;
    }
    for q in q..per {
        for lane in 0..8 {
            out[q * 8 + lane] = profits[lane * per + q];
        }
    }
}

/// `crate::gang::backtrack` for 8 `f32` lanes at once: the values are gathered
/// (`vgatherdps`), every item compared in order, and a lane's choice is the first item whose
/// candidate equals its target (`_CMP_EQ_OQ`, as the scalar `==`).
///
/// # Safety
///
/// AVX2; `values` holds `L + 1` rows of `walk.stride` values; every shifted weight is at
/// most `walk.pad`, every `hi` at most `walk.capacity`, `(pad + capacity + 1) * 8 <= stride
/// < 2^31`; `p.len() == L * K * 8`; `choices.len() >= 8 * L`.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn gang_backtrack_f32(
    values: &[f32],
    p: &[f32],
    walk: &crate::gang::Walk<'_>,
    choices: &mut [u32],
) {
    let groups = walk.hi.len();
    let items = walk.shifted.len() / groups.max(1);
    assert!(values.len() >= (groups + 1) * walk.stride && p.len() >= groups * items * 8);
    assert!(choices.len() >= 8 * groups && walk.stride < i32::MAX as usize);
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mut s = _mm256_set1_epi32(walk.capacity as i32);
    for i in 0..groups {
        let w = &walk.shifted[i * items..(i + 1) * items];
        // SAFETY: indices `(pad + x - w_j) * 8 + lane` with `x <= hi_i <= capacity` and
        // `w_j <= pad` lie in `[0, stride)`; rows `i` and `i + 1` are in `values`; the
        // profits of group `i` are `p[i * K * 8 .. (i + 1) * K * 8]`.
        unsafe {
            let x = _mm256_min_epi32(s, _mm256_set1_epi32(walk.hi[i] as i32));
            let at = _mm256_add_epi32(
                _mm256_slli_epi32::<3>(_mm256_add_epi32(x, _mm256_set1_epi32(walk.pad as i32))),
                lanes,
            );
            let cur = values.as_ptr().add(i * walk.stride);
            let next = cur.add(walk.stride);
            let target = _mm256_i32gather_ps::<4>(cur, at);
            let pi = p.as_ptr().add(i * items * 8);
            let mut found = _mm256_setzero_si256();
            let mut choice = _mm256_setzero_si256();
            let mut taken = _mm256_set1_epi32(w[0] as i32);
            for (j, &wj) in w.iter().enumerate() {
                let from = _mm256_sub_epi32(at, _mm256_set1_epi32(8 * wj as i32));
                let cand = _mm256_add_ps(
                    _mm256_i32gather_ps::<4>(next, from),
                    _mm256_loadu_ps(pi.add(j * 8)),
                );
                let equal = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_EQ_OQ>(cand, target));
                let first = _mm256_andnot_si256(found, equal);
                choice = _mm256_blendv_epi8(choice, _mm256_set1_epi32(j as i32), first);
                taken = _mm256_blendv_epi8(taken, _mm256_set1_epi32(wj as i32), first);
                found = _mm256_or_si256(found, equal);
                if _mm256_movemask_ps(_mm256_castsi256_ps(found)) == 0xFF {
                    break;
                }
            }
            let mut chosen = [0u32; 8];
            _mm256_storeu_si256(chosen.as_mut_ptr().cast(), choice);
            for (lane, &c) in chosen.iter().enumerate() {
                choices[lane * groups + i] = c;
            }
            s = _mm256_max_epi32(_mm256_sub_epi32(x, taken), _mm256_setzero_si256());
        }
    }
}
