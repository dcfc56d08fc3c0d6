//! The run configuration: a TOML file (`dft train --config run.toml`) whose keys can be overridden
//! from the command line (`--set train.lr=1e-4`). Everything is checked — unknown keys, ranges,
//! files, layer indices against the model depth — before any model weights are loaded.

use crate::error::{Result, TrainError};
use dft_losses::{AuxLoss, Pooling, Precision};
use dft_models::LoraSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which objective to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// English-only instruction tuning on `P(x_en) ⊕ y_en`.
    Sft,
    /// Target-language instruction tuning on `P(x_tgt) ⊕ y_tgt` (the baseline).
    Tft,
    /// TFT plus the LC and ET deep-supervision losses.
    Dft,
}

/// A layer index, or `auto` (chosen by the logit-lens entropy, dft-layers-select).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayerChoice {
    Index(usize),
    Auto(AutoTag),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoTag {
    Auto,
}

/// Data file layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// JSON array of `{en_instruction, en_input, en_output, <lang>_instruction, …, metadata}` (alpaca_en_zh),
    /// or a directory of its `alpaca_chinese_part_*.json` files.
    PairedJson,
    /// JSONL with `{id?, en: {instruction, input, output}, <lang>: {…}}` per line.
    PairedJsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateChoice {
    /// stanford_alpaca's prompts (METHOD.md §2).
    Alpaca,
    /// ChatML, as instruct models like SmolLM2 expect.
    Chatml,
    /// The model's own chat template (GGUF `tokenizer.chat_template` or tokenizer_config.json), one
    /// user turn with the generation prompt.
    Model,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNonFinite {
    /// Stop with an error naming the step and batch (default).
    Stop,
    /// Skip the batch (reported, counted) and go on.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// An HF checkpoint directory, a `.gguf` file, `smollm2` or `gemma3` (fetched on first use by scripts/fetch-*.sh, compiled into the binary).
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    pub train: PathBuf,
    /// Held-out parallel examples for the eval loss (optional).
    pub eval: Option<PathBuf>,
    pub format: DataFormat,
    /// Target language code (zh, vi, ar, …).
    pub lang: String,
    pub min_score: Option<u8>,
    pub max_len: usize,
    pub template: TemplateChoice,
    /// Use at most this many training examples (after filtering; 0 = all).
    pub limit: usize,
    /// Use at most this many held-out examples for the eval loss (0 = no eval loss).
    pub eval_limit: usize,
    /// Error on bad records instead of counting and skipping them.
    pub strict: bool,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            train: PathBuf::from("data/alpaca_en_zh/train.json"),
            eval: Some(PathBuf::from("data/alpaca_en_zh/heldout.json")),
            format: DataFormat::PairedJson,
            lang: "zh".into(),
            min_score: None,
            max_len: 512,
            template: TemplateChoice::Alpaca,
            limit: 0,
            eval_limit: 64,
            strict: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodSection {
    pub name: Method,
    /// LC and ET apply to `dft` only; `sft` / `tft` ignore them.
    pub lc: AuxLoss,
    pub et: AuxLoss,
    /// Layer i of Language Conversion.
    pub lc_layer: LayerChoice,
    /// Layer j of English Thinking.
    pub et_layer: LayerChoice,
    pub alpha: f64,
    pub beta: f64,
    pub pooling: Pooling,
    pub english_stop_grad: bool,
    /// Training examples whose queries (target and English) feed the logit-lens entropy when a layer is
    /// `auto` (dft-layers-select; the curve, the detector's reasons and the plot go to `train.out_dir`).
    pub auto_samples: usize,
}

impl Default for MethodSection {
    fn default() -> Self {
        Self {
            name: Method::Dft,
            lc: AuxLoss::Logits,
            et: AuxLoss::Logits,
            lc_layer: LayerChoice::Index(2),
            et_layer: LayerChoice::Index(15),
            alpha: 1.0,
            beta: 1.0,
            pooling: Pooling::QueryMean,
            english_stop_grad: false,
            auto_samples: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    pub lr: f64,
    pub epochs: usize,
    /// Stop after this many optimiser steps (0 = run all epochs).
    pub max_steps: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step (global batch = batch_size × grad_accum).
    pub grad_accum: usize,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Global-norm gradient clipping (0 = off).
    pub max_grad_norm: f64,
    pub seed: u64,
    /// Eval loss every N steps (0 = only before and after).
    pub eval_every: usize,
    /// Checkpoint every N steps (0 = only at the end).
    pub checkpoint_every: usize,
    /// Keep the last K checkpoints.
    pub keep_last: usize,
    pub out_dir: PathBuf,
    pub on_nonfinite: OnNonFinite,
    /// Threads for the CPU backend: the size of rayon's global pool, set by the `dft` binary before any
    /// work (0 = all cores, or `RAYON_NUM_THREADS`); reported in summary.json as `threads`.
    pub threads: usize,
    /// Gradient checkpointing: the `dft` binary then trains on `Autodiff<_, BalancedCheckpointing>`,
    /// Burn's strategy that drops the outputs of memory-bound ops (element-wise, activations) after the
    /// forward pass and recomputes them in backward; matmul outputs are still kept. Same losses and
    /// gradients; what it saves on SmolLM2 is measured in docs/PERFORMANCE.md (on Flex, whose fused
    /// kernels leave few such tensors, ≤ 3% for +3–7% time). Library callers choose
    /// the strategy with the backend type they pass to `train`.
    pub gradient_checkpointing: bool,
    /// `f32` (default) or `bf16-mixed`: matrix products in bf16, master weights, AdamW state, norms,
    /// softmax and losses in f32 (PyTorch autocast semantics; see `dft_models::Precision`). Checkpoints
    /// keep the f32 master weights.
    pub precision: Precision,
}

impl Default for TrainSection {
    /// The paper's recipe (METHOD.md §5) where it applies to one machine.
    fn default() -> Self {
        Self {
            lr: 2e-5,
            epochs: 3,
            max_steps: 0,
            batch_size: 4,
            grad_accum: 1,
            warmup_ratio: 0.03,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_grad_norm: 1.0,
            seed: 42,
            eval_every: 0,
            checkpoint_every: 0,
            keep_last: 2,
            out_dir: PathBuf::from("runs/dft"),
            on_nonfinite: OnNonFinite::Stop,
            threads: 0,
            gradient_checkpointing: false,
            precision: Precision::F32,
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelSection,
    #[serde(default)]
    pub data: DataSection,
    #[serde(default)]
    pub method: MethodSection,
    #[serde(default)]
    pub train: TrainSection,
    /// LoRA adapters (PEFT format) instead of full fine-tuning: base weights frozen, only the adapters
    /// (and `modules_to_save`) train. Absent = full fine-tuning.
    #[serde(default)]
    pub lora: Option<LoraSpec>,
    /// Data parallelism over several devices (docs/DISTRIBUTED.md). Absent = one device.
    #[serde(default, skip_serializing_if = "ParallelSection::is_default")]
    pub parallel: ParallelSection,
}

/// `[parallel]`: one peer per device, each with the whole model; gradients all-reduced every step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParallelSection {
    /// This machine's devices: a count (`2` = devices 0 and 1) or a list of device ids (`[0, 2]`).
    pub devices: Devices,
    /// Seconds a peer waits for the others in one collective operation (all-reduce) before the run
    /// stops with an error naming the peers that did not answer.
    pub timeout_s: f64,
}

/// The local devices of `[parallel]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Devices {
    Count(usize),
    Ids(Vec<usize>),
}

impl Default for ParallelSection {
    fn default() -> Self {
        Self { devices: Devices::Count(1), timeout_s: 120.0 }
    }
}

impl ParallelSection {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The device ids of this machine's peers, in peer order.
    pub fn device_ids(&self) -> Vec<usize> {
        match &self.devices {
            Devices::Count(n) => (0..*n).collect(),
            Devices::Ids(ids) => ids.clone(),
        }
    }
}

fn bad(key: &str, msg: impl Into<String>) -> TrainError {
    TrainError::Config { key: key.into(), msg: msg.into() }
}

/// Parse a command-line value as a TOML literal (number, bool, string, array), else as a string.
fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

impl TrainConfig {
    /// Read a TOML file and apply `key=value` overrides (`train.lr=1e-4`, `method.et_layer=auto`).
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| TrainError::Io { path: p.into(), source: e })?;
                text.parse()
                    .map_err(|e: toml::de::Error| TrainError::ConfigFile { path: p.into(), msg: e.to_string() })?
            }
            None => toml::Table::new(),
        };
        for o in overrides {
            let (key, value) =
                o.split_once('=').ok_or_else(|| bad(o, "overrides are written key=value, e.g. train.lr=1e-4"))?;
            let parts: Vec<&str> = key.trim().split('.').collect();
            let mut t = &mut table;
            for p in &parts[..parts.len() - 1] {
                t = t
                    .entry(p.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .ok_or_else(|| bad(key, format!("`{p}` is not a section")))?;
            }
            t.insert(parts[parts.len() - 1].to_string(), parse_value(value.trim()));
        }
        crate::aliases::apply(&mut table)?;
        let origin = path.map(|p| p.display().to_string()).unwrap_or_else(|| "<command line>".into());
        let cfg: TrainConfig = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
            let msg = e.to_string();
            // An unknown `--set` key is the command line's fault, not the file's.
            let known = known_keys();
            for o in overrides {
                let key = o.split_once('=').map(|(k, _)| k.trim()).unwrap_or(o);
                let named = key.split('.').any(|part| msg.contains(&format!("unknown field `{part}`")));
                if !known.iter().any(|k| k == key) && named {
                    let hint = closest_key(key, &known).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default();
                    return bad(&format!("--set {o}"), format!("unknown key `{key}` (command-line override){hint}"));
                }
            }
            TrainError::ConfigFile { path: origin.into(), msg: with_hint(msg) }
        })?;
        cfg.check_ranges()?;
        Ok(cfg)
    }

    /// Ranges and files (no model needed).
    pub fn check_ranges(&self) -> Result<()> {
        let t = &self.train;
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return Err(bad("train.lr", format!("must be > 0, got {}", t.lr)));
        }
        if t.batch_size == 0 {
            return Err(bad("train.batch_size", "must be >= 1"));
        }
        if t.grad_accum == 0 {
            return Err(bad("train.grad_accum", "must be >= 1"));
        }
        let ids = self.parallel.device_ids();
        if ids.is_empty() {
            return Err(bad("parallel.devices", "must name at least one device"));
        }
        if (1..ids.len()).any(|i| ids[..i].contains(&ids[i])) {
            return Err(bad("parallel.devices", format!("lists a device twice: {ids:?}")));
        }
        if !(self.parallel.timeout_s.is_finite() && self.parallel.timeout_s > 0.0) {
            return Err(bad("parallel.timeout_s", format!("must be > 0 seconds, got {}", self.parallel.timeout_s)));
        }
        if self.method.auto_samples == 0 {
            return Err(bad("method.auto_samples", "must be >= 1"));
        }
        if t.epochs == 0 && t.max_steps == 0 {
            return Err(bad("train.epochs", "epochs and max_steps cannot both be 0"));
        }
        if !(0.0..1.0).contains(&t.warmup_ratio) {
            return Err(bad("train.warmup_ratio", format!("must be in [0, 1), got {}", t.warmup_ratio)));
        }
        for (k, v) in [("train.beta1", t.beta1), ("train.beta2", t.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(bad(k, format!("must be in [0, 1), got {v}")));
            }
        }
        // NaN fails too (hence not `t.eps <= 0.0`).
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(t.eps > 0.0) {
            return Err(bad("train.eps", "must be > 0"));
        }
        if t.weight_decay < 0.0 || t.max_grad_norm < 0.0 {
            return Err(bad(
                if t.weight_decay < 0.0 { "train.weight_decay" } else { "train.max_grad_norm" },
                "must be >= 0",
            ));
        }
        if t.keep_last == 0 {
            return Err(bad("train.keep_last", "must be >= 1"));
        }
        let m = &self.method;
        for (k, v) in [("method.alpha", m.alpha), ("method.beta", m.beta)] {
            if !v.is_finite() || v < 0.0 {
                return Err(bad(k, format!("must be finite and >= 0, got {v}")));
            }
        }
        for (k, l) in [("method.lc_layer", m.lc_layer), ("method.et_layer", m.et_layer)] {
            if l == LayerChoice::Index(0) {
                return Err(bad(k, "layers are numbered from 1 (block k = output of decoder block k)"));
            }
        }
        if let Some(l) = &self.lora {
            l.check().map_err(|(k, m)| bad(k, m))?;
        }
        let d = &self.data;
        if d.max_len < 16 {
            return Err(bad("data.max_len", format!("must be >= 16, got {}", d.max_len)));
        }
        if let Some(s) = d.min_score {
            if !(1..=5).contains(&s) {
                return Err(bad("data.min_score", format!("scores are 1..=5, got {s}")));
            }
        }
        if d.lang.is_empty() || d.lang == "en" {
            return Err(bad("data.lang", "the target language must be a non-English code such as zh, vi, ar"));
        }
        if !d.train.exists() {
            return Err(bad("data.train", format!("{} does not exist", d.train.display())));
        }
        if let Some(e) = &d.eval {
            if !e.exists() {
                return Err(bad("data.eval", format!("{} does not exist", e.display())));
            }
        }
        if !crate::fetch::named_models().contains(&self.model.path.as_str()) && !Path::new(&self.model.path).exists() {
            return Err(bad(
                "model.path",
                format!(
                    "{} does not exist (use a checkpoint directory, a .gguf file, `smollm2` or `gemma3`)",
                    self.model.path
                ),
            ));
        }
        Ok(())
    }

    /// Layer indices against the model depth `num_layers` (read from the checkpoint header, before
    /// weights are loaded): `Some(k)` for a given block, `None` for `auto` (chosen after loading by the
    /// logit-lens entropy, see [`crate::auto_layers`]). Unused losses get block 1 (ignored).
    pub fn resolve_layers(&self, num_layers: usize) -> Result<(Option<usize>, Option<usize>)> {
        let m = &self.method;
        let mut out = [Some(1usize); 2];
        for (n, (key, mode, choice)) in
            [("method.lc_layer", m.lc, m.lc_layer), ("method.et_layer", m.et, m.et_layer)].into_iter().enumerate()
        {
            if mode == AuxLoss::Off || m.name != Method::Dft {
                continue;
            }
            out[n] = match choice {
                LayerChoice::Index(i) if i >= 1 && i <= num_layers => Some(i),
                LayerChoice::Index(i) => {
                    return Err(bad(key, format!("layer {i} is out of range: the model has {num_layers} blocks (1..={num_layers})")))
                }
                LayerChoice::Auto(_) if num_layers < 4 => {
                    return Err(bad(key, format!("`auto` needs a model with at least 4 blocks to find two entropy drops; this one has {num_layers}; give a layer number")))
                }
                LayerChoice::Auto(_) => None,
            };
        }
        Ok((out[0], out[1]))
    }
}

