//! Representation alignment between English and a target language (the paper's Figure 4): how
//! close a model's hidden states of a sentence and of its translation are, block by block.
//!
//! - **Pooling** ([`pooled_hidden_states`]): each sentence is tokenised as the model sees text
//!   (`encode(text, add_special_tokens = true)`), run alone (right-padded batches, causal
//!   attention, so padding never reaches a real position), and every block output `h_0..h_L`
//!   (`h_0` = embeddings, `h_L` = last block before the final norm, as everywhere in dft-models) is
//!   averaged over the sentence's tokens — special tokens (BOS/EOS) excluded.
//! - **Cosines** ([`layer_alignment`]): per block, `cos(h̄_en(i), h̄_x(i))` of the matched pairs and,
//!   as a baseline, for each English sentence the mean cosine to the *other* target sentences
//!   (`j ≠ i`); both as mean with a 95% Student-t interval over sentences, and their paired
//!   difference (the gap, with its own interval). The same after per-language centring (each
//!   language's mean pooled vector at that block subtracted from its sentences): LLM hidden states
//!   are anisotropic — raw cosines of unrelated sentences are high — and the two languages sit at
//!   different offsets; centring removes both, leaving how well the sentence-specific parts agree.
//!   Retrieval@1: how often the target sentence closest to an English sentence is its translation
//!   (raw and centred cosine; chance = 1/n).
//! - **t-SNE** ([`crate::tsne`]) of both languages' pooled states at chosen blocks, centred and
//!   scaled to unit length (distances follow the centred cosine), with the k-NN language purity of
//!   the points before and after embedding (1 = the languages form separate clusters, ≈ 0.5 =
//!   mixed).
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use dft_layers_select::stats::MeanCi;
use dft_models::{CausalLm, ForwardSpec};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::error::{EvalError, Result};
use crate::lang::Lang;
use crate::scoring::requests::snippet;
use crate::tasks::flores::ParallelSentences;
use crate::tsne::{knn_purity, tsne, TsneOptions};

/// Mean-pooled hidden states of `n` sentences at every block `0..=L`.
#[derive(Clone, Debug, PartialEq)]
pub struct PooledStates {
    /// `L + 1`.
    pub layers: usize,
    pub dim: usize,
    pub n: usize,
    /// Tokens pooled per sentence.
    pub tokens: Vec<usize>,
    /// `[layer][sentence][dim]`, row-major.
    data: Vec<f32>,
}

impl PooledStates {
    /// The pooled vector of sentence `i` at block `layer`.
    pub fn vector(&self, layer: usize, i: usize) -> &[f32] {
        let start = (layer * self.n + i) * self.dim;
        &self.data[start..start + self.dim]
    }

    /// All sentences at block `layer`, in f64.
    pub fn layer_f64(&self, layer: usize) -> Vec<Vec<f64>> {
        (0..self.n).map(|i| self.vector(layer, i).iter().map(|&v| v as f64).collect()).collect()
    }
}

/// `encode(text, true)` with the positions to pool (non-special tokens), truncated to `max_len`.
fn encode_for_pooling(tok: &Tokenizer, text: &str, index: usize, max_len: usize) -> Result<(Vec<u32>, Vec<bool>)> {
    let enc = tok
        .encode(text, true)
        .map_err(|e| EvalError::Tokenizer { message: format!("cannot encode {:?}: {e}", snippet(text)) })?;
    let mut ids = enc.get_ids().to_vec();
    let mut pool: Vec<bool> = enc.get_special_tokens_mask().iter().map(|&m| m == 0).collect();
    pool.resize(ids.len(), true);
    ids.truncate(max_len);
    pool.truncate(max_len);
    if !pool.iter().any(|&p| p) {
        return Err(EvalError::EmptyPrompt { id: format!("sentence {index} ({:?})", snippet(text)) });
    }
    Ok((ids, pool))
}

