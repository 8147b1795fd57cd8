//! Maxwell's `filter` option: `exclude: db.*, include: db.tbl, blacklist: db.*`, rules evaluated
//! in order, the last one that matches decides; a table no rule matches is included. A name
//! part is `*`, a literal, or a `/regex/`.

/// A parsed `filter`.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    include: bool,
    database: Pattern,
    table: Pattern,
}

#[derive(Clone, Debug)]
enum Pattern {
    Any,
    Exact(String),
    Regex(regex::Regex),
}

impl Pattern {
    fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "*" {
            Ok(Self::Any)
        } else if let Some(re) = s.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
            regex::Regex::new(re)
                .map(Self::Regex)
                .map_err(|e| format!("bad regex /{re}/: {e}"))
        } else if s.is_empty() {
            Err("empty name".into())
        } else {
            Ok(Self::Exact(s.to_owned()))
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(s) => s == name,
            Self::Regex(re) => re.is_match(name),
        }
    }
}

impl Filter {
    /// Parses Maxwell's `filter` value.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, target) = part
                .split_once(':')
                .ok_or_else(|| format!("filter rule `{part}`: expected include: DB.TABLE or exclude: DB.TABLE"))?;
            let include = match kind.trim() {
                "include" => true,
                "exclude" | "blacklist" => false,
                other => {
                    return Err(format!(
                        "filter rule `{part}`: unknown kind `{other}` (include, exclude, blacklist)"
                    ));
                }
            };
            let target = target.trim();
            let (db, table) = target.split_once('.').unwrap_or((target, "*"));
            rules.push(Rule {
                include,
                database: Pattern::parse(db).map_err(|e| format!("filter rule `{part}`: {e}"))?,
                table: Pattern::parse(table).map_err(|e| format!("filter rule `{part}`: {e}"))?,
            });
        }
        Ok(Self { rules })
    }

    /// Whether changes of `database.table` are published.
    pub fn includes(&self, database: &str, table: &str) -> bool {
        self.rules
            .iter()
            .rev()
            .find(|r| r.database.matches(database) && r.table.matches(table))
            .is_none_or(|r| r.include)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_filter() {
        let f = Filter::parse(
            "exclude: mysql.*, exclude: information_schema.*, exclude: performance_schema.*, exclude: sys.*, \
             exclude: warehouse.*, exclude: maxwell.*, exclude: data_lake.*, include: app_producer.*",
        )
        .unwrap_or_default();
        assert!(f.includes("app_producer", "orders"));
        assert!(!f.includes("mysql", "user"));
        assert!(!f.includes("warehouse", "x"));
        assert!(f.includes("other", "x"), "no rule matches: included");
    }

    #[test]
    fn last_match_wins_and_regexes() {
        let f = Filter::parse("exclude: *.*, include: shop./^orders_.*$/").unwrap_or_default();
        assert!(f.includes("shop", "orders_web"));
        assert!(!f.includes("shop", "customers"));
        assert!(!f.includes("other", "orders_web"));
        assert!(Filter::parse("allow: x.*").is_err());
        assert!(Filter::parse("include x").is_err());
    }
}
