//! The command line, as clap derive types. Completions and the man page are
//! generated from these same definitions (`seussctl completions`, `seussctl man`).

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};
use clap_complete::Shell;
use serde_json::Value;

use crate::params::{parse_args_object, parse_param};

const EXIT_CODES: &str = "\
Exit status:
  0   success
  1   the function ran and failed (its activation's response.success is false)
  2   usage error
  3   no such function, snapshot or activation
  4   permission denied (run as root; read-only commands: be in group seuss)
  65  invalid argument or definition rejected by seussd
  66  input file cannot be read
  69  seussd or the kernel module is not available
  70  internal error in seussd
  73  conflict (the function exists already: use `function update`)
  75  seussd is busy; retry later";

/// Control the seuss function host (seussd) over D-Bus.
///
/// seussctl talks only to seussd on the system bus (org.seuss.Manager1);
/// `busctl introspect org.seuss.Manager1 /org/seuss/Manager1` shows the same interface.
#[derive(Debug, Parser)]
#[command(name = "seussctl", version, after_help = EXIT_CODES, after_long_help = EXIT_CODES)]
pub struct Cli {
    /// Print machine-readable JSON instead of tables (also accepted after most subcommands).
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, update, delete, list or show functions.
    #[command(subcommand)]
    Function(FunctionCmd),
    /// Invoke a function and print its result (the whole activation with `seussctl --json invoke`).
    Invoke(InvokeArgs),
    /// Show a past activation: its result (the whole record with --json).
    Activation {
        /// The activation id (`seussctl invoke` prints it).
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// List snapshots, or draw the snapshot tree with --tree.
    Snapshots {
        /// Draw snapshots as a tree, children under their parent snapshot.
        #[arg(long)]
        tree: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Show host statistics.
    Stats {
        #[command(flatten)]
        out: Output,
    },
    /// Show whether seussd runs, its version, the kernel module and memory use.
    Status {
        #[command(flatten)]
        out: Output,
    },
    /// Build the function snapshot of a function now, so later starts deploy it (warm) instead of starting cold.
    Prewarm {
        /// The function's name.
        name: String,
        #[command(flatten)]
        out: Output,
    },
    /// Drop a snapshot.
    Drop {
        /// The snapshot id (see `seussctl snapshots`).
        snapshot: u64,
    },
    /// Print a shell completion script to stdout.
    Completions {
        /// The shell to generate completions for.
        shell: Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
}

/// `seussctl function ...`
#[derive(Debug, Subcommand)]
pub enum FunctionCmd {
    /// Create a function (fails with exit status 73 if it exists).
    Create(FunctionSpec),
    /// Create or replace a function.
    Update(FunctionSpec),
    /// Delete a function.
    Delete {
        /// The function's name.
        name: String,
    },
    /// List functions.
    List {
        #[command(flatten)]
        out: Output,
    },
    /// Show a function.
    Get {
        /// The function's name.
        name: String,
        #[command(flatten)]
        out: Output,
    },
}

/// A function from a source file, or from a full OpenWhisk action body.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["code", "definition"])))]
pub struct FunctionSpec {
    /// The function's name.
    pub name: String,
    /// Source file of the function (`-` reads stdin).
    pub code: Option<PathBuf>,
    /// A complete OpenWhisk action body as JSON ({"exec":{...},"parameters":[...],"limits":{...}}), `-` for stdin.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kind", "main", "params", "memory", "timeout"])]
    pub definition: Option<PathBuf>,
    /// Runtime kind.
    #[arg(long, default_value = "python:3")]
    pub kind: String,
    /// Entry point in the source.
    #[arg(long, default_value = "main")]
    pub main: String,
    /// Bound parameter merged into every invocation (VALUE is JSON if it parses, else a string).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, Value)>,
    /// Memory limit, MiB.
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u64>,
    /// Timeout, milliseconds.
    #[arg(long, value_name = "MS")]
    pub timeout: Option<u64>,
    #[command(flatten)]
    pub out: Output,
}

/// `seussctl invoke NAME [-p key=value]... [--json ARGS]`
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The function's name.
    pub name: String,
    /// An argument (VALUE is JSON if it parses, else a string); applied over --json.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, Value)>,
    /// All arguments as one JSON object.
    #[arg(long = "json", value_name = "ARGS", value_parser = parse_args_object)]
    pub args: Option<Value>,
    /// Force the start path (benchmarks, tests); fails if it is not available now.
    #[arg(long, value_parser = ["cold", "runtime", "warm", "hot"])]
    pub path: Option<String>,
    /// Do not wait for the result: print the activation id (see `seussctl activation ID`).
    #[arg(long)]
    pub no_wait: bool,
}

/// Output format flag shared by the read commands.
#[derive(Debug, Args, Clone, Copy)]
pub struct Output {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn invoke_json_takes_arguments() {
        let cli = Cli::try_parse_from([
            "seussctl",
            "invoke",
            "f",
            "-p",
            "a=1",
            "--json",
            r#"{"b":"x"}"#,
        ])
        .unwrap();
        let Command::Invoke(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.params, vec![("a".to_string(), Value::from(1))]);
        assert_eq!(a.args, Some(serde_json::json!({"b":"x"})));
        assert!(Cli::try_parse_from(["seussctl", "invoke", "f", "--json", "[1]"]).is_err());
        assert!(Cli::try_parse_from(["seussctl", "invoke", "f", "-p", "novalue"]).is_err());
        assert!(Cli::try_parse_from(["seussctl", "invoke", "f", "--path", "tepid"]).is_err());
        let cli = Cli::try_parse_from(["seussctl", "invoke", "f", "--path", "warm", "--no-wait"])
            .unwrap();
        let Command::Invoke(a) = cli.command else {
            panic!()
        };
        assert_eq!((a.path.as_deref(), a.no_wait), (Some("warm"), true));
    }

    #[test]
    fn create_needs_a_source() {
        assert!(Cli::try_parse_from(["seussctl", "function", "create", "f"]).is_err());
        assert!(Cli::try_parse_from(["seussctl", "function", "create", "f", "f.py"]).is_ok());
        assert!(Cli::try_parse_from([
            "seussctl",
            "function",
            "create",
            "f",
            "--definition",
            "d.json"
        ])
        .is_ok());
        assert!(Cli::try_parse_from([
            "seussctl",
            "function",
            "create",
            "f",
            "f.py",
            "--definition",
            "d.json"
        ])
        .is_err());
        let cli = Cli::try_parse_from(["seussctl", "function", "list", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Function(FunctionCmd::List {
                out: Output { json: true }
            })
        ));
    }
}
