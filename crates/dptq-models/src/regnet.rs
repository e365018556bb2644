//! RegNetX (timm `regnet.py`): a quantized linear width rule, four stages of grouped
//! bottleneck blocks, names `stem.conv`, `s{i}.b{j}.conv{1,2,3}.conv`, `downsample.conv`,
//! `head.fc`.

use candle_core::Tensor;

use crate::classifier::Classifier;
use crate::error::{Error, Result};
use crate::layers::{Builder, ConvConfig, ConvNormAct, Linear};
use crate::ops;
use crate::param::{Init, ParamStore};
use crate::plan::{ActivationCapture, BnMode, QuantPlan, Taps};

/// A RegNetX design (timm's `RegNetCfg` without SE, pre-activation or dilation).
#[derive(Clone, Debug, PartialEq)]
pub struct RegNetConfig {
    /// Total number of blocks. Default 18 (RegNetX-1.6GF).
    pub depth: usize,
    /// Initial width `w0`. Default 80.
    pub w0: usize,
    /// Width slope `wa`. Default 34.01.
    pub wa: f64,
    /// Width multiplier `wm` (> 1). Default 2.25.
    pub wm: f64,
    /// Channels per group of the 3x3 convs. Default 24.
    pub group_size: usize,
    /// Bottleneck ratio. Default 1.0.
    pub bottle_ratio: f64,
    /// Stem output channels. Default 32.
    pub stem_width: usize,
    /// Image channels. Default 3.
    pub in_chans: usize,
    /// Start `conv3.bn` of every block at zero (timm's default). Default true.
    pub zero_init_last: bool,
}

impl Default for RegNetConfig {
    fn default() -> Self {
        Self::regnetx_016()
    }
}

impl RegNetConfig {
    fn x(w0: usize, wa: f64, wm: f64, group_size: usize, depth: usize) -> Self {
        Self {
            depth,
            w0,
            wa,
            wm,
            group_size,
            bottle_ratio: 1.0,
            stem_width: 32,
            in_chans: 3,
            zero_init_last: true,
        }
    }

    /// timm `regnetx_002` (200 MF).
    pub fn regnetx_002() -> Self {
        Self::x(24, 36.44, 2.49, 8, 13)
    }

    /// timm `regnetx_004` (400 MF).
    pub fn regnetx_004() -> Self {
        Self::x(24, 24.48, 2.54, 16, 22)
    }

    /// timm `regnetx_008` (800 MF).
    pub fn regnetx_008() -> Self {
        Self::x(56, 35.73, 2.28, 16, 16)
    }

    /// timm `regnetx_016` (1.6 GF), the paper's RegNetX.
    pub fn regnetx_016() -> Self {
        Self::x(80, 34.01, 2.25, 24, 18)
    }

    /// timm `regnetx_032` (3.2 GF).
    pub fn regnetx_032() -> Self {
        Self::x(88, 26.31, 2.25, 48, 25)
    }

    /// The four stages this design generates.
    pub fn stages(&self) -> Result<Vec<RegStage>> {
        if !(self.wa >= 0.0
            && self.w0 > 0
            && self.wm > 1.0
            && self.w0.is_multiple_of(8)
            && self.depth > 0)
        {
            return Err(Error::InvalidConfig {
                what: "regnet config",
                detail: format!(
                    "need wa >= 0, w0 > 0 divisible by 8, wm > 1, depth > 0; got {self:?}"
                ),
            });
        }
        let widths = generate_regnet(self.wa, self.w0, self.wm, self.depth, 8);
        // Blocks of equal width form a stage (widths never decrease).
        let mut stage_widths: Vec<usize> = Vec::new();
        let mut depths: Vec<usize> = Vec::new();
        for w in widths {
            if stage_widths.last() == Some(&w) {
                *depths.last_mut().expect("a stage exists") += 1;
            } else {
                stage_widths.push(w);
                depths.push(1);
            }
        }
        if stage_widths.len() != 4 {
            return Err(Error::InvalidConfig {
                what: "regnet config",
                detail: format!(
                    "generates {} stages ({stage_widths:?}), RegNet needs 4",
                    stage_widths.len()
                ),
            });
        }
        let ratios = vec![self.bottle_ratio; 4];
        let (widths, groups) =
            adjust_widths_groups_comp(&stage_widths, &ratios, &[self.group_size; 4]);
        Ok(widths
            .into_iter()
            .zip(groups)
            .zip(depths)
            .map(|((width, group_size), depth)| RegStage {
                width,
                depth,
                stride: 2,
                group_size,
            })
            .collect())
    }
}

/// One generated stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegStage {
    /// Output channels of every block.
    pub width: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Stride of the first block.
    pub stride: usize,
    /// Channels per group of the 3x3 convs.
    pub group_size: usize,
}

/// timm's `quantize_float`: the multiple of `q` nearest to `f` (ties to even, as Python's
/// `round`).
pub fn quantize_float(f: f64, q: usize) -> usize {
    ((f / q as f64).round_ties_even() * q as f64) as usize
}

