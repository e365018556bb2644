//! Datasets: the embedded Fashion-MNIST subset, Oxford-IIIT Pets, ImageFolder and IDX
//! files, each opened into the same `Dataset { classes, train, test, skipped }`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use image::RgbImage;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::idx::{IdxArray, parse_idx, read_idx};
use crate::spec::DataSpec;

/// The Fashion-MNIST class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

const EMBEDDED_TRAIN_IMAGES: &[u8] =
    include_bytes!("../../../fixtures/fashion-mnist/train-images-idx3-ubyte.gz");
const EMBEDDED_TRAIN_LABELS: &[u8] =
    include_bytes!("../../../fixtures/fashion-mnist/train-labels-idx1-ubyte.gz");
const EMBEDDED_TEST_IMAGES: &[u8] =
    include_bytes!("../../../fixtures/fashion-mnist/t10k-images-idx3-ubyte.gz");
const EMBEDDED_TEST_LABELS: &[u8] =
    include_bytes!("../../../fixtures/fashion-mnist/t10k-labels-idx1-ubyte.gz");

/// File extensions read as images in ImageFolder trees (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// How to open a dataset.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Skip unreadable, undecodable or misplaced files (and empty class folders) instead
    /// of failing; each one is listed in [`Dataset::skipped`]. Implies `verify`.
    /// Default: `false` (the first bad file is an error naming it).
    pub skip_bad: bool,
    /// Decode every image once while opening, so that corrupt or truncated files are
    /// found now rather than mid-training (the decoded images fill the cache).
    /// Default: `false` (only image headers are checked while opening).
    pub verify: bool,
    /// Memory budget, in bytes, for decoded images kept per split (file-backed datasets
    /// only; in-memory datasets are always resident). Default: 2 GiB.
    pub cache_bytes: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            skip_bad: false,
            verify: false,
            cache_bytes: 2 << 30,
        }
    }
}

/// A file (or folder) left out of the dataset under [`OpenOptions::skip_bad`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkippedFile {
    /// The file or folder.
    pub path: PathBuf,
    /// Why it was skipped (the error message it would have raised).
    pub reason: String,
}

/// A dataset: class names, a training and a test split, and what was skipped.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// What was opened.
    pub spec: DataSpec,
    /// Class names in label order; the class count comes from the data.
    pub classes: Vec<String>,
    /// The training split (Pets: `trainval`).
    pub train: Split,
    /// The test split.
    pub test: Split,
    /// Files left out under `skip_bad`, in discovery order (empty otherwise).
    pub skipped: Vec<SkippedFile>,
}

/// Where one sample's pixels come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// An encoded image file (JPEG or PNG; the format is read from the content).
    File(PathBuf),
    /// Decoded pixels held in memory (IDX and the embedded dataset).
    Memory(MemoryImage),
}

/// One `height x width x channels` u8 image inside a shared buffer.
#[derive(Debug, Clone)]
pub struct MemoryImage {
    pixels: Arc<[u8]>,
    offset: usize,
    width: u32,
    height: u32,
    channels: u8,
}

impl MemoryImage {
    /// The image as RGB; grey is replicated to the three channels.
    pub fn to_rgb(&self) -> RgbImage {
        let n = (self.width * self.height) as usize;
        let c = self.channels as usize;
        let src = &self.pixels[self.offset..self.offset + n * c];
        let data = if c == 3 {
            src.to_vec()
        } else {
            src.iter().flat_map(|&v| [v, v, v]).collect()
        };
        RgbImage::from_raw(self.width, self.height, data).expect("buffer sized by construction")
    }
}

/// One sample: where its image is and its label.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Its pixels.
    pub source: Source,
    /// Its class index into [`Dataset::classes`].
    pub label: u32,
}

/// Decoded images of a file-backed split, kept while they fit in the budget.
#[derive(Debug)]
struct ImageCache {
    slots: Vec<OnceLock<Arc<RgbImage>>>,
    used: AtomicUsize,
    budget: usize,
}

/// One split of a dataset: its samples and a shared cache of decoded images. Cloning
/// is cheap and clones share the cache.
#[derive(Debug, Clone)]
pub struct Split {
    name: String,
    samples: Arc<[Sample]>,
    cache: Arc<ImageCache>,
}

