//! The scoring engine: runs a [`CausalLm`] on the items of a task and scores them with the
//! model-free metrics of this crate.
//!
//! - Multiple choice ([`Scorer::loglikelihoods`]): each `(context, continuation)` request is
//!   tokenised as lm-eval does ([`requests`]); the result is the summed log-probability of the
//!   continuation tokens and whether each of them is the greedy (argmax) token. Requests with the
//!   same context tokens (the choices of one item; for XNLI, whose context is the prefix token,
//!   every request) share one context pass: contexts of several items run as one right-padded batch
//!   whose keys/values are kept ([`CausalLm::forward_hidden_capture`]), the continuations minus
//!   their last token continue them ([`CausalLm::forward_suffix`]), and the LM head runs only on the
//!   positions that predict a continuation token (for MMLU's one-token choices: one row per item).
//!   Log-softmax uses a blocked sum ([`logsumexp_rows`]) so that 70-token sums stay within 1e-4 of
//!   float64.
//! - Generative QA ([`Scorer::generate_until_many`]): greedy decoding with the KV cache until a token
//!   whose text contains `"\n"` (or EOS, or `max_new_tokens`), then the text is cut at the newline
//!   as lm-eval's `generate_until` does. Prompts are decoded together in batches
//!   ([`dft_models::generate::generate_batch`], the workspace's one decoding loop).
//! - Translation ([`Scorer::score_translation`]): the same greedy decoding until newline (budget
//!   [`EvalOptions::mt_max_new_tokens`]); the stripped text is scored with corpus chrF++ / BLEU per
//!   direction.
//!
//! [`Scorer::evaluate`] does either for a [`LoadedTask`] and returns a [`TaskResult`].
pub mod requests;

use std::collections::HashMap;
use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use dft_models::{CausalLm, ForwardSpec};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::error::{EvalError, Result};
use crate::items::{cut_at_stop, GenerativeItem, MultipleChoiceItem, TaskItems, TranslationItem, GENERATION_STOP};
use crate::metrics::{score_generative, score_multiple_choice, F1Result, MCResult, TranslationScore};
use crate::report::{TaskOutcome, TaskResult};
use crate::tasks::{LoadedTask, TaskMetric};

pub use requests::{encode, encode_request, encode_request_with, truncate_to_window, EncodedRequest};

/// Most context positions (padding included) run together in one pass.
const CONTEXT_BUDGET: usize = 2048;

/// Default number of continuation rows per forward pass.
pub const DEFAULT_BATCH_SIZE: usize = 16;
/// Default generation budget for QA answers (lm-eval's default is 256; answers are short).
pub const DEFAULT_MAX_NEW_TOKENS: usize = 32;
/// Default generation budget per translated sentence. FLORES sentences average ~25 English words;
/// SmolLM2's tokenizer spends 1–3 tokens per Chinese character, so a Chinese translation takes
/// ~50–120 tokens.
pub const DEFAULT_MT_MAX_NEW_TOKENS: usize = 160;

fn default_mt_max_new_tokens() -> usize {
    DEFAULT_MT_MAX_NEW_TOKENS
}

/// Log-likelihood of one continuation (lm-eval's `(logprob, is_greedy)`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Loglik {
    /// Sum of the continuation tokens' log-probabilities (natural log).
    pub logprob: f64,
    /// Whether every continuation token is the argmax of its position.
    pub is_greedy: bool,
    /// Number of continuation tokens.
    pub tokens: usize,
}

/// A greedy answer to a generative item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Generated token ids, including the stop token when one was reached.
    pub ids: Vec<u32>,
    /// Decoded text (special tokens skipped) cut at the first newline.
    pub text: String,
    /// Prompt length in tokens (after lm-eval's left truncation).
    pub prompt_tokens: usize,
    /// Seconds until the first new token (the prompt pass). Prompts decoded together share their
    /// batch's seconds: each gets the batch's time divided by its rows, so sums over items are wall time.
    pub prompt_seconds: f64,
    /// Seconds in total (the same share of its batch).
    pub seconds: f64,
}

/// Work counters for throughput reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Tokens run through the model: shared contexts counted once, padding not counted; for
    /// generation the prompts plus the generated tokens.
    pub model_tokens: usize,
    /// Tokens an engine without context sharing would run (`sum(len(ctx) + len(cont) - 1)`).
    pub request_tokens: usize,
    /// Scored continuation tokens, or generated tokens for generative tasks.
    pub scored_tokens: usize,
    pub seconds: f64,
    /// Generation only: seconds spent on prompt passes (they also yield the first new token).
    #[serde(default)]
    pub prompt_seconds: f64,
    /// Generation only: tokens produced by single-token decoding steps (all but each first one).
    #[serde(default)]
    pub decode_tokens: usize,
    /// Generation only: seconds the batches ran, summed over the threads that ran them side by side
    /// (so at least `seconds × threads in use`, not wall time); `prompt_seconds` is a part of it.
    #[serde(default)]
    pub busy_seconds: f64,
}

impl Throughput {
    /// Counts generated sequences: prompts and new tokens run, prompt-pass seconds, decoding steps.
    fn add_generations(&mut self, gens: &[Generation]) {
        for g in gens {
            self.scored_tokens += g.ids.len();
            self.model_tokens += g.prompt_tokens + g.ids.len();
            self.prompt_seconds += g.prompt_seconds;
            self.busy_seconds += g.seconds;
            self.decode_tokens += g.ids.len().saturating_sub(1);
        }
    }

