//! (ext) Webhooks: the organization's endpoints, their signing secrets (shown once), the
//! delivery log and redelivery. Master token only; another organization's ids are missing.

use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject};

use super::{
    connection::{
        NamedConnection, WebhookDeliveryConnectionName, WebhookDeliveryEdgeName, WebhookEndpointConnectionName,
        WebhookEndpointEdgeName, from_page,
    },
    guard::{Token, access},
    page_request, principal,
    scalars::DateTime,
    services, unscoped_db,
};
use crate::{
    auth::Access,
    domain::webhooks::{
        EventType as DomainEventType,
        deliveries::{self, DeliveryState as DomainState, ErrorClass as DomainErrorClass},
        endpoints::{self, EndpointPatch, NewEndpoint, SigningSecret},
    },
    ids::{WebhookDeliveryId, WebhookEndpointId},
};

/// An event a webhook endpoint can subscribe to. A payload's `type` holds the event's
/// name, written in lower case with a dot (`AUTHENTICATION_REFRESH_FAILED` is
/// `authentication.refresh_failed`).
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "DomainEventType")]
pub enum WebhookEventType {
    /// `authentication.created`: an authentication was imported or connected.
    AuthenticationCreated,
    /// `authentication.updated`: its credentials were replaced or refreshed (`data.cause`).
    AuthenticationUpdated,
    /// `authentication.removed`: removed, or with its end user.
    AuthenticationRemoved,
    /// `authentication.refresh_failed`: the provider refused a refresh (`data.reason`).
    AuthenticationRefreshFailed,
    /// `authentication.expiring`: it stops working at `data.expiresAt`, whatever refreshes happen.
    AuthenticationExpiring,
    /// `solution_instance.created`.
    SolutionInstanceCreated,
    /// `solution_instance.updated`: auth values, config values or version changed (`data.changed`).
    SolutionInstanceUpdated,
    /// `solution_instance.enabled`.
    SolutionInstanceEnabled,
    /// `solution_instance.disabled`.
    SolutionInstanceDisabled,
    /// `solution_instance.removed`: removed, or with its end user.
    SolutionInstanceRemoved,
}

