//! The three dataset forms and the embedded subset, opened from generated fixtures,
//! and every kind of bad input.

mod common;

use std::path::Path;

use dptq_data::{DataSpec, Dataset, Normalize, OpenOptions, Source};

fn open(spec: DataSpec) -> dptq_data::Result<Dataset> {
    Dataset::open(&spec, &OpenOptions::default())
}

fn skip_bad() -> OpenOptions {
    OpenOptions {
        skip_bad: true,
        ..Default::default()
    }
}

#[test]
fn embedded_subset_is_class_balanced_fashion_mnist() {
    let ds = Dataset::embedded().unwrap();
    assert_eq!(ds.classes.len(), 10);
    assert_eq!(ds.classes[9], "Ankle boot");
    assert_eq!(ds.train.class_counts(10), vec![1000; 10]);
    assert_eq!(ds.test.class_counts(10), vec![500; 10]);
    assert!(ds.train.in_memory() && ds.test.in_memory());
    let img = ds.train.image(0).unwrap();
    assert_eq!(img.dimensions(), (28, 28));
    // grey replicated to three channels
    assert!(img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
}

#[test]
fn fashion_mnist_normalisation_matches_the_embedded_pixels() {
    let ds = Dataset::embedded().unwrap();
    let (mut sum, mut sq, mut n) = (0f64, 0f64, 0f64);
    for i in 0..ds.train.len() {
        for p in ds.train.image(i).unwrap().pixels() {
            let v = p[0] as f64 / 255.0;
            sum += v;
            sq += v * v;
            n += 1.0;
        }
    }
    let mean = sum / n;
    let std = (sq / n - mean * mean).sqrt();
    assert!(
        (mean - Normalize::FASHION_MNIST.mean[0] as f64).abs() < 5e-4,
        "mean {mean}"
    );
    assert!(
        (std - Normalize::FASHION_MNIST.std[0] as f64).abs() < 5e-4,
        "std {std}"
    );
}

#[test]
fn idx_folders_load_raw_and_gzip_with_labels_and_pixels() {
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        common::idx_folder(dir.path(), 12, 7, 5, 4, 3, gz);
        let ds = open(DataSpec::Idx(dir.path().into())).unwrap();
        assert_eq!(ds.classes, vec!["0", "1", "2"]);
        assert_eq!((ds.train.len(), ds.test.len()), (12, 7));
        assert_eq!(ds.train.class_counts(3), vec![4, 4, 4]);
        for i in 0..7 {
            let img = ds.test.image(i).unwrap();
            assert_eq!(img.dimensions(), (4, 5));
            let label = ds.test.samples()[i].label;
            assert!(img.pixels().all(|p| p.0 == [20 * label as u8; 3]));
        }
    }
}

#[test]
fn idx_class_names_come_from_classes_txt_and_unknown_labels_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    common::idx_folder(dir.path(), 6, 6, 3, 3, 3, true);
    std::fs::write(dir.path().join("classes.txt"), "zero\none\ntwo\n").unwrap();
    let ds = open(DataSpec::Idx(dir.path().into())).unwrap();
    assert_eq!(ds.classes, vec!["zero", "one", "two"]);
    std::fs::write(dir.path().join("classes.txt"), "zero\none\n").unwrap();
    let err = open(DataSpec::Idx(dir.path().into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown class \"2\"") && err.contains("labels-idx1-ubyte.gz"),
        "{err}"
    );
}

