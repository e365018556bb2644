//! The quantizers written with plain candle ops. They are the fallback on devices
//! without fused kernels (Metal) and the independent oracle the fused ops are tested
//! against: ranges by sorting instead of selection, rounding by floor and parity instead
//! of the magic-number trick, clamping after rounding instead of before.

use crate::plan::{Plan, Range, Scheme};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// Round half to even (candle's `round` ties away from zero): `floor(v)`, plus one when
/// the fraction is above one half, or exactly one half and the floor is odd.
pub(crate) fn round_half_even(v: &Tensor) -> candle_core::Result<Tensor> {
    let fl = v.floor()?;
    let frac = (v - &fl)?;
    let half = frac.ones_like()?.affine(0.5, 0.0)?;
    let above = frac.gt(&half)?;
    let tie = frac.eq(&half)?;
    let odd = fl.affine(0.5, 0.0)?.floor()?.affine(2.0, 0.0)?.ne(&fl)?;
    let up = (above + tie.mul(&odd)?)?.to_dtype(v.dtype())?;
    fl + up
}

/// A `[N, 1]` column of per-example values in `dtype`.
fn column(values: Vec<f64>, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
    let n = values.len();
    Tensor::from_vec(values, (n, 1), device)?.to_dtype(dtype)
}

/// The fake-quantized values (no gradient) of `flat: [N, D]`, example `n` at `bits[n]`.
pub(crate) fn quantize_values(
    flat: &Tensor,
    plan: &Plan,
    bits: &[Option<u32>],
) -> candle_core::Result<Tensor> {
    let (dtype, device) = (flat.dtype(), flat.device());
    let flat = flat.detach();
    let active = column(
        bits.iter().map(|b| b.map_or(0.0, |_| 1.0)).collect(),
        DType::F32,
        device,
    )?
    .ne(0.0)?;
    let lo = column(plan.ranges.iter().map(|r| r.lo).collect(), dtype, device)?;
    let hi = column(plan.ranges.iter().map(|r| r.hi).collect(), dtype, device)?;
    let (s, xhat) = match plan.scheme {
        Scheme::Asymmetric => {
            let qmax = column(
                bits.iter()
                    .map(|b| ((1u64 << b.unwrap_or(1)) - 1) as f64)
                    .collect(),
                dtype,
                device,
            )?;
            let s = (&hi - &lo)?.div(&qmax)?;
            let z = round_half_even(&lo.neg()?.div(&s)?)?
                .maximum(0.0)?
                .minimum(&qmax)?;
            let q = round_half_even(&flat.broadcast_div(&s)?)?
                .broadcast_add(&z)?
                .maximum(0.0)?
                .broadcast_minimum(&qmax)?;
            let xhat = q.broadcast_sub(&z)?.broadcast_mul(&s)?;
            (s, xhat)
        }
        Scheme::Symmetric => {
            let qmax = column(
                bits.iter()
                    .map(|b| ((1u64 << (b.unwrap_or(2) - 1)) - 1) as f64)
                    .collect(),
                dtype,
                device,
            )?;
            let s = hi.div(&qmax)?;
            let q = round_half_even(&flat.broadcast_div(&s)?)?
                .broadcast_maximum(&qmax.neg()?)?
                .broadcast_minimum(&qmax)?;
            (s.clone(), q.broadcast_mul(&s)?)
        }
    };
    let quantized = s.ne(0.0)?.mul(&active)?.broadcast_as(flat.shape())?;
    quantized.where_cond(&xhat, &flat)
}

/// The straight-through factor of `flat`: `x * mask` with `mask = [lo <= x <= hi]` on
/// examples with a clipped grid (`has_grid[n]`), 1 elsewhere; `x` itself when nothing
/// is clipped.
pub(crate) fn through(
    flat: &Tensor,
    plan: &Plan,
    has_grid: &[bool],
) -> candle_core::Result<Tensor> {
    if !plan.clipped {
        return Ok(flat.clone());
    }
    let (dtype, device) = (flat.dtype(), flat.device());
    let ranges = plan.mask_ranges(has_grid, &vec![1.0; has_grid.len()]);
    let lo = column(ranges.iter().map(|r| r.0).collect(), dtype, device)?;
    let hi = column(ranges.iter().map(|r| r.1).collect(), dtype, device)?;
    let inside = flat
        .broadcast_ge(&lo)?
        .mul(&flat.broadcast_le(&hi)?)?
        .to_dtype(dtype)?;
    flat.mul(&inside)
}

/// `xhat` forward, `d/dx` through `through` backward: `xhat.detach() + (t - t.detach())`
/// (forward exactly `xhat`, since `t - t = 0`).
pub(crate) fn straight_through(xhat: &Tensor, through: &Tensor) -> candle_core::Result<Tensor> {
    xhat.detach() + (through - through.detach())?
}

