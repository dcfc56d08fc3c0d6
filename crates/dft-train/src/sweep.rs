//! The layer sweep (paper Figure 3, METHOD.md §4): short DFT runs that put one deep-supervision loss
//! (ET by default, or LC) at each of several blocks, plus a TFT baseline with the same data, steps and
//! seed, compared by the held-out loss — and by any benchmark scores the caller adds per run.
//!
//! Every run is an ordinary [`crate::train`] run in its own directory under the sweep's `out_dir`
//! (`tft/`, `et-5/`, `et-10/`, …), so each has its metrics, loss plot and exported checkpoint; the sweep
//! writes `sweep.json`, `sweep.md` (a table) and `sweep.svg` (held-out loss per block, the baseline as a
//! dashed line) and rewrites them after every run, so a long sweep can be watched and, with `resume`,
//! continued: finished runs (their `summary.json`) are read back, an interrupted one resumes from its
//! newest checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use dft_losses::AuxLoss;
use serde::{Deserialize, Serialize};

use crate::checkpoint::list_checkpoints;
use crate::config::{LayerChoice, Method, TrainConfig};
use crate::error::{Result, TrainError};
use crate::metrics::read_metrics;
use crate::trainer::{train, TrainHooks, TrainSummary};

/// Which deep-supervision loss moves across blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SweepAux {
    Lc,
    Et,
}

impl SweepAux {
    pub fn name(self) -> &'static str {
        match self {
            SweepAux::Lc => "lc",
            SweepAux::Et => "et",
        }
    }
}

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepSpec {
    pub aux: SweepAux,
    /// Blocks (1..=L) at which the swept loss is put, one run each.
    pub layers: Vec<usize>,
    /// Optimiser steps per run (0: the base config's `train.max_steps` / epochs).
    pub steps: usize,
    /// Also run the TFT baseline.
    pub baseline: bool,
    /// Keep the other deep-supervision loss as configured (default: the swept loss alone, as in the
    /// paper's figure).
    pub keep_other: bool,
    /// Keep each run's exported `final/` checkpoint (its training checkpoints are always removed once
    /// the run is summarised: a sweep of SmolLM2 would otherwise keep 1.6 GB per run).
    pub keep_models: bool,
    pub out_dir: PathBuf,
    /// Read finished runs back and continue an interrupted one.
    pub resume: bool,
}

/// One run of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRun {
    /// `tft`, `et-5`, `lc-2`, …
    pub label: String,
    /// The block of the swept loss (`None` for the baseline).
    pub layer: Option<usize>,
    pub out_dir: PathBuf,
    pub steps: usize,
    pub eval_loss_before: Option<f64>,
    pub eval_loss_after: Option<f64>,
    /// Mean main (TFT) loss over the last quarter of the run's steps.
    pub train_main_last: Option<f64>,
    /// Mean swept-loss value over the last quarter of the steps.
    pub aux_last: Option<f64>,
    pub wall_s: f64,
    /// Extra per-run scores from the caller (benchmark metrics), by name.
    #[serde(default)]
    pub scores: BTreeMap<String, f64>,
}

/// The whole sweep, as written to `sweep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    pub aux: SweepAux,
    pub model: String,
    pub lang: String,
    pub steps: usize,
    pub runs: Vec<SweepRun>,
}

fn bad(key: &str, msg: impl Into<String>) -> TrainError {
    TrainError::Config { key: key.into(), msg: msg.into() }
}

