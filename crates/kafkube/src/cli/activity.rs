//! What the services are doing, from their own `/metrics`: each consumer group's records handled
//! and batch handling time, each HTTP route's requests, 5xx answers and latency, each outbox's
//! backlog. Counters and histograms are summed over the services (replicas) read; the rates are
//! the change since the previous reading (`status --watch`, the console).

use std::collections::BTreeMap;

use serde::Serialize;

/// Everything below, read from the services' metrics at one moment.
#[derive(Debug, Default, Serialize)]
pub(super) struct Activity {
    pub groups: Vec<GroupActivity>,
    pub routes: Vec<RouteActivity>,
    pub outboxes: Vec<Outbox>,
    #[serde(skip)]
    histograms: Histograms,
}

#[derive(Debug, Default, PartialEq, Serialize)]
pub(super) struct GroupActivity {
    pub group: String,
    pub processed: u64,
    pub dead_lettered: u64,
    /// Records handled per second since the previous reading.
    pub per_second: Option<f64>,
    /// Batch handling time, median and 99th percentile, in milliseconds (since the services
    /// started).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Default, PartialEq, Serialize)]
pub(super) struct RouteActivity {
    /// `METHOD /route`.
    pub route: String,
    pub requests: u64,
    pub errors_5xx: u64,
    pub per_second: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, PartialEq, Serialize)]
pub(super) struct Outbox {
    /// The service's ops URL.
    pub url: String,
    /// Events committed but not yet in Kafka.
    pub pending: i64,
}

/// Cumulative bucket counts by `le`, per group or route, summed over the services.
type Histograms = BTreeMap<(Kind, String), BTreeMap<Le, f64>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Batch,
    Http,
}

/// A bucket bound, ordered (`+Inf` last).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Le(f64);
impl Eq for Le {}
impl PartialOrd for Le {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Le {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// One sample of a Prometheus text exposition.
pub(super) struct Sample<'a> {
    pub name: &'a str,
    labels: Vec<(&'a str, String)>,
    pub value: f64,
}

impl Sample<'_> {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }
}

/// The samples of a Prometheus text exposition (label values unescaped); lines it cannot read
/// are skipped.
pub(super) fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|line| {
        let (series, value) = line.trim_end().rsplit_once(' ')?;
        let value = value.parse().ok()?;
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, labels(rest.strip_suffix('}')?)?),
            None => (series, Vec::new()),
        };
        Some(Sample { name, labels, value })
    })
}

/// `k="v",k2="v2"` with `\\`, `\"` and `\n` escapes in the values.
fn labels(mut rest: &str) -> Option<Vec<(&str, String)>> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key.trim_start_matches(',').trim(), value));
        rest = &after[end + 1..];
    }
    Some(out)
}

impl Activity {
    /// Adds one service's metrics (`url` is where they came from).
    pub fn add(&mut self, url: &str, metrics: &str) {
        for s in samples(metrics) {
            match s.name {
                "kafkube_consumer_records_total" => {
                    let Some(group) = s.label("group") else { continue };
                    let g = self.group(group);
                    match s.label("outcome") {
                        Some("dead_lettered") => g.dead_lettered += s.value as u64,
                        _ => g.processed += s.value as u64,
                    }
                }
                "kafkube_consumer_batch_seconds_bucket" => {
                    if let (Some(group), Some(le)) = (s.label("group"), s.label("le")) {
                        self.group(group);
                        self.bucket(Kind::Batch, group.to_owned(), le, s.value);
                    }
                }
                "http_requests_total" => {
                    let (Some(method), Some(route)) = (s.label("method"), s.label("route")) else {
                        continue;
                    };
                    let r = self.route(&format!("{method} {route}"));
                    r.requests += s.value as u64;
                    if s.label("status").is_some_and(|c| c.starts_with('5')) {
                        r.errors_5xx += s.value as u64;
                    }
                }
                "http_request_duration_seconds_bucket" => {
                    if let (Some(method), Some(route), Some(le)) = (s.label("method"), s.label("route"), s.label("le"))
                    {
                        self.bucket(Kind::Http, format!("{method} {route}"), le, s.value);
                    }
                }
                "kafkube_outbox_pending" => self.outboxes.push(Outbox {
                    url: url.to_owned(),
                    pending: s.value as i64,
                }),
                _ => {}
            }
        }
    }

    fn group(&mut self, group: &str) -> &mut GroupActivity {
        row(
            &mut self.groups,
            |g| g.group == group,
            || GroupActivity {
                group: group.to_owned(),
                ..GroupActivity::default()
            },
        )
    }

    fn route(&mut self, route: &str) -> &mut RouteActivity {
        row(
            &mut self.routes,
            |r| r.route == route,
            || RouteActivity {
                route: route.to_owned(),
                ..RouteActivity::default()
            },
        )
    }

    fn bucket(&mut self, kind: Kind, key: String, le: &str, count: f64) {
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        if !le.is_nan() {
            *self
                .histograms
                .entry((kind, key))
                .or_default()
                .entry(Le(le))
                .or_default() += count;
        }
    }

    /// Sorts the rows and works out the percentiles, once every service was added.
    pub fn finish(&mut self) {
        let ms = |kind, key: &str, q| {
            let buckets = self.histograms.get(&(kind, key.to_owned()))?;
            quantile(q, buckets).map(|s| s * 1000.0)
        };
        for g in &mut self.groups {
            (g.p50_ms, g.p99_ms) = (ms(Kind::Batch, &g.group, 0.5), ms(Kind::Batch, &g.group, 0.99));
        }
        for r in &mut self.routes {
            (r.p50_ms, r.p99_ms) = (ms(Kind::Http, &r.route, 0.5), ms(Kind::Http, &r.route, 0.99));
        }
        self.groups.sort_by(|a, b| a.group.cmp(&b.group));
        self.routes.sort_by(|a, b| a.route.cmp(&b.route));
        self.outboxes.sort_by(|a, b| a.url.cmp(&b.url));
    }

