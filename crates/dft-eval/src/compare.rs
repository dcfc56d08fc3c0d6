//! The statistics and report of `dft compare`: several arms (training methods), each trained with
//! one or more seeds and evaluated on exactly the same items, shown like the paper's Tables 1–3.
//!
//! For every arm and task × language the report has the score with its standard error (binomial /
//! lm-eval `mean_stderr` for accuracy, bootstrap over items for F1; with several seeds, computed on
//! the per-item scores averaged over seeds), the mean ± sd across seeds, and the paired difference to
//! the baseline arm (TFT) with a percentile confidence interval from a paired bootstrap over the shared
//! items ([`crate::stats::paired_bootstrap`]), marked where the interval excludes 0. The average over
//! tasks gets the same treatment (each task resampled independently per replicate). Held-out perplexity
//! (from training) is reported as mean ± sd across seeds.
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::lm_eval::{item_scores, split_of, task_key};
use crate::report::{display_name, write_atomic, TaskOutcome, TaskResult};
use crate::stats::{
    bootstrap_stderr, mean, mean_stderr, paired_bootstrap, paired_bootstrap_multi, sample_sd, PairedDiff,
};
use crate::tasks::Task;

/// One trained model (an arm with one seed) and its evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedRun {
    pub seed: u64,
    /// Held-out TFT loss after training (nats per token).
    pub eval_loss: Option<f64>,
    pub results: Vec<TaskResult>,
}

/// An arm: a name and its runs (one per seed, in the plan's seed order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArmRuns {
    pub name: String,
    pub runs: Vec<SeedRun>,
}

/// How the statistics are computed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsOptions {
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Confidence level in percent (95).
    pub level: f64,
    /// Seed of the bootstrap generator.
    pub seed: u64,
}

impl Default for StatsOptions {
    fn default() -> Self {
        StatsOptions { resamples: crate::stats::DEFAULT_RESAMPLES, level: 95.0, seed: 0 }
    }
}

/// A task × language column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// `xnli_zh`.
    pub key: String,
    pub task: String,
    pub lang: String,
    /// `acc`, `mc1`, `f1`.
    pub metric: String,
    pub n: usize,
    /// The split the items came from (`dev (sample)`, `test`, …).
    pub split: String,
}

/// One arm's score on one column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Score in percent, the mean over seeds.
    pub score: f64,
    /// Its standard error in percent (over items).
    pub stderr: f64,
    /// Per-seed scores, in seed order.
    pub per_seed: Vec<f64>,
    /// Sample standard deviation across seeds (`None` with one seed).
    pub seed_sd: Option<f64>,
}

/// One arm's row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArmRow {
    pub name: String,
    pub seeds: Vec<u64>,
    /// By column key.
    pub cells: BTreeMap<String, Cell>,
    /// Mean over the columns; its standard error is `sqrt(sum se^2) / k` (tasks independent).
    pub average: Option<Cell>,
    /// Held-out perplexity after training: mean over seeds, and sd across seeds.
    pub perplexity: Option<f64>,
    pub perplexity_sd: Option<f64>,
    /// Paired difference to the baseline by column key (absent for the baseline itself).
    pub diff: BTreeMap<String, PairedDiff>,
    pub diff_average: Option<PairedDiff>,
}

/// The whole comparison (`report.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    pub title: String,
    pub baseline: String,
    pub stats: StatsOptions,
    pub columns: Vec<Column>,
    pub arms: Vec<ArmRow>,
    /// Free-form lines shown under the tables (plan, model, budget, skipped tasks).
    pub notes: Vec<String>,
}

fn bad(message: String) -> EvalError {
    EvalError::Results { path: "report.json".into(), message }
}

/// Per-item scores of `key` in `run`, with the item ids.
fn column_items<'a>(run: &'a SeedRun, key: &str) -> Option<(&'a TaskResult, Vec<f64>)> {
    let r = run.results.iter().find(|r| task_key(r) == key)?;
    Some((r, item_scores(r)?))
}

