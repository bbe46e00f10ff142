//! `pns-local` as `make run` and `make demo` start it: the ports each takes, side by side.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free port: bound, read, released.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pns_local() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pns-local"));
    command
        .current_dir(pns_cdr_dev::repo_root())
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("PNS_TABLE_NAME")
        .env_remove("PNS_QUEUE_NAME")
        .env_remove("PNS_BUCKET_NAME")
        .env("RUST_LOG", "warn");
    command
}

/// `pns-local run`, stopped (with its emulator, whose stdin it holds) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `pns-local run` on the ports `make run WEBHOOK_PORT=… EMULATOR_PORT=…` passes and
/// waits for its banner; what it said when it stopped instead.
fn run_on(webhook: u16, emulator: u16) -> Result<Running, String> {
    let mut child = pns_local()
        .env("WEBHOOK_PORT", webhook.to_string())
        .env("EMULATOR_PORT", emulator.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = said.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            keep.lock().unwrap().push(line);
        }
    });
    let running = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end so the process never blocks on a full pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let mut banner = Vec::new();
    // Generous: the whole suite shares two cores with it.
    while started.elapsed() < Duration::from_secs(180) {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) if line.contains("try: curl") => return Ok(running),
            Ok(line) => banner.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    drop(running);
    let said = said.lock().unwrap().join("\n");
    Err(format!("pns-local run did not come up: {banner:?} {said}"))
}

/// `pns-local run` on free ports. A port found free can be taken by a neighbouring test
/// before the stack binds it (the recording host's, next to the emulator's, is not even
/// checked): then other ports are tried.
fn run_somewhere() -> (Running, u16, u16) {
    let mut said = Vec::new();
    for _ in 0..3 {
        let (webhook, emulator) = (free_port(), free_port());
        match run_on(webhook, emulator) {
            Ok(running) => return (running, webhook, emulator),
            Err(e) if e.contains("is in use") => said.push(e),
            Err(e) => panic!("{e}"),
        }
    }
    panic!("{said:?}");
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn demo_runs_beside_a_running_stack_and_a_busy_port_names_its_variable() {
    let (running, webhook, emulator) = run_somewhere();

    // The demo takes free ports of its own, the emulator's included.
    let demo = pns_local().arg("demo").output().unwrap();
    assert!(demo.status.success(), "{}", text(&demo));
    assert!(text(&demo).contains("pns-cdr local stack is up"));

    // A second `run` on the same ports stops before starting anything, naming what to set.
    let second = pns_local()
        .env("WEBHOOK_PORT", webhook.to_string())
        .env("EMULATOR_PORT", emulator.to_string())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let said = text(&second);
    assert!(
        said.contains(&format!("port {webhook} is in use")) && said.contains("set WEBHOOK_PORT"),
        "{said}"
    );
    drop(running);

    // Only the emulator's port busy: the message names EMULATOR_PORT.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap().port();
    let out = pns_local()
        .args([
            "run",
            "--webhook-port",
            &free_port().to_string(),
            "--emulator-port",
            &busy.to_string(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains(&format!("port {busy} is in use")) && said.contains("set EMULATOR_PORT"),
        "{said}"
    );
    assert!(!said.contains("panicked"), "{said}");
}
