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
use dft_data::{BatchConfig, Batcher, SequenceKinds, TokenizedCorpus};
use dft_losses::{dft_loss, dft_loss_eval, ObjectiveConfig};
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
pub fn train<B: AutodiffBackend>(
    cfg: &TrainConfig,
    resume: bool,
    device: &B::Device,
    hooks: &TrainHooks,
) -> Result<TrainSummary> {
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
    let _lock = crate::run_dir::prepare_run_dir(&out_dir, mode)?;
    // Before any weights are loaded: the checkpoint to resume from (the newest valid one) and its config.
    let resume_from = if resume { crate::checkpoint::resume_point(&out_dir, cfg)? } else { None };
    let mut run_info = crate::run_info::RunInfo::start::<B>(cfg, &out_dir, resume)?;

    // Model and tokenizer.
    let pre = load_pretrained::<B>(&model_path, device)?;
    let tokenizer = pre.tokenizer.ok_or_else(|| TrainError::Config {
        key: "model.path".into(),
        msg: format!("{} has no tokenizer (tokenizer.json or GGUF tokenizer metadata)", model_path.display()),
    })?;
    let meta = pre.meta;
    let mut model = pre.model.with_precision(cfg.train.precision);
    if let Some(spec) = &cfg.lora {
        model = model.with_lora(spec, cfg.train.seed)?;
        if cfg.train.precision == dft_losses::Precision::Bf16Mixed {
            // LoRA on a bf16 base: the frozen matrices are stored in bf16 (half the memory); adapters,
            // modules to save and norms stay f32.
            model = model.with_frozen_base_dtype(burn::tensor::FloatDType::BF16);
        }
    }
    let (trainable, total_params) = model.parameter_counts();
    eprintln!(
        "model: {} parameters, {} trainable ({:.2}%){}, precision {}",
        total_params,
        trainable,
        100.0 * trainable as f64 / total_params.max(1) as f64,
        if cfg.lora.is_some() { " — LoRA" } else { "" },
        cfg.train.precision
    );
    let special = special_tokens(&model.config, &tokenizer);

    // Data.
    let kinds = kinds_for(&cfg.method);
    let corpus = read_corpus(&cfg.data.train, &cfg.data)?;
    let train_data = tokenize_with(&corpus, &cfg.data, kinds, &tokenizer, special, cfg.data.limit, &meta)?;
    crate::data_prep::report_data(&cfg.data.train, &cfg.data, &corpus, &train_data, &out_dir)?;
    let (lc_layer, et_layer) = if layer_plan.0.is_none() || layer_plan.1.is_none() {
        let report = match crate::auto_layers::saved_layers(&out_dir, model.num_layers())? {
            Some(r) if resume => r,
            _ => {
                let limit = if cfg.data.limit > 0 { cfg.data.limit } else { usize::MAX };
                let samples = cfg.method.auto_samples.min(limit);
                let text = crate::auto_layers::sample_text(&corpus, &cfg.data.train, samples);
                let name = model_path.display().to_string();
                let lang = cfg.data.lang.as_str();
                crate::auto_layers::select_layers(&model.valid(), &tokenizer, &text, lang, &name, &out_dir, true)?
            }
        };
        let (i, j) = crate::auto_layers::apply(layer_plan, &report);
        let how = if report.critical.detected { "detected" } else { "fallback" };
        eprintln!("auto layers ({how}, {}): lc_layer = {i}, et_layer = {j}", out_dir.join("layers.md").display());
        for r in &report.critical.reasons {
            eprintln!("  {r}");
        }
        (i, j)
    } else {
        (layer_plan.0.unwrap_or(1), layer_plan.1.unwrap_or(1))
    };
    let eval_kind = if cfg.method.name == Method::Sft {
        SequenceKinds { tft: false, lc: false, et: false, sft: true, en_prompt: false, tgt_prompt: false }
    } else {
        SequenceKinds { tft: true, lc: false, et: false, sft: false, en_prompt: false, tgt_prompt: false }
    };
    let eval_data = match &cfg.data.eval {
        Some(p) if cfg.data.eval_limit > 0 => Some(tokenize_with(
            &read_corpus(p, &cfg.data)?,
            &cfg.data,
            eval_kind,
            &tokenizer,
            special,
            cfg.data.eval_limit,
            &meta,
        )?),
        _ => None,
    };
    let batcher = Batcher::new(
        &train_data,
        BatchConfig {
            batch_size: cfg.train.batch_size,
            seed: cfg.train.seed,
            group_by_length: true,
            ..Default::default()
        },
    )?;
    let per_epoch = batcher.batches_per_epoch().div_ceil(cfg.train.grad_accum);
    let total_steps = if cfg.train.max_steps > 0 { cfg.train.max_steps } else { per_epoch * cfg.train.epochs };
    let warmup = warmup_steps(cfg.train.warmup_ratio, total_steps);

    let objective = ObjectiveConfig {
        lc: if cfg.method.name == Method::Dft { cfg.method.lc } else { dft_losses::AuxLoss::Off },
        et: if cfg.method.name == Method::Dft { cfg.method.et } else { dft_losses::AuxLoss::Off },
        lc_layer,
        et_layer,
        alpha: cfg.method.alpha,
        beta: cfg.method.beta,
        pooling: cfg.method.pooling,
        english_stop_grad: cfg.method.english_stop_grad,
        ..Default::default()
    };
    objective.validate(model.num_layers())?;

    // Burn's AdamW update (and record format), fused into one pass per parameter on Flex.
    let mut optim = FusedAdamW::new(
        cfg.train.beta1 as f32,
        cfg.train.beta2 as f32,
        cfg.train.eps as f32,
        cfg.train.weight_decay as f32,
    )
    .init::<B, CausalLm<B>>();
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();

    // Resume.
    let mut state = TrainerState {
        step: 0,
        total_steps,
        warmup_steps: warmup,
        data_position: batcher.start(),
        skipped_batches: 0,
        metrics_lines: 0,
        config: cfg.clone(),
    };
    if resume {
        if let Some((dir, saved)) = resume_from {
            let dir = &dir;
            let ck = |e: burn::record::RecorderError| TrainError::Checkpoint { path: dir.clone(), msg: e.to_string() };
            model = match model.lora_parts() {
                // LoRA runs checkpoint only what trains (adapters, modules to save).
                Some(parts) => {
                    let parts = parts.load_file(dir.join(LORA_FILE), &recorder, device).map_err(ck)?;
                    model.with_lora_parts(parts)?
                }
                None => model.load_file(dir.join(MODEL_FILE), &recorder, device).map_err(ck)?,
            };
            let rec = recorder.load(dir.join(OPTIM_FILE), device).map_err(ck)?;
            optim = optim.load_record(rec);
            eprintln!("resuming from {} (step {})", dir.display(), saved.step);
            state = TrainerState { config: cfg.clone(), ..saved };
        } else {
            eprintln!("--resume: no checkpoint in {}, starting from scratch", out_dir.display());
        }
    }
    let metrics_path = out_dir.join("metrics.jsonl");
    let mut metrics = MetricsWriter::open(&metrics_path, state.metrics_lines)?;

    let eval_bs = cfg.train.batch_size.max(4);
    let eval_before = if state.step == 0 {
        eval_data.as_ref().map(|e| eval_loss(&model.valid(), e, eval_bs, cfg.method.name)).transpose()?.flatten()
    } else {
        None
    };
    if let Some(l) = eval_before {
        eprintln!("eval before training: loss {l:.4}, perplexity {:.3}", l.exp());
    }

    let epochs_for_iter = if cfg.train.max_steps > 0 { usize::MAX / 2 } else { cfg.train.epochs };
    let mut iter = batcher.iter_from(state.data_position, epochs_for_iter)?;
    let bar = if hooks.progress {
        let b = indicatif::ProgressBar::new(total_steps as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
                .expect("template"),
        );
        b.set_position(state.step as u64);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };

    let write_ckpt = |model: &CausalLm<B>, optim_rec, state: &TrainerState| -> Result<PathBuf> {
        if !all_finite(model) {
            return Err(TrainError::Checkpoint {
                path: out_dir.clone(),
                msg: "model has non-finite weights; not saved".into(),
            });
        }
        // Model + two AdamW moments in f32, plus slack.
        let estimate = 12 * (if model.lora.is_some() { trainable } else { model.num_params() }) as u64 + (1 << 20);
        write_checkpoint(&out_dir, state, cfg.train.keep_last, estimate, |dir| {
            let ck = |e: burn::record::RecorderError| TrainError::Checkpoint { path: dir.into(), msg: e.to_string() };
            match model.lora_parts() {
                Some(parts) => parts.save_file(dir.join(LORA_FILE), &recorder).map_err(ck)?,
                None => model.clone().save_file(dir.join(MODEL_FILE), &recorder).map_err(ck)?,
            }
            recorder.record(optim_rec, dir.join(OPTIM_FILE)).map_err(ck)?;
            Ok(())
        })
    };

    let mut last_eval = eval_before;
    let mut consecutive_skips = 0usize;
    while state.step < total_steps {
        let t0 = Instant::now();
        let mut accumulator = GradientsAccumulator::<CausalLm<B>>::new();
        let (mut sum_total, mut sum_main, mut sum_lc, mut sum_et) = (0.0, 0.0, None::<f64>, None::<f64>);
        let (mut tokens, mut pad_sum, mut used) = (0usize, 0.0, 0usize);
        let mut epoch = state.data_position.epoch;
        let mut micro = 0;
        if cfg.lora.as_ref().is_some_and(|l| l.dropout > 0.0) {
            // LoRA dropout masks come from the backend's RNG: seeded per step, so a resumed run draws the
            // same masks as an uninterrupted one.
            B::seed(device, cfg.train.seed.wrapping_mul(1_000_003).wrapping_add(state.step as u64));
        }
        while micro < cfg.train.grad_accum {
            let Some(batch) = iter.next() else { break };
            let position_after = iter.position();
            micro += 1;
            epoch = batch.position.epoch;
            let lb = to_loss_batch(&batch, cfg.method.name);
            let out = dft_loss(&model, &lb, &objective, device)?;
            let c = &out.components;
            if !c.total.is_finite() {
                let err = TrainError::NonFiniteLoss {
                    step: state.step + 1,
                    batch: batch.position.batch_index,
                    examples: batch.ids.join(","),
                    value: c.total,
                };
                match cfg.train.on_nonfinite {
                    OnNonFinite::Stop => return Err(err),
                    OnNonFinite::Skip => {
                        eprintln!("skipping: {err}");
                        state.skipped_batches += 1;
                        state.data_position = position_after;
                        consecutive_skips += 1;
                        if consecutive_skips >= batcher.batches_per_epoch() {
                            eprintln!("every batch of a whole epoch had a non-finite loss; stopping");
                            break;
                        }
                        continue;
                    }
                }
            }
            consecutive_skips = 0;
            let grads = (out.loss / cfg.train.grad_accum as f64).backward();
            accumulator.accumulate(&model, GradientsParams::from_grads(grads, &model));
            sum_total += c.total;
            sum_main += c.main;
            if let Some(v) = c.lc {
                sum_lc = Some(sum_lc.unwrap_or(0.0) + v);
            }
            if let Some(v) = c.et {
                sum_et = Some(sum_et.unwrap_or(0.0) + v);
            }
            let (real, pad) = token_counts(&batch);
            tokens += real;
            pad_sum += pad;
            used += 1;
            state.data_position = position_after;
        }
        if used == 0 {
            if micro == 0 || consecutive_skips >= batcher.batches_per_epoch() {
                break; // data exhausted, or nothing trainable left
            }
            continue;
        }
        let mut grads = accumulator.grads();
        let grad_norm = clip_global_norm::<B, CausalLm<B>>(&model, &mut grads, cfg.train.max_grad_norm);
        if !grad_norm.is_finite() {
            let err = TrainError::NonFiniteLoss {
                step: state.step + 1,
                batch: state.data_position.batch_index,
                examples: "gradient norm".into(),
                value: grad_norm,
            };
            match cfg.train.on_nonfinite {
                OnNonFinite::Stop => return Err(err),
                OnNonFinite::Skip => {
                    eprintln!("skipping step: {err}");
                    state.skipped_batches += used;
                    continue;
                }
            }
        }
        let lr = cosine_with_warmup(cfg.train.lr, state.step, warmup, total_steps);
        model = optim.step(lr, model, grads);
        state.step += 1;

        let eval_now = cfg.train.eval_every > 0 && state.step % cfg.train.eval_every == 0 && state.step < total_steps;
        let eval = if eval_now {
            eval_data.as_ref().map(|e| eval_loss(&model.valid(), e, eval_bs, cfg.method.name)).transpose()?.flatten()
        } else {
            None
        };
        if eval.is_some() {
            last_eval = eval;
        }
        let dt = t0.elapsed().as_secs_f64();
        let n = used as f64;
        let m = StepMetrics {
            step: state.step,
            epoch,
            lr,
            loss: sum_total / n,
            main: sum_main / n,
            lc: sum_lc.map(|v| v / n),
            et: sum_et.map(|v| v / n),
            grad_norm,
            tokens,
            tokens_per_s: tokens as f64 / dt,
            padding_fraction: pad_sum / n,
            elapsed_s: started.elapsed().as_secs_f64(),
            eval_loss: eval,
        };
        metrics.write(&m)?;
        state.metrics_lines += 1;
        let mut msg = format!("loss {:.3} main {:.3}", m.loss, m.main);
        if let Some(v) = m.lc {
            msg += &format!(" lc {v:.3}");
        }
        if let Some(v) = m.et {
            msg += &format!(" et {v:.3}");
        }
        msg += &format!(" | {:.0} tok/s", m.tokens_per_s);
        if let Some(v) = last_eval {
            msg += &format!(" | eval {v:.3}");
        }
        bar.set_message(msg);
        bar.set_position(state.step as u64);

        let interrupted = hooks.stop.load(Ordering::SeqCst);
        let periodic = cfg.train.checkpoint_every > 0 && state.step % cfg.train.checkpoint_every == 0;
        if periodic || interrupted {
            let path = write_ckpt(&model, optim.to_record(), &state)?;
            crate::run_info::write_csv(&metrics_path, &metrics_path.with_extension("csv"))?;
            if interrupted {
                bar.abandon();
                return Err(TrainError::Interrupted { step: state.step, path });
            }
        }
    }
    bar.finish();
    if list_checkpoints(&out_dir).last().map(|(s, _)| *s) != Some(state.step) {
        write_ckpt(&model, optim.to_record(), &state)?;
    }
    let eval_after =
        eval_data.as_ref().map(|e| eval_loss(&model.valid(), e, eval_bs, cfg.method.name)).transpose()?.flatten();
    let export_dir = out_dir.join("final");
    // f32 weights plus room for the tokenizer and config.
    let export_need = 4 * model.num_params() as u64 + (16 << 20);
    crate::run_dir::check_space(&export_dir, export_need)?;
    let explain = |e: dft_models::ModelError| {
        let msg = e.to_string();
        crate::run_dir::explain_write_failure(&export_dir, export_need, &msg, e.into())
    };
    let adapter_dir = if model.lora.is_some() {
        // The adapter in PEFT's format, and `final/` = the merged model (a plain HF checkpoint).
        let dir = out_dir.join("adapter");
        model.valid().save_adapter(&dir, &cfg.model.path).map_err(explain)?;
        model
            .valid()
            .merge_lora()
            .export_hf(&export_dir, Some(&tokenizer), Some(&meta), &Default::default())
            .map_err(explain)?;
        Some(dir)
    } else {
        model.valid().export_hf(&export_dir, Some(&tokenizer), Some(&meta), &Default::default()).map_err(explain)?;
        None
    };
    let plot = out_dir.join("loss.svg");
    let all = read_metrics(&metrics_path)?;
    plot_losses(&all, &plot, &format!("{:?} on {}", cfg.method.name, cfg.data.lang).to_uppercase())?;
    let summary = TrainSummary {
        steps: state.step,
        eval_loss_before: eval_before,
        eval_loss_after: eval_after,
        out_dir: out_dir.clone(),
        export_dir,
        metrics: metrics_path,
        plot,
        wall_s: started.elapsed().as_secs_f64(),
        skipped_batches: state.skipped_batches,
        adapter_dir,
        trainable_params: trainable,
        total_params,
        threads: rayon::current_num_threads(),
    };
    std::fs::write(out_dir.join("summary.json"), serde_json::to_string_pretty(&summary).expect("json"))
        .map_err(|e| TrainError::Io { path: out_dir.join("summary.json"), source: e })?;
    run_info.finish(summary.steps, summary.wall_s, &summary.metrics)?;
    Ok(summary)
}
