//! Writes a synthetic Distribution registry through any driver, to measure and compare
//! garbage collectors (`storagectl gc` and Distribution's `registry garbage-collect`) on
//! a registry of realistic shape without pushing images through a registry.
//!
//! ```text
//! cargo run --release -p storagectl --example gc_dataset -- CONFIG.yml \
//!     [--repos 200] [--images-per-repo 3] [--base-layers 20] [--layer-kib 4] \
//!     [--untagged-every 2] [--orphans-per-repo 1] [--seed 1] [--jobs 32] [--replace]
//! ```
//!
//! `CONFIG.yml` is a Distribution configuration; its `storage` section names the driver
//! (for S3 its `rootdirectory` is where the registry goes). Every blob is stored at
//! `/docker/registry/v2/blobs/sha256/<xx>/<hex>/data` under the real sha256 of its content,
//! with the links Distribution writes:
//!
//! - a pool of `--base-layers` shared layers; each image uses two of them, so they are
//!   shared across repositories (`repo-NNNN`);
//! - per image: a JSON image config, two unique layers of `--layer-kib` KiB random bytes,
//!   and an image manifest (docker schema 2 or OCI, alternately) stored as a blob, with its
//!   revision link; a `_layers` link in the repository for the config and every layer (as
//!   an upload or a cross-repository mount writes);
//! - image `i` is tagged `v<i>` (the tag's `current/link` and `index/` entry), except that
//!   in every `--untagged-every`-th repository image 0 was pushed as `v1` and then `v1` was
//!   pushed again as image 1: image 0 is untagged, listed only in `v1`'s index;
//! - `--orphans-per-repo` orphan blobs per repository, referenced by no manifest: half of
//!   them with a `_layers` link (an upload whose manifest never came), half without.
//!
//! It prints the totals and what a collector should answer: the blobs marked and the blobs
//! eligible for deletion, with and without `--delete-untagged` (for that, a blob used only
//! by untagged images counts as eligible; the shared base layers are always kept). The
//! content is a function of `--seed` and the counts, so a rerun writes the same registry;
//! `--replace` deletes `/docker` below the root first (otherwise the new files are added
//! to what is there).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use driver_api::StorageError;
use futures::StreamExt;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use storagectl::config::StorageConfig;

const USAGE: &str = "usage: gc_dataset CONFIG.yml [--repos 200] [--images-per-repo 3] \
                     [--base-layers 20] [--layer-kib 4] [--untagged-every 2] \
                     [--orphans-per-repo 1] [--seed 1] [--jobs 32] [--replace]";

const ROOT: &str = "/docker/registry/v2";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

fn usage(why: &str) -> ! {
    eprintln!("{why}\n{USAGE}");
    std::process::exit(2)
}

/// The command line.
struct Args {
    config: PathBuf,
    repos: usize,
    images: usize,
    base_layers: usize,
    layer_kib: usize,
    untagged_every: usize,
    orphans_per_repo: usize,
    seed: u64,
    jobs: usize,
    replace: bool,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        config: it
            .next()
            .filter(|c| !c.starts_with("--"))
            .map(PathBuf::from)
            .unwrap_or_else(|| usage("no configuration file")),
        repos: 200,
        images: 3,
        base_layers: 20,
        layer_kib: 4,
        untagged_every: 2,
        orphans_per_repo: 1,
        seed: 1,
        jobs: 32,
        replace: false,
    };
    while let Some(flag) = it.next() {
        if flag == "--replace" {
            a.replace = true;
            continue;
        }
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let n: u64 = value
            .parse()
            .unwrap_or_else(|_| usage(&format!("bad value for {flag}: {value}")));
        let size = usize::try_from(n).unwrap_or(usize::MAX);
        match flag.as_str() {
            "--repos" => a.repos = size,
            "--images-per-repo" => a.images = size,
            "--base-layers" => a.base_layers = size,
            "--layer-kib" => a.layer_kib = size,
            "--untagged-every" => a.untagged_every = size,
            "--orphans-per-repo" => a.orphans_per_repo = size,
            "--seed" => a.seed = n,
            "--jobs" => a.jobs = size.max(1),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    if a.repos == 0 || a.images == 0 || a.base_layers < 2 {
        usage("--repos and --images-per-repo must be at least 1, --base-layers at least 2");
    }
    a
}

/// `n` pseudo-random bytes from `seed` (the suite's generator; the seed is spread so
/// small seeds start far apart).
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    driver_testsuite::data::DataGen::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        .bytes(n)
        .to_vec()
}

