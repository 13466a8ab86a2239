//! The drivers `test-all` knows, and what each needs to run its suite.

use std::collections::BTreeMap;

/// A running emulator: the environment its suite needs; its processes are stopped when
/// it is dropped.
#[derive(Default)]
pub struct Emulator {
    /// Variables for the test processes (endpoints, credentials for the emulator).
    pub env: BTreeMap<String, String>,
    /// The server processes.
    pub children: Vec<std::process::Child>,
    /// Directories removed once the processes are stopped (data kept in RAM).
    pub dirs: Vec<std::path::PathBuf>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Starts (installing first if needed) an emulator on 127.0.0.1.
pub type StartEmulator = fn() -> Result<Emulator, Box<dyn std::error::Error>>;

/// One driver crate and its test needs.
pub struct DriverSuite {
    /// Registered driver name (and bench target name).
    pub name: &'static str,
    /// Cargo package.
    pub package: &'static str,
    /// The backend to start before its tests, if any.
    pub emulator: Option<StartEmulator>,
    /// `bench-baselines` has a bench of this name comparing the driver with references.
    pub compare: bool,
}

/// Every driver crate in the workspace.
pub const DRIVERS: &[DriverSuite] = &[
    DriverSuite {
        name: "inmemory",
        package: "driver-inmemory",
        emulator: None,
        compare: true,
    },
    DriverSuite {
        name: "filesystem",
        package: "driver-filesystem",
        emulator: None,
        compare: true,
    },
    DriverSuite {
        name: "s3",
        package: "driver-s3",
        emulator: Some(crate::emulators::start_s3),
        compare: false,
    },
    DriverSuite {
        name: "azure",
        package: "driver-azure",
        emulator: Some(crate::emulators::start_azure),
        compare: false,
    },
    DriverSuite {
        name: "gcs",
        package: "driver-gcs",
        emulator: Some(crate::emulators::start_gcs),
        compare: false,
    },
    DriverSuite {
        name: "swift",
        package: "driver-swift",
        emulator: Some(crate::emulators::start_swift),
        compare: false,
    },
    DriverSuite {
        name: "oss",
        package: "driver-oss",
        emulator: Some(crate::emulators::start_oss),
        compare: false,
    },
    DriverSuite {
        name: "rados",
        package: "driver-rados",
        emulator: Some(crate::emulators::start_rados),
        compare: false,
    },
    // Out-of-process drivers: the suite over IPC for the inmemory and filesystem
    // executables and the Python example driver, plus the fault, fallback and codec tests.
    DriverSuite {
        name: "ipc",
        package: "driver-ipc",
        emulator: None,
        compare: false,
    },
];
