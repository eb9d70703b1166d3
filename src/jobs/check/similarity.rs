//! The judged similarity of a port's answers to its flow's: the migration
//! guide's phase 3 (`migration-guide/PromptFlow-to-MAF/phase-3-validate/
//! parity_check.py` scores each line with azure-ai-evaluation's
//! `SimilarityEvaluator`, 1 to 5, and wants a mean of at least 3.5), asked
//! of a configured connection through the LLM client, so the answers are
//! cached and paced like `llm` nodes'.

use std::time::Instant;

use serde_json::{Map, Value as Json, json};

use exec::llm::request::{self, Api, NodeCall};
use exec::llm::{LlmSetup, Usage};
use exec::store::Store;
use model::config::Similarity;

use crate::report::SimilarityReport;

/// azure-ai-evaluation 1.18.10's `similarity.prompty` (MIT), its system and
/// user messages as a promptflow chat template.
const PROMPT: &str = include_str!("similarity.jinja2");

/// The node name the judge's calls carry (errors, cache entries).
const JUDGE: &str = "parity-similarity";

/// Lines shown with their score, lowest first.
const LOWEST_SHOWN: usize = 10;

/// Scores every line both sides answered; lines run a few at a time (the
/// deployment's limit paces them).
pub(super) fn judge(
    limit: &Similarity,
    store: &Store,
    flow_run: &str,
    port_run: Option<&str>,
    total: usize,
    llm: &LlmSetup,
    line_timeout: std::time::Duration,
) -> SimilarityReport {
    let output = limit.output.as_ref().map(|o| o.value.clone());
    let mut report = SimilarityReport { output: output.clone(), total, ..Default::default() };
    let answers = |run| super::flows::outputs_by_line(store, run, |row| answer(row, output.as_deref()));
    let (flow, port) = (answers(Some(flow_run)), answers(port_run));
    let queries: std::collections::HashMap<u64, String> = store
        .details(flow_run)
        .unwrap_or_default()
        .into_iter()
        .map(|l| (l.line_number as u64, Json::Object(l.inputs).to_string()))
        .collect();
    let setup = match (llm.connections.get(&limit.connection.value, JUDGE), llm.client()) {
        (Ok(conn), Ok(client)) => Some((conn, client)),
        (Err(e), _) => {
            report.unjudged.push(e.to_string());
            None
        }
        (_, Err(e)) => {
            report.unjudged.push(e);
            None
        }
    };
    let Some((conn, client)) = setup else { return report };
    let usage = Usage::default();
    let lines: Vec<u64> = (0..total as u64).collect();
    let scores = super::flows::in_parallel(&lines, 8, |line| {
        let (Some(f), Some(p)) = (flow.get(line), port.get(line)) else {
            return Err(format!("line {line}: a side has no answer"));
        };
        let query = queries.get(line).map_or("", String::as_str);
        let call = call(limit, query, f, p);
        let req = request::build(&call, &conn).map_err(|e| format!("line {line}: {}", e.message))?;
        let answer = client
            .complete(JUDGE, &conn, &req, &usage, Instant::now() + line_timeout)
            .map_err(|e| format!("line {line}: {e}"))?;
        score(&answer)
            .map(|s| (*line, s))
            .ok_or_else(|| format!("line {line}: the judge's answer has no score: {answer}"))
    });
    let mut judged: Vec<(u64, f64)> = vec![];
    for result in scores {
        match result {
            Ok(scored) => judged.push(scored),
            Err(why) => report.unjudged.push(why),
        }
    }
    report.judged = judged.len();
    report.mean = (!judged.is_empty()).then(|| judged.iter().map(|(_, s)| s).sum::<f64>() / judged.len() as f64);
    judged.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    report.lowest = judged.into_iter().take(LOWEST_SHOWN).collect();
    let summary = usage.summary();
    (report.requests, report.cache_hits) = (summary.requests, summary.cache_hits);
    report
}

/// A line's answer as the judge reads it: the output's text, or every output as JSON.
fn answer(row: Map<String, Json>, output: Option<&str>) -> Option<String> {
    match output {
        Some(name) => Some(model::value::python_str(row.get(name)?)),
        None => {
            let outputs: Map<String, Json> = row.into_iter().filter(|(k, _)| k != "line_number").collect();
            Some(Json::Object(outputs).to_string())
        }
    }
}

/// The judge's request: the evaluator's parameters (temperature 0, 800
/// tokens, a JSON answer), the flow's answer as the ground truth.
fn call<'a>(limit: &Similarity, query: &str, flow: &str, port: &str) -> NodeCall<'a> {
    let mut kwargs = Map::new();
    kwargs.insert("deployment_name".into(), json!(limit.deployment.value));
    kwargs.insert("model".into(), json!(limit.deployment.value));
    for (k, v) in [("temperature", json!(0.0)), ("max_tokens", json!(800)), ("top_p", json!(1.0))] {
        kwargs.insert(k.into(), v);
    }
    kwargs.insert("response_format".into(), json!({"type": "json_object"}));
    kwargs.insert("query".into(), json!(query));
    kwargs.insert("ground_truth".into(), json!(flow));
    kwargs.insert("response".into(), json!(port));
    NodeCall {
        node: JUDGE,
        template: PROMPT,
        api: Api::Chat,
        kwargs,
        literals: vec![],
        // Model outputs are untrusted: a role line in them stays text.
        inputs_to_escape: vec!["query".into(), "ground_truth".into(), "response".into()],
        prompt_results: vec![],
        vision: None,
    }
}

/// The score of the judge's answer: `{"score": n}` (1–5), as the evaluator
/// asks for, else the first digit 1–5 in the text.
fn score(answer: &Json) -> Option<f64> {
    let text = model::value::python_str(answer);
    let parsed = serde_json::from_str::<Json>(&text).ok();
    let from_json = parsed.as_ref().and_then(|j| j.get("score")).and_then(|s| match s {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    let found = match parsed {
        Some(_) => from_json,
        None => text.chars().find(|c| ('1'..='5').contains(c)).and_then(|c| c.to_digit(10)).map(f64::from),
    };
    found.filter(|s| (1.0..=5.0).contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_come_from_the_json_the_evaluator_asks_for() {
        assert_eq!(score(&json!("{\"reason\": \"same label\", \"score\": 5, \"status\": \"completed\"}")), Some(5.0));
        assert_eq!(score(&json!("{\"score\": \"3\"}")), Some(3.0));
        assert_eq!(score(&json!("stars: 4")), Some(4.0));
        assert_eq!(score(&json!("{\"score\": 9}")), None, "outside the scale");
        assert_eq!(score(&json!("{\"reason\": \"2 outputs empty\", \"score\": null, \"status\": \"skipped\"}")), None);
    }

    #[test]
    fn the_prompt_is_the_evaluators() {
        assert!(PROMPT.starts_with("# system:\nYou are an AI assistant."));
        assert!(
            PROMPT.contains("question: {{query}}\ncorrect answer:{{ground_truth}}\npredicted answer: {{response}}")
        );
    }
}
