//! The broker's HTTP API (the table is in the crate docs): request and
//! response bodies, their checks, the handlers, the mapping of broker errors
//! to problems, and the OpenAPI document.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use chassis::extract::{Json, Query};
use chassis::problem::{FieldError, Problem};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::broker::{Broker, BrokerError, GroupInfo};
use crate::log::{DeadLetterRow, Delivered, rfc3339};
use crate::model::{self, CheckedEnvelope, GroupName, MAX_ACK_WAIT_MS, MAX_NAK_DELAY_MS};
use crate::writer::WriteError;

/// The most envelopes one publish may carry.
pub const MAX_PUBLISH: usize = 10_000;
/// The most dead letters one list returns.
pub const MAX_DLQ_LIMIT: usize = 10_000;
/// The dead letters a list returns when it names no limit.
pub const DEFAULT_DLQ_LIMIT: usize = 100;
/// The longest deadline a query may have.
pub const MAX_QUERY_TIMEOUT_MS: u64 = 5 * 60 * 1000;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The broker.
    pub broker: Broker,
    /// The most deliveries (or queries) one fetch may ask for.
    pub max_fetch: usize,
    /// The longest a fetch may wait, in milliseconds.
    pub max_wait_ms: u64,
    /// The lease of a group created without `ack_wait_ms`, in milliseconds.
    pub default_ack_wait_ms: u64,
}

/// The broker's routes.
pub fn router(state: ApiState) -> Router {
    // The data plane: every relay and consumer calls these all the time, so
    // their successful requests are logged at debug (metrics count them all).
    let data_plane = Router::new()
        .route("/v1/publish", post(publish))
        .route("/v1/groups/{group}/fetch", post(fetch))
        .route("/v1/groups/{group}/ack", post(ack))
        .route("/v1/groups/{group}/nak", post(nak))
        .route("/v1/queries", post(request_query))
        .route("/v1/queries/fetch", post(fetch_queries))
        .route("/v1/queries/{reply_to}/reply", post(reply_query))
        .layer(axum::middleware::map_response(|mut response: Response| async move {
            response.extensions_mut().insert(chassis::server::QuietLog);
            response
        }));
    Router::new()
        .route("/v1/groups", get(list_groups))
        .route("/v1/groups/{group}", put(subscribe).get(get_group))
        .route("/v1/groups/{group}/dead-letter", post(dead_letter))
        .route("/v1/dlq", get(list_dead_letters))
        .route("/v1/dlq/{id}", get(get_dead_letter))
        .route("/v1/dlq/{id}/replay", post(replay))
        .merge(data_plane)
        .with_state(state)
}

impl IntoResponse for BrokerError {
    fn into_response(self) -> Response {
        match &self {
            Self::UnknownGroup(name) => Problem::new(
                StatusCode::NOT_FOUND,
                "unknown_group",
                format!("No consumer group {name}; create it with PUT /v1/groups/{name}."),
            ),
            Self::UnknownDeadLetter(id) => {
                Problem::new(StatusCode::NOT_FOUND, "unknown_dead_letter", format!("No dead letter {id}."))
            }
            Self::QueryTimeout { message_type, timeout_ms } => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "query_timeout",
                format!("No responder answered the {message_type} query within {timeout_ms} ms."),
            ),
            Self::Write(WriteError::Stopped) => {
                Problem::unavailable("broker_stopping", "The broker is shutting down; retry shortly.", 1)
            }
            Self::Write(WriteError::Failed) | Self::Read(_) => {
                tracing::error!(error = %self, "log failure");
                Problem::unavailable("log_unavailable", "The broker could not use its log; retry shortly.", 1)
            }
        }
        .into_response()
    }
}

/// A failed request: a problem from the checks or one from the broker.
enum ApiError {
    Problem(Problem),
    Broker(BrokerError),
}

impl From<BrokerError> for ApiError {
    fn from(error: BrokerError) -> Self {
        Self::Broker(error)
    }
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        Self::Problem(problem)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Problem(problem) => problem.into_response(),
            Self::Broker(error) => error.into_response(),
        }
    }
}

type ApiResult = Result<Response, ApiError>;

fn invalid(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() { Ok(()) } else { Err(Problem::validation(errors).into()) }
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A batch of envelopes to store.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PublishRequest {
    /// The envelopes, in publish order (1 to 10 000).
    #[schema(value_type = Vec<Object>)]
    pub envelopes: Vec<Value>,
}

/// What a publish stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublishResponse {
    /// Envelopes stored now.
    pub stored: usize,
    /// Ids of envelopes skipped because they were already stored.
    pub duplicates: Vec<String>,
}

