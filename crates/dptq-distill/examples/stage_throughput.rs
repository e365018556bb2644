//! Throughput of each stage's training step on the tiny preset, and where the stage-2
//! step spends its time: `cargo run --release -p dptq-distill --example stage_throughput [reps]`.
//!
//! Stage 0: a teacher step (resnet_small, label-smoothing CE). Stage 1: a distillation
//! step (teacher forward on a mixed-up batch + resnet_tiny forward/backward). Stage 2:
//! teacher forward + for R and D: policy, MCKP, FP and quantized student passes,
//! backward, updates. Every number is a median over `reps` repetitions (default 15)
//! measured in this process on the same batch; the stage-2 shares are medians of ratios
//! between steps run back to back.

use std::time::Instant;

use candle_core::Device;
use dptq_distill::{
    Network, Optimizer, PairSettings, PairTrainer, RunConfig, RunData, StageModel, TeacherTrainer,
    WhiteBoxTrainer, profile_pair_step,
};

/// The fastest of `reps` timed steps after one warm-up step.
fn per_step(
    reps: usize,
    mut step: impl FnMut() -> dptq_distill::Result<()>,
) -> dptq_distill::Result<f64> {
    step()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        step()?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reps: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(15);
    let cfg = RunConfig::preset("tiny")?;
    let dev = Device::Cpu;
    let data = RunData::open(&cfg.data)?;
    let classes = data.num_classes();
    let batch = data
        .train_loader(cfg.pairs.train.batch_size, 0, &dev)?
        .batch(0, 0)?;
    let n = batch.indices.len() as f64;

    let teacher = Network::new(&cfg.teacher.arch, classes, 1, &dev)?;
    let mut t0 = TeacherTrainer::new(
        &teacher,
        cfg.teacher.train.optimizer.clone(),
        cfg.teacher.label_smoothing,
    )?;
    let s0 = per_step(reps, || t0.step(&batch, 0.0, 0, 0).map(|_| ()))?;

    let black_box = teacher.frozen()?;
    let student = Network::new(&cfg.white_box.students[0], classes, 2, &dev)?;
    let mut t1 = WhiteBoxTrainer {
        teacher: &black_box,
        student: &student,
        opt: Optimizer::new(cfg.white_box.train.optimizer.clone())?,
        temperature: cfg.white_box.temperature,
        mixup_alpha: cfg.white_box.mixup_alpha,
    };
    let s1 = per_step(reps, || t1.step(&batch, 0.0, 0, 0).map(|_| ()))?;

    let w = student.frozen()?;
    let exp = &cfg.experiments_for(&student.arch, student.model.quant_layers().len())?[0];
    let mut t2 = PairTrainer::new(
        &w,
        &student,
        &cfg.pairs,
        PairSettings::new(&cfg.pairs, exp),
        None,
        3,
    )?;
    let profile = profile_pair_step(&mut t2, &batch, reps)?;

    println!("| stage | step | ms / step | images/s |");
    println!("|---|---|---|---|");
    println!(
        "| 0 | {} teacher, label-smoothing CE | {:.0} | {:.0} |",
        cfg.teacher.arch,
        s0 * 1e3,
        n / s0
    );
    println!(
        "| 1 | black-box KD into {} (teacher forward + student) | {:.0} | {:.0} |",
        student.arch,
        s1 * 1e3,
        n / s1
    );
    println!(
        "| 2 | R + D pairs (teacher + 2 x (policy, MCKP, FP and quantized passes, backward)) | {:.0} | {:.0} |",
        profile.step_seconds * 1e3,
        profile.images_per_second()
    );
    println!(
        "\nstage 2, batch {}: MCKP {:.2} % of the step, fake quantization {:.1} % (step with the quantized passes at full precision: {:.0} ms)",
        profile.batch_size,
        100.0 * profile.mckp_share,
        100.0 * profile.fake_quant_share,
        profile.step_without_fake_quant_seconds * 1e3
    );
    let t = &profile.times;
    let total = t.total();
    println!(
        "breakdown: teacher {:.1} %, policies {:.1} %, MCKP {:.2} %, FP passes {:.1} %, quantized passes {:.1} %, losses + backward {:.1} %, updates {:.1} %",
        100.0 * t.teacher / total,
        100.0 * t.policy / total,
        100.0 * t.mckp / total,
        100.0 * t.student_fp / total,
        100.0 * t.student_quantized / total,
        100.0 * t.backward / total,
        100.0 * t.optimizer / total
    );
    Ok(())
}
