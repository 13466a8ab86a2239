//! The XML bodies the driver reads: blob listings and block lists.

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

/// `List Blobs` result.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnumerationResults {
    /// Blobs and (with a delimiter) prefixes.
    #[serde(default)]
    pub blobs: Blobs,
    /// Continuation marker; empty on the last page.
    #[serde(default)]
    pub next_marker: Option<String>,
}

impl EnumerationResults {
    /// The marker of the next page, if any.
    pub fn next(&self) -> Option<String> {
        self.next_marker.clone().filter(|m| !m.is_empty())
    }
}

/// The `<Blobs>` element.
#[derive(Debug, Default, Deserialize)]
pub struct Blobs {
    /// In listing order.
    #[serde(rename = "$value", default)]
    pub items: Vec<Item>,
}

/// A blob or a prefix.
#[derive(Debug, Deserialize)]
pub enum Item {
    /// A blob.
    Blob(Blob),
    /// A "directory" (delimiter listings only).
    BlobPrefix(Prefix),
}

/// One blob of a listing.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Blob {
    /// Full name.
    pub name: String,
    /// Its properties.
    pub properties: Properties,
}

/// The properties the driver uses.
#[derive(Debug, Deserialize)]
pub struct Properties {
    /// Size in bytes.
    #[serde(rename = "Content-Length")]
    pub content_length: u64,
    /// RFC 1123 time.
    #[serde(rename = "Last-Modified")]
    pub last_modified: String,
}

/// A prefix of a delimiter listing.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Prefix {
    /// The prefix, delimiter included.
    pub name: String,
}

/// `Get Block List` result.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BlockList {
    /// Uncommitted blocks (committed ones are not asked for).
    #[serde(default)]
    pub uncommitted_blocks: Blocks,
}

impl BlockList {
    /// The uncommitted blocks.
    pub fn uncommitted(&self) -> impl Iterator<Item = &Block> {
        self.uncommitted_blocks.blocks.iter()
    }
}

/// A list of blocks.
#[derive(Debug, Default, Deserialize)]
pub struct Blocks {
    /// The blocks.
    #[serde(rename = "Block", default)]
    pub blocks: Vec<Block>,
}

/// One block.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Block {
    /// Its (base64) id.
    pub name: String,
    /// Its size.
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_with_prefixes() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="c">
<Prefix>a/</Prefix><Delimiter>/</Delimiter>
<Blobs>
 <Blob><Name>a/b</Name><Properties><Last-Modified>Mon, 23 Nov 2026 10:03:39 GMT</Last-Modified><Etag>0x1</Etag><Content-Length>12</Content-Length><BlobType>BlockBlob</BlobType></Properties></Blob>
 <BlobPrefix><Name>a/c/</Name></BlobPrefix>
 <Blob><Name>a/d&amp;e</Name><Properties><Last-Modified>Mon, 23 Nov 2026 10:03:39 GMT</Last-Modified><Content-Length>0</Content-Length></Properties></Blob>
</Blobs>
<NextMarker>m2</NextMarker>
</EnumerationResults>"#;
        let p = StoragePath::new("/a").unwrap();
        let r: EnumerationResults = parse(xml, Operation::List, &p).unwrap();
        assert_eq!(r.blobs.items.len(), 3);
        assert!(
            matches!(&r.blobs.items[0], Item::Blob(b) if b.name == "a/b" && b.properties.content_length == 12)
        );
        assert!(matches!(&r.blobs.items[1], Item::BlobPrefix(p) if p.name == "a/c/"));
        assert!(matches!(&r.blobs.items[2], Item::Blob(b) if b.name == "a/d&e"));
        assert_eq!(r.next().as_deref(), Some("m2"));

        let empty = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Blobs /><NextMarker /></EnumerationResults>"#;
        let r: EnumerationResults = parse(empty, Operation::List, &p).unwrap();
        assert!(r.blobs.items.is_empty());
        assert_eq!(r.next(), None);
    }

    #[test]
    fn block_lists() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><BlockList><CommittedBlocks /><UncommittedBlocks><Block><Name>QUFB</Name><Size>5</Size></Block><Block><Name>QkJC</Name><Size>1</Size></Block></UncommittedBlocks></BlockList>"#;
        let p = StoragePath::new("/a").unwrap();
        let l: BlockList = parse(xml, Operation::Writer, &p).unwrap();
        let names: Vec<_> = l.uncommitted().map(|b| (b.name.as_str(), b.size)).collect();
        assert_eq!(names, [("QUFB", 5), ("QkJC", 1)]);
    }
}
