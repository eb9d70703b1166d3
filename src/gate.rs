//! Gates: metrics of a head run, an optional baseline, and the limits from
//! `.flow-ci.yaml` → one verdict per limit. A pure function: no I/O, so
//! every rule is unit-tested and the same inputs always give the same verdict.

use serde::Serialize;
use serde_json::{Map, Value as Json};

use model::config::{Compare, FAILED_LINES, Gate, Threshold};

/// Tolerance for float comparisons against limits (0.1 + 0.2 style noise).
const EPSILON: f64 = 1e-9;

/// Which limit a result checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Min,
    Max,
    MaxDrop,
    MaxRise,
    FailedLines,
    /// The gate names a metric no evaluation logged.
    Missing,
}

/// One limit checked.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GateResult {
    pub metric: String,
    pub check: Check,
    pub head: Option<f64>,
    pub base: Option<f64>,
    /// The limit as configured, e.g. `>= 0.85`, `drop <= 5%`.
    pub limit: String,
    pub passed: bool,
    /// One sentence a reviewer can act on.
    pub explanation: String,
    /// The paired-bootstrap interval of mean(head − base), when computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<(f64, f64)>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Verdict {
    pub results: Vec<GateResult>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.passed)
    }

    pub fn failed(&self) -> impl Iterator<Item = &GateResult> {
        self.results.iter().filter(|r| !r.passed)
    }
}

/// Everything known about one flow's head (and base) runs.
#[derive(Clone, Debug, Default)]
pub struct Evidence<'a> {
    pub head_metrics: Option<&'a Map<String, Json>>,
    pub base_metrics: Option<&'a Map<String, Json>>,
    /// (failed, total) lines of the head batch run.
    pub head_lines: (usize, usize),
    /// Per-line scores aligned by line number, for `significance`: metric → (head, base).
    pub paired: &'a [(String, Vec<f64>, Vec<f64>)],
}

/// Checks every gate. A metric gate whose metric is missing fails; a
/// regression limit without a baseline passes and says why.
pub fn evaluate(gates: &[Gate], evidence: &Evidence<'_>) -> Verdict {
    let mut verdict = Verdict::default();
    for gate in gates {
        if gate.metric.value == FAILED_LINES {
            if let Some(ratio) = gate.max_ratio {
                verdict.results.push(failed_lines(ratio, evidence.head_lines));
            }
            continue;
        }
        let name = gate.metric.value.as_str();
        let head = evidence.head_metrics.and_then(|m| m.get(name)).and_then(number);
        let base = evidence.base_metrics.and_then(|m| m.get(name)).and_then(number);
        let Some(head) = head else {
            verdict.results.push(missing(name, evidence.head_metrics));
            continue;
        };
        let first = verdict.results.len();
        let result = |check, limit: String, passed, explanation: String| GateResult {
            metric: name.to_string(),
            check,
            head: Some(head),
            base,
            limit,
            passed,
            explanation,
            interval: None,
        };
        if let Some(min) = gate.min {
            let passed = head + EPSILON >= min;
            let why = if passed {
                format!("{} is at least {}", fmt(head), fmt(min))
            } else {
                format!("{} is below the minimum {}", fmt(head), fmt(min))
            };
            verdict.results.push(result(Check::Min, format!(">= {}", fmt(min)), passed, why));
        }
        if let Some(max) = gate.max {
            let passed = head <= max + EPSILON;
            let why = if passed {
                format!("{} is at most {}", fmt(head), fmt(max))
            } else {
                format!("{} is above the maximum {}", fmt(head), fmt(max))
            };
            verdict.results.push(result(Check::Max, format!("<= {}", fmt(max)), passed, why));
        }
        let paired = evidence.paired.iter().find(|(m, _, _)| m == name).map(|(_, h, b)| (h.as_slice(), b.as_slice()));
        for (check, threshold) in [(Check::MaxDrop, gate.max_drop), (Check::MaxRise, gate.max_rise)] {
            let Some(threshold) = threshold else { continue };
            let mut r = regression(name, check, threshold, head, base, gate.significance, paired);
            r.head = Some(head);
            verdict.results.push(r);
        }
        if head.is_nan() {
            verdict.results[first..].iter_mut().for_each(|r| not_a_number(r, name));
        }
    }
    verdict
}

