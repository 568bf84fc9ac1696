//! The agent endpoint: enrollment tokens and certificates.

mod common;

use common::TestApp;
use fleet_manager::agents::grpc::token_hash;
use fm_proto::agent::EnrollRequest;
use fm_proto::agent::enrollment_client::EnrollmentClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use common::csr;

/// A TLS channel to the app's agent endpoint, with a client identity
/// (certificate and key PEM) for mutual TLS if given.
async fn channel(t: &TestApp, identity: Option<(&str, &str)>) -> Channel {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = t.app.engine.services().ca.cert_pem.clone();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://127.0.0.1:{}", t.agent_addr().port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn client(t: &TestApp) -> EnrollmentClient<Channel> {
    EnrollmentClient::new(channel(t, None).await)
}

fn request(instance: &str, token: &str, csr_pem: &str) -> EnrollRequest {
    EnrollRequest {
        instance_id: instance.into(),
        token: token.into(),
        csr_pem: csr_pem.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_token_enrolls_one_key_and_that_key_may_ask_again() {
    let t = TestApp::new().await;
    t.app
        .store
        .token_insert(&token_hash("tok-1"), "inst-enroll", "vm-1", 60_000)
        .await
        .unwrap();
    let mut c = client(&t).await;
    let mine = csr("inst-enroll");
    let cert = c
        .enroll(request("inst-enroll", "tok-1", &mine))
        .await
        .unwrap()
        .into_inner();
    let der = rustls_pemfile_der(&cert.certificate_pem);
    assert_eq!(
        fleet_manager::pki::agent_identity(&der),
        Some(("inst-enroll".to_string(), "vm-1".to_string())),
        "the certificate names the instance and the VM, whatever the CSR asked"
    );
    // The answer was lost: the same key asks again with the same token.
    assert!(
        c.enroll(request("inst-enroll", "tok-1", &mine))
            .await
            .is_ok()
    );
    // Another key can't use the token.
    let err = c
        .enroll(request("inst-enroll", "tok-1", &csr("inst-enroll")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    // Nor can the token serve another instance.
    let err = c
        .enroll(request("inst-other", "tok-1", &mine))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    t.stop().await;
}

#[tokio::test]
async fn a_bad_csr_does_not_use_up_the_token_and_expired_tokens_are_refused() {
    let t = TestApp::new().await;
    t.app
        .store
        .token_insert(&token_hash("tok-2"), "inst-e2", "vm-2", 60_000)
        .await
        .unwrap();
    t.app
        .store
        .token_insert(&token_hash("tok-old"), "inst-e2", "vm-2", -1)
        .await
        .unwrap();
    let mut c = client(&t).await;
    let err = c
        .enroll(request("inst-e2", "tok-2", "not a CSR"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        c.enroll(request("inst-e2", "tok-2", &csr("inst-e2")))
            .await
            .is_ok()
    );
    let err = c
        .enroll(request("inst-e2", "tok-old", &csr("inst-e2")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let err = c
        .enroll(request("inst-e2", "never-issued", &csr("inst-e2")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    t.stop().await;
}

/// The DER of the first certificate in a PEM string.
fn rustls_pemfile_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[tokio::test]
async fn an_agent_renews_its_certificate_for_the_same_instance_and_vm_only_while_current() {
    use fleet_manager::store::entities::instance_runtime;
    use fleet_manager::store::lifecycle::{runtime_ensure, runtime_set};
    use fm_proto::agent::RenewRequest;
    use fm_proto::agent::agent_service_client::AgentServiceClient;
    let t = TestApp::new().await;
    let conn = t.app.store.conn();
    runtime_ensure(conn, "main", "inst-r").await.unwrap();
    runtime_set(
        conn,
        "inst-r",
        vec![(
            instance_runtime::Column::VmId,
            Some("vm-r".to_string()).into(),
        )],
    )
    .await
    .unwrap();
    t.app
        .store
        .token_insert(&token_hash("tok-r"), "inst-r", "vm-r", 60_000)
        .await
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "inst-r");
    let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let first = client(&t)
        .await
        .enroll(request("inst-r", "tok-r", &csr_pem))
        .await
        .unwrap()
        .into_inner();
    let year = 365 * 86_400_000i64;
    assert!(first.not_after_ms > fleet_manager::model::now_ms() + year - 86_400_000);

    // Mutual TLS with the certificate just issued.
    let key_pem = key.serialize_pem();
    let ch = channel(&t, Some((&first.certificate_pem, &key_pem))).await;
    let mut svc = AgentServiceClient::new(ch);
    let renewed = svc
        .renew(RenewRequest {
            csr_pem: csr("anything"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        fleet_manager::pki::agent_identity(&rustls_pemfile_der(&renewed.certificate_pem)),
        Some(("inst-r".to_string(), "vm-r".to_string()))
    );
    assert!(renewed.not_after_ms >= first.not_after_ms);

    // Once the instance has another VM, the old VM's certificate renews nothing.
    runtime_set(
        conn,
        "inst-r",
        vec![(
            instance_runtime::Column::VmId,
            Some("vm-new".to_string()).into(),
        )],
    )
    .await
    .unwrap();
    let err = svc
        .renew(RenewRequest { csr_pem: csr("x") })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    t.stop().await;
}

/// Points the instance's runtime at `vm` (creating the runtime row).
async fn set_vm(t: &TestApp, instance: &str, vm: &str) {
    use fleet_manager::store::entities::instance_runtime;
    use fleet_manager::store::lifecycle::{runtime_ensure, runtime_set};
    let conn = t.app.store.conn();
    runtime_ensure(conn, "main", instance).await.unwrap();
    runtime_set(
        conn,
        instance,
        vec![(instance_runtime::Column::VmId, Some(vm.to_string()).into())],
    )
    .await
    .unwrap();
}

/// An agent session of `instance` on `vm` over mutual TLS: what it sends
/// and what FM sends it.
async fn open_session(
    t: &TestApp,
    instance: &str,
    vm: &str,
) -> (
    tokio::sync::mpsc::Sender<fm_proto::agent::AgentMessage>,
    tonic::Streaming<fm_proto::agent::FmMessage>,
) {
    use fm_proto::agent::agent_message::Body;
    use fm_proto::agent::agent_service_client::AgentServiceClient;
    use fm_proto::agent::{AgentMessage, Hello};
    let token = format!("tok-{instance}-{vm}");
    t.app
        .store
        .token_insert(&token_hash(&token), instance, vm, 60_000)
        .await
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, instance);
    let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let cert = client(t)
        .await
        .enroll(request(instance, &token, &csr_pem))
        .await
        .unwrap()
        .into_inner()
        .certificate_pem;
    let ch = channel(t, Some((&cert, &key.serialize_pem()))).await;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(AgentMessage {
        generation: 1,
        body: Some(Body::Hello(Hello {
            instance_id: instance.into(),
            agent_version: "test".into(),
            journal: vec![],
        })),
    })
    .await
    .unwrap();
    let inbound = AgentServiceClient::new(ch)
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, inbound)
}

#[tokio::test]
async fn a_result_forged_on_an_old_vms_session_is_not_taken() {
    use fm_proto::agent::agent_message::Body;
    use fm_proto::agent::{AgentMessage, Command, CommandResult, fm_message};
    use std::time::Duration;
    let t = TestApp::new().await;
    let hub = t.app.engine.services().hub.clone();
    set_vm(&t, "inst-m7", "vm-1").await;
    let (old_tx, mut old_rx) = open_session(&t, "inst-m7", "vm-1").await;
    set_vm(&t, "inst-m7", "vm-2").await;
    let (new_tx, mut new_rx) = open_session(&t, "inst-m7", "vm-2").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while hub.connected_vm("inst-m7").as_deref() != Some("vm-2") {
        assert!(
            std::time::Instant::now() < deadline,
            "the new session never registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The new session ended the old one's stream.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match old_rx.message().await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the old VM's stream is still open");

    let run = {
        let hub = hub.clone();
        tokio::spawn(async move {
            hub.run_command(
                "inst-m7",
                Command {
                    command_id: "op:x".into(),
                    ..Default::default()
                },
                None,
                Duration::from_secs(10),
            )
            .await
        })
    };
    // The command reaches the new VM's agent only.
    let got = tokio::time::timeout(Duration::from_secs(5), new_rx.message())
        .await
        .expect("the command reaches the new agent")
        .unwrap()
        .unwrap();
    assert!(
        matches!(got.body, Some(fm_message::Body::Command(ref c)) if c.command_id == "op:x"),
        "{got:?}"
    );
    // The old VM's agent forges the result (its stream may be gone already).
    let _ = old_tx
        .send(AgentMessage {
            generation: 2,
            body: Some(Body::Result(CommandResult {
                command_id: "op:x".into(),
                ok: true,
                output_json: "{\"forged\":1}".into(),
                ..Default::default()
            })),
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!run.is_finished(), "a forged result completed the command");
    new_tx
        .send(AgentMessage {
            generation: 2,
            body: Some(Body::Result(CommandResult {
                command_id: "op:x".into(),
                ok: true,
                output_json: "{\"real\":1}".into(),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    let r = run.await.unwrap().unwrap();
    assert_eq!(r.output_json, "{\"real\":1}");
    t.stop().await;
}

#[tokio::test]
async fn failed_enrollments_are_limited_per_source_and_leave_no_note_on_an_instance() {
    use std::time::Duration;
    let t = TestApp::with(|c| c.limits.enroll_failures_per_minute = 5, vec![]).await;
    set_vm(&t, "inst-flood", "vm-1").await;
    let mut c = client(&t).await;
    let csr_pem = csr("inst-flood");
    let mut codes = vec![];
    for i in 0..8 {
        let err = c
            .enroll(request("inst-flood", &format!("guess-{i}"), &csr_pem))
            .await
            .unwrap_err();
        codes.push(err.code());
    }
    assert_eq!(codes[..5], [tonic::Code::PermissionDenied; 5], "{codes:?}");
    assert!(
        codes[5..]
            .iter()
            .all(|c| *c == tonic::Code::ResourceExhausted),
        "{codes:?}"
    );
    // Guessed tokens leave no "refused" note on the provisioning waiting
    // for the agent: only a token FM issued would.
    let err = t
        .app
        .engine
        .services()
        .hub
        .wait_connected("inst-flood", "vm-1", Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(!err.message().contains("refused"), "{}", err.message());
    t.stop().await;
}

/// The periodic sweep ends the session of an agent whose VM the instance
/// no longer has, and leaves the current VM's alone.
#[tokio::test]
async fn a_session_from_a_replaced_vm_is_ended_by_the_sweep() {
    use std::time::Duration;
    let t = TestApp::new().await;
    let hub = t.app.engine.services().hub.clone();
    set_vm(&t, "inst-sw", "vm-1").await;
    let (_old_tx, mut old_rx) = open_session(&t, "inst-sw", "vm-1").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while hub.connected_vm("inst-sw").as_deref() != Some("vm-1") {
        assert!(std::time::Instant::now() < deadline, "never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        hub.close_stale_sessions().await.unwrap(),
        0,
        "current VM kept"
    );
    set_vm(&t, "inst-sw", "vm-2").await;
    assert_eq!(hub.close_stale_sessions().await.unwrap(), 1);
    assert_eq!(hub.connected_vm("inst-sw"), None);
    // The old agent's stream ends.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match old_rx.message().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await
    .expect("the old stream ends");
    let _ = end;
}

#[tokio::test]
async fn an_agents_log_is_taken_only_from_the_agent_asked_and_kept_bounded() {
    use fleet_manager::agents::AgentLog;
    use fm_proto::agent::agent_message::Body;
    use fm_proto::agent::{AgentMessage, LogLines, fm_message};
    use std::time::Duration;
    let t = TestApp::new().await;
    let hub = t.app.engine.services().hub.clone();
    assert_eq!(hub.agent_log("inst-l1").await, AgentLog::NotConnected);
    set_vm(&t, "inst-l1", "vm-1").await;
    set_vm(&t, "inst-l2", "vm-2").await;
    let (tx1, mut rx1) = open_session(&t, "inst-l1", "vm-1").await;
    let (tx2, _rx2) = open_session(&t, "inst-l2", "vm-2").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while hub.connected_vm("inst-l1").is_none() || hub.connected_vm("inst-l2").is_none() {
        assert!(std::time::Instant::now() < deadline, "no sessions");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ask = {
        let hub = hub.clone();
        tokio::spawn(async move { hub.agent_log("inst-l1").await })
    };
    let got = tokio::time::timeout(Duration::from_secs(5), rx1.message())
        .await
        .expect("the request reaches the agent")
        .unwrap()
        .unwrap();
    let Some(fm_message::Body::LogRequest(req)) = got.body else {
        panic!("not a log request: {got:?}");
    };
    let answer = |request_id: u64, lines: Vec<String>| AgentMessage {
        generation: 2,
        body: Some(Body::LogLines(LogLines { request_id, lines })),
    };
    // Another instance's agent answers for it, then the agent answers
    // another request: neither is taken.
    tx2.send(answer(req.request_id, vec!["forged".into()]))
        .await
        .unwrap();
    tx1.send(answer(req.request_id + 1000, vec!["stale".into()]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!ask.is_finished(), "a wrong answer was taken");
    let mut lines: Vec<String> = (0..150).map(|i| format!("line {i}")).collect();
    lines.push("é".repeat(5000));
    tx1.send(answer(req.request_id, lines)).await.unwrap();
    let AgentLog::Lines(got) = ask.await.unwrap() else {
        panic!("no lines");
    };
    assert_eq!(got.len(), 100);
    assert_eq!(got[0], "line 51");
    assert!(got[99].len() <= 1604 && got[99].starts_with('é'));
    // An agent that never answers costs its caller a bounded wait.
    let t0 = std::time::Instant::now();
    assert_eq!(hub.agent_log("inst-l2").await, AgentLog::NoAnswer);
    assert!(t0.elapsed() < Duration::from_secs(10));
    t.stop().await;
}
