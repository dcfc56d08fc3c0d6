//! Data-parallel training on Burn's collective engine (`burn-collective`): one peer per device, each
//! with the whole model and optimiser state; every optimiser step all-reduces the gradients once
//! (after gradient accumulation) and every peer applies the same update. See docs/DISTRIBUTED.md.
//!
//! The result does not depend on the number of peers. Each micro-batch of the *global* batch
//! (`train.batch_size × peers` examples, in the order a one-device run with that batch size sees them)
//! is split into contiguous row slices, one per peer. DFT's cross-entropies are token-level means over
//! the whole micro-batch and its feature losses means over its examples, so a peer scales each of its
//! terms by its share of the micro-batch's labelled tokens (examples) ([`dft_losses::TermCounts`]):
//! the all-reduced sum of the peers' gradients is then the gradient of the one-device loss.
//!
//! A collective call that waits longer than `parallel.timeout_s` (a peer died or hangs) stops every
//! peer of this process with an error naming the peers that did not answer — never a hang.

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::trainer::{Run, TrainHooks, TrainSummary};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::backend::{Device as _, DeviceId};
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn_collective::{CollectiveConfig, PeerId, ReduceOperation};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where this process sits in a run over several machines (`dft train --nodes K --node-rank R
/// --orchestrator ADDR`).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    /// Machines in the run.
    pub nodes: usize,
    /// This machine's rank, 0..nodes; node 0 writes checkpoints, metrics and the export.
    pub rank: usize,
    /// The global orchestrator (`dft orchestrator`), `ws://HOST:PORT`.
    pub orchestrator: String,
    /// The address the other nodes reach this node's tensor data service at, `ws://HOST:PORT`.
    pub address: String,
    /// The port of this node's tensor data service (the port of `address`).
    pub data_port: u16,
    /// The interface the data service listens on (the address of `address`; 127.0.0.1 by default).
    pub listen: std::net::IpAddr,
}

/// Peers of this process and how long one may wait for the others.
pub(crate) struct Watch {
    timeout: Duration,
    state: Mutex<WatchState>,
    /// Set when the run is over (the watchdog thread ends).
    pub done: AtomicBool,
    /// Ranks (global) of this process's peers, by local index.
    ranks: Vec<usize>,
    /// A description of the peers on other machines, for error messages.
    remote: Option<String>,
    /// Exit the process when a failed run leaves a peer stuck (a collective call across machines
    /// cannot be cancelled: burn-collective awaits the network inside its server loop).
    hard_exit: bool,
}

