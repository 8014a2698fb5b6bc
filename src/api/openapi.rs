//! The OpenAPI document, generated from the handlers' annotations. `jinad openapi` prints it;
//! `openapi/openapi.json` is a committed copy that a test keeps in step.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{deployments, events, export, gc, status, workspaces};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "jinad",
        description = "Upload projects as workspaces, build them into Docker images and run Flows, Pods and Peas. \
                       Every error body is `{\"code\", \"message\"}` with a stable snake_case `code`. \
                       A daemon started with a token (`--token-file`; required off loopback) wants \
                       `Authorization: Bearer <token>` on every route but `GET /` and `GET /ready`, else 401 `unauthorized`.",
        license(name = "Apache-2.0")
    ),
    paths(
        status::alive, status::ready, status::status, status::metrics,
        workspaces::create, workspaces::list, workspaces::get_one, workspaces::update, workspaces::remove, workspaces::logs,
        deployments::create_flow, deployments::list_flows, deployments::get_flow, deployments::delete_flow, deployments::flow_logs,
        deployments::create_pod, deployments::list_pods, deployments::get_pod, deployments::delete_pod, deployments::pod_logs,
        deployments::create_pea, deployments::list_peas, deployments::get_pea, deployments::delete_pea, deployments::pea_logs,
        deployments::renew_pod_lease, deployments::renew_pea_lease, export::export_flow, export::push_workspace,
        events::events, gc::collect,
    ),
    modifiers(&BearerScheme),
    security(("bearer" = [])),
    components(schemas(
        crate::error::ErrorBody, crate::error::Code, crate::state::State, workspaces::WorkspaceId, deployments::FlowId, deployments::PodId,
        deployments::PeaId, export::ExportFormat, export::ManifestArchive, events::SinceParam,
    )),
    tags(
        (name = "status", description = "Liveness and daemon status"),
        (name = "workspaces", description = "Uploaded projects, their images and networks"),
        (name = "flows", description = "Flows of a workspace, every pea in its own container"),
        (name = "pods", description = "Single pods in containers, ports published for Flows elsewhere"),
        (name = "peas", description = "Single peas in containers"),
        (name = "events", description = "The timeline of state changes"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme that `security` refers to, so generated clients send it.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // Every operation that needs the token may answer 401 `unauthorized`.
        let unauthorized = ResponseBuilder::new()
            .description(crate::error::describe("No token, or not the daemon's", &[crate::error::Code::Unauthorized]))
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head, &mut item.options];
            for operation in operations.into_iter().flatten() {
                // An operation with its own (empty) requirement is public: liveness, readiness.
                if operation.security.is_none() {
                    operation.responses.responses.insert("401".to_string(), unauthorized.clone().into());
                }
            }
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            super::auth::SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The daemon's token (`--token-file` or `JINAD_TOKEN`); needed when the daemon has one"))
                    .build(),
            ),
        );
    }
}

pub fn json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
