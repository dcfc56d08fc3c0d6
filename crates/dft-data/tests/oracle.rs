//! Our token ids, labels and query spans equal the Python reference (transformers tokenizer +
//! stanford_alpaca preprocessing, tools/oracle/data_fixtures.py) on 33 real pairs of the bundled
//! slice, for the TFT, LC, ET and SFT sequences and both prompts.

mod common;

use common::{fixture, smollm2_tokenizer, workspace};
use dft_data::*;
use serde_json::Value;

fn ids(value: &Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

fn labels(value: &Value) -> Vec<i64> {
    value.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

fn span(value: &Value) -> Option<std::ops::Range<usize>> {
    value.as_array().map(|a| a[0].as_u64().unwrap() as usize..a[1].as_u64().unwrap() as usize)
}

#[test]
fn ids_labels_and_spans_match_the_python_reference() {
    let text = std::fs::read_to_string(fixture("oracle_smollm2_alpaca.json")).unwrap();
    let oracle: Value = serde_json::from_str(&text).unwrap();
    let tokenizer = smollm2_tokenizer();
    let special = SpecialTokens::from_names(&tokenizer, None, "<|im_end|>", None).unwrap();
    assert_eq!(oracle["eos"].as_u64(), Some(u64::from(special.eos)));
    assert!(oracle["bos"].is_null());
    let corpus =
        read_paired_json(&[workspace().join("data/alpaca_en_zh/train.json")], "zh", Strictness::Strict).unwrap();

    let cases = oracle["cases"].as_array().unwrap();
    assert!(cases.len() >= 30);
    let (mut fallbacks, mut truncated, mut with_input, mut chat) = (0, 0, 0, 0);
    for case in cases {
        let index = case["index"].as_u64().unwrap() as usize;
        let example = &corpus.examples[index];
        assert_eq!(example.id, case["id"].as_str().unwrap());
        let template: PromptTemplate = serde_json::from_value(case["template"].clone()).unwrap();
        chat += usize::from(matches!(template, PromptTemplate::ChatMl { .. }));
        with_input += usize::from(example.x_tgt.has_input());
        let config = TokenizeConfig {
            template,
            max_len: case["max_len"].as_u64().unwrap() as usize,
            kinds: SequenceKinds::all(),
            ..Default::default()
        };
        let (ours, _) = tokenize_example(example, &tokenizer, special, &config).unwrap();
        // Both answer encodings agree with the reference.
        let joint = TokenizeConfig { answer_join: AnswerJoin::Joint, ..config.clone() };
        assert_eq!(tokenize_example(example, &tokenizer, special, &joint).unwrap().0, ours);
        let what = format!("case {index} ({})", case["why"]);

        assert_eq!(ours.tgt_prompt, ids(&case["tgt_prompt_ids"]), "{what}: P(x_tgt)");
        assert_eq!(ours.en_prompt, ids(&case["en_prompt_ids"]), "{what}: P(x_en)");
        assert_eq!(Some(ours.tgt_query.instruction.clone()), span(&case["tgt_query"]["instruction"]), "{what}");
        assert_eq!(ours.tgt_query.input, span(&case["tgt_query"]["input"]), "{what}");
        assert_eq!(Some(ours.en_query.instruction.clone()), span(&case["en_query"]["instruction"]), "{what}");
        assert_eq!(ours.en_query.input, span(&case["en_query"]["input"]), "{what}");

        for kind in [SequenceKind::Tft, SequenceKind::Lc, SequenceKind::Et, SequenceKind::Sft] {
            let expected = &case["sequences"][kind.name()];
            // Labels as the batch builds them.
            let (prefix, answer) = ours.sequence(kind);
            let batch = TokenBatch::from_rows(kind, &[(prefix, answer)], special.pad, None);
            assert_eq!(batch.input_ids, ids(&expected["input_ids"]), "{what}: {kind} ids");
            assert_eq!(batch.labels, labels(&expected["labels"]), "{what}: {kind} labels");
            if expected["joint_fallback"].as_bool().unwrap() {
                fallbacks += 1;
                // stanford_alpaca would have merged the boundary: its ids differ and its prompt is
                // not a prefix.
                assert_ne!(batch.input_ids, ids(&expected["stanford_input_ids"]), "{what}: {kind}");
            }
            truncated += usize::from(expected["truncated"].as_bool().unwrap());
        }
    }
    // The fixture exercises what it claims to.
    assert!(
        fallbacks > 0 && truncated > 0 && with_input >= 10 && chat >= 4,
        "{fallbacks} {truncated} {with_input} {chat}"
    );
}

/// With a BOS (Llama-2, Gemma), every prompt starts with it, spans shift by one and the BOS is
/// masked like the rest of the prompt; the rest is unchanged.
#[test]
fn bos_is_prepended_to_every_prompt_and_masked() {
    let tokenizer = smollm2_tokenizer();
    let without = SpecialTokens::from_names(&tokenizer, None, "<|im_end|>", None).unwrap();
    let with = SpecialTokens::from_names(&tokenizer, Some("<|im_start|>"), "<|im_end|>", None).unwrap();
    assert_eq!(with.bos, Some(1));
    let corpus =
        read_paired_json(&[workspace().join("data/alpaca_en_zh/train.json")], "zh", Strictness::Strict).unwrap();
    let config = TokenizeConfig { kinds: SequenceKinds::all(), ..Default::default() };
    for example in corpus.examples.iter().filter(|e| e.x_tgt.has_input()).take(5) {
        let (plain, _) = tokenize_example(example, &tokenizer, without, &config).unwrap();
        let (bos, _) = tokenize_example(example, &tokenizer, with, &config).unwrap();
        assert_eq!(bos.tgt_prompt, [&[1][..], &plain.tgt_prompt].concat());
        assert_eq!(bos.en_prompt, [&[1][..], &plain.en_prompt].concat());
        let shift = |r: &std::ops::Range<usize>| r.start + 1..r.end + 1;
        assert_eq!(bos.tgt_query.instruction, shift(&plain.tgt_query.instruction));
        assert_eq!(bos.tgt_query.input.as_ref(), plain.tgt_query.input.as_ref().map(shift).as_ref());
        for kind in [SequenceKind::Tft, SequenceKind::Lc, SequenceKind::Et, SequenceKind::Sft] {
            // The same answer, one token shorter where the BOS pushes it past max_len.
            let (prefix, answer) = bos.sequence(kind);
            assert!(plain.sequence(kind).1.starts_with(answer));
            assert_eq!(bos.len(kind), (plain.len(kind) + 1).min(config.max_len));
            let batch = TokenBatch::from_rows(kind, &[(prefix, answer)], with.pad, None);
            assert_eq!(batch.labels[0], IGNORE_INDEX);
            assert_eq!(batch.labelled_tokens(), answer.len());
        }
    }
}
