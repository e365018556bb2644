//! Optimizers keyed by parameter NAME: SGD with momentum and weight decay, and AdamW,
//! both with PyTorch's update rules (`torch.optim.SGD`, `torch.optim.AdamW`).
//!
//! State (momentum buffers, moments, step counts) lives in a `BTreeMap` keyed by the
//! parameter's timm name, so that it is saved, restored and iterated in one stable
//! order (candle's `VarMap::all_vars` is in hash order). A parameter that received no
//! gradient in a step (a BatchNorm running statistic, a frozen tensor, a branch that
//! did not run) is skipped entirely: no decay, no momentum update.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var, backprop::GradStore};

use crate::error::{Error, Result};

/// Which update rule, with its hyper-parameters (the learning rate comes from the
/// schedule at each step).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// `torch.optim.SGD(momentum, weight_decay, dampening=0, nesterov=False)`.
    Sgd {
        /// Momentum factor (SPEC §4: 0.9).
        momentum: f64,
        /// L2 penalty added to the gradient (SPEC §4: 1e-4).
        weight_decay: f64,
    },
    /// `torch.optim.AdamW(betas, eps, weight_decay)`, decoupled weight decay.
    Adamw {
        /// First-moment decay (PyTorch default 0.9).
        beta1: f64,
        /// Second-moment decay (PyTorch default 0.999).
        beta2: f64,
        /// Denominator guard (PyTorch default 1e-8).
        eps: f64,
        /// Decoupled weight decay (ConvNeXt fine-tune recipe: 0.05).
        weight_decay: f64,
    },
}

impl Default for OptimizerConfig {
    /// SGD, momentum 0.9, weight decay 1e-4 (SPEC §4 and §6).
    fn default() -> Self {
        OptimizerConfig::Sgd {
            momentum: 0.9,
            weight_decay: 1e-4,
        }
    }
}

impl OptimizerConfig {
    /// AdamW with PyTorch's defaults and the given decoupled weight decay.
    pub fn adamw(weight_decay: f64) -> Self {
        OptimizerConfig::Adamw {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }

    fn validate(&self) -> Result<()> {
        let ok = match *self {
            OptimizerConfig::Sgd {
                momentum,
                weight_decay,
            } => (0.0..1.0).contains(&momentum) && weight_decay >= 0.0,
            OptimizerConfig::Adamw {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                (0.0..1.0).contains(&beta1)
                    && (0.0..1.0).contains(&beta2)
                    && eps > 0.0
                    && weight_decay >= 0.0
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::invalid("optimizer", format!("{self:?}")))
        }
    }
}

/// An optimizer whose state is keyed by parameter name.
#[derive(Debug, Clone)]
pub struct Optimizer {
    config: OptimizerConfig,
    /// SGD: `momentum/<name>`. AdamW: `exp_avg/<name>`, `exp_avg_sq/<name>`, `step/<name>`.
    state: BTreeMap<String, Tensor>,
}

impl Optimizer {
    /// A fresh optimizer (no state yet: the first step initialises the buffers).
    pub fn new(config: OptimizerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            state: BTreeMap::new(),
        })
    }

    /// The update rule and its hyper-parameters.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// One update of every named parameter that has a gradient in `grads`, with
    /// learning rate `lr`. Returns how many parameters were updated.
    ///
    /// SGD: `g = ∇ + λ·θ;  b = μ·b + g (b = g at first);  θ ← θ - lr·b`.
    ///
    /// AdamW: `θ ← θ·(1 - lr·λ);  m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²;
    /// θ ← θ - lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + ε)`.
    pub fn step<'a, I>(&mut self, params: I, grads: &GradStore, lr: f64) -> Result<usize>
    where
        I: IntoIterator<Item = (&'a str, &'a Var)>,
    {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::invalid("learning rate", format!("{lr}")));
        }
        let mut updated = 0;
        for (name, var) in params {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let theta = var.as_tensor().detach();
            let grad = grad.detach().to_dtype(theta.dtype())?;
            let next = match self.config {
                OptimizerConfig::Sgd {
                    momentum,
                    weight_decay,
                } => {
                    let g = if weight_decay != 0.0 {
                        (grad + (&theta * weight_decay)?)?
                    } else {
                        grad
                    };
                    let update = if momentum != 0.0 {
                        let key = format!("momentum/{name}");
                        let buf = match self.state.get(&key) {
                            Some(b) => ((b * momentum)? + g)?,
                            None => g,
                        };
                        self.state.insert(key, buf.clone());
                        buf
                    } else {
                        g
                    };
                    (theta - (update * lr)?)?
                }
                OptimizerConfig::Adamw {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                } => {
                    let step_key = format!("step/{name}");
                    let t = match self.state.get(&step_key) {
                        Some(s) => s.to_dtype(DType::F64)?.to_scalar::<f64>()? + 1.0,
                        None => 1.0,
                    };
                    let m_key = format!("exp_avg/{name}");
                    let v_key = format!("exp_avg_sq/{name}");
                    let m_prev = match self.state.get(&m_key) {
                        Some(m) => m.clone(),
                        None => grad.zeros_like()?,
                    };
                    let v_prev = match self.state.get(&v_key) {
                        Some(v) => v.clone(),
                        None => grad.zeros_like()?,
                    };
                    let decayed = (&theta * (1.0 - lr * weight_decay))?;
                    let m = ((m_prev * beta1)? + (&grad * (1.0 - beta1))?)?;
                    let v = ((v_prev * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
                    let bc1 = 1.0 - beta1.powf(t);
                    let bc2 = 1.0 - beta2.powf(t);
                    let denom = ((v.sqrt()? / bc2.sqrt())? + eps)?;
                    let next = (decayed - ((&m / denom)? * (lr / bc1))?)?;
                    self.state.insert(m_key, m);
                    self.state.insert(v_key, v);
                    self.state.insert(step_key, Tensor::new(t, &Device::Cpu)?);
                    next
                }
            };
            var.set(&next)?;
            updated += 1;
        }
        Ok(updated)
    }

    /// The optimizer's state as named tensors (for a checkpoint).
    pub fn state(&self) -> &BTreeMap<String, Tensor> {
        &self.state
    }

    /// Replaces the state with one saved by [`Optimizer::state`]; every key must be one
    /// this optimizer writes (`momentum/`, `exp_avg/`, `exp_avg_sq/`, `step/`).
    pub fn load_state(&mut self, state: BTreeMap<String, Tensor>, device: &Device) -> Result<()> {
        let prefixes: &[&str] = match self.config {
            OptimizerConfig::Sgd { .. } => &["momentum/"],
            OptimizerConfig::Adamw { .. } => &["exp_avg/", "exp_avg_sq/", "step/"],
        };
        let mut loaded = BTreeMap::new();
        for (key, tensor) in state {
            if !prefixes.iter().any(|p| key.starts_with(p)) {
                return Err(Error::invalid(
                    "optimizer state",
                    format!("unexpected key {key:?} for {:?}", self.config),
                ));
            }
            let tensor = if key.starts_with("step/") {
                tensor.to_device(&Device::Cpu)?
            } else {
                tensor.to_device(device)?
            };
            loaded.insert(key, tensor);
        }
        self.state = loaded;
        Ok(())
    }
}
