//! How deep a text nests, found by one pass over its bytes before anything parses it.
//!
//! Parsers of GraphQL and JSON descend one call per level of `{`, `[` or `(`; a few kilobytes
//! of brackets would take them deeper than a thread's stack, and a stack overflow aborts the
//! whole process, not the one request. So every document and every JSON text a client sends is
//! measured here first, in linear time and constant memory, and refused when it nests deeper
//! than [`MAX_NESTING`].
//!
//! The scan knows just enough of both grammars not to count brackets that are text: GraphQL
//! strings (`"…"` with `\` escapes), block strings (`"""…"""`) and comments (`#` to the end of
//! the line). JSON strings are GraphQL strings, and JSON has no `#` outside one.

use std::fmt;

/// The deepest nesting of `{`, `[` and `(` together that a GraphQL document or a JSON text may
/// have. A query at the deepest selection the schema allows (15) with arguments holding lists of
/// input objects stays under 30; the parsers stay far from the end of their stack at 64.
pub const MAX_NESTING: usize = 64;

/// A text nests deeper than the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    pub max: usize,
}

impl fmt::Display for TooDeep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "brackets, braces and parentheses nest at most {} levels deep in a request",
            self.max
        )
    }
}

/// Refuses `text` when its brackets, braces and parentheses nest deeper than `max`. Unbalanced
/// or unterminated texts pass: the parser that follows reports them, and cannot go deeper than
/// what was counted here.
pub fn check<T: AsRef<[u8]> + ?Sized>(text: &T, max: usize) -> Result<(), TooDeep> {
    let bytes = text.as_ref();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > max {
                    return Err(TooDeep { max });
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            b'#' => i = end_of_line(bytes, i),
            b'"' if bytes[i..].starts_with(b"\"\"\"") => i = end_of_block_string(bytes, i + 3),
            b'"' => i = end_of_string(bytes, i + 1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The index of the newline that ends the comment starting at `from` (or the last byte).
fn end_of_line(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map_or(bytes.len(), |n| from + n)
}

/// The index of the `"` that closes a string whose text starts at `from`.
fn end_of_string(bytes: &[u8], mut from: usize) -> usize {
    while from < bytes.len() {
        match bytes[from] {
            b'\\' => from += 2,
            b'"' => return from,
            // A GraphQL string ends at its line; the parser reports it unterminated.
            b'\n' | b'\r' => return from,
            _ => from += 1,
        }
    }
    bytes.len()
}

/// The index of the last `"` of the `"""` that closes a block string whose text starts at
/// `from` (`\"""` inside it is text).
fn end_of_block_string(bytes: &[u8], mut from: usize) -> usize {
    while from < bytes.len() {
        if bytes[from..].starts_with(b"\\\"\"\"") {
            from += 4;
        } else if bytes[from..].starts_with(b"\"\"\"") {
            return from + 2;
        } else {
            from += 1;
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, close: &str, levels: usize) -> String {
        format!("{}1{}", open.repeat(levels), close.repeat(levels))
    }

    #[test]
    fn counts_every_kind_of_bracket_together() {
        assert!(check(&nested("[", "]", 64), 64).is_ok());
        assert_eq!(check(&nested("[", "]", 65), 64), Err(TooDeep { max: 64 }));
        assert!(check(&nested("{a:", "}", 65), 64).is_err());
        assert!(check(&nested("(", ")", 65), 64).is_err());
        assert!(check(&nested("{[(", ")]}", 22), 64).is_err());
        assert!(check(&nested("{[(", ")]}", 21), 64).is_ok());
        // Siblings do not add up.
        assert!(check(&"{ a { b } }".repeat(1000), 2).is_ok());
    }

    #[test]
    fn brackets_in_strings_and_comments_are_text() {
        let deep = "[".repeat(1000);
        assert!(check(&format!(r#"{{ a(t: "{deep}") }}"#), 3).is_ok());
        assert!(check(&format!(r#"{{ a(t: "\"{deep}") }}"#), 3).is_ok());
        assert!(check(&format!("{{ a(t: \"\"\"x\\\"\"\"{deep}\"\"\") }}"), 3).is_ok());
        assert!(check(&format!("# {deep}\n{{ a }}"), 3).is_ok());
        assert!(check(&format!(r#"{{"query": "{deep}"}}"#), 3).is_ok());
        // But a string that ends lets the brackets after it count.
        assert!(check(&format!(r#"{{ a(t: "x") b{deep} }}"#), 3).is_err());
        assert!(check(&format!("\"x\n{deep}"), 3).is_err());
    }

    #[test]
    fn unterminated_texts_end_the_scan() {
        assert!(check("\"", 1).is_ok());
        assert!(check("\"\"\"", 1).is_ok());
        assert!(check("\"\\", 1).is_ok());
        assert!(check("#", 1).is_ok());
        assert!(check("}}}]]]", 1).is_ok());
    }
}
