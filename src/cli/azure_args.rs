//! How the commands that only read the backend (`migrate`, `validate`, `plan`) sign in to
//! Azure, or reach an emulator.

use crate::backend::{ArmClient, Auth};

/// Where the backend is and how to sign in to it.
#[derive(clap::Args, Debug, Clone)]
pub struct AzureArgs {
    /// Azure cloud to sign in to: AzurePublicCloud, AzureUSGovernment or AzureChinaCloud
    /// (see `appattach controller --help`).
    #[arg(long, env = "APPATTACH_CLOUD")]
    pub cloud: Option<String>,
    /// How to sign in to Azure: auto, workload-identity, client-secret, managed-identity.
    #[arg(long, env = "APPATTACH_AZURE_CREDENTIAL", default_value = "auto")]
    pub azure_credential: String,
    /// Subscription id.
    #[arg(long, env = "APPATTACH_SUBSCRIPTION")]
    pub subscription: Option<String>,
    /// Resource group of the host pools.
    #[arg(long, env = "APPATTACH_RESOURCE_GROUP")]
    pub resource_group: Option<String>,
    /// A static bearer token for ARM (instead of signing in).
    #[arg(long, env = "APPATTACH_ARM_TOKEN", hide_env_values = true)]
    pub arm_token: Option<String>,
}

impl AzureArgs {
    /// A client for `endpoint` (an emulator), or for the cloud of `--cloud` (or `cloud`
    /// when it is not given), signing in as `--azure-credential` says.
    pub fn client(&self, endpoint: Option<&str>, cloud: Option<&str>) -> anyhow::Result<ArmClient> {
        let subscription = self.subscription.as_deref().ok_or_else(|| {
            anyhow::anyhow!("--subscription is required (or APPATTACH_SUBSCRIPTION)")
        })?;
        let resource_group = self.resource_group.as_deref().ok_or_else(|| {
            anyhow::anyhow!("--resource-group is required (or APPATTACH_RESOURCE_GROUP)")
        })?;
        let auth = match &self.arm_token {
            Some(t) => Auth::Bearer(t.clone()),
            None => Auth::None,
        };
        match (self.cloud.as_deref().or(cloud), endpoint) {
            (Some(cloud), endpoint) => {
                let cloud: crate::azure::Cloud = cloud.parse().map_err(anyhow::Error::msg)?;
                let env = crate::azure::process_env();
                let auth = match auth {
                    Auth::None => {
                        let method = crate::azure::Method::from_env(&self.azure_credential, &env)
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                        Auth::Credential(crate::azure::Credential::new(
                            method,
                            crate::azure::Endpoints::of(cloud, &env),
                        ))
                    }
                    given => given,
                };
                let endpoint =
                    endpoint.map_or_else(|| cloud.arm_endpoint().to_string(), String::from);
                Ok(ArmClient::new(
                    &endpoint,
                    subscription,
                    resource_group,
                    auth,
                ))
            }
            (None, Some(endpoint)) => {
                Ok(ArmClient::new(endpoint, subscription, resource_group, auth))
            }
            (None, None) => anyhow::bail!("give --cloud (Azure) or --arm-endpoint (an emulator)"),
        }
    }
}
