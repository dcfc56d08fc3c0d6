//! The metrics against fixtures made by the official Python code (tools/oracle/metric_fixtures.py):
//! SQuAD v1.1 / MLQA / MKQA F1 and EM, sacrebleu chrF++ / chrF / BLEU and its tokenizers, lm-eval's
//! acc / acc_norm, and the Python Unicode tables the normalisations rely on.
mod common;

use common::fixture;
use dft_eval::metrics::bleu::{
    corpus_bleu, is_sacrebleu_chinese_char, tokenize_13a, tokenize_zh, BleuConfig, BleuTokenizer,
};
use dft_eval::metrics::chrf::{corpus_chrf, ChrfConfig};
use dft_eval::metrics::multiple_choice::predict;
use dft_eval::metrics::qa::{max_over_answers, normalize_answer, QaNormalization};
use dft_eval::text::{is_py_space, is_py_word, is_unicode_punct};
use dft_eval::{Lang, MultipleChoiceItem};
use serde_json::Value;

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

fn norm_of(name: &str) -> QaNormalization {
    if name == "squad" {
        return QaNormalization::Squad;
    }
    let (kind, lang) = name.split_once('_').unwrap();
    let lang = Lang::from_code(lang).unwrap();
    match kind {
        "mlqa" => QaNormalization::Mlqa(lang),
        "mkqa" => QaNormalization::Mkqa(lang),
        _ => panic!("unknown norm {name}"),
    }
}

#[test]
fn qa_f1_and_em_match_official_scripts() {
    let fx = fixture("qa_f1.json");
    let norms = strings(&fx["norms"]);
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() > 300);
    let mut failures = Vec::new();
    for case in cases {
        let pred = case["pred"].as_str().unwrap();
        let golds = strings(&case["golds"]);
        for name in &norms {
            let norm = norm_of(name);
            let want = &case["scores"][name];
            let got = max_over_answers(pred, &golds, norm).unwrap();
            let got_norm = normalize_answer(pred, norm);
            let (wf1, wem) = (want["f1"].as_f64().unwrap(), want["em"].as_f64().unwrap());
            if (got.f1 - wf1).abs() > 1e-9 || got.exact_match != wem || got_norm != want["norm"].as_str().unwrap() {
                failures.push(format!(
                    "{name}: pred {pred:?} golds {golds:?}: got f1 {} em {} norm {got_norm:?}, want f1 {wf1} em {wem} norm {:?}",
                    got.f1, got.exact_match, want["norm"]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn chrf_and_bleu_match_sacrebleu() {
    let fx = fixture("mt_metrics.json");
    let zh = BleuConfig { tokenizer: BleuTokenizer::Zh, ..BleuConfig::default() };
    let mut failures = Vec::new();
    for c in fx["corpora"].as_array().unwrap() {
        let (hyps, refs) = (strings(&c["hyps"]), strings(&c["refs"]));
        let s = &c["scores"];
        let chrf_pp = corpus_chrf(&hyps, &refs, &ChrfConfig::CHRF_PLUS_PLUS).unwrap().score;
        let chrf = corpus_chrf(&hyps, &refs, &ChrfConfig::CHRF).unwrap().score;
        let bleu = corpus_bleu(&hyps, &refs, &BleuConfig::default()).unwrap();
        let bleu_zh = corpus_bleu(&hyps, &refs, &zh).unwrap().score;
        let counts: Vec<u64> = s["bleu_counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let totals: Vec<u64> = s["bleu_totals"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        for (what, got, want) in [
            ("chrF++", chrf_pp, s["chrf_pp"].as_f64().unwrap()),
            ("chrF", chrf, s["chrf"].as_f64().unwrap()),
            ("BLEU", bleu.score, s["bleu"].as_f64().unwrap()),
            ("BLEU-zh", bleu_zh, s["bleu_zh"].as_f64().unwrap()),
        ] {
            if (got - want).abs() > 1e-6 {
                failures.push(format!("{} {what}: got {got}, want {want}", c["name"]));
            }
        }
        if bleu.counts != counts || bleu.totals != totals || bleu.sys_len != s["bleu_sys_len"].as_u64().unwrap() {
            failures.push(format!("{} BLEU statistics differ: {:?} {:?}", c["name"], bleu.counts, bleu.totals));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tokenizers_match_sacrebleu() {
    let fx = fixture("mt_metrics.json");
    for t in fx["tokenizer"].as_array().unwrap() {
        let text = t["text"].as_str().unwrap().trim_end();
        assert_eq!(tokenize_13a(text), t["13a"].as_str().unwrap(), "13a of {text:?}");
        assert_eq!(tokenize_zh(text), t["zh"].as_str().unwrap(), "zh of {text:?}");
    }
    let ranges: Vec<(u32, u32)> = fx["sacrebleu_zh_char_ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap() as u32, r[1].as_u64().unwrap() as u32))
        .collect();
    for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
        let want = ranges.iter().any(|&(a, b)| a <= c as u32 && c as u32 <= b);
        assert_eq!(is_sacrebleu_chinese_char(c), want, "U+{:04X}", c as u32);
    }
}

fn in_ranges(v: &Value, c: char) -> bool {
    v.as_array()
        .unwrap()
        .iter()
        .any(|r| r[0].as_u64().unwrap() as u32 <= c as u32 && c as u32 <= r[1].as_u64().unwrap() as u32)
}

/// Whitespace must match exactly; word and punctuation classes may differ only on code points
/// that Python's Unicode database (14.0) leaves unassigned (Rust's tables are newer).
#[test]
fn unicode_classes_match_python() {
    let fx = fixture("python_unicode.json");
    let mut diffs = Vec::new();
    for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
        assert_eq!(is_py_space(c), in_ranges(&fx["space"], c), "isspace U+{:04X}", c as u32);
        let word = is_py_word(c) != in_ranges(&fx["word"], c);
        let punct = (c.is_ascii_punctuation() || is_unicode_punct(c)) != in_ranges(&fx["mlqa_punct"], c);
        if (word || punct) && !in_ranges(&fx["unassigned"], c) {
            diffs.push(format!("U+{:04X} word:{word} punct:{punct}", c as u32));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn acc_and_acc_norm_match_lm_eval() {
    let fx = fixture("mc_acc.json");
    for c in fx["cases"].as_array().unwrap() {
        let choices = strings(&c["choices"]);
        let gold = c["gold"].as_u64().unwrap() as usize;
        let lls: Vec<f64> = c["lls"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let item = MultipleChoiceItem::new("t", "ctx", choices, gold).unwrap();
        let p = predict(&item, &lls).unwrap();
        let hit = |i: usize| if i == gold { 1.0 } else { 0.0 };
        assert_eq!(hit(p.pred), c["acc"].as_f64().unwrap(), "{c}");
        assert_eq!(hit(p.pred_norm), c["acc_norm"].as_f64().unwrap(), "{c}");
        assert_eq!(hit(p.pred_bytes), c["acc_bytes"].as_f64().unwrap(), "{c}");
    }
}
