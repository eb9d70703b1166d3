//! The sticky PR comment, end to end: `flow-ci check` (and `flow-ci action`)
//! in a repository with a real-shaped GitHub event payload or Azure
//! Pipelines variables, posting to loopback fakes of GitHub and Azure DevOps
//! that check every request.

use std::path::Path;

mod support;
use support::fake_ado::{self, FakeAzureDevOps};
use support::fake_github::{self, FakeGitHub};
use support::repo::{Pr, git, run};

const MARKER: &str = "<!-- flow-ci:report -->";

/// `flow-ci check` as a GitHub Actions step of a `pull_request` workflow.
fn github_check(pr: &Pr, github: &FakeGitHub, event: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let d = pr.dir.path();
    run(pr
        .command()
        .arg("check")
        .args(extra)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", event)
        .env("GITHUB_REPOSITORY", fake_github::REPOSITORY)
        .env("GITHUB_API_URL", &github.api)
        .env("GITHUB_TOKEN", fake_github::TOKEN)
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_RUN_ID", "1658821493")
        .env("GITHUB_STEP_SUMMARY", d.join("summary.md"))
        .env("GITHUB_OUTPUT", d.join("output.txt")))
}

fn improve(pr: &Pr) {
    pr.improve_accuracy().commit();
}

#[test]
fn the_first_run_creates_the_comment_and_the_next_updates_it() {
    let (pr, github) = (Pr::new(), FakeGitHub::start());
    improve(&pr);
    let event = pr.pull_request_event("pull_request.json");
    let (code, stdout, stderr) = github_check(&pr, &github, &event, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains(fake_github::TOKEN) && !stderr.contains(fake_github::TOKEN), "the token is never logged");
    assert!(
        stderr.contains(&format!("base: {} (from the pull_request event's base commit)", pr.rev("main"))),
        "{stderr}"
    );
    assert!(
        stderr.contains("comment: created https://github.com/octo-org/prompt-flows/pull/42#issuecomment-1000"),
        "{stderr}"
    );
    let comments = github.comments();
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.starts_with(MARKER) && comments[0].body.contains("▲ +0.0167"), "{}", comments[0].body);
    let body = github.received().last().unwrap().body.clone();
    assert_eq!(body["body"].as_str(), Some(pr.read(".flow-ci/report/report.md").as_str()), "the comment is report.md");
    // It links the run that wrote it, names the commits, and draws the change (GitHub renders Mermaid).
    let comment = &comments[0].body;
    assert!(
        comment.contains("[CI run](https://github.com/octo-org/prompt-flows/actions/runs/1658821493)"),
        "{comment}"
    );
    let (head, base) = (pr.rev("HEAD"), pr.rev("main"));
    assert!(
        comment.contains(&format!("Compared the working tree at `{}` with base `{}`", &head[..12], &base[..12])),
        "{comment}"
    );
    assert!(comment.contains("```mermaid\nxychart-beta\n    title \"flows/web-classification\""), "{comment}");

    // Another push to the PR: the same comment is updated, none is added.
    pr.edit("flows/web-classification/classify_prompt.jinja2", "OUTPUT:", "Answer:").commit();
    let (code, _, stderr) = github_check(&pr, &github, &event, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("comment: updated"), "{stderr}");
    let calls = github.calls();
    let list = "GET /repos/octo-org/prompt-flows/issues/42/comments";
    // `GET /user` asks who the token is (403 for GITHUB_TOKEN: github-actions[bot]).
    assert_eq!(
        calls,
        [
            "GET /user",
            list,
            "POST /repos/octo-org/prompt-flows/issues/42/comments",
            "GET /user",
            list,
            "PATCH /repos/octo-org/prompt-flows/issues/comments/1000"
        ]
    );
    assert_eq!(github.comments().len(), 1);
    assert!(github.comments()[0].body.contains("classify_prompt.jinja2"), "the update carries the new prompt diff");
    assert_eq!(github.violations(), Vec::<String>::new());

    let outputs = pr.read("output.txt");
    let report_path = pr.dir.path().canonicalize().unwrap().join(".flow-ci/report/report.md");
    assert!(
        outputs.contains(&format!("passed=true\nreport-path={}\nfailed-gates=0\n", report_path.display())),
        "{outputs}"
    );
    // In a container action the workspace is mounted elsewhere than where the
    // runner's next steps see it: the path is relative to the workspace.
    let out2 = pr.dir.path().join("output2.txt");
    let (code, _, stderr) = run(pr
        .command()
        .arg("check")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_WORKSPACE", pr.dir.path())
        .env("GITHUB_OUTPUT", &out2));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(pr.read("output2.txt").contains("report-path=.flow-ci/report/report.md\n"), "{}", pr.read("output2.txt"));
}

