//! One full optimiser step (objective forward, backward, gradient accumulator, global-norm clipping,
//! AdamW update — what `dft train` does per step) on SmolLM2-135M-Instruct with its real weights and
//! real bundled en–zh examples, for TFT, DFT-logits (LC + ET on the logit lens) and DFT-feature; plus
//! the ablations that say what each saving of the objective is worth, and Burn's gradient checkpointing.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo bench --bench step                      # everything (see --plan)
//! cargo bench --bench step -- --plan main --steps 5                 # the three methods only
//! cargo bench --bench step -- --plan savings|checkpointing|all
//! cargo bench --bench step -- --only dft-logits:no-share-prefix,tft:default:ckpt
//! ```
//! Options: `--steps K` timed steps after one warm-up step (default 3; median reported),
//! `--pad-to N` (right-pad every row of the batch file to N columns: a fixed-length pipeline's batch),
//! `--batch-quantile Q` (0.5: the batch whose TFT rows have the Q-quantile length, e.g. 0.1 for short rows),
//! `--max-len N` (512), `--batch N` (4), `--batch-index I` (default: the batch of the epoch plan, seed 42,
//! whose TFT rows have the median length), `--threads N` (2; rayon threads of each child), `--out FILE` (step.json),
//! `--ckpt-steps K` (2, for the long-batch runs), `--prepare-only` (write the batch files and stop),
//! `--malloc-default` (glibc's allocator defaults instead of `dft_train::retain_freed_memory`, as `dft` uses),
//! `--burn-adamw` (Burn's `AdamW` instead of `dft_train::FusedAdamW`, which `dft train` uses; same update),
//! `--no-row-packing` (compute padded positions like real ones: the ablation of `CausalLm::with_row_packing`),
//! `--ab-packing` (timed steps alternate row packing on and off in one process; prints both medians),
//! `--no-fused-attention` (the attention composition: the ablation of `CausalLm::with_fused_attention`),
//! `--ab-attention` (timed steps alternate fused attention on and off in one process, as `--ab-packing`),
//! `--ab-gemm` (timed steps alternate dft-kernels' own f32 GEMM and the `gemm` crate, as `--ab-packing`;
//! `--ab-gemm=avx512,avx2` any two of `own`, `avx2`, `avx512`, `crate`; `DFT_GEMM=crate` picks one GEMM
//! for a whole run),
//! `--kernel-stats` (per step: wall time and GFLOP/s of the matrix products, time of the fused attention,
//! and the rest, from `dft_kernels::stats`; `tools/perf/lean_step.py --profile` splits PyTorch's step alike),
//! `--gemm` (only the backend's f32 matmul GFLOP/s at the step's shapes; `torch_step.py --gemm` likewise).
//!
//! Data: `data/alpaca_en_zh/train.json`, tokenized with the model's own tokenizer exactly as `dft train`
//! does (`dft_train::data_prep`, Alpaca template, all DFT kinds), length-grouped batches of 4 (seed 42).
//! The same batch is used for every method and every step; it is written to
//! `target/bench-results/step-batch.json` (token ids, labels, lengths, prompt lengths, query spans and
//! the objective settings) for the PyTorch reference `tools/perf/torch_step.py`. The checkpointing runs
//! use the batch of the epoch whose TFT rows are longest (`step-batch-long.json`).
//!
//! Each (method, variant) runs in its own child process (this binary with `--child`), so that the peak
//! RSS (`VmHWM`) is per method. Writes `target/bench-results/<out>` and prints a Markdown table.
//! Needs the GGUF (`scripts/fetch-smollm2.sh` or `DFT_SMOLLM2_GGUF`).

mod common;
use dft_test_support::step as dft_step;

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::Autodiff;
use burn::optim::AdamWConfig;
use burn::tensor::backend::AutodiffBackend;
use dft_data::{BatchConfig, Batcher, SequenceKinds};
use dft_models::{load_pretrained, CausalLm};
use dft_step::{LossPath, Method};
use dft_train::config::DataSection;
use dft_train::data_prep::{read_corpus, special_tokens, to_loss_batch, tokenize};
use dft_train::FusedAdamW;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

#[global_allocator]
static ALLOC: common::CountingAlloc = common::CountingAlloc;

use dft_rs::backend::{name as backend_name, Inner};

/// LC at block 2, ET at block 15 of 30 (configs/quickstart.toml, METHOD.md §8).
const LC_LAYER: usize = 2;
const ET_LAYER: usize = 15;
/// α = β for DFT-logits (configs/quickstart.toml) and for DFT-feature (METHOD.md's default).
const LOGITS_WEIGHT: f64 = 0.1;
const FEATURE_WEIGHT: f64 = 1.0;
/// Constant learning rate (configs/quickstart.toml's peak), AdamW β (0.9, 0.999), ε 1e-8, no weight decay.
const LR: f64 = 1e-4;
const MAX_GRAD_NORM: f64 = 1.0;
const SEED: u64 = 42;

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|s| s.parse().ok())
}

