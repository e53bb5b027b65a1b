//! Distributions: exact ones (every sample kept) and a fixed-bin histogram for the
//! very many per-segment samples.

/// Every sample of one measure.
#[derive(Clone, Debug, Default)]
pub struct Dist {
    samples: Vec<f64>,
    sorted: bool,
}

/// Summary of a distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// Samples.
    pub n: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Dist {
    /// Adds a sample.
    pub fn add(&mut self, v: f64) {
        self.samples.push(v);
        self.sorted = false;
    }

    /// Samples so far.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.samples.sort_by(f64::total_cmp);
            self.sorted = true;
        }
    }

    /// The samples, ascending.
    pub fn sorted(&mut self) -> &[f64] {
        self.sort();
        &self.samples
    }

    /// Mean, percentiles and maximum.
    pub fn summary(&mut self) -> Summary {
        self.sort();
        let s = &self.samples;
        if s.is_empty() {
            return Summary::default();
        }
        let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
        Summary {
            n: s.len() as u64,
            mean: s.iter().sum::<f64>() / s.len() as f64,
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: s[s.len() - 1],
        }
    }
}

/// A histogram of `bins` bins of width `width` (the last one takes everything above).
#[derive(Clone, Debug)]
pub struct Hist {
    width: f64,
    bins: Vec<u64>,
    n: u64,
    sum: f64,
    max: f64,
}

impl Hist {
    /// An empty histogram.
    pub fn new(width: f64, bins: usize) -> Self {
        Hist {
            width,
            bins: vec![0; bins.max(1)],
            n: 0,
            sum: 0.0,
            max: 0.0,
        }
    }

    /// Adds a sample.
    pub fn add(&mut self, v: f64) {
        let i = ((v / self.width).max(0.0) as usize).min(self.bins.len() - 1);
        self.bins[i] += 1;
        self.n += 1;
        self.sum += v;
        self.max = self.max.max(v);
    }

    fn quantile(&self, p: f64) -> f64 {
        let target = ((self.n.saturating_sub(1)) as f64 * p).round() as u64;
        let mut acc = 0;
        for (i, b) in self.bins.iter().enumerate() {
            acc += b;
            if acc > target {
                return (i as f64 + 0.5) * self.width;
            }
        }
        self.max
    }

    /// Mean, percentiles (to the bin's centre) and maximum.
    pub fn summary(&self) -> Summary {
        if self.n == 0 {
            return Summary::default();
        }
        Summary {
            n: self.n,
            mean: self.sum / self.n as f64,
            p50: self.quantile(0.5),
            p90: self.quantile(0.9),
            p99: self.quantile(0.99),
            max: self.max,
        }
    }

    /// (value, cumulative share) points for a CDF plot.
    pub fn cdf(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        let mut acc = 0;
        for (i, b) in self.bins.iter().enumerate() {
            if *b == 0 {
                continue;
            }
            acc += b;
            out.push((
                (i as f64 + 1.0) * self.width,
                acc as f64 / self.n.max(1) as f64,
            ));
        }
        out
    }
}

/// Control bytes by message kind, counted with the real encoders.
#[derive(Clone, Debug, Default)]
pub struct ControlBytes {
    /// (kind, messages, bytes), in a fixed order.
    pub kinds: Vec<(&'static str, u64, u64)>,
    /// New connections (each probe and each attach opens one).
    pub handshakes: u64,
}

impl ControlBytes {
    /// Counts one message of `kind` of `bytes`.
    pub fn add(&mut self, kind: &'static str, bytes: usize) {
        match self.kinds.iter_mut().find(|k| k.0 == kind) {
            Some(k) => {
                k.1 += 1;
                k.2 += bytes as u64;
            }
            None => self.kinds.push((kind, 1, bytes as u64)),
        }
    }

    /// All message bytes.
    pub fn total(&self) -> u64 {
        self.kinds.iter().map(|k| k.2).sum()
    }
}
