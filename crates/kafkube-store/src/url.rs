//! [`DatabaseUrl`]: a connection URL that may hold a password, so it is never printed whole.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

use crate::db::redact;
use crate::{Backend, StoreError};

/// A database URL (`sqlite:PATH`, `postgres://USER:PASSWORD@HOST/DB`). `Display` and `Debug`
/// show it with the password masked; only [`expose`](Self::expose) hands out the real string,
/// to the driver. Options parse into it, so a URL is checked (known scheme) when it is given.
#[derive(Clone)]
pub struct DatabaseUrl(SecretString);

impl DatabaseUrl {
    /// The URL as given, password included: for the database driver only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with its password masked, for logs, banners and error messages.
    pub fn redacted(&self) -> String {
        redact(self.expose())
    }

    pub fn backend(&self) -> Backend {
        // Checked when parsed.
        Backend::of_url(self.expose()).unwrap_or(Backend::Sqlite)
    }
}

impl FromStr for DatabaseUrl {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::of_url(s)?;
        Ok(Self(SecretString::from(s.to_owned())))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl PartialEq for DatabaseUrl {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for DatabaseUrl {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_the_password() {
        let url: DatabaseUrl = "postgres://app:s3cret@db:5432/x".parse().expect("valid");
        assert_eq!(url.to_string(), "postgres://app:***@db:5432/x");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.expose(), "postgres://app:s3cret@db:5432/x");
        assert_eq!(url.backend(), Backend::Postgres);
    }

    #[test]
    fn refuses_unknown_schemes() {
        assert!("mysql://h/db".parse::<DatabaseUrl>().is_err());
        assert!("sqlite:data/x.db".parse::<DatabaseUrl>().is_ok());
    }
}