impl Split {
    /// A split of `samples` named `name` (e.g. `train`), caching up to `cache_bytes` of
    /// decoded images.
    pub fn new(name: impl Into<String>, samples: Vec<Sample>, cache_bytes: usize) -> Self {
        let slots = samples.iter().map(|_| OnceLock::new()).collect();
        Self {
            name: name.into(),
            samples: samples.into(),
            cache: Arc::new(ImageCache {
                slots,
                used: AtomicUsize::new(0),
                budget: cache_bytes,
            }),
        }
    }

    /// The split's name (`train` or `test`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the split has no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The samples, in dataset order.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Every label, in dataset order.
    pub fn labels(&self) -> Vec<u32> {
        self.samples.iter().map(|s| s.label).collect()
    }

    /// Number of samples of each class (`num_classes` entries).
    pub fn class_counts(&self, num_classes: usize) -> Vec<usize> {
        let mut counts = vec![0; num_classes];
        for s in self.samples.iter() {
            if let Some(c) = counts.get_mut(s.label as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// Whether every image is held in memory already (no decoding needed).
    pub fn in_memory(&self) -> bool {
        self.samples
            .iter()
            .all(|s| matches!(s.source, Source::Memory(_)))
    }

    /// Bytes of decoded images currently cached.
    pub fn cached_bytes(&self) -> usize {
        self.cache.used.load(Ordering::Relaxed)
    }

    /// The decoded RGB image of sample `index` (grey replicated to 3 channels), from
    /// the cache when it is there. Errors name the file.
    pub fn image(&self, index: usize) -> Result<Arc<RgbImage>> {
        let sample = self.samples.get(index).ok_or_else(|| {
            Error::config(
                "sample index",
                format!("{index} >= {} samples in split {}", self.len(), self.name),
            )
        })?;
        match &sample.source {
            Source::Memory(m) => Ok(Arc::new(m.to_rgb())),
            Source::File(path) => {
                let slot = &self.cache.slots[index];
                if let Some(img) = slot.get() {
                    return Ok(img.clone());
                }
                let img = Arc::new(decode_file(path)?);
                let bytes = img.as_raw().len();
                let before = self.cache.used.fetch_add(bytes, Ordering::Relaxed);
                if before + bytes > self.cache.budget || slot.set(img.clone()).is_err() {
                    self.cache.used.fetch_sub(bytes, Ordering::Relaxed);
                }
                Ok(img)
            }
        }
    }
}

/// Decodes an image file (format read from its content) to RGB.
pub fn decode_file(path: &Path) -> Result<RgbImage> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let img = reader.decode().map_err(|e| Error::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(img.to_rgb8())
}

/// Reads only the header of an image file; fails on unreadable or unknown formats.
fn check_header(path: &Path) -> Result<()> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let (w, h) = reader.into_dimensions().map_err(|e| Error::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if w == 0 || h == 0 {
        return Err(Error::Decode {
            path: path.to_path_buf(),
            reason: format!("empty image {w}x{h}"),
        });
    }
    Ok(())
}

/// Collects bad files: an error under strict opening, a record under `skip_bad`.
struct Skips<'a> {
    options: &'a OpenOptions,
    skipped: Vec<SkippedFile>,
}

impl Skips<'_> {
    fn bad(&mut self, path: &Path, err: Error) -> Result<()> {
        if self.options.skip_bad {
            tracing::warn!("skipping {}: {err}", path.display());
            self.skipped.push(SkippedFile {
                path: path.to_path_buf(),
                reason: err.to_string(),
            });
            Ok(())
        } else {
            Err(err)
        }
    }
}

impl Dataset {
    /// Opens the dataset `spec` names.
    pub fn open(spec: &DataSpec, options: &OpenOptions) -> Result<Dataset> {
        let mut skips = Skips {
            options,
            skipped: Vec::new(),
        };
        let (classes, train, test) = match spec {
            DataSpec::Embedded => open_embedded()?,
            DataSpec::Pets(dir) => open_pets(dir, &mut skips)?,
            DataSpec::ImageFolder(dir) => open_image_folder(dir, &mut skips)?,
            DataSpec::Idx(dir) => open_idx(dir)?,
        };
        let train = check_files(train, &mut skips)?;
        let test = check_files(test, &mut skips)?;
        let dataset = Dataset {
            spec: spec.clone(),
            classes,
            train: Split::new("train", train, options.cache_bytes),
            test: Split::new("test", test, options.cache_bytes),
            skipped: skips.skipped,
        };
        for split in [&dataset.train, &dataset.test] {
            if split.is_empty() {
                return Err(Error::Empty {
                    what: "sample in the split",
                    path: PathBuf::from(format!("{spec} ({})", split.name())),
                });
            }
        }
        tracing::info!(
            "{spec}: {} classes, {} train / {} test images, {} skipped",
            dataset.classes.len(),
            dataset.train.len(),
            dataset.test.len(),
            dataset.skipped.len()
        );
        Ok(dataset)
    }

