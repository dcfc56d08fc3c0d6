//! Bad input: each problem is a strict-mode error naming file, line/record (column for JSON and
//! UTF-8) and field, and a counted skip with its reason in lenient mode (never a silent drop).

mod common;

use common::{fixture, smollm2_tokenizer};
use dft_data::*;

fn bad(name: &str) -> std::path::PathBuf {
    fixture(&format!("bad/{name}"))
}

/// Every stage's report must account for every record.
fn assert_accounted(report: &DataReport) {
    assert_eq!(report.seen, report.kept + report.total_skipped(), "{report}");
}

#[test]
fn invalid_json_names_file_line_and_column_in_both_modes() {
    for strictness in [Strictness::Strict, Strictness::Lenient] {
        let err = read_paired_json(&[bad("invalid.json")], "zh", strictness).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, DataError::InvalidJson { line: 9, column: 9, .. }), "{message}");
        assert!(message.contains("invalid.json:9:9: invalid JSON: expected `,` or `}`"), "{message}");
    }
}

#[test]
fn invalid_json_line_in_jsonl_is_an_error_or_a_counted_skip() {
    let err = read_paired_jsonl(&bad("paired_lines.jsonl"), "vi", Strictness::Strict).unwrap_err();
    assert!(err.to_string().contains("paired_lines.jsonl:3:"), "{err}");
    assert!(matches!(err, DataError::InvalidJson { line: 3, .. }));

    let corpus = read_paired_jsonl(&bad("paired_lines.jsonl"), "vi", Strictness::Lenient).unwrap();
    assert_eq!(corpus.examples.len(), 2);
    assert_eq!(corpus.report.count(SkipReason::InvalidJsonLine), 1);
    assert_eq!(corpus.report.count(SkipReason::MissingField), 1);
    assert_eq!(corpus.report.to_string(), "seen 4, kept 2, skipped 2 (invalid_json_line 1, missing_field 1)");
    assert!(corpus.report.samples[1].contains("paired_lines.jsonl:4 (record 3): field `vi.instruction`: missing"));
    assert_accounted(&corpus.report);
    let first = &corpus.examples[0];
    assert_eq!((first.id.as_str(), first.score, first.x_tgt.instruction.as_str()), ("7", Some(5), "Chào đi."));
    assert_eq!((corpus.examples[1].id.as_str(), corpus.examples[1].score), ("8", None));
}

#[test]
fn missing_field_names_record_line_and_field() {
    let err = read_paired_json(&[bad("missing_field.json")], "zh", Strictness::Strict).unwrap_err();
    let message = err.to_string();
    assert!(message.ends_with("missing_field.json:11 (record 1): field `zh_output`: missing"), "{message}");

    let corpus = read_paired_json(&[bad("missing_field.json")], "zh", Strictness::Lenient).unwrap();
    assert_eq!(corpus.examples.len(), 1);
    assert_eq!(corpus.report.count(SkipReason::MissingField), 1);
    assert_accounted(&corpus.report);
}

#[test]
fn empty_field_is_an_error_or_a_counted_skip() {
    let err = read_paired_json(&[bad("empty_field.json")], "zh", Strictness::Strict).unwrap_err();
    assert!(err.to_string().ends_with("empty_field.json:2 (record 0): field `en_instruction`: empty"), "{err}");

    let corpus = read_paired_json(&[bad("empty_field.json")], "zh", Strictness::Lenient).unwrap();
    assert_eq!(corpus.examples.len(), 1);
    assert_eq!(corpus.examples[0].id, "1", "ids stay source positions after a skip");
    assert_eq!(corpus.report.to_string(), "seen 2, kept 1, skipped 1 (empty_field 1)");
}

#[test]
fn pair_count_mismatch_is_an_error_or_counted_unpaired() {
    let (en, vi) = (bad("alpaca_en.json"), bad("alpaca_vi_short.json"));
    let err = read_alpaca_pair(&en, &vi, "vi", Strictness::Strict).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, DataError::PairCountMismatch { en_count: 3, tgt_count: 2, .. }));
    assert!(message.contains("alpaca_en.json has 3 records") && message.contains("alpaca_vi_short.json has 2"));

    let corpus = read_alpaca_pair(&en, &vi, "vi", Strictness::Lenient).unwrap();
    assert_eq!(corpus.examples.len(), 2);
    assert_eq!(corpus.report.count(SkipReason::Unpaired), 1);
    assert_accounted(&corpus.report);
    assert_eq!(corpus.examples[1].x_en.input, "2 3");
    assert_eq!(corpus.examples[1].x_tgt.instruction, "Cộng các số.");
}

#[test]
fn duplicate_ids_are_an_error_or_a_counted_skip() {
    let (en, ar) = (bad("duplicate_ids_en.jsonl"), bad("duplicate_ids_ar.jsonl"));
    let err = read_jsonl_pair(&en, &ar, "ar", PairBy::Id, Strictness::Strict).unwrap_err();
    assert!(
        err.to_string().ends_with("duplicate_ids_en.jsonl:3 (record 2): duplicate id `a1` (first seen at line 1)"),
        "{err}"
    );

    let corpus = read_jsonl_pair(&en, &ar, "ar", PairBy::Id, Strictness::Lenient).unwrap();
    assert_eq!(corpus.report.count(SkipReason::DuplicateId), 1);
    assert_accounted(&corpus.report);
    // Paired by id, in English order, whatever the Arabic order.
    let pairs: Vec<(&str, &str)> =
        corpus.examples.iter().map(|e| (e.id.as_str(), e.x_tgt.instruction.as_str())).collect();
    assert_eq!(pairs, vec![("a1", "قل مرحبا."), ("a2", "قل وداعا.")]);
    assert_eq!(corpus.examples[1].x_en.input, "", "a missing input is no input");
}

