use crate::analysis::run::RunError;

/// Why a reconcile pass failed; `category` is bounded for metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("analysis: {0}")]
    Analysis(#[from] RunError),
    #[error("{0} is not supported by this controller yet")]
    Unsupported(&'static str),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("platform: {0}")]
    Platform(String),
    #[error("ALB: {0}")]
    Router(#[from] crate::traffic::alb::RouterError),
    #[error("ECS: {0}")]
    Ecs(#[from] crate::platform::ecs::PlatformError),
    /// A bug met by this object's input; contained to this object.
    #[error("the controller failed on this object ({0}); it keeps serving the others: please report this with the Rollout's spec")]
    Panicked(String),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Self::Kube(kube::Error::Api(status)) if status.code == 403 => "forbidden",
            Self::Kube(kube::Error::Api(status)) if status.code == 404 => "not_found",
            Self::Kube(_) => "kubernetes",
            Self::Analysis(_) => "analysis",
            Self::Unsupported(_) => "unsupported",
            Self::Finalizer(_) => "finalizer",
            Self::Platform(_) => "platform",
            Self::Router(e) => e.category(),
            Self::Ecs(e) => e.category(),
            Self::Panicked(_) => "panic",
        }
    }
}
