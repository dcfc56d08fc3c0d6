//! dft-data: parallel instruction data for Deep supervision Fine-Tuning, from files to padded
//! token batches (METHOD.md §2–3). It reads English/target-language instruction pairs
//! ([`read`]), filters them ([`filter`]), renders prompts ([`template`]), tokenizes every sequence
//! the DFT objective can ask for — TFT, LC, ET, SFT and the two prompts — with label masks, shared
//! prefix lengths and query spans for pooling ([`tokenize`]), and groups them into length-grouped,
//! deterministically shuffled, resumable batches of plain `Vec`s ([`batch`]). It does not depend on
//! Burn: the training crate turns [`batch::TokenBatch`]es into tensors.
//!
//! ```no_run
//! use dft_data::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let tokenizer = tokenizers::Tokenizer::from_file("tokenizer.json")?;
//! let mut corpus = read_alpaca_en_zh_dir("shared/data/train/alpaca_en_zh/data_v3".as_ref(), Strictness::Lenient)?;
//! FilterConfig { min_score: Some(5), ..Default::default() }.apply(&mut corpus);
//! println!("data: {}", corpus.report); // one line: seen, kept, skipped per reason
//! let special = SpecialTokens::from_names(&tokenizer, None, "<|im_end|>", None)?; // SmolLM2: no BOS
//! let tokenized = tokenize_corpus(&corpus, &tokenizer, special, &TokenizeConfig::default(), Strictness::Lenient)?;
//! let batcher = Batcher::new(&tokenized, BatchConfig { batch_size: 8, seed: 42, ..Default::default() })?;
//! let resume_from: Option<DataPosition> = None; // or the position a checkpoint stored
//! let mut batches = batcher.iter_from(resume_from.unwrap_or(batcher.start()), 3)?; // 3 epochs
//! while let Some(batch) = batches.next() {
//!     let tft = batch.tft.as_ref().unwrap(); // input_ids / labels / attention_mask, [rows, seq_len]
//!     # let _ = tft;
//!     let _to_checkpoint: DataPosition = batches.position(); // serde; resumes after this batch
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod batch;
pub mod error;
pub mod example;
pub mod filter;
pub mod read;
pub mod template;
pub mod tokenize;

pub use batch::{
    BatchConfig, BatchIter, Batcher, DataPosition, DftBatch, GroupKey, PaddingCount, PaddingReport, PoolRegion,
    PromptSide, TokenBatch,
};
pub use error::{DataError, DataReport, FieldProblem, RecordLocation, SkipReason, Strictness};
pub use example::{ParallelCorpus, ParallelExample, Query};
pub use filter::{DedupKey, FilterConfig};
pub use read::{
    alpaca_en_zh_part_files, read_alpaca_en_zh_dir, read_alpaca_pair, read_jsonl_pair, read_paired_json,
    read_paired_jsonl, DataSource, PairBy,
};
pub use template::{lc_target_text, PromptTemplate, RenderedPrompt, SMOLLM2_DEFAULT_SYSTEM};
pub use tokenize::{
    tokenize_corpus, tokenize_example, AnswerJoin, KindStats, Overlong, QuerySpans, SequenceKind, SequenceKinds,
    SpecialTokens, TokenizeConfig, TokenizeStats, TokenizedCorpus, TokenizedExample, IGNORE_INDEX,
};
