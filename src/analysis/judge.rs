//! The statistical judge: is the canary worse than the baseline? Pure: samples in, verdict out.
//!
//! What Argo Rollouts users run Kayenta for, built in, and the two things its judge misses:
//! * **Shift** (Kayenta's test): a one-sided Mann–Whitney U test (normal approximation, tie and
//!   continuity correction) in the bad direction, with the Hodges–Lehmann shift estimate as the
//!   effect, relative to the baseline's median. Regression: p < significance / 2 and the relative
//!   shift beyond `tolerance`.
//! * **Spread**: a rank test does not see a canary that is as good on median but far more erratic.
//!   A one-sided Brown–Forsythe test (Levene's test around the medians, an F test with 1 and N−2
//!   degrees of freedom) on the mean absolute deviation from the median. Regression (High, in either
//!   direction): p < significance / 2 and the canary's spread at least [`SPREAD_RATIO`] times the
//!   baseline's. The two tests on one set of samples share the significance (Bonferroni).
//! * **Proportions**: sparse error counts are mostly zeros, so ranks and medians do not move (a
//!   Hodges–Lehmann shift of 0 for 0/1000 against 6/1000). With totals, events/trials of the two
//!   sides are compared: Fisher's exact test when an expected cell count is below
//!   [`FISHER_BELOW_EXPECTED`], else the pooled two-proportion z test. Regression: p <
//!   significance and the relative change in the proportion beyond `tolerance`.
//!
//! Fewer than `minSamples` samples (or trials) on a side is NoData: no data is never success.
//! The verdict names the direction of the regression: High (canary higher, or more spread out) or
//! Low (canary lower); a change in the allowed direction is Pass.

use statrs::distribution::{ContinuousCDF, DiscreteCDF, FisherSnedecor, Hypergeometric, Normal};

use crate::api::{JudgeDirection, MetricJudge};

pub const DEFAULT_TOLERANCE: f64 = 0.1;
pub const DEFAULT_SIGNIFICANCE: f64 = 0.05;
pub const DEFAULT_MIN_SAMPLES: usize = 10;
/// The canary's spread (mean absolute deviation from its median) must be at least this many times
/// the baseline's before a significant difference in spread is a regression.
pub const SPREAD_RATIO: f64 = 2.0;
/// Below this expected count in any cell of the 2×2 table, Fisher's exact test replaces the z test.
pub const FISHER_BELOW_EXPECTED: f64 = 5.0;
/// The Hodges–Lehmann estimate uses at most this many samples per side (evenly spaced quantiles),
/// so at most 4 million pairwise differences.
pub const MAX_SAMPLES_FOR_SHIFT: usize = 2000;

/// The outcome of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No regression beyond the tolerance with the required significance.
    Pass,
    /// The canary is higher (or more spread out) than allowed.
    High,
    /// The canary is lower than allowed.
    Low,
    /// Too few samples on a side to say.
    NoData,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "Pass",
            Self::High => "High",
            Self::Low => "Low",
            Self::NoData => "NoData",
        }
    }
}

/// The test that decided a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Shift,
    Spread,
    Proportion,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shift => "shift",
            Self::Spread => "spread",
            Self::Proportion => "proportion",
        }
    }
}

/// A verdict with the numbers behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    /// The test that decided: the failing one, or for a Pass the primary one (shift or proportion).
    pub check: Option<Check>,
    /// That test's one-sided p-value.
    pub p_value: Option<f64>,
    /// That test's effect: relative shift or change in proportion (0.25 = 25% higher), or the
    /// spread ratio. Infinite when the baseline's is 0 and the canary's is not.
    pub effect: Option<f64>,
    /// For a person: every test's figures and the sample counts.
    pub message: String,
}

impl Judgement {
    fn no_data(message: String) -> Self {
        Self { verdict: Verdict::NoData, check: None, p_value: None, effect: None, message }
    }

    /// The value conditions see: `{"verdict": "High", "check": "shift", "pValue": …, "effect": …,
    /// "message": …}` (an infinite effect is null).
    pub fn to_json(&self) -> serde_json::Value {
        let finite = |x: Option<f64>| x.filter(|x| x.is_finite());
        serde_json::json!({
            "verdict": self.verdict.as_str(),
            "check": self.check.map(Check::as_str),
            "pValue": finite(self.p_value),
            "effect": finite(self.effect),
            "message": self.message,
        })
    }
}