    /// `model_tokens / seconds`.
    pub fn model_tokens_per_s(&self) -> f64 {
        self.model_tokens as f64 / self.seconds.max(1e-9)
    }

    /// Matrix-product GFLOP/s for a model of `(trunk, head)` weights ([`CausalLm::matmul_params`]):
    /// 2 FLOPs per trunk weight per token run, and per head weight per scored or generated token
    /// (the LM head runs only there).
    pub fn gflops_per_s(&self, (trunk, head): (usize, usize)) -> f64 {
        2.0 * (trunk as f64 * self.model_tokens as f64 + head as f64 * self.scored_tokens as f64)
            / self.seconds.max(1e-9)
            / 1e9
    }

    /// Generation only: generated tokens per second of decoding (prompt passes excluded). Batches
    /// may run side by side, so `prompt_seconds` is thread time: the decoding share of the wall time is
    /// the share of decoding in the batches' busy time.
    pub fn decode_tokens_per_s(&self) -> f64 {
        let decoding = if self.busy_seconds > 0.0 {
            self.seconds * ((self.busy_seconds - self.prompt_seconds) / self.busy_seconds).clamp(0.0, 1.0)
        } else {
            self.seconds - self.prompt_seconds
        };
        self.decode_tokens as f64 / decoding.max(1e-9)
    }
}

/// Knobs of [`Scorer::evaluate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalOptions {
    /// Score only the first `limit` items.
    pub limit: Option<usize>,
    /// Maximum continuation rows per forward pass (≥ 1).
    pub batch_size: usize,
    /// Generation budget per QA item.
    pub max_new_tokens: usize,
    /// Generation budget per translated sentence (FLORES).
    #[serde(default = "default_mt_max_new_tokens")]
    pub mt_max_new_tokens: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            limit: None,
            batch_size: DEFAULT_BATCH_SIZE,
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
            mt_max_new_tokens: DEFAULT_MT_MAX_NEW_TOKENS,
        }
    }
}

/// A model with its tokenizer, ready to score items.
pub struct Scorer<'a, B: Backend> {
    model: &'a CausalLm<B>,
    tokenizer: &'a Tokenizer,
    prefix_token: u32,
    batch_size: usize,
    stop_tokens: std::sync::OnceLock<Vec<u32>>,
    chat_template: Option<&'a dft_models::ChatTemplate>,
}

impl<'a, B: Backend> Scorer<'a, B> {
    /// A scorer whose empty-context prefix token is the model's BOS (else its first EOS), as
    /// lm-eval's `prefix_token_id`.
    pub fn new(model: &'a CausalLm<B>, tokenizer: &'a Tokenizer) -> Result<Self> {
        let prefix =
            model.config.bos_token_id.or_else(|| model.config.eos_token_ids.first().copied()).ok_or_else(|| {
                EvalError::Tokenizer { message: "the model config has neither a BOS nor an EOS token id".into() }
            })?;
        Ok(Scorer {
            model,
            tokenizer,
            prefix_token: prefix,
            batch_size: DEFAULT_BATCH_SIZE,
            stop_tokens: Default::default(),
            chat_template: None,
        })
    }

    /// lm-eval's `--apply_chat_template`: every non-empty context (and generation prompt) is rendered
    /// as one user turn of the model's chat template with the generation prompt, and encoded without
    /// adding special tokens (the template writes them). Off unless set.
    pub fn with_chat_template(mut self, template: &'a dft_models::ChatTemplate) -> Self {
        self.chat_template = Some(template);
        self
    }

    /// The context as the model sees it (chat-wrapped when a template is set) and whether encoding
    /// it adds the tokenizer's special tokens.
    fn wrap(&self, context: &str) -> Result<(String, bool)> {
        match self.chat_template {
            Some(t) if !context.is_empty() => {
                let msg = [dft_models::ChatMessage::user(context)];
                let text = t
                    .render(&msg, true)
                    .map_err(|e| EvalError::Tokenizer { message: format!("chat template: {e}") })?;
                Ok((text, false))
            }
            _ => Ok((context.to_string(), true)),
        }
    }

    /// Sets the maximum number of continuation rows per forward pass (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Overrides the prefix token used for empty contexts.
    pub fn with_prefix_token(mut self, token: u32) -> Self {
        self.prefix_token = token;
        self
    }

    pub fn prefix_token(&self) -> u32 {
        self.prefix_token
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        self.tokenizer
    }

    /// lm-eval's tokenisation of every request of `items`, item by item in choice order, truncated
    /// to the model's window.
    pub fn encode_items(&self, items: &[MultipleChoiceItem]) -> Result<Vec<EncodedRequest>> {
        let max = self.model.config.max_position_embeddings;
        let mut out = Vec::new();
        for item in items {
            item.validate()?;
            for (ctx, cont) in item.requests() {
                let (ctx, special) = self.wrap(ctx)?;
                let r = encode_request_with(self.tokenizer, self.prefix_token, &item.id, &ctx, &cont, special)?;
                out.push(truncate_to_window(r, &item.id, max)?);
            }
        }
        Ok(out)
    }

    /// Log-likelihoods of `requests`, in order. `progress` is called with the number of requests
    /// finished since the last call.
    pub fn loglikelihoods(
        &self,
        requests: &[EncodedRequest],
        progress: &mut dyn FnMut(usize),
    ) -> Result<(Vec<Loglik>, Throughput)> {
        self.loglikelihoods_batched(requests, self.batch_size, progress)
    }

