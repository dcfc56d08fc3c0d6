//! Records the git revision of the source tree (`DFT_GIT_REVISION`) and whether tracked files differ
//! from it (`DFT_GIT_DIRTY`, "true"/"false") for run_info.json; nothing when built outside a git checkout
//! or without git.
use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    if let Some(rev) = git(&["rev-parse", "HEAD"]).filter(|s| !s.is_empty()) {
        println!("cargo:rustc-env=DFT_GIT_REVISION={rev}");
        // Uncommitted changes to tracked files (untracked files do not count, as in `git describe --dirty`).
        if let Some(status) = git(&["status", "--porcelain", "--untracked-files=no"]) {
            println!("cargo:rustc-env=DFT_GIT_DIRTY={}", !status.is_empty());
        }
    }
    // rebuild when HEAD moves (a new commit, another branch) or the index changes
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]).filter(|s| !s.is_empty()) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
    }
    if let Some(common) = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]).filter(|s| !s.is_empty()) {
        println!("cargo:rerun-if-changed={common}/refs/heads");
        println!("cargo:rerun-if-changed={common}/packed-refs");
    }
    // ... and when a tracked file of the checkout is edited (cargo scans these top-level entries' files'
    // mtimes; `target/` is not tracked, so it is not scanned), so the dirty flag follows unstaged edits.
    if let (Some(top), Some(entries)) =
        (git(&["rev-parse", "--show-toplevel"]).filter(|s| !s.is_empty()), git(&["ls-tree", "--name-only", "HEAD"]))
    {
        for entry in entries.lines() {
            let path = Path::new(&top).join(entry);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
