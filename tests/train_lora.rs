//! `dft train` with LoRA and with bf16-mixed precision, end to end on a tiny random Llama (SmolLM2's
//! tokenizer, the bundled en–zh data) and on the real SmolLM2: loss goes down for every method, only the
//! adapters train, the run writes a PEFT adapter and a merged `final/`, checkpoints hold only what trains
//! and resume exactly (dropout included), gradient checkpointing changes nothing, bf16-mixed tracks f32.
use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
mod common;
use burn::backend::{Autodiff, Flex};
use common::*;
use dft_models::load_pretrained;
use dft_test_support::scratch::ScratchDir;
use dft_train::metrics::read_metrics;
use dft_train::{train, TrainConfig, TrainError, TrainHooks};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

type AB = Autodiff<Flex>;

/// A fresh scratch directory, removed when the test passes and kept when it fails.
fn tmp(tag: &str) -> ScratchDir {
    ScratchDir::new(format!("dft-lora-test-{}-{tag}", std::process::id()))
}

/// A tiny random Llama (untied head) with SmolLM2's vocabulary and tokenizer, saved as an HF directory.
fn tiny_model(dir: &Path) -> PathBuf {
    save_tiny_model(dir, 3, false)
}

fn overrides(model: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut o = vec![
        format!("model.path={:?}", model.display().to_string()),
        format!("data.train={:?}", root().join("data/alpaca_en_zh/train.json").display().to_string()),
        format!("data.eval={:?}", root().join("data/alpaca_en_zh/heldout.json").display().to_string()),
        "data.eval_limit=4".into(),
        "data.max_len=64".into(),
        format!("train.out_dir={:?}", out.display().to_string()),
        "train.batch_size=2".into(),
        "train.warmup_ratio=0.0".into(),
        "method.lc_layer=1".into(),
        "method.et_layer=2".into(),
    ];
    o.extend(extra.iter().map(|s| s.to_string()));
    o
}

/// The tests that compare two runs bit for bit (or to 1e-6) run one at a time, without other trainings
/// of this binary beside them: once (a CI run of stop 29), the checkpointed run of
/// `lora_with_gradient_checkpointing_gives_the_same_losses` ended its third step 2.5e-6 (relative) from
/// the plain run while the other tests trained in the same process; alone, in three local runs of the
/// whole binary and in 28 pairs run beside a looping training, the two are bit-identical. The source is
/// not found yet (not the RNG: no dropout there; not the parallel reductions of dft-kernels, which
/// collect their partial sums in order).
static EXACT: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn beside_others() -> std::sync::RwLockReadGuard<'static, ()> {
    EXACT.read().unwrap_or_else(|e| e.into_inner())
}

fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    EXACT.write().unwrap_or_else(|e| e.into_inner())
}

fn run_with<B: burn::tensor::backend::AutodiffBackend>(
    o: &[String],
    resume: bool,
    hooks: &TrainHooks,
) -> Result<dft_train::TrainSummary, TrainError> {
    let cfg = TrainConfig::load(None, o)?;
    train::<B>(&cfg, resume, &Default::default(), hooks)
}

fn run(o: &[String]) -> dft_train::TrainSummary {
    run_with::<AB>(o, false, &TrainHooks::default()).unwrap_or_else(|e| panic!("{e}"))
}

const LORA: [&str; 3] = ["lora.rank=4", "lora.alpha=8.0", "lora.modules_to_save=[\"lm_head\"]"];

