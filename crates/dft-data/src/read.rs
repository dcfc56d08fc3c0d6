//! Readers for parallel instruction data in the formats we meet.
//!
//! - [`read_alpaca_en_zh_dir`]: the alpaca_en_zh release, `alpaca_chinese_part_{0..52}.json`
//!   concatenated in numeric part order.
//! - [`read_paired_json`]: JSON arrays of `{en_instruction, en_input, en_output, <tgt>_instruction,
//!   <tgt>_input, <tgt>_output, metadata: {score}}` (the alpaca_en_zh record, any target code).
//! - [`read_paired_jsonl`]: JSONL, one pair per line: `{id?, en: {instruction, input, output},
//!   <tgt>: {...}, score?}`.
//! - [`read_jsonl_pair`]: two JSONL files (English, target), each line `{id?, instruction, input,
//!   output}`, paired by `id` or by line.
//! - [`read_alpaca_pair`]: two Alpaca JSON arrays (English, target) paired by index.
//!
//! Field rules (all formats): `instruction` and `output` are required non-blank strings; `input` may
//! be missing or null (= no input); `score`/`metadata.score` is optional, null or 1..=5; `id` is
//! optional, a string or an integer. Ids must be unique. Records are validated in file order and each
//! problem is an error (strict) or a counted skip (lenient), see [`crate::error`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::{handle, DataError, DataReport, FieldProblem, RecordLocation, SkipReason, Strictness};
use crate::example::{ParallelCorpus, ParallelExample, Query};

/// How two single-language JSONL files are paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairBy {
    /// By the `id` field of each line (every line must have one).
    Id,
    /// By position (the k-th non-blank line of one file with the k-th of the other).
    #[default]
    Line,
}

/// A data source named in a config: which reader, which files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum DataSource {
    /// A directory holding `alpaca_chinese_part_{n}.json` (target `zh`).
    AlpacaEnZhDir { dir: PathBuf },
    /// Paired JSON arrays (`en_*` / `<tgt>_*` keys), concatenated in the given order.
    PairedJson { paths: Vec<PathBuf>, target_lang: String },
    /// Paired JSONL keyed by language code.
    PairedJsonl { path: PathBuf, target_lang: String },
    /// Two single-language JSONL files.
    JsonlPair {
        en: PathBuf,
        tgt: PathBuf,
        target_lang: String,
        #[serde(default)]
        pair_by: PairBy,
    },
    /// Two single-language Alpaca JSON arrays paired by index.
    AlpacaPair { en: PathBuf, tgt: PathBuf, target_lang: String },
}

impl DataSource {
    /// Read the source. Relative paths are taken as they are (relative to the working directory).
    pub fn read(&self, strictness: Strictness) -> Result<ParallelCorpus, DataError> {
        match self {
            DataSource::AlpacaEnZhDir { dir } => read_alpaca_en_zh_dir(dir, strictness),
            DataSource::PairedJson { paths, target_lang } => read_paired_json(paths, target_lang, strictness),
            DataSource::PairedJsonl { path, target_lang } => read_paired_jsonl(path, target_lang, strictness),
            DataSource::JsonlPair { en, tgt, target_lang, pair_by } => {
                read_jsonl_pair(en, tgt, target_lang, *pair_by, strictness)
            }
            DataSource::AlpacaPair { en, tgt, target_lang } => read_alpaca_pair(en, tgt, target_lang, strictness),
        }
    }
}

/// File names of the alpaca_en_zh release: `alpaca_chinese_part_{n}.json`.
pub const ALPACA_EN_ZH_PREFIX: &str = "alpaca_chinese_part_";

/// The `alpaca_chinese_part_{n}.json` files of `dir`, sorted by `n` (numeric, not lexical).
pub fn alpaca_en_zh_part_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::Io { path: dir.to_path_buf(), source })?;
    let mut parts = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DataError::Io { path: dir.to_path_buf(), source })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(number) = name.strip_prefix(ALPACA_EN_ZH_PREFIX).and_then(|rest| rest.strip_suffix(".json")) else {
            continue;
        };
        if let Ok(n) = number.parse::<u32>() {
            parts.push((n, entry.path()));
        }
    }
    if parts.is_empty() {
        return Err(DataError::NoFiles { dir: dir.to_path_buf(), pattern: format!("{ALPACA_EN_ZH_PREFIX}{{n}}.json") });
    }
    parts.sort();
    Ok(parts.into_iter().map(|(_, p)| p).collect())
}

