//! The models train: every parameter receives a gradient, BatchNorm statistics follow
//! `BnMode`, SGD reduces the loss, clones are independent, frozen stores record no graph,
//! and the policy maps images to `[N, L, K]`.

use candle_core::{D, DType, Device, Tensor};
use dptq_models::{
    BnMode, Classifier, ParamStore, PolicyConfig, PolicyNet, QuantPlan, build, seeded,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    Ok(logp.gather(&labels.unsqueeze(1)?, 1)?.neg()?.mean_all()?)
}

fn every_parameter_gets_a_gradient(arch: &str, px: usize) -> Result<()> {
    let store = ParamStore::new(1, DType::F32, &Device::Cpu);
    let model = build(arch, 5, &store)?;
    let xs = Tensor::randn(0f32, 1.0, (2, 3, px, px), &Device::Cpu)?;
    let bits = Tensor::full(4u32, (2, model.quant_layers().len()), &Device::Cpu)?;
    for plan in [QuantPlan::full_precision(), QuantPlan::bits(&bits)] {
        let logits = model.forward(&xs, &plan, BnMode::Train, None)?;
        let grads = logits.sqr()?.sum_all()?.backward()?;
        for (name, var) in store.trainable_vars() {
            assert!(
                grads.get(var.as_tensor()).is_some(),
                "{arch}: {name} gets no gradient"
            );
        }
        for (name, var) in store.buffers() {
            assert!(
                grads.get(var.as_tensor()).is_none(),
                "{arch}: buffer {name} gets a gradient"
            );
        }
    }
    Ok(())
}

#[test]
fn every_resnet_tiny_parameter_gets_a_gradient_fp_and_quantized() -> Result<()> {
    every_parameter_gets_a_gradient("resnet_tiny", 28)
}

#[test]
fn every_regnetx_parameter_gets_a_gradient_fp_and_quantized() -> Result<()> {
    every_parameter_gets_a_gradient("regnetx_002", 64)
}

#[test]
fn every_mobilenetv4_parameter_gets_a_gradient_fp_and_quantized() -> Result<()> {
    every_parameter_gets_a_gradient("mobilenetv4_conv_small", 64)
}

#[test]
fn every_resnet50_parameter_gets_a_gradient_fp_and_quantized() -> Result<()> {
    every_parameter_gets_a_gradient("resnet50", 64)
}

#[test]
fn train_mode_updates_running_statistics_and_the_other_modes_do_not() -> Result<()> {
    let store = ParamStore::new(1, DType::F32, &Device::Cpu);
    let model = build("resnet_tiny", 5, &store)?;
    let xs = (Tensor::randn(0f32, 1.0, (4, 3, 28, 28), &Device::Cpu)? * 3.0)?;
    let snapshot = |s: &ParamStore| -> Result<Vec<Vec<f32>>> {
        s.buffers()
            .iter()
            .map(|(_, v)| Ok(v.as_tensor().to_vec1::<f32>()?))
            .collect()
    };
    let before = snapshot(&store)?;
    model.forward_fp(&xs, BnMode::Eval)?;
    model.forward_fp(&xs, BnMode::TrainFrozenStats)?;
    assert_eq!(snapshot(&store)?, before);
    model.forward_fp(&xs, BnMode::Train)?;
    let after = snapshot(&store)?;
    assert!(
        before.iter().zip(&after).all(|(b, a)| b != a),
        "every buffer moves in train mode"
    );
    Ok(())
}

#[test]
fn batch_statistics_make_train_and_eval_outputs_differ_until_the_stats_converge() -> Result<()> {
    let store = ParamStore::new(2, DType::F32, &Device::Cpu);
    let model = build("resnet_tiny", 5, &store)?;
    let xs = Tensor::randn(0f32, 1.0, (8, 3, 28, 28), &Device::Cpu)?.affine(2.0, 1.0)?;
    let gap = |m: &dyn Classifier| -> Result<f32> {
        let t = m.forward_fp(&xs, BnMode::TrainFrozenStats)?;
        let e = m.forward_fp(&xs, BnMode::Eval)?;
        Ok((t - e)?.abs()?.max_all()?.to_scalar::<f32>()?)
    };
    let first = gap(model.as_ref())?;
    for _ in 0..60 {
        model.forward_fp(&xs, BnMode::Train)?;
    }
    let last = gap(model.as_ref())?;
    assert!(
        last < 0.1 * first,
        "running statistics converge to the batch's: {first} -> {last}"
    );
    Ok(())
}

