//! The handbook stays navigable: every relative link in README.md, BENCHMARKS.md and docs/
//! points at a file that exists and, with a `#fragment`, at a heading of that file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pulldown_cmark::{Event, Parser, Tag, TagEnd};

/// GitHub's heading anchor: lower case, spaces to `-`, other punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The anchors of a Markdown file's headings (repeats get `-1`, `-2`, as on GitHub).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut heading: Option<String> = None;
    for event in Parser::new(text) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) if heading.is_some() => {
                heading.as_mut().expect("inside a heading").push_str(&t)
            }
            Event::End(TagEnd::Heading(_)) => {
                let base = slug(&heading.take().unwrap_or_default());
                let n = seen.entry(base.clone()).or_insert(0);
                anchors.insert(if *n == 0 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                });
                *n += 1;
            }
            _ => {}
        }
    }
    anchors
}

/// Every link target of a Markdown text.
fn links(text: &str) -> Vec<String> {
    Parser::new(text)
        .filter_map(|event| match event {
            Event::Start(Tag::Link { dest_url, .. }) => Some(dest_url.to_string()),
            _ => None,
        })
        .collect()
}

fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The broken relative links of `files`, as `file: link (why)`.
fn broken_links(files: &[PathBuf]) -> Vec<String> {
    let mut broken = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let why = if !target.exists() {
                Some("no such file")
            } else if fragment.is_empty() || target.is_dir() {
                None
            } else if target.extension().is_some_and(|e| e == "md") {
                let headings = anchors(&std::fs::read_to_string(&target).unwrap());
                (!headings.contains(fragment)).then_some("no such heading")
            } else {
                None
            };
            if let Some(why) = why {
                broken.push(format!("{}: {link} ({why})", file.display()));
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_resolves() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = markdown_files(root);
    assert!(files.len() >= 10, "{files:?}");
    let broken = broken_links(&files);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_check_catches_a_missing_file_and_a_missing_heading() {
    let dir = std::env::temp_dir().join(format!("pns-docs-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("page.md");
    std::fs::write(
        &page,
        "# The `pnsctl` tool\n## Alarms\n## Alarms\n\
         [a](page.md#the-pnsctl-tool) [b](#alarms-1) [c](https://example.com/x)\n\
         [d](missing.md) [e](page.md#no-such) [f](#alarms-2)\n",
    )
    .unwrap();
    let broken = broken_links(&[page]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(broken.len(), 3, "{broken:?}");
    for link in ["missing.md (no such file)", "page.md#no-such", "#alarms-2"] {
        assert!(
            broken.iter().any(|b| b.contains(link)),
            "{link}: {broken:?}"
        );
    }
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug("HTTP contract"), "http-contract");
    assert_eq!(slug("Rotate the webhook token"), "rotate-the-webhook-token");
    assert_eq!(slug("1. Webhook CPU per push"), "1-webhook-cpu-per-push");
    assert_eq!(slug("`pnsctl` and `pns-sim`"), "pnsctl-and-pns-sim");
}
