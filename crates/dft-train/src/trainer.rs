//! The training loop: one optimiser step = `grad_accum` micro-batches through the DFT objective,
//! global-norm clipping, AdamW with PyTorch's semantics and a cosine schedule; metrics, eval loss,
//! checkpoints, interruption and non-finite losses handled on the way.

use crate::checkpoint::{list_checkpoints, write_checkpoint, TrainerState, LORA_FILE, MODEL_FILE, OPTIM_FILE};
use crate::clip::clip_global_norm;
use crate::config::{Method, OnNonFinite, TrainConfig};
use crate::data_prep::{kinds_for, read_corpus, special_tokens, to_loss_batch, token_counts, tokenize_with};
use crate::error::{Result, TrainError};
use crate::metrics::{plot_losses, read_metrics, MetricsWriter, StepMetrics};
use crate::optim::FusedAdamW;
use crate::schedule::{cosine_with_warmup, warmup_steps};
use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ElementConversion;
use dft_data::{BatchConfig, BatchIter, Batcher, SequenceKinds, TokenizedCorpus};
use dft_losses::{dft_loss, dft_loss_eval, ObjectiveConfig, TermCounts};
use dft_models::{load_pretrained, CausalLm};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What the caller can steer while a run goes on.
#[derive(Clone, Default)]
pub struct TrainHooks {
    /// Set (e.g. by a SIGINT handler) to checkpoint and stop after the current step.
    pub stop: Arc<AtomicBool>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Start a new run even when `out_dir` holds an earlier one (which is moved to
    /// `<out_dir>.old-<time>`); without it (and without `resume`) such a run is refused.
    pub overwrite: bool,
    /// This process is one node of a run over several machines (see [`crate::parallel`]).
    pub node: Option<crate::parallel::NodeSpec>,
}

/// What a finished run reports.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainSummary {
    pub steps: usize,
    pub eval_loss_before: Option<f64>,
    pub eval_loss_after: Option<f64>,
    pub out_dir: PathBuf,
    pub export_dir: PathBuf,
    pub metrics: PathBuf,
    pub plot: PathBuf,
    pub wall_s: f64,
    pub skipped_batches: usize,
    /// LoRA runs: the adapter in PEFT's format (`final/` holds the merged model).
    #[serde(default)]
    pub adapter_dir: Option<PathBuf>,
    #[serde(default)]
    pub trainable_params: usize,
    #[serde(default)]
    pub total_params: usize,
    /// Threads of the rayon pool the CPU backend ran on (`train.threads`, or all cores).
    #[serde(default)]
    pub threads: usize,
    /// Data-parallel peers (devices on all machines) that trained; 1 = one device.
    #[serde(default = "one")]
    pub world_size: usize,
}

fn one() -> usize {
    1
}

/// Resolve `smollm2` / `gemma3` to the fetched GGUF (fetched on first use, see [`crate::fetch`]); other
/// paths are used as given.
pub fn resolve_model_path(path: &str) -> Result<PathBuf> {
    crate::fetch::resolve_model_path(path)
}

/// Token-weighted mean TFT cross-entropy of `model` on a tokenized held-out corpus.
pub fn eval_loss<B: Backend>(
    model: &CausalLm<B>,
    corpus: &TokenizedCorpus,
    batch_size: usize,
    method: Method,
) -> Result<Option<f64>> {
    if corpus.examples.is_empty() {
        return Ok(None);
    }
    let batcher =
        Batcher::new(corpus, BatchConfig { batch_size, seed: 0, group_by_length: true, ..Default::default() })?;
    let device = model.device();
    let (mut sum, mut n) = (0.0, 0usize);
    for b in batcher.iter_from(batcher.start(), 1)? {
        let lb = to_loss_batch(&b, method);
        let out = dft_loss_eval(model, &lb, &ObjectiveConfig::default(), &device)?;
        sum += out.components.main * out.components.main_tokens as f64;
        n += out.components.main_tokens;
    }
    Ok((n > 0).then(|| sum / n as f64))
}

/// The tokenized held-out corpus of a run (`data.eval`, its first `data.eval_limit` pairs) as `method`'s
/// main loss reads it: English pairs for SFT, target-language pairs (TFT) for every other method.
/// `None` when the config names no held-out file (or `data.eval_limit = 0`).
///
/// A run's `eval_loss_after` uses its own method; `dft compare` scores every arm with
/// `Method::Tft` so that the held-out perplexity is one measurement across arms.
pub fn heldout_corpus(
    cfg: &TrainConfig,
    method: Method,
    special: dft_data::SpecialTokens,
    tokenizer: &tokenizers::Tokenizer,
    meta: &dft_models::TokenizerMeta,
) -> Result<Option<TokenizedCorpus>> {
    let none = SequenceKinds { tft: false, lc: false, et: false, sft: false, en_prompt: false, tgt_prompt: false };
    let kinds =
        if method == Method::Sft { SequenceKinds { sft: true, ..none } } else { SequenceKinds { tft: true, ..none } };
    match &cfg.data.eval {
        Some(p) if cfg.data.eval_limit > 0 => {
            let corpus = read_corpus(p, &cfg.data)?;
            Ok(Some(tokenize_with(&corpus, &cfg.data, kinds, tokenizer, special, cfg.data.eval_limit, meta)?))
        }
        _ => Ok(None),
    }
}

