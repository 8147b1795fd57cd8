//! Helpers for the option structs (`clap::Args`) every app declares.

/// An option struct as if no flag were given: every value at its default, or from its
/// environment variable when that is set (as in production). Tests start from this.
pub fn defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let matches = T::augment_args(clap::Command::new("kafkube"))
        .try_get_matches_from(["kafkube"])
        .unwrap_or_else(|e| panic!("the option defaults do not parse: {e}"));
    T::from_arg_matches(&matches).unwrap_or_else(|e| panic!("the option defaults do not parse: {e}"))
}

#[cfg(test)]
mod tests {
    #[derive(clap::Args, Debug, PartialEq)]
    struct Opts {
        #[arg(long, default_value_t = 7)]
        n: u32,
        #[arg(long, default_value = "x")]
        s: String,
    }

    #[test]
    fn fills_in_the_declared_defaults() {
        assert_eq!(super::defaults::<Opts>(), Opts { n: 7, s: "x".into() });
    }
}