/// Every key a run config can hold, dotted (`train.lr`), from the defaults.
pub fn known_keys() -> Vec<String> {
    let cfg = TrainConfig {
        model: ModelSection { path: String::new() },
        data: DataSection::default(),
        method: MethodSection::default(),
        train: TrainSection::default(),
        lora: Some(LoraSpec::default()),
        parallel: ParallelSection::default(),
    };
    let mut out: Vec<String> = flatten(&cfg).into_keys().collect();
    // Optional keys whose default is unset.
    for k in ["data.eval", "data.min_score", "parallel.devices", "parallel.timeout_s"] {
        if !out.iter().any(|x| x == k) {
            out.push(k.into());
        }
    }
    out.sort();
    out
}

/// Leaf values of a config by dotted key.
fn flatten(cfg: &TrainConfig) -> std::collections::BTreeMap<String, serde_json::Value> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut std::collections::BTreeMap<String, serde_json::Value>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, x, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk("", &serde_json::to_value(cfg).expect("config serialises"), &mut out);
    out
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known key closest to `key` (by edit distance on the whole key, or on its last part within the
/// same section), when it is close enough to be a typo.
pub fn closest_key(key: &str, known: &[String]) -> Option<String> {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    known
        .iter()
        .map(|k| {
            let d_full = edit_distance(key, k);
            let d_leaf = edit_distance(leaf, k.rsplit('.').next().unwrap_or(k)) + usize::from(!key.contains('.'));
            (d_full.min(d_leaf), k)
        })
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k.clone())
}

