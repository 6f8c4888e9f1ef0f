//! `rediss://` against a TLS-enabled server with certificates made for the test.

use std::{path::Path, process::Command};

use redis_core::{Config, Redis};
use redis_test_support::{TestServer, free_port};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is needed to make test certificates");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=redis-patterns test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

#[tokio::test]
async fn rediss_urls_verify_the_server_against_the_configured_ca() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let tls_port = free_port();
    let path = |f: &str| certs.path().join(f).to_string_lossy().into_owned();
    let _server = TestServer::builder()
        .args(["--tls-port".to_owned(), tls_port.to_string()])
        .args(["--tls-cert-file".to_owned(), path("server.crt")])
        .args(["--tls-key-file".to_owned(), path("server.key")])
        .args(["--tls-ca-cert-file".to_owned(), path("ca.crt")])
        .args(["--tls-auth-clients", "no"])
        .spawn();
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let ca = std::fs::read(certs.path().join("ca.crt")).unwrap();

    let config = Config::builder()
        .url(&url)
        .tls_root_cert_pem(ca)
        .build()
        .unwrap();
    let redis = Redis::connect(&config).await.unwrap();
    let _: () = redis
        .query(redis::cmd("SET").arg("over-tls").arg(1))
        .await
        .unwrap();
    let value: i64 = redis
        .query(redis::cmd("GET").arg("over-tls"))
        .await
        .unwrap();
    assert_eq!(value, 1);
    let mut dedicated = redis.dedicated().await.unwrap();
    let pong: String = redis::cmd("PING")
        .query_async(&mut dedicated)
        .await
        .unwrap();
    assert_eq!(pong, "PONG");

    // Without the CA the certificate is not trusted: a connection error, not a panic or a hang.
    let err = Redis::open(&url).await.unwrap_err();
    assert!(
        err.is_connection_error() || matches!(err, redis_core::Error::Redis(_)),
        "{err:?}"
    );
}