fn flag(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

fn objective(method: Method) -> dft_losses::ObjectiveConfig {
    let w = if method == Method::DftFeature { FEATURE_WEIGHT } else { LOGITS_WEIGHT };
    method.objective(LC_LAYER, ET_LAYER, w, w)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn gguf() -> PathBuf {
    let p = dft_models::embedded::smollm2_gguf_path();
    if !p.is_file() {
        eprintln!(
            "step bench: the SmolLM2 GGUF is missing at {} — run scripts/fetch-smollm2.sh (or set DFT_SMOLLM2_GGUF)",
            p.display()
        );
        std::process::exit(2);
    }
    p
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // As `dft` does (see dft_train::alloc); `--malloc-default` measures without it.
    if !flag(&args, "--malloc-default") {
        dft_train::retain_freed_memory();
    }
    if flag(&args, "--child") {
        child(&args);
    } else if flag(&args, "--gemm") {
        gemm();
    } else {
        driver(&args);
    }
}

// ---------------------------------------------------------------------------------------------------
// Driver: data, batch files, one child per run, table and JSON.

struct Prepared {
    batch: Value,
    long: Value,
    padding: Value,
}

/// Tokenize the bundled data as `dft train` does and pick the benchmark batches.
fn prepare(
    max_len: usize,
    batch_size: usize,
    batch_index: Option<usize>,
    quantile: f64,
    pad_to: Option<usize>,
) -> Prepared {
    let t = Instant::now();
    let path = gguf();
    let (gg, tokenizer) = dft_models::gguf::load_gguf(&path).expect("read the GGUF tokenizer");
    let special = special_tokens(gg.config(), &tokenizer);
    let data = DataSection { train: root().join("data/alpaca_en_zh/train.json"), max_len, ..Default::default() };
    let corpus = read_corpus(&data.train, &data).expect("read data/alpaca_en_zh/train.json");
    let kinds = SequenceKinds { tft: true, lc: true, et: true, en_prompt: true, sft: false, tgt_prompt: false };
    let tokenized = tokenize(&corpus, &data, kinds, &tokenizer, special, 0).expect("tokenize");
    eprintln!("data: {} | {} ({:.1} s)", corpus.report, tokenized.report, t.elapsed().as_secs_f64());
    let config = BatchConfig { batch_size, seed: SEED, group_by_length: true, ..Default::default() };
    let batcher = Batcher::new(&tokenized, config.clone()).expect("batcher");
    let plan = batcher.epoch_plan(0);
    let pos = |i: usize| dft_data::DataPosition { epoch: 0, batch_index: i, seed: SEED };
    let build = |i: usize| batcher.build(&plan[i], pos(i));
    // The default batch: the one whose TFT rows have the median padded length over the epoch (a typical
    // step); `--batch-index I` picks the I-th batch of the plan instead.
    let tft_len = |i: usize| plan[i].iter().map(|&e| tokenized.examples[e].len(dft_data::SequenceKind::Tft)).max();
    let batch_index = batch_index.unwrap_or_else(|| {
        let mut full: Vec<usize> = (0..plan.len()).filter(|&i| plan[i].len() == batch_size).collect();
        full.sort_by_key(|&i| (tft_len(i), i));
        full[((full.len() - 1) as f64 * quantile.clamp(0.0, 1.0)).round() as usize]
    });
    let chosen = build(batch_index.min(plan.len() - 1));
    let longest = (0..plan.len()).filter(|&i| plan[i].len() == batch_size).max_by_key(|&i| tft_len(i)).unwrap_or(0);
    let long = build(longest);
    let describe = |b: &dft_data::DftBatch, index: usize| {
        let mut lb = to_loss_batch(b, dft_train::Method::Dft);
        if let Some(n) = pad_to {
            // Right-pad every kind to `n` columns, as a pipeline padding to a fixed length does (both
            // implementations read this file; dft-losses trims padding no loss reads).
            let pad = |s: &mut dft_losses::Sequences| {
                if n > s.seq_len {
                    let (w, rows) = (s.seq_len, s.rows());
                    let id = |r: usize| s.input_ids[r * w + w - 1];
                    let ids: Vec<u32> = (0..rows)
                        .flat_map(|r| {
                            s.input_ids[r * w..(r + 1) * w].iter().copied().chain(std::iter::repeat_n(id(r), n - w))
                        })
                        .collect();
                    let labels: Vec<i64> = (0..rows)
                        .flat_map(|r| {
                            s.labels[r * w..(r + 1) * w].iter().copied().chain(std::iter::repeat_n(-100, n - w))
                        })
                        .collect();
                    (s.input_ids, s.labels, s.seq_len) = (ids, labels, n);
                }
            };
            pad(&mut lb.main);
            for s in [&mut lb.lc, &mut lb.et, &mut lb.en_prompt].into_iter().flatten() {
                pad(s);
            }
        }
        let mut methods = serde_json::Map::new();
        for m in Method::ALL {
            let c = objective(m);
            methods.insert(
                m.name().into(),
                json!({"lc": c.lc, "et": c.et, "lc_layer": c.lc_layer, "et_layer": c.et_layer,
                       "alpha": c.alpha, "beta": c.beta, "pooling": c.pooling,
                       "english_stop_grad": c.english_stop_grad}),
            );
        }
        json!({
            "model": path.display().to_string(),
            "data": "data/alpaca_en_zh/train.json",
            "max_len": max_len, "batch_size": batch_size, "seed": SEED, "batch_index": index,
            "example_ids": b.ids,
            "kinds": dft_step::batch_to_json(&lb),
            "shapes": dft_step::shapes(&lb),
            "methods": methods,
            "optimizer": {"name": "AdamW", "lr": LR, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0,
                          "max_grad_norm": MAX_GRAD_NORM},
        })
    };
    // What length grouping saves: padding over one epoch of the bundled data, grouped vs not.
    let grouped = batcher.padding_report(0);
    let ungrouped =
        Batcher::new(&tokenized, BatchConfig { group_by_length: false, ..config }).unwrap().padding_report(0);
    let per_kind = |r: &dft_data::PaddingReport| {
        r.kinds
            .iter()
            .map(|(k, c)| {
                (format!("{k}"), json!({"real": c.real_tokens, "slots": c.slots, "padding": c.padding_fraction()}))
            })
            .collect::<serde_json::Map<_, _>>()
    };
    let slots = |r: &dft_data::PaddingReport| r.kinds.values().map(|c| c.slots).sum::<usize>();
    let padding = json!({
        "batch_size": batch_size, "examples": tokenized.examples.len(),
        "grouped": {"padding": grouped.padding_fraction(), "slots": slots(&grouped), "kinds": per_kind(&grouped)},
        "ungrouped": {"padding": ungrouped.padding_fraction(), "slots": slots(&ungrouped), "kinds": per_kind(&ungrouped)},
        "padded_token_ratio_ungrouped_to_grouped": slots(&ungrouped) as f64 / slots(&grouped) as f64,
    });
    eprintln!("length grouping (batch {batch_size}, one epoch, all kinds): {grouped}");
    eprintln!("no grouping:                                            {ungrouped}");
    Prepared { batch: describe(&chosen, batch_index), long: describe(&long, longest), padding }
}

#[derive(Clone)]
struct Run {
    method: Method,
    path: LossPath,
    ckpt: bool,
    long: bool,
    /// LoRA rank (adapters on every projection, base frozen), `None` = full fine-tuning.
    lora: Option<usize>,
    /// `train.precision = "bf16-mixed"` (with LoRA: the frozen base stored in bf16, as `dft train`).
    mixed: bool,
}

impl Run {
    fn label(&self) -> String {
        format!(
            "{}:{}{}{}{}{}",
            self.method.name(),
            self.path.name(),
            if self.ckpt { ":ckpt" } else { "" },
            if self.long { ":long" } else { "" },
            self.lora.map(|r| format!(":lora{r}")).unwrap_or_default(),
            if self.mixed { ":mixed" } else { "" }
        )
    }
}

fn parse_only(spec: &str) -> Vec<Run> {
    spec.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let parts: Vec<&str> = s.split(':').collect();
            let method = Method::parse(parts[0]).unwrap_or_else(|| panic!("--only: unknown method {}", parts[0]));
            let path = parts
                .get(1)
                .filter(|p| !p.starts_with("lora") && !["ckpt", "long", "mixed"].contains(p))
                .map(|p| LossPath::parse(p).unwrap_or_else(|| panic!("--only: unknown variant {p}")));
            Run {
                method,
                path: path.unwrap_or(LossPath::Default),
                ckpt: parts.contains(&"ckpt"),
                long: parts.contains(&"long"),
                lora: parts.iter().find_map(|p| p.strip_prefix("lora")).map(|r| r.parse().expect("--only: loraR")),
                mixed: parts.contains(&"mixed"),
            }
        })
        .collect()
}

