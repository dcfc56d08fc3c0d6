//! `dft compare` end to end on a tiny random Llama (SmolLM2's tokenizer, the bundled en–zh data) with
//! three arms and two small benchmarks: the report has every arm, standard errors and paired
//! differences to TFT; a compare killed with SIGKILL in the middle of the second arm's training, and
//! again in the middle of its evaluation, resumes to a report identical to the uninterrupted one
//! (wall times aside); a bad plan is refused naming the file and the key.
mod common;
use common::*;
use dft_test_support::scratch::ScratchDir;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A fresh scratch directory, removed when the test passes and kept when it fails.
fn tmp(tag: &str) -> ScratchDir {
    ScratchDir::new(format!("dft-compare-test-{}-{tag}", std::process::id()))
}

/// A benchmark folder with 12 XCOPA-zh items and 9 XNLI-zh items.
fn eval_data(dir: &Path) -> PathBuf {
    let data = dir.join("eval");
    std::fs::create_dir_all(data.join("xcopa")).unwrap();
    std::fs::create_dir_all(data.join("xnli")).unwrap();
    let things = ["水", "门", "书", "猫", "雨", "车"];
    let mut xcopa = String::new();
    for i in 0..12 {
        let t = things[i % things.len()];
        let q = if i % 3 == 0 { "cause" } else { "effect" };
        xcopa += &format!(
            "{{\"premise\": \"那人看见了{t}。\", \"choice1\": \"他笑了{i}次。\", \"choice2\": \"{t}不见了。\", \"question\": \"{q}\", \"label\": {}, \"idx\": {i}}}\n",
            i % 2
        );
    }
    std::fs::write(data.join("xcopa/val.zh.jsonl"), xcopa).unwrap();
    let labels = ["entailment", "neutral", "contradiction"];
    let mut xnli = String::new();
    for i in 0..9 {
        xnli += &format!("他说，{}回来了。\t他{}没说话。\t{}\n", things[i % 6], i, labels[i % 3]);
    }
    std::fs::write(data.join("xnli/dev-zh.sample.tsv"), xnli).unwrap();
    data
}

fn write_plan(dir: &Path, model: &Path, data: &Path) -> PathBuf {
    let s = |p: &Path| p.display().to_string();
    let plan = format!(
        r#"title = "tiny compare"
seeds = [42]
baseline = "tft"
set = [
  'model.path={model:?}',
  'data.train={train:?}',
  'data.eval={heldout:?}',
  "data.eval_limit=4",
  "data.limit=24",
  "data.max_len=64",
  "train.batch_size=2",
  "train.lr=0.003",
  "train.warmup_ratio=0.0",
  "train.max_steps=8",
  "train.checkpoint_every=2",
  "train.keep_last=2",
  "method.lc_layer=1",
  "method.et_layer=2",
]

[eval]
tasks = ["xcopa", "xnli"]
langs = ["zh"]
data_dir = {data:?}
resamples = 500

[[arm]]
name = "tft"
set = ["method.name=tft"]

[[arm]]
name = "dft-logits"
set = ["method.name=dft", "method.lc=logits", "method.et=logits"]

[[arm]]
name = "sft"
set = ["method.name=sft"]
"#,
        model = s(model),
        train = s(&root().join("data/alpaca_en_zh/train.json")),
        heldout = s(&root().join("data/alpaca_en_zh/heldout.json")),
        data = s(data),
    );
    let p = dir.join("plan.toml");
    std::fs::write(&p, plan).unwrap();
    p
}

fn compare(plan: &Path, out: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dft"));
    c.args(["compare", "--quiet", "--plan"]).arg(plan).arg("--out").arg(out).env("RAYON_NUM_THREADS", "2");
    if resume {
        c.arg("--resume");
    }
    c
}

