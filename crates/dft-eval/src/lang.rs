//! The evaluation languages of the paper (English plus the three target languages) and the codes
//! each benchmark uses for them.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::EvalError;

/// An evaluation language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    /// Simplified Chinese.
    Zh,
    Vi,
    Ar,
}

impl Lang {
    pub const ALL: [Lang; 4] = [Lang::En, Lang::Zh, Lang::Vi, Lang::Ar];

    /// ISO 639-1 code: `en`, `zh`, `vi`, `ar`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
            Lang::Vi => "vi",
            Lang::Ar => "ar",
        }
    }

    /// The language's English name, as translation prompts write it (`Chinese` for zh).
    pub fn english_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Zh => "Chinese",
            Lang::Vi => "Vietnamese",
            Lang::Ar => "Arabic",
        }
    }

    /// MKQA's language code (`zh_cn` for Simplified Chinese).
    pub fn mkqa_code(self) -> &'static str {
        match self {
            Lang::Zh => "zh_cn",
            other => other.code(),
        }
    }

    /// FLORES-200 code (`eng_Latn`, `zho_Hans`, `vie_Latn`, `arb_Arab`).
    pub fn flores_code(self) -> &'static str {
        match self {
            Lang::En => "eng_Latn",
            Lang::Zh => "zho_Hans",
            Lang::Vi => "vie_Latn",
            Lang::Ar => "arb_Arab",
        }
    }

    /// Parses `en`, `zh`, `vi`, `ar` (also `zh_cn` / `zh-cn`, case-insensitive).
    pub fn from_code(code: &str) -> Result<Lang, EvalError> {
        match code.to_ascii_lowercase().as_str() {
            "en" => Ok(Lang::En),
            "zh" | "zh_cn" | "zh-cn" => Ok(Lang::Zh),
            "vi" => Ok(Lang::Vi),
            "ar" => Ok(Lang::Ar),
            _ => Err(EvalError::UnknownLanguage { code: code.to_string() }),
        }
    }
}

impl FromStr for Lang {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Lang::from_code(s)
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