/// Add "did you mean" to a TOML `unknown field` error.
fn with_hint(msg: String) -> String {
    let Some(rest) = msg.split("unknown field `").nth(1) else { return msg };
    let Some(field) = rest.split('`').next() else { return msg };
    let leaves: Vec<String> = known_keys().iter().map(|k| k.rsplit('.').next().unwrap_or(k).to_string()).collect();
    match closest_key(field, &leaves) {
        Some(k) => format!("{}; did you mean `{k}`?", msg.trim_end()),
        None => msg,
    }
}

/// Keys that may change between a checkpoint and `--resume` without changing what is trained: stopping
/// points, evaluation and checkpoint cadence, threads, memory strategy, paths.
pub const RESUME_SAFE_KEYS: &[&str] = &[
    "train.max_steps",
    "train.epochs",
    "train.eval_every",
    "train.checkpoint_every",
    "train.keep_last",
    "train.on_nonfinite",
    "train.threads",
    "train.out_dir",
    "train.gradient_checkpointing",
    "data.eval",
    "data.eval_limit",
    // How the global batch is spread over devices does not change what is trained (the data-parallel
    // trainer saves the global batch size in `train.batch_size`).
    "parallel.devices",
    "parallel.timeout_s",
];

/// How a resumed run's config differs from the checkpoint's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigDiff {
    /// `key: old -> new` for keys that change the run (resume is refused).
    pub refused: Vec<String>,
    /// `key: old -> new` for [`RESUME_SAFE_KEYS`] (allowed and reported).
    pub allowed: Vec<String>,
}

