//! Safety around a run directory: an exclusive lock (so two processes never write one directory),
//! refusing to start a fresh run over an earlier one unless told to overwrite it (then the old run is
//! moved aside whole), removing the temporaries of dead processes, and free-space checks that turn a
//! full disk into a message naming the path, the space needed and the space free.
//!
//! Used by `dft train` ([`crate::train`]), `dft sweep` and `dft eval --out`; docs/RELIABILITY.md lists
//! the guarantees and the tests behind them.

use crate::error::{Result, TrainError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The lock file inside a locked directory: `pid host command` on one line.
pub const LOCK_FILE: &str = ".dft.lock";

/// Paths of the locks this process holds, so a hard exit (second Ctrl-C) can still release them.
static HELD: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Whether process `pid` exists on this machine.
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks whether the process exists and may be signalled.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// An exclusive lock on a directory, released when dropped (also on error paths and on SIGINT, see
/// [`release_all_locks`]). A lock left by a process that no longer exists is stale and taken over.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Lock `dir` (created if missing) for `what` (e.g. `dft train`). Fails at once, naming the holder,
    /// when another live process holds it.
    pub fn acquire(dir: &Path, what: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::Io { path: dir.into(), source: e })?;
        let path = dir.join(LOCK_FILE);
        for _ in 0..3 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let line = format!("{} {} {what}\n", std::process::id(), host());
                    f.write_all(line.as_bytes())
                        .and_then(|_| f.sync_all())
                        .map_err(|e| TrainError::Io { path: path.clone(), source: e })?;
                    HELD.lock().unwrap_or_else(|p| p.into_inner()).push(path.clone());
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let mut it = text.split_whitespace();
                    let pid = it.next().and_then(|p| p.parse::<u32>().ok());
                    let holder_host = it.next().unwrap_or("").to_string();
                    let holder_cmd = it.collect::<Vec<_>>().join(" ");
                    let same_host = holder_host.is_empty() || holder_host == host();
                    let ours = HELD.lock().unwrap_or_else(|p| p.into_inner()).contains(&path);
                    match pid {
                        Some(pid) if !same_host || ours || (pid_alive(pid) && pid != std::process::id()) => {
                            return Err(TrainError::Locked {
                                dir: dir.into(),
                                holder: format!(
                                    "pid {pid} on {}{}",
                                    if holder_host.is_empty() { "this host" } else { &holder_host },
                                    if holder_cmd.is_empty() { String::new() } else { format!(" ({holder_cmd})") }
                                ),
                                lock: path.clone(),
                            });
                        }
                        Some(pid) => {
                            eprintln!("note: removing the stale lock {} (process {pid} is gone)", path.display());
                        }
                        // Unreadable or empty: a holder that died while writing it (it is written in one
                        // call right after creation), or a concurrent writer; check again once.
                        None => std::thread::sleep(std::time::Duration::from_millis(50)),
                    }
                    if pid.is_some() || std::fs::read_to_string(&path).unwrap_or_default().trim().is_empty() {
                        std::fs::remove_file(&path).ok();
                    }
                }
                Err(e) => return Err(TrainError::Io { path, source: e }),
            }
        }
        Err(TrainError::Locked {
            dir: dir.into(),
            holder: "another process (the lock keeps coming back)".into(),
            lock: path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop tracking this lock without touching the file at its path.
    fn forget(self) {
        {
            let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = held.iter().position(|p| p == &self.path) {
                held.remove(i);
            }
        }
        std::mem::forget(self);
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Only our own lock: after `--overwrite` moved the directory the file may be gone.
        if std::fs::read_to_string(&self.path)
            .is_ok_and(|t| t.split_whitespace().next() == Some(&std::process::id().to_string()))
        {
            std::fs::remove_file(&self.path).ok();
        }
        HELD.lock().unwrap_or_else(|p| p.into_inner()).retain(|p| p != &self.path);
    }
}

/// Remove every lock this process holds (for a hard exit, e.g. the second Ctrl-C, where no destructor
/// runs).
pub fn release_all_locks() {
    let held = std::mem::take(&mut *HELD.lock().unwrap_or_else(|p| p.into_inner()));
    for p in held {
        std::fs::remove_file(p).ok();
    }
}

/// What in `dir` marks it as holding an earlier training run.
pub fn run_contents(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    let mut ckpts = 0usize;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("checkpoint-") {
            ckpts += 1;
        } else if name == "metrics.jsonl" {
            // A run that failed before its first step leaves it empty: nothing to keep.
            if e.metadata().is_ok_and(|m| m.len() > 0) {
                found.push(name);
            }
        } else if ["summary.json", "final", "layers.json"].contains(&name.as_str()) {
            found.push(name);
        }
    }
    found.sort();
    if ckpts > 0 {
        found.insert(0, format!("{ckpts} checkpoint(s)"));
    }
    found
}

