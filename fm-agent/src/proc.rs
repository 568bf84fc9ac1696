//! Child processes: run with a timeout, their stdout and stderr lines
//! streamed as command progress. Each runs in a process group of its own,
//! killed as a group when the timeout expires, so what it started in the
//! background (an installer's helpers, ansible's workers) goes with it.

use crate::commands::Progress;
use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

/// Lines of output kept for a failure message.
pub const TAIL_LINES: usize = 20;
/// Longest output line kept (longer ones are cut).
const MAX_LINE: usize = 4096;

/// How a child process ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status; `None` when it was killed for running too long.
    pub status: Option<ExitStatus>,
    /// The timeout it ran under.
    pub timeout: Duration,
    /// The last [`TAIL_LINES`] lines of its output.
    pub tail: Vec<String>,
}

impl Finished {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// "`what` exited with status N" / "timed out", with the last lines.
    pub fn failure(&self, what: &str) -> String {
        let head = match self.status {
            None => format!(
                "{what} did not finish within {} s and was killed",
                self.timeout.as_secs_f64()
            ),
            Some(s) => match s.code() {
                Some(c) => format!("{what} exited with status {c}"),
                None => format!("{what} was killed by a signal"),
            },
        };
        if self.tail.is_empty() {
            head
        } else {
            format!("{head}; last output:\n{}", self.tail.join("\n"))
        }
    }
}

/// Runs `cmd` (stdin closed), sending each output line to `progress`;
/// kills it after `timeout`. Output still written by background processes
/// the child left behind (a daemon keeping the pipes open) is not awaited.
pub async fn run_streaming(
    cmd: Command,
    timeout: Duration,
    progress: &mut Progress,
) -> Result<Finished, String> {
    run_streaming_input(cmd, None, timeout, progress).await
}

/// [`run_streaming`] with `input` written to the child's standard input
/// (then closed): the way to hand it a secret no command line shows.
pub async fn run_streaming_input(
    mut cmd: Command,
    input: Option<Vec<u8>>,
    timeout: Duration,
    progress: &mut Progress,
) -> Result<Finished, String> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("can't run {program}: {e}"))?;
    let group = child.id();
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = stdin.write_all(&bytes).await;
        });
    }
    let (tx, mut rx) = mpsc::channel::<String>(64);
    // Readers outliving the child belong to processes it left behind with
    // our pipes; they drain quietly until those close them.
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, tx.clone()));
    }
    drop(tx);
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let status = loop {
        tokio::select! {
            Some(line) = rx.recv() => {
                push_tail(&mut tail, progress.redact(&line));
                progress.line(line).await;
            }
            s = child.wait() => break Some(s.map_err(|e| format!("waiting for {program}: {e}"))?),
            () = &mut deadline => {
                kill_group(group);
                let _ = child.kill().await;
                break None;
            }
        }
    };
    // What the child wrote just before exiting is still in the pipes.
    let drain_until = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Some(line)) = tokio::time::timeout_at(drain_until, rx.recv()).await {
        push_tail(&mut tail, progress.redact(&line));
        progress.line(line).await;
    }
    Ok(Finished {
        status,
        timeout,
        tail: tail.into(),
    })
}

/// Runs `cmd` with no input and output discarded; `None` on timeout (the
/// child is then killed).
pub async fn run_quiet(mut cmd: Command, timeout: Duration) -> Result<Option<ExitStatus>, String> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("can't run {program}: {e}"))?;
    let group = child.id();
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(s) => s
            .map(Some)
            .map_err(|e| format!("waiting for {program}: {e}")),
        Err(_) => {
            kill_group(group);
            let _ = child.kill().await;
            Ok(None)
        }
    }
}

/// Kills the process group the child leads (its id), with all it started.
fn kill_group(leader: Option<u32>) {
    let pid = leader
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

fn push_tail(tail: &mut VecDeque<String>, line: String) {
    if tail.len() == TAIL_LINES {
        tail.pop_front();
    }
    tail.push_back(line);
}

async fn forward_lines(r: impl AsyncRead + Unpin, tx: mpsc::Sender<String>) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let mut end = buf.len();
                while end > 0 && (buf[end - 1] == b'\n' || buf[end - 1] == b'\r') {
                    end -= 1;
                }
                let mut line = String::from_utf8_lossy(&buf[..end.min(MAX_LINE)]).into_owned();
                if end > MAX_LINE {
                    line.push_str(" [...]");
                }
                // Once nobody listens (the child exited), keep draining so a
                // process left behind with our pipe never gets SIGPIPE.
                if !tx.is_closed() {
                    let _ = tx.send(line).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Link;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[tokio::test]
    async fn output_lines_stream_and_the_tail_is_kept() {
        let mut p = Progress::new("c", Link::default());
        let script = "for i in $(seq 1 30); do echo out $i; done; echo err >&2; exit 4";
        let done = run_streaming(sh(script), Duration::from_secs(10), &mut p)
            .await
            .unwrap();
        assert!(!done.success());
        assert_eq!(p.lines().len(), 31);
        assert_eq!(done.tail.len(), TAIL_LINES);
        let msg = done.failure("script");
        assert!(
            msg.starts_with("script exited with status 4; last output:\n"),
            "{msg}"
        );
        assert!(msg.contains("out 30"));
    }

    #[tokio::test]
    async fn a_child_running_too_long_is_killed() {
        let mut p = Progress::new("c", Link::default());
        let started = std::time::Instant::now();
        let done = run_streaming(
            sh("echo hi; exec sleep 30"),
            Duration::from_millis(500),
            &mut p,
        )
        .await
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(done.status.is_none());
        assert!(
            done.failure("sleep")
                .contains("did not finish within 0.5 s and was killed")
        );
    }

    #[tokio::test]
    async fn a_timeout_kills_what_the_child_started_too() {
        let d = tempfile::tempdir().unwrap();
        let pid_file = d.path().join("pid");
        let mut p = Progress::new("c", Link::default());
        let script = format!(
            "sleep 1000 & echo $! > {}; exec sleep 30",
            pid_file.display()
        );
        let done = run_streaming(sh(&script), Duration::from_millis(500), &mut p)
            .await
            .unwrap();
        assert!(done.status.is_none());
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background sleep is gone (a zombie at most, until reaped by init).
        let mut gone = false;
        for _ in 0..50 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gone, "the grandchild {pid} outlived the timeout");
    }

    #[tokio::test]
    async fn a_daemon_keeping_the_pipes_open_does_not_hold_the_command() {
        let mut p = Progress::new("c", Link::default());
        let started = std::time::Instant::now();
        let done = run_streaming(
            sh("sleep 5 & echo started"),
            Duration::from_secs(10),
            &mut p,
        )
        .await
        .unwrap();
        assert!(done.success());
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(p.lines(), ["started"]);
    }

    #[tokio::test]
    async fn a_quiet_run_reports_the_exit_status_or_a_timeout() {
        let ok = run_quiet(sh("exit 0"), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(ok.unwrap().success());
        let late = run_quiet(sh("exec sleep 30"), Duration::from_millis(200))
            .await
            .unwrap();
        assert!(late.is_none());
        assert!(
            run_quiet(Command::new("/nonexistent/dss"), Duration::from_secs(1))
                .await
                .is_err()
        );
    }
}
