//! Inference speed of the scoring engine on SmolLM2-135M-Instruct (the GGUF, f32), side by side with
//! transformers (tools/perf/torch_infer.py reads the requests this bench writes and runs them):
//!
//! - log-likelihood: the multiple-choice requests of the first `--limit` items of `--task` /
//!   `--lang` (lm-eval's tokenisation, [`Scorer::encode_items`]) scored by [`Scorer::loglikelihoods`]
//!   (shared contexts, packed batches, LM head only at the scored positions);
//! - greedy generation: the first `--gen` prompts of `--gen-task` (`mkqa`, `xquad`) decoded together by
//!   [`dft_models::generate::generate_batch`] until a newline token or EOS (the stop ids of
//!   [`Scorer::stop_tokens`]) or `--max-new` tokens.
//!
//! Writes `target/bench-results/infer-requests.json` (token ids, for the Python side) and `--out`
//! (default `target/bench-results/infer-rust.json`): per request log-likelihood and is_greedy, per prompt
//! the generated ids, seconds, tokens/s and GFLOP/s (2 × parameters × tokens, attention not counted).
//!
//! ```text
//! DFT_EVAL_DATA=../shared/data/eval cargo bench --bench infer -- --threads 1 --limit 100 --gen 32
//! tools/perf/infer.sh        # both sides, interleaved, with the comparison table
//! ```
//!
//! `--no-fused-attention` runs every block's attention as the tensor composition (the ablation).
use std::path::PathBuf;
use std::time::Instant;

use dft_eval::{load_task, Scorer};
use dft_models::generate::{generate_batch, GenerateConfig, Sampling};
use dft_models::load_pretrained;
use serde_json::json;

use dft_rs::backend::Inner as B;

struct Args {
    task: String,
    lang: String,
    limit: usize,
    gen_task: String,
    gen: usize,
    max_new: usize,
    threads: usize,
    batch: usize,
    /// `newline`: stop at every token whose text holds a newline, and EOS (`dft eval`'s QA decoding);
    /// `eos`: at EOS only (decoding-bound: most prompts run to `--max-new`).
    stop: String,
    out: PathBuf,
    /// `--no-fused-attention`: the tensor composition in every block (the ablation of
    /// [`dft_models::CausalLm::with_fused_attention`]).
    fused_attention: bool,
}

fn parse() -> Args {
    let mut a = Args {
        task: "xcopa".into(),
        lang: "zh".into(),
        limit: 100,
        gen_task: "mkqa".into(),
        gen: 32,
        max_new: 32,
        threads: 1,
        batch: dft_eval::scoring::DEFAULT_BATCH_SIZE,
        stop: "newline".into(),
        out: PathBuf::from("target/bench-results/infer-rust.json"),
        fused_attention: true,
    };
    let args: Vec<String> = std::env::args().skip(1).filter(|s| s != "--bench").collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value")).clone();
        match flag.as_str() {
            "--task" => a.task = value(),
            "--lang" => a.lang = value(),
            "--limit" => a.limit = value().parse().expect("--limit N"),
            "--gen-task" => a.gen_task = value(),
            "--gen" => a.gen = value().parse().expect("--gen N"),
            "--max-new" => a.max_new = value().parse().expect("--max-new N"),
            "--threads" => a.threads = value().parse().expect("--threads N"),
            "--batch" => a.batch = value().parse().expect("--batch N"),
            "--stop" => a.stop = value(),
            "--out" => a.out = PathBuf::from(value()),
            "--no-fused-attention" => a.fused_attention = false,
            other => panic!("unknown flag {other} (see benches/infer.rs)"),
        }
    }
    a
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args = parse();
    let gguf = std::env::var_os("DFT_SMOLLM2_GGUF").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    let Some(data) = std::env::var_os("DFT_EVAL_DATA").map(PathBuf::from) else {
        eprintln!("infer bench: set DFT_EVAL_DATA to the benchmark folder (shared/data/eval)");
        return;
    };
    if !gguf.is_file() {
        eprintln!("infer bench: {} missing (scripts/fetch-smollm2.sh or DFT_SMOLLM2_GGUF)", gguf.display());
        return;
    }
    rayon::ThreadPoolBuilder::new().num_threads(args.threads).build_global().expect("rayon pool");
    // On a pool thread, as `dft eval` runs (src/main.rs `on_pool`).
    rayon::scope(|_| run(&args, &gguf, &data));
}

