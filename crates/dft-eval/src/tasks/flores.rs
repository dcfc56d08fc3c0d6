//! FLORES-200: line-aligned plain-text files, one sentence per line (`eng_Latn.devtest`,
//! `zho_Hans.devtest`, … or the `.devtest.sample` slices), as translation items (en→X and/or X→en)
//! and as the parallel sentences of the representation-alignment analysis ([`crate::align`]).
//!
//! Files are looked for under `{dir}/flores200/` and `{dir}/` (so both the eval data folder and the
//! FLORES folder itself work), in this order: `{F}.devtest`, `devtest/{F}.devtest`,
//! `{F}.devtest.sample` (`F` = [`Lang::flores_code`]).
//!
//! Few-shot examples: the first `k` lines of the `dev` split when both languages have one
//! (`{F}.dev`, `dev/{F}.dev`, `{F}.dev.sample`); otherwise the **last** `k` lines of the devtest
//! files, which are then not evaluated (with the 100-line samples and the default `k = 1`: line
//! 100 is the example, lines 1–99 are translated).
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::items::{TaskItems, TranslationItem};
use crate::lang::Lang;
use crate::prompts::translation_prompt;
use crate::tasks::{io, LoadedTask, Task};

/// Default number of few-shot examples in a translation prompt.
pub const DEFAULT_SHOTS: usize = 1;

/// Which translation directions to evaluate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MtDirections {
    /// en→X and X→en, reported separately (en→X first).
    #[default]
    Both,
    /// en→X only.
    EnX,
    /// X→en only.
    XEn,
}

impl MtDirections {
    /// `(src, tgt)` pairs for target language `lang`, en→X first.
    pub fn pairs(self, lang: Lang) -> Vec<(Lang, Lang)> {
        match self {
            MtDirections::Both => vec![(Lang::En, lang), (lang, Lang::En)],
            MtDirections::EnX => vec![(Lang::En, lang)],
            MtDirections::XEn => vec![(lang, Lang::En)],
        }
    }
}

impl FromStr for MtDirections {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "both" => Ok(MtDirections::Both),
            "en-x" | "en2x" | "from-en" => Ok(MtDirections::EnX),
            "x-en" | "x2en" | "into-en" => Ok(MtDirections::XEn),
            other => Err(format!("unknown translation direction `{other}` (expected both, en-x or x-en)")),
        }
    }
}

impl fmt::Display for MtDirections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MtDirections::Both => "both",
            MtDirections::EnX => "en-x",
            MtDirections::XEn => "x-en",
        })
    }
}

/// How the FLORES translation task is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloresOptions {
    /// Few-shot examples per prompt (see the module doc for where they come from).
    pub shots: usize,
    pub directions: MtDirections,
}

impl Default for FloresOptions {
    fn default() -> Self {
        FloresOptions { shots: DEFAULT_SHOTS, directions: MtDirections::Both }
    }
}

/// Devtest file names tried, relative to the data directory.
pub fn candidate_paths(lang: Lang) -> Vec<PathBuf> {
    let f = lang.flores_code();
    let mut out = Vec::new();
    for base in ["flores200/", ""] {
        for name in [format!("{f}.devtest"), format!("devtest/{f}.devtest"), format!("{f}.devtest.sample")] {
            out.push(PathBuf::from(format!("{base}{name}")));
        }
    }
    out
}

fn dev_candidates(lang: Lang) -> Vec<PathBuf> {
    let f = lang.flores_code();
    let mut out = Vec::new();
    for base in ["flores200/", ""] {
        for name in [format!("{f}.dev"), format!("dev/{f}.dev"), format!("{f}.dev.sample")] {
            out.push(PathBuf::from(format!("{base}{name}")));
        }
    }
    out
}

fn find(data_dir: &Path, lang: Lang, candidates: &[PathBuf]) -> Result<PathBuf> {
    candidates.iter().map(|rel| data_dir.join(rel)).find(|p| p.is_file()).ok_or_else(|| EvalError::MissingFile {
        task: Task::Flores.name().into(),
        lang: lang.code().into(),
        dir: data_dir.to_path_buf(),
        tried: candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
    })
}

/// The devtest files of English and `lang` under `data_dir`: `(english, target)`.
pub fn find_flores_files(data_dir: &Path, lang: Lang) -> Result<(PathBuf, PathBuf)> {
    if lang == Lang::En {
        return Err(EvalError::UnsupportedLanguage {
            task: Task::Flores.name().into(),
            lang: "en".into(),
            available: "zh, vi, ar (English is the other side of every pair)".into(),
        });
    }
    Ok((find(data_dir, Lang::En, &candidate_paths(Lang::En))?, find(data_dir, lang, &candidate_paths(lang))?))
}

