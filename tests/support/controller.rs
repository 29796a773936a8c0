//! `sluice controller` processes under test: a kubeconfig, an AWS endpoint (moto, or a proxy in
//! front of it), a log file and a free /metrics port; stopped by pid when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct ControllerProcess {
    child: Child,
    pub metrics_port: u16,
}

impl ControllerProcess {
    /// `binary` is the `sluice` executable; `args` come after `controller` (namespace, leader
    /// election...), `env` after the defaults.
    pub fn start(binary: &Path, kubeconfig: &Path, aws_endpoint: &str, log: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let metrics_port = free_port();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("controller log");
        let child = Command::new(binary)
            .arg("controller")
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            // The local Prometheus and test servers listen on loopback; everything else stays open.
            .args(["--allow-host", "127.0.0.1", "--allow-host", "*"])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("AWS_ENDPOINT_URL", aws_endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .envs(env.iter().copied())
            .stdout(Stdio::from(log.try_clone().expect("controller log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the controller starts");
        ControllerProcess { child, metrics_port }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, once the process has exited on its own.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("the controller's status")
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}
