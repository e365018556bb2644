//! The building blocks every architecture is made of: Conv2d, BatchNorm2d, ConvNormAct
//! and Linear, holding their tensors by timm name and quantizing at their taps.

use candle_core::{Tensor, Var};

use crate::error::{Error, Result};
use crate::ops::{self, Conv2dParams};
use crate::param::{Init, ParamStore};
use crate::plan::{BnMode, Taps};

/// BatchNorm epsilon of every timm architecture here.
pub const BN_EPS: f64 = 1e-5;
/// BatchNorm running-statistics momentum (PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;

/// Collects parameters from a store and the names of quantizable layers in the order
/// the layers are created (which every architecture keeps equal to execution order).
pub struct Builder<'s> {
    store: &'s ParamStore,
    taps: Vec<String>,
}

impl<'s> Builder<'s> {
    /// A builder drawing tensors from `store`.
    pub fn new(store: &'s ParamStore) -> Self {
        Self {
            store,
            taps: Vec::new(),
        }
    }

    /// The store tensors come from.
    pub fn store(&self) -> &'s ParamStore {
        self.store
    }

    /// Registers the input of layer `name` as the next quantizable activation.
    fn tap(&mut self, name: &str) -> usize {
        self.taps.push(name.to_string());
        self.taps.len() - 1
    }

    /// The quantizable layer names collected so far, in order.
    pub fn into_taps(self) -> Vec<String> {
        self.taps
    }
}

/// Options of [`Conv2d::new`].
#[derive(Clone, Copy, Debug)]
pub struct ConvConfig {
    /// Stride in both directions. Default 1.
    pub stride: usize,
    /// Channel groups (`c_in` for depthwise). Default 1.
    pub groups: usize,
    /// Zero padding; `None` (default) uses timm's static "same-ish" padding
    /// `((stride - 1) + (k - 1)) / 2`.
    pub padding: Option<usize>,
    /// Whether the layer has a bias. Default false (every conv here is followed by a norm).
    pub bias: bool,
    /// Whether the layer's input is a quantizable activation (every conv but the stem).
    /// Default true.
    pub quantized: bool,
    /// Weight initialisation. Default: `N(0, 2 / fan_out)` with
    /// `fan_out = k * k * c_out / groups` (timm's MobileNet/RegNet init).
    pub init: Option<Init>,
}

impl Default for ConvConfig {
    fn default() -> Self {
        Self {
            stride: 1,
            groups: 1,
            padding: None,
            bias: false,
            quantized: true,
            init: None,
        }
    }
}

/// timm's static padding for odd kernels: `((stride - 1) + (k - 1)) / 2`.
pub fn same_padding(k: usize, stride: usize) -> usize {
    ((stride - 1) + (k - 1)) / 2
}

/// A 2-D convolution, optionally quantizing its input (a tap) and its weight.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// timm module path (`layer1.0.conv1`).
    pub name: String,
    /// `[c_out, c_in / groups, k, k]`.
    pub weight: Tensor,
    /// `[c_out]`, if any.
    pub bias: Option<Tensor>,
    /// Stride, padding, dilation and groups.
    pub params: Conv2dParams,
    /// Index of this layer's input among the quantizable activations.
    pub tap: Option<usize>,
}

