//! The real files: the alpaca_en_zh release in the shared data folder (`DFT_SHARED_DATA`) and the
//! bundled slice `data/alpaca_en_zh`, read, filtered, tokenized with SmolLM2's tokenizer and batched.

mod common;

use std::collections::BTreeMap;

use common::{alpaca_en_zh_dir, smollm2_tokenizer, workspace};
use dft_data::*;

#[test]
fn full_release_reads_in_part_order_with_counted_skips() {
    let dir = alpaca_en_zh_dir();
    let files = alpaca_en_zh_part_files(&dir).unwrap();
    assert_eq!(files.len(), 53);
    assert!(files[2].ends_with("alpaca_chinese_part_2.json") && files[52].ends_with("alpaca_chinese_part_52.json"));

    let corpus = read_alpaca_en_zh_dir(&dir, Strictness::Lenient).unwrap();
    // 50 records have an empty output (49 English, 50 Chinese, overlapping) and are skipped.
    assert_eq!(corpus.report.to_string(), "seen 52002, kept 51952, skipped 50 (empty_field 50)");
    assert_eq!(corpus.target_lang, "zh");
    let first = &corpus.examples[0];
    assert_eq!(first.id, "0");
    assert_eq!(first.x_en.instruction, "Give three tips for staying healthy.");
    assert_eq!(first.x_tgt.instruction, "给出保持健康的三个建议。");
    assert!(first.origin.path.ends_with("alpaca_chinese_part_0.json") && first.origin.line == 2);
    let last = corpus.examples.last().unwrap();
    assert_eq!(last.id, "52001");
    assert_eq!(last.score, Some(4));
    assert!(last.x_en.has_input() && last.x_tgt.has_input());

    // Scores as SOURCES.md counts them (over all 52,002), less the skipped records.
    let mut scores: BTreeMap<Option<u8>, usize> = BTreeMap::new();
    for e in &corpus.examples {
        *scores.entry(e.score).or_default() += 1;
    }
    let total = |s| scores.get(&s).copied().unwrap_or(0);
    assert!(total(Some(5)) <= 40_701 && total(Some(5)) >= 40_701 - 50);
    assert_eq!(scores.values().sum::<usize>(), 51_952);

    // Strict mode stops at the first empty field, naming it.
    let err = read_alpaca_en_zh_dir(&dir, Strictness::Strict).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("alpaca_chinese_part_") && message.contains("_output`: empty"), "{message}");

    // Filters report what they remove.
    let mut filtered = corpus.clone();
    let report = FilterConfig { min_score: Some(5), dedup: DedupKey::Example, max_chars: None }.apply(&mut filtered);
    assert_eq!(report.kept, total(Some(5)));
    assert_eq!(report.count(SkipReason::ScoreMissing), total(None));
    assert_eq!(report.count(SkipReason::Duplicate), 0);
    assert_eq!(filtered.report.seen, 52_002);
    assert_eq!(filtered.report.kept + filtered.report.total_skipped(), 52_002);
}

#[test]
fn bundled_slice_is_what_the_documented_rule_selects() {
    let source = read_alpaca_en_zh_dir(&alpaca_en_zh_dir(), Strictness::Lenient).unwrap();
    let selected: Vec<&ParallelExample> = source.examples.iter().filter(|e| e.score == Some(5)).take(2_200).collect();
    let data = workspace().join("data/alpaca_en_zh");
    let train = read_paired_json(&[data.join("train.json")], "zh", Strictness::Strict).unwrap();
    let heldout = read_paired_json(&[data.join("heldout.json")], "zh", Strictness::Strict).unwrap();
    assert_eq!(train.report.to_string(), "seen 2000, kept 2000, skipped 0");
    assert_eq!(heldout.examples.len(), 200);
    let indices: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("source_indices.json")).unwrap()).unwrap();
    for (slice, name, offset) in [(&train, "train", 0), (&heldout, "heldout", 2_000)] {
        for (k, example) in slice.examples.iter().enumerate() {
            let expected = selected[offset + k];
            assert_eq!(indices[name][k].as_u64().unwrap().to_string(), expected.id);
            assert_eq!(
                (&example.x_en, &example.y_en, &example.x_tgt, &example.y_tgt, example.score),
                (&expected.x_en, &expected.y_en, &expected.x_tgt, &expected.y_tgt, expected.score),
                "{name} record {k}"
            );
        }
    }
}

