//! Times the building blocks of each stage's step on random 28x28 batches:
//! `cargo run --release -p dptq-distill --example step_timing`.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use dptq_distill::Network;
use dptq_models::{BnMode, QuantPlan};

fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    let t0 = Instant::now();
    for _ in 0..reps {
        f();
    }
    t0.elapsed().as_secs_f64() / reps as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    for arch in ["resnet_tiny", "resnet_small", "resnet_tiny_wide"] {
        let net = Network::new(arch, 10, 1, &dev)?;
        for n in [64usize, 256] {
            let xs = Tensor::randn(0f32, 1.0, (n, 3, 28, 28), &dev)?;
            let fwd_train = time(3, || {
                net.model.forward_fp(&xs, BnMode::Train).unwrap();
            });
            let fwd_bwd = time(3, || {
                let y = net.model.forward_fp(&xs, BnMode::Train).unwrap();
                y.sqr().unwrap().mean_all().unwrap().backward().unwrap();
            });
            let frozen = net.frozen()?;
            let eval = time(3, || {
                frozen.classifier().forward_fp(&xs, BnMode::Eval).unwrap();
            });
            let bits = Tensor::full(4u32, (n, net.model.quant_layers().len()), &dev)?;
            let plan = QuantPlan::bits(&bits);
            let eval_q = time(3, || {
                frozen
                    .classifier()
                    .forward(&xs, &plan, BnMode::Eval, None)
                    .unwrap();
            });
            println!(
                "{arch:18} b{n:3}: train fwd {:6.1} ms, fwd+bwd {:6.1} ms ({:6.0} img/s), eval fwd {:6.1} ms ({:6.0} img/s), eval quantized {:6.1} ms",
                fwd_train * 1e3,
                fwd_bwd * 1e3,
                n as f64 / fwd_bwd,
                eval * 1e3,
                n as f64 / eval,
                eval_q * 1e3
            );
        }
    }
    let _ = DType::F32;
    Ok(())
}
