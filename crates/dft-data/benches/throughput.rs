//! Throughput of the whole data pipeline on the full alpaca_en_zh release (52,002 pairs): read +
//! tokenize (SmolLM2 tokenizer, rayon on all cores) + build every batch of one epoch.
//!
//! ```text
//! cargo bench -p dft-data --bench throughput            # DFT kinds (TFT, LC, ET, English prompt)
//! DFT_BENCH_KINDS=all cargo bench -p dft-data --bench throughput
//! ```
//! Data from `$DFT_SHARED_DATA/train/alpaca_en_zh/data_v3` (default `../shared/data` beside the
//! workspace). Prints one line per stage and the end-to-end examples/s, for `AnswerJoin::Auto` (the
//! default; separate encoding for SmolLM2) and `AnswerJoin::Joint` (stanford_alpaca's one-string
//! encoding), and how many examples the two tokenize differently.

use std::path::PathBuf;
use std::time::Instant;

use dft_data::*;

use dft_test_support::sys::cpu_seconds;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared =
        std::env::var_os("DFT_SHARED_DATA").map(PathBuf::from).unwrap_or_else(|| manifest.join("../../../shared/data"));
    let dir = shared.join("train/alpaca_en_zh/data_v3");
    let tokenizer = tokenizers::Tokenizer::from_file(manifest.join("tests/fixtures/smollm2-tokenizer.json"))?;
    let special = SpecialTokens::from_names(&tokenizer, None, "<|im_end|>", None)?;
    let kinds = match std::env::var("DFT_BENCH_KINDS").as_deref() {
        Ok("all") => SequenceKinds::all(),
        _ => SequenceKinds::default(),
    };
    println!(
        "threads {}, kinds {:?}",
        rayon::current_num_threads(),
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>()
    );

    let mut outputs = Vec::new();
    for answer_join in [AnswerJoin::Auto, AnswerJoin::Joint] {
        let start = Instant::now();
        let cpu_start = cpu_seconds();
        let corpus = read_alpaca_en_zh_dir(&dir, Strictness::Lenient)?;
        let read_s = start.elapsed().as_secs_f64();

        let t = Instant::now();
        let cpu_t = cpu_seconds();
        let config = TokenizeConfig { kinds, answer_join, ..Default::default() };
        let tokenized = tokenize_corpus(&corpus, &tokenizer, special, &config, Strictness::Lenient)?;
        let tokenize_s = t.elapsed().as_secs_f64();
        let tokenize_cpu = cpu_seconds() - cpu_t;

        let t = Instant::now();
        let batcher = Batcher::new(&tokenized, BatchConfig { batch_size: 8, seed: 0, ..Default::default() })?;
        let mut rows = 0usize;
        let mut checksum = 0u64;
        for batch in batcher.iter_from(batcher.start(), 1)? {
            rows += batch.rows();
            checksum = checksum.wrapping_add(batch.tft.as_ref().map_or(0, |b| b.input_ids.len() as u64));
        }
        let batch_s = t.elapsed().as_secs_f64();
        let total_s = start.elapsed().as_secs_f64();
        let total_cpu = cpu_seconds() - cpu_start;
        let n = corpus.report.seen as f64;

        println!("== answer_join {answer_join:?} (resolved: {:?})", tokenized.answer_join);
        println!("read     {read_s:7.2} s  {:9.0} examples/s  ({})", n / read_s, corpus.report);
        println!(
            "tokenize {tokenize_s:7.2} s  {:9.0} examples/s  (cpu {tokenize_cpu:.1} s; {}; {})",
            tokenized.report.seen as f64 / tokenize_s,
            tokenized.report,
            tokenized.stats
        );
        println!(
            "batch    {batch_s:7.2} s  {:9.0} examples/s  ({rows} rows, {} batches of 8; {})",
            rows as f64 / batch_s,
            batcher.batches_per_epoch(),
            batcher.padding_report(0)
        );
        println!(
            "total    {total_s:7.2} s  {:9.0} examples/s end to end  (cpu {total_cpu:.1} s = {:.0} examples per cpu-second; checksum {checksum})",
            n / total_s,
            n / total_cpu
        );
        outputs.push(tokenized.examples);
    }
    let differing = outputs[0].iter().zip(&outputs[1]).filter(|(a, b)| a != b).count();
    println!("auto vs joint: {differing} of {} tokenized examples differ", outputs[0].len());
    Ok(())
}