impl Conv2d {
    /// A `k x k` convolution from `c_in` to `c_out` channels named `name`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        cfg: ConvConfig,
        b: &mut Builder<'_>,
        name: &str,
    ) -> Result<Self> {
        if cfg.groups == 0 || !c_in.is_multiple_of(cfg.groups) || !c_out.is_multiple_of(cfg.groups)
        {
            return Err(Error::InvalidConfig {
                what: "conv groups",
                detail: format!(
                    "{name}: {} groups for {c_in} -> {c_out} channels",
                    cfg.groups
                ),
            });
        }
        let fan_out = k * k * c_out / cfg.groups;
        let init = cfg.init.unwrap_or(Init::Normal {
            std: (2.0 / fan_out as f64).sqrt(),
        });
        let weight = b.store.param(
            &format!("{name}.weight"),
            &[c_out, c_in / cfg.groups, k, k],
            init,
        )?;
        let bias = if cfg.bias {
            Some(
                b.store
                    .param(&format!("{name}.bias"), &[c_out], Init::Zeros)?,
            )
        } else {
            None
        };
        let tap = cfg.quantized.then(|| b.tap(name));
        let params = Conv2dParams {
            stride: cfg.stride,
            padding: cfg.padding.unwrap_or_else(|| same_padding(k, cfg.stride)),
            dilation: 1,
            groups: cfg.groups,
        };
        Ok(Self {
            name: name.to_string(),
            weight,
            bias,
            params,
            tap,
        })
    }

    /// xs: `[N, c_in, H, W]` -> `[N, c_out, H', W']`; the input is fake-quantized when this
    /// layer is a tap, the weight when the plan quantizes weights.
    pub fn forward(&self, xs: &Tensor, taps: &mut Taps<'_, '_>) -> Result<Tensor> {
        let xs = match self.tap {
            Some(l) => taps.input(l, xs)?,
            None => xs.clone(),
        };
        let w = taps.weight(&self.weight)?;
        Ok(ops::conv2d(&xs, &w, self.bias.as_ref(), self.params)?)
    }
}

/// BatchNorm2d: `y = (x - mean) / sqrt(var + eps) * weight + bias`, with batch or running
/// statistics per [`BnMode`].
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    /// timm module path (`layer1.0.bn1`).
    pub name: String,
    /// `[C]` scale (gamma).
    pub weight: Tensor,
    /// `[C]` shift (beta).
    pub bias: Tensor,
    /// `[C]` running mean.
    pub running_mean: Var,
    /// `[C]` running (unbiased) variance.
    pub running_var: Var,
}

impl BatchNorm2d {
    /// A BatchNorm over `c` channels named `name`; `zero_init` starts gamma at 0 (timm's
    /// `zero_init_last` for the last norm of a residual branch).
    pub fn new(c: usize, zero_init: bool, b: &mut Builder<'_>, name: &str) -> Result<Self> {
        let store = b.store;
        let weight = store.param(
            &format!("{name}.weight"),
            &[c],
            if zero_init { Init::Zeros } else { Init::Ones },
        )?;
        let bias = store.param(&format!("{name}.bias"), &[c], Init::Zeros)?;
        let running_mean = store.buffer(&format!("{name}.running_mean"), &[c], Init::Zeros)?;
        let running_var = store.buffer(&format!("{name}.running_var"), &[c], Init::Ones)?;
        Ok(Self {
            name: name.to_string(),
            weight,
            bias,
            running_mean,
            running_var,
        })
    }

    /// xs: `[N, C, H, W]` -> `[N, C, H, W]`. In [`BnMode::Train`] the running statistics
    /// become `(1 - 0.1) r + 0.1 s`, with `s` the batch mean and the unbiased batch variance
    /// `var * n / (n - 1)`, `n = N * H * W`.
    pub fn forward(&self, xs: &Tensor, mode: BnMode) -> Result<Tensor> {
        match mode {
            BnMode::Eval => Ok(ops::batch_norm_eval(
                xs,
                &self.running_mean.as_detached_tensor(),
                &self.running_var.as_detached_tensor(),
                &self.weight,
                &self.bias,
                BN_EPS,
            )?),
            BnMode::Train | BnMode::TrainFrozenStats => {
                let (n, _, h, w) = xs.dims4()?;
                let count = n * h * w;
                if count < 2 {
                    return Err(Error::BatchTooSmall {
                        name: self.name.clone(),
                        shape: xs.dims().to_vec(),
                    });
                }
                let out = ops::batch_norm_train(xs, &self.weight, &self.bias, BN_EPS)?;
                if mode == BnMode::Train {
                    let m = BN_MOMENTUM;
                    let unbiased = (count as f64) / (count as f64 - 1.0);
                    let dtype = self.running_mean.dtype();
                    let mean = out.mean.detach().to_dtype(dtype)?;
                    let var = out.var.detach().to_dtype(dtype)?;
                    let rm = ((self.running_mean.as_detached_tensor() * (1.0 - m))? + (mean * m)?)?;
                    let rv = ((self.running_var.as_detached_tensor() * (1.0 - m))?
                        + (var * (m * unbiased))?)?;
                    self.running_mean.set(&rm)?;
                    self.running_var.set(&rv)?;
                }
                Ok(out.ys)
            }
        }
    }
}

