//! Figures, their baselines and ratios: the printed table and the JSON file.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// Which way is better for a figure.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub workload: String,
    pub metric: String,
    pub unit: String,
    pub value: f64,
    /// The same figure for the baseline, when there is one.
    pub baseline: Option<f64>,
    /// `value / baseline`.
    pub ratio: Option<f64>,
    pub better: Better,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Delivery checks of a messaging workload: all must be 0.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delivery {
    pub workload: String,
    pub system: String,
    pub posts: u64,
    pub failed_posts: u64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Delivered to a connection that is not in the message's group.
    pub misdelivered: u64,
    /// Delivered out of `seq` order within a thread, per connection.
    pub out_of_order: u64,
    /// Connections that ended before the bench closed them.
    pub connections_lost: u64,
    /// Why posters stopped early (no ack in time, connection closed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub posters_stopped: Vec<String>,
}

impl Delivery {
    pub fn clean(&self) -> bool {
        self.failed_posts == 0
            && self.lost == 0
            && self.duplicated == 0
            && self.misdelivered == 0
            && self.out_of_order == 0
            && self.connections_lost == 0
    }
}

/// Everything a run found.
#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub mode: String,
    pub machine: Value,
    pub sizes: Value,
    pub figures: Vec<Figure>,
    pub delivery: Vec<Delivery>,
    pub extra: serde_json::Map<String, Value>,
    pub notes: Vec<String>,
    pub errors: Vec<Value>,
    pub elapsed_secs: f64,
}

impl Report {
    pub fn new(mode: &str, sizes: &super::Sizes) -> Self {
        Report {
            tool: concat!("tsunagu-bench ", env!("CARGO_PKG_VERSION")),
            mode: mode.to_owned(),
            machine: machine(),
            sizes: serde_json::to_value(sizes).unwrap_or(Value::Null),
            figures: Vec::new(),
            delivery: Vec::new(),
            extra: Default::default(),
            notes: Vec::new(),
            errors: Vec::new(),
            elapsed_secs: 0.0,
        }
    }

    /// Records a figure and prints it as it comes.
    #[allow(clippy::too_many_arguments)]
    pub fn figure(
        &mut self,
        workload: &str,
        metric: &str,
        unit: &str,
        better: Better,
        value: f64,
        baseline: Option<f64>,
        note: Option<String>,
    ) {
        let ratio = baseline
            .filter(|b| *b != 0.0 && b.is_finite())
            .map(|b| value / b);
        let f = Figure {
            workload: workload.to_owned(),
            metric: metric.to_owned(),
            unit: unit.to_owned(),
            value,
            baseline,
            ratio,
            better,
            note,
        };
        eprintln!("  {}", row(&f));
        self.figures.push(f);
    }

    pub fn delivery(&mut self, d: Delivery) {
        eprintln!(
            "  {} {}: {} posts ({} failed), {} of {} deliveries, lost {}, duplicated {}, misdelivered {}, out of order {}",
            d.workload,
            d.system,
            d.posts,
            d.failed_posts,
            d.delivered,
            d.expected_deliveries,
            d.lost,
            d.duplicated,
            d.misdelivered,
            d.out_of_order
        );
        self.delivery.push(d);
    }

    pub fn extra(&mut self, key: &str, value: Value) {
        self.extra.insert(key.to_owned(), value);
    }

    pub fn note(&mut self, note: String) {
        eprintln!("note: {note}");
        self.notes.push(note);
    }

    pub fn error(&mut self, workload: &str, message: String) {
        self.errors
            .push(serde_json::json!({ "workload": workload, "error": message }));
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn delivery_clean(&self) -> bool {
        self.delivery.iter().all(Delivery::clean)
    }

    /// The table printed at the end.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "\ntsunagu-bench ({} run, {:.0}s)\n",
            self.mode, self.elapsed_secs
        ));
        out.push_str(&format!(
            "{:<8} {:<44} {:>12} {:>12} {:>9}  {}\n",
            "workload", "metric", "tsunagu", "baseline", "ratio", "better"
        ));
        out.push_str(&format!("{}\n", "-".repeat(100)));
        for f in &self.figures {
            out.push_str(&row(f));
            out.push('\n');
        }
        if !self.delivery.is_empty() {
            out.push_str("\ndelivery checks (all must be 0):\n");
            for d in &self.delivery {
                out.push_str(&format!(
                    "  {:<7} {:<9} posts {:>6}  failed {}  delivered {:>7}/{:<7}  lost {}  duplicated {}  misdelivered {}  out-of-order {}  connections lost {}\n",
                    d.workload,
                    d.system,
                    d.posts,
                    d.failed_posts,
                    d.delivered,
                    d.expected_deliveries,
                    d.lost,
                    d.duplicated,
                    d.misdelivered,
                    d.out_of_order,
                    d.connections_lost
                ));
                for why in &d.posters_stopped {
                    out.push_str(&format!("          a poster stopped early: {why}\n"));
                }
            }
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        for e in &self.errors {
            out.push_str(&format!("FAILED: {e}\n"));
        }
        out
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text)?;
        Ok(())
    }
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        "-".to_owned()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn row(f: &Figure) -> String {
    format!(
        "{:<8} {:<44} {:>12} {:>12} {:>9}  {}{}",
        f.workload,
        format!("{} ({})", f.metric, f.unit),
        num(f.value),
        f.baseline.map(num).unwrap_or_else(|| "-".into()),
        f.ratio
            .map(|r| format!("{r:.2}x"))
            .unwrap_or_else(|| "-".into()),
        match f.better {
            Better::Higher => "higher",
            Better::Lower => "lower",
        },
        f.note
            .as_deref()
            .map(|n| format!("  ({n})"))
            .unwrap_or_default()
    )
}

/// What the machine is: cores, memory, CPU model, kernel.
fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned());
    let mem_kib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok());
    serde_json::json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gib": mem_kib.map(|k| (k as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        "cpu": cpu,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}
