//! The files under `deploy/` hold together: every Prometheus configuration in
//! the repository passes `promtool check config`; `docker-compose config`
//! accepts the compose file (no Docker daemon needed), which mounts
//! files that exist and runs what `prometheus.yml` scrapes; the dashboards
//! use the provisioned datasource, and the operations guide explains every
//! panel.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use support::{read_repo_file as read, repo};

/// Every YAML file of the repository with a top-level `scrape_configs:`.
fn prometheus_configs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                prometheus_configs(&path, out);
            }
        } else if (name.ends_with(".yml") || name.ends_with(".yaml"))
            && std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("scrape_configs:"))
        {
            out.push(path);
        }
    }
}

#[test]
fn promtool_accepts_every_prometheus_config_in_the_repository() {
    let mut configs = Vec::new();
    prometheus_configs(&repo(), &mut configs);
    assert!(
        configs.contains(&repo().join("deploy/metrics/prometheus.yml")),
        "{configs:?}"
    );
    for config in configs {
        if let Err(out) = dynamo_testing::promtool_check_config(&config) {
            panic!("{}: {out}", config.display());
        }
    }
}

#[test]
fn docker_compose_accepts_the_compose_file() {
    let file = repo().join("deploy/metrics/docker-compose.yml");
    let out = std::process::Command::new("docker-compose")
        .arg("-f")
        .arg(&file)
        .args(["config", "-q"])
        .output()
        .expect("docker-compose is installed (scripts/test.sh installs the Debian package docker-compose)");
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_compose_file_mounts_existing_files_and_runs_every_scraped_exporter() {
    let compose = read("deploy/metrics/docker-compose.yml");
    let mut mounts = 0;
    for line in compose.lines() {
        if let Some(rest) = line.trim().strip_prefix("- ./") {
            let source = rest.split(':').next().unwrap();
            let path = repo().join("deploy/metrics").join(source);
            assert!(
                path.exists(),
                "compose mounts {} which is missing",
                path.display()
            );
            mounts += 1;
        }
    }
    assert_eq!(
        mounts, 4,
        "prometheus.yml, its rules, grafana provisioning, dashboards"
    );
    for service in [
        "nats-server:",
        "nats-prometheus-exporter:",
        "etcd:",
        "prometheus:",
        "grafana:",
        "dcgm-exporter:",
    ] {
        assert!(
            compose.contains(&format!("\n  {service}")),
            "no service {service}"
        );
    }
    let dcgm = compose.split("\n  dcgm-exporter:").nth(1).unwrap();
    assert!(
        dcgm.contains("profiles: [gpu]"),
        "DCGM only under the gpu profile"
    );
    assert!(
        dcgm.contains("\":9401\""),
        "DCGM exporter listens where prometheus.yml scrapes"
    );

    // What prometheus.yml scrapes statically is what compose runs.
    let prom = read("deploy/metrics/prometheus.yml");
    for (port, evidence) in [
        ("7777", "\"-port\", \"7777\""),
        ("9401", "DCGM_EXPORTER_LISTEN: \":9401\""),
        ("9090", "--web.listen-address=:9090"),
        ("2379", "--listen-client-urls=http://0.0.0.0:2379"),
    ] {
        assert!(prom.contains(&format!("127.0.0.1:{port}")), "{port}");
        assert!(compose.contains(evidence), "{evidence}");
    }
    assert!(prom.contains("http_sd_configs:") && prom.contains("/discovery/prometheus"));
    assert!(compose.contains("GF_SERVER_HTTP_PORT: \"3001\""));
}

#[test]
fn dashboards_use_the_provisioned_datasource_and_are_documented() {
    let datasource = read("deploy/metrics/grafana/provisioning/datasources/prometheus.yml");
    assert!(datasource.contains("uid: prometheus"));
    assert!(datasource.contains("url: http://127.0.0.1:9090"));
    let operations = read("docs/operations.md");
    for name in ["grafana-dynamo-dashboard.json", "grafana-dcgm-metrics.json"] {
        let d: Value =
            serde_json::from_str(&read(&format!("deploy/metrics/grafana/dashboards/{name}")))
                .unwrap();
        assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()), "{name}");
        let mut ids = std::collections::HashSet::new();
        for p in d["panels"].as_array().unwrap() {
            let title = p["title"].as_str().unwrap();
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{name}: duplicate id at {title}"
            );
            let g = &p["gridPos"];
            assert!(
                g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
                "{name}: {title} is wider than the grid"
            );
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(p["datasource"]["uid"], "prometheus", "{name}: {title}");
            assert!(
                operations.contains(&format!("| {title} |")),
                "docs/operations.md has no row for the panel {title:?} of {name}"
            );
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(t["datasource"]["uid"], "prometheus", "{name}: {title}");
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            assert_eq!(v["datasource"]["uid"], "prometheus", "{name}");
        }
    }
}

/// The SLO recording rules and alerts pass their unit tests (recorded values,
/// alerts that fire and alerts that do not) in promtool.
#[test]
fn the_slo_rules_pass_their_promtool_unit_tests() {
    let dir = repo().join("deploy/metrics/rules");
    let out = std::process::Command::new("promtool")
        .args(["test", "rules", "dynamo-slo.test.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool is installed (scripts/test.sh installs the Debian package prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("SUCCESS"), "{text}");
}