/// Every line of a FLORES file (line endings stripped; blank lines kept for alignment).
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    io::for_each_line(path, |_, line| {
        out.push(line.to_string());
        Ok(())
    })?;
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    Ok(out)
}

/// Line-aligned English and target sentences.
#[derive(Clone, Debug, PartialEq)]
pub struct ParallelSentences {
    pub english_file: PathBuf,
    pub target_file: PathBuf,
    /// 0-based line of each pair in the files.
    pub lines: Vec<usize>,
    pub english: Vec<String>,
    pub target: Vec<String>,
}

/// Reads two line-aligned files; a different number of lines is an error; pairs where either
/// side is blank are dropped.
pub fn read_parallel(english_file: &Path, target_file: &Path) -> Result<ParallelSentences> {
    let (en, tgt) = (read_lines(english_file)?, read_lines(target_file)?);
    if en.len() != tgt.len() {
        return Err(EvalError::malformed(
            target_file,
            tgt.len().min(en.len()) + 1,
            format!(
                "{} lines, but {} has {} (files must be line-aligned)",
                tgt.len(),
                english_file.display(),
                en.len()
            ),
        ));
    }
    let mut out = ParallelSentences {
        english_file: english_file.to_path_buf(),
        target_file: target_file.to_path_buf(),
        lines: vec![],
        english: vec![],
        target: vec![],
    };
    for (n, (e, t)) in en.into_iter().zip(tgt).enumerate() {
        if !e.trim().is_empty() && !t.trim().is_empty() {
            out.lines.push(n);
            out.english.push(e);
            out.target.push(t);
        }
    }
    if out.lines.is_empty() {
        return Err(EvalError::malformed(target_file, 1, "no sentence pairs"));
    }
    Ok(out)
}

/// The FLORES devtest pairs of `lang` and English under `data_dir` (see the module doc).
pub fn load_parallel(data_dir: &Path, lang: Lang) -> Result<ParallelSentences> {
    let (en, tgt) = find_flores_files(data_dir, lang)?;
    read_parallel(&en, &tgt)
}

/// Loads FLORES translation items for `lang` (zh, vi or ar): for each direction of
/// `opts.directions` (en→X first) one item per devtest sentence, the shots excluded.
pub fn load_flores(data_dir: &Path, lang: Lang, opts: &FloresOptions) -> Result<LoadedTask> {
    let mut par = load_parallel(data_dir, lang)?;
    let mut files = vec![par.english_file.clone(), par.target_file.clone()];
    let dev = match (find(data_dir, Lang::En, &dev_candidates(Lang::En)), find(data_dir, lang, &dev_candidates(lang))) {
        (Ok(e), Ok(t)) if opts.shots > 0 => Some(read_parallel(&e, &t)?),
        _ => None,
    };
    let (shot_en, shot_tgt): (Vec<String>, Vec<String>) = match dev {
        Some(d) => {
            if d.lines.len() < opts.shots {
                return Err(EvalError::malformed(
                    &d.target_file,
                    1,
                    format!("{} few-shot examples asked for, the dev split has {}", opts.shots, d.lines.len()),
                ));
            }
            files.extend([d.english_file.clone(), d.target_file.clone()]);
            (d.english[..opts.shots].to_vec(), d.target[..opts.shots].to_vec())
        }
        None => {
            if par.lines.len() <= opts.shots {
                return Err(EvalError::malformed(
                    &par.target_file,
                    1,
                    format!(
                        "{} pairs: too few for {} few-shot examples plus at least one sentence",
                        par.lines.len(),
                        opts.shots
                    ),
                ));
            }
            let keep = par.lines.len() - opts.shots;
            let e = par.english.split_off(keep);
            let t = par.target.split_off(keep);
            par.lines.truncate(keep);
            (e, t)
        }
    };
    let mut items = Vec::new();
    for (src, tgt) in opts.directions.pairs(lang) {
        fn side(l: Lang, en: &[String], x: &[String]) -> Vec<String> {
            if l == Lang::En {
                en.to_vec()
            } else {
                x.to_vec()
            }
        }
        let (shot_src, shot_ref) = (side(src, &shot_en, &shot_tgt), side(tgt, &shot_en, &shot_tgt));
        let shots: Vec<(&str, &str)> =
            shot_src.iter().map(String::as_str).zip(shot_ref.iter().map(String::as_str)).collect();
        let (sources, references) = (side(src, &par.english, &par.target), side(tgt, &par.english, &par.target));
        for ((line, source), reference) in par.lines.iter().zip(sources).zip(references) {
            items.push(TranslationItem {
                id: format!("flores-{src}-{tgt}/{line}"),
                src,
                tgt,
                prompt: translation_prompt(src, tgt, &shots, &source),
                source,
                reference,
                shots: opts.shots,
            });
        }
    }
    Ok(LoadedTask { task: Task::Flores, lang, files, items: TaskItems::Translation(items) })
}

