//! `warren user add|list|disable|enable|logout|reset-2fa`: people who sign in, through
//! the admin API.

use crate::api_client::ApiArgs;
use crate::status_cmd::print_table;
use crate::Failure;
use clap::Subcommand;
use hyper::Method;
use serde_json::json;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub(crate) enum UserCommand {
    /// Add a user; without --password-file a password is generated and printed once.
    Add {
        /// Their email: what the policy names them by.
        email: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// A file holding the password (at least 10 characters), `-` for stdin.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List users.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Disable a user: no sign-in, and every session of theirs ends within seconds.
    Disable {
        /// Email or id.
        user: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Enable a disabled user.
    Enable {
        /// Email or id.
        user: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove a user's second factor (they enrol again at next sign-in) and end their sessions.
    #[command(name = "reset-2fa")]
    Reset2fa {
        /// Email or id.
        user: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// End every session of a user (logout everywhere).
    Logout {
        /// Email or id.
        user: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub(crate) fn read_password(path: &PathBuf) -> Result<String, Failure> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| Failure::Usage(format!("reading {}: {e}", path.display())))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

pub(crate) async fn run(cmd: UserCommand) -> Result<(), Failure> {
    match cmd {
        UserCommand::Add {
            email,
            name,
            password_file,
            api,
        } => {
            let mut body = json!({ "email": email });
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(p) = &password_file {
                body["password"] = json!(read_password(p)?);
            }
            let user = api.call(Method::POST, "/api/v1/users", Some(&body)).await?;
            println!(
                "user `{}` added (id {}).",
                user["email"].as_str().unwrap_or("?"),
                user["id"].as_str().unwrap_or("?")
            );
            if let Some(p) = user["password"].as_str() {
                println!("password (shown this once):\n\n  {p}\n");
            }
        }
        UserCommand::List { json, api } => {
            let users = api.call(Method::GET, "/api/v1/users", None).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&users).unwrap_or_default()
                );
                return Ok(());
            }
            let rows: Vec<Vec<String>> = users
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|u| {
                    vec![
                        u["email"].as_str().unwrap_or("?").to_owned(),
                        u["id"].as_str().unwrap_or("?").to_owned(),
                        if u["disabled"] == true {
                            "disabled"
                        } else {
                            "active"
                        }
                        .to_owned(),
                        if u["has_password"] == true {
                            "password"
                        } else {
                            ""
                        }
                        .to_owned(),
                    ]
                })
                .collect();
            print_table(&["EMAIL", "ID", "STATUS", "SIGN-IN"], &rows);
        }
        UserCommand::Disable { user, api } => {
            api.call(Method::POST, &format!("/api/v1/users/{user}/disable"), None)
                .await?;
            println!("user `{user}` disabled; their sessions end within seconds.");
        }
        UserCommand::Enable { user, api } => {
            api.call(Method::POST, &format!("/api/v1/users/{user}/enable"), None)
                .await?;
            println!("user `{user}` enabled.");
        }
        UserCommand::Reset2fa { user, api } => {
            api.call(
                Method::POST,
                &format!("/api/v1/users/{user}/reset-2fa"),
                None,
            )
            .await?;
            println!("the second factor of `{user}` is removed; their sessions ended.");
        }
        UserCommand::Logout { user, api } => {
            api.call(Method::POST, &format!("/api/v1/users/{user}/logout"), None)
                .await?;
            println!("every session of `{user}` ended.");
        }
    }
    Ok(())
}
