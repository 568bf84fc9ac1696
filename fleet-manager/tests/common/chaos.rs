//! A proxy in front of the test database that a test can cut off.

use super::*;

/// A TCP proxy on 127.0.0.1 in front of a database server, whose network a
/// test can break: [`ChaosProxy::break_networking`] resets every open
/// connection and, until [`ChaosProxy::restore_networking`], resets each new
/// one as soon as it is accepted, so clients see the server go away at once
/// (no half-open socket to wait on). Dropping it resets every connection.
pub struct ChaosProxy {
    pub addr: std::net::SocketAddr,
    broken: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    forwarded: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl ChaosProxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `upstream`.
    pub async fn start(upstream: std::net::SocketAddr) -> ChaosProxy {
        use std::sync::atomic::Ordering::Relaxed;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the chaos proxy");
        let addr = listener.local_addr().expect("proxy address");
        let broken = std::sync::Arc::new(tokio::sync::watch::channel(false).0);
        let forwarded = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accept = {
            let (broken, forwarded, refused) = (broken.clone(), forwarded.clone(), refused.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    // Subscribed before the check: a break from here on
                    // reaches this connection too.
                    let mut cut = broken.subscribe();
                    if *cut.borrow_and_update() {
                        refused.fetch_add(1, Relaxed);
                        let _ = client.set_zero_linger();
                        continue;
                    }
                    forwarded.fetch_add(1, Relaxed);
                    tokio::spawn(async move {
                        let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                            let _ = client.set_zero_linger();
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.wait_for(|b| *b) => {
                                let _ = client.set_zero_linger();
                                let _ = server.set_zero_linger();
                            }
                        }
                    });
                }
            })
        };
        ChaosProxy {
            addr,
            broken,
            forwarded,
            refused,
            accept,
        }
    }

    /// Resets every open connection and every new one until restored.
    pub fn break_networking(&self) {
        self.broken.send_replace(true);
    }

    /// Forwards new connections again.
    pub fn restore_networking(&self) {
        self.broken.send_replace(false);
    }

    /// Connections forwarded to the server so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connections reset on arrival while the network was broken.
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.broken.send_replace(true);
    }
}
