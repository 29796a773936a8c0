//! Connecting the way kubectl does, and reading a Rollout with errors a person can act on.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::args::Connection;
use super::error::PluginError;
use crate::api::Rollout;

/// The field manager of everything `kubectl sluice` writes, so `managedFields` tells a person's
/// requests from the controller's status.
pub const FIELD_MANAGER: &str = "kubectl-sluice";

pub struct Cluster {
    pub client: Client,
    /// From `-n`, else the kubeconfig context's namespace, else `default`.
    pub namespace: String,
}

pub async fn connect(connection: &Connection) -> Result<Cluster, PluginError> {
    crate::aws::install_crypto_provider();
    let options = KubeConfigOptions { context: connection.context.clone(), ..Default::default() };
    let config = match (&connection.kubeconfig, &connection.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| PluginError::Kubeconfig(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| PluginError::Kubeconfig(e.to_string()))?
        }
        (None, Some(_)) => Config::from_kubeconfig(&options).await.map_err(|e| PluginError::Kubeconfig(e.to_string()))?,
        // Without flags, as kubectl: $KUBECONFIG or ~/.kube/config, else the in-cluster account.
        (None, None) => Config::infer().await.map_err(|e| PluginError::Kubeconfig(e.to_string()))?,
    };
    let namespace = connection.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| PluginError::Kubeconfig(e.to_string()))?;
    Ok(Cluster { client, namespace })
}

impl Cluster {
    pub fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub async fn rollout(&self, name: &str) -> Result<Rollout, PluginError> {
        self.rollouts().get(name).await.map_err(|e| self.explain(e, name))
    }

    /// A 404 means either no such Rollout or no Rollout CRD at all; say which.
    pub fn explain(&self, error: kube::Error, name: &str) -> PluginError {
        match error {
            kube::Error::Api(status) if status.is_not_found() && status.message.contains("could not find the requested resource") => {
                PluginError::CrdMissing
            }
            kube::Error::Api(status) if status.is_not_found() => {
                PluginError::NotFound { namespace: self.namespace.clone(), name: name.to_string() }
            }
            other => PluginError::Kube(other),
        }
    }
}
