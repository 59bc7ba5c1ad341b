//! docs/alerts.md against the rule registry: the rule count, a table row per rule with its
//! severity, and the MITRE ATT&CK list naming exactly each rule's `attack` techniques.

use std::collections::BTreeMap;
use std::path::PathBuf;

use iamtrail_core::rules::rules;

fn alerts_md() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/alerts.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The lines of the section under `heading`, up to the next heading.
fn section<'t>(text: &'t str, heading: &str) -> Vec<&'t str> {
    text.lines()
        .skip_while(|l| l.trim() != heading)
        .skip(1)
        .take_while(|l| !l.starts_with('#'))
        .collect()
}

/// `T1098.001, T1078.004 (Valid Accounts: Cloud Accounts). Rationale...` → the leading ids.
fn leading_techniques(mut text: &str) -> Vec<String> {
    let mut found = Vec::new();
    loop {
        let id_len = text
            .char_indices()
            .take_while(|(i, c)| (*i == 0 && *c == 'T') || c.is_ascii_digit() || *c == '.')
            .count();
        let id = text[..id_len].trim_end_matches('.');
        if id.len() < 5 || !id.starts_with('T') {
            break;
        }
        found.push(id.to_string());
        text = &text[id.len()..];
        if let Some(rest) = text.strip_prefix(" (") {
            text = rest.split_once(')').map_or("", |(_, after)| after);
        }
        match text.strip_prefix(", ") {
            Some(rest) => text = rest,
            None => break,
        }
    }
    found
}

#[test]
fn the_rule_count_and_a_table_row_per_rule() {
    let text = alerts_md();
    let n = rules().len();
    assert!(
        text.contains(&format!("checks every event it collects against {n} rules")),
        "the introduction counts {n} rules"
    );
    assert!(text.contains(&format!("Conventions shared by all {n} rules:")));
    assert!(text.contains(&format!("one of the {n} rule ids above")));
    for r in rules() {
        let prefix = format!("| `{}` | {}", r.id, r.severity.as_str());
        let rows = text.lines().filter(|l| l.starts_with(&prefix)).count();
        assert_eq!(rows, 1, "one table row starting {prefix:?}");
        let seed = r.seed_check.map_or("new".to_string(), |c| format!("`{c}`"));
        let row = text.lines().find(|l| l.starts_with(&prefix)).unwrap();
        assert!(
            row.contains(&format!("| {seed} |")),
            "{}: seed column",
            r.id
        );
    }
}

#[test]
fn the_attack_list_names_each_rules_techniques() {
    let text = alerts_md();
    // Bullets, their continuation lines joined.
    let mut bullets: Vec<String> = Vec::new();
    for line in section(&text, "### MITRE ATT&CK techniques") {
        if let Some(b) = line.strip_prefix("- ") {
            bullets.push(b.to_string());
        } else if line.starts_with("  ") && !bullets.is_empty() {
            let last = bullets.last_mut().unwrap();
            last.push(' ');
            last.push_str(line.trim());
        }
    }
    let mut documented: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for b in &bullets {
        let (ids, rest) = b.split_once("`: ").expect("- `id`: T...");
        for id in ids.split(", ") {
            let id = id.trim_matches('`').to_string();
            assert!(
                documented
                    .insert(id.clone(), leading_techniques(rest))
                    .is_none(),
                "{id} listed twice"
            );
        }
    }
    for r in rules() {
        let want: Vec<String> = r.attack.iter().map(|t| t.to_string()).collect();
        assert_eq!(documented.remove(r.id), Some(want), "{}", r.id);
    }
    assert!(documented.is_empty(), "unknown rules: {documented:?}");
    assert_eq!(
        leading_techniques("T1098.001, T1484 (A: B). Then T1550.001."),
        ["T1098.001", "T1484"]
    );
}