#[test]
fn jsonl_paired_by_line_reports_duplicates_among_ids() {
    let (en, ar) = (bad("duplicate_ids_en.jsonl"), bad("duplicate_ids_ar.jsonl"));
    let err = read_jsonl_pair(&en, &ar, "ar", PairBy::Line, Strictness::Strict).unwrap_err();
    assert!(matches!(err, DataError::PairCountMismatch { en_count: 3, tgt_count: 2, .. }), "{err}");
    let corpus = read_jsonl_pair(&en, &ar, "ar", PairBy::Line, Strictness::Lenient).unwrap();
    // Lines 1-2 pair (ids from the target side: a2, a1); the third English line has no partner.
    assert_eq!(corpus.report.to_string(), "seen 3, kept 2, skipped 1 (unpaired 1)");
}

#[test]
fn invalid_utf8_names_line_and_column() {
    for strictness in [Strictness::Strict, Strictness::Lenient] {
        let err = read_paired_json(&[bad("invalid_utf8.json")], "zh", strictness).unwrap_err();
        assert!(matches!(err, DataError::InvalidUtf8 { line: 3, column: 31, .. }), "{err}");
        assert!(err.to_string().contains("invalid_utf8.json:3:31: invalid UTF-8"), "{err}");
    }
    let (en, vi) = (bad("invalid_utf8_en.jsonl"), bad("invalid_utf8_vi.jsonl"));
    let err = read_jsonl_pair(&en, &vi, "vi", PairBy::Id, Strictness::Strict).unwrap_err();
    assert!(err.to_string().contains("invalid_utf8_en.jsonl:2:31: invalid UTF-8"), "{err}");
    let corpus = read_jsonl_pair(&en, &vi, "vi", PairBy::Id, Strictness::Lenient).unwrap();
    assert_eq!(corpus.examples.len(), 1);
    assert_eq!(corpus.report.count(SkipReason::InvalidUtf8Line), 1);
    // The Vietnamese record 2 lost its partner: counted too.
    assert_eq!(corpus.report.count(SkipReason::Unpaired), 1);
    assert_accounted(&corpus.report);
}

#[test]
fn prompt_longer_than_max_len_is_an_error_or_a_counted_skip() {
    let tokenizer = smollm2_tokenizer();
    let special = SpecialTokens::from_names(&tokenizer, None, "<|im_end|>", None).unwrap();
    let corpus =
        read_alpaca_pair(&bad("alpaca_en.json"), &bad("alpaca_vi_short.json"), "vi", Strictness::Lenient).unwrap();
    // The with-input Alpaca prompt is longer than the no-input one: 45 tokens lets only the
    // no-input example through.
    let config = TokenizeConfig { max_len: 45, ..Default::default() };
    let err = tokenize_corpus(&corpus, &tokenizer, special, &config, Strictness::Strict).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("alpaca_vi_short.json:3 (record 1): prompt P(x_tgt) is"), "{message}");
    assert!(message.contains("within max_len 45"), "{message}");

    let tokenized = tokenize_corpus(&corpus, &tokenizer, special, &config, Strictness::Lenient).unwrap();
    assert_eq!(tokenized.report.to_string(), "seen 2, kept 1, skipped 1 (prompt_too_long 1)");
    let kept = &tokenized.examples[0];
    assert!(kept.tgt_prompt.len() < 45);
    // Its sequences are cut to max_len, keeping the prompt.
    for kind in [SequenceKind::Tft, SequenceKind::Lc, SequenceKind::Et] {
        assert!(kept.len(kind) <= 45);
        assert_eq!(kept.sequence(kind).0, kept.tgt_prompt.as_slice());
    }
}

#[test]
fn overlong_skip_mode_skips_instead_of_truncating() {
    let tokenizer = smollm2_tokenizer();
    let special = SpecialTokens::from_names(&tokenizer, None, "<|im_end|>", None).unwrap();
    let corpus =
        read_paired_json(&[common::workspace().join("data/alpaca_en_zh/heldout.json")], "zh", Strictness::Strict)
            .unwrap();
    let truncate = TokenizeConfig { max_len: 96, ..Default::default() };
    let skip = TokenizeConfig { overlong: Overlong::Skip, ..truncate.clone() };
    let truncated = tokenize_corpus(&corpus, &tokenizer, special, &truncate, Strictness::Lenient).unwrap();
    let skipped = tokenize_corpus(&corpus, &tokenizer, special, &skip, Strictness::Lenient).unwrap();
    let n_truncated_examples = truncated
        .examples
        .iter()
        .filter(|e| {
            [SequenceKind::Tft, SequenceKind::Lc, SequenceKind::Et]
                .iter()
                .any(|&k| e.sequence(k).1.last() != Some(&special.eos))
        })
        .count();
    assert!(n_truncated_examples > 0);
    assert_eq!(skipped.report.count(SkipReason::SequenceTooLong), n_truncated_examples);
    assert_eq!(skipped.report.count(SkipReason::PromptTooLong), truncated.report.count(SkipReason::PromptTooLong));
    assert!(tokenize_corpus(&corpus, &tokenizer, special, &skip, Strictness::Strict).is_err());
}

#[test]
fn english_cannot_be_the_target_language() {
    let err = read_paired_json(&[bad("empty_field.json")], "en", Strictness::Lenient).unwrap_err();
    assert!(matches!(err, DataError::Config(_)));
}
