//! What the CLI prints: tables for people, `--json` for scripts.

use serde::Serialize;

use crate::api::deployments::DeploymentView;
use crate::api::events::EventView;
use crate::api::workspaces::WorkspaceView;

/// Columns padded to their widest cell, the last one left ragged.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

pub fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}

fn or_dash(value: Option<&str>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or("-").to_string()
}

fn reason(code: Option<&str>, message: Option<&str>) -> String {
    match (code, message) {
        (Some(code), Some(message)) => format!("{code}: {}", message.lines().next().unwrap_or("")),
        (Some(code), None) => code.to_string(),
        _ => "-".into(),
    }
}

pub fn workspaces(rows: &[WorkspaceView]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|w| {
            vec![
                w.id.clone(),
                w.state.to_string(),
                w.files.len().to_string(),
                or_dash(w.image_tag.as_deref()),
                w.created_at.clone(),
                reason(w.error_code.as_deref(), w.error_message.as_deref()),
            ]
        })
        .collect();
    table(&["ID", "STATE", "FILES", "IMAGE", "CREATED", "REASON"], &rows)
}

pub fn deployments(rows: &[DeploymentView]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|d| {
            let address = d.gateway_url.clone().or_else(|| d.ports.as_ref().and_then(|p| p.get("in")).and_then(|v| v.as_str()).map(str::to_string));
            vec![
                d.id.clone(),
                d.state.to_string(),
                d.workspace_id.clone(),
                d.containers.len().to_string(),
                or_dash(address.as_deref()),
                reason(d.error_code.as_deref(), d.error_message.as_deref()),
            ]
        })
        .collect();
    table(&["ID", "STATE", "WORKSPACE", "CONTAINERS", "ADDRESS", "REASON"], &rows)
}

/// One event as a line: `seq  time  object  FROM → TO  reason`.
pub fn event_line(e: &EventView) -> String {
    let state = |s: Option<crate::state::State>, none: &str| s.map_or(none.to_string(), |s| s.to_string());
    let mut line = format!("{:>8}  {}  {:<48} {} → {}", e.seq, e.at, e.object_id, state(e.from, "(new)"), state(e.to, "(removed)"));
    if let Some(code) = &e.reason {
        line.push_str(&format!("  {code}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn columns_are_aligned() {
        let out = table(&["ID", "STATE"], &[vec!["a-long-id".into(), "ACTIVE".into()], vec!["b".into(), "FAILED".into()]]);
        assert_eq!(out, "ID          STATE\na-long-id   ACTIVE\nb           FAILED\n");
    }
}
