//! `herald token` mints development tokens that the server accepts ([auth]).
//!
//! Runs the built binary (`CARGO_BIN_EXE_herald`) against a configuration file, then
//! presents the token to an in-process server configured from the same file.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "herald-tests-only-hmac-secret-0123456789";

fn fixture(name: &str) -> String {
    format!(
        "{}/../herald/tests/fixtures/auth/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Writes `toml` to a fresh file and returns its path.
fn config_file(name: &str, toml: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-token-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, toml).unwrap();
    path
}

/// Runs `herald token ARGS`; Ok(stdout) on success, Err(stderr) otherwise.
fn herald_token(args: &[&str]) -> Result<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("token")
        .args(args)
        .env_remove("HERALD_CONFIG")
        .output()
        .expect("herald runs");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap().trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

struct Running {
    stomp: std::net::SocketAddr,
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for Running {
    /// Shuts the server down.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

async fn start(config_path: &std::path::Path) -> Running {
    let mut config = herald::Config::load(Some(config_path)).expect("config loads");
    config.server.http = "127.0.0.1:0".parse().unwrap();
    config.server.stomp = Some("127.0.0.1:0".parse().unwrap());
    // Each test server its own in-memory notification store (not ./herald.db, which
    // parallel tests would race to migrate).
    config.database.url = "sqlite::memory:".into();
    let server = herald::Server::bind(config).await.expect("binds");
    let stomp = server.stomp_addr().unwrap();
    let shutdown = server.shutdown_token();
    tokio::spawn(server.run());
    Running {
        stomp,
        stop: Some(Box::new(move || shutdown.cancel())),
    }
}

/// Sends `frames` (each ends with NUL) and returns the next frame's text.
async fn exchange(stream: &mut TcpStream, frame: &str) -> String {
    stream.write_all(frame.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    let read = async {
        loop {
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => break,
                Ok(_) if byte[0] == 0 => break,
                Ok(_) if out.is_empty() && byte[0] == b'\n' => {} // heart-beat
                Ok(_) => out.push(byte[0]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("a frame in time");
    String::from_utf8_lossy(&out).into_owned()
}

/// CONNECT with the token; returns the connection and the CONNECTED/ERROR text.
async fn connect(r: &Running, token: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(r.stomp).await.unwrap();
    let answer = exchange(
        &mut s,
        &format!("CONNECT\naccept-version:1.2\nhost:localhost\nAuthorization:Bearer {token}\n\n\0"),
    )
    .await;
    (s, answer)
}

#[tokio::test]
async fn minted_hs256_token_is_accepted_with_its_roles() {
    let path = config_file(
        "hs.toml",
        &format!(
            "[auth]\nrequired = true\n\n[[auth.issuers]]\nissuer = \"https://dev.test\"\nsecret = \"{SECRET}\"\n"
        ),
    );
    let p = path.to_str().unwrap();
    let admin = herald_token(&[
        "--sub", "alice", "--role", "ADMIN", "--ttl", "1h", "--config", p,
    ])
    .expect("herald token succeeds");
    assert_eq!(admin.split('.').count(), 3, "a JWT: {admin}");

    // Its claims: sub, roles, iss, and exp one hour after iat.
    let config = herald::Config::load(Some(&path)).unwrap();
    let auth = config.new_auth().unwrap();
    let claims = auth
        .verifier
        .as_ref()
        .unwrap()
        .verify(&admin)
        .await
        .expect("verifies");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["iss"], "https://dev.test");
    assert_eq!(claims["roles"].to_string(), r#"["ADMIN"]"#);
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 3600);

    let r = start(&path).await;
    let (mut s, answer) = connect(&r, &admin).await;
    assert!(answer.starts_with("CONNECTED"), "{answer}");
    assert!(answer.contains("\nuser-name:alice"), "{answer}");
    // ADMIN may subscribe to /topic/admin/**.
    let receipt = exchange(
        &mut s,
        "SUBSCRIBE\nid:1\ndestination:/topic/admin/stats\nreceipt:r1\n\n\0",
    )
    .await;
    assert!(receipt.starts_with("RECEIPT"), "{receipt}");

    // Without the role: connected, but not to admin topics.
    let user = herald_token(&["--sub", "bob", "--config", p]).unwrap();
    let (mut s, answer) = connect(&r, &user).await;
    assert!(answer.contains("\nuser-name:bob"), "{answer}");
    let refused = exchange(
        &mut s,
        "SUBSCRIBE\nid:1\ndestination:/topic/admin/stats\nreceipt:r1\n\n\0",
    )
    .await;
    assert!(refused.starts_with("ERROR"), "{refused}");
}

#[tokio::test]
async fn minted_asymmetric_tokens_are_accepted() {
    // One issuer per key kind: herald token signs with private_key_file, the server
    // verifies with public_key_file.
    let mut toml = String::from("[auth]\nrequired = true\n");
    for (iss, key) in [("rsa", "rsa1"), ("ec", "ec256"), ("ed", "ed25519")] {
        toml.push_str(&format!(
            "\n[[auth.issuers]]\nissuer = \"https://{iss}.test\"\npublic_key_file = \"{}\"\nprivate_key_file = \"{}\"\n",
            fixture(&format!("{key}.pub.pem")),
            fixture(&format!("{key}.key.pem")),
        ));
    }
    let path = config_file("keys.toml", &toml);
    let p = path.to_str().unwrap();
    let r = start(&path).await;
    for iss in ["https://rsa.test", "https://ec.test", "https://ed.test"] {
        let t = herald_token(&[
            "--sub", "alice", "--issuer", iss, "--ttl", "15m", "--config", p,
        ])
        .unwrap_or_else(|e| panic!("{iss}: {e}"));
        let (_s, answer) = connect(&r, &t).await;
        assert!(answer.starts_with("CONNECTED"), "{iss}: {answer}");
        assert!(answer.contains("\nuser-name:alice"), "{iss}: {answer}");
    }
    // A token minted by one issuer's key is not accepted under another's name: the
    // issuer is in the token, and a foreign one is refused.
    let t = herald_token(&[
        "--sub",
        "alice",
        "--issuer",
        "https://nope.test",
        "--config",
        p,
    ]);
    assert!(t.is_err(), "no such issuer: {t:?}");
}

#[tokio::test]
async fn token_is_refused_when_no_issuer_can_sign() {
    let path = config_file("anon.toml", "[auth]\nrequired = false\n");
    let e = herald_token(&["--sub", "alice", "--config", path.to_str().unwrap()]).unwrap_err();
    assert!(e.contains("no configured issuer can sign"), "{e}");
    // Public key only: cannot sign either.
    let toml = format!(
        "[[auth.issuers]]\nissuer = \"x\"\npublic_key_file = \"{}\"\n",
        fixture("rsa1.pub.pem")
    );
    let path = config_file("pub-only.toml", &toml);
    let e = herald_token(&["--sub", "alice", "--config", path.to_str().unwrap()]).unwrap_err();
    assert!(e.contains("no configured issuer can sign"), "{e}");
}

#[tokio::test]
async fn expired_minted_token_is_refused() {
    let path = config_file(
        "short.toml",
        &format!(
            "[auth]\nleeway = \"0s\"\n\n[[auth.issuers]]\nissuer = \"https://dev.test\"\nsecret = \"{SECRET}\"\n"
        ),
    );
    let t = herald_token(&[
        "--sub",
        "alice",
        "--ttl",
        "1s",
        "--config",
        path.to_str().unwrap(),
    ])
    .unwrap();
    let r = start(&path).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_s, answer) = connect(&r, &t).await;
    assert!(answer.starts_with("ERROR"), "{answer}");
    assert!(answer.contains("token expired"), "{answer}");
}
