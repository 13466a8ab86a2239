//! Distribution's storage layout (`registry/storage/paths.go`), as far as garbage
//! collection reads and writes it: which walked path is a blob, a manifest revision, a tag
//! or a layer link, and the paths the sweep deletes.
//!
//! ```text
//! /docker/registry/v2/blobs/<algo>/<hex[..2]>/<hex>/data
//! /docker/registry/v2/repositories/<name>/_layers/<algo>/<hex>/link
//! /docker/registry/v2/repositories/<name>/_manifests/revisions/<algo>/<hex>/link
//! /docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
//! /docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/index/<algo>/<hex>/link
//! ```

use std::fmt;

/// Where Distribution keeps its tree below the driver's root.
pub const ROOT: &str = "/docker/registry/v2";

/// The blobs' directory.
pub fn blobs_root() -> String {
    format!("{ROOT}/blobs")
}

/// The repositories' directory.
pub fn repositories_root() -> String {
    format!("{ROOT}/repositories")
}

/// A content digest, held compactly: sha256 (all Distribution writes) as 32 bytes, any
/// other algorithm as its text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Digest {
    /// `sha256:<64 hex>`.
    Sha256([u8; 32]),
    /// `<algo>:<hex>` for sha384, sha512 and the like.
    Other(Box<str>),
}

impl Digest {
    /// Parses `algo:hex` (lowercase hex, as Distribution requires).
    pub fn parse(s: &str) -> Option<Digest> {
        let (algo, hex) = s.trim().split_once(':')?;
        Digest::from_parts(algo, hex)
    }

    /// From the algorithm and hex halves of a path.
    pub fn from_parts(algo: &str, hex: &str) -> Option<Digest> {
        let lower_hex = |h: &str| h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        match algo {
            "sha256" => {
                if hex.len() != 64 || !lower_hex(hex) {
                    return None;
                }
                let mut out = [0u8; 32];
                for (i, byte) in out.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
                }
                Some(Digest::Sha256(out))
            }
            "sha384" | "sha512" => {
                let want = if algo == "sha384" { 96 } else { 128 };
                (hex.len() == want && lower_hex(hex))
                    .then(|| Digest::Other(format!("{algo}:{hex}").into()))
            }
            _ => None,
        }
    }

    /// The algorithm's name.
    pub fn algorithm(&self) -> &str {
        match self {
            Digest::Sha256(_) => "sha256",
            Digest::Other(s) => s.split_once(':').map_or("", |(a, _)| a),
        }
    }

    /// The hex half.
    pub fn hex(&self) -> String {
        match self {
            Digest::Sha256(b) => b.iter().map(|b| format!("{b:02x}")).collect(),
            Digest::Other(s) => s.split_once(':').map_or("", |(_, h)| h).to_owned(),
        }
    }

    /// The blob's directory (`RemoveBlob` deletes it).
    pub fn blob_dir(&self) -> String {
        let hex = self.hex();
        format!("{}/{}/{}/{hex}", blobs_root(), self.algorithm(), &hex[..2])
    }

    /// The blob's content.
    pub fn blob_data(&self) -> String {
        format!("{}/data", self.blob_dir())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Digest::Sha256(_) => write!(f, "sha256:{}", self.hex()),
            Digest::Other(s) => f.write_str(s),
        }
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The digest of a walked `blobs/<algo>/<xx>/<hex>/data` path (below [`blobs_root`]), as
/// Distribution's blob enumeration reads it; `None` for anything else.
pub fn blob_of(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix(&blobs_root())?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let (algo, prefix, hex, data) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if data != "data" || parts.next().is_some() || !hex.starts_with(prefix) || prefix.len() != 2 {
        return None;
    }
    Digest::from_parts(algo, hex)
}

/// What a walked path below [`repositories_root`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoEntry {
    /// `<repo>/_layers/...`: the repository exists (Distribution enumerates a repository
    /// by its `_layers` directory); `Some` for a layer link (`<algo>/<hex>` or the `link`
    /// file in it).
    Layers(Option<Digest>),
    /// `<repo>/_manifests/revisions/<algo>/<hex>/link`.
    Revision(Digest),
    /// `<repo>/_manifests/tags`, the tags' directory.
    Tags,
    /// Below `<repo>/_manifests/tags/<tag>/`: the tag exists (Distribution lists a
    /// repository's tags as the directories there); `current` for its `current/link`.
    Tag {
        /// The tag.
        name: String,
        /// True for `<tag>/current/link`, the digest the tag names.
        current: bool,
        /// The revision of an `index/<algo>/<hex>` entry or its `link` (the tag's history).
        index: Option<Digest>,
    },
    /// Anything else (uploads, tag index entries, directories).
    Other,
}

