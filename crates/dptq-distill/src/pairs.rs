//! Stage 2: policy-aware self-distillation of the robust and detrimental network–policy
//! pairs (SPEC §4, paper Sect. 3.2-3.4).
//!
//! W (the white box) is frozen as teacher; R and D start as copies of W; the policies
//! pi_R and pi_D are fresh. One step of pair X on a batch:
//!
//! 1. `P = pi_X(x)` (`[N, L, K]`), `H = MCKP(P)` with every example costing exactly `B`
//!    bits, straight-through to `P`;
//! 2. `t = W(x)` (FP, running statistics), `s_fp = X(x)` (FP, batch statistics that
//!    update the running statistics), `s_q = X(x)` with 16-bit weights and activations
//!    quantized by `H` (batch statistics, running statistics untouched);
//! 3. `loss = alpha · L_KD(t, s_fp) + beta · L_hinge_X(t, s_q)`; one backward pass gives
//!    the student its gradient from both terms and the policy its gradient from the hinge
//!    term alone (the KD term does not depend on the policy).

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use dptq_data::Batch;
use dptq_mckp::{Mode, select_bits};
use dptq_models::{ActivationPlan, BnMode, ParamStore, PolicyConfig, PolicyNet, QuantPlan};

use crate::config::{Experiment, PairsConfig, Profits, QuantizedPassBn};
use crate::error::{Error, Result};
use crate::loss::{PairKind, hinge_loss, kd_loss, softmax};
use crate::optim::Optimizer;
use crate::stages::{BlackBox, FrozenModel, Network, apply, batch_accuracy};
use crate::trainer::{Part, StageModel};

/// A bit-width policy with its parameters.
pub struct Policy {
    /// Parameters (names `stages.{i}.conv.weight`, `head.weight`, ...).
    pub store: ParamStore,
    /// The CNN built on `store`.
    pub net: PolicyNet,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("config", self.net.config())
            .finish()
    }
}

impl Policy {
    /// A fresh, seeded policy for `num_layers` layers and `num_options` options.
    pub fn new(
        num_layers: usize,
        num_options: usize,
        width: usize,
        input_size: Option<usize>,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let store = ParamStore::new(seed, DType::F32, device);
        let cfg = PolicyConfig {
            num_layers,
            num_options,
            width,
            input_size,
            ..Default::default()
        };
        let net = PolicyNet::new(&cfg, &store)?;
        Ok(Self { store, net })
    }

    /// A view on the same values that records no graph (evaluation).
    pub fn frozen(&self) -> Result<PolicyNet> {
        Ok(PolicyNet::new(self.net.config(), &self.store.frozen())?)
    }
}

/// The knobs of a pair step, fixed for one experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct PairSettings {
    /// Bit options, ascending.
    pub options: Vec<u32>,
    /// Exact bit budget per example.
    pub budget: u32,
    /// Hinge margin.
    pub margin: f64,
    /// Weight of the KD term.
    pub kd_weight: f64,
    /// Weight of the hinge term.
    pub hinge_weight: f64,
    /// KD temperature.
    pub temperature: f64,
    /// Weight bits of the quantized pass.
    pub weight_bits: u32,
    /// Policy output used as MCKP profits.
    pub profits: Profits,
    /// BatchNorm of the quantized pass.
    pub quantized_pass_bn: QuantizedPassBn,
    /// Policy learning rate = student learning rate x this factor.
    pub policy_lr_scale: f64,
    /// Whether the quantized pass quantizes (true). `false` runs it at full precision
    /// (same BatchNorm mode, no policy gradient): only for measuring the cost of fake
    /// quantization in [`profile_pair_step`].
    pub fake_quant: bool,
}

impl PairSettings {
    /// The settings of `experiment` under `cfg`.
    pub fn new(cfg: &PairsConfig, experiment: &Experiment) -> Self {
        Self {
            options: experiment.options.clone(),
            budget: experiment.budget,
            margin: cfg.margin,
            kd_weight: cfg.kd_weight,
            hinge_weight: cfg.hinge_weight,
            temperature: cfg.temperature,
            weight_bits: cfg.weight_bits,
            profits: cfg.profits,
            quantized_pass_bn: cfg.quantized_pass_bn,
            policy_lr_scale: if cfg.policy_lr > 0.0 && cfg.train.lr > 0.0 {
                cfg.policy_lr / cfg.train.lr
            } else {
                1.0
            },
            fake_quant: true,
        }
    }
}

