//! GraphiQL: served from latchkey alone, under a strict Content-Security-Policy, and only
//! where introspection is on.

use crate::support::{Storage, TestServer};

async fn get_page(server: &TestServer) -> reqwest::Response {
    server.client.get(format!("{}/graphql", server.base)).header("accept", "text/html").send().await.unwrap()
}

/// The values of every `src` and `href` attribute of the page.
fn references(page: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (start, _) in page.match_indices(attribute) {
            let rest = &page[start + attribute.len()..];
            found.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    found
}

fn directive<'a>(policy: &'a str, name: &str) -> &'a str {
    policy
        .split(';')
        .map(str::trim)
        .find(|directive| directive.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("the policy has {name}: {policy}"))
}

#[tokio::test]
async fn graphiql_and_every_file_it_loads_come_from_latchkey_under_a_strict_policy() {
    let server = TestServer::start().await;
    let response = get_page(&server).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let policy = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert_eq!(directive(&policy, "default-src"), "default-src 'none'");
    assert_eq!(directive(&policy, "script-src"), "script-src 'self'", "no inline or foreign script");
    assert_eq!(directive(&policy, "connect-src"), "connect-src 'self'");
    assert_eq!(directive(&policy, "frame-ancestors"), "frame-ancestors 'none'");
    let page = response.text().await.unwrap();

    assert!(!page.contains("://"), "the page names no other origin: {page}");
    assert_eq!(page.matches("<script").count(), page.matches("<script src=").count(), "no inline script: {page}");
    let files = references(&page);
    assert!(files.iter().any(|file| file.ends_with(".js")) && files.iter().any(|file| file.ends_with(".css")));
    for file in files {
        assert!(file.starts_with('/') && !file.starts_with("//"), "{file} is on latchkey");
        let asset = server.client.get(format!("{}{file}", server.base)).send().await.unwrap();
        assert_eq!(asset.status(), 200, "{file}");
        let content_type = asset.headers()["content-type"].to_str().unwrap().to_owned();
        let expected = if file.ends_with(".js") { "text/javascript" } else { "text/css" };
        assert!(content_type.starts_with(expected), "{file}: {content_type}");
        assert!(asset.headers()["cache-control"].to_str().unwrap().contains("immutable"), "{file}");
        assert!(!asset.bytes().await.unwrap().is_empty(), "{file}");
    }
}

#[tokio::test]
async fn without_introspection_there_is_no_graphiql() {
    let with = TestServer::start().await;
    let page = get_page(&with).await.text().await.unwrap();
    let file = references(&page).into_iter().find(|file| file.ends_with("graphiql.min.js")).unwrap();

    let without = TestServer::start_on(Storage::new().await, |raw| raw.introspection = Some("false".into())).await;
    let response = get_page(&without).await;
    assert_ne!(response.status(), 200);
    assert!(!response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(!response.text().await.unwrap().to_lowercase().contains("graphiql"));
    let asset = without.client.get(format!("{}{file}", without.base)).send().await.unwrap();
    assert_eq!(asset.status(), 404, "{file}");
}
