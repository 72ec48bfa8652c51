//! `sluice acl add|list|remove`: kafka-acls.sh's verbs with its flags. A binding is made for
//! each resource × principal × host × operation, ALLOW from `--allow-principal` and
//! `--allow-host`, DENY from `--deny-principal` and `--deny-host`; a principal without a
//! host gets `*`, as kafka-acls.sh gives it.

use anyhow::bail;
use clap::{Args, Subcommand};
use sluice_client::acls::{
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, PatternType, ResourceType,
};
use sluice_client::Admin;

use super::Connect;

/// The one name of the CLUSTER resource.
const CLUSTER_NAME: &str = "kafka-cluster";

/// The resources a command names.
#[derive(Args, Debug, Clone)]
pub struct Resources {
    /// A topic (repeatable); `*` for every topic.
    #[arg(long = "topic", value_name = "TOPIC")]
    pub topics: Vec<String>,
    /// A consumer group (repeatable); `*` for every group.
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// A transactional id (repeatable).
    #[arg(long = "transactional-id", value_name = "ID")]
    pub transactional_ids: Vec<String>,
    /// The cluster.
    #[arg(long)]
    pub cluster: bool,
    /// LITERAL (default) or PREFIXED; list and remove also take ANY and MATCH.
    #[arg(
        long = "resource-pattern-type",
        value_name = "TYPE",
        default_value = "LITERAL"
    )]
    pub pattern_type: PatternType,
}

impl Default for Resources {
    fn default() -> Resources {
        Resources {
            topics: Vec::new(),
            groups: Vec::new(),
            transactional_ids: Vec::new(),
            cluster: false,
            pattern_type: PatternType::Literal,
        }
    }
}

impl Resources {
    /// (type, name) of every resource named.
    fn named(&self) -> Vec<(ResourceType, String)> {
        let mut out: Vec<(ResourceType, String)> = Vec::new();
        out.extend(self.topics.iter().map(|t| (ResourceType::Topic, t.clone())));
        out.extend(self.groups.iter().map(|g| (ResourceType::Group, g.clone())));
        out.extend(
            self.transactional_ids
                .iter()
                .map(|t| (ResourceType::TransactionalId, t.clone())),
        );
        if self.cluster {
            out.push((ResourceType::Cluster, CLUSTER_NAME.into()));
        }
        out
    }
}

/// Who an `add` or `remove` is about.
#[derive(Args, Debug, Clone, Default)]
pub struct Entries {
    /// A principal to allow, `User:alice` (repeatable).
    #[arg(long = "allow-principal", value_name = "PRINCIPAL")]
    pub allow_principals: Vec<String>,
    /// A principal to deny (repeatable).
    #[arg(long = "deny-principal", value_name = "PRINCIPAL")]
    pub deny_principals: Vec<String>,
    /// A host allowed principals may connect from (repeatable; default `*`).
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
    /// A host denied principals are refused from (repeatable; default `*`).
    #[arg(long = "deny-host", value_name = "HOST")]
    pub deny_hosts: Vec<String>,
    /// An operation (repeatable): Read, Write, Create, Delete, Alter, Describe,
    /// ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All (the default).
    #[arg(long = "operation", value_name = "OPERATION")]
    pub operations: Vec<AclOperation>,
}

impl Entries {
    /// (principal, host, operation, permission) of every entry the flags make.
    fn expand(&self) -> Vec<(String, String, AclOperation, AclPermissionType)> {
        let ops = if self.operations.is_empty() {
            vec![AclOperation::All]
        } else {
            self.operations.clone()
        };
        let star = || vec!["*".to_string()];
        let hosts = |h: &Vec<String>| if h.is_empty() { star() } else { h.clone() };
        let mut out = Vec::new();
        for (principals, hosts, perm) in [
            (
                &self.allow_principals,
                hosts(&self.allow_hosts),
                AclPermissionType::Allow,
            ),
            (
                &self.deny_principals,
                hosts(&self.deny_hosts),
                AclPermissionType::Deny,
            ),
        ] {
            for p in principals {
                for h in &hosts {
                    for op in &ops {
                        out.push((p.clone(), h.clone(), *op, perm));
                    }
                }
            }
        }
        out
    }
}

