//! `appattach crd`: the CRDs as YAML, generated from the Rust types.

use std::io::Write;

/// Arguments of `appattach crd`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    let yaml = crate::resources::crds_yaml()?;
    std::io::stdout().lock().write_all(yaml.as_bytes())?;
    Ok(())
}