#[test]
fn lora_loss_decreases_for_each_method_and_only_adapters_train() {
    let _exact = beside_others();
    let dir = tmp("methods");
    let model = tiny_model(&dir);
    let base = load_pretrained::<Flex>(&model, &Default::default()).unwrap().model;
    for (name, method) in [
        ("sft", vec!["method.name=\"sft\""]),
        ("tft", vec!["method.name=\"tft\""]),
        ("dft-logits", vec!["method.lc=\"logits\"", "method.et=\"logits\""]),
        ("dft-feature", vec!["method.lc=\"feature\"", "method.et=\"feature\""]),
    ] {
        let out = dir.join(name);
        let mut extra =
            vec!["data.limit=4", "train.batch_size=4", "train.max_steps=12", "data.eval_limit=0", "train.lr=0.05"];
        extra.extend(LORA);
        extra.extend(method);
        let s = run(&overrides(&model, &out, &extra));
        let m = read_metrics(&s.metrics).unwrap();
        assert_eq!(m.len(), 12, "{name}");
        let (first, last) = (m[0].loss, m[11].loss);
        assert!(last < first - 0.3, "{name}: LoRA loss did not decrease: {first} -> {last}");
        // Per block, rank 4: q, o 16→16 (128 each), k, v 16→8 (96 each), gate, up 16→32 and down 32→16 (192
        // each) = 1,024; three blocks, plus the full lm_head (modules_to_save).
        assert_eq!(s.trainable_params, 3 * 1024 + 49152 * 16, "{name}: trainable parameters");
        // The adapter (PEFT format) and the merged model.
        let adapter = s.adapter_dir.clone().expect("adapter dir");
        assert!(adapter.join("adapter_config.json").is_file() && adapter.join("adapter_model.safetensors").is_file());
        let merged = load_pretrained::<Flex>(&s.export_dir, &Default::default()).unwrap().model;
        let rebuilt = base.clone().load_adapter(&adapter).unwrap().merge_lora();
        let (a, b) = (merged.to_hf_tensors(), rebuilt.to_hf_tensors());
        for (k, t) in &a {
            let d = t.data.iter().zip(&b[k].data).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(d <= 1e-6, "{name}: final/{k} differs from base + adapter merged by {d}");
        }
        // Frozen: the norms and the embeddings are the base's; the adapted projections and the saved head moved.
        let basew = base.to_hf_tensors();
        assert_eq!(a["model.norm.weight"], basew["model.norm.weight"], "{name}: final norm trained");
        assert_eq!(a["model.embed_tokens.weight"], basew["model.embed_tokens.weight"], "{name}: embeddings trained");
        assert_ne!(a["lm_head.weight"], basew["lm_head.weight"], "{name}: lm_head (modules_to_save) did not train");
        assert_ne!(
            a["model.layers.0.self_attn.q_proj.weight"], basew["model.layers.0.self_attn.q_proj.weight"],
            "{name}: adapted q_proj unchanged after merge"
        );
        // The checkpoint holds the trainable parts only.
        let ck = dft_train::checkpoint::list_checkpoints(&out).last().unwrap().1.clone();
        assert!(ck.join("lora.mpk").is_file() && !ck.join("model.mpk").exists(), "{name}: {}", ck.display());
    }
}

/// Stopped after its first step (the SIGINT path) and resumed, a LoRA run with adapter dropout and
/// bf16-mixed products reproduces the uninterrupted run's per-step losses and final adapter exactly (the
/// masks come from the training thread's own dropout stream; `tests/parallel.rs` checks two peers).
#[test]
fn lora_with_dropout_and_bf16_resumes_exactly() {
    let _exact = alone();
    let dir = tmp("resume");
    let model = tiny_model(&dir);
    let extra =
        ["data.limit=8", "train.max_steps=4", "train.lr=0.02", "lora.dropout=0.2", "train.precision=\"bf16-mixed\""];
    let mut e = extra.to_vec();
    e.extend(LORA);
    let straight = run(&overrides(&model, &dir.join("straight"), &e));
    let o = overrides(&model, &dir.join("resumed"), &e);
    let hooks = TrainHooks::default();
    hooks.stop.store(true, Ordering::SeqCst);
    match run_with::<AB>(&o, false, &hooks) {
        Err(TrainError::Interrupted { step: 1, .. }) => {}
        other => panic!("expected an interruption after step 1, got {other:?}"),
    }
    let resumed = run_with::<AB>(&o, true, &TrainHooks::default()).unwrap();
    let (a, b) = (read_metrics(&straight.metrics).unwrap(), read_metrics(&resumed.metrics).unwrap());
    assert_eq!(a.len(), 4);
    assert_eq!(b.len(), 4);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.step, x.loss, x.grad_norm), (y.step, y.loss, y.grad_norm), "step {}", x.step);
    }
    let read = |d: &Path| std::fs::read(d.join("adapter_model.safetensors")).unwrap();
    assert_eq!(read(&straight.adapter_dir.unwrap()), read(&resumed.adapter_dir.unwrap()), "final adapters differ");
    // Dropout is live: without it the losses differ.
    let mut e2 = e.clone();
    e2.retain(|s| !s.starts_with("lora.dropout"));
    let no_dropout = run(&overrides(&model, &dir.join("nodrop"), &e2));
    let c = read_metrics(&no_dropout.metrics).unwrap();
    assert_ne!(c[1].loss, a[1].loss, "lora.dropout had no effect");
}