/// timm's `generate_regnet`: per-block widths `round(w0 * wm^round(log(u_j / w0) / log wm) / q) * q`
/// with `u_j = w0 + wa * j`, computed in f32 like timm's torch code.
pub fn generate_regnet(wa: f64, w0: usize, wm: f64, depth: usize, quant: usize) -> Vec<usize> {
    let (wa, w0f, wm) = (wa as f32, w0 as f32, wm as f32);
    let log_wm = (wm as f64).ln() as f32;
    (0..depth)
        .map(|j| {
            let cont = j as f32 * wa + w0f;
            let exp = ((cont / w0f).ln() / log_wm).round_ties_even();
            let w = (w0f * wm.powf(exp) / quant as f32).round_ties_even() * quant as f32;
            w as usize
        })
        .collect()
}

/// timm's `adjust_widths_groups_comp`: group sizes no larger than the bottleneck width and
/// bottleneck widths a multiple of the group size.
pub fn adjust_widths_groups_comp(
    widths: &[usize],
    bottle_ratios: &[f64],
    groups: &[usize],
) -> (Vec<usize>, Vec<usize>) {
    let bottleneck: Vec<usize> = widths
        .iter()
        .zip(bottle_ratios)
        .map(|(&w, &b)| (w as f64 * b) as usize)
        .collect();
    let groups: Vec<usize> = groups
        .iter()
        .zip(&bottleneck)
        .map(|(&g, &w)| g.min(w))
        .collect();
    let bottleneck: Vec<usize> = bottleneck
        .iter()
        .zip(&groups)
        .map(|(&w, &g)| quantize_float(w as f64, g))
        .collect();
    let widths = bottleneck
        .iter()
        .zip(bottle_ratios)
        .map(|(&w, &b)| (w as f64 / b) as usize)
        .collect();
    (widths, groups)
}

/// A RegNetX bottleneck: `relu(conv3(conv2(conv1(x))) + shortcut(x))`.
#[derive(Clone, Debug)]
pub struct RegBlock {
    /// 1x1, BN, ReLU.
    pub conv1: ConvNormAct,
    /// 3x3 grouped (strided), BN, ReLU.
    pub conv2: ConvNormAct,
    /// 1x1, BN.
    pub conv3: ConvNormAct,
    /// 1x1 strided conv + BN when the shape changes.
    pub downsample: Option<ConvNormAct>,
}

impl RegBlock {
    fn new(
        c_in: usize,
        c_out: usize,
        stride: usize,
        bottle_ratio: f64,
        group_size: usize,
        zero_init_last: bool,
        b: &mut Builder<'_>,
        name: &str,
    ) -> Result<Self> {
        let mid = (c_out as f64 * bottle_ratio).round() as usize;
        let groups = mid / group_size;
        let conv1 = ConvNormAct::new(
            c_in,
            mid,
            1,
            ConvConfig::default(),
            true,
            false,
            b,
            &format!("{name}.conv1"),
        )?;
        let cfg2 = ConvConfig {
            stride,
            groups,
            ..Default::default()
        };
        let conv2 = ConvNormAct::new(mid, mid, 3, cfg2, true, false, b, &format!("{name}.conv2"))?;
        let conv3 = ConvNormAct::new(
            mid,
            c_out,
            1,
            ConvConfig::default(),
            false,
            zero_init_last,
            b,
            &format!("{name}.conv3"),
        )?;
        let downsample = if c_in != c_out || stride != 1 {
            let cfg = ConvConfig {
                stride,
                ..Default::default()
            };
            Some(ConvNormAct::new(
                c_in,
                c_out,
                1,
                cfg,
                false,
                false,
                b,
                &format!("{name}.downsample"),
            )?)
        } else {
            None
        };
        Ok(Self {
            conv1,
            conv2,
            conv3,
            downsample,
        })
    }

    /// xs: `[N, c_in, H, W]` -> `[N, c_out, H / stride, W / stride]`.
    pub fn forward(&self, xs: &Tensor, taps: &mut Taps<'_, '_>) -> Result<Tensor> {
        let ys = self.conv1.forward(xs, taps)?;
        let ys = self.conv2.forward(&ys, taps)?;
        let ys = self.conv3.forward(&ys, taps)?;
        let shortcut = match &self.downsample {
            Some(d) => d.forward(xs, taps)?,
            None => xs.clone(),
        };
        Ok(ops::relu(&(ys + shortcut)?)?)
    }
}

/// A RegNetX classifier.
#[derive(Clone, Debug)]
pub struct RegNet {
    arch: String,
    num_classes: usize,
    /// `stem`: 3x3 stride-2 conv, BN, ReLU (input not quantized).
    pub stem: ConvNormAct,
    /// `s1..s4`, each a list of blocks `b1..`.
    pub stages: Vec<Vec<RegBlock>>,
    /// `head.fc`.
    pub fc: Linear,
    quant_layers: Vec<String>,
}