/// Scores `[N, L, K]` -> MCKP profits, as configured.
pub fn profits_of(scores: &Tensor, profits: Profits) -> Result<Tensor> {
    match profits {
        Profits::Logits => Ok(scores.clone()),
        Profits::Softmax => softmax(scores),
    }
}

/// One network–policy pair in training.
pub struct Pair {
    /// Robust or detrimental.
    pub kind: PairKind,
    /// The network (R or D), a copy of W at the start.
    pub net: Network,
    /// Its policy (pi_R or pi_D).
    pub policy: Policy,
    /// The network's optimizer.
    pub opt: Optimizer,
    /// The policy's optimizer.
    pub policy_opt: Optimizer,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("kind", &self.kind)
            .field("net", &self.net)
            .finish()
    }
}

/// Where a stage-2 step spends its time (seconds, summed over steps).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepTimes {
    /// Teacher forward.
    pub teacher: f64,
    /// Policy forwards.
    pub policy: f64,
    /// MCKP bit selection (`select_bits`).
    pub mckp: f64,
    /// Full-precision student passes (forward).
    pub student_fp: f64,
    /// Quantized student passes (forward).
    pub student_quantized: f64,
    /// Losses and the backward pass.
    pub backward: f64,
    /// Optimizer updates.
    pub optimizer: f64,
    /// Steps measured.
    pub steps: u64,
}

impl StepTimes {
    /// Sum of every part.
    pub fn total(&self) -> f64 {
        self.teacher
            + self.policy
            + self.mckp
            + self.student_fp
            + self.student_quantized
            + self.backward
            + self.optimizer
    }
}

/// Stage 2's trainer: both pairs, one teacher.
pub struct PairTrainer<'a> {
    /// W, frozen.
    pub teacher: &'a FrozenModel,
    /// `[robust, detrimental]`.
    pub pairs: [Pair; 2],
    /// The experiment's settings.
    pub settings: PairSettings,
    /// Time spent per part of the step.
    pub times: StepTimes,
}

impl<'a> PairTrainer<'a> {
    /// R and D as copies of `white_box`, fresh seeded policies, fresh optimizers.
    pub fn new(
        teacher: &'a FrozenModel,
        white_box: &Network,
        cfg: &PairsConfig,
        settings: PairSettings,
        policy_input_size: Option<usize>,
        seed: u64,
    ) -> Result<Self> {
        let num_layers = white_box.model.quant_layers().len();
        let k = settings.options.len();
        let device = white_box.store.device().clone();
        let make = |kind: PairKind| -> Result<Pair> {
            let policy_seed =
                crate::rng::derive_seed(seed, &format!("policy_{}", kind.name()), 0, 0);
            Ok(Pair {
                kind,
                net: white_box.deep_clone()?,
                policy: Policy::new(
                    num_layers,
                    k,
                    cfg.policy_width,
                    policy_input_size,
                    policy_seed,
                    &device,
                )?,
                opt: Optimizer::new(cfg.train.optimizer.clone())?,
                policy_opt: Optimizer::new(cfg.train.optimizer.clone())?,
            })
        };
        Ok(Self {
            teacher,
            pairs: [make(PairKind::Robust)?, make(PairKind::Detrimental)?],
            settings,
            times: StepTimes::default(),
        })
    }

    /// One step of one pair on `images` with teacher logits `t`. Returns
    /// `(kd, hinge, fp agreement with the teacher, quantized agreement)`.
    fn pair_step(
        pair: &mut Pair,
        images: &Tensor,
        t: &Tensor,
        lr: f64,
        s: &PairSettings,
        times: &mut StepTimes,
    ) -> Result<[f64; 4]> {
        let losses = pair_losses(pair, images, t, s, times)?;
        let clock = Instant::now();
        let loss = ((&losses.kd * s.kd_weight)? + (&losses.hinge * s.hinge_weight)?)?;
        let grads = loss.backward()?;
        times.backward += clock.elapsed().as_secs_f64();

        let clock = Instant::now();
        apply(&mut pair.opt, &pair.net.store, &grads, lr)?;
        apply(
            &mut pair.policy_opt,
            &pair.policy.store,
            &grads,
            lr * s.policy_lr_scale,
        )?;
        times.optimizer += clock.elapsed().as_secs_f64();

        let target = t.argmax(1)?;
        Ok([
            losses.kd.to_scalar::<f32>()? as f64,
            losses.hinge.to_scalar::<f32>()? as f64,
            batch_accuracy(&losses.student_fp, &target)?,
            batch_accuracy(&losses.student_quantized, &target)?,
        ])
    }
}