/// Read the alpaca_en_zh release directory (target language `zh`).
pub fn read_alpaca_en_zh_dir(dir: &Path, strictness: Strictness) -> Result<ParallelCorpus, DataError> {
    let files = alpaca_en_zh_part_files(dir)?;
    read_paired_json(&files, "zh", strictness)
}

/// Read JSON arrays of paired records (`en_instruction`, ..., `<tgt>_output`, `metadata.score`),
/// concatenated in the order given. Record ids default to the position in the concatenation.
pub fn read_paired_json(
    paths: &[impl AsRef<Path>],
    target_lang: &str,
    strictness: Strictness,
) -> Result<ParallelCorpus, DataError> {
    check_target_lang(target_lang)?;
    let en_keys = PairedKeys::flat("en");
    let tgt_keys = PairedKeys::flat(target_lang);
    let mut report = DataReport::default();
    let mut examples = Vec::new();
    let mut position = 0usize;
    for path in paths {
        let path = path.as_ref();
        let text = read_utf8(path)?;
        let records = parse_json_array(path, strip_bom(&text))?;
        let path: Arc<Path> = Arc::from(path);
        for (record, (raw, line)) in records.into_iter().enumerate() {
            let location = RecordLocation { path: path.clone(), line, record };
            report.seen += 1;
            let parsed = parse_object(raw.get(), &location)
                .and_then(|obj| paired_example(&obj, &en_keys, &tgt_keys, position, location));
            position += 1;
            match parsed {
                Ok(example) => examples.push(example),
                Err(e) => handle(strictness, &mut report, e)?,
            }
        }
    }
    finish(target_lang, examples, report, strictness)
}

/// Read JSONL where each line holds both languages keyed by language code:
/// `{"id": .., "en": {"instruction", "input", "output"}, "<tgt>": {...}, "score": ..}`.
pub fn read_paired_jsonl(path: &Path, target_lang: &str, strictness: Strictness) -> Result<ParallelCorpus, DataError> {
    check_target_lang(target_lang)?;
    let en_keys = PairedKeys::nested("en");
    let tgt_keys = PairedKeys::nested(target_lang);
    let mut report = DataReport::default();
    let mut examples = Vec::new();
    for (position, line) in jsonl_records(path)?.into_iter().enumerate() {
        report.seen += 1;
        let parsed = line.and_then(|(obj, location)| paired_example(&obj, &en_keys, &tgt_keys, position, location));
        match parsed {
            Ok(example) => examples.push(example),
            Err(e) => handle(strictness, &mut report, e)?,
        }
    }
    finish(target_lang, examples, report, strictness)
}

/// Read two single-language JSONL files (`{id?, instruction, input?, output, score?}` per line) and
/// pair them by id or by line. Examples come in English-file order; the example's `score` is the
/// target record's (else the English one's).
pub fn read_jsonl_pair(
    en_path: &Path,
    tgt_path: &Path,
    target_lang: &str,
    pair_by: PairBy,
    strictness: Strictness,
) -> Result<ParallelCorpus, DataError> {
    check_target_lang(target_lang)?;
    let parse = |path: &Path| -> Result<Vec<Result<MonoRecord, DataError>>, DataError> {
        Ok(jsonl_records(path)?
            .into_iter()
            .enumerate()
            .map(|(position, line)| line.and_then(|(obj, location)| mono_record(&obj, position, location)))
            .collect())
    };
    let en = parse(en_path)?;
    let tgt = parse(tgt_path)?;
    match pair_by {
        PairBy::Line => pair_by_position(en_path, en, tgt_path, tgt, target_lang, strictness),
        PairBy::Id => pair_by_id(en, tgt_path, tgt, en_path, target_lang, strictness),
    }
}

/// Read two Alpaca JSON arrays (`[{instruction, input, output}]`, English and target) paired by
/// index.
pub fn read_alpaca_pair(
    en_path: &Path,
    tgt_path: &Path,
    target_lang: &str,
    strictness: Strictness,
) -> Result<ParallelCorpus, DataError> {
    check_target_lang(target_lang)?;
    let parse = |path: &Path| -> Result<Vec<Result<MonoRecord, DataError>>, DataError> {
        let text = read_utf8(path)?;
        let records = parse_json_array(path, strip_bom(&text))?;
        let shared: Arc<Path> = Arc::from(path);
        Ok(records
            .into_iter()
            .enumerate()
            .map(|(record, (raw, line))| {
                let location = RecordLocation { path: shared.clone(), line, record };
                parse_object(raw.get(), &location).and_then(|obj| mono_record(&obj, record, location))
            })
            .collect())
    };
    let en = parse(en_path)?;
    let tgt = parse(tgt_path)?;
    pair_by_position(en_path, en, tgt_path, tgt, target_lang, strictness)
}

