//! Reads contraction networks as JSON on stdin, runs Tessera's path search on each and
//! prints the cost and search time of each as JSON on stdout. Driven by
//! `bench/paths/compare.py`; see `bench/README.md`.
//!
//! Input: `{"budget_ms": 1000, "method": "auto", "networks": [{"name": .., "inputs":
//! [[0, 1], [1, 2]], "output": [0, 2], "sizes": [2, 3, 4]}, ..]}`.
//! Output: one object per network with `name`, `flops`, `largest_intermediate`,
//! `pairs`, `method`, `optimal`, `time_s` (the fastest of up to five runs when a run
//! takes under 50 ms; every run starts without a cache) or `error`.

use serde::{Deserialize, Serialize};
use std::io::Read;
use std::time::{Duration, Instant};
use tessera_compiler::optimize::path::{optimize_path_with_cache, Method, Network, PathOptions};

#[derive(Deserialize)]
struct Input {
    budget_ms: u64,
    #[serde(default)]
    method: Option<String>,
    networks: Vec<NetJson>,
}

#[derive(Deserialize)]
struct NetJson {
    name: String,
    inputs: Vec<Vec<u32>>,
    output: Vec<u32>,
    sizes: Vec<u64>,
}

#[derive(Serialize)]
struct Row {
    name: String,
    flops: Option<f64>,
    largest_intermediate: Option<f64>,
    pairs: Vec<(usize, usize)>,
    method: String,
    optimal: bool,
    time_s: f64,
    error: Option<String>,
}

fn method_of(name: Option<&str>) -> Result<Method, String> {
    match name.unwrap_or("auto") {
        "auto" => Ok(Method::Auto),
        "optimal" => Ok(Method::Optimal),
        "branch-bound" => Ok(Method::BranchBound),
        "greedy" => Ok(Method::Greedy),
        "random-greedy" => Ok(Method::RandomGreedy {
            trials: 128,
            seed: 0,
        }),
        other => Err(format!("unknown method {other:?}")),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let input: Input = serde_json::from_str(&text)?;
    let opts = PathOptions {
        method: method_of(input.method.as_deref())?,
        time_budget: Duration::from_millis(input.budget_ms),
        max_intermediate: None,
    };
    let mut rows = Vec::new();
    for nj in input.networks {
        let net = Network {
            inputs: nj.inputs,
            output: nj.output,
            sizes: nj.sizes,
        };
        let mut best: Option<Duration> = None;
        let mut result = None;
        for _ in 0..5 {
            let t0 = Instant::now();
            let r = optimize_path_with_cache(&net, &opts, None);
            let dt = t0.elapsed();
            best = Some(best.map_or(dt, |b| b.min(dt)));
            result = Some(r);
            if dt > Duration::from_millis(50) {
                break;
            }
        }
        let time_s = best.unwrap_or_default().as_secs_f64();
        let row = match result {
            Some(Ok(p)) => Row {
                name: nj.name,
                flops: Some(p.flops),
                largest_intermediate: Some(p.largest_intermediate),
                pairs: p.pairs,
                method: p.method.to_string(),
                optimal: p.optimal,
                time_s,
                error: None,
            },
            Some(Err(e)) => Row {
                name: nj.name,
                flops: None,
                largest_intermediate: None,
                pairs: Vec::new(),
                method: String::new(),
                optimal: false,
                time_s,
                error: Some(e.to_string()),
            },
            None => continue,
        };
        eprintln!(
            "{:<28} {:>12.4e} flops  {:>9.4} s  {}",
            row.name,
            row.flops.unwrap_or(f64::NAN),
            row.time_s,
            row.method
        );
        rows.push(row);
    }
    println!("{}", serde_json::to_string(&rows)?);
    Ok(())
}
