//! Line-aligned text for the entropy sample: a target-language file and, where it exists, its English
//! counterpart (FLORES-200 style: one sentence per line, line n of each file is the same sentence).
use std::path::{Path, PathBuf};

use crate::error::{LayersError, Result};

/// FLORES-200 code of a language (`zh` → `zho_Hans`); a code containing `_` is taken as already one.
pub fn flores_code(lang: &str) -> Option<String> {
    if lang.contains('_') {
        return Some(lang.to_string());
    }
    let code = match lang.to_ascii_lowercase().as_str() {
        "en" => "eng_Latn",
        "zh" | "zh_cn" | "zh-cn" => "zho_Hans",
        "vi" => "vie_Latn",
        "ar" => "arb_Arab",
        "fr" => "fra_Latn",
        "de" => "deu_Latn",
        "es" => "spa_Latn",
        "ru" => "rus_Cyrl",
        "ja" => "jpn_Jpan",
        "ko" => "kor_Hang",
        "hi" => "hin_Deva",
        "sw" => "swh_Latn",
        _ => return None,
    };
    Some(code.to_string())
}

/// The file holding `lang` under `dir`: `{F}.devtest.sample`, `{F}.devtest`, `{F}.dev`, `{F}.txt`,
/// `{lang}.txt` (F = FLORES code), also under `dir/devtest/` and `dir/dev/`.
pub fn find_language_file(dir: &Path, lang: &str) -> Result<PathBuf> {
    let mut names = Vec::new();
    if let Some(f) = flores_code(lang) {
        for ext in ["devtest.sample", "devtest", "dev", "txt"] {
            names.push(format!("{f}.{ext}"));
        }
    }
    names.push(format!("{lang}.txt"));
    let mut tried = Vec::new();
    for sub in [dir.to_path_buf(), dir.join("devtest"), dir.join("dev")] {
        for name in &names {
            let p = sub.join(name);
            if p.is_file() {
                return Ok(p);
            }
            tried.push(p.display().to_string());
        }
    }
    Err(LayersError::MissingLanguage { lang: lang.into(), dir: dir.into(), tried: tried.join(", ") })
}

/// Every line of a UTF-8 text file (line endings stripped, blank lines kept for alignment).
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| LayersError::Io { path: path.into(), source: e })?;
    Ok(text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect())
}

/// Target-language sentences and, when available, their English translations (same length, aligned).
#[derive(Debug, Clone, PartialEq)]
pub struct ParallelText {
    pub target_path: PathBuf,
    pub english_path: Option<PathBuf>,
    pub target: Vec<String>,
    pub english: Option<Vec<String>>,
}

/// Load the sample. `data` is either one directory (files found by [`find_language_file`] for `lang` and
/// `en`; English optional) or one or two files: the target text, then its English counterpart.
/// Pairs where either side is blank are dropped; `limit` keeps the first N pairs.
pub fn load_parallel(data: &[PathBuf], lang: &str, limit: Option<usize>) -> Result<ParallelText> {
    let (target_path, english_path) = match data {
        [dir] if dir.is_dir() => {
            let t = find_language_file(dir, lang)?;
            let e = if lang == "en" { None } else { find_language_file(dir, "en").ok() };
            (t, e)
        }
        [t] => (t.clone(), None),
        [t, e] => (t.clone(), Some(e.clone())),
        _ => {
            return Err(LayersError::MissingLanguage {
                lang: lang.into(),
                dir: data.first().cloned().unwrap_or_default(),
                tried: format!("{} paths given; pass one directory or TARGET [ENGLISH] files", data.len()),
            })
        }
    };
    let target = read_lines(&target_path)?;
    let english = match &english_path {
        Some(p) => {
            let e = read_lines(p)?;
            let (nt, ne) = (trimmed_len(&target), trimmed_len(&e));
            if nt != ne {
                return Err(LayersError::NotParallel {
                    target: target_path,
                    target_lines: nt,
                    english: p.clone(),
                    english_lines: ne,
                });
            }
            Some(e)
        }
        None => None,
    };
    let keep: Vec<usize> = (0..target.len())
        .filter(|&n| {
            !target[n].trim().is_empty()
                && english.as_ref().is_none_or(|e| e.get(n).is_some_and(|s| !s.trim().is_empty()))
        })
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    if keep.is_empty() {
        return Err(LayersError::EmptyFile { path: target_path });
    }
    let pick = |v: &Vec<String>| keep.iter().map(|&n| v[n].clone()).collect::<Vec<_>>();
    Ok(ParallelText { target: pick(&target), english: english.as_ref().map(pick), target_path, english_path })
}

/// Line count ignoring trailing blank lines (a final newline is not a sentence).
fn trimmed_len(lines: &[String]) -> usize {
    lines.iter().rposition(|l| !l.trim().is_empty()).map_or(0, |p| p + 1)
}

/// Token ids of each text (with the tokenizer's special tokens, as the model usually sees text).
pub fn tokenize(tok: &tokenizers::Tokenizer, texts: &[String], what: &str) -> Result<Vec<Vec<u32>>> {
    texts
        .iter()
        .enumerate()
        .map(|(n, t)| {
            let ids = tok
                .encode(t.as_str(), true)
                .map_err(|e| LayersError::Tokenizer { what: format!("{what} line {}", n + 1), msg: e.to_string() })?
                .get_ids()
                .to_vec();
            if ids.is_empty() {
                return Err(LayersError::EmptyInput { what: what.into(), index: n });
            }
            Ok(ids)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dft_test_support::scratch::ScratchDir;

    fn tmpdir(name: &str) -> ScratchDir {
        ScratchDir::new(format!("dft-layers-data-{name}-{}", std::process::id()))
    }

    #[test]
    fn finds_flores_files_and_drops_blank_pairs() {
        let d = tmpdir("ok");
        let data = [d.to_path_buf()];
        std::fs::write(d.join("zho_Hans.devtest.sample"), "一\n\n三\n四\n五\n").unwrap();
        std::fs::write(d.join("eng_Latn.devtest.sample"), "one\ntwo\nthree\n\nfive\n\n").unwrap();
        let p = load_parallel(&data, "zh", None).unwrap();
        assert_eq!(p.target, ["一", "三", "五"]);
        assert_eq!(p.english.as_deref().unwrap(), ["one", "three", "five"]);
        let p = load_parallel(&data, "zh", Some(1)).unwrap();
        assert_eq!(p.target, ["一"]);
    }

    #[test]
    fn misaligned_and_missing_files_are_named() {
        let d = tmpdir("bad");
        let data = [d.to_path_buf()];
        std::fs::write(d.join("zh.txt"), "一\n二\n").unwrap();
        std::fs::write(d.join("en.txt"), "one\n").unwrap();
        let e = load_parallel(&data, "zh", None).unwrap_err();
        assert!(matches!(e, LayersError::NotParallel { target_lines: 2, english_lines: 1, .. }), "{e}");
        let e = load_parallel(&data, "vi", None).unwrap_err();
        assert!(e.to_string().contains("vie_Latn.devtest.sample"), "{e}");
    }
}
