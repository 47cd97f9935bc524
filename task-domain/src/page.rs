/// A forward page request: at most `first` items after the item whose key is `after`.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub first: usize,
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
    pub(crate) fn from_overfetch(mut items: Vec<T>, first: usize) -> Self {
        let has_next = items.len() > first;
        items.truncate(first);
        Self { items, has_next }
    }
}