fn check_envelopes(field: &str, values: Vec<Value>, errors: &mut Vec<FieldError>) -> Vec<CheckedEnvelope> {
    values
        .into_iter()
        .enumerate()
        .filter_map(|(i, value)| model::check_envelope(&format!("{field}[{i}]"), value, errors))
        .collect()
}

#[utoipa::path(post, path = "/v1/publish", tag = "log", request_body = PublishRequest,
    responses((status = 200, description = "Committed to the log (fsynced)", body = PublishResponse),
              (status = 422, description = "A bad envelope, named by index", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "The log cannot be written now", body = Problem, content_type = "application/problem+json")))]
async fn publish(State(state): State<ApiState>, Json(body): Json<PublishRequest>) -> ApiResult {
    let mut errors = Vec::new();
    if body.envelopes.is_empty() || body.envelopes.len() > MAX_PUBLISH {
        errors.push(FieldError::new("envelopes", format!("must list 1 to {MAX_PUBLISH} envelopes")));
    }
    let envelopes = check_envelopes("envelopes", body.envelopes, &mut errors);
    invalid(errors)?;
    let published = state.broker.publish(&envelopes).await?;
    Ok(Json(PublishResponse { stored: published.stored, duplicates: published.duplicates }).into_response())
}

/// A consumer group's definition.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscribeRequest {
    /// The message types the group consumes (1 to 100).
    pub types: Vec<String>,
    /// How long a fetched message stays leased before it is delivered again
    /// (1 ms to one day; the broker's default when absent).
    pub ack_wait_ms: Option<u64>,
}

/// A consumer group and its backlog.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupView {
    /// The group's name.
    pub group: String,
    /// The message types it consumes.
    pub types: Vec<String>,
    /// How long a delivery is leased, in milliseconds.
    pub ack_wait_ms: i64,
    /// The highest seq of its types handed to it.
    pub position: i64,
    /// Messages of its types it has not acked (new, in flight or replayed).
    pub lag: i64,
    /// Messages delivered and not yet acked or dead-lettered.
    pub in_flight: i64,
    /// Its dead letters.
    pub dead_letters: i64,
}

impl From<GroupInfo> for GroupView {
    fn from(info: GroupInfo) -> Self {
        Self {
            group: info.name,
            types: info.types,
            ack_wait_ms: info.ack_wait_ms,
            position: info.stats.position,
            lag: info.stats.lag,
            in_flight: info.stats.in_flight,
            dead_letters: info.stats.dead_letters,
        }
    }
}

/// Every consumer group.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupCollection {
    /// The groups, by name.
    pub items: Vec<GroupView>,
}

#[utoipa::path(put, path = "/v1/groups/{group}", tag = "groups", request_body = SubscribeRequest,
    params(("group" = String, Path, description = "The group's name: letters, digits, '-' and '_'")),
    responses((status = 201, description = "Created, starting at the oldest stored message", body = GroupView),
              (status = 200, description = "Updated (new types apply from its position on)", body = GroupView),
              (status = 422, description = "A bad name, type or lease", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "The log cannot be written now", body = Problem, content_type = "application/problem+json")))]
async fn subscribe(
    State(state): State<ApiState>,
    Path(group): Path<String>,
    Json(body): Json<SubscribeRequest>,
) -> ApiResult {
    let mut errors = Vec::new();
    let name = GroupName::parse(&group).map_err(|message| errors.push(FieldError::new("group", message))).ok();
    let types = model::check_types("types", &body.types, &mut errors);
    let ack_wait_ms = body.ack_wait_ms.unwrap_or(state.default_ack_wait_ms);
    if !(1..=MAX_ACK_WAIT_MS).contains(&ack_wait_ms) {
        errors.push(FieldError::new("ack_wait_ms", format!("must be from 1 to {MAX_ACK_WAIT_MS}")));
    }
    invalid(errors)?;
    let Some(name) = name else { return Err(Problem::bad_request("bad_group", "bad group name").into()) };
    let (info, created) = state.broker.subscribe(&name, types, i64_of(ack_wait_ms)).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(GroupView::from(info))).into_response())
}

#[utoipa::path(get, path = "/v1/groups/{group}", tag = "groups",
    params(("group" = String, Path, description = "The group's name")),
    responses((status = 200, description = "The group and its backlog", body = GroupView),
              (status = 404, description = "No such group", body = Problem, content_type = "application/problem+json")))]
