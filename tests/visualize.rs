//! `flow-ci run visualize` and the page `check` writes beside report.md,
//! opened in a real headless Chromium (Debian's package) with no network:
//! the page draws itself from its own data, the filter hides rows, the
//! differing outputs show their word diff, and model output stays text.
//!
//! Chromium is required under scripts/test, which sets FLOW_CI_CHROMIUM
//! (`need chromium`); a plain `cargo test` without Chromium skips the
//! browser half and says so.

mod support;

use std::path::{Path, PathBuf};

use support::project::Project;
use support::repo::Pr;

/// The Chromium to drive: FLOW_CI_CHROMIUM (set by scripts/test, so a
/// missing browser fails there), else /usr/bin/chromium if installed.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FLOW_CI_CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "FLOW_CI_CHROMIUM={} does not exist: scripts/test needs Chromium for tests/visualize.rs (Debian: apt-get install chromium)",
            path.display()
        );
        return Some(path);
    }
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().map(PathBuf::from).find(|p| p.is_file());
    if found.is_none() {
        eprintln!(
            "skipping the browser checks: no Chromium (set FLOW_CI_CHROMIUM or apt-get install chromium; scripts/test requires it)"
        );
    }
    found
}

/// The page's DOM after its script ran, as headless Chromium dumps it. The
/// flags are those that work on a machine with a closed network; every host
/// name resolves to nothing and the proxy is a closed port, so the page
/// renders offline or not at all.
fn dump_dom(chromium: &Path, page: &Path, hash: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}{hash}", page.canonicalize().unwrap().display());
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=127.0.0.1:9",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A line row of the page: its number, whether it is hidden, its markup.
struct RowDom {
    line: u64,
    hidden: bool,
    html: String,
}

fn rows(dom: &str) -> Vec<RowDom> {
    dom.split("<tr ")
        .skip(1)
        .filter_map(|piece| {
            let tag = &piece[..piece.find('>')?];
            let line = tag.split("data-line=\"").nth(1)?.split('"').next()?.parse().ok()?;
            let html = piece[..piece.find("</tr>").unwrap_or(piece.len())].to_string();
            Some(RowDom { line, hidden: tag.contains(" hidden"), html })
        })
        .collect()
}

fn visible(dom: &str) -> Vec<u64> {
    rows(dom).iter().filter(|r| !r.hidden).map(|r| r.line).collect()
}

fn shown(dom: &str) -> String {
    let start = dom.find("id=\"shown\">").expect("the shown count") + "id=\"shown\">".len();
    dom[start..start + dom[start..].find('<').unwrap()].to_string()
}

/// A flow answering each line, and an aggregation counting the answers.
fn answer_project(answer: &str) -> Project {
    let p = Project::new();
    p.write(
        "flows/answer/flow.dag.yaml",
        r#"inputs:
  question:
    type: string
outputs:
  answer:
    type: string
    reference: ${answer.output}
nodes:
- name: answer
  type: python
  source:
    type: code
    path: answer.py
  inputs:
    question: ${inputs.question}
- name: count
  type: python
  source:
    type: code
    path: count.py
  inputs:
    answers: ${answer.output}
  aggregation: true
"#,
    )
    .write("flows/answer/answer.py", answer)
    .write(
        "flows/answer/count.py",
        "from promptflow.core import log_metric, tool\n\n\n@tool\ndef count(answers: list) -> int:\n    log_metric(\"answered\", len(answers))\n    return len(answers)\n",
    )
    .write(
        "flows/answer/data.jsonl",
        concat!(
            "{\"question\": \"hello world\"}\n",
            "{\"question\": \"</script><img src=x onerror=\\\"document.title='pwned'\\\">\"}\n",
            "{\"question\": \"boom\"}\n",
            "{\"question\": \"a needle in a haystack\"}\n",
        ),
    )
    .write("flows/answer/run.yml", "flow: .\ndata: data.jsonl\ncolumn_mapping:\n  question: ${data.question}\n");
    p
}

const BASE_ANSWER: &str = "from promptflow.core import tool\n\n\n@tool\ndef answer(question: str) -> str:\n    return \"the quick answer to \" + question\n";
const HEAD_ANSWER: &str = r#"from promptflow.core import tool


@tool
def answer(question: str) -> str:
    if question == "boom":
        raise ValueError("cannot answer " + question)
    if "needle" in question:
        return "the quick answer to " + question
    return "the slow answer to " + question
"#;