/// `sha256:<hex>` of `data`.
fn digest(data: &[u8]) -> String {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("a sha256 digest")
}

/// What to write: every file by path (a path written twice holds the same content).
#[derive(Default)]
struct Files {
    files: BTreeMap<String, Bytes>,
    /// Every blob's digest.
    blobs: BTreeSet<String>,
    bytes: u64,
}

impl Files {
    /// Stores `data` as a blob; returns its digest.
    fn blob(&mut self, data: Vec<u8>) -> String {
        let d = digest(&data);
        let hex = hex_of(&d);
        let path = format!("{ROOT}/blobs/sha256/{}/{hex}/data", &hex[..2]);
        if self.blobs.insert(d.clone()) {
            self.bytes += data.len() as u64;
            self.files.insert(path, Bytes::from(data));
        }
        d
    }

    /// Writes a link file below `repositories/<repo>/`.
    fn link(&mut self, repo: &str, rel: &str, target: &str) {
        self.files.insert(
            format!("{ROOT}/repositories/{repo}/{rel}"),
            Bytes::from(target.to_owned()),
        );
    }

    fn layer_link(&mut self, repo: &str, d: &str) {
        self.link(repo, &format!("_layers/sha256/{}/link", hex_of(d)), d);
    }
}

/// One image as built: the manifest's digest and the blobs it references.
struct Image {
    manifest: String,
    refs: Vec<String>,
    tagged: bool,
}

/// A descriptor.
fn desc(media_type: &str, digest: &str, size: usize) -> serde_json::Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}

