//! `appattach crd`: the CRDs as YAML, generated from the Rust types.

/// Arguments of `appattach crd`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    let yaml = crate::resources::crds_yaml()?;
    super::out(&yaml)?;
    Ok(())
}
