//! The real Gemma-3-270M (google/gemma-3-270m, Q4_K_M GGUF from PyPI; scripts/fetch-gemma3.sh) through our
//! decoder, against transformers loading the same GGUF (tools/oracle/gguf_fixtures.py, eager attention, f32):
//! token ids, logits of en/zh/vi/ar prompts within 1e-3 (a sample of 256 vocabulary ids at every position,
//! every 64th id at the last position, and the logsumexp of every full 262,144-wide row), and the greedy
//! continuation of "The capital of France is", token for token. Skipped when the GGUF is absent unless
//! `DFT_REQUIRE_MODELS=1`.
mod common;
use common::*;
use dft_models::{load_pretrained, Arch};

const TOL: f64 = 1e-3;

#[test]
fn gemma3_logits_tokens_and_greedy_match_transformers() {
    let Some(path) = gemma3_gguf() else { return };
    let device = Default::default();
    let t0 = std::time::Instant::now();
    let pre = load_pretrained::<B>(&path, &device).unwrap();
    eprintln!("loaded {} in {:.1}s", path.display(), t0.elapsed().as_secs_f64());
    let (model, tok) = (pre.model, pre.tokenizer.expect("GGUF carries a tokenizer"));
    assert_eq!(model.config.arch, Arch::Gemma3);
    let refs = read_refs(&fixture("gemma3/reference_logits.safetensors"));
    let greedy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("gemma3/greedy.json")).unwrap()).unwrap();
    let prompts: Vec<String> =
        greedy["prompts"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    assert!(prompts.len() >= 4);
    let stride = greedy["last_stride"].as_u64().unwrap() as usize;
    let v = model.config.vocab_size;
    assert_eq!(v, 262_144);
    let mut worst = [0f64; 3];
    for (i, text) in prompts.iter().enumerate() {
        let ids: Vec<u32> = tok.encode(text.as_str(), true).unwrap().get_ids().to_vec();
        let want: Vec<u32> = refs[&format!("p{i}.input_ids")].ids().iter().map(|&x| x as u32).collect();
        assert_eq!(ids, want, "token ids of {text:?}");
        assert_eq!(ids[0], 2, "BOS first");
        let logits = to_vec(model.forward(refs[&format!("p{i}.input_ids")].int_tensor(&device), None));
        let t = ids.len();
        assert_eq!(logits.len(), t * v);
        // a sample of ids (the last position's top 32 and seeded random ones) at every position
        let pick: Vec<usize> = refs[&format!("p{i}.sample_ids")].ids().iter().map(|&x| x as usize).collect();
        let sample: Vec<f32> =
            (0..t).flat_map(|p| pick.iter().map(move |&id| (p, id))).map(|(p, id)| logits[p * v + id]).collect();
        let d = max_abs_diff(&sample, &refs[&format!("p{i}.logits_sample")].data, |_| true);
        assert!(d <= TOL, "{text:?}: sampled logits differ by {d:e}");
        worst[0] = worst[0].max(d);
        // every `stride`-th id of the last position
        let last: Vec<f32> = logits[(t - 1) * v..].iter().step_by(stride).copied().collect();
        let d = max_abs_diff(&last, &refs[&format!("p{i}.last_strided")].data, |_| true);
        assert!(d <= TOL, "{text:?}: last-position logits differ by {d:e}");
        worst[1] = worst[1].max(d);
        // the whole row of every position, through its logsumexp
        let lse: Vec<f32> = (0..t)
            .map(|p| {
                let row = &logits[p * v..(p + 1) * v];
                let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                (m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln()) as f32
            })
            .collect();
        let d = max_abs_diff(&lse, &refs[&format!("p{i}.lse")].data, |_| true);
        assert!(d <= TOL, "{text:?}: logsumexp of full rows differs by {d:e}");
        worst[2] = worst[2].max(d);
        // the argmax of every position, unless transformers' top two are within the tolerance
        let want_argmax = refs[&format!("p{i}.argmax")].ids();
        for p in 0..t {
            let row = &logits[p * v..(p + 1) * v];
            let got = row.iter().enumerate().fold((0, f32::MIN), |a, (j, &x)| if x > a.1 { (j, x) } else { a }).0;
            let w = want_argmax[p] as usize;
            assert!(got == w || (row[got] - row[w]).abs() as f64 <= 2.0 * TOL, "{text:?}: argmax at {p}: {got} vs {w}");
        }
    }
    eprintln!(
        "max |Δ| sampled logits {:.2e}, last-position logits {:.2e}, row logsumexp {:.2e}",
        worst[0], worst[1], worst[2]
    );
    let prompt: Vec<u32> =
        greedy["prompt_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    let want: Vec<u32> = greedy["new_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    let got = dft_models::generate::greedy(&model, &prompt, want.len(), &[]).unwrap();
    let text = tok.decode(&got, true).unwrap();
    assert_eq!(got, want, "greedy continuation differs from transformers: {text:?}");
    // the base model says " the capital of the country of France. It is the largest" (as transformers does)
    assert_eq!(text, greedy["new_text"].as_str().unwrap());
}
