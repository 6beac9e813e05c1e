//! `appattach entitlements`: who gets what on which host pool, asked of a running emulator.

use anyhow::Context;

use crate::emulator::admin::EntitlementsView;

/// Arguments of `appattach entitlements`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// User principal name or object id.
    #[arg(long)]
    user: String,

    /// Only this host pool (name or ARM id).
    #[arg(long)]
    host_pool: Option<String>,

    /// Base URL of the emulator.
    #[arg(
        long,
        env = "APPATTACH_EMULATOR",
        default_value = "http://127.0.0.1:7780"
    )]
    emulator: String,

    /// Output format: `table` or `json`.
    #[arg(long, short = 'o', default_value = "table", value_parser = ["table", "json"])]
    output: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut url = reqwest::Url::parse(&args.emulator)
        .with_context(|| format!("--emulator {} is not a URL", args.emulator))?
        .join("/_emulator/entitlements")?;
    url.query_pairs_mut().append_pair("user", &args.user);
    if let Some(p) = &args.host_pool {
        url.query_pairs_mut().append_pair("hostPool", p);
    }
    let response = reqwest::get(url.clone())
        .await
        .with_context(|| format!("asking the emulator at {}", args.emulator))?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        let message = serde_json::from_str::<crate::arm::error::CloudError>(&text)
            .map(|e| e.error.message)
            .unwrap_or(text);
        anyhow::bail!("the emulator answered {status}: {message}");
    }
    let view: EntitlementsView =
        serde_json::from_str(&text).context("reading the emulator's answer")?;
    if args.output == "json" {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&view)?))?;
        return Ok(());
    }
    super::out(&table(&view))?;
    Ok(())
}

/// The entitlements as a table, one row per package (or per host pool without one).
pub fn table(view: &EntitlementsView) -> String {
    let mut rows = vec![[
        "HOST POOL".to_string(),
        "SIGN-IN".into(),
        "PACKAGE".into(),
        "VERSION".into(),
        "IMAGE".into(),
    ]];
    for hp in &view.host_pools {
        let sign_in = if hp.can_sign_in { "yes" } else { "no" }.to_string();
        if hp.packages.is_empty() {
            rows.push([
                hp.host_pool.clone(),
                sign_in.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for p in &hp.packages {
            let name = p
                .package_id
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            rows.push([
                hp.host_pool.clone(),
                sign_in.clone(),
                name,
                p.version.clone(),
                p.image_path.clone(),
            ]);
        }
    }
    format!("USER {}\n{}", view.user, super::table(&rows))
}
