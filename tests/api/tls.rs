//! HTTPS served by latchkey itself (`LATCHKEY_TLS_CERT`, `LATCHKEY_TLS_KEY`): the API and
//! the pages over TLS, and what plain-HTTP or silent clients on the TLS port get.

use std::time::{Duration, Instant};

use reqwest::{StatusCode, header};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::TestServer;

fn address(server: &TestServer) -> String {
    server.base.strip_prefix("https://").expect("an https base URL").to_owned()
}

#[tokio::test]
async fn the_api_answers_over_https_and_the_pages_set_secure_cookies_without_a_public_url() {
    let (server, certificate) = TestServer::start_https(|_| {}).await;
    let data = server.ok(&server.master, "{ viewer { details { name } } }", json!({})).await;
    assert_eq!(data["viewer"]["details"]["name"], "default");

    let user = server.create_user(&server.master, "tls-user").await;
    let (service, environment) = server.builtin_environment("zendesk").await;
    let code = server.authorization_code(&server.master, &user).await;
    let pages = certificate.client(reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()));
    let opened = pages
        .get(format!(
            "{}/external/auth/create/default?serviceId={service}&serviceEnvironmentId={environment}&code={code}",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
    let cookie = opened.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.contains("; Secure"), "the session cookie is Secure under HTTPS: {cookie}");
    let location = opened.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let page = pages
        .get(format!("{}{location}", server.base))
        .header(header::COOKIE, cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Connect Zendesk"));
}

#[tokio::test]
async fn a_plain_http_client_on_the_tls_port_is_told_to_use_https_and_the_server_goes_on() {
    let (server, _) = TestServer::start_https(|_| {}).await;
    let plain = reqwest::Client::new();
    let response = plain.get(format!("http://{}/healthz", address(&server))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("serves HTTPS only"));

    // Bytes that are neither TLS nor HTTP: the connection is closed, nothing is answered.
    let mut junk = TcpStream::connect(address(&server)).await.unwrap();
    junk.write_all(b"\x00\x01\x02 not a protocol\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), junk.read_to_end(&mut answer)).await.unwrap().ok();
    assert!(answer.is_empty(), "{answer:?}");

    let data = server.ok(&server.master, "{ viewer { details { name } } }", json!({})).await;
    assert_eq!(data["viewer"]["details"]["name"], "default");
}

#[tokio::test]
async fn a_silent_client_cannot_hold_a_tls_handshake_open() {
    // One connection at a time: the silent one holds the only slot until its handshake
    // times out.
    let (server, _) = TestServer::start_https(|raw| {
        raw.header_timeout = Some("1".into());
        raw.max_connections = Some("1".into());
    })
    .await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(address(&server)).await.unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "the silent connection was not closed");
    assert!(answer.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900), "closed before its deadline: {:?}", started.elapsed());

    let silent = TcpStream::connect(address(&server)).await.unwrap();
    let health =
        tokio::time::timeout(Duration::from_secs(10), server.client.get(format!("{}/healthz", server.base)).send())
            .await
            .expect("served once the silent connection's slot is free")
            .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    drop(silent);
}

#[tokio::test]
async fn the_binary_serves_https_from_its_variables_and_refuses_a_half_or_bad_pair() {
    let storage = crate::support::Storage::new().await;
    let certificate = crate::support::SelfSigned::write(storage.dir.path());
    let (cert, key) = (certificate.cert_path.display().to_string(), certificate.key_path.display().to_string());
    let bad_key = storage.dir.path().join("bad-key.pem");
    std::fs::write(&bad_key, "-----BEGIN PRIVATE KEY-----\nsecret-key-material!\n-----END PRIVATE KEY-----\n").unwrap();
    let refusals = [
        (vec![("LATCHKEY_TLS_CERT", cert.clone())], "LATCHKEY_TLS_KEY"),
        (vec![("LATCHKEY_TLS_KEY", key.clone())], "LATCHKEY_TLS_CERT"),
        (
            vec![("LATCHKEY_TLS_CERT", cert.clone()), ("LATCHKEY_TLS_KEY", bad_key.display().to_string())],
            "LATCHKEY_TLS_KEY",
        ),
    ];
    for (env, variable) in refusals {
        let output = crate::startup::latchkey(&storage).arg("serve").envs(env).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(variable), "{stderr}");
        assert!(!stderr.contains("secret-key-material"), "{stderr}");
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = storage.dir.path().join("serve.log");
    let mut child = crate::startup::latchkey(&storage)
        .env("LATCHKEY_BIND", format!("127.0.0.1:{port}"))
        .env("LATCHKEY_TLS_CERT", &cert)
        .env("LATCHKEY_TLS_KEY", &key)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let client = certificate.client(reqwest::Client::builder());
    let started = Instant::now();
    let ready = loop {
        let answer = client.get(format!("https://127.0.0.1:{port}/readyz")).send().await;
        if answer.is_ok_and(|response| response.status().is_success()) {
            break true;
        }
        if started.elapsed() > Duration::from_secs(60) || child.try_wait().unwrap().is_some() {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let printed = std::fs::read_to_string(&log).unwrap();
    assert!(ready, "latchkey did not answer over HTTPS:\n{printed}");
    assert!(printed.contains(&format!("https://127.0.0.1:{port}/graphql")), "the public URL is https: {printed}");
}
