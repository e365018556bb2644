//! MobileNetV4 conv models (timm `mobilenetv3.py` + `_efficientnet_blocks.py`): stem
//! `conv_stem`/`bn1`, stages of ConvBnAct (`cn`), EdgeResidual / FusedIB (`er`) and
//! Universal Inverted Residual (`uir`) blocks named `blocks.{stage}.{block}`, and the
//! post-pooling head `conv_head`, `norm_head`, `classifier`.
//!
//! Architectures are written in timm's block-string notation, e.g. `uir_r1_a3_k5_s2_e4_c80`:
//! type, repeats `r`, start depthwise kernel `a` (0: none), middle depthwise kernel `k`
//! (0: none; for `er`/`cn` the conv kernel), stride `s`, expansion `e`, output channels `c`.

use candle_core::Tensor;

use crate::classifier::Classifier;
use crate::error::{Error, Result};
use crate::layers::{BatchNorm2d, Builder, Conv2d, ConvConfig, ConvNormAct, Linear};
use crate::ops;
use crate::param::{Init, ParamStore};
use crate::plan::{ActivationCapture, BnMode, QuantPlan, Taps};

/// timm's `make_divisible(v, divisor, round_limit=0.9)`: the multiple of `divisor` nearest
/// to `v` (at least `divisor`), bumped up one step if that lost more than 10 %.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = (((v + d / 2.0) as usize) / divisor * divisor).max(divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

/// The kind of a MobileNetV4 block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockType {
    /// `cn`: ConvBnAct, a k x k conv + BN + ReLU (`conv`, `bn1`).
    ConvBnAct,
    /// `er`: EdgeResidual / FusedIB, k x k expansion conv + 1x1 projection (`conv_exp`,
    /// `bn1`, `conv_pwl`, `bn2`).
    EdgeResidual,
    /// `uir`: Universal Inverted Residual (`dw_start`, `pw_exp`, `dw_mid`, `pw_proj`).
    UniversalInvertedResidual,
}

/// One decoded block string (before repeats are expanded).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockSpec {
    /// Block type.
    pub kind: BlockType,
    /// How many times the block repeats (only the first one strides).
    pub repeats: usize,
    /// `a`: start depthwise kernel of a UIR (0: none).
    pub start_kernel: usize,
    /// `k`: middle depthwise kernel of a UIR (0: none), or the conv kernel of `er`/`cn`.
    pub kernel: usize,
    /// `s`: stride.
    pub stride: usize,
    /// `e`: expansion ratio (1.0 when absent).
    pub exp_ratio: f64,
    /// `c`: output channels.
    pub out_chs: usize,
}

impl BlockSpec {
    /// Decodes timm's block string (`er_r1_k3_s2_e4_c48`); errors name the string.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |detail: String| Error::InvalidConfig {
            what: "mobilenetv4 block string",
            detail: format!("{s:?}: {detail}"),
        };
        let mut parts = s.split('_');
        let kind = match parts.next() {
            Some("cn") => BlockType::ConvBnAct,
            Some("er") => BlockType::EdgeResidual,
            Some("uir") => BlockType::UniversalInvertedResidual,
            other => {
                return Err(bad(format!(
                    "unsupported block type {other:?} (known: cn, er, uir)"
                )));
            }
        };
        let mut spec = BlockSpec {
            kind,
            repeats: 0,
            start_kernel: 0,
            kernel: 0,
            stride: 0,
            exp_ratio: 1.0,
            out_chs: 0,
        };
        for op in parts {
            let split = op
                .find(|c: char| c.is_ascii_digit())
                .ok_or_else(|| bad(format!("option {op:?} has no value")))?;
            let (key, value) = op.split_at(split);
            let int = || {
                value
                    .parse::<usize>()
                    .map_err(|_| bad(format!("option {op:?} is not an integer")))
            };
            match key {
                "r" => spec.repeats = int()?,
                "a" => spec.start_kernel = int()?,
                "k" => spec.kernel = int()?,
                "s" => spec.stride = int()?,
                "c" => spec.out_chs = int()?,
                "e" => {
                    spec.exp_ratio = value
                        .parse()
                        .map_err(|_| bad(format!("option {op:?} is not a number")))?
                }
                _ => return Err(bad(format!("unsupported option {op:?}"))),
            }
        }
        if spec.repeats == 0 || spec.stride == 0 || spec.out_chs == 0 {
            return Err(bad("needs r, s and c".into()));
        }
        if spec.kind != BlockType::UniversalInvertedResidual && spec.kernel == 0 {
            return Err(bad("needs a kernel k".into()));
        }
        if spec.kind == BlockType::UniversalInvertedResidual
            && spec.stride > 1
            && spec.start_kernel == 0
            && spec.kernel == 0
        {
            return Err(bad("a strided block needs a depthwise kernel".into()));
        }
        Ok(spec)
    }
}

