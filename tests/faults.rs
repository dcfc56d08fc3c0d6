//! Reliability and fault injection (docs/RELIABILITY.md): what happens around a run. Saved work is never
//! lost or mixed up (refusing to overwrite, locks, resume config checks, checkpoint manifests and
//! fallback, full disks, stale temporaries), no input panics (generate, eval, model headers), and
//! every error says what happened. The runs use a tiny random Llama with SmolLM2's tokenizer and drive
//! the real `dft` binary where the behaviour is the command line's.
mod common;
use common::*;
use dft_models::{CausalLm, ModelConfig};
use dft_test_support::scratch::ScratchDir;
use dft_train::checkpoint::{list_checkpoints, validate_checkpoint};
use dft_train::metrics::read_metrics;
use dft_train::{train, TrainConfig, TrainError, TrainHooks};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

type AB = burn::backend::Autodiff<burn::backend::Flex>;

/// A fresh scratch directory, removed when the test passes and kept when it fails.
fn tmp(tag: &str) -> ScratchDir {
    ScratchDir::new(format!("dft-faults-{}-{tag}", std::process::id()))
}

fn model_config(layers: usize) -> ModelConfig {
    tiny_config(layers, true)
}

/// A tiny random Llama (3 blocks) with SmolLM2's vocabulary and tokenizer, saved as an HF directory.
fn tiny_model(dir: &Path) -> PathBuf {
    save_tiny_model(dir, 3, true)
}

fn overrides(model: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut o = vec![
        format!("model.path={:?}", model.display().to_string()),
        format!("data.train={:?}", root().join("data/alpaca_en_zh/train.json").display().to_string()),
        format!("data.eval={:?}", root().join("data/alpaca_en_zh/heldout.json").display().to_string()),
        "data.eval_limit=0".into(),
        "data.limit=8".into(),
        "data.max_len=64".into(),
        format!("train.out_dir={:?}", out.display().to_string()),
        "train.batch_size=2".into(),
        "train.lr=0.003".into(),
        "train.warmup_ratio=0.0".into(),
        "method.lc_layer=1".into(),
        "method.et_layer=2".into(),
    ];
    o.extend(extra.iter().map(|s| s.to_string()));
    o
}

fn lib_run(o: &[String], resume: bool, overwrite: bool) -> Result<dft_train::TrainSummary, TrainError> {
    let cfg = TrainConfig::load(None, o)?;
    train::<AB>(&cfg, resume, &Default::default(), &TrainHooks { overwrite, ..Default::default() })
}

fn dft() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dft"));
    c.env("RAYON_NUM_THREADS", "2");
    c
}

