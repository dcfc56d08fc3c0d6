//! Bad input gives typed errors that name the file and tensor — never a panic.
mod common;
use common::*;
use dft_models::{load_pretrained, ModelError, SafetensorsCheckpoint, TensorSource};
use dft_test_support::scratch::ScratchDir;
use std::path::Path;

/// A fresh scratch directory holding a copy of the fixture, removed when the test passes and kept when it
/// fails.
fn copy_fixture(name: &str, tag: &str) -> ScratchDir {
    let dst = ScratchDir::new(format!("dft-errors-{}-{tag}", std::process::id()));
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(name).join(f), dst.join(f)).unwrap();
    }
    dst
}

fn load_err(dir: &Path) -> ModelError {
    match load_pretrained::<B>(dir, &Default::default()) {
        Ok(_) => panic!("{}: expected an error", dir.display()),
        Err(e) => e,
    }
}

/// Rewrite `model.safetensors` in `dir` through `edit` (names -> (dtype, shape, bytes)).
fn rewrite(dir: &Path, edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut items: Vec<_> =
        st.tensors().into_iter().map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
    edit(&mut items);
    let views: Vec<_> = items
        .iter()
        .map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(&path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn truncated_safetensors_is_an_error_naming_the_file() {
    let dir = copy_fixture("tiny-llama", "trunc");
    let path = dir.join("model.safetensors");
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 1000).unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, ModelError::Safetensors { .. }), "{e:?}");
    assert!(e.to_string().contains("model.safetensors") && e.to_string().contains("truncated"), "{e}");
    // Garbage header.
    std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all").unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, ModelError::Safetensors { .. }), "{e:?}");
}

#[test]
fn config_that_does_not_match_the_weights() {
    let dir = copy_fixture("tiny-llama", "shape");
    let cfg = std::fs::read_to_string(dir.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 64", "\"intermediate_size\": 80");
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    let e = load_err(&dir);
    match &e {
        ModelError::ShapeMismatch { tensor, got, want, .. } => {
            assert_eq!(tensor, "model.layers.0.mlp.gate_proj.weight");
            assert_eq!((got.clone(), want.clone()), (vec![64, 32], vec![80, 32]));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    assert!(e.to_string().contains("model.safetensors") || e.to_string().contains(&dir.display().to_string()));
}

#[test]
fn unknown_architecture_and_bad_config_json() {
    let dir = copy_fixture("tiny-llama", "arch");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap().replace("\"llama\"", "\"mamba\"");
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    let e = load_err(&dir);
    assert!(matches!(&e, ModelError::UnknownArchitecture { arch, .. } if arch == "mamba"), "{e:?}");
    assert!(e.to_string().contains("config.json"));

    std::fs::write(dir.join("config.json"), "{\n  \"model_type\": \"llama\",\n  oops\n}").unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, ModelError::Config { .. }), "{e:?}");
    assert!(e.to_string().contains("line 3"), "{e}");

    std::fs::write(dir.join("config.json"), "{\"model_type\": \"llama\", \"vocab_size\": 96}").unwrap();
    let e = load_err(&dir);
    assert!(e.to_string().contains("hidden_size"), "{e}");
}

#[test]
fn missing_and_unexpected_tensors() {
    let dir = copy_fixture("tiny-llama", "missing");
    rewrite(&dir, |items| items.retain(|(n, ..)| n != "model.layers.1.self_attn.k_proj.weight"));
    let e = load_err(&dir);
    assert!(
        matches!(&e, ModelError::MissingTensor { tensor, .. } if tensor == "model.layers.1.self_attn.k_proj.weight"),
        "{e:?}"
    );

    let dir = copy_fixture("tiny-llama", "extra");
    rewrite(&dir, |items| {
        items.push(("model.layers.7.mystery.weight".into(), safetensors::Dtype::F32, vec![2], vec![0; 8]))
    });
    let e = load_err(&dir);
    assert!(
        matches!(&e, ModelError::UnexpectedTensor { tensor, .. } if tensor == "model.layers.7.mystery.weight"),
        "{e:?}"
    );

    let dir = copy_fixture("tiny-llama", "dtype");
    rewrite(&dir, |items| {
        let t = items.iter_mut().find(|(n, ..)| n == "model.norm.weight").unwrap();
        t.1 = safetensors::Dtype::I32;
    });
    let e = load_err(&dir);
    assert!(matches!(&e, ModelError::UnsupportedDtype { tensor, .. } if tensor == "model.norm.weight"), "{e:?}");
}

#[test]
fn half_precision_checkpoints_are_converted_to_f32() {
    for (dtype, tag) in [(safetensors::Dtype::BF16, "bf16"), (safetensors::Dtype::F16, "f16")] {
        let dir = copy_fixture("tiny-gqa-llama", tag);
        let mut expected = std::collections::BTreeMap::new();
        rewrite(&dir, |items| {
            for (name, d, _shape, bytes) in items.iter_mut() {
                let vals: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                let (half_bytes, back): (Vec<u8>, Vec<f32>) = match dtype {
                    safetensors::Dtype::BF16 => {
                        let h: Vec<half::bf16> = vals.iter().map(|&x| half::bf16::from_f32(x)).collect();
                        (h.iter().flat_map(|x| x.to_le_bytes()).collect(), h.iter().map(|x| x.to_f32()).collect())
                    }
                    _ => {
                        let h: Vec<half::f16> = vals.iter().map(|&x| half::f16::from_f32(x)).collect();
                        (h.iter().flat_map(|x| x.to_le_bytes()).collect(), h.iter().map(|x| x.to_f32()).collect())
                    }
                };
                *d = dtype;
                *bytes = half_bytes;
                expected.insert(name.clone(), back);
            }
        });
        let ck = SafetensorsCheckpoint::open(&dir).unwrap();
        for (name, want) in &expected {
            assert_eq!(&ck.load(name).unwrap().data, want, "{tag}: {name}");
        }
        let model = load_pretrained::<B>(&dir, &Default::default()).unwrap().model;
        assert_eq!(model.to_hf_tensors()["model.embed_tokens.weight"].data, expected["model.embed_tokens.weight"]);
    }
}

#[test]
fn transformers_loads_what_we_save() {
    // Written by `tools/oracle/model_fixtures.py check-roundtrip`: transformers loaded the directory that
    // dft-models saved (crates/dft-models/examples/resave.rs) and ran the reference batch.
    for name in ["tiny-llama", "tiny-gqa-llama", "tiny-gemma2", "tiny-gemma3"] {
        let path = fixture(name).join("transformers_reload.json");
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["ok"], true, "{}", path.display());
        assert!(v["max_abs_logits_diff"].as_f64().unwrap() <= 1e-5);
    }
}
