//! Loaders on the benchmark samples of shared/data/eval (item counts, prompts and choices equal to
//! lm-evaluation-harness's on the same rows, see tools/oracle/metric_fixtures.py), the
//! all-languages MKQA format on a synthetic fixture, and one test per kind of bad input.
mod common;

use std::path::{Path, PathBuf};

use common::{eval_data_dir, fixture};
use dft_eval::tasks::{self, mkqa, mmlu, squad, truthfulqa, xcopa, xnli, xstorycloze};
use dft_eval::{prompts, EvalError, Lang, MultipleChoiceItem, Task, TaskItems};
use dft_test_support::scratch::ScratchDir;
use serde_json::Value;

#[test]
fn every_task_and_language_loads_from_the_samples() {
    let dir = eval_data_dir();
    let expected: &[(&str, &str, usize)] = &[
        ("xquad", "en", 1190),
        ("mlqa", "zh", 60),
        ("mkqa", "en", 100),
        ("mkqa", "zh", 100),
        ("mkqa", "ar", 100),
        ("truthfulqa", "en", 817),
        ("truthfulqa", "ar", 40),
        ("xnli", "vi", 90),
        ("xcopa", "zh", 100),
        ("xcopa", "en", 100),
        ("xstorycloze", "ar", 360),
        ("mmlu", "en", 285),
    ];
    for &(task, lang, n) in expected {
        let loaded = tasks::load_task(&dir, task, lang).unwrap_or_else(|e| panic!("{task}/{lang}: {e}"));
        assert_eq!(loaded.items.len(), n, "{task}/{lang} from {:?}", loaded.files);
    }
    let mut loaded_pairs = 0;
    for task in Task::ALL {
        for &lang in task.languages() {
            match tasks::load(&dir, task, lang) {
                Ok(t) => {
                    loaded_pairs += 1;
                    assert!(!t.items.is_empty(), "{task}/{lang}");
                    assert_eq!(task.is_generative(), t.items.as_generative().is_some());
                    if let TaskItems::MultipleChoice(items) = &t.items {
                        items.iter().for_each(|it| it.validate().unwrap());
                    }
                }
                // The samples have no Vietnamese MKQA; everything else must load.
                Err(EvalError::MissingFile { .. }) if task == Task::Mkqa && lang == Lang::Vi => {}
                Err(e) => panic!("{task}/{lang}: {e}"),
            }
        }
    }
    assert_eq!(loaded_pairs, 29); // 30 task-language pairs, less MKQA vi
}

