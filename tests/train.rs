//! The training loop end to end on a tiny random Llama with the real SmolLM2 tokenizer and the bundled
//! en–zh data: loss goes down for every method, a run killed with SIGKILL resumes to exactly the same
//! per-step losses, config errors name the key before any weights are loaded, non-finite losses are
//! reported (never trained on, never saved), and the exported HF checkpoint reloads to the same model.
mod common;
use burn::backend::{Autodiff, Flex};
use common::*;
use dft_models::load_pretrained;
use dft_test_support::scratch::ScratchDir;
use dft_train::metrics::read_metrics;
use dft_train::{train, TrainConfig, TrainError, TrainHooks};
use std::path::{Path, PathBuf};
use std::process::Command;

type AB = Autodiff<Flex>;

/// A fresh scratch directory, removed when the test passes and kept when it fails.
fn tmp(tag: &str) -> ScratchDir {
    ScratchDir::new(format!("dft-train-test-{}-{tag}", std::process::id()))
}

/// A tiny random Llama with SmolLM2's vocabulary and tokenizer, saved as an HF directory.
fn tiny_model(dir: &Path, poison: bool) -> PathBuf {
    tiny_model_with(dir, poison, 3)
}

fn tiny_model_with(dir: &Path, poison: bool, layers: usize) -> PathBuf {
    let path = save_tiny_model(dir, layers, true);
    if poison {
        // Put a NaN into one weight of the saved checkpoint.
        let st = path.join("model.safetensors");
        let mut bytes = std::fs::read(&st).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let at = 8 + n + 64; // first tensor (alphabetical: embed_tokens) data
        bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        std::fs::write(&st, bytes).unwrap();
    }
    path
}

fn base_overrides(model: &Path, out: &Path) -> Vec<String> {
    vec![
        format!("model.path={:?}", model.display().to_string()),
        format!("data.train={:?}", root().join("data/alpaca_en_zh/train.json").display().to_string()),
        format!("data.eval={:?}", root().join("data/alpaca_en_zh/heldout.json").display().to_string()),
        "data.eval_limit=4".into(),
        "data.max_len=64".into(),
        format!("train.out_dir={:?}", out.display().to_string()),
        "train.batch_size=2".into(),
        "train.lr=0.003".into(),
        "train.warmup_ratio=0.0".into(),
        "method.lc_layer=1".into(),
        "method.et_layer=2".into(),
    ]
}

fn run(overrides: &[String]) -> Result<dft_train::TrainSummary, TrainError> {
    let cfg = TrainConfig::load(None, overrides)?;
    train::<AB>(&cfg, false, &Default::default(), &TrainHooks::default())
}

#[test]
fn loss_decreases_for_each_method() {
    let dir = tmp("decrease");
    let model = tiny_model(&dir, false);
    for (name, extra) in [
        ("sft", vec!["method.name=\"sft\""]),
        ("tft", vec!["method.name=\"tft\""]),
        ("dft-logits", vec!["method.lc=\"logits\"", "method.et=\"logits\""]),
        ("dft-feature", vec!["method.lc=\"feature\"", "method.et=\"feature\""]),
    ] {
        let out = dir.join(name);
        let mut o = base_overrides(&model, &out);
        // The same 4 examples every step: one batch per epoch.
        o.extend(
            ["data.limit=4", "train.batch_size=4", "train.max_steps=12", "data.eval_limit=0", "train.lr=0.05"]
                .map(String::from),
        );
        o.extend(extra.into_iter().map(String::from));
        let s = run(&o).unwrap_or_else(|e| panic!("{name}: {e}"));
        let m = read_metrics(&s.metrics).unwrap();
        assert_eq!(m.len(), 12, "{name}");
        let (first, last) = (m[0].loss, m[11].loss);
        assert!(last < first - 0.5, "{name}: loss did not decrease: {first} -> {last}");
        assert!(m.iter().all(|x| x.grad_norm.is_finite() && x.tokens > 0));
        if name.starts_with("dft") {
            assert!(m[0].lc.is_some() && m[0].et.is_some(), "{name}: components logged");
        }
    }
}

