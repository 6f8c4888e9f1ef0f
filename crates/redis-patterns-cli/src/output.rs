//! What the commands print: a readable table, or one JSON document with `--json`.

use redis_core::{
    audit::{Audit, Purge},
    doctor::{Report, Severity},
};
use serde_json::json;

/// Prints `value` as one JSON document.
fn print_json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("redis-patterns: cannot write JSON: {e}"),
    }
}

/// The doctor's report.
pub(crate) fn doctor(report: &Report, patterns: &[&str], as_json: bool) {
    if as_json {
        print_json(&json!({
            "patterns": patterns,
            "healthy": !report.has_errors(),
            "nodes": report.nodes,
            "findings": report.findings,
        }));
        return;
    }
    let nodes: Vec<String> = report
        .nodes
        .iter()
        .map(|n| {
            format!(
                "{} (Redis {}, {}{})",
                n.node,
                n.version.as_deref().unwrap_or("?"),
                n.role.as_deref().unwrap_or("?"),
                if n.cluster { ", cluster" } else { "" }
            )
        })
        .collect();
    println!("checked {} for: {}", nodes.join(", "), patterns.join(", "));
    if report.findings.is_empty() {
        println!("no findings: the server can keep every promise checked");
        return;
    }
    let width = |f: fn(&redis_core::doctor::Finding) -> usize| {
        report.findings.iter().map(f).max().unwrap_or(0)
    };
    let (wp, wn, wc) = (
        width(|f| f.pattern.len()).max(7),
        width(|f| f.node.len()).max(4),
        width(|f| f.check.len()).max(5),
    );
    println!();
    println!(
        "{:<8} {:<wp$} {:<wn$} {:<wc$} PROBLEM",
        "SEVERITY", "PATTERN", "NODE", "CHECK"
    );
    for f in &report.findings {
        println!(
            "{:<8} {:<wp$} {:<wn$} {:<wc$} {}",
            f.severity.as_str(),
            f.pattern,
            f.node,
            f.check,
            f.problem
        );
        println!("{:<8} fix: {}", "", f.fix);
        println!("{:<8} why: {}", "", f.why);
    }
    let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
    println!(
        "\n{} error(s), {} warning(s), {} info",
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    );
}

/// The audit's report.
pub(crate) fn audit(report: &Audit, as_json: bool) {
    if as_json {
        print_json(&json!({
            "healthy": report.without_ttl_count == 0,
            "audit": report,
        }));
        return;
    }
    println!(
        "{} keys under {}: on {}",
        report.keys,
        report.prefix,
        report.nodes.join(", ")
    );
    for (pattern, count) in &report.per_pattern {
        println!("  {pattern:<12} {count}");
    }
    println!("\nTTL distribution:");
    for bucket in &report.ttl {
        println!("  {:<6} {}", bucket.label, bucket.keys);
    }
    println!(
        "\nkeys without TTL: {} ({} more documented as such: fencing counters, streams)",
        report.without_ttl_count, report.documented_without_ttl
    );
    for key in &report.without_ttl {
        println!("  {key}");
    }
    println!(
        "\nlargest keys ({} measured, {} big):",
        report.measured, report.big_keys
    );
    for key in &report.largest {
        println!("  {:>10} B  {}  ({})", key.bytes, key.key, key.node);
    }
    if !report.slow_scripts.is_empty() {
        println!("\nour scripts in SLOWLOG:");
        for entry in &report.slow_scripts {
            println!(
                "  {:>8} µs  {}  ({}, at {})",
                entry.micros, entry.script, entry.node, entry.at
            );
        }
    }
}

/// Purge's report.
pub(crate) fn purge(report: &Purge, removed: bool, as_json: bool) {
    if as_json {
        print_json(&json!({
            "dry_run": !removed,
            "purge": report,
        }));
        return;
    }
    if removed {
        println!(
            "removed {} of {} keys under {} (on {})",
            report.removed,
            report.matched,
            report.prefix,
            report.nodes.join(", ")
        );
    } else {
        println!(
            "dry run: {} keys under {} would be removed (on {}); pass --yes to remove them",
            report.matched,
            report.prefix,
            report.nodes.join(", ")
        );
    }
}
