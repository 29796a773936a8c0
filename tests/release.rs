//! The kubectl plugin as a release hands it out: deploy/krew/package builds the archive the krew
//! manifest names for this platform, and what it holds runs.

use std::process::Command;

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_plugin_archive_is_the_one_the_krew_manifest_names_and_its_binary_runs() {
    let out = std::env::temp_dir().join(format!("sluice-krew-{}", std::process::id()));
    let packaged = Command::new(repo().join("deploy/krew/package"))
        .arg(&out)
        .env("KUBECTL_SLUICE", env!("CARGO_BIN_EXE_kubectl-sluice"))
        .output()
        .expect("deploy/krew/package runs");
    assert!(packaged.status.success(), "package failed: {}", String::from_utf8_lossy(&packaged.stderr));
    let printed = String::from_utf8(packaged.stdout).unwrap();
    let mut lines = printed.lines();
    let (archive, sha256) = (lines.next().expect("the archive"), lines.next().expect("its sha256"));
    assert_eq!(sha256.len(), 64, "{sha256}");
    let file_name = std::path::Path::new(archive).file_name().unwrap().to_str().unwrap().to_string();

    // The krew manifest has an entry for this platform whose URI ends in that archive's name.
    let manifest: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo().join("deploy/krew/sluice.yaml")).unwrap()).expect("manifest parses");
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["spec"]["version"], format!("v{}", env!("CARGO_PKG_VERSION")), "the manifest's version is the crate's");
    let platforms = manifest["spec"]["platforms"].as_array().expect("platforms");
    let entry = platforms
        .iter()
        .find(|p| p["uri"].as_str().is_some_and(|uri| uri.ends_with(&format!("/{file_name}"))))
        .unwrap_or_else(|| panic!("no platform entry names {file_name}: {platforms:#?}"));
    assert_eq!(entry["bin"], "kubectl-sluice");
    let (os, arch) = (entry["selector"]["matchLabels"]["os"].as_str().unwrap(), entry["selector"]["matchLabels"]["arch"].as_str().unwrap());
    assert!(file_name.ends_with(&format!("-{os}-{arch}.tar.gz")), "{file_name} is not for {os}/{arch}");

    // The manifest written beside the archive is the repository's with this platform's sha256.
    let filled: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(out.join("sluice.yaml")).unwrap()).expect("the filled manifest parses");
    let filled_entry = filled["spec"]["platforms"].as_array().unwrap().iter().find(|p| p["uri"] == entry["uri"]).unwrap().clone();
    assert_eq!(filled_entry["sha256"], sha256, "the archive's sha256 is in its platform's entry");
    let mut unfilled = filled.clone();
    for (platform, original) in unfilled["spec"]["platforms"].as_array_mut().unwrap().iter_mut().zip(platforms) {
        platform["sha256"] = original["sha256"].clone();
    }
    assert_eq!(unfilled, manifest, "nothing else changes");

    // Packaging twice gives the same bytes: the sha256 a release publishes is reproducible.
    let again = Command::new(repo().join("deploy/krew/package"))
        .arg(&out)
        .env("KUBECTL_SLUICE", env!("CARGO_BIN_EXE_kubectl-sluice"))
        .output()
        .expect("deploy/krew/package runs");
    assert_eq!(String::from_utf8(again.stdout).unwrap(), printed);

    let unpacked = out.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let untar = Command::new("tar").args(["-xzf", archive, "-C"]).arg(&unpacked).status().expect("tar runs");
    assert!(untar.success());
    assert!(unpacked.join("LICENSE").exists(), "the archive holds the LICENSE");
    let version = Command::new(unpacked.join("kubectl-sluice")).arg("--version").output().expect("the packaged plugin runs");
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("kubectl-sluice {}", env!("CARGO_PKG_VERSION")));
    let _ = std::fs::remove_dir_all(&out);
}