/// The two loss terms of a pair step and what they were computed from.
#[derive(Debug, Clone)]
pub struct PairLosses {
    /// `L_KD(t, s_fp)`, scalar.
    pub kd: Tensor,
    /// `L_hinge(t, s_q)` of the pair's kind, scalar.
    pub hinge: Tensor,
    /// Full-precision student logits `[N, C]`.
    pub student_fp: Tensor,
    /// Quantized student logits `[N, C]`.
    pub student_quantized: Tensor,
    /// The selected bits `[N, L]` u32 (every row sums to the budget).
    pub bits: Tensor,
}

/// The forward half of a pair step (SPEC §4): policy, exact-budget MCKP with
/// straight-through selection, the full-precision pass (BN `Train`) and the quantized pass
/// (BN per `s.quantized_pass_bn`, `TrainFrozenStats` by default), and the two losses.
/// Running statistics of the student are updated by the full-precision pass only.
pub fn pair_losses(
    pair: &Pair,
    images: &Tensor,
    t: &Tensor,
    s: &PairSettings,
    times: &mut StepTimes,
) -> Result<PairLosses> {
    let clock = Instant::now();
    let scores = pair.policy.net.forward(images, BnMode::Train)?;
    let profits = profits_of(&scores, s.profits)?;
    times.policy += clock.elapsed().as_secs_f64();

    let clock = Instant::now();
    let (selection, bits) = select_bits(&profits, &s.options, s.budget, Mode::Exact)?;
    times.mckp += clock.elapsed().as_secs_f64();
    check_budget(&bits, s.budget)?;

    let clock = Instant::now();
    let student_fp = pair.net.model.forward_fp(images, BnMode::Train)?;
    times.student_fp += clock.elapsed().as_secs_f64();

    let clock = Instant::now();
    let plan = if s.fake_quant {
        QuantPlan {
            weight_bits: Some(s.weight_bits),
            activations: ActivationPlan::Selection {
                selection: &selection,
                options: &s.options,
            },
            ..QuantPlan::full_precision()
        }
    } else {
        QuantPlan::full_precision()
    };
    let bn_q = match s.quantized_pass_bn {
        QuantizedPassBn::FrozenStats => BnMode::TrainFrozenStats,
        QuantizedPassBn::UpdateStats => BnMode::Train,
        QuantizedPassBn::RunningStats => BnMode::Eval,
    };
    let student_quantized = pair.net.model.forward(images, &plan, bn_q, None)?;
    times.student_quantized += clock.elapsed().as_secs_f64();

    let clock = Instant::now();
    let kd = kd_loss(t, &student_fp, s.temperature)?;
    let hinge = hinge_loss(pair.kind, t, &student_quantized, s.margin)?;
    times.backward += clock.elapsed().as_secs_f64();
    Ok(PairLosses {
        kd,
        hinge,
        student_fp,
        student_quantized,
        bits,
    })
}

/// Errors unless every row of `bits` (`[N, L]` u32) sums to `budget`.
pub fn check_budget(bits: &Tensor, budget: u32) -> Result<usize> {
    let rows = bits.to_dtype(DType::U32)?.to_vec2::<u32>()?;
    let bad = rows
        .iter()
        .filter(|r| r.iter().sum::<u32>() != budget)
        .count();
    if bad > 0 {
        return Err(Error::BudgetViolated {
            budget,
            count: bad,
            total: rows.len(),
        });
    }
    Ok(rows.len())
}

fn take(parts: &mut BTreeMap<String, Part>, name: &str) -> Result<Part> {
    parts.remove(name).ok_or_else(|| Error::Checkpoint {
        path: name.into(),
        detail: format!("the checkpoint has no part {name:?}"),
    })
}