    fn loglikelihoods_batched(
        &self,
        requests: &[EncodedRequest],
        batch_size: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(Vec<Loglik>, Throughput)> {
        let start = Instant::now();
        let batch_size = batch_size.max(1);
        let mut stats = Throughput::default();
        // Group by context, in order of first appearance.
        let mut group_of: HashMap<&[u32], usize> = HashMap::new();
        let mut groups: Vec<(&[u32], Vec<usize>)> = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            if r.context.is_empty() || r.continuation.is_empty() {
                return Err(EvalError::EmptyContinuation { id: format!("request {i}"), continuation: String::new() });
            }
            stats.request_tokens += r.input_len();
            stats.scored_tokens += r.continuation.len();
            let g = *group_of.entry(r.context.as_slice()).or_insert_with(|| {
                groups.push((r.context.as_slice(), Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i);
        }
        // Units of at most `batch_size` requests of one context (longest continuations first), longest
        // contexts first, packed into passes of at most `batch_size` rows and CONTEXT_BUDGET context
        // positions, with contexts at least 80% as long as the pass's longest (padding is wasted work;
        // batching pays off for short contexts, whose matrix products are small).
        let mut units: Vec<(&[u32], Vec<usize>)> = Vec::new();
        for (ctx, mut members) in groups {
            members.sort_by_key(|&i| std::cmp::Reverse(requests[i].continuation.len()));
            units.extend(members.chunks(batch_size).map(|c| (ctx, c.to_vec())));
        }
        units.sort_by_key(|(ctx, _)| std::cmp::Reverse(ctx.len()));
        let mut passes: Vec<(std::ops::Range<usize>, usize)> = Vec::new();
        let mut i = 0;
        while i < units.len() {
            let cmax = units[i].0.len();
            let mut rows = units[i].1.len();
            let mut j = i + 1;
            while j < units.len()
                && rows + units[j].1.len() <= batch_size
                && (j - i + 1) * cmax <= CONTEXT_BUDGET
                && units[j].0.len() * 5 >= cmax * 4
            {
                rows += units[j].1.len();
                j += 1;
            }
            passes.push((i..j, rows));
            i = j;
        }
        // Whole passes side by side, one per thread (small passes scale badly inside one matrix
        // product); each pass computes the same numbers whichever thread runs it.
        let mut out = vec![None; requests.len()];
        dft_models::jobs::run_jobs(
            &passes,
            |(range, _)| self.score_pass(&units[range.clone()], requests),
            |k, (scored, tokens)| {
                stats.model_tokens += tokens;
                for (r, ll) in scored {
                    out[r] = Some(ll);
                }
                progress(passes[k].1);
            },
        )?;
        stats.seconds = start.elapsed().as_secs_f64();
        Ok((out.into_iter().map(|l| l.expect("every request is in one unit")).collect(), stats))
    }

    /// `[n, t]` id tensor of right-padded rows (padding id 0).
    fn ids_tensor<R: AsRef<[u32]>>(&self, rows: &[R], t: usize) -> Tensor<B, 2, Int> {
        let mut data = vec![0i64; rows.len() * t];
        for (r, row) in rows.iter().enumerate() {
            for (j, &id) in row.as_ref().iter().enumerate() {
                data[r * t + j] = id as i64;
            }
        }
        Tensor::from_data(TensorData::new(data, [rows.len(), t]), &self.model.device())
    }

    fn index_tensor(&self, idx: &[usize]) -> Tensor<B, 1, Int> {
        let data: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
        Tensor::from_data(TensorData::new(data, [idx.len()]), &self.model.device())
    }

    /// One forward pass over `units` (each: a context and some of its requests). The contexts run
    /// as one right-padded batch whose keys/values are kept; the continuations (minus their last
    /// token) continue them with [`CausalLm::forward_suffix`]. The LM head runs only on the positions
    /// that predict a continuation token. Returns `(request index, loglik)` and the tokens run.
    fn score_pass(
        &self,
        units: &[(&[u32], Vec<usize>)],
        requests: &[EncodedRequest],
    ) -> Result<(Vec<(usize, Loglik)>, usize)> {
        let layers = self.model.num_layers();
        let hidden = self.model.config.hidden_size;
        let g = units.len();
        let ctx_lens: Vec<usize> = units.iter().map(|(c, _)| c.len()).collect();
        let cmax = ctx_lens.iter().copied().max().unwrap_or(0);
        let contexts: Vec<&[u32]> = units.iter().map(|(c, _)| *c).collect();
        let (states, cache) = self.model.forward_hidden_capture(
            self.ids_tensor(&contexts, cmax),
            Some(&ctx_lens),
            &ForwardSpec::default(),
            layers,
        );
        let mut tokens: usize = ctx_lens.iter().sum();
        // Hidden rows to score: first each context's last position (predicts every cont[0] of it) …
        let last_pos: Vec<usize> = ctx_lens.iter().enumerate().map(|(u, &c)| u * cmax + c - 1).collect();
        let mut parts = vec![states.last.reshape([g * cmax, hidden]).select(0, self.index_tensor(&last_pos))];
        // … then the continuation positions of every request with more than one token.
        let suffix: Vec<(usize, usize)> = units
            .iter()
            .enumerate()
            .flat_map(|(u, (_, members))| members.iter().map(move |&r| (u, r)))
            .filter(|&(_, r)| requests[r].continuation.len() > 1)
            .collect();
        let mut suffix_row_base = HashMap::new();
        if !suffix.is_empty() {
            let rows: Vec<&[u32]> = suffix
                .iter()
                .map(|&(_, r)| {
                    let c = &requests[r].continuation;
                    &c[..c.len() - 1]
                })
                .collect();
            let s = rows.iter().map(|r| r.len()).max().unwrap_or(0);
            let prefix = cache.select_rows(&suffix.iter().map(|&(u, _)| u).collect::<Vec<_>>());
            let prefix_lens: Vec<usize> = suffix.iter().map(|&(u, _)| ctx_lens[u]).collect();
            let suffix_lens: Vec<usize> = rows.iter().map(|r| r.len()).collect();
            let h = self.model.forward_suffix(&prefix, &prefix_lens, self.ids_tensor(&rows, s), &suffix_lens, layers);
            let mut pos = Vec::new();
            for (k, (&(_, r), len)) in suffix.iter().zip(&suffix_lens).enumerate() {
                suffix_row_base.insert(r, g + pos.len());
                pos.extend((0..*len).map(|j| k * s + j));
            }
            tokens += pos.len();
            parts.push(h.reshape([suffix.len() * s, hidden]).select(0, self.index_tensor(&pos)));
        }
        let rows = Tensor::cat(parts, 0);
        let logits = self.model.head_2d(self.model.final_norm(rows, false), false);
        // (row, target) of every scored token, request by request.
        let mut pairs: Vec<(usize, u32)> = Vec::new();
        let mut spans: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
        for (u, (_, members)) in units.iter().enumerate() {
            for &r in members {
                let c = &requests[r].continuation;
                let start = pairs.len();
                pairs.push((u, c[0]));
                if let Some(&base) = suffix_row_base.get(&r) {
                    pairs.extend(c[1..].iter().enumerate().map(|(j, &t)| (base + j, t)));
                }
                spans.push((r, start..pairs.len()));
            }
        }
        let [n, v] = logits.dims();
        let flat: Vec<usize> = pairs.iter().map(|&(row, t)| row * v + t as usize).collect();
        let target: Vec<f32> = logits
            .clone()
            .reshape([n * v])
            .select(0, self.index_tensor(&flat))
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(tensor_err)?;
        let greedy: Vec<i64> =
            logits.clone().argmax(1).into_data().convert::<i64>().to_vec::<i64>().map_err(tensor_err)?;
        let lse: Vec<f32> = logsumexp_rows(logits).into_data().convert::<f32>().to_vec::<f32>().map_err(tensor_err)?;
        let scored = spans
            .into_iter()
            .map(|(r, span)| {
                let logprob = span.clone().map(|p| (target[p] - lse[pairs[p].0]) as f64).sum();
                let is_greedy = span.clone().all(|p| greedy[pairs[p].0] == pairs[p].1 as i64);
                (r, Loglik { logprob, is_greedy, tokens: span.len() })
            })
            .collect();
        Ok((scored, tokens))
    }

    /// Token ids that end a QA answer: every id whose text contains a newline, plus EOS.
    pub fn stop_tokens(&self) -> &[u32] {
        self.stop_tokens.get_or_init(|| {
            let mut stop: Vec<u32> = (0..self.tokenizer.get_vocab_size(true) as u32)
                .filter(|&id| self.tokenizer.decode(&[id], false).is_ok_and(|s| s.contains(GENERATION_STOP)))
                .collect();
            stop.extend(self.model.config.eos_token_ids.iter().copied());
            stop.sort_unstable();
            stop.dedup();
            stop
        })
    }

    /// Greedy continuation of `prompt` until a newline, EOS or `max_new_tokens` (lm-eval's
    /// `generate_until` with `until: ["\n"]`).
    pub fn generate_until(&self, id: &str, prompt: &str, max_new_tokens: usize) -> Result<Generation> {
        let mut out = self.generate_until_many(&[(id, prompt)], max_new_tokens, &mut |_| {})?;
        Ok(out.pop().expect("one generation per prompt"))
    }

    /// [`generate_until`](Self::generate_until) for `(id, prompt)` pairs, decoded together in batches
    /// of up to the scorer's batch size ([`dft_models::generate::generate_batch`]: prompts packed by
    /// length, the LM head only on each prompt's last position, finished rows drop out); the same
    /// tokens as one at a time. `progress` gets the number of prompts finished.
    pub fn generate_until_many(
        &self,
        prompts: &[(&str, &str)],
        max_new_tokens: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Generation>> {
        // lm-eval keeps the last `max_length - max_gen_toks` prompt tokens.
        let keep = self.model.config.max_position_embeddings.saturating_sub(max_new_tokens).max(1);
        let mut encoded = Vec::with_capacity(prompts.len());
        for &(id, prompt) in prompts {
            let (prompt, special) = self.wrap(prompt)?;
            let mut ids = encode(self.tokenizer, &prompt, special)?;
            if ids.is_empty() {
                return Err(EvalError::EmptyPrompt { id: id.to_string() });
            }
            if ids.len() > keep {
                ids.drain(..ids.len() - keep);
            }
            encoded.push(ids);
        }
        let cfg = dft_models::generate::GenerateConfig {
            max_new_tokens,
            sampling: dft_models::generate::Sampling::Greedy,
            stop_tokens: self.stop_tokens().to_vec(),
        };
        let generated = dft_models::generate::generate_batch(self.model, &encoded, &cfg, self.batch_size, progress)
            .map_err(|e| EvalError::ModelOutput { message: e.to_string() })?;
        encoded
            .into_iter()
            .zip(generated)
            .map(|(ids, g)| {
                let text =
                    self.tokenizer.decode(&g.ids, true).map_err(|e| EvalError::Tokenizer { message: e.to_string() })?;
                Ok(Generation {
                    text: cut_at_stop(&text).to_string(),
                    ids: g.ids,
                    prompt_tokens: ids.len(),
                    prompt_seconds: g.prompt_seconds,
                    seconds: g.seconds,
                })
            })
            .collect()
    }

    /// Scores multiple-choice items: per-choice log-likelihoods, then acc / acc_norm.
    pub fn score_multiple_choice(
        &self,
        items: &[MultipleChoiceItem],
        progress: &mut dyn FnMut(usize),
    ) -> Result<(MCResult, Vec<Vec<Loglik>>, Throughput)> {
        self.score_multiple_choice_batched(items, self.batch_size, progress)
    }

    fn score_multiple_choice_batched(
        &self,
        items: &[MultipleChoiceItem],
        batch_size: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(MCResult, Vec<Vec<Loglik>>, Throughput)> {
        let requests = self.encode_items(items)?;
        let (flat, stats) = self.loglikelihoods_batched(&requests, batch_size, progress)?;
        let mut it = flat.into_iter();
        let per_item: Vec<Vec<Loglik>> =
            items.iter().map(|item| it.by_ref().take(item.choices.len()).collect()).collect();
        let values: Vec<Vec<f64>> = per_item.iter().map(|v| v.iter().map(|l| l.logprob).collect()).collect();
        Ok((score_multiple_choice(items, &values)?, per_item, stats))
    }

    /// Answers generative items greedily and scores them with `metric`'s normalisation.
    pub fn score_generative(
        &self,
        items: &[GenerativeItem],
        metric: crate::metrics::QaNormalization,
        max_new_tokens: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(F1Result, Vec<Generation>, Throughput)> {
        let start = Instant::now();
        let mut stats = Throughput::default();
        let prompts: Vec<(&str, &str)> = items.iter().map(|it| (it.id.as_str(), it.prompt.as_str())).collect();
        let gens = self.generate_until_many(&prompts, max_new_tokens, progress)?;
        stats.add_generations(&gens);
        stats.seconds = start.elapsed().as_secs_f64();
        let texts: Vec<&str> = gens.iter().map(|g| g.text.as_str()).collect();
        Ok((score_generative(items, &texts, metric)?, gens, stats))
    }

    /// Translates `items` greedily (until a newline, EOS or `max_new_tokens`) and scores each
    /// direction with corpus chrF++ and BLEU.
    pub fn score_translation(
        &self,
        items: &[TranslationItem],
        max_new_tokens: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(Vec<TranslationScore>, Vec<Generation>, Throughput)> {
        let start = Instant::now();
        let mut stats = Throughput::default();
        let prompts: Vec<(&str, &str)> = items.iter().map(|it| (it.id.as_str(), it.prompt.as_str())).collect();
        let gens = self.generate_until_many(&prompts, max_new_tokens, progress)?;
        stats.add_generations(&gens);
        stats.seconds = start.elapsed().as_secs_f64();
        let texts: Vec<&str> = gens.iter().map(|g| g.text.as_str()).collect();
        let mut scores = crate::metrics::score_translation(items, &texts)?;
        for s in &mut scores {
            s.truncated = items
                .iter()
                .zip(&gens)
                .filter(|(it, g)| {
                    (it.src, it.tgt) == (s.src, s.tgt)
                        && g.ids.len() >= max_new_tokens
                        && g.ids.last().is_some_and(|t| self.stop_tokens().binary_search(t).is_err())
                })
                .count();
        }
        Ok((scores, gens, stats))
    }

    /// The items [`Scorer::evaluate`] runs for `task` under `limit`: the first `limit` items, or for
    /// translation the first `limit` sentences of each direction.
    pub fn limited(task: &LoadedTask, limit: Option<usize>) -> TaskItems {
        limited(task, limit)
    }

    /// Number of progress units [`Scorer::evaluate`] reports for `task` (requests for multiple
    /// choice, items for generation and translation), after `limit`.
    pub fn progress_len(task: &LoadedTask, limit: Option<usize>) -> usize {
        let n = limit.map_or(task.items.len(), |l| l.min(task.items.len()));
        match &task.items {
            TaskItems::MultipleChoice(v) => v[..n].iter().map(|i| i.choices.len()).sum(),
            TaskItems::Generative(_) => n,
            TaskItems::Translation(_) => Self::limited(task, limit).len(),
        }
    }

    /// Runs one loaded task (its first `opts.limit` items) and scores it with the task's metric.
    pub fn evaluate(
        &self,
        task: &LoadedTask,
        opts: &EvalOptions,
        progress: &mut dyn FnMut(usize),
    ) -> Result<TaskResult> {
        let n = opts.limit.map_or(task.items.len(), |l| l.min(task.items.len()));
        if n == 0 {
            let files: Vec<String> = task.files.iter().map(|f| f.display().to_string()).collect();
            let detail = if task.items.is_empty() {
                format!(" (no items in {})", files.join(", "))
            } else {
                " (the limit is 0)".to_string()
            };
            return Err(EvalError::NoItems { task: task.task.name().into(), lang: task.lang.code().into(), detail });
        }
        let metric = task.task.metric(task.lang);
        if let TaskItems::Translation(_) = &task.items {
            let subset = LoadedTask { items: Self::limited(task, opts.limit), ..task.clone() };
            let items = subset.items.as_translation().expect("translation items");
            let (directions, generations, t) = self.score_translation(items, opts.mt_max_new_tokens, progress)?;
            let outcome = TaskOutcome::Translation { directions, generations };
            return Ok(TaskResult::new(&subset, metric, outcome, t));
        }
        let (outcome, throughput) = match (&task.items, metric) {
            (TaskItems::MultipleChoice(items), _) => {
                let (result, logliks, t) =
                    self.score_multiple_choice_batched(&items[..n], opts.batch_size, progress)?;
                (TaskOutcome::MultipleChoice { result, logliks }, t)
            }
            (TaskItems::Generative(items), TaskMetric::F1(norm)) => {
                let (mut result, generations, t) =
                    self.score_generative(&items[..n], norm, opts.max_new_tokens, progress)?;
                if let Some(ws) = task.task.whitespace_f1(task.lang) {
                    let texts: Vec<&str> = generations.iter().map(|g| g.text.as_str()).collect();
                    result.f1_whitespace = Some(score_generative(&items[..n], &texts, ws)?.f1);
                }
                (TaskOutcome::Generative { result, generations }, t)
            }
            (TaskItems::Generative(_), other) => {
                return Err(EvalError::InvalidItem {
                    id: task.task.name().into(),
                    message: format!("generative items with a non-F1 metric {other:?}"),
                })
            }
            (TaskItems::Translation(_), _) => unreachable!("handled above"),
        };
        Ok(TaskResult::new(task, metric, outcome, throughput))
    }
}

/// The items [`Scorer::evaluate`] runs for `task` under `limit`: the first `limit` items, or for
/// translation the first `limit` sentences of each direction.
pub fn limited(task: &LoadedTask, limit: Option<usize>) -> TaskItems {
    let n = limit.map_or(task.items.len(), |l| l.min(task.items.len()));
    match &task.items {
        TaskItems::MultipleChoice(v) => TaskItems::MultipleChoice(v[..n].to_vec()),
        TaskItems::Generative(v) => TaskItems::Generative(v[..n].to_vec()),
        TaskItems::Translation(v) => {
            TaskItems::Translation(crate::tasks::flores::first_per_direction(v, limit.unwrap_or(usize::MAX)))
        }
    }
}

/// Block size of the two-level sum in [`logsumexp_rows`].
const LSE_BLOCK: usize = 256;

/// `log(sum(exp(x)))` of each row of `[n, v]`. Max-shifted, and the exponentials are summed in
/// blocks of `LSE_BLOCK` (256) and then across blocks: a straight f32 sum over a 49k vocabulary drifts by
/// ~1e-4 per position (the many tiny terms round away), which adds up to > 1e-3 over a 70-token
/// continuation; the blocked sum stays within ~1e-6 of f64.
pub fn logsumexp_rows<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, v] = x.dims();
    let max = x.clone().max_dim(1);
    let mut e = (x - max.clone()).exp();
    let pad = (LSE_BLOCK - v % LSE_BLOCK) % LSE_BLOCK;
    if pad > 0 {
        e = Tensor::cat(vec![e, Tensor::zeros([n, pad], &max.device())], 1);
    }
    let blocks = (v + pad) / LSE_BLOCK;
    let sum = e.reshape([n, blocks, LSE_BLOCK]).sum_dim(2).sum_dim(1).reshape([n, 1]);
    (max + sum.log()).reshape([n])
}

fn tensor_err(e: impl std::fmt::Debug) -> EvalError {
    EvalError::ModelOutput { message: format!("{e:?}") }
}

#[cfg(test)]
mod tests {
    use super::requests::tests::byte_tokenizer;
    use super::*;
    use crate::testutil::tiny_model;
    use burn::backend::Flex;
    use burn::tensor::activation::log_softmax;

    type B = Flex;

    /// The same log-likelihood with a plain full forward of `ctx ++ cont[..n-1]`.
    fn reference(model: &CausalLm<B>, r: &EncodedRequest) -> (f64, bool) {
        let ids: Vec<i64> =
            r.context.iter().chain(&r.continuation[..r.continuation.len() - 1]).map(|&x| x as i64).collect();
        let t = ids.len();
        let x = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, t]), &Default::default());
        let logits = model.forward(x, None);
        let v = model.config.vocab_size;
        let logp: Vec<f32> = log_softmax(logits.clone(), 2).into_data().to_vec().unwrap();
        let raw: Vec<f32> = logits.into_data().to_vec().unwrap();
        let c = r.context.len();
        let mut sum = 0.0;
        let mut greedy = true;
        for (j, &tok) in r.continuation.iter().enumerate() {
            let row = (c - 1 + j) * v;
            sum += logp[row + tok as usize] as f64;
            let best = (0..v).max_by(|&a, &b| raw[row + a].total_cmp(&raw[row + b])).unwrap();
            greedy &= best == tok as usize;
        }
        (sum, greedy)
    }

    #[test]
    fn decode_rate_counts_wall_time_when_batches_run_side_by_side() {
        let rate = |seconds, busy_seconds, prompt_seconds| {
            Throughput { seconds, busy_seconds, prompt_seconds, decode_tokens: 400, ..Default::default() }
                .decode_tokens_per_s()
        };
        // Two batches side by side for 10 s of wall time: 20 s busy, of which 4 s prompt passes.
        assert!((rate(10.0, 20.0, 4.0) - 400.0 / 8.0).abs() < 1e-9, "{}", rate(10.0, 20.0, 4.0));
        // One batch at a time: busy ≈ wall.
        assert!((rate(10.0, 10.0, 2.0) - 50.0).abs() < 1e-9);
        // Results written before `busy_seconds` existed read as 0: the old formula.
        assert!((rate(10.0, 0.0, 2.0) - 50.0).abs() < 1e-9);
    }

    /// Passes and generation groups run side by side on several threads ([`dft_models::jobs`]): the
    /// log-likelihoods, greedy flags, generated ids and progress total are the same as on one thread.
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let tok = byte_tokenizer();
        let model = tiny_model(tok.get_vocab_size(true));
        let scorer = Scorer::new(&model, &tok).unwrap();
        let gen_scorer = Scorer::new(&model, &tok).unwrap().with_batch_size(2);
        let items: Vec<MultipleChoiceItem> = (0..23)
            .map(|i| {
                let ctx = "context ".repeat(1 + i % 5) + &i.to_string();
                MultipleChoiceItem::new(
                    format!("{i}"),
                    &ctx,
                    vec![" a".into(), " bb c".into(), " d".repeat(1 + i % 3)],
                    0,
                )
                .unwrap()
            })
            .collect();
        let requests = scorer.encode_items(&items).unwrap();
        let prompts: Vec<(String, String)> = (0..9).map(|i| (format!("g{i}"), "Q: ".repeat(1 + i % 4) + "?")).collect();
        let prompts: Vec<(&str, &str)> = prompts.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut seen = 0;
                let (lls, stats) = scorer.loglikelihoods_batched(&requests, 2, &mut |k| seen += k).unwrap();
                let gens = gen_scorer.generate_until_many(&prompts, 6, &mut |_| {}).unwrap();
                let lls: Vec<(u64, bool, usize)> =
                    lls.iter().map(|l| (l.logprob.to_bits(), l.is_greedy, l.tokens)).collect();
                let ids: Vec<Vec<u32>> = gens.into_iter().map(|g| g.ids).collect();
                (lls, ids, seen, stats.model_tokens)
            })
        };
        let one = run(1);
        assert_eq!(one.2, requests.len());
        for threads in [2, 3] {
            assert_eq!(run(threads), one, "{threads} threads");
        }
    }

    #[test]
    fn shared_context_batches_equal_one_full_forward_per_request() {
        let tok = byte_tokenizer();
        let model = tiny_model(tok.get_vocab_size(true));
        let scorer = Scorer::new(&model, &tok).unwrap();
        let items = vec![
            MultipleChoiceItem::new("a", "The cat sat on the", vec!["mat".into(), "big red mat".into(), "b".into()], 0)
                .unwrap(),
            MultipleChoiceItem::new("b", "", vec!["xy z".into(), "no".into()], 1).unwrap(),
            MultipleChoiceItem::new("c", "Q: 1+1?\nA: ", vec!["2".into(), "two".into()], 0).unwrap(),
            MultipleChoiceItem::new("d", "", vec!["yes".into(), "b".into()], 0).unwrap(),
        ];
        let requests = scorer.encode_items(&items).unwrap();
        assert_eq!(requests[3].context, vec![0], "empty context → BOS");
        let mut seen = 0;
        for batch in [1, 2, 16] {
            let (lls, stats) = scorer.loglikelihoods_batched(&requests, batch, &mut |k| seen += k).unwrap();
            assert_eq!(lls.len(), requests.len());
            for (r, ll) in requests.iter().zip(&lls) {
                let (want, greedy) = reference(&model, r);
                assert!((ll.logprob - want).abs() < 1e-4, "batch {batch}: {} vs {want}", ll.logprob);
                assert_eq!(ll.is_greedy, greedy);
                assert_eq!(ll.tokens, r.continuation.len());
            }
            if batch == 16 {
                // One pass: contexts a, c and the BOS shared by b and d run once each.
                let contexts = requests[0].context.len() + requests[5].context.len() + 1;
                let suffixes: usize = requests.iter().map(|r| r.continuation.len() - 1).sum();
                assert_eq!(stats.model_tokens, contexts + suffixes);
            }
        }
        assert_eq!(seen, 3 * requests.len());
        let (mc, per_item, _) = scorer.score_multiple_choice(&items, &mut |_| {}).unwrap();
        assert_eq!((mc.n, per_item.len(), per_item[0].len()), (4, 4, 3));
    }

    #[test]
    fn flores_translation_end_to_end_is_deterministic() {
        let dir = dft_test_support::scratch::ScratchDir::new(format!("dft-eval-mt-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("flores200")).unwrap();
        std::fs::write(dir.join("flores200/eng_Latn.devtest.sample"), "The cat sat.\nIt rains.\nGood day.\nHi.\n")
            .unwrap();
        std::fs::write(dir.join("flores200/zho_Hans.devtest.sample"), "猫坐着。\n下雨了。\n好日子。\n你好。\n")
            .unwrap();
        let task = crate::tasks::load(&dir, crate::Task::Flores, crate::Lang::Zh).unwrap();
        assert_eq!(task.items.len(), 6, "3 sentences (the 4th is the shot) × 2 directions");
        let tok = byte_tokenizer();
        let model = tiny_model(tok.get_vocab_size(true));
        let scorer = Scorer::new(&model, &tok).unwrap();
        let opts = EvalOptions { limit: Some(2), mt_max_new_tokens: 5, ..Default::default() };
        assert_eq!(Scorer::<B>::progress_len(&task, opts.limit), 4);
        let mut seen = 0;
        let a = scorer.evaluate(&task, &opts, &mut |k| seen += k).unwrap();
        assert_eq!(seen, 4);
        let b = scorer.evaluate(&task, &opts, &mut |_| {}).unwrap();
        let TaskOutcome::Translation { directions, generations } = &a.outcome else { panic!("{:?}", a.outcome) };
        assert_eq!(a.ids, ["flores-en-zh/0", "flores-en-zh/1", "flores-zh-en/0", "flores-zh-en/1"]);
        assert_eq!((a.metric.as_str(), a.n, directions.len()), ("chrf++", 4, 2));
        assert_eq!(a.score, directions[0].chrf_pp);
        for d in directions {
            assert_eq!(d.n, 2);
            assert!((0.0..=100.0).contains(&d.chrf_pp) && (0.0..=100.0).contains(&d.bleu), "{d:?}");
            assert!(d.truncated <= 2);
        }
        assert!(generations.iter().all(|g| g.ids.len() <= 5 && !g.text.contains('\n')));
        // Deterministic: same generations and scores (timings aside).
        let TaskOutcome::Translation { directions: d2, generations: g2 } = &b.outcome else { unreachable!() };
        assert_eq!(directions, d2);
        assert_eq!(
            generations.iter().map(|g| &g.ids).collect::<Vec<_>>(),
            g2.iter().map(|g| &g.ids).collect::<Vec<_>>()
        );
        // The scores are the metrics of the stripped texts.
        let items = &task.items.as_translation().unwrap()[..2];
        let hyps: Vec<&str> = generations[..2].iter().map(|g| g.text.as_str()).collect();
        assert_eq!(crate::metrics::score_translation(items, &hyps).unwrap()[0].chrf_pp, directions[0].chrf_pp);
    }

    /// `--apply-chat-template`: contexts and generation prompts are the template's rendering of one user
    /// turn (generation prompt on), encoded without special tokens; empty contexts are left alone.
    #[test]
    fn chat_template_wraps_contexts_and_prompts() {
        let tok = byte_tokenizer();
        let model = tiny_model(tok.get_vocab_size(true));
        let template = dft_models::ChatTemplate::new(
            "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<bot>{% endif %}",
            Default::default(),
            std::path::Path::new("<test>"),
        )
        .unwrap();
        let plain = Scorer::new(&model, &tok).unwrap();
        let chat = Scorer::new(&model, &tok).unwrap().with_chat_template(&template);
        let item = MultipleChoiceItem {
            id: "i".into(),
            context: "Q: a b".into(),
            choices: vec!["x".into(), "y".into()],
            gold: 0,
        };
        let got = chat.encode_items(std::slice::from_ref(&item)).unwrap();
        let want = encode_request_with(&tok, chat.prefix_token(), "i", "<user>Q: a b\n<bot>", " x", false).unwrap();
        assert_eq!(got[0], want);
        assert_ne!(got[0], plain.encode_items(std::slice::from_ref(&item)).unwrap()[0]);
        let empty = MultipleChoiceItem {
            id: "e".into(),
            context: String::new(),
            choices: vec!["x".into(), "y".into()],
            gold: 0,
        };
        assert_eq!(chat.encode_items(std::slice::from_ref(&empty)).unwrap(), plain.encode_items(&[empty]).unwrap());
        let g = chat.generate_until("q", "Question?", 0).unwrap();
        assert_eq!(g.prompt_tokens, encode(&tok, "<user>Question?\n<bot>", false).unwrap().len());
    }

    #[test]
    fn blocked_logsumexp_matches_f64_for_any_width() {
        for v in [7usize, 256, 1000, 49152] {
            let vals: Vec<f32> = (0..2 * v).map(|i| ((i * 7919 % 1000) as f32) / 50.0 - 10.0).collect();
            let x = Tensor::<B, 2>::from_data(TensorData::new(vals.clone(), [2, v]), &Default::default());
            let got: Vec<f32> = logsumexp_rows(x).into_data().to_vec().unwrap();
            for (r, g) in got.iter().enumerate() {
                let row = &vals[r * v..(r + 1) * v];
                let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
                let want = m + row.iter().map(|&y| (y as f64 - m).exp()).sum::<f64>().ln();
                assert!((*g as f64 - want).abs() < 2e-6 * want.abs().max(1.0), "v={v}: {g} vs {want}");
            }
        }
    }

    #[test]
    fn generation_stops_at_newline_tokens_and_bad_requests_fail() {
        let tok = byte_tokenizer();
        let model = tiny_model(tok.get_vocab_size(true));
        let scorer = Scorer::new(&model, &tok).unwrap();
        let nl = encode(&tok, "\n", false).unwrap()[0];
        assert!(scorer.stop_tokens().contains(&nl) && scorer.stop_tokens().contains(&1));
        let g = scorer.generate_until("q", "Question: x\n\nAnswer:", 8).unwrap();
        assert!(g.ids.len() <= 8 && !g.text.contains('\n'));
        if let Some(p) = g.ids.iter().position(|id| scorer.stop_tokens().contains(id)) {
            assert_eq!(p, g.ids.len() - 1, "nothing after the stop token");
        }
        assert!(matches!(scorer.generate_until("q", "", 8), Err(EvalError::EmptyPrompt { .. })));
        let bad =
            MultipleChoiceItem { id: "e".into(), context: "ctx".into(), choices: vec!["".into(), "x".into()], gold: 0 };
        // `" " + ""` is a lone space: it tokenises, so it is scored; a context that swallows it is not.
        assert!(scorer.encode_items(std::slice::from_ref(&bad)).is_ok());
        let bad = MultipleChoiceItem { context: "   ".into(), ..bad };
        assert!(matches!(scorer.encode_items(&[bad]), Err(EvalError::EmptyPrompt { .. })));
    }
}
