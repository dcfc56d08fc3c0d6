//! GGUF import against fixtures written by `tools/oracle/gguf_fixtures.py` (gguf-py and
//! transformers as the oracle): dequantisation of every supported type, error cases, the HF view
//! and tokenizer of tiny llama / gemma2 files, the real SmolLM2-135M-Instruct Q4_1 GGUF
//! (`DFT_SMOLLM2_GGUF` or `.cache/models/smollm2/...`) and the real Gemma-3-270M Q4_K_M GGUF
//! (`DFT_GEMMA3_GGUF` or `.cache/models/gemma3/...`); real files are skipped when absent unless
//! `DFT_REQUIRE_MODELS=1`.
mod common;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dft_models::gguf::{GgmlType, GgufError, GgufFile, GgufModel, MetaArray, MetaValue};
use dft_models::{Arch, LayerType, ModelError, TensorSource};
use safetensors::SafeTensors;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tmp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gguf-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// f32 tensors of a safetensors file: name → (shape, values).
fn read_safetensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let data = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            (name, view.shape().to_vec(), data)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Bitwise equality (NaN == NaN); panics with the first differences.
fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bad: Vec<_> = (0..got.len()).filter(|&i| got[i].to_bits() != want[i].to_bits()).take(5).collect();
    assert!(bad.is_empty(), "{what}: differs at {:?}", bad.iter().map(|&i| (i, got[i], want[i])).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------------
// dequantisation and parsing
// ---------------------------------------------------------------------------------------------

#[test]
fn every_quant_type_matches_gguf_py() {
    let dir = fixtures().join("gguf");
    let f = GgufFile::open(dir.join("quants.gguf")).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    let expected = read_safetensors(&dir.join("quants.expected.safetensors"));
    let mut types = BTreeSet::new();
    for (name, shape, want) in &expected {
        let info = f.tensor_info(name).unwrap_or_else(|| panic!("no tensor {name}"));
        types.insert(info.ggml_type.name());
        let t = f.tensor_f32(name).unwrap();
        assert_eq!(&t.shape, shape, "{name}");
        assert_bits_eq(name, &t.data, want);
    }
    let want_types: BTreeSet<_> =
        ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"]
            .into_iter()
            .collect();
    assert_eq!(types, want_types);
    assert_eq!(f.tensor_info("f32_3d").unwrap().dims, vec![4, 3, 2]);
}

#[test]
fn metadata_written_by_gguf_py() {
    let f = GgufFile::open(fixtures().join("gguf/quants.gguf")).unwrap();
    assert_eq!(f.get("fixture.u8"), Some(&MetaValue::U8(200)));
    assert_eq!(f.get("fixture.i8"), Some(&MetaValue::I8(-5)));
    assert_eq!(f.get("fixture.u16"), Some(&MetaValue::U16(65000)));
    assert_eq!(f.get("fixture.i16"), Some(&MetaValue::I16(-30000)));
    assert_eq!(f.get_u32("fixture.u32").unwrap(), 4_000_000_000);
    assert_eq!(f.get_i64("fixture.i32").unwrap(), -2_000_000_000);
    assert_eq!(f.get_u64("fixture.u64").unwrap(), 1 << 40);
    assert_eq!(f.get_i64("fixture.i64").unwrap(), -(1 << 40));
    assert_eq!(f.get("fixture.f32"), Some(&MetaValue::F32(0.1)));
    assert_eq!(f.get("fixture.f64"), Some(&MetaValue::F64(0.1)));
    assert!(f.get_bool("fixture.bool").unwrap());
    assert_eq!(f.get_str_array("fixture.strings").unwrap(), &["a", "", "ünï", "\u{2581}x"]);
    match f.get_array("fixture.nested").unwrap() {
        MetaArray::Array(inner) => {
            assert_eq!(inner.len(), 2);
            assert_eq!(inner[0].to_i64_vec().unwrap(), vec![1, 2, 3]);
            assert_eq!(inner[1].to_i64_vec().unwrap(), vec![4, 5]);
        }
        other => panic!("fixture.nested: {other:?}"),
    }
    assert_eq!(f.architecture().unwrap(), "llama");
}

#[test]
fn version_2_file_reads_the_same() {
    let mut bytes = std::fs::read(fixtures().join("gguf/quants.gguf")).unwrap();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let p = tmp_file("quants_v2.gguf", &bytes);
    let f = GgufFile::open(&p).unwrap();
    assert_eq!(f.version(), 2);
    let v3 = GgufFile::open(fixtures().join("gguf/quants.gguf")).unwrap();
    assert_eq!(f.tensor_f32("q6_k").unwrap(), v3.tensor_f32("q6_k").unwrap());
}

#[test]
fn truncated_file_names_path_and_tensor() {
    let path = fixtures().join("gguf/truncated.gguf");
    let e = GgufFile::open(&path).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(&e, GgufError::TensorOutOfBounds { tensor, .. } if tensor == "q8_k"), "{msg}");
    assert!(msg.contains("truncated.gguf") && msg.contains("`q8_k`"), "{msg}");
    // cut inside the metadata
    let bytes = std::fs::read(fixtures().join("gguf/quants.gguf")).unwrap();
    let p = tmp_file("cut_header.gguf", &bytes[..200]);
    let e = GgufFile::open(&p).unwrap_err();
    assert!(matches!(e, GgufError::Truncated { .. }) && e.to_string().contains("cut_header.gguf"), "{e}");
}

