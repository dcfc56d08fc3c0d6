//! SVG pictures of an [`AlignReport`]: the cosine curves per block (matched vs mismatched pairs,
//! raw and centred, shaded 95% intervals) and the t-SNE scatter of one block (English vs target,
//! matched pairs optionally joined by a faint line).
use std::path::Path;

use plotters::prelude::*;

use crate::align::{AlignReport, LayerAlignment, TsneLayer};
use crate::error::{EvalError, Result};

const BLUE: RGBColor = RGBColor(31, 119, 180);
const RED: RGBColor = RGBColor(214, 39, 40);
const GREY: RGBColor = RGBColor(127, 127, 127);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const PURPLE: RGBColor = RGBColor(148, 103, 189);

fn plot_err(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> EvalError + '_ {
    move |e| EvalError::Results { path: path.to_path_buf(), message: format!("plot: {e}") }
}

fn model_name(model: &str) -> String {
    Path::new(model).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| model.to_string())
}

/// Cosine per block: matched and mismatched pairs (solid, shaded 95% CI), and the same after
/// per-language centring (thinner, dashed).
pub fn plot_cosines(report: &AlignReport, path: &Path) -> Result<()> {
    let err = plot_err(path);
    type Get = fn(&LayerAlignment) -> dft_layers_select::stats::MeanCi;
    let curves: [(&str, Get, RGBColor, bool); 4] = [
        ("matched pairs", |r| r.matched, BLUE, false),
        ("mismatched pairs", |r| r.mismatched, GREY, false),
        ("matched, centred", |r| r.matched_centered, GREEN, true),
        ("mismatched, centred", |r| r.mismatched_centered, PURPLE, true),
    ];
    let ymin = curves
        .iter()
        .flat_map(|(_, get, _, _)| report.layers.iter().map(move |r| get(r).lo()))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::min);
    let ymin = (ymin * 10.0).floor() / 10.0;
    let xmax = report.num_layers as f64;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!(
        "Cosine of mean-pooled hidden states, en vs {} — {} ({} FLORES pairs)",
        report.lang,
        model_name(&report.model),
        report.n
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 19))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(56)
        // Cosines never exceed 1: the band above holds the legend.
        .build_cartesian_2d(0f64..xmax.max(1.0), ymin..1.32f64)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .y_label_formatter(&|y| if *y > 1.0 + 1e-9 { String::new() } else { format!("{y:.1}") })
        .x_desc("block k (0 = embeddings, L = last block)")
        .y_desc("cosine, mean ± 95% CI")
        .draw()
        .map_err(|e| err(&e))?;
    for (label, get, color, dashed) in curves {
        let upper: Vec<(f64, f64)> = report.layers.iter().map(|r| (r.layer as f64, get(r).hi())).collect();
        let lower: Vec<(f64, f64)> = report.layers.iter().rev().map(|r| (r.layer as f64, get(r).lo())).collect();
        let band: Vec<(f64, f64)> = upper.into_iter().chain(lower).filter(|p| p.1.is_finite()).collect();
        chart
            .draw_series(std::iter::once(Polygon::new(band, color.mix(if dashed { 0.10 } else { 0.18 }).filled())))
            .map_err(|e| err(&e))?;
        let pts: Vec<(f64, f64)> =
            report.layers.iter().map(|r| (r.layer as f64, get(r).mean)).filter(|p| p.1.is_finite()).collect();
        let style = color.stroke_width(if dashed { 1 } else { 2 });
        let anno = if dashed {
            chart.draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style)).map_err(|e| err(&e))?
        } else {
            chart.draw_series(LineSeries::new(pts.clone(), style)).map_err(|e| err(&e))?
        };
        anno.label(label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        if !dashed {
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|e| err(&e))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// The t-SNE scatter of one block: English blue, target red; `pair_lines` joins each matched pair.
pub fn plot_tsne(report: &AlignReport, t: &TsneLayer, path: &Path, pair_lines: bool) -> Result<()> {
    let err = plot_err(path);
    let all = t.en.iter().chain(&t.tgt);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for p in all {
        x0 = x0.min(p[0]);
        x1 = x1.max(p[0]);
        y0 = y0.min(p[1]);
        y1 = y1.max(p[1]);
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (-1.0, 1.0, -1.0, 1.0);
    }
    let (px, py) = (((x1 - x0) * 0.05).max(1e-6), ((y1 - y0) * 0.05).max(1e-6));
    // Room for the legend (top) and the purity note (bottom).
    let (y0, y1) = (y0 - py, y1 + 2.5 * py);
    let root = SVGBackend::new(path, (760, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!(
        "t-SNE of pooled h_{} — {} (en vs {}, {} pairs; perplexity {:.0}, KL {:.2})",
        t.layer,
        model_name(&report.model),
        report.lang,
        t.en.len(),
        t.perplexity,
        t.kl
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(40)
        .build_cartesian_2d(x0 - px..x1 + px, y0 - py..y1 + py)
        .map_err(|e| err(&e))?;
    chart.configure_mesh().disable_mesh().draw().map_err(|e| err(&e))?;
    if pair_lines {
        chart
            .draw_series(
                t.en.iter().zip(&t.tgt).map(|(a, b)| PathElement::new(vec![(a[0], a[1]), (b[0], b[1])], GREY.mix(0.3))),
            )
            .map_err(|e| err(&e))?;
    }
    for (pts, color, label) in [(&t.en, BLUE, "en".to_string()), (&t.tgt, RED, report.lang.to_string())] {
        chart
            .draw_series(pts.iter().map(|p| Circle::new((p[0], p[1]), 3, color.mix(0.8).filled())))
            .map_err(|e| err(&e))?
            .label(format!("{label} ({} sentences)", pts.len()))
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
    }
    chart
        .draw_series(std::iter::once(Text::new(
            format!(
                "{}-NN language purity: {:.2} in 2-D, {:.2} before t-SNE (1 = separate, 0.5 = mixed)",
                t.k, t.language_purity_2d, t.language_purity_input
            ),
            (x0 - px * 0.8, y0 - py * 0.6),
            ("sans-serif", 13),
        )))
        .map_err(|e| err(&e))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