impl StageModel for PairTrainer<'_> {
    fn parts(&self) -> Result<Vec<(String, Part)>> {
        let mut out = Vec::new();
        for p in &self.pairs {
            let k = p.kind.name();
            out.push((k.to_string(), p.net.tensors()));
            out.push((format!("policy_{k}"), p.policy.store.tensors()));
            out.push((format!("optim_{k}"), p.opt.state().clone()));
            out.push((format!("optim_policy_{k}"), p.policy_opt.state().clone()));
        }
        Ok(out)
    }

    fn restore(&mut self, mut parts: BTreeMap<String, Part>) -> Result<()> {
        for p in &mut self.pairs {
            let k = p.kind.name();
            let device = p.net.store.device().clone();
            p.net
                .set_tensors(&take(&mut parts, k)?, &format!("checkpoint part {k}"))?;
            let policy = take(&mut parts, &format!("policy_{k}"))?;
            let map = policy.into_iter().collect();
            p.policy.store.set_tensors(
                &map,
                &format!("checkpoint part policy_{k}"),
                &Default::default(),
            )?;
            p.opt
                .load_state(take(&mut parts, &format!("optim_{k}"))?, &device)?;
            p.policy_opt
                .load_state(take(&mut parts, &format!("optim_policy_{k}"))?, &device)?;
        }
        Ok(())
    }

    fn step(
        &mut self,
        batch: &Batch,
        lr: f64,
        _epoch: u64,
        _step: u64,
    ) -> Result<Vec<(&'static str, f64)>> {
        let images = &batch.images;
        let clock = Instant::now();
        let t = self.teacher.logits(images)?;
        self.times.teacher += clock.elapsed().as_secs_f64();
        let [r, d] = &mut self.pairs;
        let rs = Self::pair_step(r, images, &t, lr, &self.settings, &mut self.times)?;
        let ds = Self::pair_step(d, images, &t, lr, &self.settings, &mut self.times)?;
        self.times.steps += 1;
        Ok(vec![
            ("loss", rs[0] + rs[1] + ds[0] + ds[1]),
            ("robust_kd", rs[0]),
            ("robust_hinge", rs[1]),
            ("robust_fp_agree", rs[2]),
            ("robust_q_agree", rs[3]),
            ("detrimental_kd", ds[0]),
            ("detrimental_hinge", ds[1]),
            ("detrimental_fp_agree", ds[2]),
            ("detrimental_q_agree", ds[3]),
        ])
    }
}

/// Where the time of a stage-2 step goes, measured on one batch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepProfile {
    /// Examples per step.
    pub batch_size: usize,
    /// Median seconds per full step (teacher + both pairs: policy, MCKP, two student
    /// passes, backward, updates).
    pub step_seconds: f64,
    /// Median seconds per step with the quantized passes run at full precision.
    pub step_without_fake_quant_seconds: f64,
    /// Median over repetitions of `MCKP time / step time`.
    pub mckp_share: f64,
    /// Median over repetitions of `1 - t(step at full precision) / t(step)`, each ratio
    /// taken between two steps run back to back.
    pub fake_quant_share: f64,
    /// Breakdown of the full steps, summed over the repetitions.
    pub times: StepTimes,
}

impl StepProfile {
    /// Images per second of the full step.
    pub fn images_per_second(&self) -> f64 {
        self.batch_size as f64 / self.step_seconds
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => 0.5 * (xs[n / 2 - 1] + xs[n / 2]),
    }
}

/// Times `reps` pairs of stage-2 steps on `batch`: a full step, then the same step with
/// the quantized passes at full precision (fake quantization and the policy's gradient
/// path removed), back to back so that each pair sees the same load on a shared machine.
/// The learning rate is 0, so the weights do not move and every repetition computes the
/// same thing. One warm-up pair first. Shares are medians of per-pair ratios.
pub fn profile_pair_step(
    trainer: &mut PairTrainer<'_>,
    batch: &Batch,
    reps: usize,
) -> Result<StepProfile> {
    let quantized = trainer.settings.clone();
    let plain = PairSettings {
        fake_quant: false,
        ..quantized.clone()
    };
    let (mut full, mut without, mut mckp, mut fq) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut times = StepTimes::default();
    for rep in 0..=reps.max(1) {
        trainer.settings = quantized.clone();
        let before = trainer.times.clone();
        let clock = Instant::now();
        trainer.step(batch, 0.0, 0, 0)?;
        let t_full = clock.elapsed().as_secs_f64();
        let after = trainer.times.clone();

        trainer.settings = plain.clone();
        let clock = Instant::now();
        trainer.step(batch, 0.0, 0, 0)?;
        let t_plain = clock.elapsed().as_secs_f64();
        if rep == 0 {
            continue;
        }
        full.push(t_full);
        without.push(t_plain);
        mckp.push((after.mckp - before.mckp) / t_full);
        fq.push(1.0 - t_plain / t_full);
        times.teacher += after.teacher - before.teacher;
        times.policy += after.policy - before.policy;
        times.mckp += after.mckp - before.mckp;
        times.student_fp += after.student_fp - before.student_fp;
        times.student_quantized += after.student_quantized - before.student_quantized;
        times.backward += after.backward - before.backward;
        times.optimizer += after.optimizer - before.optimizer;
        times.steps += 1;
    }
    trainer.settings = quantized;
    Ok(StepProfile {
        batch_size: batch.indices.len(),
        step_seconds: median(full),
        step_without_fake_quant_seconds: median(without),
        mckp_share: median(mckp),
        fake_quant_share: median(fq),
        times,
    })
}
