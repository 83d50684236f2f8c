//! Bad input gets a precise JSON error and never hurts the daemon.

use reqwest::Method;

use crate::support::{Dirs, TestApp, get_json};

async fn error_of(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "errors are JSON"
    );
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn malformed_oversized_and_unknown_requests_get_json_errors() {
    let dirs = Dirs::new();
    let app = TestApp::spawn_with(&dirs, &["--set", "server.max_json_body_bytes=4096"]);
    let put = |body: Vec<u8>| {
        app.request(Method::PUT, "/api/v1/log-level")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let (status, body) = error_of(put(b"{\"level\": ".to_vec()).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );

    let (status, body) = error_of(put(b"{\"level\": 7}".to_vec()).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "level");

    let (status, body) = error_of(put(b"{\"levle\": \"info\"}".to_vec()).await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("levle"),
        "{body}"
    );

    let (status, body) = error_of(put(b"{\"level\": \"info,[[[\"}".to_vec()).await.unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "level");

    let big = format!("{{\"level\": \"{}\"}}", "a".repeat(10_000));
    let (status, body) = error_of(put(big.into_bytes()).await.unwrap()).await;
    assert_eq!(status, 413);
    assert!(body["error"]["message"].as_str().unwrap().contains("4096"));

    let no_type = app
        .request(Method::PUT, "/api/v1/log-level")
        .body("{\"level\":\"info\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(no_type).await.0, 415);

    let (status, body) = error_of(app.get("/no/such/route").send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "not_found_error");

    let (status, _) = error_of(
        app.request(Method::DELETE, "/healthz")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405);

    // A valid change still works afterwards, and the daemon is alive.
    let ok = put(b"{\"level\": \"debug\"}".to_vec()).await.unwrap();
    assert_eq!(ok.status(), 200);
    let level: serde_json::Value = get_json(&app, "/api/v1/log-level").await;
    assert_eq!(level["level"], "debug");
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
}
