//! `--man` for the daemons: their man page (roff, generated from the clap definition by
//! clap_mangen) on stdout, e.g. `shoal-coordinator --man > shoal-coordinator.1`.

use clap::{Arg, ArgAction, CommandFactory, FromArgMatches};

/// Parses the command line into `P`, with one more flag, `--man`: with it, prints the man page
/// and exits. Parse errors, `--help` and `--version` exit the way clap always does.
pub fn parse_or_print_man<P: CommandFactory + FromArgMatches>() -> P {
    let cmd = with_man_flag(P::command());
    let matches = cmd.clone().get_matches();
    if matches.get_flag("man") {
        let mut out = Vec::new();
        let code = match clap_mangen::Man::new(cmd).render(&mut out) {
            Ok(()) => {
                use std::io::Write;
                let mut stdout = std::io::stdout().lock();
                i32::from(stdout.write_all(&out).and_then(|_| stdout.flush()).is_err())
            }
            Err(e) => {
                eprintln!("cannot render the man page: {e}");
                1
            }
        };
        std::process::exit(code);
    }
    P::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `cmd` with the `--man` flag added.
pub fn with_man_flag(cmd: clap::Command) -> clap::Command {
    cmd.arg(
        Arg::new("man")
            .long("man")
            .action(ArgAction::SetTrue)
            .help("Print this program's man page (roff) on stdout and exit"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser, Debug)]
    #[command(name = "demo", version, about = "A demo daemon")]
    struct Demo {
        /// Where it listens.
        #[arg(long)]
        listen: Option<String>,
    }

    #[test]
    fn man_page_names_the_program_and_its_flags() {
        let cmd = with_man_flag(Demo::command());
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out).expect("render");
        let page = String::from_utf8(out).expect("utf-8");
        assert!(
            page.starts_with(".ie") || page.contains(".TH demo 1"),
            "{page}"
        );
        assert!(page.contains("listen"), "{page}");
        assert!(page.contains("man"), "{page}");
    }

    #[test]
    fn flags_parse_as_before_without_man() {
        let cmd = with_man_flag(Demo::command());
        let m = cmd
            .try_get_matches_from(["demo", "--listen", "127.0.0.1:1"])
            .expect("parse");
        assert!(!m.get_flag("man"));
        let d = Demo::from_arg_matches(&m).expect("from matches");
        assert_eq!(d.listen.as_deref(), Some("127.0.0.1:1"));
    }
}