fn plan(name: &str) -> Vec<Run> {
    let r = |method, path, ckpt, long| Run { method, path, ckpt, long, lora: None, mixed: false };
    let v = |method, lora, mixed| Run { method, path: LossPath::Default, ckpt: false, long: false, lora, mixed };
    // Issue 15: LoRA r = 16 and bf16-mixed beside full f32 fine-tuning, same batch.
    let lora = vec![
        v(Method::Tft, None, false),
        v(Method::Tft, Some(16), false),
        v(Method::DftLogits, None, false),
        v(Method::DftLogits, Some(16), false),
        v(Method::DftLogits, None, true),
        v(Method::DftLogits, Some(16), true),
    ];
    let main: Vec<Run> = Method::ALL.into_iter().map(|m| r(m, LossPath::Default, false, false)).collect();
    let savings = vec![
        r(Method::DftLogits, LossPath::NoSharePrefix, false, false),
        r(Method::DftLogits, LossPath::NoTruncation, false, false),
        r(Method::Tft, LossPath::NaiveCe, false, false),
        r(Method::DftLogits, LossPath::NaiveCe, false, false),
        r(Method::Tft, LossPath::FullLogits, false, false),
    ];
    let ckpt: Vec<Run> = Method::ALL
        .into_iter()
        .flat_map(|m| [r(m, LossPath::Default, false, true), r(m, LossPath::Default, true, true)])
        .collect();
    match name {
        "main" => main,
        "savings" => main.into_iter().chain(savings).collect(),
        "checkpointing" => ckpt,
        "lora" => lora,
        "all" => main.into_iter().chain(savings).chain(ckpt).collect(),
        other => panic!("--plan: main, savings, checkpointing, lora or all, not {other}"),
    }
}

