//! The per-example parameters every fused op shares: the measured range and the bits.

use crate::kernels::{Grid, MixRow, Real};

/// Symmetric (weights: `[-m, m]`) or asymmetric (activations: `[min, max]`) grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Symmetric,
    Asymmetric,
}

/// The measured range of one example, exact in f64 (the values come from the tensor's
/// own dtype). Symmetric ranges are `[-m, m]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Range {
    pub lo: f64,
    pub hi: f64,
}

/// Everything a fused op needs to know about a batch besides its data.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub scheme: Scheme,
    /// Elements per example.
    pub dim: usize,
    pub ranges: Vec<Range>,
    /// Whether values may lie outside the ranges (percentile): the backward pass then
    /// masks them out.
    pub clipped: bool,
}

impl Plan {
    /// The grid of example `n` at `bits` (`None`: full precision or an empty range).
    pub fn grid<T: Real>(&self, n: usize, bits: Option<u32>) -> Option<Grid<T>> {
        let bits = bits?;
        let r = self.ranges[n];
        match self.scheme {
            Scheme::Asymmetric => Grid::asymmetric(T::from_f64(r.lo), T::from_f64(r.hi), bits),
            Scheme::Symmetric => Grid::symmetric(T::from_f64(r.hi), bits),
        }
    }

    pub fn grids<T: Real>(&self, bits: &[Option<u32>]) -> Vec<Option<Grid<T>>> {
        bits.iter()
            .enumerate()
            .map(|(n, &b)| self.grid(n, b))
            .collect()
    }

    /// The forward recipe of the option mixture for each example; `sel` is `[N, K]`
    /// row-major.
    pub fn mix_rows<T: Real>(&self, sel: &[T], options: &[u32]) -> Vec<MixRow<T>> {
        let k = options.len();
        sel.chunks(k)
            .enumerate()
            .map(|(n, row)| match one_hot(row) {
                Some(j) => MixRow::One(self.grid(n, Some(options[j]))),
                None => MixRow::Mix(
                    row.iter()
                        .zip(options)
                        .map(|(&w, &b)| (w, self.grid(n, Some(b))))
                        .collect(),
                ),
            })
            .collect()
    }

    /// Per-example `(lo, hi, scale)` for the straight-through gradient `scale * g` inside
    /// `[lo, hi]` and 0 outside. Examples whose grid is the identity (`has_grid[n]`
    /// false) and unclipped plans let every value through.
    pub fn mask_ranges(&self, has_grid: &[bool], scales: &[f64]) -> Vec<(f64, f64, f64)> {
        has_grid
            .iter()
            .zip(scales)
            .zip(&self.ranges)
            .map(|((&has, &scale), r)| {
                if self.clipped && has {
                    (r.lo, r.hi, scale)
                } else {
                    (f64::NEG_INFINITY, f64::INFINITY, scale)
                }
            })
            .collect()
    }
}

/// The index of the 1 in a row that is exactly one-hot (one 1, the rest 0).
pub(crate) fn one_hot<T: Real>(row: &[T]) -> Option<usize> {
    let mut hot = None;
    for (j, &w) in row.iter().enumerate() {
        if w == T::from_f64(1.0) {
            if hot.is_some() {
                return None;
            }
            hot = Some(j);
        } else if w != T::ZERO {
            return None;
        }
    }
    hot
}
