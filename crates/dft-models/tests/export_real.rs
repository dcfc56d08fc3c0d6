//! The real SmolLM2-135M-Instruct and Gemma-3-270M through `dft export` (f32 HF directory and f32 GGUF),
//! against transformers loading those exports (tools/oracle/export_fixtures.py --real):
//! byte-identical files (sha256); transformers' logits (a strided vocabulary sample at every position,
//! the row max and argmax) within 1e-4 (measured 4.4e-5 Gemma-3, 4.9e-5 SmolLM2), its token ids and
//! chat template; and the round trip import → export f32 → import gives logits identical (bit for bit)
//! to the first import, for the HF directory and the GGUF. Skipped when the GGUFs are absent unless `DFT_REQUIRE_MODELS=1`.
mod common;
use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use dft_models::gguf::hf_vocab::hf_tokenizer_metadata;
use dft_models::gguf::{
    export_gguf, export_gguf_with_tokenizer, GgufExportType, GgufFile, GgufTokenizerSource, MetaValue,
};
use dft_models::{load_pretrained, ChatMessage, HfExportOptions, Pretrained};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const TOL: f64 = 1e-4;

fn hashes(path: &Path) -> serde_json::Value {
    let files: Vec<PathBuf> = if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        let mut f: Vec<PathBuf> = std::fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).collect();
        f.sort();
        f
    };
    files
        .iter()
        .map(|p| {
            let mut h = Sha256::new();
            std::io::copy(&mut std::fs::File::open(p).unwrap(), &mut h).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                serde_json::Value::String(format!("{:x}", h.finalize())),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn logits(pre: &Pretrained<B>, ids: &[u32]) -> (Vec<f32>, usize) {
    let device = Default::default();
    let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    let t = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), vec![1, ids.len()]), &device);
    (to_vec(pre.model.forward(t, None)), pre.model.config.vocab_size)
}

fn compare(name: &str, (got, v): &(Vec<f32>, usize), want: &serde_json::Value) {
    let stride = want["stride"].as_u64().unwrap() as usize;
    let rows = want["strided"].as_array().unwrap();
    let mut worst = 0f64;
    for (t, row) in rows.iter().enumerate() {
        let r = &got[t * v..(t + 1) * v];
        for (j, x) in row.as_array().unwrap().iter().enumerate() {
            worst = worst.max((r[j * stride] as f64 - x.as_f64().unwrap()).abs());
        }
        let (am, mx) =
            r.iter().enumerate().fold((0, f32::MIN), |(bi, bx), (i, &x)| if x > bx { (i, x) } else { (bi, bx) });
        worst = worst.max((mx as f64 - want["max"][t].as_f64().unwrap()).abs());
        assert_eq!(am as u64, want["argmax"][t].as_u64().unwrap(), "{name}: argmax at position {t}");
    }
    eprintln!("{name}: max |logit - transformers| = {worst:e}");
    assert!(worst <= TOL, "{name}: logits differ from transformers' by {worst:e}");
}

fn check_tok(name: &str, pre: &Pretrained<B>, want: &serde_json::Value, texts: &[String]) {
    let tok = pre.tokenizer.as_ref().unwrap();
    for (t, ids) in texts.iter().zip(want["ids"].as_array().unwrap()) {
        let ids: Vec<u32> = serde_json::from_value(ids.clone()).unwrap();
        assert_eq!(tok.encode(t.as_str(), true).unwrap().get_ids(), ids.as_slice(), "{name}: {t:?}");
    }
    if let Some(chats) = want.get("chat") {
        let tmpl = pre.meta.chat_template().unwrap();
        for c in chats.as_array().unwrap() {
            let m: Vec<ChatMessage> = serde_json::from_value(c["messages"].clone()).unwrap();
            assert_eq!(tmpl.render(&m, true).unwrap(), c["text"].as_str().unwrap(), "{name}");
            let ids: Vec<u32> = serde_json::from_value(c["ids"].clone()).unwrap();
            assert_eq!(tmpl.encode(tok, &m, true).unwrap(), ids, "{name}");
        }
    }
}

fn run(name: &str, gguf: &Path) {
    let o: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("export/real.json")).unwrap()).unwrap();
    let want = &o[name];
    let texts: Vec<String> = serde_json::from_value(o["texts"].clone()).unwrap();
    let ids: Vec<u32> = serde_json::from_value(want["prompt_ids"].clone()).unwrap();
    let device = Default::default();
    let tmp = dft_test_support::scratch::ScratchDir::new(format!("dft-export-real-{}-{name}", std::process::id()));
    let (hf, gg) = (tmp.join("hf"), tmp.join(format!("{name}.f32.gguf")));

    let pre = load_pretrained::<B>(gguf, &device).unwrap();
    let first = logits(&pre, &ids);
    pre.model.export_hf(&hf, pre.tokenizer.as_ref(), Some(&pre.meta), &HfExportOptions::default()).unwrap();
    let stem = gguf.file_stem().unwrap().to_string_lossy().to_string();
    let base = GgufFile::open(gguf).unwrap();
    export_gguf(&pre.model, &gg, GgufExportType::F32, Some(&base), Some(&pre.meta), &stem).unwrap();
    drop(pre);
    assert_eq!(hashes(&hf), want["hf_files"], "{name}: HF export differs from what transformers loaded");
    let g = hashes(&gg);
    assert_eq!(
        g.as_object().unwrap().values().collect::<Vec<_>>(),
        want["gguf_files"].as_object().unwrap().values().collect::<Vec<_>>()
    );

    for (what, path, key, tok_key) in
        [("HF", &hf, "hf_logits", "hf_tokenizer"), ("GGUF", &gg, "gguf_logits", "gguf_tokenizer")]
    {
        let back = load_pretrained::<B>(path, &device).unwrap();
        let l = logits(&back, &ids);
        compare(&format!("{name} {what} export"), &l, &want[key]);
        check_tok(&format!("{name} {what} export"), &back, &want[tok_key], &texts);
        let rt = l.0.iter().zip(&first.0).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("{name} {what} round trip: max |logit - first import| = {rt:e}");
        assert_eq!(rt, 0.0, "{name} {what} round trip changes logits by {rt:e}");
    }
}

