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
//!   token (`dft_models::generate::generate_batch`, one prompt);
//! - translation: the first 8 FLORES zh sentences of each direction (1-shot prompts, greedy until
//!   newline, budget 160), prompt-pass and decoding tokens per second;
//! - alignment: pooled hidden states of 32 FLORES sentence pairs (all 31 blocks kept).
mod common;

use std::time::Instant;

use dft_eval::{load_task, Scorer};

type B = burn::backend::Flex;

use dft_test_support::sys::cpu_seconds;

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
        let t0 = Instant::now();
        let cpu = cpu_seconds();
        let cfg = dft_models::generate::GenerateConfig {
            max_new_tokens: 64,
            sampling: dft_models::generate::Sampling::Greedy,
            stop_tokens: vec![],
        };
        let g = dft_models::generate::generate_batch(&pre.model, &[prompt], &cfg, 1, &mut |_| {}).unwrap();
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu);
        let prompt_s = g[0].prompt_seconds;
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
    }

    let flores = dft_eval::tasks::flores::load_flores(&data, dft_eval::Lang::Zh, &Default::default()).unwrap();
    let items = dft_eval::tasks::flores::first_per_direction(flores.items.as_translation().unwrap(), 8);
    for dir in [(dft_eval::Lang::En, dft_eval::Lang::Zh), (dft_eval::Lang::Zh, dft_eval::Lang::En)] {
        let part: Vec<_> = items.iter().filter(|i| (i.src, i.tgt) == dir).cloned().collect();
        let cpu = cpu_seconds();
        let (scores, gens, t) = scorer.score_translation(&part, 160, &mut |_| {}).unwrap();
        let cpu = cpu_seconds() - cpu;
        let prompt_tokens: usize = gens.iter().map(|g| g.prompt_tokens).sum();
        println!(
            "| translation {}→{} (1-shot, {} sentences): {} prompt tokens, {} generated ({} hit 160) | {} | {} | {:.1} | prompt {:.0} tok/s, decode {:.1} tok/s | {cpu:.1} | {:.1} generated tok per CPU s |",
            dir.0,
            dir.1,
            part.len(),
            prompt_tokens,
            t.scored_tokens,
            scores[0].truncated,
            part.len(),
            t.model_tokens,
            t.seconds,
            prompt_tokens as f64 / t.prompt_seconds.max(1e-9),
            t.decode_tokens_per_s(),
            t.scored_tokens as f64 / cpu.max(1e-9)
        );
    }

    let pairs = dft_eval::tasks::flores::load_parallel(&data, dft_eval::Lang::Zh).unwrap();
    let texts: Vec<String> = pairs.english[..32].iter().chain(&pairs.target[..32]).cloned().collect();
    let cpu = cpu_seconds();
    let t0 = Instant::now();
    let pooled = dft_eval::align::pooled_hidden_states(&pre.model, &tok, &texts, 8, &mut |_| {}).unwrap();
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let tokens: usize = pooled.tokens.iter().sum();
    println!(
        "| alignment: pooled h_0..h_30 of 64 FLORES sentences (batch 8) | 64 | {tokens} | {wall:.1} | {:.0} | {cpu:.1} | {:.0} |",
        tokens as f64 / wall,
        tokens as f64 / cpu.max(1e-9)
    );
}
