//! A finished run directory, opened: its configuration, its results, its data and, per
//! experiment, the networks W, R, D and the policies pi_R, pi_D (built on frozen stores).
//!
//! The layout is the pipeline's ([`RunLayout`]): `config.toml`, `results.json`,
//! `white_box/<arch>.safetensors`, `pairs/<student>/<version>-<budget>/{robust,
//! detrimental, policy_robust, policy_detrimental}.safetensors`.

use std::path::{Path, PathBuf};

use candle_core::Device;
use dptq_distill::{
    Experiment, ExperimentResult, FrozenModel, Network, Policy, Profits, Results, RunConfig,
    RunData, RunLayout, parse_device,
};
use dptq_models::{Classifier, LoadOptions, PolicyNet};

use crate::error::{Error, Result};

/// A run directory with its configuration, results and data opened.
pub struct RunArtefacts {
    /// The directory.
    pub root: PathBuf,
    /// `config.toml`, resolved.
    pub config: RunConfig,
    /// `results.json`, when present.
    pub results: Option<Results>,
    /// The dataset and the run's pipelines.
    pub data: RunData,
    /// Where the networks run.
    pub device: Device,
    layout: RunLayout,
}

impl std::fmt::Debug for RunArtefacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunArtefacts")
            .field("root", &self.root)
            .field("preset", &self.config.preset)
            .field("results", &self.results.is_some())
            .finish()
    }
}

/// One experiment's networks and policies, ready to evaluate.
pub struct ExperimentModels {
    /// Student, bit options, budget.
    pub experiment: Experiment,
    /// The quantizable layers (timm names, execution order).
    pub layers: Vec<String>,
    /// The white box.
    pub w: FrozenModel,
    /// The robust network.
    pub r: FrozenModel,
    /// The detrimental network.
    pub d: FrozenModel,
    /// The robust policy.
    pub pi_r: PolicyNet,
    /// The detrimental policy.
    pub pi_d: PolicyNet,
    /// How the policies' outputs become MCKP profits.
    pub profits: Profits,
    /// Weight bits of quantized passes.
    pub weight_bits: u32,
}

impl std::fmt::Debug for ExperimentModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExperimentModels")
            .field("experiment", &self.experiment.id())
            .field("layers", &self.layers.len())
            .finish()
    }
}

impl ExperimentModels {
    /// `(name, classifier)` of W, R and D.
    pub fn networks(&self) -> [(&'static str, &dyn Classifier); 3] {
        [
            ("W", self.w.classifier()),
            ("R", self.r.classifier()),
            ("D", self.d.classifier()),
        ]
    }
}

fn read_to_string(path: &Path, what: &str) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Missing {
            what: what.to_string(),
            path: path.to_path_buf(),
        }),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn require(path: &Path, what: &str) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(Error::Missing {
            what: what.to_string(),
            path: path.to_path_buf(),
        })
    }
}

impl RunArtefacts {
    /// Opens the run at `root`. `device` overrides the run's device (`cpu`, `cuda:0`).
    pub fn open(root: impl Into<PathBuf>, device: Option<&str>) -> Result<Self> {
        let root = root.into();
        let config_path = root.join("config.toml");
        let config =
            RunConfig::from_toml(&read_to_string(&config_path, "config.toml")?).map_err(|e| {
                Error::Parse {
                    path: config_path.clone(),
                    detail: e.to_string(),
                }
            })?;
        let layout = RunLayout::new(&root);
        let results_path = layout.results();
        let results = if results_path.is_file() {
            let text = read_to_string(&results_path, "results.json")?;
            Some(
                serde_json::from_str::<Results>(&text).map_err(|e| Error::Parse {
                    path: results_path.clone(),
                    detail: e.to_string(),
                })?,
            )
        } else {
            None
        };
        let device = parse_device(device.unwrap_or(&config.device))?;
        let data = RunData::open(&config.data)?;
        Ok(Self {
            root,
            config,
            results,
            data,
            device,
            layout,
        })
    }

    /// Number of classes of the run's data.
    pub fn num_classes(&self) -> usize {
        self.data.num_classes()
    }

    /// Every experiment of the run (student x bit version x budget), in the pipeline's order.
    pub fn experiments(&self) -> Result<Vec<Experiment>> {
        let mut out = Vec::new();
        for student in &self.config.white_box.students {
            let store = dptq_models::ParamStore::new(0, candle_core::DType::F32, &Device::Cpu);
            let layers = dptq_models::build(student, self.num_classes(), &store)?
                .quant_layers()
                .len();
            out.extend(self.config.experiments_for(student, layers)?);
        }
        Ok(out)
    }

    /// The pipeline's result of `experiment`, if `results.json` has it.
    pub fn result_of(&self, experiment: &Experiment) -> Option<&ExperimentResult> {
        let id = experiment.id();
        self.results
            .as_ref()?
            .experiments
            .iter()
            .find(|e| e.id == id)
    }

    fn load_network(&self, arch: &str, path: &Path, what: &str) -> Result<FrozenModel> {
        require(path, what)?;
        let net = Network::new(arch, self.num_classes(), 0, &self.device)?;
        net.store.load(path, &LoadOptions::default())?;
        Ok(net.frozen()?)
    }

    fn load_policy(&self, experiment: &Experiment, path: &Path, what: &str) -> Result<PolicyNet> {
        require(path, what)?;
        let input = (self.config.pairs.policy_input_size > 0)
            .then_some(self.config.pairs.policy_input_size);
        let policy = Policy::new(
            experiment.num_layers,
            experiment.options.len(),
            self.config.pairs.policy_width,
            input,
            0,
            &self.device,
        )?;
        policy.store.load(path, &LoadOptions::default())?;
        Ok(policy.frozen()?)
    }

    /// Loads the networks and policies of `experiment` (strict key and shape checks).
    pub fn load(&self, experiment: &Experiment) -> Result<ExperimentModels> {
        let arch = &experiment.student;
        let w = self.load_network(arch, &self.layout.white_box(arch), "white-box checkpoint")?;
        let part = |p: &str| self.layout.pair_part(experiment, p);
        let r = self.load_network(arch, &part("robust"), "robust network checkpoint")?;
        let d = self.load_network(arch, &part("detrimental"), "detrimental network checkpoint")?;
        let pi_r = self.load_policy(
            experiment,
            &part("policy_robust"),
            "robust policy checkpoint",
        )?;
        let pi_d = self.load_policy(
            experiment,
            &part("policy_detrimental"),
            "detrimental policy checkpoint",
        )?;
        let layers = w.classifier().quant_layers().to_vec();
        if layers.len() != experiment.num_layers {
            return Err(Error::invalid(
                "experiment",
                format!(
                    "{}: the network has {} quantizable layers, the experiment {}",
                    experiment.id(),
                    layers.len(),
                    experiment.num_layers
                ),
            ));
        }
        Ok(ExperimentModels {
            experiment: experiment.clone(),
            layers,
            w,
            r,
            d,
            pi_r,
            pi_d,
            profits: self.config.pairs.profits,
            weight_bits: self.config.pairs.weight_bits,
        })
    }
}
