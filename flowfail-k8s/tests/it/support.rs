//! Helpers shared by the modules of this test binary.

use std::process::Command;

/// Whether `kubectl version --client` runs. If it does not, the skip line of `module` (the
/// caller's `module_path!()`) is printed once, counting the module's tests whose name contains
/// `name_part` (`""` for all of them), or the calling test fails with
/// `FLOWFAIL_KUBECTL_REQUIRED=1`.
pub(crate) fn kubectl_present(module: &str, name_part: &str) -> bool {
    let ok = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        flowfail_testkit::skip_named_in(
            module,
            flowfail_testkit::Peer::Kubectl,
            "on PATH",
            &"`kubectl version --client` did not run",
            name_part,
        );
    }
    ok
}
