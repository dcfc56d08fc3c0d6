//! The outputs of a layer analysis: a JSON record, a Markdown table and an SVG plot of entropy per
//! block for the target language against English (the paper's Figure 2a).
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::critical::{critical_layers, CriticalLayers, DetectOptions};
use crate::entropy::{to_bits, EntropyCurve};
use crate::error::{LayersError, Result};
use crate::latent::LatentEnglish;
use crate::stats::MeanCi;

/// Lens entropy of one block in nats and bits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LayerRow {
    pub layer: usize,
    pub all_nats: MeanCi,
    pub all_bits: MeanCi,
    pub last_nats: MeanCi,
    pub last_bits: MeanCi,
}

/// One language's curve and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveReport {
    pub lang: String,
    pub data: PathBuf,
    pub inputs: usize,
    pub tokens: usize,
    pub layers: Vec<LayerRow>,
}

impl CurveReport {
    pub fn new(lang: &str, data: &Path, inputs: usize, tokens: usize, curve: &EntropyCurve) -> Self {
        let bits = to_bits(1.0);
        let layers = curve
            .layers
            .iter()
            .map(|l| LayerRow {
                layer: l.layer,
                all_nats: l.all,
                all_bits: l.all.scaled(bits),
                last_nats: l.last,
                last_bits: l.last.scaled(bits),
            })
            .collect();
        Self { lang: lang.into(), data: data.into(), inputs, tokens, layers }
    }

    /// Mean entropy over all positions per block, nats.
    pub fn means(&self) -> Vec<f64> {
        self.layers.iter().map(|l| l.all_nats.mean).collect()
    }
}

/// Everything `dft layers` computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    pub model: String,
    pub num_layers: usize,
    pub target: CurveReport,
    pub english: Option<CurveReport>,
    pub latent: Option<LatentEnglish>,
    pub critical: CriticalLayers,
    /// The command line that produced the report.
    pub command: String,
}

impl LayerReport {
    /// Run the detector again on the stored target curve (new options), then apply a user override
    /// `(i, j)` if given; the reasons say what happened.
    pub fn redetect(&mut self, opts: &DetectOptions, override_layers: Option<(usize, usize)>) -> Result<()> {
        let mut critical = critical_layers(&self.target.means(), opts)?;
        if let Some((i, j)) = override_layers {
            let layers = self.num_layers;
            if i == 0 || i >= j || j > layers {
                return Err(LayersError::InvalidLayers { i, j, layers });
            }
            critical
                .reasons
                .push(format!("overridden by the user: i = {i}, j = {j} (detected {}, {})", critical.i, critical.j));
            critical.i = i;
            critical.j = j;
        }
        self.critical = critical;
        Ok(())
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| LayersError::Json { path: path.into(), source: e })?;
        std::fs::write(path, text + "\n").map_err(|e| LayersError::Io { path: path.into(), source: e })
    }

    pub fn read_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| LayersError::Io { path: path.into(), source: e })?;
        serde_json::from_str(&text).map_err(|e| LayersError::Json { path: path.into(), source: e })
    }

    /// Markdown table: per block, entropy (mean ± 95% CI, nats; and bits) over all positions and at the
    /// last position, for the target language and English, the latent-English probe, and the i / j marks.
    pub fn table(&self) -> String {
        let t = &self.target;
        let en = self.english.as_ref();
        let mut head = vec![
            "block".to_string(),
            format!("{} H all (nats)", t.lang),
            format!("{} H all (bits)", t.lang),
            format!("{} H last (nats)", t.lang),
        ];
        if let Some(e) = en {
            head.push(format!("{} H all (nats)", e.lang));
            head.push(format!("{} H all (bits)", e.lang));
            head.push(format!("{} H last (nats)", e.lang));
        }
        if self.latent.is_some() {
            head.push("P(en) latent".into());
            head.push(format!("P({})", t.lang));
        }
        head.push(String::new());
        let mut out = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
        let ci = |m: &MeanCi| format!("{:.3} ± {:.3}", m.mean, m.ci95);
        for (k, row) in t.layers.iter().enumerate() {
            let mut cells =
                vec![k.to_string(), ci(&row.all_nats), format!("{:.3}", row.all_bits.mean), ci(&row.last_nats)];
            if let Some(e) = en {
                let r = &e.layers[k];
                cells.push(ci(&r.all_nats));
                cells.push(format!("{:.3}", r.all_bits.mean));
                cells.push(ci(&r.last_nats));
            }
            if let Some(l) = &self.latent {
                let r = &l.layers[k];
                cells.push(format!("{:.4}", r.english.mean));
                cells.push(format!("{:.4}", r.target.mean));
            }
            let mark = match (k == self.critical.i, k == self.critical.j) {
                (true, _) => "**i**",
                (_, true) => "**j**",
                _ => "",
            };
            cells.push(mark.into());
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out
    }

    /// Summary lines: the sample, (i, j) and the detector's reasons.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "model: {} ({} blocks)\n{}: {} inputs, {} tokens ({})\n",
            self.model,
            self.num_layers,
            self.target.lang,
            self.target.inputs,
            self.target.tokens,
            self.target.data.display()
        );
        if let Some(e) = &self.english {
            s += &format!("{}: {} inputs, {} tokens ({})\n", e.lang, e.inputs, e.tokens, e.data.display());
        }
        if let Some(l) = &self.latent {
            s += &format!("latent English probe: {} word pairs ({} skipped)\n", l.pairs, l.skipped.len());
        }
        let c = &self.critical;
        s += &format!(
            "critical layers: i = {}, j = {} ({})\n",
            c.i,
            c.j,
            if c.detected { "detected" } else { "fallback" }
        );
        for r in &c.reasons {
            s += &format!("  - {r}\n");
        }
        s
    }

    /// SVG plot: entropy per block (mean over all positions, shaded 95% CI) for the target language and
    /// English, with the selected i and j marked.
    pub fn plot(&self, path: &Path) -> Result<()> {
        plot_curves(self, path).map_err(|msg| LayersError::Plot { path: path.into(), msg })
    }
}

