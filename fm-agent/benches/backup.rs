//! Backup and restore throughput of the agent against `tar -I 'zstd -1'`
//! of the same data dir to the same destination (a directory), side by
//! side. The agent's code runs as its own process (`fm-agent backup take |
//! restore`, the agent's runtime settings) and its peak resident memory is
//! read from /proc while it runs.
//!
//! `cargo bench -p fm-agent --bench backup`
//!
//! FM_BENCH_BACKUP_MIB: size of the data dir (default 2048).
//! FM_BENCH_DIR: where to work (default a directory under /var/tmp; needs
//! about 4x the size free). FM_BENCH_ROUNDS: runs of each (default 3; the
//! best is reported). FM_BENCH_KEEP=1 leaves the data dir, the archives
//! and the key in place afterwards (to profile a single phase by hand).
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Text that compresses like logs and JSON do (about 4:1 at zstd -1).
fn corpus(rng: &mut Rng) -> Vec<u8> {
    let words = [
        "dataset",
        "recipe",
        "scenario",
        "partition",
        "SUCCESS",
        "FAILED",
        "user",
        "project",
        "model",
        "train",
        "score",
        "column",
        "INFO",
        "WARN",
        "job",
        "duration_ms",
        "rows",
        "schema",
        "null",
        "true",
        "false",
        "spark",
        "python",
        "sql",
    ];
    let mut out = Vec::with_capacity(8 << 20);
    while out.len() < 8 << 20 {
        let _ = writeln!(
            out,
            "{{\"ts\": {}, \"level\": \"{}\", \"msg\": \"{} {} {}\", \"n\": {}}}",
            1_700_000_000_000u64 + rng.below(1 << 30),
            words[rng.below(words.len() as u64) as usize],
            words[rng.below(words.len() as u64) as usize],
            words[rng.below(words.len() as u64) as usize],
            words[rng.below(words.len() as u64) as usize],
            rng.below(1_000_000)
        );
    }
    out
}

/// A data dir of `total` bytes: 45 % text files of 1-8 MiB, 35 % random
/// files of 16-64 MiB, 20 % small files of 4-64 KiB in nested dirs.
fn generate(dir: &Path, total: u64) -> (u64, usize) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let text = corpus(&mut rng);
    let mut written = 0u64;
    let mut files = 0usize;
    let write = |path: PathBuf, data: &[u8]| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    };
    let budget = |share: f64| (total as f64 * share) as u64;
    let (t_budget, r_budget, s_budget) = (budget(0.45), budget(0.35), budget(0.20));
    let mut n = 0u64;
    while n < t_budget {
        let size = ((1 << 20) + rng.below(7 << 20)).min(t_budget - n) as usize;
        let off = rng.below((text.len() - size.min(text.len() - 1)) as u64) as usize;
        let mut data = Vec::with_capacity(size);
        while data.len() < size {
            let take = (size - data.len()).min(text.len() - off);
            data.extend_from_slice(&text[off..off + take]);
        }
        write(
            dir.join(format!("jobs/j{}/log-{files}.json", files % 50)),
            &data,
        );
        n += size as u64;
        files += 1;
    }
    written += n;
    n = 0;
    while n < r_budget {
        let size = ((16 << 20) + rng.below(48 << 20)).min(r_budget - n) as usize;
        let mut data = vec![0u8; size];
        for c in data.chunks_mut(8) {
            let v = rng.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
        write(
            dir.join(format!("managed_datasets/d{files}.parquet")),
            &data,
        );
        n += size as u64;
        files += 1;
    }
    written += n;
    n = 0;
    while n < s_budget {
        let size = ((4 << 10) + rng.below(60 << 10)).min(s_budget - n) as usize;
        let off = rng.below((text.len() - size) as u64) as usize;
        let d = files % 400;
        write(
            dir.join(format!(
                "config/projects/P{}/recipes/r{d}/f{files}.json",
                d % 40
            )),
            &text[off..off + size],
        );
        n += size as u64;
        files += 1;
    }
    written += n;
    (written, files)
}