#[test]
fn bundled_slice_tokenizes_and_batches_with_smollm2() {
    let tokenizer = smollm2_tokenizer();
    let special = SpecialTokens::from_names(&tokenizer, None, "<|im_end|>", None).unwrap();
    assert_eq!((special.eos, special.pad), (2, 2));
    let corpus =
        read_paired_json(&[workspace().join("data/alpaca_en_zh/train.json")], "zh", Strictness::Strict).unwrap();
    // Joint (stanford_alpaca) encoding, to count the boundary merges.
    let config = TokenizeConfig { kinds: SequenceKinds::all(), answer_join: AnswerJoin::Joint, ..Default::default() };
    let tokenized = tokenize_corpus(&corpus, &tokenizer, special, &config, Strictness::Strict).unwrap();
    assert_eq!(tokenized.examples.len(), 2_000);
    let stats = &tokenized.stats.kinds;
    // The prompt/answer boundary merges only for answers that start with punctuation; LC targets
    // (instructions) start with letters.
    assert_eq!(stats[&SequenceKind::Lc].joint_fallbacks, 0);
    assert!(stats[&SequenceKind::Et].joint_fallbacks > 0);
    assert!(stats[&SequenceKind::Et].joint_fallbacks < 100);
    assert!(stats.values().all(|s| s.longest <= 512));

    // For SmolLM2's byte-level BPE, `Auto` picks separate encoding, which gives the joint encoding's
    // ids (where the joint one keeps the prompt as a prefix, and by fallback elsewhere); the bench
    // checks all 52k.
    assert!(AnswerJoin::separate_is_exact(&tokenizer));
    let head = ParallelCorpus { examples: corpus.examples[..400].to_vec(), ..corpus.clone() };
    let auto = TokenizeConfig { answer_join: AnswerJoin::Auto, ..config.clone() };
    let separate = tokenize_corpus(&head, &tokenizer, special, &auto, Strictness::Strict).unwrap();
    assert_eq!(separate.answer_join, AnswerJoin::Separate);
    assert_eq!(separate.examples, tokenized.examples[..400]);

    for e in &tokenized.examples {
        // Every query span lies inside its prompt and is not empty.
        for (spans, prompt) in [(&e.tgt_query, &e.tgt_prompt), (&e.en_query, &e.en_prompt)] {
            assert!(!spans.instruction.is_empty() && spans.instruction.end <= prompt.len());
            if let Some(input) = &spans.input {
                assert!(input.start >= spans.instruction.end - 1 && input.end <= prompt.len());
            }
        }
    }

    let batcher = Batcher::new(&tokenized, BatchConfig { batch_size: 16, seed: 1, ..Default::default() }).unwrap();
    let ungrouped =
        Batcher::new(&tokenized, BatchConfig { batch_size: 16, seed: 1, group_by_length: false, ..Default::default() })
            .unwrap();
    let grouped_padding = batcher.padding_report(0);
    let plain_padding = ungrouped.padding_report(0);
    println!("grouped by total length: {grouped_padding}\nungrouped: {plain_padding}");
    assert!(grouped_padding.padding_fraction() < 0.5 * plain_padding.padding_fraction());
    for key in [GroupKey::Longest, GroupKey::Kind(SequenceKind::Tft)] {
        let by_key = BatchConfig { batch_size: 16, seed: 1, group_key: key, ..Default::default() };
        let report = Batcher::new(&tokenized, by_key).unwrap().padding_report(0);
        println!("grouped by {key:?}: {report}");
        assert!(report.kinds[&SequenceKind::Tft].padding_fraction() < 0.1);
    }

    let mut rows = 0;
    for batch in batcher.iter_from(batcher.start(), 1).unwrap() {
        rows += batch.rows();
        let tft = batch.tft.as_ref().unwrap();
        let sft = batch.sft.as_ref().unwrap();
        for r in 0..batch.rows() {
            let example = &tokenized.examples[batch.example_indices[r]];
            assert_eq!(tft.row(r), example.ids(SequenceKind::Tft).as_slice());
            assert_eq!(tft.prompt_lens[r], batch.tgt_prompt_lens[r]);
            assert_eq!(sft.prompt_lens[r], batch.en_prompt_lens[r]);
            let lc = batch.lc.as_ref().unwrap();
            assert_eq!(tft.row(r)[..batch.tgt_prompt_lens[r]], lc.row(r)[..batch.tgt_prompt_lens[r]]);
        }
        assert_eq!(
            tft.labelled_tokens(),
            batch.tft.as_ref().unwrap().lengths.iter().sum::<usize>() - batch.tgt_prompt_lens.iter().sum::<usize>()
        );
    }
    assert_eq!(rows, 2_000);
}
