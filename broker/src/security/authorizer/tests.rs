//! One row per rule of Kafka's StandardAuthorizer.

use sluice_replication::acl::{
    AclBinding, AclOperation as Op, AclPermissionType as Perm, PatternType as Pat,
    ResourceType as Res,
};

use super::{authorize, authorize_any, Action};
use crate::config::AuthorizerConfig;
use crate::security::{KafkaPrincipal, Session};

fn acl(
    rt: Res,
    pat: Pat,
    name: &str,
    principal: &str,
    host: &str,
    op: Op,
    perm: Perm,
) -> AclBinding {
    AclBinding {
        resource_type: rt,
        resource_name: name.into(),
        pattern_type: pat,
        principal: principal.into(),
        host: host.into(),
        operation: op,
        permission: perm,
    }
}

/// `User:alice` may do `op` on the topic `name`, from anywhere.
fn topic(pat: Pat, name: &str, op: Op, perm: Perm) -> AclBinding {
    acl(Res::Topic, pat, name, "User:alice", "*", op, perm)
}

fn enabled() -> AuthorizerConfig {
    AuthorizerConfig {
        enabled: true,
        ..AuthorizerConfig::default()
    }
}

fn session(user: &str, host: &str) -> Session {
    Session {
        principal: KafkaPrincipal::user(user),
        listener: "PLAINTEXT",
        client_host: host.into(),
    }
}

