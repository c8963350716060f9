//! Listing scripts a page at a time: tag filters (`a:yes,b:no`), a name
//! search, and name cursors. Pure: the operations layer reads the records,
//! this module selects the page.

use serde::Deserialize;

use super::Invalid;
use super::metadata::validate_tag;
use super::records::ScriptRecord;

/// Largest page; also the default.
pub const MAX_PAGE: usize = 1000;

/// What to list: `?tags=a:yes,b:no&search=shop&limit=50&cursor=<name>`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `a:yes,b:no` filter (a bare tag means `:yes`).
    #[serde(default)]
    pub tags: Option<String>,
    /// Only scripts whose name contains this (case-insensitive).
    #[serde(default)]
    pub search: Option<String>,
    /// Page size (1–1000).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Continue after this script name.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// A parsed `tags=` filter.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TagFilter {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl TagFilter {
    /// Parses `a:yes,b:no,c` (bare tags mean `:yes`).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let mut filter = TagFilter::default();
        for item in text.split(',').filter(|s| !s.is_empty()) {
            let (tag, mode) = match item.rsplit_once(':') {
                Some((tag, mode)) => (tag, mode),
                None => (item, "yes"),
            };
            validate_tag(tag)?;
            match mode {
                "yes" => filter.include.push(tag.to_owned()),
                "no" => filter.exclude.push(tag.to_owned()),
                other => {
                    return Err(
                        format!("tag filter {item:?}: expected :yes or :no, got :{other}").into(),
                    );
                }
            }
        }
        Ok(filter)
    }

    /// Whether the filter selects nothing in particular.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Whether `tags` pass the filter.
    pub fn matches(&self, tags: &[String]) -> bool {
        self.include.iter().all(|t| tags.contains(t))
            && !self.exclude.iter().any(|t| tags.contains(t))
    }
}

/// One page of scripts, and the cursor of the next (`None` on the last).
pub type Page = (Vec<ScriptRecord>, Option<String>);

impl ListQuery {
    /// The tag filter, parsed.
    pub fn filter(&self) -> Result<TagFilter, Invalid> {
        TagFilter::parse(self.tags.as_deref().unwrap_or(""))
    }

    /// Selects this query's page of `scripts` (sorted by name).
    pub fn page(&self, scripts: Vec<ScriptRecord>) -> Result<Page, Invalid> {
        let filter = self.filter()?;
        let limit = self.limit.unwrap_or(MAX_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(Invalid(format!(
                "limit must be between 1 and {MAX_PAGE}, got {limit}"
            )));
        }
        let search = self.search.as_deref().map(str::to_ascii_lowercase);
        let mut selected = scripts
            .into_iter()
            .filter(|s| self.cursor.as_deref().is_none_or(|c| s.name.as_str() > c))
            .filter(|s| filter.matches(&s.tags))
            .filter(|s| {
                search
                    .as_deref()
                    .is_none_or(|q| s.name.as_str().contains(q))
            });
        let page: Vec<ScriptRecord> = selected.by_ref().take(limit).collect();
        let more = selected.next().is_some();
        let cursor = match more {
            true => page.last().map(|s| s.name.to_string()),
            false => None,
        };
        Ok((page, cursor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_match() {
        let f = TagFilter::parse("pro:yes,beta:no,eu").unwrap();
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(f.matches(&tags(&["pro", "eu"])));
        assert!(!f.matches(&tags(&["pro", "eu", "beta"])));
        assert!(!f.matches(&tags(&["pro"])));
        assert!(TagFilter::parse("").unwrap().is_empty());
        assert!(TagFilter::parse("a:maybe").unwrap_err().contains(":maybe"));
        assert!(TagFilter::parse("a&b:yes").is_err());
    }
}