async fn get_group(State(state): State<ApiState>, Path(group): Path<String>) -> ApiResult {
    Ok(Json(GroupView::from(state.broker.group_info(&group).await?)).into_response())
}

#[utoipa::path(get, path = "/v1/groups", tag = "groups",
    responses((status = 200, description = "Every group and its backlog", body = GroupCollection)))]
async fn list_groups(State(state): State<ApiState>) -> ApiResult {
    let items = state.broker.groups().await?.into_iter().map(GroupView::from).collect();
    Ok(Json(GroupCollection { items }).into_response())
}

/// A long-poll fetch.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FetchRequest {
    /// The most deliveries to return (1 to the broker's `max_fetch`, 1000 by default); 100 when absent.
    pub max: Option<u64>,
    /// How long to wait for the first delivery, in milliseconds (0 to the broker's `max_wait_ms`); 0 when absent.
    pub wait_ms: Option<u64>,
}

/// One delivery of a message to a member of a group.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    /// The message's place in the log: what ack, nak and dead-letter take.
    pub seq: i64,
    /// 1 on the first delivery to the group, raised by each redelivery.
    pub attempt: i64,
    /// The envelope.
    #[schema(value_type = Object)]
    pub envelope: Value,
}

/// What a fetch leased, in publish order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FetchResponse {
    /// The deliveries (empty when the wait ended with nothing).
    pub deliveries: Vec<DeliveryView>,
}

/// The fetch response, written straight from the stored envelope texts
/// instead of parsing each one only to print it again.
fn deliveries_body(deliveries: &[Delivered]) -> String {
    use std::fmt::Write as _;
    let size = deliveries.iter().map(|d| d.envelope.len() + 48).sum::<usize>();
    let mut body = String::with_capacity(size + 20);
    body.push_str("{\"deliveries\":[");
    for (i, delivery) in deliveries.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(body, "{{\"seq\":{},\"attempt\":{},\"envelope\":", delivery.seq, delivery.attempt);
        body.push_str(&delivery.envelope);
        body.push('}');
    }
    body.push_str("]}");
    body
}

fn check_fetch(state: &ApiState, max: Option<u64>, wait_ms: Option<u64>) -> Result<(usize, Duration), ApiError> {
    let mut errors = Vec::new();
    let max = max.unwrap_or(100);
    let limit = state.max_fetch as u64;
    if !(1..=limit).contains(&max) {
        errors.push(FieldError::new("max", format!("must be from 1 to {limit}")));
    }
    let wait_ms = wait_ms.unwrap_or(0);
    if wait_ms > state.max_wait_ms {
        errors.push(FieldError::new("wait_ms", format!("must be from 0 to {}", state.max_wait_ms)));
    }
    invalid(errors)?;
    Ok((usize::try_from(max).unwrap_or(state.max_fetch), Duration::from_millis(wait_ms)))
}

#[utoipa::path(post, path = "/v1/groups/{group}/fetch", tag = "groups", request_body = FetchRequest,
    params(("group" = String, Path, description = "The group's name")),
    responses((status = 200, description = "Deliveries leased to this caller for the group's ack wait", body = FetchResponse),
              (status = 404, description = "No such group", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "A bad max or wait", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "The log cannot be written now", body = Problem, content_type = "application/problem+json")))]
async fn fetch(State(state): State<ApiState>, Path(group): Path<String>, Json(body): Json<FetchRequest>) -> ApiResult {
    let (max, wait) = check_fetch(&state, body.max, body.wait_ms)?;
    let deliveries = state.broker.fetch(&group, max, wait).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], deliveries_body(&deliveries)).into_response())
}

/// Deliveries to end.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AckRequest {
    /// Their sequence numbers (1 to 10 000).
    pub seqs: Vec<i64>,
}

/// What an ack ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct AckResponse {
    /// How many of the deliveries were pending (the others were acked or dead-lettered already).
    pub acked: u64,
}

#[utoipa::path(post, path = "/v1/groups/{group}/ack", tag = "groups", request_body = AckRequest,
    params(("group" = String, Path, description = "The group's name")),
    responses((status = 200, description = "Acked and committed", body = AckResponse),
              (status = 404, description = "No such group", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "Bad sequence numbers", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "The log cannot be written now", body = Problem, content_type = "application/problem+json")))]
