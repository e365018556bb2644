//! Statistics the analyses print: fixed-range histograms with the paper's sparsity
//! measure, means with standard deviations over seeds, and the distribution of the bits
//! a policy chose.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A histogram over a fixed range `[lo, hi]` split into `bins` equal bins
/// `[lo + i w, lo + (i + 1) w)`, `w = (hi - lo) / bins` (the last bin also holds `hi`, as
/// numpy's). Values below `lo` / above `hi` are counted apart, as are non-finite values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Lower edge of the first bin.
    pub lo: f64,
    /// Upper edge of the last bin.
    pub hi: f64,
    /// Count of each bin.
    pub counts: Vec<u64>,
    /// Values `< lo`.
    pub underflow: u64,
    /// Values `> hi`.
    pub overflow: u64,
    /// NaN and infinite values.
    pub non_finite: u64,
    /// Values exactly equal to zero (a subset of the zero bin when `lo <= 0 <= hi`).
    pub exact_zeros: u64,
}

impl Histogram {
    /// An empty histogram of `bins` bins over `[lo, hi]`.
    pub fn new(lo: f64, hi: f64, bins: usize) -> Result<Self> {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) || bins == 0 {
            return Err(Error::invalid(
                "histogram range",
                format!("[{lo}, {hi}] with {bins} bins (need finite lo < hi and bins >= 1)"),
            ));
        }
        Ok(Self {
            lo,
            hi,
            counts: vec![0; bins],
            underflow: 0,
            overflow: 0,
            non_finite: 0,
            exact_zeros: 0,
        })
    }

    /// Width of every bin, `(hi - lo) / bins`.
    pub fn bin_width(&self) -> f64 {
        (self.hi - self.lo) / self.counts.len() as f64
    }

    /// Left edge of bin `i`.
    pub fn edge(&self, i: usize) -> f64 {
        self.lo + i as f64 * self.bin_width()
    }

    /// The bin index of a finite `x` inside `[lo, hi]`.
    fn index(&self, x: f64) -> usize {
        let i = ((x - self.lo) / self.bin_width()).floor();
        (i.max(0.0) as usize).min(self.counts.len() - 1)
    }

    /// Counts every value of `xs`.
    pub fn add(&mut self, xs: &[f32]) {
        for &x in xs {
            let x = x as f64;
            if !x.is_finite() {
                self.non_finite += 1;
                continue;
            }
            if x == 0.0 {
                self.exact_zeros += 1;
            }
            if x < self.lo {
                self.underflow += 1;
            } else if x > self.hi {
                self.overflow += 1;
            } else {
                let i = self.index(x);
                self.counts[i] += 1;
            }
        }
    }

    /// Adds the counts of another histogram of the same range and bins.
    pub fn merge(&mut self, other: &Histogram) -> Result<()> {
        if other.lo != self.lo || other.hi != self.hi || other.counts.len() != self.counts.len() {
            return Err(Error::invalid(
                "histogram merge",
                format!(
                    "[{}, {}] x {} vs [{}, {}] x {}",
                    self.lo,
                    self.hi,
                    self.counts.len(),
                    other.lo,
                    other.hi,
                    other.counts.len()
                ),
            ));
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.underflow += other.underflow;
        self.overflow += other.overflow;
        self.non_finite += other.non_finite;
        self.exact_zeros += other.exact_zeros;
        Ok(())
    }

    /// Every value counted, out-of-range and non-finite ones included.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.underflow + self.overflow + self.non_finite
    }

    /// The bin that holds 0, if `lo <= 0 <= hi`.
    pub fn zero_bin(&self) -> Option<usize> {
        (self.lo <= 0.0 && 0.0 <= self.hi).then(|| self.index(0.0))
    }

    /// The paper's sparsity measure: the fraction (0..=1) of all values that fall in the
    /// zero bin (0 when the range excludes zero or nothing was counted).
    pub fn sparsity(&self) -> f64 {
        let total = self.total();
        match self.zero_bin() {
            Some(z) if total > 0 => self.counts[z] as f64 / total as f64,
            _ => 0.0,
        }
    }

    /// Fraction of all values that are exactly zero.
    pub fn exact_zero_fraction(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            0.0
        } else {
            self.exact_zeros as f64 / total as f64
        }
    }

    /// The histogram the paper plots: the zero bin removed and the remaining in-range bins
    /// renormalised to sum to 1 (the zero bin's entry is 0). All zeros when no value lies
    /// outside the zero bin.
    pub fn without_zero_bin(&self) -> Vec<f64> {
        let zero = self.zero_bin();
        let kept: u64 = self
            .counts
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != zero)
            .map(|(_, c)| c)
            .sum();
        self.counts
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                if Some(i) == zero || kept == 0 {
                    0.0
                } else {
                    c as f64 / kept as f64
                }
            })
            .collect()
    }
}