/// The judge's settings, defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub direction: JudgeDirection,
    pub tolerance: f64,
    pub significance: f64,
    pub min_samples: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            direction: JudgeDirection::Increase,
            tolerance: DEFAULT_TOLERANCE,
            significance: DEFAULT_SIGNIFICANCE,
            min_samples: DEFAULT_MIN_SAMPLES,
        }
    }
}

impl Settings {
    pub fn of(judge: &MetricJudge) -> Self {
        Self {
            direction: judge.direction,
            tolerance: judge.tolerance.filter(|t| t.is_finite() && *t >= 0.0).unwrap_or(DEFAULT_TOLERANCE),
            significance: judge.significance.filter(|s| *s > 0.0 && *s < 1.0).unwrap_or(DEFAULT_SIGNIFICANCE),
            min_samples: judge.min_samples.map_or(DEFAULT_MIN_SAMPLES, |n| usize::try_from(n.max(1)).unwrap_or(1)),
        }
    }
}

/// Compares two sets of samples (values such as latencies or rates): shift, then spread.
/// Non-finite samples (NaN from a division by zero) are left out.
pub fn compare(baseline: &[f64], canary: &[f64], settings: &Settings) -> Judgement {
    let baseline: Vec<f64> = sorted_finite(baseline);
    let canary: Vec<f64> = sorted_finite(canary);
    let counts = format!("{} baseline and {} canary samples", baseline.len(), canary.len());
    if baseline.len() < settings.min_samples || canary.len() < settings.min_samples {
        return Judgement::no_data(format!("{counts}; the judge needs at least {} on each side", settings.min_samples));
    }
    let alpha = settings.significance / 2.0;

    let (p_greater, p_less) = mann_whitney(&baseline, &canary);
    let shift = hodges_lehmann(&baseline, &canary);
    let shift_effect = relative(shift, median(&baseline));
    let (shift_p, shift_verdict) = match settings.direction {
        JudgeDirection::Increase => (p_greater, Verdict::High),
        JudgeDirection::Decrease => (p_less, Verdict::Low),
    };
    let shift_bad = shift_p < alpha
        && match settings.direction {
            JudgeDirection::Increase => shift_effect > settings.tolerance,
            JudgeDirection::Decrease => shift_effect < -settings.tolerance,
        };

    let (spread_p, spread_ratio) = brown_forsythe(&baseline, &canary);
    let spread_bad = spread_p < alpha && spread_ratio >= SPREAD_RATIO;

    let message = format!(
        "shift {} (Hodges–Lehmann {shift:+.4}, Mann–Whitney p={shift_p:.2e}); spread ×{} (Brown–Forsythe p={spread_p:.2e}); {counts}; \
         tolerance {}, significance {} per test, spread limit ×{SPREAD_RATIO}",
        percent(shift_effect),
        ratio(spread_ratio),
        settings.tolerance,
        alpha,
    );
    let (verdict, check, p_value, effect) = if shift_bad {
        (shift_verdict, Check::Shift, shift_p, shift_effect)
    } else if spread_bad {
        (Verdict::High, Check::Spread, spread_p, spread_ratio)
    } else {
        (Verdict::Pass, Check::Shift, shift_p, shift_effect)
    };
    Judgement { verdict, check: Some(check), p_value: Some(p_value), effect: Some(effect), message }
}

/// Events out of trials on one side, such as errors out of requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Counts {
    pub events: f64,
    pub trials: f64,
}

