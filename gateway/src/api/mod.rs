//! The HTTP jobs API and its OpenAPI document. Routes and document come
//! from the same `#[utoipa::path]` annotations (utoipa-axum), so a route
//! cannot exist without being documented.

pub mod auth;
pub mod body;
pub mod error;
pub mod jobs;
pub mod kinds;
pub mod publish;

use std::sync::Arc;

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice HTTP API", description = "Jobs over HTTP for clients that do not hold a WebSocket, and publishing to users for backends; see docs/protocol.md."),
    modifiers(&BearerAuth),
    tags(
        (name = "jobs", description = "create, run, read, list and delete jobs; list the kinds served"),
        (name = "publish", description = "backends publish messages to users (service tokens with scope sluice:publish)"),
    ),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The jobs and publish routes and the OpenAPI document describing them.
pub fn router() -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(jobs::create_job, jobs::list_jobs))
        .routes(routes!(jobs::get_job, jobs::delete_job))
        .routes(routes!(jobs::run_job))
        .routes(routes!(kinds::list_kinds))
        .routes(routes!(publish::publish))
        .split_for_parts()
}
