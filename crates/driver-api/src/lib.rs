//! The storage-driver contract: one async trait for filesystem-like key/value stores.
//!
//! This crate is the only thing a driver and its users share. It holds:
//!
//! * [`StorageDriver`] and [`FileWriter`], the raw traits a backend implements, with
//!   [`FileInfo`], [`WalkOptions`]/[`WalkControl`] and [`RedirectRequest`];
//! * [`StoragePath`], a validated path that cannot escape a backend's root;
//! * [`StorageError`], the one error enum, whose every variant names the driver;
//! * the [`factory`]: drivers register themselves with `inventory` and are created by name
//!   from loosely typed [`Parameters`];
//! * [`Driver`], the handle applications use: `&str` paths, a tracing span per call, the
//!   writer protocol enforced, and conveniences (`read_to_end`, `write_stream`, `copy`);
//! * shared machinery for drivers: [`walk::walk_with`] / [`walk::walk_fallback`] and
//!   [`blocking::BlockingPool`];
//! * layers: [`prefix::Prefixed`] presents one directory of a driver as a driver.
//!
//! # Using a driver
//!
//! ```
//! # async fn demo() -> driver_api::Result<()> {
//! // Link the driver crates you want, e.g. `use driver_filesystem as _;`, then:
//! use driver_api::{factory, Parameters};
//! match factory::create("filesystem", Parameters::new().with("rootdirectory", "/tmp/r")).await {
//!     Ok(driver) => {
//!         driver.put_content("/hello", "world").await?;
//!         let bytes = driver.get_content("/hello").await?;
//!         assert_eq!(&bytes[..], b"world");
//!     }
//!     // Not linked into this doctest:
//!     Err(driver_api::StorageError::InvalidStorageDriver { .. }) => {}
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```
//!
//! # Writing a driver
//!
//! Implement [`StorageDriver`] (and [`FileWriter`]), register it with
//! [`register_driver!`], and run `driver_testsuite::conformance_tests!` against it. See
//! `docs/writing-a-driver.md`.

pub mod blocking;
pub mod buffer;
pub mod chunks;
mod driver;
mod error;
pub mod factory;
mod handle;
pub mod keys;
mod operation;
mod path;
pub mod prefix;
mod version;
pub mod walk;

pub use driver::{
    ByteStream, Capabilities, FileInfo, FileWriter, Leftover, LeftoverKind, RedirectMethod,
    RedirectRequest, StorageDriver, WalkControl, WalkFn, WalkOptions, DEFAULT_REDIRECT_LIFETIME,
    MAX_REDIRECT_LIFETIME,
};
pub use error::{error_chain, BoxError, DriverName, Result, StorageError, WriterStatus};
pub use factory::{DriverFactory, DriverFallback, ParamKind, ParamReader, ParamSpec, Parameters};
pub use handle::{AsyncWriter, Driver, Writer};
pub use operation::{Operation, UnknownOperation};
pub use path::{cmp_paths, validate_component, InvalidPathError, StoragePath};
pub use version::{Version, CURRENT_VERSION};

/// Re-exported for driver implementations.
pub use async_trait::async_trait;
/// Re-exported for driver implementations.
pub use bytes::Bytes;
/// Re-exported for [`register_driver!`]; driver crates need not depend on `inventory`.
#[doc(hidden)]
pub use inventory;