#[derive(Default)]
struct WatchState {
    /// Per local peer: the collective call it waits in, and since when.
    waiting: Vec<Option<(u64, Instant, &'static str)>>,
    failed: Option<String>,
    failed_at: Option<Instant>,
}

impl Watch {
    pub fn new(timeout: Duration, ranks: Vec<usize>, remote: Option<String>) -> Arc<Self> {
        let state = WatchState { waiting: vec![None; ranks.len()], failed: None, failed_at: None };
        let hard_exit = remote.is_some();
        Arc::new(Self { timeout, state: Mutex::new(state), done: AtomicBool::new(false), ranks, remote, hard_exit })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The first failure, if any.
    pub fn failure(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    /// Record a failure (the first one wins) and release every peer waiting in a collective call.
    pub fn fail<B: Backend>(&self, msg: String) {
        {
            let mut s = self.lock();
            if s.failed.is_none() {
                s.failed = Some(msg);
                s.failed_at = Some(Instant::now());
            }
        }
        // On its own thread: with the collective's server gone (a panic in it), the reset would wait
        // forever, and the watchdog calling this must keep running.
        std::thread::spawn(burn_collective::reset_collective::<B>);
    }

    fn enter(&self, local: usize, op: u64, what: &'static str) -> Result<()> {
        let mut s = self.lock();
        if let Some(msg) = &s.failed {
            return Err(TrainError::Parallel { msg: msg.clone() });
        }
        s.waiting[local] = Some((op, Instant::now(), what));
        Ok(())
    }

    fn leave(&self, local: usize) {
        self.lock().waiting[local] = None;
    }

    /// Check once: a peer waiting longer than the timeout fails the run, naming the peers of this
    /// process that are not waiting with it (or, when all are, the other machines).
    fn check<B: Backend>(&self) {
        let msg = {
            let s = self.lock();
            let Some((local, (op, since, what))) =
                s.waiting.iter().enumerate().filter_map(|(i, w)| w.map(|w| (i, w))).min_by_key(|(_, w)| w.1)
            else {
                return;
            };
            if let (Some(msg), Some(at), true) = (&s.failed, s.failed_at, self.hard_exit) {
                if at.elapsed() > Duration::from_secs(2) {
                    // Released peers would have left by now: this one is stuck in the network.
                    eprintln!("error: data-parallel run: {msg}");
                    crate::run_dir::release_all_locks();
                    std::process::exit(1);
                }
            }
            if since.elapsed() < self.timeout {
                return;
            }
            if s.failed.is_some() {
                // Already failed: keep releasing stragglers that entered after the reset.
                drop(s);
                std::thread::spawn(burn_collective::reset_collective::<B>);
                return;
            }
            let missing: Vec<String> = s
                .waiting
                .iter()
                .enumerate()
                .filter(|(_, w)| w.is_none_or(|w| w.0 != op))
                .map(|(i, _)| format!("peer {}", self.ranks[i]))
                .collect();
            let lost = match (missing.is_empty(), &self.remote) {
                (false, _) => missing.join(", "),
                (true, Some(remote)) => remote.clone(),
                (true, None) => "a peer".into(),
            };
            format!(
                "peer {} waited {:.0} s in {what} (collective call {op}) for {lost}, which did not answer within parallel.timeout_s; the run stopped (continue it with --resume from the last checkpoint)",
                self.ranks[local],
                since.elapsed().as_secs_f64()
            )
        };
        eprintln!("error: {msg}");
        self.fail::<B>(msg);
    }

    /// The watchdog: checks every 50 ms until [`Watch::done`] is set.
    pub fn watchdog<B: Backend>(self: Arc<Self>) {
        while !self.done.load(Ordering::SeqCst) {
            self.check::<B>();
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One peer: a device thread of this process in the collective. `B` is the inner (non-autodiff)
/// backend, on which gradients live.
pub struct Peer<B: Backend> {
    /// Global rank, 0..world.
    pub rank: usize,
    /// Peers in the run (all machines).
    pub world: usize,
    local: usize,
    ops: std::cell::Cell<u64>,
    watch: Arc<Watch>,
    _b: std::marker::PhantomData<B>,
}

impl<B: Backend> Peer<B> {
    /// Register with the collective (blocks until every peer of this process, and with `node` every
    /// node, has registered; bounded by the timeout).
    pub(crate) fn register(
        rank: usize,
        local: usize,
        world: usize,
        local_peers: usize,
        device: B::Device,
        node: Option<&NodeSpec>,
        watch: Arc<Watch>,
    ) -> Result<Self> {
        let mut config = CollectiveConfig::default().with_num_devices(local_peers);
        if let Some(n) = node {
            burn_communication::websocket::set_listen_host(n.listen);
            let parse = |what: &str, s: &str| {
                s.parse::<burn_communication::Address>().map_err(|e| TrainError::Parallel {
                    msg: format!("{what} {s:?} is not an address like ws://127.0.0.1:3000 ({e:?})"),
                })
            };
            config = config
                .with_num_nodes(n.nodes as u32)
                .with_global_address(parse("--orchestrator", &n.orchestrator)?)
                .with_node_address(parse("the node address", &n.address)?)
                .with_data_service_port(n.data_port)
                // Burn's global ring all-reduce needs tensors longer than the number of nodes; a tree
                // takes any size (and every node gets the root's sum: the same bits everywhere).
                .with_global_all_reduce_strategy(burn_collective::AllReduceStrategy::Tree(2));
        }
        let peer = Self { rank, world, local, ops: Default::default(), watch, _b: Default::default() };
        peer.guarded("register", || burn_collective::register::<B>(PeerId(rank as u32), device, config))?;
        Ok(peer)
    }

    /// Run one collective call under the watchdog.
    fn guarded<T>(
        &self,
        what: &'static str,
        call: impl FnOnce() -> std::result::Result<T, burn_collective::CollectiveError>,
    ) -> Result<T> {
        let op = self.ops.get() + 1;
        self.ops.set(op);
        self.watch.enter(self.local, op, what)?;
        let out = call();
        self.watch.leave(self.local);
        out.map_err(|e| TrainError::Parallel {
            msg: self.watch.failure().unwrap_or_else(|| {
                let remote =
                    self.watch.remote.as_ref().map(|r| format!(" (lost contact with {r}?)")).unwrap_or_default();
                format!(
                    "peer {}: {what} failed: {e:?}{remote}; continue with --resume from the last checkpoint",
                    self.rank
                )
            }),
        })
    }

    /// Element-wise sum over all peers.
    pub fn sum<const D: usize>(&self, t: Tensor<B, D>) -> Result<Tensor<B, D>> {
        let id = PeerId(self.rank as u32);
        let p = self.guarded("all-reduce", || {
            burn_collective::all_reduce::<B>(id, t.into_primitive().tensor(), ReduceOperation::Sum)
        })?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(p)))
    }

    /// Sum plain numbers over all peers, in f64: each value travels as two f32 (high and low part).
    pub fn sum_f64(&self, values: &[f64], device: &B::Device) -> Result<Vec<f64>> {
        let mut parts = Vec::with_capacity(2 * values.len());
        for &v in values {
            let hi = v as f32;
            parts.push(hi);
            parts.push((v - hi as f64) as f32);
        }
        let n = parts.len();
        let t: Tensor<B, 1> = Tensor::from_data(TensorData::new(parts, [n]), device);
        let out = self.sum(t)?.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| TrainError::Parallel {
            msg: format!("peer {}: reading an all-reduced tensor: {e:?}", self.rank),
        })?;
        Ok(out.chunks(2).map(|c| c[0] as f64 + c[1] as f64).collect())
    }

    /// Leave the collective (after the last step).
    pub fn finish(&self) -> Result<()> {
        let id = PeerId(self.rank as u32);
        self.guarded("finish", || burn_collective::finish_collective::<B>(id))
    }
}

/// Fault injection for the tests: `DFT_FAULT_PEER_FAIL=RANK:STEP` makes peer RANK fail at step STEP.
pub(crate) fn injected_fault(rank: usize, step: usize) -> Result<()> {
    let Ok(spec) = std::env::var("DFT_FAULT_PEER_FAIL") else { return Ok(()) };
    if spec == format!("{rank}:{step}") {
        return Err(TrainError::Parallel { msg: format!("injected fault (DFT_FAULT_PEER_FAIL={spec})") });
    }
    // `RANK:STEP:panic`: a panic, as burn-collective raises when a node vanishes mid-transfer.
    if spec == format!("{rank}:{step}:panic") {
        panic!("injected panic (DFT_FAULT_PEER_FAIL={spec})");
    }
    Ok(())
}

/// The row range of `rows` that peer `rank` of `world` trains on: contiguous, sizes differing by at
/// most one, in rank order.
pub fn shard(rows: usize, rank: usize, world: usize) -> std::ops::Range<usize> {
    rows * rank / world..rows * (rank + 1) / world
}

/// Sum `grads` over all peers, parameter by parameter in the model's (structural) order — the same on
/// every peer and every machine, unlike parameter ids. A parameter takes part when some peer has a
/// gradient for it (a peer without one adds zeros), so a parameter without gradient anywhere stays
/// without one, as on one device.
pub fn all_reduce_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: GradientsParams,
    peer: &Peer<B::InnerBackend>,
    device: &B::Device,
) -> Result<GradientsParams> {
    struct Present<'a> {
        grads: &'a GradientsParams,
        flags: Vec<f64>,
    }
    impl<B: Backend> ModuleVisitor<B> for Present<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.flags.push(if self.grads.get::<B, D>(p.id).is_some() { 1.0 } else { 0.0 });
        }
    }
    struct Reduce<'a, B: Backend> {
        grads: GradientsParams,
        any: Vec<f64>,
        next: usize,
        peer: &'a Peer<B>,
        error: Option<TrainError>,
    }
    impl<B: Backend> ModuleVisitor<B> for Reduce<'_, B> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let k = self.next;
            self.next += 1;
            if self.error.is_some() || self.any[k] == 0.0 {
                return;
            }
            let id: ParamId = p.id;
            let g = match self.grads.remove::<B, D>(id) {
                Some(g) => g,
                None => {
                    let v = p.val();
                    Tensor::zeros(v.shape(), &v.device())
                }
            };
            match self.peer.sum(g) {
                Ok(g) => self.grads.register::<B, D>(id, g),
                Err(e) => self.error = Some(e),
            }
        }
    }
    let valid = model.valid();
    let mut present = Present { grads: &grads, flags: Vec::new() };
    valid.visit(&mut present);
    let any = peer.sum_f64(&present.flags, device)?;
    let mut reduce = Reduce { grads, any, next: 0, peer, error: None };
    valid.visit(&mut reduce);
    match reduce.error {
        Some(e) => Err(e),
        None => Ok(reduce.grads),
    }
}

