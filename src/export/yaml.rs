//! YAML that reads the same under YAML 1.1 and 1.2.
//!
//! The tools that read exported manifests disagree on YAML's version: `docker-compose` (PyYAML),
//! `docker stack deploy` and `kubectl` (go-yaml v2) read YAML 1.1, where a plain `no`, `on`, `y`
//! or `off` is a boolean; `yaml_serde` writes YAML 1.2 and leaves such strings unquoted (a pod
//! named `no`, an environment value `on`, `restart: no` would all change type). So manifests are
//! built with `yaml_serde`'s typed model (which keeps the order fields were written in) and
//! written here with every string double-quoted (JSON's escaping is valid YAML), multi-line
//! strings as literal blocks, and keys plain only when no YAML version reads them otherwise.

use yaml_serde::Value;

use super::ExportError;

/// `value` (a mapping) as a YAML document.
pub fn to_string<T: serde::Serialize>(value: &T) -> Result<String, ExportError> {
    to_string_with(value, &|s| s.to_string())
}

/// [`to_string`] with every string value passed through `escape` first (Compose reads `$` as
/// the start of a variable everywhere: `$$` is a `$`).
pub fn to_string_with<T: serde::Serialize>(value: &T, escape: &dyn Fn(&str) -> String) -> Result<String, ExportError> {
    let mut value = yaml_serde::to_value(value).map_err(|e| ExportError(format!("cannot write YAML: {e}")))?;
    map_strings(&mut value, escape);
    let Value::Mapping(_) = &value else { return Err(ExportError("a manifest must be a mapping".into())) };
    let mut out = String::new();
    block(&mut out, &value, 0);
    Ok(out)
}

fn map_strings(v: &mut Value, f: &dyn Fn(&str) -> String) {
    match v {
        Value::String(s) => *s = f(s),
        Value::Sequence(items) => items.iter_mut().for_each(|i| map_strings(i, f)),
        Value::Mapping(m) => m.values_mut().for_each(|i| map_strings(i, f)),
        Value::Tagged(t) => map_strings(&mut t.value, f),
        _ => {}
    }
}

/// Words some YAML version reads as something other than a string.
fn ambiguous(s: &str) -> bool {
    const WORDS: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"];
    WORDS.iter().any(|w| s.eq_ignore_ascii_case(w)) || s.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '-' || c == '+')
}

fn key(k: &Value) -> String {
    match k {
        Value::String(s) if !s.is_empty() && !ambiguous(s) && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c)) => s.clone(),
        Value::String(s) => quoted(s),
        other => scalar(other),
    }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quoted(s),
        Value::Sequence(s) if s.is_empty() => "[]".into(),
        Value::Mapping(m) if m.is_empty() => "{}".into(),
        Value::Tagged(t) => scalar(&t.value),
        _ => String::new(),
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Sequence(s) => !s.is_empty(),
        Value::Mapping(m) => !m.is_empty(),
        Value::Tagged(t) => is_block(&t.value),
        _ => false,
    }
}

/// A multi-line string that a literal block (`|`) carries exactly: one final newline, no `\r`,
/// tabs or trailing spaces, no leading space on its first line.
fn literal(v: &Value) -> Option<&str> {
    let Value::String(s) = v else { return None };
    let body = s.strip_suffix('\n')?;
    let fits = body.contains('\n')
        && !body.ends_with('\n')
        && !s.contains(['\r', '\t'])
        && !body.starts_with(' ')
        && body.lines().all(|l| !l.ends_with(' ') && !l.is_empty());
    fits.then_some(body)
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Writes a mapping or a sequence with its lines at `indent`.
fn block(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Mapping(m) => {
            for (k, value) in m {
                pad(out, indent);
                out.push_str(&key(k));
                out.push(':');
                if let Some(text) = literal(value) {
                    out.push_str(" |\n");
                    for line in text.lines() {
                        pad(out, indent + 2);
                        out.push_str(line);
                        out.push('\n');
                    }
                } else if is_block(value) {
                    out.push('\n');
                    let nested = if matches!(value, Value::Sequence(_)) { indent } else { indent + 2 };
                    block(out, value, nested);
                } else {
                    out.push(' ');
                    out.push_str(&scalar(value));
                    out.push('\n');
                }
            }
        }
        Value::Sequence(items) => {
            for item in items {
                if is_block(item) && matches!(item, Value::Mapping(_)) {
                    // `- ` then the mapping's first key on the same line, the others below it.
                    let mut nested = String::new();
                    block(&mut nested, item, indent + 2);
                    pad(out, indent);
                    out.push_str("- ");
                    out.push_str(&nested[indent + 2..]);
                } else if is_block(item) {
                    pad(out, indent);
                    out.push_str("-\n");
                    block(out, item, indent + 2);
                } else {
                    pad(out, indent);
                    out.push_str("- ");
                    out.push_str(&scalar(item));
                    out.push('\n');
                }
            }
        }
        Value::Tagged(t) => block(out, &t.value, indent),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn strings_keep_their_type_under_yaml_1_1_and_the_text_reads_back() {
        let value = json!({
            "restart": "no", "env": [{"name": "DEBUG", "value": "on"}], "port": "8080", "n": 3, "ok": true,
            "flow": "jtype: Flow\nexecutors:\n  - name: a\n", "odd": "a: b #c", "empty": {}, "list": [],
            "nested": [["x"]], "yes": "y", "weird key": "x\ty"
        });
        let text = super::to_string(&value).unwrap();
        assert!(text.contains("restart: \"no\"") && text.contains("value: \"on\"") && text.contains("\"yes\": \"y\""), "{text}");
        assert!(text.contains("flow: |\n  jtype: Flow\n  executors:\n    - name: a\n"), "{text}");
        let back: serde_json::Value = yaml_serde::from_str(&text).unwrap();
        assert_eq!(back, value);
    }
}
