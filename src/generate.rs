//! What a package installs besides the binary, generated from the program itself so
//! that it cannot drift from it: a man page for `turnmail` and one for every subcommand
//! (clap_mangen, from the CLI's own clap definition), shell completions
//! (clap_complete), and the settings file a package ships. `deploy/package.sh` runs
//! these through the hidden `turnmail generate`.

use std::io;
use std::path::{Path, PathBuf};

/// The first lines of the turnmail.toml a package ships.
pub const PACKAGED_CONFIG_HEADER: &str = "\
# turnmail.toml shipped by a package: the production settings below for the mail user
# turnmail, with POP3S (995) off until [tls] names a certificate. The package's mail
# root links to this file (`turnmail setup --config`); changes made here are kept on
# upgrades.";

/// One man page per command, named as man(1) looks them up: `turnmail.1`,
/// `turnmail-serve.1`, `turnmail-domain.1`, `turnmail-domain-add.1`, ... Hidden
/// commands get none. Returns the files written.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    // Building names each subcommand after its parents (turnmail-domain-add) and copies
    // the global options (--root, --log-format) into every page.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    // Every page's footer names the program and its version, not the subcommand.
    let source = format!(
        "{} {}",
        cmd.get_name(),
        cmd.get_version().unwrap_or_default()
    );
    let mut written = Vec::new();
    walk(&cmd, dir, &source, &mut written)?;
    Ok(written)
}

fn walk(cmd: &clap::Command, dir: &Path, source: &str, out: &mut Vec<PathBuf>) -> io::Result<()> {
    out.push(
        clap_mangen::Man::new(cmd.clone())
            .source(source)
            .generate_to(dir)?,
    );
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        walk(sub, dir, source, out)?;
    }
    Ok(())
}

/// The completion script for `shell` in `dir`, under the name that shell's packaging
/// convention expects from clap (`turnmail.bash`, `_turnmail`, `turnmail.fish`, ...).
pub fn completions(
    mut cmd: clap::Command,
    shell: clap_complete::Shell,
    dir: &Path,
) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = cmd.get_name().to_string();
    cmd = without_hidden_subcommands(&cmd);
    clap_complete::generate_to(shell, &mut cmd, name, dir)
}

/// The top level of `cmd` without its hidden subcommands, which clap_complete's scripts
/// would offer like any other (clap has no way to remove a subcommand, so the top
/// level is made again: name, texts, options and the visible subcommands are all a
/// completion script uses).
fn without_hidden_subcommands(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new(cmd.get_name().to_string())
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
        .subcommand_required(cmd.is_subcommand_required_set());
    if let Some(v) = cmd.get_version() {
        out = out.version(v.to_string());
    }
    if let Some(a) = cmd.get_about() {
        out = out.about(a.clone());
    }
    out
}

/// The turnmail.toml a package ships: the production settings of
/// `deploy/turnmail.toml.example` for mail user `user`, POP3S left out (no package can
/// ship a certificate).
pub fn packaged_config(user: &str, file: &Path) -> io::Result<()> {
    let text = crate::admin::setup::packaged_config(user, PACKAGED_CONFIG_HEADER)
        .map_err(io::Error::other)?;
    crate::fsutil::write_atomic(file, text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> clap::Command {
        clap::Command::new("prog")
            .version("1.2")
            .arg(clap::Arg::new("root").long("root").global(true))
            .subcommand(
                clap::Command::new("domain")
                    .about("Domains")
                    .subcommand(clap::Command::new("add").about("Add one")),
            )
            .subcommand(clap::Command::new("secret").hide(true))
    }

    #[test]
    fn a_page_per_command_named_after_its_parents_and_none_for_hidden_ones() {
        let d = tempfile::tempdir().unwrap();
        let pages = man_pages(cli(), d.path()).unwrap();
        let mut names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["prog-domain-add.1", "prog-domain.1", "prog.1"]);
        let add = std::fs::read_to_string(d.path().join("prog-domain-add.1")).unwrap();
        assert!(add.starts_with(".ie"), "{add}");
        assert!(add.contains(".TH prog-domain-add 1"), "{add}");
        assert!(add.contains("prog 1.2"), "{add}");
        // The global option is documented on the subcommand's page too.
        assert!(add.contains("root"), "{add}");
    }

    #[test]
    fn completions_name_the_subcommands() {
        let d = tempfile::tempdir().unwrap();
        let p = completions(cli(), clap_complete::Shell::Bash, d.path()).unwrap();
        assert_eq!(p, d.path().join("prog.bash"));
        let text = std::fs::read_to_string(p).unwrap();
        assert!(text.contains("domain") && text.contains("add"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("--root"), "{text}");
    }

    #[test]
    fn the_packaged_config_is_the_production_settings_without_pop3s() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("turnmail.toml");
        packaged_config("turnmail", &f).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.starts_with(PACKAGED_CONFIG_HEADER), "{text}");
        let c = crate::config::Config::parse(&text).unwrap();
        assert_eq!(c.user, "turnmail");
        assert_eq!(c.smtp.listen[0].port(), 25);
        assert!(c.pop3.listen_tls.is_empty() && c.tls.cert.is_none());
    }
}