#[test]
fn the_marker_is_found_among_120_comments_on_ghes() {
    let (pr, github) = (Pr::new(), FakeGitHub::start_at("/api/v3"));
    github.seed(120, Some(110), MARKER);
    improve(&pr);
    let event = pr.pull_request_event("pull_request.json");
    let (code, _, stderr) = github_check(&pr, &github, &event, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let calls = github.calls();
    assert_eq!(
        calls,
        [
            "GET /api/v3/user",
            "GET /api/v3/repos/octo-org/prompt-flows/issues/42/comments",
            "GET /api/v3/repos/octo-org/prompt-flows/issues/42/comments",
            "PATCH /api/v3/repos/octo-org/prompt-flows/issues/comments/1110"
        ]
    );
    assert_eq!(github.received()[2].query, "per_page=100&page=2", "the Link header's next page");
    assert_eq!(github.comments().len(), 120, "no comment added");
    assert_eq!(github.violations(), Vec::<String>::new());
}

#[test]
fn an_error_answer_echoing_the_token_does_not_log_it() {
    let (pr, github) = (Pr::new(), FakeGitHub::start());
    github.echo_token();
    improve(&pr);
    let event = pr.pull_request_event("pull_request.json");
    let (code, stdout, stderr) = github_check(&pr, &github, &event, &[]);
    assert_eq!(code, Some(0), "a comment that cannot be posted does not fail the job: {stdout}{stderr}");
    assert!(stderr.contains("warning: comment not posted: GET ") && stderr.contains("answered 502"), "{stderr}");
    assert!(!stdout.contains(fake_github::TOKEN), "{stdout}");
    assert!(!stderr.contains(fake_github::TOKEN), "{stderr}");
}

#[test]
fn a_busy_or_rate_limited_github_is_asked_again() {
    let (pr, github) = (Pr::new(), FakeGitHub::start());
    improve(&pr);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let spent: &[(&str, &str)] = &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &now)];
    // GET /user: busy, then a spent primary rate limit, reset now; the third try is answered.
    github.fail_next(&[(503, &[("retry-after", "0")]), (403, spent)]);
    let event = pr.pull_request_event("pull_request.json");
    let (code, stdout, stderr) = github_check(&pr, &github, &event, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("comment: created https://github.com/"), "{stderr}");
    assert_eq!(github.comments().len(), 1);
    let list = "GET /repos/octo-org/prompt-flows/issues/42/comments";
    let post = "POST /repos/octo-org/prompt-flows/issues/42/comments";
    assert_eq!(github.calls(), ["GET /user", "GET /user", "GET /user", list, post]);
    assert_eq!(github.violations(), Vec::<String>::new());

    // Creating a comment is retried where GitHub says it took nothing (a rate limit).
    github.fail_next(&[(429, &[("retry-after", "0")])]);
    let (code, _, stderr) = github_check(&pr, &github, &event, &["--comment-mode", "new"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("comment: created"), "{stderr}");
    assert_eq!(github.calls()[5..], [post, post]);
    assert_eq!(github.comments().len(), 2);
}