// ---------------------------------------------------------------------------------------------
// Pairing of single-language records.

/// One single-language record.
struct MonoRecord {
    id: Option<String>,
    position: usize,
    query: Query,
    output: String,
    score: Option<u8>,
    location: RecordLocation,
}

fn mono_record(obj: &Map<String, Value>, position: usize, location: RecordLocation) -> Result<MonoRecord, DataError> {
    let query = Query {
        instruction: required_text(obj, "instruction", "instruction", &location)?,
        input: optional_text(obj, "input", "input", &location)?,
    };
    let output = required_text(obj, "output", "output", &location)?;
    let score = score_field(obj, &location)?;
    let id = id_field(obj, &location)?;
    Ok(MonoRecord { id, position, query, output, score, location })
}

fn combine(en: MonoRecord, tgt: MonoRecord, id: String) -> ParallelExample {
    ParallelExample {
        id,
        x_en: en.query,
        y_en: en.output,
        x_tgt: tgt.query,
        y_tgt: tgt.output,
        score: tgt.score.or(en.score),
        origin: tgt.location,
    }
}

fn pair_by_position(
    en_path: &Path,
    en: Vec<Result<MonoRecord, DataError>>,
    tgt_path: &Path,
    tgt: Vec<Result<MonoRecord, DataError>>,
    target_lang: &str,
    strictness: Strictness,
) -> Result<ParallelCorpus, DataError> {
    let mut report = DataReport::default();
    if en.len() != tgt.len() {
        let mismatch = DataError::PairCountMismatch {
            en_path: en_path.to_path_buf(),
            en_count: en.len(),
            tgt_path: tgt_path.to_path_buf(),
            tgt_count: tgt.len(),
        };
        if strictness == Strictness::Strict {
            return Err(mismatch);
        }
        let extra = en.len().abs_diff(tgt.len());
        report.seen += extra;
        report.skip_many(SkipReason::Unpaired, extra, || mismatch.to_string());
    }
    let mut examples = Vec::new();
    for (en, tgt) in en.into_iter().zip(tgt) {
        report.seen += 1;
        match (en, tgt) {
            (Ok(en), Ok(tgt)) => {
                let id = tgt.id.clone().or_else(|| en.id.clone()).unwrap_or_else(|| en.position.to_string());
                examples.push(combine(en, tgt, id));
            }
            (Err(e), _) | (_, Err(e)) => handle(strictness, &mut report, e)?,
        }
    }
    finish(target_lang, examples, report, strictness)
}

fn pair_by_id(
    en: Vec<Result<MonoRecord, DataError>>,
    tgt_path: &Path,
    tgt: Vec<Result<MonoRecord, DataError>>,
    en_path: &Path,
    target_lang: &str,
    strictness: Strictness,
) -> Result<ParallelCorpus, DataError> {
    let mut report = DataReport::default();
    // Target records by id; duplicates and records without id are problems of their own.
    let mut by_id: HashMap<String, MonoRecord> = HashMap::new();
    let mut tgt_order = Vec::new();
    for record in tgt {
        report.seen += 1;
        let record = record.and_then(|r| require_id(r, "id"));
        match record {
            Ok(r) => {
                let id = r.id.clone().expect("checked");
                if let Some(first) = by_id.get(&id) {
                    let e = DataError::DuplicateId { location: r.location, id, first_line: first.location.line };
                    handle(strictness, &mut report, e)?;
                } else {
                    tgt_order.push(id.clone());
                    by_id.insert(id, r);
                }
            }
            Err(e) => handle(strictness, &mut report, e)?,
        }
    }
    let mut examples = Vec::new();
    let mut en_seen: HashMap<String, usize> = HashMap::new();
    for record in en {
        let record = record.and_then(|r| require_id(r, "id"));
        let r = match record {
            Ok(r) => r,
            Err(e) => {
                report.seen += 1;
                handle(strictness, &mut report, e)?;
                continue;
            }
        };
        let id = r.id.clone().expect("checked");
        if let Some(&first_line) = en_seen.get(&id) {
            report.seen += 1;
            handle(strictness, &mut report, DataError::DuplicateId { location: r.location, id, first_line })?;
            continue;
        }
        en_seen.insert(id.clone(), r.location.line);
        match by_id.remove(&id) {
            // The pair was counted as seen with the target record.
            Some(t) => examples.push(combine(r, t, id)),
            None => {
                report.seen += 1;
                let e = DataError::Unpaired { location: r.location, id, other_path: tgt_path.to_path_buf() };
                handle(strictness, &mut report, e)?;
            }
        }
    }
    for id in tgt_order {
        if let Some(t) = by_id.remove(&id) {
            let e = DataError::Unpaired { location: t.location, id, other_path: en_path.to_path_buf() };
            handle(strictness, &mut report, e)?;
        }
    }
    finish(target_lang, examples, report, strictness)
}

