//! V4 signed URLs against Google's own conformance vectors (googleapis/conformance-tests,
//! `storage/v1/v4_signatures.json`: the path-style GET cases, with the public dummy key
//! they were made with). RSA PKCS#1 v1.5 signatures are deterministic, so the URL must
//! match byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use driver_gcs::sign::UrlSigner;
use serde_json::Value;

fn data(name: &str) -> Value {
    let p = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[tokio::test]
async fn urls_match_googles_conformance_vectors() {
    // The signer needs a rustls provider, as the driver installs.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let signer = UrlSigner::new(&data("service_account.json")).unwrap();
    let endpoint = reqwest::Url::parse("https://storage.googleapis.com").unwrap();
    let vectors = data("v4_signatures.json");
    let vectors = vectors["signingV4Tests"].as_array().unwrap();
    assert!(vectors.len() >= 5);
    for v in vectors {
        let what = v["description"].as_str().unwrap();
        let now: jiff::Timestamp = v["timestamp"].as_str().unwrap().parse().unwrap();
        let expires = Duration::from_secs(v["expiration"].as_u64().unwrap());
        let (method, bucket) = (v["method"].as_str().unwrap(), v["bucket"].as_str().unwrap());
        let object = v["object"].as_str().unwrap_or("");
        let c = signer.canonical(&endpoint, method, bucket, object, now, expires);
        assert_eq!(c.canonical_request, v["expectedCanonicalRequest"], "{what}");
        assert_eq!(c.string_to_sign, v["expectedStringToSign"], "{what}");
        let url = signer
            .sign(&endpoint, method, bucket, object, now, expires)
            .await
            .unwrap();
        assert_eq!(url, v["expectedUrl"].as_str().unwrap(), "{what}");
    }
}

#[tokio::test]
async fn expiry_is_bounded_to_seven_days() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let signer = UrlSigner::new(&data("service_account.json")).unwrap();
    let endpoint = reqwest::Url::parse("http://127.0.0.1:4443").unwrap();
    let c = signer.canonical(
        &endpoint,
        "GET",
        "b",
        "a/b c",
        jiff::Timestamp::now(),
        Duration::from_secs(30 * 24 * 3600),
    );
    assert!(c.url.contains("X-Goog-Expires=604800&"), "{}", c.url);
    assert!(
        c.url.starts_with("http://127.0.0.1:4443/b/a/b%20c?"),
        "{}",
        c.url
    );
    // The signed host has no port (as Google's vectors for custom endpoints).
    assert!(c.canonical_request.contains("\nhost:127.0.0.1\n"));
}