#[test]
fn flores_loads_in_every_target_language() {
    let dir = eval_data_dir();
    for lang in [Lang::Zh, Lang::Vi, Lang::Ar] {
        let t = tasks::load(&dir, Task::Flores, lang).unwrap_or_else(|e| panic!("flores/{lang}: {e}"));
        let items = t.items.as_translation().unwrap();
        // 100 sample lines: the last is the 1-shot example, 99 per direction.
        assert_eq!(items.len(), 198, "flores/{lang}");
        assert_eq!((items[0].src, items[0].tgt, items[99].src, items[99].tgt), (Lang::En, lang, lang, Lang::En));
        assert!(items.iter().all(|i| i.prompt.matches("\n\n").count() == 1 && i.shots == 1));
        assert!(items[0].prompt.ends_with(&format!("English: {}\n{}:", items[0].source, lang.english_name())));
        assert_eq!(items[0].reference, items[99].source);
    }
    assert!(matches!(tasks::load(&dir, Task::Flores, Lang::En), Err(EvalError::UnsupportedLanguage { .. })));
    let pairs = tasks::flores::load_parallel(&dir, Lang::Vi).unwrap();
    assert_eq!((pairs.english.len(), pairs.target.len(), pairs.lines[99]), (100, 100, 99));
    assert_eq!(Task::from_name("FLORES200").unwrap(), Task::Flores);
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

/// Our item for one row of the lm-eval fixture, built from the raw fields with `prompts`.
fn item_from_doc(task: &str, lang: Lang, doc: &Value) -> (String, Vec<String>) {
    let s = |k: &str| doc[k].as_str().unwrap().to_string();
    match task {
        "xnli" => (String::new(), prompts::xnli_choices(lang, &s("premise"), &s("hypothesis"))),
        "xcopa" => (
            prompts::xcopa_context(&s("premise"), prompts::xcopa_connector(lang, &s("question")).unwrap()),
            vec![prompts::xcopa_choice(&s("choice1")), prompts::xcopa_choice(&s("choice2"))],
        ),
        "xstorycloze" => (
            prompts::xstorycloze_context(&[
                &s("input_sentence_1"),
                &s("input_sentence_2"),
                &s("input_sentence_3"),
                &s("input_sentence_4"),
            ]),
            vec![s("sentence_quiz1"), s("sentence_quiz2")],
        ),
        "truthfulqa" if lang == Lang::En => {
            (prompts::truthfulqa_context(&s("question")), strings(&doc["mc1_targets"]["choices"]))
        }
        "truthfulqa" => (prompts::truthfulqa_context(&prompts::okapi_preprocess(&s("question"))), vec![]),
        "mmlu" if lang == Lang::En => {
            let c = strings(&doc["choices"]);
            (prompts::mmlu_context(&s("question"), &[&c[0], &c[1], &c[2], &c[3]]), vec![])
        }
        "mmlu" => (
            prompts::mmlu_context(&s("instruction"), &[&s("option_a"), &s("option_b"), &s("option_c"), &s("option_d")]),
            vec![],
        ),
        "mlqa" => (prompts::qa_prompt(&s("context"), &s("question")), vec![]),
        other => panic!("no builder for {other}"),
    }
}

fn load_file(task: &str, lang: Lang, path: &Path) -> Vec<MultipleChoiceItem> {
    match task {
        "xnli" => xnli::load_xnli(path, lang).unwrap(),
        "xcopa" => xcopa::load_xcopa(path, lang).unwrap(),
        "xstorycloze" => xstorycloze::load_xstorycloze(path).unwrap(),
        "truthfulqa" if lang == Lang::En => truthfulqa::load_mc_task(path).unwrap(),
        "truthfulqa" => truthfulqa::load_okapi_truthfulqa(path).unwrap(),
        "mmlu" if lang == Lang::En => mmlu::load_mmlu_csv(path).unwrap(),
        "mmlu" => mmlu::load_okapi_mmlu(path).unwrap(),
        other => panic!("no loader for {other}"),
    }
}

#[test]
fn prompts_and_choices_match_lm_eval() {
    let fx = fixture("lm_eval_prompts.json");
    let dir = eval_data_dir();
    for it in fx["items"].as_array().unwrap() {
        let task = it["task"].as_str().unwrap();
        let lang = Lang::from_code(it["lang"].as_str().unwrap()).unwrap();
        let index = it["index"].as_u64().unwrap() as usize;
        let path: PathBuf = dir.join(it["file"].as_str().unwrap());
        let (want_ctx, want_choices) = (it["context"].as_str().unwrap(), strings(&it["choices"]));
        let want_gold = it["gold"].as_u64().unwrap() as usize;
        let (ctx, choices) = item_from_doc(task, lang, &it["doc"]);
        assert_eq!(ctx, want_ctx, "{task}/{lang} #{index} context from fields");
        if !choices.is_empty() {
            assert_eq!(choices, want_choices, "{task}/{lang} #{index} choices from fields");
        }
        if task == "mlqa" {
            let item = &squad::load_squad(&path).unwrap()[index];
            assert_eq!((item.prompt.as_str(), &item.answers), (want_ctx, &want_choices), "mlqa/{lang}");
            continue;
        }
        let item = &load_file(task, lang, &path)[index];
        assert_eq!(item.context, want_ctx, "{task}/{lang} #{index} context from loader");
        assert_eq!(item.choices, want_choices, "{task}/{lang} #{index} choices from loader");
        assert_eq!(item.gold, want_gold, "{task}/{lang} #{index} gold from loader");
    }
}

#[test]
fn mkqa_all_languages_format() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mkqa_all_languages.jsonl");
    let en = mkqa::load_mkqa_all_languages(&p, Lang::En).unwrap();
    assert_eq!(en.len(), 3);
    assert_eq!(en[0].id, "563260143484355911_en");
    assert_eq!(en[0].prompt, "Question: who sings i hear you knocking but you can't come in\n\nAnswer:");
    assert_eq!(en[0].answers, ["Dave Edmunds", "David William Edmunds"]);
    assert_eq!(en[1].answers, [""], "unanswerable: text null is the empty answer");
    assert_eq!(en[2].answers, ["no", "No", "not visible"]);
    assert_eq!(en[2].id, "7512341_en");
    let zh = mkqa::load_mkqa_all_languages(&p, Lang::Zh).unwrap();
    assert_eq!(
        (zh[0].id.as_str(), zh[0].answers.as_slice()),
        ("563260143484355911_zh_cn", &["戴维·埃德蒙兹 ".to_string()][..])
    );
    assert_eq!(mkqa::load_mkqa_all_languages(&p, Lang::Ar).unwrap()[0].answers, ["ديف إدموندز"]);
    // The registry picks the all-languages file when no per-language file exists.
    let dir = temp_dir("mkqa-all");
    std::fs::create_dir_all(dir.join("mkqa")).unwrap();
    std::fs::copy(&p, dir.join("mkqa/mkqa.jsonl")).unwrap();
    let vi = tasks::load_task(&dir, "mkqa", "vi").unwrap();
    assert_eq!(vi.items.as_generative().unwrap()[1].prompt, "Question: tên của pokemon sống mãi mãi là gì\n\nAnswer:");
}

