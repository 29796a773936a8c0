/// Why a reconcile pass failed; `category` is bounded for metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A port call of the pass failed (the platform, the router, the analysis runs, the status).
    #[error("{0}")]
    Port(#[from] crate::ports::PortError),
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// A bug met by this object's input; contained to this object.
    #[error("the controller failed on this object ({0}); it keeps serving the others: please report this with the Rollout's spec")]
    Panicked(String),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(error) => crate::platform::kubernetes::kube_category(error),
            Self::Port(error) => error.category,
            Self::Finalizer(_) => "finalizer",
            Self::Panicked(_) => "panic",
        }
    }
}
