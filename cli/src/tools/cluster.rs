//! `sluice cluster`: the cluster's id, controller and brokers.

use clap::Subcommand;
use sluice_client::Admin;

use super::{table, Connect};

/// `sluice cluster ...`
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Show the cluster id, the controller and every broker.
    Describe {
        #[command(flatten)]
        connect: Connect,
    },
}

/// Runs a `sluice cluster` command.
pub async fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Describe { connect } => {
            let admin = Admin::new(connect.client("sluice-cluster"))?;
            let c = admin.describe_cluster().await?;
            println!(
                "Cluster id: {}",
                c.cluster_id.as_deref().unwrap_or("(none)")
            );
            println!("Controller: {}", c.controller_id);
            println!();
            let rows: Vec<Vec<String>> = c
                .brokers
                .values()
                .map(|b| {
                    vec![
                        b.node_id.to_string(),
                        b.host.clone(),
                        b.port.to_string(),
                        b.rack.clone().unwrap_or_else(|| "-".into()),
                        if b.node_id == c.controller_id {
                            "yes"
                        } else {
                            ""
                        }
                        .into(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["ID", "HOST", "PORT", "RACK", "CONTROLLER"], &rows)
            );
        }
    }
    Ok(())
}
