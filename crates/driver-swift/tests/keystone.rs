//! Keystone v2.0 and v3 password authentication.
//!
//! `keystone_v3_real_end_to_end` runs against a **real Keystone** (PyPI `keystone`,
//! v3 only) and a Swift proxy that validates its tokens (keystonemiddleware's auth_token
//! and Swift's keystoneauth), both started by `cargo xtask test-all` (variables
//! `SWIFT_KS_AUTH_URL`, `SWIFT_KS_USERNAME`, `SWIFT_KS_PASSWORD`, `SWIFT_KS_TENANT`,
//! `SWIFT_KS_DOMAIN`; it skips without them).
//!
//! Keystone dropped the v2.0 API (Queens), so v2.0, and the request bodies of every
//! scope form, are checked against a small fake identity endpoint that answers with responses **shaped after the examples of the Keystone API
//! reference** (identity v3 `POST /v3/auth/tokens`, v2.0 `POST /v2.0/tokens`; not
//! recorded from a real Keystone). It checks the request bodies the driver sends, and its
//! catalog points at the real Swift node of the test run, with a real token obtained
//! from that node's TempAuth, so every storage operation after authentication is real.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use driver_api::{Parameters, StorageError};
use driver_swift::AuthError;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the fake saw.
#[derive(Default)]
struct Seen {
    bodies: Mutex<Vec<Value>>,
    calls: AtomicUsize,
}

/// A real TempAuth token and storage URL of the test node.
async fn tempauth() -> Option<(String, String)> {
    let url = common::var("SWIFT_AUTH_URL")?;
    if !url.contains("/auth/v1") {
        return None;
    }
    let resp = driver_testsuite::http_client()
        .get(url)
        .header("x-auth-user", common::var("SWIFT_USERNAME")?)
        .header("x-auth-key", common::var("SWIFT_PASSWORD")?)
        .send()
        .await
        .ok()?;
    let h = |n: &str| resp.headers()[n].to_str().unwrap().to_owned();
    Some((h("x-auth-token"), h("x-storage-url")))
}

fn v3_answer(storage: &str) -> Value {
    json!({"token": {
        "methods": ["password"],
        "expires_at": "2099-01-01T00:00:00.000000Z",
        "issued_at": "2026-11-23T12:00:00.000000Z",
        "user": {"domain": {"id": "default", "name": "Default"}, "id": "ee4dfb6e5540447cb3741905149d9b6e", "name": "registry", "password_expires_at": null},
        "project": {"domain": {"id": "default", "name": "Default"}, "id": "a6944d763bf64ee6a275f1263fae0352", "name": "registry"},
        "roles": [{"id": "51cc68287d524c759f47c811e6463340", "name": "member"}],
        "catalog": [
            {"type": "identity", "name": "keystone", "id": "1", "endpoints": [
                {"id": "a", "interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": "http://127.0.0.1:5000/v3"}]},
            {"type": "object-store", "name": "swift", "id": "2", "endpoints": [
                {"id": "b", "interface": "admin", "region": "RegionOne", "region_id": "RegionOne", "url": "http://127.0.0.1:1/v1"},
                {"id": "c", "interface": "public", "region": "RegionTwo", "region_id": "RegionTwo", "url": "http://127.0.0.1:1/v1/AUTH_wrong_region"},
                {"id": "d", "interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": storage},
                {"id": "e", "interface": "internal", "region": "RegionOne", "region_id": "RegionOne", "url": storage}]}
        ]
    }})
}

fn v2_answer(token: &str, storage: &str) -> Value {
    json!({"access": {
        "token": {"issued_at": "2026-11-23T12:00:00.000000Z", "expires": "2099-01-01T00:00:00Z", "id": token,
                  "tenant": {"description": null, "enabled": true, "id": "a6944d763bf64ee6a275f1263fae0352", "name": "registry"},
                  "audit_ids": ["ZzZwkUflQfygX7pdYDBCQQ"]},
        "serviceCatalog": [
            {"type": "object-store", "name": "swift", "endpoints_links": [], "endpoints": [
                {"adminURL": "http://127.0.0.1:1/v1", "region": "RegionTwo", "internalURL": "http://127.0.0.1:1/v1/AUTH_wrong_region", "id": "1", "publicURL": "http://127.0.0.1:1/v1/AUTH_wrong_region"},
                {"adminURL": "http://127.0.0.1:1/v1", "region": "RegionOne", "internalURL": storage, "id": "2", "publicURL": storage}]},
            {"type": "identity", "name": "keystone", "endpoints_links": [], "endpoints": [
                {"adminURL": "http://127.0.0.1:35357/v2.0", "region": "RegionOne", "internalURL": "http://127.0.0.1:5000/v2.0", "id": "3", "publicURL": "http://127.0.0.1:5000/v2.0"}]}
        ],
        "user": {"username": "registry", "roles_links": [], "id": "ee4dfb6e5540447cb3741905149d9b6e", "roles": [{"name": "member"}], "name": "registry"},
        "metadata": {"is_admin": 0, "roles": ["51cc68287d524c759f47c811e6463340"]}
    }})
}

