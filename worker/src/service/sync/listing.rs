//! Whether a paginated listing is complete. A sync deactivates whoever was not listed, so a
//! listing that ended early would lock people out: any sign that the pages did not cover the
//! directory makes the listing **incomplete**, and the sync fails before it deactivates anyone.
//!
//! Signs of an incomplete listing: a page with no items that still points to a next page, a next
//! page token already seen in this listing (a loop), more pages than the configured bound, and a
//! final count that disagrees with the API's own `total_size`.

use super::model::Page;
use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Incomplete {
    #[error("page {page} of the {what} listing has no items but points to a next page")]
    EmptyPageWithToken { what: &'static str, page: usize },
    #[error("page {page} of the {what} listing repeats a page token seen before (a loop)")]
    RepeatedToken { what: &'static str, page: usize },
    #[error("the {what} listing goes on past {max} pages (SYNC_MAX_PAGES)")]
    TooManyPages { what: &'static str, max: usize },
    #[error("the {what} listing returned {listed} items, but the API reports a total of {total}")]
    CountMismatch {
        what: &'static str,
        listed: usize,
        total: i64,
    },
}

/// Follows one listing page by page.
#[derive(Debug)]
pub struct Listing {
    what: &'static str,
    max_pages: usize,
    pages: usize,
    listed: usize,
    tokens: HashSet<String>,
    /// What to fetch next: `Some(None)` the first page, `Some(Some(token))` the page of that
    /// token, `None` nothing (the listing is complete).
    next: Option<Option<String>>,
}

impl Listing {
    pub fn new(what: &'static str, max_pages: usize) -> Self {
        Self {
            what,
            max_pages: max_pages.max(1),
            pages: 0,
            listed: 0,
            tokens: HashSet::new(),
            next: Some(None),
        }
    }

    /// The one page loop's question: which page to fetch next (`Some(None)`: the first one),
    /// or `None` once the listing is complete. Used as
    /// `while let Some(token) = listing.next_token() { fetch; handle; listing.take(&page)? }`.
    pub fn next_token(&self) -> Option<Option<String>> {
        self.next.clone()
    }

    /// Takes a fetched page: where the listing goes next, or why it cannot be trusted.
    pub fn take<T>(&mut self, page: &Page<T>) -> Result<(), Incomplete> {
        let next = self.page(
            page.items.len(),
            page.next_page_token.as_deref(),
            page.total_size,
        )?;
        self.next = next.map(Some);
        Ok(())
    }

    /// Takes one page (its item count, next page token and reported total). `Ok(Some(token))`:
    /// fetch that page next; `Ok(None)`: the listing is complete.
    pub fn page(
        &mut self,
        items: usize,
        next_page_token: Option<&str>,
        total_size: Option<i64>,
    ) -> Result<Option<String>, Incomplete> {
        self.pages += 1;
        self.listed += items;
        let what = self.what;
        let page = self.pages;
        match next_page_token.filter(|t| !t.is_empty()) {
            Some(token) => {
                if items == 0 {
                    return Err(Incomplete::EmptyPageWithToken { what, page });
                }
                if !self.tokens.insert(token.to_owned()) {
                    return Err(Incomplete::RepeatedToken { what, page });
                }
                if self.pages >= self.max_pages {
                    return Err(Incomplete::TooManyPages {
                        what,
                        max: self.max_pages,
                    });
                }
                Ok(Some(token.to_owned()))
            }
            None => match total_size {
                Some(total) if usize::try_from(total).ok() != Some(self.listed) => {
                    Err(Incomplete::CountMismatch {
                        what,
                        listed: self.listed,
                        total,
                    })
                }
                _ => Ok(None),
            },
        }
    }

    pub fn pages(&self) -> usize {
        self.pages
    }
}

#[cfg(test)]
mod tests {
    use super::{Incomplete, Listing};

    #[test]
    fn a_complete_listing_ends_on_a_missing_or_empty_token() {
        let mut l = Listing::new("users", 10);
        assert_eq!(l.page(30, Some("a"), Some(45)), Ok(Some("a".into())));
        assert_eq!(l.page(15, Some(""), Some(45)), Ok(None));
        let mut l = Listing::new("users", 10);
        assert_eq!(
            l.page(3, None, None),
            Ok(None),
            "no total reported: trusted"
        );
        let mut l = Listing::new("users", 10);
        assert_eq!(
            l.page(0, None, Some(0)),
            Ok(None),
            "an empty directory is complete"
        );
        assert_eq!(l.pages(), 1);
    }

    #[test]
    fn an_empty_page_that_points_on_is_incomplete() {
        let mut l = Listing::new("users", 10);
        l.page(30, Some("a"), Some(90)).unwrap();
        assert_eq!(
            l.page(0, Some("b"), Some(90)),
            Err(Incomplete::EmptyPageWithToken {
                what: "users",
                page: 2
            })
        );
    }

    #[test]
    fn a_repeated_token_is_a_loop() {
        let mut l = Listing::new("users", 10);
        l.page(30, Some("a"), None).unwrap();
        l.page(30, Some("b"), None).unwrap();
        assert_eq!(
            l.page(30, Some("a"), None),
            Err(Incomplete::RepeatedToken {
                what: "users",
                page: 3
            })
        );
    }

    #[test]
    fn pages_are_bounded() {
        let mut l = Listing::new("groups", 3);
        l.page(1, Some("a"), None).unwrap();
        l.page(1, Some("b"), None).unwrap();
        assert_eq!(
            l.page(1, Some("c"), None),
            Err(Incomplete::TooManyPages {
                what: "groups",
                max: 3
            })
        );
        let mut l = Listing::new("groups", 3);
        l.page(1, Some("a"), None).unwrap();
        l.page(1, Some("b"), None).unwrap();
        assert_eq!(
            l.page(1, None, None),
            Ok(None),
            "the last allowed page ends it"
        );
    }

    #[test]
    fn the_count_must_match_the_reported_total() {
        let mut l = Listing::new("users", 10);
        l.page(30, Some("a"), Some(61)).unwrap();
        assert_eq!(
            l.page(30, None, Some(61)),
            Err(Incomplete::CountMismatch {
                what: "users",
                listed: 60,
                total: 61
            })
        );
        let mut l = Listing::new("users", 10);
        assert!(matches!(
            l.page(2, None, Some(-1)),
            Err(Incomplete::CountMismatch { .. })
        ));
    }

    #[test]
    fn the_page_loop_asks_first_then_each_token_then_stops() {
        let page = |items: usize, next: Option<&str>| super::Page::<u8> {
            items: vec![0; items],
            next_page_token: next.map(str::to_owned),
            total_size: None,
        };
        let mut l = Listing::new("users", 10);
        assert_eq!(l.next_token(), Some(None));
        l.take(&page(2, Some("t1"))).unwrap();
        assert_eq!(l.next_token(), Some(Some("t1".to_owned())));
        l.take(&page(1, None)).unwrap();
        assert_eq!(l.next_token(), None);
        let mut bad = Listing::new("users", 10);
        assert!(bad.take(&page(0, Some("t"))).is_err());
    }
}
