//! ResNet (timm `resnet.py`): ImageNet ResNet18/34/50 and small CPU-sized variants with
//! the same module names (`conv1`, `bn1`, `layer{s}.{b}.conv1`, `downsample.0/1`, `fc`).

use candle_core::Tensor;

use crate::classifier::Classifier;
use crate::error::{Error, Result};
use crate::layers::{BatchNorm2d, Builder, Conv2d, ConvConfig, Linear};
use crate::ops;
use crate::param::{Init, ParamStore};
use crate::plan::{ActivationCapture, BnMode, QuantPlan, Taps};

/// The residual block of a ResNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3x3 convs (expansion 1): ResNet18/34.
    Basic,
    /// 1x1, 3x3 (strided), 1x1 (expansion 4): ResNet50.
    Bottleneck,
}

impl BlockKind {
    /// Output channels per unit of stage width.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// The stem: what happens to the image before `layer1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stem {
    /// 7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool (ImageNet, 224 px).
    ImageNet,
    /// 3x3 stride-1 conv, BN, ReLU, no pool (28-64 px inputs).
    Small,
}

/// A ResNet family member (timm style: block + layers + widths).
#[derive(Clone, Debug, PartialEq)]
pub struct ResNetConfig {
    /// Residual block. Default [`BlockKind::Basic`].
    pub block: BlockKind,
    /// Blocks per stage. Default `[2, 2, 2, 2]` (ResNet18).
    pub layers: Vec<usize>,
    /// Base width of each stage (output = width * expansion). Default `[64, 128, 256, 512]`.
    pub widths: Vec<usize>,
    /// Stem type. Default [`Stem::ImageNet`].
    pub stem: Stem,
    /// Stem output channels. Default 64.
    pub stem_width: usize,
    /// Image channels. Default 3.
    pub in_chans: usize,
    /// Start the last BN of every residual branch at zero (timm's default). Default true.
    pub zero_init_last: bool,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        Self::resnet18()
    }
}

impl ResNetConfig {
    /// timm `resnet18`: BasicBlock, (2, 2, 2, 2).
    pub fn resnet18() -> Self {
        Self {
            block: BlockKind::Basic,
            layers: vec![2, 2, 2, 2],
            widths: vec![64, 128, 256, 512],
            stem: Stem::ImageNet,
            stem_width: 64,
            in_chans: 3,
            zero_init_last: true,
        }
    }

    /// timm `resnet34`: BasicBlock, (3, 4, 6, 3).
    pub fn resnet34() -> Self {
        Self {
            layers: vec![3, 4, 6, 3],
            ..Self::resnet18()
        }
    }

    /// timm `resnet50`: Bottleneck, (3, 4, 6, 3).
    pub fn resnet50() -> Self {
        Self {
            block: BlockKind::Bottleneck,
            layers: vec![3, 4, 6, 3],
            ..Self::resnet18()
        }
    }

    /// `resnet_tiny`: 3 stages of one BasicBlock, widths 16/32/64, 3x3 stem, L = 9 (the
    /// network of the paper's PyTorch prototype on 28 px Fashion-MNIST).
    pub fn resnet_tiny() -> Self {
        Self {
            block: BlockKind::Basic,
            layers: vec![1, 1, 1],
            widths: vec![16, 32, 64],
            stem: Stem::Small,
            stem_width: 16,
            in_chans: 3,
            zero_init_last: true,
        }
    }

    /// `resnet_small`: 4 stages of one BasicBlock, widths 16..128, 3x3 stem, L = 12.
    pub fn resnet_small() -> Self {
        Self {
            layers: vec![1, 1, 1, 1],
            widths: vec![16, 32, 64, 128],
            ..Self::resnet_tiny()
        }
    }

    /// `resnet_tiny_wide`: a teacher for the small runs, 3 stages of two BasicBlocks,
    /// widths 32/64/128, 3x3 stem, L = 15.
    pub fn resnet_tiny_wide() -> Self {
        Self {
            layers: vec![2, 2, 2],
            widths: vec![32, 64, 128],
            stem_width: 32,
            ..Self::resnet_tiny()
        }
    }

    fn validate(&self) -> Result<()> {
        if self.layers.is_empty()
            || self.layers.len() != self.widths.len()
            || self.layers.contains(&0)
        {
            return Err(Error::InvalidConfig {
                what: "resnet stages",
                detail: format!(
                    "layers {:?} and widths {:?} must be non-empty, equal length, no zero",
                    self.layers, self.widths
                ),
            });
        }
        Ok(())
    }
}

