//! Queries: request-reply over the bus with a deadline, for the rare read
//! that must go over the bus (HTTP is the default for reads). Queries are
//! never stored: a query nobody answers in time fails with
//! [`BusError::Timeout`], and a late reply is dropped.

use std::future::Future;
use std::time::Duration;

use chassis::server::Shutdown;

use crate::envelope::{Envelope, Kind, Message};
use crate::error::BusError;
use crate::transport::Transport;

/// Sends `query` from `source` about `subject` and decodes the reply as `R`.
pub async fn request<Q: Message, R: Message>(
    transport: &Transport,
    source: &str,
    subject: &str,
    query: &Q,
    timeout: Duration,
) -> Result<R, BusError> {
    debug_assert_eq!(Q::KIND, Kind::Query, "{} is not a query", Q::TYPE);
    let envelope = Envelope::new(source, subject, query)?;
    let reply = transport.request(&envelope, timeout).await?;
    if !reply.is::<R>() {
        return Err(BusError::Rejected(format!("expected a {} reply, got {}", R::TYPE, reply.message_type)));
    }
    Ok(reply.decode()?)
}

/// Answers queries of `types` with `answer` until `shutdown`. Each query is
/// answered in its own trace context; an answer (or a reply) that fails is
/// logged and left unanswered, and the requester times out.
pub async fn serve_queries<F, Fut>(
    transport: Transport,
    types: Vec<String>,
    answer: F,
    shutdown: Shutdown,
) -> Result<(), BusError>
where
    F: Fn(Envelope) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Envelope, BusError>> + Send,
{
    let stopped = shutdown.wait();
    tokio::pin!(stopped);
    loop {
        let fetched = tokio::select! {
            fetched = transport.fetch_queries(&types, 16, Duration::from_secs(5)) => fetched,
            () = &mut stopped => return Ok(()),
        };
        let queries = match fetched {
            Ok(queries) => queries,
            Err(error) => {
                tracing::warn!(error = %error, "cannot fetch queries; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    () = &mut stopped => return Ok(()),
                }
            }
        };
        for query in queries {
            let context = query.envelope.trace_context().child();
            let result = context.scope(async { answer(query.envelope.clone()).await }).await;
            let replied = match result {
                Ok(reply) => transport.reply(&query, &reply.caused_by(&query.envelope)).await,
                Err(error) => Err(error),
            };
            // One query left unanswered must not stop the responder: its requester times out.
            if let Err(error) = replied {
                tracing::warn!(message_type = %query.envelope.message_type, error = %error, "query not answered");
            }
        }
    }
}