/// Per-item scores of an arm on `key`, averaged over its seeds; checks that every seed (and the
/// reference `ids`) scored the same items.
fn arm_items(arm: &ArmRuns, key: &str, ids: &[String]) -> Result<Option<(Vec<f64>, Vec<f64>, bool)>> {
    let mut sum: Option<Vec<f64>> = None;
    let mut per_seed = Vec::new();
    let mut mc = false;
    for run in &arm.runs {
        let Some((r, xs)) = column_items(run, key) else { return Ok(None) };
        if r.ids != ids {
            return Err(bad(format!(
                "arm `{}` seed {} scored other items of {key} than the first arm ({} vs {} items, or another order): \
                 a paired comparison needs exactly the same items",
                arm.name,
                run.seed,
                r.ids.len(),
                ids.len()
            )));
        }
        mc = matches!(r.outcome, TaskOutcome::MultipleChoice { .. });
        per_seed.push(mean(&xs));
        match &mut sum {
            None => sum = Some(xs),
            Some(s) => s.iter_mut().zip(&xs).for_each(|(a, b)| *a += b),
        }
    }
    let Some(mut s) = sum else { return Ok(None) };
    let k = arm.runs.len() as f64;
    s.iter_mut().for_each(|x| *x /= k);
    Ok(Some((s, per_seed, mc)))
}

impl CompareReport {
    /// Computes the report. `arms` must contain `baseline`; columns are the task × language results
    /// of the first arm's first seed (translation results are left out: corpus-level scores).
    pub fn build(
        title: String,
        arms: &[ArmRuns],
        baseline: &str,
        stats: StatsOptions,
        notes: Vec<String>,
    ) -> Result<Self> {
        let first = arms.first().and_then(|a| a.runs.first()).ok_or_else(|| bad("no arms to compare".into()))?;
        let base = arms
            .iter()
            .find(|a| a.name == baseline)
            .ok_or_else(|| bad(format!("the baseline arm `{baseline}` is not among the arms")))?;
        let mut columns: Vec<Column> = first
            .results
            .iter()
            .filter(|r| item_scores(r).is_some())
            .map(|r| Column {
                key: task_key(r),
                task: r.task.clone(),
                lang: r.lang.code().to_string(),
                metric: r.metric.clone(),
                n: r.n,
                split: split_of(&r.files),
            })
            .collect();
        // Paper order: language, then the task order of the tables.
        let order = |c: &Column| {
            let t =
                Task::from_name(&c.task).map(|t| Task::ALL.iter().position(|x| *x == t).unwrap_or(99)).unwrap_or(99);
            (c.lang.clone(), t)
        };
        columns.sort_by_key(order);
        let ids: BTreeMap<String, Vec<String>> = columns
            .iter()
            .map(|c| {
                let r = first.results.iter().find(|r| task_key(r) == c.key).expect("column from first run");
                (c.key.clone(), r.ids.clone())
            })
            .collect();
        let mut base_items = BTreeMap::new();
        for c in &columns {
            if let Some((xs, _, _)) = arm_items(base, &c.key, &ids[&c.key])? {
                base_items.insert(c.key.clone(), xs);
            }
        }
        let mut rows = Vec::new();
        for (ai, arm) in arms.iter().enumerate() {
            let mut cells = BTreeMap::new();
            let mut diff = BTreeMap::new();
            let mut pairs: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
            for (ci, c) in columns.iter().enumerate() {
                let Some((xs, per_seed, mc)) = arm_items(arm, &c.key, &ids[&c.key])? else { continue };
                let stderr = if mc {
                    mean_stderr(&xs)
                } else {
                    bootstrap_stderr(&xs, stats.resamples, stats.seed ^ (ci as u64))
                };
                let seed_sd = (per_seed.len() > 1).then(|| sample_sd(&per_seed));
                cells.insert(c.key.clone(), Cell { score: mean(&xs), stderr, per_seed, seed_sd });
                if arm.name != baseline {
                    if let Some(b) = base_items.get(&c.key) {
                        // Each (arm, column) pair gets its own stream, fixed by the plan's seed.
                        let s = stats.seed.wrapping_add(((ai as u64) << 32) | ci as u64);
                        if let Some(d) = paired_bootstrap(&xs, b, stats.resamples, stats.level, s) {
                            diff.insert(c.key.clone(), d);
                        }
                        pairs.push((xs, b.clone()));
                    }
                }
            }
            let average = (cells.len() == columns.len() && !columns.is_empty()).then(|| {
                let k = cells.len() as f64;
                let nseeds = arm.runs.len();
                let per_seed: Vec<f64> =
                    (0..nseeds).map(|s| cells.values().map(|c| c.per_seed[s]).sum::<f64>() / k).collect();
                Cell {
                    score: cells.values().map(|c| c.score).sum::<f64>() / k,
                    stderr: cells.values().map(|c| c.stderr * c.stderr).sum::<f64>().sqrt() / k,
                    seed_sd: (nseeds > 1).then(|| sample_sd(&per_seed)),
                    per_seed,
                }
            });
            let diff_average = if arm.name != baseline && pairs.len() == columns.len() && !pairs.is_empty() {
                let refs: Vec<(&[f64], &[f64])> = pairs.iter().map(|(a, b)| (a.as_slice(), b.as_slice())).collect();
                paired_bootstrap_multi(&refs, stats.resamples, stats.level, stats.seed.wrapping_add((ai as u64) << 40))
            } else {
                None
            };
            let ppl: Vec<f64> = arm.runs.iter().filter_map(|r| r.eval_loss.map(f64::exp)).collect();
            let full_ppl = ppl.len() == arm.runs.len() && !ppl.is_empty();
            rows.push(ArmRow {
                name: arm.name.clone(),
                seeds: arm.runs.iter().map(|r| r.seed).collect(),
                cells,
                average,
                perplexity: full_ppl.then(|| mean(&ppl)),
                perplexity_sd: (full_ppl && ppl.len() > 1).then(|| sample_sd(&ppl)),
                diff,
                diff_average,
            });
        }
        Ok(CompareReport { title, baseline: baseline.to_string(), stats, columns, arms: rows, notes })
    }

