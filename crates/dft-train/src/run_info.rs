//! What a run directory records about how it was made, and its metrics as CSV.
//!
//! * `run_info.json`: one entry per session (a `--resume` adds one): the resolved config (also as
//!   `config.resolved.toml`, usable as `--config`), the dft-rs version and the git revision it was built
//!   from, the Burn backend, the machine (OS, CPU cores, memory, GPUs from `nvidia-smi` when present),
//!   start and end times (UTC) and, at the end, steps and wall time.
//! * `metrics.csv`: `metrics.jsonl` as CSV, rewritten at every checkpoint (an interrupted run has it too)
//!   and at the end (one row per optimiser step; empty cells where a value was not computed), for spreadsheets, pandas, TensorBoard or W&B (docs/ECOSYSTEM.md).

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::metrics::read_metrics;
use std::path::{Path, PathBuf};

/// `git rev-parse HEAD` of the source tree at build time (build.rs), `unknown` outside a checkout.
pub const GIT_REVISION: &str = match option_env!("DFT_GIT_REVISION") {
    Some(r) => r,
    None => "unknown",
};

/// Whether tracked files of the source tree differed from [`GIT_REVISION`] at build time (build.rs):
/// `Some(true)` for a build with uncommitted changes, `None` outside a checkout.
pub const GIT_DIRTY: Option<bool> = match option_env!("DFT_GIT_DIRTY") {
    Some(d) => Some(d.len() == 4), // "true" / "false"
    None => None,
};

/// An open run-info record; [`RunInfo::finish`] completes it.
pub struct RunInfo {
    path: PathBuf,
    doc: serde_json::Value,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.into(), source }
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let s = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, (s % 3600) / 60, s % 60)
}

/// OS, CPU cores, memory and GPUs of this machine.
pub fn machine() -> serde_json::Value {
    let mem_gib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0)
    });
    let gpus: Vec<String> = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.total", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
        })
        .unwrap_or_default();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).ok();
    serde_json::json!({
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "hostname": host,
        "cpu_cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "memory_gib": mem_gib,
        "gpus": gpus,
    })
}

impl RunInfo {
    /// Record the start of a session in `out_dir/run_info.json` (earlier sessions are kept) and write
    /// `config.resolved.toml`.
    pub fn start<B>(cfg: &TrainConfig, out_dir: &Path, resume: bool) -> Result<Self> {
        let path = out_dir.join("run_info.json");
        let mut doc = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .filter(|v| v["sessions"].is_array())
            .unwrap_or_else(|| serde_json::json!({ "sessions": [] }));
        let config = serde_json::to_value(cfg).expect("config serialises");
        let session = serde_json::json!({
            "start": utc_now(),
            "end": null,
            "resume": resume,
            "dft_rs_version": env!("CARGO_PKG_VERSION"),
            "git_revision": GIT_REVISION,
            "git_dirty": GIT_DIRTY,
            "backend": std::any::type_name::<B>(),
            "machine": machine(),
            "command_line": std::env::args().collect::<Vec<_>>(),
            "config": config,
        });
        doc["sessions"].as_array_mut().expect("array").push(session);
        let toml = toml::to_string_pretty(cfg)
            .map_err(|e| TrainError::Config { key: "<config>".into(), msg: e.to_string() })?;
        write_atomic(&out_dir.join("config.resolved.toml"), &toml)?;
        write_atomic(&path, &(serde_json::to_string_pretty(&doc).expect("json") + "\n"))?;
        Ok(RunInfo { path, doc })
    }

    /// Record the end (time, steps, wall seconds) and write `metrics.csv` next to `metrics`.
    pub fn finish(&mut self, steps: usize, wall_s: f64, metrics: &Path) -> Result<()> {
        if let Some(last) = self.doc["sessions"].as_array_mut().and_then(|s| s.last_mut()) {
            last["end"] = utc_now().into();
            last["steps"] = steps.into();
            last["wall_s"] = wall_s.into();
        }
        write_atomic(&self.path, &(serde_json::to_string_pretty(&self.doc).expect("json") + "\n"))?;
        if metrics.is_file() {
            write_csv(metrics, &metrics.with_extension("csv"))?;
        }
        Ok(())
    }
}

/// `metrics.jsonl` → CSV with a header row.
pub fn write_csv(jsonl: &Path, csv: &Path) -> Result<()> {
    let rows = read_metrics(jsonl)?;
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    let mut out = String::from(
        "step,epoch,lr,loss,main,lc,et,grad_norm,tokens,tokens_per_s,padding_fraction,elapsed_s,eval_loss\n",
    );
    for m in rows {
        out += &format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            m.step,
            m.epoch,
            m.lr,
            m.loss,
            m.main,
            opt(m.lc),
            opt(m.et),
            m.grad_norm,
            m.tokens,
            m.tokens_per_s,
            m.padding_fraction,
            m.elapsed_s,
            opt(m.eval_loss)
        );
    }
    write_atomic(csv, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_machine() {
        let t = utc_now();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
        let m = machine();
        assert!(m["cpu_cores"].as_u64().unwrap() >= 1);
    }

    #[test]
    fn sessions_accumulate_and_csv_is_written() {
        let dir = crate::test_scratch::ScratchDir::new(format!("dft-run-info-{}", std::process::id()));
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/alpaca_en_zh");
        let cfg = TrainConfig::load(
            None,
            &[
                "model.path=\"smollm2\"".to_string(),
                format!("data.train={:?}", data.join("train.json").display().to_string()),
                format!("data.eval={:?}", data.join("heldout.json").display().to_string()),
            ],
        )
        .unwrap();
        let mut a = RunInfo::start::<u8>(&cfg, &dir, false).unwrap();
        let line = r#"{"step":1,"epoch":0,"lr":0.001,"loss":2.5,"main":2.0,"lc":0.5,"et":null,"grad_norm":1.0,"tokens":10,"tokens_per_s":5.0,"padding_fraction":0.1,"elapsed_s":2.0,"eval_loss":null}"#;
        std::fs::write(dir.join("metrics.jsonl"), format!("{line}\n")).unwrap();
        a.finish(1, 2.0, &dir.join("metrics.jsonl")).unwrap();
        RunInfo::start::<u8>(&cfg, &dir, true).unwrap();
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run_info.json")).unwrap()).unwrap();
        let s = doc["sessions"].as_array().unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0]["steps"], 1);
        assert!(s[0]["end"].is_string() && s[1]["end"].is_null());
        assert_eq!(s[1]["config"]["model"]["path"], "smollm2");
        assert_eq!(s[0]["git_revision"], GIT_REVISION);
        assert_eq!(s[0]["git_dirty"], serde_json::json!(GIT_DIRTY));
        let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        assert_eq!(csv.lines().nth(1).unwrap(), "1,0,0.001,2.5,2,0.5,,1,10,5,0.1,2,");
        let again = TrainConfig::load(Some(&dir.join("config.resolved.toml")), &[]).unwrap();
        assert_eq!(again, cfg);
    }

    /// The build-time revision and dirty flag describe this checkout (the test binary is built from it;
    /// skipped outside a git checkout).
    #[test]
    fn git_revision_and_dirty_flag_match_the_checkout() {
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let Some(head) = git(&["rev-parse", "HEAD"]) else {
            assert_eq!(GIT_REVISION, "unknown");
            return;
        };
        assert_eq!(GIT_REVISION, head);
        let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).unwrap().is_empty();
        assert_eq!(GIT_DIRTY, Some(dirty), "rebuild after editing: the flag is fixed at build time");
    }
}
