//! dft-eval: the benchmarks of the DFT paper (METHOD.md §6) — XQuAD, MLQA, MKQA, TruthfulQA (MC1),
//! XNLI, XCOPA, XStoryCloze, MMLU — and FLORES-style translation metrics.
//!
//! - [`tasks`] reads the full release formats (or the `.sample` slices) into two item shapes
//!   ([`MultipleChoiceItem`], [`GenerativeItem`]) with lm-evaluation-harness prompts and choices
//!   ([`prompts`]).
//! - [`metrics`] turns per-choice log-likelihoods or generated strings into scores with the official
//!   scripts' definitions (SQuAD v1.1, MLQA v1, MKQA, lm-eval acc/acc_norm, sacrebleu chrF++ and
//!   BLEU) — no model needed.
//! - [`scoring`] is the engine that runs a `dft_models::CausalLm`: lm-eval's context/continuation
//!   tokenisation, batched log-likelihoods with the context shared per item, greedy generation until
//!   newline with the KV cache; [`Scorer::evaluate`] scores a loaded task end to end.
//! - [`lm_eval`]: lm-evaluation-harness style `results.json` and `samples_<task>_<lang>.jsonl`.
//! - [`stats`]: standard errors (lm-eval's binomial `acc_stderr`, bootstrap) and the paired bootstrap
//!   of two systems on the same items (`dft compare`).
//! - [`report`] holds the results (`results.json`) and renders the paper-style Markdown table.
//! - FLORES-200 translation ([`tasks::flores`], task `flores`, not part of `all`): en→X and X→en
//!   greedy translations scored with corpus chrF++ / BLEU per direction.
//! - [`align`]: representation alignment of parallel sentences (the paper's Figure 4) — per-block
//!   cosine of mean-pooled hidden states, matched vs mismatched pairs, and t-SNE pictures ([`tsne`],
//!   exact, seeded; SVGs by [`plot`]).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use dft_eval::{load_task, EvalOptions, Scorer};
//! type B = burn::backend::Flex;
//! let pre = dft_models::load_pretrained::<B>("model.gguf".as_ref(), &Default::default())?;
//! let tok = pre.tokenizer.expect("tokenizer");
//! let task = load_task("shared/data/eval".as_ref(), "xcopa", "zh")?;
//! let opts = EvalOptions { limit: Some(50), ..Default::default() };
//! let result = Scorer::new(&pre.model, &tok)?.evaluate(&task, &opts, &mut |_| {})?;
//! println!("{} {}: {} = {:.1}", result.task, result.lang, result.metric, result.score);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
pub mod align;
pub mod compare;
pub mod error;
pub mod items;
pub mod lang;
pub mod lm_eval;
pub mod metrics;
pub mod plot;
pub mod prompts;
pub mod report;
pub mod scoring;
pub mod shard;
pub mod stats;
pub mod tasks;
#[cfg(test)]
mod testutil;
pub mod text;
pub mod tsne;

pub use align::{AlignOptions, AlignReport, LayerAlignment, PooledStates, TsneLayer};
pub use error::{EvalError, Result};
pub use items::{
    cut_at_stop, GenerativeItem, MultipleChoiceItem, TaskItems, TranslationItem, GENERATION_STOP, TARGET_DELIMITER,
};
pub use lang::Lang;
pub use metrics::{score_generative, score_multiple_choice, F1Result, MCResult, QaNormalization, TranslationScore};
pub use report::{EvalReport, EvalRun, TaskOutcome, TaskResult};
pub use scoring::{encode_request, EncodedRequest, EvalOptions, Generation, Loglik, Scorer, Throughput};
pub use shard::{merge_shards, Shard, ShardRun};
pub use tasks::flores::{FloresOptions, MtDirections, ParallelSentences};
pub use tasks::{load, load_task, LoadedTask, Task, TaskMetric};
pub use tsne::{TsneOptions, TsneResult};
