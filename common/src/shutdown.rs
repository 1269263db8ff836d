//! The process-level stop signal services wait on (Ctrl-C or SIGTERM).

/// Completes on SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// The stop signal handed to each background task (mini-redis style): a task
/// checks it between units of work, so it stops at a safe point, and the
/// service awaits it before closing the MQ client and the DB pool.
#[derive(Clone)]
pub struct Shutdown {
    rx: tokio::sync::watch::Receiver<bool>,
}

/// Sends the stop signal to every [`Shutdown`] made from it.
pub struct ShutdownTrigger {
    tx: tokio::sync::watch::Sender<bool>,
}

/// A trigger and the first of its (cloneable) signals.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes once the stop signal was sent.
    pub async fn recv(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    /// Waits `period`; `false` (at once) when the stop signal comes first.
    pub async fn sleep(&mut self, period: std::time::Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(period) => !self.is_shutdown(),
            () = self.recv() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[tokio::test]
    async fn a_sleeping_task_wakes_at_once_on_the_stop_signal() {
        let (trigger, mut shutdown) = super::channel();
        assert!(shutdown.sleep(Duration::from_millis(1)).await);
        let task = tokio::spawn(async move { shutdown.sleep(Duration::from_secs(3600)).await });
        trigger.trigger();
        let slept = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(!slept.expect("woke up").expect("task"), "told to stop");
    }
}