/// `sluice acl ...`
#[derive(Subcommand, Debug)]
pub enum AclCommand {
    /// Add ACLs (kafka-acls.sh --add).
    Add {
        #[command(flatten)]
        connect: Connect,
        #[command(flatten)]
        resources: Resources,
        #[command(flatten)]
        entries: Entries,
    },
    /// List ACLs, of the named resources or of all (kafka-acls.sh --list).
    List {
        #[command(flatten)]
        connect: Connect,
        #[command(flatten)]
        resources: Resources,
        /// Only the ACLs of this principal.
        #[arg(long, value_name = "PRINCIPAL")]
        principal: Option<String>,
    },
    /// Remove ACLs of the named resources: those the flags describe, or all of theirs when
    /// no principal is given (kafka-acls.sh --remove).
    Remove {
        #[command(flatten)]
        connect: Connect,
        #[command(flatten)]
        resources: Resources,
        #[command(flatten)]
        entries: Entries,
        /// Accepted for kafka-acls.sh compatibility; sluice never prompts.
        #[arg(long)]
        force: bool,
    },
}

/// The bindings `add` creates.
pub fn bindings(resources: &Resources, entries: &Entries) -> anyhow::Result<Vec<AclBinding>> {
    let named = resources.named();
    if named.is_empty() {
        bail!("name a resource: --topic, --group, --transactional-id or --cluster");
    }
    let pattern = resources.pattern_type;
    if !matches!(pattern, PatternType::Literal | PatternType::Prefixed) {
        bail!("--resource-pattern-type for add must be LITERAL or PREFIXED, not {pattern}");
    }
    let expanded = entries.expand();
    if expanded.is_empty() {
        bail!("name a principal: --allow-principal or --deny-principal");
    }
    let mut out = Vec::new();
    for (rt, name) in &named {
        for (principal, host, op, perm) in &expanded {
            out.push(AclBinding {
                resource_type: *rt,
                resource_name: name.clone(),
                pattern_type: pattern,
                principal: principal.clone(),
                host: host.clone(),
                operation: *op,
                permission: *perm,
            });
        }
    }
    Ok(out)
}

/// The filters `list` (`principal`) or `remove` (`entries`) use: one per named resource
/// (or one for every resource) and, for `remove`, per entry.
pub fn filters(
    resources: &Resources,
    principal: Option<&str>,
    entries: Option<&Entries>,
) -> Vec<AclBindingFilter> {
    let mut patterns: Vec<AclBindingFilter> = resources
        .named()
        .into_iter()
        .map(|(rt, name)| AclBindingFilter {
            resource_type: rt,
            resource_name: Some(name),
            pattern_type: resources.pattern_type,
            principal: principal.map(String::from),
            ..AclBindingFilter::any()
        })
        .collect();
    if patterns.is_empty() {
        patterns.push(AclBindingFilter {
            principal: principal.map(String::from),
            ..AclBindingFilter::any()
        });
    }
    let expanded = entries.map(Entries::expand).unwrap_or_default();
    if expanded.is_empty() {
        return patterns;
    }
    patterns
        .iter()
        .flat_map(|p| {
            expanded
                .iter()
                .map(move |(principal, host, op, perm)| AclBindingFilter {
                    principal: Some(principal.clone()),
                    host: Some(host.clone()),
                    operation: *op,
                    permission: *perm,
                    ..p.clone()
                })
        })
        .collect()
}