#[test]
fn lora_with_gradient_checkpointing_gives_the_same_losses() {
    let _exact = alone();
    let dir = tmp("ckpt");
    let model = tiny_model(&dir);
    let mut e = vec!["data.limit=8", "train.max_steps=3", "train.lr=0.02", "method.et=\"feature\""];
    e.extend(LORA);
    let plain = run(&overrides(&model, &dir.join("plain"), &e));
    let ck = run_with::<Autodiff<Flex, BalancedCheckpointing>>(
        &overrides(&model, &dir.join("ckpt"), &e),
        false,
        &TrainHooks::default(),
    )
    .unwrap();
    let (a, b) = (read_metrics(&plain.metrics).unwrap(), read_metrics(&ck.metrics).unwrap());
    for (x, y) in a.iter().zip(&b) {
        assert!((x.loss - y.loss).abs() <= 1e-6 * x.loss.abs(), "step {}: {} vs {}", x.step, x.loss, y.loss);
    }
}

/// 100 steps of DFT on the bundled data: bf16-mixed ends within 2% of the f32 run's held-out loss.
#[test]
fn bf16_mixed_run_tracks_the_f32_run() {
    let _exact = beside_others();
    let dir = tmp("bf16");
    let model = tiny_model(&dir);
    let e = ["data.limit=64", "train.max_steps=100", "train.lr=0.01", "data.eval_limit=16", "train.batch_size=4"];
    let f = run(&overrides(&model, &dir.join("f32"), &e));
    let mut e2 = e.to_vec();
    e2.push("train.precision=\"bf16-mixed\"");
    let h = run(&overrides(&model, &dir.join("bf16"), &e2));
    let (lf, lh) = (f.eval_loss_after.unwrap(), h.eval_loss_after.unwrap());
    assert!(lf < f.eval_loss_before.unwrap() - 0.5, "the f32 run must learn: {:?} -> {lf}", f.eval_loss_before);
    assert!((lh - lf).abs() <= 0.02 * lf, "bf16-mixed held-out loss {lh} vs f32 {lf}");
    assert_ne!(lh, lf, "bf16-mixed ran in f32");
}

#[test]
fn bad_lora_settings_are_named() {
    let _exact = beside_others();
    let dir = tmp("bad");
    let model = tiny_model(&dir);
    for (set, key) in [
        ("lora.rank=0", "lora.rank"),
        ("lora.dropout=1.5", "lora.dropout"),
        ("lora.alpha=-1.0", "lora.alpha"),
        ("lora.targets=[]", "lora.targets"),
    ] {
        let e = TrainConfig::load(None, &overrides(&model, &dir.join("x"), &[set])).unwrap_err();
        assert!(e.to_string().contains(key), "{set}: {e}");
    }
    let e = TrainConfig::load(None, &overrides(&model, &dir.join("x"), &["lora.targets=[\"qq\"]"])).unwrap_err();
    assert!(e.to_string().contains("qq"), "{e}");
    let e = TrainConfig::load(None, &overrides(&model, &dir.join("x"), &["train.precision=\"fp8\""])).unwrap_err();
    assert!(e.to_string().contains("fp8"), "{e}");
}