/// `downsample.0` (1x1 strided conv) and `downsample.1` (BN) of a block's shortcut.
#[derive(Clone, Debug)]
pub struct Downsample {
    /// `{block}.downsample.0`.
    pub conv: Conv2d,
    /// `{block}.downsample.1`.
    pub bn: BatchNorm2d,
}

impl Downsample {
    fn forward(&self, xs: &Tensor, taps: &mut Taps<'_, '_>) -> Result<Tensor> {
        let ys = self.conv.forward(xs, taps)?;
        self.bn.forward(&ys, taps.bn)
    }
}

/// A residual block: `relu(branch(x) + shortcut(x))`.
#[derive(Clone, Debug)]
pub struct ResBlock {
    /// `conv1`: 3x3 (stride) for Basic, 1x1 for Bottleneck.
    pub conv1: Conv2d,
    /// `bn1`.
    pub bn1: BatchNorm2d,
    /// `conv2`: 3x3 (stride for Bottleneck).
    pub conv2: Conv2d,
    /// `bn2`.
    pub bn2: BatchNorm2d,
    /// `conv3` + `bn3` (Bottleneck only).
    pub conv3: Option<(Conv2d, BatchNorm2d)>,
    /// The projection shortcut when shape changes.
    pub downsample: Option<Downsample>,
}

impl ResBlock {
    fn new(
        kind: BlockKind,
        c_in: usize,
        width: usize,
        stride: usize,
        zero_init_last: bool,
        b: &mut Builder<'_>,
        name: &str,
    ) -> Result<Self> {
        let c_out = width * kind.expansion();
        let init = |k: usize, c: usize| {
            Some(Init::Normal {
                std: (2.0 / (k * k * c) as f64).sqrt(),
            })
        };
        let cfg = |k: usize, c: usize, stride: usize| ConvConfig {
            stride,
            padding: Some(k / 2),
            init: init(k, c),
            ..Default::default()
        };
        // Created in execution order: conv1, conv2, (conv3), downsample — so are the taps.
        let block = match kind {
            BlockKind::Basic => {
                let conv1 = Conv2d::new(
                    c_in,
                    width,
                    3,
                    cfg(3, width, stride),
                    b,
                    &format!("{name}.conv1"),
                )?;
                let bn1 = BatchNorm2d::new(width, false, b, &format!("{name}.bn1"))?;
                let conv2 = Conv2d::new(
                    width,
                    width,
                    3,
                    cfg(3, width, 1),
                    b,
                    &format!("{name}.conv2"),
                )?;
                let bn2 = BatchNorm2d::new(width, zero_init_last, b, &format!("{name}.bn2"))?;
                (conv1, bn1, conv2, bn2, None)
            }
            BlockKind::Bottleneck => {
                let conv1 = Conv2d::new(
                    c_in,
                    width,
                    1,
                    cfg(1, width, 1),
                    b,
                    &format!("{name}.conv1"),
                )?;
                let bn1 = BatchNorm2d::new(width, false, b, &format!("{name}.bn1"))?;
                let conv2 = Conv2d::new(
                    width,
                    width,
                    3,
                    cfg(3, width, stride),
                    b,
                    &format!("{name}.conv2"),
                )?;
                let bn2 = BatchNorm2d::new(width, false, b, &format!("{name}.bn2"))?;
                let conv3 = Conv2d::new(
                    width,
                    c_out,
                    1,
                    cfg(1, c_out, 1),
                    b,
                    &format!("{name}.conv3"),
                )?;
                let bn3 = BatchNorm2d::new(c_out, zero_init_last, b, &format!("{name}.bn3"))?;
                (conv1, bn1, conv2, bn2, Some((conv3, bn3)))
            }
        };
        let downsample = if stride != 1 || c_in != c_out {
            let conv = Conv2d::new(
                c_in,
                c_out,
                1,
                cfg(1, c_out, stride),
                b,
                &format!("{name}.downsample.0"),
            )?;
            let bn = BatchNorm2d::new(c_out, false, b, &format!("{name}.downsample.1"))?;
            Some(Downsample { conv, bn })
        } else {
            None
        };
        let (conv1, bn1, conv2, bn2, conv3) = block;
        Ok(Self {
            conv1,
            bn1,
            conv2,
            bn2,
            conv3,
            downsample,
        })
    }