struct Case {
    rule: &'static str,
    config: AuthorizerConfig,
    acls: Vec<AclBinding>,
    user: &'static str,
    host: &'static str,
    resource: (Res, &'static str),
    op: Op,
    allowed: bool,
}

fn case(rule: &'static str, acls: Vec<AclBinding>, op: Op, allowed: bool) -> Case {
    Case {
        rule,
        config: enabled(),
        acls,
        user: "alice",
        host: "/10.0.0.7",
        resource: (Res::Topic, "orders"),
        op,
        allowed,
    }
}

#[test]
fn each_rule_of_the_standard_authorizer() {
    use Op::*;
    use Pat::*;
    use Perm::*;
    let cases = vec![
        Case {
            config: AuthorizerConfig::default(),
            ..case("no authorizer allows everything", vec![], Write, true)
        },
        Case {
            config: AuthorizerConfig::default(),
            ..case(
                "no authorizer ignores even a DENY",
                vec![topic(Literal, "orders", Write, Deny)],
                Write,
                true,
            )
        },
        case("no ACL and the default refuses", vec![], Read, false),
        Case {
            config: AuthorizerConfig {
                allow_everyone_if_no_acl_found: true,
                ..enabled()
            },
            ..case(
                "no ACL with allow.everyone.if.no.acl.found allows",
                vec![],
                Read,
                true,
            )
        },
        Case {
            config: AuthorizerConfig {
                allow_everyone_if_no_acl_found: true,
                ..enabled()
            },
            ..case(
                "allow.everyone does not open a resource other principals' ACLs name",
                vec![acl(
                    Res::Topic,
                    Literal,
                    "orders",
                    "User:bob",
                    "*",
                    Read,
                    Allow,
                )],
                Read,
                false,
            )
        },
        Case {
            config: AuthorizerConfig {
                allow_everyone_if_no_acl_found: true,
                ..enabled()
            },
            ..case(
                "allow.everyone applies to a resource only other resources' ACLs name",
                vec![topic(Literal, "payments", Read, Deny)],
                Read,
                true,
            )
        },
        case(
            "a literal ALLOW allows",
            vec![topic(Literal, "orders", Read, Allow)],
            Read,
            true,
        ),
        case(
            "a literal ACL of another name does not apply",
            vec![topic(Literal, "orders-2", Read, Allow)],
            Read,
            false,
        ),
        case(
            "a literal ACL whose name is a prefix does not apply",
            vec![topic(Literal, "ord", Read, Allow)],
            Read,
            false,
        ),
        case(
            "a prefixed ALLOW applies to names it starts",
            vec![topic(Prefixed, "ord", Read, Allow)],
            Read,
            true,
        ),
        case(
            "a prefixed ACL that is not a prefix does not apply",
            vec![topic(Prefixed, "orders-", Read, Allow)],
            Read,
            false,
        ),
        case(
            "a prefixed ACL equal to the name applies",
            vec![topic(Prefixed, "orders", Read, Allow)],
            Read,
            true,
        ),
        case(
            "the literal wildcard resource applies to every name",
            vec![topic(Literal, "*", Read, Allow)],
            Read,
            true,
        ),
        case(
            "an ACL on another resource type does not apply",
            vec![acl(
                Res::Group,
                Literal,
                "orders",
                "User:alice",
                "*",
                Read,
                Allow,
            )],
            Read,
            false,
        ),
        case(
            "DENY wins over ALLOW",
            vec![
                topic(Literal, "orders", Read, Allow),
                topic(Literal, "orders", Read, Deny),
            ],
            Read,
            false,
        ),
        case(
            "a prefixed DENY wins over a literal ALLOW",
            vec![
                topic(Literal, "orders", Write, Allow),
                topic(Prefixed, "or", Write, Deny),
            ],
            Write,
            false,
        ),
        case(
            "a wildcard DENY wins over a literal ALLOW",
            vec![
                topic(Literal, "orders", Write, Allow),
                topic(Literal, "*", All, Deny),
            ],
            Write,
            false,
        ),
        case(
            "a DENY of another operation does not refuse",
            vec![
                topic(Literal, "orders", Read, Allow),
                topic(Literal, "orders", Write, Deny),
            ],
            Read,
            true,
        ),
        case(
            "ALLOW ALL allows every operation",
            vec![topic(Literal, "orders", All, Allow)],
            Delete,
            true,
        ),
        case(
            "DENY ALL denies every operation",
            vec![
                topic(Literal, "orders", Read, Allow),
                topic(Literal, "orders", All, Deny),
            ],
            Read,
            false,
        ),
        case(
            "an ALLOW of one operation does not allow another",
            vec![topic(Literal, "orders", Read, Allow)],
            Write,
            false,
        ),
        case(
            "READ implies DESCRIBE",
            vec![topic(Literal, "orders", Read, Allow)],
            Describe,
            true,
        ),
        case(
            "WRITE implies DESCRIBE",
            vec![topic(Literal, "orders", Write, Allow)],
            Describe,
            true,
        ),
        case(
            "DELETE implies DESCRIBE",
            vec![topic(Literal, "orders", Delete, Allow)],
            Describe,
            true,
        ),
        case(
            "ALTER implies DESCRIBE",
            vec![topic(Literal, "orders", Alter, Allow)],
            Describe,
            true,
        ),
        case(
            "CREATE does not imply DESCRIBE",
            vec![topic(Literal, "orders", Create, Allow)],
            Describe,
            false,
        ),
        case(
            "ALTER_CONFIGS implies DESCRIBE_CONFIGS",
            vec![topic(Literal, "orders", AlterConfigs, Allow)],
            DescribeConfigs,
            true,
        ),
        case(
            "DESCRIBE does not imply DESCRIBE_CONFIGS",
            vec![topic(Literal, "orders", Describe, Allow)],
            DescribeConfigs,
            false,
        ),
        case(
            "a DENY of READ does not deny DESCRIBE",
            vec![
                topic(Literal, "orders", Write, Allow),
                topic(Literal, "orders", Read, Deny),
            ],
            Describe,
            true,
        ),
        case(
            "an ACL for another principal does not apply",
            vec![acl(
                Res::Topic,
                Literal,
                "orders",
                "User:bob",
                "*",
                Read,
                Allow,
            )],
            Read,
            false,
        ),
        case(
            "the wildcard principal applies to every user",
            vec![acl(
                Res::Topic,
                Literal,
                "orders",
                "User:*",
                "*",
                Read,
                Allow,
            )],
            Read,
            true,
        ),
        case(
            "a wildcard principal DENY refuses every user",
            vec![
                topic(Literal, "orders", Read, Allow),
                acl(Res::Topic, Literal, "orders", "User:*", "*", Read, Deny),
            ],
            Read,
            false,
        ),
        case(
            "a principal of another type does not apply",
            vec![acl(
                Res::Topic,
                Literal,
                "orders",
                "Group:alice",
                "*",
                Read,
                Allow,
            )],
            Read,
            false,
        ),
        case(
            "an ACL for the client's address applies",
            vec![acl(
                Res::Topic,
                Literal,
                "orders",
                "User:alice",
                "10.0.0.7",
                Read,
                Allow,
            )],
            Read,
            true,
        ),
        case(
            "an ACL for another address does not apply",
            vec![acl(
                Res::Topic,
                Literal,
                "orders",
                "User:alice",
                "10.0.0.8",
                Read,
                Allow,
            )],
            Read,
            false,
        ),
        case(
            "a DENY for the client's address refuses",
            vec![
                topic(Literal, "orders", Read, Allow),
                acl(
                    Res::Topic,
                    Literal,
                    "orders",
                    "User:alice",
                    "10.0.0.7",
                    Read,
                    Deny,
                ),
            ],
            Read,
            false,
        ),
        case(
            "a DENY for another address does not refuse",
            vec![
                topic(Literal, "orders", Read, Allow),
                acl(
                    Res::Topic,
                    Literal,
                    "orders",
                    "User:alice",
                    "10.0.0.9",
                    Read,
                    Deny,
                ),
            ],
            Read,
            true,
        ),
        Case {
            config: AuthorizerConfig {
                super_users: vec!["User:admin".into(), "User:alice".into()],
                ..enabled()
            },
            ..case(
                "a super user is allowed even over a DENY",
                vec![topic(Literal, "orders", Read, Deny)],
                Read,
                true,
            )
        },
        Case {
            config: AuthorizerConfig {
                super_users: vec!["User:admin".into()],
                ..enabled()
            },
            ..case("super users are only those listed", vec![], Read, false)
        },
        Case {
            resource: (Res::Cluster, "kafka-cluster"),
            ..case(
                "cluster ACLs apply to the cluster",
                vec![acl(
                    Res::Cluster,
                    Literal,
                    "kafka-cluster",
                    "User:alice",
                    "*",
                    ClusterAction,
                    Allow,
                )],
                ClusterAction,
                true,
            )
        },
        Case {
            resource: (Res::Group, "g1"),
            ..case(
                "a topic ACL does not open a group of the same name",
                vec![topic(Literal, "g1", Read, Allow)],
                Read,
                false,
            )
        },
    ];
    let mut failed = Vec::new();
    for c in &cases {
        let s = session(c.user, c.host);
        let got = authorize(
            &c.config,
            &c.acls,
            &s,
            Action {
                resource_type: c.resource.0,
                name: c.resource.1,
                operation: c.op,
            },
        );
        if got != c.allowed {
            failed.push(format!(
                "{}: expected allowed={}, got {got}",
                c.rule, c.allowed
            ));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn a_session_without_a_slash_in_its_address_still_matches_hosts() {
    let acls = [acl(
        Res::Topic,
        Pat::Literal,
        "t",
        "User:alice",
        "127.0.0.1",
        Op::Read,
        Perm::Allow,
    )];
    let action = Action {
        resource_type: Res::Topic,
        name: "t",
        operation: Op::Read,
    };
    assert!(authorize(
        &enabled(),
        &acls,
        &session("alice", "127.0.0.1"),
        action
    ));
    assert!(authorize(
        &enabled(),
        &acls,
        &session("alice", "/127.0.0.1"),
        action
    ));
    assert!(!authorize(
        &enabled(),
        &acls,
        &session("bob", "/127.0.0.1"),
        action
    ));
}

#[test]
fn write_on_any_topic_is_found_unless_a_deny_covers_it() {
    use Op::*;
    use Pat::*;
    use Perm::*;
    let any = |acls: &[AclBinding], config: &AuthorizerConfig| {
        authorize_any(
            config,
            acls,
            &session("alice", "/10.0.0.7"),
            Res::Topic,
            Write,
        )
    };
    let cases: Vec<(&str, Vec<AclBinding>, bool)> = vec![
        ("no ACL", vec![], false),
        (
            "a literal ALLOW",
            vec![topic(Literal, "orders", Write, Allow)],
            true,
        ),
        (
            "a prefixed ALLOW",
            vec![topic(Prefixed, "ord", Write, Allow)],
            true,
        ),
        (
            "ALLOW ALL",
            vec![topic(Literal, "orders", All, Allow)],
            true,
        ),
        (
            "an ALLOW of READ only",
            vec![topic(Literal, "orders", Read, Allow)],
            false,
        ),
        (
            "a literal ALLOW under the same literal DENY",
            vec![
                topic(Literal, "orders", Write, Allow),
                topic(Literal, "orders", Write, Deny),
            ],
            false,
        ),
        (
            "a literal ALLOW under a prefixed DENY",
            vec![
                topic(Literal, "orders", Write, Allow),
                topic(Prefixed, "or", Write, Deny),
            ],
            false,
        ),
        (
            "a prefixed ALLOW under a shorter prefixed DENY",
            vec![
                topic(Prefixed, "orders-", Write, Allow),
                topic(Prefixed, "or", Write, Deny),
            ],
            false,
        ),
        (
            "an ALLOW beside a DENY of another name",
            vec![
                topic(Literal, "orders", Write, Allow),
                topic(Literal, "pay", Write, Deny),
            ],
            true,
        ),
        (
            "a wildcard DENY",
            vec![
                topic(Literal, "orders", Write, Allow),
                topic(Literal, "*", Write, Deny),
            ],
            false,
        ),
        (
            "another principal's ALLOW",
            vec![acl(
                Res::Topic,
                Literal,
                "orders",
                "User:bob",
                "*",
                Write,
                Allow,
            )],
            false,
        ),
    ];
    for (what, acls, expected) in cases {
        assert_eq!(any(&acls, &enabled()), expected, "{what}");
    }
    let open = AuthorizerConfig {
        allow_everyone_if_no_acl_found: true,
        ..enabled()
    };
    assert!(any(&[], &open), "no ACL at all with allow.everyone");
    let admin = AuthorizerConfig {
        super_users: vec!["User:alice".into()],
        ..enabled()
    };
    assert!(
        any(&[topic(Literal, "*", Write, Deny)], &admin),
        "a super user"
    );
}