fn require_id(record: MonoRecord, field: &str) -> Result<MonoRecord, DataError> {
    if record.id.is_none() {
        return Err(DataError::Field {
            location: record.location,
            field: field.to_string(),
            problem: FieldProblem::Missing,
        });
    }
    Ok(record)
}

// ---------------------------------------------------------------------------------------------
// Paired records (both languages in one object).

/// Where the fields of one language live in a paired object.
struct PairedKeys {
    /// `Some("zh")` for nested objects (`obj.zh.instruction`), `None` for flat keys.
    nested: Option<String>,
    instruction: String,
    input: String,
    output: String,
}

impl PairedKeys {
    fn flat(lang: &str) -> Self {
        PairedKeys {
            nested: None,
            instruction: format!("{lang}_instruction"),
            input: format!("{lang}_input"),
            output: format!("{lang}_output"),
        }
    }

    fn nested(lang: &str) -> Self {
        PairedKeys {
            nested: Some(lang.to_string()),
            instruction: "instruction".into(),
            input: "input".into(),
            output: "output".into(),
        }
    }

    /// Query and output of this language; field names in errors are `zh_output` or `zh.output`.
    fn read(&self, obj: &Map<String, Value>, location: &RecordLocation) -> Result<(Query, String), DataError> {
        let (inner, prefix) = match &self.nested {
            None => (obj, String::new()),
            Some(lang) => match obj.get(lang) {
                Some(Value::Object(inner)) => (inner, format!("{lang}.")),
                Some(other) => {
                    return Err(field_error(location, lang, FieldProblem::WrongType(type_name(other))));
                }
                None => return Err(field_error(location, lang, FieldProblem::Missing)),
            },
        };
        let name = |key: &str| format!("{prefix}{key}");
        let query = Query {
            instruction: required_text(inner, &self.instruction, &name(&self.instruction), location)?,
            input: optional_text(inner, &self.input, &name(&self.input), location)?,
        };
        let output = required_text(inner, &self.output, &name(&self.output), location)?;
        Ok((query, output))
    }
}

fn paired_example(
    obj: &Map<String, Value>,
    en_keys: &PairedKeys,
    tgt_keys: &PairedKeys,
    position: usize,
    location: RecordLocation,
) -> Result<ParallelExample, DataError> {
    let (x_en, y_en) = en_keys.read(obj, &location)?;
    let (x_tgt, y_tgt) = tgt_keys.read(obj, &location)?;
    let score = score_field(obj, &location)?;
    let id = id_field(obj, &location)?.unwrap_or_else(|| position.to_string());
    Ok(ParallelExample { id, x_en, y_en, x_tgt, y_tgt, score, origin: location })
}

// ---------------------------------------------------------------------------------------------
// Shared steps.

fn check_target_lang(target_lang: &str) -> Result<(), DataError> {
    let valid = !target_lang.is_empty()
        && target_lang != "en"
        && target_lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(DataError::Config(format!(
            "target language code `{target_lang}` is not valid (expected e.g. zh, vi, ar; not en)"
        )))
    }
}