/// Compares event proportions (errors per request): Fisher's exact test for small counts, else
/// the two-proportion z test.
pub fn compare_proportions(baseline: Counts, canary: Counts, settings: &Settings) -> Judgement {
    let counts = format!("baseline {}/{}, canary {}/{}", baseline.events, baseline.trials, canary.events, canary.trials);
    for side in [baseline, canary] {
        let valid = side.events.is_finite() && side.trials.is_finite() && side.events >= 0.0 && side.events <= side.trials;
        if !valid {
            return Judgement::no_data(format!("{counts}: events must be between 0 and the trials"));
        }
    }
    let min = settings.min_samples as f64;
    if baseline.trials < min || canary.trials < min {
        return Judgement::no_data(format!("{counts}; the judge needs at least {} trials on each side", settings.min_samples));
    }
    let (pb, pc) = (baseline.events / baseline.trials, canary.events / canary.trials);
    let pooled = (baseline.events + canary.events) / (baseline.trials + canary.trials);
    let expected = [baseline.trials, canary.trials].iter().flat_map(|n| [n * pooled, n * (1.0 - pooled)]).fold(f64::INFINITY, f64::min);
    let (method, p_greater, p_less) = if expected < FISHER_BELOW_EXPECTED {
        let (g, l) = fisher(baseline, canary);
        ("Fisher's exact test", g, l)
    } else {
        let (g, l) = two_proportion_z(baseline, canary, pooled);
        ("two-proportion z test", g, l)
    };
    let effect = relative(pc - pb, pb);
    let (p_value, bad_verdict, bad) = match settings.direction {
        JudgeDirection::Increase => (p_greater, Verdict::High, effect > settings.tolerance),
        JudgeDirection::Decrease => (p_less, Verdict::Low, effect < -settings.tolerance),
    };
    let verdict = if bad && p_value < settings.significance { bad_verdict } else { Verdict::Pass };
    let message = format!(
        "proportion {} ({:.4}% against {:.4}%, {method} p={p_value:.2e}); {counts}; tolerance {}, significance {}",
        percent(effect),
        pc * 100.0,
        pb * 100.0,
        settings.tolerance,
        settings.significance,
    );
    Judgement { verdict, check: Some(Check::Proportion), p_value: Some(p_value), effect: Some(effect), message }
}

fn sorted_finite(values: &[f64]) -> Vec<f64> {
    let mut out: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    out.sort_by(f64::total_cmp);
    out
}

/// `change` relative to `base`; infinite when the base is 0 and the change is not.
fn relative(change: f64, base: f64) -> f64 {
    if change == 0.0 {
        0.0
    } else if base == 0.0 {
        f64::INFINITY.copysign(change)
    } else {
        change / base.abs()
    }
}

fn percent(effect: f64) -> String {
    if effect.is_finite() {
        format!("{:+.1}%", effect * 100.0)
    } else {
        format!("{}∞ (baseline 0)", if effect > 0.0 { "+" } else { "-" })
    }
}

fn ratio(r: f64) -> String {
    if r.is_finite() { format!("{r:.2}") } else { "∞ (baseline constant)".into() }
}

fn standard_normal() -> Normal {
    Normal::new(0.0, 1.0).expect("the standard normal distribution exists")
}

/// The median of sorted values.
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 }
}

/// One-sided p-values that the canary tends to be greater / less than the baseline.
/// Normal approximation of U with the tie correction of its variance and a continuity correction.
fn mann_whitney(baseline: &[f64], canary: &[f64]) -> (f64, f64) {
    let (nb, nc) = (baseline.len() as f64, canary.len() as f64);
    let mut all: Vec<(f64, bool)> = baseline.iter().map(|v| (*v, false)).chain(canary.iter().map(|v| (*v, true))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut canary_rank_sum, mut tie_term) = (0.0, 0.0);
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let tied = (j - i + 1) as f64;
        tie_term += tied * tied * tied - tied;
        canary_rank_sum += rank * all[i..=j].iter().filter(|(_, is_canary)| *is_canary).count() as f64;
        i = j + 1;
    }
    let n = nb + nc;
    let u = canary_rank_sum - nc * (nc + 1.0) / 2.0;
    let mean = nb * nc / 2.0;
    let variance = nb * nc / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if variance <= 0.0 {
        return (1.0, 1.0);
    }
    let sd = variance.sqrt();
    let normal = standard_normal();
    let greater = normal.sf((u - mean - 0.5) / sd);
    let less = normal.cdf((u - mean + 0.5) / sd);
    (greater.min(1.0), less.min(1.0))
}

/// The median of all canary − baseline differences (on evenly spaced quantiles past
/// [`MAX_SAMPLES_FOR_SHIFT`] per side).
fn hodges_lehmann(baseline: &[f64], canary: &[f64]) -> f64 {
    let (b, c) = (thin(baseline), thin(canary));
    let mut differences: Vec<f64> = c.iter().flat_map(|y| b.iter().map(move |x| y - x)).collect();
    let n = differences.len();
    let (_, upper, _) = differences.select_nth_unstable_by(n / 2, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return upper;
    }
    let lower = differences[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lower + upper) / 2.0
}

