//! Per-step metrics (one JSON line each) and the loss-curve plot written at the end of a run.

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// One optimiser step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: usize,
    pub epoch: usize,
    pub lr: f64,
    /// Mean over the step's micro-batches of each component.
    pub loss: f64,
    pub main: f64,
    pub lc: Option<f64>,
    pub et: Option<f64>,
    pub grad_norm: f64,
    /// Real (non-padding) tokens processed in this step, all sequence kinds.
    pub tokens: usize,
    pub tokens_per_s: f64,
    pub padding_fraction: f64,
    pub elapsed_s: f64,
    /// Held-out TFT loss, on steps where it was evaluated.
    pub eval_loss: Option<f64>,
}

/// Append-only JSONL writer.
pub struct MetricsWriter {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl MetricsWriter {
    /// Open `path`, keeping only its first `keep_lines` lines (a resumed run rewrites the steps after
    /// its checkpoint).
    pub fn open(path: &Path, keep_lines: usize) -> Result<Self> {
        let io = |e| TrainError::Io { path: path.into(), source: e };
        let kept: String = match std::fs::read_to_string(path) {
            Ok(text) => text.lines().take(keep_lines).map(|l| format!("{l}\n")).collect(),
            Err(_) => String::new(),
        };
        std::fs::write(path, kept).map_err(io)?;
        let file = std::fs::OpenOptions::new().append(true).open(path).map_err(io)?;
        Ok(Self { file, path: path.into() })
    }

    pub fn write(&mut self, m: &StepMetrics) -> Result<()> {
        let line = serde_json::to_string(m).expect("metrics serialise");
        writeln!(self.file, "{line}").map_err(|e| TrainError::Io { path: self.path.clone(), source: e })?;
        self.file.flush().map_err(|e| TrainError::Io { path: self.path.clone(), source: e })
    }
}

pub fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::Io { path: path.into(), source: e })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| TrainError::Checkpoint { path: path.into(), msg: format!("line {}: {e}", i + 1) })
        })
        .collect()
}

/// SVG plot of each loss component (and the eval loss) against the step.
pub fn plot_losses(metrics: &[StepMetrics], path: &Path, title: &str) -> Result<()> {
    use plotters::prelude::*;
    if metrics.is_empty() {
        return Ok(());
    }
    let series: Vec<(&str, RGBColor, Vec<(f64, f64)>)> = vec![
        ("total", BLACK, metrics.iter().map(|m| (m.step as f64, m.loss)).collect()),
        ("main (TFT/SFT)", BLUE, metrics.iter().map(|m| (m.step as f64, m.main)).collect()),
        ("LC", GREEN, metrics.iter().filter_map(|m| m.lc.map(|v| (m.step as f64, v))).collect()),
        ("ET", RED, metrics.iter().filter_map(|m| m.et.map(|v| (m.step as f64, v))).collect()),
        (
            "eval (held-out TFT)",
            MAGENTA,
            metrics.iter().filter_map(|m| m.eval_loss.map(|v| (m.step as f64, v))).collect(),
        ),
    ];
    let ymax =
        series.iter().flat_map(|s| s.2.iter().map(|p| p.1)).filter(|v| v.is_finite()).fold(0.0f64, f64::max) * 1.05;
    let xmax = metrics.last().map(|m| m.step).unwrap_or(1).max(1) as f64;
    let err = |e: String| TrainError::Io { path: path.into(), source: std::io::Error::other(e) };
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax.max(1e-3))
        .map_err(|e| err(e.to_string()))?;
    chart.configure_mesh().x_desc("optimiser step").y_desc("loss (nats)").draw().map_err(|e| err(e.to_string()))?;
    for (name, color, pts) in series.into_iter().filter(|s| !s.2.is_empty()) {
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