#[test]
fn idx_image_and_label_counts_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    common::idx_folder(dir.path(), 6, 6, 3, 3, 3, false);
    let labels = dptq_data::encode_idx(&[5], &[0, 1, 2, 0, 1]);
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), labels).unwrap();
    let err = open(DataSpec::Idx(dir.path().into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("t10k-labels-idx1-ubyte") && err.contains("[5]"),
        "{err}"
    );
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let err = open(DataSpec::Idx(dir.path().into()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing test labels IDX file"), "{err}");
}

#[test]
fn image_folders_load_grey_and_colour_of_any_size() {
    let dir = tempfile::tempdir().unwrap();
    common::image_folder(dir.path(), &["cat", "dog"], 4);
    let ds = open(DataSpec::ImageFolder(dir.path().into())).unwrap();
    assert_eq!(ds.classes, vec!["cat", "dog"]);
    assert_eq!(ds.train.class_counts(2), vec![4, 4]);
    assert_eq!(ds.test.len(), 8);
    assert!(!ds.train.in_memory());
    let sizes: Vec<_> = (0..4)
        .map(|i| ds.train.image(i).unwrap().dimensions())
        .collect();
    assert_eq!(sizes, vec![(20, 16), (27, 16), (34, 16), (41, 16)]);
    // sample 2 is a grey PNG: replicated channels
    assert!(
        ds.train
            .image(2)
            .unwrap()
            .pixels()
            .all(|p| p[0] == p[1] && p[1] == p[2])
    );
    // decoded images are cached and shared by clones of the split
    assert!(ds.train.cached_bytes() > 0);
    let before = ds.train.cached_bytes();
    let clone = ds.train.clone();
    clone.image(0).unwrap();
    assert_eq!(clone.cached_bytes(), before);
}

#[test]
fn a_cache_budget_of_zero_keeps_nothing_but_still_decodes() {
    let dir = tempfile::tempdir().unwrap();
    common::image_folder(dir.path(), &["a", "b"], 2);
    let options = OpenOptions {
        cache_bytes: 0,
        ..Default::default()
    };
    let ds = Dataset::open(&DataSpec::ImageFolder(dir.path().into()), &options).unwrap();
    let a = ds.train.image(1).unwrap();
    let b = ds.train.image(1).unwrap();
    assert_eq!(*a, *b);
    assert_eq!(ds.train.cached_bytes(), 0);
}

#[test]
fn a_test_class_absent_from_train_is_an_error_naming_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    common::image_folder(dir.path(), &["cat", "dog"], 2);
    common::save(
        &common::textured(8, 8, 100, 1),
        &dir.path().join("test/wolf/0.jpg"),
    );
    let err = open(DataSpec::ImageFolder(dir.path().into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown class \"wolf\"") && err.contains("test/wolf"),
        "{err}"
    );
}

#[test]
fn an_empty_class_folder_is_an_error_or_a_recorded_skip() {
    let dir = tempfile::tempdir().unwrap();
    common::image_folder(dir.path(), &["cat", "dog"], 2);
    std::fs::create_dir_all(dir.path().join("test/dog/empty_subfolder_is_not_an_image")).unwrap();
    for f in ["0.jpg", "1.png"] {
        std::fs::remove_file(dir.path().join("test/cat").join(f)).unwrap();
    }
    let err = open(DataSpec::ImageFolder(dir.path().into()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("test/cat"), "{err}");
    let ds = Dataset::open(&DataSpec::ImageFolder(dir.path().into()), &skip_bad()).unwrap();
    let skipped: Vec<_> = ds.skipped.iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        skipped,
        vec![
            dir.path().join("test/cat"),
            dir.path().join("test/dog/empty_subfolder_is_not_an_image")
        ]
    );
    assert_eq!(ds.test.class_counts(2), vec![0, 2]);
}

#[test]
fn an_empty_image_folder_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("train")).unwrap();
    std::fs::create_dir_all(dir.path().join("test")).unwrap();
    let err = open(DataSpec::ImageFolder(dir.path().into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no class folder found in") && err.contains("train"),
        "{err}"
    );
    let err = open(DataSpec::ImageFolder(dir.path().join("nowhere")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing split folder") && err.contains("nowhere/train"),
        "{err}"
    );
}

fn corrupt_files(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let garbage = root.join("train/cat/1.png");
    std::fs::write(&garbage, b"this is not a png at all").unwrap();
    let truncated = root.join("train/dog/0.jpg");
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    (garbage, truncated)
}

#[test]
fn a_corrupt_image_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    common::image_folder(dir.path(), &["cat", "dog"], 3);
    let (garbage, _) = corrupt_files(dir.path());
    let err = open(DataSpec::ImageFolder(dir.path().into()))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&garbage.display().to_string()), "{err}");
}

