//! What a `QuantPlan` does to a forward pass: bits, per-layer bits, straight-through
//! selections, masks, weight bits, capture, and the errors of malformed plans.

use candle_core::{DType, Device, Tensor, Var};
use dptq_models::{
    ActivationCapture, ActivationPlan, BnMode, Classifier, ParamStore, QuantPlan, build,
};
use dptq_quant::ExampleBits;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn tiny(dtype: DType) -> Result<(ParamStore, Box<dyn Classifier>)> {
    let store = ParamStore::new(5, dtype, &Device::Cpu);
    let model = build("resnet_tiny", 10, &store)?;
    // Non-trivial BN parameters and statistics (timm zero-initialises the last BN).
    let state = dptq_models::seeded::seeded_state_dict(9, &store)?;
    store.set_tensors(&state, "seeded", &Default::default())?;
    Ok((store, model))
}

fn images(n: usize) -> Result<Tensor> {
    Ok(dptq_models::seeded::seeded_images(
        3,
        (n, 3, 28, 28),
        DType::F64,
        &Device::Cpu,
    )?)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    Ok((a - b)?
        .abs()?
        .max_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
}

fn bits_tensor(rows: &[Vec<u32>]) -> Result<Tensor> {
    let n = rows.len();
    let l = rows[0].len();
    Ok(Tensor::from_vec(rows.concat(), (n, l), &Device::Cpu)?)
}

#[test]
fn masking_every_layer_gives_the_full_precision_logits() -> Result<()> {
    let (_, model) = tiny(DType::F64)?;
    let xs = images(3)?;
    let bits = bits_tensor(&[vec![3; 9], vec![4; 9], vec![5; 9]])?;
    let mask = vec![false; 9];
    let plan = QuantPlan {
        weight_bits: None,
        ..QuantPlan::bits(&bits)
    }
    .with_mask(&mask);
    let masked = model.forward(&xs, &plan, BnMode::Eval, None)?;
    let fp = model.forward_fp(&xs, BnMode::Eval)?;
    assert_eq!(max_abs_diff(&masked, &fp)?, 0.0);
    let unmasked = model.forward(
        &xs,
        &QuantPlan {
            weight_bits: None,
            ..QuantPlan::bits(&bits)
        },
        BnMode::Eval,
        None,
    )?;
    assert!(max_abs_diff(&unmasked, &fp)? > 1e-3);
    Ok(())
}

#[test]
fn per_layer_bits_and_the_bits_tensor_agree() -> Result<()> {
    let (_, model) = tiny(DType::F64)?;
    let xs = images(2)?;
    let rows = vec![
        (0..9).map(|l| 3 + l as u32 % 6).collect::<Vec<_>>(),
        (0..9).map(|l| 8 - l as u32 % 5).collect(),
    ];
    let bits = bits_tensor(&rows)?;
    let per_layer: Vec<ExampleBits> = (0..9)
        .map(|l| ExampleBits::PerExample(vec![Some(rows[0][l]), Some(rows[1][l])]))
        .collect();
    let a = model.forward(&xs, &QuantPlan::bits(&bits), BnMode::Eval, None)?;
    let plan = QuantPlan {
        activations: ActivationPlan::LayerBits(&per_layer),
        ..QuantPlan::bits(&bits)
    };
    let b = model.forward(&xs, &plan, BnMode::Eval, None)?;
    assert_eq!(max_abs_diff(&a, &b)?, 0.0);
    Ok(())
}

#[test]
fn an_example_left_at_full_precision_keeps_its_full_precision_logits() -> Result<()> {
    let (_, model) = tiny(DType::F64)?;
    let xs = images(2)?;
    let per_layer: Vec<ExampleBits> = (0..9)
        .map(|_| ExampleBits::PerExample(vec![None, Some(3)]))
        .collect();
    let plan = QuantPlan {
        activations: ActivationPlan::LayerBits(&per_layer),
        ..QuantPlan::full_precision()
    };
    let q = model.forward(&xs, &plan, BnMode::Eval, None)?;
    let fp = model.forward_fp(&xs, BnMode::Eval)?;
    assert!(max_abs_diff(&q.get(0)?, &fp.get(0)?)? < 1e-12);
    assert!(max_abs_diff(&q.get(1)?, &fp.get(1)?)? > 1e-3);
    Ok(())
}

#[test]
fn a_one_hot_selection_forwards_exactly_the_chosen_bits_and_trains_the_selection() -> Result<()> {
    let (store, model) = tiny(DType::F64)?;
    let xs = images(2)?;
    let options = [3u32, 4, 6, 8];
    let choice: Vec<usize> = (0..18).map(|i| (i * 7) % 4).collect();
    let bits: Vec<u32> = choice.iter().map(|&j| options[j]).collect();
    let bits = Tensor::from_vec(bits, (2, 9), &Device::Cpu)?;
    let one_hot: Vec<f64> = choice
        .iter()
        .flat_map(|&j| (0..4).map(move |k| if k == j { 1.0 } else { 0.0 }))
        .collect();
    let selection = Var::from_tensor(&Tensor::from_vec(one_hot, (2, 9, 4), &Device::Cpu)?)?;
    let by_bits = model.forward(&xs, &QuantPlan::bits(&bits), BnMode::Eval, None)?;
    let by_sel = model.forward(
        &xs,
        &QuantPlan::selection(selection.as_tensor(), &options),
        BnMode::Eval,
        None,
    )?;
    assert!(max_abs_diff(&by_bits, &by_sel)? < 1e-12);
    let grads = by_sel.sqr()?.sum_all()?.backward()?;
    let g = grads
        .get(selection.as_tensor())
        .expect("the selection gets a gradient");
    assert!(g.abs()?.sum_all()?.to_scalar::<f64>()? > 0.0);
    for (name, var) in store.trainable_vars() {
        assert!(
            grads.get(var.as_tensor()).is_some(),
            "{name} gets no gradient through the quantized pass"
        );
    }
    Ok(())
}

#[test]
fn sixteen_bit_weights_barely_move_the_logits_and_four_bit_weights_do() -> Result<()> {
    let (_, model) = tiny(DType::F64)?;
    let xs = images(2)?;
    let fp = model.forward_fp(&xs, BnMode::Eval)?;
    let scale = fp.abs()?.max_all()?.to_scalar::<f64>()?;
    let w16 = QuantPlan {
        weight_bits: Some(16),
        ..QuantPlan::full_precision()
    };
    let w4 = QuantPlan {
        weight_bits: Some(4),
        ..QuantPlan::full_precision()
    };
    let d16 = max_abs_diff(&model.forward(&xs, &w16, BnMode::Eval, None)?, &fp)? / scale;
    let d4 = max_abs_diff(&model.forward(&xs, &w4, BnMode::Eval, None)?, &fp)? / scale;
    assert!(d16 > 0.0 && d16 < 1e-3, "{d16}");
    assert!(d4 > 1e-2, "{d4}");
    Ok(())
}

#[test]
fn capture_records_the_requested_layers_fp_and_quantized() -> Result<()> {
    let (_, model) = tiny(DType::F64)?;
    let xs = images(2)?;
    let bits = bits_tensor(&[vec![3; 9], vec![5; 9]])?;
    let mut capture = ActivationCapture::layers(&[1, 8]);
    model.forward(
        &xs,
        &QuantPlan::bits(&bits),
        BnMode::Eval,
        Some(&mut capture),
    )?;
    assert_eq!(
        capture.iter().map(|c| c.layer).collect::<Vec<_>>(),
        vec![1, 8]
    );
    let c = capture.get(1).expect("layer 1");
    assert_eq!(c.fp.dims(), &[2, 16, 28, 28]);
    assert_eq!(capture.get(8).expect("fc").fp.dims(), &[2, 64]);
    // Example 0 at 3 bits takes at most 8 distinct values; the FP input many more.
    let distinct = |t: &Tensor| -> Result<usize> {
        let mut v = t.flatten_all()?.to_vec1::<f64>()?;
        v.sort_by(f64::total_cmp);
        v.dedup();
        Ok(v.len())
    };
    assert!(distinct(&c.quantized.get(0)?)? <= 8);
    assert!(distinct(&c.quantized.get(1)?)? <= 32);
    assert!(distinct(&c.fp.get(0)?)? > 100);
    Ok(())
}

#[test]
fn malformed_plans_are_errors_naming_n_l_and_k() -> Result<()> {
    let (_, model) = tiny(DType::F64)?;
    let xs = images(2)?;
    let wrong_l = bits_tensor(&[vec![4; 8], vec![4; 8]])?;
    let err = model
        .forward(&xs, &QuantPlan::bits(&wrong_l), BnMode::Eval, None)
        .expect_err("error")
        .to_string();
    assert!(err.contains("[2, 8]") && err.contains("[2, 9]"), "{err}");
    let sel = Tensor::zeros((2, 9, 3), DType::F64, &Device::Cpu)?;
    let options = [4u32, 8];
    let err = model
        .forward(
            &xs,
            &QuantPlan::selection(&sel, &options),
            BnMode::Eval,
            None,
        )
        .expect_err("error");
    assert!(
        err.to_string().contains("[2, 9, 3]") && err.to_string().contains("[2, 9, 2]"),
        "{err}"
    );
    let bits = bits_tensor(&[vec![4; 9], vec![4; 9]])?;
    let mask = [true; 4];
    let err = model
        .forward(
            &xs,
            &QuantPlan::bits(&bits).with_mask(&mask),
            BnMode::Eval,
            None,
        )
        .expect_err("error");
    assert!(
        err.to_string().contains("layer mask") && err.to_string().contains("[9]"),
        "{err}"
    );
    let float_bits = bits.to_dtype(DType::F32)?;
    assert!(
        model
            .forward(&xs, &QuantPlan::bits(&float_bits), BnMode::Eval, None)
            .is_err()
    );
    Ok(())
}
