//! Catastrophic failure in dynamic post-training quantization, in a couple of minutes.
//!
//! This tutorial uses the libraries directly (no CLI) to build the paper's phenomenon at
//! small scale: two copies of one network, each trained jointly with its own bit-width
//! policy, both quantized under the same exact bit budget — one keeps its accuracy, the
//! other collapses, although at full precision the two are indistinguishable.
//!
//! ```sh
//! cargo run --release --example catastrophic_failure
//! ```
//!
//! Steps: (1) open the embedded Fashion-MNIST subset; (2) train a small ResNet `W` with
//! label-smoothing cross-entropy (here `W` plays the white box directly, without the
//! black-box distillation of the full pipeline); (3) copy it into `R` and `D` and train
//! them with fresh policies `pi_R`, `pi_D` under an exact budget of 36 bits over 9 layers
//! (options 3..10 bits); (4) evaluate `W`, `R`, `D` at full precision and quantized by
//! `pi_R`, `pi_D` and a random policy, every example checked against the budget.

use candle_core::Device;
use dptq::distill::{
    CosineSchedule, EvalPolicy, Network, OptimizerConfig, PairSettings, PairTrainer, RunConfig,
    RunData, StageModel, TeacherTrainer, evaluate_cross,
};

/// Runs `epochs` epochs of `model.step` over `loader` with a half-period cosine schedule.
fn train(
    model: &mut dyn StageModel,
    loader: &dptq::data::Loader,
    epochs: u64,
    lr: f64,
    name: &str,
) -> anyhow::Result<()> {
    let per_epoch = loader.len() as u64;
    let schedule = CosineSchedule::new(lr, per_epoch * epochs);
    let mut step = 0;
    for epoch in 0..epochs {
        let mut first = None;
        for batch in loader.epoch(epoch) {
            let scalars = model.step(&batch?, schedule.lr(step), epoch, step)?;
            first.get_or_insert(scalars.clone());
            step += 1;
            if step % 10 == 0 || step == per_epoch * epochs {
                let shown: Vec<String> =
                    scalars.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
                eprintln!(
                    "{name} epoch {epoch} step {step}/{}: {}",
                    per_epoch * epochs,
                    shown.join(", ")
                );
            }
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let device = Device::Cpu;
    // The tiny preset's settings, on a 3,000 / 1,000 example subset to stay fast.
    let cfg = RunConfig::preset("tiny")?
        .set("data.train_limit=3000")?
        .set("data.test_limit=1000")?;
    let data = RunData::open(&cfg.data)?;
    let classes = data.num_classes();

    // (2) The white box W: resnet_tiny (L = 9 quantizable layers) trained on the labels.
    let w = Network::new("resnet_tiny", classes, 1, &device)?;
    let loader = data.train_loader(64, 1, &device)?;
    let mut trainer = TeacherTrainer::new(&w, OptimizerConfig::default(), 0.1)?;
    train(&mut trainer, &loader, 6, 0.1, "W")?;

    // (3) R and D start as copies of W, with fresh policies; W is their frozen teacher.
    let experiment = &cfg.experiments_for("resnet_tiny", w.model.quant_layers().len())?[0];
    println!(
        "budget: exactly {} bits over {} layers, options {:?}",
        experiment.budget, experiment.num_layers, experiment.options
    );
    let w_frozen = w.frozen()?;
    let settings = PairSettings::new(&cfg.pairs, experiment);
    let mut pairs = PairTrainer::new(&w_frozen, &w, &cfg.pairs, settings, None, 2)?;
    let loader = data.train_loader(64, 2, &device)?;
    train(&mut pairs, &loader, 5, 0.1, "R+D")?;

    // (4) Every network under every policy, all on the same budget.
    let [r, d] = &pairs.pairs;
    let (r_frozen, d_frozen) = (r.net.frozen()?, d.net.frozen()?);
    let (pi_r, pi_d) = (r.policy.frozen()?, d.policy.frozen()?);
    let profits = cfg.pairs.profits;
    let eval = evaluate_cross(
        &data.test_loader(256, &device)?,
        &[
            ("W", w_frozen.classifier()),
            ("R", r_frozen.classifier()),
            ("D", d_frozen.classifier()),
        ],
        &[
            (
                "pi_R",
                EvalPolicy::Trained {
                    net: &pi_r,
                    profits,
                },
            ),
            (
                "pi_D",
                EvalPolicy::Trained {
                    net: &pi_d,
                    profits,
                },
            ),
            ("random", EvalPolicy::Random { seed: 3 }),
        ],
        &experiment.options,
        experiment.budget,
        cfg.pairs.weight_bits,
        &dptq::distill::NoProgress,
        "tutorial",
    )?;
    println!("\nnetwork | full precision | pi_R | pi_D | random");
    for net in ["W", "R", "D"] {
        println!(
            "{net:7} | {:14.2} | {:5.2} | {:5.2} | {:6.2}",
            eval.fp_accuracy(net)?,
            eval.quantized_accuracy(net, "pi_R")?,
            eval.quantized_accuracy(net, "pi_D")?,
            eval.quantized_accuracy(net, "random")?
        );
    }
    let (count, pct) = eval.transitory_points("R", "D", "pi_D")?;
    println!(
        "\nR: {:.2} % -> {:.2} % quantized by pi_R; D: {:.2} % -> {:.2} % quantized by pi_D",
        eval.fp_accuracy("R")?,
        eval.quantized_accuracy("R", "pi_R")?,
        eval.fp_accuracy("D")?,
        eval.quantized_accuracy("D", "pi_D")?
    );
    println!(
        "transitory points: {count} examples ({pct:.2} %): right for R and D at full precision, wrong for D quantized"
    );
    println!(
        "bit vectors on budget: {} of {} ({:.0} %)",
        eval.budget_exact,
        eval.budget_checked,
        100.0 * eval.budget_exact_fraction()
    );
    Ok(())
}