    fn header(&self, first: &str, ppl: bool) -> String {
        let mut s = format!("| {first} |");
        for c in &self.columns {
            let t = Task::from_name(&c.task).map(display_name).unwrap_or(c.task.as_str());
            s += &format!(" {t} {} |", c.lang);
        }
        s += " Avg |";
        if ppl {
            s += " held-out ppl |";
        }
        s += "\n|---|";
        s += &"---:|".repeat(self.columns.len() + 1 + ppl as usize);
        s + "\n"
    }

    /// Markdown: scores ± standard error, paired differences to the baseline with their CIs
    /// (bold where the CI excludes 0), mean ± sd across seeds when there are several, then the notes.
    pub fn markdown(&self) -> String {
        let pm = |c: Option<&Cell>| match c {
            Some(c) if c.stderr.is_finite() => format!("{:.1} ± {:.1}", c.score, c.stderr),
            Some(c) => format!("{:.1}", c.score),
            None => "–".into(),
        };
        let mut s = format!("# {}\n\n", self.title);
        s += "## Scores (± standard error over items)\n\n";
        s += &self.header("Arm", true);
        for a in &self.arms {
            s += &format!("| {} |", a.name);
            for c in &self.columns {
                s += &format!(" {} |", pm(a.cells.get(&c.key)));
            }
            s += &format!(" {} |", pm(a.average.as_ref()));
            s += &match (a.perplexity, a.perplexity_sd) {
                (Some(p), Some(sd)) => format!(" {p:.3} ± {sd:.3} |"),
                (Some(p), None) => format!(" {p:.3} |"),
                _ => " – |".into(),
            };
            s += "\n";
        }
        let items: Vec<String> =
            self.columns.iter().map(|c| format!("{} {} n={} ({})", c.key, c.metric, c.n, c.split)).collect();
        s += &format!("\nItems (the same for every arm): {}.\n", items.join(", "));
        s += "Standard errors: accuracy — lm-eval's `mean_stderr` (binomial sqrt(p(1-p)/(n-1))); F1 — bootstrap over items; the average — sqrt(Σ se²)/k.\n\n";

        s += &format!(
            "## Paired difference to {} ({}% CI, paired bootstrap over the shared items, {} resamples)\n\n",
            self.baseline, self.stats.level, self.stats.resamples
        );
        s += &self.header("Arm", false);
        let fd = |d: Option<&PairedDiff>| match d {
            Some(d) => {
                let t = format!("{:+.1} [{:+.1}, {:+.1}]", d.diff, d.ci_low, d.ci_high);
                if d.significant() {
                    format!("**{t}** ✓")
                } else {
                    t
                }
            }
            None => "–".into(),
        };
        for a in self.arms.iter().filter(|a| a.name != self.baseline) {
            s += &format!("| {} |", a.name);
            for c in &self.columns {
                s += &format!(" {} |", fd(a.diff.get(&c.key)));
            }
            s += &format!(" {} |\n", fd(a.diff_average.as_ref()));
        }
        s +=
            "\n**bold ✓**: the confidence interval excludes 0 (a difference beyond resampling noise over these items; \
              it does not cover seed-to-seed variation unless several seeds were run).\n\n";

        if self.arms.iter().any(|a| a.seeds.len() > 1) {
            s += "## Across seeds (mean ± sample sd of the per-seed scores)\n\n";
            s += &self.header("Arm (seeds)", false);
            for a in &self.arms {
                s += &format!("| {} ({}) |", a.name, a.seeds.len());
                let sd = |c: Option<&Cell>| match c {
                    Some(Cell { seed_sd: Some(sd), score, .. }) => format!("{score:.1} ± {sd:.1}"),
                    Some(c) => format!("{:.1}", c.score),
                    None => "–".into(),
                };
                for c in &self.columns {
                    s += &format!(" {} |", sd(a.cells.get(&c.key)));
                }
                s += &format!(" {} |\n", sd(a.average.as_ref()));
            }
            s += "\n";
        }
        if !self.notes.is_empty() {
            s += "## Notes\n\n";
            for n in &self.notes {
                s += &format!("- {n}\n");
            }
            s += "\n";
        }
        s
    }

