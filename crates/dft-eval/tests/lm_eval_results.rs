//! The lm-evaluation-harness style `results.json` of `dft eval` is read by lm-eval's own code: the
//! committed `fixtures/lm_eval_results.json` is what `dft_eval::lm_eval::results_json` writes for a
//! fixed run (checked byte for byte here), and `fixtures/lm_eval_table.json` is the table lm-eval
//! 0.4.13's `lm_eval.utils.make_table` builds from that file (tools/oracle/lm_eval_results_fixture.py).
//! Every value and standard error lm-eval reads equals ours, and equals the number in dft's Markdown
//! table. `DFT_WRITE_FIXTURES=1` rewrites the results fixture (then rerun the Python script).
mod common;

use common::fixture;
use dft_eval::metrics::{F1Result, MCResult, McPrediction, QaScore};
use dft_eval::{
    EvalOptions, EvalReport, EvalRun, GenerativeItem, Lang, LoadedTask, Loglik, MultipleChoiceItem, Task, TaskItems,
    TaskOutcome, TaskResult, Throughput,
};
use std::path::PathBuf;

fn mc_task(task: Task, file: &str, n: usize, k: usize, right: impl Fn(usize) -> bool) -> (TaskResult, LoadedTask) {
    let items: Vec<MultipleChoiceItem> = (0..n)
        .map(|i| MultipleChoiceItem {
            id: format!("{}-zh/{i}", task.name()),
            context: format!("问题 {i}"),
            choices: (0..k).map(|c| format!(" 选项{c}")).collect(),
            gold: i % k,
        })
        .collect();
    let per_item: Vec<McPrediction> = items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let pred = if right(i) { it.gold } else { (it.gold + 1) % k };
            let pred_norm = if i % 3 == 0 { it.gold } else { pred };
            McPrediction { pred, pred_norm, pred_bytes: pred, gold: it.gold }
        })
        .collect();
    let pct = |f: &dyn Fn(&McPrediction) -> bool| 100.0 * per_item.iter().filter(|p| f(p)).count() as f64 / n as f64;
    let acc = pct(&|p| p.pred == p.gold);
    let acc_norm = pct(&|p| p.pred_norm == p.gold);
    let logliks = per_item
        .iter()
        .map(|p| {
            (0..k)
                .map(|c| Loglik {
                    logprob: if c == p.pred { -1.5 } else { -2.25 - c as f64 },
                    is_greedy: false,
                    tokens: 2,
                })
                .collect()
        })
        .collect();
    let files = vec![PathBuf::from(file)];
    let r = TaskResult {
        task: task.name().into(),
        lang: Lang::Zh,
        metric: "acc".into(),
        score: acc,
        n,
        files: files.clone(),
        ids: items.iter().map(|i| i.id.clone()).collect(),
        throughput: Throughput::default(),
        outcome: TaskOutcome::MultipleChoice {
            result: MCResult { acc, acc_norm, acc_bytes: acc, n, per_item },
            logliks,
        },
    };
    (r, LoadedTask { task, lang: Lang::Zh, files, items: TaskItems::MultipleChoice(items) })
}

fn qa_task() -> (TaskResult, LoadedTask) {
    let f1s = [1.0, 0.5, 0.0, 2.0 / 3.0, 0.25, 1.0, 0.0];
    let items: Vec<GenerativeItem> = (0..f1s.len())
        .map(|i| GenerativeItem {
            id: format!("xquad-zh/{i}"),
            prompt: format!("问题：{i}\n答案："),
            answers: vec![format!("答{i}")],
        })
        .collect();
    let per_item: Vec<QaScore> =
        f1s.iter().map(|&f| QaScore { f1: f, exact_match: if f == 1.0 { 1.0 } else { 0.0 } }).collect();
    let n = f1s.len();
    let f1 = 100.0 * f1s.iter().sum::<f64>() / n as f64;
    let em = 100.0 * per_item.iter().map(|s| s.exact_match).sum::<f64>() / n as f64;
    let generations = (0..n)
        .map(|i| dft_eval::Generation {
            ids: vec![],
            text: format!("答{i}"),
            prompt_tokens: 5,
            prompt_seconds: 0.0,
            seconds: 0.0,
        })
        .collect();
    let files = vec![PathBuf::from("xquad/xquad.zh.sample.json")];
    let r = TaskResult {
        task: "xquad".into(),
        lang: Lang::Zh,
        metric: "f1".into(),
        score: f1,
        n,
        files: files.clone(),
        ids: items.iter().map(|i| i.id.clone()).collect(),
        throughput: Throughput::default(),
        outcome: TaskOutcome::Generative {
            result: F1Result { f1, exact_match: em, n, per_item, f1_whitespace: None },
            generations,
        },
    };
    (r, LoadedTask { task: Task::Xquad, lang: Lang::Zh, files, items: TaskItems::Generative(items) })
}

