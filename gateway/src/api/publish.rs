//! `POST /v1/publish`: a backend publishes a message to users. Each user's
//! copy is stored in that user's log with the user's next `seq` (one
//! transaction for all of them: all or nothing), and the runners' message
//! relay delivers it to every session of the user on every gateway, so a
//! message is resumed like a job event and survives restarts.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sluice_proto::MAX_USER_BYTES;
use sluice_store::publish::{self as store, PublishError};
use utoipa::ToSchema;

use super::auth::Publisher;
use super::body;
use super::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// `POST /v1/publish` body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the body; it is parsed with raw data by `PublishWire`
pub struct Publish {
    /// The user ids (JWT `sub` of their sessions), 1 to 1,000; repeats
    /// count once.
    users: Vec<String>,
    /// Any JSON value, at most `gateway.max_publish_bytes` as JSON text;
    /// sessions get it as `data` of a `message` frame.
    #[schema(value_type = Object)]
    data: serde_json::Value,
    /// 1 to 128 printable ASCII characters: a repeat with the same key
    /// within 24 h publishes nothing new and answers the first seqs.
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishWire<'a> {
    users: Vec<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    idempotency_key: Option<String>,
}

/// One user's copy of the message.
#[derive(Debug, Serialize, ToSchema)]
pub struct Published {
    /// The user.
    pub user: String,
    /// The message's seq in that user's log.
    pub seq: u64,
}

/// `POST /v1/publish` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublishedList {
    /// Each user's seq, users sorted and without repeats.
    pub published: Vec<Published>,
}

/// Publish a message to users.
#[utoipa::path(post, path = "/v1/publish", tag = "publish",
    request_body = Publish,
    responses(
        (status = 202, description = "stored for every user (committed); delivery follows", body = PublishedList),
        (status = 400, description = "bad_request: a bad body, user list or key", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "forbidden: the token's scope lacks sluice:publish", body = ErrorBody),
        (status = 413, description = "data over gateway.max_publish_bytes, or body over max_message_bytes", body = ErrorBody),
        (status = 422, description = "idempotency_mismatch: the key was used for other data within 24 h", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn publish(
    State(state): State<Arc<AppState>>,
    Publisher(service): Publisher,
    headers: HeaderMap,
    request: Body,
) -> Result<(StatusCode, Json<PublishedList>), ApiError> {
    let bytes = body::read(&state, &headers, request).await?;
    let wire: PublishWire<'_> = serde_json::from_str(body::text(&bytes)?).map_err(|e| {
        ApiError::BadRequest(format!(
            "body must be {{users, data, idempotency_key?}}: {e}"
        ))
    })?;
    let users = recipients(wire.users)?;
    let data = wire
        .data
        .ok_or_else(|| ApiError::BadRequest("`data` is missing".into()))?
        .get();
    let limit = state.config.gateway.max_publish_bytes;
    if data.len() > limit {
        return Err(ApiError::DataTooLarge(data.len(), limit));
    }
    let key = wire.idempotency_key;
    if let Some(key) = &key
        && !store::valid_key(key)
    {
        return Err(ApiError::BadRequest(
            "idempotency_key must be 1 to 128 printable ASCII characters".into(),
        ));
    }

    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let seqs = store::publish(&*tx, &users, data, key.as_deref())
        .await
        .map_err(refusal)?;
    tx.commit().await?;
    // The client goes back to the pool before the answer is written.
    drop(client);
    tracing::debug!(%service, users = users.len(), "published a message");
    let published = users
        .into_iter()
        .zip(seqs)
        .map(|(user, seq)| Published { user, seq })
        .collect();
    Ok((StatusCode::ACCEPTED, Json(PublishedList { published })))
}

/// The recipients sorted and without repeats (the order in which their
/// sequences are locked), each checked like a token's `sub`.
fn recipients(mut users: Vec<String>) -> Result<Vec<String>, ApiError> {
    if users.is_empty() || users.len() > store::MAX_USERS {
        return Err(ApiError::BadRequest(format!(
            "users must list 1 to {} user ids; it has {}",
            store::MAX_USERS,
            users.len()
        )));
    }
    if let Some(bad) = users
        .iter()
        .find(|u| u.is_empty() || u.len() > MAX_USER_BYTES)
    {
        return Err(ApiError::BadRequest(format!(
            "a user id must be 1 to {MAX_USER_BYTES} bytes; one is {}",
            bad.len()
        )));
    }
    users.sort_unstable();
    users.dedup();
    Ok(users)
}

fn refusal(e: PublishError) -> ApiError {
    match e {
        PublishError::Mismatch => ApiError::IdempotencyMismatch(e.to_string()),
        PublishError::Refused(reason) => ApiError::BadRequest(reason),
        PublishError::Query(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_sorted_deduplicated_and_bounded() {
        let users = recipients(vec!["b".into(), "a".into(), "b".into()]).unwrap();
        assert_eq!(users, ["a", "b"]);
        assert!(recipients(vec![]).is_err());
        assert!(recipients(vec!["u".into(); store::MAX_USERS]).is_ok());
        assert!(recipients(vec!["u".into(); store::MAX_USERS + 1]).is_err());
        assert!(recipients(vec![String::new()]).is_err());
        assert!(recipients(vec!["x".repeat(MAX_USER_BYTES + 1)]).is_err());
    }

    #[test]
    fn a_key_reused_for_other_data_is_a_422() {
        let e = refusal(PublishError::Mismatch);
        assert!(matches!(e, ApiError::IdempotencyMismatch(_)));
    }
}