/// The run configurations of a sweep: `(label, layer, config)`, baseline first. Checks every layer
/// against the model depth (read from the checkpoint header, no weights loaded).
pub fn plan(base: &TrainConfig, spec: &SweepSpec) -> Result<Vec<(String, Option<usize>, TrainConfig)>> {
    base.check_ranges()?;
    if spec.layers.is_empty() && !spec.baseline {
        return Err(bad("--layers", "nothing to run: no layers and no baseline"));
    }
    let path = crate::trainer::resolve_model_path(&base.model.path)?;
    let depth = dft_models::peek_config(&path)?.num_hidden_layers;
    for &k in &spec.layers {
        if k == 0 || k > depth {
            return Err(bad(
                "--layers",
                format!("block {k} is out of range: the model has {depth} blocks (1..={depth})"),
            ));
        }
    }
    let with_steps = |mut c: TrainConfig, dir: &str| {
        if spec.steps > 0 {
            c.train.max_steps = spec.steps;
        }
        c.train.out_dir = spec.out_dir.join(dir);
        c
    };
    let mut out = Vec::new();
    if spec.baseline {
        let mut c = base.clone();
        c.method.name = Method::Tft;
        out.push(("tft".to_string(), None, with_steps(c, "tft")));
    }
    for &k in &spec.layers {
        let mut c = base.clone();
        c.method.name = Method::Dft;
        let m = &mut c.method;
        let (swept, other) = match spec.aux {
            SweepAux::Et => (&mut m.et, &mut m.lc),
            SweepAux::Lc => (&mut m.lc, &mut m.et),
        };
        if *swept == AuxLoss::Off {
            *swept = AuxLoss::Logits;
        }
        if !spec.keep_other {
            *other = AuxLoss::Off;
        }
        match spec.aux {
            SweepAux::Et => m.et_layer = LayerChoice::Index(k),
            SweepAux::Lc => m.lc_layer = LayerChoice::Index(k),
        }
        c.resolve_layers(depth)?;
        let label = format!("{}-{k}", spec.aux.name());
        out.push((label.clone(), Some(k), with_steps(c, &label)));
    }
    Ok(out)
}

fn last_quarter_mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len().div_ceil(4);
    let tail = &xs[xs.len() - n..];
    Some(tail.iter().sum::<f64>() / tail.len() as f64)
}

fn summarise(label: &str, layer: Option<usize>, aux: SweepAux, s: &TrainSummary) -> Result<SweepRun> {
    let metrics = read_metrics(&s.metrics)?;
    let main: Vec<f64> = metrics.iter().map(|m| m.main).collect();
    let swept: Vec<f64> = metrics
        .iter()
        .filter_map(|m| match aux {
            SweepAux::Et => m.et,
            SweepAux::Lc => m.lc,
        })
        .collect();
    Ok(SweepRun {
        label: label.into(),
        layer,
        out_dir: s.out_dir.clone(),
        steps: s.steps,
        eval_loss_before: s.eval_loss_before,
        eval_loss_after: s.eval_loss_after,
        train_main_last: last_quarter_mean(&main),
        aux_last: if layer.is_some() { last_quarter_mean(&swept) } else { None },
        wall_s: s.wall_s,
        scores: BTreeMap::new(),
    })
}

