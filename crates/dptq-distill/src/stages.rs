//! Stage 0 (teacher fine-tune) and stage 1 (black-box distillation into a white box).

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor};
use dptq_data::Batch;
use dptq_models::{BnMode, Classifier, LoadOptions, ParamStore};

use crate::error::{Error, Result};
use crate::loss::{kd_loss, label_smoothing_ce};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::trainer::{Part, StageModel};

/// A teacher that can only be queried: images in, logits out. No weights, no gradients
/// (SPEC §2: the teacher of stage 1 is a black box).
pub trait BlackBox {
    /// Logits of a batch: images `[N, 3, H, W]` -> `[N, C]`, detached.
    fn logits(&self, images: &Tensor) -> Result<Tensor>;
}

/// A classifier served as a black box: full precision, running BatchNorm statistics,
/// built on a frozen (detached) parameter view so that no graph is recorded.
pub struct FrozenModel {
    model: Box<dyn Classifier>,
}

impl FrozenModel {
    /// Serves `arch` with the weights of `store` (read through [`ParamStore::frozen`]).
    pub fn new(arch: &str, num_classes: usize, store: &ParamStore) -> Result<Self> {
        let model = dptq_models::build(arch, num_classes, &store.frozen())?;
        Ok(Self { model })
    }

    /// The wrapped classifier (for evaluation code that is allowed to see it).
    pub fn classifier(&self) -> &dyn Classifier {
        self.model.as_ref()
    }
}

impl BlackBox for FrozenModel {
    fn logits(&self, images: &Tensor) -> Result<Tensor> {
        Ok(self.model.forward_fp(images, BnMode::Eval)?.detach())
    }
}

/// A classifier with its parameters: what every stage produces.
pub struct Network {
    /// Architecture name.
    pub arch: String,
    /// Number of classes.
    pub num_classes: usize,
    /// Parameters and BatchNorm buffers (timm names).
    pub store: ParamStore,
    /// The model built on `store` (gradients flow into the store's variables).
    pub model: Box<dyn Classifier>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("arch", &self.arch)
            .field("num_classes", &self.num_classes)
            .field("tensors", &self.store.len())
            .finish()
    }
}

impl Network {
    /// A freshly initialised network, seeded.
    pub fn new(arch: &str, num_classes: usize, seed: u64, device: &Device) -> Result<Self> {
        let store = ParamStore::new(seed, DType::F32, device);
        let model = dptq_models::build(arch, num_classes, &store)?;
        Ok(Self {
            arch: arch.to_string(),
            num_classes,
            store,
            model,
        })
    }

    /// An independent copy (W -> R, D): same values, its own variables.
    pub fn deep_clone(&self) -> Result<Self> {
        let store = self.store.deep_clone()?;
        let model = dptq_models::build(&self.arch, self.num_classes, &store)?;
        Ok(Self {
            arch: self.arch.clone(),
            num_classes: self.num_classes,
            store,
            model,
        })
    }

    /// A black-box view of the current weights (shares the values, records no graph).
    pub fn frozen(&self) -> Result<FrozenModel> {
        FrozenModel::new(&self.arch, self.num_classes, &self.store)
    }

    /// Every tensor by timm name.
    pub fn tensors(&self) -> Part {
        self.store.tensors()
    }

    /// Overwrites every tensor (strict key and shape checks).
    pub fn set_tensors(&self, tensors: &Part, origin: &str) -> Result<()> {
        let map: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.store
            .set_tensors(&map, origin, &LoadOptions::default())?;
        Ok(())
    }
}

/// Takes one optimizer step on every trainable variable of `store`.
pub(crate) fn apply(
    opt: &mut Optimizer,
    store: &ParamStore,
    grads: &candle_core::backprop::GradStore,
    lr: f64,
) -> Result<usize> {
    let vars = store.trainable_vars();
    opt.step(vars.iter().map(|(n, v)| (n.as_str(), v)), grads, lr)
}

fn take(parts: &mut BTreeMap<String, Part>, name: &str) -> Result<Part> {
    parts.remove(name).ok_or_else(|| Error::Checkpoint {
        path: name.into(),
        detail: format!("the checkpoint has no part {name:?}"),
    })
}

/// Stage 0: cross-entropy with label smoothing on the labels.
pub struct TeacherTrainer<'a> {
    /// The network being trained.
    pub net: &'a Network,
    /// Its optimizer.
    pub opt: Optimizer,
    /// Label smoothing `ε`.
    pub smoothing: f64,
}