/// Serve burn-collective's global orchestrator on `host:port` until Ctrl-C (`dft orchestrator`).
/// `host` is 127.0.0.1 unless the user names an interface; the transport has no authentication:
/// trusted networks only (docs/DISTRIBUTED.md).
pub fn run_orchestrator(host: std::net::IpAddr, port: u16) -> Result<()> {
    burn_communication::websocket::set_listen_host(host);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| TrainError::Parallel { msg: format!("starting the orchestrator's runtime: {e}") })?;
    let scope = if host.is_loopback() { "this machine only" } else { "no authentication: trusted networks only" };
    eprintln!("orchestrator: listening on {host}:{port} ({scope}); Ctrl-C stops it");
    rt.block_on(burn_collective::start_global_orchestrator(port));
    Ok(())
}

/// `dft train` on several devices (`[parallel] devices`) and/or machines (`hooks.node`): one peer per
/// device, all in this process as threads; peer 0 of node 0 writes the run directory.
pub fn train_parallel<B: AutodiffBackend>(
    cfg: &TrainConfig,
    resume: bool,
    device: &B::Device,
    hooks: &TrainHooks,
) -> Result<TrainSummary> {
    cfg.check_ranges()?;
    let ids = cfg.parallel.device_ids();
    let node = hooks.node.as_ref();
    let (nodes, node_rank) = node.map_or((1, 0), |n| (n.nodes, n.rank));
    if nodes == 0 || node_rank >= nodes {
        return Err(TrainError::Parallel { msg: format!("--node-rank {node_rank} is not below --nodes {nodes}") });
    }
    let local = ids.len();
    let world = local * nodes;
    // The run as one device would see it: the global batch, no [parallel] section (so that checkpoints
    // resume under any number of peers with the same global batch).
    let mut global = cfg.clone();
    global.train.batch_size = cfg.train.batch_size * world;
    global.parallel = Default::default();
    let type_id = device.to_id().type_id;
    let devices: Vec<B::Device> = ids.iter().map(|&i| B::Device::from_id(DeviceId::new(type_id, i as u16))).collect();
    let leader = node_rank == 0;
    if leader {
        eprintln!(
            "data-parallel: {world} peers ({local} device(s) on each of {nodes} node(s)); global batch {} = {} per peer × {world}, × grad_accum {} = {} examples per optimiser step",
            global.train.batch_size,
            cfg.train.batch_size,
            cfg.train.grad_accum,
            global.train.batch_size * cfg.train.grad_accum
        );
    }
    burn_collective::reset_collective::<B::InnerBackend>();
    let (mut run, data) = Run::<B>::setup(&global, resume, &devices[0], hooks, leader)?;
    let ranks: Vec<usize> = (0..local).map(|l| node_rank * local + l).collect();
    let remote = (nodes > 1).then(|| {
        let others: Vec<String> = (0..nodes).filter(|&n| n != node_rank).map(|n| format!("node {n}")).collect();
        format!("the other node(s) ({}; peers outside {:?})", others.join(", "), ranks)
    });
    let timeout = Duration::from_secs_f64(cfg.parallel.timeout_s);
    let watch = Watch::new(timeout, ranks.clone(), remote);
    let followers: Vec<Run<B>> = devices[1..].iter().map(|d| run.follower(d)).collect();
    let peer_of = |l: usize, device: &B::Device| {
        Peer::<B::InnerBackend>::register(ranks[l], l, world, local, device.clone(), node, watch.clone())
    };
    // Each peer: register, agree on the run, train, leave. A failed peer releases the others.
    let train_peer = |l: usize, run: &mut Run<B>| -> Result<()> {
        let body = std::panic::AssertUnwindSafe(|| {
            let peer = peer_of(l, &run.device)?;
            check_same_run(&peer, run, &run.device)?;
            run.peer = Some(peer);
            run.fit(&data, hooks)?;
            run.peer.as_ref().expect("peer").finish()
        });
        // burn-collective panics (unwraps) when a node vanishes mid-transfer: turn that into this
        // peer's failure, so that the others are released and the process stops with an error
        // instead of unwinding into the scope below, which would wait for the watchdog forever.
        let out = std::panic::catch_unwind(body).unwrap_or_else(|payload| {
            let what = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            let lost = watch.remote.as_ref().map(|r| format!("; lost contact with {r}?")).unwrap_or_default();
            Err(TrainError::Parallel {
                msg: format!("peer {}: the collective engine failed ({what}){lost}; continue with --resume from the last checkpoint", ranks[l]),
            })
        });
        if let Err(e) = &out {
            if !matches!(e, TrainError::Interrupted { .. }) {
                watch.fail::<B::InnerBackend>(format!("peer {} failed: {e}", ranks[l]));
            }
        }
        out
    };
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let dog = s.spawn(|| watch.clone().watchdog::<B::InnerBackend>());
        let handles: Vec<_> = followers
            .into_iter()
            .enumerate()
            .map(|(i, mut f)| {
                let train_peer = &train_peer;
                s.spawn(move || train_peer(i + 1, &mut f))
            })
            .collect();
        let mut results = vec![train_peer(0, &mut run)];
        for (i, h) in handles.into_iter().enumerate() {
            results.push(h.join().unwrap_or_else(|_| {
                let msg = format!("peer {} panicked", ranks[i + 1]);
                watch.fail::<B::InnerBackend>(msg.clone());
                Err(TrainError::Parallel { msg })
            }));
        }
        watch.done.store(true, Ordering::SeqCst);
        let _ = dog.join();
        results
    });
    // The first real failure (a peer released by another's failure reports that one).
    if let Some(msg) = watch.failure() {
        return Err(TrainError::Parallel { msg });
    }
    for r in results {
        r?;
    }
    if !leader {
        eprintln!("node {node_rank}: done ({} steps); node 0 writes the checkpoint and export", run.state.step);
        return Ok(run.summary_without_export(world));
    }
    run.finish(&data)
}

