//! Kafka's JAAS configuration syntax, as `sasl.jaas.config` takes it:
//! `org.apache.kafka.common.security.plain.PlainLoginModule required username="admin"
//! password="admin-secret" user_alice="alice-secret";` — one or more entries, each a login
//! module class, a control flag and `name=value` options (values quoted, with `\` escapes,
//! or bare), ended by `;`.

/// One login module entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JaasEntry {
    /// The login module's class name.
    pub module: String,
    /// `required`, `requisite`, `sufficient` or `optional`.
    pub flag: String,
    /// The options, in order.
    pub options: Vec<(String, String)>,
}

impl JaasEntry {
    /// The option `name`.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a JAAS configuration; the error says what was expected where.
pub fn parse(text: &str) -> Result<Vec<JaasEntry>, String> {
    let mut p = Parser {
        chars: text.chars().collect(),
        at: 0,
    };
    let mut entries = Vec::new();
    loop {
        p.skip_space();
        if p.at >= p.chars.len() {
            break;
        }
        let module = p
            .word()
            .ok_or_else(|| p.expected("a login module class name"))?;
        p.skip_space();
        let flag = p.word().ok_or_else(|| p.expected("a control flag"))?;
        if !matches!(
            flag.to_ascii_lowercase().as_str(),
            "required" | "requisite" | "sufficient" | "optional"
        ) {
            return Err(format!(
                "{flag:?} is not a control flag (required, requisite, sufficient, optional)"
            ));
        }
        let mut options = Vec::new();
        loop {
            p.skip_space();
            match p.peek() {
                Some(';') => {
                    p.at += 1;
                    break;
                }
                None => return Err(p.expected("';' ending the login module entry")),
                _ => {}
            }
            let name = p.word().ok_or_else(|| p.expected("an option name"))?;
            p.skip_space();
            if p.peek() != Some('=') {
                return Err(p.expected(&format!("'=' after option {name}")));
            }
            p.at += 1;
            p.skip_space();
            let value = match p.peek() {
                Some('"') => p.quoted()?,
                _ => p
                    .word()
                    .ok_or_else(|| p.expected(&format!("a value for {name}")))?,
            };
            options.push((name, value));
        }
        entries.push(JaasEntry {
            module,
            flag: flag.to_ascii_lowercase(),
            options,
        });
    }
    if entries.is_empty() {
        return Err("no login module entry".into());
    }
    Ok(entries)
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    /// A run of characters up to whitespace, `=`, `;` or a quote.
    fn word(&mut self) -> Option<String> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| !c.is_whitespace() && !matches!(c, '=' | ';' | '"'))
        {
            self.at += 1;
        }
        (self.at > start).then(|| self.chars[start..self.at].iter().collect())
    }

    fn quoted(&mut self) -> Result<String, String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err("unterminated quoted value".into()),
                Some('"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    self.at += 1;
                    let c = self.peek().ok_or("unterminated quoted value")?;
                    out.push(c);
                    self.at += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
    }

    fn expected(&self, what: &str) -> String {
        format!("expected {what} at character {}", self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafkas_plain_example_parses() {
        let e = parse(
            "org.apache.kafka.common.security.plain.PlainLoginModule required \n username=\"admin\"\n password=\"admin-secret\"\n user_admin=\"admin-secret\"\n user_alice=\"alice\\\"s;secret\" debug=true;",
        )
        .expect("parses");
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].module,
            "org.apache.kafka.common.security.plain.PlainLoginModule"
        );
        assert_eq!(e[0].flag, "required");
        assert_eq!(e[0].option("username"), Some("admin"));
        assert_eq!(e[0].option("user_alice"), Some("alice\"s;secret"));
        assert_eq!(e[0].option("debug"), Some("true"));
        assert_eq!(e[0].option("user_bob"), None);
    }

    #[test]
    fn several_entries_and_malformed_ones() {
        let e = parse("a.B required; c.D optional x=\"1\";").expect("two");
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].options, vec![("x".to_string(), "1".to_string())]);
        for bad in [
            "",
            "a.B",
            "a.B required",
            "a.B always;",
            "a.B required x;",
            "a.B required x=\"open;",
            "a.B required =1;",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
