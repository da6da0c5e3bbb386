//! The one way to start a background task: named, logged when it ends or
//! panics, so no task dies silently.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;
use tokio::task::JoinHandle;

/// Spawns `fut` as a named background task. Its end is logged at `debug`
/// (or `error` when it returns an error or panics). The current trace context,
/// if any, is carried into the task. Aborting the handle cancels the task.
pub fn spawn<F, E>(name: &'static str, fut: F) -> JoinHandle<()>
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let ctx = crate::trace::current();
    // The one place allowed to call tokio::spawn: everything else comes through here.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        // A panic inside a task would otherwise only surface if someone awaited the handle.
        let guarded = AssertUnwindSafe(fut).catch_unwind();
        let outcome = match ctx {
            Some(ctx) => ctx.scope(guarded).await,
            None => guarded.await,
        };
        match outcome {
            Ok(Ok(())) => tracing::debug!(task = name, "task finished"),
            Ok(Err(error)) => tracing::error!(task = name, error = %error, "task failed"),
            Err(_) => tracing::error!(task = name, "task panicked"),
        }
    })
}
