//! STUB standing in for the broker until its branch is merged; drop this commit when merging.

/// Runs the broker until `shutdown` resolves. The stub only waits.
pub async fn run(
    config: crate::config::Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::warn!(listeners = config.listeners.len(), "broker not yet merged");
    shutdown.await;
    Ok(())
}