fn run() -> (EvalRun, Vec<LoadedTask>) {
    let parts = vec![
        mc_task(Task::Xnli, "xnli/dev-zh.sample.tsv", 9, 3, |i| i % 2 == 0),
        mc_task(Task::Xcopa, "xcopa/val.zh.jsonl", 20, 2, |i| i % 5 != 0),
        qa_task(),
    ];
    let (results, tasks): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    let opts = EvalOptions { limit: None, ..Default::default() };
    (EvalRun { method: "dft".into(), model: "runs/dft/final".into(), options: opts, results }, tasks)
}

#[test]
fn lm_eval_reads_our_results_json_and_its_numbers_are_the_markdown_tables() {
    let (run, tasks) = run();
    let text = serde_json::to_string_pretty(&dft_eval::lm_eval::results_json(&run)).unwrap() + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lm_eval_results.json");
    if std::env::var("DFT_WRITE_FIXTURES").as_deref() == Ok("1") {
        std::fs::write(&path, &text).unwrap();
    }
    assert_eq!(text, std::fs::read_to_string(&path).unwrap(), "results.json changed: rewrite the fixtures");

    // The rows lm-eval's make_table read from that file.
    let table = fixture("lm_eval_table.json");
    let rows = table["rows"].as_array().unwrap();
    let mut report = EvalReport::default();
    report.merge(run.clone());
    let md = report.markdown();
    let mut seen = 0;
    for row in rows {
        let (task, metric) = (row["task"].as_str().unwrap(), row["metric"].as_str().unwrap());
        let value: f64 = row["value"].as_str().unwrap().parse().unwrap();
        let r = run.results.iter().find(|r| format!("{}_{}", r.task, r.lang.code()) == task).unwrap();
        let (ours, ours_se, scale) = match metric {
            "acc" => (r.score / 100.0, dft_eval::lm_eval::score_stderr(r).unwrap() / 100.0, 100.0),
            "f1" => (r.score, dft_eval::lm_eval::score_stderr(r).unwrap(), 1.0),
            _ => continue,
        };
        assert_eq!(row["value"].as_str().unwrap(), format!("{ours:.4}"), "{task} {metric}");
        assert_eq!(row["stderr"].as_str().unwrap().trim(), format!("{ours_se:.4}"), "{task} {metric} stderr");
        // The Markdown table shows the same number (percent, one decimal).
        let cell = format!("{:.1}", value * scale);
        let task_enum = Task::from_name(&r.task).unwrap();
        assert_eq!(format!("{:.1}", report.cell("dft", task_enum, Lang::Zh).unwrap().0), cell, "{task}");
        assert!(md.contains(&format!(" {cell} |")), "{task}: {cell} not in\n{md}");
        seen += 1;
    }
    assert_eq!(seen, 3, "acc of xnli and xcopa, f1 of xquad");
    assert_eq!(rows.iter().filter(|r| r["metric"] == "acc_norm").count(), 2);

    // samples_<task>_<lang>.jsonl: one line per item with every choice's log-likelihood.
    let dir = dft_test_support::scratch::ScratchDir::new(format!("dft-lm-eval-{}", std::process::id()));
    dft_eval::lm_eval::write_lm_eval(&dir, &run, &tasks).unwrap();
    let samples = std::fs::read_to_string(dir.join("samples_xnli_zh.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = samples.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 9);
    assert_eq!(lines[1]["doc_id"], 1);
    assert_eq!(lines[1]["filtered_resps"].as_array().unwrap().len(), 3);
    assert_eq!(lines[1]["gold"], 1);
    assert_eq!(lines[1]["prediction"], 2);
    assert_eq!(lines[1]["acc"], 0.0);
    assert!(dir.join("samples_xquad_zh.jsonl").is_file() && dir.join("results.json").is_file());
}