    /// The embedded Fashion-MNIST subset (`DataSpec::Embedded`).
    pub fn embedded() -> Result<Dataset> {
        Self::open(&DataSpec::Embedded, &OpenOptions::default())
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }
}

/// Checks the headers of every file-backed sample (or decodes it under `verify`/
/// `skip_bad`), in parallel; bad files fail in dataset order or are skipped.
fn check_files(samples: Vec<Sample>, skips: &mut Skips<'_>) -> Result<Vec<Sample>> {
    let full = skips.options.verify || skips.options.skip_bad;
    let checks: Vec<Option<Error>> = samples
        .par_iter()
        .map(|s| match &s.source {
            Source::Memory(_) => None,
            Source::File(path) => {
                let r = if full {
                    decode_file(path).map(|_| ())
                } else {
                    check_header(path)
                };
                r.err()
            }
        })
        .collect();
    let mut kept = Vec::with_capacity(samples.len());
    for (sample, err) in samples.into_iter().zip(checks) {
        match (err, &sample.source) {
            (None, _) => kept.push(sample),
            (Some(err), Source::File(path)) => skips.bad(&path.clone(), err)?,
            (Some(err), Source::Memory(_)) => return Err(err),
        }
    }
    Ok(kept)
}

type Opened = (Vec<String>, Vec<Sample>, Vec<Sample>);

fn open_embedded() -> Result<Opened> {
    let p = |name: &str| PathBuf::from(format!("embedded:fixtures/fashion-mnist/{name}"));
    let train = idx_samples(
        parse_idx(EMBEDDED_TRAIN_IMAGES, &p("train-images-idx3-ubyte.gz"))?,
        &p("train-images-idx3-ubyte.gz"),
        parse_idx(EMBEDDED_TRAIN_LABELS, &p("train-labels-idx1-ubyte.gz"))?,
        &p("train-labels-idx1-ubyte.gz"),
    )?;
    let test = idx_samples(
        parse_idx(EMBEDDED_TEST_IMAGES, &p("t10k-images-idx3-ubyte.gz"))?,
        &p("t10k-images-idx3-ubyte.gz"),
        parse_idx(EMBEDDED_TEST_LABELS, &p("t10k-labels-idx1-ubyte.gz"))?,
        &p("t10k-labels-idx1-ubyte.gz"),
    )?;
    let classes = FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    Ok((classes, train, test))
}

/// Pairs an IDX image array (`[N,H,W]` or `[N,H,W,C]`, C = 1 or 3) with its labels.
fn idx_samples(
    images: IdxArray,
    images_path: &Path,
    labels: IdxArray,
    labels_path: &Path,
) -> Result<Vec<Sample>> {
    let (n, h, w, c) = match images.dims[..] {
        [n, h, w] => (n, h, w, 1),
        [n, h, w, c] if c == 1 || c == 3 => (n, h, w, c),
        _ => {
            return Err(Error::Idx {
                path: images_path.to_path_buf(),
                reason: format!(
                    "image dimensions {:?}, expected [N, H, W] or [N, H, W, 1|3]",
                    images.dims
                ),
            });
        }
    };
    if labels.dims != [n] {
        return Err(Error::Idx {
            path: labels_path.to_path_buf(),
            reason: format!(
                "label dimensions {:?}, expected [{n}] to match {}",
                labels.dims,
                images_path.display()
            ),
        });
    }
    if n == 0 || h == 0 || w == 0 {
        return Err(Error::Empty {
            what: "image",
            path: images_path.to_path_buf(),
        });
    }
    let pixels: Arc<[u8]> = images.data.into();
    Ok(labels
        .data
        .iter()
        .enumerate()
        .map(|(i, &label)| Sample {
            source: Source::Memory(MemoryImage {
                pixels: pixels.clone(),
                offset: i * h * w * c,
                width: w as u32,
                height: h as u32,
                channels: c as u8,
            }),
            label: label as u32,
        })
        .collect())
}

/// Finds the one file in `dir` for a split (`train` or `test`) and a kind (`images`
/// or `labels`).
fn find_idx_file(
    dir: &Path,
    split_words: &[&str],
    kind: &str,
    what: &'static str,
) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().to_lowercase();
        if name.contains("idx")
            && name.contains(kind)
            && split_words.iter().any(|w| name.contains(w))
        {
            found.push(entry.path());
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::Missing {
            what,
            path: dir.to_path_buf(),
        }),
        _ => Err(Error::Config {
            what: "IDX folder",
            reason: format!("several {what}s in {}: {found:?}", dir.display()),
        }),
    }
}

