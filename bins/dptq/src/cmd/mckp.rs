//! `dptq mckp`: solve exact-budget bit allocations given as JSON.
//!
//! Request (stdin, or `--input FILE`):
//!
//! ```json
//! {"options": [3, 4, 5, 6, 7, 8, 9, 10], "budget": 80, "mode": "exact",
//!  "profits": [[[0.1, 0.5, ...], ...], ...]}
//! ```
//!
//! `profits` is `[N][L][K]` (examples, layers, options); `mode` is `"exact"` (the total bits
//! of every example equal `budget`; the default) or `"at_most"`. Response on stdout:
//!
//! ```json
//! {"bits": [[...]], "choices": [[...]], "profit": [...]}
//! ```
//!
//! `bits` and `choices` are `[N][L]` (the chosen option and its index), `profit` `[N]` (the
//! total profit, summed from the last layer to the first). An infeasible budget or a
//! malformed request prints one line on stderr, nothing on stdout, and exits with status 2.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use dptq_mckp::{Mode, Problem, SolverBuilder};
use serde::{Deserialize, Serialize};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Read the request from this file instead of stdin.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Indent the JSON response.
    #[arg(long)]
    pretty: bool,
}

/// The request: bit options, budget, mode and the scores of every example.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The `K` bit-width options (item weights), shared by every layer.
    pub options: Vec<u32>,
    /// Total bits per example.
    pub budget: u64,
    /// `exact` (default) or `at_most`.
    #[serde(default)]
    pub mode: ModeArg,
    /// Scores `[N][L][K]`.
    pub profits: Vec<Vec<Vec<f64>>>,
}

/// [`Mode`] as spelled in JSON.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeArg {
    /// `sum of bits == budget`.
    #[default]
    Exact,
    /// `sum of bits <= budget`.
    AtMost,
}

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::Exact => Mode::Exact,
            ModeArg::AtMost => Mode::AtMost,
        }
    }
}

/// The response: chosen bits, option indices and total profit of every example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// `[N][L]` chosen bit-widths.
    pub bits: Vec<Vec<u32>>,
    /// `[N][L]` chosen option indices.
    pub choices: Vec<Vec<u32>>,
    /// `[N]` total profits.
    pub profit: Vec<f64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let text = match &args.input {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
            text
        }
    };
    let request: Request = serde_json::from_str(&text).context("malformed request")?;
    let response = solve(&request)?;
    let out = if args.pretty {
        serde_json::to_string_pretty(&response)?
    } else {
        serde_json::to_string(&response)?
    };
    println!("{out}");
    Ok(())
}

/// Solve every example of `request` exactly (in parallel over the examples).
pub fn solve(request: &Request) -> anyhow::Result<Response> {
    let (n, k) = (request.profits.len(), request.options.len());
    let Some(first) = request.profits.first() else {
        return Ok(Response {
            bits: vec![],
            choices: vec![],
            profit: vec![],
        });
    };
    let layers = first.len();
    let mut flat = Vec::with_capacity(n * layers * k);
    for (e, example) in request.profits.iter().enumerate() {
        if example.len() != layers {
            bail!(
                "profits[{e}] has {} layers, profits[0] has {layers}",
                example.len()
            );
        }
        for (l, scores) in example.iter().enumerate() {
            if scores.len() != k {
                bail!(
                    "profits[{e}][{l}] has {} values, expected {k} (one per option)",
                    scores.len()
                );
            }
            flat.extend_from_slice(scores);
        }
    }
    let problem = Problem::uniform(
        &request.options,
        layers,
        request.budget,
        request.mode.into(),
    )?;
    let batch = SolverBuilder::new()
        .build::<f64>(&problem)?
        .par_solve_batch(&flat)?;
    let choices: Vec<Vec<u32>> = batch.choices.chunks(layers).map(<[u32]>::to_vec).collect();
    let bits = choices
        .iter()
        .map(|c| c.iter().map(|&j| request.options[j as usize]).collect())
        .collect();
    Ok(Response {
        bits,
        choices,
        profit: batch.profits,
    })
}
