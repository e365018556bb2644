//! CPU kernels: one pass for the per-example range (min/max, which also detects
//! non-finite values), one pass to quantize, and the one-pass selection gradient of the
//! option mixture.
//!
//! Work is split into fixed chunks of [`CHUNK`] elements inside each example; every
//! reduction is computed per chunk and the partial results are combined in chunk order,
//! so results are bit-identical run to run whatever the number of threads.

use rayon::prelude::*;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// Elements per parallel task.
pub(crate) const CHUNK: usize = 1 << 14;
/// Lanes of the explicit accumulators (lets the compiler vectorise the reductions).
const LANES: usize = 8;

/// The floating-point element types the kernels run on (f32, f64).
pub(crate) trait Real:
    candle_core::WithDType
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + std::fmt::Debug
{
    const ZERO: Self;
    const INFINITY: Self;
    /// `1.5 * 2^(mantissa bits)`: `(v + MAGIC) - MAGIC` rounds `v` to the nearest
    /// integer, ties to even (the default IEEE rounding), for `|v| <= 2^(mantissa - 1)`.
    const MAGIC: Self;
    fn round_ties_even(self) -> Self;
    fn abs(self) -> Self;
    fn is_finite(self) -> bool;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const INFINITY: Self = f32::INFINITY;
    const MAGIC: Self = 12_582_912.0; // 1.5 * 2^23
    fn round_ties_even(self) -> Self {
        f32::round_ties_even(self)
    }
    fn abs(self) -> Self {
        f32::abs(self)
    }
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const INFINITY: Self = f64::INFINITY;
    const MAGIC: Self = 6_755_399_441_055_744.0; // 1.5 * 2^52
    fn round_ties_even(self) -> Self {
        f64::round_ties_even(self)
    }
    fn abs(self) -> Self {
        f64::abs(self)
    }
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
}

/// One uniform quantizer on the integer grid `t in [tmin, tmax]`:
/// `x^ = s * round(clamp(x / s, tmin, tmax))`.
///
/// For the asymmetric quantizer `tmin = -z`, `tmax = 2^b - 1 - z`, which equals SPEC §1's
/// `s * (clamp(round(x / s) + z, 0, 2^b - 1) - z)` because clamping to integer bounds
/// commutes with rounding. The bounds are below `2^16`, so the rounding can use
/// [`Real::MAGIC`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Grid<T> {
    pub s: T,
    pub tmin: T,
    pub tmax: T,
}

impl<T: Real> Grid<T> {
    /// The asymmetric grid of SPEC §1 for the range `[lo, hi]` at `bits`; `None` when the
    /// range is empty (the example passes unchanged).
    pub fn asymmetric(lo: T, hi: T, bits: u32) -> Option<Self> {
        let qmax = T::from_f64(((1u64 << bits) - 1) as f64);
        let s = (hi - lo) / qmax;
        if s == T::ZERO {
            return None;
        }
        let z = (-lo / s).round_ties_even();
        let z = if z < T::ZERO {
            T::ZERO
        } else if z > qmax {
            qmax
        } else {
            z
        };
        Some(Grid {
            s,
            tmin: -z,
            tmax: qmax - z,
        })
    }

    /// The symmetric grid of SPEC §1 for `max|w| = m` at `bits`; `None` when `m = 0`.
    pub fn symmetric(m: T, bits: u32) -> Option<Self> {
        let qmax = T::from_f64(((1u64 << (bits - 1)) - 1) as f64);
        let s = m / qmax;
        if s == T::ZERO {
            return None;
        }
        Some(Grid {
            s,
            tmin: -qmax,
            tmax: qmax,
        })
    }

    /// The integer `t = q - z` of one value.
    #[inline(always)]
    pub fn level(&self, x: T) -> T {
        let v = x / self.s;
        let v = if v < self.tmin { self.tmin } else { v };
        let v = if v > self.tmax { self.tmax } else { v };
        (v + T::MAGIC) - T::MAGIC
    }

    /// The fake-quantized value `s * t` of one value.
    #[inline(always)]
    pub fn apply(&self, x: T) -> T {
        self.s * self.level(x)
    }
}