/// Ids must be unique: the second of two equal ids is an error (strict) or a counted skip.
fn finish(
    target_lang: &str,
    examples: Vec<ParallelExample>,
    mut report: DataReport,
    strictness: Strictness,
) -> Result<ParallelCorpus, DataError> {
    let mut first_line: HashMap<&str, usize> = HashMap::with_capacity(examples.len());
    let mut duplicate = vec![false; examples.len()];
    for (i, example) in examples.iter().enumerate() {
        if let Some(&line) = first_line.get(example.id.as_str()) {
            let e =
                DataError::DuplicateId { location: example.origin.clone(), id: example.id.clone(), first_line: line };
            handle(strictness, &mut report, e)?;
            duplicate[i] = true;
        } else {
            first_line.insert(&example.id, example.origin.line);
        }
    }
    drop(first_line);
    let examples: Vec<ParallelExample> =
        examples.into_iter().zip(duplicate).filter(|(_, dup)| !dup).map(|(e, _)| e).collect();
    report.kept = examples.len();
    debug_assert_eq!(report.seen, report.kept + report.total_skipped());
    Ok(ParallelCorpus { target_lang: target_lang.to_string(), examples, report })
}

/// Read a whole file as UTF-8; invalid bytes are reported with line and (byte) column.
fn read_utf8(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let (line, column) = line_column(e.as_bytes(), offset);
        DataError::InvalidUtf8 { path: path.to_path_buf(), line, column, byte_offset: offset }
    })
}

/// The text without a leading UTF-8 byte-order mark (some editors write one; JSON forbids it).
fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// 1-based line and 1-based byte column of `offset` in `bytes`.
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    (line, offset - line_start + 1)
}

/// Parse a JSON array without building the records yet; each element comes with the 1-based line
/// on which it starts.
fn parse_json_array<'a>(path: &Path, text: &'a str) -> Result<Vec<(&'a RawValue, usize)>, DataError> {
    let records: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| DataError::InvalidJson {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e),
    })?;
    // Element starts are increasing: count newlines incrementally.
    let base = text.as_ptr() as usize;
    let bytes = text.as_bytes();
    let mut line = 1;
    let mut scanned = 0;
    Ok(records
        .into_iter()
        .map(|raw| {
            let start = raw.get().as_ptr() as usize - base;
            line += bytes[scanned..start].iter().filter(|&&b| b == b'\n').count();
            scanned = start;
            (raw, line)
        })
        .collect())
}

/// serde_json's message without its trailing " at line L column C" (we print our own).
fn strip_position(e: &serde_json::Error) -> String {
    let message = e.to_string();
    match message.rfind(" at line ") {
        Some(p) => message[..p].to_string(),
        None => message,
    }
}

/// The non-blank lines of a JSONL file, each parsed to an object (or the line's own error).
#[allow(clippy::type_complexity)]
fn jsonl_records(path: &Path) -> Result<Vec<Result<(Map<String, Value>, RecordLocation), DataError>>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let shared: Arc<Path> = Arc::from(path);
    let mut out = Vec::new();
    let mut start = 0usize;
    for (index, raw_line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_number = index + 1;
        let line_start = start;
        start += raw_line.len() + 1;
        let raw_line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
        let raw_line = if index == 0 { raw_line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(raw_line) } else { raw_line };
        if raw_line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let location = RecordLocation { path: shared.clone(), line: line_number, record: out.len() };
        let parsed = match std::str::from_utf8(raw_line) {
            Err(e) => Err(DataError::InvalidUtf8 {
                path: path.to_path_buf(),
                line: line_number,
                column: e.valid_up_to() + 1,
                byte_offset: line_start + e.valid_up_to(),
            }),
            Ok(text) => match serde_json::from_str::<Value>(text) {
                Err(e) => Err(DataError::InvalidJson {
                    path: path.to_path_buf(),
                    line: line_number,
                    column: e.column(),
                    message: strip_position(&e),
                }),
                Ok(Value::Object(obj)) => Ok((obj, location)),
                Ok(other) => Err(field_error(&location, "<record>", FieldProblem::WrongType(type_name(&other)))),
            },
        };
        out.push(parsed);
    }
    Ok(out)
}

fn parse_object(raw: &str, location: &RecordLocation) -> Result<Map<String, Value>, DataError> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(other) => Err(field_error(location, "<record>", FieldProblem::WrongType(type_name(&other)))),
        // The array already parsed, so its elements are valid JSON.
        Err(e) => Err(field_error(location, "<record>", FieldProblem::Invalid(e.to_string()))),
    }
}