#[test]
fn sgd_on_a_fixed_batch_reduces_the_loss() -> Result<()> {
    let store = ParamStore::new(3, DType::F32, &Device::Cpu);
    let model = build("resnet_tiny", 4, &store)?;
    let xs = Tensor::randn(0f32, 1.0, (8, 3, 28, 28), &Device::Cpu)?;
    let labels = Tensor::new(&[0u32, 1, 2, 3, 0, 1, 2, 3], &Device::Cpu)?;
    let mut losses = Vec::new();
    for _ in 0..12 {
        let loss = cross_entropy(&model.forward_fp(&xs, BnMode::Train)?, &labels)?;
        losses.push(loss.to_scalar::<f32>()?);
        let grads = loss.backward()?;
        for (_, var) in store.trainable_vars() {
            if let Some(g) = grads.get(var.as_tensor()) {
                var.set(&(var.as_tensor() - (g * 0.5)?)?)?;
            }
        }
    }
    assert!(losses.windows(2).all(|w| w[1] < w[0]), "{losses:?}");
    assert!(losses[11] < 0.7 * losses[0], "{losses:?}");
    Ok(())
}

#[test]
fn a_deep_clone_trains_independently_of_its_source() -> Result<()> {
    let w = ParamStore::new(4, DType::F32, &Device::Cpu);
    let model_w = build("resnet_tiny", 3, &w)?;
    let r = w.deep_clone()?;
    let model_r = build("resnet_tiny", 3, &r)?;
    let xs = Tensor::randn(0f32, 1.0, (2, 3, 28, 28), &Device::Cpu)?;
    let same = (model_w.forward_fp(&xs, BnMode::Eval)? - model_r.forward_fp(&xs, BnMode::Eval)?)?;
    assert_eq!(same.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
    for (_, var) in r.trainable_vars() {
        var.set(&(var.as_tensor() * 0.5)?)?;
    }
    let diff = (model_w.forward_fp(&xs, BnMode::Eval)? - model_r.forward_fp(&xs, BnMode::Eval)?)?;
    assert!(diff.abs()?.max_all()?.to_scalar::<f32>()? > 0.0);
    Ok(())
}

#[test]
fn a_model_on_a_frozen_store_records_no_gradient() -> Result<()> {
    let store = ParamStore::new(4, DType::F32, &Device::Cpu);
    let teacher = build("resnet_tiny", 3, &store.frozen())?;
    let xs = Tensor::randn(0f32, 1.0, (2, 3, 28, 28), &Device::Cpu)?;
    let grads = teacher
        .forward_fp(&xs, BnMode::Eval)?
        .sum_all()?
        .backward()?;
    for (name, var) in store.trainable_vars() {
        assert!(grads.get(var.as_tensor()).is_none(), "{name}");
    }
    Ok(())
}

#[test]
fn the_policy_maps_images_to_layer_by_option_logits_and_learns() -> Result<()> {
    let store = ParamStore::new(5, DType::F32, &Device::Cpu);
    let cfg = PolicyConfig {
        num_layers: 20,
        num_options: 8,
        width: 8,
        input_size: Some(32),
        ..Default::default()
    };
    let policy = PolicyNet::new(&cfg, &store)?;
    let xs = seeded::seeded_images(1, (3, 3, 224, 224), DType::F32, &Device::Cpu)?;
    let out = policy.forward(&xs, BnMode::Train)?;
    assert_eq!(out.dims(), &[3, 20, 8]);
    let grads = out.sqr()?.sum_all()?.backward()?;
    for (name, var) in store.trainable_vars() {
        assert!(grads.get(var.as_tensor()).is_some(), "{name}");
    }
    assert!(
        store
            .shapes()
            .iter()
            .all(|(k, _)| k.starts_with("stages.") || k.starts_with("head."))
    );
    // Natively sized input: no resize.
    let native = PolicyNet::new(
        &PolicyConfig {
            input_size: None,
            ..cfg
        },
        &ParamStore::new(5, DType::F32, &Device::Cpu),
    )?;
    assert_eq!(
        native
            .forward(
                &Tensor::zeros((2, 3, 28, 28), DType::F32, &Device::Cpu)?,
                BnMode::Eval
            )?
            .dims(),
        &[2, 20, 8]
    );
    Ok(())
}