fn all_finite<B: Backend>(model: &CausalLm<B>) -> bool {
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::Tensor;
    struct Check(bool);
    impl<B: Backend> ModuleVisitor<B> for Check {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            if self.0 {
                self.0 = p.val().sum().into_scalar().elem::<f64>().is_finite();
            }
        }
    }
    let mut c = Check(true);
    model.visit(&mut c);
    c.0
}

/// Run (or resume) training as configured. The model is loaded on `device`.
///
/// The recipe, in the order it runs: [`Run::setup`] (config, run directory, model, data, auto layers,
/// resume), [`Run::fit`] (the optimiser steps), [`Run::finish`] (final checkpoint, eval, export).
pub fn train<B: AutodiffBackend>(
    cfg: &TrainConfig,
    resume: bool,
    device: &B::Device,
    hooks: &TrainHooks,
) -> Result<TrainSummary> {
    if cfg.parallel.device_ids() != [0] || hooks.node.is_some() {
        return crate::parallel::train_parallel::<B>(cfg, resume, device, hooks);
    }
    let (mut run, data) = Run::<B>::setup(cfg, resume, device, hooks, true)?;
    run.fit(&data, hooks)?;
    run.finish(&data)
}

/// The tokenized training and held-out data of a run.
pub struct RunData {
    pub train: TokenizedCorpus,
    pub eval: Option<TokenizedCorpus>,
}

impl RunData {
    /// The batcher over the training data (the same order on every run with the same config; a
    /// data-parallel run's config holds the global batch size).
    pub fn batcher(&self, cfg: &TrainConfig) -> Result<Batcher<'_>> {
        Ok(Batcher::new(
            &self.train,
            BatchConfig {
                batch_size: cfg.train.batch_size,
                seed: cfg.train.seed,
                group_by_length: true,
                ..Default::default()
            },
        )?)
    }
}

/// Everything a run carries from one step to the next: model, optimiser, position, logs.
pub struct Run<B: AutodiffBackend> {
    pub cfg: TrainConfig,
    pub device: B::Device,
    pub model: CausalLm<B>,
    pub optim: Optim<B>,
    pub objective: ObjectiveConfig,
    pub state: TrainerState,
    started: Instant,
    out_dir: PathBuf,
    tokenizer: tokenizers::Tokenizer,
    meta: dft_models::TokenizerMeta,
    trainable: usize,
    total_params: usize,
    eval_before: Option<f64>,
    last_eval: Option<f64>,
    /// Metrics, run info and the run directory's lock: the leader's (peer 0 of node 0) only.
    metrics: Option<MetricsWriter>,
    metrics_path: PathBuf,
    bar: indicatif::ProgressBar,
    run_info: Option<crate::run_info::RunInfo>,
    _lock: Option<crate::run_dir::RunLock>,
    /// This run's place in a data-parallel run (`None`: one device).
    pub(crate) peer: Option<crate::parallel::Peer<B::InnerBackend>>,
}

/// The optimiser of a run.
pub type Optim<B> = burn::optim::adaptor::OptimizerAdaptor<FusedAdamW, CausalLm<B>, B>;

/// What the micro-batches of one optimiser step add up to (before averaging).
#[derive(Debug, Default, Clone)]
pub struct StepSums {
    pub total: f64,
    pub main: f64,
    pub lc: Option<f64>,
    pub et: Option<f64>,
    pub tokens: usize,
    pub pad: f64,
    /// Micro-batches that went into the gradient.
    pub used: usize,
    pub epoch: usize,
}

impl StepSums {
    fn add(&mut self, c: &dft_losses::LossComponents, batch: &dft_data::DftBatch) {
        self.total += c.total;
        self.main += c.main;
        if let Some(v) = c.lc {
            self.lc = Some(self.lc.unwrap_or(0.0) + v);
        }
        if let Some(v) = c.et {
            self.et = Some(self.et.unwrap_or(0.0) + v);
        }
        let (real, pad) = token_counts(batch);
        self.tokens += real;
        self.pad += pad;
        self.used += 1;
    }
}

/// What to do with a batch or step whose loss or gradient norm is not finite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonFiniteVerdict {
    /// Leave it out and go on.
    Skip,
    /// Every batch of a whole epoch in a row was non-finite: stop training (nothing trainable left).
    GiveUp,
}

/// The `train.on_nonfinite` policy with its count of consecutive skipped batches.
#[derive(Debug, Clone)]
pub struct NonFiniteGuard {
    pub policy: OnNonFinite,
    /// Batches per epoch: this many non-finite batches in a row end the run.
    pub patience: usize,
    pub consecutive: usize,
}

impl NonFiniteGuard {
    pub fn new(policy: OnNonFinite, batches_per_epoch: usize) -> Self {
        Self { policy, patience: batches_per_epoch.max(1), consecutive: 0 }
    }