fn open_idx(dir: &Path) -> Result<Opened> {
    if !dir.is_dir() {
        return Err(Error::Missing {
            what: "IDX folder",
            path: dir.to_path_buf(),
        });
    }
    let mut splits = Vec::new();
    for (words, img_what, lbl_what) in [
        (
            &["train"][..],
            "train images IDX file",
            "train labels IDX file",
        ),
        (
            &["t10k", "test"][..],
            "test images IDX file",
            "test labels IDX file",
        ),
    ] {
        let ip = find_idx_file(dir, words, "images", img_what)?;
        let lp = find_idx_file(dir, words, "labels", lbl_what)?;
        splits.push((idx_samples(read_idx(&ip)?, &ip, read_idx(&lp)?, &lp)?, lp));
    }
    let classes_file = dir.join("classes.txt");
    let classes: Vec<String> = if classes_file.exists() {
        let text =
            std::fs::read_to_string(&classes_file).map_err(|e| Error::io(&classes_file, e))?;
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    } else {
        let max = splits
            .iter()
            .flat_map(|(s, _)| s.iter().map(|x| x.label))
            .max()
            .unwrap_or(0);
        (0..=max).map(|c| c.to_string()).collect()
    };
    for (samples, labels_path) in &splits {
        if let Some(s) = samples.iter().find(|s| s.label as usize >= classes.len()) {
            return Err(Error::UnknownClass {
                class: s.label.to_string(),
                path: labels_path.clone(),
            });
        }
    }
    let test = splits.pop().expect("two splits").0;
    let train = splits.pop().expect("two splits").0;
    Ok((classes, train, test))
}