/// Mean-pooled `h_0..=h_L` of each text (see the module doc), `batch_size` sentences of similar
/// length per forward pass. `progress` gets the number of sentences finished since its last call.
pub fn pooled_hidden_states<B: Backend>(
    model: &CausalLm<B>,
    tokenizer: &Tokenizer,
    texts: &[String],
    batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<PooledStates> {
    let layers = model.num_layers() + 1;
    let dim = model.config.hidden_size;
    let n = texts.len();
    let max_len = model.config.max_position_embeddings.max(1);
    let encoded: Vec<(Vec<u32>, Vec<bool>)> =
        texts.iter().enumerate().map(|(i, t)| encode_for_pooling(tokenizer, t, i, max_len)).collect::<Result<_>>()?;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].0.len()));
    let mut data = vec![0f32; layers * n * dim];
    let device = model.device();
    let spec = ForwardSpec { upto: None, keep: (0..layers).collect() };
    for chunk in order.chunks(batch_size.max(1)) {
        let b = chunk.len();
        let t = chunk.iter().map(|&i| encoded[i].0.len()).max().unwrap_or(1);
        let mut ids = vec![0i64; b * t];
        let mut weights = vec![0f32; b * t];
        let mut lengths = Vec::with_capacity(b);
        for (r, &i) in chunk.iter().enumerate() {
            let (row, pool) = &encoded[i];
            let count = pool.iter().filter(|&&p| p).count() as f32;
            for (j, (&id, &p)) in row.iter().zip(pool).enumerate() {
                ids[r * t + j] = id as i64;
                weights[r * t + j] = if p { 1.0 / count } else { 0.0 };
            }
            lengths.push(row.len());
        }
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, t]), &device);
        let w = Tensor::<B, 3>::from_data(TensorData::new(weights, [b, t, 1]), &device);
        let states = model.forward_hidden(ids, Some(&lengths), &spec);
        let pooled: Vec<Tensor<B, 3>> = (0..layers)
            .map(|k| {
                let h = states.get(k).expect("every block was kept").clone();
                (h * w.clone()).sum_dim(1) // [b, 1, dim]
            })
            .collect();
        let values: Vec<f32> = Tensor::cat(pooled, 1)
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| EvalError::ModelOutput { message: format!("{e:?}") })?;
        for (r, &i) in chunk.iter().enumerate() {
            for k in 0..layers {
                let src = (r * layers + k) * dim;
                let dst = (k * n + i) * dim;
                data[dst..dst + dim].copy_from_slice(&values[src..src + dim]);
            }
        }
        progress(b);
    }
    let tokens = encoded.iter().map(|(_, p)| p.iter().filter(|&&x| x).count()).collect();
    Ok(PooledStates { layers, dim, n, tokens, data })
}

/// Cosine similarity in f64 (0 when either vector is zero).
pub fn cosine<A: Copy + Into<f64>>(a: &[A], b: &[A]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y): (f64, f64) = (x.into(), y.into());
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

/// Unit-length copies (zero vectors stay zero).
fn normalized(v: &[Vec<f64>]) -> Vec<Vec<f64>> {
    v.iter()
        .map(|x| {
            let norm = x.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm == 0.0 {
                x.clone()
            } else {
                x.iter().map(|a| a / norm).collect()
            }
        })
        .collect()
}

/// Each side minus its own mean (per-language centring).
fn centered_per_language(en: &[Vec<f64>], tgt: &[Vec<f64>]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let (e, _) = centered(en, &[]);
    let (t, _) = centered(tgt, &[]);
    (e, t)
}

