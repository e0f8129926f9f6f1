//! Canonical comparison of result files, and a unified-style diff.
//!
//! Plugins may write lines in any order (several workers, hash maps), so
//! files are compared in a canonical form: `.json` files are parsed and
//! pretty-printed with sorted keys; every other file (`.jsonl`, `.txt`,
//! `.csv`, …) is compared as its sorted lines (line ends `\r\n` and `\n`
//! are equal).

/// Most lines of a diff before it is cut.
const MAX_DIFF_LINES: usize = 200;
/// Lines of context around a change.
const CONTEXT: usize = 2;
/// Largest product of line counts diffed line by line (above it, the diff
/// lists the lines missing on each side).
const MAX_LCS_CELLS: usize = 16_000_000;

/// Sorts the keys of every object in `v`.
fn sort_keys(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut entries: Vec<(String, serde_json::Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sort_keys).collect())
        }
        other => other,
    }
}

/// The canonical lines of the file `name` with content `bytes`.
pub fn canonical(name: &str, bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    if name.ends_with(".json")
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
    {
        let pretty = serde_json::to_string_pretty(&sort_keys(v)).unwrap_or_default();
        return pretty.lines().map(str::to_string).collect();
    }
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    lines.sort();
    lines
}

/// A diff of `expected` and `actual`: lines only in `expected` start with
/// `-`, lines only in `actual` with `+`, context lines with a space; hunks
/// start with `@@ -line +line @@`. Empty when they are equal.
pub fn diff(expected: &[String], actual: &[String]) -> String {
    if expected == actual {
        return String::new();
    }
    let ops = if expected.len().saturating_mul(actual.len()) <= MAX_LCS_CELLS {
        lcs_ops(expected, actual)
    } else {
        sorted_ops(expected, actual)
    };
    render(&ops, expected, actual)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same(usize, usize),
    Del(usize),
    Add(usize),
}

/// Edit script from a longest common subsequence table.
fn lcs_ops(a: &[String], b: &[String]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    let w = m + 1;
    // table[i][j] = LCS length of a[i..] and b[j..]
    let mut table = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let v = if a.get(i) == b.get(j) {
                table.get((i + 1) * w + j + 1).copied().unwrap_or(0) + 1
            } else {
                let down = table.get((i + 1) * w + j).copied().unwrap_or(0);
                let right = table.get(i * w + j + 1).copied().unwrap_or(0);
                down.max(right)
            };
            if let Some(c) = table.get_mut(i * w + j) {
                *c = v;
            }
        }
    }
    let at = |i: usize, j: usize| table.get(i * w + j).copied().unwrap_or(0);
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && a.get(i) == b.get(j) {
            ops.push(Op::Same(i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || at(i + 1, j) >= at(i, j + 1)) {
            ops.push(Op::Del(i));
            i += 1;
        } else {
            ops.push(Op::Add(j));
            j += 1;
        }
    }
    ops
}

/// Edit script of two sorted lists (a merge), for large inputs.
fn sorted_ops(a: &[String], b: &[String]) -> Vec<Op> {
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::new();
    loop {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                ops.push(Op::Same(i, j));
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                ops.push(Op::Del(i));
                i += 1;
            }
            (Some(_), Some(_)) | (None, Some(_)) => {
                ops.push(Op::Add(j));
                j += 1;
            }
            (Some(_), None) => {
                ops.push(Op::Del(i));
                i += 1;
            }
            (None, None) => break,
        }
    }
    ops
}

fn render(ops: &[Op], a: &[String], b: &[String]) -> String {
    let text = |v: &[String], i: usize| v.get(i).map_or("", String::as_str).to_string();
    // which ops to show: changes and CONTEXT lines around them
    let mut show = vec![false; ops.len()];
    for (k, op) in ops.iter().enumerate() {
        if !matches!(op, Op::Same(..)) {
            let lo = k.saturating_sub(CONTEXT);
            let hi = (k + CONTEXT + 1).min(ops.len());
            for s in show.iter_mut().take(hi).skip(lo) {
                *s = true;
            }
        }
    }
    let mut out = Vec::new();
    let mut prev_shown = false;
    for (k, op) in ops.iter().enumerate() {
        if !show.get(k).copied().unwrap_or(false) {
            prev_shown = false;
            continue;
        }
        if !prev_shown {
            let (ai, bi) = position(ops, k);
            out.push(format!("@@ -{} +{} @@", ai + 1, bi + 1));
        }
        prev_shown = true;
        out.push(match *op {
            Op::Same(i, _) => format!(" {}", text(a, i)),
            Op::Del(i) => format!("-{}", text(a, i)),
            Op::Add(j) => format!("+{}", text(b, j)),
        });
        if out.len() >= MAX_DIFF_LINES {
            out.push(format!("… (diff cut at {MAX_DIFF_LINES} lines)"));
            break;
        }
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// Line numbers (0-based) in both inputs at op `k`.
fn position(ops: &[Op], k: usize) -> (usize, usize) {
    let (mut a, mut b) = (0, 0);
    for op in ops.iter().take(k) {
        match op {
            Op::Same(..) => {
                a += 1;
                b += 1;
            }
            Op::Del(_) => a += 1,
            Op::Add(_) => b += 1,
        }
    }
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn line_files_compare_in_any_order() {
        assert_eq!(
            canonical("a.jsonl", b"{\"b\":1}\n{\"a\":2}\r\n"),
            canonical("a.jsonl", b"{\"a\":2}\n{\"b\":1}\n")
        );
    }

    #[test]
    fn json_files_compare_by_value() {
        assert_eq!(
            canonical("a.json", b"{\"b\":1,\"a\":[1,2]}"),
            canonical("a.json", b"{ \"a\": [1, 2], \"b\": 1 }\n")
        );
        assert_ne!(
            canonical("a.json", b"{\"a\":[2,1]}"),
            canonical("a.json", b"{\"a\":[1,2]}")
        );
    }

    #[test]
    fn equal_inputs_have_no_diff() {
        assert_eq!(diff(&v(&["a", "b"]), &v(&["a", "b"])), "");
    }

    #[test]
    fn diff_marks_removed_and_added_lines() {
        let d = diff(&v(&["a", "b", "c"]), &v(&["a", "x", "c"]));
        assert_eq!(d, "@@ -1 +1 @@\n a\n-b\n+x\n c\n");
    }

    #[test]
    fn sorted_fallback_gives_the_same_changes() {
        let ops = sorted_ops(&v(&["a", "b", "d"]), &v(&["a", "c", "d"]));
        assert_eq!(
            ops,
            vec![Op::Same(0, 0), Op::Del(1), Op::Add(1), Op::Same(2, 2)]
        );
    }
}