/// Starts the fake identity endpoint; returns its base URL.
async fn fake_keystone(token: String, storage: String, seen: Arc<Seen>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (token, storage, seen) = (token.clone(), storage.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Some(i) = text.find("\r\n\r\n") {
                        let head = text[..i].to_owned();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= i + 4 + len {
                            break (head, buf[i + 4..i + 4 + len].to_vec());
                        }
                    }
                };
                seen.calls.fetch_add(1, Ordering::SeqCst);
                // A current TempAuth token each time (another test may revoke tokens).
                let token = match tempauth().await {
                    Some((t, _)) => t,
                    None => token,
                };
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                seen.bodies.lock().unwrap().push(body.clone());
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let (status, extra, answer) = if path == "/v3/auth/tokens" {
                    let user = &body["auth"]["identity"]["password"]["user"];
                    if user["password"] == "right" {
                        (
                            "201 Created",
                            format!("X-Subject-Token: {token}\r\n"),
                            v3_answer(&storage),
                        )
                    } else {
                        (
                            "401 Unauthorized",
                            String::new(),
                            json!({"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}),
                        )
                    }
                } else if path == "/v2.0/tokens" {
                    let creds = &body["auth"]["passwordCredentials"];
                    if creds["password"] == "right" {
                        ("200 OK", String::new(), v2_answer(&token, &storage))
                    } else {
                        (
                            "401 Unauthorized",
                            String::new(),
                            json!({"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}),
                        )
                    }
                } else {
                    ("404 Not Found", String::new(), json!({}))
                };
                let text = answer.to_string();
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

fn params(auth_url: String, password: &str) -> Parameters {
    Parameters::new()
        .with("authurl", auth_url)
        .with("username", "registry")
        .with("password", password)
        .with("container", common::container())
        .with("prefix", common::root("keystone"))
}

async fn round_trip(d: &driver_api::Driver) {
    d.put_content("/k/a", "through keystone").await.unwrap();
    assert_eq!(
        &d.get_content("/k/a").await.unwrap()[..],
        b"through keystone"
    );
    d.delete("/k").await.unwrap();
}

#[tokio::test]
async fn keystone_v3_password_project_scope() {
    let Some((token, storage)) = tempauth().await else {
        driver_testsuite::skip_test(
            "swift",
            "keystone_v3_password_project_scope",
            "needs the TempAuth test node for a real token",
        );
        return;
    };
    let seen = Arc::new(Seen::default());
    let base = fake_keystone(token, storage, seen.clone()).await;
    let p = params(format!("{base}/v3"), "right")
        .with("tenant", "registry")
        .with("domain", "Default")
        .with("region", "RegionOne");
    let d = common::create(p).await.unwrap();
    round_trip(&d).await;
    let body = seen.bodies.lock().unwrap()[0].clone();
    assert_eq!(body["auth"]["identity"]["methods"], json!(["password"]));
    let user = &body["auth"]["identity"]["password"]["user"];
    assert_eq!(user["name"], "registry");
    assert_eq!(user["domain"], json!({"name": "Default"}));
    assert_eq!(
        body["auth"]["scope"]["project"],
        json!({"name": "registry", "domain": {"name": "Default"}})
    );

    // Scoped by ids, internal endpoint; and a trust.
    let p = params(format!("{base}/v3"), "right")
        .with("tenantid", "a6944d763bf64ee6a275f1263fae0352")
        .with("domainid", "default")
        .with("endpointtype", "internal");
    common::create(p).await.unwrap();
    let body = seen.bodies.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        body["auth"]["scope"]["project"],
        json!({"id": "a6944d763bf64ee6a275f1263fae0352"})
    );
    assert_eq!(
        body["auth"]["identity"]["password"]["user"]["domain"],
        json!({"id": "default"})
    );
    let p = params(format!("{base}/v3"), "right")
        .with("trustid", "t-123")
        .with("region", "RegionOne");
    common::create(p).await.unwrap();
    let body = seen.bodies.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        body["auth"]["scope"],
        json!({"OS-TRUST:trust": {"id": "t-123"}})
    );

    // A region without an object store.
    let p = params(format!("{base}/v3"), "right").with("region", "RegionNine");
    let e = common::create(p).await.unwrap_err();
    assert!(
        matches!(source_of(&e), Some(AuthError::NoEndpoint { .. })),
        "{e}"
    );
}

fn source_of(e: &StorageError) -> Option<&AuthError> {
    match e {
        StorageError::Backend { source, .. } | StorageError::Unauthenticated { source, .. } => {
            source.downcast_ref::<AuthError>()
        }
        _ => None,
    }
}

#[tokio::test]
async fn keystone_v2_password_tenant() {
    let Some((token, storage)) = tempauth().await else {
        driver_testsuite::skip_test(
            "swift",
            "keystone_v2_password_tenant",
            "needs the TempAuth test node for a real token",
        );
        return;
    };
    let seen = Arc::new(Seen::default());
    let base = fake_keystone(token, storage, seen.clone()).await;
    let p = params(format!("{base}/v2.0"), "right")
        .with("tenant", "registry")
        .with("region", "RegionOne");
    let d = common::create(p).await.unwrap();
    round_trip(&d).await;
    let body = seen.bodies.lock().unwrap()[0].clone();
    assert_eq!(
        body["auth"],
        json!({"passwordCredentials": {"username": "registry", "password": "right"}, "tenantName": "registry"})
    );
}

#[tokio::test]
async fn keystone_wrong_password_is_a_typed_error() {
    let seen = Arc::new(Seen::default());
    let base = fake_keystone(
        "unused".into(),
        "http://127.0.0.1:1/v1".into(),
        seen.clone(),
    )
    .await;
    for url in [format!("{base}/v3"), format!("{base}/v2.0")] {
        let e = common::create(params(url, "wrong-pw-456"))
            .await
            .unwrap_err();
        match source_of(&e) {
            Some(AuthError::Rejected { status, .. }) => assert_eq!(*status, 401),
            other => panic!("expected Rejected, got {other:?}: {e}"),
        }
        assert!(!e.to_string().contains("wrong-pw-456"), "{e}");
    }
    assert_eq!(
        seen.calls.load(Ordering::SeqCst),
        2,
        "no retry of a refusal"
    );
}

#[tokio::test]
async fn keystone_v3_real_end_to_end() {
    let Some(url) = common::var("SWIFT_KS_AUTH_URL") else {
        driver_testsuite::skip_test(
            "swift",
            "keystone_v3_real_end_to_end",
            "SWIFT_KS_AUTH_URL is not set (a real Keystone; the swift row of `cargo xtask test-all` starts one beside its Swift node)",
        );
        return;
    };
    let v = |k: &str| common::var(k).unwrap();
    let p = Parameters::new()
        .with("authurl", url.clone())
        .with("username", v("SWIFT_KS_USERNAME"))
        .with("password", v("SWIFT_KS_PASSWORD"))
        .with("tenant", v("SWIFT_KS_TENANT"))
        .with("domain", v("SWIFT_KS_DOMAIN"))
        .with("region", "RegionOne")
        .with("container", "keystone-tests")
        .with("prefix", common::root("ks"))
        .with("chunksize", 1u64 << 20);
    let d = common::create(p.clone()).await.unwrap();
    d.put_content("/k/a", "through keystone").await.unwrap();
    assert_eq!(
        &d.get_content("/k/a").await.unwrap()[..],
        b"through keystone"
    );
    // A segmented object (two segments and a manifest) under the Keystone token.
    let data = driver_testsuite::data::DataGen::random().bytes((1 << 20) + 5);
    let mut w = d.writer("/k/big", false).await.unwrap();
    w.write(data.clone()).await.unwrap();
    w.commit().await.unwrap();
    assert!(d.get_content("/k/big").await.unwrap() == data);
    assert_eq!(d.list("/k").await.unwrap().len(), 2);
    d.delete("/k").await.unwrap();

    // The internal endpoint.
    let e = common::create(p.clone().with("endpointtype", "internal"))
        .await
        .map(drop);
    assert!(e.is_ok(), "{e:?}");
    // A wrong password: Keystone's 401, typed.
    let e = common::create(p.clone().with("password", "wrong-pw-789"))
        .await
        .unwrap_err();
    match source_of(&e) {
        Some(AuthError::Rejected { status, .. }) => assert_eq!(*status, 401),
        other => panic!("expected Rejected, got {other:?}: {e}"),
    }
    assert!(!e.to_string().contains("wrong-pw-789"), "{e}");
    // No object store in that region.
    let e = common::create(p.with("region", "RegionNine"))
        .await
        .unwrap_err();
    assert!(
        matches!(source_of(&e), Some(AuthError::NoEndpoint { .. })),
        "{e}"
    );
}
