//! GPU metrics without a DCGM exporter: a collector that reads every GPU
//! through NVML (the driver's `libnvidia-ml.so`, loaded at run time by the
//! `nvml-wrapper` crate) and exposes what DCGM's exporter would, under the
//! same names, so that `grafana-dcgm-metrics.json` works with either source:
//!
//! | name | unit |
//! | --- | --- |
//! | `DCGM_FI_DEV_GPU_UTIL` | % of time a kernel ran |
//! | `DCGM_FI_DEV_FB_USED`, `DCGM_FI_DEV_FB_FREE` | MiB of device memory |
//! | `DCGM_FI_DEV_POWER_USAGE` | W |
//! | `DCGM_FI_DEV_GPU_TEMP` | °C |
//!
//! Labels as DCGM's (`gpu`, `UUID`, `device`, `modelName`, `Hostname`), plus
//! the hierarchy labels of the scope the collector runs on. A background
//! thread samples every [`SAMPLE_EVERY`]; a scrape reads the last sample and
//! never waits on the driver.
//!
//! The runtime starts one per process, on the component of the first
//! endpoint it serves, unless `DYN_GPU_METRICS=off`. Without a driver or a
//! GPU it logs one line and exports nothing.

use crate::metrics::text::escape_label_value;
use crate::MetricsScope;
use parking_lot::RwLock;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// Environment variable: `off` (or `0`, `false`) turns the GPU collector off;
/// unset or `auto`, it runs where NVML finds a GPU.
pub const ENV_GPU_METRICS: &str = "DYN_GPU_METRICS";
/// How often the collector reads the GPUs.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// One GPU's reading.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSample {
    /// The NVML index (DCGM's `gpu` label).
    pub index: u32,
    /// `GPU-...`.
    pub uuid: String,
    /// The product name (DCGM's `modelName`).
    pub model: String,
    /// Share of time a kernel ran over the last sample period, percent.
    pub utilization_percent: u32,
    /// Device memory in use, bytes.
    pub memory_used_bytes: u64,
    /// Device memory in all, bytes.
    pub memory_total_bytes: u64,
    /// Power draw, watts.
    pub power_watts: f64,
    /// Temperature, degrees Celsius.
    pub temperature_celsius: u32,
}

/// Why no GPU metrics are collected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuUnavailable {
    /// Turned off by `DYN_GPU_METRICS`.
    #[error("GPU metrics are off ({ENV_GPU_METRICS}={0:?})")]
    Off(String),
    /// NVML (the driver's library) could not be loaded or initialised.
    #[error("no NVIDIA driver (NVML: {0})")]
    NoDriver(String),
    /// NVML works but sees no GPU.
    #[error("NVML sees no GPU")]
    NoGpu,
}

/// Whether `DYN_GPU_METRICS` allows the collector.
pub(crate) fn enabled_by_env() -> Result<(), GpuUnavailable> {
    allowed(std::env::var(ENV_GPU_METRICS).ok())
}

/// Whether a value of `DYN_GPU_METRICS` allows the collector.
fn allowed(value: Option<String>) -> Result<(), GpuUnavailable> {
    match value {
        Some(v)
            if matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "off" | "0" | "false"
            ) =>
        {
            Err(GpuUnavailable::Off(v))
        }
        _ => Ok(()),
    }
}

/// A running collector; stops its thread when dropped.
#[derive(Debug)]
pub struct GpuCollector {
    stop: Option<mpsc::Sender<()>>,
    gpus: usize,
}

impl GpuCollector {
    /// How many GPUs it reads.
    pub fn gpus(&self) -> usize {
        self.gpus
    }
}

impl Drop for GpuCollector {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread, which then ends.
        self.stop.take();
    }
}

/// Starts reading every GPU through NVML and exposing the readings on
/// `scope`'s scrapes. An error (no driver, no GPU) means nothing is exposed.
pub fn start_nvml_collector(scope: &MetricsScope) -> Result<GpuCollector, GpuUnavailable> {
    let nvml = nvml_wrapper::Nvml::init().map_err(|e| GpuUnavailable::NoDriver(e.to_string()))?;
    let count = nvml
        .device_count()
        .map_err(|e| GpuUnavailable::NoDriver(e.to_string()))?;
    if count == 0 {
        return Err(GpuUnavailable::NoGpu);
    }
    let labels = Labels {
        hostname: hostname(),
        hierarchy: scope
            .path()
            .hierarchy_labels()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    };
    let text = Arc::new(RwLock::new(render(&read_all(&nvml, count), &labels)));
    let (stop, stopped) = mpsc::channel::<()>();
    let shared = text.clone();
    std::thread::Builder::new()
        .name("dynamo-gpu-metrics".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(SAMPLE_EVERY) {
                *shared.write() = render(&read_all(&nvml, count), &labels);
            }
        })
        .map_err(|e| GpuUnavailable::NoDriver(format!("cannot start the sampling thread: {e}")))?;
    scope.register_prometheus_expfmt_callback(move || {
        Ok::<_, std::convert::Infallible>(text.read().clone())
    });
    Ok(GpuCollector {
        stop: Some(stop),
        gpus: count as usize,
    })
}

