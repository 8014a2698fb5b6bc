//! `jinad bench` runs end to end and prints its table (figures are for people; nothing is timed here).

use std::process::Command;

#[test]
fn bench_prints_one_row_per_workload() {
    let out = Command::new(crate::common::BIN)
        .args(["bench", "--seconds", "0.2", "--latency-requests", "50", "--connections", "2"])
        .output()
        .expect("run jinad bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| workload")).collect();
    assert_eq!(rows.len(), 7, "{stdout}");
    for row in rows {
        let measured = row.trim_end_matches(" |").rsplit(" | ").next().unwrap_or_default();
        assert!(measured.chars().any(|c| c.is_ascii_digit()) && !measured.contains("n/a"), "no figure in {row}");
    }
}