/// Two runs of the answer flow: `base`, then `head` after the code changed.
fn two_runs() -> Project {
    let p = answer_project(BASE_ANSWER);
    for (name, code) in [("base", BASE_ANSWER), ("head", HEAD_ANSWER)] {
        p.write("flows/answer/answer.py", code);
        let out =
            p.flow_ci().args(["run", "create", "--file", "flows/answer/run.yml", "--name", name]).output().unwrap();
        assert!(
            out.status.code() == Some(0) || out.status.code() == Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    p
}

#[test]
fn run_visualize_writes_one_page_that_filters_and_diffs_in_a_browser() {
    let p = two_runs();
    let out = p
        .flow_ci()
        .args(["run", "visualize", "--name", "base", "--name", "head", "--html-path", "out/runs.html"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out/runs.html\n");
    let page = p.path().join("out/runs.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("default-src 'none'"), "the page forbids itself any fetch");
    assert!(!html.contains("<img"), "model data is JSON in the page, its `<` escaped");
    // pf's spelling: `--names a,b`; the page goes beside the run store by default.
    let out = p.flow_ci().args(["run", "visualize", "--names", "base, head"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(p.path().join(".flow-ci/visualize/base_vs_head.html")).unwrap(), html);

    let Some(chromium) = chromium() else { return };
    let dom = dump_dom(&chromium, &page, "");
    assert_eq!(shown(&dom), "4 of 4 lines shown");
    assert!(
        dom.contains("<title>flow-ci runs base vs head</title>"),
        "the page's own script did not run or was hijacked"
    );
    assert!(!dom.contains("<img"), "model output became markup");
    assert!(dom.contains("&lt;/script&gt;&lt;img src=x onerror="), "model output is shown as text");
    let row0 = &rows(&dom)[0];
    assert!(row0.html.contains("<del>quick</del>") && row0.html.contains("<ins>slow</ins>"), "{}", row0.html);
    assert!(!rows(&dom)[3].html.contains("<ins>"), "an unchanged line has no diff: {}", rows(&dom)[3].html);
    assert!(dom.contains("cannot answer boom"), "the failed line's error");
    assert!(dom.contains("(-1)"), "head counted one answer fewer: {dom}");

    let dom = dump_dom(&chromium, &page, "#q=NEEDLE");
    assert_eq!((visible(&dom), shown(&dom)), (vec![3], "1 of 4 lines shown".to_string()));
    let dom = dump_dom(&chromium, &page, "#failed=1");
    assert_eq!(visible(&dom), vec![2]);
    let dom = dump_dom(&chromium, &page, "#differing=1");
    assert_eq!(visible(&dom), vec![0, 1, 2]);
    let dom = dump_dom(&chromium, &page, "#q=slow&failed=1");
    assert_eq!(visible(&dom), Vec::<u64>::new());
}

#[test]
fn an_unknown_run_is_invalid_input_and_an_unwritable_page_a_failure() {
    let p = two_runs();
    let out = p.flow_ci().args(["run", "visualize", "--name", "base", "--name", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no run named `nope`") && stderr.contains("recent runs: "), "{stderr}");
    assert!(!p.path().join(".flow-ci/visualize").exists());
    // A page that cannot be written is a failure (exit 3) naming where.
    let out = p
        .flow_ci()
        .args(["run", "visualize", "-n", "base", "--html-path", "flows/answer/run.yml/x.html"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot write flows/answer/run.yml/x.html") && stderr.contains("--html-path"), "{stderr}");
}

#[test]
fn check_writes_a_page_of_head_against_base_beside_report_md() {
    let pr = Pr::new();
    pr.improve_accuracy().commit();
    let (code, stdout, stderr) = pr.check(&["--base", "main"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let page = pr.dir.path().join(".flow-ci/report/visualize-flows-web-classification.html");
    assert!(page.is_file(), "{stderr}");

    let Some(chromium) = chromium() else { return };
    let dom = dump_dom(&chromium, &page, "");
    assert!(dom.contains("head vs base-branch"), "{dom}");
    let all = rows(&dom).len();
    assert!(all > 1, "{dom}");
    let dom = dump_dom(&chromium, &page, "#differing=1");
    let differing: Vec<RowDom> = rows(&dom).into_iter().filter(|r| !r.hidden).collect();
    assert!(!differing.is_empty() && differing.len() < all, "{} of {all} lines differ: {dom}", differing.len());
    assert!(differing.iter().any(|r| r.html.contains("<ins>App</ins>")), "the Netflix app line becomes App: {dom}");
    assert_eq!(shown(&dom), format!("{} of {all} lines shown", differing.len()));
}
