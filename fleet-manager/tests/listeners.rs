//! The listeners under abuse: idle and slow connections, overload and
//! floods of bad credentials leave FM answering.

mod common;

use base64::Engine;
use common::TestApp;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether the server closes `s` within `within` (EOF or a reset), reading
/// and discarding whatever it sends first.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

#[tokio::test]
async fn two_thousand_idle_connections_leave_the_api_answering_within_a_second() {
    let t = TestApp::new().await;
    // `server::start` raised this process's open-files limit to its hard
    // limit; each idle connection costs two descriptors here (both ends).
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let room = lim.current.map_or(usize::MAX, |n| n as usize);
    let n = 2000.min(room.saturating_sub(200) / 2);
    assert!(
        n >= 400,
        "the open-files limit leaves room for {n} connections only"
    );
    let addr = t.api.base.trim_start_matches("http://").to_string();
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n / 100 {
        let batch: Vec<_> = (0..100)
            .map(|_| tokio::spawn(TcpStream::connect(addr.clone())))
            .collect();
        for c in batch {
            idle.push(c.await.unwrap().expect("connect"));
        }
    }
    // Let the server take them all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let start = Instant::now();
        let (status, body) = t.api.get("/tenants/main/images").await;
        let took = start.elapsed();
        assert_eq!(status, 200, "{body}");
        assert!(took < Duration::from_secs(1), "GET /images took {took:?}");
    }
    drop(idle);
    t.stop().await;
}

#[tokio::test]
async fn a_slowloris_header_trickle_is_closed_by_the_header_timeout() {
    let t = TestApp::with(
        |c| c.limits.http_header_timeout = Duration::from_millis(800),
        vec![],
    )
    .await;
    let addr = t.api.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /api/public/tenants/main/images HTTP/1.1\r\nX: ")
        .await
        .unwrap();
    let start = Instant::now();
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(5) {
        if s.write_all(b"a").await.is_err() {
            closed = true;
            break;
        }
        if closed_within(&mut s, Duration::from_millis(200)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "the trickling connection is still open after 5 s");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    // An idle keep-alive connection that sends nothing goes the same way.
    let mut quiet = TcpStream::connect(&addr).await.unwrap();
    assert!(closed_within(&mut quiet, Duration::from_secs(3)).await);
    let (status, _) = t.api.get("/tenants/main/images").await;
    assert_eq!(status, 200);
    t.stop().await;
}

#[tokio::test]
async fn past_the_in_flight_limit_requests_get_503_with_retry_after_and_a_stuck_body_times_out() {
    let t = TestApp::with(
        |c| {
            c.limits.http_max_in_flight = 1;
            c.limits.http_request_timeout = Duration::from_millis(1500);
        },
        vec![],
    )
    .await;
    let addr = t.api.base.trim_start_matches("http://").to_string();
    // A request whose body never comes holds the one slot.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/public/tenants/main/virtual-networks HTTP/1.1\r\nHost: fm\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        basic(&t.api.key.0, &t.api.key.1)
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = t
        .api
        .http
        .get(t.api.url("/tenants/main/images"))
        .basic_auth(&t.api.key.0, Some(&t.api.key.1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["errorType"], "Unavailable");
    // The stuck request is answered 503 at its timeout, and frees the slot.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(4), async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = slow.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let (status, _) = t.api.get("/tenants/main/images").await;
    assert_eq!(status, 200);
    t.stop().await;
}

#[tokio::test]
async fn a_flood_of_bad_credentials_reads_the_keys_from_the_store_at_most_once_a_second() {
    let t = TestApp::new().await;
    let (status, _) = t.api.get("/tenants/main/images").await;
    assert_eq!(status, 200);
    let before = t.app.auth_store_reads();
    let start = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..400 {
        let (http, url) = (t.api.http.clone(), t.api.url("/tenants/main/images"));
        // Unknown ids, and the right id with a wrong secret.
        let id = if i % 2 == 0 {
            format!("key-unknown-{i}")
        } else {
            t.api.key.0.clone()
        };
        calls.spawn(async move {
            http.get(url)
                .basic_auth(id, Some("wrong"))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(s) = calls.join_next().await {
        assert_eq!(s.unwrap(), 401);
    }
    let reads = t.app.auth_store_reads() - before;
    let allowed = 1 + start.elapsed().as_secs();
    assert!(
        reads <= allowed,
        "{reads} reads of the keys for 400 bad credentials in {:?}",
        start.elapsed()
    );
    // A key created now works at once; a deleted one stops at once.
    let key = t
        .app
        .api_key_create("admin", None, None, None)
        .await
        .unwrap();
    let ok = t
        .api
        .http
        .get(t.api.url("/tenants/main/images"))
        .basic_auth(&key.id, Some(&key.secret))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    t.app.api_key_delete(&key.id).await.unwrap();
    let gone = t
        .api
        .http
        .get(t.api.url("/tenants/main/images"))
        .basic_auth(&key.id, Some(&key.secret))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 401);
    t.stop().await;
}

#[tokio::test]
async fn idle_connections_to_the_agent_port_are_closed_after_the_handshake_timeout() {
    let t = TestApp::with(
        |c| c.limits.agent_handshake_timeout = Duration::from_millis(500),
        vec![],
    )
    .await;
    let addr = t.agent_addr();
    let mut conns = Vec::new();
    for _ in 0..200 {
        conns.push(TcpStream::connect(addr).await.unwrap());
    }
    // One that starts a handshake and stalls fares no better.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x40])
        .await
        .unwrap();
    conns.push(partial);
    let start = Instant::now();
    for c in &mut conns {
        assert!(
            closed_within(c, Duration::from_secs(4)).await,
            "an idle agent connection is open after {:?}",
            start.elapsed()
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    t.stop().await;
}
