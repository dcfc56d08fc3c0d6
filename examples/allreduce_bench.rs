//! Benchmark of the data-parallel gradient all-reduce (docs/DISTRIBUTED.md): the time burn-collective
//! takes to sum one optimiser step's gradients of SmolLM2-135M (134.5M f32 parameters, 272 tensors,
//! all-reduced tensor by tensor in the model's order, as `dft train` does) over 2 peers.
//!
//! ```text
//! cargo run --release --example allreduce_bench -- local      # 2 peers = 2 threads of this process
//! cargo run --release --example allreduce_bench -- loopback   # 2 nodes = 2 processes + orchestrator on 127.0.0.1
//! ```
//! Options: `--reps N` (timed repetitions after one warm-up; default 3). Prints a table and one
//! `RESULT {json}` line with the median seconds per step, bytes per peer and effective bandwidth.

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_collective::{AllReduceStrategy, CollectiveConfig, PeerId, ReduceOperation};
use std::time::Instant;

type B = Flex;

/// SmolLM2-135M's trainable tensors: tied embedding 49152×576; 30 blocks of q/o 576×576, k/v 192×576,
/// gate/up 1536×576, down 576×1536 and two norms; the final norm.
fn smollm2_shapes() -> Vec<[usize; 2]> {
    let (h, kv, ff) = (576, 192, 1536);
    let mut s = vec![[49152, h]];
    for _ in 0..30 {
        s.extend([[h, h], [kv, h], [kv, h], [h, h], [ff, h], [ff, h], [h, ff], [1, h], [1, h]]);
    }
    s.push([1, h]);
    s
}

fn arg(name: &str) -> Option<String> {
    let a: Vec<String> = std::env::args().collect();
    a.iter().position(|x| x == name).and_then(|i| a.get(i + 1).cloned())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Register, then time `reps` + 1 full-gradient all-reduces (the first is a warm-up).
fn peer(rank: usize, config: CollectiveConfig, reps: usize) -> Vec<f64> {
    let device = Default::default();
    let id = PeerId(rank as u32);
    burn_collective::register::<B>(id, device, config).expect("register");
    let grads: Vec<Tensor<B, 2>> =
        smollm2_shapes().into_iter().map(|s| Tensor::ones(s, &Default::default()) * (rank + 1) as f32).collect();
    let mut times = Vec::new();
    for rep in 0..=reps {
        let t0 = Instant::now();
        let mut out = Vec::with_capacity(grads.len());
        for g in &grads {
            let p = burn_collective::all_reduce::<B>(id, g.clone().into_primitive().tensor(), ReduceOperation::Sum)
                .expect("all-reduce");
            out.push(Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(p)));
        }
        // The sum of 1 and 2 everywhere: check one value so the work cannot be skipped.
        let v = out[0].clone().slice([0..1, 0..1]).into_scalar();
        assert_eq!(v, 3.0, "all-reduce result");
        if rep > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    burn_collective::finish_collective::<B>(id).expect("finish");
    times
}

fn report(mode: &str, times: Vec<f64>) {
    let params: usize = smollm2_shapes().iter().map(|s| s[0] * s[1]).sum();
    let bytes = 4 * params;
    let t = median(times.clone());
    println!("| mode | peers | tensors | parameters | bytes per peer | median s/step | GB/s (bytes/time) |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {mode} | 2 | {} | {params} | {bytes} | {t:.3} | {:.2} |",
        smollm2_shapes().len(),
        bytes as f64 / t / 1e9
    );
    let json = serde_json::json!({
        "mode": mode, "peers": 2, "tensors": smollm2_shapes().len(), "parameters": params,
        "bytes_per_peer": bytes, "seconds": times, "median_s": t, "gb_per_s": bytes as f64 / t / 1e9,
        "threads": rayon::current_num_threads(),
    });
    println!("RESULT {json}");
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "local".into());
    let reps: usize = arg("--reps").map(|r| r.parse().expect("--reps N")).unwrap_or(3);
    match mode.as_str() {
        "local" => {
            let config = CollectiveConfig::default().with_num_devices(2);
            let other = std::thread::spawn({
                let config = config.clone();
                move || peer(1, config, reps)
            });
            let times = peer(0, config, reps);
            other.join().expect("peer 1");
            report("local (2 threads)", times);
        }
        "loopback" | "node" => {
            let rank: usize = arg("--rank").map(|r| r.parse().expect("--rank")).unwrap_or(0);
            let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let orch: u16 = arg("--orchestrator").map(|p| p.parse().expect("port")).unwrap_or_else(free);
            let data = free();
            let mut child = None;
            if rank == 0 {
                std::thread::spawn(move || {
                    dft_train::parallel::run_orchestrator(std::net::Ipv4Addr::LOCALHOST.into(), orch)
                });
                std::thread::sleep(std::time::Duration::from_millis(300));
                let me = std::env::current_exe().expect("exe");
                let args = ["node", "--rank", "1", "--orchestrator", &orch.to_string(), "--reps", &reps.to_string()];
                child = Some(std::process::Command::new(me).args(args).spawn().expect("spawn node 1"));
            }
            let config = CollectiveConfig::default()
                .with_num_devices(1)
                .with_num_nodes(2)
                .with_global_address(format!("ws://127.0.0.1:{orch}").parse().expect("address"))
                .with_node_address(format!("ws://127.0.0.1:{data}").parse().expect("address"))
                .with_data_service_port(data)
                .with_global_all_reduce_strategy(AllReduceStrategy::Tree(2));
            let times = peer(rank, config, reps);
            if let Some(mut c) = child {
                assert!(c.wait().expect("node 1").success(), "node 1 failed");
                report("loopback (2 processes, websockets)", times);
            }
            // The orchestrator thread and burn-collective's runtime do not stop by themselves.
            std::process::exit(0);
        }
        m => panic!("unknown mode {m}: local | loopback"),
    }
}
