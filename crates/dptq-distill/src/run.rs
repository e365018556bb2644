//! The run directory: resolved configuration, metrics log, atomic checkpoints.
//!
//! ```text
//! <out>/config.toml                         the resolved configuration (every field)
//! <out>/metrics.jsonl                       one JSON object per logged step / evaluation
//! <out>/checkpoints/<stage>/LATEST          name of the newest complete checkpoint
//! <out>/checkpoints/<stage>/step-<n>/       <part>.safetensors files + state.json
//! <out>/<model>.safetensors                 final weights, timm names
//! <out>/results.json, <out>/report.md       the measured tables
//! ```
//!
//! Every file is written atomically (temporary file in the same directory, fsync,
//! rename, fsync of the directory); a checkpoint directory is complete before `LATEST`
//! names it, so a run killed at any moment resumes from a consistent state.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync of the
/// parent directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid("path", format!("{} has no file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    {
        let mut f = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Directories can be opened and fsynced on Unix; elsewhere this is best effort.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Serialises named tensors to safetensors bytes (keys in sorted order).
pub fn safetensors_bytes(tensors: &BTreeMap<String, Tensor>) -> Result<Vec<u8>> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    safetensors::serialize(cpu, None).map_err(|e| Error::Checkpoint {
        path: PathBuf::new(),
        detail: format!("cannot serialise tensors: {e}"),
    })
}

/// Saves named tensors as a safetensors file, atomically.
pub fn save_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    write_atomic(path, &safetensors_bytes(tensors)?)
}

/// Loads every tensor of a safetensors file onto `device`.
pub fn load_safetensors(path: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let map =
        candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            detail: format!("not a safetensors file: {e}"),
        })?;
    Ok(map.into_iter().collect())
}

/// Where a stage stands when its checkpoint was written. With the run seed this is the
/// whole RNG state of the run (see [`crate::rng`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Stage name (`teacher`, `white_box`, `pairs/<experiment>`).
    pub stage: String,
    /// Completed epochs.
    pub epoch: u64,
    /// Completed optimizer steps since the start of the stage.
    pub step: u64,
    /// Whether the stage is finished.
    pub done: bool,
    /// The run seed the randomness is derived from.
    pub seed: u64,
    /// Stage-specific values (e.g. a running loss), kept as JSON.
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// The files of one run.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Opens (creating it if needed) the run directory at `root`.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        Ok(Self { root })
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `<out>/<name>`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Writes a text file of the run atomically.
    pub fn write_text(&self, name: &str, text: &str) -> Result<()> {
        write_atomic(&self.file(name), text.as_bytes())
    }

    /// Reads a text file of the run, `None` if it does not exist.
    pub fn read_text(&self, name: &str) -> Result<Option<String>> {
        let path = self.file(name);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// The metrics log of the run.
    pub fn metrics(&self) -> MetricsLog {
        MetricsLog {
            path: self.file("metrics.jsonl"),
        }
    }

    fn stage_dir(&self, stage: &str) -> PathBuf {
        self.root.join("checkpoints").join(stage)
    }

    /// Writes a complete checkpoint of `state.stage`: one safetensors file per part
    /// (`model`, `optim`, ...) and `state.json`, in a fresh directory that `LATEST`
    /// then names; older checkpoints of the stage are removed afterwards.
    pub fn save_checkpoint(
        &self,
        state: &CheckpointState,
        parts: &[(&str, &BTreeMap<String, Tensor>)],
    ) -> Result<PathBuf> {
        let stage_dir = self.stage_dir(&state.stage);
        let name = format!("step-{:09}", state.step);
        let tmp = stage_dir.join(format!("{name}.tmp"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        for (part, tensors) in parts {
            save_safetensors(&tmp.join(format!("{part}.safetensors")), tensors)?;
        }
        write_atomic(
            &tmp.join("state.json"),
            serde_json::to_string_pretty(state)?.as_bytes(),
        )?;
        let dst = stage_dir.join(&name);
        if dst.exists() {
            fs::remove_dir_all(&dst).map_err(|e| Error::io(&dst, e))?;
        }
        fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
        sync_dir(&stage_dir)?;
        write_atomic(&stage_dir.join("LATEST"), name.as_bytes())?;
        // Older complete checkpoints are no longer needed.
        for entry in fs::read_dir(&stage_dir).map_err(|e| Error::io(&stage_dir, e))? {
            let entry = entry.map_err(|e| Error::io(&stage_dir, e))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with("step-") && file_name != name {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(dst)
    }

    /// The newest complete checkpoint of `stage`, if any: its state and its parts.
    pub fn load_checkpoint(
        &self,
        stage: &str,
        device: &Device,
    ) -> Result<Option<(CheckpointState, BTreeMap<String, BTreeMap<String, Tensor>>)>> {
        let stage_dir = self.stage_dir(stage);
        let latest = stage_dir.join("LATEST");
        let name = match fs::read_to_string(&latest) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(latest, e)),
        };
        let dir = stage_dir.join(&name);
        let state_path = dir.join("state.json");
        let text = fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
        let state: CheckpointState =
            serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
                path: state_path.clone(),
                detail: format!("bad state: {e}"),
            })?;
        if state.stage != stage {
            return Err(Error::Checkpoint {
                path: state_path,
                detail: format!("holds stage {:?}, expected {stage:?}", state.stage),
            });
        }
        let mut parts = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let path = entry.map_err(|e| Error::io(&dir, e))?.path();
            if path.extension().is_some_and(|e| e == "safetensors") {
                let part = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                parts.insert(part, load_safetensors(&path, device)?);
            }
        }
        Ok(Some((state, parts)))
    }
}

/// `metrics.jsonl`: one JSON object per line, appended as training goes.
#[derive(Debug, Clone)]
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// The file this log appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record (a JSON object) as a line.
    pub fn append(&self, record: &serde_json::Value) -> Result<()> {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        let line = serde_json::to_string(record)?;
        writeln!(f, "{line}").map_err(|e| Error::io(&self.path, e))
    }

    /// Every record of the log, in order (empty if the file does not exist).
    pub fn read(&self) -> Result<Vec<serde_json::Value>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        // A line cut by a kill is dropped, not an error.
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// Keeps only the records `keep` accepts (used on resume to drop what was logged
    /// after the checkpoint the run resumes from), rewriting the file atomically.
    pub fn retain(&self, keep: impl Fn(&serde_json::Value) -> bool) -> Result<()> {
        let records = self.read()?;
        let mut text = String::new();
        for r in records.iter().filter(|r| keep(r)) {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        write_atomic(&self.path, text.as_bytes())
    }
}