fn field_error(location: &RecordLocation, field: &str, problem: FieldProblem) -> DataError {
    DataError::Field { location: location.clone(), field: field.to_string(), problem }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn required_text(
    obj: &Map<String, Value>,
    key: &str,
    name: &str,
    location: &RecordLocation,
) -> Result<String, DataError> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(field_error(location, name, FieldProblem::Missing)),
        Some(Value::String(s)) if s.trim().is_empty() => Err(field_error(location, name, FieldProblem::Empty)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(field_error(location, name, FieldProblem::WrongType(type_name(other)))),
    }
}

fn optional_text(
    obj: &Map<String, Value>,
    key: &str,
    name: &str,
    location: &RecordLocation,
) -> Result<String, DataError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(field_error(location, name, FieldProblem::WrongType(type_name(other)))),
    }
}

/// `score` or `metadata.score`: null or an integer 1..=5.
fn score_field(obj: &Map<String, Value>, location: &RecordLocation) -> Result<Option<u8>, DataError> {
    let (value, name) = match (obj.get("score"), obj.get("metadata")) {
        (Some(v), _) => (v, "score"),
        (None, Some(Value::Object(meta))) => match meta.get("score") {
            Some(v) => (v, "metadata.score"),
            None => return Ok(None),
        },
        (None, Some(Value::Null) | None) => return Ok(None),
        (None, Some(other)) => {
            return Err(field_error(location, "metadata", FieldProblem::WrongType(type_name(other))));
        }
    };
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_u64() {
            Some(s @ 1..=5) => Ok(Some(s as u8)),
            _ => Err(field_error(location, name, FieldProblem::Invalid(format!("{n} is not an integer 1..=5")))),
        },
        other => Err(field_error(location, name, FieldProblem::WrongType(type_name(other)))),
    }
}

fn id_field(obj: &Map<String, Value>, location: &RecordLocation) -> Result<Option<String>, DataError> {
    match obj.get("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(field_error(location, "id", FieldProblem::Empty)),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(field_error(location, "id", FieldProblem::WrongType(type_name(other)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let text = b"ab\ncd\nef";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (2, 2));
        assert_eq!(line_column(text, 6), (3, 1));
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let dir = dft_test_support::scratch::ScratchDir::new(format!("dft-data-bom-{}", std::process::id()));
        let json = dir.join("bom.json");
        std::fs::write(&json, "\u{feff}[{\"instruction\": \"a\", \"output\": \"b\"}]").unwrap();
        let jsonl = dir.join("bom.jsonl");
        std::fs::write(&jsonl, "\u{feff}{\"instruction\": \"c\", \"output\": \"d\"}\n").unwrap();
        let corpus = read_alpaca_pair(&json, &json, "vi", Strictness::Strict).unwrap();
        assert_eq!(corpus.examples.len(), 1);
        let corpus = read_jsonl_pair(&jsonl, &jsonl, "vi", PairBy::Line, Strictness::Strict).unwrap();
        assert_eq!(corpus.examples[0].y_tgt, "d");
    }

    #[test]
    fn json_array_elements_know_their_line() {
        let text = "[\n  {\"a\": 1},\n\n  {\"a\":\n 2}\n]";
        let records = parse_json_array(Path::new("x.json"), text).unwrap();
        let lines: Vec<usize> = records.iter().map(|(_, l)| *l).collect();
        assert_eq!(lines, vec![2, 4]);
    }

    #[test]
    fn data_source_reads_from_a_config() {
        let source: DataSource =
            serde_json::from_str(r#"{"format": "jsonl_pair", "en": "a.jsonl", "tgt": "b.jsonl", "target_lang": "vi"}"#)
                .unwrap();
        let expected = DataSource::JsonlPair {
            en: "a.jsonl".into(),
            tgt: "b.jsonl".into(),
            target_lang: "vi".into(),
            pair_by: PairBy::Line,
        };
        assert_eq!(source, expected);
        let source: DataSource = serde_json::from_str(r#"{"format": "alpaca_en_zh_dir", "dir": "d"}"#).unwrap();
        assert_eq!(source, DataSource::AlpacaEnZhDir { dir: "d".into() });
    }

    #[test]
    fn target_lang_must_not_be_english() {
        assert!(check_target_lang("en").is_err());
        assert!(check_target_lang("").is_err());
        assert!(check_target_lang("zh").is_ok());
        assert!(check_target_lang("zh-Hans").is_ok());
    }
}
