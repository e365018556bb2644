//! A tiny seeded generator shared bit for bit with `tools/timm_reference.py` (numpy), so
//! that the parity fixtures store only outputs: the weights, inputs and bits they were
//! computed from are regenerated from a seed on both sides.
//!
//! Stream: `u_i = (splitmix64(seed ^ fnv1a64(name), i) >> 11) * 2^-53` for `i = 1, 2, ...`,
//! with `splitmix64(s, i) = mix(s + i * 0x9E3779B97F4A7C15)` (wrapping) and `mix` the
//! SplitMix64 finaliser. Tensors are filled in row-major order from the stream of their
//! name, then scaled by [`seeded_value`]'s rule.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::error::Result;
use crate::param::{ParamStore, fnv1a64};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` uniforms in `[0, 1)` from the stream named `name` under `seed`.
pub fn uniforms(seed: u64, name: &str, n: usize) -> Vec<f64> {
    let s = seed ^ fnv1a64(name);
    (1..=n as u64)
        .map(|i| {
            (mix(s.wrapping_add(i.wrapping_mul(GOLDEN))) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
        })
        .collect()
}

/// The value rule of a state-dict entry, by name and shape:
/// - `*.running_var`: `0.5 + u` (positive);
/// - `*.running_mean`: `0.2 (2u - 1)`;
/// - 1-D `*.weight` (norm scale): `0.75 + 0.5 u`;
/// - `*.bias`: `0.1 (2u - 1)`;
/// - other `*.weight` (conv, linear): `sqrt(6 / fan_in) (2u - 1)` with
///   `fan_in = numel / shape[0]` (He-uniform: variance `2 / fan_in`).
pub fn seeded_value(name: &str, shape: &[usize], u: f64) -> f64 {
    if name.ends_with("running_var") {
        0.5 + u
    } else if name.ends_with("running_mean") {
        0.2 * (2.0 * u - 1.0)
    } else if name.ends_with("bias") {
        0.1 * (2.0 * u - 1.0)
    } else if shape.len() == 1 {
        0.75 + 0.5 * u
    } else {
        let fan_in = shape.iter().product::<usize>() / shape[0];
        (6.0 / fan_in as f64).sqrt() * (2.0 * u - 1.0)
    }
}

/// The seeded tensor for state-dict entry `name` of `shape`, in f64 on `device`.
pub fn seeded_tensor(seed: u64, name: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
    let n = shape.iter().product();
    let values: Vec<f64> = uniforms(seed, name, n)
        .into_iter()
        .map(|u| seeded_value(name, shape, u))
        .collect();
    Ok(Tensor::from_vec(values, shape, device)?)
}

/// Seeded values for every tensor of `store` (its names and shapes), ready for
/// [`ParamStore::set_tensors`].
pub fn seeded_state_dict(seed: u64, store: &ParamStore) -> Result<HashMap<String, Tensor>> {
    store
        .shapes()
        .into_iter()
        .map(|(name, shape)| {
            let t = seeded_tensor(seed, &name, &shape, store.device())?.to_dtype(store.dtype())?;
            Ok((name, t))
        })
        .collect()
}

/// Seeded input images `[n, c, h, w]`, uniform in `[-2, 2)` (stream `"images"`).
pub fn seeded_images(
    seed: u64,
    shape: (usize, usize, usize, usize),
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let (n, c, h, w) = shape;
    let values: Vec<f64> = uniforms(seed, "images", n * c * h * w)
        .into_iter()
        .map(|u| 4.0 * u - 2.0)
        .collect();
    Ok(Tensor::from_vec(values, (n, c, h, w), device)?.to_dtype(dtype)?)
}

/// Seeded per-example per-layer bits `[n, l]` u32 in `lo..=hi` (stream `"bits"`):
/// `lo + floor(u (hi - lo + 1))`.
pub fn seeded_bits(
    seed: u64,
    n: usize,
    l: usize,
    lo: u32,
    hi: u32,
    device: &Device,
) -> Result<Tensor> {
    let span = f64::from(hi - lo + 1);
    let values: Vec<u32> = uniforms(seed, "bits", n * l)
        .into_iter()
        .map(|u| lo + ((u * span).floor() as u32).min(hi - lo))
        .collect();
    Ok(Tensor::from_vec(values, (n, l), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_stream_matches_the_reference_sequence() {
        // SplitMix64 from state 0 (Vigna's reference): first outputs.
        let s0 = mix(GOLDEN);
        assert_eq!(s0, 0xe220_a839_7b1d_cdaf);
        assert_eq!(mix(GOLDEN.wrapping_mul(2)), 0x6e78_9e6a_a1b9_65f4);
        // Our stream is that sequence offset by the name hash.
        let u = uniforms(0, "", 1);
        let expected = (mix(fnv1a64("").wrapping_add(GOLDEN)) >> 11) as f64 / (1u64 << 53) as f64;
        assert_eq!(u[0], expected);
    }

    #[test]
    fn uniforms_lie_in_the_unit_interval_with_mean_one_half() {
        let u = uniforms(42, "x", 20000);
        assert!(u.iter().all(|v| (0.0..1.0).contains(v)));
        let mean = u.iter().sum::<f64>() / u.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }

    #[test]
    fn running_variances_are_positive_and_bits_stay_in_range() -> Result<()> {
        let v = seeded_tensor(1, "bn1.running_var", &[1000], &Device::Cpu)?.to_vec1::<f64>()?;
        assert!(v.iter().all(|x| *x >= 0.5 && *x < 1.5));
        let bits = seeded_bits(1, 4, 50, 3, 10, &Device::Cpu)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        assert!(bits.iter().all(|b| (3..=10).contains(b)));
        assert!(bits.contains(&3) && bits.contains(&10));
        Ok(())
    }
}