/// A MobileNetV4 conv model (timm `_gen_mobilenet_v4`, non-hybrid).
#[derive(Clone, Debug, PartialEq)]
pub struct MobileNetV4Config {
    /// Stem channels (3x3 stride-2 conv). Default 32.
    pub stem_size: usize,
    /// Stages of block strings. Default: `mobilenetv4_conv_medium`'s.
    pub stages: Vec<Vec<String>>,
    /// Channels of `conv_head`. Default 1280.
    pub num_features: usize,
    /// Image channels. Default 3.
    pub in_chans: usize,
}

impl Default for MobileNetV4Config {
    fn default() -> Self {
        Self::conv_medium()
    }
}

fn stages(defs: &[&[&str]]) -> Vec<Vec<String>> {
    defs.iter()
        .map(|s| s.iter().map(|b| b.to_string()).collect())
        .collect()
}

impl MobileNetV4Config {
    /// timm `mobilenetv4_conv_small`.
    pub fn conv_small() -> Self {
        Self {
            stem_size: 32,
            stages: stages(&[
                &["cn_r1_k3_s2_e1_c32", "cn_r1_k1_s1_e1_c32"],
                &["cn_r1_k3_s2_e1_c96", "cn_r1_k1_s1_e1_c64"],
                &[
                    "uir_r1_a5_k5_s2_e3_c96",
                    "uir_r4_a0_k3_s1_e2_c96",
                    "uir_r1_a3_k0_s1_e4_c96",
                ],
                &[
                    "uir_r1_a3_k3_s2_e6_c128",
                    "uir_r1_a5_k5_s1_e4_c128",
                    "uir_r1_a0_k5_s1_e4_c128",
                    "uir_r1_a0_k5_s1_e3_c128",
                    "uir_r2_a0_k3_s1_e4_c128",
                ],
                &["cn_r1_k1_s1_c960"],
            ]),
            num_features: 1280,
            in_chans: 3,
        }
    }

    /// timm `mobilenetv4_conv_medium`, the paper's MobileNetV4.
    pub fn conv_medium() -> Self {
        Self {
            stem_size: 32,
            stages: stages(&[
                &["er_r1_k3_s2_e4_c48"],
                &["uir_r1_a3_k5_s2_e4_c80", "uir_r1_a3_k3_s1_e2_c80"],
                &[
                    "uir_r1_a3_k5_s2_e6_c160",
                    "uir_r2_a3_k3_s1_e4_c160",
                    "uir_r1_a3_k5_s1_e4_c160",
                    "uir_r1_a3_k3_s1_e4_c160",
                    "uir_r1_a3_k0_s1_e4_c160",
                    "uir_r1_a0_k0_s1_e2_c160",
                    "uir_r1_a3_k0_s1_e4_c160",
                ],
                &[
                    "uir_r1_a5_k5_s2_e6_c256",
                    "uir_r1_a5_k5_s1_e4_c256",
                    "uir_r2_a3_k5_s1_e4_c256",
                    "uir_r1_a0_k0_s1_e4_c256",
                    "uir_r1_a3_k0_s1_e4_c256",
                    "uir_r1_a3_k5_s1_e2_c256",
                    "uir_r1_a5_k5_s1_e4_c256",
                    "uir_r2_a0_k0_s1_e4_c256",
                    "uir_r1_a5_k0_s1_e2_c256",
                ],
                &["cn_r1_k1_s1_c960"],
            ]),
            num_features: 1280,
            in_chans: 3,
        }
    }
}

/// `cn`: conv + BN + ReLU, no skip.
#[derive(Clone, Debug)]
pub struct ConvBnAct {
    /// `{block}.conv`.
    pub conv: Conv2d,
    /// `{block}.bn1` (with ReLU).
    pub bn1: BatchNorm2d,
}

