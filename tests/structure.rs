//! The shape of the code: modules import only downward through the layers and form no cycle.
//! `cargo test --test structure -- --nocapture` also prints the largest functions and impl
//! blocks, the figures docs/architecture.md keeps in check.
//!
//! Reads the source as text (no dependency on the crate), so the same file also runs on any
//! checkout: `rustc --edition 2024 --test tests/structure.rs -o structure && ./structure --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may import from its own layer or any below it, never above.
const LAYERS: &[&[&str]] = &[
    &["text"],
    &["api"],
    &["engine"],
    // Pure analysis: conditions, verdict rules, runs, the judge.
    &["analysis"],
    &["ports"],
    &["pass"],
    &["aws", "egress"],
    // Adapters and drivers of the pass, and the pure tools beside them.
    &["platform", "traffic", "analysis::providers", "notify", "simulate", "import", "preflight"],
    &["controller", "plugin"],
    &["cli", "logging"],
];

fn root() -> PathBuf {
    std::env::var("CARGO_MANIFEST_DIR").map_or_else(|_| PathBuf::from("."), PathBuf::from)
}

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The module a file belongs to, as the layers name it (`analysis::providers` is its own).
fn module_of(relative: &str) -> Option<String> {
    let parts: Vec<&str> = relative.trim_end_matches(".rs").split('/').collect();
    match parts.as_slice() {
        ["lib"] | ["bin", ..] => None,
        ["analysis", "providers", ..] => Some("analysis::providers".into()),
        [top, ..] => Some(top.to_string()),
        [] => None,
    }
}

fn module_named(path: &str) -> String {
    if path.starts_with("analysis::providers") { "analysis::providers".into() } else { path.split("::").next().unwrap_or(path).into() }
}

fn layer(module: &str) -> usize {
    LAYERS.iter().position(|layer| layer.contains(&module)).unwrap_or_else(|| panic!("module {module} is in no layer: add it to LAYERS"))
}

/// Code without comments and without the unit tests at the end of a file.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or(text);
    text.lines().map(|line| line.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Which modules each module names through `crate::`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src").to_string_lossy().replace('\\', "/");
        let Some(module) = module_of(&relative) else { continue };
        let text = code(&std::fs::read_to_string(&file).expect("readable source"));
        let entry = graph.entry(module.clone()).or_default();
        for (at, _) in text.match_indices("crate::") {
            let path: String = text[at + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let named = module_named(&path);
            if named != module && !named.is_empty() {
                entry.insert(named);
            }
        }
    }
    graph
}

#[test]
fn modules_import_only_downward() {
    let upward: Vec<String> = imports()
        .iter()
        .flat_map(|(module, named)| named.iter().filter(|n| layer(n) > layer(module)).map(move |n| format!("{module} imports {n}")))
        .collect();
    assert!(upward.is_empty(), "imports from a layer above:\n{}", upward.join("\n"));
}

#[test]
fn modules_form_no_cycle() {
    let graph = imports();
    // Depth-first: a module met again while still on the path closes a cycle.
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<String> {
        if let Some(start) = path.iter().position(|m| m == module) {
            return Some(format!("{} -> {module}", path[start..].join(" -> ")));
        }
        if !done.insert(module.to_string()) {
            return None;
        }
        path.push(module.to_string());
        let cycle = graph.get(module).into_iter().flatten().find_map(|next| visit(next, graph, path, done));
        path.pop();
        cycle
    }
    let mut done = BTreeSet::new();
    let cycle = graph.keys().find_map(|module| visit(module, &graph, &mut Vec::new(), &mut done));
    assert_eq!(cycle, None, "modules that import each other");
}

/// Blocks that start at `line` (a `fn` or an `impl`, its signature on one line or over several)
/// and end at the closing brace of the same indentation: rustfmt's layout.
fn blocks(text: &str, starts: impl Fn(&str) -> bool) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if !starts(trimmed) || line.trim_end().ends_with(';') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        // A signature over several lines opens its body on the line that closes it, as indented.
        let opens = |l: &&str| l.trim_end().ends_with('{') && l.len() - l.trim_start().len() == indent;
        let Some(body) = lines[i..].iter().position(opens) else { continue };
        let close = format!("{}}}", " ".repeat(indent));
        if let Some(end) = lines[i + body + 1..].iter().position(|l| l.trim_end() == close) {
            found.push((body + end + 2, trimmed.trim_end_matches('{').trim().to_string()));
        }
    }
    found
}

#[test]
fn report_the_largest_functions_and_impl_blocks() {
    let src = root().join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let (mut functions, mut impls) = (Vec::new(), Vec::new());
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src").display().to_string();
        let text = std::fs::read_to_string(file).expect("readable source");
        let text = text.split("#[cfg(test)]").next().unwrap_or(&text);
        let is_fn = |l: &str| {
            let l = l.trim_start_matches("pub ").trim_start_matches("pub(crate) ").trim_start_matches("pub(super) ");
            l.starts_with("fn ") || l.starts_with("async fn ")
        };
        for (lines, name) in blocks(text, is_fn) {
            let signature = name.split_once("fn ").map_or(name.as_str(), |(_, rest)| rest);
            functions.push((lines, format!("{relative}: fn {}", signature.split(['(', '<']).next().unwrap_or(signature))));
        }
        for (lines, name) in blocks(text, |l| l.starts_with("impl")) {
            let body: Vec<&str> = text.lines().skip_while(|l| !l.trim_start().starts_with(name.as_str())).take(lines).collect();
            let methods = body.iter().filter(|l| is_fn(l.trim_start())).count();
            impls.push((lines, format!("{relative}: {name} ({methods} fns)")));
        }
    }
    functions.sort_by_key(|f| std::cmp::Reverse(f.0));
    impls.sort_by_key(|i| std::cmp::Reverse(i.0));
    println!("largest functions (lines):");
    for (lines, name) in functions.iter().take(8) {
        println!("  {lines:>5}  {name}");
    }
    println!("largest impl blocks (lines):");
    for (lines, name) in impls.iter().take(8) {
        println!("  {lines:>5}  {name}");
    }
    assert!(!functions.is_empty() && !impls.is_empty(), "the source has functions and impl blocks");
}
