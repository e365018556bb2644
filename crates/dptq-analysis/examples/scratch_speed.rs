use candle_core::{DType, Device, Tensor};
use dptq_models::*;
fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let store = ParamStore::new(0, DType::F32, &dev);
    let m = build("resnet_tiny", 10, &store)?;
    let fm = build("resnet_tiny", 10, &store.frozen())?;
    let l = m.quant_layers().len();
    println!("L = {l}: {:?}", m.quant_layers());
    let xs = Tensor::randn(0f32, 1.0, (256, 3, 28, 28), &dev)?;
    let bits = Tensor::from_vec(vec![4u32; 256 * l], (256, l), &dev)?;
    for _ in 0..2 {
        let t = std::time::Instant::now();
        for _ in 0..5 {
            fm.forward_fp(&xs, BnMode::Eval)?;
        }
        println!("fp frozen: {:.1} ms", t.elapsed().as_secs_f64() * 200.0);
        let t = std::time::Instant::now();
        for _ in 0..5 {
            m.forward_fp(&xs, BnMode::Eval)?;
        }
        println!("fp var: {:.1} ms", t.elapsed().as_secs_f64() * 200.0);
        let t = std::time::Instant::now();
        for _ in 0..5 {
            fm.forward(&xs, &QuantPlan::bits(&bits), BnMode::Eval, None)?;
        }
        println!("q frozen: {:.1} ms", t.elapsed().as_secs_f64() * 200.0);
    }
    Ok(())
}