/// timm's `ConvNormAct`: `{name}.conv` then `{name}.bn`, then ReLU when `act`.
#[derive(Clone, Debug)]
pub struct ConvNormAct {
    /// The convolution (`{name}.conv`).
    pub conv: Conv2d,
    /// The norm (`{name}.bn`).
    pub bn: BatchNorm2d,
    /// Whether a ReLU follows.
    pub act: bool,
}

impl ConvNormAct {
    /// Conv + BN (+ ReLU) named `{name}.conv` / `{name}.bn`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        cfg: ConvConfig,
        act: bool,
        zero_init: bool,
        b: &mut Builder<'_>,
        name: &str,
    ) -> Result<Self> {
        let conv = Conv2d::new(c_in, c_out, k, cfg, b, &format!("{name}.conv"))?;
        let bn = BatchNorm2d::new(c_out, zero_init, b, &format!("{name}.bn"))?;
        Ok(Self { conv, bn, act })
    }

    /// xs: `[N, c_in, H, W]` -> `[N, c_out, H', W']`.
    pub fn forward(&self, xs: &Tensor, taps: &mut Taps<'_, '_>) -> Result<Tensor> {
        let ys = self.conv.forward(xs, taps)?;
        let ys = self.bn.forward(&ys, taps.bn)?;
        if self.act {
            Ok(ops::relu(&ys)?)
        } else {
            Ok(ys)
        }
    }
}

/// A fully connected layer `y = x W^T + b`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// timm module path (`fc`, `head.fc`, `classifier`).
    pub name: String,
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Option<Tensor>,
    /// Index of this layer's input among the quantizable activations.
    pub tap: Option<usize>,
}

impl Linear {
    /// A linear layer `d_in -> d_out` with bias, initialised with `w_init` / `b_init`.
    pub fn new(
        d_in: usize,
        d_out: usize,
        w_init: Init,
        b_init: Init,
        quantized: bool,
        b: &mut Builder<'_>,
        name: &str,
    ) -> Result<Self> {
        let weight = b
            .store
            .param(&format!("{name}.weight"), &[d_out, d_in], w_init)?;
        let bias = Some(b.store.param(&format!("{name}.bias"), &[d_out], b_init)?);
        let tap = quantized.then(|| b.tap(name));
        Ok(Self {
            name: name.to_string(),
            weight,
            bias,
            tap,
        })
    }

