//! The operator's verbs for what is downstream: re-publish events, and run the lake's named
//! queries (`pnsctl publish`, `pnsctl report`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Map, Value};
use tracing::{info, warn};

use pns_cdr::domain::events::Event;
use pns_cdr::domain::events::{add_number_hashes, events_for_item};
use pns_cdr::domain::recording::LAKE_PREFIX;
use pns_cdr::handlers::publisher::Publisher;
use pns_cdr::ports::{EventBus, EventFailures, ObjectStore, PortError, ReceivedSince};

/// The lake's named queries by name: `analytics/queries/<name>.sql`, the SQL the template's
/// Athena named queries hold (a template test compares them).
pub const REPORTS: &[(&str, &str)] = &[
    (
        "answer-rate-per-did",
        include_str!("../../analytics/queries/answer-rate-per-did.sql"),
    ),
    (
        "calls-per-business-per-day",
        include_str!("../../analytics/queries/calls-per-business-per-day.sql"),
    ),
    (
        "hangup-causes",
        include_str!("../../analytics/queries/hangup-causes.sql"),
    ),
    (
        "recording-coverage",
        include_str!("../../analytics/queries/recording-coverage.sql"),
    ),
    (
        "unbound-calls-per-did-per-day",
        include_str!("../../analytics/queries/unbound-calls-per-did-per-day.sql"),
    ),
];

/// The lake table's columns, as the Glue table `events` has them.
pub const LAKE_TABLE: &str = include_str!("../../analytics/events-table.json");

/// Runs a query on a local copy of the lake with DuckDB (Python, in the project's virtualenv).
const DUCKDB_REPORT: &str = include_str!("../../analytics/duckdb_report.py");

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("no report {0:?}; the reports are: {reports}", reports = report_names())]
    UnknownReport(String),
    #[error("cannot run {python}: {source} (make venv installs DuckDB; PNS_PYTHON names another interpreter)")]
    Python {
        python: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the DuckDB report failed: {0}")]
    Query(String),
    #[error("cannot copy the lake to {}", path.display())]
    Copy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{published} events published, then the bus kept refusing one; run the command again")]
    Refused { published: usize },
    #[error("no PutEvents request can carry these events, which were not published: {}", ids.join(", "))]
    TooLarge { ids: Vec<String> },
    #[error(transparent)]
    Aws(#[from] PortError),
}

fn report_names() -> String {
    REPORTS.iter().map(|r| r.0).collect::<Vec<_>>().join(", ")
}

/// The SQL of report `name`.
pub fn report_sql(name: &str) -> Result<&'static str, LakeError> {
    REPORTS
        .iter()
        .find(|r| r.0 == name)
        .map(|r| r.1)
        .ok_or_else(|| LakeError::UnknownReport(name.to_owned()))
}

/// A report's answer: column names and rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    /// The rows as JSON objects, column name to value.
    pub fn objects(&self) -> Vec<Map<String, Value>> {
        self.rows
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect()
            })
            .collect()
    }

    /// Aligned text columns, for a terminal.
    pub fn text(&self) -> String {
        let cell = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(cell).collect())
            .collect();
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                cells
                    .iter()
                    .map(|r| r[i].len())
                    .chain([c.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |values: Vec<&str>| {
            let padded: Vec<String> = values
                .iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_owned() + "\n"
        };
        let mut out = line(self.columns.iter().map(String::as_str).collect());
        for row in &cells {
            out += &line(row.iter().map(String::as_str).collect());
        }
        out
    }
}

/// Copies the lake's files from the bucket into `dir`, keeping their `day=` folders.
pub async fn copy_lake(objects: &impl ObjectStore, dir: &Path) -> Result<usize, LakeError> {
    let keys = objects.list(LAKE_PREFIX).await?;
    for key in &keys {
        let Some(body) = objects.get(key).await? else {
            continue; // deleted since the listing
        };
        let path = dir.join(key.trim_start_matches(LAKE_PREFIX));
        let copied = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, &body));
        copied.map_err(|source| LakeError::Copy { path, source })?;
    }
    Ok(keys.len())
}

/// Runs `sql` (Athena's dialect) on the lake files under `lake` with DuckDB, through
/// `python`: the query is transpiled by sqlglot, the table built with the Glue table's
/// columns.
pub fn run_duckdb(python: &str, sql: &str, lake: &Path) -> Result<Table, LakeError> {
    let request = serde_json::json!({
        "sql": sql,
        "table": serde_json::from_str::<Value>(LAKE_TABLE).expect("the lake table is JSON"),
        "lake": lake,
    });
    let spawn_error = |source| LakeError::Python {
        python: python.to_owned(),
        source,
    };
    let mut child = Command::new(python)
        .args(["-c", DUCKDB_REPORT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(request.to_string().as_bytes())
        .map_err(spawn_error)?;
    let out = child.wait_with_output().map_err(spawn_error)?;
    if !out.status.success() {
        return Err(LakeError::Query(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| LakeError::Query(e.to_string()))
}

/// Events no `PutEvents` request can carry, set apart while `pnsctl publish` runs and
/// reported at its end.
#[derive(Default)]
pub struct SetApart(std::sync::Mutex<Vec<String>>);

impl SetApart {
    /// The ids set apart; `Err` names them.
    pub fn check(&self) -> Result<(), LakeError> {
        let ids = self.0.lock().expect("not poisoned").clone();
        match ids.is_empty() {
            true => Ok(()),
            false => Err(LakeError::TooLarge { ids }),
        }
    }
}

impl EventFailures for SetApart {
    async fn describe(&self, event: &Event, _reason: &str) -> Result<(), PortError> {
        self.0.lock().expect("not poisoned").push(event.id.clone());
        Ok(())
    }
}

/// Re-publishes the events of every item of `table` received since `since` (Unix seconds),
/// as the stream published them: the same event ids, so consumers that dedupe see nothing
/// new, and the lake gains what it missed. `progress` gets the running count.
pub async fn publish_since<T: ReceivedSince, B: EventBus, F: EventFailures>(
    table: &T,
    publisher: &Publisher<B, F>,
    since: i64,
    progress: impl Fn(usize),
) -> Result<usize, LakeError> {
    let phones = publisher.settings.phones;
    let mut published = 0;
    let mut start = None;
    loop {
        let page = table.received_since(since, start.take()).await?;
        let mut events = Vec::new();
        for item in &page.items {
            match events_for_item(item, phones) {
                Ok(mut more) => {
                    if let Some(keys) = &publisher.settings.number_keys {
                        add_number_hashes(&mut more, item, keys);
                    }
                    events.extend(more)
                }
                // Not one of ours: nothing the stream would have published either.
                Err(e) => warn!(error = %e, "an item that makes no events"),
            }
        }
        published += publisher
            .put_all(events)
            .await
            .map_err(|n| LakeError::Refused {
                published: published + n,
            })?;
        progress(published);
        match page.next {
            Some(next) => start = Some(next),
            None => break,
        }
    }
    info!(
        published,
        since,
        outcome = "republished",
        "events published again"
    );
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_query_is_a_report() {
        let queries = Path::new(env!("CARGO_MANIFEST_DIR")).join("../analytics/queries");
        for (name, sql) in REPORTS {
            let file = std::fs::read_to_string(queries.join(format!("{name}.sql"))).unwrap();
            assert_eq!(file, *sql, "{name}");
        }
        let files = std::fs::read_dir(&queries).unwrap().count();
        assert_eq!(
            files,
            REPORTS.len(),
            "a query in {} is not a report",
            queries.display()
        );
    }
}
