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
    ExecutableDocument, FragmentDefinition, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::{
    ErrorExtensionValues, Name, Positioned, Request, ServerError, ServerResult, ValidationResult,
    Value as ConstValue, Variables,
};
use async_graphql_value::Value as DocumentValue;

use crate::refusal::{BAD_USER_INPUT, PARSE_FAILED, VALIDATION_FAILED};

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
        // Before the parser, which would follow the nesting down the stack.
        if let Err(too_deep) = crate::nesting::check(&request.query, crate::nesting::MAX_NESTING) {
            return Err(coded(
                ServerError::new(too_deep.to_string(), None),
                PARSE_FAILED,
            ));
        }
        let nul_in_variables = request.variables.values().any(constant_holds_nul);
        let name = request.operation_name.clone();
        let document = request
            .parsed_query()
            .map_err(|error| coded(error, PARSE_FAILED))?;
        check(document, &self.0)
            .and_then(|()| selected(document, name.as_deref()))
            .map_err(|message| coded(ServerError::new(message, None), VALIDATION_FAILED))?;
        if nul_in_variables || holds_nul(document) {
            return Err(coded(
                ServerError::new(
                    "text may not contain the NUL character (U+0000): no store keeps it",
                    None,
                ),
                BAD_USER_INPUT,
            ));
        }
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

/// Whether any text of the document (an argument, a variable's default) holds U+0000.
/// PostgreSQL's text cannot store it, so it is refused up front, on every store alike, as it is
/// in variables.
fn holds_nul(document: &ExecutableDocument) -> bool {
    fn literal(value: &DocumentValue) -> bool {
        match value {
            DocumentValue::String(text) => text.contains('\0'),
            DocumentValue::List(items) => items.iter().any(literal),
            DocumentValue::Object(fields) => fields.values().any(literal),
            _ => false,
        }
    }
    fn selections(set: &SelectionSet) -> bool {
        set.items.iter().any(|item| match &item.node {
            Selection::Field(field) => {
                field.node.arguments.iter().any(|(_, v)| literal(&v.node))
                    || selections(&field.node.selection_set.node)
            }
            Selection::InlineFragment(fragment) => selections(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => false,
        })
    }
    let operations = document.operations.iter().any(|(_, operation)| {
        let defaults = operation
            .node
            .variable_definitions
            .iter()
            .any(|definition| {
                (definition.node.default_value.as_ref())
                    .is_some_and(|v| constant_holds_nul(&v.node))
            });
        defaults || selections(&operation.node.selection_set.node)
    });
    operations
        || document
            .fragments
            .values()
            .any(|fragment| selections(&fragment.node.selection_set.node))
}

/// Whether a variable's value holds U+0000 anywhere.
fn constant_holds_nul(value: &ConstValue) -> bool {
    match value {
        ConstValue::String(text) => text.contains('\0'),
        ConstValue::List(items) => items.iter().any(constant_holds_nul),
        ConstValue::Object(fields) => fields
            .iter()
            .any(|(key, value)| key.contains('\0') || constant_holds_nul(value)),
        _ => false,
    }
}

/// The mutation fields of the operation a request would run, fragments at its root expanded
/// (each aliased `createTask` is one): what the rate limit counts. `None` when the operation
/// is no mutation, or the document would not get past the checks before execution anyway.
pub fn mutation_fields(request: &mut Request, max_query_bytes: usize) -> Option<u64> {
    // Only a document that mentions `mutation` can hold one: most requests skip the parse.
    if request.query.len() > max_query_bytes
        || !request.query.contains("mutation")
        || crate::nesting::check(&request.query, crate::nesting::MAX_NESTING).is_err()
    {
        return None;
    }
    let name = request.operation_name.clone();
    let document = request.parsed_query().ok()?;
    let operation = operation(document, name.as_deref())?;
    if operation.ty != OperationType::Mutation {
        return None;
    }
    Some(root_fields(
        &operation.selection_set.node,
        document,
        &mut HashMap::new(),
    ))
}

/// The operation of `document` a request names, or its only one.
pub fn operation<'a>(
    document: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    let mut operations = document.operations.iter();
    let (_, operation) = match name {
        Some(name) => operations.find(|(n, _)| n.is_some_and(|n| n.as_str() == name))?,
        None => operations.next()?,
    };
    Some(&operation.node)
}

/// Fields at the root of a selection, fragments expanded (`__typename` is free). Each fragment
/// is counted once and remembered, so fragments that spread each other twice over cost no
/// more than their number; one that spreads itself counts nothing (validation refuses it).
fn root_fields<'a>(
    set: &'a SelectionSet,
    document: &'a ExecutableDocument,
    memo: &mut HashMap<&'a str, u64>,
) -> u64 {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => u64::from(field.node.name.node != "__typename"),
            Selection::InlineFragment(fragment) => {
                root_fields(&fragment.node.selection_set.node, document, memo)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                if let Some(count) = memo.get(name) {
                    return *count;
                }
                // Zero while it is counted: a spread of itself adds nothing.
                memo.insert(name, 0);
                let count = document
                    .fragments
                    .get(&spread.node.fragment_name.node)
                    .map_or(0, |fragment| {
                        root_fields(&fragment.node.selection_set.node, document, memo)
                    });
                memo.insert(name, count);
                count
            }
        })
        .fold(0, u64::saturating_add)
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
