//! Chat templates: a model's own Jinja template (GGUF `tokenizer.chat_template`, or `chat_template`
//! in `tokenizer_config.json` / `chat_template.jinja`), rendered with [minijinja] exactly as
//! transformers' `apply_chat_template` renders it with Jinja2.
//!
//! transformers compiles the template in an `ImmutableSandboxedEnvironment(trim_blocks=True,
//! lstrip_blocks=True, extensions=[loopcontrols])` with the globals `raise_exception` and
//! `strftime_now` and its own `tojson` filter (`json.dumps(x, ensure_ascii=False, ...)`), and renders
//! it with `messages`, `add_generation_prompt`, `tools`, `documents` and the tokenizer's special
//! tokens (`bos_token`, `eos_token`, `unk_token`, `pad_token`) as strings. The same environment is
//! built here; Python string methods (`.strip()`, `.startswith()`, `.split()`, ...) come from
//! `minijinja-contrib`'s pycompat layer. With `tokenize=True`, transformers encodes the rendered text
//! **without** adding special tokens (the template writes them), as [`ChatTemplate::encode`] does.
//!
//! Oracle: `tools/oracle/chat_template_fixtures.py` records transformers' strings and ids for SmolLM2
//! and Gemma-3 (`crates/dft-models/tests/chat_template.rs`).

