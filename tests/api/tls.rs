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