fn run(args: &Args, gguf: &std::path::Path, data: &std::path::Path) {
    let pre = load_pretrained::<B>(gguf, &Default::default()).expect("load the GGUF");
    let tok = pre.tokenizer.expect("tokenizer");
    let model = &pre.model.with_fused_attention(args.fused_attention);
    let (trunk, head) = model.matmul_params();
    let params = trunk + head;
    let scorer = Scorer::new(model, &tok).expect("scorer").with_batch_size(args.batch);

    // Log-likelihood.
    let task = load_task(data, &args.task, &args.lang).expect("task");
    let items = task.items.as_multiple_choice().expect("a multiple-choice task");
    let items = &items[..args.limit.min(items.len())];
    let requests = scorer.encode_items(items).expect("encode");
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let (lls, stats) = scorer.loglikelihoods(&requests, &mut |_| {}).expect("score");
    let (ll_s, ll_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    let ll_flops = stats.gflops_per_s((trunk, head)) * stats.seconds * 1e9;

    // Greedy generation.
    let gen_task = load_task(data, &args.gen_task, &args.lang).expect("generation task");
    let gen_items = gen_task.items.as_generative().expect("a generative task");
    let prompts: Vec<Vec<u32>> = gen_items[..args.gen.min(gen_items.len())]
        .iter()
        .map(|it| dft_eval::scoring::encode(&tok, &it.prompt, true).expect("encode"))
        .collect();
    let cfg = GenerateConfig {
        max_new_tokens: args.max_new,
        sampling: Sampling::Greedy,
        stop_tokens: match args.stop.as_str() {
            "newline" => scorer.stop_tokens().to_vec(),
            "eos" => model.config.eos_token_ids.clone(),
            other => panic!("--stop newline|eos, not {other}"),
        },
    };
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let gens = generate_batch(model, &prompts, &cfg, args.batch, &mut |_| {}).expect("generate");
    let (gen_s, gen_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    let new_tokens: usize = gens.iter().map(|g| g.ids.len()).sum();
    let prompt_tokens: usize = prompts.iter().map(|p| p.len()).sum();
    let gen_flops = 2.0 * (trunk * (prompt_tokens + new_tokens) + head * new_tokens) as f64;

    println!("| dft ({} threads) | items | tokens run | wall s | CPU s | tokens/s | GFLOP/s |", args.threads);
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| log-likelihood {} {} ({} requests) | {} | {} | {ll_s:.2} | {ll_cpu:.2} | {:.0} | {:.1} |",
        args.task,
        args.lang,
        requests.len(),
        items.len(),
        stats.model_tokens,
        stats.model_tokens as f64 / ll_s,
        ll_flops / ll_s / 1e9
    );
    println!(
        "| greedy {} {} (batch {}) | {} | {} prompt + {new_tokens} new | {gen_s:.2} | {gen_cpu:.2} | {:.1} new/s | {:.1} |",
        args.gen_task,
        args.lang,
        args.batch,
        prompts.len(),
        prompt_tokens,
        new_tokens as f64 / gen_s,
        gen_flops / gen_s / 1e9
    );

    let dir = args.out.parent().map(PathBuf::from).unwrap_or_default();
    std::fs::create_dir_all(&dir).expect("results folder");
    let dump = json!({
        "threads": args.threads,
        "stop": args.stop,
        "task": args.task, "lang": args.lang, "gen_task": args.gen_task, "max_new": args.max_new,
        "stop_tokens": cfg.stop_tokens,
        "requests": requests.iter().zip(items.iter().flat_map(|it| (0..it.choices.len()).map(move |c| (it, c))))
            .map(|(r, (it, c))| json!({"item": it.id, "choice": c, "gold": it.gold, "context": r.context, "continuation": r.continuation}))
            .collect::<Vec<_>>(),
        "prompts": prompts,
    });
    std::fs::write(dir.join("infer-requests.json"), dump.to_string()).expect("write requests");
    let out = json!({
        "engine": "dft", "threads": args.threads, "batch": args.batch, "params": params,
        "fused_attention": args.fused_attention,
        "loglik": {"seconds": ll_s, "cpu_seconds": ll_cpu, "model_tokens": stats.model_tokens, "request_tokens": stats.request_tokens,
                   "scored_tokens": stats.scored_tokens, "gflops": ll_flops / ll_s / 1e9,
                   "results": lls.iter().map(|l| json!([l.logprob, l.is_greedy])).collect::<Vec<_>>()},
        "generate": {"seconds": gen_s, "cpu_seconds": gen_cpu, "stop": args.stop, "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
                     "gflops": gen_flops / gen_s / 1e9,
                     "ids": gens.iter().map(|g| &g.ids).collect::<Vec<_>>()},
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&out).expect("json")).expect("write results");
    println!("results: {}", args.out.display());
}
