//! Sharded evaluation: `dft eval --shard i/n` scores the i-th of n contiguous slices of every task's
//! items (after `--limit`) and writes a partial result; `dft eval --merge DIR…` combines the n partial
//! results into the report an unsharded run writes. An evaluation can so be spread over processes or
//! machines.
//!
//! A shard keeps the raw model outputs of its items (log-likelihoods, generated ids and texts) with the
//! item ids. The merge reloads the items from the benchmark folder, checks that every shard scored
//! exactly the items its slice holds (ids in order), concatenates the outputs in item order and runs
//! the same metric code as an unsharded run ([`score_multiple_choice`], [`score_generative`],
//! [`score_translation`]); throughput counters are summed (seconds: the shards' compute time, not the
//! wall time of the whole). Log-likelihoods can differ from an unsharded run's in the last bits (the
//! items are batched with other neighbours), never the predictions they imply beyond such ties.
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::items::TaskItems;
use crate::metrics::{score_generative, score_multiple_choice, score_translation};
use crate::report::{EvalRun, TaskOutcome, TaskResult};
use crate::scoring::Throughput;
use crate::tasks::flores::FloresOptions;
use crate::tasks::{LoadedTask, TaskMetric};

/// `--shard i/n`: the i-th (1-based) of n contiguous slices of each task's items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("`{s}`: expected i/n with 1 <= i <= n, e.g. 2/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// This shard's items among `n`: contiguous, sizes differing by at most one, in shard order.
    pub fn range(&self, n: usize) -> Range<usize> {
        (self.index - 1) * n / self.count..self.index * n / self.count
    }

    /// The file a shard writes into its output folder.
    pub fn file_name(&self) -> String {
        format!("shard-{}-of-{}.json", self.index, self.count)
    }

    /// The items of `task` this shard scores: its slice of the first `limit` items (FLORES: of the
    /// first `limit` sentences of each direction). An error when the slice is empty.
    pub fn items(&self, task: &LoadedTask, limit: Option<usize>) -> Result<LoadedTask> {
        let all = crate::scoring::limited(task, limit);
        let r = self.range(all.len());
        if r.is_empty() {
            return Err(EvalError::NoItems {
                task: task.task.name().into(),
                lang: task.lang.code().into(),
                detail: format!(" in shard {self}: {} items for {} shards; use fewer shards", all.len(), self.count),
            });
        }
        let items = match all {
            TaskItems::MultipleChoice(v) => TaskItems::MultipleChoice(v[r].to_vec()),
            TaskItems::Generative(v) => TaskItems::Generative(v[r].to_vec()),
            TaskItems::Translation(v) => TaskItems::Translation(v[r].to_vec()),
        };
        Ok(LoadedTask { items, ..task.clone() })
    }
}

/// What `dft eval --shard i/n` writes (`shard-i-of-n.json` in its `--out`): the run with the results
/// of this shard's items, and how the tasks were built.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardRun {
    pub shard: Shard,
    pub flores: FloresOptions,
    pub run: EvalRun,
}

impl ShardRun {
    /// Writes `dir/shard-i-of-n.json` atomically; returns its path.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(self.shard.file_name());
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| EvalError::Results { path: path.clone(), message: e.to_string() })?;
        crate::report::write_atomic(&path, (text + "\n").as_bytes())?;
        Ok(path)
    }

    /// Reads a shard file, or the one shard file in a folder.
    pub fn load(path: &Path) -> Result<(PathBuf, Self)> {
        let path = if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| EvalError::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("shard-")))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            found.sort();
            match found.len() {
                1 => found.remove(0),
                0 => {
                    return Err(EvalError::Results {
                        path: path.to_path_buf(),
                        message: "no shard-I-of-N.json here (written by dft eval --shard)".into(),
                    })
                }
                _ => {
                    return Err(EvalError::Results {
                        path: path.to_path_buf(),
                        message: format!("{} shard files here; name the files instead of the folder", found.len()),
                    })
                }
            }
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&path).map_err(|e| EvalError::io(&path, e))?;
        let run = serde_json::from_str(&text).map_err(|e| EvalError::Results {
            path: path.clone(),
            message: format!("not a dft eval shard file: {e}"),
        })?;
        Ok((path, run))
    }
}

