//! `method.lc_layer = "auto"` / `method.et_layer = "auto"`: the critical layers of a run chosen from
//! the logit-lens entropy of the model being trained (METHOD.md §4, dft-layers-select).
//!
//! The sample is the queries (instruction, then the input on the next line when there is one) of the
//! first `method.auto_samples` training examples, in the target language and in English — the text the
//! deep supervision is about. The curve on the target side goes through the same detector as `dft
//! layers` (smoothing, relative drop thresholds, minimum spacing, fallback with a reason); the report is
//! written to `train.out_dir` as `layers.json`, `layers.md` and `layers.svg` before training starts, and
//! a resumed run reads the layers back from `layers.json` instead of recomputing them.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use dft_data::{ParallelCorpus, Query};
use dft_layers_select::{analyze, AnalysisOptions, LayerReport, ParallelText};
use dft_models::CausalLm;

use crate::error::{Result, TrainError};

/// File names under the run's output directory.
pub const LAYERS_JSON: &str = "layers.json";

fn query_text(q: &Query) -> String {
    if q.has_input() {
        format!("{}\n{}", q.instruction, q.input)
    } else {
        q.instruction.clone()
    }
}

/// The target/English query texts of the first `samples` examples.
pub fn sample_text(corpus: &ParallelCorpus, train_path: &Path, samples: usize) -> ParallelText {
    let picked = corpus.examples.iter().take(samples);
    let (target, english): (Vec<String>, Vec<String>) =
        picked.map(|e| (query_text(&e.x_tgt), query_text(&e.x_en))).unzip();
    ParallelText {
        target_path: train_path.to_path_buf(),
        english_path: Some(train_path.to_path_buf()),
        target,
        english: Some(english),
    }
}

/// The layers a previous run of this output directory chose (`layers.json`), if any.
pub fn saved_layers(out_dir: &Path, num_layers: usize) -> Result<Option<LayerReport>> {
    let path = out_dir.join(LAYERS_JSON);
    if !path.is_file() {
        return Ok(None);
    }
    let report = LayerReport::read_json(&path)?;
    if report.num_layers != num_layers {
        return Err(TrainError::Checkpoint {
            path,
            msg: format!(
                "was computed for a model with {} blocks, this one has {num_layers}; remove it or use another out_dir",
                report.num_layers
            ),
        });
    }
    Ok(Some(report))
}

/// Compute the entropy curves of `text` with `model`, detect (i, j), and write the report files into
/// `out_dir`. Returns the report (its `critical` holds i, j and the reasons).
pub fn select_layers<B: Backend>(
    model: &CausalLm<B>,
    tokenizer: &tokenizers::Tokenizer,
    text: &ParallelText,
    lang: &str,
    model_name: &str,
    out_dir: &Path,
    progress: bool,
) -> Result<LayerReport> {
    let opts = AnalysisOptions { latent_pairs: None, ..Default::default() };
    let command = format!("auto layers: {} {lang} queries of {}", text.target.len(), text.target_path.display());
    let report = analyze(model, tokenizer, text, lang, model_name, &command, &opts, |stage, done, total| {
        if progress && done == total {
            eprintln!("auto layers: lens entropy on {total} {stage} queries done");
        }
    })?;
    write_report(&report, out_dir)?;
    Ok(report)
}

/// `layers.json`, `layers.md` (table + the detector's reasons) and `layers.svg` under `out_dir`.
pub fn write_report(report: &LayerReport, out_dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out_dir).map_err(|e| TrainError::Io { path: out_dir.into(), source: e })?;
    let (json, md, svg) = (out_dir.join(LAYERS_JSON), out_dir.join("layers.md"), out_dir.join("layers.svg"));
    report.write_json(&json)?;
    report.plot(&svg)?;
    let doc = format!("```\n{}\n```\n\n{}\n```\n{}```\n", report.command, report.table(), report.summary());
    std::fs::write(&md, doc).map_err(|e| TrainError::Io { path: md.clone(), source: e })?;
    Ok(vec![json, md, svg])
}

/// Fill the `None` (auto) slots of `(lc, et)` from the report.
pub fn apply(layers: (Option<usize>, Option<usize>), report: &LayerReport) -> (usize, usize) {
    (layers.0.unwrap_or(report.critical.i), layers.1.unwrap_or(report.critical.j))
}