/// `en` and `tgt` with their joint mean subtracted.
fn centered(en: &[Vec<f64>], tgt: &[Vec<f64>]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let dim = en.first().map_or(0, |v| v.len());
    let mut mean = vec![0.0; dim];
    for v in en.iter().chain(tgt) {
        for (m, a) in mean.iter_mut().zip(v) {
            *m += a;
        }
    }
    let count = (en.len() + tgt.len()).max(1) as f64;
    mean.iter_mut().for_each(|m| *m /= count);
    let sub = |vs: &[Vec<f64>]| vs.iter().map(|v| v.iter().zip(&mean).map(|(a, m)| a - m).collect()).collect();
    (sub(en), sub(tgt))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Matched cosines, per-sentence mean mismatched cosines and retrieval@1 (%) of unit vectors.
fn matched_mismatched(en: &[Vec<f64>], tgt: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>, f64) {
    let n = en.len();
    let mut matched = Vec::with_capacity(n);
    let mut mismatched = Vec::with_capacity(n);
    let mut hits = 0usize;
    for i in 0..n {
        let sims: Vec<f64> = tgt.iter().map(|t| dot(&en[i], t)).collect();
        matched.push(sims[i]);
        if n > 1 {
            mismatched.push((sims.iter().sum::<f64>() - sims[i]) / (n - 1) as f64);
        }
        let best = (0..n).max_by(|&a, &b| sims[a].total_cmp(&sims[b]).then(b.cmp(&a))).unwrap_or(0);
        hits += usize::from(best == i);
    }
    (matched, mismatched, 100.0 * hits as f64 / n.max(1) as f64)
}

/// Alignment statistics of one block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerAlignment {
    /// Block index k (0 = embeddings, L = last block, before the final norm).
    pub layer: usize,
    /// `cos(h̄_en(i), h̄_x(i))` over pairs i.
    pub matched: MeanCi,
    /// Per English sentence, the mean cosine to the other target sentences.
    pub mismatched: MeanCi,
    /// Per sentence `matched − mismatched` (paired).
    pub gap: MeanCi,
    /// Matched, after per-language centring.
    pub matched_centered: MeanCi,
    /// Mismatched, after per-language centring.
    pub mismatched_centered: MeanCi,
    /// Paired gap after per-language centring.
    pub gap_centered: MeanCi,
    /// % of English sentences whose nearest target sentence (raw cosine) is their translation.
    pub retrieval_top1: f64,
    /// The same with the centred cosine.
    pub retrieval_top1_centered: f64,
}

/// Per-block alignment of parallel pooled states (`en` and `tgt` hold the same sentences in the
/// same order). Returns `L + 1` entries.
pub fn layer_alignment(en: &PooledStates, tgt: &PooledStates) -> Result<Vec<LayerAlignment>> {
    if (en.layers, en.dim, en.n) != (tgt.layers, tgt.dim, tgt.n) {
        return Err(EvalError::LengthMismatch {
            what: "pooled target states (layers × sentences × dim)".into(),
            expected: en.layers * en.n * en.dim,
            got: tgt.layers * tgt.n * tgt.dim,
        });
    }
    Ok((0..en.layers)
        .map(|k| {
            let (e, t) = (en.layer_f64(k), tgt.layer_f64(k));
            let (m, mm, retrieval_top1) = matched_mismatched(&normalized(&e), &normalized(&t));
            let (ec, tc) = centered_per_language(&e, &t);
            let (mc, mmc, retrieval_top1_centered) = matched_mismatched(&normalized(&ec), &normalized(&tc));
            let diff = |a: &[f64], b: &[f64]| MeanCi::of(a.iter().zip(b).map(|(x, y)| x - y));
            LayerAlignment {
                layer: k,
                gap: diff(&m, &mm),
                gap_centered: diff(&mc, &mmc),
                matched: MeanCi::of(m),
                mismatched: MeanCi::of(mm),
                matched_centered: MeanCi::of(mc),
                mismatched_centered: MeanCi::of(mmc),
                retrieval_top1,
                retrieval_top1_centered,
            }
        })
        .collect())
}

