//! Human output: aligned tables, the snapshot tree, sizes; and the JSON
//! forms of the typed D-Bus values for `--json`.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};
use seuss_dbus_api::{FunctionEntry, SnapshotEntry};
use zbus::zvariant::{OwnedValue, Value as ZValue};

/// A left-aligned table with a header row; columns separated by two spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A byte count for humans (binary units).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// A runtime key for humans: seussd's keys look like
/// `python:/usr/bin/python3.11@<inode...>/kernel:<release>/launcher:<hash>`;
/// the interpreter's file name says enough (`python3.11`).
pub fn short_runtime(key: &str) -> &str {
    let head = key.split('@').next().unwrap_or(key);
    head.rsplit('/').next().unwrap_or(head)
}

/// The one-line label of a snapshot in the tree.
fn snapshot_label(s: &SnapshotEntry) -> String {
    let what = if s.function.is_empty() {
        format!("runtime {}", short_runtime(&s.runtime))
    } else {
        format!("function {}", s.function)
    };
    let threads = if s.threads > 1 { format!(", {} threads", s.threads) } else { String::new() };
    format!("#{} {what}, {} private pages{threads}", s.id, s.private_pages)
}

/// The snapshots drawn as a forest: each root (no parent, or a parent not in
/// the list) with its descendants below it, in id order.
pub fn snapshot_tree(snaps: &[SnapshotEntry]) -> String {
    if snaps.is_empty() {
        return "no snapshots\n".to_owned();
    }
    let ids: std::collections::HashSet<u64> = snaps.iter().map(|s| s.id).collect();
    let mut children: BTreeMap<u64, Vec<&SnapshotEntry>> = BTreeMap::new();
    let mut roots = Vec::new();
    for s in snaps {
        if s.parent != 0 && s.parent != s.id && ids.contains(&s.parent) {
            children.entry(s.parent).or_default().push(s);
        } else {
            roots.push(s);
        }
    }
    roots.sort_by_key(|s| s.id);
    children.values_mut().for_each(|v| v.sort_by_key(|s| s.id));

    fn walk(
        s: &SnapshotEntry,
        prefix: &str,
        children: &BTreeMap<u64, Vec<&SnapshotEntry>>,
        out: &mut String,
        depth: usize,
    ) {
        let kids = children.get(&s.id).map(Vec::as_slice).unwrap_or(&[]);
        for (i, c) in kids.iter().enumerate() {
            let last = i + 1 == kids.len();
            out.push_str(&format!(
                "{prefix}{}{}\n",
                if last { "└── " } else { "├── " },
                snapshot_label(c)
            ));
            // Depth bound: a cycle in the data must not hang the CLI.
            if depth < 64 {
                let next = format!("{prefix}{}", if last { "    " } else { "│   " });
                walk(c, &next, children, out, depth + 1);
            }
        }
    }
    let mut out = String::new();
    for r in roots {
        out.push_str(&snapshot_label(r));
        out.push('\n');
        walk(r, "", &children, &mut out, 0);
    }
    out
}

/// The snapshots as a table.
pub fn snapshot_table(snaps: &[SnapshotEntry]) -> String {
    if snaps.is_empty() {
        return "no snapshots\n".to_owned();
    }
    let rows: Vec<Vec<String>> = snaps
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                if s.parent == 0 {
                    "-".into()
                } else {
                    s.parent.to_string()
                },
                if s.function.is_empty() {
                    "-".into()
                } else {
                    s.function.clone()
                },
                short_runtime(&s.runtime).to_owned(),
                s.private_pages.to_string(),
                s.threads.to_string(),
                s.created_ms.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "PARENT",
            "FUNCTION",
            "RUNTIME",
            "PRIVATE PAGES",
            "THREADS",
            "CREATED (ms)",
        ],
        &rows,
    )
}

/// A snapshot as JSON (`parent`/`function` null when none).
pub fn snapshot_json(s: &SnapshotEntry) -> Value {
    json!({
        "id": s.id,
        "parent": if s.parent == 0 { Value::Null } else { s.parent.into() },
        "function": if s.function.is_empty() { Value::Null } else { s.function.clone().into() },
        "runtime": s.runtime,
        "private_pages": s.private_pages,
        "created_ms": s.created_ms,
        "threads": s.threads,
    })
}

