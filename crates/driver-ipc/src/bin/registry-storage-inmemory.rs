//! The inmemory driver as an out-of-process driver (docs/ipc-protocol.md).
use driver_inmemory as _;

fn main() -> std::process::ExitCode {
    driver_ipc::serve::main("inmemory")
}
