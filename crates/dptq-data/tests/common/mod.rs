//! Fixtures generated on the fly: images, ImageFolder trees, Pets layouts, IDX files.
#![allow(dead_code)]

use std::path::Path;

use image::{GrayImage, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A textured colour image: smooth gradients plus seeded noise, mean level `level`.
pub fn textured(w: u32, h: u32, level: u8, seed: u64) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (fx, fy) = (
        rng.random_range(0.01..0.1f32),
        rng.random_range(0.01..0.1f32),
    );
    RgbImage::from_fn(w, h, |x, y| {
        let base = level as f32 + 16.0 * ((x as f32 * fx).sin() + (y as f32 * fy).cos()) / 2.0;
        let mut p = [0u8; 3];
        for (c, v) in p.iter_mut().enumerate() {
            *v = (base + 25.0 * c as f32 - 25.0 + rng.random_range(-10.0..10.0f32))
                .clamp(0.0, 255.0) as u8;
        }
        image::Rgb(p)
    })
}

/// Saves `img` as JPEG (quality 90) or PNG according to the extension.
pub fn save(img: &RgbImage, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    if path.extension().unwrap() == "png" {
        img.save(path).unwrap();
    } else {
        let mut out = std::fs::File::create(path).unwrap();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(img)
            .unwrap();
    }
}

/// An ImageFolder tree: `classes` classes, `per_class` train and test images each;
/// class `c` has mean level `40 + 50 c`; JPEG and PNG, grey and colour, various sizes.
pub fn image_folder(root: &Path, classes: &[&str], per_class: usize) {
    for split in ["train", "test"] {
        for (c, name) in classes.iter().enumerate() {
            for i in 0..per_class {
                let (w, h) = (20 + 7 * i as u32, 16 + 5 * c as u32);
                let img = textured(w, h, 40 + 50 * c as u8, (c * 100 + i) as u64);
                let dir = root.join(split).join(name);
                if i % 3 == 2 {
                    let grey: GrayImage = image::DynamicImage::ImageRgb8(img).to_luma8();
                    std::fs::create_dir_all(&dir).unwrap();
                    grey.save(dir.join(format!("{i}.png"))).unwrap();
                } else {
                    let ext = if i % 3 == 0 { "jpg" } else { "png" };
                    save(&img, &dir.join(format!("{i}.{ext}")));
                }
            }
        }
    }
}

/// A Pets-layout folder: `images/<Breed>_<n>.jpg`, `annotations/{trainval,test}.txt`.
/// Returns the breeds in class-id order.
pub fn pets(root: &Path, per_split: usize) -> Vec<&'static str> {
    let breeds = vec!["Abyssinian", "american_bulldog", "Bengal"];
    let mut lists = [
        String::from("#Image CLASS-ID SPECIES BREED ID\n"),
        String::new(),
    ];
    for (c, breed) in breeds.iter().enumerate() {
        for i in 0..2 * per_split {
            let name = format!("{breed}_{}", i + 1);
            save(
                &textured(50 + i as u32, 40, 60 + 60 * c as u8, (c * 10 + i) as u64),
                &root.join("images").join(format!("{name}.jpg")),
            );
            let species = if breed.chars().next().unwrap().is_uppercase() {
                1
            } else {
                2
            };
            lists[i % 2].push_str(&format!("{name} {} {species} {}\n", c + 1, i + 1));
        }
    }
    std::fs::create_dir_all(root.join("annotations")).unwrap();
    std::fs::write(root.join("annotations/trainval.txt"), &lists[0]).unwrap();
    std::fs::write(root.join("annotations/test.txt"), &lists[1]).unwrap();
    breeds
}

/// Gzip-compresses bytes.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Writes an MNIST-style IDX folder: `n_train` / `n_test` grey `h x w` images whose
/// pixels all equal `20 * label`, labels `i % classes`.
pub fn idx_folder(
    dir: &Path,
    n_train: usize,
    n_test: usize,
    h: usize,
    w: usize,
    classes: u8,
    gz: bool,
) {
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % classes as usize) as u8).collect();
        let pixels: Vec<u8> = labels.iter().flat_map(|&l| vec![20 * l; h * w]).collect();
        let images = dptq_data::encode_idx(&[n, h, w], &pixels);
        let labels = dptq_data::encode_idx(&[n], &labels);
        let suffix = if gz { ".gz" } else { "" };
        let (images, labels) = if gz {
            (gzip(&images), gzip(&labels))
        } else {
            (images, labels)
        };
        std::fs::write(
            dir.join(format!("{prefix}-images-idx3-ubyte{suffix}")),
            images,
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{prefix}-labels-idx1-ubyte{suffix}")),
            labels,
        )
        .unwrap();
    }
}