/// `er`: `bn2(conv_pwl(relu(bn1(conv_exp(x))))) (+ x)`.
#[derive(Clone, Debug)]
pub struct EdgeResidual {
    /// `{block}.conv_exp`: k x k (strided) expansion.
    pub conv_exp: Conv2d,
    /// `{block}.bn1` (with ReLU).
    pub bn1: BatchNorm2d,
    /// `{block}.conv_pwl`: 1x1 projection.
    pub conv_pwl: Conv2d,
    /// `{block}.bn2` (no activation).
    pub bn2: BatchNorm2d,
    /// Residual when shape is kept.
    pub has_skip: bool,
}

/// `uir`: optional depthwise start (BN, no act), 1x1 expansion (BN, ReLU), optional
/// depthwise middle (BN, ReLU), 1x1 projection (BN), residual when shape is kept.
#[derive(Clone, Debug)]
pub struct UniversalInvertedResidual {
    /// `{block}.dw_start`.
    pub dw_start: Option<ConvNormAct>,
    /// `{block}.pw_exp`.
    pub pw_exp: ConvNormAct,
    /// `{block}.dw_mid`.
    pub dw_mid: Option<ConvNormAct>,
    /// `{block}.pw_proj`.
    pub pw_proj: ConvNormAct,
    /// Residual when shape is kept.
    pub has_skip: bool,
}

/// One MobileNetV4 block.
// Built once per model: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum MnBlock {
    /// `cn`.
    ConvBnAct(ConvBnAct),
    /// `er`.
    EdgeResidual(EdgeResidual),
    /// `uir`.
    Uir(UniversalInvertedResidual),
}

impl MnBlock {
    fn new(
        spec: &BlockSpec,
        c_in: usize,
        c_out: usize,
        stride: usize,
        b: &mut Builder<'_>,
        name: &str,
    ) -> Result<Self> {
        Ok(match spec.kind {
            BlockType::ConvBnAct => {
                let cfg = ConvConfig {
                    stride,
                    ..Default::default()
                };
                let conv = Conv2d::new(c_in, c_out, spec.kernel, cfg, b, &format!("{name}.conv"))?;
                let bn1 = BatchNorm2d::new(c_out, false, b, &format!("{name}.bn1"))?;
                MnBlock::ConvBnAct(ConvBnAct { conv, bn1 })
            }
            BlockType::EdgeResidual => {
                let mid = make_divisible(c_in as f64 * spec.exp_ratio, 8);
                let cfg = ConvConfig {
                    stride,
                    ..Default::default()
                };
                let conv_exp =
                    Conv2d::new(c_in, mid, spec.kernel, cfg, b, &format!("{name}.conv_exp"))?;
                let bn1 = BatchNorm2d::new(mid, false, b, &format!("{name}.bn1"))?;
                let conv_pwl = Conv2d::new(
                    mid,
                    c_out,
                    1,
                    ConvConfig::default(),
                    b,
                    &format!("{name}.conv_pwl"),
                )?;
                let bn2 = BatchNorm2d::new(c_out, false, b, &format!("{name}.bn2"))?;
                MnBlock::EdgeResidual(EdgeResidual {
                    conv_exp,
                    bn1,
                    conv_pwl,
                    bn2,
                    has_skip: c_in == c_out && stride == 1,
                })
            }
            BlockType::UniversalInvertedResidual => {
                let dw_start = if spec.start_kernel > 0 {
                    let s = if spec.kernel > 0 { 1 } else { stride };
                    let cfg = ConvConfig {
                        stride: s,
                        groups: c_in,
                        ..Default::default()
                    };
                    Some(ConvNormAct::new(
                        c_in,
                        c_in,
                        spec.start_kernel,
                        cfg,
                        false,
                        false,
                        b,
                        &format!("{name}.dw_start"),
                    )?)
                } else {
                    None
                };
                let mid = make_divisible(c_in as f64 * spec.exp_ratio, 8);
                let pw_exp = ConvNormAct::new(
                    c_in,
                    mid,
                    1,
                    ConvConfig::default(),
                    true,
                    false,
                    b,
                    &format!("{name}.pw_exp"),
                )?;
                let dw_mid = if spec.kernel > 0 {
                    let cfg = ConvConfig {
                        stride,
                        groups: mid,
                        ..Default::default()
                    };
                    Some(ConvNormAct::new(
                        mid,
                        mid,
                        spec.kernel,
                        cfg,
                        true,
                        false,
                        b,
                        &format!("{name}.dw_mid"),
                    )?)
                } else {
                    None
                };
                let pw_proj = ConvNormAct::new(
                    mid,
                    c_out,
                    1,
                    ConvConfig::default(),
                    false,
                    false,
                    b,
                    &format!("{name}.pw_proj"),
                )?;
                MnBlock::Uir(UniversalInvertedResidual {
                    dw_start,
                    pw_exp,
                    dw_mid,
                    pw_proj,
                    has_skip: c_in == c_out && stride == 1,
                })
            }
        })
    }

