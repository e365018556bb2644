//! The asymmetric per-example (dynamic) activation quantizer and the option mixture.

use crate::config::{ACTIVATION_BITS, ExampleBits, RangeMode, check_bits};
use crate::measure::{self, Path, Prepared};
use crate::ops;
use crate::plan::{Plan, Range, Scheme};
use crate::{Error, Result, composed};
use candle_core::{DType, Tensor};

const NAME: &str = "asymmetric";

/// Asymmetric fake quantizer with one range per example (dim 0), as dynamic
/// post-training quantization applies to activations (SPEC §1):
///
/// ```text
/// s  = (max(x) - min(x)) / (2^b - 1)          (s = 0: x passes unchanged)
/// z  = clamp(round(-min(x) / s), 0, 2^b - 1)
/// q  = clamp(round(x / s) + z, 0, 2^b - 1)
/// x^ = s * (q - z)
/// ```
///
/// `round` is round-half-to-even; min and max run over all `C*H*W` values of an example.
/// Bit-widths 1..=16. The backward pass is the straight-through estimator: the identity
/// inside `[min, max]` (everywhere, with [`RangeMode::MinMax`]) and zero outside a
/// percentile range. A NaN or an infinity in an example `n` that gets quantized is an
/// error naming `n` (found by the min/max pass at no extra cost).
///
/// Every method takes `xs: [N, ...]` (any rank >= 1, f32 or f64; f16 and bf16 are
/// converted to f32 and back) and returns a tensor of the same shape and dtype. CPU and
/// CUDA (feature `cuda`) run fused kernels; other devices run composed candle ops.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ActivationQuantizer {
    /// How each example's range is measured. Default: [`RangeMode::MinMax`].
    pub range: RangeMode,
}

/// An activation tensor exported as integers: `x^[n] = scale[n] * (q[n] - zero_point[n])`.
#[derive(Debug, Clone)]
pub struct IntegerActivations {
    /// `[N, ...]` u32 codes in `0..2^bits[n]`.
    pub q: Tensor,
    /// The step of each example. An example with an empty range (a constant `c`) is
    /// exported exactly as `scale = |c|`, `q - zero_point = sign(c)`.
    pub scale: Vec<f64>,
    /// The zero point of each example.
    pub zero_point: Vec<u32>,
    /// The bit-width of each example.
    pub bits: Vec<u32>,
    /// The dtype of the quantized tensor.
    pub dtype: DType,
}

impl IntegerActivations {
    /// `scale * (q - zero_point)` per example: equals the fake-quantized tensor exactly.
    pub fn dequantize(&self) -> Result<Tensor> {
        let batch = self.scale.len();
        let q = self.q.to_dtype(DType::F64)?;
        let flat = q.reshape((batch, q.elem_count() / batch.max(1)))?;
        let zp: Vec<f64> = self.zero_point.iter().map(|&z| z as f64).collect();
        let zp = Tensor::from_vec(zp, (batch, 1), q.device())?;
        let scale = Tensor::from_vec(self.scale.clone(), (batch, 1), q.device())?;
        let out = flat.broadcast_sub(&zp)?.broadcast_mul(&scale)?;
        Ok(out.to_dtype(self.dtype)?.reshape(self.q.shape())?)
    }
}

impl ActivationQuantizer {
    /// A quantizer measuring ranges with `range`.
    pub fn new(range: RangeMode) -> Self {
        ActivationQuantizer { range }
    }

    /// Measures the range of each example with `inspect[n]` (those that get quantized)
    /// and checks the settings.
    fn plan(&self, p: &Prepared, inspect: &[bool]) -> Result<Plan> {
        self.range.check(NAME, true)?;
        let (ranges, clipped) = match self.range {
            RangeMode::MinMax => (measure::min_max(p, inspect)?, false),
            RangeMode::Percentile(pct) => {
                (measure::percentiles(p, pct, false, inspect)?, pct < 100.0)
            }
        };
        check_widths(&ranges, p.xs.dtype())?;
        Ok(Plan {
            scheme: Scheme::Asymmetric,
            dim: p.dim,
            ranges,
            clipped,
        })
    }

    /// The range `[lo, hi]` of every example of `xs: [N, ...]`, as this quantizer measures
    /// it.
    pub fn ranges(&self, xs: &Tensor) -> Result<Vec<(f64, f64)>> {
        let p = Prepared::per_example(xs)?;
        let plan = self.plan(&p, &vec![true; p.batch])?;
        Ok(plan.ranges.iter().map(|r| (r.lo, r.hi)).collect())
    }

