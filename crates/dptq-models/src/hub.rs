//! timm weights from the Hugging Face hub: `timm/<arch>.<tag>` (`model.safetensors` and
//! `config.json`), read from the local cache first and downloaded with `hf-hub` otherwise.
//!
//! The cache is the one the Python `huggingface_hub` uses: `$HF_HUB_CACHE`, else
//! `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
//! `~/.cache/huggingface/hub`, holding `models--timm--<name>/{refs/main,
//! snapshots/<rev>/<file>, blobs/}`. Cached files are resolved here (hf-hub 0.5's reader
//! does not trim the newline some writers leave after the revision in `refs/main`).
//! `HF_HUB_OFFLINE=1` forbids downloads: a file missing from the cache is then an error
//! naming the repository and the cache folder.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The two files a timm model repository provides.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// See [`WEIGHTS_FILE`].
pub const CONFIG_FILE: &str = "config.json";

/// A timm hub model id: `timm/<arch>.<tag>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubId {
    /// Full repository id (`timm/resnet18.a1_in1k`).
    pub repo: String,
    /// Architecture (`resnet18`).
    pub arch: String,
    /// Pretrained tag (`a1_in1k`), if any.
    pub tag: Option<String>,
}

impl HubId {
    /// Parses `timm/<arch>[.<tag>]`, or `<arch>[.<tag>]` (the `timm/` owner is implied).
    pub fn parse(id: &str) -> Result<Self> {
        let bad = || Error::InvalidConfig {
            what: "hub id",
            detail: format!("{id:?} is not of the form timm/<arch>.<tag>"),
        };
        let (owner, name) = match id.split_once('/') {
            Some((owner, name)) => (owner, name),
            None => ("timm", id),
        };
        if owner.is_empty() || name.is_empty() || name.contains('/') {
            return Err(bad());
        }
        let (arch, tag) = match name.split_once('.') {
            Some((arch, tag)) if !arch.is_empty() && !tag.is_empty() => {
                (arch, Some(tag.to_string()))
            }
            Some(_) => return Err(bad()),
            None => (name, None),
        };
        Ok(Self {
            repo: format!("{owner}/{name}"),
            arch: arch.to_string(),
            tag,
        })
    }
}

/// Where and how to look for files.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// The hub cache folder. Default: from the environment ([`cache_dir_from_env`]).
    pub cache_dir: PathBuf,
    /// Never download. Default: `HF_HUB_OFFLINE` is `1`/`true`/`yes`/`on`.
    pub offline: bool,
    /// Branch, tag or commit. Default `main`.
    pub revision: String,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            cache_dir: cache_dir_from_env(),
            offline: offline_from_env(),
            revision: "main".to_string(),
        }
    }
}

/// The hub cache folder per `HF_HUB_CACHE`, `HF_HOME`, `XDG_CACHE_HOME`, `HOME`.
pub fn cache_dir_from_env() -> PathBuf {
    cache_dir_with(|k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// [`cache_dir_from_env`] with the variables read through `var`.
pub fn cache_dir_with(var: impl Fn(&str) -> Option<PathBuf>) -> PathBuf {
    if let Some(dir) = var("HF_HUB_CACHE") {
        return dir;
    }
    if let Some(home) = var("HF_HOME") {
        return home.join("hub");
    }
    if let Some(xdg) = var("XDG_CACHE_HOME") {
        return xdg.join("huggingface").join("hub");
    }
    var("HOME")
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".cache")
        .join("huggingface")
        .join("hub")
}

/// Whether `HF_HUB_OFFLINE` asks for offline mode.
pub fn offline_from_env() -> bool {
    is_truthy(std::env::var("HF_HUB_OFFLINE").ok().as_deref())
}

/// `1`, `true`, `yes`, `on` (any case) — huggingface_hub's reading of boolean variables.
pub fn is_truthy(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// The cache folder of a model repository: `models--<owner>--<name>`.
pub fn repo_folder(cache_dir: &Path, repo: &str) -> PathBuf {
    cache_dir.join(format!("models--{}", repo.replace('/', "--")))
}

/// The cached copy of `file` of `repo` at `revision`, if present: the revision is resolved
/// through `refs/<revision>` (trimmed; a 40-hex commit is used as is), then
/// `snapshots/<commit>/<file>` must exist (a symlink into `blobs/` or a plain file).
pub fn cached_file(
    cache_dir: &Path,
    repo: &str,
    revision: &str,
    file: &str,
) -> Result<Option<PathBuf>> {
    let folder = repo_folder(cache_dir, repo);
    let is_commit = revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit());
    let commit = if is_commit {
        revision.to_string()
    } else {
        let ref_path = folder.join("refs").join(revision);
        match std::fs::read_to_string(&ref_path) {
            Ok(text) => text.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    path: ref_path,
                    source,
                });
            }
        }
    };
    if commit.is_empty() {
        return Ok(None);
    }
    let path = folder.join("snapshots").join(commit).join(file);
    Ok(path.exists().then_some(path))
}

/// Local paths of a repository's weights and config.
#[derive(Clone, Debug)]
pub struct HubFiles {
    /// `model.safetensors`.
    pub weights: PathBuf,
    /// `config.json`.
    pub config: PathBuf,
}

/// The weights and config of `repo`: from the cache when present, else downloaded into
/// the cache (unless offline).
pub fn fetch(repo: &str, opts: &HubOptions) -> Result<HubFiles> {
    Ok(HubFiles {
        weights: fetch_file(repo, WEIGHTS_FILE, opts)?,
        config: fetch_file(repo, CONFIG_FILE, opts)?,
    })
}