    /// A micro-batch with a non-finite loss: `Err` under `stop`, otherwise skip it (or give up when a
    /// whole epoch in a row was non-finite).
    pub fn bad_batch(&mut self, err: TrainError) -> Result<NonFiniteVerdict> {
        match self.policy {
            OnNonFinite::Stop => Err(err),
            OnNonFinite::Skip => {
                eprintln!("skipping: {err}");
                self.consecutive += 1;
                if self.consecutive >= self.patience {
                    eprintln!("every batch of a whole epoch had a non-finite loss; stopping");
                    return Ok(NonFiniteVerdict::GiveUp);
                }
                Ok(NonFiniteVerdict::Skip)
            }
        }
    }

    /// A micro-batch with a finite loss.
    pub fn good_batch(&mut self) {
        self.consecutive = 0;
    }

    /// Whether the last batches exhausted the patience.
    pub fn gave_up(&self) -> bool {
        self.consecutive >= self.patience
    }

    /// A step whose (clipped) gradient norm is not finite: `Err` under `stop`, otherwise skip the step.
    pub fn bad_step(&mut self, err: TrainError) -> Result<()> {
        match self.policy {
            OnNonFinite::Stop => Err(err),
            OnNonFinite::Skip => {
                eprintln!("skipping step: {err}");
                Ok(())
            }
        }
    }
}

/// How one optimiser step's micro-batch loop ended.
enum Gathered {
    /// Gradients of `sums.used` micro-batches.
    Grads(GradientsParams, StepSums),
    /// All micro-batches were skipped; try the next ones.
    NothingUsed,
    /// The data ran out, or every batch of an epoch was non-finite.
    Done,
}

impl<B: AutodiffBackend> Run<B> {
    /// Check the config, take the run directory, load model and data, pick auto layers, resume. Only a
    /// `leader` writes to the run directory (a data-parallel node other than node 0 does not).
    pub fn setup(
        cfg: &TrainConfig,
        resume: bool,
        device: &B::Device,
        hooks: &TrainHooks,
        leader: bool,
    ) -> Result<(Self, RunData)> {
        let started = Instant::now();
        cfg.check_ranges()?;
        let model_path = resolve_model_path(&cfg.model.path)?;
        let header = dft_models::peek_config(&model_path)?;
        let layer_plan = cfg.resolve_layers(header.num_hidden_layers)?;
        let out_dir = cfg.train.out_dir.clone();
        for w in cfg.check_against_model(header.max_position_embeddings, layer_plan.0, layer_plan.1)? {
            eprintln!("{w}");
        }
        let mode = match (resume, hooks.overwrite) {
            (true, _) => crate::run_dir::StartMode::Resume,
            (false, true) => crate::run_dir::StartMode::Overwrite,
            (false, false) => crate::run_dir::StartMode::Fresh,
        };
        let lock = if leader { Some(crate::run_dir::prepare_run_dir(&out_dir, mode)?) } else { None };
        // Before any weights are loaded: the checkpoint to resume from (the newest valid one) and its config.
        let resume_from = if resume { crate::checkpoint::resume_point(&out_dir, cfg)? } else { None };
        let run_info = if leader { Some(crate::run_info::RunInfo::start::<B>(cfg, &out_dir, resume)?) } else { None };

        let (model, tokenizer, meta, trainable, total_params) = load_model::<B>(cfg, &model_path, device)?;
        let special = special_tokens(&model.config, &tokenizer);

        // Data.
        let kinds = kinds_for(&cfg.method);
        let corpus = read_corpus(&cfg.data.train, &cfg.data)?;
        let train = tokenize_with(&corpus, &cfg.data, kinds, &tokenizer, special, cfg.data.limit, &meta)?;
        if leader {
            crate::data_prep::report_data(&cfg.data.train, &cfg.data, &corpus, &train, &out_dir)?;
        }
        let layers = if layer_plan.0.is_none() || layer_plan.1.is_none() {
            auto_layers(cfg, resume, layer_plan, &model, &tokenizer, &corpus, &model_path)?
        } else {
            (layer_plan.0.unwrap_or(1), layer_plan.1.unwrap_or(1))
        };
        let eval = heldout_corpus(cfg, cfg.method.name, special, &tokenizer, &meta)?;
        let data = RunData { train, eval };
        let batcher = data.batcher(cfg)?;
        let per_epoch = batcher.batches_per_epoch().div_ceil(cfg.train.grad_accum);
        let total_steps = if cfg.train.max_steps > 0 { cfg.train.max_steps } else { per_epoch * cfg.train.epochs };
        let objective = objective_for(cfg, layers);
        objective.validate(model.num_layers())?;

        // Burn's AdamW update (and record format), fused into one pass per parameter on Flex.
        let optim = FusedAdamW::new(
            cfg.train.beta1 as f32,
            cfg.train.beta2 as f32,
            cfg.train.eps as f32,
            cfg.train.weight_decay as f32,
        )
        .init::<B, CausalLm<B>>();
        let state = TrainerState {
            step: 0,
            total_steps,
            warmup_steps: warmup_steps(cfg.train.warmup_ratio, total_steps),
            data_position: batcher.start(),
            skipped_batches: 0,
            metrics_lines: 0,
            config: cfg.clone(),
        };
        let metrics_path = out_dir.join("metrics.jsonl");
        let mut run = Self {
            cfg: cfg.clone(),
            device: device.clone(),
            model,
            optim,
            objective,
            state,
            started,
            out_dir: out_dir.clone(),
            tokenizer,
            meta,
            trainable,
            total_params,
            eval_before: None,
            last_eval: None,
            metrics: None,
            metrics_path,
            bar: indicatif::ProgressBar::hidden(),
            run_info,
            _lock: lock,
            peer: None,
        };
        if resume {
            match resume_from {
                Some((dir, saved)) => run.load_checkpoint(&dir, saved)?,
                None => eprintln!("--resume: no checkpoint in {}, starting from scratch", out_dir.display()),
            }
        }
        if !leader {
            return Ok((run, data));
        }
        run.metrics = Some(MetricsWriter::open(&run.metrics_path, run.state.metrics_lines)?);
        if run.state.step == 0 {
            run.eval_before = run.eval(&data)?;
        }
        if let Some(l) = run.eval_before {
            eprintln!("eval before training: loss {l:.4}, perplexity {:.3}", l.exp());
        }
        run.last_eval = run.eval_before;
        if hooks.progress {
            run.bar = progress_bar(run.state.step, total_steps);
        }
        Ok((run, data))
    }

