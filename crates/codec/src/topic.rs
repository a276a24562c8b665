//! Topic names, topic filters, matching and shared subscriptions (§4.7, §4.8.2).
//!
//! These rules live in the codec so that the broker's router and the firmware client's subscription
//! dispatch agree exactly, including the corner cases: `sport/#` matches `sport`, `+` matches an empty
//! level, and topics starting with `$` are not matched by filters starting with a wildcard.

/// Prefix of a shared subscription filter: `$share/<group>/<filter>`.
pub const SHARE_PREFIX: &str = "$share/";

/// A valid topic name: at least one character, no `+` or `#` (§4.7.3).
///
/// UTF-8 validity and the absence of U+0000 are guaranteed by `&str` from the decoder.
#[inline]
pub fn is_valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !crate::wire::has_wildcard(topic.as_bytes())
}

/// A valid topic filter: at least one character; `#` only as the whole last level; `+` only as a whole
/// level (§4.7.1).
pub fn is_valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        let ok = match level {
            "#" => last,
            "+" => true,
            l => !l.bytes().any(|b| b == b'+' || b == b'#'),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether `topic` (a valid topic name) matches `filter` (a valid, non-shared topic filter).
pub fn matches(filter: &str, topic: &str) -> bool {
    // §4.7.2: a filter starting with a wildcard does not match topics starting with `$`.
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Why a topic filter from SUBSCRIBE or UNSUBSCRIBE is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Empty, or wildcards in the wrong places.
    #[error("invalid topic filter")]
    InvalidFilter,
    /// `$share/` without a valid share name (non-empty, no `/`, `+` or `#`) and filter.
    #[error("invalid shared subscription")]
    InvalidShare,
}

/// A parsed subscription filter: plain, or shared among a group of subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicFilter<'a> {
    /// Every matching session gets each message.
    Plain(&'a str),
    /// One session of the group gets each message (§4.8.2).
    Shared {
        /// The share name.
        group: &'a str,
        /// The topic filter proper.
        filter: &'a str,
    },
}

impl<'a> TopicFilter<'a> {
    /// Parses and validates a filter as it appears in SUBSCRIBE.
    pub fn parse(s: &'a str) -> Result<Self, TopicError> {
        if let Some(rest) = s.strip_prefix(SHARE_PREFIX) {
            let (group, filter) = rest.split_once('/').ok_or(TopicError::InvalidShare)?;
            if group.is_empty() || group.bytes().any(|b| b == b'+' || b == b'#') {
                return Err(TopicError::InvalidShare);
            }
            if !is_valid_topic_filter(filter) {
                return Err(TopicError::InvalidShare);
            }
            return Ok(TopicFilter::Shared { group, filter });
        }
        if is_valid_topic_filter(s) {
            Ok(TopicFilter::Plain(s))
        } else {
            Err(TopicError::InvalidFilter)
        }
    }

    /// The filter that topics are matched against (without the `$share/<group>/` prefix).
    pub fn filter(&self) -> &'a str {
        match *self {
            TopicFilter::Plain(f) => f,
            TopicFilter::Shared { filter, .. } => filter,
        }
    }

    /// Whether a topic name matches.
    pub fn matches(&self, topic: &str) -> bool {
        matches(self.filter(), topic)
    }

    /// True when the filter contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.filter().bytes().any(|b| b == b'+' || b == b'#')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_topic_name("a/b"));
        assert!(is_valid_topic_name("/"));
        assert!(is_valid_topic_name("$SYS/x"));
        assert!(!is_valid_topic_name(""));
        assert!(!is_valid_topic_name("a/+"));
        assert!(!is_valid_topic_name("a/#"));
        assert!(!is_valid_topic_name("a+b"));
    }

    #[test]
    fn filters() {
        for ok in [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/",
            "a//b",
            "+/#",
            "sport/tennis/#",
        ] {
            assert!(is_valid_topic_filter(ok), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a+", "a/b+/c", "#/a", "sport/tennis#"] {
            assert!(!is_valid_topic_filter(bad), "{bad}");
        }
    }

    #[test]
    fn matching_follows_the_spec_examples() {
        // §4.7.1.2
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "a/b/c"));
        // §4.7.1.3
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        // §4.7.2
        assert!(!matches("#", "$SYS/broker"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        // plain
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(!matches("A/b", "a/b"));
    }

    #[test]
    fn shared_subscriptions() {
        assert_eq!(
            TopicFilter::parse("$share/g1/a/+"),
            Ok(TopicFilter::Shared {
                group: "g1",
                filter: "a/+"
            })
        );
        assert_eq!(
            TopicFilter::parse("$share/g1"),
            Err(TopicError::InvalidShare)
        );
        assert_eq!(
            TopicFilter::parse("$share//a"),
            Err(TopicError::InvalidShare)
        );
        assert_eq!(
            TopicFilter::parse("$share/g+/a"),
            Err(TopicError::InvalidShare)
        );
        assert_eq!(
            TopicFilter::parse("$share/g/"),
            Err(TopicError::InvalidShare)
        );
        assert_eq!(TopicFilter::parse("a/#/b"), Err(TopicError::InvalidFilter));
        assert_eq!(
            TopicFilter::parse("$SYS/#"),
            Ok(TopicFilter::Plain("$SYS/#"))
        );
        assert!(TopicFilter::parse("$share/g/x/#").unwrap().matches("x/y"));
    }
}
