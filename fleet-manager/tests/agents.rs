//! The agent endpoint: enrollment tokens and certificates.

mod common;

use common::TestApp;
use fleet_manager::agents::grpc::token_hash;
use fm_proto::agent::EnrollRequest;
use fm_proto::agent::enrollment_client::EnrollmentClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

fn csr(instance: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, instance);
    params.serialize_request(&key).unwrap().pem().unwrap()
}

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
