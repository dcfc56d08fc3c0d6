//! dft-eval: the benchmarks of the DFT paper (METHOD.md §6) — XQuAD, MLQA, MKQA, TruthfulQA (MC1),
//! XNLI, XCOPA, XStoryCloze, MMLU — and FLORES-style translation metrics.
//!
//! This half of the crate needs no model: [`tasks`] reads the full release formats into two item
//! shapes ([`MultipleChoiceItem`], [`GenerativeItem`]) with lm-evaluation-harness prompts and
//! choices ([`prompts`]); [`metrics`] turns per-choice log-likelihoods or generated strings into
//! scores with the official scripts' definitions (SQuAD v1.1, MLQA v1, MKQA, lm-eval acc/acc_norm,
//! sacrebleu chrF++ and BLEU). A scoring engine only has to fill in log-likelihoods
//! ([`score_multiple_choice`]) or generations ([`score_generative`]).
pub mod error;
pub mod items;
pub mod lang;
pub mod metrics;
pub mod prompts;
pub mod tasks;
pub mod text;

pub use error::{EvalError, Result};
pub use items::{cut_at_stop, GenerativeItem, MultipleChoiceItem, TaskItems, GENERATION_STOP, TARGET_DELIMITER};
pub use lang::Lang;
pub use metrics::{score_generative, score_multiple_choice, F1Result, MCResult, QaNormalization};
pub use tasks::{load, load_task, LoadedTask, Task, TaskMetric};