/// Splits a walked path below [`repositories_root`] into the repository's name and what
/// the entry is; `None` outside any repository. A repository's name ends before the first
/// path component that starts with `_` (names never have one: Distribution's reference
/// grammar starts components with a letter or digit).
pub fn repo_entry(path: &str) -> Option<(&str, RepoEntry)> {
    let root = repositories_root();
    let rest = path.strip_prefix(&root)?.strip_prefix('/')?;
    let at = rest
        .match_indices('/')
        .map(|(i, _)| i + 1)
        .find(|&i| rest[i..].starts_with('_'))?;
    let (name, inner) = (&rest[..at - 1], &rest[at..]);
    let parts: Vec<&str> = inner.split('/').collect();
    let entry = match parts.as_slice() {
        // A layer link's directory names its digest, like the link inside it (on a flat
        // listing the directory's time is the link's; on a filesystem, when the link was
        // created in it): a scan may take either.
        ["_layers", algo, hex] | ["_layers", algo, hex, "link"] => {
            RepoEntry::Layers(Digest::from_parts(algo, hex))
        }
        ["_layers", ..] => RepoEntry::Layers(None),
        ["_manifests", "revisions", algo, hex, "link"] => match Digest::from_parts(algo, hex) {
            Some(d) => RepoEntry::Revision(d),
            None => RepoEntry::Other,
        },
        ["_manifests", "tags"] => RepoEntry::Tags,
        ["_manifests", "tags", tag, rest @ ..] => RepoEntry::Tag {
            name: (*tag).into(),
            current: rest == ["current", "link"],
            index: match rest {
                ["index", algo, hex] | ["index", algo, hex, "link"] => {
                    Digest::from_parts(algo, hex)
                }
                _ => None,
            },
        },
        _ => RepoEntry::Other,
    };
    Some((name, entry))
}

/// A repository's directory.
pub fn repo_dir(repo: &str) -> String {
    format!("{}/{repo}", repositories_root())
}

/// A manifest revision's directory (`RemoveManifest` deletes it).
pub fn revision_dir(repo: &str, d: &Digest) -> String {
    format!(
        "{}/_manifests/revisions/{}/{}",
        repo_dir(repo),
        d.algorithm(),
        d.hex()
    )
}

/// A tag's index entry for a revision (`RemoveManifest` deletes it for every tag).
pub fn tag_index_dir(repo: &str, tag: &str, d: &Digest) -> String {
    format!(
        "{}/_manifests/tags/{tag}/index/{}/{}",
        repo_dir(repo),
        d.algorithm(),
        d.hex()
    )
}

/// A tag's current link.
pub fn tag_current(repo: &str, tag: &str) -> String {
    format!("{}/_manifests/tags/{tag}/current/link", repo_dir(repo))
}

/// A layer link file (`RemoveLayer` deletes it).
pub fn layer_link(repo: &str, d: &Digest) -> String {
    format!(
        "{}/_layers/{}/{}/link",
        repo_dir(repo),
        d.algorithm(),
        d.hex()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn digests_round_trip_and_reject_bad_hex() {
        let d = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        assert_eq!(d.to_string(), format!("sha256:{HEX}"));
        assert_eq!(
            d.blob_data(),
            format!("/docker/registry/v2/blobs/sha256/01/{HEX}/data")
        );
        assert!(Digest::parse(&format!("sha256:{}", HEX.to_uppercase())).is_none());
        assert!(Digest::parse("sha256:abc").is_none());
        assert!(Digest::parse(&format!("md5:{HEX}")).is_none());
        let long = "ab".repeat(64);
        let d = Digest::parse(&format!("sha512:{long}")).unwrap();
        assert_eq!(d.blob_dir(), format!("{}/sha512/ab/{long}", blobs_root()));
    }

    #[test]
    fn blob_paths() {
        let p = format!("/docker/registry/v2/blobs/sha256/01/{HEX}/data");
        assert_eq!(blob_of(&p).unwrap().hex(), HEX);
        assert!(blob_of(&format!("/docker/registry/v2/blobs/sha256/02/{HEX}/data")).is_none());
        assert!(blob_of(&format!("/docker/registry/v2/blobs/sha256/01/{HEX}")).is_none());
        assert!(blob_of(&format!("/docker/registry/v2/blobs/sha256/01/{HEX}/data/x")).is_none());
    }

    #[test]
    fn repository_entries() {
        let r = repositories_root();
        let d = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        assert_eq!(
            repo_entry(&format!("{r}/team/app/_layers/sha256/{HEX}/link")),
            Some(("team/app", RepoEntry::Layers(Some(d.clone()))))
        );
        assert_eq!(
            repo_entry(&format!("{r}/team/app/_layers")),
            Some(("team/app", RepoEntry::Layers(None)))
        );
        assert_eq!(
            repo_entry(&format!("{r}/a/_manifests/revisions/sha256/{HEX}/link")),
            Some(("a", RepoEntry::Revision(d.clone())))
        );
        assert_eq!(
            repo_entry(&format!("{r}/a/b/c/_manifests/tags/v1.0/current/link")),
            Some((
                "a/b/c",
                RepoEntry::Tag {
                    name: "v1.0".into(),
                    current: true,
                    index: None
                }
            ))
        );
        assert_eq!(
            repo_entry(&format!("{r}/a/_manifests/tags/v1/index/sha256/{HEX}/link")),
            Some((
                "a",
                RepoEntry::Tag {
                    name: "v1".into(),
                    current: false,
                    index: Some(d.clone())
                }
            ))
        );
        assert_eq!(
            repo_entry(&format!("{r}/a/_manifests/revisions/sha256/{HEX}")),
            Some(("a", RepoEntry::Other))
        );
        assert_eq!(
            repo_entry(&format!("{r}/a/_manifests/tags")),
            Some(("a", RepoEntry::Tags))
        );
        assert_eq!(
            repo_entry(&format!("{r}/a/_uploads/x/data")),
            Some(("a", RepoEntry::Other))
        );
        assert_eq!(repo_entry(&format!("{r}/a/b")), None);
        assert_eq!(repo_entry("/docker/registry/v2/blobs/x"), None);
        assert_eq!(
            layer_link("a", &d),
            format!("{r}/a/_layers/sha256/{HEX}/link")
        );
        assert_eq!(
            tag_current("a", "v1"),
            format!("{r}/a/_manifests/tags/v1/current/link")
        );
    }
}