fn open_pets(dir: &Path, skips: &mut Skips<'_>) -> Result<Opened> {
    let images = dir.join("images");
    if !images.is_dir() {
        return Err(Error::Missing {
            what: "Pets images folder",
            path: images,
        });
    }
    // class id (1-based) -> breed name, from the training list.
    let mut names: BTreeMap<u32, String> = BTreeMap::new();
    let mut parsed = Vec::new();
    for (split, file) in [("train", "trainval.txt"), ("test", "test.txt")] {
        let path = dir.join("annotations").join(file);
        if !path.is_file() {
            return Err(Error::Missing {
                what: "Pets split file",
                path,
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: String| Error::Annotation {
                path: path.clone(),
                line: i + 1,
                reason,
            };
            let mut fields = line.split_whitespace();
            let (Some(name), Some(id)) = (fields.next(), fields.next()) else {
                return Err(bad(format!(
                    "expected `NAME CLASS_ID SPECIES BREED_ID`, got {line:?}"
                )));
            };
            let id: u32 = id
                .parse()
                .ok()
                .filter(|&id| id >= 1)
                .ok_or_else(|| bad(format!("class id {id:?} is not a positive integer")))?;
            let breed = match name.rsplit_once('_') {
                Some((breed, n)) if !breed.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => {
                    breed
                }
                _ => return Err(bad(format!("image name {name:?} is not BREED_NUMBER"))),
            };
            if split == "train" {
                match names.get(&id) {
                    Some(known) if known != breed => {
                        return Err(bad(format!(
                            "class id {id} is {breed:?} here but {known:?} earlier"
                        )));
                    }
                    Some(_) => {}
                    None => {
                        names.insert(id, breed.to_string());
                    }
                }
            } else if names.get(&id).map(String::as_str) != Some(breed) {
                return Err(Error::UnknownClass {
                    class: format!("{breed} (id {id})"),
                    path: path.clone(),
                });
            }
            entries.push((name.to_string(), id));
        }
        if entries.is_empty() {
            return Err(Error::Empty {
                what: "annotated image",
                path,
            });
        }
        parsed.push(entries);
    }
    let num_classes = *names.keys().last().expect("train split is non-empty");
    if let Some(missing) = (1..=num_classes).find(|id| !names.contains_key(id)) {
        return Err(Error::Config {
            what: "Pets classes",
            reason: format!(
                "class id {missing} has no image in {} (ids must run 1..={num_classes})",
                dir.join("annotations/trainval.txt").display()
            ),
        });
    }
    let classes = names.into_values().collect();
    let mut splits = Vec::new();
    for entries in parsed {
        let mut samples = Vec::with_capacity(entries.len());
        for (name, id) in entries {
            let path = images.join(format!("{name}.jpg"));
            if path.is_file() {
                samples.push(Sample {
                    source: Source::File(path),
                    label: id - 1,
                });
            } else {
                skips.bad(
                    &path.clone(),
                    Error::Missing {
                        what: "image",
                        path,
                    },
                )?;
            }
        }
        splits.push(samples);
    }
    let test = splits.pop().expect("two splits");
    let train = splits.pop().expect("two splits");
    Ok((classes, train, test))
}

/// Sorted entries of a folder, hidden ones (`.name`) left out.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

fn open_image_folder(root: &Path, skips: &mut Skips<'_>) -> Result<Opened> {
    let mut classes: Vec<String> = Vec::new();
    let mut splits = Vec::new();
    for split in ["train", "test"] {
        let dir = root.join(split);
        if !dir.is_dir() {
            return Err(Error::Missing {
                what: "split folder",
                path: dir,
            });
        }
        let mut class_dirs = BTreeSet::new();
        for entry in sorted_entries(&dir)? {
            if entry.is_dir() {
                class_dirs.insert(entry);
            } else {
                skips.bad(
                    &entry,
                    Error::Decode {
                        path: entry.clone(),
                        reason: "file outside a class folder".into(),
                    },
                )?;
            }
        }
        if class_dirs.is_empty() {
            return Err(Error::Empty {
                what: "class folder",
                path: dir,
            });
        }
        if split == "train" {
            classes = class_dirs
                .iter()
                .map(|d| {
                    d.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
        }
        let mut samples = Vec::new();
        for class_dir in class_dirs {
            let class = class_dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let label =
                classes
                    .iter()
                    .position(|c| *c == class)
                    .ok_or_else(|| Error::UnknownClass {
                        class: class.clone(),
                        path: class_dir.clone(),
                    })? as u32;
            let before = samples.len();
            for file in sorted_entries(&class_dir)? {
                let ext = file
                    .extension()
                    .map(|e| e.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
                if file.is_file() && IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                    samples.push(Sample {
                        source: Source::File(file),
                        label,
                    });
                } else {
                    skips.bad(
                        &file,
                        Error::Decode {
                            path: file.clone(),
                            reason: format!(
                                "not an image file (expected one of {IMAGE_EXTENSIONS:?})"
                            ),
                        },
                    )?;
                }
            }
            if samples.len() == before {
                skips.bad(
                    &class_dir,
                    Error::Empty {
                        what: "image in the class folder",
                        path: class_dir.clone(),
                    },
                )?;
            }
        }
        splits.push(samples);
    }
    let test = splits.pop().expect("two splits");
    let train = splits.pop().expect("two splits");
    Ok((classes, train, test))
}