fn plot_curves(r: &LayerReport, path: &Path) -> std::result::Result<(), String> {
    use plotters::prelude::*;
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let curves: Vec<(&CurveReport, RGBColor)> = std::iter::once((&r.target, RGBColor(31, 119, 180)))
        .chain(r.english.iter().map(|c| (c, RGBColor(214, 39, 40))))
        .collect();
    let ymax = curves
        .iter()
        .flat_map(|(c, _)| c.layers.iter().map(|l| l.all_nats.hi()))
        .filter(|v| v.is_finite())
        .fold(1e-3f64, f64::max)
        * 1.08;
    let xmax = r.num_layers as f64;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let title = format!("Logit-lens entropy per block — {} ({} vs en)", model_name(&r.model), r.target.lang);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("block k (0 = embeddings, L = final logits)")
        .y_desc("entropy (nats), mean ± 95% CI")
        .draw()
        .map_err(|x| e(&x))?;
    for (c, color) in &curves {
        let upper: Vec<(f64, f64)> = c.layers.iter().map(|l| (l.layer as f64, l.all_nats.hi())).collect();
        let lower: Vec<(f64, f64)> =
            c.layers.iter().rev().map(|l| (l.layer as f64, l.all_nats.lo().max(0.0))).collect();
        let band: Vec<(f64, f64)> = upper.into_iter().chain(lower).collect();
        chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.18).filled()))).map_err(|x| e(&x))?;
        let color = *color;
        let pts: Vec<(f64, f64)> = c.layers.iter().map(|l| (l.layer as f64, l.all_nats.mean)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(format!("{} ({} sentences, {} tokens)", c.lang, c.inputs, c.tokens))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|x| e(&x))?;
    }
    let c = &r.critical;
    for (k, name) in [(c.i, "i"), (c.j, "j")] {
        let x = k as f64;
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(x, 0.0), (x, ymax)], BLACK.mix(0.6).stroke_width(1))))
            .map_err(|x| e(&x))?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{name} = {k}"),
                (x + 0.2, ymax * 0.06),
                ("sans-serif", 15),
            )))
            .map_err(|x| e(&x))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

fn model_name(model: &str) -> String {
    Path::new(model).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| model.to_string())
}
