//! File reading shared by the loaders: streaming line readers (TSV, JSONL) and JSON readers that
//! keep the line of every array element, so errors can say `file:line`.
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{EvalError, Result};

/// Opens `path` for buffered reading.
pub(crate) fn open(path: &Path) -> Result<BufReader<File>> {
    let f = File::open(path).map_err(|e| EvalError::io(path, e))?;
    Ok(BufReader::with_capacity(1 << 16, f))
}

/// Reads the whole file as UTF-8.
pub(crate) fn read_to_string(path: &Path) -> Result<String> {
    let mut s = String::new();
    open(path)?.read_to_string(&mut s).map_err(|e| EvalError::io(path, e))?;
    Ok(s)
}

/// Calls `f(line_number, line)` for every line (1-based, without the `\n` / `\r\n` ending),
/// streaming, so files of any size work.
pub(crate) fn for_each_line(path: &Path, mut f: impl FnMut(usize, &str) -> Result<()>) -> Result<()> {
    let mut reader = open(path)?;
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| EvalError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        let line = std::str::from_utf8(&buf)
            .map_err(|e| EvalError::malformed(path, line_no, format!("invalid UTF-8: {e}")))?;
        f(line_no, line)?;
    }
}

/// JSON Lines: one value per non-blank line, with its line number.
pub(crate) fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<(usize, T)>> {
    let mut out = Vec::new();
    for_each_line(path, |line_no, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        let v = serde_json::from_str(line).map_err(|e| EvalError::malformed(path, line_no, e.to_string()))?;
        out.push((line_no, v));
        Ok(())
    })?;
    Ok(out)
}

/// A whole JSON document.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| EvalError::malformed(path, e.line(), e.to_string()))
}

/// A top-level JSON array, each element with the line it starts on.
pub(crate) fn read_json_array<T: DeserializeOwned>(path: &Path) -> Result<Vec<(usize, T)>> {
    let text = read_to_string(path)?;
    let bytes = text.as_bytes();
    let mut line = 1;
    let mut counted = 0; // bytes[..counted] have been scanned for newlines
    let mut line_at = |pos: usize| {
        line += bytes[counted..pos].iter().filter(|&&b| b == b'\n').count();
        counted = pos;
        line
    };
    let skip_ws = |mut pos: usize| {
        while pos < bytes.len() && matches!(bytes[pos], b' ' | b'\t' | b'\n' | b'\r') {
            pos += 1;
        }
        pos
    };
    let mut pos = skip_ws(0);
    // A UTF-8 byte-order mark is tolerated.
    if text[pos..].starts_with('\u{feff}') {
        pos = skip_ws(pos + 3);
    }
    if bytes.get(pos) != Some(&b'[') {
        return Err(EvalError::malformed(path, line_at(pos.min(bytes.len())), "expected a JSON array"));
    }
    pos = skip_ws(pos + 1);
    let mut out = Vec::new();
    if bytes.get(pos) == Some(&b']') {
        return Ok(out);
    }
    loop {
        let start_line = line_at(pos);
        let mut stream = serde_json::Deserializer::from_str(&text[pos..]).into_iter::<T>();
        match stream.next() {
            Some(Ok(v)) => out.push((start_line, v)),
            Some(Err(e)) => return Err(EvalError::malformed(path, start_line + e.line().max(1) - 1, e.to_string())),
            None => return Err(EvalError::malformed(path, start_line, "unexpected end of file inside the array")),
        }
        pos = skip_ws(pos + stream.byte_offset());
        match bytes.get(pos) {
            Some(b',') => pos = skip_ws(pos + 1),
            Some(b']') => break,
            _ => {
                return Err(EvalError::malformed(
                    path,
                    line_at(pos.min(bytes.len())),
                    "expected `,` or `]` after an element",
                ))
            }
        }
    }
    let end = skip_ws(pos + 1);
    if end != bytes.len() {
        return Err(EvalError::malformed(path, line_at(end), "trailing characters after the JSON array"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dft_test_support::scratch::ScratchDir;

    #[test]
    fn json_array_elements_carry_their_line() {
        let dir = ScratchDir::new(format!("dft-eval-io-{}", std::process::id()));
        let p = dir.join("a.json");
        std::fs::write(&p, "[\n {\"x\": 1},\n\n {\"x\": 2}\n]\n").unwrap();
        let v: Vec<(usize, serde_json::Value)> = read_json_array(&p).unwrap();
        assert_eq!(v.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [2, 4]);
        std::fs::write(&p, "[\n {\"x\": 1},\n {\"x\": }\n]").unwrap();
        let err = read_json_array::<serde_json::Value>(&p).unwrap_err().to_string();
        assert!(err.contains("a.json:3:"), "{err}");
    }
}
