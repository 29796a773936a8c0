//! What can go wrong, in words that say what to do about it.

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot load the kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("rollout {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error("the Rollout CRD is not installed in this cluster: `kubectl apply -f crds/` (or install the Helm chart)")]
    CrdMissing,
    #[error("rollout {namespace}/{name} has no status yet: the controller has not seen it (is `sluice controller` running?)")]
    NoStatus { namespace: String, name: String },
    #[error("rollout {rollout}: {message}")]
    Refused { rollout: String, message: String },
    #[error("rollout {rollout} was changed by someone else {attempts} times while this command was writing; try again")]
    Conflict { rollout: String, attempts: u32 },
    #[error("the watch ended before the rollout was Healthy or Degraded")]
    WatchEnded,
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

impl PluginError {
    pub fn refused(rollout: &str, message: impl Into<String>) -> Self {
        Self::Refused { rollout: rollout.to_string(), message: message.into() }
    }
}
