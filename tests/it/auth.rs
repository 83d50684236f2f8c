//! Accounts and access control against the real daemon: the route walk, first-run
//! setup, sessions with CSRF, throttling, key scopes, and cross-user isolation.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use appliance::auth::Scope;
use appliance::http::{Access, route_specs};

use crate::support::{Dirs, FreshDaemon, TestApp, get_json, reset_password, user_key};

/// A concrete path for a route template.
fn concrete(path: &str) -> String {
    path.replace("{*id}", "some-model")
        .replace("{id}", "1")
        .replace("{name}", "some-model")
        .replace("{message_id}", "1")
}

async fn call(app: &TestApp, method: Method, path: &str, key: Option<&str>) -> StatusCode {
    let mut req = app
        .anonymous
        .request(method, format!("{}{path}", app.url))
        .header("content-type", "application/json")
        .body("{}");
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn every_route_requires_the_right_credentials() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let chat_user = user_key(&dirs, "carol", "user", "chat");
    let embed_only = user_key(&dirs, "erin", "user", "embeddings");
    let docs_only = user_key(&dirs, "dora", "user", "documents");
    let audio_only = user_key(&dirs, "abel", "user", "audio");
    let readonly = user_key(&dirs, "rita", "readonly", "chat,embeddings,documents,audio");
    let specs = route_specs();
    assert!(specs.len() > 30, "the walk covers the whole table");
    for spec in &specs {
        let path = concrete(spec.path);
        let anonymous = call(&app, spec.method.clone(), &path, None).await;
        let bogus = call(
            &app,
            spec.method.clone(),
            &path,
            Some("apl_000000000000_0000"),
        )
        .await;
        match spec.access {
            Access::Public => {
                assert_ne!(
                    anonymous,
                    StatusCode::UNAUTHORIZED,
                    "{} {}",
                    spec.method,
                    spec.path
                );
                continue;
            }
            _ => {
                assert_eq!(
                    anonymous,
                    StatusCode::UNAUTHORIZED,
                    "{} {} without credentials",
                    spec.method,
                    spec.path
                );
                assert_eq!(
                    bogus,
                    StatusCode::UNAUTHORIZED,
                    "{} {} with a malformed key",
                    spec.method,
                    spec.path
                );
            }
        }
        let as_user = call(&app, spec.method.clone(), &path, Some(&chat_user)).await;
        let as_embed = call(&app, spec.method.clone(), &path, Some(&embed_only)).await;
        let as_readonly = call(&app, spec.method.clone(), &path, Some(&readonly)).await;
        let what = format!("{} {}", spec.method, spec.path);
        match spec.access {
            // Credential management and password changes: no key below admin gets in.
            Access::Session | Access::Account => {
                for (who, status) in [
                    ("a chat key", as_user),
                    ("an embeddings key", as_embed),
                    ("a read-only user's key", as_readonly),
                ] {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{what} with {who}");
                }
            }
            Access::Admin => {
                assert_eq!(as_user, StatusCode::FORBIDDEN, "{what} as a user");
                assert_eq!(as_readonly, StatusCode::FORBIDDEN, "{what} as read-only");
            }
            Access::Write(scope) | Access::Read(scope) => {
                let as_docs = call(&app, spec.method.clone(), &path, Some(&docs_only)).await;
                let as_audio = call(&app, spec.method.clone(), &path, Some(&audio_only)).await;
                // The key holding exactly the route's scope gets in; every other
                // scope is refused, whatever the user's role.
                for (key_scope, status) in [
                    (Scope::Chat, as_user),
                    (Scope::Embeddings, as_embed),
                    (Scope::Documents, as_docs),
                    (Scope::Audio, as_audio),
                ] {
                    if key_scope == scope {
                        assert_ne!(
                            status,
                            StatusCode::FORBIDDEN,
                            "{what} with a {key_scope:?} key"
                        );
                    } else {
                        assert_eq!(
                            status,
                            StatusCode::FORBIDDEN,
                            "{what} with a {key_scope:?} key"
                        );
                    }
                }
                if matches!(spec.access, Access::Write(_)) {
                    assert_eq!(as_readonly, StatusCode::FORBIDDEN, "{what} as read-only");
                } else {
                    assert_ne!(as_readonly, StatusCode::FORBIDDEN, "{what} as read-only");
                }
            }
            Access::Authenticated => {
                for (who, status) in [
                    ("user", as_user),
                    ("embeddings key", as_embed),
                    ("read-only", as_readonly),
                ] {
                    assert_ne!(status, StatusCode::UNAUTHORIZED, "{what} as {who}");
                    assert_ne!(status, StatusCode::FORBIDDEN, "{what} as {who}");
                }
            }
            Access::Public => unreachable!(),
        }
    }
    // Unknown routes are 404 for everyone, not a way around the table.
    assert_eq!(
        call(&app, Method::GET, "/api/v1/secret", None).await,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn first_run_setup_creates_the_admin_once() {
    let dirs = Dirs::new();
    // Start without any user: the daemon prints a one-time token.
    let mut fresh = FreshDaemon::spawn(&dirs);
    let url = fresh.url.clone();
    let lines = &mut fresh.lines;
    let setup = lines.next().unwrap().unwrap();
    assert!(setup.starts_with("first run"), "{setup}");
    let token = setup
        .split("one-time token ")
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    appliance::client::tls_provider();
    let http = reqwest::Client::new();
    let post = |body: Value| http.post(format!("{url}/api/v1/setup")).json(&body).send();

    let wrong =
        post(json!({"token": "0".repeat(32), "name": "root", "password": "long enough pw"}))
            .await
            .unwrap();
    assert_eq!(wrong.status(), 403);
    let weak = post(json!({"token": token, "name": "root", "password": "short"}))
        .await
        .unwrap();
    assert_eq!(weak.status(), 400);
    let ok = post(json!({"token": token, "name": "root", "password": "long enough pw"}))
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    assert_eq!(ok.json::<Value>().await.unwrap()["role"], "admin");
    let again = post(json!({"token": token, "name": "eve", "password": "long enough pw"}))
        .await
        .unwrap();
    assert_eq!(again.status(), 403);
    let login = http
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({"name": "root", "password": "long enough pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    drop(fresh);
}

#[tokio::test]
async fn sessions_use_strict_cookies_csrf_and_can_be_revoked() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let password = reset_password(&dirs, "admin");
    let jar = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let login = jar
        .post(format!("{}/api/v1/auth/login", app.url))
        .json(&json!({"name": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let csrf = login.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();

    let me = jar
        .get(format!("{}/api/v1/auth/me", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<Value>().await.unwrap()["via"], "session");
    // A state-changing request without the CSRF header is refused…
    let body = json!({"name": "ui", "scopes": ["chat"]});
    let no_csrf = jar
        .post(format!("{}/api/v1/keys", app.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);
    // …and accepted with it.
    let with_csrf = jar
        .post(format!("{}/api/v1/keys", app.url))
        .header("x-csrf-token", &csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(with_csrf.status(), 201);
    let logout = jar
        .post(format!("{}/api/v1/auth/logout", app.url))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    // The server-side session is gone even if a client kept the cookie.
    let replay = app
        .anonymous
        .get(format!("{}/api/v1/auth/me", app.url))
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
}

#[tokio::test]
async fn login_errors_are_identical_and_throttled() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let login = |name: &'static str, password: &'static str| {
        app.anonymous
            .post(format!("{}/api/v1/auth/login", app.url))
            .json(&json!({"name": name, "password": password}))
            .send()
    };
    let unknown = login("nobody", "whatever pw").await.unwrap();
    let unknown_status = unknown.status();
    let unknown_body = unknown.json::<Value>().await.unwrap();
    let wrong = login("admin", "whatever pw").await.unwrap();
    assert_eq!(unknown_status, 401);
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        unknown_body["error"]["message"],
        wrong.json::<Value>().await.unwrap()["error"]["message"]
    );
    for _ in 0..5 {
        login("admin", "whatever pw").await.unwrap();
    }
    let throttled = login("admin", "whatever pw").await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().contains_key("retry-after"));
    // Failures are audited, without the password.
    let audit = dirs.run(&["audit", "--limit", "20"]);
    assert!(audit.stdout.contains("login"), "{}", audit.stdout);
    assert!(!audit.stdout.contains("whatever pw"));
}

#[tokio::test]
async fn users_cannot_reach_each_others_resources() {
    let dirs = Dirs::with_models();
    let app = TestApp::spawn(&dirs);
    let alice = user_key(&dirs, "alice", "user", "chat");
    let bob = user_key(&dirs, "bob", "user", "chat");
    let as_ = |key: &str, method: Method, path: &str| {
        app.anonymous
            .request(method, format!("{}{path}", app.url))
            .bearer_auth(key.to_string())
    };
    let created: Value = as_(&alice, Method::POST, "/api/v1/conversations")
        .json(&json!({"title": "alice's secret plans"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/conversations/{id}");
    for (method, p, body) in [
        (Method::GET, path.clone(), json!({})),
        (Method::PATCH, path.clone(), json!({"title": "mine now"})),
        (Method::GET, format!("{path}/export"), json!({})),
        (
            Method::POST,
            format!("{path}/messages"),
            json!({"content": "hi"}),
        ),
        (Method::DELETE, path.clone(), json!({})),
    ] {
        let r = as_(&bob, method.clone(), &p)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "bob: {method} {p}");
    }
    let bob_list: Value = as_(&bob, Method::GET, "/api/v1/conversations")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bob_list["data"].as_array().unwrap().len(), 0);
    let bob_search: Value = as_(&bob, Method::GET, "/api/v1/conversations/search?q=secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bob_search["data"].as_array().unwrap().len(), 0);
    // Alice still has it; the admin sees it.
    assert_eq!(
        as_(&alice, Method::GET, &path)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.get(&path).send().await.unwrap().status(), 200);
    // Keys: managing them needs a session, and bob's session neither sees nor
    // revokes alice's.
    let all_keys: Value = get_json(&app, "/api/v1/keys?all=true").await;
    let alice_key_id = all_keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["user_name"] == "alice")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let password = reset_password(&dirs, "bob");
    let bob_session = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let login: Value = bob_session
        .post(format!("{}/api/v1/auth/login", app.url))
        .json(&json!({"name": "bob", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf = login["csrf_token"].as_str().unwrap().to_string();
    let bob_keys: Value = bob_session
        .get(format!("{}/api/v1/keys?all=true", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        bob_keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["user_name"] == "bob")
    );
    let revoke = bob_session
        .delete(format!("{}/api/v1/keys/{alice_key_id}", app.url))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 404);
    assert_eq!(
        as_(&alice, Method::GET, &path)
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "alice's key still works"
    );
    // A revoked or disabled credential stops working at once.
    let revoked = app
        .request(Method::DELETE, &format!("/api/v1/keys/{alice_key_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(
        as_(&alice, Method::GET, &path)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    dirs.run(&["users", "disable", "bob"]).ok();
    assert_eq!(
        as_(&bob, Method::GET, "/api/v1/conversations")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn an_embeddings_only_key_cannot_chat() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let key = user_key(&dirs, "emma", "user", "embeddings");
    let r = app
        .anonymous
        .post(format!("{}/v1/chat/completions", app.url))
        .bearer_auth(&key)
        .json(&json!({"model": "x", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "permission_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`chat` scope")
    );
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused_and_headers_are_set() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    // A DNS-rebinding page reaches us under the attacker's name.
    let rebound = app
        .get("/api/v1/status")
        .header("host", "attacker.example:8470")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    assert!(rebound.text().await.unwrap().contains("attacker.example"));
    // A cross-site form or fetch cannot change state even with a cookie or key.
    let cross = app
        .request(Method::PUT, "/api/v1/log-level")
        .header("origin", "https://attacker.example")
        .json(&json!({"level": "debug"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    let same = app
        .request(Method::PUT, "/api/v1/log-level")
        .header("origin", app.url.clone())
        .json(&json!({"level": "debug"}))
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 200);
    let page = app
        .anonymous
        .get(format!("{}/", app.url))
        .send()
        .await
        .unwrap();
    let h = page.headers();
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
}

#[tokio::test]
async fn auth_cannot_be_disabled_on_a_network_address() {
    let dirs = Dirs::new();
    let out = dirs.run(&["--bind", "0.0.0.0", "--set", "auth.enabled=false", "serve"]);
    assert_eq!(out.code(), 3, "{out:?}");
    assert!(out.stderr.contains("auth.enabled"), "{}", out.stderr);
}

#[tokio::test]
async fn cors_is_off_by_default_and_follows_the_allow_list() {
    let dirs = Dirs::new();
    let app = TestApp::spawn_with(
        &dirs,
        &["--set", r#"server.cors_origins=["https://webui.example"]"#],
    );
    let preflight = |origin: &'static str| {
        app.anonymous
            .request(Method::OPTIONS, format!("{}/v1/chat/completions", app.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let allowed = preflight("https://webui.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://webui.example"
    );
    let other = preflight("https://elsewhere.example").await.unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    // A listed origin may also change state (with credentials).
    let put = app
        .request(Method::PUT, "/api/v1/log-level")
        .header("origin", "https://webui.example")
        .json(&json!({"level": "info"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);

    let plain_dirs = Dirs::new();
    let plain = TestApp::spawn(&plain_dirs);
    let r = plain
        .anonymous
        .request(Method::OPTIONS, format!("{}/v1/models", plain.url))
        .header("origin", "https://webui.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn request_rate_is_limited_per_user_with_retry_after() {
    let dirs = Dirs::new();
    let app = TestApp::spawn_with(&dirs, &["--set", "limits.requests_per_minute=5"]);
    for i in 0..5 {
        let r = app.get("/api/v1/auth/me").send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
    }
    let limited = app.get("/api/v1/auth/me").send().await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    // Health checks are not rate limited.
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn each_api_key_has_its_own_rate_limit() {
    let dirs = Dirs::new();
    let app = TestApp::spawn_with(&dirs, &["--set", "limits.key_requests_per_minute=3"]);
    let second = dirs.run(&["keys", "create", "--owner", "admin", "--scopes", "all"]);
    let second = second.stdout.trim().to_string();
    for _ in 0..3 {
        assert_eq!(
            app.get("/api/v1/auth/me").send().await.unwrap().status(),
            200
        );
    }
    let limited = app.get("/api/v1/auth/me").send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    // The same user's other key is not affected.
    let other = app
        .anonymous
        .get(format!("{}/api/v1/auth/me", app.url))
        .bearer_auth(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}

#[tokio::test]
async fn expired_sessions_are_refused() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let password = reset_password(&dirs, "admin");
    let login = app
        .anonymous
        .post(format!("{}/api/v1/auth/login", app.url))
        .json(&json!({"name": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let me = |cookie: String| {
        app.anonymous
            .get(format!("{}/api/v1/auth/me", app.url))
            .header("cookie", cookie)
            .send()
    };
    assert_eq!(me(cookie.clone()).await.unwrap().status(), 200);
    // Let the session's expiry pass (rewinding the clock in the database).
    let db = rusqlite::Connection::open(dirs.data().join("appliance.db")).unwrap();
    db.execute(
        "UPDATE sessions SET expires_at = '2000-01-01T00:00:00.000Z'",
        [],
    )
    .unwrap();
    assert_eq!(me(cookie).await.unwrap().status(), 401);
}

#[tokio::test]
async fn anthropic_clients_send_their_key_as_x_api_key_and_get_anthropic_errors() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let chat = user_key(&dirs, "carol", "user", "chat");
    let embed_only = user_key(&dirs, "erin", "user", "embeddings");
    let me = app
        .anonymous
        .get(format!("{}/api/v1/auth/me", app.url))
        .header("x-api-key", &chat)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let messages = |key: &str, body: Value| {
        app.anonymous
            .post(format!("{}/v1/messages", app.url))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
    };
    let ask =
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    // Errors from the credential checks before the handler, and from the handler.
    for (key, body, status, kind) in [
        (
            "apl_000000000000_0000",
            ask.clone(),
            StatusCode::UNAUTHORIZED,
            "authentication_error",
        ),
        (
            embed_only.as_str(),
            ask.clone(),
            StatusCode::FORBIDDEN,
            "permission_error",
        ),
        (
            chat.as_str(),
            json!({"model": "m", "messages": []}),
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
        ),
        (
            chat.as_str(),
            ask.clone(),
            StatusCode::NOT_FOUND,
            "not_found_error",
        ),
    ] {
        let response = messages(key, body).await.unwrap();
        assert_eq!(response.status(), status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], kind, "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let response = messages(&chat, json!({"model": "m", "messages": []}))
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    // The field at fault leads the message (Anthropic's body has no `param`).
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("max_tokens: "),
        "{body}"
    );
}
