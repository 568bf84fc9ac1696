//! # standin-node: the project's stand-in for the node software (NOT Dataiku DSS)
//!
//! The real node software managed by the Fleet Manager (Dataiku DSS) is
//! proprietary, so the project ships this small stand-in program with the
//! same command-line contract. The agent and the tests use it in place of
//! the real kit. One binary plays every part:
//!
//! - `standin-node package --version V --out DIR [--never-healthy]` builds a
//!   reproducible kit `standin-kit-V.tar.gz` (see [`package`]);
//! - `standin-node install ...` is what the kit's `installer.sh` runs: fresh
//!   install or upgrade of a data dir (see [`install`]);
//! - `standin-node dss --data-dir D start|stop|restart|status` is behind the
//!   data dir's `bin/dss` (see [`control`]);
//! - `standin-node dsscli --data-dir D user-edit LOGIN --password PW` is
//!   behind `bin/dsscli` (see [`dsscli`]);
//! - `standin-node serve --data-dir D` is the HTTP node itself (see
//!   [`server`]).
//!
//! Errors are one line on stderr with a non-zero exit code.

mod control;
mod datadir;
mod dsscli;
mod error;
mod install;
mod package;
mod server;
mod settings;
mod users;
mod version;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ColorChoice, Parser, Subcommand};

use crate::control::DssAction;
use crate::error::Fail;

/// Stand-in for the node software (NOT Dataiku DSS): same command-line
/// contract, used by the Fleet Manager agent and tests.
#[derive(Debug, Parser)]
#[command(name = "standin-node", color = ColorChoice::Never)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build a stand-in node kit DIR/standin-kit-V.tar.gz and print
    /// {"file", "sha256", "version"} as one JSON line.
    Package {
        /// Kit version, dotted numbers (e.g. 13.5.4).
        #[arg(long)]
        version: String,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Build a kit whose nodes always answer 503 on /api/health.
        #[arg(long)]
        never_healthy: bool,
    },
    /// Install or upgrade a data dir (run by the kit's installer.sh).
    Install {
        /// Directory of the unpacked kit.
        #[arg(long)]
        kit_dir: PathBuf,
        /// Data dir.
        #[arg(short = 'd', value_name = "DATA_DIR")]
        data_dir: PathBuf,
        /// HTTP port (fresh install).
        #[arg(short = 'p', value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
        port: Option<u16>,
        /// Node type: design (default), automation, deployer, govern or api.
        #[arg(short = 't', value_name = "NODE_TYPE")]
        node_type: Option<String>,
        /// License file to copy to config/license.json.
        #[arg(short = 'l', value_name = "LICENSE_FILE")]
        license: Option<PathBuf>,
        /// Upgrade the existing install in place.
        #[arg(short = 'u')]
        upgrade: bool,
        /// Non-interactive (accepted and ignored).
        #[arg(short = 'y')]
        yes: bool,
    },
    /// Control the node of a data dir (behind DATA_DIR/bin/dss).
    Dss {
        /// Data dir.
        #[arg(long)]
        data_dir: PathBuf,
        /// Action.
        #[arg(value_enum)]
        action: DssAction,
    },
    /// Admin command line of a data dir (behind DATA_DIR/bin/dsscli).
    Dsscli {
        /// Data dir.
        #[arg(long)]
        data_dir: PathBuf,
        /// Subcommand and its arguments (only `user-edit LOGIN --password PW`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the stand-in node's HTTP server for a data dir.
    Serve {
        /// Data dir.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(&e),
    };
    let (who, result) = dispatch(cli.command);
    match result {
        Ok(code) => ExitCode::from(code),
        Err(fail) => {
            eprintln!("{who}: {}", fail.message);
            ExitCode::from(fail.code)
        }
    }
}

/// Runs a command; returns the message prefix for errors and the exit code.
fn dispatch(command: Cmd) -> (&'static str, Result<u8, Fail>) {
    match command {
        Cmd::Package {
            version,
            out,
            never_healthy,
        } => (
            "stand-in packager",
            package::package(&version, &out, never_healthy).and_then(|r| {
                let line = serde_json::to_string(&r)
                    .map_err(|e| Fail::new(format!("cannot serialize result: {e}")))?;
                print_lines(&[line]);
                Ok(0)
            }),
        ),
        Cmd::Install {
            kit_dir,
            data_dir,
            port,
            node_type,
            license,
            upgrade,
            yes: _,
        } => {
            let opts = install::InstallOptions {
                kit_dir,
                data_dir,
                port,
                node_type,
                license,
                upgrade,
            };
            (
                "stand-in installer",
                install::run(&opts).map(|lines| {
                    print_lines(&lines);
                    0
                }),
            )
        }
        Cmd::Dss { data_dir, action } => (
            "stand-in node",
            control::run(&data_dir, action).map(|r| {
                print_lines(&r.lines);
                r.code
            }),
        ),
        Cmd::Dsscli { data_dir, args } => (
            "stand-in dsscli",
            dsscli::run(&data_dir, &args).map(|lines| {
                print_lines(&lines);
                0
            }),
        ),
        Cmd::Serve { data_dir } => ("stand-in node", server::serve(&data_dir).map(|()| 0)),
    }
}

/// Writes lines to stdout (errors writing stdout are ignored).
fn print_lines(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

/// Help and version go to stdout as usual; usage errors become one line on
/// stderr with exit code 2.
fn clap_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
    }
    eprintln!(
        "standin-node (stand-in, not Dataiku DSS): {}",
        one_line(&e.to_string())
    );
    ExitCode::from(2)
}

/// Joins the lines of a clap error up to its "Usage:" section.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn installer_flags_parse_like_the_real_installer() {
        let cli = Cli::try_parse_from([
            "standin-node",
            "install",
            "--kit-dir",
            "/k",
            "-d",
            "/data",
            "-p",
            "11000",
            "-t",
            "automation",
            "-l",
            "/lic.json",
        ])
        .unwrap();
        match cli.command {
            Cmd::Install {
                port,
                node_type,
                upgrade,
                ..
            } => {
                assert_eq!(port, Some(11000));
                assert_eq!(node_type.as_deref(), Some("automation"));
                assert!(!upgrade);
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = Cli::try_parse_from([
            "standin-node",
            "install",
            "--kit-dir",
            "/k",
            "-d",
            "/d",
            "-u",
            "-y",
        ])
        .unwrap();
        assert!(matches!(cli.command, Cmd::Install { upgrade: true, .. }));
    }

    #[test]
    fn port_zero_is_a_usage_error() {
        let err = Cli::try_parse_from([
            "standin-node",
            "install",
            "--kit-dir",
            "/k",
            "-d",
            "/d",
            "-p",
            "0",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn usage_errors_are_rendered_on_one_line() {
        let err = Cli::try_parse_from(["standin-node", "install", "--kit-dir", "/k"]).unwrap_err();
        let line = one_line(&err.to_string());
        assert!(!line.contains('\n'));
        assert!(line.contains("-d <DATA_DIR>"), "{line}");
    }

    #[test]
    fn dsscli_passes_its_arguments_through() {
        let cli = Cli::try_parse_from([
            "standin-node",
            "dsscli",
            "--data-dir",
            "/d",
            "user-edit",
            "admin",
            "--password",
            "x",
        ])
        .unwrap();
        match cli.command {
            Cmd::Dsscli { args, .. } => assert_eq!(args, ["user-edit", "admin", "--password", "x"]),
            other => panic!("unexpected {other:?}"),
        }
    }
}
