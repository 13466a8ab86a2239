//! What a stored manifest references, as Distribution's manifest handlers read it
//! (`registry/storage/manifeststore.go` and each schema's `References()`).
//!
//! | schema | media type | references |
//! |---|---|---|
//! | 1 | signed (`...v1+prettyjws`) or unsigned | every `fsLayers[].blobSum` |
//! | 2 | `application/vnd.docker.distribution.manifest.v2+json`, `application/vnd.oci.image.manifest.v1+json` | `config` and every `layers[]` |
//! | 2 | `application/vnd.docker.distribution.manifest.list.v2+json`, `application/vnd.oci.image.index.v1+json` | every `manifests[]` (child manifests) |
//! | 2 | none | an index if it has `manifests`, else an image manifest (OCI allows leaving the media type out) |
//!
//! Anything else is an error, as in Distribution: a collector that cannot read a
//! manifest cannot know what it keeps alive, so it must not sweep.

use serde::Deserialize;

use super::layout::Digest;

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or not the shape its schema requires.
    #[error("not a manifest: {0}")]
    Json(#[from] serde_json::Error),
    /// A schema version Distribution does not store.
    #[error("unrecognized manifest schema version {0}")]
    SchemaVersion(u64),
    /// A schema 2 media type Distribution does not store.
    #[error("unrecognized manifest content type {0}")]
    MediaType(String),
    /// A descriptor's digest that is not `algo:hex`.
    #[error("bad digest {0:?} in a descriptor")]
    Digest(String),
}

/// What a manifest points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct References {
    /// The digests it references, in the manifest's order.
    pub digests: Vec<Digest>,
    /// True for a manifest list or image index (its references are manifests).
    pub index: bool,
}

#[derive(Deserialize)]
struct Versioned {
    #[serde(rename = "schemaVersion")]
    schema_version: u64,
    #[serde(rename = "mediaType", default)]
    media_type: String,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

#[derive(Deserialize)]
struct FsLayer {
    #[serde(rename = "blobSum")]
    blob_sum: String,
}

#[derive(Deserialize)]
struct Schema1 {
    #[serde(rename = "fsLayers", default)]
    fs_layers: Vec<FsLayer>,
}

#[derive(Deserialize)]
struct Image {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Index {
    manifests: Option<Vec<Descriptor>>,
}

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn digests<'a>(strings: impl Iterator<Item = &'a str>) -> Result<Vec<Digest>, ManifestError> {
    strings
        .map(|s| Digest::parse(s).ok_or_else(|| ManifestError::Digest(s.to_owned())))
        .collect()
}

fn image(content: &[u8]) -> Result<References, ManifestError> {
    let m: Image = serde_json::from_slice(content)?;
    let all =
        std::iter::once(m.config.digest.as_str()).chain(m.layers.iter().map(|l| l.digest.as_str()));
    Ok(References {
        digests: digests(all)?,
        index: false,
    })
}

fn index(list: &[Descriptor]) -> Result<References, ManifestError> {
    Ok(References {
        digests: digests(list.iter().map(|d| d.digest.as_str()))?,
        index: true,
    })
}

/// The references of a manifest's stored bytes.
pub fn references(content: &[u8]) -> Result<References, ManifestError> {
    let v: Versioned = serde_json::from_slice(content)?;
    match v.schema_version {
        1 => {
            let m: Schema1 = serde_json::from_slice(content)?;
            Ok(References {
                digests: digests(m.fs_layers.iter().map(|l| l.blob_sum.as_str()))?,
                index: false,
            })
        }
        2 => match v.media_type.as_str() {
            DOCKER_MANIFEST | OCI_MANIFEST => image(content),
            DOCKER_LIST | OCI_INDEX => {
                let i: Index = serde_json::from_slice(content)?;
                index(i.manifests.as_deref().unwrap_or_default())
            }
            "" => match serde_json::from_slice::<Index>(content) {
                Ok(Index {
                    manifests: Some(list),
                }) => index(&list),
                _ => image(content),
            },
            other => Err(ManifestError::MediaType(other.to_owned())),
        },
        n => Err(ManifestError::SchemaVersion(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_manifests_reference_config_then_layers() {
        for mt in [DOCKER_MANIFEST, OCI_MANIFEST, ""] {
            let m = format!(
                r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{"digest":"{}"}},
                "layers":[{{"digest":"{}"}},{{"digest":"{}"}}]}}"#,
                d('a'),
                d('b'),
                d('c')
            );
            let r = references(m.as_bytes()).unwrap();
            assert!(!r.index);
            let got: Vec<String> = r.digests.iter().map(ToString::to_string).collect();
            assert_eq!(got, [d('a'), d('b'), d('c')], "{mt:?}");
        }
    }

    #[test]
    fn indexes_reference_their_manifests() {
        for mt in [DOCKER_LIST, OCI_INDEX, ""] {
            let m = format!(
                r#"{{"schemaVersion":2,"mediaType":"{mt}","manifests":[{{"digest":"{}"}}]}}"#,
                d('e')
            );
            let r = references(m.as_bytes()).unwrap();
            assert!(r.index, "{mt:?}");
            assert_eq!(r.digests[0].to_string(), d('e'));
        }
    }

    #[test]
    fn schema1_references_its_blob_sums() {
        let m = format!(
            r#"{{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[{{"blobSum":"{}"}}]}}"#,
            d('f')
        );
        let r = references(m.as_bytes()).unwrap();
        assert_eq!(r.digests[0].to_string(), d('f'));
    }

    #[test]
    fn unknown_or_broken_manifests_are_errors() {
        assert!(matches!(
            references(br#"{"schemaVersion":3}"#),
            Err(ManifestError::SchemaVersion(3))
        ));
        assert!(matches!(
            references(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#),
            Err(ManifestError::MediaType(_))
        ));
        assert!(matches!(
            references(b"not json"),
            Err(ManifestError::Json(_))
        ));
        assert!(matches!(
            references(br#"{"schemaVersion":2,"config":{"digest":"sha256:zz"}}"#),
            Err(ManifestError::Digest(_))
        ));
    }
}