/// Runs `cmd`, reading the peak resident set (VmHWM) of the process while
/// it runs; (seconds, peak KiB).
fn timed(mut cmd: Command) -> (f64, u64) {
    let start = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(kb) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        {
            peak = peak.max(kb);
        }
        if let Some(st) = child.try_wait().expect("wait") {
            assert!(st.success(), "{cmd:?} failed: {st}");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (start.elapsed().as_secs_f64(), peak)
}

fn fresh(p: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(p);
    std::fs::create_dir_all(p).unwrap();
    p.to_path_buf()
}

fn du(p: &Path) -> u64 {
    let out = Command::new("du").args(["-sb"]).arg(p).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mib: u64 = std::env::var("FM_BENCH_BACKUP_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    let rounds: usize = std::env::var("FM_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let root = PathBuf::from(
        std::env::var("FM_BENCH_DIR").unwrap_or_else(|_| "/var/tmp/fm-backup-bench".into()),
    );
    let agent = env!("CARGO_BIN_EXE_fm-agent");
    let data = fresh(&root.join("data"));
    let t = Instant::now();
    let (bytes, files) = generate(&data, mib << 20);
    let _ = Command::new("sync").status();
    eprintln!(
        "data dir: {} MiB in {files} files, made in {:.1} s",
        bytes >> 20,
        t.elapsed().as_secs_f64()
    );
    let key = root.join("key");
    std::fs::write(&key, "3c".repeat(32)).unwrap();
    let out = root.join("out");
    let target = root.join("restored");
    let store_url = format!("file://{}", out.join("store").display());
    let tar_create = |file: PathBuf| {
        let mut c = Command::new("tar");
        c.args(["-I", "zstd -1", "-cf"])
            .arg(file)
            .arg("-C")
            .arg(&data)
            .arg(".");
        c
    };
    let agent_cmd = |verb: &str, backup: &str, enc: bool, dir: &Path| {
        let mut c = Command::new(agent);
        c.args(["backup", verb, "--instance", "bench", "--backup", backup])
            .arg("--url")
            .arg(&store_url)
            .arg("--data-dir")
            .arg(dir);
        if enc {
            c.arg("--key-file").arg(&key);
        }
        c
    };
    // The variants of each phase run in turn within a round, so a machine
    // that slows down or speeds up meanwhile affects them alike.
    type Run<'a> = (
        &'a str,
        Box<dyn Fn() -> Command + 'a>,
        Box<dyn Fn() -> u64 + 'a>,
    );
    let backups: Vec<Run> = vec![
        (
            "backup  tar -I 'zstd -1'",
            Box::new(|| {
                let _ = std::fs::remove_file(out.join("base.tar.zst"));
                tar_create(out.join("base.tar.zst"))
            }),
            Box::new(|| du(&out.join("base.tar.zst"))),
        ),
        (
            "backup  fm-agent",
            Box::new(|| agent_cmd("take", "plain", false, &data)),
            Box::new(|| du(&out.join("store/bench/plain"))),
        ),
        (
            "backup  fm-agent, encrypted",
            Box::new(|| agent_cmd("take", "enc", true, &data)),
            Box::new(|| du(&out.join("store/bench/enc"))),
        ),
    ];
    let restores: Vec<Run> = vec![
        (
            "restore tar -I 'zstd -1'",
            Box::new(|| {
                fresh(&target);
                let mut c = Command::new("tar");
                c.args(["-I", "zstd -1", "-xf"])
                    .arg(out.join("base.tar.zst"))
                    .arg("-C")
                    .arg(&target);
                c
            }),
            Box::new(|| du(&target)),
        ),
        (
            "restore fm-agent",
            Box::new(|| {
                fresh(&target);
                agent_cmd("restore", "plain", false, &target)
            }),
            Box::new(|| du(&target)),
        ),
        (
            "restore fm-agent, encrypted",
            Box::new(|| {
                fresh(&target);
                agent_cmd("restore", "enc", true, &target)
            }),
            Box::new(|| du(&target)),
        ),
    ];
    fresh(&out);
    let rate = |s: f64| (bytes as f64 / (1 << 20) as f64) / s;
    let mut rows: Vec<(String, f64, u64, u64)> = vec![];
    for phase in [&backups, &restores] {
        let mut best = vec![(f64::MAX, 0u64, 0u64); phase.len()];
        for _ in 0..rounds {
            for (i, (name, mk, size_of)) in phase.iter().enumerate() {
                let cmd = mk();
                // Earlier runs' writes reach the disk first, not during this one.
                let _ = Command::new("sync").status();
                let (s, kb) = timed(cmd);
                eprintln!("{name}: {s:.1} s");
                if s < best[i].0 {
                    best[i] = (s, kb, size_of());
                }
            }
        }
        for ((name, _, _), b) in phase.iter().zip(best) {
            rows.push((name.to_string(), b.0, b.1, b.2));
        }
    }
    if std::env::var("FM_BENCH_KEEP").as_deref() != Ok("1") {
        let _ = std::fs::remove_dir_all(&root);
    }

    let base = |prefix: &str| {
        rows.iter()
            .find(|r| r.0.starts_with(prefix) && r.0.contains("tar"))
            .map(|r| r.1)
            .unwrap()
    };
    println!(
        "\n{} MiB data dir, {files} files, best of {rounds}\n",
        bytes >> 20
    );
    println!("| run | seconds | MiB/s | vs tar+zstd | peak RSS MiB | output MiB |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, s, kb, size) in &rows {
        let vs = base(&name[..7]) / s;
        println!(
            "| {name} | {s:.1} | {:.0} | {vs:.2}x | {} | {} |",
            rate(*s),
            if name.contains("tar") {
                "-".to_string()
            } else {
                format!("{:.1}", *kb as f64 / 1024.0)
            },
            size >> 20
        );
    }
}
