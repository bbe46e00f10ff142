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

/// Commands a fresh machine has once it has what the README lists (rustup, Python 3, make,
/// curl, a C compiler), the shell's own, and what the project installs: `.venv` tools by
/// path, and `pnsctl` once `cargo install --locked --path pnsctl` (in the docs) ran.
const AVAILABLE: &[&str] = &[
    "make",
    "cargo",
    "rustup",
    "curl",
    "python3",
    "cc", // the README's list
    "export",
    "cd",
    "echo",
    "printf",
    "set",
    "unset",
    "for",
    "do",
    "done",
    "while",
    "if",
    "then",
    "fi", // the shell
    "cat",
    "cut",
    "head",
    "tail",
    "grep",
    "sort",
    "wc",
    "sleep",
    "ls",
    "rm",
    "mkdir",
    "sha256sum", // coreutils
    "pnsctl",
];

/// Tools a user could take for granted but the project does not provide: always checked,
/// even where the machine running the test happens to have them.
const FOREIGN: &[&str] = &[
    "aws",
    "sam",
    "jq",
    "openssl",
    "duckdb",
    "cfn-lint",
    "checkov",
    "docker",
    "zip",
    "pip",
    "python",
    "cargo-lambda",
    "zig",
    "node",
];

fn available(command: &str) -> bool {
    AVAILABLE.contains(&command)
        || command
            .strip_prefix(".venv/bin/")
            .is_some_and(|tool| !tool.is_empty())
}

/// The commands of a shell script: the first word of every line, pipeline stage, list element
/// and `$( … )`, after `VAR=value` assignments. Quotes are honoured (a quoted argument may span
/// lines); a `#` starts a comment.
fn commands(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    let flush = |words: &mut Vec<String>, found: &mut Vec<String>| {
        if let Some(first) = words.iter().find(|w| {
            !(w.contains('=')
                && w.split('=')
                    .next()
                    .unwrap()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'))
        }) {
            found.push(first.clone());
        }
        words.clear();
    };
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') if word.is_empty() => {
                // A comment, to the end of its line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                flush(&mut words, &mut found);
            }
            (None, '$') if chars.peek() == Some(&'(') => {
                chars.next();
                // What runs inside is a command of its own; its output is one word here.
                let mut inner = String::new();
                let mut depth = 1;
                for c in chars.by_ref() {
                    match c {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    inner.push(c);
                }
                found.extend(commands(&inner));
                // Its output is part of this word (`NAME=$(…)` stays an assignment).
                word.push_str("$(…)");
            }
            (None, '|' | '&' | ';' | '\n') => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                flush(&mut words, &mut found);
            }
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (None, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    flush(&mut words, &mut found);
    found
}

/// Every shell command the docs show, as (file, command, the line it is on): each logical
/// line of a `sh` block, and each inline code span that starts with a tool.
fn documented_commands(files: &[PathBuf]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let mut in_shell = false;
        for event in Parser::new(&text) {
            match event {
                Event::Start(Tag::CodeBlock(pulldown_cmark::CodeBlockKind::Fenced(info))) => {
                    in_shell = matches!(&*info, "sh" | "bash" | "shell" | "console");
                }
                Event::End(TagEnd::CodeBlock) => in_shell = false,
                Event::Text(block) if in_shell => {
                    // A quoted argument may span lines; a `\` at the end of one continues it.
                    let joined = block.replace("\\\n", " ");
                    for command in commands(&joined) {
                        let line = (joined.lines())
                            .find(|l| l.contains(command.as_str()))
                            .unwrap_or_default();
                        out.push((name.clone(), command, line.trim().to_owned()));
                    }
                }
                Event::Code(span) => {
                    let words: Vec<&str> = span.split_whitespace().collect();
                    let Some(first) = words.first() else { continue };
                    // A span is a command when it runs a tool with arguments: `make run`,
                    // `aws s3 ls`; `id` or `pending` are names, not commands.
                    let tool = AVAILABLE.contains(first)
                        || FOREIGN.contains(first)
                        || first.starts_with(".venv/");
                    if words.len() >= 2 && tool {
                        for command in commands(&span) {
                            out.push((name.clone(), command, span.to_string()));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// The Makefile targets that `make help` lists (a `## ` description).
fn listed_targets(root: &Path) -> BTreeSet<String> {
    let makefile = std::fs::read_to_string(root.join("Makefile")).unwrap();
    makefile
        .lines()
        .filter(|l| l.contains(" ## "))
        .filter_map(|l| l.split_once(':').map(|(t, _)| t.to_owned()))
        .filter(|t| t.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect()
}

/// The `make` targets the docs name, as (file, target).
fn make_targets(commands: &[(String, String, String)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (file, command, line) in commands {
        if command != "make" {
            continue;
        }
        let mut words = line.split_whitespace().skip_while(|w| *w != "make").skip(1);
        // Variables (`WEBHOOK_PORT=3001`) and flags may precede or follow the target.
        if let Some(target) = words.find(|w| !w.contains('=') && !w.starts_with('-')) {
            out.push((
                file.clone(),
                target.trim_end_matches([',', '.', ')']).to_owned(),
            ));
        }
    }
    out
}

#[test]
fn the_docs_use_only_commands_a_fresh_machine_has_and_make_targets_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = markdown_files(root);
    let commands = documented_commands(&files);
    assert!(
        commands.len() > 50,
        "the extraction finds the docs' commands"
    );
    let unavailable: Vec<String> = (commands.iter())
        .filter(|(_, command, _)| !available(command))
        .map(|(file, command, line)| format!("{file}: {command} in `{line}`"))
        .collect();
    assert!(
        unavailable.is_empty(),
        "commands neither the README's requirements nor the project provide:\n{}",
        unavailable.join("\n")
    );
    let targets = listed_targets(root);
    let missing: Vec<String> = make_targets(&commands)
        .into_iter()
        .filter(|(_, target)| !targets.contains(target))
        .map(|(file, target)| format!("{file}: make {target}"))
        .collect();
    assert!(
        missing.is_empty(),
        "make targets that `make help` does not list:\n{}",
        missing.join("\n")
    );
    // pnsctl is available because the docs say how to install it.
    let operations = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    assert!(operations.contains("cargo install --locked --path pnsctl"));
}

#[test]
fn the_command_check_finds_every_stage_and_substitution() {
    assert_eq!(
        commands("AWS_REGION=x aws s3 ls | jq . && echo \"a | b\"; T=$(openssl rand -hex 24)"),
        ["aws", "jq", "echo", "openssl"]
    );
    assert_eq!(commands("# a comment"), Vec::<String>::new());
    assert_eq!(
        commands("curl -d '{\"a\":\n 1}' \\\n  # note\nX=$(date) make run"),
        ["curl", "date", "make"]
    );
    assert!(!available("aws") && available(".venv/bin/aws") && available("make"));
    let found = make_targets(&[(
        "x.md".into(),
        "make".into(),
        "make run WEBHOOK_PORT=3001 EMULATOR_PORT=4576".into(),
    )]);
    assert_eq!(found, [("x.md".to_owned(), "run".to_owned())]);
}
