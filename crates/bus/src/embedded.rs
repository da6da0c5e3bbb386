//! PLACEHOLDER on the bus branch: replaced by the real transport before merging to main.
use std::time::Duration;
use crate::{BusError, DeadLetter, Delivery, Envelope, IncomingQuery, Subscription};

/// PLACEHOLDER.
#[derive(Debug, Clone)]
pub struct EmbeddedTransport {}

impl EmbeddedTransport {
    /// Stores `batch` durably, in order.
    pub async fn publish(&self, batch: &[Envelope]) -> Result<(), BusError> { let _ = batch; Err(unavailable()) }
    /// Creates or updates a group.
    pub async fn subscribe(&self, subscription: &Subscription) -> Result<(), BusError> { let _ = subscription; Err(unavailable()) }
    /// Fetches deliveries.
    pub async fn fetch(&self, group: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> { let _ = (group, max, wait); Err(unavailable()) }
    /// Acks deliveries.
    pub async fn ack(&self, group: &str, deliveries: &[Delivery]) -> Result<(), BusError> { let _ = (group, deliveries); Err(unavailable()) }
    /// Naks a delivery.
    pub async fn nak(&self, group: &str, delivery: &Delivery, delay: Duration) -> Result<(), BusError> { let _ = (group, delivery, delay); Err(unavailable()) }
    /// Dead-letters a delivery.
    pub async fn dead_letter(&self, group: &str, delivery: &Delivery, error: &str) -> Result<(), BusError> { let _ = (group, delivery, error); Err(unavailable()) }
    /// Lists dead letters.
    pub async fn dead_letters(&self, group: Option<&str>, limit: usize) -> Result<Vec<DeadLetter>, BusError> { let _ = (group, limit); Err(unavailable()) }
    /// One dead letter.
    pub async fn dead_letter_by_id(&self, id: &str) -> Result<DeadLetter, BusError> { let _ = id; Err(unavailable()) }
    /// Replays a dead letter.
    pub async fn replay(&self, id: &str) -> Result<(), BusError> { let _ = id; Err(unavailable()) }
    /// Sends a query.
    pub async fn request(&self, query: &Envelope, timeout: Duration) -> Result<Envelope, BusError> { let _ = (query, timeout); Err(unavailable()) }
    /// Fetches queries.
    pub async fn fetch_queries(&self, types: &[String], max: usize, wait: Duration) -> Result<Vec<IncomingQuery>, BusError> { let _ = (types, max, wait); Err(unavailable()) }
    /// Replies to a query.
    pub async fn reply(&self, query: &IncomingQuery, reply: &Envelope) -> Result<(), BusError> { let _ = (query, reply); Err(unavailable()) }
}
fn unavailable() -> BusError { BusError::Unavailable("PLACEHOLDER".into()) }
impl EmbeddedTransport {
    /// PLACEHOLDER.
    pub fn new(base_url: &str) -> Self { let _ = base_url; Self {} }
}
