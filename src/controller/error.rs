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
            Self::Kube(error) => crate::ports::kube_category(error),
            Self::Port(error) => error.category,
            Self::Finalizer(_) => "finalizer",
            Self::Panicked(_) => "panic",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_reconcile_is_logged_with_the_servers_message() {
        let refused =
            kube::core::Status::failure("rollouts.sluice.dev \"web\" is forbidden: cannot patch resource \"rollouts/status\"", "Forbidden")
                .with_code(403);
        let object = kube::runtime::reflector::ObjectRef::<crate::api::Rollout>::new("web").within("shop").erase();
        let failed: kube::runtime::controller::Error<Error, kube::runtime::watcher::Error> =
            kube::runtime::controller::Error::ReconcilerFailed(Error::Kube(kube::Error::Api(Box::new(refused))), Box::new(object));
        let logged = crate::egress::describe(&failed);
        assert!(logged.contains("reconciler for object"), "{logged}");
        assert!(logged.contains("cannot patch resource \"rollouts/status\""), "the server's words are in the log line: {logged}");
    }
}
