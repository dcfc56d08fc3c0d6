//! The real embedded model: SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI) through our decoder, against
//! transformers loading the same GGUF (tools/oracle/model_fixtures.py): token ids, logits within 1e-3,
//! and the greedy continuation of "The capital of France is".
mod common;
use common::*;
use dft_models::load_pretrained;

#[test]
fn smollm2_logits_tokens_and_greedy_match_transformers() {
    let Some(path) = smollm2_gguf() else { return };
    let device = Default::default();
    let pre = load_pretrained::<B>(&path, &device).unwrap();
    let (model, tok) = (pre.model, pre.tokenizer.expect("GGUF carries a tokenizer"));
    let refs = read_refs(&fixture("smollm2/reference_logits.safetensors"));
    let greedy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("smollm2/greedy.json")).unwrap()).unwrap();
    let prompts: Vec<String> =
        greedy["prompts"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    let v = model.config.vocab_size;
    for (i, text) in prompts.iter().enumerate() {
        let ids: Vec<u32> = tok.encode(text.as_str(), true).unwrap().get_ids().to_vec();
        let want: Vec<u32> = refs[&format!("p{i}.input_ids")].ids().iter().map(|&x| x as u32).collect();
        assert_eq!(ids, want, "token ids of {text:?}");
        let logits = to_vec(model.forward(refs[&format!("p{i}.input_ids")].int_tensor(&device), None));
        let t = ids.len();
        let last = &logits[(t - 1) * v..];
        let d = max_abs_diff(last, &refs[&format!("p{i}.last_logits")].data, |_| true);
        assert!(d <= 1e-3, "{text:?}: last-position logits differ by {d:e}");
        let head: Vec<f32> = (0..t).flat_map(|p| logits[p * v..p * v + 512].to_vec()).collect();
        let d = max_abs_diff(&head, &refs[&format!("p{i}.logits_head")].data, |_| true);
        assert!(d <= 1e-3, "{text:?}: logits (all positions, first 512 ids) differ by {d:e}");
    }
    let prompt: Vec<u32> =
        greedy["prompt_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    let want: Vec<u32> = greedy["new_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    let got = dft_models::generate::greedy(&model, &prompt, want.len(), &[]).unwrap();
    assert_eq!(got, want, "greedy continuation differs from transformers");
    let text = tok.decode(&got, true).unwrap();
    assert!(text.starts_with(" Paris"), "greedy continuation: {text:?}");
}
