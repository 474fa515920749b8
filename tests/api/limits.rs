//! Limits at the edge: request rates per caller, body size on both transports, and
//! connections (header timeout, idle timeout, cap).

use std::time::Duration;

use latchkey::config::RawConfig;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{Storage, TestServer};

async fn server_with(customize: impl FnOnce(&mut RawConfig)) -> TestServer {
    TestServer::start_on(Storage::new().await, customize).await
}

/// One request per second with bursts of `burst`: a test's quick requests meet the limit.
async fn rate_limited_server(burst: u32) -> TestServer {
    server_with(|raw| {
        raw.rate_limit_per_second = Some("1".into());
        raw.rate_limit_burst = Some(burst.to_string());
    })
    .await
}

async fn post_graphql(server: &TestServer, token: Option<&str>) -> reqwest::Response {
    let mut request = server.client.post(format!("{}/graphql", server.base)).json(&json!({"query": "{ __typename }"}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// Sends GraphQL requests until one is refused with 429, and returns it.
async fn graphql_until_limited(server: &TestServer, token: Option<&str>) -> reqwest::Response {
    for _ in 0..50 {
        let response = post_graphql(server, token).await;
        if response.status() == 429 {
            return response;
        }
        assert_eq!(response.status(), 200);
    }
    panic!("50 quick requests were never rate limited");
}

fn retry_after(response: &reqwest::Response) -> u64 {
    let header = response.headers().get("retry-after").expect("a Retry-After header");
    let seconds: u64 = header.to_str().unwrap().parse().expect("Retry-After in whole seconds");
    assert!(seconds >= 1);
    seconds
}

#[tokio::test]
async fn a_token_past_its_burst_is_refused_with_429_and_a_retry_hint_on_graphql_and_rest() {
    let server = rate_limited_server(5).await;
    let limited = graphql_until_limited(&server, Some(&server.master)).await;
    let seconds = retry_after(&limited);
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["retryAfter"], seconds, "{body}");
    assert!(body.get("data").is_none(), "nothing ran: {body}");

    // The budget is the token's, whichever transport spends it.
    let rest = server
        .client
        .get(format!("{}/core/v1/connectors", server.base))
        .bearer_auth(&server.master)
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 429);
    retry_after(&rest);
    let body: Value = rest.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMITED", "{body}");
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn each_master_token_and_each_end_user_has_a_budget_of_its_own() {
    let server = rate_limited_server(8).await;
    let user = server.create_user(&server.master, "rate-user").await;
    let first_token = server.user_token(&server.master, &user).await;
    let second_token = server.user_token(&server.master, &user).await;
    let other_org = server.other_org().await;

    graphql_until_limited(&server, Some(&server.master)).await;
    assert_eq!(post_graphql(&server, Some(&other_org)).await.status(), 200, "another token is not limited");
    assert_eq!(post_graphql(&server, Some(&first_token)).await.status(), 200, "an end user is not limited");

    // All user tokens of one end user share the end user's budget.
    graphql_until_limited(&server, Some(&first_token)).await;
    assert_eq!(post_graphql(&server, Some(&second_token)).await.status(), 429);
}

#[tokio::test]
async fn callers_without_a_valid_token_are_limited_by_their_address_token_guessing_included() {
    let server = rate_limited_server(5).await;
    let mut refused = 0;
    for guess in 0..50 {
        let response = post_graphql(&server, Some(&format!("lk_master_guess-{guess}"))).await;
        if response.status() == 429 {
            break;
        }
        assert_eq!(response.status(), 401, "a wrong token is refused");
        refused += 1;
    }
    assert!(refused < 50, "50 quick guesses were never rate limited");
    // The address's budget is spent, with or without a token.
    assert_eq!(post_graphql(&server, None).await.status(), 429);
    assert_eq!(post_graphql(&server, Some("not.a.jwt")).await.status(), 429);
    let rest = server.rest(reqwest::Method::GET, "/connectors", None, None).await;
    assert_eq!(rest.0, 429);
    assert_eq!(rest.1["code"], "RATE_LIMITED");
    assert_eq!(post_graphql(&server, Some(&server.master)).await.status(), 200, "a valid token has its own budget");
}

#[tokio::test]
async fn rate_limits_can_be_turned_off() {
    let server = server_with(|raw| raw.rate_limit_per_second = Some("0".into())).await;
    for _ in 0..60 {
        assert_eq!(post_graphql(&server, None).await.status(), 200);
    }
}

/// A raw HTTP/1.1 request with a chunked body of `size` bytes; returns the status line and
/// the JSON body of the answer.
async fn chunked_post(server: &TestServer, path: &str, size: usize) -> (String, Value) {
    let address = server.base.trim_start_matches("http://");
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.master
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    // Written alongside the read: the server answers as soon as the limit is passed and
    // stops reading, so the rest of the body may never be taken.
    let writing = tokio::spawn(async move {
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < size {
            let part = &chunk[..chunk.len().min(size - sent)];
            let framed = [format!("{:x}\r\n", part.len()).as_bytes(), part, b"\r\n"].concat();
            if writer.write_all(&framed).await.is_err() {
                return;
            }
            sent += part.len();
        }
        let _ = writer.write_all(b"0\r\n\r\n").await;
        let _ = writer.flush().await;
        // Kept open until the answer is read.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(writer);
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut answer)).await;
    writing.abort();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("an HTTP answer: {answer:?}"));
    let status_line = head.lines().next().unwrap_or_default().to_owned();
    let body = if head.to_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
    (status_line, serde_json::from_str(&body).unwrap_or_else(|_| panic!("a JSON body: {body:?}")))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_with_a_coded_json_body_chunked_or_not_on_both_transports() {
    let server = TestServer::start().await;
    let too_big = 2 * 1024 * 1024;
    for path in ["/graphql", "/core/v1/authentications"] {
        let declared = server
            .client
            .post(format!("{}{path}", server.base))
            .bearer_auth(&server.master)
            .header("content-type", "application/json")
            .body(vec![b' '; too_big])
            .send()
            .await
            .unwrap();
        assert_eq!(declared.status(), 413, "{path} with Content-Length");
        let declared: Value = declared.json().await.unwrap();

        let (status, chunked) = chunked_post(&server, path, too_big).await;
        assert!(status.contains(" 413 "), "{path} chunked: {status}");

        for body in [declared, chunked] {
            let code = if path == "/graphql" { &body["errors"][0]["extensions"]["code"] } else { &body["code"] };
            assert_eq!(code, "PAYLOAD_TOO_LARGE", "{path}: {body}");
        }
    }
    // A chunked body within the limit is read as usual.
    let (status, body) = chunked_post(&server, "/graphql", 1000).await;
    assert!(status.contains(" 400 "), "{status}: {body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST", "blank JSON is refused after reading");
}

fn address(server: &TestServer) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Whether the server closes `stream`, waiting up to `patience`.
async fn closed_by_server(stream: &mut TcpStream, patience: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_client_trickling_header_lines_is_disconnected_after_the_header_timeout() {
    let server = server_with(|raw| raw.header_timeout = Some("1".into())).await;
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: latchkey\r\n").await.unwrap();
    let mut disconnected = false;
    // A header line every quarter second, for up to 20 s: the server must hang up first.
    for line in 0..80 {
        if closed_by_server(&mut stream, Duration::from_millis(250)).await {
            disconnected = true;
            break;
        }
        if stream.write_all(format!("x-trickle-{line}: 1\r\n").as_bytes()).await.is_err() {
            disconnected = true;
            break;
        }
    }
    assert!(disconnected, "a client trickling headers stayed connected");
}

#[tokio::test]
async fn idle_connections_at_the_cap_time_out_and_health_checks_are_served() {
    let server = server_with(|raw| {
        raw.max_connections = Some("3".into());
        raw.header_timeout = Some("1".into());
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(address(&server)).await.unwrap());
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let health = client.get(format!("{}/healthz", server.base)).send().await.expect("/healthz answers");
    assert_eq!(health.status(), 200);
    for stream in &mut idle {
        assert!(closed_by_server(stream, Duration::from_secs(30)).await, "an idle connection was closed");
    }
    let query = client
        .post(format!("{}/graphql", server.base))
        .bearer_auth(&server.master)
        .json(&json!({"query": "{ viewer { __typename } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 200);
}

#[tokio::test]
async fn a_connection_over_the_cap_waits_until_another_closes() {
    let server = server_with(|raw| raw.max_connections = Some("2".into())).await;
    let first = TcpStream::connect(address(&server)).await.unwrap();
    let _second = TcpStream::connect(address(&server)).await.unwrap();
    let mut third = TcpStream::connect(address(&server)).await.unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: latchkey\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let early = tokio::time::timeout(Duration::from_secs(1), third.read_to_end(&mut answer)).await;
    assert!(early.is_err(), "served beyond the cap: {:?}", String::from_utf8_lossy(&answer));

    drop(first);
    tokio::time::timeout(Duration::from_secs(30), third.read_to_end(&mut answer))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
}
