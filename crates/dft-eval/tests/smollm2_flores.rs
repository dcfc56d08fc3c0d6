//! FLORES translation and representation alignment on the real SmolLM2-135M-Instruct GGUF against
//! transformers (fixture `smollm2_flores.json`, written by tools/oracle/eval_fixtures.py):
//!
//! - the 1-shot translation prompts dft-eval builds from the FLORES samples equal the oracle's, their
//!   token ids equal transformers', and greedy KV-cache decoding reproduces transformers'
//!   `generate` ids up to (and including) the first newline/EOS token (budget 20);
//! - the per-block cosines of mean-pooled hidden states of parallel sentences (matched pairs and
//!   mismatched pairs, blocks 0..=L) are within 1e-3 of transformers' (forward hooks, float64
//!   cosine), with sentences of different lengths batched together (right padding).
mod common;

use dft_eval::align::{cosine, pooled_hidden_states};
use dft_eval::{FloresOptions, Lang, Scorer};
use serde_json::Value;

type B = burn::backend::Flex;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("id list").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

#[test]
fn smollm2_flores_translation_and_alignment_match_transformers() {
    let Some(gguf) = common::smollm2_gguf() else { return };
    let fx = common::fixture("smollm2_flores.json");
    let pre = dft_models::load_pretrained::<B>(&gguf, &Default::default()).expect("load SmolLM2");
    let tok = pre.tokenizer.expect("GGUF tokenizer");
    let scorer = Scorer::new(&pre.model, &tok).unwrap();
    let data = common::eval_data_dir();
    let task = dft_eval::tasks::flores::load_flores(&data, Lang::Zh, &FloresOptions::default()).unwrap();
    let items = task.items.as_translation().unwrap();

    // Translation: prompts, prompt ids, greedy ids.
    let max_new = fx["max_new_tokens"].as_u64().unwrap() as usize;
    let t0 = std::time::Instant::now();
    let mut generated = 0;
    for g in fx["translation"].as_array().unwrap() {
        let id = g["id"].as_str().unwrap();
        let item = items.iter().find(|i| i.id == id).unwrap_or_else(|| panic!("{id}: no such item"));
        assert_eq!(item.prompt, g["prompt"].as_str().unwrap(), "{id}: prompt");
        assert_eq!(item.reference, g["reference"].as_str().unwrap(), "{id}: reference");
        assert_eq!(
            dft_eval::scoring::encode(&tok, &item.prompt, true).unwrap(),
            ids(&g["prompt_ids"]),
            "{id}: prompt ids"
        );
        let reference = ids(&g["greedy_ids"]);
        let stop = reference.iter().position(|t| scorer.stop_tokens().contains(t)).map_or(reference.len(), |p| p + 1);
        let ours = scorer.generate_until(id, &item.prompt, max_new).unwrap();
        assert_eq!(ours.ids, reference[..stop], "{id}: greedy ids");
        assert_eq!(ours.text, g["text"].as_str().unwrap(), "{id}: text");
        generated += ours.ids.len();
        eprintln!("{id}: {:?}", ours.text);
    }
    eprintln!(
        "{} translations identical to transformers ({generated} tokens, {:.1}s)",
        fx["translation"].as_array().unwrap().len(),
        t0.elapsed().as_secs_f64()
    );

    // Alignment: pooled per-block cosines, matched and mismatched.
    let pairs = fx["alignment"].as_array().unwrap();
    let mismatched = fx["alignment_mismatched"].as_array().unwrap();
    let par = dft_eval::tasks::flores::load_parallel(&data, Lang::Zh).unwrap();
    let n = pairs.len() + 1;
    let en: Vec<String> = par.english[..n].to_vec();
    let zh: Vec<String> = par.target[..n].to_vec();
    for (i, p) in pairs.iter().enumerate() {
        assert_eq!((en[i].as_str(), zh[i].as_str()), (p["en"].as_str().unwrap(), p["tgt"].as_str().unwrap()));
        assert_eq!(dft_eval::scoring::encode(&tok, &en[i], true).unwrap(), ids(&p["en_ids"]), "pair {i}: en ids");
        assert_eq!(dft_eval::scoring::encode(&tok, &zh[i], true).unwrap(), ids(&p["tgt_ids"]), "pair {i}: zh ids");
    }
    let t0 = std::time::Instant::now();
    let pe = pooled_hidden_states(&pre.model, &tok, &en, 4, &mut |_| {}).unwrap();
    let pz = pooled_hidden_states(&pre.model, &tok, &zh, 4, &mut |_| {}).unwrap();
    let layers = fx["num_layers"].as_u64().unwrap() as usize + 1;
    assert_eq!(pe.layers, layers);
    let mut worst = 0.0f64;
    let mut check = |what: String, i: usize, j: usize, want: &Value| {
        let want: Vec<f64> = want.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(want.len(), layers);
        for (k, w) in want.iter().enumerate() {
            let got = cosine(pe.vector(k, i), pz.vector(k, j));
            worst = worst.max((got - w).abs());
            assert!((got - w).abs() <= 1e-3, "{what}, block {k}: {got} vs {w}");
        }
    };
    for (i, p) in pairs.iter().enumerate() {
        check(format!("pair {i}"), i, i, &p["cos"]);
    }
    for (i, m) in mismatched.iter().enumerate() {
        check(format!("en {i} vs zh {}", i + 1), i, i + 1, &m["cos"]);
    }
    eprintln!(
        "{} matched + {} mismatched pairs × {layers} blocks: max |Δ cos| = {worst:.2e} ({:.1}s)",
        pairs.len(),
        mismatched.len(),
        t0.elapsed().as_secs_f64()
    );
}