async fn ack(State(state): State<ApiState>, Path(group): Path<String>, Json(body): Json<AckRequest>) -> ApiResult {
    let mut errors = Vec::new();
    model::check_seqs("seqs", &body.seqs, &mut errors);
    invalid(errors)?;
    let acked = state.broker.ack(&group, body.seqs).await?;
    Ok(Json(AckResponse { acked }).into_response())
}

/// Deliveries to hand back.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NakRequest {
    /// Their sequence numbers (1 to 10 000).
    pub seqs: Vec<i64>,
    /// How long until they are delivered again, in milliseconds (0 to one day); 0 when absent.
    pub delay_ms: Option<u64>,
}

/// What a nak handed back.
#[derive(Debug, Serialize, ToSchema)]
pub struct NakResponse {
    /// How many of the deliveries were pending.
    pub naked: u64,
}

#[utoipa::path(post, path = "/v1/groups/{group}/nak", tag = "groups", request_body = NakRequest,
    params(("group" = String, Path, description = "The group's name")),
    responses((status = 200, description = "Handed back and committed", body = NakResponse),
              (status = 404, description = "No such group", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "Bad sequence numbers or delay", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "The log cannot be written now", body = Problem, content_type = "application/problem+json")))]
async fn nak(State(state): State<ApiState>, Path(group): Path<String>, Json(body): Json<NakRequest>) -> ApiResult {
    let mut errors = Vec::new();
    model::check_seqs("seqs", &body.seqs, &mut errors);
    let delay_ms = body.delay_ms.unwrap_or(0);
    if delay_ms > MAX_NAK_DELAY_MS {
        errors.push(FieldError::new("delay_ms", format!("must be from 0 to {MAX_NAK_DELAY_MS}")));
    }
    invalid(errors)?;
    let naked = state.broker.nak(&group, body.seqs, i64_of(delay_ms)).await?;
    Ok(Json(NakResponse { naked }).into_response())
}

/// A delivery to give up on.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DeadLetterRequest {
    /// Its sequence number.
    pub seq: i64,
    /// The handler's last error (cut at 4000 characters).
    pub error: String,
}

/// Where a dead-lettered delivery went.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterResponse {
    /// The dead letter's id; null when the delivery was no longer pending
    /// (acked or dead-lettered by another member already).
    pub dead_letter_id: Option<String>,
}

#[utoipa::path(post, path = "/v1/groups/{group}/dead-letter", tag = "groups", request_body = DeadLetterRequest,
    params(("group" = String, Path, description = "The group's name")),
    responses((status = 200, description = "Moved to the dead-letter queue and committed", body = DeadLetterResponse),
              (status = 404, description = "No such group", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "A bad sequence number", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "The log cannot be written now", body = Problem, content_type = "application/problem+json")))]
async fn dead_letter(
    State(state): State<ApiState>,
    Path(group): Path<String>,
    Json(body): Json<DeadLetterRequest>,
) -> ApiResult {
    let mut errors = Vec::new();
    model::check_seqs("seq", &[body.seq], &mut errors);
    invalid(errors)?;
    let dead_letter_id = state.broker.dead_letter(&group, body.seq, model::clip_error(&body.error)).await?;
    Ok(Json(DeadLetterResponse { dead_letter_id }).into_response())
}

/// A dead letter.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterView {
    /// Its id (what `bazaar dlq show|replay` take).
    pub id: String,
    /// The group it died in.
    pub group: String,
    /// The message's place in the log.
    pub seq: i64,
    /// The message.
    #[schema(value_type = Object)]
    pub envelope: Value,
    /// The handler's last error.
    pub error: String,
    /// How many times it was delivered.
    pub attempts: i64,
    /// When it was dead-lettered (RFC 3339).
    pub dead_at: String,
}

impl From<DeadLetterRow> for DeadLetterView {
    fn from(row: DeadLetterRow) -> Self {
        Self {
            envelope: serde_json::from_str(&row.envelope).unwrap_or(Value::Null),
            dead_at: rfc3339(row.dead_at),
            id: row.id,
            group: row.group,
            seq: row.seq,
            error: row.error,
            attempts: row.attempts,
        }
    }
}

/// Dead letters, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterCollection {
    /// The dead letters.
    pub items: Vec<DeadLetterView>,
}

/// Which dead letters to list (strings, so a bad one gets a named 422).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// Only those of this group.
    pub group: Option<String>,
    /// How many at most (1 to 10 000; 100 when absent).
    pub limit: Option<String>,
}

