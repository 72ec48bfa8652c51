//! The authorizer's settings, Kafka's keys and defaults. Here rather than in `security`, so
//! that the configuration depends on no engine.

/// The authorizer class names Sluice accepts: KRaft's and ZooKeeper-mode's, both meaning
/// Kafka's ACL semantics over the ACLs in the metadata quorum.
pub const AUTHORIZER_CLASSES: &[&str] = &[
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

/// `authorizer.class.name`, `super.users`, `allow.everyone.if.no.acl.found`.
#[derive(Debug, Clone, Default)]
pub struct AuthorizerConfig {
    /// Whether `authorizer.class.name` names an authorizer. Off (the default, as in Kafka),
    /// every request is allowed and the ACL APIs answer SECURITY_DISABLED.
    pub enabled: bool,
    /// `super.users`: principals (`User:admin`) allowed everything, whatever the ACLs say.
    pub super_users: Vec<String>,
    /// `allow.everyone.if.no.acl.found` (false): whether a resource no ACL names is open
    /// to all.
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerConfig {
    /// Applies `key`, if it is one of the authorizer's; `Ok(false)` when it is not.
    pub(super) fn set(&mut self, key: &str, v: &str) -> Result<bool, String> {
        match key {
            "authorizer.class.name" => {
                self.enabled = match v {
                    "" => false,
                    c if AUTHORIZER_CLASSES.contains(&c) => true,
                    _ => {
                        return Err(format!(
                            "unknown authorizer; expected one of {}",
                            AUTHORIZER_CLASSES.join(", ")
                        ))
                    }
                }
            }
            // Kafka splits on `;` (a principal name may hold commas: a certificate's DN).
            "super.users" => {
                self.super_users = v
                    .split(';')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect()
            }
            "allow.everyone.if.no.acl.found" => {
                self.allow_everyone_if_no_acl_found = match v {
                    "true" => true,
                    "false" => false,
                    _ => return Err("expected true or false".into()),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_as_kafka_reads_them() {
        let mut c = AuthorizerConfig::default();
        assert!(!c.enabled && !c.allow_everyone_if_no_acl_found);
        for class in AUTHORIZER_CLASSES {
            assert_eq!(c.set("authorizer.class.name", class), Ok(true));
            assert!(c.enabled);
        }
        assert_eq!(c.set("authorizer.class.name", ""), Ok(true));
        assert!(!c.enabled);
        assert!(c.set("authorizer.class.name", "com.example.Mine").is_err());
        assert_eq!(
            c.set("super.users", "User:admin; User:CN=a,O=b;;"),
            Ok(true)
        );
        assert_eq!(c.super_users, ["User:admin", "User:CN=a,O=b"]);
        assert_eq!(c.set("allow.everyone.if.no.acl.found", "true"), Ok(true));
        assert!(c.allow_everyone_if_no_acl_found);
        assert!(c.set("allow.everyone.if.no.acl.found", "yes").is_err());
        assert_eq!(c.set("num.partitions", "3"), Ok(false));
    }
}
