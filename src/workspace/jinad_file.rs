//! The `.jinad` file: INI without a section header, as in JinaD.
//!
//! ```ini
//! python = 3.11          # Python version of the base image (default 3.11)
//! dockerfile = default   # or a path to the project's own Dockerfile, relative to the workspace
//! ports = 45678, 45679   # ports a custom `run` container publishes
//! run = "python app.py"  # command of the workspace's custom container
//! ```
//! Unknown keys and bad values are errors that name the line; `build` and `jina` (JinaD 2.x keys that
//! JinaD itself ignored) are accepted with a warning.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const FILE_NAME: &str = ".jinad";
pub const DEFAULT_PYTHON: &str = "3.11";

/// The parsed settings of a workspace, as stored on the row and shown by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JinadSettings {
    /// Python version, `{python}` in the base image template.
    pub python: String,
    /// `default` (the rendered template) or the path of the project's Dockerfile.
    pub dockerfile: String,
    /// Ports the custom container publishes.
    pub ports: Vec<u16>,
    /// Command of the custom container, if any.
    pub run: Option<String>,
    /// Accepted but ignored settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Default for JinadSettings {
    fn default() -> Self {
        JinadSettings {
            python: DEFAULT_PYTHON.into(),
            dockerfile: "default".into(),
            ports: Vec::new(),
            run: None,
            warnings: Vec::new(),
        }
    }
}

impl JinadSettings {
    pub fn custom_dockerfile(&self) -> Option<&str> {
        (self.dockerfile != "default").then_some(self.dockerfile.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(".jinad line {line}: {message}")]
pub struct JinadError {
    pub line: usize,
    pub message: String,
}

pub fn parse(text: &str) -> Result<JinadSettings, JinadError> {
    let mut settings = JinadSettings::default();
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut entries: Vec<(String, String, usize)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let err = |message: String| JinadError { line, message };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if raw.starts_with(char::is_whitespace) {
            // ConfigParser continuation line: part of the previous value.
            match entries.last_mut() {
                Some((_, value, _)) => {
                    value.push('\n');
                    value.push_str(trimmed);
                    continue;
                }
                None => return Err(err(format!("unexpected indented line `{trimmed}`"))),
            }
        }
        if trimmed.eq_ignore_ascii_case("[default]") {
            continue;
        }
        if trimmed.starts_with('[') {
            return Err(err(format!("sections are not supported (`{trimmed}`); write `key = value` lines")));
        }
        let Some(split) = trimmed.find(['=', ':']) else {
            return Err(err(format!("expected `key = value`, found `{trimmed}`")));
        };
        let key = trimmed[..split].trim().to_ascii_lowercase();
        let value = trimmed[split + 1..].trim().to_string();
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            return Err(err(format!("`{key}` is set twice (first on line {first})")));
        }
        seen.push((key.clone(), line));
        entries.push((key, value, line));
    }
    for (key, value, line) in entries {
        let err = |message: String| JinadError { line, message };
        match key.as_str() {
            "python" => {
                let ok = value.split('.').count() == 2
                    && value.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
                if !ok || !value.starts_with('3') {
                    return Err(err(format!("`python = {value}`: expected a version like `3.11`")));
                }
                settings.python = value;
            }
            "dockerfile" => {
                if value.is_empty() {
                    return Err(err("`dockerfile` is empty: use `default` or a path in the workspace".into()));
                }
                settings.dockerfile = value;
            }
            "ports" => {
                settings.ports = value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| match p.parse::<u16>() {
                        Ok(port) if port > 0 => Ok(port),
                        _ => Err(err(format!("`ports`: `{p}` is not a port number (1-65535)"))),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "run" => {
                let unquoted = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(&value)
                    .trim()
                    .to_string();
                settings.run = (!unquoted.is_empty()).then_some(unquoted);
            }
            "build" | "jina" => settings
                .warnings
                .push(format!("line {line}: `{key}` is a JinaD 2.x setting with no effect; ignored")),
            other => {
                return Err(err(format!(
                    "unknown setting `{other}` (known: python, dockerfile, ports, run)"
                )))
            }
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_jinad_examples() {
        let s = parse("build = default\npython = 3.9\nports = 45678\nrun = \"python app.py 45678\"\n").unwrap();
        assert_eq!(s.python, "3.9");
        assert_eq!(s.ports, vec![45678]);
        assert_eq!(s.run.as_deref(), Some("python app.py 45678"));
        assert_eq!(s.warnings.len(), 1);
        assert_eq!(parse("").unwrap(), JinadSettings::default());
        assert_eq!(parse("dockerfile: docker/Dockerfile").unwrap().custom_dockerfile(), Some("docker/Dockerfile"));
    }

    #[test]
    fn rejects_bad_input_with_line() {
        assert_eq!(parse("# c\npyhton = 3.9").unwrap_err().line, 2);
        assert!(parse("python = three").is_err());
        assert!(parse("ports = 1, 70000").unwrap_err().message.contains("70000"));
        assert!(parse("python = 3.9\npython = 3.10").unwrap_err().message.contains("twice"));
        assert!(parse("[section]\npython=3.9").is_err());
        assert!(parse("justtext").is_err());
    }
}
