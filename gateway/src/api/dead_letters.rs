//! Dead letters, for operators: the messages that could not be applied (malformed, or breaking
//! their contract), and their replay through the same handler once the cause is mended.

use async_graphql::{Context, ID, Object, SimpleObject};
use ates_events::dead_letter::{self, DeadLetter};
use chrono::{DateTime, Utc};
use task_domain::Permission;

use super::page::{Counted, Listed};
use super::{ApiError, ApiResult, ContextExt, page};
use crate::auth_events::HandleError;

/// A message that could not be applied, kept with the reason.
pub struct DeadLetterObject(DeadLetter);

#[Object(name = "DeadLetter")]
impl DeadLetterObject {
    /// Pass it to `replayDeadLetter`.
    async fn id(&self) -> ID {
        ID(self.0.seq.to_string())
    }

    /// Where it came from: `nats`.
    async fn source(&self) -> &str {
        &self.0.source
    }

    async fn subject(&self) -> &str {
        &self.0.subject
    }

    /// The message as it came, or as an operator mended it.
    async fn payload(&self) -> &str {
        &self.0.payload
    }

    /// Why it could not be applied.
    async fn reason(&self) -> &str {
        &self.0.reason
    }

    async fn received_at(&self) -> DateTime<Utc> {
        ates_db::from_micros(self.0.received_at)
    }
}

#[derive(Default)]
pub struct DeadLetterQuery;

#[Object]
impl DeadLetterQuery {
    /// Messages that could not be applied and wait for an operator, newest first. Admin only.
    #[graphql(complexity = "page::cost(first.or(last), child_complexity)")]
    async fn dead_letters(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Listed<DeadLetterObject>> {
        ctx.actor_may(Permission::Administer, "read the dead letters")?;
        let request = page::request(first, after, last, before)?;
        let cursor = match &request.after {
            None => None,
            Some(cursor) => Some(
                cursor
                    .parse::<i64>()
                    .map_err(|_| ApiError::BadUserInput("not a cursor of this list".into()))?,
            ),
        };
        let found = dead_letter::list(&ctx.services().db, &request, cursor).await?;
        Ok(page::connection(
            found,
            Counted::DeadLetters,
            |letter| letter.seq.to_string(),
            DeadLetterObject,
        ))
    }
}

/// What a replay did.
#[derive(SimpleObject)]
pub struct Replay {
    id: ID,
    /// `applied`, `duplicate` (handled before) or `stale` (the replica holds a newer state).
    outcome: String,
}

#[derive(Default)]
pub struct DeadLetterMutation;

#[Object]
impl DeadLetterMutation {
    /// Feeds a dead letter through its handler again, once its cause is mended: the outcome is
    /// recorded and the letter leaves the list. Replaying a replayed letter answers its
    /// recorded outcome and changes nothing; one that still cannot be applied stays, with the
    /// new reason (`BAD_USER_INPUT`). Admin only.
    async fn replay_dead_letter(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Replay> {
        ctx.actor_may(Permission::Administer, "replay dead letters")?;
        let not_found = || ApiError::NotFound(format!("dead letter {} does not exist", id.0));
        let seq: i64 = id.0.parse().map_err(|_| not_found())?;
        let db = &ctx.services().db;
        let Some(letter) = dead_letter::get(db, seq).await? else {
            let outcome = dead_letter::outcome(db, seq).await?.ok_or_else(not_found)?;
            return Ok(Replay { id, outcome });
        };
        match ctx
            .services()
            .auth_events
            .handle(letter.payload.as_bytes())
            .await
        {
            Ok((_, outcome)) => {
                dead_letter::replayed(db, seq, outcome.as_str()).await?;
                Ok(Replay {
                    id,
                    outcome: outcome.as_str().to_owned(),
                })
            }
            Err(HandleError::Bad(reason)) => {
                let reason = reason.to_string();
                dead_letter::failed_again(db, seq, &reason).await?;
                Err(ApiError::BadUserInput(format!(
                    "the letter still cannot be applied: {reason}"
                )))
            }
            Err(HandleError::Storage(error)) => Err(error.into()),
        }
    }
}
