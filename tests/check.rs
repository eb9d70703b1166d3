//! `flow-ci check` on a git repository made from the example flows: a PR that
//! improves a flow, one that regresses it, a broken flow, a flaky flow, a
//! shared-code change, and a dry run.

mod support;
use support::repo::Pr;

/// The commits a report names differ in every throwaway repository.
fn commit_filters() -> Vec<(&'static str, &'static str)> {
    vec![(r"`[0-9a-f]{12}`", "`[commit]`")]
}

#[test]
fn an_improved_prompt_passes_and_shows_the_rise() {
    let pr = Pr::new();
    pr.improve_accuracy().commit();
    let (code, stdout, stderr) = pr.check(&["--base", "main"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let md = pr.read(".flow-ci/report/report.md");
    insta::with_settings!({ filters => commit_filters() }, { insta::assert_snapshot!("improved_report_md", md) });
    assert!(md.contains("▲ +0.0167"), "{md}");
    assert!(stdout.contains("PASSED"), "{stdout}");
}

#[test]
fn a_regression_beyond_max_drop_fails_with_an_explanation() {
    let pr = Pr::new();
    pr.regress_accuracy().commit();
    let (code, stdout, stderr) = pr.check(&["--base", "main"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let md = pr.read(".flow-ci/report/report.md");
    insta::with_settings!({ filters => commit_filters() }, { insta::assert_snapshot!("regressed_report_md", md) });
    assert!(md.contains("❌"), "{md}");
    let junit = pr.read(".flow-ci/report/junit.xml");
    insta::assert_snapshot!("regressed_junit_xml", junit);
    insta::assert_snapshot!("regressed_console", stdout);
    let report: serde_json::Value = serde_json::from_str(&pr.read(".flow-ci/report/report.json")).unwrap();
    assert_eq!(report["passed"], false);
}

#[test]
fn a_broken_flow_is_an_input_error_with_its_position() {
    let pr = Pr::new();
    pr.edit(
        "flows/support-router/flow.dag.yaml",
        "${detect_intent.output}\n    is: billing",
        "${detect_intnet.output}\n    is: billing",
    )
    .commit();
    let (code, _, stderr) = pr.check(&["--base", "main"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("flows/support-router/flow.dag.yaml:34:11: error: node `billing` references a non-existent node `detect_intnet`"), "{stderr}");
}

#[test]
fn too_many_failed_lines_trip_the_gate() {
    let pr = Pr::new();
    pr.edit(
        "flows/flaky-parser/parse_order.py",
        "if \"lines\" not in order:",
        "if \"lines\" not in order or not order[\"lines\"]:",
    )
    .commit();
    let (code, stdout, stderr) = pr.check(&["--base", "main"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("4 of 12 lines failed (33.3333%), more than the allowed 30%"), "{stdout}");
}

#[test]
fn a_shared_code_change_runs_only_the_flows_using_it() {
    let pr = Pr::new();
    pr.edit("flows/common/text_utils.py", "\"\"\"Text helpers", "\"\"\"Text helpers (shared)").commit();
    let (code, stdout, stderr) = pr.check(&["--base", "main"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("flows/web-classification (include changed)"), "{stdout}");
    assert!(stdout.contains("flows/support-router (include changed)"), "{stdout}");
    assert!(stdout.contains("flows/flaky-parser: skipped (not changed)"), "{stdout}");
    assert!(!pr.dir.path().join(".flow-ci/runs/check-flows-flaky-parser").exists());
}

#[test]
fn a_connection_defined_nowhere_is_invalid_input_before_anything_runs() {
    let pr = Pr::new();
    let config = pr.read(".flow-ci.yaml");
    let cut = config.find("connections:").unwrap();
    let end = config[cut..].find("\n\n").map_or(config.len(), |e| cut + e);
    pr.write(".flow-ci.yaml", &format!("{}{}", &config[..cut], &config[end..]));
    for args in [&["--all", "--dry-run"][..], &["--all"][..]] {
        let (code, stdout, stderr) = pr.check(args);
        assert_eq!(code, Some(2), "{args:?}\n{stdout}{stderr}");
        assert!(
            stderr.contains("flows/support-triage/flow.dag.yaml:31:15: error: connection `aoai` used by node `triage` is not defined"),
            "{stderr}"
        );
        assert!(stderr.contains("[connection-undefined]") && stderr.contains("nothing was run"), "{stderr}");
        assert!(!pr.dir.path().join(".flow-ci/runs").exists(), "nothing ran");
    }
}

#[test]
fn a_dry_run_plans_and_writes_nothing() {
    let pr = Pr::new();
    let (code, stdout, stderr) = pr.check(&["--all", "--dry-run"]);
    assert_eq!(code, Some(0), "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(plan["flows"].as_array().unwrap().len(), 4);
    assert_eq!(plan["flows"][0]["evaluations"][0], "flows/eval-accuracy/run.yml");
    assert!(stderr.contains("evaluation: flows/eval-accuracy/run.yml"), "{stderr}");
    assert!(
        !pr.dir.path().join(".flow-ci/runs").exists() && !pr.dir.path().join(".flow-ci/report").exists(),
        "nothing written"
    );
}

/// The accuracy evaluation also outputs `correct` (a bool per line), and the
/// accuracy gate asks whether a drop is significant at level `alpha`. The
/// gate names the output: the evidence evaluation has a bool output too.
fn with_per_line_scores(pr: &Pr, alpha: &str) {
    pr.on_main(|pr| {
        pr.write(
            "flows/eval-accuracy/score.py",
            "from promptflow.core import tool\n\n\n@tool\ndef score(grade: str) -> bool:\n    return grade == \"Correct\"\n",
        )
        .edit(
            "flows/eval-accuracy/flow.dag.yaml",
            "nodes:\n",
            "  correct:\n    type: bool\n    reference: ${score.output}\nnodes:\n- name: score\n  type: python\n  source:\n    type: code\n    path: score.py\n  inputs:\n    grade: ${grade.output}\n",
        )
        .edit(".flow-ci.yaml", "accuracy: { min: 0.8, max_drop: 0.02 }", &format!("accuracy: {{ min: 0.5, max_drop: 0.02, significance: {alpha}, per_line: correct }}"));
    });
}

#[test]
fn a_drop_within_noise_passes_with_its_interval() {
    let pr = Pr::new();
    with_per_line_scores(&pr, "0.05");
    pr.regress_accuracy().commit();
    // 3 of 30 lines go wrong: a 0.1 drop, over max_drop, but a 95% interval
    // of the per-line change reaches 0 (no wrong line in 4% of resamples).
    let (code, stdout, stderr) = pr.check(&["--base", "main"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&pr.read(".flow-ci/report/report.json")).unwrap();
    let drop = &report["flows"][0]["verdict"]["results"][1];
    assert_eq!(drop["check"], "max_drop", "{drop}");
    assert!(drop["explanation"].as_str().unwrap().contains("within noise at 95%"), "{drop}");
    let (lo, hi) = (drop["interval"][0].as_f64().unwrap(), drop["interval"][1].as_f64().unwrap());
    assert!(lo < 0.0 && hi.abs() < 1e-9, "interval [{lo}, {hi}]");
}

#[test]
fn a_significant_drop_fails() {
    let pr = Pr::new();
    with_per_line_scores(&pr, "0.2");
    pr.regress_accuracy().commit();
    let (code, stdout, stderr) = pr.check(&["--base", "main"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(pr.read(".flow-ci/report/report.md").contains("significant at 80%"), "{stdout}");
}

#[test]
fn without_a_config_flows_and_evaluations_are_found_by_convention() {
    let pr = Pr::new();
    std::fs::remove_file(pr.dir.path().join(".flow-ci.yaml")).unwrap();
    // Without the config's `connections:`, support-triage's `aoai` comes from the environment.
    let mut cmd = pr.command();
    cmd.args(["check", "--all", "--dry-run"]).env("AZURE_OPENAI_ENDPOINT", "https://example.openai.azure.com");
    let (code, stdout, stderr) = support::repo::run(&mut cmd);
    assert_eq!(code, Some(0), "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let paths: Vec<&str> = plan["flows"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    // The evaluation flows' own run files evaluate a batch run: not batch runs.
    assert_eq!(
        paths,
        ["flows/flaky-parser", "flows/support-router", "flows/support-triage", "flows/web-classification"]
    );
    assert_eq!(
        plan["flows"][3]["evaluations"],
        serde_json::json!(["flows/eval-accuracy/run.yml", "flows/eval-evidence/run.yml"])
    );
    assert!(
        stderr.contains("evaluation: flows/eval-accuracy/triage.run.yml (found by convention: it reads the same data)"),
        "{stderr}"
    );
}

#[test]
fn a_baseline_file_gates_without_git() {
    let pr = Pr::new();
    let (code, _, stderr) = pr.check(&["--all", "--write-baseline", "baseline.json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let baseline: serde_json::Value = serde_json::from_str(&pr.read("baseline.json")).unwrap();
    assert_eq!(baseline["flows"]["flows/web-classification"]["accuracy"], 0.9);
    pr.edit(".flow-ci.yaml", "baseline: base-branch", "baseline: file:baseline.json");
    pr.regress_accuracy();
    let (code, stdout, _) = pr.check(&["--all"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("exceeds 0.02"), "{stdout}");
}

#[test]
fn an_unchanged_base_is_taken_from_the_cache() {
    let pr = Pr::new();
    pr.edit("flows/web-classification/classify_prompt.jinja2", "OUTPUT:", "Answer:").commit();
    let run =
        |pr: &Pr| pr.command().args(["check", "--base", "main"]).env("FLOW_CI_LOG", "flow_ci=info").output().unwrap();
    let first = String::from_utf8_lossy(&run(&pr).stderr).into_owned();
    assert!(first.contains("baseline of flows/web-classification: running it at"), "{first}");
    // Another commit on the PR: the base is the same, so it is not run again.
    pr.edit("flows/web-classification/classify_prompt.jinja2", "Answer:", "Category:").commit();
    let second = String::from_utf8_lossy(&run(&pr).stderr).into_owned();
    assert!(second.contains("baseline of flows/web-classification from cache"), "{second}");
    assert!(!second.contains("running it at"), "{second}");
}

#[test]
fn model_output_cannot_inject_markdown_into_the_report() {
    let pr = Pr::new();
    pr.edit(
        "flows/web-classification/classify.py",
        "\"evidence\": \", \".join(scores[best][1])",
        "\"evidence\": \"</details><img src=x onerror=alert(1)> @octocat | ``` \" + \", \".join(scores[best][1])",
    )
    .edit("flows/web-classification/classify_prompt.jinja2", "OUTPUT:", "Answer in JSON:")
    .commit();
    let (code, stdout, stderr) = pr.check(&["--base", "main"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let md = pr.read(".flow-ci/report/report.md");
    assert!(md.contains("Lines whose output changed"), "{md}");
    assert!(md.contains("Prompt change in `flows/web-classification/classify_prompt.jinja2`"), "{md}");
    assert!(md.contains("+Answer in JSON:"), "{md}");
    assert!(!md.contains("<img"), "raw HTML from model output: {md}");
    assert!(!md.contains("@octocat"), "a live @mention: {md}");
    assert_eq!(md.matches("<details>").count(), md.matches("</details>").count(), "details blocks stay balanced");
    for line in md.lines().filter(|l| l.starts_with("| 0 |")) {
        assert_eq!(line.matches(" | ").count(), 3, "a pipe in the output cannot add columns: {line}");
    }
}

#[test]
fn junit_output_parses_as_junit() {
    let pr = Pr::new();
    pr.regress_accuracy().commit();
    let (code, _, _) = pr.check(&["--base", "main"]);
    assert_eq!(code, Some(1));
    let xml = pr.read(".flow-ci/report/junit.xml");
    let report = quick_junit::Report::deserialize_from_str(&xml).expect("valid JUnit XML");
    let suite = &report.test_suites[0];
    assert_eq!(suite.name.as_str(), "flows/web-classification");
    assert_eq!(suite.test_cases.len(), 4);
    let failed: Vec<_> =
        suite.test_cases.iter().filter(|c| !matches!(c.status, quick_junit::TestCaseStatus::Success { .. })).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].name.as_str(), "accuracy drop <= 0.02");
}

#[test]
fn github_actions_get_a_job_summary_and_annotations() {
    let pr = Pr::new();
    pr.regress_accuracy().commit();
    let summary = pr.dir.path().join("summary.md");
    let out = pr
        .command()
        .args(["check", "--base", "main"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("::error file=.flow-ci.yaml,line=10,title=flow-ci gate accuracy (flows/web-classification)::drop of 0.1 from 0.9 to 0.8 exceeds 0.02"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(summary).unwrap();
    assert!(md.starts_with("<!-- flow-ci:report -->\n❌ **flow-ci: gates failed**"), "{md}");
}

#[test]
fn one_check_reads_the_config_once() {
    // The job reads .flow-ci.yaml once and hands the value to validate,
    // detect, the LLM setup and the backend choice; `config::load` logs
    // each read at debug level under the `flow_ci::config` target.
    let pr = Pr::new();
    pr.regress_accuracy().commit();
    let (code, stdout, stderr) =
        support::repo::run(pr.command().env("FLOW_CI_LOG", "flow_ci::config=debug").args(["check", "--base", "main"]));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let reads: Vec<&str> = stderr.lines().filter(|l| l.contains("reading") && l.contains(".flow-ci.yaml")).collect();
    assert_eq!(reads.len(), 1, "{reads:#?}\n{stderr}");
}

#[test]
fn github_gets_ten_annotations_and_the_rest_in_the_log() {
    let pr = Pr::new();
    let gates: String = (0..25).map(|i| format!("      m{i}: {{ min: 1 }}\n")).collect();
    std::fs::write(
        pr.dir.path().join(".flow-ci.yaml"),
        format!("flows:\n  - path: flows/support-router\n    run: flows/support-router/run.yml\n    gates:\n{gates}"),
    )
    .unwrap();
    let out = pr.command().args(["check", "--all"]).env("GITHUB_ACTIONS", "true").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let annotations: Vec<&str> = stdout.lines().filter(|l| l.starts_with("::error ")).collect();
    assert_eq!(annotations.len(), 10, "{stdout}");
    assert!(annotations[0].starts_with("::error file=.flow-ci.yaml,line=5,"), "{}", annotations[0]);
    assert!(stdout.contains("flow-ci: 15 more failed gate(s); GitHub shows 10 annotations per step:"), "{stdout}");
    assert!(stdout.contains("  flows/support-router: m24: "), "{stdout}");
}
