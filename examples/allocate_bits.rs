//! Tutorial: allocate activation bit-widths to the layers of a network under an exact bit
//! budget, with `dptq-mckp`.
//!
//! Run it with `cargo run --example allocate_bits`.
//!
//! The situation: a network has `L` quantizable layers; every layer can run at one of `K`
//! bit-widths (here 3..=10 bits); a policy scored every (layer, bit-width) pair, higher is
//! better. We want the best-scoring allocation whose bits sum to **exactly** a budget `B`
//! (so that every input costs the same), which is a multiple-choice knapsack: one item
//! (bit-width) per group (layer), weights = bits, profits = scores.

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use dptq::mckp::{Error, Mode, Problem, Solver, SolverBuilder, Weights, select_bits};

/// Scores in [0, 1) from a seeded generator (a stand-in for a policy network's output).
fn scores(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn main() -> Result<()> {
    // ── 1. Describe the problem once ────────────────────────────────────────────────────
    // 20 layers (ResNet18), options 3..=10 bits, 4 bits per layer on average: B = 80.
    let options: Vec<u32> = (3..=10).collect();
    let layers = 20;
    let problem = Problem::uniform(&options, layers, 80, Mode::Exact)?;
    println!("1. {layers} layers, options {options:?}, budget 80 bits (exact)");
    println!("   reachable totals: {:?}", problem.reachable_range());

    // ── 2. Solve one allocation ─────────────────────────────────────────────────────────
    // A solver keeps its buffers: build it once, reuse it for every allocation.
    // Scores are row-major [layer][option].
    let mut solver = Solver::<f32>::new(&problem)?;
    let layer_scores = scores(layers * options.len(), 1);
    let best = solver.solve(&layer_scores)?;
    let bits: Vec<u32> = best.choices.iter().map(|&k| options[k]).collect();
    println!("\n2. best allocation: {bits:?}");
    println!(
        "   total bits {} (== 80), total score {:.4}",
        best.weight, best.profit
    );
    // The unconstrained choice would be the per-layer argmax; the budget forces trades.
    let greedy: u32 = (0..layers)
        .map(|l| {
            let row = &layer_scores[l * 8..(l + 1) * 8];
            let k = (0..8).fold(0, |a, k| if row[k] > row[a] { k } else { a });
            options[k]
        })
        .sum();
    println!("   (the per-layer favourites would cost {greedy} bits)");

    // ── 3. Modes ────────────────────────────────────────────────────────────────────────
    // `Mode::AtMost` allows spending less than the budget; it never scores lower than Exact.
    let at_most = Solver::<f32>::new(&Problem::uniform(&options, layers, 80, Mode::AtMost)?)?
        .solve(&layer_scores)?;
    println!(
        "\n3. at most 80 bits: {} bits, score {:.4} (exact: {:.4})",
        at_most.weight, at_most.profit, best.profit
    );

    // ── 4. Errors are values, not panics or silent fallbacks ───────────────────────────
    println!("\n4. infeasible budgets are typed errors:");
    for (options, budget) in [
        (vec![3, 4, 5, 6, 7, 8, 9, 10], 59u64),
        (vec![2, 4, 8, 16], 81),
    ] {
        match Problem::uniform(&options, layers, budget, Mode::Exact) {
            Err(err @ (Error::BudgetOutOfRange { .. } | Error::BudgetUnreachable { .. })) => {
                println!("   options {options:?}, B = {budget}: {err}")
            }
            other => anyhow::bail!("expected an infeasible budget, got {other:?}"),
        }
    }
    let bad = solver.solve(&[f32::NAN; 160]).unwrap_err();
    println!("   a NaN score: {bad}");

    // ── 5. Per-layer options ────────────────────────────────────────────────────────────
    // Keep the first and last layer at 8 bits or more: one row of options per layer.
    // Rows need the same length, not the same values.
    let rows: Vec<Vec<u32>> = (0..layers)
        .map(|l| {
            if l == 0 || l == layers - 1 {
                vec![8, 8, 9, 9, 10, 10, 10, 10]
            } else {
                options.clone()
            }
        })
        .collect();
    let problem_edges = Problem::new(Weights::per_group(&rows)?, 80, Mode::Exact)?;
    let edges = Solver::<f32>::new(&problem_edges)?.solve(&layer_scores)?;
    let edge_bits: Vec<u32> = edges
        .choices
        .iter()
        .enumerate()
        .map(|(l, &k)| rows[l][k])
        .collect();
    println!(
        "\n5. first/last layer >= 8 bits: {edge_bits:?} ({} bits)",
        edges.weight
    );

    // ── 6. Batches: one allocation per example ──────────────────────────────────────────
    // A policy scores every example differently. Pass all scores as one flat [N, L, K]
    // slice (e.g. straight from a tensor); the batch runs on all cores with rayon and
    // allocates nothing per example.
    let n = 10_000;
    let batch_scores = scores(n * layers * options.len(), 2);
    let mut batch_solver = SolverBuilder::new().build::<f32>(&problem)?;
    let start = std::time::Instant::now();
    let batch = batch_solver.par_solve_batch(&batch_scores)?;
    let elapsed = start.elapsed();
    let mut histogram = [0usize; 11];
    for e in 0..n {
        let choices = batch.choices_of(e).expect("in range");
        let total: u32 = choices.iter().map(|&k| options[k as usize]).sum();
        assert_eq!(total, 80, "every example costs exactly B bits");
        histogram[options[choices[0] as usize] as usize] += 1;
    }
    println!(
        "\n6. {n} examples in {:.1} ms, every one exactly 80 bits",
        elapsed.as_secs_f64() * 1e3
    );
    println!(
        "   layer 0 bit-widths over the batch: {:?}",
        &histogram[3..]
    );
    // To reuse caller buffers instead: solve_batch_into(&scores, &mut choices, &mut totals).

    // ── 7. Training a policy: the straight-through selector (feature `candle`) ──────────
    // `select_bits` returns the one-hot selection H [N, L, K] (exactly 0/1 forward) and the
    // bits [N, L]; gradients flow back to the scores as if selection = (H - P).detach() + P.
    let p = Var::from_tensor(&Tensor::from_vec(
        scores(2 * layers * 8, 3),
        (2, layers, 8),
        &Device::Cpu,
    )?)?;
    let (selection, bits) = select_bits(p.as_tensor(), &options, 80, Mode::Exact)?;
    let grads = selection.sum_all()?.backward()?;
    let grad = grads
        .get(p.as_tensor())
        .expect("the scores receive a gradient");
    println!(
        "\n7. select_bits: bits per example {:?}",
        bits.sum(1)?.to_vec1::<u32>()?
    );
    println!(
        "   forward values {:?}, gradient to the scores = 1 everywhere: {}",
        {
            let mut v = selection.flatten_all()?.to_vec1::<f32>()?;
            v.sort_by(f32::total_cmp);
            v.dedup();
            v
        },
        grad.flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .all(|&g| g == 1.0)
    );
    Ok(())
}