fn driver(args: &[String]) {
    let steps: usize = arg(args, "--steps").unwrap_or(3);
    let ckpt_steps: usize = arg(args, "--ckpt-steps").unwrap_or(2);
    let max_len: usize = arg(args, "--max-len").unwrap_or(512);
    let batch_size: usize = arg(args, "--batch").unwrap_or(4);
    let batch_index: Option<usize> = arg(args, "--batch-index");
    let quantile: f64 = arg(args, "--batch-quantile").unwrap_or(0.5);
    let pad_to: Option<usize> = arg(args, "--pad-to");
    let threads: usize = arg(args, "--threads").unwrap_or(2);
    let out: String = arg(args, "--out").unwrap_or_else(|| "step.json".into());
    let runs = match arg::<String>(args, "--only") {
        Some(spec) => parse_only(&spec),
        None => plan(&arg::<String>(args, "--plan").unwrap_or_else(|| "all".into())),
    };
    let started = Instant::now();
    let load_before = dft_step::loadavg();
    let prepared = prepare(max_len, batch_size, batch_index, quantile, pad_to);
    let dir = common::results_dir();
    let batch_file = dir.join("step-batch.json");
    let long_file = dir.join("step-batch-long.json");
    std::fs::write(&batch_file, serde_json::to_string(&prepared.batch).unwrap()).expect("write batch file");
    std::fs::write(&long_file, serde_json::to_string(&prepared.long).unwrap()).expect("write batch file");
    eprintln!("batch {}: {}", batch_file.display(), prepared.batch["shapes"]);
    eprintln!("long batch {}: {}", long_file.display(), prepared.long["shapes"]);
    if flag(args, "--prepare-only") {
        return;
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut results = Vec::new();
    for run in &runs {
        let file = if run.long { &long_file } else { &batch_file };
        let k = if run.long { ckpt_steps } else { steps };
        eprintln!("--- {} ({} timed steps, load {:?})", run.label(), k, dft_step::loadavg());
        let mut cmd = Command::new(&exe);
        cmd.args(["--child", "--method", run.method.name(), "--path", run.path.name(), "--steps", &k.to_string()])
            .arg("--batch-file")
            .arg(file)
            .env("RAYON_NUM_THREADS", threads.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if run.ckpt {
            cmd.arg("--checkpointing");
        }
        if let Some(r) = run.lora {
            cmd.args(["--lora", &r.to_string()]);
        }
        if run.mixed {
            cmd.arg("--mixed");
        }
        if flag(args, "--malloc-default") {
            cmd.arg("--malloc-default");
        }
        if flag(args, "--burn-adamw") {
            cmd.arg("--burn-adamw");
        }
        if flag(args, "--no-row-packing") {
            cmd.arg("--no-row-packing");
        }
        for f in ["--ab-packing", "--no-fused-attention", "--ab-attention", "--ab-gemm", "--kernel-stats"] {
            if flag(args, f) {
                cmd.arg(f);
            }
        }
        cmd.args(args.iter().filter(|a| a.starts_with("--ab-gemm=")));
        let output = cmd.output().expect("spawn child");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let result = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).map(serde_json::from_str::<Value>);
        match (output.status.success(), result) {
            (true, Some(Ok(mut v))) => {
                v["label"] = json!(run.label());
                v["long"] = json!(run.long);
                results.push(v);
            }
            _ => {
                eprintln!("{}: child failed ({}): {stdout}", run.label(), output.status);
                results.push(json!({"label": run.label(), "failed": output.status.to_string()}));
            }
        }
    }
    let md = table(&results);
    println!("\n{md}");
    let json = json!({
        "bench": "step",
        "what": "one optimiser step (objective + backward + clip + AdamW) on SmolLM2-135M-Instruct (GGUF Q4_1 → f32), real zh examples",
        "backend": backend_name(), "threads": threads, "timed_steps": steps, "ckpt_steps": ckpt_steps,
        "lc_layer": LC_LAYER, "et_layer": ET_LAYER, "logits_weight": LOGITS_WEIGHT, "feature_weight": FEATURE_WEIGHT,
        "lr": LR, "max_grad_norm": MAX_GRAD_NORM,
        "machine": common::machine(),
        "loadavg_before": load_before, "loadavg_after": dft_step::loadavg(),
        "total_s": started.elapsed().as_secs_f64(),
        "batch": {"file": batch_file, "index": prepared.batch["batch_index"], "shapes": prepared.batch["shapes"],
                  "example_ids": prepared.batch["example_ids"]},
        "long_batch": {"file": long_file, "index": prepared.long["batch_index"], "shapes": prepared.long["shapes"],
                       "example_ids": prepared.long["example_ids"]},
        "length_grouping": prepared.padding,
        "results": results,
        "markdown": md,
    });
    let path = dir.join(&out);
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).expect("write results");
    println!("wrote {} (total {:.0} s)", path.display(), started.elapsed().as_secs_f64());
}

