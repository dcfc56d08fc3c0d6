//! Throughput of the scoring engine on the real SmolLM2-135M-Instruct GGUF (ignored by default; the
//! numbers go to docs/perf-eval.md):
//!
//! ```text
//! cargo test --release -p dft-eval --test throughput -- --ignored --nocapture
//! ```
//!
//! - log-likelihood: XNLI zh (empty context, 3 long continuations per item), XStoryCloze zh and
//!   MMLU zh (long contexts, short continuations), model tokens per second and per CPU second;
//! - generation: 64 greedy tokens after an XQuAD zh prompt and after a short prompt, with no stop
//!   token, with `Scorer::greedy` and with `dft_models::generate::greedy` for comparison.
mod common;

use std::time::Instant;

use dft_eval::{load_task, Scorer};

type B = burn::backend::Flex;

/// User + system CPU seconds of this process (Linux `/proc/self/stat`).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

#[test]
#[ignore = "measures throughput on the real model; run with --ignored --nocapture"]
fn smollm2_throughput() {
    let Some(gguf) = common::smollm2_gguf() else { return };
    let data = common::eval_data_dir();
    let pre = dft_models::load_pretrained::<B>(&gguf, &Default::default()).unwrap();
    let tok = pre.tokenizer.unwrap();
    let scorer = Scorer::new(&pre.model, &tok).unwrap();
    println!("| workload | items | model tokens | wall s | tok/s | CPU s | tok per CPU s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (task, n) in [("xnli", 16), ("xstorycloze", 16), ("mmlu", 16)] {
        let loaded = load_task(&data, task, "zh").unwrap();
        let items = &loaded.items.as_multiple_choice().unwrap()[..n];
        let cpu = cpu_seconds();
        let (_, _, t) = scorer.score_multiple_choice(items, &mut |_| {}).unwrap();
        let cpu = cpu_seconds() - cpu;
        println!(
            "| log-likelihood {task} zh (batch 16) | {n} | {} | {:.1} | {:.0} | {cpu:.1} | {:.0} |",
            t.model_tokens,
            t.seconds,
            t.model_tokens_per_s(),
            t.model_tokens as f64 / cpu.max(1e-9)
        );
    }
    let xquad = load_task(&data, "xquad", "zh").unwrap();
    let long = dft_eval::scoring::encode(&tok, &xquad.items.as_generative().unwrap()[0].prompt, true).unwrap();
    let short = dft_eval::scoring::encode(&tok, "Question: 中国的首都是哪里？\n\nAnswer:", true).unwrap();
    for (name, prompt) in [("XQuAD zh prompt", &long), ("short prompt", &short)] {
        let (ids, prompt_s) = {
            let t0 = Instant::now();
            let cpu = cpu_seconds();
            let (ids, prompt_s) = scorer.greedy(prompt, 64, &[]).unwrap();
            let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu);
            let decode = wall - prompt_s;
            println!(
                "| generation, {name} ({} tokens) + 64 new: prompt pass | 1 | {} | {prompt_s:.2} | {:.0} | | |",
                prompt.len(),
                prompt.len(),
                prompt.len() as f64 / prompt_s
            );
            println!(
                "| generation, {name}: 63 decode steps (KV cache) | 1 | 63 | {decode:.2} | {:.1} | {cpu:.1} (whole call) | |",
                63.0 / decode
            );
            (ids, prompt_s)
        };
        let t0 = Instant::now();
        let reference = dft_models::generate::greedy(&pre.model, prompt, 64, &[]);
        let wall = t0.elapsed().as_secs_f64();
        assert_eq!(ids, reference, "Scorer::greedy and dft_models::generate::greedy agree");
        println!(
            "| `dft_models::generate::greedy`, {name} + 64 new (prompt pass with full logits) | 1 | {} | {wall:.2} | | | |",
            prompt.len() + 63
        );
        let _ = prompt_s;
    }
}
