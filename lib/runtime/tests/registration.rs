//! The rules of docs/metrics.md ("Names and labels", "Registration", "What each
//! level shows"), checked through the public API and a real parser.

mod support;

use dynamo_runtime::prometheus::core::Collector;
use dynamo_runtime::prometheus_names::{labels, runtime as rt_names};
use dynamo_runtime::{MetricsError, MetricsRegistry};
use support::{parse, runtime, warnings_during};

const NS: &str = labels::NAMESPACE;
const COMP: &str = labels::COMPONENT;
const EP: &str = labels::ENDPOINT;

#[test]
fn names_are_prefixed_sanitized_and_never_prefixed_twice() {
    let drt = runtime();
    let ep = drt.namespace("ns").component("c").endpoint("e");
    assert_eq!(
        ep.create_counter("requests", "r", &[]).unwrap().desc()[0].fq_name,
        "dynamo_component_requests"
    );
    let c = ep
        .create_counter("dynamo_component_done", "d", &[])
        .unwrap();
    assert_eq!(c.desc()[0].fq_name, "dynamo_component_done");
    let g = ep.create_gauge("queue-size.now", "q", &[]).unwrap();
    assert_eq!(g.desc()[0].fq_name, "dynamo_component_queue_size_now");
    let d = ep.create_gauge("9lives", "n", &[]).unwrap();
    assert_eq!(d.desc()[0].fq_name, "dynamo_component__9lives");
    for bad in ["", "___", "--", "dynamo_component_"] {
        match ep.create_counter(bad, "h", &[]) {
            Err(MetricsError::InvalidMetricName { name, .. }) => assert_eq!(name, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn automatic_labels_one_per_level_values_unmangled() {
    let drt = runtime();
    let ns = drt.namespace("my-ns");
    let comp = ns.component("comp.v2");
    let ep = comp.endpoint("gen \"x\"");
    drt.create_counter("at_runtime_total", "h", &[])
        .unwrap()
        .inc();
    ns.create_counter("at_ns_total", "h", &[]).unwrap().inc();
    comp.create_counter("at_comp_total", "h", &[])
        .unwrap()
        .inc();
    ep.create_counter("at_ep_total", "h", &[]).unwrap().inc();
    let p = parse(&drt.prometheus_metrics_fmt().unwrap());
    assert_eq!(p.value("dynamo_component_at_runtime_total", &[]), Some(1.0));
    assert_eq!(
        p.value("dynamo_component_at_ns_total", &[(NS, "my-ns")]),
        Some(1.0)
    );
    assert_eq!(
        p.value(
            "dynamo_component_at_comp_total",
            &[(NS, "my-ns"), (COMP, "comp.v2")]
        ),
        Some(1.0)
    );
    assert_eq!(
        p.value(
            "dynamo_component_at_ep_total",
            &[(NS, "my-ns"), (COMP, "comp.v2"), (EP, "gen \"x\"")]
        ),
        Some(1.0)
    );
}

#[test]
fn user_label_errors_name_the_label() {
    let drt = runtime();
    let ep = drt.namespace("ns").component("c").endpoint("e");
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (&[("bad-name", "v")], &[], "bad-name"),
        (&[("__hidden", "v")], &[], "__hidden"),
        (&[("le", "v")], &[], "le"),
        (&[], &["quantile"], "quantile"),
        (&[("dynamo_endpoint", "v")], &[], "dynamo_endpoint"),
        (&[], &["dynamo_namespace"], "dynamo_namespace"),
        (&[("a", "1"), ("a", "2")], &[], "a"),
        (&[("a", "1")], &["a"], "a"),
        (&[], &["m", "m"], "m"),
        (&[], &["0x"], "0x"),
    ];
    for (consts, vars, bad) in cases {
        let err = ep
            .create_countervec("x_total", "h", vars, consts)
            .unwrap_err();
        match &err {
            MetricsError::InvalidLabelName { label, metric, .. } => {
                assert_eq!(label, bad);
                assert_eq!(metric, "dynamo_component_x_total");
            }
            other => panic!("{consts:?} {vars:?}: {other:?}"),
        }
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
}

#[test]
fn histogram_buckets_must_be_finite_and_increasing() {
    let drt = runtime();
    let ep = drt.namespace("ns").component("c").endpoint("e");
    for bad in [
        vec![],
        vec![1.0, 1.0],
        vec![2.0, 1.0],
        vec![0.1, f64::INFINITY],
        vec![f64::NAN],
    ] {
        let err = ep
            .create_histogram("lat_seconds", "h", &[], Some(bad.clone()))
            .unwrap_err();
        assert!(
            matches!(err, MetricsError::InvalidBuckets { .. }),
            "{bad:?}: {err}"
        );
        let err = ep
            .create_histogramvec("latv_seconds", "h", &["m"], &[], Some(bad.clone()))
            .unwrap_err();
        assert!(
            matches!(err, MetricsError::InvalidBuckets { .. }),
            "{bad:?}: {err}"
        );
    }
    let h = ep
        .create_histogram("lat_seconds", "h", &[], Some(vec![0.5, 1.0]))
        .unwrap();
    h.observe(0.7);
    let p = parse(&ep.prometheus_metrics_fmt().unwrap());
    let base = [(NS, "ns"), (COMP, "c"), (EP, "e")];
    let with_le = |le| {
        let mut l = base.to_vec();
        l.push(("le", le));
        l
    };
    assert_eq!(
        p.value("dynamo_component_lat_seconds_bucket", &with_le("0.5")),
        Some(0.0)
    );
    assert_eq!(
        p.value("dynamo_component_lat_seconds_bucket", &with_le("1")),
        Some(1.0)
    );
    assert_eq!(
        p.value("dynamo_component_lat_seconds_bucket", &with_le("+Inf")),
        Some(1.0)
    );
    assert_eq!(
        p.value("dynamo_component_lat_seconds_count", &base),
        Some(1.0)
    );
}

#[test]
fn bad_hierarchy_names_are_reported_by_the_first_fallible_call() {
    let drt = runtime();
    let ep = drt.namespace("ok").component("").endpoint("e"); // no error yet
    match ep.create_counter("x_total", "h", &[]) {
        Err(MetricsError::InvalidHierarchyName { level, name, .. }) => {
            assert_eq!(level, "component");
            assert_eq!(name, "");
        }
        other => panic!("{other:?}"),
    }
    let ns = drt.namespace("tab\there");
    let e = ns.create_gauge("g", "h", &[]).unwrap_err().to_string();
    assert!(e.contains("namespace") && e.contains("tab\\there"), "{e}");
    assert!(ns.prometheus_metrics_fmt().is_err());
    assert!(ns.metrics().create_intgauge("g", "h", &[]).is_err());
}

#[test]
fn get_or_create_returns_the_same_metric_in_both_styles() {
    let drt = runtime();
    let ep = drt.namespace("ns").component("c").endpoint("e");
    let a = ep
        .create_counter("hits_total", "Hits", &[("k", "v")])
        .unwrap();
    let b = ep
        .metrics()
        .create_counter("hits_total", "Hits", &[("k", "v")])
        .unwrap();
    // Another handle to the same endpoint, made anew.
    let c = drt
        .namespace("ns")
        .component("c")
        .endpoint("e")
        .create_counter("hits_total", "Hits", &[("k", "v")])
        .unwrap();
    a.inc();
    b.inc_by(2.0);
    c.inc();
    assert_eq!(a.get(), 4.0);
    let va = ep
        .create_intgaugevec("slots", "Slots", &["gpu"], &[])
        .unwrap();
    let vb = ep
        .metrics()
        .create_intgaugevec("slots", "Slots", &["gpu"], &[])
        .unwrap();
    va.with_label_values(&["0"]).set(3);
    assert_eq!(vb.with_label_values(&["0"]).get(), 3);
    let p = parse(&drt.prometheus_metrics_fmt().unwrap());
    assert_eq!(
        p.value(
            "dynamo_component_hits_total",
            &[(NS, "ns"), (COMP, "c"), (EP, "e"), ("k", "v")]
        ),
        Some(4.0)
    );
}

#[test]
fn same_name_on_two_endpoints_is_one_family_with_two_series() {
    // The case that crashed the original in the field.
    let drt = runtime();
    let comp = drt.namespace("ns").component("worker");
    let gen = comp
        .endpoint("generate")
        .create_counter("requests_total", "Requests", &[])
        .unwrap();
    let emb = comp
        .endpoint("embed")
        .create_counter("requests_total", "Requests", &[])
        .unwrap();
    let at_comp = comp
        .create_counter("requests_total", "Requests", &[])
        .unwrap();
    gen.inc();
    emb.inc_by(2.0);
    at_comp.inc_by(5.0);
    let text = drt.prometheus_metrics_fmt().unwrap();
    assert_eq!(
        text.matches("# TYPE dynamo_component_requests_total counter")
            .count(),
        1
    );
    assert_eq!(
        text.matches("# HELP dynamo_component_requests_total ")
            .count(),
        1
    );
    let p = parse(&text);
    let ep = |e| [(NS, "ns"), (COMP, "worker"), (EP, e)];
    assert_eq!(
        p.value("dynamo_component_requests_total", &ep("generate")),
        Some(1.0)
    );
    assert_eq!(
        p.value("dynamo_component_requests_total", &ep("embed")),
        Some(2.0)
    );
    assert_eq!(
        p.value(
            "dynamo_component_requests_total",
            &[(NS, "ns"), (COMP, "worker")]
        ),
        Some(5.0)
    );
    // Other constant labels at the same object: another series, same family.
    let x =
        comp.endpoint("generate")
            .create_counter("requests_total", "Requests", &[("tier", "a")]);
    assert!(x.is_ok());
}

#[test]
fn conflicts_name_the_family_the_difference_and_the_first_creation() {
    let drt = runtime();
    let comp = drt.namespace("ns").component("c");
    let a = comp.endpoint("a");
    let first_line = line!() + 1;
    a.create_counter("jobs_total", "Jobs", &[]).unwrap();
    let other = comp.endpoint("b");
    let cases = [
        (
            "type",
            other.create_gauge("jobs_total", "Jobs", &[]).unwrap_err(),
        ),
        (
            "same series, other kind",
            comp.endpoint("a")
                .create_intcounter("jobs_total", "Jobs", &[])
                .unwrap_err(),
        ),
        (
            "same series, variable labels",
            comp.endpoint("a")
                .create_countervec("jobs_total", "Jobs", &["x"], &[])
                .unwrap_err(),
        ),
    ];
    for (case, err) in cases {
        let MetricsError::Conflict {
            family,
            first_created_at,
            ..
        } = &err
        else {
            panic!("{case}: {err:?}");
        };
        assert_eq!(family, "dynamo_component_jobs_total", "{case}");
        assert!(first_created_at.contains("endpoint \"a\""), "{case}: {err}");
        assert!(
            first_created_at.contains(&format!("registration.rs:{first_line}")),
            "{case}: {err}"
        );
    }
    let h = comp
        .create_histogram("wait_seconds", "Wait", &[], Some(vec![1.0, 2.0]))
        .unwrap();
    let e = other
        .create_histogram("wait_seconds", "Wait", &[], Some(vec![1.0, 3.0]))
        .unwrap_err();
    assert!(e.to_string().contains("buckets"), "{e}");
    // Same definition elsewhere in the family: fine, and default buckets agree with themselves.
    other
        .create_histogram("wait_seconds", "Wait", &[], Some(vec![1.0, 2.0]))
        .unwrap();
    comp.create_histogram("d_seconds", "D", &[], None).unwrap();
    other
        .create_histogram(
            "d_seconds",
            "D",
            &[],
            Some(dynamo_runtime::prometheus::DEFAULT_BUCKETS.to_vec()),
        )
        .unwrap();
    h.observe(1.5);
    // The scrape never fails because of what was registered.
    parse(&drt.prometheus_metrics_fmt().unwrap());
}

#[test]
fn registrations_that_could_repeat_a_series_are_refused() {
    let drt = runtime();
    let ep = drt.namespace("ns").component("c").endpoint("e");
    ep.create_counter("calls_total", "Calls", &[("model", "x")])
        .unwrap();
    let err = ep
        .create_countervec("calls_total", "Calls", &["model"], &[])
        .unwrap_err();
    assert!(matches!(err, MetricsError::Conflict { .. }), "{err}");
    // Disjoint constant values cannot collide.
    ep.create_counter("calls_total", "Calls", &[("model", "y")])
        .unwrap();
}

#[test]
fn each_level_renders_its_subtree_each_family_once_sorted() {
    let drt = runtime();
    let ns1 = drt.namespace("ns1");
    let ns2 = drt.namespace("ns2");
    let c1 = ns1.component("c1");
    c1.endpoint("e1")
        .create_counter("zeta_total", "Z", &[])
        .unwrap()
        .inc();
    c1.endpoint("e2")
        .create_counter("zeta_total", "Z", &[])
        .unwrap()
        .inc();
    c1.create_gauge("alpha", "A", &[]).unwrap().set(1.0);
    ns1.component("c2")
        .create_gauge("alpha", "A", &[])
        .unwrap()
        .set(2.0);
    ns2.create_counter("mid_total", "M", &[]).unwrap().inc();
    drt.create_intgauge("top", "T", &[]).unwrap().set(9);

    let names_of = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap().to_owned())
            .collect()
    };
    let all = drt.prometheus_metrics_fmt().unwrap();
    let names = names_of(&all);
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "families sorted, each once");
    assert!(names.contains(&rt_names::SYSTEM_UPTIME_SECONDS.to_owned()));
    assert!(names.contains(&"dynamo_component_top".to_owned()));

    let at_c1 = c1.prometheus_metrics_fmt().unwrap();
    assert_eq!(
        names_of(&at_c1),
        vec!["dynamo_component_alpha", "dynamo_component_zeta_total"]
    );
    let p = parse(&at_c1);
    assert_eq!(p.samples_named("dynamo_component_zeta_total").len(), 2);
    assert_eq!(
        p.samples_named("dynamo_component_alpha").len(),
        1,
        "c2's alpha is not below c1"
    );

    let at_e1 = c1.endpoint("e1").prometheus_metrics_fmt().unwrap();
    assert_eq!(names_of(&at_e1), vec!["dynamo_component_zeta_total"]);
    assert_eq!(
        parse(&at_e1)
            .samples_named("dynamo_component_zeta_total")
            .len(),
        1
    );

    let at_ns2 = ns2.prometheus_metrics_fmt().unwrap();
    assert_eq!(names_of(&at_ns2), vec!["dynamo_component_mid_total"]);
    // An object with no metrics renders nothing.
    assert_eq!(drt.namespace("empty").prometheus_metrics_fmt().unwrap(), "");
}

#[test]
fn hierarchy_strings() {
    let drt = runtime();
    let ns = drt.namespace("ns");
    let comp = ns.component("comp");
    let ep = comp.endpoint("ep");
    assert_eq!(drt.basename(), "");
    assert_eq!(drt.hierarchy(), "");
    assert!(drt.parent_hierarchy().is_empty());
    assert_eq!(ns.basename(), "ns");
    assert_eq!(ns.parent_hierarchy(), vec![""]);
    assert_eq!(comp.hierarchy(), "ns_comp");
    assert_eq!(ep.basename(), "ep");
    assert_eq!(ep.hierarchy(), "ns_comp_ep");
    assert_eq!(ep.parent_hierarchy(), vec!["", "ns", "comp"]);
    assert_eq!(ep.metrics().hierarchy(), ep.hierarchy());
    assert_eq!(ep.name(), "ep");
}

#[test]
fn every_kind_renders_with_its_type() {
    let drt = runtime();
    let ep = drt.namespace("ns").component("c").endpoint("e");
    let m = ep.metrics();
    m.create_counter("k_counter_total", "h", &[])
        .unwrap()
        .inc_by(1.5);
    m.create_intcounter("k_intcounter_total", "h", &[])
        .unwrap()
        .inc_by(3);
    m.create_gauge("k_gauge", "h", &[]).unwrap().set(-2.5);
    m.create_intgauge("k_intgauge", "h", &[]).unwrap().set(-7);
    m.create_histogram("k_histogram", "h", &[], None)
        .unwrap()
        .observe(0.3);
    m.create_countervec("k_countervec_total", "h", &["a"], &[])
        .unwrap()
        .with_label_values(&["1"])
        .inc();
    m.create_intcountervec("k_intcountervec_total", "h", &["a"], &[])
        .unwrap()
        .with_label_values(&["1"])
        .inc();
    m.create_gaugevec("k_gaugevec", "h", &["a"], &[])
        .unwrap()
        .with_label_values(&["1"])
        .set(0.5);
    m.create_intgaugevec("k_intgaugevec", "h", &["a"], &[])
        .unwrap()
        .with_label_values(&["1"])
        .set(4);
    m.create_histogramvec(
        "k_histogramvec",
        "h",
        &["a"],
        &[("z", "q")],
        Some(vec![1.0]),
    )
    .unwrap()
    .with_label_values(&["1"])
    .observe(2.0);
    let p = parse(&ep.prometheus_metrics_fmt().unwrap());
    let types = |f: &str| p.families.get(f).cloned().unwrap_or_default();
    assert_eq!(types("dynamo_component_k_counter"), "counter");
    assert_eq!(types("dynamo_component_k_intcountervec"), "counter");
    assert_eq!(types("dynamo_component_k_gauge"), "gauge");
    assert_eq!(types("dynamo_component_k_intgaugevec"), "gauge");
    assert_eq!(types("dynamo_component_k_histogram"), "histogram");
    assert_eq!(types("dynamo_component_k_histogramvec"), "histogram");
    let base = [(NS, "ns"), (COMP, "c"), (EP, "e")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut l = base.to_vec();
        l.extend_from_slice(extra);
        l
    };
    assert_eq!(
        p.value("dynamo_component_k_counter_total", &base),
        Some(1.5)
    );
    assert_eq!(
        p.value("dynamo_component_k_intcounter_total", &base),
        Some(3.0)
    );
    assert_eq!(p.value("dynamo_component_k_gauge", &base), Some(-2.5));
    assert_eq!(p.value("dynamo_component_k_intgauge", &base), Some(-7.0));
    assert_eq!(
        p.value("dynamo_component_k_histogram_sum", &base),
        Some(0.3)
    );
    assert_eq!(
        p.value("dynamo_component_k_countervec_total", &with(&[("a", "1")])),
        Some(1.0)
    );
    assert_eq!(
        p.value(
            "dynamo_component_k_intcountervec_total",
            &with(&[("a", "1")])
        ),
        Some(1.0)
    );
    assert_eq!(
        p.value("dynamo_component_k_gaugevec", &with(&[("a", "1")])),
        Some(0.5)
    );
    assert_eq!(
        p.value("dynamo_component_k_intgaugevec", &with(&[("a", "1")])),
        Some(4.0)
    );
    assert_eq!(
        p.value(
            "dynamo_component_k_histogramvec_bucket",
            &with(&[("a", "1"), ("z", "q"), ("le", "1")])
        ),
        Some(0.0)
    );
    assert_eq!(
        p.value(
            "dynamo_component_k_histogramvec_bucket",
            &with(&[("a", "1"), ("z", "q"), ("le", "+Inf")])
        ),
        Some(1.0)
    );
    assert_eq!(
        p.value(
            "dynamo_component_k_histogramvec_sum",
            &with(&[("a", "1"), ("z", "q")])
        ),
        Some(2.0)
    );
}

#[test]
fn empty_help_is_an_error() {
    let drt = runtime();
    let e = drt.create_counter("x_total", "", &[]).unwrap_err();
    assert!(
        matches!(e, MetricsError::EmptyHelp { ref metric } if metric == "dynamo_component_x_total")
    );
}

#[test]
fn differing_help_is_a_warning_logged_once_and_the_first_help_is_kept() {
    let drt = runtime();
    let comp = drt.namespace("ns").component("c");
    let a = comp
        .endpoint("a")
        .create_counter("jobs_total", "Jobs", &[])
        .unwrap();
    let ((b, again, same), logs) = warnings_during(|| {
        let b = comp
            .endpoint("b")
            .create_counter("jobs_total", "Other help", &[])
            .unwrap();
        let again = comp
            .endpoint("a")
            .create_counter("jobs_total", "Other help", &[])
            .unwrap();
        let same = comp
            .endpoint("a")
            .create_counter("jobs_total", "Jobs", &[])
            .unwrap();
        (b, again, same)
    });
    assert_eq!(logs.matches("another help text").count(), 1, "{logs}");
    assert!(
        logs.contains("Other help") && logs.contains("Jobs"),
        "{logs}"
    );
    a.inc();
    again.inc();
    same.inc();
    b.inc_by(5.0);
    let text = drt.prometheus_metrics_fmt().unwrap();
    assert!(
        text.contains("# HELP dynamo_component_jobs_total Jobs\n"),
        "{text}"
    );
    assert!(!text.contains("Other help"), "{text}");
    let p = parse(&text);
    let at = |ep| [(NS, "ns"), (COMP, "c"), (EP, ep)];
    assert_eq!(p.value("dynamo_component_jobs_total", &at("a")), Some(3.0));
    assert_eq!(p.value("dynamo_component_jobs_total", &at("b")), Some(5.0));
    // Type and buckets must still agree.
    assert!(comp
        .endpoint("b")
        .create_gauge("jobs_total", "Jobs", &[])
        .is_err());
}

#[test]
fn a_full_family_overflows_into_one_series_counts_refusals_and_stays_valid() {
    let drt = dynamo_runtime::DistributedRuntime::from_config(dynamo_runtime::RuntimeConfig {
        metrics_series_limit: Some(4),
        ..Default::default()
    })
    .unwrap();
    let ep = drt.namespace("ns").component("c").endpoint("e");
    let by_model = ep
        .create_countervec("hits_total", "Hits", &["model", "zone"], &[])
        .unwrap();
    assert_eq!(by_model.series_limit(), 4);
    let ((), logs) = warnings_during(|| {
        for i in 0..1000 {
            // Hostile values too: they must never reach the output past the limit.
            by_model
                .with_label_values(&[format!("m{i}\r\u{2028}"), "z".to_owned()])
                .inc();
        }
    });
    assert_eq!(logs.matches("holds its series limit").count(), 1, "{logs}");
    let text = drt.prometheus_metrics_fmt().unwrap();
    let p = parse(&text);
    let at = |model: &'static str, zone: &'static str| {
        [
            (NS, "ns"),
            (COMP, "c"),
            (EP, "e"),
            ("model", model),
            ("zone", zone),
        ]
    };
    assert_eq!(p.samples_named("dynamo_component_hits_total").len(), 5);
    let overflow = p.value(
        "dynamo_component_hits_total",
        &at("__overflow__", "__overflow__"),
    );
    assert_eq!(overflow, Some(996.0), "{text}");
    // The first four kept their series; a carriage return and U+2028 read
    // back as visible text, and the whole scrape parsed (promtool and
    // prometheus_client, in `parse`).
    assert_eq!(
        p.value("dynamo_component_hits_total", &at(r"m3\u000d\u2028", "z")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        p.value(
            "dynamo_component_metrics_series_refused_total",
            &[("metric", "dynamo_component_hits_total")]
        ),
        Some(996.0)
    );
}