/// Combines the shard files `shards` (every shard of one `--shard i/n` evaluation, in any order) into the
/// run an unsharded evaluation gives. `load` reloads a task's items (`(task name, language)` as recorded
/// in the shards, and the FLORES options) from the benchmark folder.
pub fn merge_shards(
    mut shards: Vec<(PathBuf, ShardRun)>,
    load: &mut dyn FnMut(&str, crate::Lang, &FloresOptions) -> Result<LoadedTask>,
) -> Result<EvalRun> {
    let err = |path: &Path, message: String| EvalError::Results { path: path.to_path_buf(), message };
    let Some((first_path, first)) = shards.first().cloned() else {
        return Err(err(Path::new("--merge"), "no shard files given".into()));
    };
    let count = first.shard.count;
    shards.sort_by_key(|(_, s)| s.shard.index);
    for (path, s) in &shards {
        let same = s.shard.count == count
            && s.flores == first.flores
            && s.run.method == first.run.method
            && s.run.model == first.run.model
            && s.run.options == first.run.options
            && s.run.results.iter().map(|r| (&r.task, r.lang)).eq(first.run.results.iter().map(|r| (&r.task, r.lang)));
        if !same {
            return Err(err(
                path,
                format!(
                    "shard {} is not from the same evaluation as {} (model, method, options, tasks and shard count must match)",
                    s.shard,
                    first_path.display()
                ),
            ));
        }
    }
    let have: Vec<usize> = shards.iter().map(|(_, s)| s.shard.index).collect();
    if have != (1..=count).collect::<Vec<_>>() {
        let missing: Vec<String> = (1..=count).filter(|i| !have.contains(i)).map(|i| format!("{i}/{count}")).collect();
        let dup: Vec<String> = have.windows(2).filter(|w| w[0] == w[1]).map(|w| format!("{}/{count}", w[0])).collect();
        return Err(err(
            &first_path,
            format!("incomplete set of shards: missing [{}], repeated [{}]", missing.join(", "), dup.join(", ")),
        ));
    }
    let mut results = Vec::with_capacity(first.run.results.len());
    for (t, head) in first.run.results.iter().enumerate() {
        let task = load(&head.task, head.lang, &first.flores)?;
        let all = LoadedTask { items: crate::scoring::limited(&task, first.run.options.limit), ..task };
        let mut throughput = Throughput::default();
        let mut parts = Vec::with_capacity(count);
        for (path, s) in &shards {
            let r = &s.run.results[t];
            let want: Vec<&str> = item_ids(&all.items, s.shard.range(all.items.len()));
            if r.ids.iter().map(String::as_str).ne(want.iter().copied()) {
                return Err(err(
                    path,
                    format!(
                        "{} {}: the shard's items are not items {:?} of the benchmark file now (changed data or --limit?)",
                        r.task,
                        r.lang,
                        s.shard.range(all.items.len())
                    ),
                ));
            }
            let th = &r.throughput;
            throughput.model_tokens += th.model_tokens;
            throughput.request_tokens += th.request_tokens;
            throughput.scored_tokens += th.scored_tokens;
            throughput.seconds += th.seconds;
            throughput.prompt_seconds += th.prompt_seconds;
            throughput.busy_seconds += th.busy_seconds;
            throughput.decode_tokens += th.decode_tokens;
            parts.push(&r.outcome);
        }
        let metric = all.task.metric(all.lang);
        let outcome = match (&all.items, metric) {
            (TaskItems::MultipleChoice(items), _) => {
                let logliks: Vec<_> = parts
                    .iter()
                    .flat_map(|o| match o {
                        TaskOutcome::MultipleChoice { logliks, .. } => logliks.clone(),
                        _ => vec![],
                    })
                    .collect();
                let values: Vec<Vec<f64>> = logliks.iter().map(|v| v.iter().map(|l| l.logprob).collect()).collect();
                TaskOutcome::MultipleChoice { result: score_multiple_choice(items, &values)?, logliks }
            }
            (TaskItems::Generative(items), TaskMetric::F1(norm)) => {
                let generations: Vec<_> = parts
                    .iter()
                    .flat_map(|o| match o {
                        TaskOutcome::Generative { generations, .. } => generations.clone(),
                        _ => vec![],
                    })
                    .collect();
                let texts: Vec<&str> = generations.iter().map(|g| g.text.as_str()).collect();
                TaskOutcome::Generative { result: score_generative(items, &texts, norm)?, generations }
            }
            (TaskItems::Translation(items), _) => {
                let mut generations = Vec::new();
                let mut truncated: Vec<((crate::Lang, crate::Lang), usize)> = Vec::new();
                for o in &parts {
                    if let TaskOutcome::Translation { directions, generations: g } = o {
                        generations.extend(g.iter().cloned());
                        for d in directions {
                            match truncated.iter_mut().find(|(k, _)| *k == (d.src, d.tgt)) {
                                Some((_, n)) => *n += d.truncated,
                                None => truncated.push(((d.src, d.tgt), d.truncated)),
                            }
                        }
                    }
                }
                let texts: Vec<&str> = generations.iter().map(|g| g.text.as_str()).collect();
                let mut directions = score_translation(items, &texts)?;
                for d in &mut directions {
                    d.truncated = truncated.iter().find(|(k, _)| *k == (d.src, d.tgt)).map_or(0, |(_, n)| *n);
                }
                TaskOutcome::Translation { directions, generations }
            }
            (TaskItems::Generative(_), other) => {
                return Err(EvalError::InvalidItem {
                    id: head.task.clone(),
                    message: format!("generative items with a non-F1 metric {other:?}"),
                })
            }
        };
        let n = match &outcome {
            TaskOutcome::MultipleChoice { logliks, .. } => logliks.len(),
            TaskOutcome::Generative { generations, .. } | TaskOutcome::Translation { generations, .. } => {
                generations.len()
            }
        };
        if n != all.items.len() {
            return Err(EvalError::LengthMismatch {
                what: format!("{} {} outputs in the shards", head.task, head.lang),
                expected: all.items.len(),
                got: n,
            });
        }
        results.push(TaskResult::new(&all, metric, outcome, throughput));
    }
    Ok(EvalRun { results, ..first.run })
}

fn item_ids(items: &TaskItems, r: Range<usize>) -> Vec<&str> {
    match items {
        TaskItems::MultipleChoice(v) => v[r].iter().map(|i| i.id.as_str()).collect(),
        TaskItems::Generative(v) => v[r].iter().map(|i| i.id.as_str()).collect(),
        TaskItems::Translation(v) => v[r].iter().map(|i| i.id.as_str()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_cover_every_item_once() {
        assert_eq!("2/4".parse::<Shard>().unwrap(), Shard { index: 2, count: 4 });
        for bad in ["0/4", "5/4", "2", "a/b", "1/0", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        for n in [0usize, 1, 7, 100] {
            for count in [1usize, 3, 8] {
                let covered: Vec<usize> = (1..=count).flat_map(|index| Shard { index, count }.range(n)).collect();
                assert_eq!(covered, (0..n).collect::<Vec<_>>(), "n={n} count={count}");
            }
        }
    }
}