fn train_args(o: &[String], flags: &[&str]) -> Vec<String> {
    let mut a = vec!["train".to_string(), "--quiet".into()];
    a.extend(flags.iter().map(|s| s.to_string()));
    for x in o {
        a.push("--set".into());
        a.push(x.clone());
    }
    a
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Failed cleanly: exit status 1 (not a panic's 101, not an abort's signal) and the message on stderr.
fn failed_with(o: &Output, needles: &[&str]) -> String {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected a clean error exit: {e}");
    assert!(!e.contains("panicked"), "{e}");
    for n in needles {
        assert!(e.contains(n), "missing {n:?} in: {e}");
    }
    e
}

fn final_weights(out: &Path) -> Vec<u8> {
    std::fs::read(out.join("final/model.safetensors")).unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. A fresh run never overwrites an earlier one; --overwrite moves it aside whole.

#[test]
fn a_fresh_run_over_an_earlier_run_is_refused_and_overwrite_moves_it_aside() {
    let dir = tmp("refuse");
    let model = tiny_model(&dir);
    let out = dir.join("out");
    let o = overrides(&model, &out, &["train.max_steps=3", "train.checkpoint_every=1", "train.keep_last=5"]);
    lib_run(&o, false, false).unwrap();
    let metrics_before = std::fs::read(out.join("metrics.jsonl")).unwrap();
    let weights_before = final_weights(&out);

    // Same directory, no --resume: refused with the directory and what it holds; nothing touched.
    let o2 = overrides(&model, &out, &["train.max_steps=1", "train.lr=0.01"]);
    let r = dft().args(train_args(&o2, &[])).output().unwrap();
    failed_with(
        &r,
        &[
            &out.display().to_string(),
            "already holds a run",
            "3 checkpoint(s)",
            "metrics.jsonl",
            "--resume",
            "--overwrite",
        ],
    );
    assert_eq!(std::fs::read(out.join("metrics.jsonl")).unwrap(), metrics_before);
    assert_eq!(list_checkpoints(&out).len(), 3);

    // --overwrite: the old run is moved, complete, to <out>.old-<time>; the new one starts clean.
    let s = lib_run(&o2, false, true).unwrap();
    assert_eq!(s.steps, 1);
    assert_eq!(read_metrics(&out.join("metrics.jsonl")).unwrap().len(), 1);
    let ck: Vec<usize> = list_checkpoints(&out).into_iter().map(|c| c.0).collect();
    assert_eq!(ck, [1], "only the new run's checkpoint (none of the old, higher-numbered ones)");
    let aside: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("out.old-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let old = &aside[0];
    assert_eq!(std::fs::read(old.join("metrics.jsonl")).unwrap(), metrics_before);
    assert_eq!(final_weights(old), weights_before);
    assert_eq!(list_checkpoints(old).len(), 3);
    assert!(!old.join(dft_train::run_dir::LOCK_FILE).exists() && !out.join(dft_train::run_dir::LOCK_FILE).exists());
}

// ---------------------------------------------------------------------------------------------
// 2. One process per run directory (train, sweep, eval --out); stale locks are taken over.

#[test]
fn concurrent_runs_on_one_directory_are_refused_and_stale_locks_recovered() {
    let dir = tmp("lock");
    let model = tiny_model(&dir);
    let out = dir.join("out");
    let o = overrides(&model, &out, &["train.max_steps=100000", "data.limit=40"]);
    let mut first = dft().args(train_args(&o, &[])).stderr(std::process::Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while read_metrics(&out.join("metrics.jsonl")).map(|m| m.len()).unwrap_or(0) < 1 {
        assert!(t0.elapsed().as_secs() < 120 && first.try_wait().unwrap().is_none(), "first run did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The second process fails at once, naming the holder — with and without --resume.
    for flags in [&[][..], &["--resume"][..]] {
        let t = Instant::now();
        let r = dft().args(train_args(&o, flags)).output().unwrap();
        failed_with(&r, &["is in use by", &format!("pid {}", first.id()), "dft train"]);
        assert!(t.elapsed().as_secs() < 20, "refused before loading anything");
    }
    first.kill().unwrap(); // SIGKILL: the lock file stays, its pid is dead
    first.wait().unwrap();
    assert!(out.join(dft_train::run_dir::LOCK_FILE).exists());
    let o2 = overrides(&model, &out, &["train.max_steps=2", "data.limit=40"]);
    let r = dft().args(train_args(&o2, &["--resume"])).output().unwrap();
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(stderr(&r).contains("stale lock"), "{}", stderr(&r));
    assert!(!out.join(dft_train::run_dir::LOCK_FILE).exists(), "released at exit");

    // sweep and eval --out take the same lock: held here by this (live) test process.
    let held = dir.join("held");
    let lock = dft_train::run_dir::RunLock::acquire(&held, "test").unwrap();
    let me = format!("pid {}", std::process::id());
    let sweep = dft()
        .args(["sweep", "--quiet", "--layers", "2", "--steps", "1", "--out"])
        .arg(&held)
        .args(overrides(&model, &dir.join("unused"), &[]).iter().flat_map(|x| ["--set".to_string(), x.clone()]))
        .output()
        .unwrap();
    failed_with(&sweep, &["is in use by", &me]);
    drop(lock);
    // An earlier sweep is not replaced without --overwrite (then it is moved aside).
    let sweep = |flags: &[&str]| {
        dft()
            .args(["sweep", "--quiet", "--layers", "2", "--steps", "1", "--no-baseline", "--out"])
            .arg(&held)
            .args(flags)
            .args(overrides(&model, &dir.join("unused"), &[]).iter().flat_map(|x| ["--set".to_string(), x.clone()]))
            .output()
            .unwrap()
    };
    std::fs::write(held.join("sweep.json"), "{}").unwrap();
    failed_with(&sweep(&[]), &["already holds a run (sweep.json)", "--overwrite"]);
    let r = sweep(&["--overwrite"]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(held.join("sweep.json").is_file() && held.join("et-2").is_dir());
    let lock = dft_train::run_dir::RunLock::acquire(&held, "test").unwrap();
    let data = eval_data(&dir, 3);
    let eval = dft()
        .args(["eval", "--quiet", "--tasks", "xcopa", "--lang", "zh", "--model"])
        .arg(&model)
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(&held)
        .output()
        .unwrap();
    failed_with(&eval, &["is in use by", &me]);
    drop(lock);
}

// ---------------------------------------------------------------------------------------------
// 3. dft eval: no score over zero items; re-runs keep earlier results.

/// A benchmark folder with `n` XCOPA-zh items.
fn eval_data(dir: &Path, n: usize) -> PathBuf {
    let data = dir.join(format!("eval-{n}"));
    std::fs::create_dir_all(data.join("xcopa")).unwrap();
    let item = |i: usize| {
        format!(
            r#"{{"premise": "那人打开水龙头。", "choice1": "厕所里满是水。", "choice2": "水从水龙头喷口流出。", "question": "effect", "label": {}, "idx": {i}, "changed": false}}"#,
            i % 2
        )
    };
    let text: String = (0..n).map(|i| item(i) + "\n").collect();
    std::fs::write(data.join("xcopa/val.zh.jsonl"), text).unwrap();
    data
}

#[test]
fn eval_refuses_empty_tasks_and_never_destroys_earlier_results() {
    let dir = tmp("eval");
    let model = tiny_model(&dir);
    let out = dir.join("results");
    let eval = |data: &Path, extra: &[&str]| {
        dft()
            .args(["eval", "--quiet", "--tasks", "xcopa", "--lang", "zh", "--method-name", "m", "--model"])
            .arg(&model)
            .arg("--data-dir")
            .arg(data)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let data = eval_data(&dir, 4);
    let r = eval(&data, &["--limit", "2"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let json = std::fs::read_to_string(out.join("results.json")).unwrap();
    let first: dft_eval::EvalReport = serde_json::from_str(&json).unwrap();
    let (score, n) = first.cell("m", dft_eval::Task::Xcopa, dft_eval::Lang::Zh).unwrap();
    assert_eq!(n, 2);

    // --limit 0 and an empty benchmark file are errors; results.json is untouched.
    failed_with(&eval(&data, &["--limit", "0"]), &["--limit 0"]);
    let empty = eval_data(&dir, 0);
    failed_with(&eval(&empty, &[]), &["xcopa", "no items", "val.zh.jsonl"]);
    assert_eq!(std::fs::read_to_string(out.join("results.json")).unwrap(), json);

    // Another limit adds results; the same limit again replaces them and keeps the old in history.
    assert!(eval(&data, &["--limit", "4"]).status.success());
    assert!(eval(&data, &["--limit", "2"]).status.success());
    let rep: dft_eval::EvalReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let limits: Vec<Option<usize>> = rep.runs.iter().map(|r| r.options.limit).collect();
    assert_eq!(limits, [Some(4), Some(2)]);
    assert_eq!(rep.history.len(), 1);
    assert_eq!(rep.history[0].options.limit, Some(2));
    assert_eq!(rep.history[0].results[0].score, score);
    assert!(!out.join(dft_train::run_dir::LOCK_FILE).exists());
}

// ---------------------------------------------------------------------------------------------
// 4. --resume refuses a changed config (listing the keys) and reports the safe changes.

#[test]
fn resume_with_a_changed_config_is_refused_with_the_keys() {
    let dir = tmp("resume-config");
    let model = tiny_model(&dir);
    let out = dir.join("out");
    lib_run(&overrides(&model, &out, &["train.max_steps=2"]), false, false).unwrap();
    let changed =
        overrides(&model, &out, &["train.max_steps=3", "train.batch_size=4", "data.max_len=48", "train.seed=7"]);
    let e = lib_run(&changed, true, false).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TrainError::ResumeConfig { .. }), "{msg}");
    for k in ["train.batch_size: 2 -> 4", "data.max_len: 64 -> 48", "train.seed: 42 -> 7", "checkpoint-000002"] {
        assert!(msg.contains(k), "{k}: {msg}");
    }
    assert!(!msg.contains("train.max_steps"), "max_steps is safe to change: {msg}");
    let o = overrides(&model, &out, &["train.max_steps=3", "method.name=\"tft\""]);
    let msg = lib_run(&o, true, false).unwrap_err().to_string();
    assert!(msg.contains("method.name: \"dft\" -> \"tft\""), "{msg}");
    // Safe keys only: resumes and continues.
    let s = lib_run(&overrides(&model, &out, &["train.max_steps=3", "train.keep_last=3"]), true, false).unwrap();
    assert_eq!(s.steps, 3);
}

// ---------------------------------------------------------------------------------------------
// 5. A corrupt newest checkpoint: named, kept aside, and resume falls back to the previous one — with
//    the same final weights as an uninterrupted run.

#[test]
fn a_corrupt_newest_checkpoint_falls_back_to_the_previous_with_identical_final_weights() {
    let dir = tmp("corrupt");
    let model = tiny_model(&dir);
    let full = dir.join("full");
    let steps = ["train.max_steps=6", "train.checkpoint_every=2", "train.keep_last=3"];
    lib_run(&overrides(&model, &full, &steps), false, false).unwrap();

    for (k, damage) in
        ["truncate optimizer.mpk", "flip a byte of model.mpk", "delete trainer_state.json"].iter().enumerate()
    {
        // The run as it was when killed after checkpoint 4 (same config, so the same schedule).
        let cut = dir.join(format!("cut-{k}"));
        assert!(Command::new("cp").arg("-a").arg(&full).arg(&cut).status().unwrap().success());
        for gone in ["checkpoint-000006", "final", "summary.json"] {
            let p = cut.join(gone);
            if p.is_dir() {
                std::fs::remove_dir_all(p).unwrap()
            } else {
                std::fs::remove_file(p).unwrap()
            }
        }
        let newest = cut.join("checkpoint-000004");
        assert!(validate_checkpoint(&newest).is_ok());
        match k {
            0 => {
                let f = newest.join("optimizer.mpk");
                let len = std::fs::metadata(&f).unwrap().len();
                std::fs::OpenOptions::new().write(true).open(&f).unwrap().set_len(len / 2).unwrap();
            }
            1 => {
                let f = newest.join("model.mpk");
                let mut b = std::fs::read(&f).unwrap();
                let at = b.len() / 2;
                b[at] ^= 0x40;
                std::fs::write(&f, b).unwrap();
            }
            _ => std::fs::remove_file(newest.join("trainer_state.json")).unwrap(),
        }
        if k < 2 {
            let why = validate_checkpoint(&newest).unwrap_err();
            assert!(why.contains(if k == 0 { "optimizer.mpk" } else { "model.mpk" }), "{damage}: {why}");
        }
        let r = dft().args(train_args(&overrides(&model, &cut, &steps), &["--resume"])).output().unwrap();
        let e = stderr(&r);
        assert!(r.status.success(), "{damage}: {e}");
        assert!(e.contains("checkpoint 4 is incomplete or corrupt") && e.contains("newest valid checkpoint"), "{e}");
        let named = ["optimizer.mpk", "model.mpk", "trainer_state.json is missing"][k];
        assert!(e.contains(named), "{damage}: {e}");
        assert!(cut.join("corrupt-checkpoint-000004").is_dir(), "kept for inspection");
        assert!(e.contains("resuming from") && e.contains("checkpoint-000002"), "{damage}: {e}");
        assert_eq!(final_weights(&cut), final_weights(&full), "{damage}: final weights differ");
        let want = read_metrics(&full.join("metrics.jsonl")).unwrap();
        let got = read_metrics(&cut.join("metrics.jsonl")).unwrap();
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            assert_eq!((a.step, a.loss, a.grad_norm), (b.step, b.loss, b.grad_norm), "{damage}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Full disk: the error names the path, the space needed and free; the previous checkpoint stays
//    intact. On a real small tmpfs where one can be mounted (root), else by an injected write error.

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.into()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        Command::new("umount").arg(&self.0).status().ok();
    }
}

#[test]
fn a_full_disk_is_reported_and_the_previous_checkpoint_stays_intact() {
    let dir = tmp("disk");
    let model = tiny_model(&dir);
    // Size of one checkpoint of this model.
    let probe = dir.join("probe");
    lib_run(&overrides(&model, &probe, &["train.max_steps=1"]), false, false).unwrap();
    let ckpt = dft_train::checkpoint::dir_bytes(&list_checkpoints(&probe)[0].1);

    let steps = ["train.max_steps=3", "train.checkpoint_every=1", "train.keep_last=2"];
    let check_after = |out: &Path, r: &Output, needles: &[&str]| {
        let e = failed_with(r, needles);
        let left = list_checkpoints(out);
        assert!(!left.is_empty(), "{e}");
        for (_, c) in &left {
            validate_checkpoint(c).unwrap_or_else(|w| panic!("earlier checkpoint damaged: {w}"));
        }
        let temps: Vec<_> = std::fs::read_dir(out)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(temps.is_empty(), "temporaries left behind: {temps:?}");
        e
    };
    // Room for the metrics and one checkpoint and a half: the second checkpoint does not fit.
    let size = ckpt + ckpt / 2;
    if let Some(fs) = Tmpfs::mount(&dir.join("small"), size) {
        // (a) The free-space check refuses before writing.
        let out = fs.0.join("a");
        let r = dft().args(train_args(&overrides(&model, &out, &steps), &[])).output().unwrap();
        let e = check_after(&out, &r, &["no space left on device while writing", "needs ≈", "GB free"]);
        assert!(e.contains(&out.display().to_string()), "{e}");
        std::fs::remove_dir_all(&out).unwrap();
        // (b) Past the check (as when the estimate is wrong): the write itself fails with ENOSPC.
        let out = fs.0.join("b");
        let r = dft()
            .args(train_args(&overrides(&model, &out, &steps), &[]))
            .env("DFT_SKIP_SPACE_CHECK", "1")
            .output()
            .unwrap();
        check_after(&out, &r, &["no space left on device while writing", ".tmp-checkpoint-000002"]);
        assert_eq!(list_checkpoints(&out).iter().map(|c| c.0).collect::<Vec<_>>(), [1]);
        std::fs::remove_dir_all(&out).unwrap();
    } else {
        eprintln!("(no tmpfs could be mounted: injected ENOSPC instead)");
    }
    // The HF export at the end: room for the checkpoint, not for the exported weights.
    if let Some(fs) = Tmpfs::mount(&dir.join("small2"), ckpt + (3 << 20) / 2) {
        let one = ["train.max_steps=1", "train.keep_last=1"];
        for (k, skip_check) in [false, true].into_iter().enumerate() {
            let out = fs.0.join(format!("export-{k}"));
            let mut c = dft();
            c.args(train_args(&overrides(&model, &out, &one), &[]));
            if skip_check {
                c.env("DFT_SKIP_SPACE_CHECK", "1");
            }
            let e = check_after(&out, &c.output().unwrap(), &["no space left on device while writing", "GB free"]);
            assert!(e.contains(&out.join("final").display().to_string()), "{e}");
            let partial: Vec<_> = std::fs::read_dir(out.join("final")).into_iter().flatten().flatten().collect();
            assert!(partial.iter().all(|p| !p.file_name().to_string_lossy().contains(".tmp")), "{partial:?}");
            std::fs::remove_dir_all(&out).unwrap();
        }
    } else {
        eprintln!("(no tmpfs could be mounted: injected ENOSPC instead)");
    }
    // Injected: the writer fails with ENOSPC at step 2 (runs everywhere).
    let out = dir.join("injected");
    let r = dft()
        .args(train_args(&overrides(&model, &out, &steps), &[]))
        .env("DFT_FAULT_CHECKPOINT_ENOSPC", "2")
        .output()
        .unwrap();
    check_after(&out, &r, &["no space left on device while writing", ".tmp-checkpoint-000002"]);
    // ... and the run resumes from the intact checkpoint to the same weights as an uninterrupted one.
    let r = dft().args(train_args(&overrides(&model, &out, &steps), &["--resume"])).output().unwrap();
    assert!(r.status.success(), "{}", stderr(&r));
    let full = dir.join("full");
    lib_run(&overrides(&model, &full, &steps), false, false).unwrap();
    assert_eq!(final_weights(&out), final_weights(&full));
}

// ---------------------------------------------------------------------------------------------
// 7 + SIGKILL during checkpoint writes: temporaries of dead processes are removed; resume gives the
//    uninterrupted run's final weights bit for bit.

#[test]
fn sigkill_during_checkpoint_writes_then_resume_matches_the_uninterrupted_run() {
    let dir = tmp("sigkill");
    let model = tiny_model(&dir);
    let steps = ["train.max_steps=6", "train.checkpoint_every=1", "train.keep_last=2"];
    let full = dir.join("full");
    lib_run(&overrides(&model, &full, &steps), false, false).unwrap();
    let want = final_weights(&full);

    for seed in 1..=3u64 {
        let out = dir.join(format!("cut-{seed}"));
        let o = overrides(&model, &out, &steps);
        // Each checkpoint write pauses 150 ms after its records (before the state and the manifest), so
        // the half-written checkpoint is seen even on a loaded machine.
        let mut child = dft()
            .args(train_args(&o, &[]))
            .env("DFT_FAULT_CHECKPOINT_PAUSE_MS", "150")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill while checkpoint `seed + 1` is being written, a seed-dependent moment into the write:
        // while the records are written, or after them.
        let target = format!(".tmp-checkpoint-{:06}-{}", seed + 1, child.id());
        let t0 = Instant::now();
        while !out.join(&target).exists() {
            assert!(t0.elapsed().as_secs() < 120, "checkpoint {} never started", seed + 1);
            assert!(child.try_wait().unwrap().is_none(), "run ended before it could be killed");
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_micros([500, 40_000, 120_000][seed as usize - 1]));
        child.kill().unwrap();
        child.wait().unwrap();
        // Leave an export temporary too, as a kill during the HF export would.
        std::fs::create_dir_all(out.join("final")).unwrap();
        let dead = out.join(format!("final/.model.safetensors.tmp{}", child.id()));
        std::fs::write(&dead, b"partial").unwrap();
        // A temporary of a live process (this one) is not touched.
        let live = out.join(format!(".tmp-checkpoint-000099-{}", std::process::id()));
        std::fs::create_dir_all(&live).unwrap();

        let r = dft().args(train_args(&o, &["--resume"])).output().unwrap();
        assert!(r.status.success(), "seed {seed}: {}", stderr(&r));
        assert!(stderr(&r).contains("removed"), "{}", stderr(&r));
        assert!(!dead.exists(), "export temporary of the dead process removed");
        let temps: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert_eq!(temps, [live.file_name().unwrap().to_string_lossy().to_string()], "seed {seed}");
        assert_eq!(final_weights(&out), want, "seed {seed}: final weights differ from the uninterrupted run");
    }
}

// ---------------------------------------------------------------------------------------------
// 8, 10, 11. dft generate: no panics, no unbounded allocation, context and sampling values checked.

#[test]
fn generate_validates_its_inputs_instead_of_panicking() {
    let dir = tmp("generate");
    let model = tiny_model(&dir);
    let gen = |extra: &[&str]| dft().arg("generate").arg("--model").arg(&model).args(extra).output().unwrap();
    failed_with(&gen(&["--prompt", ""]), &["--prompt is empty"]);
    for n in ["18446744073709551615", "1000000000000", "600"] {
        failed_with(&gen(&["--prompt", "Hello", "--max-new-tokens", n]), &["context is 512 tokens", "at most"]);
    }
    let long = "word ".repeat(900);
    failed_with(&gen(&["--prompt", &long]), &["more than the model's context of 512 tokens"]);
    failed_with(&gen(&["--prompt", "Hi", "--temperature", "nan"]), &["--temperature"]);
    failed_with(&gen(&["--prompt", "Hi", "--temperature=-1"]), &["--temperature"]);
    failed_with(&gen(&["--prompt", "Hi", "--temperature", "1", "--top-p", "2"]), &["--top-p", "(0, 1]"]);
    let ok = gen(&["--prompt", "Hi", "--max-new-tokens", "3"]);
    assert!(ok.status.success(), "{}", stderr(&ok));

    // The library returns errors too.
    let m = CausalLm::<burn::backend::Flex>::random(model_config(1), 1, &Default::default()).unwrap();
    let cfg = |n| dft_models::generate::GenerateConfig {
        max_new_tokens: n,
        sampling: dft_models::generate::Sampling::Greedy,
        stop_tokens: vec![],
    };
    assert!(dft_models::generate::generate(&m, &[], &cfg(1)).is_err());
    assert!(dft_models::generate::generate(&m, &[5], &cfg(usize::MAX)).is_err());
    assert!(dft_models::generate::generate(&m, &[60000], &cfg(1)).is_err(), "token outside the vocabulary");
    let bad = dft_models::generate::GenerateConfig {
        sampling: dft_models::generate::Sampling::Sample { temperature: f32::NAN, top_k: None, top_p: None, seed: 0 },
        ..cfg(1)
    };
    assert!(dft_models::generate::generate(&m, &[5], &bad).is_err());
    assert_eq!(dft_models::generate::generate(&m, &[5], &cfg(2)).unwrap().len(), 2);

    // dft eval: a QA generation budget beyond the context is refused (no "capacity overflow").
    let data = eval_data(&dir, 2);
    let r = dft()
        .args([
            "eval",
            "--quiet",
            "--tasks",
            "xcopa",
            "--lang",
            "zh",
            "--max-new-tokens",
            "18446744073709551615",
            "--model",
        ])
        .arg(&model)
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(dir.join("ev"))
        .output()
        .unwrap();
    failed_with(&r, &["--max-new-tokens", "context of 512 tokens"]);
}

// ---------------------------------------------------------------------------------------------
// 9, 11. Model headers: absurd sizes and non-finite hyper-parameters are refused before allocating.

#[test]
fn absurd_or_invalid_model_headers_are_refused_before_allocating() {
    let dir = tmp("headers");
    let model = tiny_model(&dir);
    let cfg_path = model.join("config.json");
    let original: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    for (key, value, needle) in [
        ("num_hidden_layers", serde_json::json!(4_000_000_000u64), "num_hidden_layers"),
        ("hidden_size", serde_json::json!(1u64 << 40), "hidden_size"),
        ("num_attention_heads", serde_json::json!(1u64 << 33), "num_attention_heads"),
        ("rms_norm_eps", serde_json::json!(-1.0), "rms_norm_eps"),
        // Within bounds, but more blocks than the weights: refused by the tensor check, not allocated.
        ("num_hidden_layers", serde_json::json!(900), "model.layers.3"),
    ] {
        let mut v = original.clone();
        v[key] = value;
        std::fs::write(&cfg_path, serde_json::to_string(&v).unwrap()).unwrap();
        let t = Instant::now();
        let e = dft_models::load_pretrained::<burn::backend::Flex>(&model, &Default::default())
            .err()
            .unwrap_or_else(|| panic!("{key} accepted"))
            .to_string();
        assert!(e.contains(needle) && e.contains(&model.display().to_string()), "{key}: {e}");
        assert!(t.elapsed().as_secs() < 10, "{key}: took {:?}", t.elapsed());
    }
    std::fs::write(&cfg_path, serde_json::to_string(&original).unwrap()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 10, 12, 13, 17. Through `dft train`: max_len against the context, train.threads honoured, the layer
//    order warned about, truncation counted.

#[test]
fn train_checks_context_honours_threads_warns_on_layer_order_and_counts_truncation() {
    let dir = tmp("train-msgs");
    let model = tiny_model(&dir);
    let out = dir.join("out");
    let e = lib_run(&overrides(&model, &out, &["data.max_len=100000"]), false, false).unwrap_err().to_string();
    assert!(e.contains("data.max_len") && e.contains("512"), "{e}");
    assert!(!out.join("metrics.jsonl").exists());

    let o =
        overrides(&model, &out, &["train.max_steps=1", "train.threads=1", "method.lc_layer=2", "method.et_layer=1"]);
    let r = dft().args(train_args(&o, &[])).env_remove("RAYON_NUM_THREADS").output().unwrap();
    let e = stderr(&r);
    assert!(r.status.success(), "{e}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["threads"], 1, "train.threads sizes the rayon pool");
    assert!(String::from_utf8_lossy(&r.stdout).contains("threads: 1"));
    assert!(e.contains("warning: method.lc_layer (2) is not below method.et_layer (1)"), "{e}");
    assert!(e.contains("sequences cut to data.max_len = 64 tokens") && e.contains("tft "), "{e}");
}

// ---------------------------------------------------------------------------------------------
// 14. Unknown --set keys are the command line's; with a suggestion.

#[test]
fn an_unknown_override_names_the_command_line_and_suggests_a_key() {
    let dir = tmp("set");
    let file = dir.join("base.toml");
    std::fs::write(&file, "[model]\npath = \"x\"\n[train]\nlr = 1e-4\n").unwrap();
    let e = TrainConfig::load(Some(&file), &["train.lrr=0.1".into()]).unwrap_err().to_string();
    assert!(e.contains("--set train.lrr=0.1") && e.contains("command-line"), "{e}");
    assert!(e.contains("did you mean `train.lr`"), "{e}");
    assert!(!e.contains("base.toml"), "the file is not at fault: {e}");
    let e = TrainConfig::load(Some(&file), &["trian.lr=0.1".into()]).unwrap_err().to_string();
    assert!(e.contains("--set trian.lr=0.1") && e.contains("did you mean `train.lr`"), "{e}");
    // An unknown key in the file still names the file, with a suggestion.
    std::fs::write(&file, "[model]\npath = \"x\"\n[train]\nbatch_sise = 2\n").unwrap();
    let e = TrainConfig::load(Some(&file), &[]).unwrap_err().to_string();
    assert!(e.contains("base.toml") && e.contains("batch_sise") && e.contains("did you mean `batch_size`"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// 15. Lenient data: skipped records shown with file:line and reason, all of them written to the run
//     directory; an all-skipped corpus names the file, its format and the reasons.

#[test]
fn skipped_records_are_shown_and_listed_and_an_empty_corpus_explains_itself() {
    let dir = tmp("lenient");
    let model = tiny_model(&dir);
    let rec = |i: usize| {
        serde_json::json!({"id": format!("r{i}"), "en": {"instruction": "Say hi.", "input": "", "output": "Hi."},
            "zh": {"instruction": "打个招呼。", "input": "", "output": "你好。"}})
        .to_string()
    };
    let jsonl = dir.join("train.jsonl");
    let lines = [rec(1), "{not json".into(), rec(2), rec(3), "[1, 2".into(), rec(4)];
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    let out = dir.join("out");
    let data = [format!("data.train={:?}", jsonl.display().to_string()), "data.format=\"paired_jsonl\"".into()];
    let mut o = overrides(&model, &out, &["train.max_steps=1"]);
    o.extend(data.iter().cloned());
    let r = dft().args(train_args(&o, &[])).output().unwrap();
    let e = stderr(&r);
    assert!(r.status.success(), "{e}");
    let at = |line: usize| format!("{}:{line}", jsonl.display());
    assert!(e.contains("skipped: ") && e.contains(&at(2)) && e.contains(&at(5)), "{e}");
    let listed = std::fs::read_to_string(out.join("skipped.txt")).unwrap();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.contains("invalid_json_line") && listed.contains(&at(2)) && listed.contains(&at(5)), "{listed}");

    // A JSON array read as JSON lines: every record skipped.
    let out2 = dir.join("out2");
    let mut o = overrides(&model, &out2, &["train.max_steps=1", "data.format=\"paired_jsonl\""]);
    o.retain(|x| !x.starts_with("data.limit"));
    let r = dft().args(train_args(&o, &[])).output().unwrap();
    failed_with(
        &r,
        &[
            "train.json",
            "paired_jsonl",
            "invalid_json_line",
            "looks like a JSON array",
            "data.format = \"paired_json\"",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// 16. quickstart --steps 0 is an error (not a 3-epoch run).

#[test]
fn quickstart_with_zero_steps_is_an_error() {
    let dir = tmp("quickstart");
    let t = Instant::now();
    let r = dft().args(["quickstart", "--steps", "0", "--out"]).arg(dir.join("q")).output().unwrap();
    failed_with(&r, &["--steps must be at least 1"]);
    assert!(t.elapsed().as_secs() < 10 && !dir.join("q").exists());
}
