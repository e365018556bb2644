use dptq_distill::*;
fn main() -> anyhow::Result<()> {
    let mut cfg = RunConfig::preset("tiny")?;
    for s in [
        "data.train_limit=320",
        "data.test_limit=200",
        "teacher.arch=\"resnet_tiny\"",
        "teacher.train.epochs=1",
        "white_box.train.epochs=1",
        "pairs.train.epochs=1",
        "pairs.train.batch_size=32",
        "eval.batch_size=100",
        "eval.teacher=false",
    ] {
        cfg = cfg.set(s)?;
    }
    let out = std::path::PathBuf::from(std::env::args().nth(1).unwrap());
    let t = std::time::Instant::now();
    let r = reproduce(&cfg, &out, false, &NoProgress)?;
    println!(
        "{:.1} s: W {:.1} R {:.1}->{:.1} D {:.1}->{:.1}",
        t.elapsed().as_secs_f64(),
        r.white_box.fp,
        r.robust.fp,
        r.robust.quantized,
        r.detrimental.fp,
        r.detrimental.quantized
    );
    Ok(())
}
