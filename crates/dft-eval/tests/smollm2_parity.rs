//! The scoring engine on the real SmolLM2-135M-Instruct GGUF against lm-evaluation-harness 0.4.13's
//! HFLM on transformers (fixture `smollm2_eval.json`, written by tools/oracle/eval_fixtures.py):
//! prompts and choices, request tokens, per-choice log-likelihoods within 1e-3 of lm-eval's
//! (computed with its `softmax_dtype=float64` option; the distance to its default float32 result is
//! printed), identical predictions and is_greedy flags, and greedy generation ids and answer text.
//!
//! The token checks cover every fixture item (490 items, 1,584 choices: 50 per task and language,
//! TruthfulQA zh 40). Log-likelihoods run on the first `DFT_EVAL_PARITY_ITEMS` items (default 2)
//! of each task × language, to keep `cargo test -p dft-eval` short on a CPU (~50 s on 2 cores);
//! `DFT_EVAL_PARITY_ITEMS=all` checks all of them (~9 min; max |Δ| 5.8e-4 when last run).
mod common;

use std::collections::HashMap;

use dft_eval::{load_task, LoadedTask, MultipleChoiceItem, Scorer};
use serde_json::Value;

type B = burn::backend::Flex;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("id list").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

fn items_per_group() -> usize {
    match std::env::var("DFT_EVAL_PARITY_ITEMS").as_deref() {
        Ok("all") => usize::MAX,
        Ok(n) => n.parse().expect("DFT_EVAL_PARITY_ITEMS: a number or `all`"),
        Err(_) => 2,
    }
}

