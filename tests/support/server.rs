//! A local axum server a test starts; stopped when dropped.

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct Server {
    pub address: String,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(router: axum::Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a local port");
        let address = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("the test server runs");
        });
        Self { address, task }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