/// Real SmolLM2-135M-Instruct (GGUF from PyPI): a short LoRA DFT run lowers the held-out zh loss.
#[test]
fn real_smollm2_lora_dft_lowers_heldout_loss() {
    let _exact = beside_others();
    let Some(gguf) = dft_test_support::models::smollm2_gguf() else { return };
    let dir = tmp("smollm2");
    let o = vec![
        format!("model.path={:?}", gguf.display().to_string()),
        format!("data.train={:?}", root().join("data/alpaca_en_zh/train.json").display().to_string()),
        format!("data.eval={:?}", root().join("data/alpaca_en_zh/heldout.json").display().to_string()),
        format!("train.out_dir={:?}", dir.join("run").display().to_string()),
        "data.template=\"chatml\"".into(),
        "data.max_len=128".into(),
        "data.limit=48".into(),
        "data.eval_limit=8".into(),
        "train.batch_size=4".into(),
        "train.max_steps=12".into(),
        "train.lr=0.001".into(),
        "lora.rank=8".into(),
        "lora.alpha=16.0".into(),
    ];
    let s = run(&o);
    let (before, after) = (s.eval_loss_before.unwrap(), s.eval_loss_after.unwrap());
    eprintln!(
        "SmolLM2 LoRA DFT: held-out zh loss {before:.4} -> {after:.4}; {} of {} parameters trained",
        s.trainable_params, s.total_params
    );
    assert!(after < before - 0.03, "held-out loss did not drop: {before} -> {after}");
    assert!(s.trainable_params < s.total_params / 20);
}