#[test]
fn bad_magic_names_path() {
    let mut bytes = std::fs::read(fixtures().join("gguf/quants.gguf")).unwrap();
    bytes[0..4].copy_from_slice(b"\x00PK\x03");
    let p = tmp_file("bad_magic.gguf", &bytes);
    let e = GgufFile::open(&p).unwrap_err();
    assert!(matches!(e, GgufError::BadMagic { .. }), "{e}");
    assert!(e.to_string().contains("bad_magic.gguf"), "{e}");
    let e = GgufFile::open(fixtures().join("gguf/does-not-exist.gguf")).unwrap_err();
    assert!(matches!(e, GgufError::Io { .. }) && e.to_string().contains("does-not-exist.gguf"), "{e}");
}

/// Byte offset of the `ggml_type` field of tensor `name` in a GGUF image.
fn type_field_offset(bytes: &[u8], name: &str) -> usize {
    let mut pat = (name.len() as u64).to_le_bytes().to_vec();
    pat.extend(name.as_bytes());
    let at = bytes.windows(pat.len()).position(|w| w == pat).unwrap() + pat.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    at + 4 + 8 * n_dims
}

#[test]
fn unknown_quant_type_names_tensor_and_id() {
    let mut bytes = std::fs::read(fixtures().join("gguf/quants.gguf")).unwrap();
    let at = type_field_offset(&bytes, "q5_k");
    bytes[at..at + 4].copy_from_slice(&77u32.to_le_bytes());
    let p = tmp_file("unknown_type.gguf", &bytes);
    let e = GgufFile::open(&p).unwrap_err();
    assert!(matches!(&e, GgufError::UnknownTensorType { tensor, type_id: 77, .. } if tensor == "q5_k"), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("unknown_type.gguf") && msg.contains("`q5_k`") && msg.contains("77"), "{msg}");

    // a known type without a dequantiser (IQ4_NL has Q4_0's block size and bytes) fails on load only
    let mut bytes = std::fs::read(fixtures().join("gguf/quants.gguf")).unwrap();
    let at = type_field_offset(&bytes, "q4_0");
    bytes[at..at + 4].copy_from_slice(&GgmlType::IQ4_NL.id().to_le_bytes());
    let f = GgufFile::from_bytes("iq4.gguf", bytes).unwrap();
    let e = f.tensor_f32("q4_0").unwrap_err();
    assert!(matches!(e, GgufError::UnsupportedTensorType { ty: GgmlType::IQ4_NL, .. }), "{e}");
    assert!(e.to_string().contains("`q4_0`") && e.to_string().contains("IQ4_NL"), "{e}");
}