/// Mean, sample standard deviation and standard error of a set of measurements (e.g. one
/// accuracy over several seeds).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of measurements.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Sample standard deviation (`n - 1` in the denominator; 0 for one measurement).
    pub std: f64,
    /// Standard error of the mean, `std / sqrt(n)`.
    pub stderr: f64,
    /// Smallest measurement.
    pub min: f64,
    /// Largest measurement.
    pub max: f64,
}

impl Summary {
    /// The summary of `xs`; an error when empty or non-finite.
    pub fn of(xs: &[f64]) -> Result<Self> {
        if xs.is_empty() || xs.iter().any(|x| !x.is_finite()) {
            return Err(Error::invalid(
                "summary",
                format!("need finite measurements, got {xs:?}"),
            ));
        }
        let n = xs.len();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Ok(Self {
            n,
            mean,
            std,
            stderr: std / (n as f64).sqrt(),
            min: xs.iter().copied().fold(f64::INFINITY, f64::min),
            max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// How often each bit option was chosen at each layer, over a set of examples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChoiceCounts {
    /// The `K` bit options, ascending.
    pub options: Vec<u32>,
    /// `counts[l][k]`: examples whose layer `l` got `options[k]` bits (`[L][K]`).
    pub counts: Vec<Vec<u64>>,
    /// Number of examples counted.
    pub examples: u64,
    /// How many examples chose each distinct whole allocation, most frequent first
    /// (ties by allocation, ascending): `(bits per layer, count)`.
    pub allocations: Vec<(Vec<u32>, u64)>,
}

impl ChoiceCounts {
    /// Counts the bits `[N][L]` (row-major `bits`, `num_layers` per row) chosen among
    /// `options`; an error for a bit value that is not an option.
    pub fn from_bits(bits: &[u32], num_layers: usize, options: &[u32]) -> Result<Self> {
        if num_layers == 0 || !bits.len().is_multiple_of(num_layers) {
            return Err(Error::invalid(
                "bits",
                format!("{} values are not rows of {num_layers} layers", bits.len()),
            ));
        }
        let mut counts = vec![vec![0u64; options.len()]; num_layers];
        let mut allocations = std::collections::BTreeMap::<Vec<u32>, u64>::new();
        for row in bits.chunks_exact(num_layers) {
            for (l, &b) in row.iter().enumerate() {
                let k = options.iter().position(|&o| o == b).ok_or_else(|| {
                    Error::invalid(
                        "bits",
                        format!("{b} bits at layer {l} is not one of the options {options:?}"),
                    )
                })?;
                counts[l][k] += 1;
            }
            *allocations.entry(row.to_vec()).or_default() += 1;
        }
        let mut allocations: Vec<(Vec<u32>, u64)> = allocations.into_iter().collect();
        allocations.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(Self {
            options: options.to_vec(),
            counts,
            examples: (bits.len() / num_layers) as u64,
            allocations,
        })
    }

    /// Number of layers `L`.
    pub fn num_layers(&self) -> usize {
        self.counts.len()
    }

    /// `freq[l][k]`: the fraction of examples choosing option `k` at layer `l`.
    pub fn frequencies(&self) -> Vec<Vec<f64>> {
        let n = self.examples.max(1) as f64;
        self.counts
            .iter()
            .map(|row| row.iter().map(|&c| c as f64 / n).collect())
            .collect()
    }

    /// The most frequent bit-width of each layer (ties: the smaller width).
    pub fn modal_bits(&self) -> Vec<u32> {
        self.counts
            .iter()
            .map(|row| {
                let mut best = 0;
                for k in 1..row.len() {
                    if row[k] > row[best] {
                        best = k;
                    }
                }
                self.options[best]
            })
            .collect()
    }

    /// Per layer, the fraction of examples that chose the modal bit-width.
    pub fn modal_fractions(&self) -> Vec<f64> {
        let n = self.examples.max(1) as f64;
        self.counts
            .iter()
            .map(|row| row.iter().copied().max().unwrap_or(0) as f64 / n)
            .collect()
    }

    /// Per layer, the entropy (bits) of the choice distribution: 0 for a layer every
    /// example quantizes alike, `log2 K` for a uniform choice.
    pub fn entropies(&self) -> Vec<f64> {
        self.frequencies()
            .iter()
            .map(|row| {
                row.iter()
                    .filter(|&&p| p > 0.0)
                    .map(|&p| -p * p.log2())
                    .sum::<f64>()
            })
            .collect()
    }

    /// Per layer, the mean bit-width over the examples.
    pub fn mean_bits(&self) -> Vec<f64> {
        let n = self.examples.max(1) as f64;
        self.counts
            .iter()
            .map(|row| {
                row.iter()
                    .zip(&self.options)
                    .map(|(&c, &o)| c as f64 * o as f64)
                    .sum::<f64>()
                    / n
            })
            .collect()
    }

    /// Fraction of examples whose whole allocation is the most frequent one.
    pub fn top_allocation_fraction(&self) -> f64 {
        match self.allocations.first() {
            Some((_, c)) if self.examples > 0 => *c as f64 / self.examples as f64,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_bin_of_their_left_edge_and_hi_in_the_last() {
        let mut h = Histogram::new(0.0, 1.0, 4).unwrap();
        h.add(&[0.0, 0.24, 0.25, 0.5, 0.99, 1.0, 1.5, -0.1, f32::NAN]);
        assert_eq!(h.counts, vec![2, 1, 1, 2]);
        assert_eq!((h.underflow, h.overflow, h.non_finite), (1, 1, 1));
        assert_eq!(h.total(), 9);
        assert_eq!(h.exact_zeros, 1);
    }

    #[test]
    fn sparsity_is_the_zero_bin_share_and_the_rest_renormalises_to_one() {
        let mut h = Histogram::new(-1.0, 1.0, 4).unwrap();
        // Zero bin is [0, 0.5): 0.0 and 0.1 fall in it.
        h.add(&[0.0, 0.0, 0.1, 0.7, -0.7, -0.2]);
        assert_eq!(h.zero_bin(), Some(2));
        assert!((h.sparsity() - 3.0 / 6.0).abs() < 1e-12);
        let p = h.without_zero_bin();
        assert_eq!(p[2], 0.0);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((p[0] - 1.0 / 3.0).abs() < 1e-12);
        assert!((h.exact_zero_fraction() - 2.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn a_range_without_zero_has_no_zero_bin_and_no_sparsity() {
        let mut h = Histogram::new(1.0, 2.0, 2).unwrap();
        h.add(&[0.0, 1.2]);
        assert_eq!(h.zero_bin(), None);
        assert_eq!(h.sparsity(), 0.0);
    }

    #[test]
    fn bad_ranges_are_errors() {
        assert!(Histogram::new(1.0, 1.0, 3).is_err());
        assert!(Histogram::new(0.0, 1.0, 0).is_err());
        assert!(Histogram::new(f64::NAN, 1.0, 3).is_err());
    }

    #[test]
    fn merging_adds_counts_and_refuses_other_ranges() {
        let mut a = Histogram::new(0.0, 1.0, 2).unwrap();
        let mut b = a.clone();
        a.add(&[0.1]);
        b.add(&[0.9, 2.0]);
        a.merge(&b).unwrap();
        assert_eq!(a.counts, vec![1, 1]);
        assert_eq!(a.overflow, 1);
        assert!(a.merge(&Histogram::new(0.0, 2.0, 2).unwrap()).is_err());
    }

    #[test]
    fn summary_matches_the_closed_form() {
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(s.mean, 2.5);
        assert!((s.std - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((s.stderr - s.std / 2.0).abs() < 1e-12);
        assert_eq!((s.min, s.max), (1.0, 4.0));
        assert_eq!(Summary::of(&[7.0]).unwrap().std, 0.0);
        assert!(Summary::of(&[]).is_err());
    }

    #[test]
    fn choice_counts_tally_layers_and_whole_allocations() {
        let options = [3, 4, 5];
        // 3 examples x 2 layers.
        let bits = [3, 5, 3, 5, 4, 4];
        let c = ChoiceCounts::from_bits(&bits, 2, &options).unwrap();
        assert_eq!(c.counts, vec![vec![2, 1, 0], vec![0, 1, 2]]);
        assert_eq!(c.modal_bits(), vec![3, 5]);
        assert_eq!(c.allocations[0], (vec![3, 5], 2));
        assert!((c.top_allocation_fraction() - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.mean_bits()[0] - 10.0 / 3.0).abs() < 1e-12);
        let h = c.entropies();
        let expect = -(2.0f64 / 3.0) * (2.0f64 / 3.0).log2() - (1.0 / 3.0) * (1.0f64 / 3.0).log2();
        assert!((h[0] - expect).abs() < 1e-12);
        assert!(ChoiceCounts::from_bits(&[3, 6], 2, &options).is_err());
        assert!(ChoiceCounts::from_bits(&[3, 4, 5], 2, &options).is_err());
    }
}