/// The name of a parity result in the verdict: `parity: accuracy`.
pub fn parity_name(metric: &str) -> String {
    format!("parity: {metric}")
}

/// How many lines of one output the port and the flow agree on.
#[derive(Clone, Copy, Debug)]
pub struct AgreementCount<'a> {
    pub output: &'a str,
    pub min: f64,
    pub agreed: usize,
    pub total: usize,
}

/// The port against its flow on the same commit (the migration guide's
/// "validate parity" phase as a gate): `gates` with the port's metrics as
/// head and the flow's as base, then the share of agreeing lines. Results
/// are named `parity: <metric>` and `parity: agreement`.
pub fn parity(gates: &[Gate], evidence: &Evidence<'_>, agreement: Option<AgreementCount<'_>>) -> Vec<GateResult> {
    let mut results = evaluate(gates, evidence).results;
    for r in &mut results {
        if r.base.is_none() && matches!(r.check, Check::MaxDrop | Check::MaxRise) {
            r.explanation = format!("the flow logged no `{}` to compare the port with", r.metric);
        }
        r.metric = parity_name(&r.metric);
    }
    if let Some(a) = agreement {
        let share = if a.total == 0 { 0.0 } else { a.agreed as f64 / a.total as f64 };
        let passed = a.total > 0 && share + EPSILON >= a.min;
        let explanation = format!(
            "the port and the flow agree on `{}` in {} of {} lines ({}){}",
            a.output,
            a.agreed,
            a.total,
            percent(share),
            if passed { String::new() } else { format!(", below {}", percent(a.min)) }
        );
        results.push(GateResult {
            metric: parity_name("agreement"),
            check: Check::Min,
            head: Some(share),
            base: None,
            limit: format!(">= {}", percent(a.min)),
            passed,
            explanation,
            interval: None,
        });
    }
    results
}

/// The judge's 1–5 scores of the port's answers against the flow's.
#[derive(Clone, Copy, Debug)]
pub struct Judged {
    pub min: f64,
    /// `None`: no line could be judged.
    pub mean: Option<f64>,
    pub judged: usize,
    pub total: usize,
}

/// `parity: similarity`: the mean judged score at least `min` (the
/// migration guide's parity_check.py fails below 3.5). A line the judge
/// could not score does not count; no scored line at all fails.
pub fn similarity(j: Judged) -> GateResult {
    let passed = j.mean.is_some_and(|m| m + EPSILON >= j.min);
    let explanation = match j.mean {
        Some(mean) => format!(
            "the judge scored the port's answers {mean:.2} of 5 on average against the flow's, over {} of {} lines{}",
            j.judged,
            j.total,
            if passed { String::new() } else { format!(", below {}", j.min) }
        ),
        None => format!("the judge scored none of {} lines (see the parity section)", j.total),
    };
    GateResult {
        metric: parity_name("similarity"),
        check: Check::Min,
        head: j.mean,
        base: None,
        limit: format!(">= {}", j.min),
        passed,
        explanation,
        interval: None,
    }
}

/// Whether two outputs agree: `Exact` compares JSON values as Python
/// would (1 == 1.0); `Normalized` first trims and case-folds strings and
/// parses strings that hold JSON objects or lists (labels, and a model's
/// JSON answer with other spacing).
pub fn same_output(compare: Compare, a: &Json, b: &Json) -> bool {
    match compare {
        Compare::Exact => exec::line::python_eq(a, b),
        Compare::Normalized => exec::line::python_eq(&normalized(a), &normalized(b)),
    }
}

fn normalized(v: &Json) -> Json {
    match v {
        Json::String(s) => {
            let t = s.trim();
            match serde_json::from_str::<Json>(t) {
                Ok(parsed @ (Json::Object(_) | Json::Array(_))) => normalized(&parsed),
                _ => Json::String(t.to_lowercase()),
            }
        }
        Json::Array(items) => Json::Array(items.iter().map(normalized).collect()),
        Json::Object(map) => Json::Object(map.iter().map(|(k, v)| (k.clone(), normalized(v))).collect()),
        other => other.clone(),
    }
}