/// Whether example `n` of `plan` has a (non-identity) grid at `bits`.
pub(crate) fn has_grid(plan: &Plan, bits: &[Option<u32>]) -> Vec<bool> {
    (0..bits.len())
        .map(|n| plan.grid::<f64>(n, bits[n]).is_some())
        .collect()
}

/// The per-example fake quantizer with its straight-through gradient.
pub(crate) fn fake_quant(flat: &Tensor, plan: &Plan, bits: &[Option<u32>]) -> Result<Tensor> {
    let xhat = quantize_values(flat, plan, bits)?;
    let t = through(flat, plan, &has_grid(plan, bits))?;
    Ok(straight_through(&xhat, &t)?)
}

/// The option mixture `sum_j sel[:, j] * Q_j(x)` accumulated in option order, with
/// `d/dx = (sum_j sel[n, j]) * g` through the straight-through factor.
pub(crate) fn mixture(
    flat: &Tensor,
    selection: &Tensor,
    plan: &Plan,
    options: &[u32],
) -> Result<Tensor> {
    let batch = plan.ranges.len();
    let mut acc: Option<Tensor> = None;
    for (j, &b) in options.iter().enumerate() {
        let q = quantize_values(flat, plan, &vec![Some(b); batch])?;
        let term = q.broadcast_mul(&selection.narrow(1, j, 1)?)?;
        acc = Some(match acc {
            None => term,
            Some(acc) => (acc + term)?,
        });
    }
    let acc = acc.ok_or(Error::NoOptions)?;
    let has: Vec<bool> = (0..batch)
        .map(|n| {
            options
                .iter()
                .any(|&b| plan.grid::<f64>(n, Some(b)).is_some())
        })
        .collect();
    let t = through(flat, plan, &has)?;
    let row_sums = selection.sum_keepdim(1)?;
    let ste = (&t - t.detach())?.broadcast_mul(&row_sums)?;
    Ok((acc + ste)?)
}

/// Percentile with linear interpolation by full sort (the oracle of the selection-based
/// kernel).
pub(crate) fn sorted_percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let pos = p / 100.0 * (values.len() - 1) as f64;
    let k = pos.floor() as usize;
    let frac = pos - k as f64;
    if frac == 0.0 || k + 1 >= values.len() {
        values[k]
    } else {
        values[k] + frac * (values[k + 1] - values[k])
    }
}

/// Per-example ranges of `flat: [N, D]` by composed ops (min/max) or sorting
/// (percentile), rounded to the tensor's dtype; non-finite values are an error in the
/// examples with `inspect[n]` (the others get an empty range).
pub(crate) fn ranges(
    flat: &Tensor,
    percentile: Option<f64>,
    symmetric: bool,
    inspect: &[bool],
) -> Result<Vec<Range>> {
    let (batch, dim) = flat.dims2()?;
    let dtype = flat.dtype();
    if batch == 0 || dim == 0 {
        return Ok(vec![Range { lo: 0.0, hi: 0.0 }; batch]);
    }
    let bad = flat
        .affine(0.0, 0.0)?
        .sum(1)?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    if let Some(n) = (0..batch).find(|&n| inspect[n] && bad[n].is_nan()) {
        return Err(Error::NonFiniteExample { example: n });
    }
    let empty = |n: usize| !inspect[n] || bad[n].is_nan();
    let to_dtype = |v: f64| -> Result<f64> {
        Ok(Tensor::new(&[v], &Device::Cpu)?
            .to_dtype(dtype)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?[0])
    };
    match percentile {
        None => {
            let (lo, hi) = if symmetric {
                let m = flat.abs()?.max(1)?;
                (m.neg()?, m)
            } else {
                (flat.min(1)?, flat.max(1)?)
            };
            let lo = lo.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            let hi = hi.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            Ok((0..batch)
                .map(|n| match empty(n) {
                    true => Range { lo: 0.0, hi: 0.0 },
                    false => Range {
                        lo: lo[n],
                        hi: hi[n],
                    },
                })
                .collect())
        }
        Some(p) => {
            let rows = flat.to_dtype(DType::F64)?.to_vec2::<f64>()?;
            rows.into_iter()
                .enumerate()
                .map(|(n, mut row)| {
                    if empty(n) {
                        Ok(Range { lo: 0.0, hi: 0.0 })
                    } else if symmetric {
                        row.iter_mut().for_each(|v| *v = v.abs());
                        let m = to_dtype(sorted_percentile(&mut row, p))?;
                        Ok(Range { lo: -m, hi: m })
                    } else {
                        let hi = to_dtype(sorted_percentile(&mut row, p))?;
                        let lo = to_dtype(sorted_percentile(&mut row, 100.0 - p))?;
                        Ok(Range { lo, hi })
                    }
                })
                .collect()
        }
    }
}
