//! Corruptions for the robustness study (paper Fig. 4, SPEC §7): each has a kind and
//! a degree, degree 0 being the identity and larger degrees corrupting more. They act
//! on the evaluation-transformed image before normalisation, or (distribution shift)
//! on the normalisation itself. Random choices (signs, positions, noise) come from the
//! generator passed in, so that a seed fixes them.

use std::f32::consts::PI;
use std::fmt;
use std::str::FromStr;

use image::{Rgb, Rgb32FImage, RgbImage};
use imageproc::geometric_transformations::{Interpolation as Warp, Projection, warp};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Error, Result};
use crate::transform::Normalize;

/// The nine corruptions of Fig. 4. Degree `d` (any `d >= 0`; 0..=5 is the suggested
/// grid) maps to the parameter documented on each variant; `side` is the image side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CorruptionKind {
    /// JPEG re-encoding at quality `clamp(round(100 - 19 d), 1, 100)`.
    Jpeg,
    /// Gaussian blur with standard deviation `sigma = 0.01 d side` pixels.
    GaussianBlur,
    /// Brightness factor `max(0, 1 + s 0.1 d)`, `s = ±1` at random.
    Brightness,
    /// Contrast factor `max(0, 1 + s 0.1 d)` around the mean grey, `s = ±1` at random.
    Contrast,
    /// Random erasing: one rectangle of `min(1, 0.05 d)` of the area (aspect ratio
    /// log-uniform in [0.3, 3.3]) filled with Gaussian noise that is N(0, 1) after
    /// normalisation (torchvision `RandomErasing(value="random")`).
    RandomErasing,
    /// Additive Gaussian noise of standard deviation `0.04 d` (pixel values in [0, 1]).
    GaussianNoise,
    /// Rotation by `s 6 d` degrees about the center, bilinear, black fill.
    Rotation,
    /// Horizontal skew (shear) by `s 6 d` degrees about the center, bilinear, black fill.
    Skew,
    /// Perturbed normalisation statistics: `mean'_c = mean_c + 0.05 d u_c`,
    /// `std'_c = std_c exp(0.1 d v_c)`, `u_c, v_c = ±1` at random per channel.
    DistributionShift,
}

impl CorruptionKind {
    /// Every kind, in the paper's order.
    pub const ALL: [CorruptionKind; 9] = [
        CorruptionKind::Jpeg,
        CorruptionKind::GaussianBlur,
        CorruptionKind::Brightness,
        CorruptionKind::Contrast,
        CorruptionKind::RandomErasing,
        CorruptionKind::GaussianNoise,
        CorruptionKind::Rotation,
        CorruptionKind::Skew,
        CorruptionKind::DistributionShift,
    ];

    /// The kebab-case name (`gaussian-blur`).
    pub fn name(self) -> &'static str {
        match self {
            CorruptionKind::Jpeg => "jpeg",
            CorruptionKind::GaussianBlur => "gaussian-blur",
            CorruptionKind::Brightness => "brightness",
            CorruptionKind::Contrast => "contrast",
            CorruptionKind::RandomErasing => "random-erasing",
            CorruptionKind::GaussianNoise => "gaussian-noise",
            CorruptionKind::Rotation => "rotation",
            CorruptionKind::Skew => "skew",
            CorruptionKind::DistributionShift => "distribution-shift",
        }
    }
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CorruptionKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| Error::config("corruption kind", format!("unknown {s:?}")))
    }
}

/// One corruption at one degree.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Corruption {
    /// What it does.
    pub kind: CorruptionKind,
    /// How much: 0 is the identity.
    pub degree: f32,
}

/// A corrupted image ready for normalisation: pixels in [0, 1] and the statistics to
/// normalise them with (perturbed by `DistributionShift`, unchanged otherwise).
#[derive(Debug, Clone)]
pub struct Corrupted {
    /// Pixels in [0, 1].
    pub pixels: Rgb32FImage,
    /// The normalisation to apply.
    pub normalize: Normalize,
}

impl Corrupted {
    /// The normalised image in CHW order, `3 * H * W` values.
    pub fn to_chw(&self) -> Vec<f32> {
        let mut out = vec![0.0; 3 * (self.pixels.width() * self.pixels.height()) as usize];
        self.normalize.write_chw_f32(&self.pixels, &mut out);
        out
    }
}

fn to_f32(img: &RgbImage) -> Rgb32FImage {
    let data = img.as_raw().iter().map(|&v| v as f32 / 255.0).collect();
    Rgb32FImage::from_raw(img.width(), img.height(), data).expect("same dimensions")
}

fn sign(rng: &mut impl Rng) -> f32 {
    if rng.random_bool(0.5) { 1.0 } else { -1.0 }
}

impl Corruption {
    /// A corruption of `kind` at `degree`.
    pub fn new(kind: CorruptionKind, degree: f32) -> Result<Self> {
        if !(degree >= 0.0 && degree.is_finite()) {
            return Err(Error::config(
                "corruption degree",
                format!("{degree} for {kind} (need a finite degree >= 0)"),
            ));
        }
        Ok(Self { kind, degree })
    }