/// How a run treats what is already in its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// A new run: refused if the directory holds an earlier one.
    Fresh,
    /// Continue the run in the directory.
    Resume,
    /// A new run: an earlier one is moved aside to `<dir>.old-<timestamp>` first.
    Overwrite,
}

/// Lock `dir` for a training run and make it ready for `mode`; also removes the temporaries of dead
/// processes. Returns the lock (hold it for the whole run).
pub fn prepare_run_dir(dir: &Path, mode: StartMode) -> Result<RunLock> {
    prepare_dir(dir, mode, "dft train", run_contents)
}

/// What in `dir` marks it as holding an earlier `dft sweep`.
pub fn sweep_contents(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = ["sweep.json", "sweep.md", "sweep.svg"]
        .into_iter()
        .filter(|f| dir.join(f).exists())
        .map(String::from)
        .collect();
    let runs = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir() && !run_contents(&e.path()).is_empty())
        .count();
    if runs > 0 {
        found.push(format!("{runs} run director{}", if runs == 1 { "y" } else { "ies" }));
    }
    found
}

/// [`prepare_run_dir`] for any command (`what`, e.g. `dft sweep`) whose earlier output `contents` lists.
pub fn prepare_dir(dir: &Path, mode: StartMode, what: &str, contents: fn(&Path) -> Vec<String>) -> Result<RunLock> {
    let lock = RunLock::acquire(dir, what)?;
    let held = contents(dir);
    let lock = match mode {
        StartMode::Fresh if !held.is_empty() => {
            return Err(TrainError::RunExists { dir: dir.into(), holds: held.join(", ") });
        }
        StartMode::Overwrite if !held.is_empty() => {
            let aside = aside_name(dir);
            // One rename: the old run (with our lock inside) moves away whole, or not at all.
            std::fs::rename(dir, &aside).map_err(|e| TrainError::Io { path: aside.clone(), source: e })?;
            // The old lock's file moved along: forget it (its path now names the new lock's file).
            lock.forget();
            std::fs::remove_file(aside.join(LOCK_FILE)).ok();
            let new_lock = RunLock::acquire(dir, what)?;
            eprintln!("--overwrite: moved the earlier run ({}) to {}", held.join(", "), aside.display());
            new_lock
        }
        _ => lock,
    };
    clean_stale_temps(dir);
    Ok(lock)
}

fn aside_name(dir: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "run".into());
    let mut k = 0;
    loop {
        let suffix = if k == 0 { String::new() } else { format!("-{k}") };
        let p = dir.with_file_name(format!("{name}.old-{secs}{suffix}"));
        if !p.exists() {
            return p;
        }
        k += 1;
    }
}

/// The pid in a temporary's name: `.tmp-checkpoint-000004-<pid>` or `.model.safetensors.tmp<pid>`.
fn temp_owner(name: &str) -> Option<u32> {
    if let Some(rest) = name.strip_prefix(".tmp-checkpoint-") {
        return rest.rsplit('-').next()?.parse().ok();
    }
    if name.starts_with('.') {
        if let Some((_, pid)) = name.rsplit_once(".tmp") {
            return pid.parse().ok();
        }
    }
    None
}

/// Remove half-written checkpoints and export files (in `dir` and `dir/final`) left by processes that
/// no longer exist. Returns what was removed.
pub fn clean_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for d in [dir.to_path_buf(), dir.join("final")] {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(pid) = temp_owner(&name) else { continue };
            if pid_alive(pid) && pid != std::process::id() {
                continue;
            }
            let p = e.path();
            let ok = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            if ok.is_ok() {
                eprintln!("note: removed {} (left by process {pid}, which is gone)", p.display());
                removed.push(p);
            }
        }
    }
    removed
}