/// Waits for `file`, then SIGKILLs `child` (which must still be running).
fn kill_when(mut child: Child, file: &Path) {
    let t0 = Instant::now();
    while !file.exists() {
        assert!(t0.elapsed().as_secs() < 300, "{} did not appear in 300 s", file.display());
        assert!(child.try_wait().unwrap().is_none(), "compare ended before {} appeared", file.display());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(child.try_wait().unwrap().is_none(), "compare ended before it could be killed");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// report.md without the wall-time section.
fn md_without_wall(out: &Path) -> String {
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    md.split("## Wall time").next().unwrap().to_string()
}

#[test]
fn compare_end_to_end_and_resume_after_sigkill_in_training_and_evaluation() {
    let dir = tmp("e2e");
    let model = save_tiny_model(&dir, 3, true);
    let data = eval_data(&dir);
    let plan = write_plan(&dir, &model, &data);

    let full = dir.join("full");
    let o = compare(&plan, &full, false).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("report.json")).unwrap()).unwrap();
    let arms: Vec<&str> = report["arms"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(arms, ["tft", "dft-logits", "sft"]);
    let cols: Vec<&str> = report["columns"].as_array().unwrap().iter().map(|c| c["key"].as_str().unwrap()).collect();
    assert_eq!(cols, ["xnli_zh", "xcopa_zh"], "paper order");
    assert_eq!(report["columns"][0]["n"], 9);
    assert_eq!(report["columns"][0]["split"], "dev (sample)");
    for a in report["arms"].as_array().unwrap() {
        for c in &cols {
            let cell = &a["cells"][c];
            let (p, se) = (cell["score"].as_f64().unwrap() / 100.0, cell["stderr"].as_f64().unwrap() / 100.0);
            let n = if *c == "xnli_zh" { 9.0 } else { 12.0 };
            // The binomial standard error of an accuracy.
            assert!((se - (p * (1.0 - p) / (n - 1.0)).sqrt()).abs() < 1e-9, "{c}: {cell}");
        }
        assert!(a["perplexity"].as_f64().unwrap() > 1.0);
        if a["name"] != "tft" {
            let d = &a["diff"]["xcopa_zh"];
            assert!(d["ci_low"].as_f64().unwrap() <= d["diff"].as_f64().unwrap());
            assert!(a["diff_average"]["resamples"] == 500);
        } else {
            assert!(a["diff"].as_object().unwrap().is_empty());
        }
    }
    let md = std::fs::read_to_string(full.join("report.md")).unwrap();
    assert!(md.contains("| Arm | XNLI zh | XCOPA zh | Avg | held-out ppl |"), "{md}");
    assert!(md.contains("## Paired difference to tft (95% CI"), "{md}");
    assert!(md.contains("## Wall time"), "{md}");
    assert!(full.join("report.svg").is_file());
    for arm in arms {
        let run = full.join("runs").join(format!("{arm}-s42"));
        assert!(run.join("eval/xcopa_zh.json").is_file() && run.join("eval/lm-eval/results.json").is_file());
        assert!(run.join("eval/lm-eval/samples_xnli_zh.jsonl").is_file());
        assert!(!run.join("final").exists(), "models are removed once evaluated (keep_models = false)");
        assert!(dft_train::checkpoint::list_checkpoints(&run).is_empty());
    }
    // The held-out perplexity is one measurement for every arm: the TFT loss on the zh pairs. For the
    // TFT-family arms it is the run's own held-out loss; SFT's own is on English pairs and differs.
    let json =
        |p: PathBuf| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    for a in report["arms"].as_array().unwrap() {
        let name = a["name"].as_str().unwrap();
        let run = full.join("runs").join(format!("{name}-s42"));
        let heldout = json(run.join("eval/heldout.json"));
        assert_eq!(heldout["examples"], 4, "{heldout}");
        let loss = heldout["loss"].as_f64().unwrap();
        let ppl = a["perplexity"].as_f64().unwrap();
        assert!((ppl - loss.exp()).abs() < 1e-6 * ppl, "{name}: report ppl {ppl} vs held-out loss {loss}");
        let own = json(run.join("summary.json"))["eval_loss_after"].as_f64().unwrap();
        if name == "sft" {
            assert!((own - loss).abs() > 1e-3, "SFT's own held-out loss (English) {own} vs the TFT measure {loss}");
        } else {
            assert!((own - loss).abs() < 1e-4 * own, "{name}: training's held-out loss {own} vs compare's {loss}");
        }
    }

    // Killed in the middle of the second arm's training, then in the middle of its evaluation.
    let cut = dir.join("cut");
    let arm2 = cut.join("runs/dft-logits-s42");
    let child = compare(&plan, &cut, false).env("DFT_FAULT_CHECKPOINT_PAUSE_MS", "300").spawn().unwrap();
    kill_when(child, &arm2.join("checkpoint-000002/trainer_state.json"));
    assert!(!arm2.join("summary.json").exists(), "killed during training");
    let child = compare(&plan, &cut, true).env("DFT_FAULT_COMPARE_EVAL_PAUSE_MS", "1500").spawn().unwrap();
    kill_when(child, &arm2.join("eval/xcopa_zh.json"));
    assert!(arm2.join("summary.json").exists() && !arm2.join("eval/xnli_zh.json").exists(), "killed during evaluation");
    let o = compare(&plan, &cut, true).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("compare 1/3 tft seed 42: trained earlier, read back"), "{err}");
    assert_eq!(
        std::fs::read_to_string(cut.join("report.json")).unwrap(),
        std::fs::read_to_string(full.join("report.json")).unwrap(),
        "a resumed compare reports exactly what an uninterrupted one does"
    );
    assert_eq!(md_without_wall(&cut), md_without_wall(&full));

    // Resuming with another plan is refused; so is a fresh compare over an earlier one.
    let other = dir.join("other.toml");
    std::fs::write(&other, std::fs::read_to_string(&plan).unwrap().replace("resamples = 500", "resamples = 400"))
        .unwrap();
    let o = compare(&other, &cut, true).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("differs from the plan this compare was started with"));
    let o = compare(&plan, &cut, false).output().unwrap();
    assert!(!o.status.success(), "a fresh compare never overwrites an earlier one");
}

#[test]
fn bad_plans_are_refused_naming_file_and_key() {
    let dir = tmp("bad");
    let p = dir.join("plan.toml");
    let run = |text: &str| {
        std::fs::write(&p, text).unwrap();
        let o = compare(&p, &dir.join("out"), false).output().unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let arms = "[eval]\ntasks = [\"xcopa\"]\n[[arm]]\nname = \"tft\"\n[[arm]]\nname = \"dft\"\n";
    let e = run(&format!("seedz = [1]\n{arms}"));
    assert!(e.contains("plan.toml") && e.contains("seedz"), "{e}");
    let e = run(&format!("baseline = \"sft\"\n{arms}"));
    assert!(e.contains("baseline = \"sft\" is not one of the arms"), "{e}");
    let e = run(&format!("set = [\"train.lrr=1\"]\n{arms}"));
    assert!(e.contains("train.lrr"), "{e}");
    let e = run("[eval]\ntasks = [\"xcopa\"]\n[[arm]]\nname = \"tft\"\n[[arm]]\nname = \"tft\"\n");
    assert!(e.contains("named twice"), "{e}");
    assert!(!dir.join("out").exists(), "nothing is written for a bad plan");
}
