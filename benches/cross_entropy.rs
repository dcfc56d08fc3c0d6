//! Naive (full logits, autodiff) vs chunked (surrogate-gradient) cross-entropy through an LM head,
//! forward + backward, with gradient into both the rows `x` and the head `w` (the TFT case).
//!
//! Two modes:
//! - `cargo bench --bench cross_entropy` — criterion (10 flat samples) on the small points, plus one
//!   peak-memory measurement and a loss-agreement check per point;
//! - `cargo bench --bench cross_entropy -- --table` — a table over tokens 512–4096 × hidden 576/2304
//!   × vocab 49,152/256,000: every point at vocab 49,152, a subset at 256,000 (see [`default_grid`];
//!   ~10 min on 2 cores); `--full` runs all 16 points (~1 h on 2 cores). Each point runs once (twice
//!   when it is cheap, best time kept); the table is printed as Markdown and written with every number
//!   to `target/bench-results/cross_entropy.json`.
//!   Options: `--tokens 512,1024` `--hidden 576` `--vocab 49152` (a grid of these; omitted lists take
//!   every value),
//!   `--chunk-logits N` (ChunkOptions::max_chunk_logits; default the crate's default),
//!   `--naive-limit-gib G` (skip naive points predicted above G GiB; default 12), `--out FILE`.
//!
//! Peak memory is measured by a counting global allocator: live bytes above those held before the call
//! (the inputs `x`, `w`), high-water mark over loss + backward + both gradients.
//! Every point checks that the chunked loss equals the naive one to 1e-5 (relative); where naive is
//! skipped, the reference is the naive loss computed forward-only in 512-row blocks.

mod common;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, ElementConversion, Tensor};
use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use dft_losses::{chunked_ce_sum, naive_ce_sum, ChunkOptions};
use std::hint::black_box;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: common::CountingAlloc = common::CountingAlloc;

type B = Flex;
type AB = Autodiff<Flex>;

const TOL: f64 = 1e-5;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Naive,
    Chunked,
}

/// One forward + backward; returns the loss and the gradient of `x` (for the cross-check).
fn fwd_bwd(
    kind: Kind,
    x0: &Tensor<B, 2>,
    w0: &Tensor<B, 2>,
    targets: &[u32],
    opts: ChunkOptions,
) -> (f64, Tensor<B, 2>) {
    let x = Tensor::<AB, 2>::from_inner(x0.clone()).require_grad();
    let w = Tensor::<AB, 2>::from_inner(w0.clone()).require_grad();
    let loss = match kind {
        Kind::Naive => naive_ce_sum(x.clone(), w.clone(), targets, None),
        Kind::Chunked => chunked_ce_sum(x.clone(), w.clone(), targets, None, opts, true),
    };
    let grads = loss.backward();
    let gx = x.grad(&grads).expect("grad x");
    let gw = w.grad(&grads).expect("grad w");
    black_box(&gw);
    (loss.into_scalar().elem::<f64>(), gx)
}

struct Measured {
    loss: f64,
    secs: f64,
    peak_bytes: usize,
    grad_x: Vec<f32>,
}

/// `reps` runs; the best time, the peak of the first run (every run allocates the same).
fn measure(
    kind: Kind,
    x0: &Tensor<B, 2>,
    w0: &Tensor<B, 2>,
    targets: &[u32],
    opts: ChunkOptions,
    reps: usize,
) -> Measured {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..reps.max(1) {
        common::reset_peak();
        let base = common::current();
        let t0 = Instant::now();
        let (loss, gx) = fwd_bwd(kind, x0, w0, targets, opts);
        let secs = t0.elapsed().as_secs_f64();
        let peak_bytes = common::peak() - base;
        best = best.min(secs);
        if out.is_none() {
            out = Some((loss, peak_bytes, gx.into_data().to_vec::<f32>().unwrap()));
        }
    }
    let (loss, peak_bytes, grad_x) = out.unwrap();
    Measured { loss, secs: best, peak_bytes, grad_x }
}

/// Reference loss without autodiff and without full logits: the naive formula on 512-row blocks.
fn blockwise_naive_loss(x0: &Tensor<B, 2>, w0: &Tensor<B, 2>, targets: &[u32]) -> f64 {
    let [n, h] = x0.dims();
    let mut total = 0.0;
    for r0 in (0..n).step_by(512) {
        let r1 = (r0 + 512).min(n);
        let xb = x0.clone().slice([r0..r1, 0..h]);
        total += naive_ce_sum(xb, w0.clone(), &targets[r0..r1], None).into_scalar().elem::<f64>();
    }
    total
}

fn rel(a: f64, b: f64) -> f64 {
    ((a - b) / b).abs()
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum::<f64>().sqrt().max(1e-30);
    num / den
}

/// Rows ~ N(0, 1) (what a final RMSNorm with unit weight produces), head ~ N(0, 0.02) (HF init).
fn inputs(n: usize, h: usize, v: usize, seed: u64) -> (Tensor<B, 2>, Vec<u32>) {
    let device = Default::default();
    <B as Backend>::seed(&device, seed);
    let x = Tensor::<B, 2>::random([n, h], Distribution::Normal(0.0, 1.0), &device);
    let targets = (0..n).map(|i| ((i as u64 * 2_654_435_761 + seed * 97) % v as u64) as u32).collect();
    (x, targets)
}