    /// A copy of this run for another peer of this process on `device`: same weights (and parameter
    /// ids), optimiser state and position; it writes nothing.
    pub(crate) fn follower(&self, device: &B::Device) -> Self {
        Self {
            cfg: self.cfg.clone(),
            device: device.clone(),
            model: self.model.clone().fork(device),
            optim: self.optim.clone(),
            objective: self.objective.clone(),
            state: self.state.clone(),
            started: self.started,
            out_dir: self.out_dir.clone(),
            tokenizer: self.tokenizer.clone(),
            meta: self.meta.clone(),
            trainable: self.trainable,
            total_params: self.total_params,
            eval_before: None,
            last_eval: None,
            metrics: None,
            metrics_path: self.metrics_path.clone(),
            bar: indicatif::ProgressBar::hidden(),
            run_info: None,
            _lock: None,
            peer: None,
        }
    }

    /// Whether this run writes metrics, checkpoints and the export (one device, or peer 0).
    pub fn is_leader(&self) -> bool {
        self.metrics.is_some()
    }

    /// Load the model (and LoRA adapters) and optimiser state of checkpoint `dir`.
    fn load_checkpoint(&mut self, dir: &std::path::Path, saved: TrainerState) -> Result<()> {
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let ck = |e: burn::record::RecorderError| TrainError::Checkpoint { path: dir.into(), msg: e.to_string() };
        let model = self.model.clone();
        self.model = match model.lora_parts() {
            // LoRA runs checkpoint only what trains (adapters, modules to save).
            Some(parts) => {
                let parts = parts.load_file(dir.join(LORA_FILE), &recorder, &self.device).map_err(ck)?;
                model.with_lora_parts(parts)?
            }
            None => model.load_file(dir.join(MODEL_FILE), &recorder, &self.device).map_err(ck)?,
        };
        let rec = recorder.load(dir.join(OPTIM_FILE), &self.device).map_err(ck)?;
        self.optim = self.optim.clone().load_record(rec);
        eprintln!("resuming from {} (step {})", dir.display(), saved.step);
        // The schedule follows this run's config (max_steps may grow on resume), the position the checkpoint.
        let (total_steps, warmup_steps) = (self.state.total_steps, self.state.warmup_steps);
        self.state = TrainerState { config: self.cfg.clone(), total_steps, warmup_steps, ..saved };
        Ok(())
    }

    /// The optimiser steps, from the current position to `total_steps` (or an interruption).
    pub fn fit(&mut self, data: &RunData, hooks: &TrainHooks) -> Result<()> {
        let batcher = data.batcher(&self.cfg)?;
        let epochs = if self.cfg.train.max_steps > 0 { usize::MAX / 2 } else { self.cfg.train.epochs };
        let mut iter = batcher.iter_from(self.state.data_position, epochs)?;
        let mut guard = NonFiniteGuard::new(self.cfg.train.on_nonfinite, batcher.batches_per_epoch());
        while self.state.step < self.state.total_steps {
            let t0 = Instant::now();
            let (grads, sums) = match self.gather_grads(&batcher, &mut iter, &mut guard)? {
                Gathered::Grads(grads, sums) => (grads, sums),
                Gathered::NothingUsed => continue,
                Gathered::Done => break,
            };
            let Some((lr, grad_norm)) = self.optimizer_step(grads, &sums, &mut guard)? else { continue };
            if self.is_leader() {
                let eval = if self.eval_due() { self.eval(data)? } else { None };
                self.log_step(&sums, lr, grad_norm, eval, t0.elapsed().as_secs_f64())?;
            }
            self.checkpoint_if_due(hooks)?;
        }
        self.bar.finish();
        Ok(())
    }

