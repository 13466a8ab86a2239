//! V4 signed URLs (`GOOG4-RSA-SHA256`, query-string form) with a service-account key.
//!
//! The canonical request is built here; the RSA-SHA256 signature comes from
//! `google-cloud-auth`'s signer. Checked against Google's published conformance vectors
//! (`tests/data/v4_signatures.json`, from googleapis/conformance-tests).

use std::time::Duration;

use google_cloud_auth::credentials::service_account::Builder;
use google_cloud_auth::signer::Signer;
use reqwest::Url;
use sha2::{Digest, Sha256};

/// Longest validity Google accepts for a V4 URL (7 days).
pub const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Signs URLs with one service account's key.
#[derive(Clone)]
pub struct UrlSigner {
    signer: Signer,
    email: String,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// Why a URL could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SignError(String);

/// Percent-encodes all but RFC 3986's unreserved characters (and `/` when `keep_slash`),
/// upper-case hex, as V4 signing requires.
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The unsigned parts of a V4 URL.
#[derive(Debug, PartialEq, Eq)]
pub struct Canonical {
    /// `scheme://host/bucket/object?query` without the signature.
    pub url: String,
    /// What is hashed into the string to sign.
    pub canonical_request: String,
    /// What the key signs.
    pub string_to_sign: String,
}

impl UrlSigner {
    /// A signer for the service-account key `key` (the key file's JSON).
    pub fn new(key: &serde_json::Value) -> Result<Self, SignError> {
        let email = key
            .get("client_email")
            .and_then(|v| v.as_str())
            .ok_or_else(|| SignError("the key has no client_email".into()))?
            .to_owned();
        let signer = Builder::new(key.clone())
            .build_signer()
            .map_err(|e| SignError(e.to_string()))?;
        Ok(Self { signer, email })
    }

    /// The service account's email.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// The canonical form of a path-style URL for `method` on `bucket`/`object` at
    /// `endpoint`, signed at `now`, valid `expires` (clamped to 1 s ..= 7 days).
    pub fn canonical(
        &self,
        endpoint: &Url,
        method: &str,
        bucket: &str,
        object: &str,
        now: jiff::Timestamp,
        expires: Duration,
    ) -> Canonical {
        let secs = expires.as_secs().clamp(1, MAX_EXPIRY.as_secs());
        let utc = now.to_zoned(jiff::tz::TimeZone::UTC);
        let date = utc.strftime("%Y%m%d").to_string();
        let stamp = utc.strftime("%Y%m%dT%H%M%SZ").to_string();
        let scope = format!("{date}/auto/storage/goog4_request");
        let credential = format!("{}/{scope}", self.email);
        // Sorted by (encoded) key, bytewise.
        let query = [
            ("X-Goog-Algorithm", "GOOG4-RSA-SHA256".to_owned()),
            ("X-Goog-Credential", credential),
            ("X-Goog-Date", stamp.clone()),
            ("X-Goog-Expires", secs.to_string()),
            ("X-Goog-SignedHeaders", "host".to_owned()),
        ]
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k, false), encode(v, false)))
        .collect::<Vec<_>>()
        .join("&");
        // The signed host never carries the port (as Google's vectors show).
        let host = endpoint.host_str().unwrap_or_default();
        let base = endpoint.path().trim_end_matches('/');
        let mut path = format!("{base}/{}", encode(bucket, false));
        if !object.is_empty() {
            path.push('/');
            path.push_str(&encode(object, true));
        }
        let canonical_request =
            format!("{method}\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
        let string_to_sign = format!(
            "GOOG4-RSA-SHA256\n{stamp}\n{scope}\n{}",
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let origin = endpoint.origin().ascii_serialization();
        Canonical {
            url: format!("{origin}{path}?{query}"),
            canonical_request,
            string_to_sign,
        }
    }

    /// A signed URL (see [`canonical`](Self::canonical)).
    pub async fn sign(
        &self,
        endpoint: &Url,
        method: &str,
        bucket: &str,
        object: &str,
        now: jiff::Timestamp,
        expires: Duration,
    ) -> Result<String, SignError> {
        let c = self.canonical(endpoint, method, bucket, object, now, expires);
        let sig = self
            .signer
            .sign(c.string_to_sign.as_bytes())
            .await
            .map_err(|e| SignError(e.to_string()))?;
        Ok(format!("{}&X-Goog-Signature={}", c.url, hex(&sig)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(encode("a b/~é&", true), "a%20b/~%C3%A9%26");
        assert_eq!(encode("a@b/c", false), "a%40b%2Fc");
    }
}