#[test]
fn mmlu_csv_quoting_and_okapi_ids() {
    let dir = temp_dir("mmlu-quoting");
    let p = dir.join("demo_test.csv");
    std::fs::write(&p, "\"Q1, with comma\nand a newline\",\"a \"\"quoted\"\" one\",b,c,d,B\nQ2,1,2,3,4,D\n").unwrap();
    let items = mmlu::load_mmlu_csv(&p).unwrap();
    assert_eq!(items[0].context, "Q1, with comma\nand a newline\nA. a \"quoted\" one\nB. b\nC. c\nD. d\nAnswer:");
    assert_eq!((items[0].gold, items[1].gold, items[1].id.as_str()), (1, 3, "demo_test/1"));
    assert_eq!(items[0].continuation(2), " C");
    let zh = mmlu::load_okapi_mmlu(&eval_data_dir().join("mmlu/m_mmlu/zh_dev.json")).unwrap();
    assert_eq!((zh[0].id.as_str(), zh[0].gold), ("econometrics/dev/1", 3));
}

// ---------------------------------------------------------------------------------------------
// Bad input: one test per kind of error.
// ---------------------------------------------------------------------------------------------

/// A fresh scratch directory, removed when the test passes and kept when it fails.
fn temp_dir(name: &str) -> ScratchDir {
    ScratchDir::new(format!("dft-eval-{name}-{}", std::process::id()))
}

#[test]
fn missing_file_names_the_candidates() {
    let dir = temp_dir("missing");
    let err = tasks::load_task(&dir, "xnli", "zh").unwrap_err();
    assert!(matches!(err, EvalError::MissingFile { .. }), "{err:?}");
    assert!(err.to_string().contains("xnli/dev-zh.tsv"), "{err}");
    let err = squad::load_squad(&dir.join("nope.json")).unwrap_err();
    assert!(matches!(err, EvalError::Io { .. }) && err.to_string().contains("nope.json"), "{err}");
}

#[test]
fn malformed_row_names_file_and_line() {
    let dir = temp_dir("malformed");
    std::fs::create_dir_all(dir.join("xnli")).unwrap();
    let p = dir.join("xnli/dev-en.tsv");
    std::fs::write(&p, "a\tb\tneutral\nc\td\tentailment\nonly two\tcolumns\n").unwrap();
    let err = tasks::load_task(&dir, "xnli", "en").unwrap_err();
    assert!(matches!(err, EvalError::Malformed { line: 3, .. }), "{err:?}");
    assert!(err.to_string().contains("dev-en.tsv:3:"), "{err}");
    std::fs::write(&p, "a\tb\tneutral\nc\td\tmaybe\n").unwrap();
    assert!(tasks::load_task(&dir, "xnli", "en").unwrap_err().to_string().contains("dev-en.tsv:2: label must be"));
    let j = dir.join("x.jsonl");
    std::fs::write(
        &j,
        "{\"premise\": \"p.\", \"choice1\": \"A\", \"choice2\": \"B\", \"question\": \"cause\", \"label\": 0}\n{oops\n",
    )
    .unwrap();
    let err = xcopa::load_xcopa(&j, Lang::Zh).unwrap_err();
    assert!(err.to_string().contains("x.jsonl:2:"), "{err}");
}

#[test]
fn unknown_task_or_language() {
    let dir = eval_data_dir();
    let err = tasks::load_task(&dir, "squad2", "en").unwrap_err();
    assert!(matches!(err, EvalError::UnknownTask { .. }) && err.to_string().contains("xstorycloze"), "{err}");
    let err = tasks::load_task(&dir, "xnli", "fr").unwrap_err();
    assert!(matches!(err, EvalError::UnknownLanguage { .. }), "{err}");
    let err = tasks::load_task(&dir, "xcopa", "ar").unwrap_err();
    assert!(matches!(err, EvalError::UnsupportedLanguage { .. }), "{err}");
}

#[test]
fn choice_count_mismatch() {
    let dir = temp_dir("choices");
    let p = dir.join("bad_test.csv");
    std::fs::write(&p, "Q1,a,b,c,d,A\nQ2,a,b,c,D\n").unwrap();
    let err = mmlu::load_mmlu_csv(&p).unwrap_err();
    assert!(matches!(err, EvalError::ChoiceCount { line: 2, expected: 4, found: 3, .. }), "{err:?}");
    assert!(err.to_string().contains("bad_test.csv:2: expected 4 answer choices, found 3"), "{err}");
}
