//! Helpers for the option structs (`clap::Args`) every app declares.

/// An option struct as if no flag were given: every value at its default, or from its
/// environment variable when that is set (as in production). Tests start from this.
pub fn defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let matches = T::augment_args(clap::Command::new("kafkube"))
        .try_get_matches_from(["kafkube"])
        .unwrap_or_else(|e| panic!("the option defaults do not parse: {e}"));
    T::from_arg_matches(&matches).unwrap_or_else(|e| panic!("the option defaults do not parse: {e}"))
}

/// A count that must be at least 1 (`--concurrency 0` would wait forever or do nothing):
/// `#[arg(value_parser = kafkube_core::args::at_least_one())]`.
pub fn at_least_one() -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    |s: &str| match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// A share from 0 to `max` (`--dup-rate 0.3`), refused outside it rather than clamped.
pub fn share_up_to(max: f64) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number"))?;
        if (0.0..=max).contains(&v) {
            Ok(v)
        } else {
            Err(format!("must be from 0 to {max}, got {v}"))
        }
    }
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

    #[derive(clap::Parser, Debug)]
    struct Load {
        #[arg(long, default_value_t = 4, value_parser = super::at_least_one())]
        concurrency: usize,
        #[arg(long, default_value_t = 0.3, value_parser = super::share_up_to(0.9))]
        dup_rate: f64,
    }

    #[test]
    fn counts_and_shares_out_of_range_are_refused() {
        use clap::Parser;
        let parse = |args: &[&str]| Load::try_parse_from([&["load"], args].concat());
        let ok = parse(&["--concurrency", "1", "--dup-rate", "0.9"]).unwrap();
        assert_eq!((ok.concurrency, ok.dup_rate), (1, 0.9));
        for bad in [
            &["--concurrency", "0"][..],
            &["--dup-rate", "1.5"],
            &["--dup-rate=-0.1"],
            &["--dup-rate", "x"],
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad[0].split('=').next().unwrap()), "{bad:?}: {e}");
        }
    }

    #[test]
    fn fills_in_the_declared_defaults() {
        assert_eq!(super::defaults::<Opts>(), Opts { n: 7, s: "x".into() });
    }
}