impl<'a> TeacherTrainer<'a> {
    /// A trainer for `net` with a fresh optimizer.
    pub fn new(net: &'a Network, optimizer: OptimizerConfig, smoothing: f64) -> Result<Self> {
        Ok(Self {
            net,
            opt: Optimizer::new(optimizer)?,
            smoothing,
        })
    }
}

impl StageModel for TeacherTrainer<'_> {
    fn parts(&self) -> Result<Vec<(String, Part)>> {
        Ok(model_and_optimizer_parts(self.net, &self.opt))
    }

    fn restore(&mut self, parts: BTreeMap<String, Part>) -> Result<()> {
        restore_model_and_optimizer(self.net, &mut self.opt, parts)
    }

    fn step(
        &mut self,
        batch: &Batch,
        lr: f64,
        _epoch: u64,
        _step: u64,
    ) -> Result<Vec<(&'static str, f64)>> {
        let logits = self.net.model.forward_fp(&batch.images, BnMode::Train)?;
        let loss = label_smoothing_ce(&logits, &batch.labels, self.smoothing)?;
        let grads = loss.backward()?;
        apply(&mut self.opt, &self.net.store, &grads, lr)?;
        let acc = batch_accuracy(&logits, &batch.labels)?;
        Ok(vec![
            ("loss", loss.to_scalar::<f32>()? as f64),
            ("train_acc", acc),
        ])
    }
}

/// The checkpoint of a one-network stage: its tensors (`model`) and its optimizer's state
/// (`optim`).
fn model_and_optimizer_parts(net: &Network, opt: &Optimizer) -> Vec<(String, Part)> {
    vec![
        ("model".into(), net.tensors()),
        ("optim".into(), opt.state().clone()),
    ]
}

/// Restores what [`model_and_optimizer_parts`] saved.
fn restore_model_and_optimizer(
    net: &Network,
    opt: &mut Optimizer,
    mut parts: BTreeMap<String, Part>,
) -> Result<()> {
    net.set_tensors(&take(&mut parts, "model")?, "checkpoint part model")?;
    let device = net.store.device().clone();
    opt.load_state(take(&mut parts, "optim")?, &device)
}

/// Fraction of rows of `logits` whose argmax is the label.
pub(crate) fn batch_accuracy(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    let pred = logits.argmax(1)?.to_vec1::<u32>()?;
    let labels = labels.to_vec1::<u32>()?;
    let correct = pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
    Ok(correct as f64 / labels.len().max(1) as f64)
}

/// Stage 1: "patient and consistent" distillation from a black box (SPEC §2): teacher and
/// student see the same augmented, mixed-up batch; the loss is `L_KD` alone (no labels).
pub struct WhiteBoxTrainer<'a> {
    /// The teacher, queried for logits only.
    pub teacher: &'a dyn BlackBox,
    /// The randomly initialised student.
    pub student: &'a Network,
    /// Its optimizer.
    pub opt: Optimizer,
    /// KD temperature.
    pub temperature: f64,
    /// Mixup `alpha` (0: off).
    pub mixup_alpha: f64,
}

impl StageModel for WhiteBoxTrainer<'_> {
    fn parts(&self) -> Result<Vec<(String, Part)>> {
        Ok(model_and_optimizer_parts(self.student, &self.opt))
    }

    fn restore(&mut self, parts: BTreeMap<String, Part>) -> Result<()> {
        restore_model_and_optimizer(self.student, &mut self.opt, parts)
    }

    fn step(
        &mut self,
        batch: &Batch,
        lr: f64,
        _epoch: u64,
        _step: u64,
    ) -> Result<Vec<(&'static str, f64)>> {
        // The mixup draw comes from the batch's own seed: (run seed, epoch, batch index).
        let (images, _mix) = batch.mixup(self.mixup_alpha)?;
        let t = self.teacher.logits(&images)?;
        let s = self.student.model.forward_fp(&images, BnMode::Train)?;
        let loss = kd_loss(&t, &s, self.temperature)?;
        let grads = loss.backward()?;
        apply(&mut self.opt, &self.student.store, &grads, lr)?;
        let agree = batch_accuracy(&s, &t.argmax(1)?)?;
        Ok(vec![
            ("kd", loss.to_scalar::<f32>()? as f64),
            ("teacher_agreement", agree),
        ])
    }
}
