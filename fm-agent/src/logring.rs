//! The agent's recent log lines, kept in memory for FM to show: every
//! line the agent logs goes to stderr and to a ring of the last
//! [`RING_LINES`] lines, each cut at [`LINE_MAX`] characters.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{LazyLock, Mutex};

/// How many lines the ring keeps.
pub const RING_LINES: usize = 100;
/// The longest line kept, in characters (a longer one ends with "…").
pub const LINE_MAX: usize = 400;

/// A bounded ring of log lines, oldest first.
#[derive(Debug, Default)]
pub struct Ring {
    lines: VecDeque<String>,
}

impl Ring {
    /// Adds `text` (one or more lines; empty ones are skipped).
    pub fn push(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if self.lines.len() == RING_LINES {
                self.lines.pop_front();
            }
            self.lines.push_back(cut(line));
        }
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}

fn cut(line: &str) -> String {
    match line.char_indices().nth(LINE_MAX) {
        None => line.to_owned(),
        Some((end, _)) => {
            let mut s = line[..end].to_owned();
            s.push('…');
            s
        }
    }
}

static RING: LazyLock<Mutex<Ring>> = LazyLock::new(Mutex::default);

/// The agent's last log lines, oldest first.
pub fn recent() -> Vec<String> {
    RING.lock().unwrap_or_else(|p| p.into_inner()).lines()
}

/// A `tracing` writer: each event goes to stderr in one write, then to the
/// ring.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tee;

/// One event being written; sent on drop.
#[derive(Debug, Default)]
pub struct TeeWriter {
    buf: Vec<u8>,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Tee {
    type Writer = TeeWriter;

    fn make_writer(&'a self) -> TeeWriter {
        TeeWriter::default()
    }
}

impl Write for TeeWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for TeeWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let _ = std::io::stderr().write_all(&self.buf);
        RING.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(&String::from_utf8_lossy(&self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_lines_in_order() {
        let mut r = Ring::default();
        for i in 0..RING_LINES + 5 {
            r.push(&format!("line {i}\n"));
        }
        let lines = r.lines();
        assert_eq!(lines.len(), RING_LINES);
        assert_eq!(lines[0], "line 5");
        assert_eq!(lines[RING_LINES - 1], format!("line {}", RING_LINES + 4));
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary_and_blank_ones_skipped() {
        let mut r = Ring::default();
        r.push(&"é".repeat(LINE_MAX + 10));
        r.push("\n\n  \n");
        r.push("a\nb\n");
        let lines = r.lines();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].chars().count(), LINE_MAX + 1);
        assert!(lines[0].ends_with('…'));
        assert_eq!(&lines[1..], ["a", "b"]);
    }

    #[test]
    fn events_written_through_the_tee_land_in_the_ring() {
        use tracing_subscriber::fmt::MakeWriter;
        {
            let mut w = Tee.make_writer();
            w.write_all(b"2026-12-03T00:00:00Z  INFO fm_agent: tee test line\n")
                .unwrap();
        }
        assert!(recent().iter().any(|l| l.ends_with("tee test line")));
    }
}
