//! Quantizer settings: how the range is measured and how many bits each example gets.

use crate::{Error, Result};

/// Bit-widths the asymmetric (activation) quantizer accepts.
pub const ACTIVATION_BITS: std::ops::RangeInclusive<u32> = 1..=16;
/// Bit-widths the symmetric (weight) and log2 quantizers accept: one bit is the sign,
/// so at least two are needed for a non-zero level.
pub const SYMMETRIC_BITS: std::ops::RangeInclusive<u32> = 2..=16;

/// How the quantization range of a tensor (weights) or of an example (activations) is
/// measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum RangeMode {
    /// The exact extremes: `max|w|` (symmetric), `min(x)` and `max(x)` (asymmetric).
    /// Every value lies inside the range, so the straight-through gradient is the
    /// identity everywhere. The default.
    #[default]
    MinMax,
    /// The p-th percentile instead of the maximum: `P_p(|w|)` (symmetric, p in (0, 100])
    /// or `P_{100-p}(x)` and `P_p(x)` (asymmetric, p in [50, 100]). Percentiles use
    /// linear interpolation between order statistics (numpy's default). Values outside
    /// the range are clamped and receive a zero gradient. `Percentile(100.0)` equals
    /// `MinMax`.
    Percentile(f64),
}

/// The bit-width of every example of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExampleBits {
    /// The same bit-width for every example.
    All(u32),
    /// One entry per example; `None` leaves that example at full precision.
    PerExample(Vec<Option<u32>>),
}

impl ExampleBits {
    /// The bits of each of `batch` examples, validated against `supported`.
    pub(crate) fn resolve(
        &self,
        batch: usize,
        quantizer: &'static str,
        supported: &std::ops::RangeInclusive<u32>,
    ) -> Result<Vec<Option<u32>>> {
        let bits = match self {
            ExampleBits::All(b) => vec![Some(*b); batch],
            ExampleBits::PerExample(v) => {
                if v.len() != batch {
                    return Err(Error::BitsLength {
                        expected: batch,
                        got: v.len(),
                    });
                }
                v.clone()
            }
        };
        for b in bits.iter().flatten() {
            check_bits(*b, quantizer, supported)?;
        }
        Ok(bits)
    }
}

impl From<u32> for ExampleBits {
    fn from(bits: u32) -> Self {
        ExampleBits::All(bits)
    }
}

/// Fails with [`Error::UnsupportedBits`] unless `bits` lies in `supported`.
pub(crate) fn check_bits(
    bits: u32,
    quantizer: &'static str,
    supported: &std::ops::RangeInclusive<u32>,
) -> Result<()> {
    if supported.contains(&bits) {
        Ok(())
    } else {
        Err(Error::UnsupportedBits {
            bits,
            quantizer,
            min: *supported.start(),
            max: *supported.end(),
        })
    }
}

impl RangeMode {
    /// Fails unless a percentile lies in the range `quantizer` accepts.
    pub(crate) fn check(&self, quantizer: &'static str, two_sided: bool) -> Result<()> {
        if let RangeMode::Percentile(p) = *self {
            let ok = if two_sided {
                (50.0..=100.0).contains(&p)
            } else {
                p > 0.0 && p <= 100.0
            };
            if !ok {
                return Err(Error::Percentile {
                    p,
                    quantizer,
                    range: if two_sided { "[50, 100]" } else { "(0, 100]" },
                });
            }
        }
        Ok(())
    }
}