#[test]
fn unknown_architecture_is_named() {
    // quants.gguf claims `llama` but has no hyper-parameters; relabel it as something else
    let bytes = std::fs::read(fixtures().join("gguf/quants.gguf")).unwrap();
    let pat = b"\x05\0\0\0\0\0\0\0llama";
    let at = bytes.windows(pat.len()).position(|w| w == pat).unwrap();
    let mut b = bytes.clone();
    b[at + 8..at + 13].copy_from_slice(b"mamba");
    let e = GgufModel::new(GgufFile::from_bytes("m.gguf", b).unwrap()).unwrap_err();
    assert!(matches!(&e, GgufError::UnknownArchitecture { arch, .. } if arch == "mamba"), "{e}");
    let e = GgufModel::new(GgufFile::from_bytes("q.gguf", bytes).unwrap()).unwrap_err();
    assert!(matches!(&e, GgufError::MissingKey { key, .. } if key == "llama.block_count"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// tiny llama / gemma2 models: HF view, config and tokenizer against transformers
// ---------------------------------------------------------------------------------------------

fn check_tokenizer_cases(tok: &tokenizers::Tokenizer, cases: &[Value], label: &str) -> usize {
    let mut failures = Vec::new();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let ids = |k: &str| c[k].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
        let (with, without) = (ids("ids_with_special"), ids("ids_without_special"));
        let got_with = tok.encode(text, true).unwrap().get_ids().to_vec();
        let got_without = tok.encode(text, false).unwrap().get_ids().to_vec();
        if got_with != with {
            failures.push(format!("{text:?} with special tokens:\n  got  {got_with:?}\n  want {with:?}"));
        }
        if got_without != without {
            failures.push(format!("{text:?} without special tokens:\n  got  {got_without:?}\n  want {without:?}"));
        }
        let dec = tok.decode(&without, false).unwrap();
        if dec != c["decoded"].as_str().unwrap() {
            failures.push(format!("{text:?} decode: got {dec:?}, want {:?}", c["decoded"]));
        }
        let dec = tok.decode(&with, true).unwrap();
        if dec != c["decoded_skip_special"].as_str().unwrap() {
            failures.push(format!("{text:?} decode (skip special): got {dec:?}, want {:?}", c["decoded_skip_special"]));
        }
    }
    assert!(failures.is_empty(), "{label}: {} tokenizer mismatches:\n{}", failures.len(), failures.join("\n"));
    cases.len()
}

fn check_config(model: &GgufModel, want: &Value) {
    let c = model.config();
    let u = |k: &str| want[k].as_u64().unwrap_or_else(|| panic!("config.{k}")) as usize;
    assert_eq!(c.vocab_size, u("vocab_size"));
    assert_eq!(c.hidden_size, u("hidden_size"));
    assert_eq!(c.intermediate_size, u("intermediate_size"));
    assert_eq!(c.num_hidden_layers, u("num_hidden_layers"));
    assert_eq!(c.num_attention_heads, u("num_attention_heads"));
    assert_eq!(c.num_key_value_heads, u("num_key_value_heads"));
    assert_eq!(c.head_dim, u("head_dim"));
    assert_eq!(c.max_position_embeddings, u("max_position_embeddings"));
    assert_eq!(c.rms_norm_eps, want["rms_norm_eps"].as_f64().unwrap());
    assert_eq!(c.rope_theta, want["rope_theta"].as_f64().unwrap());
    assert_eq!(c.tie_word_embeddings, want["tie_word_embeddings"].as_bool().unwrap());
    assert_eq!(c.bos_token_id, want["bos_token_id"].as_u64().map(|x| x as u32));
    assert_eq!(c.eos_token_ids, want["eos_token_id"].as_u64().map(|x| x as u32).into_iter().collect::<Vec<_>>());
    assert_eq!(c.pad_token_id, want["pad_token_id"].as_u64().map(|x| x as u32));
    assert_eq!(c.arch.hf_model_type(), want["model_type"].as_str().unwrap());
    if c.arch == Arch::Gemma2 {
        assert_eq!(c.sliding_window, want["sliding_window"].as_u64().map(|x| x as usize));
        assert_eq!(c.attn_logit_softcapping, want["attn_logit_softcapping"].as_f64());
        assert_eq!(c.final_logit_softcapping, want["final_logit_softcapping"].as_f64());
        // transformers keeps Gemma2Config's default 256 here; llama.cpp (and we) use head_dim
        assert_eq!(c.query_pre_attn_scalar, Some(c.head_dim as f64));
        assert_eq!(c.layer_types[0], LayerType::Sliding);
        assert_eq!(c.layer_types[1], LayerType::Full);
    }
    if c.arch == Arch::Gemma3 {
        assert_eq!(c.sliding_window, want["sliding_window"].as_u64().map(|x| x as usize));
        assert_eq!(c.attn_logit_softcapping, None);
        assert_eq!(c.final_logit_softcapping, want["final_logit_softcapping"].as_f64());
        assert_eq!(c.query_pre_attn_scalar, want["query_pre_attn_scalar"].as_f64());
        assert_eq!(c.rope_local_base_freq, want["rope_local_base_freq"].as_f64());
        let types: Vec<LayerType> = want["layer_types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| if t == "full_attention" { LayerType::Full } else { LayerType::Sliding })
            .collect();
        assert_eq!(c.layer_types, types);
    }
}

fn check_tiny(arch: &str) {
    let dir = fixtures().join("gguf");
    let path = dir.join(format!("tiny_{arch}.gguf"));
    let report = read_json(&dir.join(format!("tiny_{arch}.json")));
    let model = GgufModel::open(&path).unwrap();
    check_config(&model, &report["config"]);

    let expected = read_safetensors(&dir.join(format!("tiny_{arch}.expected.safetensors")));
    let want_names: BTreeSet<String> = expected.iter().map(|e| e.0.clone()).collect();
    let got_names: BTreeSet<String> = model.names().into_iter().collect();
    assert_eq!(got_names, want_names, "{arch}: tensor names");
    for (name, shape, want) in &expected {
        assert_eq!(model.shape(name).as_ref(), Some(shape), "{arch}: {name}");
        let t = model.load(name).unwrap();
        assert_eq!(&t.shape, shape, "{arch}: {name}");
        assert_bits_eq(&format!("{arch}: {name}"), &t.data, want);
    }
    assert_eq!(model.origin(), path);

    let tok = model.tokenizer().unwrap();
    let t = &report["tokenizer"];
    assert_eq!(model.file().bos_token_id(), t["bos_token_id"].as_u64().map(|x| x as u32));
    assert_eq!(model.file().eos_token_id(), t["eos_token_id"].as_u64().map(|x| x as u32));
    assert_eq!(model.file().chat_template(), t["chat_template"].as_str());
    let n = check_tokenizer_cases(&tok, t["cases"].as_array().unwrap(), arch);
    assert!(n >= 20);
}

#[test]
fn tiny_llama_matches_transformers() {
    check_tiny("llama");
}

#[test]
fn tiny_gemma2_matches_transformers() {
    check_tiny("gemma2");
}

#[test]
fn missing_tensor_is_model_error_naming_path_and_tensor() {
    let model = GgufModel::open(fixtures().join("gguf/tiny_gemma2.gguf")).unwrap();
    assert!(model.shape("lm_head.weight").is_none()); // tied
    let e = model.load("lm_head.weight").unwrap_err();
    assert!(matches!(&e, ModelError::MissingTensor { tensor, .. } if tensor == "lm_head.weight"), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("tiny_gemma2.gguf") && msg.contains("lm_head.weight"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// the real SmolLM2-135M-Instruct Q4_1 file
// ---------------------------------------------------------------------------------------------

fn smollm2_path() -> Option<PathBuf> {
    common::smollm2_gguf()
}

#[test]
fn smollm2_config_and_types() {
    let Some(path) = smollm2_path() else { return };
    let model = GgufModel::open(&path).unwrap();
    let c = model.config();
    assert_eq!(c.arch, Arch::Llama);
    assert_eq!(c.num_hidden_layers, 30);
    assert_eq!(c.hidden_size, 576);
    assert_eq!(c.intermediate_size, 1536);
    assert_eq!(c.num_attention_heads, 9);
    assert_eq!(c.num_key_value_heads, 3);
    assert_eq!(c.head_dim, 64);
    assert_eq!(c.vocab_size, 49152);
    assert!(c.tie_word_embeddings);
    assert_eq!(c.rope_theta, 100000.0);
    assert_eq!(c.max_position_embeddings, 8192);
    assert_eq!((c.bos_token_id, c.eos_token_ids.as_slice(), c.pad_token_id), (Some(1), &[2u32][..], Some(2)));
    let report = read_json(&fixtures().join("smollm2/gguf_tensors.json"));
    check_config(&model, &report["config"]);
    // 272 GGUF tensors: 61 F32 norms, 210 Q4_1 matrices, the Q8_0 embedding
    let mut counts = std::collections::BTreeMap::new();
    for t in model.file().tensors() {
        *counts.entry(t.ggml_type.name().to_string()).or_insert(0u64) += 1;
    }
    let want: std::collections::BTreeMap<String, u64> = report["gguf_tensor_types"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(counts, want);
    assert_eq!(model.names().len(), 272);
    assert!(model.unmapped_tensors().is_empty());
    assert!(model.file().chat_template().unwrap().contains("<|im_start|>"));
}

#[test]
fn smollm2_tensors_match_transformers() {
    let Some(path) = smollm2_path() else { return };
    check_tensors_against(&GgufModel::open(&path).unwrap(), "smollm2");
}

/// Selected tensors of a real file against transformers' dequantised, renamed, fixed-up state dict
/// (fixtures `<dir>/gguf_tensors.{json,safetensors}`): the first and 1024 strided values bitwise, f64 sums.
fn check_tensors_against(model: &GgufModel, dir: &str) {
    let report = read_json(&fixtures().join(format!("{dir}/gguf_tensors.json")));
    let values = read_safetensors(&fixtures().join(format!("{dir}/gguf_tensors.safetensors")));
    let get = |n: &str| &values.iter().find(|v| v.0 == n).unwrap_or_else(|| panic!("{n}")).2;
    let stats = report["tensors"].as_object().unwrap();
    assert!(stats.len() >= 10);
    for (name, s) in stats {
        let t = model.load(name).unwrap();
        let shape: Vec<usize> = s["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        assert_eq!(t.shape, shape, "{name}");
        let head = get(&format!("{name}.head"));
        assert_bits_eq(&format!("{name} (head)"), &t.data[..head.len()], head);
        let stride = s["stride"].as_u64().unwrap() as usize;
        let want_strided = get(&format!("{name}.strided"));
        let strided: Vec<f32> = t.data.iter().step_by(stride).take(want_strided.len()).copied().collect();
        assert_bits_eq(&format!("{name} (strided)"), &strided, want_strided);
        let sum: f64 = t.data.iter().map(|&x| x as f64).sum();
        let sum_sq: f64 = t.data.iter().map(|&x| x as f64 * x as f64).sum();
        let (want_sum, want_sq) = (s["sum"].as_f64().unwrap(), s["sum_sq"].as_f64().unwrap());
        // f64 sums of the same f32 values in a different order: rounding differences only
        let sum_abs: f64 = t.data.iter().map(|&x| (x as f64).abs()).sum();
        assert!((sum - want_sum).abs() <= 1e-9 * sum_abs + 1e-12, "{name}: sum {sum} vs {want_sum}");
        assert!((sum_sq - want_sq).abs() <= 1e-9 * want_sq + 1e-12, "{name}: sum of squares {sum_sq} vs {want_sq}");
    }
}

#[test]
fn smollm2_tokenizer_matches_transformers() {
    let Some(path) = smollm2_path() else { return };
    let file = GgufFile::open(&path).unwrap();
    let tok = file.tokenizer().unwrap();
    assert_eq!(tok.get_vocab_size(true), 49152);
    let report = read_json(&fixtures().join("smollm2/gguf_tokenizer.json"));
    let t = &report["tokenizer"];
    assert_eq!(file.bos_token_id(), t["bos_token_id"].as_u64().map(|x| x as u32));
    assert_eq!(file.eos_token_id(), t["eos_token_id"].as_u64().map(|x| x as u32));
    assert_eq!(file.chat_template(), t["chat_template"].as_str());
    let cases = t["cases"].as_array().unwrap();
    let groups: BTreeSet<&str> = cases.iter().map(|c| c["group"].as_str().unwrap()).collect();
    assert_eq!(groups, ["ar", "edge", "en", "vi", "zh"].into_iter().collect());
    let n = check_tokenizer_cases(&tok, cases, "smollm2");
    assert!(n >= 60, "{n} cases");
    // ChatML markers are single special tokens
    let ids = tok.encode("<|im_start|>user\nhi<|im_end|>", false).unwrap().get_ids().to_vec();
    assert_eq!((ids[0], *ids.last().unwrap()), (1, 2));
}

// ---------------------------------------------------------------------------------------------
// the real Gemma-3-270M Q4_K_M file (google/gemma-3-270m)
// ---------------------------------------------------------------------------------------------

#[test]
fn gemma3_config_and_types() {
    let Some(path) = common::gemma3_gguf() else { return };
    let model = GgufModel::open(&path).unwrap();
    let c = model.config();
    assert_eq!(c.arch, Arch::Gemma3);
    assert_eq!(
        (c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads),
        (18, 640, 2048, 4, 1)
    );
    assert_eq!((c.head_dim, c.vocab_size), (256, 262_144));
    assert!(c.tie_word_embeddings);
    assert_eq!((c.rope_theta, c.rope_local_base_freq), (1_000_000.0, Some(10_000.0)));
    assert_eq!((c.sliding_window, c.query_pre_attn_scalar), (Some(512), Some(256.0)));
    assert_eq!((c.attn_logit_softcapping, c.final_logit_softcapping), (None, None));
    // five local layers, then a global one
    let full: Vec<usize> = (0..18).filter(|&i| c.layer_types[i] == LayerType::Full).collect();
    assert_eq!(full, vec![5, 11, 17]);
    assert_eq!((c.bos_token_id, c.eos_token_ids.as_slice(), c.pad_token_id), (Some(2), &[1u32][..], Some(0)));
    let report = read_json(&fixtures().join("gemma3/gguf_tensors.json"));
    check_config(&model, &report["config"]);
    let mut counts = std::collections::BTreeMap::new();
    for t in model.file().tensors() {
        *counts.entry(t.ggml_type.name().to_string()).or_insert(0u64) += 1;
    }
    let want: std::collections::BTreeMap<String, u64> = report["gguf_tensor_types"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(counts, want);
    // the types the issue names, and nothing else
    assert_eq!(counts.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["F32", "Q4_K", "Q5_0", "Q6_K", "Q8_0"]);
    assert_eq!(model.names().len(), 236);
    assert!(model.unmapped_tensors().is_empty());
}

#[test]
fn gemma3_tensors_match_transformers() {
    let Some(path) = common::gemma3_gguf() else { return };
    check_tensors_against(&GgufModel::open(&path).unwrap(), "gemma3");
}

#[test]
fn gemma3_norms_are_stored_as_w_plus_one() {
    // What the oracle found in the file (tools/oracle/gguf_fixtures.py): every Gemma norm, the per-head
    // q/k norms included, is stored as `w + 1` (transformers subtracts exactly 1), and the model as loaded
    // predicts text far better than it would if the q/k norms had been stored as `w`.
    let report = read_json(&fixtures().join("gemma3/gguf_tensors.json"));
    let conv = report["norm_convention"].as_object().unwrap();
    for (name, c) in conv.iter().filter(|(k, _)| k.ends_with("norm.weight")) {
        // exactly 1 up to the rounding of the f32 subtraction
        for k in ["raw_minus_loaded_min", "raw_minus_loaded_max"] {
            assert!((c[k].as_f64().unwrap() - 1.0).abs() <= 1e-6, "{name}: {k} = {}", c[k]);
        }
    }
    assert!(conv.contains_key("blk.0.attn_q_norm.weight") && conv.contains_key("blk.0.attn_k_norm.weight"));
    let (loaded, shifted) =
        (conv["loss_as_loaded"].as_f64().unwrap(), conv["loss_if_qk_norms_stored_w"].as_f64().unwrap());
    // measured: 3.23 nats/token as loaded vs 4.06 with the q/k norms one lower
    assert!(loaded + 0.5 < shifted, "loss {loaded} as loaded vs {shifted}");
    // and our HF view subtracts 1 from the raw values too
    let Some(path) = common::gemma3_gguf() else { return };
    let model = GgufModel::open(&path).unwrap();
    for (hf, gguf_name) in [
        ("model.layers.3.self_attn.q_norm.weight", "blk.3.attn_q_norm.weight"),
        ("model.layers.3.self_attn.k_norm.weight", "blk.3.attn_k_norm.weight"),
        ("model.layers.3.post_feedforward_layernorm.weight", "blk.3.post_ffw_norm.weight"),
    ] {
        let ours = model.load(hf).unwrap().data;
        let raw = model.file().tensor_f32(gguf_name).unwrap().data;
        assert!(ours.iter().zip(&raw).all(|(a, b)| *a == *b - 1.0), "{hf}");
    }
}

#[test]
fn gemma3_tokenizer_matches_transformers() {
    let Some(path) = common::gemma3_gguf() else { return };
    let file = GgufFile::open(&path).unwrap();
    let t0 = std::time::Instant::now();
    let tok = file.tokenizer().unwrap();
    eprintln!("Gemma-3 tokenizer built in {:.2}s", t0.elapsed().as_secs_f64());
    assert_eq!(tok.get_vocab_size(true), 262_144);
    let report = read_json(&fixtures().join("gemma3/gguf_tokenizer.json"));
    let t = &report["tokenizer"];
    assert_eq!(file.bos_token_id(), t["bos_token_id"].as_u64().map(|x| x as u32));
    assert_eq!(file.eos_token_id(), t["eos_token_id"].as_u64().map(|x| x as u32));
    assert_eq!(file.chat_template(), t["chat_template"].as_str());
    let cases = t["cases"].as_array().unwrap();
    let groups: BTreeSet<&str> = cases.iter().map(|c| c["group"].as_str().unwrap()).collect();
    assert_eq!(groups, ["ar", "edge", "en", "vi", "zh"].into_iter().collect());
    let n = check_tokenizer_cases(&tok, cases, "gemma3");
    assert!(n >= 60, "{n} cases");
    // BOS is added; turn markers are single tokens
    let ids = tok.encode("<start_of_turn>user\nhi<end_of_turn>", true).unwrap().get_ids().to_vec();
    assert_eq!(ids[0], 2);
    assert_eq!(tok.id_to_token(ids[1]).as_deref(), Some("<start_of_turn>"));
}
