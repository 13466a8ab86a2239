//! The XML bodies the driver sends and reads (OSS's, which carry no namespace).

use driver_api::Operation;
use driver_api::{Result, StorageError, StoragePath};
use serde::Deserialize;

use crate::DRIVER;

/// Parses an XML response body of operation `op`.
pub fn parse<T: for<'de> Deserialize<'de>>(
    body: &str,
    op: Operation,
    path: &StoragePath,
) -> Result<T> {
    quick_xml::de::from_str(body)
        .map_err(|e| StorageError::backend(DRIVER, op, path, format!("unexpected response: {e}")))
}

/// Escapes text for an XML element.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// Decodes a key or prefix of a listing made with `encoding-type=url`.
pub fn url_decoded(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `ListObjectsV2` result.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListBucketResult {
    /// Objects, in key order.
    #[serde(default)]
    pub contents: Vec<Object>,
    /// "Directories" (delimiter listings only).
    #[serde(default)]
    pub common_prefixes: Vec<CommonPrefix>,
    /// Whether another page follows.
    #[serde(default)]
    pub is_truncated: bool,
    /// Token of the next page.
    #[serde(default)]
    pub next_continuation_token: Option<String>,
}

impl ListBucketResult {
    /// The token of the next page, if any. Listings ask for `encoding-type=url`, which
    /// URL-encodes the token too (OSS's rule): it is decoded here.
    pub fn next(&self) -> Option<String> {
        if !self.is_truncated {
            return None;
        }
        self.next_continuation_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(url_decoded)
    }
}

/// One object of a listing.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Object {
    /// Key (URL-encoded: listings ask for `encoding-type=url`).
    pub key: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// ISO 8601 modification time.
    #[serde(default)]
    pub last_modified: String,
}

impl Object {
    /// The modification time (the epoch if unparsable).
    pub fn mod_time(&self) -> std::time::SystemTime {
        iso_time(&self.last_modified)
    }
}

/// A `<CommonPrefixes>` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CommonPrefix {
    /// The prefix, ending in the delimiter (URL-encoded).
    pub prefix: String,
}

/// Parses an ISO 8601 time such as `2024-01-02T03:04:05.000Z`.
pub fn iso_time(s: &str) -> std::time::SystemTime {
    s.parse::<jiff::Timestamp>()
        .map(std::time::SystemTime::from)
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// `InitiateMultipartUpload` result.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InitiateMultipartUploadResult {
    /// The new upload.
    pub upload_id: String,
}

/// `ListMultipartUploads` result.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListMultipartUploadsResult {
    /// Uploads in key order, then by initiation.
    #[serde(default, rename = "Upload")]
    pub uploads: Vec<Upload>,
    /// Whether another page follows.
    #[serde(default)]
    pub is_truncated: bool,
    /// Key marker of the next page.
    #[serde(default)]
    pub next_key_marker: Option<String>,
    /// Upload-id marker of the next page.
    #[serde(default)]
    pub next_upload_id_marker: Option<String>,
}

/// One upload in progress.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Upload {
    /// Its key.
    pub key: String,
    /// Its id.
    pub upload_id: String,
    /// When it was initiated (ISO 8601).
    #[serde(default)]
    pub initiated: String,
}

/// `ListParts` result.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListPartsResult {
    /// Parts in number order.
    #[serde(default, rename = "Part")]
    pub parts: Vec<ListedPart>,
    /// Whether another page follows.
    #[serde(default)]
    pub is_truncated: bool,
    /// Marker of the next page.
    #[serde(default)]
    pub next_part_number_marker: Option<String>,
}

/// One part as `ListParts` lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListedPart {
    /// 1-based number.
    pub part_number: u32,
    /// Its ETag, quoted as OSS sends it.
    #[serde(rename = "ETag")]
    pub etag: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
}

/// `UploadPartCopy` result.
#[derive(Debug, Deserialize)]
pub struct CopyPartResult {
    /// The part's ETag.
    #[serde(rename = "ETag")]
    pub etag: String,
}

/// The body of `CompleteMultipartUpload` for `parts` (in number order).
pub fn complete_body(parts: &[driver_objectstore::Part]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(64 + parts.len() * 80);
    s.push_str("<CompleteMultipartUpload>");
    for p in parts {
        let _ = write!(
            s,
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
            p.number,
            escape(&p.etag)
        );
    }
    s.push_str("</CompleteMultipartUpload>");
    s
}

/// The body of `DeleteMultipleObjects` (quiet mode) for `keys` (XML-escaped; the
/// `encoding-type=url` parameter applies to the keys of the response).
pub fn delete_body(keys: &[&str]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(64 + keys.len() * 64);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Quiet>true</Quiet>");
    for k in keys {
        let _ = write!(s, "<Object><Key>{}</Key></Object>", escape(k));
    }
    s.push_str("</Delete>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings() {
        let p = StoragePath::root();
        let x = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult><Name>b</Name><Prefix>a%2F</Prefix><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType>
<IsTruncated>true</IsTruncated><NextContinuationToken>tok%2B%2F%3D</NextContinuationToken>
<Contents><Key>a%2Fx%20y</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified><ETag>"E"</ETag><Type>Normal</Type><Size>7</Size><StorageClass>Standard</StorageClass></Contents>
<CommonPrefixes><Prefix>a%2Fd%2F</Prefix></CommonPrefixes><KeyCount>2</KeyCount></ListBucketResult>"#;
        let l: ListBucketResult = parse(x, Operation::List, &p).unwrap();
        assert_eq!(l.contents.len(), 1);
        assert_eq!(url_decoded(&l.contents[0].key), "a/x y");
        assert_eq!(l.contents[0].size, 7);
        assert!(l.contents[0].mod_time() > std::time::UNIX_EPOCH);
        assert_eq!(url_decoded(&l.common_prefixes[0].prefix), "a/d/");
        assert_eq!(l.next().as_deref(), Some("tok+/="));
        let empty: ListBucketResult = parse(
            "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
            Operation::List,
            &p,
        )
        .unwrap();
        assert!(empty.contents.is_empty() && empty.next().is_none());
    }

    #[test]
    fn bodies() {
        let parts = vec![driver_objectstore::Part {
            number: 1,
            size: 1,
            etag: "\"AB\"".into(),
        }];
        assert_eq!(
            complete_body(&parts),
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&quot;AB&quot;</ETag></Part></CompleteMultipartUpload>"
        );
        assert!(delete_body(&["a b/c&d"]).contains("<Key>a b/c&amp;d</Key>"));
    }
}
