//! `dft eval --shard i/n` and `dft eval --merge`: three shards merged give the report of one unsharded
//! run (multiple choice, generative QA and translation), and incomplete or mismatched shard sets are
//! refused with the file named.
mod common;

use dft_test_support::scratch::ScratchDir;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::save_tiny_model;
use serde_json::Value;

/// A fresh scratch directory, removed when the test passes and kept when it fails.
fn tmp(tag: &str) -> ScratchDir {
    ScratchDir::new(format!("dft-shard-{}-{tag}", std::process::id()))
}

fn dft() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dft"));
    c.env("RAYON_NUM_THREADS", "2");
    c
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// A benchmark folder with 7 XCOPA-zh items, 5 MKQA-zh questions and 5 FLORES sentence pairs (the
/// last is the 1-shot example: 4 translations per direction).
fn data(dir: &Path) -> PathBuf {
    let d = dir.join("data");
    for sub in ["xcopa", "mkqa", "flores200"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    let words = ["水", "猫", "雨", "书", "山", "风", "火"];
    let xcopa: String = (0..7)
        .map(|i| {
            format!(
                r#"{{"premise": "那人看见了{}。", "choice1": "他{}笑了。", "choice2": "{}很大。", "question": "{}", "label": {}, "idx": {i}, "changed": false}}"#,
                words[i],
                words[(i + 2) % 7],
                words[(i + 4) % 7],
                if i % 2 == 0 { "effect" } else { "cause" },
                i % 2
            ) + "\n"
        })
        .collect();
    std::fs::write(d.join("xcopa/val.zh.jsonl"), xcopa).unwrap();
    let mkqa: String = (0..5)
        .map(|i| {
            format!(
                r#"{{"id": "q{i}", "lang": "zh_cn", "question": "{}在哪里", "answers": ["{}"]}}"#,
                words[i],
                words[i + 1]
            ) + "\n"
        })
        .collect();
    std::fs::write(d.join("mkqa/mkqa-zh_cn.sample.jsonl"), mkqa).unwrap();
    let en = ["The cat sat.", "It rains today.", "Good day to you.", "A red book.", "Hi there."];
    let zh = ["猫坐着。", "今天下雨。", "祝你好。", "一本红书。", "你好。"];
    std::fs::write(d.join("flores200/eng_Latn.devtest.sample"), en.join("\n") + "\n").unwrap();
    std::fs::write(d.join("flores200/zho_Hans.devtest.sample"), zh.join("\n") + "\n").unwrap();
    d
}

fn eval(model: &Path, data: &Path, out: &Path, extra: &[&str]) -> Output {
    dft()
        .args(["eval", "--quiet", "--tasks", "xcopa,mkqa,flores", "--lang", "zh", "--method-name", "m"])
        .args(["--max-new-tokens", "5", "--mt-max-new-tokens", "6", "--batch-size", "3", "--model"])
        .arg(model)
        .arg("--data-dir")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// results.json without what depends on the sharding: timings and throughput counters.
fn without_timings(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for key in ["throughput", "seconds", "prompt_seconds"] {
                m.remove(key);
            }
            m.values_mut().for_each(without_timings);
        }
        Value::Array(a) => a.iter_mut().for_each(without_timings),
        _ => {}
    }
}

/// Equal JSON, except that log-likelihoods (`logprob`) may differ in the last bits: a shard batches an
/// item with other neighbours.
fn assert_same(a: &Value, b: &Value, at: &str) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{at}");
            for (k, v) in x {
                if k == "logprob" {
                    let (p, q) = (v.as_f64().unwrap(), y[k].as_f64().unwrap());
                    assert!((p - q).abs() <= 1e-5 * p.abs().max(1.0), "{at}.{k}: {p} vs {q}");
                } else {
                    assert_same(v, &y[k], &format!("{at}.{k}"));
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert_same(p, q, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

fn results(dir: &Path) -> Value {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    without_timings(&mut v);
    v
}

#[test]
fn merged_shards_equal_one_unsharded_run() {
    let dir = tmp("merge");
    let model = save_tiny_model(&dir, 2, true);
    let data = data(&dir);
    ok(eval(&model, &data, &dir.join("full"), &[]));
    let shards: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("shard{i}"))).collect();
    for (i, out) in shards.iter().enumerate() {
        ok(eval(&model, &data, out, &["--shard", &format!("{}/3", i + 1)]));
        assert!(out.join(format!("shard-{}-of-3.json", i + 1)).is_file());
        assert!(!out.join("results.json").exists(), "a shard writes no report");
    }
    let merge = |out: &Path, parts: &[&Path]| {
        dft()
            .args(["eval", "--quiet", "--merge"])
            .args(parts)
            .arg("--data-dir")
            .arg(&data)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    // Any order of the shard folders.
    ok(merge(&dir.join("merged"), &[&shards[2], &shards[0], &shards[1]]));
    let (full, merged) = (results(&dir.join("full")), results(&dir.join("merged")));
    assert_eq!(full["runs"][0]["results"].as_array().unwrap().len(), 3, "xcopa, mkqa, flores");
    assert_same(&full, &merged, "results.json");
    // Same table too.
    let md = |d: &str| std::fs::read_to_string(dir.join(d).join("results.md")).unwrap();
    assert_eq!(md("full"), md("merged"));

    // A missing shard, or one from another evaluation, is refused, naming it.
    let r = merge(&dir.join("bad"), &[&shards[0], &shards[2]]);
    let e = String::from_utf8_lossy(&r.stderr).to_string();
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(e.contains("missing [2/3]"), "{e}");
    let other = dir.join("other");
    ok(eval(&model, &data, &other, &["--shard", "2/3", "--limit", "4"]));
    let r = merge(&dir.join("bad"), &[&shards[0], &other, &shards[2]]);
    let e = String::from_utf8_lossy(&r.stderr).to_string();
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(e.contains("not from the same evaluation") && e.contains("shard-2-of-3.json"), "{e}");
    assert!(!dir.join("bad/results.json").exists());
    // More shards than items: a clear error, not an empty score.
    let r = eval(&model, &data, &dir.join("many"), &["--shard", "1/9", "--limit", "2"]);
    let e = String::from_utf8_lossy(&r.stderr).to_string();
    assert!(r.status.code() == Some(1) && e.contains("use fewer shards"), "{e}");
}
