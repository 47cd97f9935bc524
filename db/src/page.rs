//! Forward pages of a list in a stable order: what every list of both domains returns, so the
//! API builds its connections one way.

/// At most `first` items after the item whose cursor is `after`.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub first: usize,
    /// A cursor the list handed out (the key of an item, as text), or `None` from the start.
    pub after: Option<String>,
}

/// One page of items in a stable order, and whether more follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next: bool,
}

impl<T> Page<T> {
    /// Builds a page from a query that asked for one item more than the page holds.
    pub fn from_overfetch(mut items: Vec<T>, first: usize) -> Self {
        let has_next = items.len() > first;
        items.truncate(first);
        Self { items, has_next }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            has_next: self.has_next,
        }
    }
}