#[test]
fn a_truncated_image_is_found_by_verify_and_recorded_by_skip_bad() {
    let dir = tempfile::tempdir().unwrap();
    common::image_folder(dir.path(), &["cat", "dog"], 3);
    let (garbage, truncated) = corrupt_files(dir.path());
    std::fs::write(dir.path().join("train/notes.txt"), "stray file").unwrap();
    let strict = OpenOptions {
        verify: true,
        ..Default::default()
    };
    std::fs::remove_file(&garbage).unwrap();
    std::fs::remove_file(dir.path().join("train/notes.txt")).unwrap();
    let err = Dataset::open(&DataSpec::ImageFolder(dir.path().into()), &strict)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&truncated.display().to_string()), "{err}");

    std::fs::write(&garbage, b"garbage").unwrap();
    std::fs::write(dir.path().join("train/notes.txt"), "stray file").unwrap();
    let ds = Dataset::open(&DataSpec::ImageFolder(dir.path().into()), &skip_bad()).unwrap();
    let mut skipped: Vec<_> = ds.skipped.iter().map(|s| s.path.clone()).collect();
    skipped.sort();
    let mut expected = vec![garbage, truncated, dir.path().join("train/notes.txt")];
    expected.sort();
    assert_eq!(skipped, expected);
    assert!(ds.skipped.iter().all(|s| !s.reason.is_empty()));
    assert_eq!(ds.train.len(), 6 - 2);
    // nothing skipped is in the split
    for s in ds.train.samples() {
        if let Source::File(p) = &s.source {
            assert!(!expected.contains(p));
        }
    }
}

#[test]
fn pets_layout_loads_classes_by_id_and_both_splits() {
    let dir = tempfile::tempdir().unwrap();
    let breeds = common::pets(dir.path(), 3);
    let ds = open(DataSpec::Pets(dir.path().into())).unwrap();
    assert_eq!(ds.classes, breeds);
    assert_eq!(ds.train.class_counts(3), vec![3, 3, 3]);
    assert_eq!(ds.test.class_counts(3), vec![3, 3, 3]);
    let Source::File(first) = &ds.train.samples()[0].source else {
        panic!("file-backed")
    };
    assert!(first.ends_with("images/Abyssinian_1.jpg"));
    assert_eq!(ds.train.image(0).unwrap().dimensions(), (50, 40));
}

#[test]
fn pets_missing_split_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    common::pets(dir.path(), 1);
    std::fs::remove_file(dir.path().join("annotations/test.txt")).unwrap();
    let err = open(DataSpec::Pets(dir.path().into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing Pets split file") && err.contains("annotations/test.txt"),
        "{err}"
    );
}

#[test]
fn pets_unknown_test_class_and_bad_lines_are_errors_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    common::pets(dir.path(), 1);
    let test = dir.path().join("annotations/test.txt");
    let mut text = std::fs::read_to_string(&test).unwrap();
    text.push_str("Sphynx_3 7 1 3\n");
    std::fs::write(&test, &text).unwrap();
    let err = open(DataSpec::Pets(dir.path().into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown class \"Sphynx (id 7)\"") && err.contains("test.txt"),
        "{err}"
    );
    std::fs::write(&test, "Bengal_2 x 1 2\n").unwrap();
    let err = open(DataSpec::Pets(dir.path().into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test.txt:1:") && err.contains("\"x\""),
        "{err}"
    );
}

#[test]
fn pets_missing_image_is_an_error_or_a_recorded_skip() {
    let dir = tempfile::tempdir().unwrap();
    common::pets(dir.path(), 2);
    let gone = dir.path().join("images/Bengal_2.jpg");
    std::fs::remove_file(&gone).unwrap();
    let err = open(DataSpec::Pets(dir.path().into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing image") && err.contains("Bengal_2.jpg"),
        "{err}"
    );
    let ds = Dataset::open(&DataSpec::Pets(dir.path().into()), &skip_bad()).unwrap();
    assert_eq!(ds.skipped.len(), 1);
    assert_eq!(ds.skipped[0].path, gone);
    assert_eq!(ds.test.class_counts(3), vec![2, 2, 1]);
}

#[test]
fn pets_images_are_decoded_by_content_whatever_their_extension() {
    // The real archive holds a few PNGs and grey or RGBA images named .jpg.
    let dir = tempfile::tempdir().unwrap();
    common::pets(dir.path(), 1);
    let path = dir.path().join("images/Bengal_1.jpg");
    let rgba = image::RgbaImage::from_pixel(9, 7, image::Rgba([10, 20, 30, 128]));
    rgba.save_with_format(&path, image::ImageFormat::Png)
        .unwrap();
    let ds = Dataset::open(&DataSpec::Pets(dir.path().into()), &skip_bad()).unwrap();
    assert!(ds.skipped.is_empty(), "{:?}", ds.skipped);
    let i = ds
        .train
        .samples()
        .iter()
        .position(|s| matches!(&s.source, Source::File(p) if *p == path))
        .unwrap();
    let img = ds.train.image(i).unwrap();
    assert_eq!(img.dimensions(), (9, 7));
    assert_eq!(img.get_pixel(3, 3).0, [10, 20, 30]);
}
