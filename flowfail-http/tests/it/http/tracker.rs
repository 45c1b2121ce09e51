//! The tracker adapters against local servers in GitHub's and Jira Cloud's shapes
//! (`flowfail_testkit::trackers`, from the samples in `testdata/tracker/`): the conformance
//! suite, an issue found again by a second process, hostile record text, errors.

use flowfail_core::ErrorKind;
use flowfail_core::conformance;
use flowfail_core::ports::{IssueText, Tracker};
use flowfail_core::tracking::{FileWhen, Synced, sync_text};
use flowfail_http::{GitHubIssues, JiraIssues};
use flowfail_testkit::trackers::{FakeGitHub, FakeJira};

use crate::support::{opts, secret};

const TOKEN: &str = "ghp-test-token";

fn github(server: &FakeGitHub) -> GitHubIssues {
    GitHubIssues::new(&server.uri(), "example/repo", secret(TOKEN), opts()).unwrap()
}

fn jira(server: &FakeJira) -> JiraIssues {
    JiraIssues::new(
        &server.uri(),
        "OPS",
        "Incident",
        "sre@example.com",
        &secret(TOKEN),
        opts(),
    )
    .unwrap()
}

#[tokio::test]
async fn github_passes_the_conformance_suite() {
    let server = FakeGitHub::start("example/repo", TOKEN).await;
    conformance::tracker(&github(&server)).await;
    let issues = server.issues();
    assert_eq!(issues.len(), 2);
    assert_eq!(issues[0].state, "closed");
    assert_eq!(issues[0].state_reason.as_deref(), Some("completed"));
    assert_eq!(issues[0].comments.len(), 1, "one 'settled' comment");
    assert!(issues[1].labels.contains(&"flowfail-duplicate".to_owned()));
    assert_eq!(issues[1].state_reason.as_deref(), Some("not_planned"));
    assert!(issues[1].comments[0].starts_with("Duplicate of #1"));
}

#[tokio::test]
async fn jira_passes_the_conformance_suite() {
    let server = FakeJira::start("OPS", "sre@example.com", TOKEN).await;
    conformance::tracker(&jira(&server)).await;
    let issues = server.issues();
    assert_eq!(issues.len(), 2);
    assert!(issues[0].labels.contains(&"flowfail-settled".to_owned()));
    assert_eq!(issues[0].comments.len(), 1);
    assert!(issues[1].labels.contains(&"flowfail-duplicate".to_owned()));
    assert!(
        !issues[1]
            .labels
            .iter()
            .any(|l| l.starts_with("flowfail-") && l.len() == 25)
    );
}

/// A process that restarts mid-incident (a new adapter, nothing in memory) finds the issue the
/// first one filed and settles it: one issue, never two.
#[tokio::test]
async fn a_restarted_process_finds_its_issue_and_files_no_second() {
    let gh = FakeGitHub::start("example/repo", TOKEN).await;
    let jr = FakeJira::start("OPS", "sre@example.com", TOKEN).await;
    let open = IssueText::new("flowengine:2026-12-07T10:00:00Z", "open", "so far", false);
    let settled = IssueText::new(
        "flowengine:2026-12-07T10:00:00Z",
        "resolved",
        "record",
        true,
    );
    for (first, second) in [
        (
            Box::new(github(&gh)) as Box<dyn Tracker>,
            Box::new(github(&gh)) as Box<dyn Tracker>,
        ),
        (Box::new(jira(&jr)), Box::new(jira(&jr))),
    ] {
        assert!(matches!(
            sync_text(first.as_ref(), &open, FileWhen::Open)
                .await
                .unwrap(),
            Synced::Filed(_)
        ));
        drop(first);
        assert!(matches!(
            sync_text(second.as_ref(), &open, FileWhen::Open)
                .await
                .unwrap(),
            Synced::Unchanged(_)
        ));
        assert!(matches!(
            sync_text(second.as_ref(), &settled, FileWhen::Open)
                .await
                .unwrap(),
            Synced::Settled(_)
        ));
    }
    assert_eq!(gh.issues().len(), 1);
    assert_eq!(gh.issues()[0].title, "resolved");
    assert_eq!(jr.issues().len(), 1);
    assert_eq!(jr.issues()[0].description_text(), "record");
}