fn table(results: &[Value]) -> String {
    let mut md = String::from(
        "| run | batch | s/step median (min–max) | loss / bwd / optim s | TFT tok/s | all tok/s | peak RSS MiB | RSS after load MiB | loss step 1 (main, lc, et) | ratio to TFT |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|---:|\n",
    );
    let tft_of = |long: bool| {
        results
            .iter()
            .find(|r| {
                r["method"] == "tft"
                    && r["path"] == "default"
                    && r["checkpointing"] == false
                    && r["long"] == long
                    && r["lora_rank"].is_null()
                    && r["bf16_mixed"] != true
            })
            .and_then(|r| r["median_s"].as_f64())
    };
    for r in results {
        if r.get("failed").is_some() {
            md += &format!("| {} | failed: {} |||||||||\n", r["label"].as_str().unwrap_or(""), r["failed"]);
            continue;
        }
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        let main = &r["shapes"]["main"];
        let first = &r["steps"][0]["loss"];
        let num = |v: &Value| v.as_f64().map(|x| format!("{x:.4}")).unwrap_or_else(|| "–".into());
        let ratio = tft_of(r["long"].as_bool().unwrap_or(false)).map(|t| f("median_s") / t);
        md += &format!(
            "| {} | {}×{} | {:.2} ({:.2}–{:.2}) | {:.2} / {:.2} / {:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {}, {}, {} | {} |\n",
            r["label"].as_str().unwrap_or(""),
            main["rows"],
            main["seq_len"],
            f("median_s"),
            f("min_s"),
            f("max_s"),
            f("loss_s_median"),
            f("backward_s_median"),
            f("optim_s_median"),
            f("tft_tokens_per_s"),
            f("all_tokens_per_s"),
            f("peak_rss_mib"),
            f("rss_after_load_mib"),
            num(&first["main"]),
            num(&first["lc"]),
            num(&first["et"]),
            ratio.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into()),
        );
    }
    // --kernel-stats: where each run's step time goes (medians over the timed steps).
    if results.iter().any(|r| r["kernel_stats"].is_object()) {
        md += "\n| run | step s | matrix products s (GFLOP, GFLOP/s) | fused attention s | rest s (of it optimiser) |\n|---|---:|---:|---:|---:|\n";
        for r in results.iter().filter(|r| r["kernel_stats"].is_object()) {
            let k = &r["kernel_stats"];
            let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
            md += &format!(
                "| {} | {:.2} | {:.2} ({:.0}, {:.0}) | {:.2} | {:.2} ({:.2}) |\n",
                r["label"].as_str().unwrap_or(""),
                f(&r["median_s"]),
                f(&k["median_products_s"]),
                f(&k["products_gflop"]),
                f(&k["median_products_gflops"]),
                f(&k["median_attention_s"]),
                f(&k["median_rest_s"]),
                f(&r["optim_s_median"]),
            );
        }
    }
    md
}

// ---------------------------------------------------------------------------------------------------
// Child: one method / variant, warm-up + K timed steps, result as one JSON line.

use dft_test_support::sys::minor_faults;

fn child(args: &[String]) {
    let method = Method::parse(&arg::<String>(args, "--method").expect("--method")).expect("method");
    let path = LossPath::parse(&arg::<String>(args, "--path").unwrap_or_else(|| "default".into())).expect("path");
    let steps: usize = arg(args, "--steps").unwrap_or(3);
    let file: PathBuf = arg(args, "--batch-file").expect("--batch-file");
    if flag(args, "--checkpointing") {
        run_child::<Autodiff<Inner, BalancedCheckpointing>>(method, path, true, steps, &file);
    } else {
        run_child::<Autodiff<Inner>>(method, path, false, steps, &file);
    }
}