fn print_by_resource(acls: &[AclBinding]) {
    let mut acls = acls.to_vec();
    acls.sort();
    let mut current: Option<(ResourceType, String, PatternType)> = None;
    for a in &acls {
        let key = (a.resource_type, a.resource_name.clone(), a.pattern_type);
        if current.as_ref() != Some(&key) {
            if current.is_some() {
                println!();
            }
            println!(
                "Current ACLs for resource `ResourcePattern(resourceType={}, name={}, patternType={})`:",
                a.resource_type, a.resource_name, a.pattern_type
            );
            current = Some(key);
        }
        println!(" \t{a}");
    }
}

/// Runs a `sluice acl` command.
pub async fn run(command: AclCommand) -> anyhow::Result<()> {
    match command {
        AclCommand::Add {
            connect,
            resources,
            entries,
        } => {
            let acls = bindings(&resources, &entries)?;
            let admin = Admin::new(connect.client("sluice-acl"))?;
            admin.create_acls(&acls).await?;
            println!("Added {} ACL(s):", acls.len());
            print_by_resource(&acls);
        }
        AclCommand::List {
            connect,
            resources,
            principal,
        } => {
            let admin = Admin::new(connect.client("sluice-acl"))?;
            let mut all = Vec::new();
            for f in filters(&resources, principal.as_deref(), None) {
                all.extend(admin.describe_acls(&f).await?);
            }
            all.dedup();
            print_by_resource(&all);
        }
        AclCommand::Remove {
            connect,
            resources,
            entries,
            force: _,
        } => {
            if resources.named().is_empty() {
                bail!("name a resource: --topic, --group, --transactional-id or --cluster");
            }
            let admin = Admin::new(connect.client("sluice-acl"))?;
            let removed = admin
                .delete_acls(&filters(&resources, None, Some(&entries)))
                .await?;
            println!("Removed {} ACL(s):", removed.len());
            print_by_resource(&removed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_makes_a_binding_per_resource_principal_host_and_operation() {
        let resources = Resources {
            topics: vec!["a".into(), "b".into()],
            pattern_type: PatternType::Prefixed,
            ..Resources::default()
        };
        let entries = Entries {
            allow_principals: vec!["User:alice".into()],
            deny_principals: vec!["User:bob".into()],
            deny_hosts: vec!["10.0.0.1".into()],
            operations: vec![AclOperation::Read, AclOperation::Write],
            ..Entries::default()
        };
        let acls = bindings(&resources, &entries).expect("valid");
        assert_eq!(acls.len(), 2 * 2 * 2);
        assert!(acls.iter().all(|a| a.pattern_type == PatternType::Prefixed));
        assert!(acls
            .iter()
            .filter(|a| a.principal == "User:alice")
            .all(|a| a.host == "*" && a.permission == AclPermissionType::Allow));
        assert!(acls
            .iter()
            .filter(|a| a.principal == "User:bob")
            .all(|a| a.host == "10.0.0.1" && a.permission == AclPermissionType::Deny));
        let no_op = Entries {
            allow_principals: vec!["User:alice".into()],
            ..Entries::default()
        };
        let cluster = Resources {
            cluster: true,
            pattern_type: PatternType::Literal,
            ..Resources::default()
        };
        let acls = bindings(&cluster, &no_op).expect("valid");
        assert_eq!(acls[0].operation, AclOperation::All);
        assert_eq!(acls[0].resource_name, "kafka-cluster");
        assert!(bindings(&Resources::default(), &no_op).is_err());
        assert!(bindings(&cluster, &Entries::default()).is_err());
    }

    #[test]
    fn remove_without_principals_selects_every_acl_of_the_resource() {
        let resources = Resources {
            groups: vec!["g".into()],
            pattern_type: PatternType::Literal,
            ..Resources::default()
        };
        let f = filters(&resources, None, Some(&Entries::default()));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].resource_name.as_deref(), Some("g"));
        assert_eq!(f[0].principal, None);
        assert_eq!(f[0].operation, AclOperation::Any);
        let listed = filters(&Resources::default(), Some("User:x"), None);
        assert_eq!(listed[0].resource_type, ResourceType::Any);
        assert_eq!(listed[0].principal.as_deref(), Some("User:x"));
    }
}
