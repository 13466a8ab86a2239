//! The filesystem driver as an out-of-process driver (docs/ipc-protocol.md).
use driver_filesystem as _;

fn main() -> std::process::ExitCode {
    driver_ipc::serve::main("filesystem")
}
