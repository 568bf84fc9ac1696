//! Dotted product versions (`13.5.4`, `14.2.0`) compared numerically per
//! component, as the stand-in installer and `dss start` need to decide between
//! install, upgrade, no-op and refusal.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Maximum number of dotted components accepted in a version.
const MAX_COMPONENTS: usize = 8;

/// A dotted numeric version. Missing trailing components count as zero, so
/// `14.2` and `14.2.0` are equal; the original text is kept for display.
#[derive(Debug, Clone)]
pub struct Version {
    parts: Vec<u64>,
    text: String,
}

/// Why a version string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionError(String);

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for VersionError {}

impl Version {
    /// The version exactly as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn component(&self, i: usize) -> u64 {
        self.parts.get(i).copied().unwrap_or(0)
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.is_empty() {
            return Err(VersionError("empty version".to_string()));
        }
        let mut parts = Vec::new();
        for part in text.split('.') {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(VersionError(format!(
                    "invalid version {text:?}: expected dotted numbers such as 13.5.4"
                )));
            }
            let n = part.parse::<u64>().map_err(|_| {
                VersionError(format!("invalid version {text:?}: component too large"))
            })?;
            parts.push(n);
        }
        if parts.len() > MAX_COMPONENTS {
            return Err(VersionError(format!(
                "invalid version {text:?}: more than {MAX_COMPONENTS} components"
            )));
        }
        Ok(Self {
            parts,
            text: text.to_string(),
        })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.parts.len().max(other.parts.len());
        (0..n)
            .map(|i| self.component(i).cmp(&other.component(i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn components_compare_numerically_not_lexically() {
        assert!(v("13.10.0") > v("13.9.9"));
        assert!(v("14.2.0") > v("13.5.4"));
        assert!(v("2") < v("10"));
    }

    #[test]
    fn missing_trailing_components_count_as_zero() {
        assert_eq!(v("14.2"), v("14.2.0"));
        assert!(v("14.2.1") > v("14.2"));
    }

    #[test]
    fn equal_versions_are_equal() {
        assert_eq!(v("13.5.4").cmp(&v("13.5.4")), Ordering::Equal);
    }

    #[test]
    fn leading_zeros_do_not_matter() {
        assert_eq!(v("13.05.4"), v("13.5.4"));
    }

    #[test]
    fn surrounding_whitespace_is_ignored_and_text_is_kept() {
        let x = v(" 13.5.4\n");
        assert_eq!(x.as_str(), "13.5.4");
        assert_eq!(x.to_string(), "13.5.4");
    }

    #[test]
    fn malformed_versions_are_rejected() {
        for bad in [
            "",
            "13..4",
            ".1",
            "1.",
            "13.5.x",
            "v13",
            "-1",
            "+1",
            "1.2.3.4.5.6.7.8.9",
            "99999999999999999999999",
        ] {
            assert!(
                bad.parse::<Version>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
