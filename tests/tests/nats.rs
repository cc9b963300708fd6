//! Several real `rt-server` processes on NATS JetStream: the multi-node scenarios every
//! distributed backplane passes (tests/tests/cluster/scenarios.rs: fan-out across nodes and
//! transports, exact resume on another node, one order under concurrent publishers,
//! idempotent retries), NATS killed and restarted with and without its store under a running
//! publisher, and nodes that authenticate to NATS (an NKey seed file, a `.creds` file) and
//! reach it over TLS with a client certificate.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod cluster;

use cluster::scenarios::{self, Backplane};
use cluster::{prefix, publish, wait_health, ws_recv, ws_subscribe};
use http::StatusCode;
use rt_tests::{nats_url, NatsServer, Server, TlsCert};

#[tokio::test]
async fn websocket_and_sse_on_two_nodes_get_what_a_third_publishes() {
    scenarios::fanout(&nats_url()).await;
}

#[tokio::test]
async fn websocket_and_sse_cut_from_one_node_resume_on_another_and_poll_cursors_travel() {
    scenarios::resume(&nats_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_on_every_node_give_one_order() {
    scenarios::order(&nats_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_retried_on_other_nodes_is_stored_once() {
    scenarios::idempotent_retry(&nats_url()).await;
}

/// A `nats-server -js` of this test, killed and started again with its store, or with its
/// store deleted.
struct Nats {
    server: NatsServer,
    wipe: bool,
}

impl Backplane for Nats {
    const NAME: &'static str = "NATS";

    fn url(&self) -> String {
        self.server.url()
    }

    fn stop(&mut self) {
        self.server.stop();
    }

    fn restart(&mut self) {
        if self.wipe {
            self.server.wipe();
        } else {
            self.server.resume();
        }
    }

    fn keeps_data(&self) -> bool {
        !self.wipe
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_with_its_store_loses_nothing_acknowledged() {
    scenarios::outage(&mut Nats {
        server: NatsServer::start(),
        wipe: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_without_its_store_starts_a_new_epoch_and_clients_learn_of_the_gap() {
    scenarios::outage(&mut Nats {
        server: NatsServer::start(),
        wipe: true,
    })
    .await;
}

/// Node `a`'s WebSocket subscriber receives what node `b` publishes.
async fn one_event_across(a: &Server, b: &Server) {
    wait_health(a, "ok").await;
    wait_health(b, "ok").await;
    let (mut ws, _) = ws_subscribe(a, &["private"], None).await;
    let (status, ack) = publish(b, "private", "hello").await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let e = ws_recv(&mut ws).await;
    assert_eq!(
        (e["data"].as_str(), e["offset"].as_u64()),
        (Some("hello"), Some(1))
    );
}

/// A node NATS does not let in starts degraded and answers publishes with `503`.
async fn refused(args: &[&str]) {
    let node = Server::start(args).await;
    let health = cluster::health(&node).await;
    assert_eq!(health["status"], "degraded", "{health}");
    let (status, _) = publish(&node, "private", "x").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

/// Two nodes on `nats` with `option` naming a file that holds `secret` exchange an event; a
/// node without it is refused.
async fn authenticated(nats: &NatsServer, option: &str, secret: &str) {
    let dir = rt_tests::target_dir()
        .join("rt-tests-nats")
        .join(rt_tests::unique("secret"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, secret).unwrap();
    let url = nats.url();
    let prefix = prefix("auth");
    let args = [
        "--backplane",
        &url,
        "--redis-prefix",
        &prefix,
        option,
        file.to_str().unwrap(),
    ];
    let a = Server::start(&args).await;
    let b = Server::start(&args).await;
    one_event_across(&a, &b).await;
    refused(&args[..4]).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn nodes_authenticate_to_nats_with_an_nkey_seed_file() {
    let user = nkeys::KeyPair::new_user();
    let nats = NatsServer::start_with_config(&format!(
        "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
        user.public_key()
    ));
    authenticated(&nats, "--nats-nkey", &format!("{}\n", user.seed().unwrap())).await;
}

#[tokio::test]
async fn nodes_reach_nats_over_tls_with_a_client_certificate() {
    let (server_cert, client_cert) = (TlsCert::localhost(), TlsCert::localhost());
    // The server requires TLS and a client certificate that its CA file vouches for.
    let nats = NatsServer::start_with_config(&format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n}}\n",
        server_cert.cert_pem, server_cert.key_pem, client_cert.cert_pem,
    ));
    let url = format!("nats://localhost:{}", nats.port());
    let prefix = prefix("tls");
    let (ca, cert, key) = (
        server_cert.cert_pem.to_str().unwrap(),
        client_cert.cert_pem.to_str().unwrap(),
        client_cert.key_pem.to_str().unwrap(),
    );
    let base = ["--backplane", &url, "--redis-prefix", &prefix];
    let args: Vec<&str> = base
        .iter()
        .copied()
        .chain([
            "--nats-tls-ca",
            ca,
            "--nats-tls-cert",
            cert,
            "--nats-tls-key",
            key,
        ])
        .collect();
    let a = Server::start(&args).await;
    let b = Server::start(&args).await;
    one_event_across(&a, &b).await;
    // Without the CA the server is not trusted; without the client certificate the server
    // does not let the node in.
    refused(&base).await;
    refused(&args[..6]).await;
    for cert in [server_cert, client_cert] {
        let _ = std::fs::remove_dir_all(cert.dir());
    }
}

/// A NATS JWT: `claims` with the common fields, issued (signed) by `issuer` for `subject`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, nats: serde_json::Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let header = B64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "jti": rt_tests::unique("jti"),
        "iat": iat,
        "iss": issuer.public_key(),
        "name": subject,
        "sub": subject,
        "nats": nats,
    });
    let signed = format!("{header}.{}", B64.encode(claims.to_string()));
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", B64.encode(signature))
}

#[tokio::test]
async fn nodes_authenticate_to_nats_with_a_creds_file() {
    // Decentralised authentication: an operator vouches for an account (with JetStream), the
    // account for the user whose JWT and seed make the `.creds` file (what `nsc` writes).
    let (operator, account, user) = (
        nkeys::KeyPair::new_operator(),
        nkeys::KeyPair::new_account(),
        nkeys::KeyPair::new_user(),
    );
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        serde_json::json!({"type": "account", "version": 2, "limits": unlimited}),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        serde_json::json!({"type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1}),
    );
    // JetStream needs a system account.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        serde_json::json!({"type": "account", "version": 2}),
    );
    let nats = NatsServer::start_with_config(&format!(
        "operator: {operator_jwt:?}\nsystem_account: {system}\nresolver: MEMORY\n\
         resolver_preload: {{\n  {account}: {account_jwt:?}\n  {system}: {system_jwt:?}\n}}\n",
        system = system.public_key(),
        account = account.public_key(),
    ));
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
        user.seed().unwrap()
    );
    authenticated(&nats, "--nats-creds", &creds).await;
}