fn thin(sorted: &[f64]) -> Vec<f64> {
    if sorted.len() <= MAX_SAMPLES_FOR_SHIFT {
        return sorted.to_vec();
    }
    (0..MAX_SAMPLES_FOR_SHIFT).map(|i| sorted[i * sorted.len() / MAX_SAMPLES_FOR_SHIFT]).collect()
}

/// One-sided p-value that the canary is more spread out than the baseline, and the ratio of their
/// mean absolute deviations from the median.
fn brown_forsythe(baseline: &[f64], canary: &[f64]) -> (f64, f64) {
    let deviations = |sorted: &[f64]| {
        let m = median(sorted);
        sorted.iter().map(|v| (v - m).abs()).collect::<Vec<f64>>()
    };
    let (zb, zc) = (deviations(baseline), deviations(canary));
    let mean = |z: &[f64]| z.iter().sum::<f64>() / z.len() as f64;
    let (mb, mc) = (mean(&zb), mean(&zc));
    let (nb, nc) = (zb.len() as f64, zc.len() as f64);
    let grand = (mb * nb + mc * nc) / (nb + nc);
    let between = nb * (mb - grand).powi(2) + nc * (mc - grand).powi(2);
    let within: f64 = zb.iter().map(|z| (z - mb).powi(2)).sum::<f64>() + zc.iter().map(|z| (z - mc).powi(2)).sum::<f64>();
    let spread_ratio = if mb == 0.0 { if mc == 0.0 { 1.0 } else { f64::INFINITY } } else { mc / mb };
    let two_sided = if within == 0.0 {
        if between == 0.0 { 1.0 } else { 0.0 }
    } else {
        let degrees = nb + nc - 2.0;
        let f = between / (within / degrees);
        FisherSnedecor::new(1.0, degrees).map(|d| d.sf(f)).unwrap_or(1.0)
    };
    // With two groups F = t², so the one-sided p-value is half the two-sided one on the observed side.
    let p = if mc > mb { two_sided / 2.0 } else { 1.0 - two_sided / 2.0 };
    (p, spread_ratio)
}

/// One-sided p-values (canary proportion greater / less) from the pooled two-proportion z test.
fn two_proportion_z(baseline: Counts, canary: Counts, pooled: f64) -> (f64, f64) {
    let se = (pooled * (1.0 - pooled) * (1.0 / baseline.trials + 1.0 / canary.trials)).sqrt();
    if se == 0.0 || !se.is_finite() {
        return (1.0, 1.0);
    }
    let z = (canary.events / canary.trials - baseline.events / baseline.trials) / se;
    let normal = standard_normal();
    (normal.sf(z), normal.cdf(z))
}