/// A t-SNE picture of one block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TsneLayer {
    pub layer: usize,
    pub options: TsneOptions,
    /// Perplexity after clamping to the number of points.
    pub perplexity: f64,
    pub kl: f64,
    /// 2-D points of the English sentences, then of the target sentences (same order).
    pub en: Vec<[f64; 2]>,
    pub tgt: Vec<[f64; 2]>,
    /// k of the purity numbers.
    pub k: usize,
    /// k-NN language purity among the t-SNE input vectors (centred, unit length).
    pub language_purity_input: f64,
    /// The same on the 2-D points.
    pub language_purity_2d: f64,
}

/// t-SNE of both languages' pooled states at block `layer` (see the module doc).
pub fn tsne_layer(
    en: &PooledStates,
    tgt: &PooledStates,
    layer: usize,
    opts: &TsneOptions,
    k: usize,
) -> Result<TsneLayer> {
    if layer >= en.layers {
        return Err(EvalError::InvalidItem {
            id: format!("t-SNE layer {layer}"),
            message: format!("the model has blocks 0..={}", en.layers - 1),
        });
    }
    let (ec, tc) = centered(&en.layer_f64(layer), &tgt.layer_f64(layer));
    let x: Vec<Vec<f64>> = normalized(&ec).into_iter().chain(normalized(&tc)).collect();
    let labels: Vec<bool> = (0..x.len()).map(|i| i >= en.n).collect();
    let r = tsne(&x, opts).map_err(|message| EvalError::ModelOutput { message })?;
    let y: Vec<Vec<f64>> = r.points.iter().map(|p| p.to_vec()).collect();
    Ok(TsneLayer {
        layer,
        options: *opts,
        perplexity: r.perplexity,
        kl: r.kl,
        en: r.points[..en.n].to_vec(),
        tgt: r.points[en.n..].to_vec(),
        k,
        language_purity_input: knn_purity(&x, &labels, k),
        language_purity_2d: knn_purity(&y, &labels, k),
    })
}

/// Settings of [`analyze`].
#[derive(Clone, Debug, PartialEq)]
pub struct AlignOptions {
    /// Sentences per forward pass.
    pub batch_size: usize,
    /// Blocks to draw with t-SNE; empty = the middle block `L / 2` and the last `L`.
    pub tsne_layers: Vec<usize>,
    pub tsne: TsneOptions,
    /// k of the k-NN language purity.
    pub knn: usize,
}

impl Default for AlignOptions {
    fn default() -> Self {
        AlignOptions { batch_size: 8, tsne_layers: vec![], tsne: TsneOptions::default(), knn: 10 }
    }
}

/// The result of [`analyze`] (`align.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlignReport {
    pub model: String,
    pub lang: Lang,
    /// Sentence pairs.
    pub n: usize,
    /// Number of blocks L (the curves have L + 1 points).
    pub num_layers: usize,
    pub files: Vec<PathBuf>,
    /// 0-based line of each pair in the files.
    pub lines: Vec<usize>,
    /// Tokens pooled, summed over sentences.
    pub tokens_en: usize,
    pub tokens_tgt: usize,
    pub layers: Vec<LayerAlignment>,
    pub tsne: Vec<TsneLayer>,
    /// Seconds of the forward passes and of the t-SNE runs.
    pub seconds_forward: f64,
    pub seconds_tsne: f64,
    /// The command line, for the record.
    #[serde(default)]
    pub command: String,
}