use crate::error::{ModelError, Result};
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error as JinjaError, ErrorKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant` (templates may accept others).
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// The special-token strings a template can refer to (`{{ bos_token }}` etc.).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokenStrings {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub unk_token: Option<String>,
    pub pad_token: Option<String>,
}

/// A compiled chat template plus the special tokens it is rendered with.
pub struct ChatTemplate {
    source: String,
    special: SpecialTokenStrings,
    origin: PathBuf,
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("origin", &self.origin).field("special", &self.special).finish()
    }
}

impl Clone for ChatTemplate {
    fn clone(&self) -> Self {
        Self::new(self.source.clone(), self.special.clone(), &self.origin).expect("compiled before")
    }
}

const NAME: &str = "chat_template";

/// The Jinja environment transformers uses for chat templates (see the module docs).
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()
        .expect("default delimiters");
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> std::result::Result<Value, JinjaError> {
        Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env
}

/// `strftime_now(fmt)`: the current UTC date/time for the common `%d %b %Y`-style codes.
fn strftime_now(fmt: String) -> std::result::Result<String, JinjaError> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out += &format!("{d:02}"),
            Some('m') => out += &format!("{m:02}"),
            Some('Y') => out += &format!("{y}"),
            Some('y') => out += &format!("{:02}", y % 100),
            Some('B') => out += MONTHS[(m - 1) as usize],
            Some('b') => out += &MONTHS[(m - 1) as usize][..3],
            Some('H') => out += &format!("{hh:02}"),
            Some('M') => out += &format!("{mm:02}"),
            Some('S') => out += &format!("{ss:02}"),
            Some('%') => out.push('%'),
            other => {
                return Err(JinjaError::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: unsupported format code %{}", other.map(String::from).unwrap_or_default()),
                ))
            }
        }
    }
    Ok(out)
}

/// Days since 1970-01-01 → (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// transformers' `tojson` filter: `json.dumps(x, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)`; Python's default separators are `", "` and `": "`
/// (`","` after items when indenting).
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<String, JinjaError> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let (item_sep, key_sep) = match separators {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => return Err(JinjaError::new(ErrorKind::InvalidOperation, "tojson: separators must be a pair")),
        None => ((if indent.is_some() { "," } else { ", " }).to_string(), ": ".to_string()),
    };
    let mut out = String::new();
    dump_json(&value, indent, 0, &item_sep, &key_sep, sort_keys.unwrap_or(false), &mut out)?;
    Ok(out)
}

fn dump_json(
    v: &Value,
    indent: Option<usize>,
    level: usize,
    item_sep: &str,
    key_sep: &str,
    sort_keys: bool,
    out: &mut String,
) -> std::result::Result<(), JinjaError> {
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if let Ok(i) = i64::try_from(v.clone()) {
                out.push_str(&i.to_string());
            } else {
                let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
                out.push_str(&if f.is_finite() && f.fract() == 0.0 { format!("{f:.1}") } else { format!("{f}") });
            }
        }
        ValueKind::String => out.push_str(&serde_json::to_string(v.as_str().unwrap_or("")).expect("string")),
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if sort_keys {
                keys.sort_by_key(|k| k.to_string());
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                let key = k.as_str().map(String::from).unwrap_or_else(|| k.to_string());
                out.push_str(&serde_json::to_string(&key).expect("string"));
                out.push_str(key_sep);
                dump_json(&v.get_item(k)?, indent, level + 1, item_sep, key_sep, sort_keys, out)?;
            }
            newline(out, level);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                dump_json(item, indent, level + 1, item_sep, key_sep, sort_keys, out)?;
            }
            newline(out, level);
            out.push(']');
        }
        _ => return Err(JinjaError::new(ErrorKind::InvalidOperation, format!("tojson: cannot serialise {v}"))),
    }
    Ok(())
}

fn message_value(m: &ChatMessage) -> Value {
    let mut map = BTreeMap::new();
    map.insert("role".to_string(), Value::from(m.role.as_str()));
    map.insert("content".to_string(), Value::from(m.content.as_str()));
    Value::from(map)
}

/// Why a template failed, with minijinja's line information when it has one.
fn describe(e: &JinjaError) -> String {
    let mut msg = match e.kind() {
        ErrorKind::InvalidOperation => e.detail().map(String::from).unwrap_or_else(|| e.to_string()),
        _ => e.to_string(),
    };
    if let Some(line) = e.line() {
        msg += &format!(" (template line {line})");
    }
    msg
}

impl ChatTemplate {
    /// Compile `source`; `origin` names where it came from in error messages (the GGUF file or
    /// `tokenizer_config.json`).
    pub fn new(source: impl Into<String>, special: SpecialTokenStrings, origin: &Path) -> Result<Self> {
        let source = source.into();
        let mut env = environment();
        env.add_template_owned(NAME, source.clone()).map_err(|e| ModelError::ChatTemplate {
            path: origin.into(),
            msg: format!("does not compile: {}", describe(&e)),
        })?;
        Ok(Self { source, special, origin: origin.into(), env })
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The special-token strings the template is rendered with.
    pub fn special_tokens(&self) -> &SpecialTokenStrings {
        &self.special
    }

    /// Render a conversation, as `tokenizer.apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)`. A `raise_exception(...)` in the template (e.g. roles that do not
    /// alternate) is an error naming the template's origin.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template(NAME).expect("added in new()");
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        ctx.insert("messages".into(), Value::from(messages.iter().map(message_value).collect::<Vec<_>>()));
        ctx.insert("add_generation_prompt".into(), Value::from(add_generation_prompt));
        ctx.insert("tools".into(), Value::from(()));
        ctx.insert("documents".into(), Value::from(()));
        let s = &self.special;
        for (k, v) in [
            ("bos_token", &s.bos_token),
            ("eos_token", &s.eos_token),
            ("unk_token", &s.unk_token),
            ("pad_token", &s.pad_token),
        ] {
            if let Some(v) = v {
                ctx.insert(k.into(), Value::from(v.as_str()));
            }
        }
        tmpl.render(Value::from(ctx)).map_err(|e| ModelError::ChatTemplate {
            path: self.origin.clone(),
            msg: format!("rendering failed: {}", describe(&e)),
        })
    }

    /// Render and tokenize, as `apply_chat_template(..., tokenize=True)`: the rendered text encoded
    /// without adding special tokens.
    pub fn encode(
        &self,
        tokenizer: &tokenizers::Tokenizer,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        let text = self.render(messages, add_generation_prompt)?;
        let enc = tokenizer
            .encode(text, false)
            .map_err(|e| ModelError::Tokenizer { path: self.origin.clone(), msg: e.to_string() })?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text before and after the content of a single user turn (with an optional system turn
    /// first) when rendered with the generation prompt: `prefix + content + suffix` is exactly what
    /// the template renders for that conversation. Fails if the template changes the content (beyond
    /// what it does to the marker), so callers can rely on the content's byte range.
    pub fn split_user_turn(&self, system: Option<&str>, content: &str) -> Result<(String, String)> {
        const MARK: &str = "\u{E000}dft-rs-content\u{E001}";
        let conv = |c: &str| {
            let mut m = Vec::new();
            if let Some(s) = system {
                m.push(ChatMessage::system(s));
            }
            m.push(ChatMessage::user(c));
            m
        };
        let marked = self.render(&conv(MARK), true)?;
        let bad = |msg: String| ModelError::ChatTemplate { path: self.origin.clone(), msg };
        let (prefix, suffix) = match marked.match_indices(MARK).count() {
            1 => marked.split_once(MARK).expect("one match"),
            n => return Err(bad(format!("the user message appears {n} times in the rendered prompt, expected once"))),
        };
        let real = self.render(&conv(content), true)?;
        if real.len() != prefix.len() + content.len() + suffix.len()
            || !real.starts_with(prefix)
            || !real.ends_with(suffix)
            || &real[prefix.len()..real.len() - suffix.len()] != content
        {
            return Err(bad(format!(
                "the template changes the message text {:?} (e.g. trims it), so its position in the prompt is not known",
                truncate(content, 60)
            )));
        }
        Ok((prefix.to_string(), suffix.to_string()))
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpl(src: &str) -> ChatTemplate {
        let special = SpecialTokenStrings { bos_token: Some("<s>".into()), ..Default::default() };
        ChatTemplate::new(src, special, Path::new("<test>")).unwrap()
    }

    #[test]
    fn trim_and_lstrip_blocks_like_transformers() {
        // Jinja2 with trim_blocks + lstrip_blocks drops the newline after a block tag and the
        // indentation before it.
        let t = tmpl("{{ bos_token }}\n{% for m in messages %}\n    {{ m.role }}:{{ m.content }}\n{% endfor %}\n");
        assert_eq!(
            t.render(&[ChatMessage::user("a"), ChatMessage::assistant("b")], false).unwrap(),
            "<s>\n    user:a\n    assistant:b\n"
        );
    }

    #[test]
    fn raise_exception_is_an_error_naming_the_origin() {
        let t = tmpl("{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}");
        let e = t.render(&[ChatMessage::assistant("x")], false).unwrap_err().to_string();
        assert!(e.contains("<test>") && e.contains("first must be user"), "{e}");
    }

    #[test]
    fn python_string_methods_and_tojson() {
        let t = tmpl("{{ messages[0].content.strip().upper() }}|{{ {'a': [1, 'é<'], 'b': none} | tojson }}");
        assert_eq!(t.render(&[ChatMessage::user("  hi ")], false).unwrap(), r#"HI|{"a": [1, "é<"], "b": null}"#);
    }

    #[test]
    fn split_user_turn_finds_the_content() {
        let t = tmpl("{% for m in messages %}<{{ m.role }}>{{ m.content }}</>{% endfor %}{% if add_generation_prompt %}<a>{% endif %}");
        let (p, s) = t.split_user_turn(Some("sys"), "q").unwrap();
        assert_eq!((p.as_str(), s.as_str()), ("<system>sys</><user>", "</><a>"));
        let trims = tmpl("{% for m in messages %}{{ m.content | trim }}{% endfor %}");
        assert!(trims.split_user_turn(None, " q ").is_err());
    }

    #[test]
    fn strftime_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }
}