    /// Fake-quantizes example `n` of `xs: [N, ...]` at `bits` (one width for all, or one
    /// per example with `None` for full precision). Output: the shape of `xs`. Examples
    /// left at full precision are not inspected (a NaN there is no error); when every
    /// example is, `xs` itself is returned.
    pub fn fake_quant(&self, xs: &Tensor, bits: &ExampleBits) -> Result<Tensor> {
        let p = Prepared::per_example(xs)?;
        let bits = bits.resolve(p.batch, NAME, &ACTIVATION_BITS)?;
        let inspect: Vec<bool> = bits.iter().map(Option::is_some).collect();
        if !inspect.contains(&true) {
            return Ok(xs.clone());
        }
        let plan = self.plan(&p, &inspect)?;
        let out = match Path::of(p.xs.device()) {
            Path::Fused => p.xs.apply_op1(ops::FakeQuant { plan, bits })?,
            Path::Composed => {
                let flat = p.xs.reshape((p.batch, p.dim))?;
                composed::fake_quant(&flat, &plan, &bits)?.reshape(p.xs.shape())?
            }
        };
        p.restore(out)
    }

    /// [`fake_quant`](Self::fake_quant) with the bits as a `[N]` u32 tensor.
    pub fn fake_quant_bits(&self, xs: &Tensor, bits: &Tensor) -> Result<Tensor> {
        let bits = bits_from_tensor(xs, bits)?;
        self.fake_quant(xs, &ExampleBits::PerExample(bits))
    }

    /// The option mixture `x^[n] = sum_j selection[n, j] * Q_{options[j]}(x[n])`.
    ///
    /// `xs: [N, ...]`, `selection: [N, K]` with `K = options.len()` (converted to the dtype
    /// of `xs`). Output: the shape of `xs`. With a one-hot row the forward value is
    /// exactly `Q_{b_chosen}(x[n])`, computed once. Gradients:
    /// `d/dselection[n, j] = sum_i g[n, i] * Q_{options[j]}(x[n, i])` and
    /// `d/dx[n] = (sum_j selection[n, j]) * g[n]` (straight through, inside the range).
    pub fn mixture(&self, xs: &Tensor, selection: &Tensor, options: &[u32]) -> Result<Tensor> {
        let p = Prepared::per_example(xs)?;
        let selection = check_selection(&p, selection, options)?;
        let plan = self.plan(&p, &vec![true; p.batch])?;
        let out = match Path::of(p.xs.device()) {
            Path::Fused => p.xs.apply_op2(
                &selection,
                ops::Mixture {
                    plan,
                    options: options.to_vec(),
                },
            )?,
            Path::Composed => {
                let flat = p.xs.reshape((p.batch, p.dim))?;
                composed::mixture(&flat, &selection, &plan, options)?.reshape(p.xs.shape())?
            }
        };
        p.restore(out)
    }

    /// The reference implementation of [`fake_quant`](Self::fake_quant) in composed candle
    /// ops (ranges by sorting, rounding by floor and parity): the oracle of the fused
    /// kernels and the fallback on other devices. Same values, same gradients, ~30x
    /// slower.
    pub fn fake_quant_composed(&self, xs: &Tensor, bits: &ExampleBits) -> Result<Tensor> {
        let p = Prepared::per_example(xs)?;
        let bits = bits.resolve(p.batch, NAME, &ACTIVATION_BITS)?;
        let inspect: Vec<bool> = bits.iter().map(Option::is_some).collect();
        if !inspect.contains(&true) {
            return Ok(xs.clone());
        }
        let (flat, plan) = self.composed_plan(&p, &inspect)?;
        let out = composed::fake_quant(&flat, &plan, &bits)?.reshape(p.xs.shape())?;
        p.restore(out)
    }

    /// The reference implementation of [`mixture`](Self::mixture) in composed candle ops.
    pub fn mixture_composed(
        &self,
        xs: &Tensor,
        selection: &Tensor,
        options: &[u32],
    ) -> Result<Tensor> {
        let p = Prepared::per_example(xs)?;
        let selection = check_selection(&p, selection, options)?;
        let (flat, plan) = self.composed_plan(&p, &vec![true; p.batch])?;
        let out = composed::mixture(&flat, &selection, &plan, options)?.reshape(p.xs.shape())?;
        p.restore(out)
    }

    fn composed_plan(&self, p: &Prepared, inspect: &[bool]) -> Result<(Tensor, Plan)> {
        self.range.check(NAME, true)?;
        let flat = p.xs.reshape((p.batch, p.dim))?;
        let (pct, clipped) = match self.range {
            RangeMode::MinMax => (None, false),
            RangeMode::Percentile(pct) => (Some(pct), pct < 100.0),
        };
        let ranges = composed::ranges(&flat, pct, false, inspect)?;
        check_widths(&ranges, p.xs.dtype())?;
        let plan = Plan {
            scheme: Scheme::Asymmetric,
            dim: p.dim,
            ranges,
            clipped,
        };
        Ok((flat, plan))
    }