/// Pools both sides of `pairs` through `model`, computes the per-block alignment and the t-SNE
/// pictures. `progress(done, total)` is called after each batch of the forward passes.
pub fn analyze<B: Backend>(
    model: &CausalLm<B>,
    tokenizer: &Tokenizer,
    pairs: &ParallelSentences,
    lang: Lang,
    model_name: &str,
    opts: &AlignOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<AlignReport> {
    if pairs.english.len() < 2 || pairs.english.len() != pairs.target.len() {
        return Err(EvalError::InvalidItem {
            id: "alignment".into(),
            message: format!(
                "needs at least 2 aligned sentence pairs (got {} English, {} target)",
                pairs.english.len(),
                pairs.target.len()
            ),
        });
    }
    let started = Instant::now();
    let total = 2 * pairs.english.len();
    let mut done = 0;
    let mut step = |k: usize| {
        done += k;
        progress(done, total);
    };
    let en = pooled_hidden_states(model, tokenizer, &pairs.english, opts.batch_size, &mut step)?;
    let tgt = pooled_hidden_states(model, tokenizer, &pairs.target, opts.batch_size, &mut step)?;
    let seconds_forward = started.elapsed().as_secs_f64();
    let layers = layer_alignment(&en, &tgt)?;
    let l = model.num_layers();
    let chosen = if opts.tsne_layers.is_empty() { vec![l / 2, l] } else { opts.tsne_layers.clone() };
    let t0 = Instant::now();
    let tsne = chosen.iter().map(|&k| tsne_layer(&en, &tgt, k, &opts.tsne, opts.knn)).collect::<Result<Vec<_>>>()?;
    Ok(AlignReport {
        model: model_name.to_string(),
        lang,
        n: en.n,
        num_layers: l,
        files: vec![pairs.english_file.clone(), pairs.target_file.clone()],
        lines: pairs.lines.clone(),
        tokens_en: en.tokens.iter().sum(),
        tokens_tgt: tgt.tokens.iter().sum(),
        layers,
        tsne,
        seconds_forward,
        seconds_tsne: t0.elapsed().as_secs_f64(),
        command: String::new(),
    })
}

impl AlignReport {
    /// Writes the report as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| EvalError::Results { path: path.to_path_buf(), message: e.to_string() })?;
        std::fs::write(path, text + "\n").map_err(|e| EvalError::io(path, e))
    }

    /// Reads a report written by [`AlignReport::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| EvalError::Results { path: path.to_path_buf(), message: e.to_string() })
    }

    /// Markdown: the per-block table and the t-SNE summary.
    pub fn markdown(&self) -> String {
        let x = self.lang;
        let f = |m: &MeanCi| format!("{:.3} ± {:.3}", m.mean, m.ci95);
        let mut out = format!(
            "Representation alignment en–{x}: {} FLORES pairs, mean-pooled block outputs; cosine mean ± 95% CI \
             over sentences; gap = matched − mismatched (paired); centred = each language's mean vector \
             subtracted; retrieval@1 = % of English sentences whose nearest {x} sentence is the translation \
             (chance {:.0}%).\n\n| block | matched | mismatched | gap | matched (centred) | mismatched (centred) \
             | gap (centred) | retrieval@1 raw / centred |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.n,
            100.0 / self.n.max(1) as f64
        );
        for r in &self.layers {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.0} / {:.0} |\n",
                r.layer,
                f(&r.matched),
                f(&r.mismatched),
                f(&r.gap),
                f(&r.matched_centered),
                f(&r.mismatched_centered),
                f(&r.gap_centered),
                r.retrieval_top1,
                r.retrieval_top1_centered
            ));
        }
        if !self.tsne.is_empty() {
            out.push_str(&format!(
                "\nt-SNE (centred, unit-length pooled states of both languages; {}-NN language purity: 1 = separate \
                 clusters, 0.5 = mixed):\n\n| block | perplexity | KL | purity (input) | purity (2-D) |\n|---:|---:|---:|---:|---:|\n",
                self.tsne[0].k
            ));
            for t in &self.tsne {
                out.push_str(&format!(
                    "| {} | {:.0} | {:.3} | {:.3} | {:.3} |\n",
                    t.layer, t.perplexity, t.kl, t.language_purity_input, t.language_purity_2d
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::requests::tests::byte_tokenizer;
    use crate::testutil::tiny_model;

    #[test]
    fn identical_sentences_have_cosine_one_at_every_block() {
        let tok = byte_tokenizer();
        let model = tiny_model(tok.get_vocab_size(true));
        let texts: Vec<String> =
            ["The cat sat.", "A much longer sentence, with commas.", "x"].map(String::from).to_vec();
        let a = pooled_hidden_states(&model, &tok, &texts, 2, &mut |_| {}).unwrap();
        assert_eq!((a.layers, a.n, a.dim), (model.num_layers() + 1, 3, model.config.hidden_size));
        assert_eq!(a.tokens, vec![12, 36, 1]);
        let rows = layer_alignment(&a, &a).unwrap();
        assert_eq!(rows.len(), model.num_layers() + 1);
        for r in &rows {
            assert!((r.matched.mean - 1.0).abs() < 1e-9 && r.matched.ci95 < 1e-9, "{r:?}");
            assert!((r.matched_centered.mean - 1.0).abs() < 1e-9, "{r:?}");
            assert!(r.mismatched.mean < 1.0 - 1e-6);
            assert!(r.gap.mean > 0.0 && r.gap_centered.mean > 0.0);
            assert_eq!((r.retrieval_top1, r.retrieval_top1_centered), (100.0, 100.0));
        }
        // Batching and padding do not change the pooled vectors; block 0 is the mean embedding.
        let b = pooled_hidden_states(&model, &tok, &texts, 1, &mut |_| {}).unwrap();
        for k in 0..a.layers {
            for i in 0..3 {
                let (u, v) = (a.vector(k, i), b.vector(k, i));
                assert!(u.iter().zip(v).all(|(x, y)| (x - y).abs() < 1e-5), "block {k} sentence {i}");
            }
        }
        let ids = crate::scoring::encode(&tok, "x", true).unwrap();
        let emb: Vec<f32> = model.embed_tokens.val().into_data().to_vec().unwrap();
        let d = model.config.hidden_size;
        let row = &emb[ids[0] as usize * d..(ids[0] as usize + 1) * d];
        assert!(a.vector(0, 2).iter().zip(row).all(|(x, y)| (x - y).abs() < 1e-6));
    }

    #[test]
    fn analysis_end_to_end_on_a_tiny_model() {
        let tok = byte_tokenizer();
        let model = tiny_model(tok.get_vocab_size(true));
        let english: Vec<String> = (0..12).map(|i| format!("Sentence number {i} is here.")).collect();
        let target: Vec<String> = (0..12).map(|i| format!("第{i}句话在这里。")).collect();
        let pairs = ParallelSentences {
            english_file: "en".into(),
            target_file: "zh".into(),
            lines: (0..12).collect(),
            english,
            target,
        };
        let opts =
            AlignOptions { tsne: TsneOptions { iterations: 300, ..Default::default() }, knn: 3, ..Default::default() };
        let mut calls = 0;
        let r = analyze(&model, &tok, &pairs, Lang::Zh, "tiny", &opts, &mut |_, _| calls += 1).unwrap();
        assert_eq!(r.layers.len(), 3);
        assert_eq!(r.tsne.iter().map(|t| t.layer).collect::<Vec<_>>(), [1, 2]);
        assert!(r.tsne.iter().all(|t| t.en.len() == 12 && t.kl.is_finite() && t.perplexity <= 23.0 / 3.0));
        assert!(calls >= 2);
        let again = analyze(&model, &tok, &pairs, Lang::Zh, "tiny", &opts, &mut |_, _| {}).unwrap();
        assert_eq!((&again.layers, &again.tsne), (&r.layers, &r.tsne), "deterministic");
        let md = r.markdown();
        assert!(md.contains("| 2 |") && md.contains("retrieval@1"), "{md}");
        assert!(tsne_layer(
            &PooledStates { layers: 1, dim: 1, n: 0, tokens: vec![], data: vec![] },
            &PooledStates { layers: 1, dim: 1, n: 0, tokens: vec![], data: vec![] },
            5,
            &TsneOptions::default(),
            3
        )
        .is_err());
    }
}