/// Per-chunk extremes: `(min, max, finite)`.
fn chunk_min_max<T: Real>(xs: &[T]) -> (T, T, bool) {
    let mut mn = [T::INFINITY; LANES];
    let mut mx = [-T::INFINITY; LANES];
    // x * 0 is 0 for finite x and NaN otherwise; the sum stays 0 iff all are finite.
    let mut bad = [T::ZERO; LANES];
    let mut blocks = xs.chunks_exact(LANES);
    for block in &mut blocks {
        for l in 0..LANES {
            let v = block[l];
            mn[l] = if v < mn[l] { v } else { mn[l] };
            mx[l] = if v > mx[l] { v } else { mx[l] };
            bad[l] += v * T::ZERO;
        }
    }
    for (l, &v) in blocks.remainder().iter().enumerate() {
        mn[l] = if v < mn[l] { v } else { mn[l] };
        mx[l] = if v > mx[l] { v } else { mx[l] };
        bad[l] += v * T::ZERO;
    }
    let mut lo = mn[0];
    let mut hi = mx[0];
    let mut finite = bad[0] == T::ZERO;
    for l in 1..LANES {
        lo = if mn[l] < lo { mn[l] } else { lo };
        hi = if mx[l] > hi { mx[l] } else { hi };
        finite &= bad[l] == T::ZERO;
    }
    (lo, hi, finite)
}

/// The `(min, max)` of each of the `data.len() / dim` examples, `None` for an example
/// that holds a NaN or an infinity.
pub(crate) fn example_min_max<T: Real>(data: &[T], dim: usize) -> Vec<Option<(T, T)>> {
    if dim == 0 {
        return Vec::new();
    }
    let batch = data.len() / dim;
    let per = dim.div_ceil(CHUNK);
    let partials: Vec<(T, T, bool)> = (0..batch * per)
        .into_par_iter()
        .map(|task| {
            let (n, c) = (task / per, task % per);
            let start = n * dim + c * CHUNK;
            let end = n * dim + ((c + 1) * CHUNK).min(dim);
            chunk_min_max(&data[start..end])
        })
        .collect();
    partials
        .chunks(per)
        .map(|parts| {
            let (mut lo, mut hi, mut finite) = parts[0];
            for &(l, h, f) in &parts[1..] {
                lo = if l < lo { l } else { lo };
                hi = if h > hi { h } else { hi };
                finite &= f;
            }
            finite.then_some((lo, hi))
        })
        .collect()
}

/// The p-th percentile (p in [0, 100]) of `vals` with linear interpolation between the
/// order statistics (numpy's default), computed by selection. `vals` is reordered.
pub(crate) fn percentile<T: Real>(vals: &mut [T], p: f64) -> T {
    debug_assert!(!vals.is_empty());
    let cmp = |a: &T, b: &T| a.partial_cmp(b).expect("finite values");
    let pos = p / 100.0 * (vals.len() - 1) as f64;
    let k = pos.floor() as usize;
    let frac = pos - k as f64;
    let (_, &mut at_k, upper) = vals.select_nth_unstable_by(k, cmp);
    if frac == 0.0 || upper.is_empty() {
        return at_k;
    }
    let next = upper
        .iter()
        .copied()
        .fold(T::INFINITY, |m, v| if v < m { v } else { m });
    let (a, b) = (at_k.to_f64(), next.to_f64());
    T::from_f64(a + frac * (b - a))
}

/// Writes `grid.apply(x)` (or `x` where `grid` is `None`) for each example, in parallel
/// over chunks.
pub(crate) fn quantize<T: Real>(data: &[T], dim: usize, grids: &[Option<Grid<T>>]) -> Vec<T> {
    let mut out = vec![T::ZERO; data.len()];
    if dim == 0 {
        return out;
    }
    out.par_chunks_mut(dim)
        .zip(data.par_chunks(dim))
        .zip(grids.par_iter())
        .for_each(|((out, xs), grid)| match grid {
            None => out.copy_from_slice(xs),
            Some(grid) => out
                .par_chunks_mut(CHUNK)
                .zip(xs.par_chunks(CHUNK))
                .for_each(|(out, xs)| {
                    for (o, &x) in out.iter_mut().zip(xs) {
                        *o = grid.apply(x);
                    }
                }),
        });
    out
}

/// How one example of the option mixture is computed in the forward pass (`None` grid:
/// the range is empty and that option is the identity).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MixRow<T> {
    /// A one-hot row: quantize once with this grid.
    One(Option<Grid<T>>),
    /// A general row: `sum_j w_j * Q_j(x)`, accumulated in option order.
    Mix(Vec<(T, Option<Grid<T>>)>),
}

#[inline(always)]
fn apply_opt<T: Real>(grid: &Option<Grid<T>>, x: T) -> T {
    match grid {
        Some(grid) => grid.apply(x),
        None => x,
    }
}

