//! A popug's turns, taken by each query and mutation once validation has priced it, whatever
//! the transport: a document spends its complexity from the popug's pace ([`Turns::pace`]) and
//! takes its share of the popug's turns by it ([`Turns::weight`]), waiting for both inside the
//! request's time limit. A document refused before it runs (it does not parse, breaks a limit,
//! or is not valid) spends [`REFUSAL_COST`] instead: a popug sending refusals back to back is
//! held to a pace too.

use std::any::TypeId;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest, NextValidation,
};
use async_graphql::{
    ErrorExtensionValues, Request, Response, ServerError, ServerResult, ValidationResult,
};

use crate::rate_limit::{PACE_WAIT, Turns};
use crate::refusal::RATE_LIMITED;
use crate::session::Session;

/// What a refused document spends from its popug's complexity budget: about a page of twenty
/// tasks, so that fifty refusals a second fit a budget of 5,000.
pub const REFUSAL_COST: usize = 100;

/// The async-graphql extension that runs each popug's queries and mutations within its turns.
/// Subscriptions wait on the feed, not the database, and take none. It is registered before the
/// shape check, so that it sees that check's refusals too.
pub struct TakeTurns(pub Arc<Turns>);

impl ExtensionFactory for TakeTurns {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Turn {
            turns: Arc::clone(&self.0),
            complexity: AtomicUsize::new(0),
        })
    }
}

struct Turn {
    turns: Arc<Turns>,
    /// What validation priced the document at.
    complexity: AtomicUsize,
}

impl Turn {
    /// A refusal's share of the popug's pace: it waits for it, or the longest wait when the
    /// budget is spent further ahead than that.
    async fn refused(&self, popug: &str) {
        let wait = self.turns.pace(popug, REFUSAL_COST).unwrap_or(PACE_WAIT);
        // Not even a zero sleep when nothing is owed: a timer costs up to a millisecond.
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The popug a request runs as, if any.
fn popug_of(session: Option<&Session>) -> Option<&str> {
    match session {
        Some(Session::Popug(popug)) => Some(popug.id.0.as_str()),
        _ => None,
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Turn {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let popug = popug_of(
            request
                .data
                .get(&TypeId::of::<Session>())
                .and_then(|data| data.downcast_ref::<Session>()),
        )
        .map(str::to_owned);
        let prepared = next.run(ctx, request).await;
        if let (Err(_), Some(popug)) = (&prepared, popug) {
            self.refused(&popug).await;
        }
        prepared
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let priced = match next.run(ctx).await {
            Ok(priced) => priced,
            Err(errors) => {
                if let Some(popug) = popug_of(ctx.data_opt::<Session>()) {
                    self.refused(popug).await;
                }
                return Err(errors);
            }
        };
        self.complexity.store(priced.complexity, Ordering::Relaxed);
        Ok(priced)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let Some(popug) = popug_of(ctx.data_opt::<Session>()) else {
            return next.run(ctx, operation_name).await;
        };
        let complexity = self.complexity.load(Ordering::Relaxed);
        match self.turns.pace(popug, complexity) {
            Some(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
            Some(_) => {}
            None => {
                // Answered after the longest wait, so that a client sending back to back is
                // held to that pace too.
                tokio::time::sleep(PACE_WAIT).await;
                let mut error = ServerError::new(
                    format!(
                        "this popug's documents cost more than its complexity budget allows \
                         (this one costs {complexity}); try again in a moment"
                    ),
                    None,
                );
                error
                    .extensions
                    .get_or_insert_with(ErrorExtensionValues::default)
                    .set("code", RATE_LIMITED);
                return Response::from_errors(vec![error]);
            }
        }
        let _turn = self.turns.take(popug, self.turns.weight(complexity)).await;
        next.run(ctx, operation_name).await
    }
}
