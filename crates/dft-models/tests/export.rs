//! `dft export` against the reference tools (tools/oracle/export_fixtures.py ran `dft export` on the
//! committed tiny models and loaded the results with transformers and the `gguf` package):
//!
//! * every export we write now is byte-identical (sha256) to the one the oracle loaded, so the oracle's
//!   numbers are about exactly these files;
//! * HF exports (tiny Llama / Gemma-2 / Gemma-3 f32, Llama bf16 sharded, a GGUF model with tokenizer and
//!   chat template): our re-import gives transformers' logits within 1e-4, transformers' token ids, and
//!   transformers' `apply_chat_template` text and ids;
//! * GGUF exports (tiny Llama and Gemma-2 in f32 / f16 / q8_0): the `gguf` package saw the tensor names,
//!   types and shapes our reader sees; our re-import gives the logits transformers computes from the same
//!   file (`gguf_file=`) within 1e-4 and its token ids; f32 re-imports the source tensors exactly
//!   (Gemma norms, stored `w + 1`, within 1 ulp of 1); q8_0 logits stay within the q8_0 bound of the source.
mod common;
use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use dft_models::gguf::{export_gguf, GgufExportType, GgufFile};
use dft_models::{load_pretrained, ChatMessage, ExportDtype, HfExportOptions, Pretrained};
use dft_test_support::scratch::ScratchDir;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const TOL: f64 = 1e-4;

fn oracle() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("export/export.json")).unwrap()).unwrap()
}

/// Fixture paths were written relative to the repository root.
fn source(v: &serde_json::Value) -> PathBuf {
    let rel = v["source"].as_str().unwrap();
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

/// A fresh scratch directory, removed when the test passes and kept when it fails.
fn tmpdir(name: &str) -> ScratchDir {
    ScratchDir::new(format!("dft-export-test-{}-{name}", std::process::id()))
}

fn check_hashes(name: &str, path: &Path, want: &serde_json::Value) {
    let files: Vec<PathBuf> = if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        let mut f: Vec<PathBuf> = std::fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).collect();
        f.sort();
        f
    };
    let got: BTreeMap<String, String> = files
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                format!("{:x}", Sha256::digest(std::fs::read(p).unwrap())),
            )
        })
        .collect();
    let want: BTreeMap<String, String> = serde_json::from_value(want.clone()).unwrap();
    let want_names: Vec<&String> = want.keys().collect();
    let got_names: Vec<&String> = got.keys().collect();
    assert_eq!(got_names, want_names, "{name}: files");
    // GGUF file names differ between the oracle's temp dir and ours; compare by position.
    for ((f, a), b) in got.iter().zip(want.values()) {
        assert_eq!(a, b, "{name}: {f} differs from what the oracle loaded");
    }
}

fn logits(pre: &Pretrained<B>, ids: &[Vec<i64>]) -> Vec<f32> {
    let device = Default::default();
    let t = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.concat(), vec![ids.len(), ids[0].len()]), &device);
    to_vec(pre.model.forward(t, None))
}

fn max_diff(a: &[f32], b: &serde_json::Value) -> f64 {
    let b: Vec<f64> =
        b.as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap())).collect();
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).map(|(x, y)| (*x as f64 - y).abs()).fold(0.0, f64::max)
}

fn check_tokenizer(name: &str, pre: &Pretrained<B>, want: &serde_json::Value, texts: &[String]) {
    let tok = pre.tokenizer.as_ref().expect("tokenizer");
    for (t, ids) in texts.iter().zip(want["ids"].as_array().unwrap()) {
        let want_ids: Vec<u32> = serde_json::from_value(ids.clone()).unwrap();
        assert_eq!(tok.encode(t.as_str(), true).unwrap().get_ids(), want_ids.as_slice(), "{name}: ids of {t:?}");
    }
    if let Some(chats) = want.get("chat") {
        let template = pre.meta.chat_template().unwrap();
        for c in chats.as_array().unwrap() {
            let messages: Vec<ChatMessage> = serde_json::from_value(c["messages"].clone()).unwrap();
            assert_eq!(template.render(&messages, true).unwrap(), c["text"].as_str().unwrap(), "{name}: chat text");
            let ids: Vec<u32> = serde_json::from_value(c["ids"].clone()).unwrap();
            assert_eq!(template.encode(tok, &messages, true).unwrap(), ids, "{name}: chat ids");
        }
    }
}