/// Free bytes for an unprivileged writer on the file system holding `path` (its nearest existing
/// ancestor).
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let mut p = path;
    while !p.exists() {
        p = p.parent()?;
    }
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is a plain C struct of integers, for which all-zero bytes are a valid value.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: the path is a valid NUL-terminated string and `s` a valid, writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

/// Refuse to start writing `need` bytes under `path` when the file system has less free.
pub fn check_space(path: &Path, need: u64) -> Result<()> {
    if std::env::var_os("DFT_SKIP_SPACE_CHECK").is_some() {
        return Ok(()); // fault-injection tests: reach the real write failure
    }
    match free_bytes(path) {
        Some(free) if free < need => Err(TrainError::NoSpace { path: path.into(), need, free }),
        _ => Ok(()),
    }
}

/// Whether an I/O error (or an error message from a writer that keeps only the text) means the disk
/// is full.
pub fn is_no_space(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC)
        || e.raw_os_error() == Some(libc::EDQUOT)
        || e.kind() == std::io::ErrorKind::StorageFull
}

/// After a failed write of about `need` bytes under `path`: the disk-full error when the file system
/// is (nearly) full or the message says so, else `other`.
pub fn explain_write_failure(path: &Path, need: u64, msg: &str, other: TrainError) -> TrainError {
    let free = free_bytes(path).unwrap_or(u64::MAX);
    let says_full = msg.contains("No space left") || msg.contains("os error 28");
    if says_full || free < need.max(1 << 20) {
        TrainError::NoSpace { path: path.into(), need, free: if free == u64::MAX { 0 } else { free } }
    } else {
        other
    }
}

/// `1.234 GB`.
pub fn gb(bytes: u64) -> String {
    format!("{:.3} GB", bytes as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_scratch::ScratchDir;

    fn tmp(tag: &str) -> ScratchDir {
        ScratchDir::new(format!("dft-run-dir-{}-{tag}", std::process::id()))
    }

    #[test]
    fn lock_is_exclusive_released_on_drop_and_stale_locks_are_taken_over() {
        let d = tmp("lock");
        let a = RunLock::acquire(&d, "test").unwrap();
        // A live holder (pid 1 exists on every Linux system) blocks.
        std::fs::write(d.join("other"), "").unwrap();
        let lock_path = a.path().to_path_buf();
        drop(a);
        assert!(!lock_path.exists(), "released on drop");
        std::fs::write(&lock_path, format!("1 {} init\n", host())).unwrap();
        let e = RunLock::acquire(&d, "test").unwrap_err().to_string();
        assert!(e.contains("pid 1") && e.contains(&d.display().to_string()), "{e}");
        // A dead holder is stale.
        std::fs::write(&lock_path, format!("{} {} dft train\n", i32::MAX - 7, host())).unwrap();
        let b = RunLock::acquire(&d, "test").unwrap();
        drop(b);
    }

    #[test]
    fn overwrite_moves_the_run_aside_and_keeps_the_directory_locked() {
        let root = tmp("overwrite");
        let d = root.join("run");
        std::fs::create_dir_all(d.join("checkpoint-000003")).unwrap();
        std::fs::write(d.join("metrics.jsonl"), "{}\n").unwrap();
        let e = prepare_run_dir(&d, StartMode::Fresh).unwrap_err().to_string();
        assert!(e.contains("already holds a run (1 checkpoint(s), metrics.jsonl)"), "{e}");
        assert!(!d.join(LOCK_FILE).exists(), "the refusal releases the lock");
        let lock = prepare_run_dir(&d, StartMode::Overwrite).unwrap();
        assert!(lock.path().exists(), "the new directory is locked while the run goes on");
        assert!(RunLock::acquire(&d, "other").is_err());
        assert!(run_contents(&d).is_empty());
        let parent = d.parent().unwrap();
        let aside: Vec<_> = std::fs::read_dir(parent)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("run.old-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert!(aside[0].path().join("checkpoint-000003").is_dir() && !aside[0].path().join(LOCK_FILE).exists());
        drop(lock);
        assert!(!d.join(LOCK_FILE).exists());
    }

    #[test]
    fn temp_names_and_their_owners() {
        assert_eq!(temp_owner(".tmp-checkpoint-000004-1234"), Some(1234));
        assert_eq!(temp_owner(".model.safetensors.tmp99"), Some(99));
        assert_eq!(temp_owner("checkpoint-000004"), None);
        assert_eq!(temp_owner("metrics.jsonl"), None);
    }
}