/// (ext) Where the organization's events go. Never shows its signing secret.
#[derive(SimpleObject)]
pub struct WebhookEndpoint {
    pub id: ID,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<WebhookEventType>,
    /// A disabled endpoint gets no new events; its pending deliveries wait until it is enabled.
    pub enabled: bool,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

impl From<endpoints::Endpoint> for WebhookEndpoint {
    fn from(endpoint: endpoints::Endpoint) -> Self {
        Self {
            id: ID(endpoint.id.to_string()),
            url: endpoint.url,
            description: endpoint.description,
            event_types: endpoint.event_types.into_iter().map(Into::into).collect(),
            enabled: endpoint.enabled,
            created_at: DateTime(endpoint.created_at),
            updated_at: DateTime(endpoint.updated_at),
        }
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "DomainState")]
pub enum WebhookDeliveryStatus {
    /// Waiting for its next attempt, or being sent.
    Pending,
    /// An attempt was answered with a 2xx status.
    Delivered,
    /// Every attempt of the retry schedule failed.
    Failed,
}

/// Why an attempt did not deliver.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "DomainErrorClass")]
pub enum WebhookErrorClass {
    /// The endpoint answered a status other than 2xx (redirects are not followed).
    HttpStatus,
    /// No answer within the time limit.
    Timeout,
    /// The connection could not be made or broke.
    Connect,
    /// The URL's host resolves only to loopback, private or link-local addresses.
    RefusedAddress,
    /// The answer was larger than 64 KiB.
    AnswerTooLarge,
    /// The URL cannot be called.
    InvalidUrl,
    /// latchkey could not prepare the request (see its logs).
    Internal,
}

/// One try of a delivery.
#[derive(SimpleObject)]
pub struct WebhookDeliveryAttempt {
    /// 1 for the first attempt of the delivery.
    pub number: i32,
    pub attempted_at: DateTime,
    pub duration_ms: i64,
    /// The answer's status; `null` when there was none.
    pub http_status: Option<i32>,
    /// `null` when the attempt delivered.
    pub error_class: Option<WebhookErrorClass>,
    /// At most 200 characters of the answer's body.
    pub response_excerpt: Option<String>,
}

/// (ext) One event on its way to one endpoint.
#[derive(SimpleObject)]
pub struct WebhookDelivery {
    pub id: ID,
    pub endpoint_id: ID,
    /// The `webhook-id` header: the same on every attempt and redelivery of the event.
    pub event_id: ID,
    /// The payload's `type`, such as `authentication.created`.
    pub event_type: String,
    /// The authentication or solution instance the event is about.
    pub subject_id: ID,
    /// The exact body sent: ids and names, never a secret.
    pub payload: String,
    pub status: WebhookDeliveryStatus,
    /// When the next attempt is due; `null` unless `PENDING`.
    pub next_attempt_at: Option<DateTime>,
    pub delivered_at: Option<DateTime>,
    pub created_at: DateTime,
    /// Oldest first.
    pub attempts: Vec<WebhookDeliveryAttempt>,
}

impl From<deliveries::Delivery> for WebhookDelivery {
    fn from(delivery: deliveries::Delivery) -> Self {
        Self {
            id: ID(delivery.id.to_string()),
            endpoint_id: ID(delivery.endpoint_id.to_string()),
            event_id: ID(delivery.event_id.to_string()),
            event_type: delivery.event_type,
            subject_id: ID(delivery.subject_id.to_string()),
            payload: delivery.payload,
            status: delivery.state.into(),
            next_attempt_at: delivery.next_attempt_at.map(DateTime),
            delivered_at: delivery.delivered_at.map(DateTime),
            created_at: DateTime(delivery.created_at),
            attempts: delivery
                .attempts
                .into_iter()
                .map(|attempt| WebhookDeliveryAttempt {
                    number: attempt.number,
                    attempted_at: DateTime(attempt.attempted_at),
                    duration_ms: attempt.duration_ms,
                    http_status: attempt.http_status,
                    error_class: attempt.error_class.map(Into::into),
                    response_excerpt: attempt.response_excerpt,
                })
                .collect(),
        }
    }
}

pub type WebhookEndpointConnection =
    NamedConnection<WebhookEndpoint, WebhookEndpointConnectionName, WebhookEndpointEdgeName>;
pub type WebhookDeliveryConnection =
    NamedConnection<WebhookDelivery, WebhookDeliveryConnectionName, WebhookDeliveryEdgeName>;

#[derive(InputObject)]
pub struct CreateWebhookEndpointInput {
    /// An absolute `https` URL without credentials, at most 2048 characters (`http` too
    /// where `LATCHKEY_OUTBOUND_ALLOW_PRIVATE` is on).
    pub url: String,
    /// At least one.
    pub event_types: Vec<WebhookEventType>,
    /// At most 256 characters.
    pub description: Option<String>,
    pub client_mutation_id: Option<String>,
}

/// The endpoint and its signing secret: shown here once, never again.
#[derive(SimpleObject)]
pub struct WebhookEndpointWithSecretPayload {
    pub webhook_endpoint: WebhookEndpoint,
    /// The Standard Webhooks secret (`whsec_…`) receivers verify signatures with.
    pub signing_secret: String,
    pub client_mutation_id: Option<String>,
}

fn with_secret(
    (endpoint, secret): (endpoints::Endpoint, SigningSecret),
    client_mutation_id: Option<String>,
) -> WebhookEndpointWithSecretPayload {
    WebhookEndpointWithSecretPayload {
        webhook_endpoint: endpoint.into(),
        signing_secret: secret.expose().to_owned(),
        client_mutation_id,
    }
}

/// A field left out keeps its value; `description: null` clears it.
#[derive(InputObject)]
pub struct UpdateWebhookEndpointInput {
    pub webhook_endpoint_id: ID,
    pub url: Option<String>,
    /// Replaces the list; at least one.
    pub event_types: Option<Vec<WebhookEventType>>,
    pub description: MaybeUndefined<String>,
    pub enabled: Option<bool>,
    pub client_mutation_id: Option<String>,
}

#[derive(SimpleObject)]
pub struct UpdateWebhookEndpointPayload {
    pub webhook_endpoint: WebhookEndpoint,
    pub client_mutation_id: Option<String>,
}

#[derive(InputObject)]
pub struct WebhookEndpointIdInput {
    pub webhook_endpoint_id: ID,
    pub client_mutation_id: Option<String>,
}

client_mutation_id_payload!(RemoveWebhookEndpointPayload);

#[derive(InputObject)]
pub struct RedeliverWebhookEventInput {
    pub delivery_id: ID,
    pub client_mutation_id: Option<String>,
}

#[derive(SimpleObject)]
pub struct RedeliverWebhookEventPayload {
    /// The delivery that will carry the event again.
    pub delivery: WebhookDelivery,
    pub client_mutation_id: Option<String>,
}

#[derive(Default)]
pub struct WebhooksQuery;

#[Object]
impl WebhooksQuery {
    /// (ext) The organization's webhook endpoints, oldest first.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master), complexity = "crate::graphql::connection::page_complexity(first, last, child_complexity)")]
    async fn webhook_endpoints(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<WebhookEndpointConnection> {
        let scope = principal(ctx).master()?;
        let page = endpoints::list(unscoped_db(ctx), scope, &page_request(first, after, last, before)?).await?;
        Ok(from_page(page, |endpoint| endpoint.id.0, WebhookEndpoint::from))
    }

    /// (ext) The delivery log of one endpoint, oldest first (`last` reads the newest),
    /// each delivery with its attempts.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master), complexity = "crate::graphql::connection::page_complexity(first, last, child_complexity)")]
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<WebhookDeliveryConnection> {
        let scope = principal(ctx).master()?;
        let endpoint_id = WebhookEndpointId::parse(&endpoint_id)?;
        let page_request = page_request(first, after, last, before)?;
        let page = deliveries::list(unscoped_db(ctx), scope, endpoint_id, &page_request).await?;
        Ok(from_page(page, |delivery| delivery.id.0, WebhookDelivery::from))
    }
}

#[derive(Default)]
pub struct WebhooksMutation;

#[Object]
impl WebhooksMutation {
    /// (ext) Registers a webhook endpoint and answers its signing secret, once. At most
    /// 20 endpoints per organization.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookEndpointInput,
    ) -> Result<WebhookEndpointWithSecretPayload> {
        let scope = principal(ctx).master()?;
        let services = services(ctx);
        let new = NewEndpoint {
            url: input.url,
            event_types: input.event_types.into_iter().map(Into::into).collect(),
            description: input.description,
        };
        let created =
            endpoints::create(services.unscoped_db(), &services.keyring(), services.outbound(), scope, new).await?;
        Ok(with_secret(created, input.client_mutation_id))
    }