#[utoipa::path(get, path = "/v1/dlq", tag = "dead letters", params(DeadLetterParams),
    responses((status = 200, description = "Dead letters, oldest first", body = DeadLetterCollection),
              (status = 404, description = "No such group", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "A bad limit", body = Problem, content_type = "application/problem+json")))]
async fn list_dead_letters(State(state): State<ApiState>, Query(params): Query<DeadLetterParams>) -> ApiResult {
    let limit = match params.limit.as_deref() {
        None | Some("") => DEFAULT_DLQ_LIMIT,
        Some(raw) => raw.parse::<usize>().ok().filter(|n| (1..=MAX_DLQ_LIMIT).contains(n)).ok_or_else(|| {
            Problem::validation(vec![FieldError::new(
                "limit",
                format!("must be a whole number from 1 to {MAX_DLQ_LIMIT}"),
            )])
        })?,
    };
    let group = params.group.filter(|g| !g.is_empty());
    let items = state.broker.dead_letters(group.as_deref(), limit).await?;
    Ok(Json(DeadLetterCollection { items: items.into_iter().map(DeadLetterView::from).collect() }).into_response())
}

#[utoipa::path(get, path = "/v1/dlq/{id}", tag = "dead letters",
    params(("id" = String, Path, description = "The dead letter's id")),
    responses((status = 200, description = "The dead letter", body = DeadLetterView),
              (status = 404, description = "No such dead letter", body = Problem, content_type = "application/problem+json")))]
async fn get_dead_letter(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    Ok(Json(DeadLetterView::from(state.broker.dead_letter_by_id(&id).await?)).into_response())
}

/// Where a replayed dead letter went.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayResponse {
    /// The dead letter's id (now deleted).
    pub id: String,
    /// The one group it is delivered to again.
    pub group: String,
    /// The message's place in the log.
    pub seq: i64,
}

#[utoipa::path(post, path = "/v1/dlq/{id}/replay", tag = "dead letters",
    params(("id" = String, Path, description = "The dead letter's id")),
    responses((status = 200, description = "Deliverable again to its group as attempt 1, and removed from the queue", body = ReplayResponse),
              (status = 404, description = "No such dead letter", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "The log cannot be written now", body = Problem, content_type = "application/problem+json")))]
async fn replay(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let replayed = state.broker.replay(&id).await?;
    Ok(Json(ReplayResponse { id, group: replayed.group, seq: replayed.seq }).into_response())
}

/// A query to send.
#[derive(Debug, Deserialize, ToSchema)]
pub struct QueryRequest {
    /// The query envelope.
    #[schema(value_type = Object)]
    pub envelope: Value,
    /// How long to wait for a reply, in milliseconds (1 to 300 000).
    pub timeout_ms: u64,
}

/// A query's reply, or a reply to a query.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnvelopeBody {
    /// The envelope.
    #[schema(value_type = Object)]
    pub envelope: Value,
}

#[utoipa::path(post, path = "/v1/queries", tag = "queries", request_body = QueryRequest,
    responses((status = 200, description = "The reply", body = EnvelopeBody),
              (status = 422, description = "A bad envelope or timeout", body = Problem, content_type = "application/problem+json"),
              (status = 504, description = "No reply within the timeout", body = Problem, content_type = "application/problem+json")))]
async fn request_query(State(state): State<ApiState>, Json(body): Json<QueryRequest>) -> ApiResult {
    let mut errors = Vec::new();
    if !(1..=MAX_QUERY_TIMEOUT_MS).contains(&body.timeout_ms) {
        errors.push(FieldError::new("timeout_ms", format!("must be from 1 to {MAX_QUERY_TIMEOUT_MS}")));
    }
    let query = model::check_envelope("envelope", body.envelope, &mut errors);
    invalid(errors)?;
    let Some(query) = query else { return Err(Problem::bad_request("bad_envelope", "bad envelope").into()) };
    let reply = state.broker.request(&query, Duration::from_millis(body.timeout_ms)).await?;
    Ok(Json(EnvelopeBody { envelope: serde_json::from_str(&reply).unwrap_or(Value::Null) }).into_response())
}

/// A responder's long poll for queries.
#[derive(Debug, Deserialize, ToSchema)]
pub struct QueryFetchRequest {
    /// The query types this responder answers (1 to 100).
    pub types: Vec<String>,
    /// The most queries to return; 100 when absent.
    pub max: Option<u64>,
    /// How long to wait for the first, in milliseconds; 0 when absent.
    pub wait_ms: Option<u64>,
}

