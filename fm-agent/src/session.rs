//! The long-lived mutual-TLS session with FM: Hello first (with the journal
//! of finished commands), a heartbeat at once and then every interval,
//! progress and results of commands; commands from FM go to the worker
//! queue. On any error the session is opened again after a jittered
//! exponential backoff.
//!
//! Every message carries a generation number, `(boot << 32) | seq`, that
//! only grows: `boot` is a counter bumped at each agent start, `seq` counts
//! the messages of this run. Numbers are given as messages enter the
//! stream, so their order on the wire is their numeric order.

use crate::commands::{self, Ctx};
use crate::enroll::AgentIdentity;
use crate::{fsutil, heartbeat};
use fm_proto::agent::agent_message::Body;
use fm_proto::agent::agent_service_client::AgentServiceClient;
use fm_proto::agent::{AgentMessage, Hello, LogLines, fm_message};
use rand::Rng;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The generation counter of this agent run.
#[derive(Debug)]
pub struct Generation {
    boot: u64,
    seq: AtomicU64,
}

impl Generation {
    /// A counter for boot number `boot` (tests).
    pub fn new(boot: u32) -> Self {
        Generation {
            boot: u64::from(boot),
            seq: AtomicU64::new(0),
        }
    }

    /// Increments `state_dir/boot` (durably: temp file, fsync, rename) and
    /// returns the counter for this run.
    pub fn load_and_bump(state_dir: &Path) -> io::Result<Self> {
        let path = state_dir.join("boot");
        let prev = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<u32>().map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} does not hold a number: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        let boot = prev.checked_add(1).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "the boot counter is exhausted")
        })?;
        fsutil::write_atomic(&path, format!("{boot}\n").as_bytes(), 0o600)?;
        Ok(Self::new(boot))
    }

    /// This run's boot number.
    pub fn boot(&self) -> u64 {
        self.boot
    }

    /// The next generation number (the first is `(boot << 32) | 1`).
    pub fn next(&self) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        (self.boot << 32) | (seq & 0xffff_ffff)
    }
}

/// Jittered exponential backoff: 0.5 s doubling up to 30 s, ±30 %.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

/// First delay of [`Backoff`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Largest delay of [`Backoff`] before jitter.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Messages waiting to go out on a session; progress lines beyond it are
/// dropped (they are in the journal).
pub const SESSION_QUEUE: usize = 1024;
/// After a stable session ends, the first reconnection comes within this.
pub const RECONNECT_SPREAD: Duration = Duration::from_secs(3);
/// A session that lasted longer than this resets the backoff.
pub const STABLE_SESSION: Duration = Duration::from_secs(10);

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The delay to wait now; the following one doubles (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        base.mul_f64(rand::thread_rng().gen_range(0.7..=1.3))
    }

    /// Back to the first delay.
    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// The way from commands to the current session, if any: progress and
/// results sent while disconnected are dropped (results are in the journal
/// and reach FM with the next Hello).
#[derive(Debug, Clone, Default)]
pub struct Link {
    tx: Arc<Mutex<Option<mpsc::Sender<Body>>>>,
}

impl Link {
    /// Points the link at a session's outgoing queue (or at none).
    pub fn set(&self, tx: Option<mpsc::Sender<Body>>) {
        *self.tx.lock().unwrap_or_else(|p| p.into_inner()) = tx;
    }

    fn current(&self) -> Option<mpsc::Sender<Body>> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Queues `body` on the current session if there is room at once (for
    /// progress lines: a slow FM must not slow the command down).
    pub fn try_send(&self, body: Body) -> bool {
        self.current().is_some_and(|tx| tx.try_send(body).is_ok())
    }

    /// Queues `body` on the current session; waits up to 5 s for room.
    pub async fn send(&self, body: Body) -> bool {
        match self.current() {
            Some(tx) => matches!(
                tokio::time::timeout(Duration::from_secs(5), tx.send(body)).await,
                Ok(Ok(()))
            ),
            None => false,
        }
    }
}

/// The channel to FM authenticated by the agent's certificate. It connects
/// lazily and reconnects by itself after a failure.
pub fn mtls_channel(cfg: &crate::config::Config, id: &AgentIdentity) -> anyhow::Result<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&cfg.ca_pem))
        .domain_name(cfg.fm_host.clone())
        .identity(Identity::from_pem(&id.cert_pem, id.key_pem.expose()));
    Ok(Endpoint::from_shared(cfg.fm_url.clone())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10))
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// Keeps a session open forever, reconnecting with backoff.
pub async fn run_sessions(ctx: Arc<Ctx>, generation: Arc<Generation>, queue: commands::Queue) {
    let mut backoff = Backoff::default();
    loop {
        let began = Instant::now();
        let outcome = session(&ctx, &generation, &queue).await;
        ctx.link.set(None);
        let delay = if began.elapsed() > STABLE_SESSION {
            // A session that ended after a while most likely ended for every
            // agent at once (FM restarted): the first try comes at a random
            // moment of the spread, so a fleet doesn't reconnect in one burst.
            backoff.reset();
            RECONNECT_SPREAD.mul_f64(rand::thread_rng().gen_range(0.05..=1.0))
        } else {
            backoff.next_delay()
        };
        match outcome {
            Ok(()) => tracing::warn!(
                "FM closed the session; reconnecting in {:.1} s",
                delay.as_secs_f64()
            ),
            Err(e) => tracing::warn!(
                "session with FM failed: {e}; reconnecting in {:.1} s",
                delay.as_secs_f64()
            ),
        }
        tokio::time::sleep(delay).await;
    }
}

