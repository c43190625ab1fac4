//! The JSON API under `/api/v1` and its OpenAPI document (`/openapi.json`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use instore::{ControlCommand, InstanceFilter, InstanceId, PageRequest};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::auth::{Admin, Caller};
use crate::dto::{
    CommandDto, CommandName, CountDto, CountsHistoryDto, CountsSampleDto, EnqueueRequest,
    EnqueuedDto, ErrorEntryDto, ErrorLogDto, GroupDto, GroupsDto, HealthDto, InstanceDto,
    InstancePage, ManagementStatsDto, OwnerDto, OwnersDto, QueueDto, QueueEntryDto, RemovedDto,
    WhoAmIDto,
};
use crate::error::{ApiError, ErrorBody};
use crate::params::{FilterParams, GroupParams, MaxParams, PageParams, Params, QueueParams};
use crate::state::AppState;

type ApiResult<T> = Result<Json<T>, ApiError>;
type Shared = State<Arc<AppState>>;

/// Most entries a listing returns.
const MAX_LISTING: usize = 1000;
/// Entries a listing returns by default.
const DEFAULT_LISTING: usize = 100;

/// The API's routes (authentication is layered on by the caller).
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/instances", get(list_instances))
        .route("/api/v1/instances/count", get(count_instances))
        .route("/api/v1/instances/groups", get(group_instances))
        .route(
            "/api/v1/instances/{id}",
            get(show_instance).delete(remove_instance),
        )
        .route("/api/v1/instances/{id}/commands", post(enqueue_command))
        .route("/api/v1/commands", get(list_queue))
        .route("/api/v1/errors", get(list_errors))
        .route("/api/v1/owners", get(list_owners))
        .route("/api/v1/health", get(health))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/counts/history", get(counts_history))
}

/// An instance id from the path; a bad one is a 400 that says so.
pub(crate) struct IdPath(pub(crate) InstanceId);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
        raw.parse::<InstanceId>()
            .map(IdPath)
            .map_err(|e| ApiError::bad_request(crate::params::invalid_text(&e)))
    }
}

