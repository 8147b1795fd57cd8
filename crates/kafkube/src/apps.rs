//! The apps this binary runs: the one list `up`, `serve`, `migrate`, `broker` and `--help` are
//! derived from. Adding an app is a folder under `apps/` and one line here.

use kafkube_runtime::AppEntry;

pub static APPS: &[&dyn AppEntry] = &[
    &kafkube_students::Students,
    &kafkube_aggregator::Aggregator,
    &kafkube_hash::Hash,
    &kafkube_etl::Etl,
    &kafkube_restaurants::Restaurants,
];

/// `--help` text listing every app and its services.
pub fn overview() -> String {
    let mut s = String::from("Apps and their services (`kafkube serve <service>`):\n");
    for app in APPS {
        s.push_str(&format!("  {}: {}\n", app.name(), app.about()));
        for info in app.service_infos() {
            s.push_str(&format!("    {}\n", info.name));
        }
    }
    s
}