/// One session, until FM closes it or it fails.
async fn session(
    ctx: &Arc<Ctx>,
    generation: &Arc<Generation>,
    queue: &commands::Queue,
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<Body>(SESSION_QUEUE);
    // Results finishing from now on go to this session; those finished
    // before are in the journal read below. Either way FM learns them.
    ctx.link.set(Some(tx.clone()));
    let hello = Body::Hello(Hello {
        instance_id: ctx.cfg.instance_id.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        journal: ctx.journal.recent_results(crate::journal::HELLO_RESULTS),
    });
    let gen_out = generation.clone();
    let outbound = tokio_stream::once(hello)
        .chain(tokio_stream::wrappers::ReceiverStream::new(rx))
        .map(move |body| AgentMessage {
            generation: gen_out.next(),
            body: Some(body),
        });
    let mut client = AgentServiceClient::new(ctx.channel.clone());
    let mut inbound = tokio::time::timeout(Duration::from_secs(30), client.session(outbound))
        .await
        .map_err(|_| "FM did not answer the session request within 30 s".to_owned())?
        .map_err(|s| status_text(&s))?
        .into_inner();
    tracing::info!("session with FM open");
    let tx_logs = tx.clone();
    let beats = tokio::spawn(heartbeats(ctx.clone(), tx));
    let _stop_beats = AbortOnDrop(beats);
    loop {
        match inbound.message().await {
            Ok(Some(msg)) => match msg.body {
                Some(fm_message::Body::Command(cmd)) => {
                    commands::accept(ctx, cmd, queue).await;
                }
                Some(fm_message::Body::LogRequest(r)) => {
                    let lines = LogLines {
                        request_id: r.request_id,
                        lines: crate::logring::recent(),
                    };
                    if tx_logs.try_send(Body::LogLines(lines)).is_err() {
                        tracing::debug!("session queue full; log lines not sent");
                    }
                }
                None => tracing::debug!("FM sent an empty message"),
            },
            Ok(None) => return Ok(()),
            Err(s) => return Err(status_text(&s)),
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn heartbeats(ctx: Arc<Ctx>, tx: mpsc::Sender<Body>) {
    let mut tick = tokio::time::interval(ctx.cfg.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let hb = heartbeat::collect(&ctx.cfg, ctx.node_starting()).await;
        match tx.try_send(Body::Heartbeat(hb)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!("session queue full; heartbeat skipped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// A status as one line: "code: message (source)".
pub fn status_text(s: &tonic::Status) -> String {
    use std::error::Error as _;
    let mut out = format!("{:?}: {}", s.code(), s.message());
    let mut src = s.source();
    while let Some(e) = src {
        out.push_str(&format!(" ({e})"));
        src = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_carry_the_boot_high_and_grow() {
        let g = Generation::new(7);
        let a = g.next();
        let b = g.next();
        assert_eq!(a >> 32, 7);
        assert_eq!(a & 0xffff_ffff, 1);
        assert!(b > a);
        assert!(Generation::new(8).next() > b);
    }

    #[test]
    fn the_boot_counter_grows_at_each_start() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(Generation::load_and_bump(d.path()).unwrap().boot(), 1);
        let second = Generation::load_and_bump(d.path()).unwrap();
        assert_eq!(second.boot(), 2);
        assert_eq!(
            std::fs::read_to_string(d.path().join("boot")).unwrap(),
            "2\n"
        );
    }

    #[test]
    fn a_corrupt_boot_counter_is_an_error_not_a_reset() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("boot"), "garbage").unwrap();
        assert!(Generation::load_and_bump(d.path()).is_err());
    }

    #[test]
    fn backoff_doubles_from_half_a_second_to_thirty_with_bounded_jitter() {
        let mut b = Backoff::default();
        let mut base = 0.5f64;
        for _ in 0..20 {
            let d = b.next_delay().as_secs_f64();
            assert!(
                d >= base * 0.7 - 1e-9 && d <= base * 1.3 + 1e-9,
                "{d} vs {base}"
            );
            base = (base * 2.0).min(30.0);
        }
        assert!(b.next_delay() <= Duration::from_secs(39));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(650));
    }

    #[tokio::test]
    async fn the_link_drops_messages_while_disconnected() {
        let link = Link::default();
        assert!(!link.send(Body::Hello(Hello::default())).await);
        let (tx, mut rx) = mpsc::channel(4);
        link.set(Some(tx));
        assert!(link.send(Body::Hello(Hello::default())).await);
        assert!(rx.recv().await.is_some());
    }
}
