//! `DATA_DIR/bin/dsscli` of a stand-in node: only `user-edit LOGIN
//! --password PW` (or `--password-stdin`, the password read from the first
//! line of standard input, so it never shows on a command line) is
//! implemented (sets or creates the user in `config/users.json`); anything
//! else exits 2 with a usage message. `--` ends the options.

use std::path::Path;

use crate::datadir::DataDir;
use crate::error::{Fail, Outcome};
use crate::users::{User, UsersFile, is_valid_login};

/// Usage text of the stand-in `dsscli`.
pub const USAGE: &str = "usage: dsscli user-edit [--password PASSWORD | --password-stdin] [--] LOGIN\n\
(stand-in node dsscli, not Dataiku DSS: only user-edit is implemented)";

/// Exit code for a usage error.
const USAGE_EXIT: u8 = 2;

/// Runs `dsscli ARGS...` on `data_dir`; returns the lines to print.
pub fn run(data_dir: &Path, args: &[String]) -> Outcome<Vec<String>> {
    match args.split_first() {
        Some((cmd, rest)) if cmd == "user-edit" => {
            let (login, password) = parse_user_edit(rest)?;
            let password = match password {
                Password::Given(p) => p,
                Password::Stdin => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| Fail::new(format!("can't read the password: {e}")))?;
                    line.trim_end_matches(['\n', '\r']).to_owned()
                }
            };
            if password.is_empty() {
                return Err(usage("the password must not be empty"));
            }
            user_edit(&DataDir::new(data_dir)?, &login, &password)
        }
        Some((cmd, _)) => Err(usage(&format!("unknown dsscli command {cmd:?}"))),
        None => Err(usage("missing dsscli command")),
    }
}

fn usage(what: &str) -> Fail {
    Fail::with_code(USAGE_EXIT, format!("{what}\n{USAGE}"))
}

/// Where the new password comes from.
#[derive(Debug, PartialEq, Eq)]
enum Password {
    Given(String),
    Stdin,
}

fn parse_user_edit(args: &[String]) -> Outcome<(String, Password)> {
    let mut login = None;
    let mut password = None;
    let mut it = args.iter();
    let mut options = true;
    while let Some(arg) = it.next() {
        if options && arg == "--" {
            options = false;
        } else if options && arg == "--password" {
            let value = it.next().ok_or_else(|| usage("--password needs a value"))?;
            password = Some(Password::Given(value.clone()));
        } else if options && arg == "--password-stdin" {
            password = Some(Password::Stdin);
        } else if let Some(value) = arg.strip_prefix("--password=").filter(|_| options) {
            password = Some(Password::Given(value.to_string()));
        } else if options && arg.starts_with('-') {
            return Err(usage(&format!("unknown option {arg:?} for user-edit")));
        } else if login.is_none() {
            login = Some(arg.clone());
        } else {
            return Err(usage(&format!("unexpected argument {arg:?} for user-edit")));
        }
    }
    let login = login.ok_or_else(|| usage("user-edit needs a LOGIN"))?;
    let password =
        password.ok_or_else(|| usage("user-edit needs --password PASSWORD or --password-stdin"))?;
    if !is_valid_login(&login) {
        return Err(usage(&format!("invalid login {login:?}")));
    }
    Ok((login, password))
}

fn user_edit(dd: &DataDir, login: &str, password: &str) -> Outcome<Vec<String>> {
    dd.read_version_file()?;
    let path = dd.join("config/users.json");
    let mut users = UsersFile::load(&path)?;
    let created = match users.users.get_mut(login) {
        Some(user) => {
            user.set_password(password);
            false
        }
        None => {
            users
                .users
                .insert(login.to_string(), User::with_password(password, Vec::new()));
            true
        }
    };
    users.save(&path)?;
    Ok(vec![if created {
        format!("stand-in node: user {login} created")
    } else {
        format!("stand-in node: password of user {login} updated")
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn user_edit_accepts_both_password_spellings() {
        assert_eq!(
            parse_user_edit(&args(&["admin", "--password", "x"])).unwrap(),
            ("admin".into(), Password::Given("x".into()))
        );
        assert_eq!(
            parse_user_edit(&args(&["--password=y", "bob"])).unwrap(),
            ("bob".into(), Password::Given("y".into()))
        );
        assert_eq!(
            parse_user_edit(&args(&["--password-stdin", "--", "bob"])).unwrap(),
            ("bob".into(), Password::Stdin)
        );
    }

    #[test]
    fn options_end_at_a_double_dash_and_unknown_ones_are_refused() {
        let err = parse_user_edit(&args(&["--password", "x", "-x"])).unwrap_err();
        assert_eq!(err.code, 2);
        // After `--`, "-x" is a login.
        assert_eq!(
            parse_user_edit(&args(&["--password", "x", "--", "-x"])).unwrap(),
            ("-x".into(), Password::Given("x".into()))
        );
    }

    #[test]
    fn user_edit_without_password_is_a_usage_error() {
        let err = parse_user_edit(&args(&["admin"])).unwrap_err();
        assert_eq!(err.code, 2);
    }

    #[test]
    fn unknown_commands_exit_with_usage() {
        let err = run(Path::new("/nonexistent"), &args(&["user-create", "x"])).unwrap_err();
        assert_eq!(err.code, 2);
        assert!(err.message.contains("usage: dsscli"), "{err}");
        let err = run(Path::new("/nonexistent"), &[]).unwrap_err();
        assert_eq!(err.code, 2);
    }

    #[test]
    fn user_edit_creates_missing_users() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(
            dir.path().join("dss-version.json"),
            r#"{"product_version":"13.5.4","node_type":"design"}"#,
        )
        .unwrap();
        run(
            dir.path(),
            &args(&["user-edit", "carol", "--password", "pw"]),
        )
        .unwrap();
        let users = UsersFile::load(&dir.path().join("config/users.json")).unwrap();
        assert!(users.check("carol", "pw"));
    }
}