/// The forward pass of the option mixture, example by example.
pub(crate) fn mixture<T: Real>(data: &[T], dim: usize, rows: &[MixRow<T>]) -> Vec<T> {
    let mut out = vec![T::ZERO; data.len()];
    if dim == 0 {
        return out;
    }
    out.par_chunks_mut(dim)
        .zip(data.par_chunks(dim))
        .zip(rows.par_iter())
        .for_each(|((out, xs), row)| {
            out.par_chunks_mut(CHUNK)
                .zip(xs.par_chunks(CHUNK))
                .for_each(|(out, xs)| match row {
                    MixRow::One(None) => out.copy_from_slice(xs),
                    MixRow::One(Some(grid)) => {
                        for (o, &x) in out.iter_mut().zip(xs) {
                            *o = grid.apply(x);
                        }
                    }
                    MixRow::Mix(terms) => {
                        let (w0, g0) = &terms[0];
                        for (o, &x) in out.iter_mut().zip(xs) {
                            *o = *w0 * apply_opt(g0, x);
                        }
                        for (w, g) in &terms[1..] {
                            for (o, &x) in out.iter_mut().zip(xs) {
                                *o += *w * apply_opt(g, x);
                            }
                        }
                    }
                })
        });
    out
}

/// `sum_i g_i * Q(x_i)` over one chunk, accumulated in f64 lanes in a fixed order.
fn chunk_dot<T: Real>(xs: &[T], gs: &[T], grid: Option<&Grid<T>>) -> f64 {
    let mut acc = [0f64; LANES];
    let mut xb = xs.chunks_exact(LANES);
    let mut gb = gs.chunks_exact(LANES);
    match grid {
        Some(grid) => {
            for (x, g) in (&mut xb).zip(&mut gb) {
                for l in 0..LANES {
                    acc[l] += g[l].to_f64() * grid.apply(x[l]).to_f64();
                }
            }
            for (l, (&x, &g)) in xb.remainder().iter().zip(gb.remainder()).enumerate() {
                acc[l] += g.to_f64() * grid.apply(x).to_f64();
            }
        }
        None => {
            for (x, g) in (&mut xb).zip(&mut gb) {
                for l in 0..LANES {
                    acc[l] += g[l].to_f64() * x[l].to_f64();
                }
            }
            for (l, (&x, &g)) in xb.remainder().iter().zip(gb.remainder()).enumerate() {
                acc[l] += g.to_f64() * x.to_f64();
            }
        }
    }
    acc.iter().fold(0.0, |s, &a| s + a)
}

/// The selection gradient of the option mixture: `out[n, j] = sum_i g[n, i] *
/// Q_j(x[n, i])`, all K options computed over one read of each chunk (shared range;
/// `grids[n][j] = None`: Q_j is the identity). Rows are `[N, K]`, row-major.
pub(crate) fn mixture_selection_grad<T: Real>(
    data: &[T],
    grad: &[T],
    dim: usize,
    grids: &[Vec<Option<Grid<T>>>],
) -> Vec<f64> {
    let batch = grids.len();
    let k = grids.first().map_or(0, Vec::len);
    if dim == 0 {
        return vec![0.0; batch * k];
    }
    let per = dim.div_ceil(CHUNK);
    let partials: Vec<Vec<f64>> = (0..batch * per)
        .into_par_iter()
        .map(|task| {
            let (n, c) = (task / per, task % per);
            let start = n * dim + c * CHUNK;
            let end = n * dim + ((c + 1) * CHUNK).min(dim);
            let (xs, gs) = (&data[start..end], &grad[start..end]);
            grids[n]
                .iter()
                .map(|grid| chunk_dot(xs, gs, grid.as_ref()))
                .collect()
        })
        .collect();
    let mut out = vec![0f64; batch * k];
    for (n, parts) in partials.chunks(per).enumerate() {
        for part in parts {
            for (o, p) in out[n * k..(n + 1) * k].iter_mut().zip(part) {
                *o += p;
            }
        }
    }
    out
}

/// `g * [lo <= x <= hi]` per example (the straight-through gradient of a clipped range).
pub(crate) fn masked_grad<T: Real>(
    data: &[T],
    grad: &[T],
    dim: usize,
    ranges: &[(T, T, T)],
) -> Vec<T> {
    let mut out = vec![T::ZERO; data.len()];
    if dim == 0 {
        return out;
    }
    out.par_chunks_mut(dim)
        .zip(data.par_chunks(dim).zip(grad.par_chunks(dim)))
        .zip(ranges.par_iter())
        .for_each(|((out, (xs, gs)), &(lo, hi, scale))| {
            for ((o, &x), &g) in out.iter_mut().zip(xs).zip(gs) {
                *o = if x >= lo && x <= hi {
                    scale * g
                } else {
                    T::ZERO
                };
            }
        });
    out
}
