//! `dft export` on what `dft train` writes, end to end with the binary: a tiny random Llama (SmolLM2's
//! tokenizer and chat template) trained 2 steps with Hugging Face TrainingArguments names in the config
//! and `data.template = "model"`; every checkpoint exports (HF directory and GGUF) to exactly the weights
//! the checkpoint holds; the run directory has run_info.json, config.resolved.toml and metrics.csv; final/
//! is a complete HF export (tokenizer_config.json with the chat template, special tokens, generation
//! config).
mod common;
use burn::backend::Flex;
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use common::*;
use dft_models::gguf::GgufModel;
use dft_models::{load_pretrained, CausalLm};
use dft_test_support::scratch::ScratchDir;
use dft_train::{train, TrainConfig, TrainHooks};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tiny_model(dir: &Path) -> PathBuf {
    let path = save_tiny_model(dir, 3, true);
    let chat: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("crates/dft-models/tests/fixtures/chat/smollm2.json")).unwrap(),
    )
    .unwrap();
    let cfg = serde_json::json!({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": chat["template"],
        "model_max_length": 512,
    });
    std::fs::write(path.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    path
}

fn tensors(model: &CausalLm<Flex>) -> BTreeMap<String, Vec<f32>> {
    model.to_hf_tensors().into_iter().map(|(k, v)| (k, v.data)).collect()
}

fn dft(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_dft")).args(args).output().unwrap();
    assert!(out.status.success(), "dft {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn checkpoints_export_to_hf_and_gguf_with_their_weights() {
    let dir = ScratchDir::new(format!("dft-export-cmd-{}", std::process::id()));
    let model = tiny_model(&dir);
    let out = dir.join("run");
    let data = root().join("data/alpaca_en_zh");
    let overrides: Vec<String> = vec![
        format!("model.path={:?}", model.display().to_string()),
        format!("data.train={:?}", data.join("train.json").display().to_string()),
        format!("data.eval={:?}", data.join("heldout.json").display().to_string()),
        "data.eval_limit=2".into(),
        "data.max_len=96".into(),
        "data.limit=8".into(),
        "data.template=\"model\"".into(),
        "method.lc_layer=1".into(),
        "method.et_layer=2".into(),
        // Hugging Face TrainingArguments names
        format!("output_dir={:?}", out.display().to_string()),
        "learning_rate=0.003".into(),
        "per_device_train_batch_size=2".into(),
        "max_steps=2".into(),
        "save_steps=1".into(),
        "save_total_limit=5".into(),
        "warmup_ratio=0.0".into(),
    ];
    let cfg = TrainConfig::load(None, &overrides).unwrap();
    assert_eq!((cfg.train.lr, cfg.train.batch_size, cfg.train.checkpoint_every, cfg.train.keep_last), (0.003, 2, 1, 5));
    let summary =
        train::<burn::backend::Autodiff<Flex>>(&cfg, false, &Default::default(), &TrainHooks::default()).unwrap();
    assert_eq!(summary.steps, 2);

    // run records
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run_info.json")).unwrap()).unwrap();
    let s = &info["sessions"][0];
    assert!(s["start"].is_string() && s["end"].is_string(), "{s}");
    assert_eq!(s["steps"], 2);
    assert!(s["backend"].as_str().unwrap().contains("Flex"));
    assert_eq!(s["config"]["data"]["template"], "model");
    assert!(s["machine"]["cpu_cores"].as_u64().unwrap() >= 1);
    assert_eq!(s["dft_rs_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(TrainConfig::load(Some(&out.join("config.resolved.toml")), &[]).unwrap(), cfg);
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");

    // final/ is complete
    let fin = out.join("final");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "generation_config.json",
    ] {
        assert!(fin.join(f).is_file(), "final/{f}");
    }
    let final_pre = load_pretrained::<Flex>(&fin, &Default::default()).unwrap();
    assert!(final_pre.meta.chat_template.as_deref().unwrap().contains("<|im_start|>"));
    assert_eq!(final_pre.meta.bos_token.as_deref(), Some("<|im_start|>"));

    // checkpoint 1 → HF: the record's weights
    let ck1 = out.join("checkpoint-000001");
    let hf1 = dir.join("hf1");
    dft(&["export", "--checkpoint", ck1.to_str().unwrap(), "--out", hf1.to_str().unwrap()]);
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    let base = load_pretrained::<Flex>(&model, &Default::default()).unwrap().model;
    let rec1 = base.clone().load_file(ck1.join("model"), &recorder, &Default::default()).unwrap();
    let exp1 = load_pretrained::<Flex>(&hf1, &Default::default()).unwrap();
    assert_eq!(tensors(&exp1.model), tensors(&rec1));
    assert_ne!(tensors(&exp1.model), tensors(&final_pre.model), "step 1 differs from step 2");
    assert!(exp1.meta.chat_template.is_some() && exp1.tokenizer.is_some());

    // the run directory → its newest checkpoint (step 2) = final/, as HF (bf16 too) and GGUF
    let hf2 = dir.join("hf2");
    let gg = dir.join("m.gguf");
    dft(&[
        "export",
        "--checkpoint",
        out.to_str().unwrap(),
        "--out",
        hf2.to_str().unwrap(),
        "--gguf",
        gg.to_str().unwrap(),
        "--type",
        "f32",
    ]);
    let exp2 = load_pretrained::<Flex>(&hf2, &Default::default()).unwrap();
    assert_eq!(tensors(&exp2.model), tensors(&final_pre.model));
    let g = GgufModel::open(&gg).unwrap();
    let from_gguf = CausalLm::<Flex>::from_source(g.config().clone(), &g, &Default::default()).unwrap();
    assert_eq!(tensors(&from_gguf), tensors(&final_pre.model));
    // the base is an HF directory: the GGUF's tokenizer comes from its tokenizer.json
    let gguf_pre = load_pretrained::<Flex>(&gg, &Default::default()).unwrap();
    let text = "Translate: 你好, world! 12345";
    assert_eq!(
        gguf_pre.tokenizer.as_ref().expect("GGUF has a tokenizer").encode(text, true).unwrap().get_ids(),
        smollm2_tokenizer().encode(text, true).unwrap().get_ids()
    );
    let bf = dir.join("bf16");
    dft(&["export", "--checkpoint", out.to_str().unwrap(), "--out", bf.to_str().unwrap(), "--dtype", "bf16"]);
    let exp_bf = load_pretrained::<Flex>(&bf, &Default::default()).unwrap();
    for (k, v) in tensors(&exp_bf.model) {
        let want = &tensors(&final_pre.model)[&k];
        assert!(v.iter().zip(want).all(|(a, b)| *a == half::bf16::from_f32(*b).to_f32()), "{k}");
    }

    // errors name what is wrong
    let bad = Command::new(env!("CARGO_BIN_EXE_dft"))
        .args(["export", "--checkpoint", dir.join("nope").to_str().unwrap(), "--out", "x"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope"));
}
