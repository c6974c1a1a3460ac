//! The command line: defaults, subcommands, and which options each takes.

use super::*;
use crate::ops::args::*;
use crate::service::config::*;
use clap::CommandFactory;
use std::time::Duration;

fn run_args(cli: Cli) -> RunArgs {
    match cli.into_command() {
        Command::Run(args) => args,
        other => panic!("not run: {other:?}"),
    }
}

#[test]
fn defaults_and_subcommands() {
    let cli = shared::cli::parse_without_env::<Cli>(["worker"]).unwrap();
    assert!(cli.command.is_none());
    let run = run_args(cli);
    assert_eq!(run.consume.prefetch, 2000);
    assert_eq!(
        run.apply.brake(),
        crate::service::brake::BrakeSettings {
            window: std::time::Duration::from_secs(3600),
            percent: 20,
            min: 10
        },
        "the brake is on by default"
    );
    assert_eq!(run.scalekit.sync_max_pages, 20_000);
    assert_eq!(run.scalekit.sync_confirm_timeout, Duration::from_secs(10));
    assert_eq!(run.shutdown_timeout(), Duration::from_secs(8));
    let old = run_args(
        shared::cli::parse_without_env::<Cli>(["worker", "--shutdown-timeout-seconds", "3"])
            .unwrap(),
    );
    assert_eq!(old.shutdown_timeout(), Duration::from_secs(3));
    let new = run_args(
        shared::cli::parse_without_env::<Cli>([
            "worker",
            "--shutdown-timeout",
            "1500ms",
            "--shutdown-timeout-seconds",
            "3",
        ])
        .unwrap(),
    );
    assert_eq!(new.shutdown_timeout(), Duration::from_millis(1500));
    assert_eq!(run.changes_relay.changes_relay_batch, 500);
    assert_eq!(
        run.changes_relay.changes_relay_confirm_timeout,
        Duration::from_secs(10)
    );
    assert_eq!(
        run.changes_relay.changes_poll_interval,
        Duration::from_millis(500)
    );
    assert_eq!(run.broker.topology().apply_queue(), "scim.events.apply");
    assert_eq!(
        run.broker
            .retry_tiers
            .0
            .iter()
            .map(|t| t.name.as_ref())
            .collect::<Vec<_>>(),
        ["5s", "30s", "5m", "30m"]
    );
    let run = run_args(
        shared::cli::parse_without_env::<Cli>([
            "worker",
            "run",
            "--migrate",
            "--hard-delete",
            "--retry-tiers",
            "1s,2s",
        ])
        .unwrap(),
    );
    assert!(run.migrate);
    assert!(run.apply.hard_delete);
    assert_eq!(run.broker.retry_tiers.0[1].delay, Duration::from_secs(2));
    assert!(shared::cli::parse_without_env::<Cli>(["worker", "--retry-tiers", "soon"]).is_err());
    for bad in [
        ["worker", "--changes-relay-batch", "0"],
        ["worker", "--changes-relay-batch", "10001"],
        ["worker", "--changes-poll-interval", "0s"],
        ["worker", "--sync-confirm-timeout", "soon"],
    ] {
        assert!(
            shared::cli::parse_without_env::<Cli>(bad).is_err(),
            "{bad:?}"
        );
    }
    let printed = format!(
        "{:?}",
        shared::cli::parse_without_env::<Cli>(["worker", "--database-url", "postgres://u:pw@h/db"])
            .unwrap()
    );
    assert!(!printed.contains("pw@"), "{printed}");
}

#[test]
fn each_subcommand_takes_only_its_options() {
    let long = |path: &[&str]| -> Vec<String> {
        let mut cmd = Cli::command();
        cmd.build();
        let mut cmd = &cmd;
        for name in path {
            cmd = cmd.find_subcommand(name).unwrap();
        }
        cmd.get_arguments()
            .filter_map(|a| a.get_long().map(str::to_owned))
            .collect()
    };
    let purge = long(&["dlq", "purge"]);
    for absent in [
        "concurrency",
        "prefetch",
        "database-url",
        "batch-size",
        "listen",
    ] {
        assert!(
            !purge.iter().any(|a| a == absent),
            "dlq purge offers --{absent}"
        );
    }
    assert!(purge.iter().any(|a| a == "yes"));
    let migrate = long(&["migrate"]);
    assert!(migrate.iter().any(|a| a == "database-url"));
    // The broker options are there for `--topology`; the consumer's are not.
    assert!(migrate.iter().any(|a| a == "topology"), "{migrate:?}");
    assert!(!migrate.iter().any(|a| a == "prefetch"), "{migrate:?}");
    let sync = long(&["sync"]);
    assert!(sync.iter().any(|a| a == "scalekit-client-id"));
    assert!(!sync.iter().any(|a| a == "prefetch"), "{sync:?}");
    let cli =
        shared::cli::parse_without_env::<Cli>(["worker", "dlq", "list", "--amqp-prefix", "p1"])
            .unwrap();
    let Some(Command::Dlq(dlq)) = cli.command else {
        panic!("not dlq")
    };
    assert_eq!(dlq.command.broker().amqp_prefix, "p1");
    // Run options do not leak into subcommands.
    assert!(
        shared::cli::parse_without_env::<Cli>(["worker", "migrate", "--prefetch", "5"]).is_err()
    );
}

#[test]
fn brake_commands() {
    let parse = |args: &[&str]| {
        shared::cli::parse_without_env::<Cli>(args.iter().copied()).map(Cli::into_command)
    };
    assert!(matches!(
        parse(&["worker", "brake", "discard", "--org", "org_1", "--yes"]),
        Ok(Command::Brake(BrakeArgs {
            command: BrakeCommand::Discard { yes: true, .. }
        }))
    ));
    assert!(
        parse(&["worker", "brake", "show"]).is_err(),
        "--org is required"
    );
    assert!(
        parse(&["worker", "run", "--deprovision-brake-percent", "101"]).is_err(),
        "a percentage"
    );
}
