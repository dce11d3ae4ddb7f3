//! The TLS listener: only TLS 1.2 and 1.3 with AEAD suites; old hellos and plain HTTP are
//! refused on the TLS port; answers over HTTPS carry HSTS and the other security headers.
//!
//! The hellos are written byte by byte (RFC 5246 §7.4.1.2, RFC 8446 §4.1.2), because no
//! maintained client still sends TLS 1.0 or 1.1. Each refused hello has a twin that differs
//! only in what is under test and gets a ServerHello, so a refusal is not just a broken hello.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use valet_service::config::Config;
use valet_service::server::{self, Running};
use valet_service::store::dev::DevStore;

/// TLS 1.0, 1.1, 1.2 as `ProtocolVersion`.
const TLS1_0: u16 = 0x0301;
const TLS1_1: u16 = 0x0302;
const TLS1_2: u16 = 0x0303;

/// ECDHE-ECDSA/RSA with AES-GCM: suites rustls offers for TLS 1.2.
const AEAD_SUITES: &[u16] = &[0xc02b, 0xc02f, 0xc02c, 0xc030];
/// RSA key exchange and CBC: what TLS 1.0 clients offered; no forward secrecy, no AEAD.
const LEGACY_SUITES: &[u16] = &[0x002f, 0x0035, 0xc013, 0xc014, 0x000a];

async fn tls_service(dir: &std::path::Path) -> (Running, DevStore) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let store = DevStore::start(&dir.join("store")).await.unwrap();
    let config = Config::from_toml(&format!(
        r#"
        listen = "127.0.0.1:0"
        data_dir = "{}"
        [tls]
        cert = "{}"
        key = "{}"
        [store]
        endpoint = "{}"
        bucket = "valet"
        path_style = true
        create_bucket = true
        verify = "read-back"
        tag_objects = false
        "#,
        dir.display(),
        cert_path.display(),
        key_path.display(),
        store.endpoint
    ))
    .unwrap();
    let running = server::start(config, &store.credentials).await.unwrap();
    (running, store)
}

/// A ClientHello record: `record_version` on the record, `hello_version` in the hello, the
/// suites, and the extensions a TLS 1.2 ECDHE handshake needs (SNI, groups, point formats,
/// signature algorithms); no `supported_versions`, so it offers nothing above `hello_version`.
fn client_hello(record_version: u16, hello_version: u16, suites: &[u16]) -> Vec<u8> {
    fn u16s(values: &[u16]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }
    fn with_len16(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }
    fn extension(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend(with_len16(body));
        out
    }
    let host = b"localhost";
    let mut sni = vec![0u8];
    sni.extend(with_len16(host));
    let mut extensions = extension(0x0000, &with_len16(&sni));
    extensions.extend(extension(0x000a, &with_len16(&u16s(&[0x001d, 0x0017]))));
    extensions.extend(extension(0x000b, &[1, 0]));
    extensions.extend(extension(
        0x000d,
        &with_len16(&u16s(&[0x0403, 0x0804, 0x0401])),
    ));

    let mut hello = hello_version.to_be_bytes().to_vec();
    hello.extend([7u8; 32]); // random
    hello.push(0); // no session id
    hello.extend(with_len16(&u16s(suites)));
    hello.extend([1, 0]); // compression: null only
    hello.extend(with_len16(&extensions));

    let mut handshake = vec![1u8]; // client_hello
    handshake.extend(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend(hello);

    let mut record = vec![0x16]; // handshake
    record.extend(record_version.to_be_bytes());
    record.extend(with_len16(&handshake));
    record
}

/// What the server sends back first.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    ServerHello,
    /// A fatal alert with this description (70 protocol_version, 40 handshake_failure).
    Alert(u8),
    Closed,
    Other(Vec<u8>),
}

fn send_hello(addr: SocketAddr, hello: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(hello).unwrap();
    let mut head = [0u8; 7];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    match (read, head) {
        (0, _) => Answer::Closed,
        (7, [0x16, 0x03, _, _, _, 0x02, _]) => Answer::ServerHello,
        (7, [0x15, 0x03, _, _, _, 2, description]) => Answer::Alert(description),
        _ => Answer::Other(head[..read].to_vec()),
    }
}

#[tokio::test]
async fn only_tls_1_2_and_up_with_aead_suites_and_no_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let (running, _store) = tls_service(dir.path()).await;
    let addr = running.local_addr;
    let answers = tokio::task::spawn_blocking(move || {
        let ask = |record, hello, suites| send_hello(addr, &client_hello(record, hello, suites));
        let plain = {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            answer
        };
        (
            ask(TLS1_2, TLS1_2, AEAD_SUITES),
            ask(TLS1_0, TLS1_0, AEAD_SUITES),
            ask(TLS1_0, TLS1_0, LEGACY_SUITES),
            ask(TLS1_0, TLS1_1, AEAD_SUITES),
            ask(TLS1_0, TLS1_2, LEGACY_SUITES),
            plain,
        )
    })
    .await
    .unwrap();
    let (tls12, tls10, tls10_legacy, tls11, tls12_legacy, plain) = answers;
    assert_eq!(
        tls12,
        Answer::ServerHello,
        "the control: a TLS 1.2 hello with AEAD suites is answered"
    );
    assert_eq!(
        tls10,
        Answer::Alert(70),
        "TLS 1.0 refused: protocol_version"
    );
    assert_eq!(
        tls10_legacy,
        Answer::Alert(70),
        "TLS 1.0 with its own suites refused"
    );
    assert_eq!(
        tls11,
        Answer::Alert(70),
        "TLS 1.1 refused: protocol_version"
    );
    assert_eq!(
        tls12_legacy,
        Answer::Alert(40),
        "TLS 1.2 with only RSA key exchange and CBC suites refused: handshake_failure"
    );
    assert!(
        !plain.starts_with(b"HTTP/"),
        "plain HTTP on the TLS port gets no HTTP answer: {:?}",
        String::from_utf8_lossy(&plain)
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn https_answers_carry_hsts_and_the_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (running, _store) = tls_service(dir.path()).await;
    valet_service::install_tls_provider();
    // The self-signed certificate is trusted by skipping verification: under test are the
    // headers, not the certificate.
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    for path in ["/healthz", "/v1/me", "/no/such/route"] {
        let answer = http
            .get(format!("{}{path}", running.url))
            .send()
            .await
            .unwrap();
        let headers = answer.headers();
        for (name, value) in [
            ("strict-transport-security", "max-age=31536000"),
            ("x-content-type-options", "nosniff"),
            ("cache-control", "no-store"),
            ("referrer-policy", "no-referrer"),
            ("x-frame-options", "DENY"),
            (
                "content-security-policy",
                "default-src 'none'; frame-ancestors 'none'",
            ),
        ] {
            assert_eq!(
                headers.get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{path} ({}): {name}",
                answer.status()
            );
        }
    }
    running.shutdown().await.unwrap();
}