    /// Sets the rates: the change since `earlier`, read `secs` seconds before this one. A
    /// counter that went down (a service restarted) gives no rate.
    pub fn rates_since(&mut self, earlier: &Activity, secs: f64) {
        if secs <= 0.0 {
            return;
        }
        let rate = |now: u64, then: Option<u64>| then.filter(|t| *t <= now).map(|t| (now - t) as f64 / secs);
        for g in &mut self.groups {
            let then = earlier.groups.iter().find(|e| e.group == g.group);
            g.per_second = rate(
                g.processed + g.dead_lettered,
                then.map(|e| e.processed + e.dead_lettered),
            );
        }
        for r in &mut self.routes {
            let then = earlier.routes.iter().find(|e| e.route == r.route);
            r.per_second = rate(r.requests, then.map(|e| e.requests));
        }
    }
}

/// The row `is` picks, added (`new`) when there is none.
fn row<T>(rows: &mut Vec<T>, is: impl Fn(&T) -> bool, new: impl FnOnce() -> T) -> &mut T {
    let i = match rows.iter().position(is) {
        Some(i) => i,
        None => {
            rows.push(new());
            rows.len() - 1
        }
    };
    &mut rows[i]
}

/// The `q` quantile of a histogram's cumulative buckets, interpolated within its bucket as
/// Prometheus' `histogram_quantile` does; `None` when it counted nothing.
fn quantile(q: f64, buckets: &BTreeMap<Le, f64>) -> Option<f64> {
    let total = *buckets.values().last()?;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (Le(le), count) in buckets {
        if *count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let within = if count > &below {
                (rank - below) / (count - below)
            } else {
                1.0
            };
            return Some(lower + (le - lower) * within);
        }
        (lower, below) = (*le, *count);
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# TYPE kafkube_consumer_records_total counter
kafkube_consumer_records_total{group=\"event-logger\",outcome=\"processed\"} 90
kafkube_consumer_records_total{group=\"event-logger\",outcome=\"dead_lettered\"} 1
kafkube_consumer_batch_seconds_bucket{group=\"event-logger\",le=\"0.001\"} 0
kafkube_consumer_batch_seconds_bucket{group=\"event-logger\",le=\"0.005\"} 8
kafkube_consumer_batch_seconds_bucket{group=\"event-logger\",le=\"0.01\"} 10
kafkube_consumer_batch_seconds_bucket{group=\"event-logger\",le=\"+Inf\"} 10
http_requests_total{method=\"POST\",route=\"/api/mahasiswa\",status=\"201\"} 40
http_requests_total{method=\"POST\",route=\"/api/mahasiswa\",status=\"503\"} 2
http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/mahasiswa\",le=\"0.01\"} 42
http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/mahasiswa\",le=\"+Inf\"} 42
kafkube_outbox_pending 3
kafkube_ready{check=\"students/database\"} 1
";

    #[test]
    fn groups_routes_and_outboxes_from_the_metrics_of_two_replicas() {
        let mut a = Activity::default();
        a.add("http://a:9090", METRICS);
        a.add("http://b:9090", METRICS);
        a.finish();
        let g = &a.groups[0];
        assert_eq!(
            (g.group.as_str(), g.processed, g.dead_lettered),
            ("event-logger", 180, 2)
        );
        // Half of 20 batches: the 10th, within (1 ms, 5 ms] where 16 of them are.
        assert!((g.p50_ms.unwrap() - 3.5).abs() < 1e-9, "{g:?}");
        assert!((g.p99_ms.unwrap() - 9.75).abs() < 1e-9, "{g:?}");
        let r = &a.routes[0];
        assert_eq!(
            (r.route.as_str(), r.requests, r.errors_5xx),
            ("POST /api/mahasiswa", 84, 4)
        );
        assert_eq!(
            a.outboxes,
            [
                Outbox {
                    url: "http://a:9090".into(),
                    pending: 3
                },
                Outbox {
                    url: "http://b:9090".into(),
                    pending: 3
                }
            ]
        );

        let mut later = Activity::default();
        later.add(
            "http://a:9090",
            &METRICS.replace("} 90", "} 110").replace("} 40", "} 45"),
        );
        later.finish();
        later.rates_since(&a, 2.0);
        // One replica read now against two before: counters went down, so no rate.
        assert_eq!(later.groups[0].per_second, None);
        let mut one = Activity::default();
        one.add("http://a:9090", METRICS);
        one.finish();
        later.rates_since(&one, 2.0);
        assert_eq!(later.groups[0].per_second, Some(10.0));
        assert_eq!(later.routes[0].per_second, Some(2.5));
    }

    #[test]
    fn a_histogram_with_nothing_counted_has_no_percentile() {
        assert_eq!(quantile(0.99, &BTreeMap::new()), None);
        let empty = BTreeMap::from([(Le(0.1), 0.0), (Le(f64::INFINITY), 0.0)]);
        assert_eq!(quantile(0.99, &empty), None);
        // Everything above the last finite bound: that bound.
        let high = BTreeMap::from([(Le(0.1), 0.0), (Le(f64::INFINITY), 5.0)]);
        assert_eq!(quantile(0.5, &high), Some(0.1));
    }
}