fn number(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        // A NaN or infinite metric (promptflow keeps them in metrics.json).
        other => exec::nonfinite::as_non_finite(other),
    }
}

/// A NaN metric compares false with everything, so a drop from it would
/// pass silently: every limit on it fails instead, and says why.
fn not_a_number(r: &mut GateResult, name: &str) {
    r.passed = false;
    r.interval = None;
    r.explanation =
        format!("`{name}` is NaN (not a number), so it meets no limit; check how the evaluation computes it");
}

/// Up to 4 decimals, without trailing zeros: 0.85, 0.8333, 12.
pub fn fmt(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

fn failed_lines(max_ratio: f64, (failed, total): (usize, usize)) -> GateResult {
    let ratio = if total == 0 { 1.0 } else { failed as f64 / total as f64 };
    let passed = total > 0 && ratio <= max_ratio + EPSILON;
    let explanation = if total == 0 {
        "the run produced no lines".to_string()
    } else if passed {
        format!("{failed} of {total} lines failed ({}), within {}", percent(ratio), percent(max_ratio))
    } else {
        format!("{failed} of {total} lines failed ({}), more than the allowed {}", percent(ratio), percent(max_ratio))
    };
    GateResult {
        metric: FAILED_LINES.into(),
        check: Check::FailedLines,
        head: Some(ratio),
        base: None,
        limit: format!("<= {}", percent(max_ratio)),
        passed,
        explanation,
        interval: None,
    }
}

fn percent(ratio: f64) -> String {
    format!("{}%", fmt(ratio * 100.0))
}

fn missing(name: &str, logged: Option<&Map<String, Json>>) -> GateResult {
    let names: Vec<&str> = logged.map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    let explanation = if names.is_empty() {
        format!("no evaluation logged `{name}` (no metrics were logged at all; did the evaluation run fail?)")
    } else {
        format!("no evaluation logged `{name}`; logged metrics: {}", names.join(", "))
    };
    GateResult {
        metric: name.into(),
        check: Check::Missing,
        head: None,
        base: None,
        limit: "logged".into(),
        passed: false,
        explanation,
        interval: None,
    }
}

/// `max_drop` / `max_rise` against the baseline, optionally requiring the
/// change to be significant (paired bootstrap) before it fails the gate.
fn regression(
    name: &str,
    check: Check,
    threshold: Threshold,
    head: f64,
    base: Option<f64>,
    significance: Option<f64>,
    paired: Option<(&[f64], &[f64])>,
) -> GateResult {
    let word = if check == Check::MaxDrop { "drop" } else { "rise" };
    let (limit, allowed) = match threshold {
        Threshold::Absolute(t) => (format!("{word} <= {}", fmt(t)), base.map(|_| t)),
        Threshold::Percent(p) => (format!("{word} <= {}%", fmt(p)), base.map(|b| b.abs() * p / 100.0)),
    };
    let mut r = GateResult {
        metric: name.into(),
        check,
        head: Some(head),
        base,
        limit,
        passed: true,
        explanation: String::new(),
        interval: None,
    };
    let (Some(base), Some(allowed)) = (base, allowed) else {
        r.explanation = "no baseline to compare with (a new flow, or `baseline: none`)".into();
        return r;
    };
    let change = if check == Check::MaxDrop { base - head } else { head - base };
    let exceeded = change > allowed + EPSILON;
    r.passed = !exceeded;
    r.explanation = if exceeded {
        format!("{word} of {} from {} to {} exceeds {}", fmt(change), fmt(base), fmt(head), fmt(allowed))
    } else if change > EPSILON {
        format!("{word} of {} from {} to {} is within {}", fmt(change), fmt(base), fmt(head), fmt(allowed))
    } else {
        format!("{} → {}: no {word}", fmt(base), fmt(head))
    };
    if let (true, Some(_), None) = (exceeded, significance, paired) {
        r.explanation.push_str(
            "; significance was not tested: no per-line score was found for this metric \
             (name the evaluation output holding a number or bool per line with `per_line`)",
        );
    }
    if let (true, Some(alpha), Some((h, b))) = (exceeded, significance, paired) {
        let (lo, hi) = bootstrap_interval(h, b, alpha);
        r.interval = Some((lo, hi));
        // Significant when the whole interval of mean(head − base) lies on the bad side of zero.
        let significant = if check == Check::MaxDrop { hi < 0.0 } else { lo > 0.0 };
        let level = fmt((1.0 - alpha) * 100.0);
        if significant {
            r.explanation.push_str(&format!(
                "; significant at {level}% (interval of the per-line change [{}, {}])",
                fmt(lo),
                fmt(hi)
            ));
        } else {
            r.passed = true;
            r.explanation.push_str(&format!(
                ", but it is within noise at {level}% (interval of the per-line change [{}, {}] includes 0)",
                fmt(lo),
                fmt(hi)
            ));
        }
    }
    r
}

/// Resamples for the bootstrap; enough for stable 95 % bounds, cheap for
/// thousands of lines.
const RESAMPLES: usize = 2000;

/// Paired bootstrap interval of mean(head − base) at level 1 − alpha, with a
/// fixed seed so the same runs always give the same verdict.
pub fn bootstrap_interval(head: &[f64], base: &[f64], alpha: f64) -> (f64, f64) {
    let diffs: Vec<f64> = head.iter().zip(base).map(|(h, b)| h - b).collect();
    if diffs.is_empty() {
        return (0.0, 0.0);
    }
    let mut rng = SplitMix64(0x5EED_F10C_1A57_0001);
    let n = diffs.len();
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| (0..n).map(|_| diffs[(rng.next() % n as u64) as usize]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let pick = |q: f64| means[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    (pick(alpha / 2.0), pick(1.0 - alpha / 2.0))
}

/// A small, well-known PRNG: deterministic and dependency-free.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::yaml::{Pos, Spanned};
    use serde_json::json;

    fn gate(metric: &str) -> Gate {
        Gate {
            metric: Spanned::new(metric.into(), Pos::START),
            min: None,
            max: None,
            max_drop: None,
            max_rise: None,
            max_ratio: None,
            significance: None,
            per_line: None,
        }
    }

    fn metrics(v: Json) -> Map<String, Json> {
        v.as_object().cloned().unwrap()
    }

    fn run(gates: &[Gate], head: Json, base: Option<Json>) -> Verdict {
        let head = metrics(head);
        let base = base.map(metrics);
        evaluate(
            gates,
            &Evidence { head_metrics: Some(&head), base_metrics: base.as_ref(), head_lines: (0, 10), paired: &[] },
        )
    }

    #[test]
    fn parity_is_the_port_against_the_flow_and_line_agreement() {
        let g = Gate { max_drop: Some(Threshold::Absolute(0.02)), ..gate("accuracy") };
        let (port, flow) = (metrics(json!({"accuracy": 0.85})), metrics(json!({"accuracy": 0.9})));
        let evidence =
            Evidence { head_metrics: Some(&port), base_metrics: Some(&flow), head_lines: (0, 60), paired: &[] };
        let agreement = AgreementCount { output: "category", min: 0.95, agreed: 54, total: 60 };
        let results = parity(std::slice::from_ref(&g), &evidence, Some(agreement));
        let names: Vec<&str> = results.iter().map(|r| r.metric.as_str()).collect();
        assert_eq!(names, ["parity: accuracy", "parity: agreement"]);
        assert!(!results[0].passed, "a 0.05 drop from the flow");
        assert_eq!((results[0].head, results[0].base), (Some(0.85), Some(0.9)));
        assert!(!results[1].passed);
        assert_eq!(
            results[1].explanation,
            "the port and the flow agree on `category` in 54 of 60 lines (90%), below 95%"
        );
        let all = AgreementCount { agreed: 60, ..agreement };
        assert!(parity(&[], &evidence, Some(all))[0].passed);
        let none = AgreementCount { agreed: 0, total: 0, ..agreement };
        assert!(!parity(&[], &evidence, Some(none))[0].passed, "no lines is not agreement");
        let no_flow_metric = Evidence { base_metrics: None, ..evidence };
        let r = &parity(&[g], &no_flow_metric, None)[0];
        assert_eq!(r.explanation, "the flow logged no `accuracy` to compare the port with");
    }

    #[test]
    fn outputs_agree_exactly_or_as_labels() {
        let n = Compare::Normalized;
        assert!(same_output(n, &json!(" App\n"), &json!("app")));
        assert!(same_output(n, &json!("{\"category\": \"App\"}"), &json!({"category": "app"})));
        assert!(same_output(Compare::Exact, &json!(1), &json!(1.0)));
        assert!(!same_output(Compare::Exact, &json!("App"), &json!("app")));
        assert!(!same_output(n, &json!("App"), &json!("Apps")));
        assert!(!same_output(n, &json!(null), &json!("none")));
    }

    #[test]
    fn floors_and_ceilings() {
        let g = Gate { min: Some(0.85), max: Some(0.99), ..gate("accuracy") };
        let v = run(std::slice::from_ref(&g), json!({"accuracy": 0.9}), None);
        assert!(v.passed());
        let v = run(&[g], json!({"accuracy": 0.8}), None);
        assert!(!v.passed());
        assert_eq!(v.results[0].explanation, "0.8 is below the minimum 0.85");
        assert_eq!(v.results[0].limit, ">= 0.85");
    }

    #[test]
    fn absolute_and_relative_drops() {
        let abs = Gate { max_drop: Some(Threshold::Absolute(0.02)), ..gate("accuracy") };
        assert!(run(std::slice::from_ref(&abs), json!({"accuracy": 0.89}), Some(json!({"accuracy": 0.9}))).passed());
        // 0.9 - 0.88 is 0.02 up to float noise: still within the limit.
        assert!(run(std::slice::from_ref(&abs), json!({"accuracy": 0.88}), Some(json!({"accuracy": 0.9}))).passed());
        let v = run(&[abs], json!({"accuracy": 0.85}), Some(json!({"accuracy": 0.9})));
        assert!(!v.passed());
        assert_eq!(v.results[0].explanation, "drop of 0.05 from 0.9 to 0.85 exceeds 0.02");
        let rel = Gate { max_drop: Some(Threshold::Percent(5.0)), ..gate("f1") };
        assert!(run(std::slice::from_ref(&rel), json!({"f1": 0.77}), Some(json!({"f1": 0.8}))).passed());
        assert!(!run(&[rel], json!({"f1": 0.75}), Some(json!({"f1": 0.8}))).passed());
    }

    #[test]
    fn rises_are_checked_for_lower_is_better_metrics() {
        let g = Gate { max_rise: Some(Threshold::Absolute(0.1)), ..gate("latency") };
        let v = run(&[g], json!({"latency": 1.5}), Some(json!({"latency": 1.2})));
        assert!(!v.passed());
        assert_eq!(v.results[0].check, Check::MaxRise);
    }

    #[test]
    fn regressions_without_a_baseline_pass_and_say_why() {
        let g = Gate { max_drop: Some(Threshold::Absolute(0.0)), ..gate("accuracy") };
        let v = run(&[g], json!({"accuracy": 0.1}), None);
        assert!(v.passed());
        assert!(v.results[0].explanation.contains("no baseline"));
    }

    #[test]
    fn missing_metrics_fail() {
        let v = run(&[Gate { min: Some(0.5), ..gate("acuracy") }], json!({"accuracy": 0.9}), None);
        assert!(!v.passed());
        assert_eq!(v.results[0].check, Check::Missing);
        assert!(v.results[0].explanation.contains("logged metrics: accuracy"));
        let none = evaluate(&[Gate { min: Some(0.5), ..gate("accuracy") }], &Evidence::default());
        assert!(!none.passed(), "a failed evaluation run never passes silently");
    }

    #[test]
    fn failed_line_ratio() {
        let g = Gate { max_ratio: Some(0.1), ..gate(FAILED_LINES) };
        let verdict = |failed, total| {
            evaluate(std::slice::from_ref(&g), &Evidence { head_lines: (failed, total), ..Evidence::default() })
        };
        assert!(verdict(1, 10).passed());
        let v = verdict(3, 10);
        assert!(!v.passed());
        assert_eq!(v.results[0].explanation, "3 of 10 lines failed (30%), more than the allowed 10%");
        assert!(!verdict(0, 0).passed(), "no lines at all is a failure");
    }

    #[test]
    fn significance_keeps_noise_from_failing_a_pr() {
        let g = Gate { max_drop: Some(Threshold::Absolute(0.01)), significance: Some(0.05), ..gate("accuracy") };
        // Noise: three lines get worse, one better: a 0.02 drop, over the 0.01 limit.
        let base: Vec<f64> = (0..100).map(|i| if i % 10 < 9 { 1.0 } else { 0.0 }).collect();
        let mut noisy = base.clone();
        noisy[0] = 0.0;
        noisy[1] = 0.0;
        noisy[2] = 0.0;
        noisy[9] = 1.0;
        let paired = vec![("accuracy".to_string(), noisy.clone(), base.clone())];
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (head, basem) = (metrics(json!({"accuracy": mean(&noisy)})), metrics(json!({"accuracy": mean(&base)})));
        let ev =
            Evidence { head_metrics: Some(&head), base_metrics: Some(&basem), head_lines: (0, 100), paired: &paired };
        let v = evaluate(std::slice::from_ref(&g), &ev);
        assert!(v.passed(), "{:?}", v.results);
        assert!(v.results[0].explanation.contains("within noise"));
        // A real regression: 20 lines go wrong.
        let mut worse = base.clone();
        for x in worse.iter_mut().take(20) {
            *x = 0.0;
        }
        let paired = vec![("accuracy".to_string(), worse.clone(), base.clone())];
        let head = metrics(json!({"accuracy": mean(&worse)}));
        let ev =
            Evidence { head_metrics: Some(&head), base_metrics: Some(&basem), head_lines: (0, 100), paired: &paired };
        let v = evaluate(&[g], &ev);
        assert!(!v.passed());
        let (lo, hi) = v.results[0].interval.unwrap();
        assert!(lo < hi && hi < 0.0, "{lo} {hi}");
    }

    #[test]
    fn significance_without_per_line_scores_says_so() {
        let g = Gate { max_drop: Some(Threshold::Absolute(0.01)), significance: Some(0.05), ..gate("accuracy") };
        let (head, base) = (metrics(json!({"accuracy": 0.5})), metrics(json!({"accuracy": 0.9})));
        let ev = Evidence { head_metrics: Some(&head), base_metrics: Some(&base), head_lines: (0, 10), paired: &[] };
        let v = evaluate(&[g], &ev);
        assert!(!v.passed(), "without scores the plain limit decides");
        assert!(v.results[0].explanation.contains("significance was not tested"), "{}", v.results[0].explanation);
    }

    #[test]
    fn bootstrap_is_deterministic() {
        let h = [1.0, 0.0, 1.0, 1.0, 0.0];
        let b = [1.0, 1.0, 1.0, 0.0, 0.0];
        assert_eq!(bootstrap_interval(&h, &b, 0.05), bootstrap_interval(&h, &b, 0.05));
    }

    #[test]
    fn a_nan_metric_fails_every_limit_and_says_so() {
        let g = Gate { min: Some(0.5), max_drop: Some(Threshold::Absolute(0.1)), ..gate("accuracy") };
        let mut head = Map::new();
        head.insert("accuracy".into(), exec::nonfinite::from_f64(f64::NAN));
        let base = metrics(json!({"accuracy": 0.9}));
        let v = evaluate(
            &[g],
            &Evidence { head_metrics: Some(&head), base_metrics: Some(&base), head_lines: (0, 10), paired: &[] },
        );
        assert_eq!(v.results.len(), 2);
        assert!(!v.passed());
        for r in &v.results {
            assert!(!r.passed, "{r:?}");
            assert!(r.explanation.contains("`accuracy` is NaN"), "{}", r.explanation);
        }
    }

    #[test]
    fn number_formatting() {
        assert_eq!(fmt(0.85), "0.85");
        assert_eq!(fmt(12.0), "12");
        assert_eq!(fmt(1.0 / 3.0), "0.3333");
        assert_eq!(fmt(-0.00001), "0");
    }
}