/// Every GPU's reading; a GPU or a field NVML cannot read is left out (0).
fn read_all(nvml: &nvml_wrapper::Nvml, count: u32) -> Vec<GpuSample> {
    (0..count)
        .filter_map(|index| {
            let d = nvml.device_by_index(index).ok()?;
            let memory = d.memory_info().ok();
            Some(GpuSample {
                index,
                uuid: d.uuid().unwrap_or_default(),
                model: d.name().unwrap_or_default(),
                utilization_percent: d.utilization_rates().map(|u| u.gpu).unwrap_or(0),
                memory_used_bytes: memory.as_ref().map_or(0, |m| m.used),
                memory_total_bytes: memory.as_ref().map_or(0, |m| m.total),
                power_watts: d.power_usage().map_or(0.0, |mw| f64::from(mw) / 1000.0),
                temperature_celsius: d
                    .temperature(nvml_wrapper::enum_wrappers::device::TemperatureSensor::Gpu)
                    .unwrap_or(0),
            })
        })
        .collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The labels every series of the collector carries besides the GPU's own.
#[derive(Debug, Clone)]
pub(crate) struct Labels {
    pub hostname: String,
    pub hierarchy: Vec<(String, String)>,
}

const MIB: u64 = 1024 * 1024;

/// The readings as DCGM's exporter writes them (text format 0.0.4).
pub(crate) fn render(samples: &[GpuSample], labels: &Labels) -> String {
    type Field = (&'static str, &'static str, fn(&GpuSample) -> f64);
    const FIELDS: [Field; 5] = [
        ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", |s| {
            f64::from(s.utilization_percent)
        }),
        (
            "DCGM_FI_DEV_FB_USED",
            "Framebuffer memory used (in MiB).",
            |s| (s.memory_used_bytes / MIB) as f64,
        ),
        (
            "DCGM_FI_DEV_FB_FREE",
            "Framebuffer memory free (in MiB).",
            |s| (s.memory_total_bytes.saturating_sub(s.memory_used_bytes) / MIB) as f64,
        ),
        ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", |s| {
            s.power_watts
        }),
        ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", |s| {
            f64::from(s.temperature_celsius)
        }),
    ];
    let mut out = String::new();
    if samples.is_empty() {
        return out;
    }
    for (name, help, value) in FIELDS {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for s in samples {
            out.push_str(name);
            out.push('{');
            let device = format!("nvidia{}", s.index);
            let index = s.index.to_string();
            let own = [
                ("gpu", index.as_str()),
                ("UUID", s.uuid.as_str()),
                ("device", device.as_str()),
                ("modelName", s.model.as_str()),
                ("Hostname", labels.hostname.as_str()),
            ];
            let pairs = own.iter().map(|(k, v)| (*k, *v)).chain(
                labels
                    .hierarchy
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
            for (i, (k, v)) in pairs.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                escape_label_value(&mut out, v);
                out.push('"');
            }
            out.push_str("} ");
            crate::metrics::text::write_f64(&mut out, value(s));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(index: u32) -> GpuSample {
        GpuSample {
            index,
            uuid: format!("GPU-{index}"),
            model: "NVIDIA H100 80GB HBM3".into(),
            utilization_percent: 37,
            memory_used_bytes: 10 * 1024 * MIB,
            memory_total_bytes: 80 * 1024 * MIB,
            power_watts: 312.5,
            temperature_celsius: 61,
        }
    }

    #[test]
    fn readings_render_as_dcgm_writes_them() {
        let labels = Labels {
            hostname: "gpu-box".into(),
            hierarchy: vec![
                ("dynamo_namespace".into(), "dynamo".into()),
                ("dynamo_component".into(), "back\"end".into()),
            ],
        };
        let text = render(&[sample(0), sample(1)], &labels);
        assert!(text.contains(
            "DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"GPU-0\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"gpu-box\",dynamo_namespace=\"dynamo\",dynamo_component=\"back\\\"end\"} 37\n"
        ), "{text}");
        assert!(text.contains("DCGM_FI_DEV_FB_USED{gpu=\"1\","));
        assert!(text.contains("} 10240\n"), "MiB used");
        assert!(text.contains("} 71680\n"), "MiB free");
        assert!(text.contains("} 312.5\n"), "watts");
        assert_eq!(text.matches("# TYPE").count(), 5);
        assert_eq!(render(&[], &labels), "", "no GPU, no series");
    }

    #[test]
    fn dyn_gpu_metrics_values() {
        for off in ["off", "0", "FALSE", " Off "] {
            let e = allowed(Some(off.into())).unwrap_err().to_string();
            assert!(
                e.contains("DYN_GPU_METRICS") && e.contains(&format!("{off:?}")),
                "{e}"
            );
        }
        for on in [None, Some("auto".into()), Some("1".into()), Some("".into())] {
            assert!(allowed(on).is_ok());
        }
    }

    #[test]
    fn without_a_driver_nothing_is_exposed() {
        // CI machines have no NVIDIA driver: starting fails with a reason and
        // registers nothing. (Where a driver is present this checks the
        // opposite: the collector starts and the scrape has the GPU series.)
        let drt = crate::DistributedRuntime::from_config(Default::default()).unwrap();
        let scope = drt.namespace("ns").component("gpu").metrics().clone();
        match start_nvml_collector(&scope) {
            Err(e) => {
                assert!(
                    matches!(e, GpuUnavailable::NoDriver(_) | GpuUnavailable::NoGpu),
                    "{e}"
                );
                assert!(!drt
                    .metrics()
                    .prometheus_metrics_fmt()
                    .unwrap()
                    .contains("DCGM_"));
            }
            Ok(c) => {
                assert!(c.gpus() > 0);
                let text = drt.metrics().prometheus_metrics_fmt().unwrap();
                assert!(text.contains("DCGM_FI_DEV_GPU_UTIL{gpu=\"0\""), "{text}");
            }
        }
    }
}