/// Text from outside reaches the tracker inert: no mention on GitHub, plain ADF text on Jira.
/// A body cannot forge another incident's marker: only flowfail's first line and the tag label
/// count.
#[tokio::test]
async fn hostile_record_text_is_inert_in_both_trackers() {
    let gh = FakeGitHub::start("example/repo", TOKEN).await;
    let jr = FakeJira::start("OPS", "sre@example.com", TOKEN).await;
    let victim_marker = format!(
        "<!-- flowfail-incident {} -->",
        flowfail_core::tracking::incident_tag("victim")
    );
    let body = format!("{victim_marker}\n- **Example:** @security-team please rotate");
    let text = IssueText::new("k:1", "t", body, false);
    github(&gh).file(&text).await.unwrap();
    jira(&jr).file(&text).await.unwrap();
    let b = &gh.issues()[0].body;
    assert!(
        !b.contains("@security-team") && b.contains("＠security-team"),
        "{b}"
    );
    assert!(b.starts_with("<!-- flowfail-incident flowfail-"), "{b}");
    assert!(
        b.contains(&victim_marker),
        "the forged line is in the body: {b}"
    );
    // The forged marker names the victim's tag: the victim's lookup does not find this issue.
    assert!(github(&gh).find("victim").await.unwrap().is_empty());
    assert!(jira(&jr).find("victim").await.unwrap().is_empty());
    assert_eq!(github(&gh).find("k:1").await.unwrap().len(), 1);
    let d = &jr.issues()[0].description;
    assert_eq!(d["type"], "doc");
    assert_eq!(d["content"][0]["content"][0]["type"], "text");
    assert!(
        d["content"][0]["content"][0].get("marks").is_none(),
        "plain text, no marks"
    );
}

/// A person closing the GitHub issue mid-incident does not stop the settled record from
/// reaching it: settled is flowfail's label, not the issue's state.
#[tokio::test]
async fn an_issue_closed_by_hand_still_gets_the_settled_record() {
    let gh = FakeGitHub::start("example/repo", TOKEN).await;
    let t = github(&gh);
    let open = IssueText::new("k:2", "open", "so far", false);
    let filed = t.file(&open).await.unwrap();
    gh.close_by_hand(filed.id.parse().unwrap());
    assert!(!t.find("k:2").await.unwrap()[0].settled);
    let settled = IssueText::new("k:2", "resolved", "the record", true);
    assert!(matches!(
        sync_text(&t, &settled, FileWhen::Open).await.unwrap(),
        Synced::Settled(_)
    ));
    let i = &gh.issues()[0];
    assert!(i.body.contains("the record"), "{}", i.body);
    assert!(i.labels.contains(&"flowfail-settled".to_owned()));
}

#[tokio::test]
async fn errors_say_what_the_tracker_said_without_the_token() {
    let gh = FakeGitHub::start("example/repo", TOKEN).await;
    const WRONG: &str = "ghp-WRONG-canary-7f3a9c";
    let wrong = GitHubIssues::new(&gh.uri(), "example/repo", secret(WRONG), opts()).unwrap();
    let e = wrong.find("k").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    for shown in [e.to_string(), format!("{e:?}"), format!("{wrong:?}")] {
        assert!(!shown.contains(WRONG), "the token leaked: {shown}");
    }
    let jr_wrong = JiraIssues::new(
        &gh.uri(),
        "OPS",
        "Incident",
        "a@b.c",
        &secret(WRONG),
        opts(),
    )
    .unwrap();
    assert!(!format!("{jr_wrong:?}").contains(WRONG));
    gh.fail_next(502);
    let e = github(&gh).find("k").await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    let jr = FakeJira::start("OPS", "sre@example.com", TOKEN).await;
    let bad_type = JiraIssues::new(
        &jr.uri(),
        "OPS",
        "Saga",
        "sre@example.com",
        &secret(TOKEN),
        opts(),
    )
    .unwrap();
    let e = bad_type
        .file(&IssueText::new("k", "t", "b", false))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Specify a valid issue type"), "{e}");
    for (repo, why) in [("no-slash", "owner/name"), ("a/../b", "owner/name")] {
        let e = GitHubIssues::new(&gh.uri(), repo, secret(TOKEN), opts()).unwrap_err();
        assert!(e.to_string().contains(why), "{repo}: {e}");
    }
    let e =
        JiraIssues::new(&jr.uri(), "ops", "Incident", "a@b", &secret(TOKEN), opts()).unwrap_err();
    assert!(e.to_string().contains("tracker.project"), "{e}");
}
