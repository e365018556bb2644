use dptq_analysis::*;
fn main() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap());
    let mut o = AnalysisOptions::default();
    o.sweep.train_examples = 100;
    o.sweep.test_examples = 100;
    o.hist.examples = 100;
    o.corrupt.examples = 100;
    o.corrupt.seeds = 2;
    o.corrupt.degrees = vec![0.0, 2.0, 4.0];
    let t = std::time::Instant::now();
    let s = analyze_run(&dir, &o, &dptq_distill::NoProgress)?;
    println!("{:.1} s {:?}", t.elapsed().as_secs_f64(), s.seconds);
    Ok(())
}