    /// xs: `[N, c_in, H, W]` -> `[N, c_out, H / stride, W / stride]`.
    pub fn forward(&self, xs: &Tensor, taps: &mut Taps<'_, '_>) -> Result<Tensor> {
        let bn = taps.bn;
        match self {
            MnBlock::ConvBnAct(m) => {
                Ok(ops::relu(&m.bn1.forward(&m.conv.forward(xs, taps)?, bn)?)?)
            }
            MnBlock::EdgeResidual(m) => {
                let ys = ops::relu(&m.bn1.forward(&m.conv_exp.forward(xs, taps)?, bn)?)?;
                let ys = m.bn2.forward(&m.conv_pwl.forward(&ys, taps)?, bn)?;
                if m.has_skip { Ok((ys + xs)?) } else { Ok(ys) }
            }
            MnBlock::Uir(m) => {
                let mut ys = match &m.dw_start {
                    Some(dw) => dw.forward(xs, taps)?,
                    None => xs.clone(),
                };
                ys = m.pw_exp.forward(&ys, taps)?;
                if let Some(dw) = &m.dw_mid {
                    ys = dw.forward(&ys, taps)?;
                }
                ys = m.pw_proj.forward(&ys, taps)?;
                if m.has_skip { Ok((ys + xs)?) } else { Ok(ys) }
            }
        }
    }
}

/// A MobileNetV4 conv classifier.
#[derive(Clone, Debug)]
pub struct MobileNetV4 {
    arch: String,
    num_classes: usize,
    /// `conv_stem`: 3x3 stride 2 (input not quantized).
    pub conv_stem: Conv2d,
    /// `bn1` (with ReLU).
    pub bn1: BatchNorm2d,
    /// `blocks.{stage}.{block}`.
    pub blocks: Vec<Vec<MnBlock>>,
    /// `conv_head`: 1x1 after global pooling, no bias.
    pub conv_head: Conv2d,
    /// `norm_head` (with ReLU).
    pub norm_head: BatchNorm2d,
    /// `classifier`.
    pub classifier: Linear,
    quant_layers: Vec<String>,
}

impl MobileNetV4 {
    /// Builds `cfg` with `num_classes` outputs on `store`.
    pub fn new(
        arch: &str,
        cfg: &MobileNetV4Config,
        num_classes: usize,
        store: &ParamStore,
    ) -> Result<Self> {
        let mut b = Builder::new(store);
        let stem_size = make_divisible(cfg.stem_size as f64, 8);
        let stem_cfg = ConvConfig {
            stride: 2,
            quantized: false,
            ..Default::default()
        };
        let conv_stem = Conv2d::new(cfg.in_chans, stem_size, 3, stem_cfg, &mut b, "conv_stem")?;
        let bn1 = BatchNorm2d::new(stem_size, false, &mut b, "bn1")?;
        let mut c_in = stem_size;
        let mut blocks = Vec::with_capacity(cfg.stages.len());
        for (s, stage) in cfg.stages.iter().enumerate() {
            let mut stage_blocks = Vec::new();
            for block_str in stage {
                let spec = BlockSpec::parse(block_str)?;
                let c_out = make_divisible(spec.out_chs as f64, 8);
                for r in 0..spec.repeats {
                    let stride = if r == 0 { spec.stride } else { 1 };
                    let name = format!("blocks.{s}.{}", stage_blocks.len());
                    stage_blocks.push(MnBlock::new(&spec, c_in, c_out, stride, &mut b, &name)?);
                    c_in = c_out;
                }
            }
            blocks.push(stage_blocks);
        }
        let conv_head = Conv2d::new(
            c_in,
            cfg.num_features,
            1,
            ConvConfig::default(),
            &mut b,
            "conv_head",
        )?;
        let norm_head = BatchNorm2d::new(cfg.num_features, false, &mut b, "norm_head")?;
        // timm's _init_weight_goog: U(+-1/sqrt(fan_out)) for the weight, zero bias.
        let bound = 1.0 / (num_classes as f64).sqrt();
        let classifier = Linear::new(
            cfg.num_features,
            num_classes,
            Init::Uniform { bound },
            Init::Zeros,
            true,
            &mut b,
            "classifier",
        )?;
        Ok(Self {
            arch: arch.to_string(),
            num_classes,
            conv_stem,
            bn1,
            blocks,
            conv_head,
            norm_head,
            classifier,
            quant_layers: b.into_taps(),
        })
    }
}

