//! `outpost passwd`: manage the password file (argon2id hashes), as `mosquitto_passwd` manages
//! mosquitto's. The broker reads the file at start and again on SIGHUP.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;

use outpost_auth::PasswordFile;

/// What to do to the password file.
#[derive(Debug, clap::Subcommand)]
pub enum Passwd {
    /// Add a user, or set a user's new password (the file is created if missing).
    Add {
        /// The password file.
        file: PathBuf,
        /// The username.
        user: String,
        /// The password (read from standard input when not given; prompted without echo on a
        /// terminal).
        #[arg(long)]
        password: Option<String>,
    },
    /// Remove a user.
    Delete {
        /// The password file.
        file: PathBuf,
        /// The username.
        user: String,
    },
    /// List the usernames.
    List {
        /// The password file.
        file: PathBuf,
    },
}

fn read_password(user: &str) -> std::io::Result<String> {
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {user}: "))?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            return Err(std::io::Error::other("the passwords differ"));
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Runs the subcommand.
pub fn run(cmd: Passwd) -> ExitCode {
    let fail = |message: String| {
        eprintln!("outpost passwd: {message}");
        ExitCode::from(2)
    };
    let open = |file: &PathBuf, create: bool| -> Result<PasswordFile, String> {
        if create && !file.exists() {
            return Ok(PasswordFile::default());
        }
        PasswordFile::load(file).map_err(|e| e.to_string())
    };
    match cmd {
        Passwd::Add {
            file,
            user,
            password,
        } => {
            let mut f = match open(&file, true) {
                Ok(f) => f,
                Err(e) => return fail(e),
            };
            let password = match password.map_or_else(|| read_password(&user), Ok) {
                Ok(p) => p,
                Err(e) => return fail(format!("cannot read the password: {e}")),
            };
            if password.is_empty() {
                return fail("the password is empty".into());
            }
            if let Err(e) = f.set(&user, &password) {
                return fail(e);
            }
            if let Err(e) = f.save(&file) {
                return fail(e.to_string());
            }
        }
        Passwd::Delete { file, user } => {
            let mut f = match open(&file, false) {
                Ok(f) => f,
                Err(e) => return fail(e),
            };
            if !f.remove(&user) {
                return fail(format!("no user {user} in {}", file.display()));
            }
            if let Err(e) = f.save(&file) {
                return fail(e.to_string());
            }
        }
        Passwd::List { file } => match open(&file, false) {
            Ok(f) => {
                for u in f.users() {
                    println!("{u}");
                }
            }
            Err(e) => return fail(e),
        },
    }
    ExitCode::SUCCESS
}