/// Refuse to mix two jobs: every peer must train the same config (the global view) and model from the
/// same step — compared through a hash all peers sum and check.
fn check_same_run<B: AutodiffBackend>(peer: &Peer<B::InnerBackend>, run: &Run<B>, device: &B::Device) -> Result<()> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut cfg = run.cfg.clone();
    cfg.train.out_dir = Default::default(); // may differ between machines
    h.update(serde_json::to_vec(&cfg).expect("config serialises"));
    h.update(run.model.num_params().to_le_bytes());
    h.update(run.state.step.to_le_bytes());
    h.update(format!("{:?}", (run.objective.lc_layer, run.objective.et_layer)).as_bytes());
    h.update(peer.world.to_le_bytes());
    let digest = h.finalize();
    // Four 20-bit pieces of the hash (exact in f32 sums); all peers equal ⇔ sum = world × mine.
    let mine: Vec<f64> = (0..4)
        .map(|k| (u32::from_le_bytes(digest[4 * k..4 * k + 4].try_into().expect("4 bytes")) >> 12) as f64)
        .collect();
    let sums = peer.sum_f64(&mine, device)?;
    if sums.iter().zip(&mine).any(|(s, m)| *s != m * peer.world as f64) {
        return Err(TrainError::Parallel {
            msg: format!(
                "peer {} refuses to join: the peers' run config, model, layers, resume step or world size ({}) differ — is another job using the same orchestrator, or a node started with another config?",
                peer.rank, peer.world
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_row_once_in_order() {
        for rows in 0..9 {
            for world in 1..5 {
                let all: Vec<usize> = (0..world).flat_map(|r| shard(rows, r, world)).collect();
                assert_eq!(all, (0..rows).collect::<Vec<_>>(), "rows {rows}, world {world}");
                let sizes: Vec<usize> = (0..world).map(|r| shard(rows, r, world).len()).collect();
                assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
            }
        }
    }
}
