//! `train.gradient_checkpointing`: training on `Autodiff<_, BalancedCheckpointing>` (Burn recomputes
//! memory-bound ops in backward instead of keeping their outputs) gives the same per-step losses and
//! gradient norms as plain `Autodiff<_>`, for DFT-logits and DFT-feature, through the library and through
//! the `dft` binary (which picks the backend from the config key).
use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::{Autodiff, Flex};
use dft_models::{CausalLm, ModelConfig};
use dft_test_support::scratch::ScratchDir;
use dft_train::metrics::{read_metrics, StepMetrics};
use dft_train::{train, TrainConfig, TrainHooks};
use std::path::{Path, PathBuf};
use std::process::Command;

type Plain = Autodiff<Flex>;
type Checkpointed = Autodiff<Flex, BalancedCheckpointing>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh scratch directory, removed when the test passes and kept when it fails.
fn tmp(tag: &str) -> ScratchDir {
    ScratchDir::new(format!("dft-ckpt-test-{}-{tag}", std::process::id()))
}

/// A tiny random Llama with SmolLM2's vocabulary and tokenizer, saved as an HF directory.
fn tiny_model(dir: &Path) -> PathBuf {
    let tok =
        tokenizers::Tokenizer::from_file(root().join("crates/dft-data/tests/fixtures/smollm2-tokenizer.json")).unwrap();
    let json = r#"{
      "model_type": "llama", "vocab_size": 49152, "hidden_size": 16, "intermediate_size": 32,
      "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
      "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": true, "hidden_act": "silu",
      "max_position_embeddings": 512, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2
    }"#;
    let cfg = ModelConfig::from_hf_json_str(json, Path::new("<tiny>")).unwrap();
    let model = CausalLm::<Flex>::random(cfg, 11, &Default::default()).unwrap();
    let path = dir.join("model");
    model.save_pretrained(&path, Some(&tok)).unwrap();
    path
}

fn overrides(model: &Path, out: &Path, method: &[&str]) -> Vec<String> {
    let mut o = vec![
        format!("model.path={:?}", model.display().to_string()),
        format!("data.train={:?}", root().join("data/alpaca_en_zh/train.json").display().to_string()),
        "data.eval_limit=0".into(),
        "data.max_len=64".into(),
        "data.limit=8".into(),
        format!("train.out_dir={:?}", out.display().to_string()),
        "train.batch_size=4".into(),
        "train.max_steps=2".into(),
        "train.lr=0.01".into(),
        "train.warmup_ratio=0.0".into(),
        "method.lc_layer=1".into(),
        "method.et_layer=2".into(),
    ];
    o.extend(method.iter().map(|s| s.to_string()));
    o
}

fn assert_same(a: &[StepMetrics], b: &[StepMetrics], what: &str) {
    assert_eq!(a.len(), 2, "{what}: two steps");
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.step, y.step);
        // Recomputing an op gives bit-identical values, so the runs agree exactly (as a resumed run does).
        assert!(
            (x.loss, x.main, x.lc, x.et) == (y.loss, y.main, y.lc, y.et),
            "{what}, step {}: losses differ with checkpointing: {:?} vs {:?}",
            x.step,
            (x.loss, x.main, x.lc, x.et),
            (y.loss, y.main, y.lc, y.et)
        );
        assert_eq!(x.grad_norm, y.grad_norm, "{what}, step {}: gradient norm", x.step);
    }
}

#[test]
fn checkpointing_gives_the_same_losses_and_gradients() {
    let dir = tmp("lib");
    let model = tiny_model(&dir);
    for (name, method) in [
        ("dft-logits", ["method.lc=\"logits\"", "method.et=\"logits\""]),
        ("dft-feature", ["method.lc=\"feature\"", "method.et=\"feature\""]),
    ] {
        let plain_out = dir.join(format!("{name}-plain"));
        let cfg = TrainConfig::load(None, &overrides(&model, &plain_out, &method)).unwrap();
        let plain = train::<Plain>(&cfg, false, &Default::default(), &TrainHooks::default()).unwrap();
        let ckpt_out = dir.join(format!("{name}-ckpt"));
        let mut o = overrides(&model, &ckpt_out, &method);
        o.push("train.gradient_checkpointing=true".into());
        let cfg = TrainConfig::load(None, &o).unwrap();
        assert!(cfg.train.gradient_checkpointing);
        let ckpt = train::<Checkpointed>(&cfg, false, &Default::default(), &TrainHooks::default()).unwrap();
        let (a, b) = (read_metrics(&ckpt.metrics).unwrap(), read_metrics(&plain.metrics).unwrap());
        assert!(a[0].lc.is_some() && a[0].et.is_some(), "{name}: LC and ET are on");
        assert_same(&a, &b, name);
    }
}

#[test]
fn dft_binary_honours_the_config_key() {
    let dir = tmp("bin");
    let model = tiny_model(&dir);
    let method = ["method.lc=\"logits\"", "method.et=\"logits\""];
    let run = |out: &Path, extra: Option<&str>| {
        let mut args = vec!["train".to_string(), "--quiet".into()];
        for o in overrides(&model, out, &method).into_iter().chain(extra.map(String::from)) {
            args.push("--set".into());
            args.push(o);
        }
        let st = Command::new(env!("CARGO_BIN_EXE_dft")).args(&args).env("RAYON_NUM_THREADS", "2").status().unwrap();
        assert!(st.success(), "dft train {extra:?}");
        read_metrics(&out.join("metrics.jsonl")).unwrap()
    };
    let plain = run(&dir.join("plain"), None);
    let ckpt = run(&dir.join("ckpt"), Some("train.gradient_checkpointing=true"));
    assert_same(&ckpt, &plain, "dft train");
    // An unknown spelling is rejected, naming the key.
    let err = TrainConfig::load(None, &overrides(&model, &dir.join("x"), &["train.gradient_checkpoint=true"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("gradient_checkpoint"), "{err}");
}
