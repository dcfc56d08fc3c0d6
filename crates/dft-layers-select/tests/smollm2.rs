//! The real SmolLM2-135M-Instruct (GGUF): per-block lens entropies of zh and en FLORES sentences and the
//! latent-English probe against transformers (tests/fixtures/smollm2_lens.json, made by
//! tools/oracle/lens_fixtures.py). Skips when the model file is absent unless `DFT_REQUIRE_MODELS=1`.
use dft_layers_select::{build_probe, builtin_word_pairs, latent_english, lens_entropies, tokenize, LensOptions};
use dft_models::load_pretrained;
use serde_json::Value;
use std::path::PathBuf;

type B = burn::backend::Flex;

/// See `dft_test_support::models::smollm2_gguf`.
fn smollm2_gguf() -> Option<PathBuf> {
    dft_test_support::models::smollm2_gguf()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn smollm2_lens_entropies_and_latent_english_match_transformers() {
    let Some(path) = smollm2_gguf() else { return };
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_lens.json");
    let refs: Value = serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    let pre = load_pretrained::<B>(&path, &Default::default()).unwrap();
    let (model, tok) = (pre.model, pre.tokenizer.expect("GGUF carries a tokenizer"));
    let opts = LensOptions { batch_size: 8, ..Default::default() };
    let flores = PathBuf::from("/work/shared/data/eval/flores200");
    for lang in ["zh", "en"] {
        let r = &refs[lang];
        let want_ids: Vec<Vec<u32>> = r["ids"].as_array().unwrap().iter().map(ids).collect();
        // Tokenize the same lines when the data is here; the fixture's ids otherwise.
        let file = flores.join(r["file"].as_str().unwrap());
        let inputs = if file.is_file() {
            let lines = dft_layers_select::read_lines(&file).unwrap();
            let got = tokenize(&tok, &lines[..want_ids.len()], lang).unwrap();
            assert_eq!(got, want_ids, "{lang}: token ids differ from transformers");
            got
        } else {
            want_ids
        };
        // Short prefixes of different lengths (the fixture's `cut`): fast, and the batches carry padding.
        let cut: Vec<Vec<u32>> = inputs.iter().zip(ids(&r["cut"])).map(|(x, n)| x[..n as usize].to_vec()).collect();
        let ent = lens_entropies(&model, &cut, &opts).unwrap();
        let curve = ent.curve();
        let (all, last) = (floats(&r["mean_all"]), floats(&r["mean_last"]));
        assert_eq!(curve.layers.len(), all.len());
        let mut worst = 0f64;
        for (k, l) in curve.layers.iter().enumerate() {
            let (da, dl) = ((l.all.mean - all[k]).abs(), (l.last.mean - last[k]).abs());
            worst = worst.max(da).max(dl);
            assert!(da <= 1e-3, "{lang} block {k}: mean entropy {} vs transformers {}", l.all.mean, all[k]);
            assert!(dl <= 1e-3, "{lang} block {k}: last-position entropy {} vs transformers {}", l.last.mean, last[k]);
        }
        for (k, want) in r["sentence0"].as_array().unwrap().iter().enumerate() {
            for (p, (&g, w)) in ent.input(k, 0).iter().zip(floats(want)).enumerate() {
                let d = (g as f64 - w).abs();
                worst = worst.max(d);
                assert!(d <= 1e-3, "{lang} sentence 0 block {k} position {p}: {g} vs transformers {w}");
            }
        }
        eprintln!("{lang}: {} tokens, max |Δ entropy| vs transformers = {worst:.2e} nats", ent.num_tokens());
    }

    // Latent English: the same prompts, token sets and masses as transformers on the first pairs.
    let l = &refs["latent"];
    let pairs = builtin_word_pairs("zh").unwrap();
    let mut probe =
        build_probe(&pairs, l["label"].as_str().unwrap(), &tok, l["shots"].as_u64().unwrap() as usize).unwrap();
    let n = l["pairs"].as_array().unwrap().len();
    probe.prompt_ids.truncate(n);
    probe.english_tokens.truncate(n);
    probe.target_tokens.truncate(n);
    for (s, row) in l["pairs"].as_array().unwrap().iter().enumerate() {
        assert_eq!(probe.prompts[s], row["prompt"].as_str().unwrap());
        assert_eq!(probe.prompt_ids[s], ids(&row["prompt_ids"]), "pair {s}: prompt ids");
        assert_eq!(probe.english_tokens[s], ids(&row["english_tokens"]), "pair {s}: English token set");
        assert_eq!(probe.target_tokens[s], ids(&row["target_tokens"]), "pair {s}: target token");
    }
    let got = latent_english(&model, &probe, &opts).unwrap();
    let (p_en, p_tgt) = (floats(&l["p_en"]), floats(&l["p_tgt"]));
    for (k, layer) in got.layers.iter().enumerate() {
        assert!((layer.english.mean - p_en[k]).abs() <= 1e-4, "block {k}: P(en) {} vs {}", layer.english.mean, p_en[k]);
        assert!((layer.target.mean - p_tgt[k]).abs() <= 1e-4, "block {k}: P(zh) {} vs {}", layer.target.mean, p_tgt[k]);
    }
}