#[utoipa::path(
    get, path = "/api/v1/instances", tag = "instances",
    summary = "Query instances",
    description = "The instances matching the filters, newest first, one page at a time (keyset pagination: pass `next` as `cursor`).",
    params(FilterParams, PageParams),
    responses(
        (status = 200, description = "A page of instances", body = InstancePage),
        (status = 400, description = "A bad filter, cursor or page size", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_instances(
    State(state): Shared,
    _: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<InstancePage> {
    let params = Params::parse(raw.as_deref(), &["cursor", "max"], true)?;
    let filter = params.filter(state.now())?;
    let page = params.page()?;
    let page = state.providers.query.query(&filter, &page).await?;
    Ok(Json(InstancePage {
        items: page.items.iter().map(Into::into).collect(),
        next: page.next.map(|c| c.to_string()),
    }))
}

#[utoipa::path(
    get, path = "/api/v1/instances/count", tag = "instances",
    summary = "Count instances",
    params(FilterParams),
    responses(
        (status = 200, description = "How many instances match", body = CountDto),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn count_instances(
    State(state): Shared,
    _: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<CountDto> {
    let params = Params::parse(raw.as_deref(), &[], true)?;
    let filter = params.filter(state.now())?;
    let count = state.providers.query.count(&filter).await?;
    Ok(Json(CountDto { count }))
}

#[utoipa::path(
    get, path = "/api/v1/instances/groups", tag = "instances",
    summary = "Count instances per group",
    params(GroupParams, FilterParams),
    responses(
        (status = 200, description = "Counts per group, ordered by key (null first)", body = GroupsDto),
        (status = 400, description = "A bad grouping or filter", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn group_instances(
    State(state): Shared,
    _: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<GroupsDto> {
    let params = Params::parse(raw.as_deref(), &["by"], true)?;
    let by = params.group_by()?;
    let filter = params.filter(state.now())?;
    let groups = state.providers.query.group_count(&filter, by).await?;
    Ok(Json(GroupsDto {
        by: by.name().to_owned(),
        groups: groups.iter().map(GroupDto::from).collect(),
    }))
}

#[utoipa::path(
    get, path = "/api/v1/instances/{id}", tag = "instances",
    summary = "Show one instance",
    params(("id" = String, Path, format = Uuid, description = "The instance id")),
    responses(
        (status = 200, description = "The instance", body = InstanceDto),
        (status = 400, description = "Not an instance id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn show_instance(
    State(state): Shared,
    _: Caller,
    IdPath(id): IdPath,
) -> ApiResult<InstanceDto> {
    let filter = InstanceFilter {
        ids: vec![id],
        ..InstanceFilter::default()
    };
    let page = state
        .providers
        .query
        .query(&filter, &PageRequest::first(1))
        .await?;
    page.items
        .first()
        .map(|i| Json(i.into()))
        .ok_or_else(|| ApiError::not_found(format!("no instance has the id {id}; check the id")))
}

#[utoipa::path(
    post, path = "/api/v1/instances/{id}/commands", tag = "control",
    summary = "Enqueue a control command",
    description = "Queues Suspend, Resume, Terminate or Cancel for the management service, which executes it shortly (through the host holding the instance, or at the store level). A queued command not yet taken is replaced. Admin only.",
    params(("id" = String, Path, format = Uuid, description = "The instance id")),
    request_body(content = EnqueueRequest, description = "The command", content_type = "application/json"),
    responses(
        (status = 202, description = "Queued", body = EnqueuedDto),
        (status = 400, description = "A bad id or body", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 409, description = "The instance is completed, or its queued command is being executed (CommandLocked) or waits for a retry (CommandPending)", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn enqueue_command(
    State(state): Shared,
    _: Admin,
    IdPath(id): IdPath,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: EnqueueRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not a command ({e}); send {{\"command\": \"suspend\" | \"resume\" | \"terminate\" | \"cancel\", \"reason\": \"...\"}}"
        ))
    })?;
    let reason = request.reason.unwrap_or_default();
    let command = match request.command {
        CommandName::Suspend => ControlCommand::Suspend { reason },
        CommandName::Terminate => ControlCommand::Terminate { reason },
        other if !reason.is_empty() => {
            return Err(ApiError::bad_request(format!(
                "{other:?} takes no reason; only suspend and terminate record one, leave it out"
            )))
        }
        CommandName::Resume => ControlCommand::Resume,
        CommandName::Cancel => ControlCommand::Cancel,
    };
    tracing::info!(instance = %id, command = command.name(), "enqueue");
    state.providers.control.enqueue(id, command.clone()).await?;
    if let Some(n) = &state.nudge {
        n.nudge();
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(EnqueuedDto {
            instance: id.to_string(),
            command: CommandDto::from(&command),
        }),
    )
        .into_response())
}

#[utoipa::path(
    delete, path = "/api/v1/instances/{id}", tag = "control",
    summary = "Remove an instance",
    description = "Removes the instance and everything that belongs to it at once (keys, promoted values, queued command, error-log entry). A host holding it loses its lock. Admin only.",
    params(("id" = String, Path, format = Uuid, description = "The instance id")),
    responses(
        (status = 200, description = "Removed", body = RemovedDto),
        (status = 400, description = "Not an instance id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn remove_instance(
    State(state): Shared,
    _: Admin,
    IdPath(id): IdPath,
) -> ApiResult<RemovedDto> {
    tracing::info!(instance = %id, "remove");
    state.providers.control.delete(id).await?;
    Ok(Json(RemovedDto {
        instance: id.to_string(),
    }))
}

#[utoipa::path(
    get, path = "/api/v1/commands", tag = "control",
    summary = "List the control queue",
    params(QueueParams),
    responses(
        (status = 200, description = "Queued commands, oldest first", body = QueueDto),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_queue(
    State(state): Shared,
    _: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<QueueDto> {
    let params = Params::parse(raw.as_deref(), &["after", "max"], false)?;
    let max = listing_max(&params)?;
    let entries = state
        .providers
        .control
        .queued(params.number("after")?, max)
        .await?;
    Ok(Json(QueueDto {
        items: entries.iter().map(QueueEntryDto::from).collect(),
    }))
}

fn listing_max(params: &Params) -> Result<usize, ApiError> {
    let max = params.max("max", DEFAULT_LISTING)?;
    if max == 0 || max > MAX_LISTING {
        return Err(ApiError::bad_request(format!(
            "max: {max} is out of range; ask for 1 to {MAX_LISTING} entries"
        )));
    }
    Ok(max)
}

#[utoipa::path(
    get, path = "/api/v1/errors", tag = "control",
    summary = "List the error log",
    params(MaxParams),
    responses(
        (status = 200, description = "Commands given up, newest attempt first", body = ErrorLogDto),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_errors(
    State(state): Shared,
    _: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<ErrorLogDto> {
    let params = Params::parse(raw.as_deref(), &["max"], false)?;
    let entries = state
        .providers
        .control
        .error_log(listing_max(&params)?)
        .await?;
    Ok(Json(ErrorLogDto {
        items: entries.iter().map(ErrorEntryDto::from).collect(),
    }))
}

#[utoipa::path(
    get, path = "/api/v1/owners", tag = "store",
    summary = "List the owners",
    responses(
        (status = 200, description = "Every stored owner, live or expired", body = OwnersDto),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_owners(State(state): Shared, _: Caller) -> ApiResult<OwnersDto> {
    let owners = state.providers.persistence.owners().await?;
    let now = state.now();
    Ok(Json(OwnersDto {
        items: owners.iter().map(|o| OwnerDto::new(o, now)).collect(),
    }))
}

#[utoipa::path(
    get, path = "/api/v1/health", tag = "store",
    summary = "Store health",
    responses(
        (status = 200, description = "The store answers", body = HealthDto),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = HealthDto),
    ),
    security(("bearer" = []))
)]
async fn health(State(state): Shared, _: Caller) -> Response {
    let now = state.now();
    let answer = async {
        let count = state.providers.query.count(&InstanceFilter::all()).await?;
        let owners = state.providers.persistence.owners().await?;
        let alive = owners.iter().filter(|o| o.lease_expires_at > now).count() as u64;
        Ok::<_, instore::StoreError>((count, alive))
    }
    .await;
    let management = ManagementStatsDto::from(state.stats.snapshot());
    let (code, body) = match answer {
        Ok((count, alive)) => (
            StatusCode::OK,
            HealthDto {
                status: "ok".into(),
                store: state.name.clone(),
                now: now.to_string(),
                instances: Some(count),
                owners_alive: Some(alive),
                error: None,
                management,
            },
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            HealthDto {
                status: "unavailable".into(),
                store: state.name.clone(),
                now: now.to_string(),
                instances: None,
                owners_alive: None,
                error: Some(ApiError::from(e).message),
                management,
            },
        ),
    };
    (code, Json(body)).into_response()
}

#[utoipa::path(
    get, path = "/api/v1/whoami", tag = "store",
    summary = "The caller's role",
    responses(
        (status = 200, description = "The role of the token sent", body = WhoAmIDto),
        (status = 401, description = "No or unknown token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn whoami(State(state): Shared, Caller(role): Caller) -> Json<WhoAmIDto> {
    Json(WhoAmIDto {
        role: role.name().to_owned(),
        tokens_required: !state.tokens.is_empty(),
    })
}

#[utoipa::path(
    get, path = "/api/v1/counts/history", tag = "store",
    summary = "Instance counts by status over time",
    description = "Samples taken by the server every few seconds since it started (a ring buffer), oldest first.",
    responses(
        (status = 200, description = "The samples", body = CountsHistoryDto),
        (status = 401, description = "No or unknown token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn counts_history(State(state): Shared, _: Caller) -> Json<CountsHistoryDto> {
    Json(CountsHistoryDto {
        items: state
            .samples()
            .into_iter()
            .map(|s| CountsSampleDto {
                at: s.at.to_string(),
                running: s.running,
                suspended: s.suspended,
                completed: s.completed,
            })
            .collect(),
    })
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of the API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "instore",
        description = "Query and steer the workflow instances of an instore store. Errors are `{\"error\": \"...\"}` saying what is wrong and what to do. When the server has tokens, send `Authorization: Bearer <token>`: reader tokens may query, admin tokens may also steer."
    ),
    paths(
        list_instances, count_instances, group_instances, show_instance, enqueue_command,
        remove_instance, list_queue, list_errors, list_owners, health, whoami, counts_history
    ),
    modifiers(&Security),
    tags(
        (name = "instances", description = "Find, count and group instances"),
        (name = "control", description = "Steer instances: the control queue and the error log"),
        (name = "store", description = "Owners, health, the caller")
    )
)]
pub struct ApiDoc;
