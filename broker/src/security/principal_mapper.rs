//! `SslPrincipalMapper`: `ssl.principal.mapping.rules`, from a client certificate's DN to a
//! principal name, with Kafka's syntax and semantics: a comma-separated list of `DEFAULT`
//! (the DN itself) and `RULE:pattern/replacement/[LU]` (the first rule whose pattern matches
//! the whole DN replaces it, then lower- or upper-cases the result). No rule matching fails
//! the authentication.

use regex::Regex;

/// The splitter and parser are Kafka's own expressions, so rules split exactly as there.
const RULE_PATTERN: &str = r"(DEFAULT)|RULE:((\\.|[^\\/])*)/((\\.|[^\\/])*)/([LU]?).*?|(.*?)";

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        /// The pattern, anchored: Kafka requires it to match the whole DN.
        whole: Regex,
        pattern: Regex,
        /// The replacement in the regex crate's syntax.
        replacement: String,
        case: Case,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

/// Parsed `ssl.principal.mapping.rules`.
#[derive(Debug, Clone)]
pub struct SslPrincipalMapper {
    rules: Vec<Rule>,
}

impl SslPrincipalMapper {
    /// Parses `rules`; the error says which rule is wrong.
    pub fn parse(rules: &str) -> Result<SslPrincipalMapper, String> {
        let splitter =
            Regex::new(&format!(r"\s*({RULE_PATTERN})\s*(,\s*|$)")).map_err(|e| e.to_string())?;
        let parser = Regex::new(&format!("^(?:{RULE_PATTERN})")).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let text = rules.trim();
        let mut at = 0;
        // Like Java's Matcher.find loop: an empty match advances one character.
        while at <= text.len() {
            let Some(c) = splitter.captures_at(text, at) else {
                break;
            };
            let whole = c.get(0).map_or(at..at, |m| m.range());
            let rule = c.get(1).map_or("", |m| m.as_str());
            at = if whole.is_empty() {
                whole.end + text[whole.end..].chars().next().map_or(1, char::len_utf8)
            } else {
                whole.end
            };
            let p = parser
                .captures(rule)
                .ok_or_else(|| format!("Invalid rule: {rule}"))?;
            let end = p.get(0).map_or(0, |m| m.end());
            if end != rule.len() {
                return Err(format!(
                    "Invalid rule: `{rule}`, unmatched substring: `{}`",
                    &rule[end..]
                ));
            }
            if p.get(1).is_some() {
                out.push(Rule::Default);
            } else if let (Some(pattern), Some(replacement)) = (p.get(2), p.get(4)) {
                let pattern_text = pattern.as_str().replace("\\/", "/");
                let compile =
                    |re: &str| Regex::new(re).map_err(|e| format!("Invalid rule: {rule}: {e}"));
                let pattern_re = compile(&pattern_text)?;
                let groups = pattern_re.captures_len() - 1;
                out.push(Rule::Replace {
                    whole: compile(&format!("^(?:{pattern_text})$"))?,
                    pattern: pattern_re,
                    replacement: java_replacement(replacement.as_str(), groups),
                    case: match p.get(6).map(|m| m.as_str()) {
                        Some("L") => Case::Lower,
                        Some("U") => Case::Upper,
                        _ => Case::Keep,
                    },
                });
            }
        }
        Ok(SslPrincipalMapper { rules: out })
    }

    /// The principal name for `dn`, or an error when no rule applies.
    pub fn name(&self, dn: &str) -> Result<String, String> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Ok(dn.to_string()),
                Rule::Replace {
                    whole,
                    pattern,
                    replacement,
                    case,
                } => {
                    if !whole.is_match(dn) {
                        continue;
                    }
                    let name = pattern.replace_all(dn, replacement.as_str()).into_owned();
                    return Ok(match case {
                        Case::Keep => name,
                        Case::Lower => name.to_lowercase(),
                        Case::Upper => name.to_uppercase(),
                    });
                }
            }
        }
        Err(format!("No rules apply to {dn}"))
    }
}

/// A Java `Matcher.replaceAll` replacement in the regex crate's syntax: `$n` takes as many
/// digits as name an existing group (a reference past the last group stays literal, as
/// Kafka's mapper makes it), `\c` is the literal `c`.
fn java_replacement(java: &str, groups: usize) -> String {
    let mut out = String::new();
    let chars: Vec<char> = java.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                push_literal(&mut out, chars[i + 1]);
                i += 2;
            }
            '$' if i + 1 < chars.len() && chars[i + 1].is_ascii_digit() => {
                let mut n = chars[i + 1].to_digit(10).unwrap_or(0) as usize;
                if n > groups || n == 0 && groups == 0 {
                    out.push_str("$$");
                    i += 1;
                    continue;
                }
                let mut j = i + 2;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    let more = n * 10 + chars[j].to_digit(10).unwrap_or(0) as usize;
                    if more > groups {
                        break;
                    }
                    n = more;
                    j += 1;
                }
                out.push_str(&format!("${{{n}}}"));
                i = j;
            }
            c => {
                push_literal(&mut out, c);
                i += 1;
            }
        }
    }
    out
}

fn push_literal(out: &mut String, c: char) {
    if c == '$' {
        out.push_str("$$");
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(rules: &str, dn: &str) -> Result<String, String> {
        SslPrincipalMapper::parse(rules)
            .expect("rules parse")
            .name(dn)
    }

    #[test]
    fn default_keeps_the_dn() {
        assert_eq!(
            map("DEFAULT", "CN=alice,O=Sluice").as_deref(),
            Ok("CN=alice,O=Sluice")
        );
    }

    #[test]
    fn rules_apply_in_order_with_case_flags_as_kafkas_tests_show() {
        let rules = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,\
                     RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,\
                     RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U,\
                     RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U,\
                     DEFAULT";
        let cases = [
            ("CN=Duke,OU=ServiceUsers,O=Org,C=US", "Duke"),
            ("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US", "duke@sme"),
            ("cn=duke,ou=sme,dc=mycp,dc=com", "DUKE@SME"),
            ("cN=duke,OU=JavaSoft,O=Sun Microsystems", "DUKE"),
            (
                "OU=JavaSoft,O=Sun Microsystems,C=US",
                "OU=JavaSoft,O=Sun Microsystems,C=US",
            ),
        ];
        for (dn, name) in cases {
            assert_eq!(map(rules, dn).as_deref(), Ok(name), "{dn}");
        }
    }

    #[test]
    fn no_matching_rule_fails_and_bad_rules_are_refused() {
        let e = map("RULE:^CN=(.*)$/$1/", "O=Sluice").expect_err("no match");
        assert!(e.contains("No rules apply to O=Sluice"), "{e}");
        for bad in [
            "DEFAULT/L",
            "RULE:/",
            "RULE:^CN=(.*?)$/$1/Q",
            "DEFAULT,RULE:x",
            "RULE:(/x/",
        ] {
            assert!(SslPrincipalMapper::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn escapes_and_references_past_the_last_group_stay_literal() {
        assert_eq!(
            map(r"RULE:^CN=(.*?)\/x$/$1\/$2\$/", "CN=a/x").as_deref(),
            Ok("a/$2$")
        );
        assert_eq!(
            map(
                "RULE:^CN=(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)$/$11-$12/",
                "CN=abcdefghijk"
            )
            .as_deref(),
            Ok("k-a2")
        );
    }
}