impl RegNet {
    /// Builds `cfg` with `num_classes` outputs on `store`.
    pub fn new(
        arch: &str,
        cfg: &RegNetConfig,
        num_classes: usize,
        store: &ParamStore,
    ) -> Result<Self> {
        let mut b = Builder::new(store);
        let stem_cfg = ConvConfig {
            stride: 2,
            quantized: false,
            ..Default::default()
        };
        let stem = ConvNormAct::new(
            cfg.in_chans,
            cfg.stem_width,
            3,
            stem_cfg,
            true,
            false,
            &mut b,
            "stem",
        )?;
        let mut c_in = cfg.stem_width;
        let mut stages = Vec::new();
        for (s, stage) in cfg.stages()?.iter().enumerate() {
            let mut blocks = Vec::with_capacity(stage.depth);
            for i in 0..stage.depth {
                let stride = if i == 0 { stage.stride } else { 1 };
                let name = format!("s{}.b{}", s + 1, i + 1);
                blocks.push(RegBlock::new(
                    c_in,
                    stage.width,
                    stride,
                    cfg.bottle_ratio,
                    stage.group_size,
                    cfg.zero_init_last,
                    &mut b,
                    &name,
                )?);
                c_in = stage.width;
            }
            stages.push(blocks);
        }
        let fc = Linear::new(
            c_in,
            num_classes,
            Init::Normal { std: 0.01 },
            Init::Zeros,
            true,
            &mut b,
            "head.fc",
        )?;
        Ok(Self {
            arch: arch.to_string(),
            num_classes,
            stem,
            stages,
            fc,
            quant_layers: b.into_taps(),
        })
    }
}

impl Classifier for RegNet {
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
        let mut ys = self.stem.forward(xs, &mut taps)?;
        for block in self.stages.iter().flatten() {
            ys = block.forward(&ys, &mut taps)?;
        }
        let pooled = ops::global_avg_pool(&ys)?;
        self.fc.forward(&pooled, &mut taps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_float_rounds_half_to_even_like_python() {
        assert_eq!(quantize_float(24.0, 16), 32); // round(1.5) = 2
        assert_eq!(quantize_float(392.0, 16), 384); // round(24.5) = 24
        assert_eq!(quantize_float(56.0, 16), 64); // round(3.5) = 4
        assert_eq!(quantize_float(80.0, 24), 72);
    }

    #[test]
    fn generated_block_widths_match_timm() {
        // Printed by timm 1.0.31: generate_regnet(cfg.wa, cfg.w0, cfg.wm, cfg.depth, cfg.group_size)[0].
        assert_eq!(
            generate_regnet(36.44, 24, 2.49, 13, 8),
            vec![
                24, 56, 152, 152, 152, 152, 368, 368, 368, 368, 368, 368, 368
            ]
        );
        assert_eq!(
            generate_regnet(34.01, 80, 2.25, 18, 8),
            vec![
                80, 80, 176, 176, 176, 176, 408, 408, 408, 408, 408, 408, 408, 408, 408, 408, 912,
                912
            ]
        );
        assert_eq!(
            generate_regnet(26.31, 88, 2.25, 25, 8),
            vec![
                88, 88, 200, 200, 200, 200, 200, 200, 448, 448, 448, 448, 448, 448, 448, 448, 448,
                448, 448, 448, 448, 448, 448, 1000, 1000
            ]
        );
    }

    #[test]
    fn stage_widths_depths_and_groups_match_timm() -> Result<()> {
        // Printed by timm 1.0.31: RegNet(cfg)._get_stage_args(cfg) -> (out_chs, depth, group_size).
        let expected: [(&str, RegNetConfig, [(usize, usize, usize); 4]); 5] = [
            (
                "002",
                RegNetConfig::regnetx_002(),
                [(24, 1, 8), (56, 1, 8), (152, 4, 8), (368, 7, 8)],
            ),
            (
                "004",
                RegNetConfig::regnetx_004(),
                [(32, 1, 16), (64, 2, 16), (160, 7, 16), (384, 12, 16)],
            ),
            (
                "008",
                RegNetConfig::regnetx_008(),
                [(64, 1, 16), (128, 3, 16), (288, 7, 16), (672, 5, 16)],
            ),
            (
                "016",
                RegNetConfig::regnetx_016(),
                [(72, 2, 24), (168, 4, 24), (408, 10, 24), (912, 2, 24)],
            ),
            (
                "032",
                RegNetConfig::regnetx_032(),
                [(96, 2, 48), (192, 6, 48), (432, 15, 48), (1008, 2, 48)],
            ),
        ];
        for (name, cfg, stages) in expected {
            let got: Vec<(usize, usize, usize)> = cfg
                .stages()?
                .iter()
                .map(|s| (s.width, s.depth, s.group_size))
                .collect();
            assert_eq!(got, stages.to_vec(), "regnetx_{name}");
        }
        Ok(())
    }

    #[test]
    fn a_design_with_the_wrong_number_of_stages_is_rejected() {
        let cfg = RegNetConfig {
            depth: 2,
            ..RegNetConfig::regnetx_016()
        };
        let err = cfg.stages().unwrap_err().to_string();
        assert!(err.contains("needs 4"), "{err}");
    }
}
