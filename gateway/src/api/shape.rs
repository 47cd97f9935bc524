//! The shape of a query, checked as soon as it is parsed and before async-graphql validates
//! it.
//!
//! Validation walks every fragment spread again each time it is spread, so a small document
//! whose fragments spread each other twice, thirty levels down, would take it minutes. The
//! count here visits each fragment once and remembers its tally, so such a document is
//! measured (and refused) in microseconds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest,
    NextValidation,
};
use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{
    ErrorExtensionValues, Name, Positioned, Request, ServerError, ServerResult, ValidationResult,
    Variables,
};

use crate::refusal::{PARSE_FAILED, VALIDATION_FAILED};

/// Nesting of selections and fragments the count follows before it gives up; deeper than
/// any depth limit a schema would allow.
const MAX_NESTING: usize = 128;

/// Bounds on a query's shape.
#[derive(Debug, Clone, Copy)]
pub struct ShapeLimits {
    /// Length of the query text: parsing costs time in proportion, so a long document is
    /// refused before it is parsed. Large values belong in variables.
    pub query_bytes: usize,
    /// Aliased fields, counted after fragments are expanded.
    pub aliases: u64,
    /// Fields at the root of an operation.
    pub root_fields: u64,
    /// Fields after fragments are expanded, `__typename` included.
    pub fields: u64,
}

/// The async-graphql extension that applies [`ShapeLimits`] and gives parse and validation
/// errors their codes.
pub struct Shape(pub ShapeLimits);

impl ExtensionFactory for Shape {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ShapeCheck(self.0))
    }
}

struct ShapeCheck(ShapeLimits);

#[async_graphql::async_trait::async_trait]
impl Extension for ShapeCheck {
    /// Parses the query and checks its shape before async-graphql looks at it: its own
    /// recursion check walks every spread of every fragment.
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if request.query.len() > self.0.query_bytes {
            return Err(coded(
                ServerError::new(
                    format!(
                        "a query is at most {} bytes long; send large values as variables",
                        self.0.query_bytes
                    ),
                    None,
                ),
                VALIDATION_FAILED,
            ));
        }
        let name = request.operation_name.clone();
        let document = request
            .parsed_query()
            .map_err(|error| coded(error, PARSE_FAILED))?;
        check(document, &self.0)
            .and_then(|()| selected(document, name.as_deref()))
            .map_err(|message| coded(ServerError::new(message, None), VALIDATION_FAILED))?;
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables)
            .await
            .map_err(|error| coded(error, VALIDATION_FAILED))
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|error| coded(error, VALIDATION_FAILED))
                .collect()
        })
    }
}

/// The error with `extensions.code`, unless it has one already.
fn coded(mut error: ServerError, code: &str) -> ServerError {
    let extensions = error
        .extensions
        .get_or_insert_with(ErrorExtensionValues::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
    error
}

/// What a selection amounts to once its fragments are expanded.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    fields: u64,
    aliases: u64,
    /// Fields at this selection's own level.
    top: u64,
}

impl Tally {
    fn add(self, other: Self) -> Self {
        Self {
            fields: self.fields.saturating_add(other.fields),
            aliases: self.aliases.saturating_add(other.aliases),
            top: self.top.saturating_add(other.top),
        }
    }
}

/// Checks every operation of a document against the limits.
pub fn check(document: &ExecutableDocument, limits: &ShapeLimits) -> Result<(), String> {
    let mut counter = Counter {
        fragments: &document.fragments,
        memo: HashMap::new(),
        visiting: HashSet::new(),
    };
    for (_, operation) in document.operations.iter() {
        let tally = counter.selection_set(&operation.node.selection_set.node, 0)?;
        if tally.top > limits.root_fields {
            return Err(format!(
                "an operation selects at most {} root fields; this one selects {}",
                limits.root_fields, tally.top
            ));
        }
        if tally.aliases > limits.aliases {
            return Err(format!(
                "a query may use at most {} aliases; this one uses {}",
                limits.aliases, tally.aliases
            ));
        }
        if tally.fields > limits.fields {
            return Err(format!(
                "a query may select at most {} fields (fragments expanded, __typename counted); this one selects {}",
                limits.fields, tally.fields
            ));
        }
    }
    Ok(())
}

/// Checks that the document has the operation the request names, or only one when it names
/// none.
fn selected(document: &ExecutableDocument, name: Option<&str>) -> Result<(), String> {
    let mut operations = document.operations.iter();
    match name {
        Some(name) => {
            if operations.any(|(n, _)| n.is_some_and(|n| n.as_str() == name)) {
                Ok(())
            } else {
                Err(format!("the document has no operation named {name:?}"))
            }
        }
        None if operations.count() > 1 => {
            Err("the document holds several operations: name one in operationName".into())
        }
        None => Ok(()),
    }
}

struct Counter<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    memo: HashMap<&'a str, Tally>,
    visiting: HashSet<&'a str>,
}

impl<'a> Counter<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet, nesting: usize) -> Result<Tally, String> {
        if nesting > MAX_NESTING {
            return Err(format!(
                "selections and fragments nest at most {MAX_NESTING} levels deep"
            ));
        }
        let mut tally = Tally::default();
        for item in &set.items {
            let part = match &item.node {
                Selection::Field(field) => {
                    let inner = self.selection_set(&field.node.selection_set.node, nesting + 1)?;
                    Tally {
                        fields: inner.fields.saturating_add(1),
                        aliases: inner
                            .aliases
                            .saturating_add(u64::from(field.node.alias.is_some())),
                        top: 1,
                    }
                }
                Selection::InlineFragment(fragment) => {
                    self.selection_set(&fragment.node.selection_set.node, nesting + 1)?
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(&spread.node.fragment_name.node, nesting + 1)?
                }
            };
            tally = tally.add(part);
        }
        Ok(tally)
    }

    fn fragment(&mut self, name: &'a Name, nesting: usize) -> Result<Tally, String> {
        if let Some(tally) = self.memo.get(name.as_str()) {
            return Ok(*tally);
        }
        let Some(definition) = self.fragments.get(name) else {
            // Validation reports the unknown fragment.
            return Ok(Tally::default());
        };
        if !self.visiting.insert(name.as_str()) {
            return Err(format!("fragment {name} spreads itself"));
        }
        let tally = self.selection_set(&definition.node.selection_set.node, nesting)?;
        self.visiting.remove(name.as_str());
        self.memo.insert(name.as_str(), tally);
        Ok(tally)
    }
}