    /// xs: `[N, c_in, H, W]` -> `[N, c_out, H / stride, W / stride]`.
    pub fn forward(&self, xs: &Tensor, taps: &mut Taps<'_, '_>) -> Result<Tensor> {
        let bn = taps.bn;
        let ys = ops::relu(&self.bn1.forward(&self.conv1.forward(xs, taps)?, bn)?)?;
        let mut ys = self.bn2.forward(&self.conv2.forward(&ys, taps)?, bn)?;
        if let Some((conv3, bn3)) = &self.conv3 {
            ys = bn3.forward(&conv3.forward(&ops::relu(&ys)?, taps)?, bn)?;
        }
        let shortcut = match &self.downsample {
            Some(d) => d.forward(xs, taps)?,
            None => xs.clone(),
        };
        Ok(ops::relu(&(ys + shortcut)?)?)
    }
}

/// A ResNet classifier.
#[derive(Clone, Debug)]
pub struct ResNet {
    arch: String,
    num_classes: usize,
    /// Stem convolution (`conv1`, never quantized at its input).
    pub conv1: Conv2d,
    /// Stem norm (`bn1`).
    pub bn1: BatchNorm2d,
    /// Whether the stem ends with the 3x3 stride-2 max-pool.
    pub max_pool: bool,
    /// Stages `layer1..`, each a list of blocks.
    pub stages: Vec<Vec<ResBlock>>,
    /// Classifier (`fc`).
    pub fc: Linear,
    quant_layers: Vec<String>,
}

impl ResNet {
    /// Builds `cfg` with `num_classes` outputs on `store` (creating missing tensors).
    pub fn new(
        arch: &str,
        cfg: &ResNetConfig,
        num_classes: usize,
        store: &ParamStore,
    ) -> Result<Self> {
        cfg.validate()?;
        let mut b = Builder::new(store);
        let (k, stride) = match cfg.stem {
            Stem::ImageNet => (7, 2),
            Stem::Small => (3, 1),
        };
        let stem_cfg = ConvConfig {
            stride,
            padding: Some(k / 2),
            quantized: false,
            init: Some(Init::Normal {
                std: (2.0 / (k * k * cfg.stem_width) as f64).sqrt(),
            }),
            ..Default::default()
        };
        let conv1 = Conv2d::new(cfg.in_chans, cfg.stem_width, k, stem_cfg, &mut b, "conv1")?;
        let bn1 = BatchNorm2d::new(cfg.stem_width, false, &mut b, "bn1")?;
        let mut c_in = cfg.stem_width;
        let mut stages = Vec::with_capacity(cfg.layers.len());
        for (s, (&depth, &width)) in cfg.layers.iter().zip(&cfg.widths).enumerate() {
            let mut blocks = Vec::with_capacity(depth);
            for i in 0..depth {
                let stride = if s > 0 && i == 0 { 2 } else { 1 };
                let name = format!("layer{}.{i}", s + 1);
                blocks.push(ResBlock::new(
                    cfg.block,
                    c_in,
                    width,
                    stride,
                    cfg.zero_init_last,
                    &mut b,
                    &name,
                )?);
                c_in = width * cfg.block.expansion();
            }
            stages.push(blocks);
        }
        // PyTorch's nn.Linear default: U(+-1/sqrt(in)) for weight and bias.
        let bound = 1.0 / (c_in as f64).sqrt();
        let fc = Linear::new(
            c_in,
            num_classes,
            Init::Uniform { bound },
            Init::Uniform { bound },
            true,
            &mut b,
            "fc",
        )?;
        Ok(Self {
            arch: arch.to_string(),
            num_classes,
            conv1,
            bn1,
            max_pool: cfg.stem == Stem::ImageNet,
            stages,
            fc,
            quant_layers: b.into_taps(),
        })
    }
}

impl Classifier for ResNet {
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
        let mut ys = ops::relu(&self.bn1.forward(&self.conv1.forward(xs, &mut taps)?, bn)?)?;
        if self.max_pool {
            ys = ops::max_pool2d(&ys, 3, 2, 1)?;
        }
        for block in self.stages.iter().flatten() {
            ys = block.forward(&ys, &mut taps)?;
        }
        let pooled = ops::global_avg_pool(&ys)?;
        self.fc.forward(&pooled, &mut taps)
    }
}