    /// Corrupts `img` (already resized and cropped); `normalize` is the clean
    /// normalisation of the model.
    pub fn apply(
        &self,
        img: &RgbImage,
        normalize: &Normalize,
        rng: &mut impl Rng,
    ) -> Result<Corrupted> {
        let d = self.degree;
        let mut normalize = *normalize;
        if d == 0.0 {
            return Ok(Corrupted {
                pixels: to_f32(img),
                normalize,
            });
        }
        let (w, h) = img.dimensions();
        let side = w.min(h) as f32;
        let pixels = match self.kind {
            CorruptionKind::Jpeg => {
                let quality = (100.0 - 19.0 * d).round().clamp(1.0, 100.0) as u8;
                let mut bytes = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
                    .encode_image(img)
                    .and_then(|_| {
                        image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
                    })
                    .map(|decoded| to_f32(&decoded.to_rgb8()))
                    .map_err(|e| Error::config("jpeg corruption", e.to_string()))?
            }
            CorruptionKind::GaussianBlur => {
                imageproc::filter::gaussian_blur_f32(&to_f32(img), 0.01 * d * side)
            }
            CorruptionKind::Brightness => {
                let factor = (1.0 + sign(rng) * 0.1 * d).max(0.0);
                let mut px = to_f32(img);
                px.iter_mut()
                    .for_each(|v| *v = (*v * factor).clamp(0.0, 1.0));
                px
            }
            CorruptionKind::Contrast => {
                let factor = (1.0 + sign(rng) * 0.1 * d).max(0.0);
                let mut px = to_f32(img);
                let n = (w * h) as f32;
                let mean = px
                    .as_raw()
                    .chunks_exact(3)
                    .map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2])
                    .sum::<f32>()
                    / n;
                px.iter_mut()
                    .for_each(|v| *v = (mean + factor * (*v - mean)).clamp(0.0, 1.0));
                px
            }
            CorruptionKind::RandomErasing => {
                let mut px = to_f32(img);
                let area = (0.05 * d).min(1.0) * (w * h) as f32;
                let log_ratio = rng.random_range(0.3f32.ln()..=3.3f32.ln());
                let ratio = log_ratio.exp();
                let ew = ((area * ratio).sqrt().round() as u32).clamp(1, w);
                let eh = ((area / ratio).sqrt().round() as u32).clamp(1, h);
                let (ux, uy): (f32, f32) = (rng.random(), rng.random());
                let left = ((ux * (w - ew + 1) as f32) as u32).min(w - ew);
                let top = ((uy * (h - eh + 1) as f32) as u32).min(h - eh);
                for y in top..top + eh {
                    for x in left..left + ew {
                        let p = px.get_pixel_mut(x, y);
                        for c in 0..3 {
                            let z: f32 = StandardNormal.sample(rng);
                            p[c] = normalize.mean[c] + normalize.std[c] * z;
                        }
                    }
                }
                px
            }
            CorruptionKind::GaussianNoise => {
                let sigma = 0.04 * d;
                let mut px = to_f32(img);
                px.iter_mut().for_each(|v| {
                    let z: f32 = StandardNormal.sample(rng);
                    *v = (*v + sigma * z).clamp(0.0, 1.0)
                });
                px
            }
            CorruptionKind::Rotation | CorruptionKind::Skew => {
                let angle = sign(rng) * 6.0 * d * PI / 180.0;
                let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
                let inner = if self.kind == CorruptionKind::Rotation {
                    Projection::rotate(angle)
                } else {
                    Projection::from_matrix([1.0, angle.tan(), 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
                        .ok_or_else(|| Error::config("skew", format!("degree {d}")))?
                };
                let p = Projection::translate(cx, cy) * inner * Projection::translate(-cx, -cy);
                warp(&to_f32(img), &p, Warp::Bilinear, Rgb([0.0, 0.0, 0.0]))
            }
            CorruptionKind::DistributionShift => {
                for c in 0..3 {
                    normalize.mean[c] += 0.05 * d * sign(rng);
                    normalize.std[c] *= (0.1 * d * sign(rng)).exp();
                }
                to_f32(img)
            }
        };
        Ok(Corrupted { pixels, normalize })
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.kind, self.degree)
    }
}

impl FromStr for Corruption {
    type Err = Error;

    /// Parses `KIND@DEGREE`, e.g. `gaussian-blur@2`.
    fn from_str(s: &str) -> Result<Self> {
        let (kind, degree) = s
            .split_once('@')
            .ok_or_else(|| Error::config("corruption", format!("{s:?} is not KIND@DEGREE")))?;
        let degree: f32 = degree
            .parse()
            .map_err(|_| Error::config("corruption", format!("degree {degree:?} in {s:?}")))?;
        Corruption::new(kind.parse()?, degree)
    }
}