#[test]
fn hf_exports_load_in_transformers_with_equal_logits_ids_and_chat() {
    let o = oracle();
    let ids: Vec<Vec<i64>> = serde_json::from_value(o["ids"].clone()).unwrap();
    let texts: Vec<String> = serde_json::from_value(o["texts"].clone()).unwrap();
    let device = Default::default();
    let cases = o["hf"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let args: Vec<String> = serde_json::from_value(case["args"].clone()).unwrap();
        let mut opts = HfExportOptions::default();
        let mut pre = load_pretrained::<B>(&source(case), &device).unwrap();
        for w in args.windows(2) {
            match w[0].as_str() {
                "--dtype" => opts.dtype = w[1].parse::<ExportDtype>().unwrap(),
                "--shard-size" => opts.max_shard_bytes = dft_models::export::parse_size(&w[1]).unwrap(),
                "--chat-template" => {
                    let chat: serde_json::Value =
                        serde_json::from_str(&std::fs::read_to_string(fixture("chat/gemma3.json")).unwrap()).unwrap();
                    pre.meta.chat_template = Some(chat["template"].as_str().unwrap().to_string());
                }
                _ => {}
            }
        }
        let out = tmpdir(name);
        let dir = out.join("export");
        pre.model.export_hf(&dir, pre.tokenizer.as_ref(), Some(&pre.meta), &opts).unwrap();
        check_hashes(name, &dir, &case["files"]);
        let back = load_pretrained::<B>(&dir, &device).unwrap();
        let d = max_diff(&logits(&back, &ids), &case["logits"]);
        eprintln!("{name}: max |logit - transformers| = {d:e}");
        assert!(d <= TOL, "{name}: logits differ from transformers' by {d:e}");
        if let Some(t) = case.get("tokenizer") {
            check_tokenizer(name, &back, t, &texts);
        }
        // exporting again over our own export replaces it; a directory with foreign files is refused
        pre.model.export_hf(&dir, pre.tokenizer.as_ref(), Some(&pre.meta), &opts).unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let e = pre.model.export_hf(&dir, pre.tokenizer.as_ref(), Some(&pre.meta), &opts).unwrap_err().to_string();
        assert!(e.contains("notes.txt"), "{e}");
        assert!(dir.join("notes.txt").is_file());
    }
}

#[test]
fn gguf_exports_read_by_gguf_and_transformers_with_equal_logits() {
    let o = oracle();
    let ids: Vec<Vec<i64>> = serde_json::from_value(o["ids"].clone()).unwrap();
    let texts: Vec<String> = serde_json::from_value(o["texts"].clone()).unwrap();
    let device = Default::default();
    let cases = o["gguf"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let src = source(case);
        let ty: GgufExportType = case["type"].as_str().unwrap().parse().unwrap();
        let pre = load_pretrained::<B>(&src, &device).unwrap();
        let base = GgufFile::open(&src).unwrap();
        let out = tmpdir(name);
        let path = out.join(format!("{name}.gguf"));
        let stem = src.file_stem().unwrap().to_string_lossy().to_string();
        export_gguf(&pre.model, &path, ty, Some(&base), Some(&pre.meta), &stem).unwrap();
        check_hashes(name, &path, &case["files"]);

        // what the gguf package read
        let file = GgufFile::open(&path).unwrap();
        let ours: Vec<(String, String, Vec<u64>)> =
            file.tensors().iter().map(|t| (t.name.clone(), format!("{:?}", t.ggml_type), t.dims.clone())).collect();
        let theirs: Vec<(String, String, Vec<u64>)> = serde_json::from_value(case["gguf_tensors"].clone()).unwrap();
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!((&a.0, a.1.to_uppercase(), &a.2), (&b.0, b.1.to_uppercase(), &b.2), "{name}");
        }

        let back = load_pretrained::<B>(&path, &device).unwrap();
        let got = logits(&back, &ids);
        let d = max_diff(&got, &case["logits"]);
        eprintln!("{name}: max |logit - transformers(gguf_file)| = {d:e}");
        assert!(d <= TOL, "{name}: logits differ from transformers' by {d:e}");
        check_tokenizer(name, &back, &case["tokenizer"], &texts);

        let src_logits = logits(&pre, &ids);
        let scale = src_logits.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
        let vs_src = got.iter().zip(&src_logits).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
        eprintln!("{name}: max |logit - source| = {vs_src:e} (max |logit| {scale:.3})");
        match ty {
            GgufExportType::F32 => {
                let (a, b) = (pre.model.to_hf_tensors(), back.model.to_hf_tensors());
                assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
                for (k, t) in &a {
                    let tol =
                        if k.contains("norm") && pre.model.config.arch.is_gemma() { 2.0 * f32::EPSILON } else { 0.0 };
                    let worst = t.data.iter().zip(&b[k].data).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                    assert!(worst <= tol, "{name}: {k} re-imports off by {worst:e}");
                }
                assert!(vs_src <= 1e-5, "{name}: {vs_src:e}");
            }
            // measured: f16 ~1e-3, q8_0 ~5e-2 for logits of magnitude ~2 (tiny random models, width 32)
            GgufExportType::F16 => assert!(vs_src <= 2e-3 * scale.max(1.0), "{name}: f16 vs source {vs_src:e}"),
            GgufExportType::Q8_0 => assert!(vs_src <= 4e-2 * scale.max(1.0), "{name}: q8_0 vs source {vs_src:e}"),
        }
        if let Some(n) = case.get("quantized_like_gguf_py") {
            assert!(n.as_u64().unwrap() > 0, "{name}: the oracle compared no tensor with gguf-py's quantisation");
        }
    }
}