/// `dft export` of a LoRA run's checkpoint: without --merge the PEFT adapter (identical to the run's
/// adapter/), with --merge the merged model (identical weights to the run's final/); `--adapter` applies a
/// PEFT adapter to a base model.
#[test]
fn dft_export_writes_the_adapter_or_the_merged_model() {
    let _exact = beside_others();
    let dir = tmp("export");
    let model = tiny_model(&dir);
    let out = dir.join("run");
    let mut e = vec!["data.limit=4", "train.max_steps=2", "train.lr=0.02", "data.eval_limit=0"];
    e.extend(LORA);
    let s = run(&overrides(&model, &out, &e));
    let ck = dft_train::checkpoint::list_checkpoints(&out).last().unwrap().1.clone();
    let dft = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_dft")).args(args).output().unwrap();
        assert!(o.status.success(), "dft {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let (adapter_out, merged_out, via_adapter) = (dir.join("a"), dir.join("m"), dir.join("v"));
    dft(&["export", "--checkpoint", ck.to_str().unwrap(), "--out", adapter_out.to_str().unwrap()]);
    let read = |p: PathBuf| std::fs::read(p).unwrap();
    let st = "adapter_model.safetensors";
    assert_eq!(read(adapter_out.join(st)), read(s.adapter_dir.clone().unwrap().join(st)), "adapter export");
    dft(&["export", "--checkpoint", ck.to_str().unwrap(), "--out", merged_out.to_str().unwrap(), "--merge"]);
    let adapter = s.adapter_dir.unwrap();
    dft(&[
        "export",
        "--checkpoint",
        model.to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
        "--merge",
        "--out",
        via_adapter.to_str().unwrap(),
    ]);
    let want = load_pretrained::<Flex>(&s.export_dir, &Default::default()).unwrap().model.to_hf_tensors();
    for d in [&merged_out, &via_adapter] {
        let got = load_pretrained::<Flex>(d, &Default::default()).unwrap().model.to_hf_tensors();
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
        for (k, t) in &got {
            let diff = t.data.iter().zip(&want[k].data).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(diff <= 1e-6, "{}: {k} differs from final/ by {diff}", d.display());
        }
    }
    // An adapter export never writes into a folder holding something else.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dft"))
        .args(["export", "--checkpoint", ck.to_str().unwrap(), "--out", merged_out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("not writing a LoRA adapter"), "{err}");
    assert!(merged_out.join("config.json").is_file(), "the merged export was left intact");
    // --merge without an adapter is an error, not a silent copy.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dft"))
        .args(["export", "--checkpoint", model.to_str().unwrap(), "--merge", "--out", dir.join("z").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no LoRA adapter"));
}

/// `dft generate --adapter` and `dft eval --adapter` use base + adapter: the same text and scores as the
/// merged model the run exported.
#[test]
fn generate_and_eval_take_an_adapter() {
    let _exact = beside_others();
    let dir = tmp("cli");
    let model = tiny_model(&dir);
    let out = dir.join("run");
    let mut e = vec!["data.limit=4", "train.max_steps=2", "train.lr=0.05", "data.eval_limit=0"];
    e.extend(LORA);
    let s = run(&overrides(&model, &out, &e));
    let adapter = s.adapter_dir.clone().unwrap();
    let dft = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_dft")).args(args).output().unwrap();
        assert!(o.status.success(), "dft {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let gen = |extra: &[&str]| {
        let mut a = vec!["generate", "--prompt", "北京是", "--max-new-tokens", "12"];
        a.extend(extra);
        dft(&a)
    };
    let (m, a, f) = (model.to_str().unwrap(), adapter.to_str().unwrap(), s.export_dir.to_str().unwrap());
    let with_adapter = gen(&["--model", m, "--adapter", a]);
    assert_eq!(with_adapter, gen(&["--model", f]), "base + adapter vs merged final/");
    assert_ne!(with_adapter, gen(&["--model", m]), "the adapter changed nothing");
    // A broken adapter is a clear error naming the file.
    let bad = dir.join("bad-adapter");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("adapter_config.json"),
        r#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "use_dora": true}"#,
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dft"))
        .args(["generate", "--model", m, "--adapter", bad.to_str().unwrap(), "--prompt", "x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("use_dora") && err.contains("adapter_config.json"), "{err}");

    let data = [root().join("shared/data/eval"), root().join("../shared/data/eval")].into_iter().find(|p| p.is_dir());
    let Some(data) = data else { return };
    let score = |model: &str, adapter: Option<&str>, outdir: &str| {
        let o = dir.join(outdir);
        let mut args = vec!["eval", "--model", model, "--tasks", "xcopa", "--lang", "zh", "--limit", "6", "--quiet"];
        args.extend(["--data-dir", data.to_str().unwrap(), "--out", o.to_str().unwrap()]);
        if let Some(a) = adapter {
            args.extend(["--adapter", a]);
        }
        dft(&args);
        dft_eval::EvalReport::load(&o.join("results.json")).unwrap().runs.remove(0)
    };
    let (x, y) = (score(m, Some(a), "ev-a"), score(f, None, "ev-f"));
    assert_eq!(x.results.len(), 1);
    let (sx, sy) = (&x.results[0], &y.results[0]);
    assert_eq!((sx.metric.as_str(), sx.n), ("acc", 6));
    assert_eq!(sx.score, sy.score, "scores with --adapter differ from the merged model's");
    assert!(
        x.model.contains('+') && x.model.ends_with("adapter"),
        "the adapter is part of the model name: {}",
        x.model
    );
}

/// `dft plan` sizes a run from the model's config alone and refuses one that cannot fit the limit.
#[test]
fn plan_refuses_runs_that_cannot_fit() {
    let _exact = beside_others();
    let cfg = root().join("configs/models/llama-2-7b.json");
    let plan = |extra: &[&str]| {
        let mut args = vec!["plan".to_string(), "--set".into(), format!("model.path={:?}", cfg.display().to_string())];
        for e in ["train.batch_size=1", "data.max_len=512"].iter().chain(extra) {
            args.extend(["--set".to_string(), e.to_string()]);
        }
        std::process::Command::new(env!("CARGO_BIN_EXE_dft")).args(&args).output().unwrap()
    };
    let o = plan(&[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains("6738415616 total"), "{text}");
    let mut a = vec!["lora.rank=16", "train.precision=\"bf16-mixed\""];
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dft"))
        .args(["plan", "--set", &format!("model.path={:?}", cfg.display().to_string()), "--memory-limit", "24GB"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "full f32 7B must be refused on 24 GB: {err}");
    assert!(err.contains("24.0 GB limit"), "{err}");
    a.push("train.gradient_checkpointing=true");
    let mut args = vec![
        "plan".to_string(),
        "--memory-limit".into(),
        "24GB".into(),
        "--set".into(),
        format!("model.path={:?}", cfg.display().to_string()),
    ];
    for e in ["train.batch_size=1", "data.max_len=512"].iter().chain(a.iter()) {
        args.extend(["--set".to_string(), e.to_string()]);
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dft")).args(&args).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("fits the 24.0 GB limit"),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
