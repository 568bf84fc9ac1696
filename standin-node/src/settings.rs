//! Parsers for the small text files of a stand-in data dir:
//! `bin/env-site.sh` (shell variable assignments), `config/dip.properties`
//! (`key=value` lines) and `install.ini` (`[section]` + `key = value`).
//!
//! `env-site.sh` is not run by a shell: only `export KEY="VALUE"`,
//! `export KEY='VALUE'` and `KEY=VALUE` lines are understood, values are taken
//! literally after unquoting (no `$VAR` expansion), other lines are ignored.

use std::collections::BTreeMap;

/// Parses the variable assignments of an `env-site.sh` file. Later
/// assignments of the same key win.
pub fn parse_env_site(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let rest = match line.strip_prefix("export") {
            Some(r) if r.starts_with(char::is_whitespace) => r.trim_start(),
            _ => line,
        };
        let Some((key, raw)) = rest.split_once('=') else {
            continue;
        };
        if !is_env_name(key) {
            continue;
        }
        if let Some(value) = parse_shell_word(raw) {
            vars.insert(key.to_string(), value);
        }
    }
    vars
}

/// True for a shell variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Unquotes one shell word (a mix of bare, `"double"` and `'single'` quoted
/// parts). Anything after the word must be empty or a `#` comment; otherwise,
/// or on an unterminated quote, the line is not understood and `None` is
/// returned.
fn parse_shell_word(raw: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                let rest = chars.as_str().trim_start();
                return (rest.is_empty() || rest.starts_with('#')).then_some(out);
            }
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        c @ ('"' | '\\' | '$' | '`') => out.push(c),
                        c => {
                            out.push('\\');
                            out.push(c);
                        }
                    },
                    c => out.push(c),
                }
            },
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    c => out.push(c),
                }
            },
            '\\' => {
                if let Some(c) = chars.next() {
                    out.push(c);
                }
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// Parses `key=value` lines (Java-properties style, `#` and `!` comments,
/// surrounding whitespace trimmed). Lines without `=` are ignored.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut props = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let k = k.trim();
            if !k.is_empty() {
                props.insert(k.to_string(), v.trim().to_string());
            }
        }
    }
    props
}

/// Looks up `key` in `[section]` of an INI text (`key = value` lines,
/// `#`/`;` comments). The last occurrence wins.
pub fn ini_get(text: &str, section: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_string();
            continue;
        }
        if current != section {
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            found = Some(v.trim().to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_site_reads_export_with_double_quotes() {
        let vars = parse_env_site("export JAVA_OPTS=\"-Xmx2g -Dx=1\"\n");
        assert_eq!(vars["JAVA_OPTS"], "-Xmx2g -Dx=1");
    }

    #[test]
    fn env_site_reads_bare_and_single_quoted_assignments() {
        let vars = parse_env_site("A=1\nexport B='x $HOME y'\n  C=plain # comment\n");
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "x $HOME y");
        assert_eq!(vars["C"], "plain");
    }

    #[test]
    fn env_site_unescapes_double_quoted_specials_only() {
        let vars = parse_env_site(r#"export X="a\"b\\c\$d\n""#);
        assert_eq!(vars["X"], r#"a"b\c$d\n"#);
    }

    #[test]
    fn env_site_keeps_dollar_references_literally() {
        let vars = parse_env_site("export PATH=\"$PATH:/opt/bin\"\n");
        assert_eq!(vars["PATH"], "$PATH:/opt/bin");
    }

    #[test]
    fn env_site_ignores_comments_commands_and_malformed_lines() {
        let text = "# header\n\necho hello\nexport ONLY_NAME\nBAD KEY=1\n1X=2\nexport Q=\"unterminated\nK=v extra\nexporter=3\n";
        let vars = parse_env_site(text);
        assert_eq!(vars.len(), 1, "{vars:?}");
        assert_eq!(vars["exporter"], "3");
    }

    #[test]
    fn env_site_later_assignment_wins_and_empty_values_are_kept() {
        let vars = parse_env_site("A=1\nA=2\nexport E=\nexport F=\"\"\n");
        assert_eq!(vars["A"], "2");
        assert_eq!(vars["E"], "");
        assert_eq!(vars["F"], "");
    }

    #[test]
    fn env_names_follow_shell_rules() {
        assert!(is_env_name("_A1"));
        assert!(is_env_name("dku_x"));
        assert!(!is_env_name(""));
        assert!(!is_env_name("1A"));
        assert!(!is_env_name("A-B"));
    }

    #[test]
    fn properties_are_trimmed_key_value_pairs() {
        let props = parse_properties("# c\n! c\nlogging.level = DEBUG\nx=a=b\nnoequals\n =v\n");
        assert_eq!(props.len(), 2);
        assert_eq!(props["logging.level"], "DEBUG");
        assert_eq!(props["x"], "a=b");
    }

    #[test]
    fn ini_lookup_is_section_aware() {
        let ini = "[other]\nport = 1\n[general]\nnodetype = design\nport = 10000\n";
        assert_eq!(ini_get(ini, "general", "port").as_deref(), Some("10000"));
        assert_eq!(
            ini_get(ini, "general", "nodetype").as_deref(),
            Some("design")
        );
        assert_eq!(ini_get(ini, "other", "port").as_deref(), Some("1"));
        assert_eq!(ini_get(ini, "general", "missing"), None);
    }
}