    /// (ext) Changes an endpoint's URL, event types, description or whether it is enabled.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: UpdateWebhookEndpointInput,
    ) -> Result<UpdateWebhookEndpointPayload> {
        let scope = principal(ctx).master()?;
        let id = WebhookEndpointId::parse(&input.webhook_endpoint_id)?;
        let patch = EndpointPatch {
            url: input.url,
            event_types: input.event_types.map(|types| types.into_iter().map(Into::into).collect()),
            description: match input.description {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(description) => Some(Some(description)),
            },
            enabled: input.enabled,
        };
        let services = services(ctx);
        let endpoint = endpoints::update(services.unscoped_db(), services.outbound(), scope, id, patch).await?;
        Ok(UpdateWebhookEndpointPayload {
            webhook_endpoint: endpoint.into(),
            client_mutation_id: input.client_mutation_id,
        })
    }

    /// (ext) Removes an endpoint, with its pending deliveries and its delivery log.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn remove_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: WebhookEndpointIdInput,
    ) -> Result<RemoveWebhookEndpointPayload> {
        let scope = principal(ctx).master()?;
        let id = WebhookEndpointId::parse(&input.webhook_endpoint_id)?;
        endpoints::remove(unscoped_db(ctx), scope, id).await?;
        Ok(RemoveWebhookEndpointPayload { client_mutation_id: input.client_mutation_id })
    }

    /// (ext) Replaces an endpoint's signing secret and answers the new one, once. The old
    /// secret keeps signing beside it for 24 hours.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn rotate_webhook_endpoint_secret(
        &self,
        ctx: &Context<'_>,
        input: WebhookEndpointIdInput,
    ) -> Result<WebhookEndpointWithSecretPayload> {
        let scope = principal(ctx).master()?;
        let id = WebhookEndpointId::parse(&input.webhook_endpoint_id)?;
        let services = services(ctx);
        let rotated = endpoints::rotate_secret(services.unscoped_db(), &services.keyring(), scope, id).await?;
        Ok(with_secret(rotated, input.client_mutation_id))
    }

    /// (ext) Sends a delivery's event to its endpoint again, with the same `webhook-id`.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn redeliver_webhook_event(
        &self,
        ctx: &Context<'_>,
        input: RedeliverWebhookEventInput,
    ) -> Result<RedeliverWebhookEventPayload> {
        let scope = principal(ctx).master()?;
        let id = WebhookDeliveryId::parse(&input.delivery_id)?;
        let delivery = deliveries::redeliver(unscoped_db(ctx), scope, id).await?;
        Ok(RedeliverWebhookEventPayload { delivery: delivery.into(), client_mutation_id: input.client_mutation_id })
    }
}