/// One-sided p-values of Fisher's exact test: the canary's events as a draw of its trials from
/// all trials, hypergeometric given the total events. Counts are rounded to whole numbers.
fn fisher(baseline: Counts, canary: Counts) -> (f64, f64) {
    let whole = |x: f64| x.round().max(0.0) as u64;
    let (eb, nb, ec, nc) = (whole(baseline.events), whole(baseline.trials), whole(canary.events), whole(canary.trials));
    let Ok(distribution) = Hypergeometric::new(nb + nc, eb + ec, nc) else {
        return (1.0, 1.0);
    };
    let greater = if ec == 0 { 1.0 } else { distribution.sf(ec - 1) };
    let less = distribution.cdf(ec);
    (greater.min(1.0), less.min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded generator (SplitMix64) with normal samples by Box–Muller: deterministic everywhere.
    struct Samples(u64);

    impl Samples {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        fn normal(&mut self, mean: f64, sd: f64, n: usize) -> Vec<f64> {
            (0..n)
                .map(|_| {
                    let (u1, u2) = (self.uniform(), self.uniform());
                    mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
                })
                .collect()
        }
    }

    fn latency() -> Settings {
        Settings::default()
    }

    fn success_rate() -> Settings {
        Settings { direction: JudgeDirection::Decrease, ..Settings::default() }
    }

    #[test]
    fn a_clear_regression_is_high() {
        let mut rng = Samples(1);
        let baseline = rng.normal(100.0, 10.0, 60);
        let canary = rng.normal(130.0, 10.0, 60);
        let judgement = compare(&baseline, &canary, &latency());
        assert_eq!(judgement.verdict, Verdict::High, "{}", judgement.message);
        assert_eq!(judgement.check, Some(Check::Shift));
        assert!(judgement.p_value.unwrap() < 1e-6, "{judgement:?}");
        let effect = judgement.effect.unwrap();
        assert!((0.2..0.4).contains(&effect), "about 30% higher: {effect}");
    }

    #[test]
    fn a_drop_where_lower_is_bad_is_low() {
        let mut rng = Samples(2);
        let baseline = rng.normal(0.99, 0.002, 60);
        let canary = rng.normal(0.80, 0.002, 60);
        assert_eq!(compare(&baseline, &canary, &success_rate()).verdict, Verdict::Low);
    }

    #[test]
    fn an_improvement_in_the_allowed_direction_passes() {
        let mut rng = Samples(3);
        let baseline = rng.normal(100.0, 10.0, 60);
        let faster = rng.normal(70.0, 10.0, 60);
        let judgement = compare(&baseline, &faster, &latency());
        assert_eq!(judgement.verdict, Verdict::Pass, "{}", judgement.message);
        assert!(judgement.effect.unwrap() < -0.2, "{judgement:?}");
        let higher_success = rng.normal(0.999, 0.0005, 60);
        let lower_success = rng.normal(0.990, 0.0005, 60);
        assert_eq!(compare(&lower_success, &higher_success, &success_rate()).verdict, Verdict::Pass);
    }

    #[test]
    fn equal_versions_pass() {
        for seed in 10..20 {
            let mut rng = Samples(seed);
            let baseline = rng.normal(100.0, 10.0, 60);
            let canary = rng.normal(100.0, 10.0, 60);
            let judgement = compare(&baseline, &canary, &latency());
            assert_eq!(judgement.verdict, Verdict::Pass, "seed {seed}: {}", judgement.message);
        }
    }

    #[test]
    fn a_small_significant_shift_within_tolerance_passes() {
        let mut rng = Samples(4);
        let baseline = rng.normal(100.0, 1.0, 500);
        let canary = rng.normal(105.0, 1.0, 500);
        let judgement = compare(&baseline, &canary, &latency());
        assert!(judgement.p_value.unwrap() < 1e-6, "the shift is real");
        assert_eq!(judgement.verdict, Verdict::Pass, "but 5% is within the 10% tolerance: {}", judgement.message);
    }

    #[test]
    fn a_variance_blow_up_with_equal_medians_is_high() {
        let mut rng = Samples(5);
        let baseline = rng.normal(100.0, 5.0, 120);
        let canary = rng.normal(100.0, 25.0, 120);
        let judgement = compare(&baseline, &canary, &latency());
        assert_eq!(judgement.verdict, Verdict::High, "{}", judgement.message);
        assert_eq!(judgement.check, Some(Check::Spread));
        assert!(judgement.effect.unwrap() > 3.0, "{judgement:?}");
        // Where lower is bad too: erratic is bad either way.
        assert_eq!(compare(&baseline, &canary, &success_rate()).verdict, Verdict::High);
        // A steadier canary is fine.
        assert_eq!(compare(&canary, &baseline, &latency()).verdict, Verdict::Pass);
    }

    #[test]
    fn sparse_errors_are_compared_as_proportions() {
        let baseline = Counts { events: 0.0, trials: 1000.0 };
        let canary = Counts { events: 6.0, trials: 1000.0 };
        let judgement = compare_proportions(baseline, canary, &latency());
        assert_eq!(judgement.verdict, Verdict::High, "{}", judgement.message);
        assert!(judgement.message.contains("Fisher"), "{}", judgement.message);
        // C(1000,6) / C(2000,6): the six errors all on the canary's side.
        assert!((judgement.p_value.unwrap() - 0.01544).abs() < 1e-4, "{judgement:?}");

        // The same counts as per-request samples: the median shift a rank judge reports is 0.
        let as_samples = |errors: usize| (0..1000).map(|i| if i < errors { 1.0 } else { 0.0 }).collect::<Vec<f64>>();
        assert_eq!(hodges_lehmann(&as_samples(0), &as_samples(6)), 0.0);

        let noise = compare_proportions(Counts { events: 1.0, trials: 1000.0 }, Counts { events: 2.0, trials: 1000.0 }, &latency());
        assert_eq!(noise.verdict, Verdict::Pass, "{}", noise.message);
        let fewer = compare_proportions(canary, baseline, &latency());
        assert_eq!(fewer.verdict, Verdict::Pass, "fewer errors: {}", fewer.message);
    }

    #[test]
    fn large_counts_use_the_z_test() {
        let baseline = Counts { events: 100.0, trials: 10_000.0 };
        let canary = Counts { events: 160.0, trials: 10_000.0 };
        let judgement = compare_proportions(baseline, canary, &latency());
        assert_eq!(judgement.verdict, Verdict::High, "{}", judgement.message);
        assert!(judgement.message.contains("z test"), "{}", judgement.message);
        assert!((judgement.effect.unwrap() - 0.6).abs() < 1e-9);
        let within = compare_proportions(baseline, Counts { events: 105.0, trials: 10_000.0 }, &latency());
        assert_eq!(within.verdict, Verdict::Pass, "{}", within.message);
    }

    #[test]
    fn empty_or_too_few_samples_is_no_data() {
        assert_eq!(compare(&[], &[], &latency()).verdict, Verdict::NoData);
        let judgement = compare(&[1.0; 9], &[f64::NAN; 40], &latency());
        assert_eq!(judgement.verdict, Verdict::NoData);
        assert!(judgement.message.contains("9 baseline and 0 canary samples"), "{}", judgement.message);
        let counts = compare_proportions(Counts { events: 0.0, trials: 0.0 }, Counts { events: 0.0, trials: 0.0 }, &latency());
        assert_eq!(counts.verdict, Verdict::NoData);
        assert_eq!(counts.to_json()["verdict"], "NoData");
    }

    #[test]
    fn identical_constant_samples_pass() {
        let judgement = compare(&[5.0; 20], &[5.0; 20], &latency());
        assert_eq!(judgement.verdict, Verdict::Pass, "{}", judgement.message);
        assert_eq!(judgement.p_value, Some(1.0));
    }

    #[test]
    fn the_value_conditions_see() {
        let mut rng = Samples(6);
        let judgement = compare(&rng.normal(100.0, 10.0, 30), &rng.normal(150.0, 10.0, 30), &latency());
        let json = judgement.to_json();
        assert_eq!(json["verdict"], "High");
        assert_eq!(json["check"], "shift");
        assert!(json["pValue"].as_f64().unwrap() < 0.001);
        assert!(json["message"].as_str().unwrap().contains("Mann–Whitney"));
        let value = crate::analysis::condition::MeasuredValue::Json(json);
        let phase = crate::analysis::condition::judge(Some("result.verdict == 'Pass'"), None, &value);
        assert_eq!(phase, Ok(crate::api::AnalysisPhase::Failed));
        let infinite = compare_proportions(Counts { events: 0.0, trials: 1000.0 }, Counts { events: 6.0, trials: 1000.0 }, &latency());
        assert!(infinite.to_json()["effect"].is_null());
    }

    #[test]
    fn the_tests_match_an_independent_computation_with_ties() {
        // Computed separately (average ranks, tie-corrected variance 172.5, U = 81, z = 2.3222).
        let baseline = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 6.0, 7.0];
        let canary = [3.0, 4.0, 5.0, 6.0, 6.0, 7.0, 8.0, 8.0, 9.0, 10.0];
        let (greater, _) = mann_whitney(&baseline, &canary);
        assert!((greater - 0.010_110_268_814).abs() < 1e-9, "{greater}");
        assert_eq!(hodges_lehmann(&baseline, &canary), 3.0);
        // F = 0.15652 with 1 and 18 degrees of freedom: two-sided p ≈ 0.697, halved on the canary's side.
        let (spread_p, ratio) = brown_forsythe(&baseline, &canary);
        assert!((ratio - 1.8 / 1.6).abs() < 1e-12, "{ratio}");
        assert!((spread_p - 0.3484).abs() < 0.002, "{spread_p}");
    }

    #[test]
    fn mann_whitney_matches_a_hand_computed_case() {
        // Baseline 1..=5, canary 6..=10: U = 25, mean 12.5, sd sqrt(25*11/12) = 4.787.
        let (greater, less) = mann_whitney(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]);
        let z: f64 = (25.0 - 12.5 - 0.5) / (25.0_f64 * 11.0 / 12.0).sqrt();
        assert!((greater - standard_normal().sf(z)).abs() < 1e-12);
        assert!(less > 0.99);
        assert_eq!(hodges_lehmann(&[1.0, 2.0, 3.0], &[11.0, 12.0, 13.0]), 10.0);
    }
}