fn head(h: usize, v: usize, seed: u64) -> Tensor<B, 2> {
    let device = Default::default();
    <B as Backend>::seed(&device, seed);
    Tensor::<B, 2>::random([h, v], Distribution::Normal(0.0, 0.02), &device)
}

fn check_agree(what: &str, chunked: f64, reference: f64) {
    let r = rel(chunked, reference);
    assert!(r <= TOL, "{what}: chunked loss {chunked} vs reference {reference} (relative {r:.2e} > {TOL:.0e})");
}

// ---------------------------------------------------------------- criterion mode (small points)

const CRITERION_POINTS: [(usize, usize, usize); 2] = [(512, 576, 49_152), (1024, 576, 49_152)];

fn bench_ce(c: &mut Criterion) {
    let opts = ChunkOptions::default();
    let mut group = c.benchmark_group("ce_fwd_bwd");
    group.sampling_mode(SamplingMode::Flat);
    for &(n, h, v) in &CRITERION_POINTS {
        let w0 = head(h, v, 7);
        let (x0, targets) = inputs(n, h, v, 11);
        // Once per point: agreement and peak memory (criterion measures time only).
        let naive = measure(Kind::Naive, &x0, &w0, &targets, opts, 1);
        let chunked = measure(Kind::Chunked, &x0, &w0, &targets, opts, 1);
        check_agree(&format!("n={n} h={h} v={v}"), chunked.loss, naive.loss);
        eprintln!(
            "point n={n} h={h} v={v}: loss naive {:.6} chunked {:.6}; peak naive {:.1} MiB, chunked {:.1} MiB; \
             grad_x rel L2 {:.1e}",
            naive.loss,
            chunked.loss,
            naive.peak_bytes as f64 / common::MIB,
            chunked.peak_bytes as f64 / common::MIB,
            rel_l2(&chunked.grad_x, &naive.grad_x)
        );
        group.throughput(Throughput::Elements(n as u64));
        let id = format!("n{n}_h{h}_v{v}");
        group.bench_function(BenchmarkId::new("naive", &id), |b| {
            b.iter(|| fwd_bwd(Kind::Naive, &x0, &w0, &targets, opts).0)
        });
        group.bench_function(BenchmarkId::new("chunked", &id), |b| {
            b.iter(|| fwd_bwd(Kind::Chunked, &x0, &w0, &targets, opts).0)
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = bench_ce
}

// ---------------------------------------------------------------- table mode (the whole grid)

struct TableArgs {
    /// `(hidden, vocab, token counts)` in the order they run.
    grid: Vec<(usize, usize, Vec<usize>)>,
    chunk_logits: usize,
    naive_limit_gib: f64,
    out: String,
}

const ALL_TOKENS: [usize; 4] = [512, 1024, 2048, 4096];
const ALL_HIDDEN: [usize; 2] = [576, 2304];
const ALL_VOCAB: [usize; 2] = [49_152, 256_000];

/// The default table: every token count at vocab 49,152; at vocab 256,000 (where the default chunk,
/// 16 rows, is slow) the points that fit the ~10-minute budget on 2 cores.
fn default_grid() -> Vec<(usize, usize, Vec<usize>)> {
    vec![
        (576, 49_152, ALL_TOKENS.to_vec()),
        (2304, 49_152, ALL_TOKENS.to_vec()),
        (576, 256_000, vec![512, 2048]),
        (2304, 256_000, vec![512]),
    ]
}

fn parse_list(s: &str) -> Vec<usize> {
    s.split(',').map(|x| x.trim().replace('_', "").parse().expect("a comma-separated list of integers")).collect()
}

fn table_args() -> TableArgs {
    let mut a = TableArgs {
        grid: vec![],
        chunk_logits: ChunkOptions::default().max_chunk_logits,
        naive_limit_gib: 12.0,
        out: "cross_entropy.json".into(),
    };
    let (mut tokens, mut hidden, mut vocab, mut full) = (None, None, None, false);
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let val = || args.get(i + 1).unwrap_or_else(|| panic!("{} needs a value", args[i])).clone();
        match args[i].as_str() {
            "--tokens" => tokens = Some(parse_list(&val())),
            "--hidden" => hidden = Some(parse_list(&val())),
            "--vocab" => vocab = Some(parse_list(&val())),
            "--chunk-logits" => a.chunk_logits = parse_list(&val())[0],
            "--naive-limit-gib" => a.naive_limit_gib = val().parse().expect("a number"),
            "--out" => a.out = val(),
            "--full" => {
                full = true;
                i += 1;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a.grid = if full || tokens.is_some() || hidden.is_some() || vocab.is_some() {
        let tokens = tokens.unwrap_or(ALL_TOKENS.to_vec());
        let mut g = vec![];
        for &h in hidden.as_deref().unwrap_or(&ALL_HIDDEN) {
            for &v in vocab.as_deref().unwrap_or(&ALL_VOCAB) {
                g.push((h, v, tokens.clone()));
            }
        }
        g
    } else {
        default_grid()
    };
    a
}

fn loadavg() -> String {
    dft_test_support::sys::loadavg().iter().map(f64::to_string).collect::<Vec<_>>().join(" ")
}

fn table() {
    let a = table_args();
    let opts = ChunkOptions { max_chunk_logits: a.chunk_logits, ..Default::default() };
    let t_start = Instant::now();
    let mut rows = Vec::new();
    let mut md = String::new();
    md += &format!(
        "CE forward+backward (grad into x and head), f32, chunk = {} logits; \
         peak = allocator high-water mark above the inputs.\n\n",
        a.chunk_logits
    );
    md += "| tokens | hidden | vocab | naive s | chunked s | chunked/naive time \
           | naive peak MiB | chunked peak MiB | naive/chunked peak |\n";
    md += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    print!("{md}");
    for (h, v, tokens) in a.grid.clone() {
        eprintln!("[{:.0} s] head {h}×{v}", t_start.elapsed().as_secs_f64());
        let w0 = head(h, v, 7);
        // Naive peak per logit, measured at the largest point run so far for this head (an
        // over-estimate for larger points: the head-sized part of the peak is amortised there).
        let mut naive_bytes_per_logit: Option<f64> = None;
        for &n in &tokens {
            let load_before = loadavg();
            let (x0, targets) = inputs(n, h, v, 11 + n as u64);
            let logits = (n * v) as f64;
            let gflop = 6.0 * (n * h * v) as f64 / 1e9;
            let reps = if gflop < 250.0 { 2 } else { 1 };
            let chunked = measure(Kind::Chunked, &x0, &w0, &targets, opts, reps);
            // logits + their gradient, or the measured naive peak per logit if larger.
            let predicted = (8.0 * logits).max(naive_bytes_per_logit.unwrap_or(0.0) * logits);
            let (naive, check) = if predicted / common::GIB > a.naive_limit_gib {
                let reference = blockwise_naive_loss(&x0, &w0, &targets);
                check_agree(&format!("n={n} h={h} v={v} (blockwise reference)"), chunked.loss, reference);
                (None, format!("blockwise naive forward, rel {:.1e}", rel(chunked.loss, reference)))
            } else {
                let naive = measure(Kind::Naive, &x0, &w0, &targets, opts, reps);
                check_agree(&format!("n={n} h={h} v={v}"), chunked.loss, naive.loss);
                naive_bytes_per_logit = Some(naive.peak_bytes as f64 / logits);
                let c = format!(
                    "naive fwd+bwd: loss rel {:.1e}, grad_x rel L2 {:.1e}",
                    rel(chunked.loss, naive.loss),
                    rel_l2(&chunked.grad_x, &naive.grad_x)
                );
                (Some(naive), c)
            };
            let cmib = chunked.peak_bytes as f64 / common::MIB;
            let line = match &naive {
                Some(nv) => {
                    let nmib = nv.peak_bytes as f64 / common::MIB;
                    format!(
                        "| {n} | {h} | {v} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.2} |\n",
                        nv.secs,
                        chunked.secs,
                        chunked.secs / nv.secs,
                        nmib,
                        cmib,
                        nmib / cmib
                    )
                }
                None => format!(
                    "| {n} | {h} | {v} | skipped: {:.1} GiB | {:.2} | – | skipped: {:.1} GiB | {:.0} | – |\n",
                    predicted / common::GIB,
                    chunked.secs,
                    predicted / common::GIB,
                    cmib
                ),
            };
            print!("{line}");
            md += &line;
            rows.push(serde_json::json!({
                "tokens": n, "hidden": h, "vocab": v, "gflop_per_pass": gflop, "reps": reps,
                "naive_s": naive.as_ref().map(|m| m.secs),
                "chunked_s": chunked.secs,
                "naive_peak_bytes": naive.as_ref().map(|m| m.peak_bytes),
                "chunked_peak_bytes": chunked.peak_bytes,
                "naive_skipped_predicted_bytes": naive.is_none().then_some(predicted),
                "loss_chunked": chunked.loss,
                "loss_naive": naive.as_ref().map(|m| m.loss),
                "check": check,
                "loadavg_before": load_before, "loadavg_after": loadavg(),
            }));
        }
    }
    let total = t_start.elapsed().as_secs_f64();
    println!("\n(total {total:.0} s)");
    let json = serde_json::json!({
        "bench": "cross_entropy",
        "what": "forward+backward, gradient into x and head, f32, Flex backend",
        "chunk_max_logits": a.chunk_logits,
        "naive_limit_gib": a.naive_limit_gib,
        "machine": common::machine(),
        "total_s": total,
        "grid": a.grid,
        "points": rows,
        "markdown": md,
    });
    let path = common::results_dir().join(&a.out);
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).expect("write results");
    println!("wrote {}", path.display());
}

fn main() {
    if std::env::args().any(|a| a == "--table") {
        table();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