fn run_child<B: AutodiffBackend>(method: Method, path: LossPath, ckpt: bool, steps: usize, file: &Path) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let batch_file: Value = serde_json::from_str(&text).expect("batch JSON");
    let batch = method.select(&dft_step::batch_from_json(&batch_file["kinds"]));
    let cfg = objective(method);
    let device: B::Device = Default::default();
    let t = Instant::now();
    let mut model: CausalLm<B> = load_pretrained::<B>(&gguf(), &device).expect("load SmolLM2").model;
    let lora: Option<usize> = arg(&std::env::args().collect::<Vec<_>>(), "--lora");
    let mixed = std::env::args().any(|a| a == "--mixed");
    if mixed {
        model = model.with_precision(dft_models::Precision::Bf16Mixed);
    }
    if let Some(r) = lora {
        let spec = dft_models::LoraSpec { rank: r, alpha: 2.0 * r as f64, ..Default::default() };
        model = model.with_lora(&spec, 0).expect("LoRA");
        if mixed {
            model = model.with_frozen_base_dtype(burn::tensor::FloatDType::BF16);
        }
    }
    // --no-row-packing: padded positions computed like real ones (the ablation of row packing).
    if std::env::args().any(|a| a == "--no-row-packing") {
        model = model.with_row_packing(false);
    }
    // --no-fused-attention: the attention as a tensor composition (the ablation of fused attention).
    if std::env::args().any(|a| a == "--no-fused-attention") {
        model = model.with_fused_attention(false);
    }
    let load_s = t.elapsed().as_secs_f64();
    let rss_after_load = dft_step::proc_status_mib("VmRSS:");
    let hwm_after_load = dft_step::proc_status_mib("VmHWM:");
    // What `dft train` uses (dft_train::FusedAdamW), or with --burn-adamw Burn's own AdamW (same update).
    let burn_adamw = std::env::args().any(|a| a == "--burn-adamw");
    let mut fused = FusedAdamW::new(0.9, 0.999, 1e-8, 0.0).init::<B, CausalLm<B>>();
    let mut plain = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(0.0)
        .init::<B, CausalLm<B>>();
    let main_real = dft_step::real_tokens(&batch.main);
    let all_real = dft_step::all_real_tokens(&batch);
    let mut reports = Vec::new();
    let mut heap_peaks = Vec::new();
    // --kernel-stats: each step's time in the matrix products and the fused attention (dft_kernels::stats).
    let kernel_stats = std::env::args().any(|a| a == "--kernel-stats");
    dft_kernels::stats::set_enabled(kernel_stats);
    let _ = dft_kernels::stats::take();
    let mut kernels = Vec::new();
    // --ab-packing / --ab-attention: timed steps alternate the feature on (odd) and off (even), so each
    // pair runs minutes apart at most (the VM's drift between processes is larger than the effect).
    let ab = if std::env::args().any(|a| a == "--ab-packing") {
        Some("row packing")
    } else if std::env::args().any(|a| a == "--ab-attention") {
        Some("fused attention")
    } else if std::env::args().any(|a| a == "--ab-gemm" || a.starts_with("--ab-gemm=")) {
        Some("GEMM")
    } else {
        None
    };
    let gemm_pair = ab_gemm_pair();
    if ab == Some("GEMM") {
        eprintln!("  GEMM on odd steps: {:?}, on even steps: {:?}", gemm_pair.0, gemm_pair.1);
    }
    for s in 0..=steps {
        let on = s % 2 == 1 || s == 0;
        match ab {
            Some("row packing") => model = model.with_row_packing(on),
            Some("GEMM") => {
                dft_kernels::set_gemm_kernel(if on { gemm_pair.0 } else { gemm_pair.1 });
            }
            Some(_) => model = model.with_fused_attention(on),
            None => {}
        }
        common::reset_peak();
        let base = common::current();
        let (m, rep) = if burn_adamw {
            dft_step::optimiser_step(model, &mut plain, &batch, &cfg, path, LR, MAX_GRAD_NORM, &device)
        } else {
            dft_step::optimiser_step(model, &mut fused, &batch, &cfg, path, LR, MAX_GRAD_NORM, &device)
        };
        model = m;
        if kernel_stats {
            let k = dft_kernels::stats::take();
            let products = k.products_f32.seconds + k.products_bf16.seconds;
            let gflop = (k.products_f32.flops + k.products_bf16.flops) * 1e-9;
            let rest = rep.total_s() - products - k.attention.seconds;
            eprintln!(
                "  kernels: products {products:.2} s ({gflop:.1} GFLOP, {:.0} GFLOP/s; {} calls), attention {:.2} s, rest {rest:.2} s (optim {:.2})",
                gflop / products,
                k.products_f32.calls + k.products_bf16.calls,
                k.attention.seconds,
                rep.optim_s
            );
            kernels.push(json!({"products_s": products, "products_gflop": gflop, "products_gflops": gflop / products,
                                "products_f32_s": k.products_f32.seconds, "products_bf16_s": k.products_bf16.seconds,
                                "product_calls": k.products_f32.calls + k.products_bf16.calls,
                                "attention_s": k.attention.seconds, "rest_s": rest}));
        }
        heap_peaks.push(((common::peak() - base) as f64 / common::MIB, base as f64 / common::MIB));
        eprintln!(
            "  {} step {s}{}: {:.2} s (loss {:.2}, bwd {:.2}, optim {:.2}) | loss {:.4} main {:.4} lc {:?} et {:?} | grad norm {:.3}",
            method.name(),
            if s == 0 { " (warm-up)" } else { "" },
            rep.total_s(),
            rep.loss_s,
            rep.backward_s,
            rep.optim_s,
            rep.components.total,
            rep.components.main,
            rep.components.lc,
            rep.components.et,
            rep.grad_norm
        );
        reports.push(rep);
    }
    let timed = &reports[1..];
    let ab = ab.map(|feature| {
        let on: Vec<f64> = timed.iter().step_by(2).map(|r| r.total_s()).collect();
        let off: Vec<f64> = timed.iter().skip(1).step_by(2).map(|r| r.total_s()).collect();
        let ratios: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a / b).collect();
        eprintln!(
            "  {feature} on / off: {:.2} / {:.2} s (medians), pair ratios {:?}",
            dft_step::median(on.clone()),
            dft_step::median(off.clone()),
            ratios.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>()
        );
        let feature =
            if feature == "GEMM" { format!("GEMM {:?} vs {:?}", gemm_pair.0, gemm_pair.1) } else { feature.into() };
        json!({"feature": feature, "on_s": on, "off_s": off, "ratios": ratios})
    });
    let med = |f: &dyn Fn(&dft_step::StepReport) -> f64| dft_step::median(timed.iter().map(f).collect());
    let median_s = med(&|r| r.total_s());
    let totals: Vec<f64> = timed.iter().map(|r| r.total_s()).collect();
    let result = json!({
        "method": method.name(), "path": path.name(), "checkpointing": ckpt, "backend": backend_name(),
        "lora_rank": lora, "bf16_mixed": mixed, "trainable_params": model.parameter_counts().0,
        "objective": {"lc": cfg.lc, "et": cfg.et, "lc_layer": cfg.lc_layer, "et_layer": cfg.et_layer,
                      "alpha": cfg.alpha, "beta": cfg.beta, "share_prefix": cfg.share_prefix},
        "shapes": dft_step::shapes(&batch),
        "tft_real_tokens": main_real, "all_real_tokens": all_real,
        "load_s": load_s,
        "median_s": median_s,
        "min_s": totals.iter().copied().fold(f64::INFINITY, f64::min),
        "max_s": totals.iter().copied().fold(0.0, f64::max),
        "loss_s_median": med(&|r| r.loss_s), "backward_s_median": med(&|r| r.backward_s),
        "optim_s_median": med(&|r| r.optim_s),
        "tft_tokens_per_s": main_real as f64 / median_s,
        "all_tokens_per_s": all_real as f64 / median_s,
        "rss_after_load_mib": rss_after_load, "hwm_after_load_mib": hwm_after_load,
        "peak_rss_mib": dft_step::proc_status_mib("VmHWM:"),
        "heap_step_peak_above_live_mib": heap_peaks.iter().map(|p| p.0).fold(0.0, f64::max),
        "heap_live_before_step_mib": heap_peaks.iter().map(|p| p.1).collect::<Vec<_>>(),
        "loadavg": dft_step::loadavg(),
        "malloc": if std::env::args().any(|a| a == "--malloc-default") { "glibc defaults" } else { "retain_freed_memory" },
        "optimizer": if burn_adamw { "burn AdamW" } else { "dft_train::FusedAdamW" },
        "minor_page_faults": minor_faults(),
        "steps": reports.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        "ab": ab,
        "kernel_stats": kernel_stats.then(|| {
            let med = |key: &str| dft_step::median(kernels[1..].iter().map(|k| k[key].as_f64().unwrap_or(f64::NAN)).collect());
            json!({"median_products_s": med("products_s"), "median_products_gflops": med("products_gflops"),
                   "products_gflop": kernels[0]["products_gflop"], "median_attention_s": med("attention_s"),
                   "median_rest_s": med("rest_s"), "steps": kernels})
        }),
    });
    println!("RESULT {result}");
}