/// The functions as a table.
pub fn function_table(fns: &[FunctionEntry]) -> String {
    if fns.is_empty() {
        return "no functions\n".to_owned();
    }
    let rows: Vec<Vec<String>> = fns
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.kind.clone(),
                if f.memory_mb == 0 {
                    "-".into()
                } else {
                    format!("{} MiB", f.memory_mb)
                },
                if f.timeout_ms == 0 {
                    "-".into()
                } else {
                    format!("{} ms", f.timeout_ms)
                },
            ]
        })
        .collect();
    table(&["NAME", "KIND", "MEMORY", "TIMEOUT"], &rows)
}

/// A D-Bus value as JSON.
pub fn zvalue_json(v: &ZValue<'_>) -> Value {
    match v {
        ZValue::U8(n) => json!(n),
        ZValue::Bool(b) => json!(b),
        ZValue::I16(n) => json!(n),
        ZValue::U16(n) => json!(n),
        ZValue::I32(n) => json!(n),
        ZValue::U32(n) => json!(n),
        ZValue::I64(n) => json!(n),
        ZValue::U64(n) => json!(n),
        ZValue::F64(n) => json!(n),
        ZValue::Str(s) => json!(s.as_str()),
        ZValue::Value(inner) => zvalue_json(inner),
        other => json!(other.to_string()),
    }
}

/// An `a{sv}` dictionary as a JSON object with sorted keys.
pub fn dict_json(d: &HashMap<String, OwnedValue>) -> Value {
    let sorted: BTreeMap<&String, Value> = d.iter().map(|(k, v)| (k, zvalue_json(v))).collect();
    json!(sorted)
}

/// A JSON value for a table cell: strings without quotes.
pub fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The `startPath` annotation of an OpenWhisk activation record.
pub fn start_path(activation: &Value) -> Option<&str> {
    activation
        .get("annotations")?
        .as_array()?
        .iter()
        .find(|a| a.get("key").and_then(Value::as_str) == Some("startPath"))?
        .get("value")?
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: u64, parent: u64, function: &str) -> SnapshotEntry {
        SnapshotEntry {
            id,
            parent,
            private_pages: id * 10,
            function: function.into(),
            runtime: "python:/usr/bin/python3.11@2049:77:10:1/kernel:6.12.9/launcher:00ab".into(),
            created_ms: 0,
            threads: if function == "c" { 3 } else { 1 },
        }
    }

    #[test]
    fn tree_draws_children_under_parents() {
        let snaps = [
            snap(4, 2, "c"),
            snap(1, 0, ""),
            snap(2, 1, "a"),
            snap(3, 1, "b"),
            snap(9, 77, "orphan"),
        ];
        let expected = "\
#1 runtime python3.11, 10 private pages
├── #2 function a, 20 private pages
│   └── #4 function c, 40 private pages, 3 threads
└── #3 function b, 30 private pages
#9 function orphan, 90 private pages
";
        assert_eq!(snapshot_tree(&snaps), expected);
        assert_eq!(snapshot_tree(&[]), "no snapshots\n");
    }

    #[test]
    fn runtime_keys_are_shortened() {
        assert_eq!(
            short_runtime("python:/usr/bin/python3.11@2049:77:10:1/kernel:6.12.9/launcher:00ab"),
            "python3.11"
        );
        assert_eq!(short_runtime("python:3"), "python:3");
        let t = snapshot_table(&[snap(1, 0, "")]);
        assert!(
            t.lines()
                .nth(1)
                .unwrap()
                .starts_with("1   -       -         python3.11"),
            "{t}"
        );
    }

    #[test]
    fn tree_survives_a_cycle() {
        // 1 -> 2 -> 1: neither is a root, so nothing hangs and nothing is printed twice forever.
        let out = snapshot_tree(&[snap(1, 2, "x"), snap(2, 1, "y"), snap(3, 0, "")]);
        assert!(out.starts_with("#3 runtime"), "{out}");
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["A", "LONGER"],
            &[
                vec!["wide cell".into(), "x".into()],
                vec!["b".into(), "y".into()],
            ],
        );
        assert_eq!(t, "A          LONGER\nwide cell  x\nb          y\n");
    }

    #[test]
    fn sizes_and_paths() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        let act = json!({"annotations":[{"key":"kind","value":"python:3"},{"key":"startPath","value":"cold"}]});
        assert_eq!(start_path(&act), Some("cold"));
        assert_eq!(start_path(&json!({})), None);
        assert_eq!(snapshot_json(&snap(1, 0, ""))["parent"], Value::Null);
        assert_eq!(snapshot_json(&snap(4, 2, "c"))["threads"], 3);
    }
}