impl Classifier for MobileNetV4 {
    fn arch(&self) -> &str {
        &self.arch
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn quant_layers(&self) -> &[String] {
        &self.quant_layers
    }

    /// xs: `[N, in_chans, H, W]` -> logits `[N, num_classes]`.
    fn forward(
        &self,
        xs: &Tensor,
        plan: &QuantPlan<'_>,
        bn: BnMode,
        capture: Option<&mut ActivationCapture>,
    ) -> Result<Tensor> {
        let mut taps = Taps::new(plan, bn, capture, xs.dim(0)?, self.quant_layers.len())?;
        let mut ys = ops::relu(
            &self
                .bn1
                .forward(&self.conv_stem.forward(xs, &mut taps)?, bn)?,
        )?;
        for block in self.blocks.iter().flatten() {
            ys = block.forward(&ys, &mut taps)?;
        }
        let (n, c) = (ys.dim(0)?, ys.dim(1)?);
        let pooled = ops::global_avg_pool(&ys)?.reshape((n, c, 1, 1))?;
        let head = self.conv_head.forward(&pooled, &mut taps)?;
        let head = ops::relu(&self.norm_head.forward(&head, bn)?)?;
        let features = head.reshape((n, head.dim(1)?))?;
        self.classifier.forward(&features, &mut taps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_matches_timm() {
        // timm.layers.make_divisible
        assert_eq!(make_divisible(32.0 * 4.0, 8), 128);
        assert_eq!(make_divisible(48.0 * 4.0, 8), 192);
        assert_eq!(make_divisible(4.0, 8), 8);
        assert_eq!(make_divisible(13.0, 8), 16);
        assert_eq!(make_divisible(20.0, 8), 24);
        assert_eq!(make_divisible(19.0, 8), 24);
        assert_eq!(make_divisible(11.0, 8), 16); // 8 < 0.9 * 11 -> bumped
        assert_eq!(make_divisible(96.0 * 3.0, 8), 288);
    }

    #[test]
    fn block_strings_decode_like_timm() -> Result<()> {
        let s = BlockSpec::parse("uir_r2_a3_k5_s1_e4_c256")?;
        assert_eq!(
            s,
            BlockSpec {
                kind: BlockType::UniversalInvertedResidual,
                repeats: 2,
                start_kernel: 3,
                kernel: 5,
                stride: 1,
                exp_ratio: 4.0,
                out_chs: 256
            }
        );
        let er = BlockSpec::parse("er_r1_k3_s2_e4_c48")?;
        assert_eq!(
            (er.kind, er.kernel, er.stride, er.exp_ratio),
            (BlockType::EdgeResidual, 3, 2, 4.0)
        );
        let cn = BlockSpec::parse("cn_r1_k1_s1_c960")?;
        assert_eq!(
            (cn.kind, cn.exp_ratio, cn.out_chs),
            (BlockType::ConvBnAct, 1.0, 960)
        );
        Ok(())
    }

    #[test]
    fn unsupported_block_strings_are_errors_naming_them() {
        for bad in [
            "mqa_r1_k3_h4_s1_d64_c256",
            "uir_r1_a3_k5_s2",
            "uir_r1_q3_s1_c8",
            "cn_r1_s1_c8",
        ] {
            let err = BlockSpec::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