    /// SVG: each arm's paired difference to the baseline per column (and the average) with its CI.
    pub fn plot(&self, path: &Path) -> Result<()> {
        plot_diffs(self, path).map_err(|e| EvalError::io(path, std::io::Error::other(e)))
    }

    /// `dir/report.json`, `dir/report.md` (with `extra` appended, e.g. wall times) and `dir/report.svg`.
    pub fn write(&self, dir: &Path, extra: &str) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| bad(e.to_string()))?;
        write_atomic(&dir.join("report.json"), (text + "\n").as_bytes())?;
        write_atomic(&dir.join("report.md"), format!("{}{extra}", self.markdown()).as_bytes())?;
        self.plot(&dir.join("report.svg"))
    }
}

fn plot_diffs(r: &CompareReport, path: &Path) -> std::result::Result<(), String> {
    use plotters::prelude::*;
    let arms: Vec<&ArmRow> = r.arms.iter().filter(|a| a.name != r.baseline).collect();
    let mut labels: Vec<String> = r.columns.iter().map(|c| c.key.clone()).collect();
    labels.push("average".into());
    fn get<'a>(r: &CompareReport, a: &'a ArmRow, i: usize) -> Option<&'a PairedDiff> {
        if i < r.columns.len() {
            a.diff.get(&r.columns[i].key)
        } else {
            a.diff_average.as_ref()
        }
    }
    let mut lo: f64 = -1.0;
    let mut hi: f64 = 1.0;
    for a in &arms {
        for i in 0..labels.len() {
            if let Some(d) = get(r, a, i) {
                lo = lo.min(d.ci_low);
                hi = hi.max(d.ci_high);
            }
        }
    }
    let pad = (hi - lo) * 0.08;
    let width = 160 + 110 * labels.len() as u32;
    let root = SVGBackend::new(path, (width.max(640), 460)).into_drawing_area();
    let e = |x: &dyn std::fmt::Display| x.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let n = labels.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Paired difference to {} ({}% CI)", r.baseline, r.stats.level), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5f64..(n - 0.5), (lo - pad)..(hi + pad))
        .map_err(|x| e(&x))?;
    let lab = labels.clone();
    chart
        .configure_mesh()
        .x_labels(labels.len() + 1)
        .x_label_formatter(&move |x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < lab.len() {
                lab[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_desc("score difference (points)")
        .draw()
        .map_err(|x| e(&x))?;
    chart.draw_series(LineSeries::new(vec![(-0.5, 0.0), (n - 0.5, 0.0)], BLACK.stroke_width(1))).map_err(|x| e(&x))?;
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    let k = arms.len().max(1) as f64;
    for (j, a) in arms.iter().enumerate() {
        let col = palette[j % palette.len()];
        let off = |i: usize| i as f64 + (j as f64 - (k - 1.0) / 2.0) * (0.6 / k);
        let pts: Vec<(usize, PairedDiff)> = (0..labels.len()).filter_map(|i| get(r, a, i).map(|d| (i, *d))).collect();
        for (i, d) in &pts {
            chart
                .draw_series(LineSeries::new(vec![(off(*i), d.ci_low), (off(*i), d.ci_high)], col.stroke_width(2)))
                .map_err(|x| e(&x))?;
        }
        chart
            .draw_series(pts.iter().map(|(i, d)| Circle::new((off(*i), d.diff), 4, col.filled())))
            .map_err(|x| e(&x))?
            .label(a.name.clone())
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, col.filled()));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::Lang;
    use crate::metrics::{MCResult, McPrediction};
    use crate::scoring::Throughput;

    fn mc(preds: &[usize], golds: &[usize]) -> TaskResult {
        let per_item: Vec<McPrediction> = preds
            .iter()
            .zip(golds)
            .map(|(&p, &g)| McPrediction { pred: p, pred_norm: p, pred_bytes: p, gold: g })
            .collect();
        let acc = 100.0 * per_item.iter().filter(|p| p.pred == p.gold).count() as f64 / per_item.len() as f64;
        TaskResult {
            task: "xcopa".into(),
            lang: Lang::Zh,
            metric: "acc".into(),
            score: acc,
            n: per_item.len(),
            files: vec!["xcopa/val.zh.jsonl".into()],
            ids: (0..per_item.len()).map(|i| i.to_string()).collect(),
            throughput: Throughput::default(),
            outcome: TaskOutcome::MultipleChoice {
                result: MCResult { acc, acc_norm: acc, acc_bytes: acc, n: per_item.len(), per_item },
                logliks: vec![],
            },
        }
    }

    fn arm(name: &str, preds: &[usize], golds: &[usize]) -> ArmRuns {
        ArmRuns {
            name: name.into(),
            runs: vec![SeedRun { seed: 1, eval_loss: Some(1.0), results: vec![mc(preds, golds)] }],
        }
    }

    #[test]
    fn better_on_every_item_is_flagged_and_identical_arms_are_not() {
        let golds: Vec<usize> = (0..60).map(|i| i % 2).collect();
        let wrong: Vec<usize> = golds.iter().map(|g| 1 - g).collect();
        let arms = [arm("tft", &wrong, &golds), arm("dft", &golds, &golds), arm("copy", &wrong, &golds)];
        let r = CompareReport::build("t".into(), &arms, "tft", StatsOptions::default(), vec![]).unwrap();
        let dft = &r.arms[1].diff["xcopa_zh"];
        assert!(dft.significant() && dft.diff == 100.0, "{dft:?}");
        let copy = &r.arms[2].diff["xcopa_zh"];
        assert!(!copy.significant() && copy.diff == 0.0, "{copy:?}");
        let md = r.markdown();
        assert!(md.contains("| dft | **+100.0 [+100.0, +100.0]** ✓ |"), "{md}");
        assert!(md.contains("| copy | +0.0 [+0.0, +0.0] |"), "{md}");
        // Other items for one arm: refused, never compared.
        let short = arm("dft", &golds[..10], &golds[..10]);
        assert!(CompareReport::build("t".into(), &[arms[0].clone(), short], "tft", StatsOptions::default(), vec![])
            .is_err());
    }
}