#[test]
fn refusals_and_failed_creations_are_not_asked_again() {
    let (pr, github) = (Pr::new(), FakeGitHub::start());
    improve(&pr);
    let event = pr.pull_request_event("pull_request.json");
    let post = "POST /repos/octo-org/prompt-flows/issues/42/comments";
    // 401: the token is wrong; asking again changes nothing.
    github.fail_next(&[(401, &[])]);
    let (code, _, stderr) = github_check(&pr, &github, &event, &["--comment-mode", "new"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("comment: not posted: the token may not comment"), "{stderr}");
    assert_eq!(github.calls(), [post]);
    // 500 on a POST: the comment may exist, so it is not posted twice.
    github.fail_next(&[(500, &[])]);
    let (code, _, stderr) = github_check(&pr, &github, &event, &["--comment-mode", "new"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("warning: comment not posted: POST ") && stderr.contains("answered 500"), "{stderr}");
    assert_eq!(github.calls(), [post, post]);
    assert!(github.comments().is_empty());
}

#[test]
fn a_next_page_on_another_origin_gets_no_token() {
    let (pr, github, elsewhere) = (Pr::new(), FakeGitHub::start(), FakeGitHub::start());
    github.seed(120, None, MARKER);
    github.next_page_on(&elsewhere.api);
    improve(&pr);
    let event = pr.pull_request_event("pull_request.json");
    let (code, _, stderr) = github_check(&pr, &github, &event, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let bearer = format!("Bearer {}", fake_github::TOKEN);
    let leaked: Vec<String> = elsewhere
        .received()
        .iter()
        .filter(|r| {
            r.headers.iter().any(|(_, v)| v.contains(fake_github::TOKEN)) || r.header("authorization") == Some(&bearer)
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(leaked, Vec::<String>::new(), "the token went to another origin");
    assert!(stderr.contains("not following the comment list's next page on http://127.0.0.1:"), "{stderr}");
    assert_eq!(
        github.calls(),
        [
            "GET /user",
            "GET /repos/octo-org/prompt-flows/issues/42/comments",
            "POST /repos/octo-org/prompt-flows/issues/42/comments"
        ],
        "the listing stops at the first page; the comment is still posted"
    );
}

#[test]
fn a_fork_without_write_access_gets_the_summary_and_keeps_its_exit_code() {
    let (pr, github) = (Pr::new(), FakeGitHub::start());
    github.read_only();
    pr.regress_accuracy().commit();
    let event = pr.pull_request_event("pull_request_fork.json");
    let (code, stdout, stderr) = github_check(&pr, &github, &event, &[]);
    assert_eq!(code, Some(1), "the gate decides the exit code, not the comment: {stdout}{stderr}");
    assert!(
        stderr.contains("comment: not posted: this pull request comes from a fork, whose token cannot comment"),
        "{stderr}"
    );
    assert!(github.comments().is_empty());
    assert!(pr.read("summary.md").contains("❌ **flow-ci: gates failed**"));
    assert!(pr.read("output.txt").contains("passed=false\n"));

    // A failed gate need not fail the job.
    let (code, _, _) = github_check(&pr, &github, &event, &["--fail-on-gate", "false"]);
    assert_eq!(code, Some(0));
}

#[test]
fn on_a_fork_a_flow_needing_a_model_key_is_not_run_and_says_why() {
    let (pr, github) = (Pr::new(), FakeGitHub::start());
    github.read_only();
    // A prompt change: the recorded answers no longer match, a key is needed.
    pr.edit("flows/support-triage/triage.jinja2", "# system:", "# system:\nBe brief.").commit();
    let event = pr.pull_request_event("pull_request_fork.json");
    let (code, stdout, stderr) = github_check(&pr, &github, &event, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("not run: it calls a model and this pull request comes from a fork, which gets no secrets"),
        "{stdout}"
    );
    assert!(pr.read(".flow-ci/report/report.md").contains("⏭️ Not run: it calls a model"), "{stdout}");
    assert!(pr.read("output.txt").contains("not-run=1\n"), "the step output counts it");
    // A repository that wants every flow checked on every PR says so.
    let (code, stdout, stderr) = github_check(&pr, &github, &event, &["--on-missing-secrets", "fail"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(pr.read(".flow-ci/report/report.md").contains("❌ **flow-ci: flows not run**"), "{stdout}");
}

#[test]
fn comment_modes_new_and_off() {
    let (pr, github) = (Pr::new(), FakeGitHub::start());
    improve(&pr);
    let event = pr.pull_request_event("pull_request.json");
    for _ in 0..2 {
        let (code, _, stderr) = github_check(&pr, &github, &event, &["--comment-mode", "new"]);
        assert_eq!(code, Some(0), "{stderr}");
    }
    assert_eq!(github.comments().len(), 2, "a comment per run");
    let (_, _, stderr) = github_check(&pr, &github, &event, &["--comment-mode", "off"]);
    assert!(stderr.contains("comment: not posted: comment-mode is off"), "{stderr}");
    assert_eq!(github.calls().iter().filter(|c| c.starts_with("GET")).count(), 0, "mode new never lists");
}

#[test]
fn the_action_entry_point_reads_its_inputs() {
    let (pr, github) = (Pr::new(), FakeGitHub::start());
    improve(&pr);
    let event = pr.pull_request_event("pull_request.json");
    let (code, stdout, stderr) = run(&mut pr.action(&github, &event));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("flow-ci action: -C "), "{stderr}");
    assert_eq!(github.comments().len(), 1, "{stderr}");
    assert!(pr.read("output.txt").contains("passed=true"));
}

#[test]
fn action_yml_declares_what_the_binary_reads() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("action.yml")).unwrap();
    // Parsed as YAML: an unquoted ": " in a description makes GitHub reject the action.
    let doc = model::yaml::parse(&text).unwrap_or_else(|e| panic!("action.yml is not valid YAML: {e:?}")).unwrap();
    let names = |section: &str| -> Vec<String> {
        let map = doc.get(section).and_then(|s| s.as_map()).unwrap_or_default();
        map.iter().map(|(k, _)| k.key_text()).collect()
    };
    let inputs: Vec<&str> = flow_ci::ci::action::INPUTS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names("inputs"), inputs);
    assert_eq!(names("outputs"), flow_ci::ci::action::OUTPUTS);
    assert!(text.contains("using: docker") || text.contains("using: 'docker'"), "a container action");
    // main builds the Dockerfile; a release commit runs the image by digest.
    assert!(text.contains("\n  image: Dockerfile\n"), "{text}");
    assert!(!text.contains("${{ inputs."), "inputs reach the binary as INPUT_* variables, not interpolated");
}

/// What the release does to action.yml before it tags the release commit
/// (.github/workflows/release.yml): only `runs.image` changes, to the
/// published image by digest; anything that is not a digest is refused.
#[test]
fn a_release_pins_the_action_image_by_digest() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let original = std::fs::read_to_string(root.join("action.yml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("action.yml");
    let pin = |image: &str| {
        std::fs::write(&copy, &original).unwrap();
        std::process::Command::new("bash")
            .arg(root.join("scripts/pin-action-image"))
            .args([image, copy.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let digest = format!("ghcr.io/flow-ci/flow-ci@sha256:{}", "0123456789abcdef".repeat(4));
    let out = pin(&digest);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pinned = std::fs::read_to_string(&copy).unwrap();
    let doc = model::yaml::parse(&pinned).unwrap().unwrap();
    let image = doc.get("runs").and_then(|r| r.get("image")).and_then(|i| i.as_str()).map(str::to_string);
    assert_eq!(image.as_deref(), Some(format!("docker://{digest}").as_str()));
    let changed: Vec<(&str, &str)> = original.lines().zip(pinned.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(changed, vec![("  image: Dockerfile", format!("  image: docker://{digest}").as_str())]);
    assert_eq!(original.lines().count(), pinned.lines().count());

    for refused in ["ghcr.io/flow-ci/flow-ci:v1.2.3", "ghcr.io/flow-ci/flow-ci@sha256:abc", "GHCR.io/x/y@sha256:00"] {
        let out = pin(refused);
        assert_eq!(out.status.code(), Some(2), "{refused}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), original, "{refused} left action.yml as it was");
    }
}

/// `flow-ci check` as an Azure Pipelines PR validation build of an Azure Repos PR.
fn azure_check(pr: &Pr, ado: &FakeAzureDevOps) -> (Option<i32>, String, String) {
    run(pr
        .command()
        .arg("check")
        .env("TF_BUILD", "True")
        .env("BUILD_REASON", "PullRequest")
        .env("BUILD_REPOSITORY_PROVIDER", "TfsGit")
        .env("BUILD_REPOSITORY_ID", fake_ado::REPOSITORY_ID)
        .env("BUILD_SOURCEVERSION", pr.rev("HEAD"))
        .env("SYSTEM_COLLECTIONURI", &ado.collection)
        .env("SYSTEM_TEAMPROJECT", fake_ado::PROJECT)
        .env("BUILD_BUILDID", "4821")
        .env("SYSTEM_PULLREQUEST_PULLREQUESTID", fake_ado::PR.to_string())
        .env("SYSTEM_PULLREQUEST_TARGETBRANCH", "refs/heads/main")
        .env("SYSTEM_PULLREQUEST_ISFORK", "False")
        .env("SYSTEM_ACCESSTOKEN", fake_ado::TOKEN))
}

#[test]
fn azure_devops_gets_one_thread_that_is_resolved_when_the_pr_passes() {
    let (pr, ado) = (Pr::new(), FakeAzureDevOps::start());
    ado.seed_reviewer_thread();
    // The agent's full fetch has the target branch as origin/main.
    git(pr.dir.path(), &["update-ref", "refs/remotes/origin/main", "main"]);
    pr.regress_accuracy().commit();
    let (code, stdout, stderr) = azure_check(&pr, &ado);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("base: origin/main (from the pull request's target branch)"), "{stderr}");
    assert!(
        stdout.contains("##vso[task.logissue type=error;sourcepath=flows/web-classification/flow.dag.yaml"),
        "{stdout}"
    );
    let threads = ado.threads();
    assert_eq!(threads.len(), 2);
    assert_eq!(threads[1].status, "active", "a failing PR keeps the thread active");
    assert!(threads[1].comments[0].1.starts_with(MARKER));
    // The build is linked; Azure DevOps comments get the chart as text, not Mermaid.
    let comment = &threads[1].comments[0].1;
    let build = format!("{}/Prompt%20Flows/_build/results?buildId=4821", ado.collection.trim_end_matches('/'));
    assert!(comment.contains(&format!("[CI run]({build})")), "{comment}");
    assert!(comment.contains("Metric changes against the baseline") && !comment.contains("mermaid"), "{comment}");

    // The author fixes the regression: the same thread is updated and resolved.
    git(pr.dir.path(), &["revert", "--no-edit", "HEAD"]);
    let (code, _, stderr) = azure_check(&pr, &ado);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("comment: updated thread 2 (fixed)"), "{stderr}");
    let threads = ado.threads();
    assert_eq!(threads.len(), 2, "no second flow-ci thread");
    assert_eq!(threads[1].status, "fixed");
    assert!(threads[1].comments[0].1.contains("✅ **flow-ci"), "{}", threads[1].comments[0].1);
    assert_eq!(threads[0].status, "active", "the reviewer's thread is untouched");
    let base =
        "/contoso/Prompt%20Flows/_apis/git/repositories/d2b7c1a4-5e6f-4a8b-9c0d-1e2f3a4b5c6d/pullRequests/17/threads";
    assert_eq!(
        ado.calls(),
        [
            format!("GET {base}"),
            format!("POST {base}"),
            format!("GET {base}"),
            format!("PATCH {base}/2/comments/1"),
            format!("PATCH {base}/2"),
        ]
    );
    assert_eq!(ado.violations(), Vec::<String>::new());
}

#[test]
fn pull_request_target_is_refused_with_why() {
    let pr = Pr::new();
    let github = FakeGitHub::start();
    let event = pr.pull_request_event("pull_request.json");
    // The same step, triggered by pull_request_target instead.
    let (code, _, stderr) = run(pr
        .command()
        .arg("check")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_NAME", "pull_request_target")
        .env("GITHUB_EVENT_PATH", &event)
        .env("GITHUB_API_URL", &github.api)
        .env("GITHUB_TOKEN", fake_github::TOKEN));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("does not run on `pull_request_target`") && stderr.contains("on: pull_request"),
        "{stderr}"
    );
    assert!(github.calls().is_empty(), "nothing may be called: {:?}", github.calls());
}

#[test]
fn only_flow_cis_own_comment_is_edited_and_an_unchanged_one_is_left_alone() {
    let pr = Pr::new();
    let github = FakeGitHub::start();
    // Somebody quotes flow-ci's report, marker included, in their own comment.
    let quoted = github.add_comment("mallory", &format!("{MARKER}\nlooks fine to me"));
    improve(&pr);
    let event = pr.pull_request_event("pull_request.json");
    let (code, _, stderr) = github_check(&pr, &github, &event, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("comment: created"), "{stderr}");
    let comments = github.comments();
    let theirs = comments.iter().find(|c| c.id == quoted).unwrap();
    assert_eq!(theirs.body, format!("{MARKER}\nlooks fine to me"), "another account's comment is untouched");
    // The same report again: flow-ci's comment already says it.
    let (code, _, stderr) = github_check(&pr, &github, &event, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("comment: unchanged"), "{stderr}");
    assert!(!github.calls().iter().any(|c| c.starts_with("PATCH")), "{:?}", github.calls());
    assert!(github.violations().is_empty(), "{:?}", github.violations());
}

#[test]
fn a_throttled_azure_devops_is_asked_again_after_retry_after() {
    let (pr, ado) = (Pr::new(), FakeAzureDevOps::start());
    git(pr.dir.path(), &["update-ref", "refs/remotes/origin/main", "main"]);
    // Azure DevOps' throttling (429) and a busy front end (503), each with Retry-After.
    ado.fail_next(&[(429, &[("retry-after", "0")]), (503, &[("retry-after", "0")])]);
    let (code, stdout, stderr) = azure_check(&pr, &ado);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("comment: created thread 1"), "{stderr}");
    let base =
        "/contoso/Prompt%20Flows/_apis/git/repositories/d2b7c1a4-5e6f-4a8b-9c0d-1e2f3a4b5c6d/pullRequests/17/threads";
    let get = format!("GET {base}");
    assert_eq!(ado.calls(), [get.clone(), get.clone(), get, format!("POST {base}")]);
    assert_eq!(ado.threads().len(), 1);
    // A refusal is final.
    ado.fail_next(&[(401, &[])]);
    let (code, _, stderr) = azure_check(&pr, &ado);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("comment: not posted: the token may not comment"), "{stderr}");
    assert_eq!(ado.calls().len(), 5);
    assert_eq!(ado.violations(), Vec::<String>::new());
}