/// The two GEMMs `--ab-gemm[=X,Y]` alternates (default: the widest own kernel, then the `gemm` crate).
fn ab_gemm_pair() -> (dft_kernels::GemmKernel, dft_kernels::GemmKernel) {
    use dft_kernels::GemmKernel;
    let parse = |name: &str| match name.trim() {
        "own" => {
            let before = dft_kernels::gemm_kernel();
            dft_kernels::set_own_gemm(true);
            let widest = dft_kernels::gemm_kernel();
            dft_kernels::set_gemm_kernel(before);
            widest
        }
        "avx2" => GemmKernel::OwnAvx2,
        "avx512" => GemmKernel::OwnAvx512,
        "crate" => GemmKernel::Crate,
        other => panic!("--ab-gemm: unknown GEMM {other:?} (own, avx2, avx512, crate)"),
    };
    let spec = std::env::args().find_map(|a| a.strip_prefix("--ab-gemm=").map(str::to_owned));
    let spec = spec.unwrap_or_else(|| "own,crate".into());
    let (x, y) = spec.split_once(',').unwrap_or_else(|| panic!("--ab-gemm={spec}: two GEMMs, e.g. avx512,crate"));
    (parse(x), parse(y))
}

// ---------------------------------------------------------------------------------------------------
// `--gemm`: f32 matmul throughput of the backend at the step's shapes (what bounds the step), to compare
// with `tools/perf/torch_step.py --gemm` on the same machine.

/// `(name, m, k, n)`: a projection of the 4×216 TFT rows (864 tokens) of SmolLM2 and the LM head at the
/// 602 labelled rows.
pub const GEMM_SHAPES: [(&str, usize, usize, usize); 5] = [
    ("q/o proj 864×576×576", 864, 576, 576),
    ("k/v proj 864×576×192", 864, 576, 192),
    ("gate/up 864×576×1536", 864, 576, 1536),
    ("down 864×1536×576", 864, 1536, 576),
    ("head 602×576×49152", 602, 576, 49152),
];