#[test]
fn resume_after_sigkill_gives_the_same_losses() {
    let dir = tmp("resume");
    let model = tiny_model(&dir, false);
    let bin = env!("CARGO_BIN_EXE_dft");
    let args = |out: &Path| {
        let mut a = vec!["train".to_string(), "--quiet".into()];
        for o in base_overrides(&model, out) {
            a.push("--set".into());
            a.push(o);
        }
        for o in [
            "data.limit=40",
            "train.max_steps=10",
            "train.checkpoint_every=2",
            "train.keep_last=3",
            "train.eval_every=5",
        ] {
            a.push("--set".into());
            a.push(o.into());
        }
        a
    };
    let full = dir.join("full");
    let st = Command::new(bin).args(args(&full)).env("RAYON_NUM_THREADS", "2").status().unwrap();
    assert!(st.success());
    let want = read_metrics(&full.join("metrics.jsonl")).unwrap();
    assert_eq!(want.len(), 10);

    let cut = dir.join("cut");
    let mut child = Command::new(bin).args(args(&cut)).env("RAYON_NUM_THREADS", "2").spawn().unwrap();
    let t0 = std::time::Instant::now();
    while !cut.join("checkpoint-000004").join("trainer_state.json").exists() {
        assert!(t0.elapsed().as_secs() < 300, "no checkpoint after 300 s");
        assert!(child.try_wait().unwrap().is_none(), "run ended before it could be killed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mut resume_args = args(&cut);
    resume_args.insert(1, "--resume".into());
    let st = Command::new(bin).args(&resume_args).env("RAYON_NUM_THREADS", "2").status().unwrap();
    assert!(st.success());
    let got = read_metrics(&cut.join("metrics.jsonl")).unwrap();
    assert_eq!(got.len(), want.len(), "one metrics line per step after resuming");
    for (a, b) in got.iter().zip(&want) {
        assert_eq!(a.step, b.step);
        assert_eq!((a.loss, a.main, a.lc, a.et), (b.loss, b.main, b.lc, b.et), "step {}", a.step);
        assert_eq!(a.grad_norm, b.grad_norm, "step {}", a.step);
        assert_eq!(a.eval_loss, b.eval_loss, "step {}", a.step);
    }
}

#[test]
fn config_errors_name_the_key_before_loading_weights() {
    let dir = tmp("config");
    // A "model" directory with a config but no weights: layer errors must come before weights are read.
    let model = dir.join("headless");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(root().join("crates/dft-models/tests/fixtures/tiny-llama/config.json"), model.join("config.json"))
        .unwrap();
    let out = dir.join("out");
    let err = |extra: &[&str]| {
        let mut o = base_overrides(&model, &out);
        o.extend(extra.iter().map(|s| s.to_string()));
        match run(&o) {
            Ok(_) => panic!("expected an error for {extra:?}"),
            Err(e) => e.to_string(),
        }
    };
    let e = err(&["train.learnin_rate=0.1"]);
    assert!(e.contains("unknown key `train.learnin_rate` (command-line override)"), "{e}");
    // `learning_rate` is the TrainingArguments name of train.lr: giving both is an error naming both
    let e = err(&["train.learning_rate=0.1"]);
    assert!(e.contains("train.lr") && e.contains("learning_rate"), "{e}");
    let e = err(&["train.lr=-1"]);
    assert!(e.contains("train.lr"), "{e}");
    let e = err(&["train.warmup_ratio=1.5"]);
    assert!(e.contains("train.warmup_ratio"), "{e}");
    let e = err(&["data.train=\"/nonexistent/train.json\""]);
    assert!(e.contains("data.train") && e.contains("does not exist"), "{e}");
    let e = err(&["method.et_layer=7"]);
    assert!(e.contains("method.et_layer") && e.contains("3 blocks"), "{e}");
    let e = err(&["method.lc_layer=0"]);
    assert!(e.contains("method.lc_layer"), "{e}");
    let e = err(&["method.et_layer=\"auto\""]);
    assert!(e.contains("method.et_layer") && e.contains("auto"), "{e}");
    let e = err(&["method.alpha=-0.5"]);
    assert!(e.contains("method.alpha"), "{e}");
    // From a file: the TOML error names the file and line.
    let f = dir.join("bad.toml");
    std::fs::write(&f, "[model]\npath = \"x\"\n[train]\nlr = \"fast\"\n").unwrap();
    let e = TrainConfig::load(Some(&f), &[]).unwrap_err().to_string();
    assert!(e.contains("bad.toml") && e.contains("lr"), "{e}");
}

#[test]
fn non_finite_loss_is_reported_and_never_saved() {
    let dir = tmp("nan");
    let model = tiny_model(&dir, true);
    let out = dir.join("out");
    let mut o = base_overrides(&model, &out);
    o.extend(["data.limit=6", "train.max_steps=2", "data.eval_limit=0"].map(String::from));
    let e = run(&o).unwrap_err();
    assert!(matches!(e, TrainError::NonFiniteLoss { step: 1, .. }), "{e}");
    assert!(e.to_string().contains("step 1, batch"), "{e}");
    // Skipping: every batch is skipped, and the NaN model is not checkpointed.
    o.push("train.on_nonfinite=\"skip\"".into());
    let e = run(&o).unwrap_err();
    assert!(matches!(e, TrainError::Checkpoint { .. }) && e.to_string().contains("non-finite"), "{e}");
    assert!(dft_train::checkpoint::list_checkpoints(&out).is_empty());
}

#[test]
fn exported_checkpoint_reloads_to_the_trained_model() {
    let dir = tmp("export");
    let model = tiny_model(&dir, false);
    let out = dir.join("out");
    let mut o = base_overrides(&model, &out);
    o.extend(["data.limit=8", "train.max_steps=3"].map(String::from));
    let s = run(&o).unwrap();
    let pre = load_pretrained::<Flex>(&s.export_dir, &Default::default()).unwrap();
    assert!(pre.tokenizer.is_some(), "tokenizer.json exported");
    let cfg = TrainConfig::load(None, &o).unwrap();
    let tok = pre.tokenizer.clone().unwrap();
    let special = dft_train::data_prep::special_tokens(&pre.model.config, &tok);
    let corpus = dft_train::data_prep::read_corpus(cfg.data.eval.as_ref().unwrap(), &cfg.data).unwrap();
    let kinds =
        dft_data::SequenceKinds { tft: true, lc: false, et: false, sft: false, en_prompt: false, tgt_prompt: false };
    let heldout =
        dft_train::data_prep::tokenize(&corpus, &cfg.data, kinds, &tok, special, cfg.data.eval_limit).unwrap();
    let l = dft_train::eval_loss(&pre.model, &heldout, 4, dft_train::Method::Dft).unwrap().unwrap();
    let want = s.eval_loss_after.unwrap();
    assert!((l - want).abs() <= 1e-6 * want.abs(), "reloaded eval loss {l} vs in-memory {want}");
}

#[test]
fn sigint_writes_a_checkpoint_and_exits_cleanly() {
    let dir = tmp("sigint");
    let model = tiny_model(&dir, false);
    let out = dir.join("out");
    let mut args = vec!["train".to_string(), "--quiet".into()];
    for o in base_overrides(&model, &out).into_iter().chain([
        "data.limit=40".into(),
        "train.max_steps=400".into(),
        "data.eval_limit=0".into(),
    ]) {
        args.push("--set".into());
        args.push(o);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_dft")).args(&args).spawn().unwrap();
    let metrics = out.join("metrics.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map(|s| s.lines().count()).unwrap_or(0) < 2 {
        assert!(t0.elapsed().as_secs() < 300, "no progress after 300 s");
        assert!(child.try_wait().unwrap().is_none(), "run ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let st = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "interrupted runs exit with 130");
    assert!(!out.join(dft_train::run_dir::LOCK_FILE).exists(), "the run-directory lock is released on SIGINT");
    let ckpts = dft_train::checkpoint::list_checkpoints(&out);
    let (step, path) = ckpts.last().expect("a checkpoint was written on SIGINT");
    let state = dft_train::checkpoint::read_state(path).unwrap();
    assert_eq!(state.step, *step);
    assert_eq!(read_metrics(&metrics).unwrap().len(), *step, "metrics end at the checkpointed step");
    assert!(*step < 400);
}

#[test]
fn auto_layers_are_selected_by_lens_entropy_written_and_reused() {
    let dir = tmp("auto");
    let model = tiny_model_with(&dir, false, 6);
    let out = dir.join("out");
    let mut o = base_overrides(&model, &out);
    o.extend(
        [
            "data.limit=6",
            "train.max_steps=2",
            "data.eval_limit=0",
            "method.lc_layer=\"auto\"",
            "method.et_layer=\"auto\"",
            "method.auto_samples=8",
        ]
        .map(String::from),
    );
    let s = run(&o).unwrap();
    let report = dft_layers_select::LayerReport::read_json(&out.join("layers.json")).unwrap();
    assert_eq!(report.num_layers, 6);
    assert_eq!(report.target.inputs, 6, "the 6 training examples (data.limit) are the sample");
    assert!(out.join("layers.svg").is_file() && out.join("layers.md").is_file());
    let (i, j) = (report.critical.i, report.critical.j);
    assert!(1 <= i && i < j && j <= 6, "i={i} j={j}");
    assert!(!report.critical.reasons.is_empty());
    let auto = read_metrics(&s.metrics).unwrap();
    assert!(auto[0].lc.is_some() && auto[0].et.is_some());

    // The run trained at exactly those blocks: the same run with i, j given has the same losses.
    let out2 = dir.join("explicit");
    let mut o2 = base_overrides(&model, &out2);
    o2.extend(["data.limit=6", "train.max_steps=2", "data.eval_limit=0"].map(String::from));
    o2.extend([format!("method.lc_layer={i}"), format!("method.et_layer={j}")]);
    let explicit = read_metrics(&run(&o2).unwrap().metrics).unwrap();
    for (a, b) in auto.iter().zip(&explicit) {
        assert_eq!((a.loss, a.lc, a.et), (b.loss, b.lc, b.et), "step {}", a.step);
    }

    // Resuming reads the layers back instead of recomputing them.
    let stamp = std::fs::metadata(out.join("layers.json")).unwrap().modified().unwrap();
    o.push("train.max_steps=3".into());
    let cfg = TrainConfig::load(None, &o).unwrap();
    let s = train::<AB>(&cfg, true, &Default::default(), &TrainHooks::default()).unwrap();
    assert_eq!(s.steps, 3);
    assert_eq!(std::fs::metadata(out.join("layers.json")).unwrap().modified().unwrap(), stamp);
}

#[test]
fn layer_sweep_runs_each_block_and_a_baseline() {
    use dft_train::{run_sweep, SweepAux, SweepSpec};
    let dir = tmp("sweep");
    let model = tiny_model_with(&dir, false, 4);
    let mut o = base_overrides(&model, &dir.join("unused"));
    o.extend(["data.limit=6", "data.eval_limit=4", "train.max_steps=2"].map(String::from));
    let base = TrainConfig::load(None, &o).unwrap();
    let spec = SweepSpec {
        aux: SweepAux::Et,
        layers: vec![2, 4],
        steps: 2,
        baseline: true,
        keep_other: false,
        keep_models: false,
        out_dir: dir.join("sweep"),
        resume: false,
    };
    let mut scored = Vec::new();
    let report = run_sweep::<AB>(&base, &spec, &Default::default(), &TrainHooks::default(), |label, s| {
        assert!(s.export_dir.is_dir(), "scores run while the exported model exists");
        scored.push(label.to_string());
        Ok([("fake metric".to_string(), scored.len() as f64)].into())
    })
    .unwrap();
    assert_eq!(scored, ["tft", "et-2", "et-4"]);
    let labels: Vec<_> = report.runs.iter().map(|r| (r.label.as_str(), r.layer)).collect();
    assert_eq!(labels, [("tft", None), ("et-2", Some(2)), ("et-4", Some(4))]);
    for r in &report.runs {
        assert_eq!(r.steps, 2);
        assert!(r.eval_loss_after.unwrap().is_finite() && r.eval_loss_before.unwrap().is_finite());
        assert_eq!(r.aux_last.is_some(), r.layer.is_some(), "{}", r.label);
        // Checkpoints and exported models are cleaned up.
        assert!(dft_train::checkpoint::list_checkpoints(&r.out_dir).is_empty());
        assert!(!r.out_dir.join("final").exists());
        let m = read_metrics(&r.out_dir.join("metrics.jsonl")).unwrap();
        assert_eq!(m[0].lc, None, "{}: the swept loss alone", r.label);
    }
    // Every run starts from the same model and data: the same held-out loss before training.
    assert_eq!(report.runs[0].eval_loss_before, report.runs[2].eval_loss_before);
    // ET at a different block gives a different run.
    assert_ne!(report.runs[1].aux_last, report.runs[2].aux_last);
    let sweep = dir.join("sweep");
    for f in ["sweep.json", "sweep.md", "sweep.svg"] {
        assert!(sweep.join(f).is_file(), "{f}");
    }
    let md = std::fs::read_to_string(sweep.join("sweep.md")).unwrap();
    assert!(md.contains("| et-4 | 4 |") && md.contains("fake metric"), "{md}");

    // Resume: everything is read back, nothing retrained or rescored.
    let again = run_sweep::<AB>(
        &base,
        &SweepSpec { resume: true, ..spec.clone() },
        &Default::default(),
        &TrainHooks::default(),
        |l, _| panic!("{l} rescored"),
    )
    .unwrap();
    assert_eq!(again.runs, report.runs);

    // A block beyond the model is refused before anything runs.
    let e = run_sweep::<AB>(
        &base,
        &SweepSpec { layers: vec![5], out_dir: dir.join("bad"), ..spec },
        &Default::default(),
        &TrainHooks::default(),
        |_, _| Ok(Default::default()),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--layers") && e.contains("4 blocks"), "{e}");
    assert!(!dir.join("bad").exists());
}