    /// Exports `xs: [N, ...]` quantized at `bits` as integer codes, scales and zero points
    /// (for deployment checks); every example needs a bit-width.
    pub fn export(&self, xs: &Tensor, bits: &ExampleBits) -> Result<IntegerActivations> {
        let p = Prepared::per_example(xs)?;
        let bits = bits.resolve(p.batch, NAME, &ACTIVATION_BITS)?;
        let bits: Vec<u32> = bits
            .iter()
            .enumerate()
            .map(|(n, b)| b.ok_or(Error::ExportFullPrecision { example: n }))
            .collect::<Result<_>>()?;
        let plan = self.plan(&p, &vec![true; p.batch])?;
        let codes = measure::with_host_values(
            &p.xs,
            |xs| export_codes(xs, &plan, &bits),
            |xs| export_codes(xs, &plan, &bits),
        )?;
        let (q, scale, zero_point) = codes;
        let q = Tensor::from_vec(q, p.xs.shape(), p.xs.device())?;
        Ok(IntegerActivations {
            q,
            scale,
            zero_point,
            bits,
            dtype: p.dtype,
        })
    }
}

/// Integer codes, scales and zero points of every example (see [`IntegerActivations`]).
fn export_codes<T: crate::kernels::Real>(
    xs: &[T],
    plan: &Plan,
    bits: &[u32],
) -> (Vec<u32>, Vec<f64>, Vec<u32>) {
    let mut q = Vec::with_capacity(xs.len());
    let mut scale = Vec::with_capacity(bits.len());
    let mut zero_point = Vec::with_capacity(bits.len());
    for (n, &b) in bits.iter().enumerate() {
        let ex = &xs[n * plan.dim..(n + 1) * plan.dim];
        match plan.grid::<T>(n, Some(b)) {
            Some(grid) => {
                let z = -grid.tmin;
                q.extend(ex.iter().map(|&x| (grid.level(x) + z).to_f64() as u32));
                scale.push(grid.s.to_f64());
                zero_point.push(z.to_f64() as u32);
            }
            None => {
                // A constant c: scale |c|, q - z = sign(c).
                let Range { lo: c, .. } = plan.ranges[n];
                let (code, z) = if c < 0.0 {
                    (0, 1)
                } else if c > 0.0 {
                    (1, 0)
                } else {
                    (0, 0)
                };
                q.extend(std::iter::repeat_n(code, ex.len()));
                scale.push(c.abs());
                zero_point.push(z);
            }
        }
    }
    (q, scale, zero_point)
}

/// Fails when `max - min` of an example overflows the working dtype (the step would be
/// infinite and the output NaN).
fn check_widths(ranges: &[Range], dtype: DType) -> Result<()> {
    for (n, r) in ranges.iter().enumerate() {
        let finite = match dtype {
            DType::F32 => (r.hi as f32 - r.lo as f32).is_finite(),
            _ => (r.hi - r.lo).is_finite(),
        };
        if !finite {
            return Err(Error::RangeOverflow {
                example: n,
                lo: r.lo,
                hi: r.hi,
                dtype,
            });
        }
    }
    Ok(())
}

/// Validates a `[N]` u32 bits tensor and reads it.
fn bits_from_tensor(xs: &Tensor, bits: &Tensor) -> Result<Vec<Option<u32>>> {
    let batch = xs
        .dims()
        .first()
        .copied()
        .ok_or_else(|| Error::NoBatchDim {
            shape: xs.shape().clone(),
        })?;
    if bits.dtype() != DType::U32 || bits.dims() != [batch] {
        return Err(Error::BitsTensor {
            batch,
            shape: bits.shape().clone(),
            dtype: bits.dtype(),
        });
    }
    let bits = bits.to_vec1::<u32>()?;
    for &b in &bits {
        check_bits(b, NAME, &ACTIVATION_BITS)?;
    }
    Ok(bits.into_iter().map(Some).collect())
}

/// Validates the options and a `[N, K]` selection; returns it contiguous in the working
/// dtype of `p`.
fn check_selection(p: &Prepared, selection: &Tensor, options: &[u32]) -> Result<Tensor> {
    if options.is_empty() {
        return Err(Error::NoOptions);
    }
    for &b in options {
        check_bits(b, NAME, &ACTIVATION_BITS)?;
    }
    if selection.dims() != [p.batch, options.len()] {
        return Err(Error::SelectionShape {
            batch: p.batch,
            options: options.len(),
            shape: selection.shape().clone(),
        });
    }
    Ok(selection.to_dtype(p.xs.dtype())?.contiguous()?)
}
