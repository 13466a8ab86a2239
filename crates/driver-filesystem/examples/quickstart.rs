//! Stores a file through the filesystem driver, created by name from the factory, and reads
//! it back. `cargo run -p driver-filesystem --example quickstart [ROOT]` (default `./data`).
#![allow(clippy::print_stdout)]

use driver_api::{factory, Parameters};
// Linking the crate registers "filesystem" with the factory.
use driver_filesystem as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::args().nth(1).unwrap_or_else(|| "./data".into());
    let registered: Vec<&str> = factory::registered_drivers()
        .iter()
        .map(|f| f.name)
        .collect();
    println!("registered drivers: {}", registered.join(", "));

    let driver = factory::create(
        "filesystem",
        Parameters::new().with("rootdirectory", root.clone()),
    )
    .await?;
    let path = "/quickstart/hello.txt";
    let text = format!("hello from the {} driver\n", driver.name());
    driver.put_content(path, text.clone()).await?;

    let back = driver.get_content(path).await?;
    let info = driver.stat(path).await?;
    println!("stored {} bytes at {path} (under {root})", info.size);
    println!("read back: {}", String::from_utf8_lossy(&back).trim_end());
    println!("/quickstart holds: {:?}", driver.list("/quickstart").await?);
    if back != text.as_bytes() {
        return Err("content read back differs".into());
    }
    Ok(())
}