#[test]
fn smollm2_exports_load_in_transformers_and_round_trip() {
    let Some(p) = smollm2_gguf() else { return };
    run("smollm2", &p);
}

#[test]
fn gemma3_exports_load_in_transformers_and_round_trip() {
    let Some(p) = gemma3_gguf() else { return };
    run("gemma3", &p);
}

/// A model whose base is an HF directory exports a GGUF with a tokenizer: the real SmolLM2's HF export
/// (tokenizer.json, tokenizer_config.json) converted to `tokenizer.ggml.*` gives exactly the tokens,
/// token types, merges, special ids and add_bos of the GGUF llama.cpp's converter wrote from SmolLM2's
/// original files. `pre` is `gpt-2`: the tokenizer rebuilt from a GGUF splits as transformers builds it
/// (GPT-2's regex; transformers knows no `smollm` split). The GGUF tokenizes the texts as the first
/// import does. The real Gemma-3's HF export (byte-fallback tokenizer.json, no tokenizer.model) is
/// refused with an error naming the missing file.
#[test]
fn gguf_from_an_hf_directory_carries_the_tokenizer() {
    let device = Default::default();
    let tmp = dft_test_support::scratch::ScratchDir::new(format!("dft-export-hfvocab-{}", std::process::id()));
    let texts: Vec<String> = serde_json::from_value(
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(fixture("export/real.json")).unwrap())
            .unwrap()["texts"]
            .clone(),
    )
    .unwrap();
    if let Some(p) = smollm2_gguf() {
        let pre = load_pretrained::<B>(&p, &device).unwrap();
        let hf = tmp.join("smollm2-hf");
        pre.model.export_hf(&hf, pre.tokenizer.as_ref(), Some(&pre.meta), &HfExportOptions::default()).unwrap();
        let kv = hf_tokenizer_metadata(&hf, pre.model.config.vocab_size).unwrap().unwrap();
        let base = GgufFile::open(&p).unwrap();
        for key in [
            "tokenizer.ggml.model",
            "tokenizer.ggml.tokens",
            "tokenizer.ggml.token_type",
            "tokenizer.ggml.merges",
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.unknown_token_id",
            "tokenizer.ggml.padding_token_id",
            "tokenizer.ggml.add_bos_token",
        ] {
            let ours = kv.iter().find(|(k, _)| k == key).map(|(_, v)| v);
            let theirs = base.get(key);
            // llama.cpp writes ids as u32 and token types as i32, as we do
            assert!(
                ours.is_some() && ours == theirs,
                "{key}: ours {:?} vs llama.cpp's {:?}",
                ours.map(short),
                theirs.map(short)
            );
        }
        let pre_name = kv.iter().find(|(k, _)| k == "tokenizer.ggml.pre").map(|(_, v)| v.clone());
        assert_eq!(pre_name, Some(MetaValue::String("gpt-2".into())));

        let gg = tmp.join("smollm2-from-hf.gguf");
        let from_hf = load_pretrained::<B>(&hf, &device).unwrap();
        export_gguf_with_tokenizer(
            &from_hf.model,
            &gg,
            GgufExportType::F32,
            GgufTokenizerSource::HfDir(&hf),
            Some(&from_hf.meta),
            "smollm2",
        )
        .unwrap();
        let back = load_pretrained::<B>(&gg, &device).unwrap();
        let (a, b) = (pre.tokenizer.as_ref().unwrap(), back.tokenizer.as_ref().unwrap());
        for t in &texts {
            assert_eq!(
                a.encode(t.as_str(), true).unwrap().get_ids(),
                b.encode(t.as_str(), true).unwrap().get_ids(),
                "{t}"
            );
        }
        let ids = a.encode(texts[0].as_str(), true).unwrap().get_ids().to_vec();
        assert_eq!(logits(&pre, &ids).0, logits(&back, &ids).0, "weights round trip through HF then GGUF");
    }
    if let Some(p) = gemma3_gguf() {
        let pre = load_pretrained::<B>(&p, &device).unwrap();
        let hf = tmp.join("gemma3-hf");
        pre.model.export_hf(&hf, pre.tokenizer.as_ref(), Some(&pre.meta), &HfExportOptions::default()).unwrap();
        let e = hf_tokenizer_metadata(&hf, pre.model.config.vocab_size).unwrap_err().to_string();
        assert!(e.contains("tokenizer.json") && e.contains("tokenizer.model"), "{e}");
    }
}

fn short(v: &MetaValue) -> String {
    let s = format!("{v:?}");
    s.chars().take(120).collect()
}