/// Builds image `i` of repository `r` and writes its blobs and `_layers` links.
fn image(files: &mut Files, a: &Args, base: &[(String, usize)], r: usize, i: usize) -> Image {
    let repo = format!("repo-{r:04}");
    let oci = (r + i) % 2 == 1;
    let (manifest_type, config_type, layer_type) = if oci {
        (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
    } else {
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
    };
    // Two shared base layers, then two of its own.
    let first = (r * 7 + i) % base.len();
    let mut layers: Vec<(String, usize)> =
        vec![base[first].clone(), base[(first + 1) % base.len()].clone()];
    for j in 0..2u64 {
        let seed = a.seed ^ ((r as u64) << 32 | (i as u64) << 8 | (j + 1)).wrapping_mul(31);
        let data = random_bytes(a.layer_kib << 10, seed);
        let size = data.len();
        layers.push((files.blob(data), size));
    }
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": format!("2024-01-01T00:{:02}:{:02}Z", r % 60, i % 60),
        "config": {
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "Cmd": ["/app"],
            "Labels": { "repository": repo, "image": i.to_string(), "seed": a.seed.to_string() },
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>(),
        },
        "history": layers.iter().map(|_| json!({ "created_by": "gc_dataset" })).collect::<Vec<_>>(),
    });
    let config = serde_json::to_vec(&config).expect("JSON");
    let config_size = config.len();
    let config_digest = files.blob(config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": desc(config_type, &config_digest, config_size),
        "layers": layers.iter().map(|(d, n)| desc(layer_type, d, *n)).collect::<Vec<_>>(),
    });
    let manifest = files.blob(serde_json::to_vec_pretty(&manifest).expect("JSON"));
    let mut refs = vec![config_digest];
    refs.extend(layers.into_iter().map(|(d, _)| d));
    for d in &refs {
        files.layer_link(&repo, d);
    }
    files.link(
        &repo,
        &format!("_manifests/revisions/sha256/{}/link", hex_of(&manifest)),
        &manifest,
    );
    Image {
        manifest,
        refs,
        tagged: true,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args();
    let started = Instant::now();
    let driver = StorageConfig::from_file(&a.config)?.create().await?;
    if a.replace {
        match driver.delete("/docker").await {
            Ok(()) | Err(StorageError::PathNotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }

    let mut files = Files::default();
    let base: Vec<(String, usize)> = (0..a.base_layers)
        .map(|b| {
            let data = random_bytes(a.layer_kib << 10, a.seed ^ (0xBA5E_0000 + b as u64));
            let size = data.len();
            (files.blob(data), size)
        })
        .collect();
    let mut images: Vec<Image> = Vec::new();
    let mut orphans = 0usize;
    for r in 0..a.repos {
        let repo = format!("repo-{r:04}");
        let overwrite = a.untagged_every > 0 && r % a.untagged_every == 0 && a.images >= 2;
        let first = images.len();
        for i in 0..a.images {
            images.push(image(&mut files, &a, &base, r, i));
        }
        // Tags: image i is `v<i>`; with `overwrite`, image 0 was `v1` before image 1.
        for i in 0..a.images {
            let img = &images[first + i];
            let (tag, current) = if overwrite && i == 0 {
                ("v1".to_owned(), false)
            } else {
                (format!("v{i}"), true)
            };
            let m = img.manifest.clone();
            let tags = format!("_manifests/tags/{tag}");
            files.link(
                &repo,
                &format!("{tags}/index/sha256/{}/link", hex_of(&m)),
                &m,
            );
            if current {
                files.link(&repo, &format!("{tags}/current/link"), &m);
            } else {
                images[first + i].tagged = false;
            }
        }
        for o in 0..a.orphans_per_repo {
            let seed = a.seed ^ (0x0E7A_0000_0000 | (r as u64) << 8 | o as u64);
            let d = files.blob(random_bytes(a.layer_kib << 10, seed));
            if o % 2 == 0 {
                files.layer_link(&repo, &d);
            }
            orphans += 1;
        }
    }

    // What a collector should answer.
    let marked = |only_tagged: bool| -> BTreeSet<&str> {
        images
            .iter()
            .filter(|img| img.tagged || !only_tagged)
            .flat_map(|img| std::iter::once(&img.manifest).chain(&img.refs))
            .map(String::as_str)
            .collect()
    };
    let (all, tagged_only) = (marked(false), marked(true));
    let tagged = images.iter().filter(|i| i.tagged).count();

    // Write, `--jobs` at once.
    let total_files = files.files.len();
    let written = futures::stream::iter(files.files)
        .map(|(path, data)| {
            let driver = driver.clone();
            async move { driver.put_content(&path, data).await }
        })
        .buffer_unordered(a.jobs)
        .fold(
            Ok(0usize),
            |acc: Result<usize, StorageError>, res| async move {
                match (acc, res) {
                    (Ok(n), Ok(())) => Ok(n + 1),
                    (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                }
            },
        )
        .await?;

    println!(
        "wrote {written} of {total_files} files ({} blobs, {:.1} MiB) in {:.1} s",
        files.blobs.len(),
        files.bytes as f64 / f64::from(1u32 << 20),
        started.elapsed().as_secs_f64()
    );
    println!(
        "repositories {}\nblobs {}\nmanifests {}\ntagged {tagged}\nuntagged {}\norphans {orphans}\n\
         base layers {}",
        a.repos,
        files.blobs.len(),
        images.len(),
        images.len() - tagged,
        a.base_layers
    );
    println!(
        "expected: marked {} / eligible blobs {} (keeping untagged); \
         marked {} / eligible blobs {} / eligible manifests {} (--delete-untagged)",
        all.len(),
        files.blobs.len() - all.len(),
        tagged_only.len(),
        files.blobs.len() - tagged_only.len(),
        images.len() - tagged
    );
    Ok(())
}