/// One file of `repo`: cached, else downloaded (unless offline).
pub fn fetch_file(repo: &str, file: &str, opts: &HubOptions) -> Result<PathBuf> {
    if let Some(path) = cached_file(&opts.cache_dir, repo, &opts.revision, file)? {
        tracing::debug!("{repo}: {file} from the cache {}", path.display());
        return Ok(path);
    }
    if opts.offline {
        return Err(Error::Hub {
            repo: repo.to_string(),
            detail: format!(
                "{file} is not in the cache {} and HF_HUB_OFFLINE forbids downloading it",
                repo_folder(&opts.cache_dir, repo).display()
            ),
        });
    }
    tracing::info!(
        "{repo}: downloading {file} into {}",
        opts.cache_dir.display()
    );
    let hub_err = |detail: String| Error::Hub {
        repo: repo.to_string(),
        detail,
    };
    let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(opts.cache_dir.clone()))
        .with_progress(false)
        .build()
        .map_err(|e| hub_err(format!("cannot start the client: {e}")))?;
    let repo_handle = hf_hub::Repo::with_revision(
        repo.to_string(),
        hf_hub::RepoType::Model,
        opts.revision.clone(),
    );
    api.repo(repo_handle)
        .download(file)
        .map_err(|e| hub_err(format!("cannot download {file}: {e}")))
}

/// The parts of timm's `config.json` dptq uses.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct HubConfig {
    /// timm architecture name (`resnet18`).
    pub architecture: String,
    /// Classes of the pretrained head.
    pub num_classes: usize,
    /// Class names, when the repository lists them.
    #[serde(default)]
    pub label_names: Option<Vec<String>>,
    /// Preprocessing the weights were trained with.
    pub pretrained_cfg: PretrainedCfg,
}

/// timm's `pretrained_cfg`: the preprocessing that travels with the weights.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PretrainedCfg {
    /// `[C, H, W]` evaluation size.
    pub input_size: [usize; 3],
    /// Fraction of the resized image kept by the center crop (resize to
    /// `floor(size / crop_pct)`, crop `size`). Default 0.875.
    #[serde(default = "default_crop_pct")]
    pub crop_pct: f64,
    /// `bilinear`, `bicubic` or `nearest`. Default `bilinear`.
    #[serde(default = "default_interpolation")]
    pub interpolation: String,
    /// Per-channel mean of the normalisation. Default ImageNet's.
    #[serde(default = "default_mean")]
    pub mean: [f64; 3],
    /// Per-channel standard deviation. Default ImageNet's.
    #[serde(default = "default_std")]
    pub std: [f64; 3],
}

fn default_crop_pct() -> f64 {
    0.875
}
fn default_interpolation() -> String {
    "bilinear".to_string()
}
fn default_mean() -> [f64; 3] {
    [0.485, 0.456, 0.406]
}
fn default_std() -> [f64; 3] {
    [0.229, 0.224, 0.225]
}

impl HubConfig {
    /// Reads a timm `config.json`; errors name the file and the problem.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_parse_with_and_without_owner() -> Result<()> {
        let id = HubId::parse("timm/resnet18.a1_in1k")?;
        assert_eq!(
            (id.repo.as_str(), id.arch.as_str(), id.tag.as_deref()),
            ("timm/resnet18.a1_in1k", "resnet18", Some("a1_in1k"))
        );
        let id = HubId::parse("mobilenetv4_conv_medium.e500_r256_in1k")?;
        assert_eq!(id.repo, "timm/mobilenetv4_conv_medium.e500_r256_in1k");
        assert_eq!(HubId::parse("timm/resnet50")?.tag, None);
        for bad in ["", "timm/", "a/b/c", "timm/.tag", "timm/arch."] {
            assert!(HubId::parse(bad).is_err(), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn cache_folder_follows_the_huggingface_variables_in_order() {
        fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<PathBuf> + 'a {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| PathBuf::from(v))
            }
        }
        let all = [
            ("HF_HUB_CACHE", "/c"),
            ("HF_HOME", "/h"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/u"),
        ];
        assert_eq!(cache_dir_with(env(&all)), PathBuf::from("/c"));
        assert_eq!(cache_dir_with(env(&all[1..])), PathBuf::from("/h/hub"));
        assert_eq!(
            cache_dir_with(env(&all[2..])),
            PathBuf::from("/x/huggingface/hub")
        );
        assert_eq!(
            cache_dir_with(env(&all[3..])),
            PathBuf::from("/u/.cache/huggingface/hub")
        );
        assert!(is_truthy(Some("1")) && is_truthy(Some("TRUE")) && is_truthy(Some(" yes ")));
        assert!(!is_truthy(Some("0")) && !is_truthy(Some("")) && !is_truthy(None));
    }

    #[test]
    fn timm_config_json_is_read_with_its_preprocessing() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"architecture": "resnet18", "num_classes": 1000, "num_features": 512,
               "pretrained_cfg": {"tag": "a1_in1k", "input_size": [3, 224, 224], "interpolation": "bicubic",
               "crop_pct": 0.95, "crop_mode": "center", "mean": [0.485, 0.456, 0.406],
               "std": [0.229, 0.224, 0.225], "num_classes": 1000}}"#,
        )
        .unwrap();
        let cfg = HubConfig::read(&path)?;
        assert_eq!(cfg.architecture, "resnet18");
        assert_eq!(cfg.pretrained_cfg.input_size, [3, 224, 224]);
        assert_eq!(cfg.pretrained_cfg.crop_pct, 0.95);
        assert_eq!(cfg.pretrained_cfg.interpolation, "bicubic");
        std::fs::write(&path, "{\"architecture\": 3}").unwrap();
        let err = HubConfig::read(&path).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
        Ok(())
    }
}
