//! Out-of-process storage drivers, in any language, over a documented pipe protocol.
//!
//! A driver can run as its own executable, `registry-storage-<name>`, speaking the
//! protocol of docs/ipc-protocol.md on its stdin and stdout: framed messages with raw
//! binary payloads, many requests at once over one child, streams with flow control (so
//! memory stays bounded for any object size), and a version handshake.
//!
//! - [`client::IpcDriver`] is the host side: a `StorageDriver` whose operations run in
//!   the child.
//! - [`serve`] is the child side: it turns any Rust driver into such an executable
//!   (`registry-storage-inmemory` and `registry-storage-filesystem` are built that way).
//! - [`frame`] and [`wire`] are the protocol itself.
//! - [`shm`] is its optional shared-memory data path (protocol 1.1, Linux): stream bytes
//!   cross once, through a region both processes map, instead of twice through the pipes.
//!   [`slots`] allocates a region's space and [`pool`] keeps warm buffers for bytes copied
//!   out of it. `shm` is the crate's only `unsafe` code (its module docs give the rules).
//!
//! ```no_run
//! # async fn demo() -> driver_api::Result<()> {
//! use driver_ipc::client::{IpcDriver, IpcOptions};
//! let d = IpcDriver::spawn(IpcOptions::new(
//!     "filesystem",
//!     "registry-storage-filesystem",
//!     serde_json::json!({"rootdirectory": "/var/lib/registry"}),
//! ))
//! .await?;
//! let d = driver_api::Driver::new(d);
//! d.put_content("/hello", "world").await?;
//! # Ok(()) }
//! ```

pub mod chan;
pub mod client;
pub mod exec;
pub mod frame;
mod pipes;
pub mod pool;
pub mod serve;
pub mod shm;
pub mod slots;
pub mod wire;