    /// xs: `[N, d_in]` -> `[N, d_out]`.
    pub fn forward(&self, xs: &Tensor, taps: &mut Taps<'_, '_>) -> Result<Tensor> {
        let xs = match self.tap {
            Some(l) => taps.input(l, xs)?,
            None => xs.clone(),
        };
        let w = taps.weight(&self.weight)?;
        Ok(ops::linear(&xs, &w, self.bias.as_ref())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::QuantPlan;
    use candle_core::{DType, Device};

    #[test]
    fn timm_padding_matches_its_formula() {
        assert_eq!(same_padding(3, 1), 1);
        assert_eq!(same_padding(3, 2), 1);
        assert_eq!(same_padding(5, 2), 2);
        assert_eq!(same_padding(7, 2), 3);
        assert_eq!(same_padding(1, 2), 0);
    }

    fn bn_input() -> Result<Tensor> {
        let v: Vec<f64> = (0..2 * 3 * 2 * 2)
            .map(|i| ((i * 7) % 11) as f64 * 0.3 - 1.0)
            .collect();
        Ok(Tensor::from_vec(v, (2, 3, 2, 2), &Device::Cpu)?)
    }

    #[test]
    fn training_batch_norm_updates_running_stats_like_pytorch() -> Result<()> {
        let store = ParamStore::new(0, DType::F64, &Device::Cpu);
        let mut b = Builder::new(&store);
        let bn = BatchNorm2d::new(3, false, &mut b, "bn")?;
        let xs = bn_input()?;
        bn.forward(&xs, BnMode::Train)?;
        // Brute force per channel: mean and unbiased variance over N, H, W.
        let flat = xs.flatten_all()?.to_vec1::<f64>()?;
        let rm = bn.running_mean.to_vec1::<f64>()?;
        let rv = bn.running_var.to_vec1::<f64>()?;
        for c in 0..3 {
            let vals: Vec<f64> = (0..2)
                .flat_map(|n| (0..4).map(move |i| (n, i)))
                .map(|(n, i)| flat[n * 12 + c * 4 + i])
                .collect();
            let mean = vals.iter().sum::<f64>() / 8.0;
            let var_unbiased = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 7.0;
            assert!((rm[c] - 0.1 * mean).abs() < 1e-12);
            assert!((rv[c] - (0.9 + 0.1 * var_unbiased)).abs() < 1e-12);
        }
        Ok(())
    }

    #[test]
    fn frozen_stats_and_eval_modes_leave_running_stats_untouched() -> Result<()> {
        let store = ParamStore::new(0, DType::F64, &Device::Cpu);
        let mut b = Builder::new(&store);
        let bn = BatchNorm2d::new(3, false, &mut b, "bn")?;
        let xs = bn_input()?;
        let train = bn.forward(&xs, BnMode::TrainFrozenStats)?;
        bn.forward(&xs, BnMode::Eval)?;
        assert_eq!(bn.running_mean.to_vec1::<f64>()?, vec![0.0; 3]);
        assert_eq!(bn.running_var.to_vec1::<f64>()?, vec![1.0; 3]);
        // Batch statistics normalise each channel to zero mean.
        let m = train
            .mean_keepdim(0)?
            .mean_keepdim(2)?
            .mean_keepdim(3)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        assert!(m.iter().all(|v| v.abs() < 1e-12), "{m:?}");
        Ok(())
    }

    #[test]
    fn single_value_per_channel_in_training_is_an_error_naming_the_layer() -> Result<()> {
        let store = ParamStore::new(0, DType::F32, &Device::Cpu);
        let mut b = Builder::new(&store);
        let bn = BatchNorm2d::new(2, false, &mut b, "norm_head")?;
        let xs = Tensor::ones((1, 2, 1, 1), DType::F32, &Device::Cpu)?;
        let err = bn.forward(&xs, BnMode::Train).unwrap_err().to_string();
        assert!(
            err.contains("norm_head") && err.contains("[1, 2, 1, 1]"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn taps_are_numbered_in_creation_order_and_the_stem_is_not_one() -> Result<()> {
        let store = ParamStore::new(0, DType::F32, &Device::Cpu);
        let mut b = Builder::new(&store);
        let stem = Conv2d::new(
            3,
            4,
            3,
            ConvConfig {
                quantized: false,
                ..Default::default()
            },
            &mut b,
            "stem",
        )?;
        let c1 = Conv2d::new(4, 4, 3, ConvConfig::default(), &mut b, "c1")?;
        let fc = Linear::new(4, 2, Init::Zeros, Init::Zeros, true, &mut b, "fc")?;
        assert_eq!((stem.tap, c1.tap, fc.tap), (None, Some(0), Some(1)));
        assert_eq!(b.into_taps(), vec!["c1".to_string(), "fc".to_string()]);
        Ok(())
    }

    #[test]
    fn conv_matches_candle_conv2d_at_full_precision() -> Result<()> {
        let store = ParamStore::new(3, DType::F64, &Device::Cpu);
        let mut b = Builder::new(&store);
        let conv = Conv2d::new(
            4,
            6,
            3,
            ConvConfig {
                stride: 2,
                groups: 2,
                ..Default::default()
            },
            &mut b,
            "c",
        )?;
        let xs = Tensor::randn(0f64, 1.0, (2, 4, 7, 7), &Device::Cpu)?;
        let plan = QuantPlan::full_precision();
        let mut taps = Taps::new(&plan, BnMode::Eval, None, 2, 1)?;
        let ours = conv.forward(&xs, &mut taps)?;
        let reference = xs.conv2d(&conv.weight, 1, 2, 1, 2)?;
        let diff = (ours - reference)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-12, "{diff}");
        Ok(())
    }
}
