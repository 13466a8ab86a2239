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

impl Emulator {
    /// Takes over `other`'s environment, processes and directories (one row needing
    /// several backends).
    pub fn absorb(&mut self, mut other: Emulator) {
        self.env.append(&mut other.env);
        self.children.append(&mut other.children);
        self.dirs.append(&mut other.dirs);
    }
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
    /// Only this test target of `package` (a row that is not a driver, such as `interop`);
    /// `None`: every test target of the package not claimed by another row.
    pub test_target: Option<&'static str>,
    /// Packages whose tests also run in this row, against the same backend (radosgw
    /// serves both the s3 and the swift tests).
    pub also: &'static [&'static str],
}

impl DriverSuite {
    /// Whether this row is one driver's own (its benchmarks, its emulator by default).
    pub fn is_driver(&self) -> bool {
        self.test_target.is_none() && self.also.is_empty()
    }

    /// Whether this row runs `exe`.
    pub fn runs(&self, exe: &crate::libtest::Executable) -> bool {
        (exe.package == self.package || self.also.contains(&exe.package.as_str()))
            && match self.test_target {
                Some(t) => exe.target == t,
                None => !claimed(exe),
            }
    }
}

/// Whether a row with a `test_target` runs `exe` (the other rows of its package leave it).
pub fn claimed(exe: &crate::libtest::Executable) -> bool {
    DRIVERS
        .iter()
        .any(|d| d.package == exe.package && d.test_target == Some(exe.target.as_str()))
}

/// Every driver crate in the workspace.
pub const DRIVERS: &[DriverSuite] = &[
    DriverSuite {
        name: "inmemory",
        package: "driver-inmemory",
        emulator: None,
        compare: true,
        test_target: None,
        also: &[],
    },
    DriverSuite {
        name: "filesystem",
        package: "driver-filesystem",
        emulator: None,
        compare: true,
        test_target: None,
        also: &[],
    },
    DriverSuite {
        name: "s3",
        package: "driver-s3",
        emulator: Some(crate::emulators::start_s3),
        compare: false,
        test_target: None,
        also: &[],
    },
    DriverSuite {
        name: "azure",
        package: "driver-azure",
        emulator: Some(crate::emulators::start_azure),
        compare: false,
        test_target: None,
        also: &[],
    },
    DriverSuite {
        name: "gcs",
        package: "driver-gcs",
        emulator: Some(crate::emulators::start_gcs),
        compare: false,
        test_target: None,
        also: &[],
    },
    DriverSuite {
        name: "swift",
        package: "driver-swift",
        emulator: Some(crate::emulators::start_swift),
        compare: false,
        test_target: None,
        also: &[],
    },
    DriverSuite {
        name: "oss",
        package: "driver-oss",
        emulator: Some(crate::emulators::start_oss),
        compare: false,
        test_target: None,
        also: &[],
    },
    DriverSuite {
        name: "rados",
        package: "driver-rados",
        emulator: Some(crate::emulators::start_rados),
        compare: false,
        test_target: None,
        also: &[],
    },
    // Out-of-process drivers: the suite over IPC for the inmemory and filesystem
    // executables and the Python example driver, plus the fault, fallback and codec tests.
    DriverSuite {
        name: "ipc",
        package: "driver-ipc",
        emulator: None,
        compare: false,
        test_target: None,
        also: &[],
    },
    // Not a driver: Distribution's registry and skopeo against our drivers on the
    // filesystem, S3 (moto) and Swift (storagectl's `tests/interop.rs`).
    DriverSuite {
        name: "interop",
        package: "storagectl",
        emulator: Some(crate::emulators::start_interop),
        compare: false,
        test_target: Some("interop"),
        also: &[],
    },
    // Not a driver: the s3 and swift tests again, on Ceph's RADOS Gateway (a production
    // S3 and Swift implementation) on the rados row's single-node cluster.
    DriverSuite {
        name: "radosgw",
        package: "driver-s3",
        emulator: Some(crate::emulators::start_radosgw),
        compare: false,
        test_target: None,
        also: &["driver-swift"],
    },
];