/// The first `n` items of each direction, in order.
pub fn first_per_direction(items: &[TranslationItem], n: usize) -> Vec<TranslationItem> {
    let mut seen: Vec<((Lang, Lang), usize)> = Vec::new();
    let mut out = Vec::new();
    for it in items {
        let slot = match seen.iter().position(|(d, _)| *d == (it.src, it.tgt)) {
            Some(p) => p,
            None => {
                seen.push(((it.src, it.tgt), 0));
                seen.len() - 1
            }
        };
        if seen[slot].1 < n {
            seen[slot].1 += 1;
            out.push(it.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dft_test_support::scratch::ScratchDir;

    fn tmpdir(name: &str) -> ScratchDir {
        let d = ScratchDir::new(format!("dft-eval-flores-{name}-{}", std::process::id()));
        std::fs::create_dir_all(d.join("flores200")).unwrap();
        d
    }

    #[test]
    fn shots_come_from_the_end_of_devtest_and_directions_are_ordered() {
        let d = tmpdir("ok");
        std::fs::write(d.join("flores200/eng_Latn.devtest.sample"), "one\ntwo\n\nfour\nfive\n\n").unwrap();
        std::fs::write(d.join("flores200/zho_Hans.devtest.sample"), "一\n二\n三\n四\n五\n").unwrap();
        let t = load_flores(&d, Lang::Zh, &FloresOptions::default()).unwrap();
        let items = t.items.as_translation().unwrap();
        // Line 3 is blank in English (dropped); line 5 ("five") is the shot.
        assert_eq!(items.len(), 6);
        assert_eq!(items[0].id, "flores-en-zh/0");
        assert_eq!(items[0].prompt, "English: five\nChinese: 五\n\nEnglish: one\nChinese:");
        assert_eq!(items[2].id, "flores-en-zh/3");
        assert_eq!(items[3].id, "flores-zh-en/0");
        assert_eq!(items[3].prompt, "Chinese: 五\nEnglish: five\n\nChinese: 一\nEnglish:");
        assert_eq!((items[3].source.as_str(), items[3].reference.as_str()), ("一", "one"));
        assert_eq!(
            first_per_direction(items, 1).iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            ["flores-en-zh/0", "flores-zh-en/0"]
        );
        let zero = FloresOptions { shots: 0, directions: MtDirections::XEn };
        let t = load_flores(&d, Lang::Zh, &zero).unwrap();
        let items = t.items.as_translation().unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[3].prompt, "Chinese: 五\nEnglish:");
        // A dev split, when present, supplies the shots and nothing is held out.
        std::fs::write(d.join("flores200/eng_Latn.dev"), "dev one\n").unwrap();
        std::fs::write(d.join("flores200/zho_Hans.dev"), "开发一\n").unwrap();
        let t = load_flores(&d, Lang::Zh, &FloresOptions { shots: 1, directions: MtDirections::EnX }).unwrap();
        let items = t.items.as_translation().unwrap();
        assert_eq!(items.len(), 4);
        assert!(items[0].prompt.starts_with("English: dev one\nChinese: 开发一\n\n"));
        assert_eq!(t.files.len(), 4);
    }

    #[test]
    fn bad_inputs_are_named() {
        let d = tmpdir("bad");
        let e = load_flores(&d, Lang::Vi, &FloresOptions::default()).unwrap_err().to_string();
        assert!(e.contains("eng_Latn.devtest"), "{e}");
        assert!(matches!(
            load_flores(&d, Lang::En, &FloresOptions::default()),
            Err(EvalError::UnsupportedLanguage { .. })
        ));
        std::fs::write(d.join("flores200/eng_Latn.devtest"), "a\nb\nc\n").unwrap();
        std::fs::write(d.join("flores200/vie_Latn.devtest"), "a\nb\n").unwrap();
        let e = load_flores(&d, Lang::Vi, &FloresOptions::default()).unwrap_err().to_string();
        assert!(e.contains("vie_Latn.devtest:3:") && e.contains("line-aligned"), "{e}");
        std::fs::write(d.join("flores200/vie_Latn.devtest"), "a\nb\nc\n").unwrap();
        let e = load_flores(&d, Lang::Vi, &FloresOptions { shots: 3, ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("too few"), "{e}");
        assert_eq!("x-en".parse::<MtDirections>().unwrap(), MtDirections::XEn);
        assert!("sideways".parse::<MtDirections>().is_err());
    }
}