fn read_summary(dir: &Path) -> Option<TrainSummary> {
    let text = std::fs::read_to_string(dir.join("summary.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Run the sweep. `scores(label, summary)` may evaluate the run's exported checkpoint and return named
/// scores (it runs before the checkpoint is removed). The report files are rewritten after every run.
pub fn run_sweep<B: AutodiffBackend>(
    base: &TrainConfig,
    spec: &SweepSpec,
    device: &B::Device,
    hooks: &TrainHooks,
    mut scores: impl FnMut(&str, &TrainSummary) -> Result<BTreeMap<String, f64>>,
) -> Result<SweepReport> {
    let runs = plan(base, spec)?;
    std::fs::create_dir_all(&spec.out_dir).map_err(|e| TrainError::Io { path: spec.out_dir.clone(), source: e })?;
    let steps = runs.first().map(|r| r.2.train.max_steps).unwrap_or(0);
    let mut report = SweepReport {
        aux: spec.aux,
        model: base.model.path.clone(),
        lang: base.data.lang.clone(),
        steps,
        runs: Vec::new(),
    };
    let earlier = if spec.resume { report_on_disk(&spec.out_dir) } else { None };
    let started = Instant::now();
    let total = runs.len();
    let mut trained = 0usize;
    for (n, (label, layer, cfg)) in runs.into_iter().enumerate() {
        let dir = cfg.train.out_dir.clone();
        let done = if spec.resume { read_summary(&dir) } else { None };
        let (summary, fresh) = match done {
            Some(s) => {
                eprintln!("sweep {}/{total} {label}: finished earlier ({}), read back", n + 1, dir.display());
                (s, false)
            }
            None => {
                let eta = if trained > 0 {
                    let per = started.elapsed().as_secs_f64() / trained as f64;
                    format!(", ETA {:.0} min", per * (total - n) as f64 / 60.0)
                } else {
                    String::new()
                };
                eprintln!(
                    "sweep {}/{total} {label}: training {} steps → {}{eta}",
                    n + 1,
                    cfg.train.max_steps,
                    dir.display()
                );
                let resume = spec.resume && !list_checkpoints(&dir).is_empty();
                if !resume && dir.exists() {
                    std::fs::remove_dir_all(&dir).map_err(|e| TrainError::Io { path: dir.clone(), source: e })?;
                }
                let s = train::<B>(&cfg, resume, device, hooks)?;
                trained += 1;
                (s, true)
            }
        };
        let mut run = summarise(&label, layer, spec.aux, &summary)?;
        let previous = earlier.as_ref().and_then(|r| r.runs.iter().find(|r| r.label == label));
        run.scores = match previous {
            Some(p) if !fresh && !p.scores.is_empty() => p.scores.clone(),
            _ if summary.export_dir.is_dir() => scores(&label, &summary)?,
            _ => BTreeMap::new(),
        };
        for (_, ck) in list_checkpoints(&dir) {
            std::fs::remove_dir_all(&ck).map_err(|e| TrainError::Io { path: ck.clone(), source: e })?;
        }
        if !spec.keep_models && summary.export_dir.is_dir() {
            let d = &summary.export_dir;
            std::fs::remove_dir_all(d).map_err(|e| TrainError::Io { path: d.clone(), source: e })?;
        }
        eprintln!("sweep {}/{total} {label}: {}", n + 1, run_line(&run));
        report.runs.push(run);
        write_report(&report, &spec.out_dir)?;
    }
    Ok(report)
}

fn report_on_disk(dir: &Path) -> Option<SweepReport> {
    let text = std::fs::read_to_string(dir.join("sweep.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn fmt(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "–".into())
}

fn run_line(r: &SweepRun) -> String {
    let mut s = format!(
        "held-out loss {} → {} (ppl {}), train main {}",
        fmt(r.eval_loss_before),
        fmt(r.eval_loss_after),
        r.eval_loss_after.map(|l| format!("{:.3}", l.exp())).unwrap_or_else(|| "–".into()),
        fmt(r.train_main_last)
    );
    for (k, v) in &r.scores {
        s += &format!(", {k} {v:.2}");
    }
    s
}

impl SweepReport {
    /// Markdown table: one row per run.
    pub fn table(&self) -> String {
        let names: Vec<&String> = {
            let mut v: Vec<&String> = self.runs.iter().flat_map(|r| r.scores.keys()).collect();
            v.sort();
            v.dedup();
            v
        };
        let aux = self.aux.name().to_uppercase();
        let mut s = format!(
            "| run | {aux} block | held-out loss after | Δ vs TFT | held-out ppl | train main (last ¼) | {aux} (last ¼) |"
        );
        for n in &names {
            s += &format!(" {n} |");
        }
        s += "\n|---|---:|---:|---:|---:|---:|---:|";
        s += &"---:|".repeat(names.len());
        s += "\n";
        let base = self.runs.iter().find(|r| r.layer.is_none()).and_then(|r| r.eval_loss_after);
        for r in &self.runs {
            let delta = match (r.eval_loss_after, base, r.layer) {
                (Some(a), Some(b), Some(_)) => format!("{:+.4}", a - b),
                _ => "–".into(),
            };
            s += &format!(
                "| {} | {} | {} | {delta} | {} | {} | {} |",
                r.label,
                r.layer.map(|k| k.to_string()).unwrap_or_else(|| "–".into()),
                fmt(r.eval_loss_after),
                r.eval_loss_after.map(|l| format!("{:.3}", l.exp())).unwrap_or_else(|| "–".into()),
                fmt(r.train_main_last),
                fmt(r.aux_last),
            );
            for n in &names {
                s += &format!(" {} |", r.scores.get(*n).map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into()));
            }
            s += "\n";
        }
        if let Some(b) = self.runs.iter().find(|r| r.layer.is_none()).and_then(|r| r.eval_loss_before) {
            s += &format!("\nHeld-out loss before training: {b:.4} (ppl {:.3}).\n", b.exp());
        }
        s
    }

    /// The block with the lowest held-out loss after training, among the swept runs.
    pub fn best(&self) -> Option<&SweepRun> {
        self.runs
            .iter()
            .filter(|r| r.layer.is_some() && r.eval_loss_after.is_some())
            .min_by(|a, b| a.eval_loss_after.unwrap().total_cmp(&b.eval_loss_after.unwrap()))
    }

    /// SVG: held-out loss after training per block (the baseline dashed).
    pub fn plot(&self, path: &Path) -> Result<()> {
        plot_sweep(self, path).map_err(|e| TrainError::Io { path: path.into(), source: std::io::Error::other(e) })
    }
}

fn plot_sweep(r: &SweepReport, path: &Path) -> std::result::Result<(), String> {
    use plotters::prelude::*;
    let pts: Vec<(f64, f64)> =
        r.runs.iter().filter_map(|x| Some((x.layer? as f64, x.eval_loss_after?))).collect::<Vec<_>>();
    let base = r.runs.iter().find(|x| x.layer.is_none()).and_then(|x| x.eval_loss_after);
    let ys: Vec<f64> = pts.iter().map(|p| p.1).chain(base).collect();
    if ys.is_empty() {
        return Ok(());
    }
    let (lo, hi) = ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
    let pad = ((hi - lo) * 0.15).max(1e-3);
    let xmax = pts.iter().map(|p| p.0).fold(1.0, f64::max) + 1.0;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    let e = |x: &dyn std::fmt::Display| x.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let title = format!("{} sweep on {} ({} steps per run)", r.aux.name().to_uppercase(), r.lang, r.steps);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..xmax, (lo - pad)..(hi + pad))
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc(format!("block of the {} loss", r.aux.name().to_uppercase()))
        .y_desc("held-out TFT loss after training (nats)")
        .draw()
        .map_err(|x| e(&x))?;
    let blue = RGBColor(31, 119, 180);
    chart
        .draw_series(LineSeries::new(pts.clone(), blue.stroke_width(2)))
        .map_err(|x| e(&x))?
        .label(format!("DFT, {} at block k", r.aux.name().to_uppercase()))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], blue.stroke_width(2)));
    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, blue.filled()))).map_err(|x| e(&x))?;
    if let Some(b) = base {
        let grey = RGBColor(120, 120, 120);
        let dashes: Vec<Vec<(f64, f64)>> = (0..((xmax * 4.0) as usize))
            .step_by(2)
            .map(|k| vec![(k as f64 / 4.0, b), (((k + 1) as f64) / 4.0, b)])
            .collect();
        for d in dashes {
            chart.draw_series(LineSeries::new(d, grey.stroke_width(2))).map_err(|x| e(&x))?;
        }
        chart
            .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
            .map_err(|x| e(&x))?
            .label("TFT baseline")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], grey.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// `sweep.json`, `sweep.md` and `sweep.svg` under `dir`.
pub fn write_report(report: &SweepReport, dir: &Path) -> Result<()> {
    let json = dir.join("sweep.json");
    let text = serde_json::to_string_pretty(report).expect("sweep report serialises");
    let tmp = dir.join(".sweep.json.tmp");
    std::fs::write(&tmp, text + "\n").map_err(|e| TrainError::Io { path: tmp.clone(), source: e })?;
    std::fs::rename(&tmp, &json).map_err(|e| TrainError::Io { path: json.clone(), source: e })?;
    let md = dir.join("sweep.md");
    let mut doc = format!(
        "# {} sweep — {} on {}, {} steps per run\n\n{}",
        report.aux.name().to_uppercase(),
        report.model,
        report.lang,
        report.steps,
        report.table()
    );
    if let Some(b) = report.best() {
        doc += &format!("\nLowest held-out loss: {} (block {}).\n", b.label, b.layer.unwrap_or(0));
    }
    std::fs::write(&md, doc).map_err(|e| TrainError::Io { path: md.clone(), source: e })?;
    report.plot(&dir.join("sweep.svg"))
}