/// The fixture items with the dft-eval item each one corresponds to.
fn matched_items(fx: &Value) -> Vec<(&Value, MultipleChoiceItem)> {
    let data = common::eval_data_dir();
    let mut tasks: HashMap<(String, String), LoadedTask> = HashMap::new();
    let mut out = Vec::new();
    for it in fx["items"].as_array().unwrap() {
        let (task, lang) = (it["task"].as_str().unwrap(), it["lang"].as_str().unwrap());
        let loaded = tasks
            .entry((task.into(), lang.into()))
            .or_insert_with(|| load_task(&data, task, lang).unwrap_or_else(|e| panic!("{task} {lang}: {e}")));
        let index = it["index"].as_u64().unwrap() as usize;
        let ours = loaded.items.as_multiple_choice().unwrap()[index].clone();
        let where_ = format!("{task} {lang} #{index}");
        assert_eq!(ours.context, it["context"].as_str().unwrap(), "{where_}: context");
        let choices: Vec<&str> = it["choices"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        assert_eq!(ours.choices, choices, "{where_}: choices");
        assert_eq!(ours.gold as u64, it["gold"].as_u64().unwrap(), "{where_}: gold");
        out.push((it, ours));
    }
    out
}

#[test]
fn smollm2_loglikelihoods_and_generation_match_lm_eval() {
    let Some(gguf) = common::smollm2_gguf() else { return };
    let fx = common::fixture("smollm2_eval.json");
    let t0 = std::time::Instant::now();
    let pre = dft_models::load_pretrained::<B>(&gguf, &Default::default()).expect("load SmolLM2");
    let tok = pre.tokenizer.expect("GGUF tokenizer");
    let scorer = Scorer::new(&pre.model, &tok).unwrap();
    assert_eq!(scorer.prefix_token() as u64, fx["prefix_token_id"].as_u64().unwrap(), "lm-eval prefix_token_id");
    eprintln!("model loaded in {:.1}s", t0.elapsed().as_secs_f64());

    // Prompts, choices and lm-eval's request tokens: every item.
    let matched = matched_items(&fx);
    let mut requests = 0;
    for (it, item) in &matched {
        let ours = scorer.encode_items(std::slice::from_ref(item)).unwrap();
        for (j, (r, want)) in ours.iter().zip(it["requests"].as_array().unwrap()).enumerate() {
            let where_ = format!("{} {} #{} choice {j}", it["task"], it["lang"], it["index"]);
            assert_eq!(r.context, ids(&want["context_ids"]), "{where_}: context tokens");
            assert_eq!(r.continuation, ids(&want["continuation_ids"]), "{where_}: continuation tokens");
            requests += 1;
        }
    }
    eprintln!("{} items, {requests} requests: prompts and tokens identical", matched.len());

    // Log-likelihoods and predictions on the first N items of each task × language.
    let n = items_per_group();
    let mut per_group: HashMap<(String, String), usize> = HashMap::new();
    let chosen: Vec<&(&Value, MultipleChoiceItem)> = matched
        .iter()
        .filter(|(it, _)| {
            let c = per_group.entry((it["task"].to_string(), it["lang"].to_string())).or_default();
            *c += 1;
            *c <= n
        })
        .collect();
    let items: Vec<MultipleChoiceItem> = chosen.iter().map(|(_, i)| i.clone()).collect();
    let t0 = std::time::Instant::now();
    let (result, logliks, stats) = scorer.score_multiple_choice(&items, &mut |_| {}).unwrap();
    let (mut worst, mut worst_f32, mut greedy_flips, mut checked, mut pred_f32_differs) = (0.0f64, 0.0f64, 0, 0, 0);
    for (((it, item), lls), pred) in chosen.iter().zip(&logliks).zip(&result.per_item) {
        let where_ = format!("{} {} {}", it["task"], it["lang"], item.id);
        let want = it["requests"].as_array().unwrap();
        for (j, (ll, w)) in lls.iter().zip(want).enumerate() {
            let d = (ll.logprob - w["loglik_f64"].as_f64().unwrap()).abs();
            worst = worst.max(d);
            worst_f32 = worst_f32.max((ll.logprob - w["loglik"].as_f64().unwrap()).abs());
            assert!(d <= 1e-3, "{where_}: choice {j}: {} vs {} (|Δ| {d:e})", ll.logprob, w["loglik_f64"]);
            greedy_flips += usize::from(ll.is_greedy != w["is_greedy"].as_bool().unwrap());
            checked += 1;
        }
        assert_eq!(pred.pred as u64, it["pred_f64"].as_u64().unwrap(), "{where_}: prediction");
        pred_f32_differs += usize::from(pred.pred as u64 != it["pred"].as_u64().unwrap());
    }
    assert_eq!(greedy_flips, 0, "is_greedy differs from lm-eval");
    eprintln!(
        "{} items / {checked} choices: max |Δ loglik| = {worst:.2e} vs lm-eval (float64 softmax), {worst_f32:.2e} vs \
         lm-eval default (float32 softmax); predictions identical (lm-eval float32 differs on {pred_f32_differs}); \
         {:.1}s, {} model tokens ({:.0} tok/s)",
        items.len(),
        t0.elapsed().as_secs_f64(),
        stats.model_tokens,
        stats.model_tokens_per_s()
    );

    // Greedy generation: transformers' ids up to (and including) the first newline/EOS token.
    let max_new = fx["max_new_tokens"].as_u64().unwrap() as usize;
    for g in fx["generation"].as_array().unwrap() {
        let prompt = g["prompt"].as_str().unwrap();
        let where_ = format!("{} {} #{}", g["task"], g["lang"], g["index"]);
        let (task, lang) = (g["task"].as_str().unwrap(), g["lang"].as_str().unwrap());
        let loaded = load_task(&common::eval_data_dir(), task, lang).unwrap();
        let item = &loaded.items.as_generative().unwrap()[g["index"].as_u64().unwrap() as usize];
        assert_eq!(item.prompt, prompt, "{where_}: prompt");
        assert_eq!(
            dft_eval::scoring::encode(&tok, prompt, true).unwrap(),
            ids(&g["prompt_ids"]),
            "{where_}: prompt ids"
        );
        let reference = ids(&g["greedy_ids"]);
        let stop = reference.iter().position(|t| scorer.stop_tokens().contains(t)).map_or(reference.len(), |p| p + 1);
        let ours = scorer.generate_until(&where_, prompt, max_new).unwrap();
        assert_eq!(ours.ids, reference[..stop], "{where_}: greedy ids");
        assert_eq!(ours.text, g["lm_eval_text"].as_str().unwrap(), "{where_}: answer text (lm-eval generate_until)");
    }
    eprintln!("{} greedy generations identical", fx["generation"].as_array().unwrap().len());
}