/// A query handed to this responder alone.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IncomingQueryView {
    /// Where to send the reply: `POST /v1/queries/{reply_to}/reply`.
    pub reply_to: String,
    /// The query envelope.
    #[schema(value_type = Object)]
    pub envelope: Value,
}

/// Queries for a responder.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueryFetchResponse {
    /// The queries, oldest first per type.
    pub queries: Vec<IncomingQueryView>,
}

#[utoipa::path(post, path = "/v1/queries/fetch", tag = "queries", request_body = QueryFetchRequest,
    responses((status = 200, description = "Queries for this responder (empty when the wait ended with none)", body = QueryFetchResponse),
              (status = 422, description = "Bad types, max or wait", body = Problem, content_type = "application/problem+json")))]
async fn fetch_queries(State(state): State<ApiState>, Json(body): Json<QueryFetchRequest>) -> ApiResult {
    let mut errors = Vec::new();
    let types = model::check_types("types", &body.types, &mut errors);
    let checked = check_fetch(&state, body.max, body.wait_ms);
    invalid(errors)?;
    let (max, wait) = checked?;
    let queries = state.broker.take_queries(&types, max, wait).await;
    let queries = queries
        .into_iter()
        .map(|q| IncomingQueryView {
            envelope: serde_json::from_str(&q.envelope).unwrap_or(Value::Null),
            reply_to: q.reply_to,
        })
        .collect();
    Ok(Json(QueryFetchResponse { queries }).into_response())
}

/// What became of a reply.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplyResponse {
    /// Whether the requester was still waiting; a late reply is dropped.
    pub delivered: bool,
}

#[utoipa::path(post, path = "/v1/queries/{reply_to}/reply", tag = "queries", request_body = EnvelopeBody,
    params(("reply_to" = String, Path, description = "The reply_to of the query")),
    responses((status = 200, description = "Handed to the requester, or dropped when it stopped waiting", body = ReplyResponse),
              (status = 422, description = "A bad envelope", body = Problem, content_type = "application/problem+json")))]
async fn reply_query(
    State(state): State<ApiState>,
    Path(reply_to): Path<String>,
    Json(body): Json<EnvelopeBody>,
) -> ApiResult {
    let mut errors = Vec::new();
    let reply = model::check_envelope("envelope", body.envelope, &mut errors);
    invalid(errors)?;
    let Some(reply) = reply else { return Err(Problem::bad_request("bad_envelope", "bad envelope").into()) };
    Ok(Json(ReplyResponse { delivered: state.broker.reply(&reply_to, &reply) }).into_response())
}

/// The broker's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "bazaar broker", description = "The embedded bus: a durable message log with consumer groups, \
        leases, dead letters and request-reply queries, on loopback."),
    paths(publish, subscribe, get_group, list_groups, fetch, ack, nak, dead_letter, list_dead_letters,
          get_dead_letter, replay, request_query, fetch_queries, reply_query),
    components(schemas(PublishRequest, PublishResponse, SubscribeRequest, GroupView, GroupCollection, FetchRequest,
        DeliveryView, FetchResponse, AckRequest, AckResponse, NakRequest, NakResponse, DeadLetterRequest,
        DeadLetterResponse, DeadLetterView, DeadLetterCollection, ReplayResponse, QueryRequest, EnvelopeBody,
        QueryFetchRequest, IncomingQueryView, QueryFetchResponse, ReplyResponse, Problem, FieldError)),
    tags((name = "log", description = "Publishing"),
         (name = "groups", description = "Consumer groups: fetch, ack, nak, dead-letter"),
         (name = "dead letters", description = "The dead-letter queue"),
         (name = "queries", description = "Request-reply with a deadline, never stored"))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_fetch_body_reads_as_the_documented_shape() {
        let deliveries = vec![
            Delivered { seq: 3, attempt: 1, envelope: "{\"id\":\"a\",\"data\":{\"n\":[1,2]}}".into() },
            Delivered { seq: 7, attempt: 2, envelope: "{\"id\":\"b\"}".into() },
        ];
        let parsed: FetchResponse = serde_json::from_str(&deliveries_body(&deliveries)).expect("valid JSON");
        assert_eq!(parsed.deliveries.len(), 2);
        assert_eq!(parsed.deliveries[1].seq, 7);
        assert_eq!(parsed.deliveries[1].attempt, 2);
        assert_eq!(parsed.deliveries[0].envelope["data"]["n"][1], 2);
        let empty: FetchResponse = serde_json::from_str(&deliveries_body(&[])).expect("valid JSON");
        assert!(empty.deliveries.is_empty());
    }
}
