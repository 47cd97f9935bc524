//! A popug's turns, taken by each query and mutation once validation has priced it, whatever
//! the transport: a document spends its complexity from the popug's pace ([`Turns::pace`]) and
//! takes its share of the popug's turns by it ([`Turns::weight`]), waiting for both inside the
//! request's time limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextValidation,
};
use async_graphql::{ErrorExtensionValues, Response, ServerError, ValidationResult};

use crate::rate_limit::{PACE_WAIT, Turns};
use crate::refusal::RATE_LIMITED;
use crate::session::Session;

/// The async-graphql extension that runs each popug's queries and mutations within its turns.
/// Subscriptions wait on the feed, not the database, and take none.
pub struct TakeTurns(pub Arc<Turns>);

impl ExtensionFactory for TakeTurns {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Turn {
            turns: Arc::clone(&self.0),
            weight: AtomicU32::new(1),
            complexity: AtomicUsize::new(0),
        })
    }
}

struct Turn {
    turns: Arc<Turns>,
    /// What validation priced the document at, in turns.
    weight: AtomicU32,
    /// And in complexity.
    complexity: AtomicUsize,
}

#[async_graphql::async_trait::async_trait]
impl Extension for Turn {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let priced = next.run(ctx).await?;
        self.weight
            .store(self.turns.weight(priced.complexity), Ordering::Relaxed);
        self.complexity.store(priced.complexity, Ordering::Relaxed);
        Ok(priced)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let Some(Session::Popug(popug)) = ctx.data_opt::<Session>() else {
            return next.run(ctx, operation_name).await;
        };
        let complexity = self.complexity.load(Ordering::Relaxed);
        match self.turns.pace(&popug.id.0, complexity) {
            Some(wait) => tokio::time::sleep(wait).await,
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
        let _turn = self
            .turns
            .take(&popug.id.0, self.weight.load(Ordering::Relaxed))
            .await;
        next.run(ctx, operation_name).await
    }
}
