//! The groups workload across two nodes on PostgreSQL and NATS. Needs a PostgreSQL
//! server (a fresh database is created and dropped) and a NATS server.

use anyhow::Context;
use sqlx::{Connection, Executor, PgConnection};

use super::report::Report;
use super::target::Target;
use super::{messaging, Cli, Sizes, Workload};

pub async fn run(
    cli: &Cli,
    sizes: &Sizes,
    report: &mut Report,
    run_id: &str,
) -> anyhow::Result<()> {
    let admin_url = cli.cluster_postgres.clone();
    let name = format!("tsunagu_bench_{}", uuid::Uuid::new_v4().simple());
    let mut pg = PgConnection::connect(&admin_url)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {admin_url} (--cluster-postgres)"))?;
    pg.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await?;
    let mut url = url::Url::parse(&admin_url)?;
    url.set_path(&format!("/{name}"));
    let outcome = async {
        let (mut a, mut b) =
            Target::spawn_cluster(cli, url.as_str(), &cli.cluster_nats, run_id.to_owned()).await?;
        eprintln!(
            "  nodes: {} and {} (NATS {})",
            a.base, b.base, cli.cluster_nats
        );
        let users = a
            .prepare(sizes.posters + sizes.group_others, &[Workload::Cluster])
            .await?;
        let result = messaging::cluster(&a, &b, &users, sizes, report).await;
        b.stop().await;
        a.stop().await;
        result
    }
    .await;
    let _ = pg
        .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await;
    outcome
}
