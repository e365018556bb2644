//! timm's evaluation preprocessing: resize the shorter side to `floor(size / crop_pct)`,
//! center-crop `size`, scale to `[0, 1]`, normalise `(x - mean) / std` per channel.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};

use crate::error::{Error, Result};
use crate::hub::PretrainedCfg;

/// Resampling filter of the resize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear (triangle filter, antialiased when shrinking, like PIL).
    Bilinear,
    /// Bicubic (Catmull-Rom, `a = -0.5`, PIL's kernel).
    Bicubic,
}

impl Interpolation {
    /// Parses timm's names (`bilinear`, `bicubic`, `nearest`).
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "nearest" => Ok(Self::Nearest),
            "bilinear" => Ok(Self::Bilinear),
            "bicubic" => Ok(Self::Bicubic),
            other => Err(Error::InvalidConfig {
                what: "interpolation",
                detail: format!("{other:?} (known: nearest, bilinear, bicubic)"),
            }),
        }
    }

    fn filter(self) -> FilterType {
        match self {
            Self::Nearest => FilterType::Nearest,
            Self::Bilinear => FilterType::Triangle,
            Self::Bicubic => FilterType::CatmullRom,
        }
    }
}

/// The evaluation transform of a pretrained model.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Output `(height, width)`. Default `(224, 224)`.
    pub input_size: (usize, usize),
    /// Fraction kept by the center crop. Default 0.875.
    pub crop_pct: f64,
    /// Resize filter. Default bilinear.
    pub interpolation: Interpolation,
    /// Channel means. Default ImageNet's `[0.485, 0.456, 0.406]`.
    pub mean: [f64; 3],
    /// Channel standard deviations. Default ImageNet's `[0.229, 0.224, 0.225]`.
    pub std: [f64; 3],
}

impl Default for Preprocess {
    fn default() -> Self {
        Self {
            input_size: (224, 224),
            crop_pct: 0.875,
            interpolation: Interpolation::Bilinear,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

impl Preprocess {
    /// The transform a timm `pretrained_cfg` asks for.
    pub fn from_pretrained(cfg: &PretrainedCfg) -> Result<Self> {
        if !(cfg.crop_pct > 0.0 && cfg.crop_pct <= 1.0) {
            return Err(Error::InvalidConfig {
                what: "crop_pct",
                detail: format!("{} is not in (0, 1]", cfg.crop_pct),
            });
        }
        Ok(Self {
            input_size: (cfg.input_size[1], cfg.input_size[2]),
            crop_pct: cfg.crop_pct,
            interpolation: Interpolation::parse(&cfg.interpolation)?,
            mean: cfg.mean,
            std: cfg.std,
        })
    }

    /// The size the shorter side is resized to: `floor(size / crop_pct)` (timm).
    pub fn scale_size(&self) -> usize {
        let size = self.input_size.0.max(self.input_size.1);
        (size as f64 / self.crop_pct).floor() as usize
    }

    /// `[3, H, W]` f32 tensor of an image.
    pub fn apply(&self, img: &DynamicImage, device: &Device) -> Result<Tensor> {
        let rgb = img.to_rgb8();
        let resized = resize_shorter(&rgb, self.scale_size(), self.interpolation);
        let cropped = center_crop(&resized, self.input_size.0, self.input_size.1)?;
        to_tensor(&cropped, self.mean, self.std, device)
    }

    /// Decodes the image file at `path` (JPEG or PNG) and applies the transform; errors
    /// name the file.
    pub fn load(&self, path: &Path, device: &Device) -> Result<Tensor> {
        let img = image::open(path).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            detail: format!("cannot decode image: {e}"),
        })?;
        self.apply(&img, device)
    }
}

/// Resizes so that the shorter side is `size`, keeping the aspect ratio (the longer side
/// is `floor(size * long / short)`, as torchvision's `Resize(int)`).
pub fn resize_shorter(img: &RgbImage, size: usize, interpolation: Interpolation) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (nw, nh) = if w <= h {
        (size, size * h / w)
    } else {
        (size * w / h, size)
    };
    if (nw, nh) == (w, h) {
        return img.clone();
    }
    image::imageops::resize(img, nw as u32, nh as u32, interpolation.filter())
}

/// The centered `h x w` window, offsets `round((H - h) / 2)` (ties to even, torchvision).
pub fn center_crop(img: &RgbImage, h: usize, w: usize) -> Result<RgbImage> {
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    if ih < h || iw < w {
        return Err(Error::InvalidConfig {
            what: "center crop",
            detail: format!("image {iw}x{ih} is smaller than the crop {w}x{h}"),
        });
    }
    let top = ((ih - h) as f64 / 2.0).round_ties_even() as u32;
    let left = ((iw - w) as f64 / 2.0).round_ties_even() as u32;
    Ok(image::imageops::crop_imm(img, left, top, w as u32, h as u32).to_image())
}

/// `[3, H, W]` f32: `(pixel / 255 - mean[c]) / std[c]`.
pub fn to_tensor(img: &RgbImage, mean: [f64; 3], std: [f64; 3], device: &Device) -> Result<Tensor> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = vec![0f32; 3 * h * w];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            let v = (f64::from(p.0[c]) / 255.0 - mean[c]) / std[c];
            data[c * h * w + y as usize * w + x as usize] = v as f32;
        }
    }
    Ok(Tensor::from_vec(data, (3, h, w), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_size_is_timms_floor_of_size_over_crop_pct() {
        let p = Preprocess {
            crop_pct: 0.95,
            ..Default::default()
        };
        assert_eq!(p.scale_size(), 235); // floor(224 / 0.95) = floor(235.79)
        assert_eq!(Preprocess::default().scale_size(), 256);
    }

    #[test]
    fn shorter_side_resize_keeps_the_aspect_ratio() {
        let img = RgbImage::new(300, 200);
        let r = resize_shorter(&img, 100, Interpolation::Bilinear);
        assert_eq!((r.width(), r.height()), (150, 100));
        let img = RgbImage::new(201, 300);
        let r = resize_shorter(&img, 100, Interpolation::Bicubic);
        assert_eq!((r.width(), r.height()), (100, 149)); // floor(100 * 300 / 201)
    }

    #[test]
    fn center_crop_takes_the_middle_and_refuses_small_images() -> Result<()> {
        let img = RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let c = center_crop(&img, 2, 3)?;
        assert_eq!(c.get_pixel(0, 0).0, [1, 1, 0]);
        assert!(center_crop(&img, 5, 5).is_err());
        Ok(())
    }

    #[test]
    fn normalisation_is_per_channel_in_chw_order() -> Result<()> {
        let img = RgbImage::from_fn(2, 1, |x, _| {
            image::Rgb([255, 0, if x == 0 { 51 } else { 102 }])
        });
        let t = to_tensor(&img, [0.5, 0.5, 0.0], [0.5, 0.25, 0.2], &Device::Cpu)?;
        assert_eq!(t.dims(), &[3, 1, 2]);
        let v = t.flatten_all()?.to_vec1::<f32>()?;
        let expected = [1.0, 1.0, -2.0, -2.0, 1.0, 2.0];
        for (a, b) in v.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
        Ok(())
    }

    #[test]
    fn unknown_interpolation_is_an_error_naming_it() {
        let err = Interpolation::parse("lanczos").unwrap_err().to_string();
        assert!(err.contains("lanczos"), "{err}");
    }
}