/// Compare the resolved config saved with a checkpoint with the one given to `--resume`.
pub fn compare_for_resume(saved: &TrainConfig, now: &TrainConfig) -> ConfigDiff {
    let (a, b) = (flatten(saved), flatten(now));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut diff = ConfigDiff::default();
    let show = |v: Option<&serde_json::Value>| v.map(|v| v.to_string()).unwrap_or_else(|| "unset".into());
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        if x == y || (x.is_none_or(|v| v.is_null()) && y.is_none_or(|v| v.is_null())) {
            continue;
        }
        let line = format!("{k}: {} -> {}", show(x), show(y));
        if RESUME_SAFE_KEYS.contains(&k.as_str()) {
            diff.allowed.push(line);
        } else {
            diff.refused.push(line);
        }
    }
    diff
}

impl TrainConfig {
    /// Checks that need the model's header (read before the weights): `data.max_len` against the context
    /// length. Returns warnings to print (an LC layer at or after the ET layer, which METHOD.md does not
    /// intend: i < j).
    pub fn check_against_model(
        &self,
        context_length: usize,
        lc: Option<usize>,
        et: Option<usize>,
    ) -> Result<Vec<String>> {
        if self.data.max_len > context_length {
            return Err(bad(
                "data.max_len",
                format!(
                    "{} is longer than the model's context ({context_length} tokens, max_position_embeddings / context_length); use at most {context_length}",
                    self.data.max_len
                ),
            ));
        }
        let m = &self.method;
        let both = m.name == Method::Dft && m.lc != AuxLoss::Off && m.et != AuxLoss::Off;
        let mut warnings = Vec::new();
        if let (true, Some(i), Some(j)) = (both, lc, et) {
            if i >= j {
                warnings.push(format!(
                    "warning: method.lc_layer ({i}) is not below method.et_layer ({j}); the method (METHOD.md) puts language conversion before English thinking (i < j)"
                ));
            }
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod reliability_tests {
    use super::*;

    fn cfg() -> TrainConfig {
        TrainConfig {
            model: ModelSection { path: "m".into() },
            data: DataSection::default(),
            method: MethodSection::default(),
            train: TrainSection::default(),
            lora: None,
            parallel: ParallelSection::default(),
        }
    }

    #[test]
    fn resume_diff_separates_safe_and_refused_keys() {
        let a = cfg();
        let mut b = cfg();
        b.train.batch_size = 8;
        b.train.max_steps = 100;
        b.method.et_layer = LayerChoice::Index(9);
        let d = compare_for_resume(&a, &b);
        assert_eq!(d.refused, ["method.et_layer: 15 -> 9", "train.batch_size: 4 -> 8"]);
        assert_eq!(d.allowed, ["train.max_steps: 0 -> 100"]);
        assert_eq!(compare_for_resume(&a, &a), ConfigDiff::default());
    }

    #[test]
    fn closest_keys() {
        let k = known_keys();
        assert!(k.contains(&"train.lr".to_string()) && k.contains(&"data.eval".to_string()));
        assert_eq!(closest_key("train.lrr", &k).as_deref(), Some("train.lr"));
        assert_eq!(closest_key("train.batchsize", &k).as_deref(), Some("train.batch_size"));
        assert_eq!(closest_key("zzz.qqqqqqq", &k), None);
    }
}