    /// Forward and backward `grad_accum` micro-batches (skipping non-finite ones as configured) and
    /// accumulate their gradients, each scaled by `1 / grad_accum`.
    fn gather_grads(
        &mut self,
        batcher: &Batcher<'_>,
        iter: &mut BatchIter<'_, '_>,
        guard: &mut NonFiniteGuard,
    ) -> Result<Gathered> {
        let mut accumulator = GradientsAccumulator::<CausalLm<B>>::new();
        let mut sums = StepSums { epoch: self.state.data_position.epoch, ..Default::default() };
        let mut micro = 0;
        // LoRA dropout masks come from this thread's dropout stream, seeded per step (and per peer, so
        // the peers' shards get independent masks): a resumed run draws the masks of an uninterrupted
        // one, whatever else in the process uses the backend's RNG.
        let rank = self.peer.as_ref().map_or(0, |p| p.rank as u64);
        let _dropout = dft_models::lora::seed_dropout(
            self.cfg.train.seed.wrapping_mul(1_000_003).wrapping_add(self.state.step as u64)
                ^ rank.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        while micro < self.cfg.train.grad_accum {
            let Some(batch) = iter.next() else { break };
            let position_after = BatchIter::position(iter);
            micro += 1;
            sums.epoch = batch.position.epoch;
            let (loss, c) = self.micro_loss(&batch, batcher)?;
            let c = &c;
            if !c.total.is_finite() {
                let err = TrainError::NonFiniteLoss {
                    step: self.state.step + 1,
                    batch: batch.position.batch_index,
                    examples: batch.ids.join(","),
                    value: c.total,
                };
                self.state.data_position = position_after;
                match guard.bad_batch(err)? {
                    NonFiniteVerdict::Skip => {
                        self.state.skipped_batches += 1;
                        continue;
                    }
                    NonFiniteVerdict::GiveUp => {
                        self.state.skipped_batches += 1;
                        break;
                    }
                }
            }
            guard.good_batch();
            if let Some(loss) = loss {
                let grads = (loss / self.cfg.train.grad_accum as f64).backward();
                accumulator.accumulate(&self.model, GradientsParams::from_grads(grads, &self.model));
            }
            sums.add(c, &batch);
            self.state.data_position = position_after;
        }
        Ok(match sums.used {
            0 if micro == 0 || guard.gave_up() => Gathered::Done,
            0 => Gathered::NothingUsed,
            _ => {
                let grads = accumulator.grads();
                let grads = match &self.peer {
                    Some(peer) => crate::parallel::all_reduce_grads::<B, _>(&self.model, grads, peer, &self.device)?,
                    None => grads,
                };
                Gathered::Grads(grads, sums)
            }
        })
    }

    /// The loss of one micro-batch and its components. On one device: the whole batch. On a peer: its
    /// slice, each term scaled by the slice's share of the batch's labelled tokens (examples, for the
    /// feature losses); the components are then summed over peers, so they (and the decision on a
    /// non-finite loss) are the whole batch's, the same on every peer. `None`: an empty slice.
    fn micro_loss(
        &self,
        batch: &dft_data::DftBatch,
        batcher: &Batcher<'_>,
    ) -> Result<(Option<burn::tensor::Tensor<B, 1>>, dft_losses::LossComponents)> {
        let method = self.cfg.method.name;
        let Some(peer) = &self.peer else {
            let out = dft_loss(&self.model, &to_loss_batch(batch, method), &self.objective, &self.device)?;
            return Ok((Some(out.loss), out.components));
        };
        crate::parallel::injected_fault(peer.rank, self.state.step + 1)?;
        let obj = &self.objective;
        let whole = TermCounts::of(&to_loss_batch(batch, method), obj);
        let rows = crate::parallel::shard(batch.rows(), peer.rank, peer.world);
        let (mut part, mut loss) = ([0.0; 3], None);
        if !rows.is_empty() {
            let slice = to_loss_batch(&batcher.build(&batch.example_indices[rows], batch.position), method);
            let share = TermCounts::of(&slice, obj).share_of(&whole);
            let out = dft_loss(&self.model, &slice, &ObjectiveConfig { scale: share, ..obj.clone() }, &self.device)?;
            let c = &out.components;
            part = [c.main * share.main, c.lc.unwrap_or(0.0) * share.lc, c.et.unwrap_or(0.0) * share.et];
            if !c.total.is_finite() {
                part[0] = c.total; // non-finite on any peer: non-finite for all
            }
            loss = Some(out.loss);
        }
        let [main, lc, et]: [f64; 3] = peer.sum_f64(&part, &self.device)?.try_into().expect("three sums");
        let on = |aux: dft_losses::AuxLoss| aux != dft_losses::AuxLoss::Off;
        let c = dft_losses::LossComponents {
            main,
            main_tokens: whole.main,
            lc: on(obj.lc).then_some(lc),
            lc_tokens: whole.lc,
            et: on(obj.et).then_some(et),
            et_tokens: whole.et,
            total: main + obj.alpha * if on(obj.lc) { lc } else { 0.0 } + obj.beta * if on(obj.et) { et } else { 0.0 },
        };
        Ok((loss, c))
    }

    /// Clip to the global norm and take one AdamW step on the schedule's learning rate. `None`: the
    /// gradient norm was not finite and the step was skipped.
    fn optimizer_step(
        &mut self,
        mut grads: GradientsParams,
        sums: &StepSums,
        guard: &mut NonFiniteGuard,
    ) -> Result<Option<(f64, f64)>> {
        let grad_norm = clip_global_norm::<B, CausalLm<B>>(&self.model, &mut grads, self.cfg.train.max_grad_norm);
        if !grad_norm.is_finite() {
            let err = TrainError::NonFiniteLoss {
                step: self.state.step + 1,
                batch: self.state.data_position.batch_index,
                examples: "gradient norm".into(),
                value: grad_norm,
            };
            guard.bad_step(err)?;
            self.state.skipped_batches += sums.used;
            return Ok(None);
        }
        let lr =
            cosine_with_warmup(self.cfg.train.lr, self.state.step, self.state.warmup_steps, self.state.total_steps);
        self.model = self.optim.step(lr, self.model.clone(), grads);
        self.state.step += 1;
        Ok(Some((lr, grad_norm)))
    }

    fn eval_due(&self) -> bool {
        let every = self.cfg.train.eval_every;
        every > 0 && self.state.step.is_multiple_of(every) && self.state.step < self.state.total_steps
    }

    /// Held-out loss of the current model (`None` without eval data).
    fn eval(&self, data: &RunData) -> Result<Option<f64>> {
        let bs = self.cfg.train.batch_size.max(4);
        Ok(data
            .eval
            .as_ref()
            .map(|e| eval_loss(&self.model.valid(), e, bs, self.cfg.method.name))
            .transpose()?
            .flatten())
    }

    /// One metrics line (means over the step's micro-batches) and the progress bar.
    fn log_step(&mut self, sums: &StepSums, lr: f64, grad_norm: f64, eval: Option<f64>, dt: f64) -> Result<()> {
        if eval.is_some() {
            self.last_eval = eval;
        }
        let n = sums.used as f64;
        let m = StepMetrics {
            step: self.state.step,
            epoch: sums.epoch,
            lr,
            loss: sums.total / n,
            main: sums.main / n,
            lc: sums.lc.map(|v| v / n),
            et: sums.et.map(|v| v / n),
            grad_norm,
            tokens: sums.tokens,
            tokens_per_s: sums.tokens as f64 / dt,
            padding_fraction: sums.pad / n,
            elapsed_s: self.started.elapsed().as_secs_f64(),
            eval_loss: eval,
        };
        if let Some(w) = self.metrics.as_mut() {
            w.write(&m)?;
        }
        self.state.metrics_lines += 1;
        let mut msg = format!("loss {:.3} main {:.3}", m.loss, m.main);
        if let Some(v) = m.lc {
            msg += &format!(" lc {v:.3}");
        }
        if let Some(v) = m.et {
            msg += &format!(" et {v:.3}");
        }
        msg += &format!(" | {:.0} tok/s", m.tokens_per_s);
        if let Some(v) = self.last_eval {
            msg += &format!(" | eval {v:.3}");
        }
        self.bar.set_message(msg);
        self.bar.set_position(self.state.step as u64);
        Ok(())
    }

    /// Checkpoint every `checkpoint_every` steps, and on an interruption (then stop with
    /// [`TrainError::Interrupted`]).
    fn checkpoint_if_due(&mut self, hooks: &TrainHooks) -> Result<()> {
        let mut interrupted = hooks.stop.load(Ordering::SeqCst);
        if let Some(peer) = &self.peer {
            // Every peer stops after the same step.
            interrupted = peer.sum_f64(&[interrupted as u8 as f64], &self.device)?[0] > 0.0;
        }
        if !self.is_leader() {
            if interrupted {
                return Err(TrainError::Interrupted { step: self.state.step, path: self.out_dir.clone() });
            }
            return Ok(());
        }
        let every = self.cfg.train.checkpoint_every;
        if (every > 0 && self.state.step.is_multiple_of(every)) || interrupted {
            let path = self.write_checkpoint()?;
            crate::run_info::write_csv(&self.metrics_path, &self.metrics_path.with_extension("csv"))?;
            if interrupted {
                self.bar.abandon();
                return Err(TrainError::Interrupted { step: self.state.step, path });
            }
        }
        Ok(())
    }

    /// Write a checkpoint of the current step (atomically; refused if a weight is not finite).
    pub fn write_checkpoint(&self) -> Result<PathBuf> {
        let model = &self.model;
        if !all_finite(model) {
            return Err(TrainError::Checkpoint {
                path: self.out_dir.clone(),
                msg: "model has non-finite weights; not saved".into(),
            });
        }
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        // Model + two AdamW moments in f32, plus slack.
        let params = if model.lora.is_some() { self.trainable } else { model.num_params() };
        let estimate = 12 * params as u64 + (1 << 20);
        let optim_rec = self.optim.to_record();
        write_checkpoint(&self.out_dir, &self.state, self.cfg.train.keep_last, estimate, |dir| {
            let ck = |e: burn::record::RecorderError| TrainError::Checkpoint { path: dir.into(), msg: e.to_string() };
            match model.lora_parts() {
                Some(parts) => parts.save_file(dir.join(LORA_FILE), &recorder).map_err(ck)?,
                None => model.clone().save_file(dir.join(MODEL_FILE), &recorder).map_err(ck)?,
            }
            recorder.record(optim_rec, dir.join(OPTIM_FILE)).map_err(ck)?;
            Ok(())
        })
    }

    /// What a node other than node 0 reports: its steps; node 0 holds the checkpoint and export.
    pub(crate) fn summary_without_export(&self, world_size: usize) -> TrainSummary {
        TrainSummary {
            steps: self.state.step,
            eval_loss_before: None,
            eval_loss_after: None,
            out_dir: self.out_dir.clone(),
            export_dir: self.out_dir.join("final"),
            metrics: self.metrics_path.clone(),
            plot: self.out_dir.join("loss.svg"),
            wall_s: self.started.elapsed().as_secs_f64(),
            skipped_batches: self.state.skipped_batches,
            adapter_dir: None,
            trainable_params: self.trainable,
            total_params: self.total_params,
            threads: rayon::current_num_threads(),
            world_size,
        }
    }

    /// Final checkpoint, held-out loss, export (`final/`, and `adapter/` for LoRA), plot and summary.
    pub fn finish(mut self, data: &RunData) -> Result<TrainSummary> {
        if list_checkpoints(&self.out_dir).last().map(|(s, _)| *s) != Some(self.state.step) {
            self.write_checkpoint()?;
        }
        let eval_after = self.eval(data)?;
        let out_dir = self.out_dir.clone();
        let export_dir = out_dir.join("final");
        let model = self.model.valid();
        // f32 weights plus room for the tokenizer and config.
        let export_need = 4 * model.num_params() as u64 + (16 << 20);
        crate::run_dir::check_space(&export_dir, export_need)?;
        let explain = |e: dft_models::ModelError| {
            let msg = e.to_string();
            crate::run_dir::explain_write_failure(&export_dir, export_need, &msg, e.into())
        };
        let (tokenizer, meta) = (Some(&self.tokenizer), Some(&self.meta));
        let adapter_dir = if model.lora.is_some() {
            // The adapter in PEFT's format, and `final/` = the merged model (a plain HF checkpoint).
            let dir = out_dir.join("adapter");
            model.save_adapter(&dir, &self.cfg.model.path).map_err(explain)?;
            model.merge_lora().export_hf(&export_dir, tokenizer, meta, &Default::default()).map_err(explain)?;
            Some(dir)
        } else {
            model.export_hf(&export_dir, tokenizer, meta, &Default::default()).map_err(explain)?;
            None
        };
        let plot = out_dir.join("loss.svg");
        let all = read_metrics(&self.metrics_path)?;
        let title = format!("{:?} on {}", self.cfg.method.name, self.cfg.data.lang).to_uppercase();
        plot_losses(&all, &plot, &title)?;
        let summary = TrainSummary {
            steps: self.state.step,
            eval_loss_before: self.eval_before,
            eval_loss_after: eval_after,
            out_dir: out_dir.clone(),
            export_dir,
            metrics: self.metrics_path.clone(),
            plot,
            wall_s: self.started.elapsed().as_secs_f64(),
            skipped_batches: self.state.skipped_batches,
            adapter_dir,
            trainable_params: self.trainable,
            total_params: self.total_params,
            threads: rayon::current_num_threads(),
            world_size: self.peer.as_ref().map_or(1, |p| p.world),
        };
        std::fs::write(out_dir.join("summary.json"), serde_json::to_string_pretty(&summary).expect("json"))
            .map_err(|e| TrainError::Io { path: out_dir.join("summary.json"), source: e })?;
        if let Some(info) = self.run_info.as_mut() {
            info.finish(summary.steps, summary.wall_s, &summary.metrics)?;
        }
        Ok(summary)
    }
}

/// Load the pretrained model with the run's precision (and LoRA adapters); its tokenizer and metadata,
/// and its trainable / total parameter counts.
#[allow(clippy::type_complexity)]
fn load_model<B: AutodiffBackend>(
    cfg: &TrainConfig,
    model_path: &std::path::Path,
    device: &B::Device,
) -> Result<(CausalLm<B>, tokenizers::Tokenizer, dft_models::TokenizerMeta, usize, usize)> {
    let pre = load_pretrained::<B>(model_path, device)?;
    let tokenizer = pre.tokenizer.ok_or_else(|| TrainError::Config {
        key: "model.path".into(),
        msg: format!("{} has no tokenizer (tokenizer.json or GGUF tokenizer metadata)", model_path.display()),
    })?;
    let mut model = pre.model.with_precision(cfg.train.precision);
    if let Some(spec) = &cfg.lora {
        model = model.with_lora(spec, cfg.train.seed)?;
        if cfg.train.precision == dft_losses::Precision::Bf16Mixed {
            // LoRA on a bf16 base: the frozen matrices are stored in bf16 (half the memory); adapters,
            // modules to save and norms stay f32.
            model = model.with_frozen_base_dtype(burn::tensor::FloatDType::BF16);
        }
    }
    let (trainable, total) = model.parameter_counts();
    // Where the products run, when the CPU has AMX (Flex only: CUDA has its own tensor cores).
    let amx = dft_kernels::fast_path::<B>() && dft_kernels::amx_available();
    let where_products = match (cfg.train.precision, amx) {
        (dft_losses::Precision::Bf16Mixed, true) => " (products on the CPU's AMX tiles)",
        (dft_losses::Precision::F32, true) => {
            " (this CPU has AMX: train.precision = \"bf16-mixed\" runs the products 2–4× faster)"
        }
        _ => "",
    };
    eprintln!(
        "model: {} parameters, {} trainable ({:.2}%){}, precision {}{}",
        total,
        trainable,
        100.0 * trainable as f64 / total.max(1) as f64,
        if cfg.lora.is_some() { " — LoRA" } else { "" },
        cfg.train.precision,
        where_products
    );
    Ok((model, tokenizer, pre.meta, trainable, total))
}

/// `"auto"` layers: the run's saved choice on resume, otherwise selected now (and saved to `layers.md`).
fn auto_layers<B: AutodiffBackend>(
    cfg: &TrainConfig,
    resume: bool,
    layer_plan: (Option<usize>, Option<usize>),
    model: &CausalLm<B>,
    tokenizer: &tokenizers::Tokenizer,
    corpus: &dft_data::ParallelCorpus,
    model_path: &std::path::Path,
) -> Result<(usize, usize)> {
    let out_dir = &cfg.train.out_dir;
    let report = match crate::auto_layers::saved_layers(out_dir, model.num_layers())? {
        Some(r) if resume => r,
        _ => {
            let limit = if cfg.data.limit > 0 { cfg.data.limit } else { usize::MAX };
            let samples = cfg.method.auto_samples.min(limit);
            let text = crate::auto_layers::sample_text(corpus, &cfg.data.train, samples);
            let name = model_path.display().to_string();
            let lang = cfg.data.lang.as_str();
            crate::auto_layers::select_layers(&model.valid(), tokenizer, &text, lang, &name, out_dir, true)?
        }
    };
    let (i, j) = crate::auto_layers::apply(layer_plan, &report);
    let how = if report.critical.detected { "detected" } else { "fallback" };
    eprintln!("auto layers ({how}, {}): lc_layer = {i}, et_layer = {j}", out_dir.join("layers.md").display());
    for r in &report.critical.reasons {
        eprintln!("  {r}");
    }
    Ok((i, j))
}

/// The DFT objective of the config's method with LC at layer `i` and ET at layer `j`.
fn objective_for(cfg: &TrainConfig, (lc_layer, et_layer): (usize, usize)) -> ObjectiveConfig {
    let dft = cfg.method.name == Method::Dft;
    ObjectiveConfig {
        lc: if dft { cfg.method.lc } else { dft_losses::AuxLoss::Off },
        et: if dft { cfg.method.et } else { dft_losses::AuxLoss::Off },
        lc_layer,
        et_layer,
        alpha: cfg.method.alpha,
        beta: cfg.method.beta,
        pooling: cfg.method.pooling,
        english_stop_grad: cfg.method.english_stop_grad,
        ..Default::default()
    }
}

fn progress_bar(step: usize, total_steps: usize) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(total_steps as u64);
    b.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .expect("template"),
    );
    b.set_position(step as u64);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(v: f64) -> TrainError {
        TrainError::NonFiniteLoss { step: 3, batch: 7, examples: "a,b".into(), value: v }
    }

    #[test]
    fn stop_policy_fails_on_the_first_nonfinite_batch_naming_it() {
        let mut g = NonFiniteGuard::new(OnNonFinite::Stop, 4);
        let e = g.bad_batch(err(f64::NAN)).unwrap_err().to_string();
        assert!(e.contains("step 3") && e.contains("batch 7") && e.contains("a,b") && e.contains("NaN"), "{e}");
        assert!(g.bad_step(err(f64::INFINITY)).is_err());
    }

    #[test]
    fn skip_policy_skips_until_a_whole_epoch_in_a_row_was_nonfinite() {
        let mut g = NonFiniteGuard::new(OnNonFinite::Skip, 3);
        assert_eq!(g.bad_batch(err(f64::NAN)).unwrap(), NonFiniteVerdict::Skip);
        assert_eq!(g.bad_batch(err(f64::NAN)).unwrap(), NonFiniteVerdict::Skip);
        assert!(!g.gave_up());
        // A finite batch resets the count: two more skips do not end the run.
        g.good_batch();
        assert_eq!(g.bad_batch(err(f64::NAN)).unwrap(), NonFiniteVerdict::Skip);
        assert_eq!(g.bad_batch(err(f64::INFINITY)).unwrap(), NonFiniteVerdict::Skip);
        assert!(!g.gave_up());
        assert_eq!(g.bad_batch(err(f64::NAN)).unwrap(), NonFiniteVerdict::GiveUp);
        assert!(g.gave_up());
    }

    #[test]
    fn skip_policy_skips_a_step_with_a_nonfinite_gradient_norm() {
        let mut g = NonFiniteGuard::new(OnNonFinite::Skip, 2);
        g.bad_step(err(f64::INFINITY)).unwrap();
        // A skipped step is not a skipped batch: the batch patience is untouched.
        assert_eq!(g.consecutive, 0);
    }

    #[test]
    fn patience_is_at_least_one_batch() {
        let mut g = NonFiniteGuard::new(OnNonFinite::Skip, 0);
        assert_eq!(g.bad_batch(err(f64::NAN)).unwrap(), NonFiniteVerdict::GiveUp);
    }
}
