//! The bit-width policy: a small CNN that reads the image and scores, for every
//! quantizable layer, every bit-width option (SPEC §4: image -> `[N, L, K]` logits).

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::layers::{Builder, ConvConfig, ConvNormAct, Linear};
use crate::ops;
use crate::param::{Init, ParamStore};
use crate::plan::{BnMode, QuantPlan, Taps};

/// Shape of a policy network.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    /// `L`: quantizable layers of the classifier it drives. Default 9 (`resnet_tiny`).
    pub num_layers: usize,
    /// `K`: bit-width options per layer. Default 8 (options 3..=10).
    pub num_options: usize,
    /// Channels of the first conv; each of the `depth - 1` strided convs doubles them.
    /// Default 16.
    pub width: usize,
    /// Number of conv + BN + ReLU stages (the first at stride 1, the others at stride 2).
    /// Default 3.
    pub depth: usize,
    /// Side the image is resized to (bilinear) before the convs; `None` runs at the native
    /// size. Default `Some(64)`.
    pub input_size: Option<usize>,
    /// Image channels. Default 3.
    pub in_chans: usize,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            num_layers: 9,
            num_options: 8,
            width: 16,
            depth: 3,
            input_size: Some(64),
            in_chans: 3,
        }
    }
}

/// The policy CNN: `stages.{i}` (conv + BN + ReLU), global average pooling, `head`
/// (linear to `L * K`). Its parameters use these names in their own [`ParamStore`].
#[derive(Clone, Debug)]
pub struct PolicyNet {
    cfg: PolicyConfig,
    /// Conv stages, `stages.{i}.conv` / `stages.{i}.bn`.
    pub stages: Vec<ConvNormAct>,
    /// `head`: `[L * K, C]`.
    pub head: Linear,
}

impl PolicyNet {
    /// Builds the policy described by `cfg` on `store`.
    pub fn new(cfg: &PolicyConfig, store: &ParamStore) -> Result<Self> {
        if cfg.num_layers == 0 || cfg.num_options == 0 || cfg.width == 0 || cfg.depth == 0 {
            return Err(Error::InvalidConfig {
                what: "policy config",
                detail: format!(
                    "num_layers, num_options, width and depth must be positive: {cfg:?}"
                ),
            });
        }
        if cfg.input_size == Some(0) {
            return Err(Error::InvalidConfig {
                what: "policy input size",
                detail: "must be positive".into(),
            });
        }
        let mut b = Builder::new(store);
        let mut stages = Vec::with_capacity(cfg.depth);
        let mut c_in = cfg.in_chans;
        for i in 0..cfg.depth {
            let c_out = cfg.width << i;
            let conv = ConvConfig {
                stride: if i == 0 { 1 } else { 2 },
                quantized: false,
                ..Default::default()
            };
            stages.push(ConvNormAct::new(
                c_in,
                c_out,
                3,
                conv,
                true,
                false,
                &mut b,
                &format!("stages.{i}"),
            )?);
            c_in = c_out;
        }
        let out = cfg.num_layers * cfg.num_options;
        let head = Linear::new(
            c_in,
            out,
            Init::Normal { std: 0.01 },
            Init::Zeros,
            false,
            &mut b,
            "head",
        )?;
        Ok(Self {
            cfg: cfg.clone(),
            stages,
            head,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    /// Bit-width logits. xs: `[N, in_chans, H, W]` -> `[N, L, K]`.
    pub fn forward(&self, xs: &Tensor, bn: BnMode) -> Result<Tensor> {
        let (n, _, h, w) = xs.dims4()?;
        let mut ys = match self.cfg.input_size {
            Some(s) if (h, w) != (s, s) => xs.upsample_bilinear2d(s, s, false)?,
            _ => xs.clone(),
        };
        let plan = QuantPlan::full_precision();
        let mut taps = Taps::new(&plan, bn, None, n, 0)?;
        for stage in &self.stages {
            ys = stage.forward(&ys, &mut taps)?;
        }
        let pooled = ops::global_avg_pool(&ys)?;
        let logits = self.head.forward(&pooled, &mut taps)?;
        Ok(logits.reshape((n, self.cfg.num_layers, self.cfg.num_options))?)
    }
}
