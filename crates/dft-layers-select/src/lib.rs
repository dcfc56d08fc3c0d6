//! dft-layers-select: choose DFT's critical layers `i` (end of Language Conversion) and `j` (start of
//! English Thinking) from the logit lens (METHOD.md §4).
//!
//! * [`entropy`] — per-block entropy of `softmax(lm_head(final_norm(h_k)))`, stable in f32, over
//!   right-padded batches of real text; mean ± 95% CI over all positions and at the last position.
//! * [`latent`] — the "latent English" probe: lens probability of the English word on a repetition task.
//! * [`critical`] — drop detection on the entropy curve (smoothing, relative thresholds, spacing) with
//!   the reasons and a documented fallback.
//! * [`data`], [`report`] — line-aligned parallel text in; JSON, a Markdown table and an SVG plot out.
//!
//! [`analyze`] wires them together for the `dft layers` command. Everything is generic over Burn's
//! `Backend`.

#![forbid(unsafe_code)]

pub mod critical;
pub mod data;
pub mod entropy;
pub mod error;
pub mod latent;
pub mod report;
pub mod stats;

use burn::tensor::backend::Backend;
use dft_models::CausalLm;

pub use critical::{critical_layers, paper_default_layers, smooth, CriticalLayers, DetectOptions, EntropyDrop};
pub use data::{find_language_file, flores_code, load_parallel, read_lines, tokenize, ParallelText};
pub use entropy::{
    lens_entropies, lens_entropies_with_progress, lens_last_position_mass, row_entropy, to_bits, EntropyCurve,
    LayerEntropy, LensOptions, TokenEntropies,
};
pub use error::{LayersError, Result};
pub use latent::{
    build_probe, builtin_word_pairs, language_label, latent_english, parse_word_pairs, read_word_pairs,
    repetition_prompt, LatentEnglish, LatentLayer, LatentProbe, WordPair, DEFAULT_SHOTS,
};
pub use report::{CurveReport, LayerReport, LayerRow};
pub use stats::MeanCi;

/// What [`analyze`] runs.
#[derive(Debug, Clone, Default)]
pub struct AnalysisOptions {
    pub lens: LensOptions,
    pub detect: DetectOptions,
    /// Word pairs for the latent-English probe (`None`: skip it).
    pub latent_pairs: Option<Vec<WordPair>>,
    /// Few-shot examples per probe prompt (0 → [`DEFAULT_SHOTS`]).
    pub shots: usize,
    /// User-chosen `(i, j)`, replacing the detected ones (the curve and the detector's reasons are kept).
    pub override_layers: Option<(usize, usize)>,
}

/// Entropy curves of `text` (target, and English when present), the latent-English probe, and the
/// critical layers detected on the target curve. `progress(stage, done, total)` is called as work finishes.
#[allow(clippy::too_many_arguments)]
pub fn analyze<B: Backend>(
    model: &CausalLm<B>,
    tok: &tokenizers::Tokenizer,
    text: &ParallelText,
    lang: &str,
    model_name: &str,
    command: &str,
    opts: &AnalysisOptions,
    mut progress: impl FnMut(&str, usize, usize),
) -> Result<LayerReport> {
    let layers = model.num_layers();
    let curve_of =
        |texts: &[String], what: &str, progress: &mut dyn FnMut(&str, usize, usize)| -> Result<(EntropyCurve, usize)> {
            let ids = tokenize(tok, texts, what)?;
            let tokens = ids.iter().map(Vec::len).sum();
            let ent = lens_entropies_with_progress(model, &ids, &opts.lens, |d, t| progress(what, d, t))?;
            Ok((ent.curve(), tokens))
        };
    let (tc, tt) = curve_of(&text.target, lang, &mut progress)?;
    let target = CurveReport::new(lang, &text.target_path, text.target.len(), tt, &tc);
    let english = match (&text.english, &text.english_path) {
        (Some(en), Some(path)) => {
            let (ec, et) = curve_of(en, "en", &mut progress)?;
            Some(CurveReport::new("en", path, en.len(), et, &ec))
        }
        _ => None,
    };
    let latent = match &opts.latent_pairs {
        Some(pairs) => {
            let shots = if opts.shots == 0 { DEFAULT_SHOTS } else { opts.shots };
            let probe = build_probe(pairs, &language_label(lang), tok, shots)?;
            progress("latent English", 0, probe.prompt_ids.len());
            let l = latent_english(model, &probe, &opts.lens)?;
            progress("latent English", probe.prompt_ids.len(), probe.prompt_ids.len());
            Some(l)
        }
        None => None,
    };
    let critical = critical_layers(&tc.means(), &opts.detect)?;
    let mut report = LayerReport {
        model: model_name.into(),
        num_layers: layers,
        target,
        english,
        latent,
        critical,
        command: command.into(),
    };
    if opts.override_layers.is_some() {
        report.redetect(&opts.detect, opts.override_layers)?;
    }
    Ok(report)
}
