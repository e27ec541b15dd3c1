//! Percentiles and rates.

use std::time::Duration;

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    values: Vec<u64>,
    sorted: bool,
}

impl Samples {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, micros: u64) {
        self.values.push(micros);
        self.sorted = false;
    }

    pub fn push_duration(&mut self, d: Duration) {
        self.push(d.as_micros() as u64);
    }

    pub fn extend(&mut self, other: impl IntoIterator<Item = u64>) {
        self.values.extend(other);
        self.sorted = false;
    }

    pub fn merge(&mut self, other: &Samples) {
        self.extend(other.values.iter().copied());
    }

    /// The `p`-th percentile (0–100) in milliseconds, nearest-rank.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.values.is_empty() {
            return f64::NAN;
        }
        if !self.sorted {
            self.values.sort_unstable();
            self.sorted = true;
        }
        let rank = ((p / 100.0) * self.values.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.values.len()) - 1;
        self.values[i] as f64 / 1000.0
    }
}

/// Units per second.
pub fn rate(count: f64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 {
        count / s
    } else {
        f64::NAN
    }
}

/// Mebibytes per second.
pub fn mib_per_sec(bytes: u64, elapsed: Duration) -> f64 {
    rate(bytes as f64 / (1024.0 * 1024.0), elapsed)
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::new();
        s.extend((1..=100).map(|v| v * 1000));
        assert_eq!(s.percentile_ms(50.0), 50.0);
        assert_eq!(s.percentile_ms(99.0), 99.0);
        assert_eq!(s.percentile_ms(100.0), 100.0);
        assert_eq!(s.percentile_ms(0.0), 1.0);
    }
}