fn gemm() {
    use burn::tensor::{Distribution, Tensor};
    let device = Default::default();
    let mut rows = Vec::new();
    // Burn's own matmul (the `gemm` crate through Flex), then `dft_kernels::matmul` with its own GEMM and
    // with the `gemm` crate, on the three layouts a training step multiplies: A·B (forward), A·Bᵀ (∂X =
    // ∂Y·Wᵀ, the LM head) and Aᵀ·B (∂W = Xᵀ·∂Y), rounds interleaved per shape.
    use dft_kernels::GemmKernel;
    let default = dft_kernels::gemm_kernel();
    // The columns: Burn, then dft_kernels::matmul with each GEMM (a kernel the CPU lacks runs the nearest
    // it has, named here).
    let kernels = [GemmKernel::OwnAvx2, GemmKernel::OwnAvx512, GemmKernel::Crate];
    for k in kernels {
        let taken = dft_kernels::set_gemm_kernel(k);
        if taken != k {
            println!("(this CPU cannot run {k:?}: its column runs {taken:?})");
        }
    }
    println!(
        "| shape | layout | Burn matmul GFLOP/s | dft own AVX2 GFLOP/s | dft own AVX-512 GFLOP/s | dft via gemm crate GFLOP/s | ({}, {} rayon threads) |\n|---|---|---:|---:|---:|---:|---|",
        backend_name(),
        rayon::current_num_threads()
    );
    for (name, m, k, n) in GEMM_SHAPES {
        let rnd = |shape: [usize; 2]| Tensor::<Inner, 2>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let (a, b, at, bt) = (rnd([m, k]), rnd([k, n]), rnd([k, m]), rnd([n, k]));
        let reps = (2e10 / (2.0 * (m * k * n) as f64)).clamp(3.0, 200.0) as usize;
        for layout in ["A·B", "A·Bᵀ", "Aᵀ·B"] {
            let operands = || match layout {
                "A·B" => (a.clone(), b.clone()),
                "A·Bᵀ" => (a.clone(), bt.clone().transpose()),
                _ => (at.clone().transpose(), b.clone()),
            };
            // 0: Burn, 1 + i: kernels[i] through dft_kernels::matmul.
            let product = |which: usize| {
                let (x, y) = operands();
                if which == 0 {
                    x.matmul(y)
                } else {
                    dft_kernels::matmul(x, y)
                }
            };
            let mut best = [f64::INFINITY; 4];
            for _ in 0..3 {
                for (which, best) in best.iter_mut().enumerate() {
                    if which > 0 {
                        dft_kernels::set_gemm_kernel(kernels[which - 1]);
                    }
                    let _ = product(which).into_data();
                    let t = Instant::now();
                    for _ in 0..reps {
                        std::hint::black_box(product(which));
                    }
                    let _ = product(which).into_data();
                    *best = best.min(t.elapsed().as_secs_f64() / (reps + 1) as f64);
                }
            }
            let g = best.map(|s| 2.0 * (m * k * n) as f64 / s / 1e9);
            println!("| {name} | {layout} | {:.1} | {:.1} | {:.1} | {:.1} | |", g[0], g[1], g[2], g[3]);
            rows.push(json!({"shape": name, "layout": layout, "m": m, "k": k, "n": n, "seconds": best[0],
                             "gflops": g[0], "own_avx2_gflops": g[1], "own_avx512_gflops": g[2],
                             "gemm_crate_gflops": g[3]}));
        }
    }
    dft_kernels::set_gemm_kernel(default);
    // Element-wise and layout ops of one decoder block at the same shapes (ms per call, best of 5).
    let mut ops = serde_json::Map::new();
    {
        use burn::tensor::activation::{silu, softmax};
        let n = |shape: [usize; 2]| Tensor::<Inner, 2>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let x = n([864, 576]);
        let g = n([864, 1536]);
        let scores = Tensor::<Inner, 4>::random([4, 3, 648, 216], Distribution::Normal(0.0, 1.0), &device);
        let bias = Tensor::<Inner, 5>::zeros([4, 1, 1, 216, 216], &device);
        let q = Tensor::<Inner, 4>::random([4, 216, 9, 64], Distribution::Normal(0.0, 1.0), &device);
        let mut time = |name: &str, f: &dyn Fn()| {
            f();
            let mut best = f64::INFINITY;
            for _ in 0..5 {
                let t = Instant::now();
                f();
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!("| {name} | {:.2} ms |", best * 1e3);
            ops.insert(name.into(), json!(best * 1e3));
        };
        println!("| op (one call) | time |\n|---|---:|");
        time("x.powf_scalar(2) [864×576]", &|| drop(x.clone().powf_scalar(2.0).into_data()));
        time("x * x [864×576]", &|| drop((x.clone() * x.clone()).into_data()));
        time("RMSNorm as in dft-models [864×576]", &|| {
            let var = x.clone().powf_scalar(2.0).mean_dim(1);
            drop((x.clone() * (var + 1e-5).sqrt().recip()).into_data())
        });
        time("silu(gate) * up [864×1536]", &|| drop((silu(g.clone()) * g.clone()).into_data()));
        time("scores + bias, softmax [4×3×3×216×216]", &|| {
            let s5 = scores.clone().reshape([4, 3, 3, 216, 216]) + bias.clone();
            drop(softmax(s5, 4).into_data())
        });
        time("swap_dims(1,2) + reshape (copy) [4×216×9×64]", &|| {
            drop(q.clone().swap_dims(1, 2).reshape([4, 3, 648, 64]).into_data())
        });
    }
    // The decoder forward (30 blocks → h_L, no head) on the TFT rows of the step's batch, without and
    // with the autodiff graph: how far the step is from its matmuls.
    let mut forward = serde_json::Map::new();
    let file = common::results_dir().join("step-batch.json");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let v: Value = serde_json::from_str(&text).expect("batch JSON");
        let s = dft_step::batch_from_json(&v["kinds"]).main;
        fn time_forward<B: burn::tensor::backend::Backend>(s: &dft_losses::Sequences) -> f64 {
            let device: B::Device = Default::default();
            let model = load_pretrained::<B>(&gguf(), &device).expect("load").model;
            let ids: Vec<i64> = s.input_ids.iter().map(|&x| x as i64).collect();
            let ids = burn::tensor::Tensor::<B, 2, burn::tensor::Int>::from_data(
                burn::tensor::TensorData::new(ids, [s.rows(), s.seq_len]),
                &device,
            );
            let spec = dft_models::ForwardSpec::default();
            let mut best = f64::INFINITY;
            for _ in 0..4 {
                let t = Instant::now();
                let h = model.forward_hidden(ids.clone(), Some(&s.lengths), &spec).last;
                let _ = h.into_data();
                best = best.min(t.elapsed().as_secs_f64());
            }
            best
        }
        let plain = time_forward::<Inner>(&s);
        let graph = time_forward::<Autodiff<Inner>>(&s);
        println!(
            "decoder forward {}×{} → h_L (best of 4): {plain:.2} s without autodiff, {graph:.2} s with the autodiff graph",
            s.rows(),
            s.seq_len
        );
        forward.insert("rows".into(), json!(s.rows()));
        forward.insert("seq_len".into(), json!(s.seq_len));
        forward.insert("no_grad_s".into(), json!(plain));
        forward.insert("autodiff_s".into(), json!(graph));
    }
    let path = common::results_dir().join(format!("gemm-{}.json", backend_name()));
    let json = json!({"backend": backend_name(), "loadavg": dft_step::loadavg(), "machine": common::machine(),
                      "results": rows, "ops_ms": ops, "decoder_forward": forward});
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).expect("write");
    println!("wrote {}", path.display());
}
